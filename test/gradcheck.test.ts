// gradcheck: our ops' analytic gradients against central differences, a user's own composition,
// that a wrong gradient is caught, and the `fusedce gradcheck` command.
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { type DType, crossEntropyForward, gradcheck, gradcheckOp, logits } from 'fusedce';

describe('gradcheck', () => {
  for (const op of ['ce', 'soft', 'kl', 'bce'] as const) {
    for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
      it(`${op} ${dtype}: the analytic gradient agrees with central differences`, () => {
        for (const rep of gradcheckOp(op, { dtype, rows: 3, vocab: 600 })) {
          expect(rep.checked).toBe(32);
          expect(rep.ok, `${rep.op}: worst ${JSON.stringify(rep.worst)}`).toBe(true);
          expect(rep.maxAbsError).toBeLessThan(1e-4);
        }
      });
    }
  }

  it('checks a composition of ops (0.7·CE + 0.3·z-loss-free soft CE to a fixed teacher) and catches a wrong gradient', () => {
    const rows = 2, vocab = 50;
    const x0 = Float32Array.from({ length: rows * vocab }, (_, i) => Math.sin(i * 1.3) * 3);
    const targets = Int32Array.of(7, 31);
    const f = (x: Float64Array, scaleGrad = 1) => {
      const z = logits(Float32Array.from(x), rows, vocab);
      const a = crossEntropyForward(z, targets, { withGrad: true, labelSmoothing: 0.1, gradOutput: 0.7 });
      const b = crossEntropyForward(z, targets, { withGrad: true, softcap: 2, gradOutput: 0.3 });
      const g = Float32Array.from(a.grad!.data as Float32Array, (v, i) => scaleGrad * (v + (b.grad!.data as Float32Array)[i]!));
      return { loss: 0.7 * a.loss + 0.3 * b.loss, grad: g };
    };
    const good = gradcheck((x) => f(x), x0);
    expect(good.ok).toBe(true);
    expect(good.checked).toBe(32);
    const bad = gradcheck((x) => f(x, 1.05), x0);
    expect(bad.ok).toBe(false);
    expect(bad.failed).toBeGreaterThan(0);
    expect(bad.worst.relError).toBeGreaterThan(0.04);
  });

  it('float64 functions: precision f64 with tight default tolerances', () => {
    const rep = gradcheck((x) => ({ loss: x.reduce((s, v) => s + Math.sin(v), 0), grad: Array.from(x, Math.cos) }), [0.1, 1, 2, -3]);
    expect(rep.ok).toBe(true);
    expect(rep.maxRelError).toBeLessThan(1e-8);
  });

  it('bad arguments are clear errors', () => {
    expect(() => gradcheck(1 as never, [1])).toThrow(/gradcheck: fn must be a function/);
    expect(() => gradcheck((x) => ({ loss: 0, grad: [1, 2] }), [1])).toThrow(/fn\(\)\.grad must be of length inputs.length \(1\)/);
    expect(() => gradcheck((x) => ({ loss: 0, grad: [0] }), [1], { eps: 0 })).toThrow(/eps must be a finite number > 0/);
    expect(() => gradcheckOp('mse' as never)).toThrow(/op must be/);
    const f = (x: Float64Array) => ({ loss: x[0]!, grad: [1] });
    expect(() => gradcheck(f, [1], { atol: -1 })).toThrow(/atol must be a finite number ≥ 0/);
    expect(() => gradcheck(f, [1], { rtol: NaN })).toThrow(/rtol/);
    expect(() => gradcheck(f, [1], { indices: [1] })).toThrow(/indices\[…\] must be an integer in \[0, 0\]/);
    expect(() => gradcheck(f, [1], { indices: 0 as never })).toThrow(/indices must be an array/);
    expect(() => gradcheck((x) => ({ loss: 0, grad: Array.from(x, () => 0) }), [1, 2], { samples: 0 })).toThrow(/samples must be an integer/);
    expect(() => gradcheck(f, [1], { precision: 'f16' as never })).toThrow(/precision must be 'f32' \| 'f64'/);
    expect(() => gradcheck(f, [], {})).toThrow(/inputs must be non-empty/);
    expect(() => gradcheck(f, 'x' as never)).toThrow(/inputs must be a Float32Array, Float64Array or number\[\]/);
    expect(() => gradcheck(() => ({ loss: 0 }) as never, [1])).toThrow(/fn must be a function returning \{ loss: number, grad \}/);
    expect(() => gradcheckOp('ce', { dtype: 'f64' as never })).toThrow(/dtype must be/);
    expect(() => gradcheckOp('ce', { vocab: 1 })).toThrow(/vocab must be an integer in \[2,/);
    expect(() => gradcheckOp('ce', { rows: 0 })).toThrow(/rows must be an integer in \[1,/);
  });

  it('`fusedce gradcheck` with a bad option says which and exits 2', () => {
    const r = spawnSync(process.execPath, ['bin/fusedce.mjs', 'gradcheck', '--vocab', 'many'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--vocab must be a positive integer, but got 'many'/);
  });

  it('`fusedce gradcheck` prints a verdict table and exits 0', () => {
    const out = execFileSync(process.execPath, ['bin/fusedce.mjs', 'gradcheck', '--op', 'kl', '--dtype', 'bf16', '--vocab', '300'], { encoding: 'utf8' });
    expect(out).toMatch(/\| op \| dtype \|/);
    expect(out).toMatch(/klDivergence reverse.*\| ok \|/);
  });
});
