#!/usr/bin/env node
// The boundary's default paths, measured side by side in one process (npm run bench:boundary):
//   1. withGrad with no `out` (a fresh gradient each call) against a reused `out`;
//   2. the separate backward with no `out` against a reused one;
//   3. the native bf16 / f16 fromFloat32 / toFloat32 against the plain-JS loops they replaced
//      (bitwise the same results; the reference loops are dtype.ts's `reference`).
// Each pair is timed in alternation (A B A B …), so both see the same machine state; a row
// reports both medians and their ratio. Throughput ratio = reused time / fresh time (≥ 0.9 is
// the target), speed-up = JS time / native time (≥ 10 the target).
//   node bench/boundary.bench.mjs [--rows 64] [--vocab 128256] [--dtype bf16] [--threads 2]
//                                 [--trials 30] [--quick] [--out DIR]
import { execSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const f = require(root);
const { reference } = require(path.join(root, 'dist', 'cjs', 'dtype.js'));

const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
if (argv.includes('--help')) {
  console.log('node bench/boundary.bench.mjs [--rows 64] [--vocab 128256] [--dtype bf16] [--threads 2] [--trials 30] [--quick] [--out DIR]');
  process.exit(0);
}
const quick = argv.includes('--quick');
const rows = Number(opt('rows', quick ? '8' : '64'));
const vocab = Number(opt('vocab', quick ? '32000' : '128256'));
const dtype = opt('dtype', 'bf16');
const threads = Number(opt('threads', String(Math.min(2, os.availableParallelism()))));
const trials = Number(opt('trials', quick ? '5' : '30'));
const outDir = opt('out', null);

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
function timeIt(fn, reps) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1e6 / reps;
}
// A and B alternate; each trial times `reps` calls. Returns medians in ms.
// The warm-up (10 calls each) lets the allocator reach its steady state: the first fresh outputs
// of a process come from new pages (the heap grows to hold the arrays alive between two garbage
// collections), later ones from memory the collector gave back, as in any training loop.
function pair(a, b, reps) {
  for (let i = 0; i < 10; i++) a(), b();
  const ta = [], tb = [];
  for (let k = 0; k < trials; k++) {
    if (k % 2) { tb.push(timeIt(b, reps)); ta.push(timeIt(a, reps)); } else { ta.push(timeIt(a, reps)); tb.push(timeIt(b, reps)); }
  }
  return { a: median(ta), b: median(tb) };
}

const n = rows * vocab;
const x = new Float32Array(n);
for (let i = 0; i < n; i++) x[i] = 4 * Math.sin(i * 0.7) + Math.cos(i * 0.013);
const lib = dtype === 'f16' ? f.f16 : f.bf16;
const z = dtype === 'f32' ? f.logits(x, rows, vocab) : f.logits(lib.fromFloat32(x), rows, vocab, dtype);
const t = new Int32Array(rows).map((_, i) => (i * 7919) % vocab);
const out = { data: dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n), dtype, rows, vocab };
const { lse } = f.crossEntropyForward(z, t, { threads });
const rowsOut = [];

// 1–2. Each trial times LOOP consecutive calls of one side, as a training loop makes them: the
// fresh side then reuses the memory the garbage collector gives back. (Alternating single calls
// would be a pattern no loop makes: the reused side's calls let glibc trim the heap that the next
// fresh call must fault in again.)
const LOOP = quick ? 3 : 10;
// 1. fused forward + gradient
{
  const r = pair(() => f.crossEntropyForward(z, t, { withGrad: true, threads }),
    () => f.crossEntropyForward(z, t, { withGrad: true, out, threads }), LOOP);
  rowsOut.push({ case: `withGrad, fresh vs reused out (${dtype} ${rows}×${vocab}, ${threads} threads)`, freshMs: r.a, reusedMs: r.b, ratio: r.b / r.a, target: '≥ 0.9' });
}
// 2. the separate backward
{
  const r = pair(() => f.crossEntropyBackward(z, t, lse, { threads }), () => f.crossEntropyBackward(z, t, lse, { out, threads }), LOOP);
  rowsOut.push({ case: `backward, fresh vs reused out (${dtype} ${rows}×${vocab}, ${threads} threads)`, freshMs: r.a, reusedMs: r.b, ratio: r.b / r.a, target: '≥ 0.9' });
}
// 3. conversions: native against the JS loops (the previous implementation), on the batch
// (memory bound: 6 bytes move per element, reported against the read ceiling of this run) and on
// a cache-resident array of 2^18 elements (1 MiB of f32; with --quick, the batch alone)
const { kernels } = require(path.join(root, 'dist', 'cjs', 'kernels.js'));
const readBuf = new Float64Array(32 * 2 ** 20);  // 256 MiB
for (let i = 0; i < readBuf.length; i += 512) readBuf[i] = i;
const readT = [];
for (let k = 0; k < 5; k++) readT.push(timeIt(() => kernels.read(readBuf, threads), 1));
const readGBs = readBuf.byteLength / median(readT) / 1e6;
for (const m of [...new Set([n, Math.min(2 ** 18, n)])]) {
  const xs = m === n ? x : x.subarray(0, m);
  for (const name of ['bf16', 'f16']) {
    const nat = name === 'f16' ? f.f16 : f.bf16;
    const js = reference[name];
    const bits = nat.fromFloat32(xs);
    const o16 = new Uint16Array(m), o32 = new Float32Array(m);
    const reps = m === n ? 1 : 20;
    const from = pair(() => js.fromFloat32(xs), () => nat.fromFloat32(xs), reps);
    const fromOut = pair(() => js.fromFloat32(xs), () => nat.fromFloat32(xs, o16), reps);
    const to = pair(() => js.toFloat32(bits), () => nat.toFloat32(bits), reps);
    const toOut = pair(() => js.toFloat32(bits), () => nat.toFloat32(bits, o32), reps);
    for (const [what, r] of [['fromFloat32', from], ['fromFloat32 with out', fromOut], ['toFloat32', to], ['toFloat32 with out', toOut]])
      rowsOut.push({
        case: `${name}.${what} (${m} elements)`, jsMs: r.a, nativeMs: r.b, speedup: r.a / r.b, gElemPerS: m / r.b / 1e6,
        trafficGBs: (6 * m) / r.b / 1e6, readCeilingGBs: m === n ? readGBs : undefined, target: '≥ 10×',
      });
  }
}

let sha = process.env.FUSEDCE_GIT_SHA ?? 'unknown';
try {
  sha = execSync('git rev-parse --short HEAD', { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch {}
const meta = {
  date: new Date().toISOString(),
  git: sha,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.availableParallelism(),
  isa: f.cpuBackend(),
  node: process.version,
  rows, vocab, dtype, threads, trials, readCeilingGBs: readGBs,
};
const fmt = (v) => (v === undefined ? '' : v < 10 ? v.toFixed(3) : v.toFixed(1));
const lines = [
  `# Boundary defaults: ${meta.date.slice(0, 10)}, git ${meta.git}, ${meta.cpu} (${meta.cores} cores, ${meta.isa}), Node ${meta.node}`,
  '',
  `Medians of ${trials} alternating trials each. Ratio: reused-out time / fresh time (throughput of the default path relative to a reused out). Speed-up: JS loop time / native time.`,
  '',
  '| case | A (ms) | B (ms) | ratio or speed-up | target |',
  '|---|---|---|---|---|',
  ...rowsOut.map((r) => r.ratio !== undefined
    ? `| ${r.case} | fresh ${fmt(r.freshMs)} | reused ${fmt(r.reusedMs)} | ${r.ratio.toFixed(2)}× | ${r.target} |`
    : `| ${r.case} | JS ${fmt(r.jsMs)} | native ${fmt(r.nativeMs)} (${r.gElemPerS.toFixed(2)} G elem/s, ${r.trafficGBs.toFixed(1)} GB/s${r.readCeilingGBs ? ` of a ${r.readCeilingGBs.toFixed(1)} GB/s read ceiling` : ''}) | ${r.speedup.toFixed(1)}× | ${r.target} |`),
  '',
];
process.stdout.write(lines.join('\n'));
if (outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'boundary.json'), `${JSON.stringify({ meta, rows: rowsOut }, null, 2)}\n`);
  fs.writeFileSync(path.join(outDir, 'boundary.md'), lines.join('\n'));
}
