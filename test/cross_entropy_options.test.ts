// Cross-entropy options on the CPU: the shared suite (cross_entropy_options.suite.ts), and what only
// the CPU has (sequences: the CUDA path refuses them).
import { describe, expect, it } from 'vitest';
import { crossEntropyForward, logits } from 'fusedce';
import { randomLogits, randomTargets, testRng } from './reference.mjs';
import { optionsSuite } from './cross_entropy_options.suite';

optionsSuite('CPU');

describe('cross-entropy options: CPU only', () => {
  const rows = 6, vocab = 777;
  const r = testRng('edges');
  const x = randomLogits(r, rows, vocab);
  const z = logits(x, rows, vocab);
  const targets = randomTargets(r, rows, vocab);

  it("sequenceIds with device 'cuda' are refused with what to do (the CUDA kernels lack them)", () => {
    expect(() => crossEntropyForward(z, targets, { sequenceIds: new Int32Array(rows), device: 'cuda' })).toThrow(/sequenceIds.*device: 'cpu'/);
  });
});
