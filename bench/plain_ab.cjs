// Plain-path A/B: the plain cross-entropy of another build of the addon against this checkout's,
// alternating in one process (the machine drifts; only side-by-side ratios mean anything).
//   git worktree add /tmp/old <rev> && (cd /tmp/old && npm ci && node scripts/build-native.cjs && npm run build:ts)
//   node bench/plain_ab.cjs /tmp/old [rows=64] [dtypes=bf16] [threads=2]
// dtypes and threads are comma lists (e.g. bf16,f16,f32 and 1,2). For each case: forward and
// fused forward+backward, the best of 6 rounds of 15-call medians per build, and the time ratio
// after/before. Load order matters on a 2-vCPU machine (each build has its own thread pool):
// swap the builds' roles to check a small difference.
const path = require('node:path');
const [other, rowsArg = '64', dtypesArg = 'bf16', threadsArg = '2'] = process.argv.slice(2);
if (!other) throw new Error('usage: node bench/plain_ab.cjs <checkout of the other revision, built> [rows] [dtypes] [threads]');
// Each build through its package entry point (the addon needs its allocator, set up there); a
// checkout's dist/ must be built (npm run build:ts).
const A = require(path.resolve(other, 'dist/cjs/index.js'));        // the other revision
const B = require(path.join(__dirname, '..', 'dist/cjs/index.js'));  // this checkout
const rows = Number(rowsArg), vocab = 128256, N = rows * vocab;
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
  const z = data[dtype];
  if (!z) throw new RangeError(`dtypes: unknown dtype '${dtype}' (f32, f16, bf16)`);
  const g = dtype === 'f32' ? new Float32Array(N) : new Uint16Array(N);
  for (const threads of threadsArg.split(',').map(Number)) {
    const zl = { data: z, dtype, rows, vocab }, out = { data: g, dtype, rows, vocab };
    const fwd = (m) => m.crossEntropyForward(zl, t, { threads });
    const fused = (m) => m.crossEntropyForward(zl, t, { threads, withGrad: true, out });
    for (const [name, f] of [['forward', fwd], ['fused fwd+bwd', fused]]) {
      for (let k = 0; k < 2; k++) { med(f, A, 3); med(f, B, 3); }
      const a = [], b = [];
      for (let r = 0; r < 6; r++) { a.push(med(f, A)); b.push(med(f, B)); }
      const ma = Math.min(...a), mb = Math.min(...b);
      console.log(`${rows}×${vocab} ${dtype} t${threads} ${name}: before ${ma.toFixed(2)} ms (${(N / ma / 1e6).toFixed(2)} G/s), after ${mb.toFixed(2)} ms (${(N / mb / 1e6).toFixed(2)} G/s), after/before time ${(mb / ma).toFixed(3)}`);
    }
    console.log(`${dtype} t${threads} loss equal:`, fwd(A).loss === fwd(B).loss, fwd(A).loss, fwd(B).loss);
  }
}
