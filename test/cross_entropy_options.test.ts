// Cross-entropy options on the CPU: the shared suite (cross_entropy_options.suite.ts) with the eval
// statistics, and what only the CPU has (the batch statistics, argmax ties, the CUDA refusal).
import { describe, expect, it } from 'vitest';
import { crossEntropyForward, logits } from 'fusedce';
import { randomLogits, randomTargets, testRng } from './reference.mjs';
import { optionsSuite } from './cross_entropy_options.suite';

optionsSuite('CPU', { stats: true });

describe('cross-entropy options: statistics (CPU)', () => {
  const rows = 6, vocab = 777;
  const r = testRng('edges');
  const x = randomLogits(r, rows, vocab);
  const z = logits(x, rows, vocab);
  const targets = randomTargets(r, rows, vocab);

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
  
  it("statistics with device 'cuda' are refused with what to do (the CUDA kernels lack them)", () => {
    expect(() => crossEntropyForward(z, targets, { stats: true, device: 'cuda' })).toThrow(/stats.*device: 'cpu'/);
    expect(() => crossEntropyForward(z, targets, { labelSmoothing: 0.1, stats: true, device: 'cuda' })).toThrow(TypeError);
  });
});
