// Few rows (fewer than two per thread) spread their 4096-blocks over the pool, in every op of the
// soft family as in the plain kernel and binary CE. Each block's work and each row's in-order fold
// are the same either way, so a split call must give the bits of a one-thread call (which the
// float64 reference tests check). threads: 4 is capped at the machine's threads; on a machine with
// one thread no call splits, and these tests still check that the outputs agree.
import { describe, expect, it } from 'vitest';
import {
  type Logits,
  entropy,
  entropyAsync,
  entropyForward,
  entropyForwardAsync,
  jsDivergenceForward,
  jsDivergenceForwardAsync,
  klDivergenceForward,
  klDivergenceForwardAsync,
  logits,
  softCrossEntropyBackward,
  softCrossEntropyBackwardAsync,
  softCrossEntropyForward,
  softCrossEntropyForwardAsync,
} from 'fusedce';
import { makeLogits, randomLogits, testRng } from './reference.mjs';

// one row of a Llama-3 vocabulary; three rows of two full blocks and a ragged one
const SHAPES = [[1, 128256], [3, 2 * 4096 + 77]] as const;

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
function same(a: ArrayBufferView | undefined, b: ArrayBufferView | undefined) {
  expect(a).toBeDefined();
  expect(bits(b!).equals(bits(a!))).toBe(true);
}

// probabilities: sparse rows (top-k teacher), the last row all zero when rows > 1 (counts nowhere)
function probs(r: () => number, rows: number, vocab: number): Float32Array {
  const q = new Float32Array(rows * vocab);
  for (let i = 0; i < (rows > 1 ? rows - 1 : rows); i++) for (let k = 0; k < 40; k++) q[i * vocab + Math.floor(r() * vocab)] = r();
  return q;
}

describe('few rows split over the pool: the bits of one thread', () => {
  for (const [rows, vocab] of SHAPES) {
    for (const dtype of ['bf16', 'f32'] as const) {
      const tag = `${rows}×${vocab} ${dtype}`;
      const r = testRng(`split ${tag}`);
      const { z } = makeLogits(randomLogits(r, rows, vocab, 4), rows, vocab, dtype);
      const { z: u } = makeLogits(randomLogits(r, rows, vocab, 4), rows, vocab, dtype);
      const q = logits(probs(r, rows, vocab), rows, vocab, 'f32');
      const w = Float32Array.from({ length: vocab }, () => 2 * r() - 0.5);

      it(`${tag}: soft CE (teacher logits, T = 2 ×T²; probabilities with smoothing and weights), forward, fused, backward`, async () => {
        const cases: [Logits, object][] = [
          [u, { temperature: 2, tSquared: true }],
          [q, { targetKind: 'probs' }],
          [q, { targetKind: 'probs', labelSmoothing: 0.1, weight: w }],
        ];
        for (const [t, o] of cases) {
          const a = softCrossEntropyForward(z, t, { ...o, reduction: 'none', withGrad: true, threads: 1 });
          const b = await softCrossEntropyForwardAsync(z, t, { ...o, reduction: 'none', withGrad: true, threads: 4 });
          same(a.losses, b.losses);
          same(a.lse, b.lse);
          same(a.grad!.data, b.grad!.data);
          expect(softCrossEntropyForward(z, t, { ...o, threads: 4 }).loss).toBe(softCrossEntropyForward(z, t, { ...o, threads: 1 }).loss);
          const gb1 = softCrossEntropyBackward(z, t, a.lse, { ...o, reduction: 'none', threads: 1 });
          const gb2 = await softCrossEntropyBackwardAsync(z, t, a.lse, { ...o, reduction: 'none', threads: 4 });
          same(gb1.data, gb2.data);
        }
      });

      it(`${tag}: KL forward and reverse, with a gradient`, async () => {
        for (const direction of ['forward', 'reverse'] as const) {
          const a = klDivergenceForward(z, u, { direction, reduction: 'none', withGrad: true, threads: 1 });
          const b = await klDivergenceForwardAsync(z, u, { direction, reduction: 'none', withGrad: true, threads: 4 });
          same(a.losses, b.losses);
          same(a.grad!.data, b.grad!.data);
        }
      });

      it(`${tag}: entropy, entropyForward with a gradient, JSD β = 0.3 with a gradient`, async () => {
        same(entropy(z, { temperature: 1.5, threads: 1 }), await entropyAsync(z, { temperature: 1.5, threads: 4 }));
        const e1 = entropyForward(z, { reduction: 'none', withGrad: true, threads: 1 });
        const e2 = await entropyForwardAsync(z, { reduction: 'none', withGrad: true, threads: 4 });
        same(e1.losses, e2.losses);
        same(e1.grad!.data, e2.grad!.data);
        const j1 = jsDivergenceForward(z, u, { beta: 0.3, reduction: 'none', withGrad: true, threads: 1 });
        const j2 = await jsDivergenceForwardAsync(z, u, { beta: 0.3, reduction: 'none', withGrad: true, threads: 4 });
        same(j1.losses, j2.losses);
        same(j1.grad!.data, j2.grad!.data);
        expect(jsDivergenceForward(z, u, { threads: 4 }).loss).toBe(jsDivergenceForward(z, u, { threads: 1 }).loss);
      });

      it(`${tag}: the gradient written over the logits (inPlace) is the gradient of the original logits`, () => {
        const copy = () => logits(z.data.slice() as never, rows, vocab, dtype);
        const ref = entropyForward(z, { reduction: 'none', withGrad: true, threads: 1 });
        const zi = copy();
        entropyForward(zi, { reduction: 'none', withGrad: true, inPlace: true, threads: 4 });
        same(ref.grad!.data, zi.data);
        const kref = klDivergenceForward(z, u, { direction: 'reverse', withGrad: true, threads: 1 });
        const zk = copy();
        klDivergenceForward(zk, u, { direction: 'reverse', withGrad: true, inPlace: true, threads: 4 });
        same(kref.grad!.data, zk.data);
      });
    }
  }
});
