// fitTemperature against the float64 optimum (Newton on the exact NLL(β), β = 1/τ, with its first
// and second derivatives mean(E_p[z] − z_t) and mean(Var_p[z])), on validation sets whose targets
// are drawn from softmax(z/τ₀): f32 and bf16, vocab 128256, ignored rows, an optimum on a bound.
import { describe, expect, it } from 'vitest';
import { crossEntropyForward, fitTemperature, fitTemperatureAsync } from 'fusedce';
import { makeLogits, normal, sampleTargets as draw, testRng } from './reference.mjs';

/** The float64 optimum τ of mean NLL(softmax(z/τ)) over counted rows, by Newton in β = 1/τ. */
function optimum(values: Float32Array, t: Int32Array, rows: number, vocab: number): number {
  let beta = 1;
  for (let it = 0; it < 60; it++) {
    let d1 = 0, d2 = 0, n = 0;
    for (let i = 0; i < rows; i++) {
      if (t[i] === -100) continue;
      n++;
      let m = -Infinity;
      for (let j = 0; j < vocab; j++) m = Math.max(m, beta * values[i * vocab + j]!);
      let s = 0, ez = 0, ez2 = 0;
      for (let j = 0; j < vocab; j++) {
        const z = values[i * vocab + j]!, e = Math.exp(beta * z - m);
        s += e; ez += e * z; ez2 += e * z * z;
      }
      const mean = ez / s;
      d1 += mean - values[i * vocab + t[i]!]!;
      d2 += ez2 / s - mean * mean;
    }
    const step = d1 / d2;
    beta = Math.max(beta / 4, Math.min(beta * 4, beta - step));
    if (Math.abs(step) < 1e-13 * beta) break;
  }
  return 1 / beta;
}

const CASES: [rows: number, vocab: number, dtype: 'f32' | 'bf16', tau0: number, ignore: number, why: string][] = [
  [300, 1003, 'f32', 2.5, 0, 'an over-confident model (τ > 1), rows and vocab off the vector widths'],
  [200, 777, 'bf16', 0.6, 0.2, 'an under-confident model (τ < 1), ignored rows'],
  [24, 128256, 'bf16', 1.7, 0.1, 'the Llama-3 vocabulary'],
];

describe('fitTemperature', () => {
  for (const [rows, vocab, dtype, tau0, ignore, why] of CASES) {
    it(`${rows}×${vocab} ${dtype}, τ₀ = ${tau0} (${why}): the float64 optimum to 1e-4 relative`, async () => {
      const r = testRng(`temperature ${rows} ${vocab} ${dtype}`);
      const x = Float32Array.from({ length: rows * vocab }, () => 3 * normal(r));
      const { z, values } = makeLogits(x, rows, vocab, dtype);
      const t = draw(r, values, rows, vocab, tau0, ignore);
      const want = optimum(values, t, rows, vocab);
      const got = fitTemperature(z, t);
      expect(Math.abs(got.temperature - want) / want).toBeLessThanOrEqual(1e-4);
      expect(got.atBound).toBe(false);
      expect(got.iterations).toBeLessThanOrEqual(30);
      // the reports are the forward's own numbers at τ = 1 and at the fitted τ
      const at1 = crossEntropyForward(z, t, { stats: true });
      const atT = crossEntropyForward(z, t, { stats: true, logitScale: 1 / got.temperature });
      expect(got.nllBefore).toBeCloseTo(at1.loss, 5);
      expect(got.nllAfter).toBeCloseTo(atT.loss, 5);
      expect([got.eceBefore, got.eceAfter]).toEqual([at1.stats.ece, atT.stats.ece]);
      expect(got.nllAfter).toBeLessThan(got.nllBefore);
      // the async twin walks the same passes
      expect(await fitTemperatureAsync(z, t)).toEqual(got);
    }, 120_000);
  }

  it('an optimum beyond the bounds stops on the bound it is beyond, and says so', () => {
    // Bounds placed around this data's own float64 optimum (not around τ₀: with few rows the
    // sample's optimum can land anywhere near τ₀), so the claim holds for every seed.
    const r = testRng('temperature bound');
    const rows = 200, vocab = 40;
    const { z, values } = makeLogits(Float32Array.from({ length: rows * vocab }, () => 3 * normal(r)), rows, vocab, 'f32');
    const t = draw(r, values, rows, vocab, 3);
    const want = optimum(values, t, rows, vocab);
    expect(Number.isFinite(want) && want > 0).toBe(true);
    const above = fitTemperature(z, t, { bounds: [want / 8, want / 2] });
    expect(above.atBound).toBe(true);
    expect(above.temperature).toBe(want / 2);
    const below = fitTemperature(z, t, { bounds: [2 * want, 8 * want] });
    expect(below.atBound).toBe(true);
    expect(below.temperature).toBe(2 * want);
    // and bounds that hold the optimum do not report a bound
    const inside = fitTemperature(z, t, { bounds: [want / 2, 2 * want] });
    expect(inside.atBound).toBe(false);
    expect(Math.abs(inside.temperature - want) / want).toBeLessThanOrEqual(1e-4);
  });

  it('bad arguments are clear errors', () => {
    const { z } = makeLogits(new Float32Array(12), 3, 4, 'f32');
    const t = new Int32Array([0, 1, 2]);
    expect(() => fitTemperature(z, [0, 1, 2] as never)).toThrow(/fitTemperature: targets must be an Int32Array/);
    expect(() => fitTemperature(z, new Int32Array([-100, -100, -100]))).toThrow(/targets must be at least one row that counts/);
    expect(() => fitTemperature(z, t, { bounds: [2, 1] })).toThrow(/bounds must be 0 < min < max/);
    expect(() => fitTemperature(z, t, { bounds: 3 as never })).toThrow(TypeError);
    expect(() => fitTemperature(z, t, { tolerance: 0 })).toThrow(RangeError);
    expect(() => fitTemperature(z, t, { maxIterations: 1 })).toThrow(/fitTemperature: maxIterations must be an integer in \[3, 10000\]/);
    expect(() => fitTemperature(z, t, { eceBins: 0 })).toThrow(/fitTemperature: eceBins must be an integer in \[1, 1000000\]/);
    expect(() => fitTemperature(z, t, { threads: 0 })).toThrow(/threads/);
    expect(() => fitTemperature(z, t, { temperature: 2 } as never)).toThrow(/unknown option 'temperature'/);
    expect(() => fitTemperature(z, new Int32Array([0, 9, 1]))).toThrow(/targets\[1\] = 9/);
  });
});
