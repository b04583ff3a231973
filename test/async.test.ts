// Async calls: same results as sync, computed off the main thread, safe when concurrent.
import { describe, expect, it } from 'vitest';
import { crossEntropyBackward, crossEntropyBackwardAsync, crossEntropyForward, crossEntropyForwardAsync, logits, type DType } from 'fusedce';
import { makeLogits, randomLogits, randomTargets, testRng } from './reference.mjs';

const same = (a: ArrayBufferView, b: ArrayBufferView) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('async', () => {
  for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
    it(`gives bitwise the sync results (${dtype}, forward with grad and backward)`, async () => {
      const r = testRng(`async-${dtype}`);
      const [rows, vocab] = [6, 20011];
      const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
      const targets = randomTargets(r, rows, vocab, 0.2);
      const s = crossEntropyForward(z, targets, { withGrad: true, reduction: 'sum' });
      const a = await crossEntropyForwardAsync(z, targets, { withGrad: true, reduction: 'sum' });
      expect(a.loss).toBe(s.loss);
      expect(a.count).toBe(s.count);
      expect(same(a.losses, s.losses)).toBe(true);
      expect(same(a.lse, s.lse)).toBe(true);
      expect(same(a.grad!.data, s.grad!.data)).toBe(true);
      const gb = await crossEntropyBackwardAsync(z, targets, s.lse, { reduction: 'sum', gradDtype: 'f32' });
      expect(same(gb.data, crossEntropyBackward(z, targets, s.lse, { reduction: 'sum', gradDtype: 'f32' }).data)).toBe(true);
    });
  }

  it('does not block the event loop: timers fire while a large call runs', async () => {
    // ~130M elements with the gradient, softcap and the statistics (the general loops, ~3× the
    // plain fused pass), on at most 2 threads: ~50 ms on the fastest machine seen (a 2-vCPU Zen 5
    // VM, where the plain fused pass over 768 rows took only 14–22 ms), far longer than the 2 ms
    // timer. The data only has to be valid logits, so it is made cheaply.
    const [rows, vocab] = [1024, 128256];
    const x = new Float32Array(rows * vocab);
    for (let i = 0; i < x.length; i++) x[i] = ((i * 2654435761) % 1000) / 100;
    const z = logits(x, rows, vocab);
    const targets = randomTargets(testRng('async-eventloop'), rows, vocab);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 2);
    const t0 = performance.now();
    const res = await crossEntropyForwardAsync(z, targets, { withGrad: true, inPlace: true, softcap: 30, stats: true, threads: 2 });
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(Number.isFinite(res.loss)).toBe(true);
    // The call itself takes tens of milliseconds or more; a blocked loop would see no tick at all.
    expect(ms).toBeGreaterThan(20);
    expect(ticks).toBeGreaterThanOrEqual(3);
  });

  it('concurrent calls (several async plus sync in between) give the sequential results', async () => {
    const r = testRng('async-concurrent');
    const jobs = Array.from({ length: 6 }, (_, k) => {
      const [rows, vocab] = [3 + k, 5000 + 997 * k];
      const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, k % 2 ? 'bf16' : 'f32');
      return { z, targets: randomTargets(r, rows, vocab, 0.2), threads: 1 + (k % 3) };
    });
    const expected = jobs.map((j) => crossEntropyForward(j.z, j.targets, { withGrad: true, threads: j.threads }));
    const pending = jobs.map((j) => crossEntropyForwardAsync(j.z, j.targets, { withGrad: true, threads: j.threads }));
    const syncMeanwhile = crossEntropyForward(jobs[0]!.z, jobs[0]!.targets, { withGrad: true });
    const got = await Promise.all(pending);
    expect(same(syncMeanwhile.grad!.data, expected[0]!.grad!.data)).toBe(true);
    got.forEach((g, k) => {
      expect(g.loss).toBe(expected[k]!.loss);
      expect(same(g.grad!.data, expected[k]!.grad!.data)).toBe(true);
    });
  });

  it('concurrent small batches (rows split over threads, each call with its own scratch) give the sync results', async () => {
    const r = testRng('async-split');
    const jobs = Array.from({ length: 8 }, (_, k) => {
      const [rows, vocab] = [1 + (k % 3), 20000 + 4099 * k];
      const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, k % 2 ? 'bf16' : 'f32');
      return { z, targets: randomTargets(r, rows, vocab) };
    });
    const expected = jobs.map((j) => crossEntropyForward(j.z, j.targets, { withGrad: true, threads: 1 }));
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(jobs.map((j) => crossEntropyForwardAsync(j.z, j.targets, { withGrad: true, threads: 2 })));
      got.forEach((g, k) => {
        expect(same(g.lse, expected[k]!.lse)).toBe(true);
        expect(same(g.grad!.data, expected[k]!.grad!.data)).toBe(true);
      });
    }
  });
});
