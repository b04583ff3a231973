// Softmax cross-entropy from logits: the user-facing functions over the native core (CPU:
// cpp/cross_entropy*.cpp through cpp/addon.cpp; CUDA: ts/cross_entropy_cuda.ts). The shared
// option checks are in ts/options.ts, the batch statistics in ts/stats.ts.
//
//   lse_i  = log Σ_j exp(z_ij)            (online max/sum in fp32 lanes, merged in double)
//   loss_i = lse_i − z_i[t_i]             (0 when t_i == ignoreIndex)
//   loss   = Σ_i loss_i / count  (mean) | Σ_i loss_i  (sum, and 'none')
//   grad_ij = (softmax(z_i)_j − [j == t_i]) · scale_i,
//   scale_i = gradOutput / count (mean) | gradOutput (sum) | gradOutput[_i] (none)
//
// Semantics follow torch.nn.functional.cross_entropy(reduction=, ignore_index=), except that when
// no row counts the loss and the gradient are 0 (PyTorch gives NaN for 'mean').
import { type NativeBackwardRequest, type NativeCeOptions, type NativeForwardRequest, type NativeForwardResult, native } from './binding';
import { type DType, dtypeCode } from './dtype';
import { checkBoolean, checkInteger, checkOneOf, checkOptions, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';
import { type Device, DeviceLogits, DeviceTargets, DeviceVector } from './cuda';
import { cudaBackward, cudaForward, cudaMode } from './cross_entropy_cuda';
import { BACKWARD_OPTIONS, CE_REDUCTIONS, type CeReduction, FORWARD_OPTIONS, type Reduction, checkGradOutput, checkGradRequest, checkLossOptions, checkThreads, gradTarget, reductionCode } from './options';
import { type TextSize, batchStats, checkTextSize } from './stats';
import { type SequencePlan, type SequenceResult, checkSequences, sequenceMean, sequenceMeanRowGrad, sequenceResult, sequenceRowGrad } from './sequences';

export { type Reduction, REDUCTIONS, type CeReduction } from './options';

export interface CrossEntropyOptions {
  /**
   * 'mean' (default): Σ loss / count; 'sum': Σ loss; 'none': per-row `losses`, and `loss` is their
   * sum; 'sequenceMean' (with sequenceIds): the mean over sequences with a counted row of each
   * sequence's mean row loss, with its gradient.
   */
  reduction?: CeReduction;
  /**
   * A sequence id ≥ 0 per row (Int32Array(rows)); n = max + 1 sequences. The forward's result
   * gains `sequences` ({ logprob, tokens, meanLoss } per sequence), and reduction 'sequenceMean'
   * becomes possible. On the GPU the per-sequence sums are taken on the host from the rows' double
   * losses (a download of rows × 8 bytes), so it cannot be combined with lossOnDevice.
   */
  sequenceIds?: Int32Array;
  /** Rows whose target equals this count nowhere (loss 0, gradient 0). Default -100. */
  ignoreIndex?: number;
  /** Threads for this call (≥ 1; more than the machine has are capped). Default: all cores. CPU only. */
  threads?: number;
  /**
   * Where a call with host arrays runs: 'auto' (the GPU when the CUDA variant is built and a device
   * answers, else the CPU), 'cpu' or 'cuda'. Default: setDevice() / FUSEDCE_DEVICE / 'auto'.
   * Calls with device tensors always run on the GPU.
   */
  device?: Device;
  /**
   * Label smoothing ε in [0, 1], torch's `label_smoothing`: the target becomes (1 − ε)·onehot + ε/vocab,
   * so loss_i = (1 − ε)·w_t·(lse − z_t) + (ε/vocab)·Σ_j w_j·(lse − z_j). Default 0.
   */
  labelSmoothing?: number;
  /**
   * Class weights w (Float32Array of length vocab, or on the GPU also a DeviceVector; any finite
   * numbers, negative included), torch's
   * `weight`: each row's loss is scaled by w[target] (the smoothing term by each w_j), and 'mean'
   * divides by Σ_i w[target_i] over counted rows (`weightSum` in the result), whatever its sign;
   * when that sum is 0 the mean is 0 (torch gives NaN).
   */
  weight?: Float32Array | DeviceVector;
  /**
   * z-loss coefficient c ≥ 0 (PaLM): adds c·lse_i² to each counted row's loss; 'mean' divides that
   * part by `count` (not by the weights). The part is also reported alone as `zLoss`. Default 0.
   */
  zLoss?: number;
  /** Softcap c > 0 (Gemma 2): logits z → c·tanh(z/c), applied after logitScale; lse is of the capped logits. */
  softcap?: number;
  /** Logit scale s: z → s·z, applied first (before softcap). Default 1. */
  logitScale?: number;
  /**
   * Focal loss γ ≥ 0 (Lin et al. 2017): the row loss becomes −w_t·(1 − p_t)^γ·log p_t, with `weight`
   * as α per class and torch's weighted mean ('mean' divides by Σ weight[target]). γ = 0 is plain
   * CE, bitwise. With labelSmoothing or zLoss it is a TypeError.
   */
  focalGamma?: number;
}

/** Per-row and batch evaluation statistics from the same pass (forward option `stats: true`). */
export interface CrossEntropyStats {
  /** First index of the largest (transformed) logit per row; −1 at ignored rows. */
  argmax: Int32Array;
  /** Entropy of softmax per row, nats; 0 at ignored rows. */
  entropy: Float32Array;
  /** log softmax at the target per row (z_t − lse, no smoothing or weight); 0 at ignored rows. */
  targetLogprob: Float32Array;
  /** Largest probability per row (the confidence); 0 at ignored rows. */
  maxProb: Float32Array;
  /** exp(mean negative log-likelihood) over counted rows (unweighted, unsmoothed); NaN when no row counts. */
  perplexity: number;
  /** Mean negative log-likelihood in bits (nats / ln 2). */
  bitsPerToken: number;
  /** Fraction of counted rows whose argmax is the target. */
  accuracy: number;
  /** Mean entropy over counted rows, nats. */
  meanEntropy: number;
  /**
   * Expected calibration error over counted rows: Σ_b (n_b / count)·|accuracy_b − confidence_b| over
   * `eceBins` equal-width bins of maxProb (bin b holds (b/B, (b+1)/B], the first also 0).
   */
  ece: number;
  /**
   * The reliability diagram's data, over the ECE's bins: per bin, the mean confidence (maxProb),
   * the accuracy (fraction whose argmax is the target) and the number of counted rows; 0 and 0
   * for an empty bin. `reliabilityDiagramSvg(stats.reliability)` draws it.
   */
  reliability: Reliability;
  /** With the option `characters`: NLL / (characters·ln 2), bits per character of the text the rows predict. */
  bitsPerCharacter?: number;
  /** With the option `bytes`: NLL / (bytes·ln 2), bits per byte (UTF-8) of that text. */
  bitsPerByte?: number;
}

/** Per-bin calibration, over the equal-width bins of maxProb that `ece` uses. */
export interface Reliability {
  confidence: Float64Array;
  accuracy: Float64Array;
  count: Float64Array;
}

export interface CrossEntropyForwardOptions extends CrossEntropyOptions {
  /** Also compute per-row argmax, entropy, targetLogprob, maxProb and batch perplexity, accuracy, ECE… in the same pass. Default false. */
  stats?: boolean;
  /** Bins of the expected calibration error and the reliability diagram (with stats). Default 15. */
  eceBins?: number;
  /**
   * With stats: the number of characters of the text the counted rows predict, for
   * `stats.bitsPerCharacter` (the tokenizer-independent rate). Summing the batches' NLLs and
   * characters gives a whole corpus's rate.
   */
  characters?: number;
  /** With stats: the text's size in bytes (UTF-8), for `stats.bitsPerByte`. */
  bytes?: number;
  /** Also compute the gradient in the same call (the row is still in cache). Default false. */
  withGrad?: boolean;
  /** dtype of the gradient. Default: the logits' dtype. */
  gradDtype?: DType;
  /** Write the gradient over logits.data (needs gradDtype equal to the logits' dtype). Default false. */
  inPlace?: boolean;
  /**
   * Write the gradient here (same rows and vocab as logits; its dtype is the gradient's dtype).
   * Reusing one buffer across steps avoids the page faults of a fresh allocation every call.
   * With device logits, a DeviceLogits.
   */
  out?: Logits | DeviceLogits;
  /** Upstream gradient d(objective)/d(loss): the gradient is d(loss·gradOutput)/dz. Default 1. */
  gradOutput?: number;
  /**
   * GPU, device logits: return the reduced loss as a DeviceVector(1) and do not wait for the
   * kernels (no read-back), so a training step queues forward and backward without a host
   * synchronisation. `count` is not returned (it needs the read-back); a target out of range or a
   * non-finite weight makes the loss, losses, lse and gradient NaN instead of an error. Default false.
   */
  lossOnDevice?: boolean;
  /**
   * GPU: the CUDA stream to queue the work on, a cudaStream_t as a bigint (torch:
   * `BigInt(torch.cuda.current_stream().cuda_stream)`, or cuda.createStream()). Default: the
   * default stream. Calls that read results back wait for this stream only.
   */
  stream?: bigint;
}

export interface CrossEntropyBackwardOptions extends CrossEntropyOptions {
  /** GPU: the CUDA stream to queue the work on (see CrossEntropyForwardOptions.stream). */
  stream?: bigint;
  /** Upstream gradient: a number, or per row (Float32Array or DeviceVector of length rows) with reduction 'none'. Default 1. */
  gradOutput?: number | Float32Array | DeviceVector;
  gradDtype?: DType;
  /** Write the gradient here (same rows and vocab as logits); its dtype is the gradient's dtype. */
  out?: Logits | DeviceLogits;
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
  /** With zLoss: the z-loss part of `loss`, reduced the same way (mean: Σ c·lse² / count). */
  zLoss?: number;
  /** With weight: Σ weight[target] over counted rows, the mean's denominator. */
  weightSum?: number;
  /** With stats: the evaluation statistics. */
  stats?: CrossEntropyStats;
  /** With sequenceIds: per sequence, Σ log p(target), the counted rows, and the mean loss. */
  sequences?: SequenceResult;
}

/** The gradient's dtype of a call with options O on logits of dtype D: out's, else gradDtype, else D. */
export type GradDtypeOf<O, D extends DType> = O extends { out: Logits<infer G> }
  ? G
  : O extends { gradDtype: infer G extends DType }
    ? G
    : D;

/**
 * CrossEntropyResult as a call with options O on Logits<D> returns it: `grad` is there (with
 * its dtype's array type) when O has `withGrad: true`, and `stats` when O has `stats: true`, so
 * strict TypeScript needs no casts:
 *   const g: Float32Array = crossEntropyForward(z, t, { withGrad: true, gradDtype: 'f32' }).grad.data;
 */
export type CrossEntropyResultFor<O, D extends DType = DType> = Omit<CrossEntropyResult, 'grad' | 'stats'> &
  (O extends { withGrad: true } ? { grad: Logits<GradDtypeOf<O, D>> } : { grad?: Logits }) &
  (O extends { stats: true } ? { stats: CrossEntropyStats } : { stats?: CrossEntropyStats });

/** The result with device logits: losses, lse and the gradient stay on the device. */
export interface CudaCrossEntropyResult {
  loss: number;
  losses: DeviceVector;
  lse: DeviceVector;
  count: number;
  grad?: DeviceLogits;
  /** With zLoss: the z-loss part of `loss`, reduced the same way. */
  zLoss?: number;
  /** With weight: Σ weight[target] over counted rows, the mean's denominator. */
  weightSum?: number;
  /** With stats: the evaluation statistics (host arrays: downloaded, they are small). */
  stats?: CrossEntropyStats;
  /** With sequenceIds: per sequence, Σ log p(target), the counted rows, and the mean loss (host arrays). */
  sequences?: SequenceResult;
}

/** With lossOnDevice: the reduced loss stays on the device too (no count: it would need a read-back). */
export interface CudaDeviceLossResult {
  /** The reduced loss (mean, sum, or for 'none' the sum), DeviceVector(1). */
  loss: DeviceVector;
  losses: DeviceVector;
  lse: DeviceVector;
  grad?: DeviceLogits;
}

interface Common {
  z: Logits;
  targets: Int32Array;
  reduction: CeReduction;
  seq: SequencePlan | null;
  ignoreIndex: number;
  threads: number;
  ce: NativeCeOptions | null;
}

function checkCommon(fn: string, logits: unknown, targets: unknown, o: Partial<Record<string, unknown>>): Common {
  const z = checkLogits(fn, 'logits', logits);
  if (!(targets instanceof Int32Array))
    throw typeError(fn, 'targets', `an Int32Array of length rows (${z.rows})`, targets,
      'Convert with Int32Array.from(targets)');
  if (targets.length !== z.rows) throw rangeError(fn, 'targets', `of length rows (${z.rows})`, targets);
  const reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, CE_REDUCTIONS);
  const ignoreIndex = o.ignoreIndex === undefined ? -100 : checkInteger(fn, 'ignoreIndex', o.ignoreIndex, -(2 ** 31), 2 ** 31 - 1);
  return {
    z,
    targets,
    reduction,
    seq: checkSequences(fn, o.sequenceIds, targets, ignoreIndex, reduction === 'sequenceMean'),
    ignoreIndex,
    threads: checkThreads(fn, o.threads),
    ce: checkLossOptions(fn, o, z.vocab),
  };
}

/** The reduction the kernels run: 'sequenceMean' is 'none' with per-row gradient scales. */
function nativeReduction(r: CeReduction): Reduction {
  return r === 'sequenceMean' ? 'none' : r;
}

type ForwardPlan = { c: Common; withGrad: boolean; gradDtype: DType; gradOut: Logits['data'] | null; gradOutput: number; stats: boolean; eceBins: number; text: TextSize };

function planForward(fn: string, logits: unknown, targets: unknown, opts: unknown): ForwardPlan {
  const o = checkOptions(fn, opts, FORWARD_OPTIONS);
  const c = checkCommon(fn, logits, targets, o);
  const { withGrad, gradOutput } = checkGradRequest(fn, o);
  const stats = o.stats === undefined ? false : checkBoolean(fn, 'stats', o.stats);
  const eceBins = o.eceBins === undefined ? 15 : checkInteger(fn, 'eceBins', o.eceBins, 1, 1e6);
  const text = checkTextSize(fn, o, stats);
  return { c, withGrad, gradOutput, stats, eceBins, text, ...gradTarget(fn, o, c.z) };
}

/** The shared fields of a cross-entropy request (ts/binding.ts NativeCeRequest). */
function ceRequest(fn: string, c: Common) {
  return {
    fn, logits: c.z.data, dtype: dtypeCode(c.z.dtype), rows: c.z.rows, vocab: c.z.vocab, targets: c.targets,
    ignoreIndex: c.ignoreIndex, reduction: reductionCode(nativeReduction(c.reduction)), threads: c.threads, ...(c.ce ?? {}),
  };
}

function forwardRequest(fn: string, p: ForwardPlan): NativeForwardRequest {
  const seqMean = p.c.reduction === 'sequenceMean' && p.c.seq;
  return { ...ceRequest(fn, p.c), withGrad: p.withGrad, gradDtype: dtypeCode(p.gradDtype), out: p.gradOut, gradOutput: p.gradOutput, stats: p.stats,
    gradOutputRows: seqMean && p.withGrad ? sequenceRowGrad(p.c.seq!, p.gradOutput) : null, losses64: p.c.seq !== null };
}

function forwardResult(p: ForwardPlan, r: NativeForwardResult): CrossEntropyResult {
  const seq = p.c.seq;
  const loss = p.c.reduction === 'sequenceMean' && seq ? sequenceMean(seq, r.losses64!) : r.loss;
  const out: CrossEntropyResult = { loss, losses: r.losses, lse: r.lse, count: r.count };
  if (seq) out.sequences = sequenceResult(seq, p.c.z, p.c.targets, p.c.ignoreIndex, r.losses64!, r.lse, p.c.ce);
  if (r.grad) out.grad = { data: r.grad, dtype: p.gradDtype, rows: p.c.z.rows, vocab: p.c.z.vocab };
  if (p.c.ce && (p.c.ce.zLoss ?? 0) > 0) out.zLoss = r.zLoss;
  if (p.c.ce?.weight) out.weightSum = r.weightSum;
  if (p.stats && r.argmax && r.entropy && r.targetLogprob && r.maxProb)
    out.stats = batchStats(p.c.targets, p.c.ignoreIndex, r.argmax, r.entropy, r.targetLogprob, r.maxProb, p.eceBins, p.text);
  return out;
}

/**
 * Cross-entropy loss (and optionally its gradient) from logits [rows, vocab] and int targets [rows].
 * With device logits (cuda.upload / cuda.fromPointer) it runs on the GPU and losses, lse and grad
 * stay on the device; with host arrays it runs where `device` says (see CrossEntropyOptions).
 * @example
 *   const z = logits(bf16.fromFloat32(x), rows, vocab, 'bf16');
 *   const { loss, lse, grad } = crossEntropyForward(z, targets, { withGrad: true });
 */
export function crossEntropyForward(logits: DeviceLogits, targets: Int32Array | DeviceTargets, opts: CrossEntropyForwardOptions & { lossOnDevice: true }): CudaDeviceLossResult;
export function crossEntropyForward(logits: DeviceLogits, targets: Int32Array | DeviceTargets, opts?: CrossEntropyForwardOptions): CudaCrossEntropyResult;
export function crossEntropyForward<D extends DType, const O extends CrossEntropyForwardOptions = {}>(logits: Logits<D>, targets: Int32Array | DeviceTargets, opts?: O): CrossEntropyResultFor<O, D>;
export function crossEntropyForward(logits: Logits | DeviceLogits, targets: Int32Array | DeviceTargets, opts?: CrossEntropyForwardOptions): CrossEntropyResult | CudaCrossEntropyResult | CudaDeviceLossResult {
  const fn = 'crossEntropyForward';
  const so = checkOptions(fn, opts, FORWARD_OPTIONS);
  const where = cudaMode(fn, logits, targets, so, FORWARD_OPTIONS);
  if (where) return cudaForward(fn, logits, targets, so, where, false) as CrossEntropyResult | CudaCrossEntropyResult | CudaDeviceLossResult;
  const p = planForward(fn, logits, targets, so);
  return forwardResult(p, native().crossEntropyForward(forwardRequest(fn, p)));
}

/** crossEntropyForward off the main thread. Small inputs are copied first; the large ones are pinned (README: "Memory safety and the async contract"); device tensors must not be disposed until it settles. */
export async function crossEntropyForwardAsync(logits: DeviceLogits, targets: Int32Array | DeviceTargets, opts: CrossEntropyForwardOptions & { lossOnDevice: true }): Promise<CudaDeviceLossResult>;
export async function crossEntropyForwardAsync(logits: DeviceLogits, targets: Int32Array | DeviceTargets, opts?: CrossEntropyForwardOptions): Promise<CudaCrossEntropyResult>;
export async function crossEntropyForwardAsync<D extends DType, const O extends CrossEntropyForwardOptions = {}>(logits: Logits<D>, targets: Int32Array | DeviceTargets, opts?: O): Promise<CrossEntropyResultFor<O, D>>;
export async function crossEntropyForwardAsync(logits: Logits | DeviceLogits, targets: Int32Array | DeviceTargets, opts?: CrossEntropyForwardOptions): Promise<CrossEntropyResult | CudaCrossEntropyResult | CudaDeviceLossResult> {
  const fn = 'crossEntropyForwardAsync';
  const so = checkOptions(fn, opts, FORWARD_OPTIONS);
  const where = cudaMode(fn, logits, targets, so, FORWARD_OPTIONS);
  if (where) return cudaForward(fn, logits, targets, so, where, true);
  const p = planForward(fn, logits, targets, so);
  return forwardResult(p, await native().crossEntropyForward({ ...forwardRequest(fn, p), async: true }));
}

type BackwardPlan = { c: Common; lse: Float32Array; gradOutput: number; rowGrad: Float32Array | null; gradDtype: DType; gradOut: Logits['data'] | null };

function planBackward(fn: string, logits: unknown, targets: unknown, lse: unknown, opts: unknown): BackwardPlan {
  const o = checkOptions(fn, opts, BACKWARD_OPTIONS);
  const c = checkCommon(fn, logits, targets, o);
  if (!(lse instanceof Float32Array))
    throw typeError(fn, 'lse', `a Float32Array of length rows (${c.z.rows}), as returned by crossEntropyForward`, lse);
  if (lse.length !== c.z.rows) throw rangeError(fn, 'lse', `of length rows (${c.z.rows})`, lse);

  if (c.reduction === 'sequenceMean') {
    return { c, lse, gradOutput: 1, rowGrad: sequenceMeanRowGrad(fn, c.seq!, o.gradOutput, c.z.rows), ...gradTarget(fn, o, c.z) };
  }
  const { gradOutput, rowGrad } = checkGradOutput(fn, o.gradOutput, c.reduction, c.z.rows);
  return { c, lse, gradOutput, rowGrad, ...gradTarget(fn, o, c.z) };
}

function backwardRequest(fn: string, p: BackwardPlan): NativeBackwardRequest {
  return { ...ceRequest(fn, p.c), lse: p.lse, gradOutput: p.gradOutput, gradOutputRows: p.rowGrad, gradDtype: dtypeCode(p.gradDtype), out: p.gradOut };
}

function backwardResult(p: BackwardPlan, data: Logits['data']): Logits {
  return { data, dtype: p.gradDtype, rows: p.c.z.rows, vocab: p.c.z.vocab };
}

/**
 * Gradient of the loss w.r.t. the logits from the forward's lse: (softmax(z) − onehot) · scale.
 * On the CPU it is bitwise the gradient of crossEntropyForward(…, { withGrad: true }) up to the
 * fused path's double-precision rescale (see the README). Device logits give a DeviceLogits.
 */
export function crossEntropyBackward(logits: DeviceLogits, targets: Int32Array | DeviceTargets, lse: Float32Array | DeviceVector, opts?: CrossEntropyBackwardOptions): DeviceLogits;
export function crossEntropyBackward<D extends DType, const O extends CrossEntropyBackwardOptions = {}>(logits: Logits<D>, targets: Int32Array | DeviceTargets, lse: Float32Array | DeviceVector, opts?: O): Logits<GradDtypeOf<O, D>>;
export function crossEntropyBackward(logits: Logits | DeviceLogits, targets: Int32Array | DeviceTargets, lse: Float32Array | DeviceVector, opts?: CrossEntropyBackwardOptions): Logits | DeviceLogits {
  const fn = 'crossEntropyBackward';
  const so = checkOptions(fn, opts, BACKWARD_OPTIONS);
  const where = cudaMode(fn, logits, targets, so, BACKWARD_OPTIONS) ?? (lse instanceof DeviceVector ? 'host' : null);
  if (where) return cudaBackward(fn, logits, targets, lse, so, where, false) as Logits | DeviceLogits;
  const p = planBackward(fn, logits, targets, lse, so);
  return backwardResult(p, native().crossEntropyBackward(backwardRequest(fn, p)).grad);
}

/** crossEntropyBackward off the main thread (the same contract as crossEntropyForwardAsync). */
export async function crossEntropyBackwardAsync(logits: DeviceLogits, targets: Int32Array | DeviceTargets, lse: Float32Array | DeviceVector, opts?: CrossEntropyBackwardOptions): Promise<DeviceLogits>;
export async function crossEntropyBackwardAsync<D extends DType, const O extends CrossEntropyBackwardOptions = {}>(logits: Logits<D>, targets: Int32Array | DeviceTargets, lse: Float32Array | DeviceVector, opts?: O): Promise<Logits<GradDtypeOf<O, D>>>;
export async function crossEntropyBackwardAsync(logits: Logits | DeviceLogits, targets: Int32Array | DeviceTargets, lse: Float32Array | DeviceVector, opts?: CrossEntropyBackwardOptions): Promise<Logits | DeviceLogits> {
  const fn = 'crossEntropyBackwardAsync';
  const so = checkOptions(fn, opts, BACKWARD_OPTIONS);
  const where = cudaMode(fn, logits, targets, so, BACKWARD_OPTIONS) ?? (lse instanceof DeviceVector ? 'host' : null);
  if (where) return cudaBackward(fn, logits, targets, lse, so, where, true);
  const p = planBackward(fn, logits, targets, lse, so);
  return backwardResult(p, (await native().crossEntropyBackward({ ...backwardRequest(fn, p), async: true })).grad);
}
