// TensorFlow.js with its own cross-entropy against the same step with fusedce/tfjs, side by side
// in one run, on the tfjs cpu and wasm backends:
//   loss+grad   tf.valueAndGrad of the loss over a (rows, vocab) logits tensor: the part the
//               loss owns (tfjs: dense one-hot labels, built outside the timing)
//   train step  optimizer.minimize over a small LM head, Dense(hidden → vocab) on (rows, hidden)
//               features: the matmuls, the loss and its gradient, the Adam update
// Each case is the median of a tinybench run; the ratio is tfjs's time over fusedce's.
//
// Run: npm run bench:tfjs [-- --quick] [-- --out DIR] [-- --backends cpu,wasm]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { cpuBackend } from 'fusedce';
import { gitSha } from './git_sha.mjs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    backends: { type: 'string', default: 'cpu,wasm' },
  },
});
const { log, warn } = console;
console.log = console.warn = () => {}; // tfjs's advert for its native backend
const tf = await import('@tensorflow/tfjs');
await import('@tensorflow/tfjs-backend-wasm');
const { sparseSoftmaxCrossEntropy } = await import('fusedce/tfjs');
Object.assign(console, { log, warn });

const TIME_MS = args.quick ? 200 : 1500;
// (rows, vocab) for loss+grad; (rows, hidden, vocab) for the train step
const LOSS_SHAPES = args.quick ? [[32, 8192]] : [[32, 8192], [64, 32000], [8, 128256]];
const STEP_SHAPES = args.quick ? [[32, 64, 8192]] : [[32, 64, 8192], [64, 128, 32000]];

async function median(fn) {
  const b = new Bench({ time: TIME_MS, iterations: 5, warmupTime: 100, warmupIterations: 2 });
  b.add('x', fn);
  await b.run();
  const r = b.tasks[0].result;
  if (r.state !== 'completed') throw new Error(`${r.state} ${r.error ?? ''}`);
  return r.latency.p50 / 1e3;
}

let seed = 11;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const results = [];
for (const backend of args.backends.split(',')) {
  console.log = console.warn = () => {};
  const ok = await tf.setBackend(backend);
  await tf.ready();
  Object.assign(console, { log, warn });
  if (!ok) throw new Error(`tfjs backend ${backend} did not initialise`);
  for (const [rows, vocab] of LOSS_SHAPES) {
    const z = tf.tensor2d(Float32Array.from({ length: rows * vocab }, () => 4 * (rand() - 0.5)), [rows, vocab]);
    const ids = tf.tensor1d(Int32Array.from({ length: rows }, () => Math.floor(rand() * vocab)), 'int32');
    const onehot = tf.oneHot(ids, vocab).cast('float32');
    const theirs = tf.valueAndGrad((x) => tf.losses.softmaxCrossEntropy(onehot, x));
    const ours = tf.valueAndGrad((x) => sparseSoftmaxCrossEntropy(ids, x));
    const run = (f) => () => tf.tidy(() => { const { value, grad } = f(z); grad.dataSync(); return value.dataSync()[0]; });
    const lt = run(theirs)(), lo = run(ours)();
    if (Math.abs(lt - lo) > 1e-4 * Math.abs(lt)) throw new Error(`loss mismatch ${lt} vs ${lo}`);
    const tT = await median(run(theirs)), tO = await median(run(ours));
    results.push({ backend, case: 'loss+grad', shape: `${rows}×${vocab}`, tfjsMs: tT * 1e3, fusedceMs: tO * 1e3, ratio: tT / tO });
    log(`${backend} loss+grad ${rows}×${vocab}: tfjs ${(tT * 1e3).toFixed(2)} ms, fusedce ${(tO * 1e3).toFixed(2)} ms, ${(tT / tO).toFixed(1)}×`);
    tf.dispose([z, ids, onehot]);
  }
  for (const [rows, hidden, vocab] of STEP_SHAPES) {
    const h = tf.tensor2d(Float32Array.from({ length: rows * hidden }, () => rand() - 0.5), [rows, hidden]);
    const ids = tf.tensor1d(Int32Array.from({ length: rows }, () => Math.floor(rand() * vocab)), 'int32');
    const onehot = tf.oneHot(ids, vocab).cast('float32');
    const init = tf.randomNormal([hidden, vocab], 0, 0.02, 'float32', 5);
    const step = (loss) => {
      const w = tf.variable(init.clone());
      const opt = tf.train.adam(1e-3);
      return { fn: () => tf.tidy(() => opt.minimize(() => loss(tf.matMul(h, w)), true, [w]).dataSync()[0]), dispose: () => { w.dispose(); opt.dispose(); } };
    };
    const a = step((logits) => tf.losses.softmaxCrossEntropy(onehot, logits));
    const b = step((logits) => sparseSoftmaxCrossEntropy(ids, logits));
    const la = a.fn(), lb = b.fn();
    if (Math.abs(la - lb) > 1e-4 * Math.abs(la)) throw new Error(`loss mismatch ${la} vs ${lb}`);
    const tT = await median(a.fn), tO = await median(b.fn);
    results.push({ backend, case: 'train step', shape: `${rows}×${hidden}→${vocab}`, tfjsMs: tT * 1e3, fusedceMs: tO * 1e3, ratio: tT / tO });
    log(`${backend} train step ${rows}×${hidden}→${vocab}: tfjs ${(tT * 1e3).toFixed(2)} ms, fusedce ${(tO * 1e3).toFixed(2)} ms, ${(tT / tO).toFixed(1)}×`);
    a.dispose(); b.dispose();
    tf.dispose([h, ids, onehot, init]);
  }
}

const sha = gitSha();
const report = { date: new Date().toISOString(), gitSha: sha, cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), node: process.version,
  tfjs: tf.version['tfjs-core'], kernels: cpuBackend(), quick: args.quick, results };
const md = [
  `fusedce/tfjs against TensorFlow.js's own loss — ${report.date.slice(0, 10)}, ${report.cpu} (${report.cores} threads), tfjs ${report.tfjs}, fusedce ${report.kernels} kernels, Node ${report.node}, git ${sha.slice(0, 7)}`,
  '',
  '| backend | case | shape | tfjs own CE (ms) | fusedce/tfjs (ms) | tfjs / fusedce |',
  '|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.backend} | ${r.case} | ${r.shape} | ${r.tfjsMs.toFixed(2)} | ${r.fusedceMs.toFixed(2)} | ${r.ratio.toFixed(1)}× |`),
].join('\n');
log('\n' + md);
if (args.out) {
  mkdirSync(args.out, { recursive: true });
  const base = path.join(args.out, `tfjs${args.quick ? '-quick' : ''}`);
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(`${base}.md`, md + '\n');
  log(`written: ${base}.{json,md}`);
}
