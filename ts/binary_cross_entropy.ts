// Binary cross-entropy from logits, elementwise over [rows, vocab] (multi-label classification):
// torch.nn.BCEWithLogitsLoss semantics, over cpp/binary_cross_entropy.cpp. With lw = 1 + (pw_j − 1)·y,
//   l = w·[(1 − y)·x + lw·log(1 + e^{−x})]      (computed as log1p(e^{−|x|}) + max(−x, 0): stable for any x)
//   dl/dx = w·[(1 − y) − lw·σ(−x)]
// posWeight pw broadcasts over the last dimension (a number or Float32Array(vocab)); weight w is
// elementwise (Float32Array(rows·vocab)) or per class (Float32Array(vocab)). Reductions: 'mean'
// divides by rows·vocab elements, 'sum' sums, 'none' returns every element's loss.
import { type NativeBceRequest, type NativeBceResult, native } from './binding';
import { type DType, dtypeCode } from './dtype';
import { checkFinite, checkOneOf, checkOptions, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';
import { REDUCTIONS, type Reduction, checkGradRequest, checkThreads, gradTarget, reductionCode } from './options';

export interface BinaryCrossEntropyOptions {
  /** Weight of the positive term per class (a number ≥ 0, or Float32Array(vocab)). Default 1. */
  posWeight?: number | Float32Array;
  /** Elementwise weight, Float32Array(rows·vocab), or per class, Float32Array(vocab); any finite numbers, negative included (torch). */
  weight?: Float32Array;
  /** 'mean' (default): Σ l / (rows·vocab); 'sum'; 'none': `losses` holds every element's loss. */
  reduction?: Reduction;
  withGrad?: boolean;
  gradDtype?: DType;
  /** Upstream gradient d(objective)/d(loss). Default 1. */
  gradOutput?: number;
  out?: Logits;
  inPlace?: boolean;
  threads?: number;
}

export interface BinaryCrossEntropyResult {
  loss: number;
  /** With reduction 'none': every element's loss, Float32Array(rows·vocab). */
  losses?: Float32Array;
  /** Elements counted (rows·vocab). */
  count: number;
  grad?: Logits;
}

const BCE_OPTIONS = ['posWeight', 'weight', 'reduction', 'withGrad', 'gradDtype', 'gradOutput', 'out', 'inPlace', 'threads'] as const;

function plan(fn: string, logits: unknown, targets: unknown, opts: unknown) {
  const o = checkOptions(fn, opts, BCE_OPTIONS) as Partial<Record<string, unknown>>;
  const z = checkLogits(fn, 'logits', logits);
  const n = z.rows * z.vocab;
  if (!(targets instanceof Float32Array))
    throw typeError(fn, 'targets', `a Float32Array of length rows·vocab (${n}) with values in [0, 1]`, targets);
  if (targets.length !== n) throw rangeError(fn, 'targets', `of length rows·vocab (${n})`, targets);
  let posWeight: number | Float32Array = 1;
  if (o.posWeight instanceof Float32Array) {
    if (o.posWeight.length !== z.vocab) throw rangeError(fn, 'posWeight', `of length vocab (${z.vocab})`, o.posWeight);
    posWeight = o.posWeight;
  } else if (o.posWeight !== undefined) {
    if (typeof o.posWeight !== 'number') throw typeError(fn, 'posWeight', 'a number ≥ 0 or a Float32Array of length vocab', o.posWeight);
    posWeight = checkFinite(fn, 'posWeight', o.posWeight);
    if (posWeight < 0) throw rangeError(fn, 'posWeight', 'a finite number ≥ 0', posWeight);
  }
  let weight: Float32Array | null = null;
  if (o.weight !== undefined) {
    if (!(o.weight instanceof Float32Array))
      throw typeError(fn, 'weight', `a Float32Array of length rows·vocab (${n}) or vocab (${z.vocab})`, o.weight);
    if (o.weight.length !== n && o.weight.length !== z.vocab)
      throw rangeError(fn, 'weight', `of length rows·vocab (${n}) or vocab (${z.vocab})`, o.weight);
    weight = o.weight;
  }
  const reduction: Reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS);
  const { withGrad, gradOutput } = checkGradRequest(fn, o);
  const threads = checkThreads(fn, o.threads);
  const gt = gradTarget(fn, o, z);
  const req: NativeBceRequest = {
    fn, logits: z.data, dtype: dtypeCode(z.dtype), rows: z.rows, vocab: z.vocab, targets, posWeight, weight, reduction: reductionCode(reduction),
    threads, withGrad, gradDtype: dtypeCode(gt.gradDtype), out: gt.gradOut, gradOutput,
  };
  return { z, reduction, gt, req };
}

function result(p: ReturnType<typeof plan>, r: NativeBceResult): BinaryCrossEntropyResult {
  const out: BinaryCrossEntropyResult = { loss: r.loss, count: r.count };
  if (r.losses) out.losses = r.losses;
  if (r.grad) out.grad = { data: r.grad, dtype: p.gt.gradDtype, rows: p.z.rows, vocab: p.z.vocab };
  return out;
}

/**
 * Binary cross-entropy with logits over [rows, vocab] (torch BCEWithLogitsLoss), targets in [0, 1].
 * @example
 *   const { loss, grad } = binaryCrossEntropyWithLogits(z, labels, { posWeight: 3, withGrad: true });
 */
export function binaryCrossEntropyWithLogits(logits: Logits, targets: Float32Array, opts?: BinaryCrossEntropyOptions): BinaryCrossEntropyResult {
  const p = plan('binaryCrossEntropyWithLogits', logits, targets, opts);
  return result(p, native().binaryCrossEntropy(p.req));
}

/** binaryCrossEntropyWithLogits off the main thread. */
export async function binaryCrossEntropyWithLogitsAsync(logits: Logits, targets: Float32Array, opts?: BinaryCrossEntropyOptions): Promise<BinaryCrossEntropyResult> {
  const p = plan('binaryCrossEntropyWithLogitsAsync', logits, targets, opts);
  return result(p, await native().binaryCrossEntropy({ ...p.req, async: true }));
}
