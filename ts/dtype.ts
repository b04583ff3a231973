// Element types and exact fp32 <-> 16-bit conversions (round to nearest, ties to even).
// bf16 and f16 data travel as Uint16Array holding the raw bits.

import { availableParallelism } from 'node:os';
import { native } from './binding';
import { rangeError, typeError } from './errors';

export type DType = 'f32' | 'f16' | 'bf16';
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16'];

/** Code used by the native layer: f32 = 0, f16 = 1, bf16 = 2. */
export function dtypeCode(d: DType): number {
  return d === 'f32' ? 0 : d === 'f16' ? 1 : 2;
}

// The conversions run natively (cpp/convert.cpp: AVX2/F16C where the CPU has them, over the
// thread pool). The plain loops below are the reference they agree with bit for bit
// (test/dtype.test.ts); `reference` exposes them to tests and benchmarks.

/** Threads for a conversion: all cores (it is memory bound; small arrays stay on one thread). */
let convertThreads = 0;

function checkConvert(fn: string, a: unknown, out: unknown, from: 'f32' | '16'): void {
  if (from === 'f32') {
    if (!(a instanceof Float32Array)) throw typeError(fn, 'input', 'a Float32Array', a);
  } else if (!(a instanceof Uint16Array)) {
    throw typeError(fn, 'input', 'a Uint16Array of raw 16-bit values', a);
  }
  if (out === undefined) return;
  const len = (a as Float32Array | Uint16Array).length;
  if (from === 'f32' ? !(out instanceof Uint16Array) : !(out instanceof Float32Array))
    throw typeError(fn, 'out', from === 'f32' ? `a Uint16Array of length ${len}` : `a Float32Array of length ${len}`, out);
  if ((out as Uint16Array | Float32Array).length !== len) throw rangeError(fn, 'out', `of length input.length (${len})`, out);
}

function convert(fn: string, input: Float32Array | Uint16Array, out: Float32Array | Uint16Array | undefined, kind: number) {
  if (convertThreads === 0) convertThreads = availableParallelism();
  return native().convert({ fn, input, out: out ?? null, kind, threads: convertThreads }).out;
}

function asFloat32(fn: string, a: unknown): Float32Array {
  if (!(a instanceof Float32Array)) throw new TypeError(`${fn}: input must be a Float32Array`);
  return a;
}
function asUint16(fn: string, a: unknown): Uint16Array {
  if (!(a instanceof Uint16Array)) throw new TypeError(`${fn}: input must be a Uint16Array of raw 16-bit values`);
  return a;
}

const bf16Reference = {
  fromFloat32(a: Float32Array): Uint16Array {
    const src = asFloat32('bf16.fromFloat32', a);
    const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
    const out = new Uint16Array(src.length);
    for (let i = 0; i < u.length; i++) {
      const x = u[i]!;
      out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x0040 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
    return out;
  },
  toFloat32(a: Uint16Array): Float32Array {
    const src = asUint16('bf16.toFloat32', a);
    const out = new Float32Array(src.length);
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < src.length; i++) u[i] = src[i]! << 16;
    return out;
  },
};

let f16Table: Float32Array | undefined;
function f16ToFloatTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0x1f) t[h] = man ? NaN : sign * Infinity;
    else if (exp === 0) t[h] = sign * man * 2 ** -24;
    else t[h] = sign * (1 + man / 1024) * 2 ** (exp - 15);
  }
  return (f16Table = t);
}

const f16Reference = {
  fromFloat32(a: Float32Array): Uint16Array {
    const src = asFloat32('f16.fromFloat32', a);
    const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
    const out = new Uint16Array(src.length);
    for (let i = 0; i < u.length; i++) {
      const x = u[i]!;
      const sign = (x >>> 16) & 0x8000;
      const abs = x & 0x7fffffff;
      let h: number;
      if (abs > 0x7f800000) h = 0x7e00 | ((abs >>> 13) & 0x3ff);
      else if (abs >= 0x477ff000) h = 0x7c00;
      else if (abs >= 0x38800000) {
        const r = abs - 0x38000000;
        h = (r + 0x0fff + ((r >>> 13) & 1)) >>> 13;
      } else if (abs < 0x33000000) h = 0;
      else {
        const e = abs >>> 23;
        const m = (abs & 0x7fffff) | 0x800000;
        const shift = 126 - e;
        let q = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && q & 1)) q++;
        h = q;
      }
      out[i] = sign | h;
    }
    return out;
  },
  toFloat32(a: Uint16Array): Float32Array {
    const src = asUint16('f16.toFloat32', a);
    const t = f16ToFloatTable();
    const out = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
    return out;
  },
};

/** The plain-JS conversions the native ones agree with bit for bit (for tests and benchmarks). */
export const reference = { bf16: bf16Reference, f16: f16Reference };

/** The native conversions of a 16-bit format (kinds: fp32 → it, it → fp32; cpp/convert.cpp). */
function converters(name: 'bf16' | 'f16', narrow: number, widen: number) {
  return {
    /**
     * fp32 → bits, round to nearest even (bf16: NaN stays NaN (quiet), overflow rounds to ±inf;
     * f16: IEEE binary16, subnormals kept, ≥ 65520 → ±inf). Written into `out` (a Uint16Array of
     * the same length) when given, else into a new array.
     */
    fromFloat32(a: Float32Array, out?: Uint16Array): Uint16Array {
      checkConvert(`${name}.fromFloat32`, a, out, 'f32');
      return convert(`${name}.fromFloat32`, a, out, narrow) as Uint16Array;
    },
    /** bits → fp32 (exact), into `out` (a Float32Array of the same length) when given. */
    toFloat32(a: Uint16Array, out?: Float32Array): Float32Array {
      checkConvert(`${name}.toFloat32`, a, out, '16');
      return convert(`${name}.toFloat32`, a, out, widen) as Float32Array;
    },
  };
}

/** bfloat16: fp32's exponent, 7 mantissa bits; raw bits in a Uint16Array. */
export const bf16 = converters('bf16', 0, 2);
/** IEEE binary16 (half); raw bits in a Uint16Array. */
export const f16 = converters('f16', 1, 3);
