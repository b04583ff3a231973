// fusedce/tfjs against TensorFlow.js's own loss: values and gradients equal
// tf.losses.softmaxCrossEntropy's (defaults: the mean over rows) within 1e-5, on the cpu and wasm
// backends; the losses work inside tf.grad, tf.variableGrads, optimizer.minimize and
// model.compile({ loss }); a small model trains the same with either loss.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { softmaxCrossEntropy, sparseSoftmaxCrossEntropy, tfjsLosses } from 'fusedce/tfjs';
import { normal, randomLogits, randomTargets, testRng } from './reference.mjs';
import { refCrossEntropy } from './loss_reference.mjs';

// tfjs's advert for its native backend, printed once on first use
beforeAll(async () => {
  const { log, warn } = console;
  console.log = console.warn = () => {};
  try {
    await tf.setBackend('cpu');
    tf.tensor([1]).dataSync();
  } finally {
    Object.assign(console, { log, warn });
  }
});

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

/** tfjs's own loss and ours on the same logits: |Δ value| and max |Δ gradient|, both ≤ 1e-5 relative to the value's scale. */
function compare(ref: (x: tf.Tensor) => tf.Tensor, ours: (x: tf.Tensor) => tf.Tensor, z: tf.Tensor) {
  return tf.tidy(() => {
    const a = tf.valueAndGrad(ref as (x: tf.Tensor) => tf.Scalar)(z);
    const b = tf.valueAndGrad(ours as (x: tf.Tensor) => tf.Scalar)(z);
    const va = a.value.dataSync()[0]!, vb = b.value.dataSync()[0]!;
    // the forward alone (no gradient recorded: the non-fused path) gives the same value
    const vf = ours(z).dataSync()[0]!;
    return { va, vb, vf, grad: maxDiff(a.grad, b.grad), gradScale: tf.max(tf.abs(a.grad)).dataSync()[0]!,
      gradRef: a.grad.dataSync() as Float32Array, gradOurs: b.grad.dataSync() as Float32Array };
  });
}

// Shapes: tiny; rows and vocab off every vector width; the Llama-3 vocabulary (one-hot labels of
// 4×128256 are 2 MB, small enough for tfjs's dense loss)
const SHAPES: [number, number][] = [[3, 5], [37, 1003], [4, 128256]];

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`fusedce/tfjs on the tfjs ${backend} backend`, () => {
    beforeAll(async () => {
      expect(await tf.setBackend(backend)).toBe(true);
    });

    for (const [rows, vocab] of SHAPES) {
      it(`${rows}×${vocab}: sparse and one-hot losses equal tf.losses.softmaxCrossEntropy, values and gradients`, () => {
        const r = testRng(`tfjs ${backend} ${rows} ${vocab}`);
        const x = randomLogits(r, rows, vocab, 3);
        const t = randomTargets(r, rows, vocab);
        const z = tf.tensor2d(x, [rows, vocab]);
        const ids = tf.tensor1d(t, 'int32');
        const onehot = tf.oneHot(ids, vocab).cast('float32');
        for (const labelSmoothing of [0, 0.1]) {
          const ref = (v: tf.Tensor) => tf.losses.softmaxCrossEntropy(onehot, v, undefined, labelSmoothing);
          const cases = [
            compare(ref, (v) => sparseSoftmaxCrossEntropy(ids, v, { labelSmoothing }), z),
            compare(ref, (v) => softmaxCrossEntropy(onehot, v, { labelSmoothing }), z),
          ];
          // and against float64
          const f64 = refCrossEntropy(x, rows, vocab, t, { labelSmoothing });
          for (const c of cases) {
            // ours is within 1e-5 of float64; tfjs's own fp32 sums (wasm at vocab 128256: ~1e-5
            // relative) add their error to the distance between the two
            expect(Math.abs(c.vb - f64.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, f64.loss));
            expect(Math.abs(c.vb - c.va)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(c.va)) + Math.abs(c.va - f64.loss));
            expect(c.vf).toBe(c.vb);
            // the gradient likewise: ours against float64, then against tfjs plus tfjs's own error
            let ours = 0, theirs = 0;
            for (let i = 0; i < f64.grad.length; i++) {
              ours = Math.max(ours, Math.abs(c.gradOurs[i]! - f64.grad[i]!));
              theirs = Math.max(theirs, Math.abs(c.gradRef[i]! - f64.grad[i]!));
            }
            expect(ours).toBeLessThanOrEqual(1e-5 * c.gradScale);
            expect(c.grad).toBeLessThanOrEqual(1e-5 * c.gradScale + theirs);
          }
        }
        tf.dispose([z, ids, onehot]);
      });
    }

    it('rank-3 logits (batch, seq, vocab), reductions sum and none, float32 labels of shape (rows, 1)', () => {
      const r = testRng(`tfjs ${backend} rank3`);
      const [b, s, V] = [2, 5, 301];
      const x = randomLogits(r, b * s, V);
      const t = randomTargets(r, b * s, V);
      const z = tf.tensor3d(x, [b, s, V]);
      const onehot = tf.oneHot(tf.tensor1d(t, 'int32'), V).reshape([b, s, V]).cast('float32');
      const sum = compare((v) => tf.losses.softmaxCrossEntropy(onehot, v, undefined, 0, tf.Reduction.SUM), (v) => sparseSoftmaxCrossEntropy(tf.tensor1d(t, 'int32'), v, { reduction: 'sum' }), z);
      expect(Math.abs(sum.vb - sum.va)).toBeLessThanOrEqual(1e-5 * sum.va);
      expect(sum.grad).toBeLessThanOrEqual(1e-5 * sum.gradScale);
      // per-row losses, shape (b, s), with a non-uniform upstream gradient
      const w = tf.tensor2d(Array.from({ length: b * s }, (_, i) => (i % 3) - 0.5), [b, s]);
      const perRow = sparseSoftmaxCrossEntropy(tf.tensor2d(Float32Array.from(t), [b * s, 1]), z, { reduction: 'none' });
      expect(perRow.shape).toEqual([b, s]);
      const ref = tf.losses.softmaxCrossEntropy(onehot, z, undefined, 0, tf.Reduction.NONE);
      expect(maxDiff(perRow, ref)).toBeLessThanOrEqual(1e-5 * tf.max(ref).dataSync()[0]!);
      for (const ours of [
        (v: tf.Tensor) => tf.sum(tf.mul(sparseSoftmaxCrossEntropy(tf.tensor1d(t, 'int32'), v, { reduction: 'none' }), w)),
        (v: tf.Tensor) => tf.sum(tf.mul(softmaxCrossEntropy(onehot, v, { reduction: 'none' }), w)),
      ]) {
        const c = compare((v) => tf.sum(tf.mul(tf.losses.softmaxCrossEntropy(onehot, v, undefined, 0, tf.Reduction.NONE), w)), ours, z);
        expect(Math.abs(c.vb - c.va)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(c.va)));
        expect(c.grad).toBeLessThanOrEqual(1e-5 * c.gradScale);
      }
      // an upstream factor on the scalar loss scales the fused gradient
      const scaled = compare((v) => tf.mul(tf.losses.softmaxCrossEntropy(onehot, v), 3.5), (v) => tf.mul(softmaxCrossEntropy(onehot, v), 3.5), z);
      expect(scaled.grad).toBeLessThanOrEqual(1e-5 * scaled.gradScale);
    });

    it('probability labels (distillation targets) and ignored rows', () => {
      const r = testRng(`tfjs ${backend} probs`);
      const [rows, V] = [9, 515];
      const z = tf.tensor2d(randomLogits(r, rows, V), [rows, V]);
      const q = tf.softmax(tf.tensor2d(randomLogits(r, rows, V), [rows, V]));
      const c = compare((v) => tf.losses.softmaxCrossEntropy(q, v), (v) => softmaxCrossEntropy(q, v), z);
      expect(Math.abs(c.vb - c.va)).toBeLessThanOrEqual(1e-5 * c.va);
      expect(c.grad).toBeLessThanOrEqual(1e-5 * c.gradScale);
      // ignoreIndex: the mean over counted rows, ignored rows get no gradient
      const t = randomTargets(r, rows, V, 0.4);
      t[0] = -100;
      const g = tf.grad((v: tf.Tensor) => sparseSoftmaxCrossEntropy(tf.tensor1d(t, 'int32'), v))(z);
      const ref = refCrossEntropy(z.dataSync() as Float32Array, rows, V, t);
      const got = sparseSoftmaxCrossEntropy(tf.tensor1d(t, 'int32'), z).dataSync()[0]!;
      expect(Math.abs(got - ref.loss)).toBeLessThanOrEqual(1e-5 * ref.loss);
      const gd = g.dataSync();
      let worst = 0;
      for (let i = 0; i < gd.length; i++) worst = Math.max(worst, Math.abs(gd[i]! - ref.grad[i]!));
      expect(worst).toBeLessThanOrEqual(1e-6);
      expect(Array.from(gd.subarray(0, V)).every((v) => v === 0)).toBe(true);
    });

    it('trains inside optimizer.minimize and tf.variableGrads as tfjs\'s own loss does', () => {
      const r = testRng(`tfjs ${backend} minimize`);
      const [rows, V] = [16, 50];
      const init = tf.tensor2d(Float32Array.from({ length: rows * V }, () => 0.1 * normal(r)), [rows, V]);
      const ids = tf.tensor1d(randomTargets(r, rows, V), 'int32');
      const onehot = tf.oneHot(ids, V);
      const w = tf.variable(init.clone()), wRef = tf.variable(init.clone());
      const { grads } = tf.variableGrads(() => sparseSoftmaxCrossEntropy(ids, w) as tf.Scalar, [w]);
      const ref = tf.grad((v: tf.Tensor) => tf.losses.softmaxCrossEntropy(onehot, v))(w);
      expect(maxDiff(grads[w.name]!, ref)).toBeLessThanOrEqual(1e-6);
      const opt = tf.train.adam(0.1), optRef = tf.train.adam(0.1);
      const ours: number[] = [], theirs: number[] = [];
      for (let i = 0; i < 40; i++) {
        ours.push((opt.minimize(() => sparseSoftmaxCrossEntropy(ids, w) as tf.Scalar, true, [w]) as tf.Scalar).dataSync()[0]!);
        theirs.push((optRef.minimize(() => tf.losses.softmaxCrossEntropy(onehot, wRef) as tf.Scalar, true, [wRef]) as tf.Scalar).dataSync()[0]!);
      }
      expect(ours[0]).toBeGreaterThan(3);
      expect(ours.at(-1)!).toBeLessThan(0.1 * ours[0]!);
      for (let i = 0; i < ours.length; i++) expect(Math.abs(ours[i]! - theirs[i]!)).toBeLessThanOrEqual(1e-4 * Math.max(1, theirs[i]!));
      expect(maxDiff(w, wRef)).toBeLessThanOrEqual(1e-4);
    });

    it('model.compile({ loss }) and a custom loop over a model: a small classifier trains as it does with tfjs\'s own loss', async () => {
      const r = testRng(`tfjs ${backend} model`);
      // 3 noisy clusters in 8 dimensions, 10 classes (classes 3..9 never occur)
      const n = 96, d = 8, V = 10;
      const centers = Array.from({ length: 3 }, () => Array.from({ length: d }, () => 3 * (r() - 0.5)));
      const xs = new Float32Array(n * d), ys = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        ys[i] = i % 3;
        for (let k = 0; k < d; k++) xs[i * d + k] = centers[i % 3]![k]! + 0.3 * (r() - 0.5);
      }
      const x = tf.tensor2d(xs, [n, d]), ids = tf.tensor1d(ys, 'int32');
      const yOnehot = tf.oneHot(ids, V).cast('float32');
      const build = () => tf.sequential({ layers: [tf.layers.dense({ units: 16, activation: 'relu', inputShape: [d] }), tf.layers.dense({ units: V })] });
      const models = [build(), build(), build(), build()];
      for (const m of models.slice(1)) m.setWeights(models[0]!.getWeights().map((t) => t.clone()));
      const [a, b, c, e] = models as [tf.Sequential, tf.Sequential, tf.Sequential, tf.Sequential];
      // model.fit: tfjs checks that labels have the output's shape for any loss but its own
      // sparseCategoricalCrossentropy, so compile() takes the one-hot form
      const fitOpts = { epochs: 15, batchSize: 32, shuffle: false, verbose: 0 as const };
      a.compile({ optimizer: tf.train.adam(0.05), loss: (yt: tf.Tensor, yp: tf.Tensor) => tf.losses.softmaxCrossEntropy(yt, yp) });
      b.compile({ optimizer: tf.train.adam(0.05), loss: softmaxCrossEntropy });
      const ha = (await a.fit(x, yOnehot, fitOpts)).history.loss as number[];
      const hb = (await b.fit(x, yOnehot, fitOpts)).history.loss as number[];
      expect(hb[0]).toBeGreaterThan(1); // ln 10 = 2.3 at the start
      expect(hb.at(-1)!).toBeLessThan(0.1);
      for (let k = 0; k < ha.length; k++) expect(Math.abs(hb[k]! - ha[k]!)).toBeLessThanOrEqual(1e-4 * Math.max(1, ha[k]!));
      // evaluate runs the forward alone
      expect((b.evaluate(x, yOnehot) as tf.Scalar).dataSync()[0]).toBeLessThan(0.1);
      // sparse labels in a custom loop over the model's variables
      const optC = tf.train.adam(0.05), optE = tf.train.adam(0.05);
      const hc: number[] = [], he: number[] = [];
      for (let k = 0; k < 40; k++) {
        hc.push((optC.minimize(() => sparseSoftmaxCrossEntropy(ids, c.apply(x) as tf.Tensor) as tf.Scalar, true) as tf.Scalar).dataSync()[0]!);
        he.push((optE.minimize(() => tf.losses.softmaxCrossEntropy(yOnehot, e.apply(x) as tf.Tensor) as tf.Scalar, true) as tf.Scalar).dataSync()[0]!);
      }
      expect(hc.at(-1)!).toBeLessThan(0.1);
      for (let k = 0; k < hc.length; k++) expect(Math.abs(hc[k]! - he[k]!)).toBeLessThanOrEqual(1e-4 * Math.max(1, he[k]!));
    });
  });
}

describe('fusedce/tfjs arguments', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  const z = () => tf.zeros([2, 4]);
  it.each([
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1], 'int32'), new Float32Array(8) as never), TypeError, /sparseSoftmaxCrossEntropy: logits must be a tf\.Tensor/],
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1], 'int32'), tf.zeros([2, 4], 'int32')), TypeError, /logits\.dtype must be 'float32'/],
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1], 'int32'), tf.zeros([4])), RangeError, /logits must be a tensor of rank ≥ 2/],
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1, 2], 'int32'), z()), RangeError, /labels must be a tensor of 2 class ids/],
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1.5]), z()), RangeError, /labels\[1\] must be an integer class id/],
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 9], 'int32'), z()), RangeError, /sparseSoftmaxCrossEntropy: labels\[1\] = 9 is outside \[0, 4\)/],
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1], 'int32'), z(), { reduce: 'sum' } as never), TypeError, /unknown option 'reduce'/],
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1], 'int32'), z(), { labelSmoothing: 2 }), RangeError, /^sparseSoftmaxCrossEntropy: labelSmoothing/],
    [() => sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1], 'int32'), z(), { weight: new Float32Array(3) }), RangeError, /^sparseSoftmaxCrossEntropy: weight/],
    [() => softmaxCrossEntropy(tf.zeros([2, 3]), z()), RangeError, /softmaxCrossEntropy: onehotLabels must be a tensor of the logits' shape \[2, 4\]/],
    [() => softmaxCrossEntropy(tf.zeros([2, 4]), z(), { labelSmoothing: -0.1 }), RangeError, /labelSmoothing must be in \[0, 1\]/],
    [() => softmaxCrossEntropy(tf.zeros([2, 4]), z(), { ignoreIndex: 0 } as never), TypeError, /unknown option 'ignoreIndex'/],
    [() => tfjsLosses({} as never), TypeError, /tfjsLosses: tf must be the TensorFlow\.js module/],
  ])('%#: a clear error', (call, type, message) => {
    expect(call).toThrow(type);
    expect(call).toThrow(message);
  });

  it('tfjsLosses(tf) binds an explicit instance', () => {
    const { sparseSoftmaxCrossEntropy: sce } = tfjsLosses(tf);
    expect(sce(tf.tensor1d([0, 1], 'int32'), z()).dataSync()[0]).toBeCloseTo(Math.log(4), 6);
  });
});
