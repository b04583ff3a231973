// fusedce/tfjs: fusedce's cross-entropy as TensorFlow.js losses, with their gradients through
// tf.customGrad, so they work inside optimizer.minimize, tf.variableGrads, tf.grad and
// model.compile({ loss }).
//
//   sparseSoftmaxCrossEntropy(labels, logits, opts?)   labels: class ids (rows,) or (rows, 1)
//   softmaxCrossEntropy(onehotLabels, logits, opts?)   labels: (…, vocab) probabilities / one-hot
//
// logits: a float32 tf.Tensor of rank ≥ 2, (…, vocab); the leading dimensions are flattened into
// rows. Defaults match tf.losses.softmaxCrossEntropy's (Reduction.SUM_BY_NONZERO_WEIGHTS without
// weights: the mean over rows); 'sum' and 'none' (per-row losses, shape logits.shape[:-1]) too.
//
// How a call runs (the tensor data lives on the host, as on the tfjs cpu and wasm backends):
//   forward:  logits.dataSync() → crossEntropyForward / softCrossEntropyForward on fusedce's CPU
//             kernels. When a gradient is being recorded (tf.grad, variableGrads, minimize, fit),
//             the same call also writes the gradient (the fused one-exp pass) and the backward
//             only scales it by dy; otherwise (predict, evaluate) no gradient is computed, and a
//             later backward, if any, runs crossEntropyBackward from the saved lse.
//   backward: d loss / d logits = dy · (softmax(z) − q), as a new float32 tensor. The labels get
//             no gradient (they are not an input of the custom gradient: they are data).
// On WebGL/WebGPU backends the calls still work, but dataSync() downloads the logits from the
// GPU and the gradient is uploaded back: correct, synchronous, and slower than tfjs's own loss.
import type * as tfc from '@tensorflow/tfjs-core';
import { type CrossEntropyOptions, type CrossEntropyResult, crossEntropyBackward, crossEntropyForward } from './cross_entropy';
import { checkFinite, checkOneOf, checkOptions, rangeError, typeError } from './errors';
import { type Logits, logits as makeLogits } from './logits';
import { REDUCTIONS, type Reduction } from './options';
import { softCrossEntropyBackward, softCrossEntropyForward } from './soft_cross_entropy';

/** The TensorFlow.js API these losses use: `import * as tf from '@tensorflow/tfjs'` (or tfjs-core, tfjs-node). */
export type Tf = Pick<typeof tfc, 'customGrad' | 'engine' | 'tensor' | 'scalar' | 'Tensor'>;

export interface SparseSoftmaxCrossEntropyOptions {
  /** 'mean' (default, tfjs's default: over rows that count), 'sum', or 'none' (per-row losses, shape logits.shape[:-1]). */
  reduction?: Reduction;
  /** Rows whose label equals this count nowhere (loss 0, gradient 0; 'mean' divides by the rows that count). Default -100. */
  ignoreIndex?: number;
  /** Label smoothing ε in [0, 1]: the target is (1 − ε)·onehot + ε/vocab, as tf.losses.softmaxCrossEntropy's labelSmoothing. */
  labelSmoothing?: number;
  /** Class weights (Float32Array of length vocab), torch's `weight`: 'mean' divides by Σ weight[label]. */
  weight?: Float32Array;
  /** z-loss coefficient c ≥ 0: adds c·lse² per row. */
  zLoss?: number;
  /** Logit scale s: z → s·z first. */
  logitScale?: number;
  /** Softcap c > 0: z → c·tanh(z/c). */
  softcap?: number;
  /** CPU threads for each call. Default: all cores. */
  threads?: number;
}

export interface SoftmaxCrossEntropyOptions {
  /** 'mean' (default, tfjs's default: Σ losses / rows, every row), 'sum', or 'none'. */
  reduction?: Reduction;
  /** Label smoothing ε in [0, 1]: labels → (1 − ε)·labels + ε/vocab, as tf.losses.softmaxCrossEntropy. */
  labelSmoothing?: number;
  /** CPU threads for each call. Default: all cores. */
  threads?: number;
}

const SPARSE_OPTIONS = ['reduction', 'ignoreIndex', 'labelSmoothing', 'weight', 'zLoss', 'logitScale', 'softcap', 'threads'] as const;
const DENSE_OPTIONS = ['reduction', 'labelSmoothing', 'threads'] as const;

/** The logits tensor: float32, rank ≥ 2; rows = the product of the leading dimensions. */
function checkLogitsTensor(tf: Tf, fn: string, x: unknown): { rows: number; vocab: number; shape: number[] } {
  if (!(x instanceof tf.Tensor))
    throw typeError(fn, 'logits', 'a tf.Tensor', x,
      'Pass a tensor of the same TensorFlow.js instance (with several copies of tfjs installed, use tfjsLosses(tf))');
  const t = x as tfc.Tensor;
  if (t.dtype !== 'float32') throw typeError(fn, 'logits.dtype', "'float32'", t.dtype, 'Cast with tf.cast(logits, "float32")');
  if (t.rank < 2) throw rangeError(fn, 'logits', 'a tensor of rank ≥ 2, (…, vocab)', `shape [${t.shape.join(', ')}]`);
  const vocab = t.shape[t.rank - 1];
  if (vocab < 1) throw rangeError(fn, 'logits', 'a tensor whose last dimension (vocab) is ≥ 1', `shape [${t.shape.join(', ')}]`);
  return { rows: t.size / vocab, vocab, shape: t.shape.slice() };
}

/** Class ids, one per row: int32, or float32 holding integers (model.fit's yTrue), shape (rows,) or (rows, 1). */
function labelIds(tf: Tf, fn: string, labels: unknown, rows: number): Int32Array {
  if (!(labels instanceof tf.Tensor)) throw typeError(fn, 'labels', 'a tf.Tensor of class ids', labels);
  const t = labels as tfc.Tensor;
  if (t.size !== rows)
    throw rangeError(fn, 'labels', `a tensor of ${rows} class ids (one per logits row), shape [${rows}] or [${rows}, 1]`, `shape [${t.shape.join(', ')}]`);
  if (t.dtype === 'int32') return Int32Array.from(t.dataSync() as Int32Array);
  if (t.dtype !== 'float32') throw typeError(fn, 'labels.dtype', "'int32' (or 'float32' holding integers)", t.dtype);
  const v = t.dataSync() as Float32Array;
  const ids = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    if (!Number.isInteger(v[i]))
      throw rangeError(fn, `labels[${i}]`, 'an integer class id (float32 labels must hold whole numbers)', v[i],
        'For one-hot or probability labels use softmaxCrossEntropy');
    ids[i] = v[i];
  }
  return ids;
}

/**
 * Runs one of fusedce's ops for `fn`: an argument error it raises names `fn`, the function the
 * user called, instead of the op underneath ("crossEntropyForward: targets[1] …" → "fn: labels[1] …").
 */
function as<T>(fn: string, op: string, call: () => T): T {
  try {
    return call();
  } catch (e) {
    if ((e instanceof TypeError || e instanceof RangeError) && e.message.startsWith(`${op}: `)) {
      const E = e instanceof TypeError ? TypeError : RangeError;
      // the op's targets are this function's labels
      const rest = e.message.slice(op.length + 2).replace(/^targets?\b/, fn === 'softmaxCrossEntropy' ? 'onehotLabels' : 'labels');
      throw new E(`${fn}: ${rest}`);
    }
    throw e;
  }
}

/** Whether tfjs is recording a gradient right now (tf.grad, variableGrads, minimize, fit). */
function recording(tf: Tf): boolean {
  const state = (tf.engine() as unknown as { state?: { gradientDepth?: number } }).state;
  return (state?.gradientDepth ?? 0) > 0;
}

/** The upstream gradient as the number the ops take: a scalar's value, or per row for reduction 'none'. */
function upstream(dy: tfc.Tensor, reduction: Reduction): number | Float32Array {
  const d = dy.dataSync() as Float32Array;
  return reduction === 'none' ? Float32Array.from(d) : d[0];
}

/** g *= s in place (the fused gradient was written for gradOutput 1). */
function scaled(g: Float32Array, s: number): Float32Array {
  if (s !== 1) for (let i = 0; i < g.length; i++) g[i] *= s;
  return g;
}

/** What a loss's forward call gives back: the reduced loss, per-row losses, lse, and the fused gradient when asked. */
interface Pass {
  loss: number;
  losses: Float32Array;
  lse: Float32Array;
  grad?: Float32Array;
}

/**
 * The custom-gradient op both losses are. `forward(z, fused)` runs the loss on the logits' data
 * (with its gradient when `fused`); `backward(z, pass, g)` computes the gradient for upstream g
 * from the saved lse, when the forward did not (no tape was recording, or reduction 'none').
 */
function customLoss(tf: Tf, logits: tfc.Tensor, at: { rows: number; vocab: number; shape: number[] }, reduction: Reduction,
  forward: (z: Logits<'f32'>, fused: boolean) => Pass, backward: (z: Logits<'f32'>, pass: Pass, g: number | Float32Array) => Float32Array): tfc.Tensor {
  const { rows, vocab, shape } = at;
  const f = tf.customGrad((x) => {
    const z = makeLogits((x as tfc.Tensor).dataSync() as Float32Array, rows, vocab);
    // fused only when a scalar loss is being differentiated (per-row dy needs the backward's gradOutput)
    const pass = forward(z, reduction !== 'none' && recording(tf));
    const value = reduction === 'none' ? tf.tensor(pass.losses, shape.slice(0, -1), 'float32') : tf.scalar(pass.loss, 'float32');
    return {
      value,
      gradFunc: (dy: tfc.Tensor) => {
        const g = upstream(dy, reduction);
        const grad = pass.grad && typeof g === 'number' ? scaled(pass.grad, g) : backward(z, pass, g);
        return tf.tensor(grad, shape, 'float32');
      },
    };
  });
  return f(logits);
}

const f32 = (g: Logits | undefined) => g?.data as Float32Array | undefined;

function sparse(tf: Tf, labels: unknown, logits: unknown, opts: unknown): tfc.Tensor {
  const fn = 'sparseSoftmaxCrossEntropy';
  const o = checkOptions(fn, opts, SPARSE_OPTIONS);
  const at = checkLogitsTensor(tf, fn, logits);
  const targets = labelIds(tf, fn, labels, at.rows);
  const reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS);
  // the options go to the ops as they are: each op validates its own (and names the option)
  const ce = { ...o, reduction } as CrossEntropyOptions;
  return customLoss(tf, logits as tfc.Tensor, at, reduction,
    (z, fused) => {
      const r: CrossEntropyResult = as(fn, 'crossEntropyForward', () => crossEntropyForward(z, targets, { ...ce, withGrad: fused }));
      return { loss: r.loss, losses: r.losses as Float32Array, lse: r.lse as Float32Array, grad: f32(r.grad) };
    },
    (z, pass, g) => as(fn, 'crossEntropyBackward', () => crossEntropyBackward(z, targets, pass.lse, { ...ce, gradOutput: g, gradDtype: 'f32' })).data as Float32Array);
}

function dense(tf: Tf, labels: unknown, logits: unknown, opts: unknown): tfc.Tensor {
  const fn = 'softmaxCrossEntropy';
  const o = checkOptions(fn, opts, DENSE_OPTIONS);
  const at = checkLogitsTensor(tf, fn, logits);
  const { rows, vocab, shape } = at;
  if (!(labels instanceof tf.Tensor)) throw typeError(fn, 'onehotLabels', 'a tf.Tensor of the logits\' shape', labels);
  const lt = labels as tfc.Tensor;
  if (lt.size !== rows * vocab || lt.shape[lt.rank - 1] !== vocab)
    throw rangeError(fn, 'onehotLabels', `a tensor of the logits' shape [${shape.join(', ')}]`, `shape [${lt.shape.join(', ')}]`);
  const reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS);
  const eps = o.labelSmoothing === undefined ? 0 : checkFinite(fn, 'labelSmoothing', o.labelSmoothing);
  if (eps < 0 || eps > 1) throw rangeError(fn, 'labelSmoothing', 'in [0, 1]', eps);
  // q = (1 − ε)·labels + ε/V, tfjs's smoothing of dense labels; a copy (the labels stay untouched)
  const q = Float32Array.from(lt.dataSync() as Float32Array);
  if (eps > 0) for (let i = 0; i < q.length; i++) q[i] = (1 - eps) * q[i]! + eps / vocab;
  const target = makeLogits(q, rows, vocab);
  // tfjs's mean divides by every row (an all-zero label row adds 0 and still counts): sum, then / rows
  const nativeReduction: Reduction = reduction === 'none' ? 'none' : 'sum';
  const factor = reduction === 'mean' ? 1 / Math.max(rows, 1) : 1;
  const soft = { targetKind: 'probs' as const, reduction: nativeReduction, threads: o.threads as number | undefined };
  return customLoss(tf, logits as tfc.Tensor, at, reduction,
    (z, fused) => {
      const r = as(fn, 'softCrossEntropyForward', () => softCrossEntropyForward(z, target, { ...soft, withGrad: fused, gradOutput: factor }));
      return { loss: r.loss * factor, losses: r.losses, lse: r.lse, grad: f32(r.grad) };
    },
    (z, pass, g) => as(fn, 'softCrossEntropyBackward', () =>
      softCrossEntropyBackward(z, target, pass.lse, { ...soft, gradOutput: typeof g === 'number' ? g * factor : g, gradDtype: 'f32' })).data as Float32Array);
}

export interface TfjsLosses {
  /**
   * Cross-entropy from logits and class ids, as a tf loss with its gradient.
   * @param labels  (rows,) or (rows, 1) class ids: int32, or float32 holding integers (model.fit's yTrue)
   * @param logits  (…, vocab) float32; rows = the product of the leading dimensions
   * @returns a scalar (or (…) per-row losses with reduction 'none'), differentiable w.r.t. logits
   */
  sparseSoftmaxCrossEntropy(labels: tfc.Tensor, logits: tfc.Tensor, opts?: SparseSoftmaxCrossEntropyOptions): tfc.Tensor;
  /**
   * Cross-entropy from logits and dense labels (one-hot or probabilities), −Σ_j q_j·log softmax(z)_j
   * per row, as tf.losses.softmaxCrossEntropy(onehotLabels, logits) with its defaults.
   * @param onehotLabels  (…, vocab) float32, the logits' shape
   * @param logits        (…, vocab) float32
   */
  softmaxCrossEntropy(onehotLabels: tfc.Tensor, logits: tfc.Tensor, opts?: SoftmaxCrossEntropyOptions): tfc.Tensor;
}

/** The losses bound to a given TensorFlow.js instance (for several tfjs copies, or tfjs-node). */
export function tfjsLosses(tf: Tf): TfjsLosses {
  if (tf === null || typeof tf !== 'object' || typeof (tf as Tf).customGrad !== 'function' || typeof (tf as Tf).Tensor !== 'function')
    throw typeError('tfjsLosses', 'tf', "the TensorFlow.js module (import * as tf from '@tensorflow/tfjs')", tf);
  return {
    sparseSoftmaxCrossEntropy: (labels, logits, opts) => sparse(tf, labels, logits, opts),
    softmaxCrossEntropy: (labels, logits, opts) => dense(tf, labels, logits, opts),
  };
}

let defaultLosses: TfjsLosses | undefined;
function losses(fn: string): TfjsLosses {
  if (defaultLosses) return defaultLosses;
  let tf: Tf | undefined;
  for (const id of ['@tensorflow/tfjs-core', '@tensorflow/tfjs']) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      tf = require(id) as Tf;
      break;
    } catch {
      /* try the next */
    }
  }
  if (!tf)
    throw new Error(`${fn}: cannot load TensorFlow.js (@tensorflow/tfjs-core or @tensorflow/tfjs).\n` +
      'Possible solutions:\n  - install it: npm install @tensorflow/tfjs\n' +
      "  - or pass your instance: import { tfjsLosses } from 'fusedce/tfjs'; const { sparseSoftmaxCrossEntropy } = tfjsLosses(tf)");
  defaultLosses = tfjsLosses(tf);
  return defaultLosses;
}

/** {@inheritDoc TfjsLosses.sparseSoftmaxCrossEntropy} (on the TensorFlow.js this package resolves; see tfjsLosses) */
export function sparseSoftmaxCrossEntropy(labels: tfc.Tensor, logits: tfc.Tensor, opts?: SparseSoftmaxCrossEntropyOptions): tfc.Tensor {
  return losses('sparseSoftmaxCrossEntropy').sparseSoftmaxCrossEntropy(labels, logits, opts);
}

/** {@inheritDoc TfjsLosses.softmaxCrossEntropy} (on the TensorFlow.js this package resolves; see tfjsLosses) */
export function softmaxCrossEntropy(onehotLabels: tfc.Tensor, logits: tfc.Tensor, opts?: SoftmaxCrossEntropyOptions): tfc.Tensor {
  return losses('softmaxCrossEntropy').softmaxCrossEntropy(onehotLabels, logits, opts);
}
