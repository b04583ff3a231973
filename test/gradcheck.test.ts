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

  it('`fusedce gradcheck` prints a verdict table and exits 0; each verdict is its error/tolerance column read against 1', () => {
    const out = execFileSync(process.execPath, ['bin/fusedce.mjs', 'gradcheck', '--dtype', 'bf16,f32', '--vocab', '300'], { encoding: 'utf8' });
    expect(out).toMatch(/\| op \| dtype \|/);
    expect(out).toMatch(/klDivergence reverse.*\| ok \|/);
    const rows = out.split('\n').filter((l) => /^\| (?!op |---)/.test(l)).map((l) => l.split('|').map((c) => c.trim()));
    expect(rows.length).toBe(12); // 6 checks (ce ×2, soft, kl ×2, bce) per dtype
    for (const c of rows) {
      const ratio = Number(c[8]), failed = Number(c[5]), verdict = c[10];
      expect(verdict).toBe(ratio <= 1 && failed === 0 ? 'ok' : 'FAIL');
    }
    expect(out).toMatch(/central differences in f32 \(given \(the precision option\)\), step 0\.01/);
  });

  // A user's function that computes through fusedce (f32) on a Float64Array or number[] input: the
  // precision is detected, so a correct gradient passes whatever array type the input is.
  const rows = 4, vocab = 300;
  const targets = Int32Array.from({ length: rows }, (_, i) => (i * 37) % vocab);
  const viaFusedce = (x: Float64Array) => {
    const r = crossEntropyForward(logits(Float32Array.from(x), rows, vocab), targets, { withGrad: true, reduction: 'sum' });
    return { loss: r.loss, grad: r.grad };
  };
  const x64 = Float64Array.from({ length: rows * vocab }, (_, i) => 2 * Math.sin(1.7 * i + 0.3));
  it.each([
    ['Float64Array', x64],
    ['number[]', Array.from(x64)],
  ])('a correct f32 gradient passes for a %s input: the report says f32 was detected, and why', (_, input) => {
    const r = gradcheck(viaFusedce, input);
    expect(r.ok, JSON.stringify(r.worst)).toBe(true);
    expect(r.precision).toBe('f32');
    expect(r.precisionReason).toMatch(/^detected: moving x\[\d+\] by 1\/16 of an f32 ulp left the loss bitwise unchanged/);
    expect(r.eps).toBe(1e-2);
    expect(r.maxErrorRatio).toBeLessThanOrEqual(1);
    // the same check forced to float64 steps measures f32 rounding: that is what the detection avoids
    expect(gradcheck(viaFusedce, input, { precision: 'f64' }).ok).toBe(false);
  });
  it('a float64 function on a Float64Array is detected as f64; a Float32Array input is f32 by its type', () => {
    const f64 = (x: Float64Array) => ({ loss: x.reduce((a, v) => a + Math.sin(v), 0), grad: x.map(Math.cos) });
    const r = gradcheck(f64, x64.slice(0, 50));
    expect([r.ok, r.precision, r.eps]).toEqual([true, 'f64', 1e-6]);
    expect(r.precisionReason).toMatch(/^detected: the loss follows perturbations below f32 resolution/);
    const r32 = gradcheck(viaFusedce, Float32Array.from(x64));
    expect([r32.ok, r32.precision, r32.precisionReason]).toEqual([true, 'f32', 'the input is a Float32Array']);
  });
});
