// Fused gradients past 8 MiB are written with non-temporal stores (an aligned middle, the head one
// by one), in the soft family, the entropy and label smoothing as in the plain path; with label
// smoothing a row's gradient is also written inside the next row's exp loop. The values must not
// depend on how or when they were stored: each row of a large call (streaming, into an output
// misaligned by one element) must have the bits of the same row computed alone (a small call,
// ordinary stores).
import { describe, expect, it } from 'vitest';
import { type Logits, crossEntropyForward, entropyForward, klDivergenceForward, logits, softCrossEntropyForward } from 'fusedce';
import { makeLogits, randomLogits, testRng } from './reference.mjs';

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const row = (m: Logits, i: number): Logits =>
  logits(m.data.subarray(i * m.vocab, (i + 1) * m.vocab) as never, 1, m.vocab, m.dtype);

describe('streamed gradient stores give the bits of ordinary ones', () => {
  // bf16 36×128256: a 9.2 MB gradient (past the 8 MiB threshold)
  const rows = 36, vocab = 128256, N = rows * vocab;
  const r = testRng('stream stores');
  const { z } = makeLogits(randomLogits(r, rows, vocab, 3), rows, vocab, 'bf16');
  const { z: u } = makeLogits(randomLogits(r, rows, vocab, 3), rows, vocab, 'bf16');
  const qv = new Float32Array(N);
  for (let i = 0; i < N; i += 97) qv[i] = r();
  const q = logits(qv, rows, vocab);
  // an output whose data starts one element past a 64-byte boundary
  const outOf = () => logits(new Uint16Array(N + 1).subarray(1) as never, rows, vocab, 'bf16');
  const picks = [0, 17, rows - 1];

  const cases: [string, (zz: Logits, uu: Logits, qq: Logits, out?: Logits) => { grad?: Logits }][] = [
    ['soft CE, teacher logits', (zz, uu, _q, out) => softCrossEntropyForward(zz, uu, { reduction: 'none', withGrad: true, ...(out ? { out } : {}) })],
    ['soft CE, probabilities', (zz, _u, qq, out) => softCrossEntropyForward(zz, qq, { targetKind: 'probs', reduction: 'none', withGrad: true, ...(out ? { out } : {}) })],
    ['KL forward', (zz, uu, _q, out) => klDivergenceForward(zz, uu, { reduction: 'none', withGrad: true, ...(out ? { out } : {}) })],
    ['KL reverse, T = 1.5', (zz, uu, _q, out) => klDivergenceForward(zz, uu, { direction: 'reverse', temperature: 1.5, reduction: 'none', withGrad: true, ...(out ? { out } : {}) })],
    ['entropyForward', (zz, _u, _q, out) => entropyForward(zz, { reduction: 'none', withGrad: true, ...(out ? { out } : {}) })],
  ];
  for (const [name, f] of cases) {
    it(name, () => {
      const big = f(z, u, q, outOf()).grad!;
      for (const i of picks) {
        const one = f(row(z, i), row(u, i), row(q, i)).grad!;
        expect(bits(row(big, i).data).equals(bits(one.data)), `row ${i}`).toBe(true);
      }
    });
  }

  it('label smoothing (± class weights, logit scale): each row of a many-row call has the bits of the row alone', () => {
    // the many-row fused path writes a row's gradient inside the next row's exp loop (AVX-512), and
    // past 8 MiB with non-temporal stores; a one-row call writes it after its own pass
    const targets = Int32Array.from({ length: rows }, (_, i) => (i === 5 ? -100 : Math.floor(r() * vocab)));
    const weight = Float32Array.from({ length: vocab }, () => 2 * r() - 0.4);
    for (const o of [{ labelSmoothing: 0.1 }, { labelSmoothing: 0.2, weight, logitScale: 0.8 }]) {
      for (const threads of [1, 2]) {
        const big = crossEntropyForward(z, targets, { ...o, reduction: 'none', withGrad: true, out: outOf(), threads }).grad!;
        for (const i of [0, 5, 6, rows - 1]) {
          const one = crossEntropyForward(row(z, i), targets.subarray(i, i + 1), { ...o, reduction: 'none', withGrad: true }).grad!;
          expect(bits(row(big, i).data).equals(bits(one.data)), `row ${i}, threads ${threads}`).toBe(true);
        }
      }
    }
  });

  it('in place (the gradient over the logits it reads): KL reverse and entropyForward', () => {
    for (const [name, f] of [cases[3]!, cases[4]!]) {
      const want = f(z, u, q).grad!;
      const zc = logits(Uint16Array.from(z.data as Uint16Array), rows, vocab, 'bf16');
      f(zc, u, q, zc);
      expect(bits(zc.data).equals(bits(want.data)), name).toBe(true);
    }
  });
});
