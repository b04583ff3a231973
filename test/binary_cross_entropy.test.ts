// Binary cross-entropy from logits on the CPU against the float64 reference (torch
// BCEWithLogitsLoss semantics), on fresh random data.
import { describe, expect, it } from 'vitest';
import { type DType, binaryCrossEntropyWithLogits, binaryCrossEntropyWithLogitsAsync, logits } from 'fusedce';
import { makeLogits, randomLogits, testRng, toFloat32 } from './reference.mjs';
import { refBce, worstRatio } from './loss_reference.mjs';

// Shapes: tiny; unaligned; a multi-label head wider than one 4096-block; many rows.
const SHAPES: [number, number][] = [[3, 5], [7, 1000], [3, 9001], [257, 33]];

function labels(r: () => number, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => (r() < 0.4 ? 1 : r() < 0.5 ? 0 : r()));
}

describe('binary cross-entropy with logits vs float64 reference (CPU)', () => {
  for (const [rows, vocab] of SHAPES) {
    for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
      it(`${rows}×${vocab} ${dtype}: plain, posWeight (number and per class), weight (elementwise and per class), every reduction`, () => {
        const r = testRng(`bce ${rows} ${vocab} ${dtype}`);
        const { z, values } = makeLogits(randomLogits(r, rows, vocab, 4), rows, vocab, dtype);
        const y = labels(r, rows * vocab);
        const pwv = Float32Array.from({ length: vocab }, () => 3 * r());
        const wElem = Float32Array.from({ length: rows * vocab }, () => (r() < 0.1 ? 0 : r()));
        const wClass = Float32Array.from({ length: vocab }, () => r());
        // negative weights: torch's semantics (any finite weight)
        const wNeg = Float32Array.from({ length: vocab }, () => 2 * r() - 1);
        const variants = [{}, { posWeight: 2.5 }, { posWeight: pwv }, { weight: wElem }, { weight: wClass, posWeight: pwv }, { weight: wNeg, posWeight: 1.5 }];
        for (const v of variants) {
          for (const reduction of ['mean', 'sum', 'none'] as const) {
            const ref = refBce(values, y, rows, vocab, { ...v, reduction });
            const out = binaryCrossEntropyWithLogits(z, y, { ...v, reduction, withGrad: true, gradDtype: 'f32' });
            // to 2e-6 of the magnitude of the terms (negative weights make the sum cancel)
            let terms = 0;
            for (const l of ref.losses) terms += Math.abs(l);
            terms *= reduction === 'mean' ? 1 / (rows * vocab) : 1;
            expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(2e-6 * Math.max(Math.abs(ref.loss), terms) + 1e-9);
            if (reduction === 'none') expect(worstRatio(out.losses!, ref.losses, 1e-6, 2e-6).worst).toBeLessThanOrEqual(1);
            else expect(out.losses).toBeUndefined();
            expect(worstRatio(toFloat32(out.grad!), ref.grad, 1e-7 * (reduction === 'mean' ? 1 / (rows * vocab) : 1), 2e-6).worst).toBeLessThanOrEqual(1);
          }
        }
      });
    }
  }

  it('targets exactly 0 and 1 and logits of ±1e4: finite, exact limits', () => {
    const x = new Float32Array([1e4, -1e4, 1e4, -1e4, 0]);
    const y = new Float32Array([1, 0, 0, 1, 1]);
    const out = binaryCrossEntropyWithLogits(logits(x, 1, 5), y, { reduction: 'none', withGrad: true });
    expect(Array.from(out.losses!)).toEqual([0, 0, 1e4, 1e4, Math.fround(Math.LN2)]);
    expect(Array.from(out.grad!.data as Float32Array)).toEqual([0, 0, 1, -1, -0.5]);
  });

  it('async, thread count: the same bits', async () => {
    const r = testRng('bce threads');
    const rows = 64, vocab = 3001;
    const z = logits(randomLogits(r, rows, vocab), rows, vocab), y = labels(r, rows * vocab);
    const a = binaryCrossEntropyWithLogits(z, y, { withGrad: true, threads: 1 });
    const b = await binaryCrossEntropyWithLogitsAsync(z, y, { withGrad: true, threads: 4 });
    expect(b.loss).toBe(a.loss);
    expect(Buffer.from(b.grad!.data.buffer).equals(Buffer.from(a.grad!.data.buffer))).toBe(true);
  });

  it('few rows (their blocks spread over the pool): the same bits as one thread', async () => {
    const r = testRng('bce split rows');
    for (const [rows, vocab] of [[1, 128256], [3, 2 * 4096 + 77]] as const) {
      const { z } = makeLogits(randomLogits(r, rows, vocab, 4), rows, vocab, 'bf16');
      const y = labels(r, rows * vocab), pw = Float32Array.from({ length: vocab }, () => 0.5 + r());
      for (const o of [{}, { posWeight: pw }] as const) {
        const a = binaryCrossEntropyWithLogits(z, y, { ...o, reduction: 'none', withGrad: true, threads: 1 });
        const b = await binaryCrossEntropyWithLogitsAsync(z, y, { ...o, reduction: 'none', withGrad: true, threads: 4 });
        expect(Buffer.from(b.losses!.buffer).equals(Buffer.from(a.losses!.buffer))).toBe(true);
        expect(Buffer.from(b.grad!.data.buffer).equals(Buffer.from(a.grad!.data.buffer))).toBe(true);
        expect(binaryCrossEntropyWithLogits(z, y, { ...o, threads: 4 }).loss).toBe(binaryCrossEntropyWithLogits(z, y, { ...o, threads: 1 }).loss);
      }
    }
  });

  it('bad input is a clear error naming the argument', () => {
    const z = logits(new Float32Array(6), 2, 3);
    const y = new Float32Array(6);
    expect(() => binaryCrossEntropyWithLogits(z, new Float32Array(5))).toThrow(/targets must be of length rows·vocab \(6\)/);
    expect(() => binaryCrossEntropyWithLogits(z, new Int32Array(6) as never)).toThrow(TypeError);
    expect(() => binaryCrossEntropyWithLogits(z, Float32Array.of(0, 0, 2, 0, 0, 0))).toThrow(/targets\[2\] = 2.* must be in \[0, 1\]/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { posWeight: -1 })).toThrow(/posWeight must be a finite number ≥ 0/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { posWeight: new Float32Array(2) })).toThrow(/posWeight must be of length vocab \(3\)/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { weight: new Float32Array(4) })).toThrow(/weight must be of length rows·vocab \(6\) or vocab \(3\)/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { weight: Float32Array.of(1, NaN, 1) })).toThrow(/weight\[1\] = nan must be a finite number$/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { weight: Float32Array.of(1, -2, 1) })).not.toThrow();
    expect(() => binaryCrossEntropyWithLogits(z, y, { withGrad: true, out: { data: y, dtype: 'f32', rows: 2, vocab: 3 } })).toThrow(/overlaps another input/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { posWeight: '2' as never })).toThrow(/posWeight must be a number ≥ 0 or a Float32Array/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { reduction: 'mean!' as never })).toThrow(/reduction/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { inPlace: true })).toThrow(/inPlace must be false unless withGrad is true/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { gradDtype: 'f64' as never, withGrad: true })).toThrow(/gradDtype/);
    expect(() => binaryCrossEntropyWithLogits(z, y, { bogus: 1 } as never)).toThrow(/unknown option 'bogus'/);
  });
});
