// Accuracy report: fusedce vs the float64 reference on fresh random data, per shape and dtype.
// Prints a Markdown table and writes bench/results/accuracy-<date>-<kernels>.json.
// Run: npm run accuracy        (FUSEDCE_SEED=… to replay a draw)
import { execSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { backend, crossEntropyForward } from 'fusedce';
import { f64ToBf16, f64ToF16, makeLogits, normal, randomLogits, randomTargets, reference, testRng, ulpDistance16, SEED } from '../test/reference.mjs';

const SHAPES = [
  [3, 5], [7, 1000], [13, 32001], [4, 128256], [2, 262144], [1024, 512],
];
// plus 'confident' rows, as in the tests: others ≈ N(−14, 0.25), the target logit 2 … 14, so
// 1 − p_t runs from 1e-4 to 1e-9 while lse stays below 16
function confidentLogits(r, rows, vocab, targets) {
  const x = new Float32Array(rows * vocab);
  for (let k = 0; k < x.length; k++) x[k] = normal(r) * 0.5 - 14;
  for (let i = 0; i < rows; i++) x[i * vocab + targets[i]] = 2 + 2 * i;
  return x;
}
const rowsOut = [];
for (const [rows, vocab, kind] of [...SHAPES, [7, 1000, 'confident']]) {
  for (const dtype of ['f32', 'bf16', 'f16']) {
    const r = testRng(`accuracy-${rows}-${vocab}-${dtype}-${kind}`);
    const targets = randomTargets(r, rows, vocab, rows > 4 && !kind ? 0.2 : 0);
    const x = kind ? confidentLogits(r, rows, vocab, targets) : randomLogits(r, rows, vocab);
    const { z, values } = makeLogits(x, rows, vocab, dtype);
    const ref = reference(values, targets, rows, vocab);
    const g32 = crossEntropyForward(z, targets, { withGrad: true, gradDtype: 'f32' });
    const gLow = crossEntropyForward(z, targets, { withGrad: true, gradDtype: dtype === 'f32' ? 'bf16' : dtype });
    let lseErr = 0, rowLossRel = 0, gradRel = 0, ulps = 0, notExact = 0;
    for (let i = 0; i < rows; i++) {
      if (targets[i] === -100) continue;
      lseErr = Math.max(lseErr, Math.abs(g32.lse[i] - ref.lse[i]));
      rowLossRel = Math.max(rowLossRel, Math.abs(g32.losses[i] - ref.losses[i]) / Math.abs(ref.losses[i]));
    }
    const round = gLow.grad.dtype === 'bf16' ? f64ToBf16 : f64ToF16;
    for (let k = 0; k < rows * vocab; k++) {
      const rv = ref.grad[k];
      if (Math.abs(rv) >= 2 ** -126) gradRel = Math.max(gradRel, Math.abs(g32.grad.data[k] - rv) / Math.abs(rv));
      const d = ulpDistance16(gLow.grad.data[k], round(rv));
      ulps = Math.max(ulps, d);
      if (d) notExact++;
    }
    rowsOut.push({
      shape: `${rows}×${vocab}${kind ? ` ${kind}` : ''}`, dtype,
      lossRel: Math.abs(g32.loss - ref.loss) / Math.abs(ref.loss), rowLossRel, lseAbs: lseErr,
      f32GradRel: gradRel, lowGradDtype: gLow.grad.dtype, lowGradMaxUlp: ulps, lowGradNotCorrectlyRounded: notExact / (rows * vocab),
    });
  }
}
const e = (v) => v.toExponential(2);
console.log(`\nfusedce accuracy vs float64 (kernels: ${backend()}, seed ${SEED})\n`);
console.log('| shape | dtype | loss rel err | max row loss rel err | max lse abs err | max f32 grad rel err | 16-bit grad: max ulp (share not correctly rounded) |');
console.log('|---|---|---|---|---|---|---|');
for (const o of rowsOut)
  console.log(`| ${o.shape} | ${o.dtype} | ${e(o.lossRel)} | ${e(o.rowLossRel)} | ${e(o.lseAbs)} | ${e(o.f32GradRel)} | ${o.lowGradDtype}: ${o.lowGradMaxUlp} (${(o.lowGradNotCorrectlyRounded * 100).toFixed(4)}%) |`);

let sha = 'unknown';
try { sha = execSync('git rev-parse HEAD', { encoding: 'utf8' }).trim(); } catch {}
const date = new Date().toISOString();
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/accuracy-${date.slice(0, 10)}-${backend()}.json`, import.meta.url);
writeFileSync(file, JSON.stringify({ date, gitSha: sha, seed: SEED, kernels: backend(), node: process.version,
  cpu: os.cpus()[0]?.model, cores: os.cpus().length, results: rowsOut }, null, 2) + '\n');
console.log(`\nwritten: bench/results/${path.basename(file.pathname)}`);
