// The CUDA glue's boundary (cuda/addon.cpp): raw requests that the facade would never send — buffers
// too small, disposed, overlapping, of the wrong kind; fields missing or out of range — each must
// end in a clear TypeError / RangeError (an Error for use after dispose) naming the function, before
// anything reaches a kernel.
// Run in a child process (a crash fails the test instead of taking the run down), on the binary
// the CUDA tests use (a GPU build, or the CPU emulation of the kernels).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { useCudaBackend } from './cuda_env';

const { label } = useCudaBackend();

const script = String.raw`
const b = require(process.env.FUSEDCE_CUDA_BINARY || require('path').join(process.cwd(), 'cuda/build/Release/fusedce_cuda.node'));
const buf = (n) => new b.DeviceBuffer(n);
const rows = 3, V = 50, n = rows * V;
const z = buf(n * 4), u = buf(n * 4), q = buf(n * 4), g = buf(n * 4), l = buf(rows * 4), s = buf(rows * 4), t = buf(rows * 4), w = buf(V * 4);
const small = buf(8), dead = buf(16);
dead.dispose();
t.upload(new Int32Array([1, 2, 3]));
z.upload(new Float32Array(n).fill(0.5));
const soft = (o) => b.softForward({ fn: 'softCrossEntropyForward', logits: z, dtype: 0, rows, vocab: V, target: u, targetDtype: 0, kind: 0,
  invTemperature: 1, lossFactor: 1, reduction: 0, losses: l, lse: s, gradDtype: 0, gradOutput: 1, async: false, ...o });
const ce = (o) => b.crossEntropyForward({ fn: 'crossEntropyForward', logits: z, dtype: 0, rows, vocab: V, targets: t, ignoreIndex: -100,
  reduction: 0, losses: l, lse: s, grad: null, gradDtype: 0, gradOutput: 1, async: false, ...o });
const bce = (o) => b.binaryCrossEntropy({ fn: 'binaryCrossEntropyWithLogits', logits: z, dtype: 0, rows, vocab: V, targets: q, posWeight: 1,
  reduction: 0, gradDtype: 0, gradOutput: 1, async: false, ...o });
const cases = {
  'soft: target too small': () => soft({ target: small }),
  'soft: grad too small': () => soft({ grad: small }),
  'soft: losses disposed': () => soft({ losses: dead }),
  'soft: kind out of range': () => soft({ kind: 7 }),
  'soft: probabilities for KL': () => soft({ kind: 1, targetDtype: -1 }),
  'soft: grad over the target': () => soft({ grad: u }),
  'soft: in place with another dtype': () => soft({ grad: z, gradDtype: 2 }),
  'soft: weight too small': () => soft({ targetDtype: -1, target: q, weight: small }),
  'soft: temperature 0': () => soft({ invTemperature: Infinity }),
  'soft: beta for the JSD out of (0, 1)': () => soft({ kind: 4, beta: 1 }),
  'soft: logits missing': () => soft({ logits: undefined }),
  'soft: a number as a buffer': () => soft({ target: 5 }),
  'softBackward: lse too small': () => b.softBackward({ fn: 'softCrossEntropyBackward', logits: z, dtype: 0, rows, vocab: V, target: u,
    targetDtype: 0, kind: 0, invTemperature: 1, lossFactor: 1, reduction: 0, lse: small, grad: g, gradDtype: 0, gradOutput: 1, async: false }),
  'softBackward: for KL reverse': () => b.softBackward({ fn: 'klDivergenceForward', logits: z, dtype: 0, rows, vocab: V, target: u,
    targetDtype: 0, kind: 2, invTemperature: 1, lossFactor: 1, reduction: 0, lse: s, grad: g, gradDtype: 0, gradOutput: 1, async: false }),
  'ce: weight too small': () => ce({ weight: small, labelSmoothing: 0.1 }),
  'ce: deviceLoss too small': () => ce({ deviceLoss: buf(2) }),
  'ce: stream a number': () => ce({ stream: 5 }),
  'ce: focal with smoothing': () => ce({ focalGamma: 2, labelSmoothing: 0.1 }),
  'ce: statistics buffer too small': () => ce({ argmax: small, entropy: l, targetLogprob: l, maxProb: l }),
  'ce: statistics over the losses': () => ce({ argmax: l, entropy: s, targetLogprob: g, maxProb: w }),
  'ce: losses64 too small': () => ce({ losses64: small }),
  'ce: losses64 over the lse': () => ce({ losses64: g, lse: g }),
  'ce: gradOutputRows without reduction none': () => ce({ gradOutputRows: l }),
  'ce: gradOutputRows too small': () => ce({ reduction: 2, gradOutputRows: small }),
  'bce: targets too small': () => bce({ targets: small }),
  'bce: per-class weight too small': () => bce({ weight: small, weightPerClass: true }),
  'bce: posWeight too small': () => bce({ posWeight: small }),
  'bce: posWeight negative': () => bce({ posWeight: -1 }),
  'bce: grad over the targets': () => bce({ grad: q }),
};
const out = {};
for (const [k, f] of Object.entries(cases)) {
  try { f(); out[k] = 'no error'; } catch (e) { out[k] = e.constructor.name + ': ' + e.message; }
}
process.stdout.write(JSON.stringify(out));
`;

describe(`the CUDA glue refuses malformed raw requests (${label})`, () => {
  it('every case is a TypeError or RangeError naming the function, and the process survives', () => {
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: process.env, cwd: process.cwd() });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, string>;
    expect(Object.keys(out).length).toBe(29);
    for (const [k, v] of Object.entries(out)) {
      // use after dispose is an Error, as everywhere in the API; everything else a TypeError / RangeError
      expect(v, k).toMatch(k.includes('disposed') ? /^Error: / : /^(TypeError|RangeError): /);
      expect(v, k).toMatch(/^\w+: (softCrossEntropyForward|softCrossEntropyBackward|klDivergenceForward|crossEntropyForward|binaryCrossEntropyWithLogits)[: ]/);
    }
    expect(out['soft: grad over the target']).toMatch(/overlaps/);
    expect(out['ce: statistics over the losses']).toMatch(/overlaps/);
    expect(out['ce: losses64 too small']).toMatch(/losses64/);
    expect(out['ce: losses64 over the lse']).toMatch(/overlaps/);
    expect(out['ce: gradOutputRows without reduction none']).toMatch(/per-row gradOutput needs reduction 'none'/);
    expect(out['ce: gradOutputRows too small']).toMatch(/gradOutput/);
    expect(out['bce: grad over the targets']).toMatch(/overlaps/);
    expect(out['soft: losses disposed']).toMatch(/disposed/);
  });
});
