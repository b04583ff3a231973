// Cases whose every output bit is compared between two kernel sets (test/isa.test.ts): the same
// seeded data through forward, fused forward+backward, backward (every logits → gradient dtype
// pair) and exp, returned as hex strings. Run in-process for the dispatched kernels, and in a
// child process with FUSEDCE_ISA set for another set (the choice is made once per process).
import {
  binaryCrossEntropyWithLogits, crossEntropyBackward, crossEntropyForward, entropy, entropyForward, klDivergenceForward,
  softCrossEntropyForward,
} from 'fusedce';
import { kernels } from 'fusedce/kernels';
import { makeLogits, randomLogits, randomTargets, rng } from './reference.mjs';

const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

// [rows, vocab, why]
const SHAPES = [
  [7, 1000, 'unaligned: every row ends in a 16-lane tail'],
  [5, 32001, 'ragged last 4096-block, odd tail'],
  [3, 128256, 'Llama-3 vocabulary'],
  [1, 262147, 'one row split over threads (if any), odd tail'],
  // an f32 gradient of ≥ 8 MB is written with non-temporal stores, each row's inside the exp
  // loop of the next row (AVX-512); odd rows start unaligned; masked and NaN middle rows
  [20, 110017, 'streamed gradient, written during the next row; masked and NaN rows mid-run'],
];

export function isaCases(seed) {
  const r = rng(seed);
  const out = {};
  for (const [rows, vocab] of SHAPES) {
    const x = randomLogits(r, rows, vocab);
    // extreme and masked logits: −inf runs (masking), huge spreads (subnormal exps), ±80
    for (let i = 0; i < 40; i++) x[Math.floor(r() * x.length)] = -Infinity;
    for (let i = 0; i < 40; i++) x[Math.floor(r() * x.length)] = -90 - 20 * r();
    x[Math.floor(r() * x.length)] = 80;
    // a NaN logit in the last row (rows > 1): its gradient row is NaN, whose narrowing must match
    if (rows > 1) x[(rows - 1) * vocab + Math.floor(r() * vocab)] = NaN;
    if (rows >= 8) {
      x.fill(-Infinity, 2 * vocab, 2 * vocab + 2 * 4096 + 5);  // row 2: two whole blocks masked
      x[4 * vocab + 4100] = NaN;                               // row 4: a NaN block mid-row
      x.fill(-Infinity, 6 * vocab, 7 * vocab);                  // row 6: every logit masked
    }
    const t = randomTargets(r, rows, vocab, 0.2);
    for (const dtype of ['f32', 'bf16', 'f16']) {
      const { z } = makeLogits(x, rows, vocab, dtype);
      const key = `${rows}x${vocab} ${dtype}`;
      const f = crossEntropyForward(z, t, { reduction: 'sum' });
      out[`${key} forward`] = `${f.loss} ${hex(f.losses)} ${hex(f.lse)}`;
      for (const gradDtype of ['f32', 'bf16', 'f16']) {
        const fg = crossEntropyForward(z, t, { withGrad: true, gradDtype, gradOutput: 0.37 });
        out[`${key} fused → ${gradDtype}`] = `${fg.loss} ${hex(fg.grad.data)}`;
        const g = crossEntropyBackward(z, t, f.lse, { gradDtype, reduction: 'sum', gradOutput: 1.5 });
        out[`${key} backward → ${gradDtype}`] = hex(g.data);
      }
    }
  }
  // the loss family: every option and op (they call the same block kernels, so the sets agree)
  for (const [rows, vocab] of [[5, 9001], [2, 128256]]) {
    const x = randomLogits(r, rows, vocab), u = randomLogits(r, rows, vocab);
    x[3] = -Infinity;
    const t = randomTargets(r, rows, vocab, 0.2);
    const weight = Float32Array.from({ length: vocab }, () => r());
    const y = Float32Array.from({ length: rows * vocab }, () => (r() < 0.1 ? 1 : 0));
    for (const dtype of ['f32', 'bf16']) {
      const { z } = makeLogits(x, rows, vocab, dtype);
      const { z: zu } = makeLogits(u, rows, vocab, dtype);
      const key = `loss family ${rows}x${vocab} ${dtype}`;
      const o = crossEntropyForward(z, t, { labelSmoothing: 0.1, weight, zLoss: 1e-3, softcap: 20, logitScale: 1.3, stats: true, withGrad: true });
      out[`${key} ce options`] = `${o.loss} ${hex(o.losses)} ${hex(o.grad.data)} ${hex(o.stats.entropy)} ${hex(o.stats.argmax)}`;
      // the options that run on the plain driver (weights, z-loss, focal, logit scale of either sign)
      for (const [name, opts] of [
        ['weight zLoss scale', { weight, zLoss: 1e-3, logitScale: 1.3 }],
        ['negative scale', { logitScale: -0.7 }],
        ['focal weight', { focalGamma: 2, weight }],
        ['smoothing', { labelSmoothing: 0.1 }],
        ['smoothing weight zLoss scale', { labelSmoothing: 0.2, weight, zLoss: 1e-3, logitScale: -0.8 }],
      ]) {
        const p = crossEntropyForward(z, t, opts);
        const pg = crossEntropyForward(z, t, { ...opts, withGrad: true, gradOutput: 0.37 });
        out[`${key} ${name}`] = `${p.loss} ${hex(p.losses)} ${hex(p.lse)} ${pg.loss} ${hex(pg.grad.data)}`;
      }
      const s = softCrossEntropyForward(z, zu, { temperature: 2, withGrad: true });
      out[`${key} soft`] = `${s.loss} ${hex(s.grad.data)}`;
      for (const direction of ['forward', 'reverse']) {
        const k = klDivergenceForward(z, zu, { direction, withGrad: true });
        out[`${key} kl ${direction}`] = `${k.loss} ${hex(k.grad.data)}`;
      }
      out[`${key} entropy`] = hex(entropy(z));
      for (const temperature of [1, 0.7]) {
        const h = entropyForward(z, { temperature, withGrad: true, gradOutput: 0.37 });
        out[`${key} entropyForward T=${temperature}`] = `${h.loss} ${hex(h.losses)} ${hex(h.grad.data)}`;
      }
      const b = binaryCrossEntropyWithLogits(z, y, { posWeight: 2, withGrad: true });
      out[`${key} bce`] = `${b.loss} ${hex(b.grad.data)}`;
    }
  }
  // exp over its whole range, subnormal and overflowing results, specials, and a 16-lane tail
  const e = new Float32Array(100003);
  for (let i = 0; i < e.length; i++) e[i] = -110 + 200 * r();
  e.set([-Infinity, Infinity, NaN, 0, -0, 88.7, 88.72, 88.73, 89, -87.33, -103.9, -104, -150], 0);
  out.exp = hex(kernels.exp(e));
  return out;
}

// As a child process: node test/isa_cases.mjs SEED prints the cases as JSON.
if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(JSON.stringify(isaCases(Number(process.argv[2]))));
