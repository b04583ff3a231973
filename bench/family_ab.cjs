// Loss-family A/B: the family's cases on another build of the addon against this checkout's, one
// build per process, the two alternating (two builds in one process contend with their thread
// pools on a 2-vCPU machine: ±20% on identical code there, as bench/plain_ab.cjs notes).
//   git worktree add /tmp/old <rev> && (cd /tmp/old && npm ci && node scripts/build-native.cjs && npm run build:ts)
//   node bench/family_ab.cjs /tmp/old [cases=plainF,plainG,...] [rounds=4]
// Cases: plainF plainG (plain CE forward, fused), jsdF jsdG, klF klG klrG, softF softG, probsF
// probsG (top-32 probability targets), entF entG (entropyForward), capF capG (softcap 30), smG
// (smoothing 0.1, fused), swF swG (smoothing 0.1 + class weights), bceF bceG; bf16 64×128256, 2
// threads (the machine's). Each process prints the median of 31 calls per case (9 for the JSD);
// this prints, per case, every round's figure for each build and the ratio of their medians.
'use strict';
const path = require('node:path');
const { execFileSync } = require('node:child_process');

if (process.argv[2] === '--child') {
  const [, , , dir, list] = process.argv;
  const L = require(path.resolve(dir, 'dist/cjs/index.js'));
  L.setDevice('cpu');
  const rows = 64, vocab = 128256, N = rows * vocab;
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const normal = () => Math.sqrt(-2 * Math.log(Math.max(rnd(), 1e-300))) * Math.cos(2 * Math.PI * rnd());
  const x = Float32Array.from({ length: N }, () => 2 * normal());
  const z = L.logits(L.bf16.fromFloat32(x), rows, vocab, 'bf16');
  const t = L.logits(L.bf16.fromFloat32(Float32Array.from(x, (v) => v + normal())), rows, vocab, 'bf16');
  const targets = Int32Array.from({ length: rows }, () => Math.floor(rnd() * vocab));
  const multi = Float32Array.from({ length: N }, () => (rnd() < 0.001 ? 1 : 0));
  const weight = Float32Array.from({ length: vocab }, () => 0.5 + rnd());
  const qv = new Float32Array(N);
  for (let r = 0; r < rows; r++) for (let k = 0; k < 32; k++) qv[r * vocab + Math.floor(rnd() * vocab)] = 0.02;
  const topk = L.logits(qv, rows, vocab);
  const out = { data: new Uint16Array(N), dtype: 'bf16', rows, vocab };
  const C = {
    plainF: () => L.crossEntropyForward(z, targets, {}),
    plainG: () => L.crossEntropyForward(z, targets, { withGrad: true, out }),
    jsdF: () => L.jsDivergenceForward(z, t, {}),
    jsdG: () => L.jsDivergenceForward(z, t, { withGrad: true, out }),
    klF: () => L.klDivergenceForward(z, t, {}),
    klG: () => L.klDivergenceForward(z, t, { withGrad: true, out }),
    klrG: () => L.klDivergenceForward(z, t, { withGrad: true, out, direction: 'reverse' }),
    softF: () => L.softCrossEntropyForward(z, t, {}),
    softG: () => L.softCrossEntropyForward(z, t, { withGrad: true, out }),
    probsF: () => L.softCrossEntropyForward(z, topk, { targetKind: 'probs' }),
    probsG: () => L.softCrossEntropyForward(z, topk, { targetKind: 'probs', withGrad: true, out }),
    entF: () => L.entropyForward(z, {}),
    entG: () => L.entropyForward(z, { withGrad: true, out }),
    capF: () => L.crossEntropyForward(z, targets, { softcap: 30 }),
    capG: () => L.crossEntropyForward(z, targets, { softcap: 30, withGrad: true, out }),
    smG: () => L.crossEntropyForward(z, targets, { labelSmoothing: 0.1, withGrad: true, out }),
    swF: () => L.crossEntropyForward(z, targets, { labelSmoothing: 0.1, weight }),
    swG: () => L.crossEntropyForward(z, targets, { labelSmoothing: 0.1, weight, withGrad: true, out }),
    bceF: () => L.binaryCrossEntropyWithLogits(z, multi, {}),
    bceG: () => L.binaryCrossEntropyWithLogits(z, multi, { withGrad: true, out }),
  };
  const med = (f, n) => {
    const ts = [];
    for (let i = 0; i < n; i++) {
      const s = process.hrtime.bigint();
      f();
      ts.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    return ts.sort((a, b) => a - b)[n >> 1];
  };
  const res = {};
  for (const k of list.split(',')) {
    if (!C[k]) throw new Error(`unknown case ${k}; the cases: ${Object.keys(C).join(' ')}`);
    C[k]();
    C[k]();
    res[k] = med(C[k], k.startsWith('jsd') ? 9 : 31);
  }
  process.stdout.write(JSON.stringify(res));
  process.exit(0);
}

const [other, list = 'plainF,plainG', roundsArg = '4'] = process.argv.slice(2);
if (!other) throw new Error('usage: node bench/family_ab.cjs <checkout of the other revision, built> [cases] [rounds]');
const here = path.join(__dirname, '..');
const runs = { old: [], new: [] };
for (let i = 0; i < Number(roundsArg); i++)
  for (const [tag, dir] of [['old', other], ['new', here]])
    runs[tag].push(JSON.parse(execFileSync(process.execPath, [__filename, '--child', dir, list], { encoding: 'utf8' })));
const mid = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
for (const k of list.split(',')) {
  const o = runs.old.map((r) => r[k]), n = runs.new.map((r) => r[k]);
  console.log(`${k.padEnd(8)} other ${o.map((v) => v.toFixed(3)).join(' ')} | this ${n.map((v) => v.toFixed(3)).join(' ')} ms | median this/other ${(mid(n) / mid(o)).toFixed(3)}`);
}
