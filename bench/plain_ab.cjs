// Plain-path A/B: the plain cross-entropy of another build of the addon against this checkout's,
// alternating in one process (the machine drifts; only side-by-side ratios mean anything).
//   git worktree add /tmp/old <rev> && (cd /tmp/old && npm ci && node scripts/build-native.cjs)
//   node bench/plain_ab.cjs /tmp/old [rows=64] [dtypes=bf16] [threads=2]
// dtypes and threads are comma lists (e.g. bf16,f16,f32 and 1,2). For each case: forward and
// fused forward+backward, the best of 6 rounds of 15-call medians per build, and the time ratio
// after/before. Load order matters on a 2-vCPU machine (each build has its own thread pool):
// swap the builds' roles to check a small difference.
const path = require('node:path');
const [other, rowsArg = '64', dtypesArg = 'bf16', threadsArg = '2'] = process.argv.slice(2);
if (!other) throw new Error('usage: node bench/plain_ab.cjs <checkout of the other revision, built> [rows] [dtypes] [threads]');
const A = require(path.resolve(other, 'build/Release/fusedce.node'));   // the other revision
const B = require(path.join(__dirname, '..', 'build/Release/fusedce.node')); // this checkout
const rows = Number(rowsArg), vocab = 128256, N = rows * vocab;
const CODE = { f32: 0, f16: 1, bf16: 2 };
const x = Float32Array.from({ length: N }, (_, i) => Math.sin(i * 0.7) * 4);
const bits = new Uint32Array(x.buffer);
function f16(v) { // round toward zero to f16 (enough for benchmark data in [−4, 4])
  const b = new Uint32Array(new Float32Array([v]).buffer)[0], s = (b >>> 16) & 0x8000, e = ((b >>> 23) & 0xff) - 112;
  return e <= 0 ? s : s | (e << 10) | ((b & 0x7fffff) >>> 13);
}
const data = {
  f32: x,
  bf16: Uint16Array.from(bits, (u) => u >>> 16),
  f16: Uint16Array.from(x, f16),
};
const t = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % vocab);
function med(f, m, n = 15) { const ts = []; for (let i = 0; i < n; i++) { const s = process.hrtime.bigint(); f(m); ts.push(Number(process.hrtime.bigint() - s) / 1e6); } ts.sort((a, b) => a - b); return ts[n >> 1]; }
for (const dtype of dtypesArg.split(',')) {
  const z = data[dtype], c = CODE[dtype];
  if (!z) throw new RangeError(`dtypes: unknown dtype '${dtype}' (f32, f16, bf16)`);
  const g = dtype === 'f32' ? new Float32Array(N) : new Uint16Array(N);
  for (const threads of threadsArg.split(',').map(Number)) {
    // native order: logits, dtype, rows, vocab, targets, ignoreIndex, reduction (mean), threads,
    // withGrad, gradDtype, gradOut, gradOutput, async
    const fwd = (m) => m.crossEntropyForward(z, c, rows, vocab, t, -100, 0, threads, false, c, null, 1, false);
    const fused = (m) => m.crossEntropyForward(z, c, rows, vocab, t, -100, 0, threads, true, c, g, 1, false);
    for (const [name, f] of [['forward', fwd], ['fused fwd+bwd', fused]]) {
      for (let k = 0; k < 2; k++) { med(f, A, 3); med(f, B, 3); }
      const a = [], b = [];
      for (let r = 0; r < 6; r++) { a.push(med(f, A)); b.push(med(f, B)); }
      const ma = Math.min(...a), mb = Math.min(...b);
      console.log(`${rows}×${vocab} ${dtype} t${threads} ${name}: before ${ma.toFixed(2)} ms (${(N / ma / 1e6).toFixed(2)} G/s), after ${mb.toFixed(2)} ms (${(N / mb / 1e6).toFixed(2)} G/s), after/before time ${(mb / ma).toFixed(3)}`);
    }
    console.log(`${dtype} t${threads} loss equal:`, fwd(A).lossSum, fwd(B).lossSum);
  }
}
