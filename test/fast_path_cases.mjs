// Extreme inputs through the loss family's block-kernel paths (test/fast_paths.test.ts): each case's
// outputs as plain numbers. Run in-process for the dispatched kernels, and in a child process with
// FUSEDCE_ISA=scalar, where the options, soft targets, entropy and BCE take their portable loops.
// The data: masked runs longer than a 4096-block, scattered −inf, ±80, a NaN row, an all-masked
// row, ignored rows, and vocabularies that end in a ragged block and a 16-lane tail.
import {
  binaryCrossEntropyWithLogits, crossEntropyForward, entropy, entropyForward, klDivergenceForward, logits,
  softCrossEntropyForward,
} from 'fusedce';
import { makeLogits, randomLogits, randomTargets, rng } from './reference.mjs';

const list = (a) => Array.from(a instanceof Uint16Array ? new Float32Array(0) : a, (v) => (Number.isFinite(v) ? v : String(v)));
const f32 = (g) => {
  if (g.dtype === 'f32') return list(g.data);
  throw new Error('cases ask for f32 gradients');
};

export function fastPathCases(seed) {
  const r = rng(seed);
  const out = {};
  for (const [rows, vocab] of [[7, 9001], [5, 128256]]) {
    const x = randomLogits(r, rows, vocab, 3);
    x.fill(-Infinity, 0, 4096 + 700);                           // row 0: a block and more masked
    for (let i = 0; i < 60; i++) x[Math.floor(r() * x.length)] = -Infinity;
    for (let i = 0; i < 20; i++) x[Math.floor(r() * x.length)] = r() < 0.5 ? 80 : -80;
    x[2 * vocab + 17] = NaN;                                     // row 2: a NaN
    x.fill(-Infinity, 3 * vocab, 4 * vocab);                     // row 3: all masked
    const u = randomLogits(r, rows, vocab, 3);
    for (let i = 0; i < 40; i++) u[Math.floor(r() * u.length)] = -Infinity;
    u.fill(-Infinity, 1 * vocab + 100, 1 * vocab + 100 + 5000);  // row 1: the teacher masks a run
    const t = randomTargets(r, rows, vocab, 0.2);
    t[0] = 4096 + 800;                                           // row 0's target after its masked run
    t[2] = 3;                                                    // the NaN row counts
    t[3] = -100;                                                 // the all-masked row ignored
    const weight = Float32Array.from({ length: vocab }, () => 0.1 + 2 * r());
    const q = new Float32Array(rows * vocab);
    for (let i = 0; i < rows; i++) for (let k = 0; k < 24; k++) q[i * vocab + Math.floor(r() * vocab)] = r();
    q[5] = 0.5;                                                  // row 0: mass on a masked logit, +inf
    q[3 * vocab + 5] = 0.5;                                      // row 3: all masked, NaN (as torch)
    const y = Float32Array.from({ length: rows * vocab }, () => (r() < 0.05 ? 1 : r() < 0.1 ? r() : 0));
    for (const dtype of ['f32', 'bf16']) {
      const { z } = makeLogits(x, rows, vocab, dtype);
      const { z: zu } = makeLogits(u, rows, vocab, dtype);
      const key = `${rows}x${vocab} ${dtype}`;
      const ce = (name, o) => {
        const f = crossEntropyForward(z, t, { ...o, reduction: 'none' });
        const g = crossEntropyForward(z, t, { ...o, reduction: 'sum', withGrad: true, gradDtype: 'f32', gradOutput: 0.5 });
        out[`${key} ce ${name}`] = { losses: list(f.losses), lse: list(f.lse), grad: f32(g.grad) };
      };
      ce('weight zLoss', { weight, zLoss: 1e-3 });
      ce('negative scale', { logitScale: -0.7 });
      ce('focal', { focalGamma: 2 });
      ce('smoothing', { labelSmoothing: 0.1 });
      ce('smoothing weight scale', { labelSmoothing: 0.2, weight, logitScale: 1.3, zLoss: 1e-4 });
      out[`${key} entropy`] = { h: list(entropy(z, { temperature: 0.8 })) };
      const h = entropyForward(z, { temperature: 1.3, reduction: 'none', withGrad: true, gradDtype: 'f32', gradOutput: 0.5 });
      out[`${key} entropyForward`] = { losses: list(h.losses), grad: f32(h.grad) };
      const s = softCrossEntropyForward(z, zu, { temperature: 2, reduction: 'none', withGrad: true, gradDtype: 'f32', gradOutput: 0.5 });
      out[`${key} soft`] = { losses: list(s.losses), grad: f32(s.grad) };
      for (const direction of ['forward', 'reverse']) {
        const k = klDivergenceForward(z, zu, { direction, reduction: 'none', withGrad: true, gradDtype: 'f32', gradOutput: 0.5 });
        out[`${key} kl ${direction}`] = { losses: list(k.losses), grad: f32(k.grad) };
      }
      const p = softCrossEntropyForward(z, logits(q, rows, vocab), { targetKind: 'probs', reduction: 'none', withGrad: true, gradDtype: 'f32', gradOutput: 0.5 });
      out[`${key} probs`] = { losses: list(p.losses), grad: f32(p.grad) };
      const b = binaryCrossEntropyWithLogits(z, y, { posWeight: 3, reduction: 'none', withGrad: true, gradDtype: 'f32' });
      out[`${key} bce`] = { losses: list(b.losses), grad: f32(b.grad) };
    }
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(JSON.stringify(fastPathCases(Number(process.argv[2]))));
