// Measured error of each loss-family op against the float64 references of the tests
// (test/loss_reference.mjs), on fresh LM-like logits: bf16 4×128256 (Llama-3 vocabulary) and f32
// 16×4099 (a ragged block). Gradients in f32; errors relative to the largest |reference| element
// of the row batch (gradient) or to each value (losses).
//
// Run: npm run accuracy:loss [-- --out DIR]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  binaryCrossEntropyWithLogits, cpuBackend, crossEntropyForward, entropy, klDivergenceForward, setDevice,
  softCrossEntropyForward,
} from 'fusedce';
import { makeLogits, randomLogits, randomTargets, rng, toFloat32 } from '../test/reference.mjs';
import { refBce, refCrossEntropy, refEntropy, refSoft } from '../test/loss_reference.mjs';

const { values: args } = parseArgs({ options: { out: { type: 'string' } } });
setDevice('cpu');

function maxRel(a, b) {
  let w = 0;
  for (let i = 0; i < b.length; i++) if (b[i] !== 0 || a[i] !== 0) w = Math.max(w, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1e-30));
  return w;
}
function maxAbsScaled(a, b) {
  let m = 0, w = 0;
  for (const v of b) m = Math.max(m, Math.abs(v));
  for (let i = 0; i < b.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]));
  return w / m;
}

const rows_ = [];
for (const [rows, vocab, dtype] of [[4, 128256, 'bf16'], [16, 4099, 'f32']]) {
  const r = rng(rows * 7919 + vocab);
  const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
  const { z: u, values: uv } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
  const targets = randomTargets(r, rows, vocab);
  const weight = Float32Array.from({ length: vocab }, () => 0.2 + r());
  const shape = `${rows}×${vocab} ${dtype}`;
  const add = (op, lossRel, gradRel) => rows_.push({ op, shape, lossRel, gradRel });
  for (const [label, o] of [
    ['CE labelSmoothing 0.1 + weight', { labelSmoothing: 0.1, weight }],
    ['CE zLoss 1e-3', { zLoss: 1e-3 }],
    ['CE softcap 30, logitScale 0.8', { softcap: 30, logitScale: 0.8 }],
  ]) {
    const ref = refCrossEntropy(values, rows, vocab, targets, o);
    const out = crossEntropyForward(z, targets, { ...o, withGrad: true, gradDtype: 'f32', stats: true });
    add(label, maxRel(out.losses, ref.losses), maxAbsScaled(toFloat32(out.grad), ref.grad));
    if (label.startsWith('CE zLoss')) {
      add('stats: entropy per row', maxRel(out.stats.entropy, ref.stats.entropy), NaN);
      add('stats: maxProb per row', maxRel(out.stats.maxProb, ref.stats.maxProb), NaN);
    }
  }
  for (const [label, op, o] of [
    ['soft CE, teacher logits, T=2, T²', 'soft', { temperature: 2, tSquared: true }],
    ['KL forward', 'klForward', {}],
    ['KL reverse, T=1.5', 'klReverse', { temperature: 1.5 }],
  ]) {
    const T = o.temperature ?? 1;
    const ref = refSoft(values, uv, rows, vocab, { op, T, factor: o.tSquared ? T * T : 1 });
    const out = op === 'soft'
      ? softCrossEntropyForward(z, u, { ...o, withGrad: true, gradDtype: 'f32' })
      : klDivergenceForward(z, u, { ...o, direction: op === 'klForward' ? 'forward' : 'reverse', withGrad: true, gradDtype: 'f32' });
    add(label, maxRel(out.losses, ref.losses), maxAbsScaled(toFloat32(out.grad), ref.grad));
  }
  add('entropy', maxRel(entropy(z), refEntropy(values, rows, vocab)), NaN);
  const y = Float32Array.from({ length: rows * vocab }, () => (r() < 0.1 ? 1 : r() < 0.5 ? 0 : r()));
  const ref = refBce(values, y, rows, vocab, { posWeight: 2, reduction: 'none' });
  const out = binaryCrossEntropyWithLogits(z, y, { posWeight: 2, reduction: 'none', withGrad: true, gradDtype: 'f32' });
  add('binary CE, posWeight 2', maxRel(out.losses, ref.losses), maxAbsScaled(toFloat32(out.grad), ref.grad));
}

const date = new Date().toISOString().slice(0, 10);
const e = (v) => (Number.isNaN(v) ? '—' : v.toExponential(1));
const lines = [
  `Loss family error vs float64, ${cpuBackend()} kernels, ${date}`,
  '',
  '| op | shape | max rel. error, per-row loss | max abs. error of grad / max abs(grad) |',
  '|---|---|---|---|',
  ...rows_.map((r) => `| ${r.op} | ${r.shape} | ${e(r.lossRel)} | ${e(r.gradRel)} |`),
];
console.log(lines.join('\n'));
if (args.out) {
  mkdirSync(args.out, { recursive: true });
  const base = path.join(args.out, `loss-accuracy-${date}-${cpuBackend()}`);
  writeFileSync(`${base}.md`, lines.join('\n') + '\n');
  writeFileSync(`${base}.json`, JSON.stringify({ date, backend: cpuBackend(), results: rows_ }, null, 2) + '\n');
  console.error(`wrote ${base}.{md,json}`);
}
