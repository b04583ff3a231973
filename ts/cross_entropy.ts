// Softmax cross-entropy from logits: the user-facing functions over the native core.
//
//   lse_i  = log Σ_j exp(z_ij)            (online max/sum in fp32 lanes, merged in double)
//   loss_i = lse_i − z_i[t_i]             (0 when t_i == ignoreIndex)
//   loss   = Σ_i loss_i / count  (mean) | Σ_i loss_i  (sum, and 'none')
//   grad_ij = (softmax(z_i)_j − [j == t_i]) · scale_i,
//   scale_i = gradOutput / count (mean) | gradOutput (sum) | gradOutput[_i] (none)
//
// Semantics follow torch.nn.functional.cross_entropy(reduction=, ignore_index=), except that when
// no row counts the loss and the gradient are 0 (PyTorch gives NaN for 'mean').
import { availableParallelism } from 'node:os';
import { native } from './binding';
import { type DType, DTYPES, dtypeCode } from './dtype';
import { checkBoolean, checkFinite, checkInteger, checkOneOf, checkOptions, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';

export type Reduction = 'mean' | 'sum' | 'none';
const REDUCTIONS: readonly Reduction[] = ['mean', 'sum', 'none'];

export interface CrossEntropyOptions {
  /** 'mean' (default): Σ loss / count; 'sum': Σ loss; 'none': per-row `losses`, and `loss` is their sum. */
  reduction?: Reduction;
  /** Rows whose target equals this count nowhere (loss 0, gradient 0). Default -100. */
  ignoreIndex?: number;
  /** Threads for this call (≥ 1; more than the machine has are capped). Default: all cores. */
  threads?: number;
}

export interface CrossEntropyForwardOptions extends CrossEntropyOptions {
  /** Also compute the gradient in the same call (the row is still in cache). Default false. */
  withGrad?: boolean;
  /** dtype of the gradient. Default: the logits' dtype. */
  gradDtype?: DType;
  /** Write the gradient over logits.data (needs gradDtype equal to the logits' dtype). Default false. */
  inPlace?: boolean;
  /**
   * Write the gradient here (same rows and vocab as logits; its dtype is the gradient's dtype).
   * Reusing one buffer across steps avoids the page faults of a fresh allocation every call.
   */
  out?: Logits;
  /** Upstream gradient d(objective)/d(loss): the gradient is d(loss·gradOutput)/dz. Default 1. */
  gradOutput?: number;
}

export interface CrossEntropyBackwardOptions extends CrossEntropyOptions {
  /** Upstream gradient: a number, or per row (Float32Array of length rows) with reduction 'none'. Default 1. */
  gradOutput?: number | Float32Array;
  gradDtype?: DType;
  /** Write the gradient here (same rows and vocab as logits); its dtype is the gradient's dtype. */
  out?: Logits;
  /** Write the gradient over logits.data. Default false. */
  inPlace?: boolean;
}

export interface CrossEntropyResult {
  /** mean: Σ losses / count (0 when count is 0); sum: Σ losses; none: Σ losses. */
  loss: number;
  /** Per-row loss (fp32), 0 at ignored rows. */
  losses: Float32Array;
  /** Per-row log-sum-exp (fp32), 0 at ignored rows. Feed it to crossEntropyBackward. */
  lse: Float32Array;
  /** Rows that count (target ≠ ignoreIndex). */
  count: number;
  /** With withGrad: d(loss·gradOutput)/d logits. */
  grad?: Logits;
}

const FORWARD_OPTIONS = ['reduction', 'ignoreIndex', 'threads', 'withGrad', 'gradDtype', 'inPlace', 'out', 'gradOutput'] as const;
const BACKWARD_OPTIONS = ['reduction', 'ignoreIndex', 'threads', 'gradOutput', 'gradDtype', 'out', 'inPlace'] as const;

interface Common {
  z: Logits;
  targets: Int32Array;
  reduction: Reduction;
  ignoreIndex: number;
  threads: number;
}

function checkCommon(fn: string, logits: unknown, targets: unknown, o: Partial<Record<string, unknown>>): Common {
  const z = checkLogits(fn, 'logits', logits);
  if (!(targets instanceof Int32Array))
    throw typeError(fn, 'targets', `an Int32Array of length rows (${z.rows})`, targets,
      'Convert with Int32Array.from(targets)');
  if (targets.length !== z.rows) throw rangeError(fn, 'targets', `of length rows (${z.rows})`, targets);
  return {
    z,
    targets,
    reduction: o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS),
    ignoreIndex: o.ignoreIndex === undefined ? -100 : checkInteger(fn, 'ignoreIndex', o.ignoreIndex, -(2 ** 31), 2 ** 31 - 1),
    threads: o.threads === undefined ? availableParallelism() : checkInteger(fn, 'threads', o.threads, 1, 65536),
  };
}

function checkGradDtype(fn: string, v: unknown, fallback: DType): DType {
  return v === undefined ? fallback : checkOneOf(fn, 'gradDtype', v, DTYPES);
}

function reductionCode(r: Reduction): number {
  return r === 'mean' ? 0 : r === 'sum' ? 1 : 2;
}

/**
 * Where the gradient goes, from the options gradDtype, out and inPlace: a new array (gradOut
 * null), the given `out` (its dtype decides), or logits.data itself (inPlace).
 */
function gradTarget(fn: string, o: Partial<Record<string, unknown>>, z: Logits): { gradDtype: DType; gradOut: Logits['data'] | null } {
  const inPlace = o.inPlace === undefined ? false : checkBoolean(fn, 'inPlace', o.inPlace);
  let gradDtype = checkGradDtype(fn, o.gradDtype, z.dtype);
  if (o.out !== undefined) {
    if (inPlace) throw typeError(fn, 'out', 'undefined when inPlace is true (the gradient goes into logits.data)', o.out);
    const out = checkLogits(fn, 'out', o.out);
    if (out.rows !== z.rows || out.vocab !== z.vocab)
      throw rangeError(fn, 'out', `a [${z.rows}, ${z.vocab}] matrix like logits`, `[${out.rows}, ${out.vocab}]`);
    if (o.gradDtype !== undefined && out.dtype !== gradDtype)
      throw typeError(fn, 'out.dtype', `gradDtype ('${gradDtype}')`, out.dtype);
    return { gradDtype: out.dtype, gradOut: out.data };
  }
  if (!inPlace) return { gradDtype, gradOut: null };
  if (gradDtype !== z.dtype)
    throw rangeError(fn, 'gradDtype', `the logits' dtype ('${z.dtype}') when inPlace is true`, gradDtype);
  return { gradDtype, gradOut: z.data };
}

type ForwardPlan = { c: Common; withGrad: boolean; gradDtype: DType; gradOut: Logits['data'] | null; gradOutput: number };

function planForward(fn: string, logits: unknown, targets: unknown, opts: unknown): ForwardPlan {
  const o = checkOptions(fn, opts, FORWARD_OPTIONS);
  const c = checkCommon(fn, logits, targets, o);
  const withGrad = o.withGrad === undefined ? false : checkBoolean(fn, 'withGrad', o.withGrad);
  const gradOutput = o.gradOutput === undefined ? 1 : checkFinite(fn, 'gradOutput', o.gradOutput);
  if (!withGrad && o.inPlace) throw rangeError(fn, 'inPlace', 'false unless withGrad is true', o.inPlace);
  if (!withGrad && o.out !== undefined) throw typeError(fn, 'out', 'undefined unless withGrad is true', o.out);
  return { c, withGrad, gradOutput, ...gradTarget(fn, o, c.z) };
}

function forwardArgs(p: ForwardPlan) {
  const { c } = p;
  return [c.z.data, dtypeCode(c.z.dtype), c.z.rows, c.z.vocab, c.targets, c.ignoreIndex, reductionCode(c.reduction),
    c.threads, p.withGrad, dtypeCode(p.gradDtype), p.gradOut, p.gradOutput] as const;
}

function forwardResult(p: ForwardPlan, r: { losses: Float32Array; lse: Float32Array; lossSum: number; count: number; grad?: Logits['data'] }): CrossEntropyResult {
  const loss = p.c.reduction === 'mean' ? (r.count > 0 ? r.lossSum / r.count : 0) : r.lossSum;
  const out: CrossEntropyResult = { loss, losses: r.losses, lse: r.lse, count: r.count };
  if (r.grad) out.grad = { data: r.grad, dtype: p.gradDtype, rows: p.c.z.rows, vocab: p.c.z.vocab };
  return out;
}

/**
 * Cross-entropy loss (and optionally its gradient) from logits [rows, vocab] and int targets [rows].
 * @example
 *   const z = logits(bf16.fromFloat32(x), rows, vocab, 'bf16');
 *   const { loss, lse, grad } = crossEntropyForward(z, targets, { withGrad: true });
 */
export function crossEntropyForward(logits: Logits, targets: Int32Array, opts?: CrossEntropyForwardOptions): CrossEntropyResult {
  const p = planForward('crossEntropyForward', logits, targets, opts);
  return forwardResult(p, native().crossEntropyForward(...forwardArgs(p), false));
}

/** crossEntropyForward off the main thread; inputs must not be detached or modified until it settles. */
export async function crossEntropyForwardAsync(logits: Logits, targets: Int32Array, opts?: CrossEntropyForwardOptions): Promise<CrossEntropyResult> {
  const p = planForward('crossEntropyForwardAsync', logits, targets, opts);
  return forwardResult(p, await native().crossEntropyForward(...forwardArgs(p), true));
}

type BackwardPlan = { c: Common; lse: Float32Array; gradOutput: number; rowGrad: Float32Array | null; gradDtype: DType; gradOut: Logits['data'] | null };

function planBackward(fn: string, logits: unknown, targets: unknown, lse: unknown, opts: unknown): BackwardPlan {
  const o = checkOptions(fn, opts, BACKWARD_OPTIONS);
  const c = checkCommon(fn, logits, targets, o);
  if (!(lse instanceof Float32Array))
    throw typeError(fn, 'lse', `a Float32Array of length rows (${c.z.rows}), as returned by crossEntropyForward`, lse);
  if (lse.length !== c.z.rows) throw rangeError(fn, 'lse', `of length rows (${c.z.rows})`, lse);

  let gradOutput = 1;
  let rowGrad: Float32Array | null = null;
  if (o.gradOutput instanceof Float32Array) {
    if (c.reduction !== 'none')
      throw typeError(fn, 'gradOutput', `a number with reduction '${c.reduction}' (per-row gradOutput needs reduction 'none')`, o.gradOutput);
    if (o.gradOutput.length !== c.z.rows) throw rangeError(fn, 'gradOutput', `of length rows (${c.z.rows})`, o.gradOutput);
    rowGrad = o.gradOutput;
  } else if (o.gradOutput !== undefined) {
    if (typeof o.gradOutput !== 'number')
      throw typeError(fn, 'gradOutput', 'a finite number, or a Float32Array of length rows with reduction \'none\'', o.gradOutput);
    gradOutput = checkFinite(fn, 'gradOutput', o.gradOutput);
  }

  return { c, lse, gradOutput, rowGrad, ...gradTarget(fn, o, c.z) };
}

function backwardArgs(p: BackwardPlan) {
  const { c } = p;
  return [c.z.data, dtypeCode(c.z.dtype), c.z.rows, c.z.vocab, c.targets, c.ignoreIndex, reductionCode(c.reduction),
    c.threads, p.lse, p.gradOutput, p.rowGrad, dtypeCode(p.gradDtype), p.gradOut] as const;
}

function backwardResult(p: BackwardPlan, data: Logits['data']): Logits {
  return { data, dtype: p.gradDtype, rows: p.c.z.rows, vocab: p.c.z.vocab };
}

/**
 * Gradient of the loss w.r.t. the logits from the forward's lse: (softmax(z) − onehot) · scale.
 * Gives bitwise the same gradient as crossEntropyForward(…, { withGrad: true }).
 */
export function crossEntropyBackward(logits: Logits, targets: Int32Array, lse: Float32Array, opts?: CrossEntropyBackwardOptions): Logits {
  const p = planBackward('crossEntropyBackward', logits, targets, lse, opts);
  return backwardResult(p, native().crossEntropyBackward(...backwardArgs(p), false));
}

/** crossEntropyBackward off the main thread; inputs must not be detached or modified until it settles. */
export async function crossEntropyBackwardAsync(logits: Logits, targets: Int32Array, lse: Float32Array, opts?: CrossEntropyBackwardOptions): Promise<Logits> {
  const p = planBackward('crossEntropyBackwardAsync', logits, targets, lse, opts);
  return backwardResult(p, await native().crossEntropyBackward(...backwardArgs(p), true));
}
