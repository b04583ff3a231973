// Cases whose every output bit is compared between two kernel sets (test/isa.test.ts): the same
// seeded data through forward, fused forward+backward, backward (every logits → gradient dtype
// pair) and exp, returned as hex strings. Run in-process for the dispatched kernels, and in a
// child process with FUSEDCE_ISA set for another set (the choice is made once per process).
import { crossEntropyBackward, crossEntropyForward, kernels } from 'fusedce';
import { makeLogits, randomLogits, randomTargets, rng } from './reference.mjs';

const hex = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

// [rows, vocab, why]
const SHAPES = [
  [7, 1000, 'unaligned: every row ends in a 16-lane tail'],
  [5, 32001, 'ragged last 4096-block, odd tail'],
  [3, 128256, 'Llama-3 vocabulary'],
  [1, 262147, 'one row split over threads (if any), odd tail'],
];

export function isaCases(seed) {
  const r = rng(seed);
  const out = {};
  for (const [rows, vocab] of SHAPES) {
    const x = randomLogits(r, rows, vocab);
    // extreme and masked logits: −inf runs (masking), huge spreads (subnormal exps), ±80
    for (let i = 0; i < 40; i++) x[Math.floor(r() * x.length)] = -Infinity;
    for (let i = 0; i < 40; i++) x[Math.floor(r() * x.length)] = -90 - 20 * r();
    x[Math.floor(r() * x.length)] = 80;
    const t = randomTargets(r, rows, vocab, 0.2);
    for (const dtype of ['f32', 'bf16', 'f16']) {
      const { z } = makeLogits(x, rows, vocab, dtype);
      const key = `${rows}x${vocab} ${dtype}`;
      const f = crossEntropyForward(z, t, { reduction: 'sum' });
      out[`${key} forward`] = `${f.loss} ${hex(f.losses)} ${hex(f.lse)}`;
      for (const gradDtype of ['f32', 'bf16', 'f16']) {
        const fg = crossEntropyForward(z, t, { withGrad: true, gradDtype, gradOutput: 0.37 });
        out[`${key} fused → ${gradDtype}`] = `${fg.loss} ${hex(fg.grad.data)}`;
        const g = crossEntropyBackward(z, t, f.lse, { gradDtype, reduction: 'sum', gradOutput: 1.5 });
        out[`${key} backward → ${gradDtype}`] = hex(g.data);
      }
    }
  }
  // exp over its whole range, subnormal and overflowing results, specials, and a 16-lane tail
  const e = new Float32Array(100003);
  for (let i = 0; i < e.length; i++) e[i] = -110 + 200 * r();
  e.set([-Infinity, Infinity, NaN, 0, -0, 88.7, 88.72, 88.73, 89, -87.33, -103.9, -104, -150], 0);
  out.exp = hex(kernels.exp(e));
  return out;
}

// As a child process: node test/isa_cases.mjs SEED prints the cases as JSON.
if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(JSON.stringify(isaCases(Number(process.argv[2]))));
