// fusedce/tfjs as a TypeScript user of TensorFlow.js writes it (compiled by test/types.test.ts, never run).
import * as tf from '@tensorflow/tfjs';
import { sparseSoftmaxCrossEntropy, softmaxCrossEntropy, tfjsLosses, type SparseSoftmaxCrossEntropyOptions } from 'fusedce/tfjs';
const z: tf.Tensor2D = tf.zeros([2, 4]);
const opts: SparseSoftmaxCrossEntropyOptions = { labelSmoothing: 0.1, reduction: 'mean' };
const l: tf.Tensor = sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1], 'int32'), z, opts);
const m: tf.Tensor = softmaxCrossEntropy(tf.oneHot(tf.tensor1d([0, 1], 'int32'), 4), z);
const model = tf.sequential();
model.compile({ optimizer: 'adam', loss: softmaxCrossEntropy });
const { sparseSoftmaxCrossEntropy: s2 } = tfjsLosses(tf);
void [l, m, s2];
// @ts-expect-error: reduction must be a known one
sparseSoftmaxCrossEntropy(tf.tensor1d([0, 1], 'int32'), z, { reduction: 'avg' });
