// sequenceIds and reduction 'sequenceMean' against float64: per-sequence Σ log p(target), counted
// rows and mean loss (plain and with loss options, whose row loss is not the log-likelihood), the
// sequence mean and its gradient (fused and separate), on fresh random data with ignored rows, an
// empty sequence and the Llama-3 vocabulary.
import { describe, expect, it } from 'vitest';
import { type DType, crossEntropyBackward, crossEntropyForward, crossEntropyForwardAsync, gradcheck, logits } from 'fusedce';
import { makeLogits, randomLogits, randomTargets, testRng, toFloat32 } from './reference.mjs';
import { refCrossEntropy, worstRatio } from './loss_reference.mjs';

/** Sequence ids in runs (a packed batch), with sequence `skip` never used (an empty sequence). */
function runs(r: () => number, rows: number, skip: number): Int32Array {
  const ids = new Int32Array(rows);
  let id = 0;
  for (let i = 0; i < rows; i++) {
    if (i > 0 && (r() < 0.3 || (i === rows >> 1 && id < skip))) id++;  // past `skip` by the middle at the latest
    if (id === skip) id++;
    ids[i] = id;
  }
  return ids;
}

function refSequences(values: Float32Array, rows: number, vocab: number, t: Int32Array, ids: Int32Array, o: Record<string, unknown>) {
  const ref = refCrossEntropy(values, rows, vocab, t, { ...o, reduction: 'none' });
  const plain = refCrossEntropy(values, rows, vocab, t, { logitScale: o.logitScale, softcap: o.softcap, reduction: 'none' });
  const n = Math.max(...ids) + 1;
  const logprob = new Float64Array(n), tokens = new Int32Array(n), lossSum = new Float64Array(n);
  for (let i = 0; i < rows; i++) {
    if (t[i] === -100) continue;
    logprob[ids[i]!]! += plain.stats.targetLogprob[i]!;
    tokens[ids[i]!]!++;
    lossSum[ids[i]!]! += ref.losses[i]!;
  }
  const S = Array.from(tokens).filter((k) => k > 0).length;
  let mean = 0;
  for (let s = 0; s < n; s++) if (tokens[s]! > 0) mean += lossSum[s]! / tokens[s]! / S;
  // the gradient of the sequence mean: row i's gradient (of its own loss) times 1/(S·tokens)
  const grad = new Float64Array(rows * vocab);
  for (let i = 0; i < rows; i++) {
    if (t[i] === -100) continue;
    const w = 1 / (S * tokens[ids[i]!]!);
    for (let j = 0; j < vocab; j++) grad[i * vocab + j] = w * ref.grad[i * vocab + j]!;
  }
  return { logprob, tokens, meanLoss: logprob.map((v, s) => (tokens[s]! > 0 ? -v / tokens[s]! : 0)), mean, grad };
}

const CASES: [rows: number, vocab: number, dtype: DType, opts: Record<string, unknown>, why: string][] = [
  [23, 1003, 'f32', {}, 'plain, rows and vocab off the vector widths'],
  [23, 1003, 'f16', { labelSmoothing: 0.1 }, 'label smoothing: the row loss is not −log p'],
  [17, 777, 'bf16', { focalGamma: 2, softcap: 20 }, 'focal with a softcap: log p of the capped logits'],
  [6, 128256, 'bf16', { weight: 'random' }, 'class weights, the Llama-3 vocabulary'],
];

describe('sequenceIds and sequenceMean vs float64', () => {
  for (const [rows, vocab, dtype, opts, why] of CASES) {
    it(`${rows}×${vocab} ${dtype} (${why})`, async () => {
      const r = testRng(`sequences ${rows} ${vocab} ${dtype} ${why}`);
      const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
      const t = randomTargets(r, rows, vocab, 0.2);
      const ids = runs(r, rows, 1);
      const o: Record<string, unknown> = { ...opts };
      if (o.weight === 'random') o.weight = Float32Array.from({ length: vocab }, () => 0.3 + r());
      const want = refSequences(values, rows, vocab, t, ids, o);
      // per-sequence results, with any reduction
      const res = crossEntropyForward(z, t, { ...o, sequenceIds: ids, reduction: 'sequenceMean', withGrad: true, gradDtype: 'f32' });
      const seq = res.sequences!;
      expect(Array.from(seq.tokens)).toEqual(Array.from(want.tokens));
      expect(seq.tokens[1]).toBe(0);
      expect([seq.logprob[1], seq.meanLoss[1]]).toEqual([0, 0]);
      expect(worstRatio(seq.logprob, want.logprob, 1e-5, 2e-6).worst).toBeLessThanOrEqual(1);
      expect(worstRatio(seq.meanLoss, want.meanLoss, 1e-5, 2e-6).worst).toBeLessThanOrEqual(1);
      expect(Math.abs(res.loss - want.mean)).toBeLessThanOrEqual(2e-6 * want.mean);
      let gmax = 0, xmax = 0;
      for (const v of want.grad) gmax = Math.max(gmax, Math.abs(v));
      for (const v of values) xmax = Math.max(xmax, Math.abs(v));
      const tol = [3e-6 * gmax + gmax * xmax * 2 ** -21 + 1e-12, 3e-6] as const;
      const g = worstRatio(toFloat32(res.grad!), want.grad, ...tol);
      expect(g.worst, `worst element ${g.at}`).toBeLessThanOrEqual(1);
      // the separate backward from the saved lse
      const back = crossEntropyBackward(z, t, res.lse, { ...o, sequenceIds: ids, reduction: 'sequenceMean', gradDtype: 'f32' });
      expect(worstRatio(toFloat32(back), want.grad, ...tol).worst).toBeLessThanOrEqual(1);
      // the same sequences with reduction 'mean', and async
      const m = crossEntropyForward(z, t, { ...o, sequenceIds: ids });
      expect(Array.from(m.sequences!.logprob)).toEqual(Array.from(seq.logprob));
      const a = await crossEntropyForwardAsync(z, t, { ...o, sequenceIds: ids, reduction: 'sequenceMean' });
      expect(a.loss).toBe(res.loss);
    });
  }

  it('one sequence per row gives the per-row mean; one sequence for all gives the token mean', () => {
    const r = testRng('sequences limits');
    const rows = 12, vocab = 50;
    const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'f32');
    const t = randomTargets(r, rows, vocab);
    const mean = crossEntropyForward(z, t).loss;
    // the sequence mean sums the fp32 row losses; the plain mean their double values: 1e-7 apart at most
    const one = crossEntropyForward(z, t, { sequenceIds: new Int32Array(rows), reduction: 'sequenceMean' }).loss;
    const each = crossEntropyForward(z, t, { sequenceIds: Int32Array.from({ length: rows }, (_, i) => i), reduction: 'sequenceMean' }).loss;
    expect(Math.abs(one - mean)).toBeLessThanOrEqual(1e-7 * mean);
    expect(Math.abs(each - mean)).toBeLessThanOrEqual(1e-7 * mean);
  });

  it('central differences agree with the sequenceMean gradient', () => {
    const r = testRng('sequences gradcheck');
    const rows = 8, vocab = 200;
    const t = randomTargets(r, rows, vocab, 0.2);
    const ids = Int32Array.from([0, 0, 0, 1, 2, 2, 2, 2]);
    const rep = gradcheck((v) => {
      const o = crossEntropyForward(logits(Float32Array.from(v), rows, vocab), t, { sequenceIds: ids, reduction: 'sequenceMean', withGrad: true });
      return { loss: o.loss, grad: o.grad! };
    }, Float64Array.from(randomLogits(r, rows, vocab)));
    expect(rep.ok, JSON.stringify(rep.worst)).toBe(true);
  });

  it('bad arguments are clear errors', () => {
    const z = logits(new Float32Array(12), 3, 4);
    const t = new Int32Array([0, 1, 2]);
    expect(() => crossEntropyForward(z, t, { reduction: 'sequenceMean' })).toThrow(/crossEntropyForward: sequenceIds must be an Int32Array\(3\) of sequence ids ≥ 0 with reduction 'sequenceMean'/);
    expect(() => crossEntropyForward(z, t, { sequenceIds: [0, 0, 1] as never })).toThrow(TypeError);
    expect(() => crossEntropyForward(z, t, { sequenceIds: new Int32Array(2) })).toThrow(/sequenceIds must be of length rows \(3\)/);
    expect(() => crossEntropyForward(z, t, { sequenceIds: Int32Array.from([0, -1, 0]) })).toThrow(/sequenceIds\[1\] must be a sequence id in \[0, /);
    expect(() => crossEntropyBackward(z, t, new Float32Array(3), { sequenceIds: new Int32Array(3), reduction: 'sequenceMean', gradOutput: new Float32Array(3) }))
      .toThrow(/gradOutput must be a finite number with reduction 'sequenceMean'/);
  });
});
