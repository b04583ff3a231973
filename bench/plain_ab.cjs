// Plain-path A/B: the plain cross-entropy of another build of the addon against this checkout's,
// alternating in one process (the machine drifts; only side-by-side ratios mean anything).
//   git worktree add /tmp/old <rev> && (cd /tmp/old && npm ci && node scripts/build-native.cjs)
//   node bench/plain_ab.cjs /tmp/old
const path = require('node:path');
const other = process.argv[2];
if (!other) throw new Error('usage: node bench/plain_ab.cjs <checkout of the other revision, built>');
const A = require(path.resolve(other, 'build/Release/fusedce.node'));   // the other revision
const B = require(path.join(__dirname, '..', 'build/Release/fusedce.node')); // this checkout
const rows = 64, vocab = 128256, N = rows * vocab;
const z = new Uint16Array(N);
for (let i = 0; i < N; i++) { const f = new Float32Array([Math.sin(i * 0.7) * 4]); z[i] = new Uint16Array(f.buffer)[1]; }
const t = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % vocab);
const g = new Uint16Array(N);
const fwd = (m) => m.crossEntropyForward(z, 2, rows, vocab, t, -100, 0, 2, false, 2, null, 1, false);
const fused = (m) => m.crossEntropyForward(z, 2, rows, vocab, t, -100, 0, 2, true, 2, g, 1, false);
function med(f, m, n = 15) { const ts = []; for (let i = 0; i < n; i++) { const s = process.hrtime.bigint(); f(m); ts.push(Number(process.hrtime.bigint() - s) / 1e6); } ts.sort((a, b) => a - b); return ts[n >> 1]; }
for (const [name, f] of [['forward', fwd], ['fused fwd+bwd', fused]]) {
  for (let k = 0; k < 2; k++) { med(f, A, 3); med(f, B, 3); }
  const a = [], b = [];
  for (let r = 0; r < 6; r++) { a.push(med(f, A)); b.push(med(f, B)); }
  const ma = Math.min(...a), mb = Math.min(...b);
  console.log(`${name}: before ${ma.toFixed(2)} ms (${(N / ma / 1e6).toFixed(2)} G/s), after ${mb.toFixed(2)} ms (${(N / mb / 1e6).toFixed(2)} G/s), after/before time ${(mb / ma).toFixed(3)}`);
}
console.log('loss equal:', fwd(A).lossSum, fwd(B).lossSum);
