// Cross-entropy CPU benchmark: fusedce forward, backward and fused forward+backward over the
// shapes users run, against the frameworks they know (PyTorch, onnxruntime-node, TensorFlow.js
// cpu and wasm, plain JS) on the same data, next to this machine's ceilings measured in the
// same run.
//
// I/O counted per call (elements N = rows·vocab):
//   forward:  read logits (N·esz)                       + targets, losses, lse (negligible)
//   backward: read logits (N·esz) + write grad (N·gsz)   into a reused `out` (no page faults)
//   fused:    read logits (N·esz) + write grad (N·gsz)   into a reused `out`
// Ceilings:
//   exp:  our exp kernel over L1-resident buffers, run by the pool at the same thread count
//         (kernels.expCeiling: each thread its own 4096 floats), timed the same way (median).
//         Cross-entropy on a CPU is bound by exp, not memory, so "% exp" is the figure of merit.
//         The machine is shared and its speed drifts by up to 2× within minutes, so the ceiling
//         is sampled right before each (shape, dtype, threads) group of fusedce cases and each
//         case is divided by its own group's sample; peers by the median of the samples at their
//         thread count. Two threads are measured, not assumed to be twice one (on a shared or
//         SMT host they are not).
//   read: a streaming read of a 256 MiB buffer (kernels.read) at 1 and all threads; "% read" is
//         the op's GB/s over it.
// Peers get the same logits: PyTorch natively in bf16/f16/f32, the others the bf16 logits
// dequantised to f32 (they have no bf16 input), once per shape. Each peer's loss is checked
// against fusedce's; a disagreement is reported and makes the run exit 1.
//
// Run: npx fusedce bench [options]
//   --quick   one shape, bf16, short runs, no peers (a smoke test)
//   --json    print the JSON result instead of the table
//   --filter  only cases whose name contains the string
//   --peers   comma list of torch,onnxruntime,tfjs-cpu,tfjs-wasm,js, or all (default) or none.
//             A peer that is not installed is skipped with a note. They load from your project:
//               npm install @tensorflow/tfjs @tensorflow/tfjs-backend-wasm
//               ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node
//               PyTorch: a python3 that can import torch (Debian: apt-get install python3-torch),
//               or FUSEDCE_BENCH_PYTHON=/path/to/python
//   --threads comma list of thread counts (default: 1 and all of this machine's), e.g. 1,2 to
//             measure two threads on a bigger host; peers and ratios use the largest
//   --out     folder for cross-entropy-<date>.{json,md,svg}; default ./fusedce-bench
//             (--out none: write nothing)
//   --help    this text
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { cpuBackend as backend, bf16, cpuInfo, crossEntropyBackward, crossEntropyForward, f16, logits, setDevice } from 'fusedce';
import { kernels } from 'fusedce/kernels';
// This is the CPU benchmark (the GPU one is bench/cross_entropy_cuda.bench.py): host arrays stay on the CPU.
setDevice('cpu');
import { gitSha } from './git_sha.mjs';
import { onnxruntimePeer } from './peers/onnxruntime.mjs';
import { tfjsPeer } from './peers/tfjs.mjs';
import { torchPeer } from './peers/torch.mjs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    filter: { type: 'string' },
    peers: { type: 'string' },
    threads: { type: 'string' },
    out: { type: 'string', default: 'fusedce-bench' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  // the usage is the header comment's "Run:" paragraph
  const src = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  console.log(src.slice(src.indexOf('// Run:'), src.indexOf('\nimport ')).replace(/^\/\/ ?/gm, ''));
  process.exit(0);
}
const cores = cpuInfo().threads;
const SHAPES = args.quick ? [[8, 128256]] : [[1, 128256], [8, 128256], [64, 128256], [256, 32000], [16, 262144]];
const DTYPES = args.quick ? ['bf16'] : ['bf16', 'f16', 'f32'];
function parseThreads(text) {
  const list = text.split(',').map((v) => v.trim());
  for (const v of list)
    if (!/^[1-9][0-9]*$/.test(v) || Number(v) > 1024) throw new RangeError(`--threads: '${v}' is not a thread count (a comma list of integers 1…1024, e.g. 1,2)`);
  return [...new Set(list.map(Number))].sort((a, b) => a - b);
}
const THREADS = args.threads !== undefined ? parseThreads(args.threads) : [...new Set([1, cores])];
// the largest thread count measured: peers' multi-thread runs, the ratios and the chart use it
const threadsAll = Math.max(...THREADS);
const TIME_MS = args.quick ? 100 : 400;
const ALL_PEERS = ['torch', 'onnxruntime', 'tfjs-cpu', 'tfjs-wasm', 'js'];
const peerList = (args.peers ?? (args.quick ? 'js' : 'all')).split(',').map((s) => s.trim());
const wantPeer = (p) => peerList.includes('all') || peerList.includes(p);
for (const p of peerList)
  if (!['all', 'none', ...ALL_PEERS].includes(p)) throw new RangeError(`--peers: unknown peer '${p}' (one of ${ALL_PEERS.join(', ')}, all, none)`);
const log = (...a) => (args.json ? process.stderr.write(a.join(' ') + '\n') : console.log(...a));
const selected = (name) => !args.filter || name.includes(args.filter);

// ---- progress bar (a terminal only)
const tty = process.stderr.isTTY && !args.json;
let done = 0;
let total = 1;
function progress(label) {
  if (!tty) return;
  const w = 30, f = Math.round((w * done) / total);
  // a terminal that reports 0 columns (or none) gets 80
  process.stderr.write(`\r\x1b[2K[${'#'.repeat(f)}${'.'.repeat(w - f)}] ${done}/${total} ${label}`.slice(0, (process.stderr.columns || 80) - 1));
}
function say(line) {
  if (tty) process.stderr.write('\r\x1b[2K');
  log(line);
}

/** Median seconds of fn over a tinybench run (fn may be async): at least TIME_MS and 5 calls. */
async function median(name, fn) {
  progress(name);
  const bench = new Bench({ time: TIME_MS, iterations: 5, warmupTime: 50, warmupIterations: 2 });
  bench.add(name, fn);
  await bench.run();
  const r = bench.tasks[0].result;
  if (r.state !== 'completed') throw new Error(`${name}: ${r.state} ${r.error ?? ''}`);
  done++;
  return r.latency.p50 / 1e3;
}

// ---- ceilings
const EXP_REPEAT = 256; // passes over each thread's 4096 floats per call (~1M elements a thread)
const ceilingSamples = Object.fromEntries(THREADS.map((t) => [t, []]));
async function sampleCeiling(threads) {
  let n = 0;
  const sec = await median(`exp ceiling t${threads}`, () => { n = kernels.expCeiling(EXP_REPEAT, threads); });
  ceilingSamples[threads].push(n / sec);
  return n / sec;
}
const medianOf = (a) => { const b = [...a].sort((x, y) => x - y); return b.length % 2 ? b[b.length >> 1] : (b[b.length / 2 - 1] + b[b.length / 2]) / 2; };
const expCeiling = (t) => medianOf(ceilingSamples[THREADS.includes(t) ? t : threadsAll]);
const readBuf = new Float32Array(args.quick ? 16 << 20 : 64 << 20); // 64 or 256 MiB
readBuf.fill(1);
const readSamples = Object.fromEntries(THREADS.map((t) => [t, []]));
async function sampleRead() {
  for (const t of THREADS) readSamples[t].push(readBuf.byteLength / (await median(`read ceiling t${t}`, () => kernels.read(readBuf, t))));
}
const readGBs = (t) => Math.max(...readSamples[t]) / 1e9;

// ---- peers
const peers = [];
const skipped = [];
if (wantPeer('torch')) {
  const p = torchPeer();
  (p.skip ? skipped : peers).push(p.skip ? `PyTorch: ${p.skip}` : p);
}
if (wantPeer('onnxruntime')) {
  const p = await onnxruntimePeer();
  (p.skip ? skipped : peers).push(p.skip ? `onnxruntime-node: ${p.skip}` : p);
}
for (const b of ['cpu', 'wasm'])
  if (wantPeer(`tfjs-${b}`)) {
    const p = await tfjsPeer(b);
    (p.skip ? skipped : peers).push(p.skip ? `tfjs-${b}: ${p.skip}` : p);
  }
for (const s of skipped) log(`skipped peer — ${s}`);
const torch = peers.find((p) => p.name === 'PyTorch');
const jsPeers = peers.filter((p) => p !== torch);
total = THREADS.length * 4 + SHAPES.length * (DTYPES.length * THREADS.length * 4 + (wantPeer('js') ? 1 : 0)
  + jsPeers.reduce((n, p) => n + (p.name === 'onnxruntime-node' ? THREADS.length : 2), 0) + (torch ? DTYPES.length : 0));

for (const t of THREADS) await sampleCeiling(t);
say(`exp ceiling (${backend()} kernels, L1-resident): ${THREADS.map((t) => `${(expCeiling(t) / 1e9).toFixed(2)} G elements/s at ${t} thread(s)`).join(', ')}`);
await sampleRead();
say(`read ceiling: ${THREADS.map((t) => `${readGBs(t).toFixed(1)} GB/s at ${t} thread(s)`).join(', ')}`);

// ---- data: LM-like logits, N(0, 2²), deterministic
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
const mismatches = [];
const esz = { f32: 4, f16: 2, bf16: 2 };
// Loss agreement: peers fed f32 compute in fp32; PyTorch 1.13 rounds a bf16/f16 loss to its dtype.
const LOSS_TOL = { f32: 1e-4, bf16: 1e-2, f16: 2e-3 };
function record(r, N, bytes) {
  const row = { ...r, elementsPerSec: N / r.seconds, gbPerSec: bytes / r.seconds / 1e9 };
  results.push(row);
  const name = `${row.impl} ${row.op} ${row.rows}x${row.vocab} ${row.dtype} t${row.threads}`;
  say(`${name.padEnd(52)} ${(row.elementsPerSec / 1e9).toFixed(3).padStart(7)} G elem/s`);
}
function checkLoss(impl, dtype, loss, ref) {
  const rel = Math.abs(loss - ref) / Math.abs(ref);
  if (!(rel <= LOSS_TOL[dtype])) mismatches.push(`${impl} (${dtype}): loss ${loss} vs fusedce ${ref} (relative ${rel.toExponential(2)})`);
  return rel;
}

for (const [rows, vocab] of SHAPES) {
  const shape = `${rows}x${vocab}`;
  const { x, t } = makeData(rows, vocab);
  const N = rows * vocab;
  const base = { rows, vocab };
  for (const dtype of DTYPES) {
    const conv = dtype === 'bf16' ? bf16 : dtype === 'f16' ? f16 : null;
    const z = conv ? logits(conv.fromFloat32(x), rows, vocab, dtype) : logits(x, rows, vocab);
    const out = logits(conv ? new Uint16Array(N) : new Float32Array(N), rows, vocab, dtype);
    const { lse, loss } = crossEntropyForward(z, t);
    for (const threads of THREADS) {
      const ceiling = await sampleCeiling(threads);
      const cases = [
        ['forward', () => crossEntropyForward(z, t, { threads }), N * esz[dtype]],
        ['backward', () => crossEntropyBackward(z, t, lse, { threads, out }), 2 * N * esz[dtype]],
        ['fused fwd+bwd', () => crossEntropyForward(z, t, { threads, withGrad: true, out }), 2 * N * esz[dtype]],
      ];
      for (const [op, fn, bytes] of cases) {
        const name = `fusedce ${op} ${shape} ${dtype} t${threads}`;
        if (!selected(name)) { done++; continue; }
        record({ impl: 'fusedce', op, ...base, dtype, threads, seconds: await median(name, fn), loss, expCeiling: ceiling }, N, bytes);
      }
    }
    // PyTorch on this dtype, natively (its own timing loop in a child process)
    if (torch && selected(`PyTorch ${shape} ${dtype}`)) {
      progress(`PyTorch ${shape} ${dtype}`);
      for (const r of torch.run(z.data, t, rows, vocab, dtype, THREADS, TIME_MS / 1000)) {
        if (r.skip) { skipped.push(`PyTorch ${r.op} ${dtype}: ${r.skip}`); continue; }
        const lossRelDiff = checkLoss('PyTorch', dtype, r.loss, loss);
        const bytes = (r.op === 'forward' ? 1 : 2) * N * esz[dtype];
        record({ impl: 'PyTorch', op: r.op === 'forward' ? 'forward' : 'fwd+bwd', ...base, dtype, threads: r.threads, seconds: r.seconds, loss: r.loss, lossRelDiff }, N, bytes);
      }
      done++;
    } else if (torch) done++;
    if (dtype !== 'bf16') continue;
    // JS peers: the bf16 logits dequantised to f32, once per shape
    const values = bf16.toFloat32(z.data);
    for (const p of jsPeers) {
      const threadsList = p.name === 'onnxruntime-node' ? THREADS : [1];
      for (const threads of threadsList) {
        const prepared = await p.prepare(values, t, rows, vocab, threads);
        const lossRelDiff = checkLoss(p.name, 'f32', prepared.loss, loss);
        // a peer's forward+backward is its autograd (two passes), not a fused kernel: 'fwd+bwd'
        const ops = [['forward', prepared.forward, N * 4], ...(prepared.fwdBwd ? [['fwd+bwd', prepared.fwdBwd, 2 * N * 4]] : [])];
        for (const [op, fn, bytes] of ops) {
          const name = `${p.name} ${op} ${shape} f32 t${threads}`;
          if (!selected(name)) { done++; continue; }
          record({ impl: p.name, op, ...base, dtype: 'f32', threads, seconds: await median(name, fn), loss: prepared.loss, lossRelDiff }, N, bytes);
        }
        prepared.dispose?.();
      }
    }
    if (wantPeer('js')) {
      const name = `plain JS forward ${shape} f32 t1`;
      if (selected(name)) {
        const jsLoss = plainJsCE(values, t, rows, vocab);
        const lossRelDiff = checkLoss('plain JS', 'f32', jsLoss, loss);
        record({ impl: 'plain JS', op: 'forward', ...base, dtype: 'f32', threads: 1, seconds: await median(name, () => plainJsCE(values, t, rows, vocab)), loss: jsLoss, lossRelDiff }, N, N * 4);
      } else done++;
    }
  }
}

for (const t of THREADS) await sampleCeiling(t);
await sampleRead();
if (tty) process.stderr.write('\r\x1b[2K');
for (const r of results) {
  r.expCeiling ??= expCeiling(r.threads);
  r.pctExpCeiling = (100 * r.elementsPerSec) / r.expCeiling;
  r.pctReadCeiling = (100 * r.gbPerSec) / readGBs(THREADS.includes(r.threads) ? r.threads : threadsAll);
}

// ---- ratios: fusedce over each peer, same shape and logits dtype, threads = all (peers' own threads)
const peerBaseDtype = (r) => (r.impl === 'PyTorch' ? r.dtype : 'bf16'); // JS peers ran on the bf16 data
const ratios = [];
for (const r of results.filter((r) => r.impl !== 'fusedce')) {
  const ourOp = r.op === 'fwd+bwd' ? 'fused fwd+bwd' : r.op;
  const ours = results.find((o) => o.impl === 'fusedce' && o.op === ourOp && o.rows === r.rows && o.vocab === r.vocab && o.dtype === peerBaseDtype(r) && o.threads === threadsAll);
  if (ours && (r.impl === 'PyTorch' ? r.threads === threadsAll : true))
    ratios.push({ shape: `${r.rows}×${r.vocab}`, dtype: peerBaseDtype(r), op: ourOp === r.op ? r.op : `${ourOp} vs ${r.op}`, peer: `${r.impl} t${r.threads}`, ratio: ours.elementsPerSec / r.elementsPerSec });
}

const sha = gitSha();
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
// what ran: a commit of a checkout, or the installed package's version
const build = sha === 'unknown' ? `fusedce ${pkg.version} (installed package)` : `fusedce ${pkg.version}, git ${sha.slice(0, 7)}`;
const report = {
  date: new Date().toISOString(), gitSha: sha, fusedce: pkg.version, node: process.version, kernels: backend(),
  cpu: os.cpus()[0]?.model, cores, threads: THREADS, quick: args.quick, filter: args.filter ?? null,
  peers: peers.map((p) => ({ name: p.name, version: p.version })), skipped: [...new Set(skipped)],
  expCeiling: Object.fromEntries(THREADS.map((t) => [t, expCeiling(t)])), expCeilingSamples: ceilingSamples,
  readCeilingGBs: Object.fromEntries(THREADS.map((t) => [t, readGBs(t)])), readSamples,
  results, ratios, mismatches,
};
const f3 = (v) => (v / 1e9).toFixed(3);
const md = [
  `fusedce CPU benchmark — ${report.date.slice(0, 10)}, ${report.cpu} (${cores} hardware threads; measured at ${THREADS.join(', ')}), ${report.kernels} kernels, Node ${report.node}, ${build}`,
  '',
  ...THREADS.map((t) => `- exp ceiling at ${t} thread(s): median ${(expCeiling(t) / 1e9).toFixed(2)} G elements/s of ${ceilingSamples[t].length} samples (${(Math.min(...ceilingSamples[t]) / 1e9).toFixed(2)}–${(Math.max(...ceilingSamples[t]) / 1e9).toFixed(2)}); each fusedce row is divided by the sample taken just before its group`),
  `- read ceiling: ${THREADS.map((t) => `${readGBs(t).toFixed(1)} GB/s at ${t} thread(s)`).join(', ')} (streaming read of ${readBuf.byteLength >> 20} MiB)`,
  `- peers: ${peers.map((p) => `${p.name} ${p.version}`).join(', ') || 'none'}${skipped.length ? `; skipped: ${[...new Set(skipped)].join('; ')}` : ''}`,
  '- PyTorch runs on the same logits in their dtype; onnxruntime-node, TensorFlow.js and plain JS on the bf16 logits dequantised to f32 (no bf16 input); TensorFlow.js labels are a dense one-hot built outside the timing; onnxruntime-node (inference build) has no gradient.',
  ...(mismatches.length ? [`- **LOSS MISMATCH**: ${mismatches.join('; ')}`] : ['- every peer agreed with fusedce on the loss']),
  '',
  '| impl | op | shape | dtype | threads | G elements/s | GB/s | % exp ceiling | % read ceiling |',
  '|---|---|---|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.impl} | ${r.op} | ${r.rows}×${r.vocab} | ${r.dtype} | ${r.threads} | ${f3(r.elementsPerSec)} | ${r.gbPerSec.toFixed(2)} | ${r.pctExpCeiling.toFixed(0)}% | ${r.pctReadCeiling.toFixed(0)}% |`),
  ...(ratios.length ? ['', `fusedce (${threadsAll} threads) over each peer, same shape, op and logits:`, '', '| shape | logits | op | peer | fusedce × faster |', '|---|---|---|---|---|',
    ...ratios.map((q) => `| ${q.shape} | ${q.dtype} | ${q.op} | ${q.peer} | ${q.ratio.toFixed(1)}× |`)] : []),
].join('\n');

// ---- SVG: G elements/s (log scale) per implementation, bf16 logits, all threads, per shape.
// Every bar carries its value; the y-range spans every bar and the exp ceiling, so no bar sits at
// the floor and the ceiling line stays inside the plot.
function svgChart() {
  const series = [
    ['fusedce', 'forward', '#1f77b4', 'fusedce forward'], ['fusedce', 'fused fwd+bwd', '#aec7e8', 'fusedce fused fwd+bwd'],
    ['PyTorch', 'forward', '#d62728', 'PyTorch forward'], ['PyTorch', 'fwd+bwd', '#ff9896', 'PyTorch fwd+bwd (autograd)'],
    ['onnxruntime-node', 'forward', '#2ca02c', 'onnxruntime-node forward'],
    ['tfjs-wasm', 'forward', '#9467bd', 'tfjs-wasm forward'], ['tfjs-wasm', 'fwd+bwd', '#c5b0d5', 'tfjs-wasm fwd+bwd (autograd)'],
    ['tfjs-cpu', 'forward', '#8c564b', 'tfjs-cpu forward'], ['tfjs-cpu', 'fwd+bwd', '#c49c94', 'tfjs-cpu fwd+bwd (autograd)'],
    ['plain JS', 'forward', '#7f7f7f', 'plain JS forward'],
  ].filter(([impl, op]) => results.some((r) => r.impl === impl && r.op === op));
  const shapes = [...new Set(results.map((r) => `${r.rows}×${r.vocab}`))];
  const pick = (impl, op, shape) => {
    const c = results.filter((r) => r.impl === impl && r.op === op && `${r.rows}×${r.vocab}` === shape && (impl === 'fusedce' || impl === 'PyTorch' ? r.dtype === 'bf16' : true));
    return c.length ? Math.max(...c.filter((r) => r.threads === Math.max(...c.map((q) => q.threads))).map((r) => r.elementsPerSec)) : null;
  };
  const ceiling = expCeiling(threadsAll);
  const values = shapes.flatMap((sh) => series.map(([impl, op]) => pick(impl, op, sh))).filter((v) => v != null && v > 0);
  const lo = Math.floor(Math.log10(Math.min(...values, ceiling) / 1e9) - 0.15); // decades of G elements/s; the smallest bar stays visible
  const hi = Math.ceil(Math.log10((Math.max(...values, ceiling) / 1e9) * 1.3));
  const legendRows = Math.ceil(series.length / 3);
  const W = Math.max(960, 70 + shapes.length * (series.length * 16 + 24)), H = 420 + 20 * legendRows, L = 70, R = 20, T = 60, B = 60 + 20 * legendRows, bw = 13;
  const y = (v) => T + (H - T - B) * (1 - (Math.log10(v / 1e9) - lo) / (hi - lo));
  const gw = (W - L - R) / Math.max(shapes.length, 1);
  const fmt = (v) => { const g = v / 1e9; return g >= 10 ? g.toFixed(0) : g >= 1 ? g.toFixed(1) : g >= 0.1 ? g.toFixed(2) : g.toPrecision(2); };
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">Cross-entropy throughput, bf16 logits (peers without bf16: the same values in f32), ${threadsAll} threads</text>`,
    `<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${report.cpu}, ${report.date.slice(0, 10)}, ${build}; dashed red: exp ceiling at ${threadsAll} threads (median, ${fmt(ceiling)} G elements/s)</text>`];
  for (let e = lo; e <= hi; e++) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(10 ** (e + 9))}" y2="${y(10 ** (e + 9))}" stroke="#ddd"/>`,
      `<text x="${L - 6}" y="${y(10 ** (e + 9)) + 4}" text-anchor="end">${e < 0 ? (10 ** e).toFixed(-e) : 10 ** e}</text>`);
  }
  parts.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">G elements/s (log)</text>`);
  shapes.forEach((shape, i) => {
    const x0 = L + i * gw + (gw - series.length * (bw + 3)) / 2;
    series.forEach(([impl, op, color, label], k) => {
      const v = pick(impl, op, shape);
      if (v == null) return;
      const x = x0 + k * (bw + 3), top = y(v);
      parts.push(`<rect x="${x}" y="${top}" width="${bw}" height="${H - B - top}" fill="${color}"><title>${label} ${shape}: ${(v / 1e9).toFixed(3)} G elements/s</title></rect>`,
        `<text transform="translate(${x + bw / 2 + 4} ${top - 4}) rotate(-90)" font-size="10">${fmt(v)}</text>`);
    });
    const c = y(ceiling);
    parts.push(`<line x1="${L + i * gw + 6}" x2="${L + (i + 1) * gw - 6}" y1="${c}" y2="${c}" stroke="#d62728" stroke-dasharray="5 3"/>`,
      `<text x="${L + i * gw + gw / 2}" y="${H - B + 16}" text-anchor="middle">${shape}</text>`);
  });
  series.forEach(([, , color, label], k) => {
    const lx = L + (k % 3) * 290, ly = H - B + 40 + Math.floor(k / 3) * 20;
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${color}"/>`, `<text x="${lx + 18}" y="${ly}">${label}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

if (args.json) console.log(JSON.stringify(report, null, 2));
else console.log('\n' + md);
if (args.out !== 'none') {
  const dir = path.resolve(args.out);
  mkdirSync(dir, { recursive: true });
  const base = path.join(dir, `cross-entropy-${report.date.slice(0, 10)}${args.quick ? '-quick' : ''}${args.filter ? '-filtered' : ''}`);
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(`${base}.md`, md + '\n');
  writeFileSync(`${base}.svg`, svgChart() + '\n');
  log(`\nwritten: ${path.relative(process.cwd(), base)}.{json,md,svg}`);
}
if (mismatches.length) {
  console.error(`loss mismatch: ${mismatches.join('; ')}`);
  process.exitCode = 1;
}
