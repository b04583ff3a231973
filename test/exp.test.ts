// The exp inside the CPU kernels, against float64 correctly rounded to fp32.
import { describe, expect, it } from 'vitest';
import { backend } from 'fusedce';
import { kernels } from 'fusedce/kernels';
import { testRng } from './reference.mjs';

/** Distance in fp32 ulps between two finite floats of the same sign (or zero). */
function ulps(a: number, b: number): number {
  const f = new Float32Array([a, b]);
  const u = new Int32Array(f.buffer);
  return Math.abs(u[0]! - u[1]!);
}

describe(`exp (${backend()} kernels)`, () => {
  it('is within 2 ulp of the correctly rounded exp over [−104, 88.72], subnormal and near-FLT_MAX results included', () => {
    const r = testRng('exp');
    const n = 1 << 20;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      // half of the points where cross-entropy evaluates exp (x = z − lse ∈ [−30, 0]), some near
      // the top (2^k alone overflows there for x > 88.37), the rest anywhere
      x[i] = i % 2 ? -30 * r() : i % 7 === 0 ? 87 + 1.72 * r() : -104 + 192.72 * r();
    }
    const y = kernels.exp(x);
    let worst = 0;
    let at = 0;
    for (let i = 0; i < n; i++) {
      const d = ulps(y[i]!, Math.fround(Math.exp(x[i]!)));
      if (d > worst) [worst, at] = [d, i];
    }
    expect(worst, `worst at x = ${x[at]}: ${y[at]} vs ${Math.exp(x[at]!)}`).toBeLessThanOrEqual(2);
  });
  it('handles the special values', () => {
    const y = kernels.exp(new Float32Array([0, -Infinity, NaN, -200, 1, -87.5, -103, 88.7, 88.73, 89, Infinity]));
    expect(y[0]).toBe(1);
    expect(y[1]).toBe(0);
    expect(y[2]).toBeNaN();
    expect(y[3]).toBe(0);
    expect(ulps(y[4]!, Math.fround(Math.E))).toBeLessThanOrEqual(1);
    expect(ulps(y[5]!, Math.fround(Math.exp(-87.5)))).toBeLessThanOrEqual(1); // subnormal
    expect(ulps(y[6]!, Math.fround(Math.exp(-103)))).toBeLessThanOrEqual(1); // smallest subnormals
    expect(ulps(y[7]!, Math.fround(Math.exp(Math.fround(88.7))))).toBeLessThanOrEqual(1); // finite, near FLT_MAX
    expect(y[8]).toBe(Infinity); // e^88.73 > FLT_MAX
    expect(y[9]).toBe(Infinity);
    expect(y[10]).toBe(Infinity);
  });
  it('rejects bad arguments', () => {
    expect(() => kernels.exp(new Float64Array(2) as never)).toThrow(TypeError);
    expect(() => kernels.exp(new Float32Array(2), new Float32Array(3))).toThrow(/kernels.exp: out/);
    expect(() => kernels.exp(new Float32Array(2), undefined, 0)).toThrow(RangeError);
  });
});

describe('kernels.read (the benchmark read-bandwidth ceiling)', () => {
  it('reads every 64-bit word: the checksum is the low 32 bits of their sum, for any threads', () => {
    // 3 MiB + 24 bytes: several 1 MiB chunks and a short last one
    const words = new BigUint64Array((3 << 17) + 3);
    let sum = 0n;
    for (let i = 0; i < words.length; i++) {
      words[i] = BigInt(i) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn;
      sum += words[i]!;
    }
    const expected = Number(sum & 0xffffffffn);
    for (const threads of [1, 2, 3]) expect(kernels.read(words, threads)).toBe(expected);
    expect(kernels.read(new Uint16Array(new ArrayBuffer(16), 8, 4))).toBe(0);
  });
  it('rejects bad arguments', () => {
    expect(() => kernels.read([1, 2] as never)).toThrow(/kernels.read: data/);
    expect(() => kernels.read(new DataView(new ArrayBuffer(8)) as never)).toThrow(TypeError);
    expect(() => kernels.read(new Uint8Array(new ArrayBuffer(16), 4))).toThrow(RangeError);
    expect(() => kernels.read(new Float32Array(4), 0)).toThrow(/kernels.read: threads/);
  });
});

describe('kernels.expCeiling (the benchmark exp ceiling at a thread count)', () => {
  it('exponentiates threads · ⌈repeat/16⌉ · 16 buffers of 4096 floats, for any threads', () => {
    expect(kernels.expCeiling(16, 1)).toBe(16 * 4096);
    expect(kernels.expCeiling(17, 1)).toBe(32 * 4096);
    expect(kernels.expCeiling(1, 3)).toBe(3 * 16 * 4096);
    expect(kernels.expCeiling(32, 2)).toBe(2 * 32 * 4096);
  });
  it('rejects bad arguments, naming them', () => {
    expect(() => kernels.expCeiling(0, 1)).toThrow(/kernels.expCeiling: repeat/);
    expect(() => kernels.expCeiling(1.5, 1)).toThrow(RangeError);
    expect(() => kernels.expCeiling(16, 0)).toThrow(/kernels.expCeiling: threads/);
    expect(() => kernels.expCeiling('2' as never, 1)).toThrow(TypeError);
  });
});
