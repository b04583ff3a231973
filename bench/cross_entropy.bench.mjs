// Cross-entropy CPU benchmark: fusedce forward, backward and fused forward+backward over the
// shapes users run, next to this machine's exp ceiling measured in the same run, and a plain-JS
// cross-entropy on the same data (checked to agree on the loss).
//
// I/O counted per call (elements N = rows·vocab):
//   forward:  read logits (N·esz)                       + targets, losses, lse (negligible)
//   backward: read logits (N·esz) + write grad (N·gsz)   into a reused `out` (no page faults)
//   fused:    read logits (N·esz) + write grad (N·gsz)   into a reused `out`
// Cross-entropy on a CPU is bound by exp, not memory: the ceiling is our exp kernel over an
// L1-resident buffer, one thread, times the threads used (an upper bound: it assumes perfect
// scaling), and "% ceiling" is elements/s over that. The machine may be shared and noisy, so the
// ceiling is sampled before every shape and the highest sample is used (a conservative ratio);
// every sample is in the JSON.
//
// Run: npm run bench [-- --quick] [-- --json] [-- --filter 64x128256]
//   --quick   one shape, bf16, short runs (a smoke test)
//   --json    print the JSON result instead of the table
//   --filter  only cases whose name contains the string
// Writes bench/results/cross-entropy-<date>.json (machine, date, versions, git SHA).
import { execSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { backend, bf16, cpuInfo, crossEntropyBackward, crossEntropyForward, f16, kernels, logits } from 'fusedce';

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, filter: { type: 'string' } },
});
const threadsAll = cpuInfo().threads;
const SHAPES = args.quick ? [[8, 128256]] : [[1, 128256], [8, 128256], [64, 128256], [256, 32000], [16, 262144]];
const DTYPES = args.quick ? ['bf16'] : ['bf16', 'f16', 'f32'];
const THREADS = [...new Set([1, threadsAll])];
const TIME_MS = args.quick ? 100 : 400;
const log = (...a) => (args.json ? process.stderr.write(a.join(' ') + '\n') : console.log(...a));

/** Median seconds of fn over a tinybench run. */
async function median(name, fn) {
  const bench = new Bench({ time: TIME_MS, warmupTime: 50, warmupIterations: 3 });
  bench.add(name, fn);
  await bench.run();
  const r = bench.tasks[0].result;
  if (r.state !== 'completed') throw new Error(`${name}: ${r.state} ${r.error ?? ''}`);
  return r.latency.p50 / 1e3;
}

// ---- ceiling: the kernels' exp over 4096 L1-resident floats, one thread
const xl1 = Float32Array.from({ length: 4096 }, (_, i) => -20 * ((i * 0.618) % 1));
const yl1 = new Float32Array(4096);
const REPEAT = 256;
const ceilingSamples = [];
async function sampleCeiling() {
  const sec = await median('exp ceiling', () => kernels.exp(xl1, yl1, REPEAT));
  ceilingSamples.push((4096 * REPEAT) / sec);
  return ceilingSamples.at(-1);
}
log(`exp ceiling (${backend()} kernels, L1-resident, 1 thread): ${((await sampleCeiling()) / 1e9).toFixed(2)} G elements/s`);

// ---- data: LM-like logits, N(0, 2²) with a few spikes per row
let seed = 7;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
function makeData(rows, vocab) {
  const x = new Float32Array(rows * vocab);
  for (let i = 0; i < x.length; i += 2) {
    const u = Math.sqrt(-2 * Math.log(rand() + 1e-12)), v = 2 * Math.PI * rand();
    x[i] = 2 * u * Math.cos(v);
    if (i + 1 < x.length) x[i + 1] = 2 * u * Math.sin(v);
  }
  const t = new Int32Array(rows);
  for (let r = 0; r < rows; r++) t[r] = Math.floor(rand() * vocab);
  return { x, t };
}

// Plain-JS cross-entropy (what a user writes without a library): online max/sum per row in float64.
function plainJsCE(values, targets, rows, vocab) {
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * vocab;
    let m = -Infinity, s = 0;
    for (let j = 0; j < vocab; j++) {
      const v = values[o + j];
      if (v > m) { s = s * Math.exp(m - v) + 1; m = v; } else s += Math.exp(v - m);
    }
    sum += m + Math.log(s) - values[o + targets[r]];
  }
  return sum / rows;
}

const results = [];
const esz = { f32: 4, f16: 2, bf16: 2 };
for (const [rows, vocab] of SHAPES) {
  if (results.length) await sampleCeiling();
  const { x, t } = makeData(rows, vocab);
  const N = rows * vocab;
  for (const dtype of DTYPES) {
    const conv = dtype === 'bf16' ? bf16 : dtype === 'f16' ? f16 : null;
    const z = conv ? logits(conv.fromFloat32(x), rows, vocab, dtype) : logits(x, rows, vocab);
    const out = logits(conv ? new Uint16Array(N) : new Float32Array(N), rows, vocab, dtype);
    const { lse, loss } = crossEntropyForward(z, t);
    for (const threads of THREADS) {
      const cases = [
        ['forward', () => crossEntropyForward(z, t, { threads }), N * esz[dtype]],
        ['backward', () => crossEntropyBackward(z, t, lse, { threads, out }), 2 * N * esz[dtype]],
        ['fused fwd+bwd', () => crossEntropyForward(z, t, { threads, withGrad: true, out }), 2 * N * esz[dtype]],
      ];
      for (const [op, fn, bytes] of cases) {
        const name = `fusedce ${op} ${rows}x${vocab} ${dtype} t${threads}`;
        if (args.filter && !name.includes(args.filter)) continue;
        const sec = await median(name, fn);
        results.push({ impl: 'fusedce', op, rows, vocab, dtype, threads, seconds: sec, elementsPerSec: N / sec, gbPerSec: bytes / sec / 1e9 });
        log(`${name.padEnd(48)} ${(N / sec / 1e9).toFixed(3).padStart(7)} G elem/s`);
      }
    }
    // plain JS peer, once per shape (bf16 data, dequantised; one thread), checked against fusedce
    if (dtype === 'bf16' && (!args.filter || `plain-js ${rows}x${vocab}`.includes(args.filter))) {
      const values = bf16.toFloat32(z.data);
      const jsLoss = plainJsCE(values, t, rows, vocab);
      if (Math.abs(jsLoss - loss) > 1e-5 * Math.abs(loss)) throw new Error(`plain JS loss ${jsLoss} ≠ fusedce ${loss}`);
      const sec = await median(`plain-js ${rows}x${vocab}`, () => plainJsCE(values, t, rows, vocab));
      results.push({ impl: 'plain JS', op: 'forward', rows, vocab, dtype: 'bf16', threads: 1, seconds: sec, elementsPerSec: N / sec, gbPerSec: (N * 2) / sec / 1e9 });
      log(`${`plain JS forward ${rows}x${vocab} bf16 t1`.padEnd(48)} ${(N / sec / 1e9).toFixed(3).padStart(7)} G elem/s`);
    }
  }
}

await sampleCeiling();
const expPerThread = Math.max(...ceilingSamples);
for (const r of results) r.pctCeiling = (100 * r.elementsPerSec) / (expPerThread * r.threads);

let sha = 'unknown';
try { sha = execSync('git rev-parse HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch {}
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const report = {
  date: new Date().toISOString(), gitSha: sha, fusedce: pkg.version, node: process.version, kernels: backend(),
  cpu: os.cpus()[0]?.model, cores: threadsAll, quick: args.quick,
  expCeilingPerThread: expPerThread, expCeilingSamples: ceilingSamples, results,
};
const md = [
  `fusedce CPU benchmark — ${report.date.slice(0, 10)}, ${report.cpu} (${threadsAll} threads), ${report.kernels} kernels, Node ${report.node}, git ${sha.slice(0, 7)}`,
  `exp ceiling: ${(expPerThread / 1e9).toFixed(2)} G elements/s per thread (L1-resident; highest of ${ceilingSamples.length} samples, ${ceilingSamples.map((c) => (c / 1e9).toFixed(2)).join(', ')})`,
  '',
  '| impl | op | shape | dtype | threads | G elements/s | GB/s | % of exp ceiling |',
  '|---|---|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.impl} | ${r.op} | ${r.rows}×${r.vocab} | ${r.dtype} | ${r.threads} | ${(r.elementsPerSec / 1e9).toFixed(3)} | ${r.gbPerSec.toFixed(2)} | ${r.pctCeiling.toFixed(0)}% |`),
].join('\n');
if (args.json) console.log(JSON.stringify(report, null, 2));
else console.log('\n' + md);
if (!args.quick && !args.filter) {
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const base = `cross-entropy-${report.date.slice(0, 10)}`;
  writeFileSync(new URL(`${base}.json`, dir), JSON.stringify(report, null, 2) + '\n');
  writeFileSync(new URL(`${base}.md`, dir), md + '\n');
  log(`\nwritten: bench/results/${base}.json and .md`);
}
