// fusedce demo: cross-entropy on a Llama-3-sized (128256-vocab) bf16 batch.
//   1. forward + fused gradient, timed → loss, perplexity, bits per token, throughput
//   2. the gradient checked by central finite differences of the loss itself
// Run: npm run demo   (options: --rows N, --vocab N, --threads N)
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { backend, bf16, cpuInfo, crossEntropyBackward, crossEntropyForward, crossEntropyForwardAsync, logits } from 'fusedce';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '64' },
    vocab: { type: 'string', default: '128256' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});
const rows = Number(args.rows);
const vocab = Number(args.vocab);
const threads = Number(args.threads);

// --- data: logits shaped like a language model's (N(0, 2²) with a few confident spikes per row)
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
const x = new Float32Array(rows * vocab);
for (let i = 0; i < x.length; i++) x[i] = 2 * gauss();
const targets = new Int32Array(rows);
for (let r = 0; r < rows; r++) {
  const spikes = Array.from({ length: 4 }, () => Math.floor(rand() * vocab));
  for (const j of spikes) x[r * vocab + j] = 9 + 3 * rand();
  // the "next token" is one of the model's confident guesses 3 times in 4, else anything
  targets[r] = rand() < 0.75 ? spikes[Math.floor(rand() * 4)] : Math.floor(rand() * vocab);
  if (r % 16 === 15) targets[r] = -100; // every 16th row is padding (ignored)
}
const z = logits(bf16.fromFloat32(x), rows, vocab, 'bf16');

console.log(`fusedce demo — ${rows} × ${vocab} bf16 logits, ${threads} thread(s), kernels: ${backend()}`);
const cpu = cpuInfo();
console.log(`CPU: ${cpu.threads} hardware threads; avx512 ${cpu.avx512}, avx2 ${cpu.avx2}, fma ${cpu.fma}, f16c ${cpu.f16c}\n`);

// --- 1. loss and gradient, timed (median of 5 after one warm-up)
const time = (fn) => {
  fn();
  const t = [];
  for (let k = 0; k < 5; k++) {
    const t0 = process.hrtime.bigint();
    fn();
    t.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return t.sort((a, b) => a - b)[2];
};
let res;
const tFwd = time(() => (res = crossEntropyForward(z, targets, { threads })));
// as a training loop would: one gradient buffer, reused every step (no fresh pages per call)
const out = logits(new Uint16Array(rows * vocab), rows, vocab, 'bf16');
const tFused = time(() => (res = crossEntropyForward(z, targets, { threads, withGrad: true, out })));
const tBwd = time(() => crossEntropyBackward(z, targets, res.lse, { threads, out }));
const asyncRes = await crossEntropyForwardAsync(z, targets, { threads });

const n = rows * vocab;
const counted = res.count;
console.log(`loss (mean over ${counted} of ${rows} rows) = ${res.loss.toFixed(6)}   (async call: ${asyncRes.loss.toFixed(6)})`);
console.log(`perplexity = ${Math.exp(res.loss).toFixed(2)}   bits per token = ${(res.loss / Math.LN2).toFixed(4)}\n`);
const line = (name, sec, bytes) =>
  console.log(`${name.padEnd(22)} ${(sec * 1e3).toFixed(2).padStart(9)} ms  ${(n / sec / 1e9).toFixed(3).padStart(7)} G elem/s  ${(bytes / sec / 1e9).toFixed(2).padStart(7)} GB/s`);
console.log('throughput               time        elements/s          bytes/s');
line('forward', tFwd, n * 2); // read bf16 logits once
line('forward + grad (fused)', tFused, n * 4); // read logits, write bf16 gradient
line('backward (from lse)', tBwd, n * 4);

// --- 2. finite differences: d loss_i / d z_ij ≈ (loss_i(z + h e_j) − loss_i(z − h e_j)) / 2h
// checked on one row, at the target and the most probable classes (where the gradient is large
// enough to rise above fp32 loss rounding). The bf16 values are exact in f32, and so is z ± h.
const row = 0;
const t = targets[row];
const zrow = bf16.toFloat32(z.data.subarray(row * vocab, (row + 1) * vocab));
const one = new Int32Array([t]);
const g = crossEntropyForward(logits(zrow, 1, vocab), one, { withGrad: true, reduction: 'sum' }).grad.data;
const order = Array.from(zrow.keys()).sort((a, b) => zrow[b] - zrow[a]);
const coords = [t, ...order.slice(0, 4).filter((j) => j !== t)];
const h = 2 ** -6;
console.log(`\nfinite differences on row ${row} (target ${t}), h = 2^-6:`);
console.log('   class        analytic      finite diff     abs error   verdict');
let ok = true;
for (const j of coords) {
  const zp = zrow.slice();
  zp[j] += h;
  const zm = zrow.slice();
  zm[j] -= h;
  const lp = crossEntropyForward(logits(zp, 1, vocab), one, { reduction: 'sum' }).loss;
  const lm = crossEntropyForward(logits(zm, 1, vocab), one, { reduction: 'sum' }).loss;
  const fd = (lp - lm) / (2 * h);
  const err = Math.abs(fd - g[j]);
  const pass = err <= 2e-4 + 1e-2 * Math.abs(g[j]);
  ok &&= pass;
  console.log(`${String(j).padStart(8)} ${g[j].toExponential(6).padStart(15)} ${fd.toExponential(6).padStart(15)} ${err.toExponential(2).padStart(12)}   ${pass ? 'ok' : 'MISMATCH'}`);
}
console.log(ok ? '\ngradient check: ok' : '\ngradient check: FAILED');
process.exitCode = ok ? 0 : 1;
