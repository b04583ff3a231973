// The loss family's cost on the CPU: each cross-entropy option, and each other op, next to the
// plain cross-entropy on the same logits in the same run (this machine is shared and noisy, so
// only ratios taken side by side mean anything).
//
// Every case reads the same bf16 logits [rows, vocab] once per pass; elements/s = rows·vocab / time.
// The plain path is the fused-exp AVX2/AVX-512 kernel. The options that keep its per-element work
// (weights, z-loss, focal, logit scale, label smoothing) run on the same driver with block kernels
// that take their extra sums in the exp loop; soft targets, KL, the entropy and binary CE have
// block kernels of their own; softcap, the statistics and the JSD still run the general loops
// (cpp/cross_entropy_options.cpp, soft_cross_entropy.cpp), which widen each block into L1 first.
// Each case is timed right after its group's plain case, in every one of the rounds; its ratio is
// the median of those pairs' ratios and its time its best round's tinybench median.
//
// Run: npm run bench:loss [-- --quick] [-- --json] [-- --rows R --vocab V --threads T] [-- --out DIR]
//      [-- --only TEXT]   (only the cases whose name contains TEXT, with the plain cases they pair with)
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import {
  bf16,
  binaryCrossEntropyWithLogits,
  cpuBackend,
  crossEntropyForward,
  entropy,
  entropyForward,
  jsDivergenceForward,
  klDivergenceForward,
  logits,
  setDevice,
  softCrossEntropyForward,
} from 'fusedce';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    rows: { type: 'string' },
    vocab: { type: 'string' },
    threads: { type: 'string' },
    rounds: { type: 'string' },
    out: { type: 'string' },
    only: { type: 'string' },
  },
});
setDevice('cpu');
const rows = Number(args.rows ?? (args.quick ? 4 : 64));
const vocab = Number(args.vocab ?? (args.quick ? 4099 : 128256));
const threads = Number(args.threads ?? os.availableParallelism());
const rounds = Number(args.rounds ?? (args.quick ? 1 : 5));
const TIME_MS = args.quick ? 20 : 300;
const N = rows * vocab;

// Data: LM-like logits N(0, 2²) with a few spikes, bf16.
let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const normal = () => Math.sqrt(-2 * Math.log(Math.max(rnd(), 1e-300))) * Math.cos(2 * Math.PI * rnd());
const x = Float32Array.from({ length: N }, () => 2 * normal());
const z = logits(bf16.fromFloat32(x), rows, vocab, 'bf16');
const teacher = logits(bf16.fromFloat32(Float32Array.from(x, (v) => v + normal())), rows, vocab, 'bf16');
const targets = Int32Array.from({ length: rows }, () => Math.floor(rnd() * vocab));
const weight = Float32Array.from({ length: vocab }, () => 0.5 + rnd());
const multiLabel = Float32Array.from({ length: N }, () => (rnd() < 0.01 ? 1 : 0));
// a teacher's top-32 probabilities per row (not renormalised), as f32
const topk = (() => {
  const q = new Float32Array(N);
  for (let r = 0; r < rows; r++) for (let k = 0; k < 32; k++) q[r * vocab + Math.floor(rnd() * vocab)] = 0.02;
  return logits(q, rows, vocab);
})();
const out = { data: new Uint16Array(N), dtype: 'bf16', rows, vocab };  // reused gradient buffer

const ce = (o) => () => crossEntropyForward(z, targets, { threads, ...o });
const fused = (o) => () => crossEntropyForward(z, targets, { threads, withGrad: true, out, ...o });
// [name, group, fn]; 'plain' of each group is its baseline
// [name, pass, fn, floor]: the floor is issue 17's bound on the ratio to the plain kernel of the
// same pass, from the work per element (null: none set, e.g. the statistics or every option at once)
const ALL_CASES = [
  ['plain', 'forward', ce({}), null],
  ['labelSmoothing 0.1', 'forward', ce({ labelSmoothing: 0.1 }), 0.85],
  ['labelSmoothing 0.1 + weight', 'forward', ce({ labelSmoothing: 0.1, weight }), 0.85],
  ['weight', 'forward', ce({ weight }), 0.9],
  ['zLoss 1e-4', 'forward', ce({ zLoss: 1e-4 }), 0.9],
  ['logitScale 0.5', 'forward', ce({ logitScale: 0.5 }), 0.9],
  ['softcap 30', 'forward', ce({ softcap: 30 }), 0.45],
  ['focal γ = 2', 'forward', ce({ focalGamma: 2 }), 0.9],
  ['stats', 'forward', ce({ stats: true }), null],
  ['all of the above', 'forward', ce({ labelSmoothing: 0.1, weight, zLoss: 1e-4, logitScale: 0.5, softcap: 30, stats: true }), null],
  ['soft CE (teacher logits)', 'forward', () => softCrossEntropyForward(z, teacher, { threads }), 0.45],
  ['KL forward', 'forward', () => klDivergenceForward(z, teacher, { threads }), 0.45],
  ['KL reverse', 'forward', () => klDivergenceForward(z, teacher, { threads, direction: 'reverse' }), 0.45],
  ['entropy', 'forward', () => entropy(z, { threads }), 0.8],
  ['entropy (entropyForward)', 'forward', () => entropyForward(z, { threads }), 0.8],
  ['binary CE', 'forward', () => binaryCrossEntropyWithLogits(z, multiLabel, { threads }), 0.35],
  ['JSD β = 0.5', 'forward', () => jsDivergenceForward(z, teacher, { threads }), 0.35],
  ['soft CE (top-32 probs)', 'forward', () => softCrossEntropyForward(z, topk, { threads, targetKind: 'probs' }), 0.45],
  ['soft CE (top-32 probs, smoothing 0.1 + weight)', 'forward', () => softCrossEntropyForward(z, topk, { threads, targetKind: 'probs', labelSmoothing: 0.1, weight }), 0.45],
  ['plain', 'fwd+bwd', fused({}), null],
  ['labelSmoothing 0.1', 'fwd+bwd', fused({ labelSmoothing: 0.1 }), 0.8],
  ['labelSmoothing 0.1 + weight', 'fwd+bwd', fused({ labelSmoothing: 0.1, weight }), 0.8],
  ['weight', 'fwd+bwd', fused({ weight }), 0.8],
  ['zLoss 1e-4', 'fwd+bwd', fused({ zLoss: 1e-4 }), 0.8],
  ['logitScale 0.5', 'fwd+bwd', fused({ logitScale: 0.5 }), 0.8],
  ['softcap 30', 'fwd+bwd', fused({ softcap: 30 }), 0.45],
  ['focal γ = 2', 'fwd+bwd', fused({ focalGamma: 2 }), 0.8],
  ['all of the above', 'fwd+bwd', fused({ labelSmoothing: 0.1, weight, zLoss: 1e-4, logitScale: 0.5, softcap: 30, stats: true }), null],
  ['soft CE (teacher logits)', 'fwd+bwd', () => softCrossEntropyForward(z, teacher, { threads, withGrad: true, out }), 0.45],
  ['KL forward', 'fwd+bwd', () => klDivergenceForward(z, teacher, { threads, withGrad: true, out }), 0.45],
  ['KL reverse', 'fwd+bwd', () => klDivergenceForward(z, teacher, { threads, withGrad: true, out, direction: 'reverse' }), 0.45],
  ['binary CE', 'fwd+bwd', () => binaryCrossEntropyWithLogits(z, multiLabel, { threads, withGrad: true, out }), 0.35],
  ['entropy (entropyForward)', 'fwd+bwd', () => entropyForward(z, { threads, withGrad: true, out }), 0.8],
  ['JSD β = 0.5', 'fwd+bwd', () => jsDivergenceForward(z, teacher, { threads, withGrad: true, out }), 0.35],
  ['soft CE (top-32 probs)', 'fwd+bwd', () => softCrossEntropyForward(z, topk, { threads, targetKind: 'probs', withGrad: true, out }), 0.45],
  ['soft CE (top-32 probs, smoothing 0.1 + weight)', 'fwd+bwd', () => softCrossEntropyForward(z, topk, { threads, targetKind: 'probs', labelSmoothing: 0.1, weight, withGrad: true, out }), 0.45],
];

const CASES = args.only ? ALL_CASES.filter(([name]) => name === 'plain' || name.includes(args.only)) : ALL_CASES;

async function median(fn) {
  const bench = new Bench({ time: TIME_MS, iterations: 3, warmupTime: 20, warmupIterations: 1 });
  bench.add('x', fn);
  await bench.run();
  const r = bench.tasks[0].result;
  if (r.state !== 'completed') throw new Error(`${r.state} ${r.error ?? ''}`);
  return r.latency.p50 / 1e3;
}

// Each case is timed right after its group's plain case, and its ratio is the median over the
// rounds of those adjacent pairs: this shared machine's speed drifts by more than the floors' margins
// between the start and the end of a run, and a pair sees the same machine.
const best = new Array(CASES.length).fill(Infinity);
const ratios = CASES.map(() => []);
const plainOf = (group) => CASES.findIndex(([n, g]) => g === group && n === 'plain');
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < CASES.length; i++) {
    if (process.stderr.isTTY) process.stderr.write(`\rround ${round + 1}/${rounds}, case ${i + 1}/${CASES.length}   `);
    const p = plainOf(CASES[i][1]);
    const base = await median(CASES[p][2]);
    best[p] = Math.min(best[p], base);
    const t = p === i ? base : await median(CASES[i][2]);
    best[i] = Math.min(best[i], t);
    ratios[i].push(base / t);
  }
}
if (process.stderr.isTTY) process.stderr.write('\n');
const mid = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const results = CASES.map(([name, group, , floor], i) => {
  const seconds = best[i];
  const relativeToPlain = plainOf(group) === i ? 1 : mid(ratios[i]);
  return { name, group, ms: seconds * 1e3, elementsPerSec: N / seconds, relativeToPlain, floor, meetsFloor: floor === null ? null : relativeToPlain >= floor };
});
const met = results.filter((r) => r.meetsFloor === true).length, floored = results.filter((r) => r.floor !== null).length;

let sha = 'unknown';
try {
  sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch { /* not a git checkout */ }
const report = {
  date: new Date().toISOString(),
  machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), node: process.version, backend: cpuBackend() },
  git: sha,
  shape: { rows, vocab, dtype: 'bf16' },
  threads,
  rounds,
  results,
};

const lines = [
  `Loss family cost, bf16 ${rows}×${vocab}, ${threads} threads, ${report.machine.backend} (${report.machine.cpu}), ${report.date.slice(0, 10)}, git ${sha}`,
  '',
  '| op / option | pass | ms | G elements/s | vs plain (same pass) | floor |',
  '|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.name} | ${r.group} | ${r.ms.toFixed(2)} | ${(r.elementsPerSec / 1e9).toFixed(3)} | ${r.relativeToPlain.toFixed(2)}× | ${r.floor === null ? '—' : `≥ ${r.floor}× ${r.meetsFloor ? 'met' : '**missed**'}`} |`),
  '',
  `Ratios: the median over ${rounds} rounds of (plain ÷ case), each pair timed back to back. ${met} of ${floored} floors met in this run.`,
];
if (args.json) console.log(JSON.stringify(report, null, 2));
else console.log(lines.join('\n'));
if (args.out) {
  mkdirSync(args.out, { recursive: true });
  // one file per kernel set (avx512, avx2, scalar): their ratios are not comparable
  const base = path.join(args.out, `loss-family-${report.date.slice(0, 10)}-${report.machine.backend}`);
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(`${base}.md`, lines.join('\n') + '\n');
  console.error(`wrote ${base}.{json,md}`);
}
