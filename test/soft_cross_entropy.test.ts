// Soft-target cross-entropy (distillation), KL divergence (forward and reverse) and entropy on the
// CPU, against the float64 reference in loss_reference.mjs on fresh random data.
import { describe, expect, it } from 'vitest';
import {
  type DType,
  entropy,
  entropyAsync,
  klDivergenceForward,
  klDivergenceForwardAsync,
  logits,
  softCrossEntropyBackward,
  softCrossEntropyForward,
  softCrossEntropyForwardAsync,
} from 'fusedce';
import { makeLogits, randomLogits, testRng, toFloat32 } from './reference.mjs';
import { refEntropy, refSoft, worstRatio } from './loss_reference.mjs';

// Shapes, each for a reason:
const SHAPES: [rows: number, vocab: number, why: string][] = [
  [3, 5, 'tiny'],
  [7, 1000, 'unaligned rows and vocab'],
  [4, 9001, 'three 4096-blocks, the last ragged'],
  [2, 128256, 'Llama-3 vocabulary'],
];

/**
 * Gradient tolerance: 3e-6 of the largest |gradient| and relative, plus what no fp32 kernel avoids:
 * the rounding of the exponent argument x − lse (and of the fp32 lse), up to 2⁻²³·|x| relative in
 * each probability, where |x| (the logits over T, of both inputs) reaches `argMax`.
 */
function gradTol(ref: Float64Array, argMax = 0) {
  let m = 0;
  for (const v of ref) m = Math.max(m, Math.abs(v));
  return { atol: 3e-6 * m + m * argMax * 2 ** -22 + 1e-12, rtol: 3e-6 };
}

function maxAbs(...xs: ArrayLike<number>[]): number {
  let m = 0;
  for (const x of xs) for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i]!)) m = Math.max(m, Math.abs(x[i]!));
  return m;
}

/** Random probability rows (f32, each summing to 1 in double), some all 0 when `zeroRows`. */
function randomProbs(r: () => number, rows: number, vocab: number, zeroRows = false): Float32Array {
  const q = new Float32Array(rows * vocab);
  for (let i = 0; i < rows; i++) {
    if (zeroRows && i % 3 === 1) continue;
    let s = 0;
    for (let j = 0; j < vocab; j++) s += q[i * vocab + j] = r() < 0.5 ? 0 : r() ** 4;
    if (s === 0) s = q[i * vocab + Math.floor(r() * vocab)] = 1;  // every draw was 0: one-hot instead
    for (let j = 0; j < vocab; j++) q[i * vocab + j] = q[i * vocab + j]! / s;
  }
  return q;
}

function lossTol(ref: number) {
  return 3e-6 * Math.abs(ref) + 2e-6;
}

describe('soft cross-entropy vs float64 reference (CPU)', () => {
  for (const [rows, vocab, why] of SHAPES) {
    for (const dtype of (vocab > 10000 ? ['bf16'] : ['f32', 'bf16', 'f16']) as DType[]) {
      for (const [T, tSquared] of [[1, false], [2.5, true], [0.3, false]] as const) {
        it(`teacher logits, T=${T}${tSquared ? ' ×T²' : ''}, ${rows}×${vocab} ${dtype} (${why})`, () => {
          const r = testRng(`soft ${rows} ${vocab} ${dtype} ${T}`);
          const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
          const { z: u, values: uv } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
          const ref = refSoft(values, uv, rows, vocab, { op: 'soft', T, factor: tSquared ? T * T : 1 });
          const out = softCrossEntropyForward(z, u, { temperature: T, tSquared, withGrad: true, gradDtype: 'f32' });
          expect(worstRatio(out.losses, ref.losses, 2e-6, 3e-6).worst).toBeLessThanOrEqual(1);
          expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(lossTol(ref.loss));
          const gt = gradTol(ref.grad, maxAbs(values, uv) / T);
          expect(worstRatio(toFloat32(out.grad!), ref.grad, gt.atol, gt.rtol).worst).toBeLessThanOrEqual(1);
          // the fused gradient comes from pass 1's exps and the double lse's, the separate backward
          // from the fp32 lse (as plain cross-entropy): each within the tolerance, not bitwise
          const back = softCrossEntropyBackward(z, u, out.lse, { temperature: T, tSquared, gradDtype: 'f32' });
          expect(worstRatio(toFloat32(back), ref.grad, gt.atol, gt.rtol).worst).toBeLessThanOrEqual(1);
        });
      }
      it(`probability targets with all-zero (ignored) rows, ${rows}×${vocab} ${dtype} (${why})`, () => {
        const r = testRng(`probs ${rows} ${vocab} ${dtype}`);
        const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
        const q = randomProbs(r, rows, vocab, rows > 2);
        for (const reduction of ['mean', 'sum', 'none'] as const) {
          const ref = refSoft(values, q, rows, vocab, { op: 'soft', probs: true, reduction });
          const target = logits(q, rows, vocab);
          const out = softCrossEntropyForward(z, target, { targetKind: 'probs', reduction, withGrad: true, gradDtype: 'f32' });
          expect(out.count).toBe(ref.count);
          expect(worstRatio(out.losses, ref.losses, 2e-6, 3e-6).worst).toBeLessThanOrEqual(1);
          expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(lossTol(ref.loss));
          const gt = gradTol(ref.grad, maxAbs(values));
          expect(worstRatio(toFloat32(out.grad!), ref.grad, gt.atol, gt.rtol).worst).toBeLessThanOrEqual(1);
          // the fused gradient from pass 1's exps, the separate one from the fp32 lse: both within tolerance
          const back = softCrossEntropyBackward(z, target, out.lse, { targetKind: 'probs', reduction, gradDtype: 'f32' });
          expect(worstRatio(toFloat32(back), ref.grad, gt.atol, gt.rtol).worst).toBeLessThanOrEqual(1);
        }
      });
    }
  }

  it('one-hot probabilities give the hard-label cross-entropy', () => {
    const rows = 4, vocab = 300;
    const r = testRng('onehot');
    const z = logits(randomLogits(r, rows, vocab), rows, vocab);
    const q = new Float32Array(rows * vocab);
    for (let i = 0; i < rows; i++) q[i * vocab + ((i * 37) % vocab)] = 1;
    const soft = softCrossEntropyForward(z, logits(q, rows, vocab), { targetKind: 'probs', reduction: 'none' });
    for (let i = 0; i < rows; i++) {
      const zi = z.data[i * vocab + ((i * 37) % vocab)]!;
      expect(soft.losses[i]).toBeCloseTo(soft.lse[i]! - zi, 5);
    }
  });

  it('negative or non-finite probabilities are refused naming the element; rows need not sum to 1 (torch semantics)', () => {
    const z = logits(new Float32Array(6), 2, 3);
    const unnormalised = logits(new Float32Array([0.2, 0.3, 0.5, 0.5, 0.5, 0.5]), 2, 3);
    // −Σ q·log p with p uniform: Σq·ln 3 per row
    expect(softCrossEntropyForward(z, unnormalised, { targetKind: 'probs', reduction: 'none' }).losses[1]).toBeCloseTo(1.5 * Math.log(3), 6);
    const neg = logits(new Float32Array([0.2, 0.3, 0.5, -0.5, 1, 0.5]), 2, 3);
    expect(() => softCrossEntropyForward(z, neg, { targetKind: 'probs' })).toThrow(RangeError);
    const b16 = logits(new Uint16Array(6), 2, 3, 'bf16');
    expect(() => softCrossEntropyForward(z, b16, { targetKind: 'probs' })).toThrow(/target.dtype must be 'f32'/);
  });
});

describe('KL divergence vs float64 reference (CPU)', () => {
  for (const [rows, vocab, why] of SHAPES) {
    for (const dtype of (vocab > 10000 ? ['bf16'] : ['f32', 'bf16', 'f16']) as DType[]) {
      for (const direction of ['forward', 'reverse'] as const) {
        for (const T of [1, 2]) {
          it(`${direction}, T=${T}, ${rows}×${vocab} ${dtype} (${why})`, () => {
            const r = testRng(`kl ${direction} ${rows} ${vocab} ${dtype} ${T}`);
            const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
            const { z: u, values: uv } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'f32');
            const op = direction === 'forward' ? 'klForward' : 'klReverse';
            const ref = refSoft(values, uv, rows, vocab, { op, T });
            const out = klDivergenceForward(z, u, { direction, temperature: T, withGrad: true, gradDtype: 'f32' });
            expect(worstRatio(out.losses, ref.losses, 5e-6, 5e-6).worst).toBeLessThanOrEqual(1);
            expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(5e-6 * Math.abs(ref.loss) + 5e-6);
            const gt = gradTol(ref.grad, maxAbs(values, uv) / T);
            expect(worstRatio(toFloat32(out.grad!), ref.grad, gt.atol, gt.rtol).worst).toBeLessThanOrEqual(1);
            for (let i = 0; i < rows; i++) expect(out.losses[i]).toBeGreaterThanOrEqual(-1e-6);  // KL ≥ 0
          });
        }
      }
    }
  }

  it('the same buffer as model and reference is allowed (both are read only), but not in place', () => {
    const z = logits(Float32Array.of(1, 2, 3, 0, 0, 5), 2, 3);
    expect(klDivergenceForward(z, z, { withGrad: true }).loss).toBe(0);
    expect(() => klDivergenceForward(z, z, { withGrad: true, inPlace: true })).toThrow(/^klDivergenceForward: out.data overlaps another input/);
  });

  it('identical model and reference: KL exactly 0 and gradient exactly 0, both directions', () => {
    const rows = 5, vocab = 5000;
    const r = testRng('kl same');
    const x = randomLogits(r, rows, vocab);
    for (const direction of ['forward', 'reverse'] as const) {
      const out = klDivergenceForward(logits(x, rows, vocab), logits(x.slice(), rows, vocab), { direction, withGrad: true });
      expect(out.loss).toBe(0);
      for (const l of out.losses) expect(l).toBe(0);
      expect((out.grad!.data as Float32Array).every((v) => v === 0)).toBe(true);
    }
  });

  it('masked (−inf) logits in both rows add nothing; masked only in the model gives +inf forward KL', () => {
    const vocab = 6;
    const a = new Float32Array([1, 2, -Infinity, 0.5, -Infinity, 3]);
    const b = new Float32Array([0.5, 2, -Infinity, 1, -Infinity, 2]);
    const fwd = klDivergenceForward(logits(a, 1, vocab), logits(b, 1, vocab), { withGrad: true });
    const ref = refSoft(a, b, 1, vocab, { op: 'klForward' });
    expect(fwd.loss).toBeCloseTo(ref.loss, 6);
    expect((fwd.grad!.data as Float32Array).every(Number.isFinite)).toBe(true);
    const c = b.slice();
    c[2] = 1;  // the reference puts mass where the model has none
    expect(klDivergenceForward(logits(a, 1, vocab), logits(c, 1, vocab)).loss).toBe(Infinity);
    expect(Number.isFinite(klDivergenceForward(logits(a, 1, vocab), logits(c, 1, vocab), { direction: 'reverse' }).loss)).toBe(true);
  });

  it('small and large temperatures: T → 0 and T → ∞ stay finite and match the reference', () => {
    const rows = 3, vocab = 2000;
    const r = testRng('kl T');
    const x = randomLogits(r, rows, vocab), y = randomLogits(r, rows, vocab);
    for (const T of [0.01, 1000]) {
      for (const direction of ['forward', 'reverse'] as const) {
        const ref = refSoft(x, y, rows, vocab, { op: direction === 'forward' ? 'klForward' : 'klReverse', T });
        const out = klDivergenceForward(logits(x, rows, vocab), logits(y, rows, vocab), { direction, temperature: T });
        expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(ref.loss) + 1e-6);
      }
      const ref = refSoft(x, y, rows, vocab, { op: 'soft', T });
      const out = softCrossEntropyForward(logits(x, rows, vocab), logits(y, rows, vocab), { temperature: T });
      expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(ref.loss) + 1e-6);
    }
  });

  it('thread count and async do not change a bit', async () => {
    const rows = 9, vocab = 4099;
    const r = testRng('kl threads');
    const z = logits(randomLogits(r, rows, vocab), rows, vocab), u = logits(randomLogits(r, rows, vocab), rows, vocab);
    const one = klDivergenceForward(z, u, { direction: 'reverse', withGrad: true, threads: 1 });
    const many = klDivergenceForward(z, u, { direction: 'reverse', withGrad: true, threads: 3 });
    const asy = await klDivergenceForwardAsync(z, u, { direction: 'reverse', withGrad: true });
    const s1 = softCrossEntropyForward(z, u, { withGrad: true, threads: 1 });
    const s2 = await softCrossEntropyForwardAsync(z, u, { withGrad: true, threads: 4 });
    expect(s2.loss).toBe(s1.loss);
    for (const o of [many, asy]) {
      expect(o.loss).toBe(one.loss);
      expect(Buffer.from(o.grad!.data.buffer).equals(Buffer.from(one.grad!.data.buffer))).toBe(true);
    }
  });

  it('bad input is a clear error naming the argument', () => {
    const z = logits(new Float32Array(6), 2, 3), u = logits(new Float32Array(9), 3, 3);
    expect(() => klDivergenceForward(z, u)).toThrow(/refLogits must be a \[2, 3\] matrix like logits/);
    expect(() => klDivergenceForward(z, z, { direction: 'sideways' as never })).toThrow(/direction must be 'forward' \| 'reverse'/);
    expect(() => klDivergenceForward(z, z, { temperature: 0 })).toThrow(/temperature must be a finite number > 0/);
    expect(() => softCrossEntropyForward(z, z, { temperature: -1 })).toThrow(RangeError);
    expect(() => softCrossEntropyForward(z, z, { targetKind: 'hard' as never })).toThrow(/targetKind/);
    expect(() => softCrossEntropyBackward(z, z, new Float32Array(3))).toThrow(/lse must be of length rows \(2\)/);
    expect(() => klDivergenceForward(z, z, { tSquared: true } as never)).toThrow(/unknown option 'tSquared'/);
    expect(() => softCrossEntropyForward(z, z, { tSquared: 1 } as never)).toThrow(/tSquared must be a boolean/);
    expect(() => softCrossEntropyForward(z, z, { reduction: 'avg' } as never)).toThrow(/reduction must be 'mean' \| 'sum' \| 'none'/);
    expect(() => softCrossEntropyForward(z, z, { withGrad: 'yes' } as never)).toThrow(/withGrad must be a boolean/);
    expect(() => softCrossEntropyForward(z, z, { gradOutput: NaN })).toThrow(/gradOutput must be a finite number/);
    expect(() => softCrossEntropyForward(z, z, { threads: 0 })).toThrow(/threads must be an integer/);
    expect(() => softCrossEntropyForward(z, 3 as never)).toThrow(/^softCrossEntropyForward: target/);
    const lse = new Float32Array(2);
    expect(() => softCrossEntropyBackward(z, z, lse, { gradOutput: new Float32Array(2) })).toThrow(/gradOutput must be a number with reduction 'mean'/);
    expect(() => softCrossEntropyBackward(z, z, lse, { reduction: 'none', gradOutput: new Float32Array(3) })).toThrow(/gradOutput must be of length rows \(2\)/);
    expect(() => softCrossEntropyBackward(z, z, lse, { gradOutput: '1' as never })).toThrow(TypeError);
    expect(() => entropy(z, { temperature: 0 })).toThrow(/^entropy: temperature must be a finite number > 0/);
    expect(() => entropy({} as never)).toThrow(/^entropy: logits/);
    expect(() => entropy(z, { threads: 1.5 })).toThrow(/threads/);
  });
});

describe('entropy vs float64 reference (CPU)', () => {
  for (const [rows, vocab, why] of SHAPES) {
    it(`${rows}×${vocab} bf16, T = 1 and 0.5 (${why})`, async () => {
      const r = testRng(`entropy ${rows} ${vocab}`);
      const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
      for (const T of [1, 0.5]) {
        const ref = refEntropy(values, rows, vocab, T);
        const out = entropy(z, { temperature: T });
        expect(worstRatio(out, ref, 1e-6, 3e-6).worst).toBeLessThanOrEqual(1);
        expect(Buffer.from((await entropyAsync(z, { temperature: T, threads: 1 })).buffer).equals(Buffer.from(out.buffer))).toBe(true);
      }
    });
  }
  it('uniform logits: log V; one dominant logit: ≈ 0', () => {
    const vocab = 1000;
    expect(entropy(logits(new Float32Array(vocab), 1, vocab))[0]).toBeCloseTo(Math.log(vocab), 5);
    const x = new Float32Array(vocab);
    x[3] = 100;
    expect(entropy(logits(x, 1, vocab))[0]).toBeLessThan(1e-30);
  });
});
