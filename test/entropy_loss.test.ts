// entropyForward: the entropy of softmax(z/T) as a loss with its gradient
//   H_i = −Σ_j p_j·log p_j,   dH/dz_j = −p_j·(log p_j + H_i)/T
// against float64 on fresh random data (vocab 128256, rows and vocab off the vector widths,
// extreme and −inf logits), every reduction, gradOutput, out, inPlace, async, and central
// differences.
import { describe, expect, it } from 'vitest';
import { type DType, entropy, entropyForward, entropyForwardAsync, gradcheck, logits } from 'fusedce';
import { makeLogits, randomLogits, testRng, toFloat32 } from './reference.mjs';
import { refEntropy, worstRatio } from './loss_reference.mjs';

/** Float64 entropies and the gradient of Σ_i s·H_i (s = the reduction's scale). */
function refEntropyGrad(values: Float32Array, rows: number, vocab: number, T: number, s: number) {
  const H = refEntropy(values, rows, vocab, T) as Float64Array;
  const grad = new Float64Array(rows * vocab);
  for (let i = 0; i < rows; i++) {
    let m = -Infinity;
    for (let j = 0; j < vocab; j++) m = Math.max(m, values[i * vocab + j]! / T);
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(values[i * vocab + j]! / T - m);
    const lse = m + Math.log(sum);
    for (let j = 0; j < vocab; j++) {
      const lp = values[i * vocab + j]! / T - lse, p = Math.exp(lp);
      grad[i * vocab + j] = p === 0 ? 0 : (-s * p * (lp + H[i]!)) / T;
    }
  }
  return { H, grad };
}

const SHAPES: [rows: number, vocab: number, why: string][] = [
  [3, 5, 'tiny'],
  [7, 1000, 'rows and vocab off the vector widths'],
  [4, 9001, 'three 4096-blocks, the last ragged'],
  [2, 128256, 'the Llama-3 vocabulary'],
];

describe('entropyForward vs float64', () => {
  for (const [rows, vocab, why] of SHAPES) {
    for (const dtype of (vocab > 10000 ? ['bf16'] : ['f32', 'bf16', 'f16']) as DType[]) {
      for (const T of [1, 2.5, 0.4]) {
        it(`${rows}×${vocab} ${dtype}, T=${T} (${why})`, () => {
          const r = testRng(`entropy loss ${rows} ${vocab} ${dtype} ${T}`);
          const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
          for (const reduction of ['mean', 'sum', 'none'] as const) {
            const s = reduction === 'mean' ? 1 / rows : 1;
            const ref = refEntropyGrad(values, rows, vocab, T, s * 0.7);
            const out = entropyForward(z, { temperature: T, reduction, withGrad: true, gradDtype: 'f32', gradOutput: 0.7 });
            expect(worstRatio(out.losses, ref.H, 2e-6, 3e-6).worst).toBeLessThanOrEqual(1);
            const sum = ref.H.reduce((a, b) => a + b, 0);
            expect(Math.abs(out.loss - sum * (reduction === 'mean' ? 1 / rows : 1))).toBeLessThanOrEqual(3e-6 * sum + 1e-9);
            expect(out.count).toBe(rows);
            let gmax = 0, xmax = 0;
            for (const v of ref.grad) gmax = Math.max(gmax, Math.abs(v));
            for (const v of values) xmax = Math.max(xmax, Math.abs(v / T));
            const w = worstRatio(toFloat32(out.grad!), ref.grad, 3e-6 * gmax + gmax * xmax * 2 ** -21 + 1e-12, 3e-6);
            expect(w.worst, `worst element ${w.at}`).toBeLessThanOrEqual(1);
            // the same entropies as entropy()
            expect(Array.from(out.losses)).toEqual(Array.from(entropy(z, { temperature: T })));
          }
        });
      }
    }
  }

  it('extreme logits: a row with −inf entries, a one-hot row (H = 0, gradient 0), huge magnitudes', () => {
    const vocab = 6;
    const x = Float32Array.from([0, -Infinity, 1, 2, -Infinity, 3, 1e4, 0, 0, 0, 0, 0, -3e4, 3e4, 2e4, -1e4, 0, 5]);
    const out = entropyForward(logits(x, 3, vocab), { withGrad: true, reduction: 'sum' });
    const ref = refEntropyGrad(x, 3, vocab, 1, 1);
    expect(worstRatio(out.losses, ref.H, 1e-7, 3e-6).worst).toBeLessThanOrEqual(1);
    const g = out.grad!.data as Float32Array;
    expect(g[1]).toBe(0);
    expect(g[4]).toBe(0);
    expect(Array.from(g.subarray(6, 12)).every((v) => v === 0 || Object.is(v, -0))).toBe(true);
    expect(Array.from(g).every(Number.isFinite)).toBe(true);
  });

  it('central differences agree (precision detected from the Float64Array input)', () => {
    const r = testRng('entropy gradcheck');
    const rows = 3, vocab = 400;
    const x = Float64Array.from(randomLogits(r, rows, vocab));
    const rep = gradcheck((v) => {
      const o = entropyForward(logits(Float32Array.from(v), rows, vocab), { withGrad: true, reduction: 'sum', temperature: 1.3 });
      return { loss: o.loss, grad: o.grad! };
    }, x);
    expect(rep.ok, JSON.stringify(rep.worst)).toBe(true);
  });

  it('out, inPlace, gradDtype, async: the same gradient', async () => {
    const r = testRng('entropy out');
    const rows = 5, vocab = 3001;
    const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
    const a = entropyForward(z, { withGrad: true });
    const out = logits(new Uint16Array(rows * vocab), rows, vocab, 'bf16');
    entropyForward(z, { withGrad: true, out });
    expect(Array.from(out.data)).toEqual(Array.from(a.grad!.data));
    const b = await entropyForwardAsync(z, { withGrad: true });
    expect(Array.from(b.grad!.data)).toEqual(Array.from(a.grad!.data));
    expect(b.loss).toBe(a.loss);
    const f32 = entropyForward(z, { withGrad: true, gradDtype: 'f32' });
    expect(f32.grad!.dtype).toBe('f32');
    const copy = logits(Uint16Array.from(z.data), rows, vocab, 'bf16');
    entropyForward(copy, { withGrad: true, inPlace: true });
    expect(Array.from(copy.data)).toEqual(Array.from(a.grad!.data));
  });

  it('bad arguments are clear errors', () => {
    const z = logits(new Float32Array(12), 3, 4);
    expect(() => entropyForward(z, { temperature: 0 })).toThrow(/entropyForward: temperature must be a finite number > 0/);
    expect(() => entropyForward(z, { reduction: 'avg' as never })).toThrow(RangeError);
    expect(() => entropyForward(z, { out: z })).toThrow(/out must be undefined unless withGrad is true/);
    expect(() => entropyForward(z, { withGrad: true, out: logits(new Float32Array(8), 2, 4) })).toThrow(/out must be a \[3, 4\] matrix/);
    const buf = new Float32Array(16);
    expect(() => entropyForward(logits(buf.subarray(0, 12), 3, 4), { withGrad: true, out: logits(buf.subarray(4), 3, 4) }))
      .toThrow(/out\.data overlaps logits\.data without being exactly it/);
    expect(() => entropyForward(z, { weight: 1 } as never)).toThrow(/unknown option 'weight'/);
  });
});
