#!/usr/bin/env node
// Runs the boundary fuzz (boundary_fuzz.cjs) in child processes and adds up their summaries:
//   node test/fuzz/run.cjs [--public N] [--raw N] [--per-child N] [--seed S]
// A child that dies (a signal, a non-zero exit, no summary) is a crash: the run fails and names
// its seed and mode (rerun that child with FUZZ_TRACE=1 to see the case). Exit 0 only with
// 0 crashes, 0 accepted invalid calls, 0 wrong results and 0 unexpected errors.
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');

const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const total = { public: arg('public', 6000), raw: arg('raw', 4000) };
const perChild = arg('per-child', 1000);
const seed0 = arg('seed', Date.now() % 100000);
const script = path.join(__dirname, 'boundary_fuzz.cjs');

const jobs = [];
for (const mode of ['public', 'raw'])
  for (let done = 0, k = 0; done < total[mode]; done += perChild, k++)
    jobs.push({ mode, cases: Math.min(perChild, total[mode] - done), seed: seed0 * 1000 + k + (mode === 'raw' ? 500 : 0) });

function runJob(j) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [script, '--mode', j.mode, '--cases', String(j.cases), '--seed', String(j.seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code, signal) => {
      let summary = null;
      try {
        summary = JSON.parse(out.trim().split('\n').pop());
      } catch {}
      resolve({ ...j, code, signal, summary, err: err.slice(-2000) });
    });
  });
}

(async () => {
  const results = [];
  const queue = [...jobs];
  const workers = Array.from({ length: 2 }, async () => {
    while (queue.length) results.push(await runJob(queue.shift()));
  });
  await Promise.all(workers);
  const agg = { cases: 0, valid: 0, rejected: 0, crashes: [], acceptedInvalid: [], wrong: [], unexpected: [] };
  for (const r of results) {
    if (r.signal || r.code !== 0 || !r.summary) {
      agg.crashes.push({ mode: r.mode, seed: r.seed, cases: r.cases, code: r.code, signal: r.signal, stderr: r.err });
      continue;
    }
    agg.cases += r.summary.cases;
    agg.valid += r.summary.valid;
    agg.rejected += r.summary.rejected;
    for (const k of ['acceptedInvalid', 'wrong', 'unexpected']) agg[k].push(...r.summary[k].map((x) => ({ mode: r.mode, seed: r.seed, ...x })));
  }
  const counts = { cases: agg.cases, valid: agg.valid, rejected: agg.rejected, crashes: agg.crashes.length, acceptedInvalid: agg.acceptedInvalid.length, wrong: agg.wrong.length, unexpected: agg.unexpected.length };
  process.stdout.write(`fuzz: ${JSON.stringify(counts)}\n`);
  for (const k of ['crashes', 'acceptedInvalid', 'wrong', 'unexpected']) for (const x of agg[k].slice(0, 5)) process.stdout.write(`  ${k}: ${JSON.stringify(x)}\n`);
  process.exit(counts.crashes + counts.acceptedInvalid + counts.wrong + counts.unexpected === 0 ? 0 : 1);
})();
