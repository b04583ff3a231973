// Cross-entropy options (label smoothing, class weights, z-loss, softcap, logit scale, focal, eval
// statistics) against the float64 reference in loss_reference.mjs, on fresh random data.
// One suite for every backend: the CPU kernels (cross_entropy_options.test.ts) and the CUDA ones
// (cross_entropy_options_cuda.test.ts, on a GPU or the emulation).
import { describe, expect, it } from 'vitest';
import { type DType, crossEntropyBackward, crossEntropyForward, crossEntropyForwardAsync, logits } from 'fusedce';
import { makeLogits, normal, randomLogits, randomTargets, testRng, toFloat32 } from './reference.mjs';
import { refCrossEntropy, worstRatio } from './loss_reference.mjs';

// Shapes, each for a reason:
const SHAPES: [rows: number, vocab: number, why: string][] = [
  [3, 5, 'tiny: every element against the reference'],
  [7, 1000, 'unaligned rows and vocab (not a multiple of the 16 lanes)'],
  [5, 9001, 'three 4096-blocks, the last ragged: block folds of every summary'],
  [2, 128256, 'Llama-3 vocabulary'],
];

type Opts = { labelSmoothing?: number; weight?: Float32Array; zLoss?: number; softcap?: number; logitScale?: number; focalGamma?: number };
const CASES: [string, (r: () => number, vocab: number) => Opts][] = [
  ['labelSmoothing 0.1', () => ({ labelSmoothing: 0.1 })],
  ['class weights', (r, v) => ({ weight: Float32Array.from({ length: v }, () => 0.2 + 2 * r()) })],
  // torch accepts any finite weights; the mean divides by Σ w[target] whatever its sign
  ['negative class weights', (r, v) => ({ weight: Float32Array.from({ length: v }, () => 3 * r() - 1) })],
  // focal loss: weight as α per class; with softcap and scale (allowed), never with smoothing or z-loss
  ['focal γ = 2', () => ({ focalGamma: 2 })],
  ['focal γ = 0.5 + α weights + softcap 20 + logitScale 1.2', (r, v) => ({ focalGamma: 0.5, weight: Float32Array.from({ length: v }, () => 0.25 + r()), softcap: 20, logitScale: 1.2 })],
  ['negative weights + labelSmoothing 0.1', (r, v) => ({ labelSmoothing: 0.1, weight: Float32Array.from({ length: v }, () => (r() < 0.5 ? -0.5 - r() : 0.5 + r())) })],
  ['labelSmoothing 0.2 + weights with zeros', (r, v) => ({ labelSmoothing: 0.2, weight: Float32Array.from({ length: v }, () => (r() < 0.3 ? 0 : r())) })],
  ['zLoss 1e-2', () => ({ zLoss: 1e-2 })],
  // these run on the plain driver with the scaled block kernels (no smoothing, softcap or stats)
  ['logitScale 0.6 + class weights + zLoss 1e-3', (r, v) => ({ logitScale: 0.6, weight: Float32Array.from({ length: v }, () => 0.2 + 2 * r()), zLoss: 1e-3 })],
  ['logitScale −1.3 (reversed logits)', () => ({ logitScale: -1.3 })],
  ['focal γ = 2 + logitScale 2', () => ({ focalGamma: 2, logitScale: 2 })],
  ['softcap 5 after logitScale 1.7', () => ({ softcap: 5, logitScale: 1.7 })],
  ['everything at once', (r, v) => ({ labelSmoothing: 0.05, weight: Float32Array.from({ length: v }, () => r()), zLoss: 1e-3, softcap: 15, logitScale: 0.9 })],
];

/** Loss tolerance: fp32 output of a value computed in double from ≤ 2-ulp exps and sums. */
const LOSS = { atol: 2e-6, rtol: 2e-6 };

/**
 * Gradient tolerance: 2e-6 of the largest |gradient| and relative, plus the rounding of the fp32
 * exponent argument x − lse (and of the fp32 lse) that no fp32 kernel avoids, up to 2⁻²³·|x|
 * relative in each probability, |x| (the transformed logits) reaching `argMax`.
 */
function gradTol(ref: Float64Array, argMax = 0): { atol: number; rtol: number } {
  let m = 0;
  for (const v of ref) m = Math.max(m, Math.abs(v));
  return { atol: 2e-6 * m + m * argMax * 2 ** -22 + 1e-12, rtol: 2e-6 };
}

export function optionsSuite(label: string): void {
describe(`cross-entropy options vs float64 reference (${label})`, () => {
  for (const [rows, vocab, why] of SHAPES) {
    for (const [name, make] of CASES) {
      for (const dtype of (vocab > 10000 ? ['bf16'] : ['f32', 'bf16', 'f16']) as DType[]) {
        for (const reduction of ['mean', 'sum', 'none'] as const) {
          if (vocab > 10000 && reduction !== 'mean') continue;
          it(`${name}, ${rows}×${vocab} ${dtype} ${reduction} (${why})`, () => {
            const r = testRng(`opt ${name} ${rows} ${vocab} ${dtype} ${reduction}`);
            const x = randomLogits(r, rows, vocab);
            const { z, values } = makeLogits(x, rows, vocab, dtype);
            const targets = randomTargets(r, rows, vocab, rows > 3 ? 0.25 : 0);
            const o = make(r, vocab);
            const ref = refCrossEntropy(values, rows, vocab, targets, { ...o, reduction });
            const out = crossEntropyForward(z, targets, { ...o, reduction, withGrad: true, gradDtype: 'f32', stats: true });
            expect(worstRatio(out.losses, ref.losses, LOSS.atol, LOSS.rtol).worst).toBeLessThanOrEqual(1);
            expect(worstRatio(out.lse, ref.lse, 1e-6, 1e-6).worst).toBeLessThanOrEqual(1);
            // the reduced loss within the rows' own tolerances, summed and reduced: with weights of
            // both signs the weighted mean Σ w·ℓ / Σ w cancels, so its error is relative to the terms
            let terms = 0;
            for (let i = 0; i < rows; i++) if (targets[i] !== -100) terms += LOSS.atol + LOSS.rtol * Math.abs(ref.losses[i]!);
            const norm = reduction === 'mean' ? 1 / Math.max(Math.abs(o.weight ? ref.D : ref.N), 1e-300) : 1;
            expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(Math.max(1e-6 * Math.abs(ref.loss), terms * norm) + 1e-9);
            if (o.zLoss) expect(Math.abs(out.zLoss! - ref.zLoss)).toBeLessThanOrEqual(1e-6 * ref.zLoss);
            if (o.weight) expect(out.weightSum).toBeCloseTo(ref.D, 6);
            let argMax = 0;
            for (const v of values) argMax = Math.max(argMax, Math.abs(v * (o.logitScale ?? 1)));
            const gt = gradTol(ref.grad, o.softcap ? Math.min(argMax, o.softcap) : argMax);
            const g = toFloat32(out.grad!);
            const wr = worstRatio(g, ref.grad, gt.atol, gt.rtol);
            expect(wr.worst, `worst gradient element ${wr.at}: ${g[wr.at]} vs ${ref.grad[wr.at]}`).toBeLessThanOrEqual(1);
            // the separate backward from the saved (fp32) lse: the same tolerance (the fused one
            // starts from the double lse, so the two agree to rounding, not bitwise)
            const back = crossEntropyBackward(z, targets, out.lse, { ...o, reduction, gradDtype: 'f32' });
            const wb = worstRatio(toFloat32(back), ref.grad, gt.atol, gt.rtol);
            expect(wb.worst, `backward, worst element ${wb.at}`).toBeLessThanOrEqual(1);
            // stats
            const st = out.stats!;
            for (let i = 0; i < rows; i++) {
              if (targets[i] === -100) {
                expect(st.argmax[i]).toBe(-1);
                expect(out.losses[i]).toBe(0);
                continue;
              }
              expect(st.argmax[i]).toBe(ref.stats.argmax[i]);
              expect(Math.abs(st.entropy[i]! - ref.stats.entropy[i]!)).toBeLessThanOrEqual(2e-6 * ref.stats.entropy[i]! + 1e-6);
              expect(Math.abs(st.targetLogprob[i]! - ref.stats.targetLogprob[i]!)).toBeLessThanOrEqual(2e-6 * Math.abs(ref.stats.targetLogprob[i]!) + 1e-6);
              expect(Math.abs(st.maxProb[i]! - ref.stats.maxProb[i]!)).toBeLessThanOrEqual(2e-6 * ref.stats.maxProb[i]!);
            }
          });
        }
      }
    }
  }
});


describe(`cross-entropy options: edge cases (${label})`, () => {
  const rows = 6, vocab = 777;
  const r = testRng('edges');
  const x = randomLogits(r, rows, vocab);
  const z = logits(x, rows, vocab);
  const targets = randomTargets(r, rows, vocab);

  it('labelSmoothing 1: the loss is the uniform-target cross-entropy Σ_j (lse − z_j)/V', () => {
    const out = crossEntropyForward(z, targets, { labelSmoothing: 1, reduction: 'none' });
    for (let i = 0; i < rows; i++) {
      let s = 0;
      for (let j = 0; j < vocab; j++) s += out.lse[i]! - x[i * vocab + j]!;
      expect(Math.abs(out.losses[i]! - s / vocab)).toBeLessThan(1e-5 * (s / vocab));
    }
  });

  it('focalGamma 0 is the plain kernel, bitwise (loss, losses, lse and gradient)', () => {
    const r = testRng('focal zero');
    const rows = 9, vocab = 4099;
    const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
    const targets = randomTargets(r, rows, vocab, 0.2);
    const a = crossEntropyForward(z, targets, { withGrad: true });
    const b = crossEntropyForward(z, targets, { withGrad: true, focalGamma: 0 });
    expect(b.loss).toBe(a.loss);
    for (const k of ['losses', 'lse'] as const) expect(Buffer.from(b[k].buffer).equals(Buffer.from(a[k].buffer))).toBe(true);
    expect(Buffer.from(b.grad!.data.buffer).equals(Buffer.from(a.grad!.data.buffer))).toBe(true);
  });

  it('the separate backward keeps the target element when smoothing meets a target weight far below Σw/V', () => {
    // g_t = A·p_t − (α + β·w_t) with A = α + β·Σw: the terms nearly cancel when p_t is small, and
    // p_t taken as 1 − Σ_{j≠t} p_j carries the fp32 lse's rounding (|lse|·2⁻²⁴) times A
    const r = testRng('smoothing target weight');
    const rows = 2, vocab = 128256;
    const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
    const targets = Int32Array.of(17, 90001);
    const weight = Float32Array.from({ length: vocab }, () => r());
    weight[17] = 7e-4;
    weight[90001] = 2e-3;
    const o = { labelSmoothing: 0.2, weight };
    const ref = refCrossEntropy(values, rows, vocab, targets, { ...o, reduction: 'mean' });
    const out = crossEntropyForward(z, targets, { ...o, withGrad: true, gradDtype: 'f32' });
    const back = toFloat32(crossEntropyBackward(z, targets, out.lse, { ...o, gradDtype: 'f32' }));
    const fused = toFloat32(out.grad!);
    for (let i = 0; i < rows; i++) {
      const j = i * vocab + targets[i]!;
      expect(Math.abs(back[j]! - ref.grad[j]!), `backward, row ${i}`).toBeLessThanOrEqual(4e-6 * Math.abs(ref.grad[j]!));
      expect(Math.abs(fused[j]! - ref.grad[j]!), `fused, row ${i}`).toBeLessThanOrEqual(4e-6 * Math.abs(ref.grad[j]!));
    }
  });

  it('the separate backward of focal loss near p_t = 1 agrees with the fused one (the row lse taken again in double)', () => {
    // κ(nll) amplifies an error in nll = lse − x_t by about γ/nll, and the saved fp32 lse carries
    // |lse|·2⁻²⁴ (here |lse| ≈ 35): from it alone, the rows below would be off by up to ~1e-4
    const r = testRng('focal near one');
    const rows = 4, vocab = 4099;
    const x = Float32Array.from({ length: rows * vocab }, () => 25 + 2 * normal(r));
    const targets = Int32Array.from({ length: rows }, () => Math.floor(r() * vocab));
    for (let i = 0; i < rows; i++) {
      let s = 0;
      for (let j = 0; j < vocab; j++) if (j !== targets[i]) s += Math.exp(x[i * vocab + j]!);
      x[i * vocab + targets[i]!] = Math.log(s) + [6, 4, 2, 0][i]!;  // nll ≈ 0.0025, 0.018, 0.13, 0.69
    }
    const z = logits(x, rows, vocab);
    for (const o of [{ focalGamma: 2 }, { focalGamma: 0.5, logitScale: 1.5 }]) {
      const ref = refCrossEntropy(x, rows, vocab, targets, { ...o, reduction: 'sum' });
      const out = crossEntropyForward(z, targets, { ...o, reduction: 'sum', withGrad: true, gradDtype: 'f32' });
      const back = toFloat32(crossEntropyBackward(z, targets, out.lse, { ...o, reduction: 'sum', gradDtype: 'f32' }));
      const fused = toFloat32(out.grad!);
      // each element relative to itself: 2e-6, plus the fp32 rounding of its exponent argument
      // x − lse that every fp32 kernel carries (gradTol's term), |x| up to argMax
      let argMax = 0;
      for (const v of x) argMax = Math.max(argMax, Math.abs(v * (o.logitScale ?? 1)));
      for (let i = 0; i < rows * vocab; i++) {
        const tol = (2e-6 + argMax * 2 ** -22) * Math.abs(ref.grad[i]!) + 1e-30;
        expect(Math.abs(back[i]! - ref.grad[i]!), `backward, γ ${o.focalGamma}, element ${i}`).toBeLessThanOrEqual(tol);
        expect(Math.abs(fused[i]! - ref.grad[i]!), `fused, γ ${o.focalGamma}, element ${i}`).toBeLessThanOrEqual(tol);
      }
    }
  });

  it('labelSmoothing 0 and weights of 1 give the plain loss and gradient (within rounding)', () => {
    const plain = crossEntropyForward(z, targets, { withGrad: true });
    const opt = crossEntropyForward(z, targets, { withGrad: true, labelSmoothing: 0, weight: new Float32Array(vocab).fill(1) });
    expect(Math.abs(opt.loss - plain.loss)).toBeLessThan(1e-6 * plain.loss);
    const a = opt.grad!.data as Float32Array, b = plain.grad!.data as Float32Array;
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(b[i]!) + 1e-10);
  });

  it('all rows ignored: loss 0 (no NaN), gradient 0, stats NaN', () => {
    const t = new Int32Array(rows).fill(-100);
    const out = crossEntropyForward(z, t, { labelSmoothing: 0.1, weight: new Float32Array(vocab).fill(2), zLoss: 1e-3, withGrad: true, stats: true });
    expect(out.loss).toBe(0);
    expect(out.zLoss).toBe(0);
    expect(out.weightSum).toBe(0);
    expect((out.grad!.data as Float32Array).every((v) => v === 0)).toBe(true);
    expect(out.stats!.perplexity).toBeNaN();
    expect(out.stats!.accuracy).toBeNaN();
  });

  it('every target weighted 0: the mean is 0, not NaN', () => {
    const w = new Float32Array(vocab).fill(1);
    for (const t of targets) w[t] = 0;
    const out = crossEntropyForward(z, targets, { weight: w, withGrad: true });
    expect(out.loss).toBe(0);
    expect(out.weightSum).toBe(0);
  });

  it('zLoss is reported apart and added to loss', () => {
    const base = crossEntropyForward(z, targets, { logitScale: 1.0001 });
    const withZ = crossEntropyForward(z, targets, { logitScale: 1.0001, zLoss: 0.01 });
    let s = 0;
    for (const l of withZ.lse) s += 0.01 * l * l;
    expect(withZ.zLoss!).toBeCloseTo(s / rows, 6);
    expect(withZ.loss).toBeCloseTo(base.loss + withZ.zLoss!, 6);
  });

  it('softcap bounds the logits: lse ≤ c + log V and huge logits stay finite', () => {
    const big = Float32Array.from(x, (v, i) => (i % 97 === 0 ? 1e30 : v * 1e3));
    const out = crossEntropyForward(logits(big, rows, vocab), targets, { softcap: 30, withGrad: true });
    for (const l of out.lse) expect(l).toBeLessThanOrEqual(30 + Math.log(vocab) + 1e-4);
    expect(Number.isFinite(out.loss)).toBe(true);
    expect((out.grad!.data as Float32Array).every(Number.isFinite)).toBe(true);
  });

  it('softcap maps −inf logits to −c (finite, as c·tanh(z/c) does), and ±1e30 to ±c', () => {
    const V = 40;
    const xs = Float32Array.from({ length: 2 * V }, (_, i) => Math.sin(i) * 3);
    xs[3] = -Infinity;
    xs[V + 7] = 1e30;
    xs[V + 8] = -1e30;
    const t = Int32Array.of(0, 7);
    const ref = refCrossEntropy(xs, 2, V, t, { softcap: 4, reduction: 'sum' });
    const out = crossEntropyForward(logits(xs, 2, V), t, { softcap: 4, reduction: 'sum', withGrad: true, stats: true });
    expect(worstRatio(out.losses, ref.losses, 1e-6, 2e-6).worst).toBeLessThanOrEqual(1);
    const g = out.grad!.data as Float32Array;
    expect(g.every(Number.isFinite)).toBe(true);
    expect(worstRatio(g, ref.grad, 1e-6, 2e-6).worst).toBeLessThanOrEqual(1);
    const back = crossEntropyBackward(logits(xs, 2, V), t, out.lse, { softcap: 4, reduction: 'sum' });
    expect(worstRatio(back.data as Float32Array, ref.grad, 1e-6, 2e-6).worst).toBeLessThanOrEqual(1);
  });

  it('results do not depend on the thread count, and async gives the same bits', async () => {
    const o = { labelSmoothing: 0.1, zLoss: 1e-3, softcap: 20, withGrad: true, stats: true } as const;
    const one = crossEntropyForward(z, targets, { ...o, threads: 1 });
    const many = crossEntropyForward(z, targets, { ...o, threads: 4 });
    const asy = await crossEntropyForwardAsync(z, targets, { ...o, threads: 2 });
    for (const other of [many, asy]) {
      expect(other.loss).toBe(one.loss);
      expect(Buffer.from(other.grad!.data.buffer).equals(Buffer.from(one.grad!.data.buffer))).toBe(true);
      expect(Buffer.from(other.stats!.entropy.buffer).equals(Buffer.from(one.stats!.entropy.buffer))).toBe(true);
    }
  });

  it('in place with options writes the same gradient as out of place', () => {
    const o = { labelSmoothing: 0.1, softcap: 10, withGrad: true } as const;
    const ref = crossEntropyForward(z, targets, o);
    const copy = logits(x.slice(), rows, vocab);
    crossEntropyForward(copy, targets, { ...o, inPlace: true });
    expect(Buffer.from(copy.data.buffer).equals(Buffer.from(ref.grad!.data.buffer))).toBe(true);
  });

  it('bad options are clear errors naming the option', () => {
    const f = (o: object) => () => crossEntropyForward(z, targets, o as never);
    expect(f({ labelSmoothing: 1.5 })).toThrow(/labelSmoothing must be a finite number in \[0, 1\]/);
    expect(f({ labelSmoothing: -0.1 })).toThrow(RangeError);
    expect(f({ labelSmoothing: '0.1' })).toThrow(TypeError);
    expect(f({ zLoss: -1 })).toThrow(/zLoss/);
    expect(f({ softcap: 0 })).toThrow(/softcap must be a finite number in \(0/);
    expect(f({ logitScale: NaN })).toThrow(/logitScale/);
    expect(f({ weight: new Float32Array(3) })).toThrow(/weight must be of length vocab \(777\)/);
    expect(f({ weight: new Float64Array(vocab) })).toThrow(TypeError);
    const w = new Float32Array(vocab).fill(1);
    w[5] = Infinity;
    expect(f({ weight: w })).toThrow(/weight\[5\] = inf must be a finite number$/);
    w[5] = NaN;
    expect(f({ weight: w })).toThrow(RangeError);
    w[5] = -1; // negative weights are torch's semantics, not an error
    expect(f({ weight: w })).not.toThrow();
    expect(f({ stats: 1 })).toThrow(/stats must be a boolean/);
    expect(f({ focalGamma: -1 })).toThrow(/focalGamma must be a finite number ≥ 0/);
    expect(f({ focalGamma: 2, labelSmoothing: 0.1 })).toThrow(/labelSmoothing must be undefined \(or 0\) with focalGamma.*no agreed semantics/);
    expect(f({ focalGamma: 2, zLoss: 1e-4 })).toThrow(TypeError);
    expect(f({ stats: true, eceBins: 0 })).toThrow(/eceBins/);
    expect(() => crossEntropyBackward(z, targets, new Float32Array(rows), { stats: true } as never)).toThrow(/unknown option 'stats'/);
  });

  it('batch stats: perplexity, bits per token, accuracy, mean entropy and ECE from the per-row ones', () => {
      const t = targets.slice();
      t[2] = -100;
      const out = crossEntropyForward(z, t, { stats: true, eceBins: 10 });
      const s = out.stats!;
      const rowsIn = [...t.keys()].filter((i) => t[i] !== -100);
      const nll = rowsIn.reduce((a, i) => a - s.targetLogprob[i]!, 0) / rowsIn.length;
      expect(s.perplexity).toBeCloseTo(Math.exp(nll), 10);
      expect(s.bitsPerToken).toBeCloseTo(nll / Math.LN2, 10);
      expect(s.accuracy).toBe(rowsIn.filter((i) => s.argmax[i] === t[i]).length / rowsIn.length);
      expect(s.meanEntropy).toBeCloseTo(rowsIn.reduce((a, i) => a + s.entropy[i]!, 0) / rowsIn.length, 10);
      // ECE by hand over 10 bins (b/10, (b+1)/10]
      let ece = 0;
      for (let b = 0; b < 10; b++) {
        const inBin = rowsIn.filter((i) => Math.min(9, Math.max(0, Math.ceil(s.maxProb[i]! * 10) - 1)) === b);
        if (!inBin.length) continue;
        const acc = inBin.filter((i) => s.argmax[i] === t[i]).length, conf = inBin.reduce((a, i) => a + s.maxProb[i]!, 0);
        ece += Math.abs(acc - conf) / rowsIn.length;
      }
      expect(s.ece).toBeCloseTo(ece, 12);
      // a confident, always-right model is perfectly calibrated: ECE ≈ 0, accuracy 1
      const sharp = new Float32Array(rows * vocab);
      for (let i = 0; i < rows; i++) sharp[i * vocab + targets[i]!] = 60;
      const o2 = crossEntropyForward(logits(sharp, rows, vocab), targets, { stats: true });
      expect(o2.stats!.accuracy).toBe(1);
      expect(o2.stats!.ece).toBeLessThan(1e-12);
    });
  
  it('argmax is the first index of the largest logit, across blocks and around the target', () => {
      const V = 9000;
      const check = (x: Float32Array, t: number, want: number) =>
        expect(crossEntropyForward(logits(x, 1, V), Int32Array.of(t), { stats: true }).stats!.argmax[0]).toBe(want);
      check(new Float32Array(V), 5000, 0);                       // all equal: index 0, before the target
      check(new Float32Array(V), 0, 0);                          // the target itself is first
      const x = new Float32Array(V);
      x[6000] = x[8000] = x[4500] = 3;
      check(x, 4500, 4500);                                      // the target ties and comes first
      check(x, 8000, 4500);                                      // a tie in a later block loses
      check(x, 10, 4500);
      x[4500] = 2;
      check(x, 4500, 6000);                                      // next block's first
    });
});
}
