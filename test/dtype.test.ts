// fp32 <-> bf16 / f16 conversions: exact, round to nearest even, specials preserved; and the
// native kernels' output rounding agrees bit for bit with the public helpers.
import { describe, expect, it } from 'vitest';
import { bf16, crossEntropyForward, f16, logits } from 'fusedce';
import { f64ToBf16, f64ToF16, randomLogits, randomTargets, testRng } from './reference.mjs';

function randomFloatBits(r: () => number, n: number): Float32Array {
  const u = new Uint32Array(n);
  for (let i = 0; i < n; i++) u[i] = Math.floor(r() * 2 ** 32);
  return new Float32Array(u.buffer);
}

describe('bf16', () => {
  it('round-trips every bf16 value exactly', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = bf16.fromFloat32(bf16.toFloat32(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (isNaN) expect(Number.isNaN(bf16.toFloat32(new Uint16Array([back[h]!]))[0])).toBe(true);
      else expect(back[h]).toBe(h);
    }
  });
  it('rounds random fp32 values to nearest even (vs exact float64 rounding)', () => {
    const x = randomFloatBits(testRng('bf16-rne'), 200_000);
    const got = bf16.fromFloat32(x);
    for (let i = 0; i < x.length; i++) {
      if (Number.isNaN(x[i])) expect(got[i]! & 0x7fff).toBeGreaterThan(0x7f80);
      else if (got[i] !== f64ToBf16(x[i]!)) expect.fail(`bf16(${x[i]}) = ${got[i]}, expected ${f64ToBf16(x[i]!)}`);
    }
  });
  it('handles ties, overflow and specials', () => {
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1); 1 + 3·2^-8 ties up to 1 + 2^-6
    expect(Array.from(bf16.toFloat32(bf16.fromFloat32(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4e38, -Infinity, -0])))))
      .toEqual([1, 1 + 2 ** -6, Infinity, -Infinity, -0]);
  });
});

describe('f16', () => {
  it('round-trips every f16 value exactly', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = f16.fromFloat32(f16.toFloat32(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN) expect(Number.isNaN(f16.toFloat32(new Uint16Array([back[h]!]))[0])).toBe(true);
      else expect(back[h]).toBe(h);
    }
  });
  it('rounds random fp32 values (all magnitudes, incl. f16 subnormals) to nearest even', () => {
    const r = testRng('f16-rne');
    const x = randomFloatBits(r, 100_000);
    // plus values concentrated where f16 is interesting: subnormals, the normal range, overflow edge
    const y = Float32Array.from({ length: 100_000 }, () => (r() < 0.5 ? -1 : 1) * 2 ** (r() * 44 - 27));
    for (const arr of [x, y]) {
      const got = f16.fromFloat32(arr);
      for (let i = 0; i < arr.length; i++) {
        if (Number.isNaN(arr[i])) expect(got[i]! & 0x7fff).toBeGreaterThan(0x7c00);
        else if (got[i] !== f64ToF16(arr[i]!)) expect.fail(`f16(${arr[i]}) = ${got[i]}, expected ${f64ToF16(arr[i]!)}`);
      }
    }
  });
  it('handles the overflow edge, subnormal ties and specials', () => {
    const x = new Float32Array([65504, 65519.99, 65520, 2 ** -25, 3 * 2 ** -25, 2 ** -24, NaN, -Infinity]);
    const back = f16.toFloat32(f16.fromFloat32(x));
    expect(Array.from(back.subarray(0, 6))).toEqual([65504, 65504, Infinity, 0, 2 ** -23, 2 ** -24]);
    expect(back[6]).toBeNaN();
    expect(back[7]).toBe(-Infinity);
  });
});

describe('native output rounding', () => {
  for (const dtype of ['bf16', 'f16'] as const) {
    it(`a ${dtype} gradient is bitwise ${dtype}.fromFloat32 of the f32 gradient`, () => {
      const r = testRng(`native-round-${dtype}`);
      // mean over 4000 rows makes most gradients tiny: f16 subnormals get exercised
      const [rows, vocab] = [4000, 257];
      const z = logits(randomLogits(r, rows, vocab, 3), rows, vocab);
      const targets = randomTargets(r, rows, vocab);
      const g32 = crossEntropyForward(z, targets, { withGrad: true }).grad!.data as Float32Array;
      const g16 = crossEntropyForward(z, targets, { withGrad: true, gradDtype: dtype }).grad!.data as Uint16Array;
      const conv = dtype === 'bf16' ? bf16 : f16;
      expect(Buffer.from(g16.buffer).equals(Buffer.from(conv.fromFloat32(g32).buffer))).toBe(true);
      if (dtype === 'f16') expect(g16.some((h) => h !== 0 && (h & 0x7c00) === 0)).toBe(true);
    });
  }
});

describe('f16 / bf16 helpers reject the wrong array type', () => {
  it('names the helper', () => {
    expect(() => bf16.fromFloat32(new Float64Array(2) as never)).toThrow(/bf16.fromFloat32: input must be a Float32Array/);
    expect(() => f16.toFloat32(new Int16Array(2) as never)).toThrow(/f16.toFloat32: input must be a Uint16Array/);
  });
});
