// 64-bit indexing: rows·vocab > 2^31 elements (4 GiB of bf16 logits). Only the rows at both ends
// are counted (the rest are ignored and skipped), so the test is about addressing, not speed.
import { describe, expect, it } from 'vitest';
import { bf16, crossEntropyBackward, crossEntropyForward, logits } from 'fusedce';
import { f64ToBf16, randomLogits, reference, testRng, ulpDistance16 } from './reference.mjs';

describe('64-bit indexing', () => {
  it('computes rows past element 2^31 correctly (16385 × 131072 bf16)', () => {
    const rows = 16385;
    const vocab = 131072; // rows·vocab = 2^31 + 2^17
    const data = new Uint16Array(rows * vocab);
    const r = testRng('large-index');
    const probe = [0, rows - 2, rows - 1]; // the last two rows start at and past element 2^31
    const targets = new Int32Array(rows).fill(-100);
    const values: Float32Array[] = [];
    for (const row of probe) {
      const bits = bf16.fromFloat32(randomLogits(r, 1, vocab));
      data.set(bits, row * vocab);
      values.push(bf16.toFloat32(bits));
      targets[row] = Math.floor(r() * vocab);
    }
    const z = logits(data, rows, vocab, 'bf16');
    const out = crossEntropyForward(z, targets, { reduction: 'sum' });
    expect(out.count).toBe(3);
    probe.forEach((row, k) => {
      const ref = reference(values[k]!, new Int32Array([targets[row]!]), 1, vocab, { reduction: 'sum' });
      expect(Math.abs(out.losses[row]! - ref.losses[0]!)).toBeLessThanOrEqual(1e-6 * ref.losses[0]!);
      expect(Math.abs(out.lse[row]! - ref.lse[0]!)).toBeLessThanOrEqual(1e-5);
    });
    // The gradient written in place over the logits: check the last row against the reference.
    crossEntropyBackward(z, targets, out.lse, { reduction: 'sum', inPlace: true });
    const ref = reference(values[2]!, new Int32Array([targets[rows - 1]!]), 1, vocab, { reduction: 'sum' });
    const g = data.subarray((rows - 1) * vocab, rows * vocab);
    let worstUlp = 0;
    for (let j = 0; j < vocab; j++) worstUlp = Math.max(worstUlp, ulpDistance16(g[j]!, f64ToBf16(ref.grad[j]!)));
    expect(worstUlp).toBeLessThanOrEqual(1);
    expect(data[5 * vocab]).toBe(0); // an ignored row's gradient is 0
  });
});
