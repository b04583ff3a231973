// Cross-entropy on the CPU against the float64 reference, on fresh random data. Defined once and
// run for each kernel set: cross_entropy.test.ts (the dispatched kernels, AVX2 where the CPU has
// it) and cross_entropy_scalar.test.ts (the portable kernels, forced).
import { describe, expect, it } from 'vitest';
import {
  type DType,
  type Logits,
  crossEntropyBackward,
  crossEntropyForward,
  f16,
  bf16,
  logits,
} from 'fusedce';
import {
  f64ToBf16,
  f64ToF16,
  makeLogits,
  normal,
  randomLogits,
  randomTargets,
  reference,
  testRng,
  ulpDistance16,
  type RefOptions,
  type RefResult,
} from './reference.mjs';

const DTYPES: DType[] = ['f32', 'bf16', 'f16'];

// Shapes, each for a reason:
const SHAPES: [rows: number, vocab: number, why: string][] = [
  [1, 1, 'a single class: loss 0, gradient 0'],
  [3, 5, 'tiny: every element checked by hand-sized reference'],
  [7, 1000, 'unaligned rows and vocab (not a multiple of the 16 lanes)'],
  [13, 32001, 'several 4096-blocks with a ragged last block (32001 = 7·4096 + 3329)'],
  [4, 128256, 'Llama-3 vocabulary'],
  [2, 262144, 'largest spec vocabulary: 64 blocks merged, the summation-accuracy bar'],
  [1024, 512, 'many rows with a small vocab: several rows per thread task'],
];

const F32_GRAD_REL = 2e-6;
const SMALLEST_NORMAL = 2 ** -126;

/** Half an fp32 ulp of |v|: the largest rounding error of an fp32 result of that size. */
function halfUlp(v: number): number {
  const a = Math.abs(v);
  return a === 0 || !Number.isFinite(a) ? 0 : 2 ** (Math.floor(Math.log2(a)) - 24);
}

/**
 * Compares a gradient with the float64 reference: f32 within F32_GRAD_REL relative (plus the
 * smallest normal, for values that underflow); bf16/f16 within 1 ulp of the correctly rounded
 * float64 value.
 * extreme: rows whose logits span ±80 carry two rounding errors no fp32 kernel avoids, the fp32 lse
 * (|lse32 − lse64|, up to 4e-6 at lse ≈ 80) and the fp32 exponent argument z − lse (half an ulp of
 * |z − lse|, up to 8e-6 at |z − lse| ≈ 160); for such rows those are added to the tolerance.
 * fromLse32: a gradient computed from the forward's fp32 lse (the separate backward) inherits that
 * lse's error as a relative error of every p_j, on any row: |lse32 − lse64| is itself held to the
 * lse bar (1e-5) by expectMatches, and reached 1.24e-6 at lse ≈ 11.9 (seed 2031164563, bf16
 * logits), which with the argument's rounding made 2.2e-6 > F32_GRAD_REL. It is added then too.
 */
function expectGrad(
  ref: RefResult, lse: Float32Array, grad: Logits, rows: number, vocab: number, extremeValues?: Float32Array, fromLse32 = false,
): void {
  const extreme = extremeValues !== undefined;
  expect(grad.rows).toBe(rows);
  expect(grad.vocab).toBe(vocab);
  const V = vocab;
  if (grad.dtype === 'f32') {
    const g = grad.data as Float32Array;
    for (let i = 0; i < rows; i++) {
      const lseErr = extreme || fromLse32 ? Math.abs(lse[i]! - ref.lse[i]!) : 0;
      let worst = 0;
      let at = -1;
      let tolAt = 0;
      for (let j = 0; j < V; j++) {
        const r = ref.grad[i * V + j]!;
        const x = extreme ? extremeValues[i * V + j]! - lse[i]! : 0; // exp(x) = p_j, x rounded to fp32
        const rel = F32_GRAD_REL + lseErr + (extreme ? halfUlp(x) : 0);
        const excess = Math.abs(g[i * V + j]! - r) - rel * Math.abs(r) - SMALLEST_NORMAL;
        if (excess > worst) [worst, at, tolAt] = [excess, j, rel];
      }
      if (at >= 0) expect.fail(`row ${i} col ${at}: grad ${g[i * V + at]} vs float64 ${ref.grad[i * V + at]} (rel tol ${tolAt})`);
    }
  } else {
    const round = grad.dtype === 'bf16' ? f64ToBf16 : f64ToF16;
    const g = grad.data as Uint16Array;
    let worst = 0;
    let at = -1;
    for (let k = 0; k < g.length; k++) {
      const d = ulpDistance16(g[k]!, round(ref.grad[k]!));
      if (d > worst) [worst, at] = [d, k];
    }
    if (worst > 1) expect.fail(`${grad.dtype} grad element ${at}: ${worst} ulp from the correctly rounded float64 value ${ref.grad[at]}`);
  }
}

/** Compares a forward result (and optionally a gradient) with the float64 reference. */
function expectMatches(
  ref: RefResult,
  out: { loss: number; losses: Float32Array; lse: Float32Array; count: number },
  grad: Logits | undefined,
  opts: { rows: number; vocab: number; extremeValues?: Float32Array },
): void {
  expect(out.count).toBe(ref.count);
  expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(ref.loss) + 1e-12);
  let worstLoss = 0;
  let worstLse = 0;
  for (let i = 0; i < opts.rows; i++) {
    worstLoss = Math.max(worstLoss, Math.abs(out.losses[i]! - ref.losses[i]!) - 1e-6 * Math.abs(ref.losses[i]!));
    worstLse = Math.max(worstLse, Math.abs(out.lse[i]! - ref.lse[i]!));
  }
  expect(worstLoss).toBeLessThanOrEqual(1e-6); // per row: 1e-6 relative + 1e-6 absolute (near-zero losses)
  expect(worstLse).toBeLessThanOrEqual(1e-5);
  if (grad) expectGrad(ref, out.lse, grad, opts.rows, opts.vocab, opts.extremeValues);
}

/** Registers every cross-entropy test under a heading naming the kernels (`isa`). */
export function crossEntropySuite(isa: string): void {
  describe(`${isa} kernels`, () => {
    describe('crossEntropyForward / crossEntropyBackward vs float64 reference', () => {
      for (const [rows, vocab, why] of SHAPES) {
        for (const dtype of DTYPES) {
          it(`${rows}×${vocab} ${dtype} (${why})`, () => {
            const r = testRng(`shape-${rows}-${vocab}-${dtype}`);
            const x = randomLogits(r, rows, vocab);
            const targets = randomTargets(r, rows, vocab, rows > 4 ? 0.2 : 0);
            const { z, values } = makeLogits(x, rows, vocab, dtype);
            const ref = reference(values, targets, rows, vocab);
            const out = crossEntropyForward(z, targets, { withGrad: true });
            expectMatches(ref, out, out.grad, { rows, vocab });
            // separate backward from the saved (fp32) lse: the same reference bars, plus that
            // lse's own error (see expectGrad). It is not bitwise the fused gradient, which
            // rescales by exp(m_b − lse) with lse in double.
            const g = crossEntropyBackward(z, targets, out.lse);
            expect(g.dtype).toBe(dtype);
            expectGrad(ref, out.lse, g, rows, vocab, undefined, true);
            // invariants
            for (let i = 0; i < rows; i++) {
              if (targets[i] === -100) {
                expect(out.losses[i]).toBe(0);
                continue;
              }
              let max = -Infinity;
              for (let j = 0; j < vocab; j++) max = Math.max(max, values[i * vocab + j]!);
              expect(out.lse[i]).toBeGreaterThanOrEqual(max);
            }
          });
        }
      }

      for (const reduction of ['mean', 'sum', 'none'] as const) {
        for (const gradDtype of DTYPES) {
          it(`reduction '${reduction}', bf16 logits, ${gradDtype} gradient, gradOutput 0.37`, () => {
            const r = testRng(`reduction-${reduction}-${gradDtype}`);
            const [rows, vocab] = [9, 5003];
            const x = randomLogits(r, rows, vocab);
            const targets = randomTargets(r, rows, vocab, 0.3);
            const { z, values } = makeLogits(x, rows, vocab, 'bf16');
            const ref = reference(values, targets, rows, vocab, { reduction, gradOutput: 0.37 });
            const out = crossEntropyForward(z, targets, { reduction, withGrad: true, gradDtype, gradOutput: 0.37 });
            expect(out.grad!.dtype).toBe(gradDtype);
            expectMatches(ref, out, out.grad, { rows, vocab });
            const g = crossEntropyBackward(z, targets, out.lse, { reduction, gradDtype, gradOutput: 0.37 });
            expect(g.dtype).toBe(gradDtype);
            expectGrad(ref, out.lse, g, rows, vocab, undefined, true);
          });
        }
      }

      it("per-row gradOutput with reduction 'none'", () => {
        const r = testRng('per-row-go');
        const [rows, vocab] = [6, 777];
        const x = randomLogits(r, rows, vocab);
        const targets = randomTargets(r, rows, vocab, 0.2);
        const go = Float32Array.from({ length: rows }, () => r() * 4 - 2);
        const { z, values } = makeLogits(x, rows, vocab, 'f32');
        const out = crossEntropyForward(z, targets, { reduction: 'none' });
        const ref = reference(values, targets, rows, vocab, { reduction: 'none', gradOutput: go });
        const g = crossEntropyBackward(z, targets, out.lse, { reduction: 'none', gradOutput: go });
        expectMatches(ref, out, g, { rows, vocab });
      });

      describe('ignored rows', () => {
        for (const [label, fraction] of [['none', 0], ['some', 0.5], ['all', 1]] as const) {
          for (const reduction of ['mean', 'sum'] as const) {
            it(`${label} ignored, ${reduction}`, () => {
              const r = testRng(`ignored-${label}-${reduction}`);
              const [rows, vocab] = [17, 3001];
              const x = randomLogits(r, rows, vocab);
              const targets = randomTargets(r, rows, vocab, fraction, -1);
              const { z, values } = makeLogits(x, rows, vocab, 'f32');
              const ref = reference(values, targets, rows, vocab, { reduction, ignoreIndex: -1 });
              const out = crossEntropyForward(z, targets, { reduction, ignoreIndex: -1, withGrad: true });
              expectMatches(ref, out, out.grad, { rows, vocab });
              const g = out.grad!.data as Float32Array;
              for (let i = 0; i < rows; i++) {
                if (targets[i] !== -1) continue;
                expect(out.losses[i]).toBe(0);
                for (let j = 0; j < vocab; j++) expect(g[i * vocab + j]).toBe(0);
              }
              if (fraction === 1) {
                expect(out.count).toBe(0);
                expect(out.loss).toBe(0); // PyTorch gives NaN here; fusedce gives 0 by design
              }
            });
          }
        }
      });

      it('gradient rows sum to ~0 and lse ≥ max logit (bf16 inputs, Llama-3 vocab)', () => {
        const r = testRng('invariants');
        const [rows, vocab] = [3, 128256];
        const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
        const targets = randomTargets(r, rows, vocab);
        const out = crossEntropyForward(z, targets, { withGrad: true, gradDtype: 'f32', reduction: 'sum' });
        const g = out.grad!.data as Float32Array;
        for (let i = 0; i < rows; i++) {
          let s = 0;
          let max = -Infinity;
          for (let j = 0; j < vocab; j++) {
            s += g[i * vocab + j]!;
            max = Math.max(max, values[i * vocab + j]!);
          }
          expect(Math.abs(s)).toBeLessThan(1e-6);
          expect(out.lse[i]).toBeGreaterThanOrEqual(max);
        }
      });

      it('is bitwise identical for threads 1, 2 and 7 and across runs', () => {
        const r = testRng('determinism');
        const [rows, vocab] = [11, 40000];
        const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
        const targets = randomTargets(r, rows, vocab, 0.1);
        const runs = [1, 2, 7, 2].map((threads) => crossEntropyForward(z, targets, { withGrad: true, threads }));
        for (const o of runs.slice(1)) {
          expect(o.loss).toBe(runs[0]!.loss);
          expect(Buffer.from(o.losses.buffer).equals(Buffer.from(runs[0]!.losses.buffer))).toBe(true);
          expect(Buffer.from(o.lse.buffer).equals(Buffer.from(runs[0]!.lse.buffer))).toBe(true);
          expect(Buffer.from(o.grad!.data.buffer).equals(Buffer.from(runs[0]!.grad!.data.buffer))).toBe(true);
        }
      });
    });

    describe('small batches: a row split over threads', () => {
      // With fewer rows than two per thread, each row's pieces are spread over the pool and
      // folded in order afterwards: bitwise the one-thread (whole-row) result.
      const same = (a: ArrayBufferView, b: ArrayBufferView) =>
        expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))).toBe(true);
      for (const [rows, vocab, dtype, gradDtype] of [
        [1, 128256, 'bf16', 'bf16'],
        [3, 20001, 'f32', 'f32'],
        [2, 12289, 'f16', 'f32'],
        [1, (1 << 20) + 3, 'bf16', 'bf16'], // past the one-exp path's scratch limit
      ] as const) {
        it(`${rows}×${vocab} ${dtype} → ${gradDtype}: forward, fused, backward and in place match threads 1`, () => {
          const r = testRng(`split-${rows}-${vocab}-${dtype}`);
          const x = randomLogits(r, rows, vocab);
          const targets = randomTargets(r, rows, vocab);
          if (rows === 3) targets[1] = -100;
          const { z, values } = makeLogits(x, rows, vocab, dtype);
          const go = Float32Array.from({ length: rows }, () => r() * 2 - 1);
          for (const [opts, bopts] of [
            [{}, {}],
            [{ reduction: 'none', gradOutput: 0.37 }, { reduction: 'none', gradOutput: go }],
          ] as const) {
            const one = crossEntropyForward(z, targets, { ...opts, withGrad: true, gradDtype, threads: 1 });
            const bwdOne = crossEntropyBackward(z, targets, one.lse, { ...bopts, gradDtype, threads: 1 });
            for (const threads of [2, 5]) {
              const o = crossEntropyForward(z, targets, { ...opts, withGrad: true, gradDtype, threads });
              expect(o.loss).toBe(one.loss);
              same(o.losses, one.losses);
              same(o.lse, one.lse);
              same(o.grad!.data, one.grad!.data);
              same(crossEntropyBackward(z, targets, one.lse, { ...bopts, gradDtype, threads }).data, bwdOne.data);
            }
            if (gradDtype === dtype) {
              const copy = { ...z, data: z.data.slice() } as Logits;
              crossEntropyForward(copy, targets, { ...opts, withGrad: true, inPlace: true, threads: 2 });
              same(copy.data, one.grad!.data);
              const copy2 = { ...z, data: z.data.slice() } as Logits;
              crossEntropyBackward(copy2, targets, one.lse, { ...bopts, inPlace: true, threads: 2 });
              same(copy2.data, bwdOne.data);
            }
          }
          // repeated: whichever thread runs which piece (the pool's workers take pieces when
          // they are free), the result is the same
          const fresh = crossEntropyForward(z, targets, { withGrad: true, gradDtype, threads: 1 });
          for (let k = 0; k < 40; k++) {
            const o = crossEntropyForward(z, targets, { withGrad: true, gradDtype, threads: 2 });
            same(o.lse, fresh.lse);
            same(o.grad!.data, fresh.grad!.data);
          }
          // and against the float64 reference
          const ref = reference(values, targets, rows, vocab);
          const out = crossEntropyForward(z, targets, { withGrad: true, threads: 2 });
          expectMatches(ref, out, vocab < 1 << 20 ? out.grad : undefined, { rows, vocab });
        });
      }
    });

    describe('extreme logits', () => {
      for (const dtype of DTYPES) {
        it(`±80 uniform, one-hot-like rows and all-equal rows (${dtype})`, () => {
          const r = testRng(`extreme-${dtype}`);
          const [rows, vocab] = [6, 10007];
          const x = new Float32Array(rows * vocab);
          const targets = randomTargets(r, rows, vocab);
          for (let j = 0; j < vocab; j++) {
            x[j] = r() * 160 - 80; // row 0: uniform in [−80, 80]
            x[vocab + j] = j === targets[1] ? 80 : -80; // row 1: one-hot-like, target is the spike
            x[2 * vocab + j] = j === 5 ? 80 : 0; // row 2: one spike that is not the target
            x[3 * vocab + j] = 3.25; // row 3: all equal
            x[4 * vocab + j] = -80; // row 4: all equal, very negative
            x[5 * vocab + j] = (j % 2 ? 1 : -1) * 64; // row 5: two plateaus
          }
          targets[2] = 6;
          const { z, values } = makeLogits(x, rows, vocab, dtype);
          const ref = reference(values, targets, rows, vocab);
          const out = crossEntropyForward(z, targets, { withGrad: true, gradDtype: 'f32' });
          expectMatches(ref, out, out.grad, { rows, vocab, extremeValues: values });
          const outLow = crossEntropyForward(z, targets, { withGrad: true, gradDtype: dtype === 'f32' ? 'bf16' : dtype });
          expectMatches(ref, outLow, outLow.grad, { rows, vocab });
          expect(out.losses[3]).toBeCloseTo(Math.log(vocab), 5);
          expect(Math.abs(out.losses[1]!)).toBeLessThan(1e-6);
        });
      }

      for (const dtype of DTYPES) {
        it(`confident rows (1 − p_t from 1e-4 to 1e-9): loss and target gradient keep their digits (${dtype})`, () => {
          // Here the loss ≈ 1 − p_t ≪ 1. Computed as lse − z_t (or the gradient as p_t − 1) in fp32 it
          // keeps only ~6e-8 / (1 − p_t) relative accuracy (≈ 6% at 1e-6); the kernels use
          // log1p(S≠t / e_t) and −Σ_{j≠t} p_j, which keep full precision.
          const r = testRng(`confident-${dtype}`);
          const [rows, vocab] = [7, 1000];
          const x = new Float32Array(rows * vocab);
          const targets = randomTargets(r, rows, vocab);
          // others ≈ −14, target 2 … 14: 1 − p_t ≈ 1000·e^(−14 − z_t) from 1e-4 to 1e-9, while lse
          // (≈ z_t) stays below 16, the range the 2e-6 gradient bar is stated for
          for (let i = 0; i < rows; i++) {
            for (let j = 0; j < vocab; j++) x[i * vocab + j] = normal(r) * 0.5 - 14;
            x[i * vocab + targets[i]!] = 2 + 2 * i;
          }
          const { z, values } = makeLogits(x, rows, vocab, dtype);
          const ref = reference(values, targets, rows, vocab, { reduction: 'sum' });
          for (const gradDtype of DTYPES) {
            const out = crossEntropyForward(z, targets, { withGrad: true, reduction: 'sum', gradDtype });
            expectMatches(ref, out, out.grad, { rows, vocab });
          }
          expect(-ref.grad[6 * vocab + targets[6]!]!).toBeLessThan(1e-8); // the sweep reaches tiny 1 − p_t
        });
      }

      it('a NaN or +Inf logit makes its row NaN and leaves the others alone', () => {
        const [rows, vocab] = [6, 50];
        const x = randomLogits(testRng('nan'), rows, vocab);
        x[0 * vocab + 7] = NaN;
        x[1 * vocab + 3] = Infinity;
        // row 4: a NaN among −Inf (masked) logits, so no block max sees it; row 5: a NaN in the 16-lane tail
        x.fill(-Infinity, 4 * vocab, 5 * vocab);
        x[4 * vocab + 4] = 0;
        x[4 * vocab + 30] = NaN;
        x[5 * vocab + 49] = NaN;
        const targets = new Int32Array([1, 2, 3, 4, 4, 5]);
        for (const dtype of DTYPES) {
          const { z } = makeLogits(x, rows, vocab, dtype);
          const out = crossEntropyForward(z, targets, { withGrad: true, gradDtype: 'f32' });
          const g = out.grad!.data as Float32Array;
          for (const i of [0, 1, 4, 5]) {
            expect(out.losses[i]).toBeNaN();
            expect(out.lse[i]).toBeNaN();
            for (let j = 0; j < vocab; j++) expect(g[i * vocab + j]).toBeNaN();
          }
          for (const i of [2, 3]) {
            expect(Number.isFinite(out.losses[i])).toBe(true);
            for (let j = 0; j < vocab; j++) expect(Number.isFinite(g[i * vocab + j])).toBe(true);
          }
          expect(out.loss).toBeNaN();
        }
      });

      it('−Inf logits mask classes like PyTorch; a −Inf target gives +Inf; an all −Inf row gives NaN', () => {
        const [rows, vocab] = [3, 40];
        const x = randomLogits(testRng('neginf'), rows, vocab);
        for (let j = 0; j < vocab; j += 3) x[j] = -Infinity; // row 0: every third class masked
        x[vocab + 9] = -Infinity; // row 1: its target is masked
        for (let j = 0; j < vocab; j++) x[2 * vocab + j] = -Infinity; // row 2: everything masked
        const targets = new Int32Array([1, 9, 0]);
        const { z, values } = makeLogits(x, rows, vocab, 'f32');
        const out = crossEntropyForward(z, targets, { withGrad: true, reduction: 'none' });
        const ref = reference(values, targets, 1, vocab, { reduction: 'none' });
        expect(Math.abs(out.losses[0]! - ref.losses[0]!)).toBeLessThan(1e-6 * ref.losses[0]!);
        const g = out.grad!.data as Float32Array;
        for (let j = 0; j < vocab; j += 3) expect(g[j]).toBe(0);
        expect(out.losses[1]).toBe(Infinity);
        expect(g[vocab + 9]).toBeCloseTo(-1, 6); // p_t = 0 → gradient −1
        expect(out.losses[2]).toBeNaN();
      });
    });

    describe('gradient by finite differences', () => {
      it('central differences of the loss agree with the analytic gradient (f32, 3×7, all reductions)', () => {
        const r = testRng('fd');
        const [rows, vocab] = [3, 7];
        // values on a 2^-10 grid and h = 2^-7, so z ± h is exact in f32
        const x = Float32Array.from({ length: rows * vocab }, () => Math.round((r() * 6 - 3) * 1024) / 1024);
        const targets = new Int32Array([2, 0, 6]);
        const h = 2 ** -7;
        for (const reduction of ['mean', 'sum'] as const) {
          const out = crossEntropyForward(logits(x, rows, vocab), targets, { reduction, withGrad: true });
          const g = out.grad!.data as Float32Array;
          for (let k = 0; k < x.length; k++) {
            const xp = x.slice();
            xp[k] = x[k]! + h;
            const xm = x.slice();
            xm[k] = x[k]! - h;
            const lp = crossEntropyForward(logits(xp, rows, vocab), targets, { reduction }).loss;
            const lm = crossEntropyForward(logits(xm, rows, vocab), targets, { reduction }).loss;
            const fd = (lp - lm) / (2 * h);
            expect(Math.abs(fd - g[k]!)).toBeLessThan(1e-4);
          }
        }
      });
    });

    describe('outputs: inPlace, out, gradDtype', () => {
      it('inPlace writes the same gradient over the logits (forward and backward)', () => {
        const r = testRng('inplace');
        // 8 rows: one thread takes them in runs of 2, whose gradient writes trail the next row's reads
        const [rows, vocab] = [8, 9001];
        const x = randomLogits(r, rows, vocab);
        const targets = randomTargets(r, rows, vocab, 0.2);
        for (const dtype of DTYPES) {
          const { z } = makeLogits(x, rows, vocab, dtype);
          const expected = crossEntropyForward(z, targets, { withGrad: true });
          for (const threads of [1, 2]) {
            const copy = { ...z, data: z.data.slice() } as Logits;
            const fused = crossEntropyForward(copy, targets, { withGrad: true, inPlace: true, threads });
            expect(fused.grad!.data).toBe(copy.data);
            expect(Buffer.from(copy.data.buffer).equals(Buffer.from(expected.grad!.data.buffer))).toBe(true);
          }
          const copy2 = { ...z, data: z.data.slice() } as Logits;
          const separate = crossEntropyBackward(z, targets, expected.lse);
          const g = crossEntropyBackward(copy2, targets, expected.lse, { inPlace: true });
          expect(g.data).toBe(copy2.data);
          expect(Buffer.from(copy2.data.buffer).equals(Buffer.from(separate.data.buffer))).toBe(true);
        }
      });

      it('forward with withGrad writes into out (reused across calls) bitwise like a fresh array', () => {
        const r = testRng('forward-out');
        const [rows, vocab] = [3, 5000];
        const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
        const targets = randomTargets(r, rows, vocab);
        const fresh = crossEntropyForward(z, targets, { withGrad: true, gradDtype: 'f32' });
        const buf = new Float32Array(rows * vocab).fill(NaN);
        const out = logits(buf, rows, vocab);
        for (let k = 0; k < 2; k++) {
          const res = crossEntropyForward(z, targets, { withGrad: true, out });
          expect(res.grad!.data).toBe(buf);
          expect(res.grad!.dtype).toBe('f32');
          expect(Buffer.from(buf.buffer).equals(Buffer.from(fresh.grad!.data.buffer))).toBe(true);
        }
      });

      it('out receives the gradient in its own dtype and is returned', () => {
        const r = testRng('out');
        const [rows, vocab] = [4, 1234];
        const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
        const targets = randomTargets(r, rows, vocab);
        const { lse } = crossEntropyForward(z, targets);
        for (const dtype of DTYPES) {
          const buf = dtype === 'f32' ? new Float32Array(rows * vocab) : new Uint16Array(rows * vocab);
          const out = logits(buf, rows, vocab, dtype);
          const g = crossEntropyBackward(z, targets, lse, { out });
          expect(g.data).toBe(buf);
          expect(g.dtype).toBe(dtype);
          expectGrad(reference(values, targets, rows, vocab), lse, g, rows, vocab, undefined, true);
        }
      });

      it('conversions round-trip through the public bf16 / f16 helpers', () => {
        const x = new Float32Array([0, -0, 1, -2.5, 65504, 1e-8, 3.3e38]);
        expect(Array.from(bf16.toFloat32(bf16.fromFloat32(x))).slice(0, 4)).toEqual([0, -0, 1, -2.5]);
        expect(Array.from(f16.toFloat32(f16.fromFloat32(x))).slice(0, 5)).toEqual([0, -0, 1, -2.5, 65504]);
      });
    });
  });
}
