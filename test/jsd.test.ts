// jsDivergenceForward: the generalized Jensen–Shannon divergence β·KL(p‖m) + (1 − β)·KL(q‖m),
// m = β·p + (1 − β)·q (p the reference, q the model, both at temperature T), and its gradient
// w.r.t. the model's logits, against float64 on fresh random data; β = 0 and 1 are the KL
// divergences (Liger-Kernel's limits).
import { describe, expect, it } from 'vitest';
import { type DType, gradcheck, jsDivergenceForward, jsDivergenceForwardAsync, klDivergenceForward, logits } from 'fusedce';
import { makeLogits, randomLogits, testRng, toFloat32 } from './reference.mjs';
import { worstRatio } from './loss_reference.mjs';

function refJsd(xv: Float32Array, uv: Float32Array, rows: number, vocab: number, beta: number, T: number, scale: number) {
  const losses = new Float64Array(rows), grad = new Float64Array(rows * vocab);
  for (let i = 0; i < rows; i++) {
    const x = Array.from(xv.subarray(i * vocab, (i + 1) * vocab), (v) => v / T);
    const y = Array.from(uv.subarray(i * vocab, (i + 1) * vocab), (v) => v / T);
    const lse = (a: number[]) => { let m = -Infinity; for (const v of a) m = Math.max(m, v); let s = 0; for (const v of a) s += Math.exp(v - m); return m + Math.log(s); };
    const lx = lse(x), ly = lse(y);
    let loss = 0, kl = 0;
    const lqm = new Float64Array(vocab), q = new Float64Array(vocab);
    for (let j = 0; j < vocab; j++) {
      q[j] = Math.exp(x[j]! - lx);
      const p = Math.exp(y[j]! - ly), m = beta * p + (1 - beta) * q[j]!;
      if (p > 0) loss += beta * p * (y[j]! - ly - Math.log(m));
      if (q[j]! > 0) {
        lqm[j] = x[j]! - lx - Math.log(m);
        loss += (1 - beta) * q[j]! * lqm[j]!;
        kl += q[j]! * lqm[j]!;
      }
    }
    losses[i] = loss;
    for (let j = 0; j < vocab; j++) grad[i * vocab + j] = q[j]! > 0 ? (scale * (1 - beta) * q[j]! * (lqm[j]! - kl)) / T : 0;
  }
  return { losses, grad };
}

/**
 * The row losses in float64 as sums of non-negative terms, h = β·p·ψ((1 − β)·expm1(d)) +
 * (1 − β)·q·ψ(β·expm1(−d)), ψ(s) = s − log1p(s), d = (x − y)/T − (lse_x − lse_y): no cancellation,
 * so it keeps its digits for nearly equal rows and for β near 0 or 1 (where refJsd's plain formula
 * loses them). Elements with one side 0 take the plain term, which is then exact.
 */
function refJsdStable(xv: Float32Array, uv: Float32Array, rows: number, vocab: number, beta: number, T: number) {
  const losses = new Float64Array(rows);
  const psi = (s: number) => (Math.abs(s) < 1e-4 ? s * s * (0.5 - s / 3 + (s * s) / 4) : s - Math.log1p(s));
  for (let i = 0; i < rows; i++) {
    const x = Array.from(xv.subarray(i * vocab, (i + 1) * vocab)), y = Array.from(uv.subarray(i * vocab, (i + 1) * vocab));
    const lse = (a: number[]) => { let m = -Infinity; for (const v of a) m = Math.max(m, v / T); let s = 0; for (const v of a) s += Math.exp(v / T - m); return m + Math.log(s); };
    const lx = lse(x), ly = lse(y);
    let loss = 0;
    for (let j = 0; j < vocab; j++) {
      const q = Math.exp(x[j]! / T - lx), p = Math.exp(y[j]! / T - ly);
      if (p === 0 && q === 0) continue;
      if (p === 0) { loss += (1 - beta) * q * -Math.log1p(-beta); continue; }  // m = (1 − β)·q
      if (q === 0) { loss += beta * p * -Math.log(beta); continue; }          // m = β·p
      const d = (x[j]! - y[j]!) / T - (lx - ly);
      loss += beta * p * psi((1 - beta) * Math.expm1(d)) + (1 - beta) * q * psi(beta * Math.expm1(-d));
    }
    losses[i] = loss;
  }
  return losses;
}

const SHAPES: [rows: number, vocab: number, why: string][] = [
  [3, 5, 'tiny'],
  [7, 1000, 'rows and vocab off the vector widths'],
  [2, 128256, 'the Llama-3 vocabulary'],
];

describe('jsDivergenceForward vs float64', () => {
  for (const [rows, vocab, why] of SHAPES) {
    for (const dtype of (vocab > 10000 ? ['bf16'] : ['f32', 'bf16']) as DType[]) {
      for (const beta of [0.1, 0.5, 0.9]) {
        it(`${rows}×${vocab} ${dtype}, β = ${beta} (${why})`, async () => {
          const r = testRng(`jsd ${rows} ${vocab} ${dtype} ${beta}`);
          const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
          const { z: u, values: uv } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
          for (const T of [1, 2]) {
            for (const reduction of ['mean', 'sum', 'none'] as const) {
              const scale = reduction === 'mean' ? 1 / rows : 1;
              const want = refJsd(values, uv, rows, vocab, beta, T, scale);
              const out = jsDivergenceForward(z, u, { beta, temperature: T, reduction, withGrad: true, gradDtype: 'f32' });
              expect(worstRatio(out.losses, want.losses, 2e-6, 1e-5).worst).toBeLessThanOrEqual(1);
              const sum = want.losses.reduce((a, b) => a + b, 0);
              expect(Math.abs(out.loss - sum * scale)).toBeLessThanOrEqual(1e-5 * sum + 1e-9);
              let gmax = 0, xmax = 0;
              for (const v of want.grad) gmax = Math.max(gmax, Math.abs(v));
              for (const v of [...values, ...uv]) xmax = Math.max(xmax, Math.abs(v / T));
              const g = worstRatio(toFloat32(out.grad!), want.grad, 1e-5 * gmax + gmax * xmax * 2 ** -20 + 1e-12, 1e-5);
              expect(g.worst, `worst element ${g.at}`).toBeLessThanOrEqual(1);
            }
          }
          const a = await jsDivergenceForwardAsync(z, u, { beta });
          expect(a.loss).toBe(jsDivergenceForward(z, u, { beta }).loss);
        });
      }
    }
  }

  it('β = 0 is KL(p‖q) and β = 1 is KL(q‖p); the symmetric JSD is symmetric and at most ln 2', () => {
    const r = testRng('jsd limits');
    const rows = 5, vocab = 300;
    const z = logits(randomLogits(r, rows, vocab), rows, vocab), u = logits(randomLogits(r, rows, vocab), rows, vocab);
    expect(jsDivergenceForward(z, u, { beta: 0 }).loss).toBe(klDivergenceForward(z, u).loss);
    expect(jsDivergenceForward(z, u, { beta: 1 }).loss).toBe(klDivergenceForward(z, u, { direction: 'reverse' }).loss);
    const ab = jsDivergenceForward(z, u, { reduction: 'none' }).losses, ba = jsDivergenceForward(u, z, { reduction: 'none' }).losses;
    for (let i = 0; i < rows; i++) {
      expect(Math.abs(ab[i]! - ba[i]!)).toBeLessThanOrEqual(1e-6 * ab[i]! + 1e-9);
      expect(ab[i]).toBeLessThanOrEqual(Math.LN2 + 1e-7);
    }
    expect(jsDivergenceForward(z, z).loss).toBeCloseTo(0, 7);
  });

  it('nearly equal rows: the small divergence keeps its digits (and is never negative)', () => {
    // y = x + 1e-3·noise: the JSD is ~1e-8 a row, a difference of terms ~1e5 times larger in the
    // plain formula (an fp32 evaluation of it, or of the log-ratio form, was off by 1e-3 here).
    // At T = 2 the scaled logits x/T and y/T each round in fp32: d must come from (x − y)/T.
    const r = testRng('jsd near-equal');
    const rows = 3, vocab = 128256;
    const xv = Float32Array.from(randomLogits(r, rows, vocab));
    const yv = xv.map((v) => v + 1e-3 * (r() - 0.5));
    for (const T of [1, 2]) {
      for (const beta of [1e-6, 0.1, 0.5, 0.9]) {
        const out = jsDivergenceForward(logits(xv, rows, vocab), logits(yv, rows, vocab), { beta, temperature: T, reduction: 'none' });
        const want = refJsdStable(xv, yv, rows, vocab, beta, T);
        for (let i = 0; i < rows; i++) {
          expect(out.losses[i]).toBeGreaterThanOrEqual(0);
          expect(Math.abs(out.losses[i]! - want[i]!), `T ${T} β ${beta} row ${i}`).toBeLessThanOrEqual(1e-6 * want[i]!);
        }
      }
    }
  });

  it('masked logits (−inf in either row or both), extreme β, and logits far apart', () => {
    const r = testRng('jsd edges');
    const rows = 4, vocab = 3001;
    const x = Float32Array.from(randomLogits(r, rows, vocab, 3));
    const u = Float32Array.from(randomLogits(r, rows, vocab, 3));
    for (let j = 0; j < x.length; j += 7) x[j] = -Infinity;
    for (let j = 0; j < u.length; j += 11) u[j] = -Infinity;  // j ≡ 0 (mod 77): both
    const far = Float32Array.from(x, (v, j) => (j % 5 === 0 ? v : v + 40 * (r() - 0.5)));
    for (const [name, a, b] of [['masked', x, u], ['far apart', x, far]] as const) {
      for (const beta of [1e-40, 1e-35, 1e-4, 0.3, 1 - 1e-6, 1 - 1e-12]) {
        const out = jsDivergenceForward(logits(a, rows, vocab), logits(b, rows, vocab), { beta, temperature: 1.5, reduction: 'none', withGrad: true, gradDtype: 'f32' });
        const want = refJsdStable(a, b, rows, vocab, beta, 1.5);
        for (let i = 0; i < rows; i++) {
          expect(Number.isFinite(out.losses[i]), `${name} β ${beta}`).toBe(true);
          // (+ 2^-148: at β = 1e-40 a row's loss is a subnormal float, spaced 2^-149)
          expect(Math.abs(out.losses[i]! - want[i]!), `${name} β ${beta} row ${i}`).toBeLessThanOrEqual(2e-6 * want[i]! + 2 ** -148);
        }
        const g = toFloat32(out.grad!);
        expect(g.every(Number.isFinite)).toBe(true);
        for (let j = 0; j < a.length; j++) if (a[j] === -Infinity) expect(g[j]).toBe(0);
      }
    }
  });

  it('central differences agree', () => {
    const r = testRng('jsd gradcheck');
    const rows = 3, vocab = 200;
    const u = logits(randomLogits(r, rows, vocab), rows, vocab);
    const rep = gradcheck((v) => {
      const o = jsDivergenceForward(logits(Float32Array.from(v), rows, vocab), u, { beta: 0.3, temperature: 1.4, withGrad: true, reduction: 'sum' });
      return { loss: o.loss, grad: o.grad! };
    }, Float64Array.from(randomLogits(r, rows, vocab)));
    expect(rep.ok, JSON.stringify(rep.worst)).toBe(true);
  });

  it('bad arguments are clear errors', () => {
    const z = logits(new Float32Array(8), 2, 4);
    expect(() => jsDivergenceForward(z, z, { beta: 1.5 })).toThrow(/jsDivergenceForward: beta must be in \[0, 1\]/);
    expect(() => jsDivergenceForward(z, logits(new Float32Array(4), 1, 4))).toThrow(/refLogits must be a \[2, 4\] matrix like logits/);
    expect(() => jsDivergenceForward(z, z, { temperature: -1 })).toThrow(/temperature/);
    expect(() => jsDivergenceForward(z, z, { direction: 'reverse' } as never)).toThrow(/unknown option 'direction'/);
    expect(() => jsDivergenceForward(z, z, { withGrad: true, inPlace: true })).toThrow(/overlaps refLogits\.data|overlaps another input/);
  });
});
