// Soft targets and distillation, KL divergence and entropy from logits: the user-facing functions
// over cpp/soft_cross_entropy.cpp. With x = z/T, p = softmax(x), q the target distribution:
//   softCrossEntropy  loss_i = F·Σ_j q_j·(lse_i − x_j) = −F·Σ_j q_j·log p_j      (F = T² with tSquared)
//                     dloss_i/dz_j = F·(Σ_j q_j · p_j − q_j)/T
//   KL forward        KL(q ‖ p) = Σ_j q_j·(log q_j − log p_j)      dKL/dz_j = (p_j − q_j)/T
//   KL reverse        KL(p ‖ q) = Σ_j p_j·(log p_j − log q_j)      dKL/dz_j = p_j·(log p_j − log q_j − KL)/T
//   entropy           H_i = −Σ_j p_j·log p_j (nats)
// q = softmax(u/T) from teacher/reference logits u, or the rows of a probability matrix
// (targetKind 'probs'). Reductions: 'mean' divides by the rows that count, 'sum' sums, 'none' keeps
// `losses` (and `loss` is their sum). A probability row that is all 0 counts nowhere.
import { type NativeEntropyForwardRequest, type NativeJsdRequest, type NativeSoftBackwardRequest, type NativeSoftForwardRequest, type NativeSoftResult, native } from './binding';
import { type DType, dtypeCode } from './dtype';
import { checkBoolean, checkFinite, checkOneOf, checkOptions, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';
import { REDUCTIONS, type Reduction, checkGradOutput, checkGradRequest, checkThreads, gradTarget, reductionCode } from './options';
import { type Device, type DeviceLogits, DeviceVector as DeviceVector_, type DeviceVector } from './cuda';
import { type CudaSoftResult, SOFT_KIND, type SoftCudaPlan, cudaSoftBackward, cudaSoftForward, softMode } from './soft_cuda';

export interface SoftCommonOptions {
  /** Softmax temperature T > 0 applied to the logits (and to teacher logits). Default 1. */
  temperature?: number;
  /** 'mean' (default): Σ losses / rows that count; 'sum'; 'none': per-row `losses`, `loss` their sum. */
  reduction?: Reduction;
  /** Threads for this call (≥ 1). Default: all cores. CPU only. */
  threads?: number;
  /**
   * Where a call with host arrays runs: 'auto', 'cpu' or 'cuda' (as crossEntropyForward's). Calls
   * with device tensors (cuda.upload) run on the GPU, and their results stay there.
   */
  device?: Device;
  /** GPU: the CUDA stream to queue the work on (a cudaStream_t as a bigint). */
  stream?: bigint;
}

export interface SoftGradOptions {
  /** Also compute the gradient w.r.t. logits in the same call. Default false. */
  withGrad?: boolean;
  /** dtype of the gradient. Default: the logits' dtype. */
  gradDtype?: DType;
  /** Upstream gradient d(objective)/d(loss). Default 1. */
  gradOutput?: number;
  /** Write the gradient here (same shape as logits). */
  out?: Logits;
  /** Write the gradient over logits.data. Default false. */
  inPlace?: boolean;
}

export interface SoftCrossEntropyOptions extends SoftCommonOptions, SoftGradOptions {
  /**
   * 'logits' (default): target holds teacher logits, q = softmax(target/T); 'probs': target rows
   * are q itself (f32, any finite q ≥ 0: rows need not sum to 1, as in torch; an all-zero row
   * counts nowhere).
   */
  targetKind?: 'logits' | 'probs';
  /** Multiply the loss (and gradient) by T², Hinton's distillation scaling. Default false. */
  tSquared?: boolean;
  /** With targetKind 'probs': label smoothing ε ∈ [0, 1], the target (1 − ε)·q + ε/V (torch's label_smoothing). */
  labelSmoothing?: number;
  /** With targetKind 'probs': class weights w (Float32Array(vocab), any finite numbers), loss_i = −Σ_j w_j·q̃_ij·log p_ij (torch's weight). */
  weight?: Float32Array;
}

export interface SoftCrossEntropyBackwardOptions extends SoftCommonOptions {
  targetKind?: 'logits' | 'probs';
  tSquared?: boolean;
  labelSmoothing?: number;
  weight?: Float32Array;
  /** Upstream gradient: a number, or per row (Float32Array of length rows) with reduction 'none'. Default 1. */
  gradOutput?: number | Float32Array;
  gradDtype?: DType;
  out?: Logits;
  inPlace?: boolean;
}

export interface KlDivergenceOptions extends SoftCommonOptions, SoftGradOptions {
  /** 'forward' (default): KL(ref ‖ model), distillation; 'reverse': KL(model ‖ ref), the RLHF penalty. */
  direction?: 'forward' | 'reverse';
}

export interface SoftResult {
  /** mean: Σ losses / count (0 when count is 0); sum and none: Σ losses. */
  loss: number;
  /** Per-row loss (fp32), 0 at rows that do not count. */
  losses: Float32Array;
  /** Per-row log-sum-exp of logits/T (fp32); feed it to softCrossEntropyBackward. */
  lse: Float32Array;
  /** Rows that count. */
  count: number;
  grad?: Logits;
}

export interface KlResult {
  loss: number;
  losses: Float32Array;
  count: number;
  grad?: Logits;
}

const COMMON = ['temperature', 'reduction', 'threads', 'device', 'stream'] as const;
const GRAD = ['withGrad', 'gradDtype', 'gradOutput', 'out', 'inPlace'] as const;
const PROBS = ['labelSmoothing', 'weight'] as const;
const SOFT_OPTIONS = [...COMMON, ...GRAD, 'targetKind', 'tSquared', ...PROBS] as const;
const SOFT_BACKWARD_OPTIONS = [...COMMON, 'targetKind', 'tSquared', 'gradOutput', 'gradDtype', 'out', 'inPlace', ...PROBS] as const;
const KL_OPTIONS = [...COMMON, ...GRAD, 'direction'] as const;
const ENTROPY_OPTIONS = ['temperature', 'threads', 'device', 'stream'] as const;

const OP = { soft: 0, klForward: 1, klReverse: 2 } as const;

type Which = 'soft' | 'softBackward' | 'kl' | 'entropy' | 'entropyForward' | 'jsd';

/**
 * The GPU plan of a soft-family call (ts/soft_cuda.ts), or null when it runs on the CPU. The
 * options are checked by the same rules as on the CPU.
 */
function gpuPlan(fn: string, logits: unknown, target: unknown, opts: unknown, which: Which) {
  const known = { soft: SOFT_OPTIONS, softBackward: SOFT_BACKWARD_OPTIONS, kl: KL_OPTIONS, entropy: ENTROPY_OPTIONS,
    entropyForward: ENTROPY_FORWARD_OPTIONS, jsd: JSD_OPTIONS }[which];
  const o = checkOptions(fn, opts, known) as Partial<Record<string, unknown>>;
  const mode = softMode(fn, logits, target, o);
  if (!mode) return null;
  if (o.threads !== undefined) checkThreads(fn, o.threads);
  const T = checkTemperature(fn, o.temperature);
  const vocab = (logits as { device?: string }).device === 'cuda' ? (logits as DeviceLogits).vocab : checkLogits(fn, 'logits', logits).vocab;
  const p: SoftCudaPlan = { kind: SOFT_KIND.soft, invTemperature: 1 / T, lossFactor: 1, probs: false };
  if (which === 'kl') {
    const dir = o.direction === undefined ? 'forward' : checkOneOf(fn, 'direction', o.direction, ['forward', 'reverse'] as const);
    p.kind = dir === 'forward' ? SOFT_KIND.klForward : SOFT_KIND.klReverse;
  } else if (which === 'soft' || which === 'softBackward') {
    p.probs = (o.targetKind === undefined ? 'logits' : checkOneOf(fn, 'targetKind', o.targetKind, ['logits', 'probs'] as const)) === 'probs';
    if (o.tSquared !== undefined && checkBoolean(fn, 'tSquared', o.tSquared)) p.lossFactor = T * T;
    Object.assign(p, probsOptions(fn, o, p.probs, vocab));
  } else if (which === 'entropy' || which === 'entropyForward') {
    p.kind = SOFT_KIND.entropy;
  } else {
    p.kind = SOFT_KIND.jsd;
    p.beta = checkFinite(fn, 'beta', o.beta ?? 0.5);
  }
  if (which === 'entropy') o.reduction = 'none';
  return { o, p, mode };
}

function checkTemperature(fn: string, v: unknown): number {
  if (v === undefined) return 1;
  const t = checkFinite(fn, 'temperature', v);
  if (!(t > 0)) throw rangeError(fn, 'temperature', 'a finite number > 0', t);
  return t;
}

/**
 * labelSmoothing and weight, torch's cross_entropy(z, q, weight=, label_smoothing=) on
 * probability targets: q̃_j = w_j·((1 − ε)·q_j + ε/V). Only with targetKind 'probs'.
 */
function probsOptions(fn: string, o: Partial<Record<string, unknown>>, probs: boolean, vocab: number): { labelSmoothing?: number; weight?: Float32Array } {
  const out: { labelSmoothing?: number; weight?: Float32Array } = {};
  for (const k of PROBS)
    if (o[k] !== undefined && !probs)
      throw typeError(fn, k, "undefined unless targetKind is 'probs'", o[k], 'Smoothing and class weights apply to probability targets; for teacher logits there is temperature');
  if (o.labelSmoothing !== undefined) {
    const e = checkFinite(fn, 'labelSmoothing', o.labelSmoothing);
    if (!(e >= 0 && e <= 1)) throw rangeError(fn, 'labelSmoothing', 'in [0, 1]', e);
    if (e > 0) out.labelSmoothing = e;
  }
  if (o.weight !== undefined) {
    if (!(o.weight instanceof Float32Array)) throw typeError(fn, 'weight', `a Float32Array of length vocab (${vocab})`, o.weight);
    if (o.weight.length !== vocab) throw rangeError(fn, 'weight', `of length vocab (${vocab})`, o.weight);
    out.weight = o.weight;
  }
  return out;
}

/** The shared native arguments (see ts/binding.ts SoftShared). */
function shared(fn: string, logits: unknown, target: unknown, o: Partial<Record<string, unknown>>, op: number, probs: boolean,
  tSquared: boolean, targetName: string) {
  const z = checkLogits(fn, 'logits', logits);
  const u = checkLogits(fn, targetName, target);
  if (u.rows !== z.rows || u.vocab !== z.vocab)
    throw rangeError(fn, targetName, `a [${z.rows}, ${z.vocab}] matrix like logits`, `[${u.rows}, ${u.vocab}]`);
  if (probs && u.dtype !== 'f32')
    throw typeError(fn, `${targetName}.dtype`, "'f32' with targetKind 'probs'", u.dtype, 'Probabilities are given in f32');
  const T = checkTemperature(fn, o.temperature);
  const reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS);
  const req: Omit<NativeSoftForwardRequest, 'withGrad' | 'gradDtype' | 'out' | 'gradOutput'> = {
    fn, logits: z.data, dtype: dtypeCode(z.dtype), rows: z.rows, vocab: z.vocab, target: u.data, targetDtype: probs ? -1 : dtypeCode(u.dtype),
    op, invTemperature: 1 / T, lossFactor: tSquared ? T * T : 1, reduction: reductionCode(reduction), threads: checkThreads(fn, o.threads),
    ...probsOptions(fn, o, probs, z.vocab),
  };
  return { z, reduction, req };
}

function planForward(fn: string, logits: unknown, target: unknown, opts: unknown, kl: boolean) {
  const o = checkOptions(fn, opts, kl ? KL_OPTIONS : SOFT_OPTIONS) as Partial<Record<string, unknown>>;
  let op: number = OP.soft;
  let probs = false;
  let tSquared = false;
  if (kl) {
    const dir = o.direction === undefined ? 'forward' : checkOneOf(fn, 'direction', o.direction, ['forward', 'reverse'] as const);
    op = dir === 'forward' ? OP.klForward : OP.klReverse;
  } else {
    probs = (o.targetKind === undefined ? 'logits' : checkOneOf(fn, 'targetKind', o.targetKind, ['logits', 'probs'] as const)) === 'probs';
    tSquared = o.tSquared === undefined ? false : checkBoolean(fn, 'tSquared', o.tSquared);
  }
  const s = shared(fn, logits, target, o, op, probs, tSquared, kl ? 'refLogits' : 'target');
  const { withGrad, gradOutput } = checkGradRequest(fn, o);
  const gt = gradTarget(fn, o, s.z);
  const req: NativeSoftForwardRequest = { ...s.req, withGrad, gradDtype: dtypeCode(gt.gradDtype), out: gt.gradOut, gradOutput };
  return { s, gt, req };
}

type Plan = ReturnType<typeof planForward>;
function softResult(p: Plan, r: NativeSoftResult): SoftResult {
  const out: SoftResult = { loss: r.loss, losses: r.losses, lse: r.lse, count: r.count };
  if (r.grad) out.grad = { data: r.grad, dtype: p.gt.gradDtype, rows: p.s.z.rows, vocab: p.s.z.vocab };
  return out;
}

function klResult(p: Plan, r: NativeSoftResult): KlResult {
  const { lse: _lse, ...rest } = softResult(p, r);
  return rest;
}

/**
 * Soft-target cross-entropy / distillation loss from logits [rows, vocab] and a target of the same
 * shape (teacher logits, or probabilities with targetKind 'probs').
 * @example
 *   const { loss, grad } = softCrossEntropyForward(student, teacher, { temperature: 2, tSquared: true, withGrad: true });
 */
export function softCrossEntropyForward(logits: DeviceLogits, target: Logits | DeviceLogits, opts?: SoftCrossEntropyOptions): CudaSoftResult;
export function softCrossEntropyForward(logits: Logits, target: Logits | DeviceLogits, opts?: SoftCrossEntropyOptions): SoftResult;
export function softCrossEntropyForward(logits: Logits | DeviceLogits, target: Logits | DeviceLogits, opts?: SoftCrossEntropyOptions): SoftResult | CudaSoftResult {
  const fn = 'softCrossEntropyForward';
  const g = gpuPlan(fn, logits, target, opts, 'soft');
  if (g) return cudaSoftForward(fn, logits, target, 'target', g.o, g.p, g.mode, false) as SoftResult | CudaSoftResult;
  const p = planForward(fn, logits, target, opts, false);
  return softResult(p, native().softForward(p.req));
}

/** softCrossEntropyForward off the main thread (the async contract of the README, "Memory safety"). */
export async function softCrossEntropyForwardAsync(logits: DeviceLogits, target: Logits | DeviceLogits, opts?: SoftCrossEntropyOptions): Promise<CudaSoftResult>;
export async function softCrossEntropyForwardAsync(logits: Logits, target: Logits | DeviceLogits, opts?: SoftCrossEntropyOptions): Promise<SoftResult>;
export async function softCrossEntropyForwardAsync(logits: Logits | DeviceLogits, target: Logits | DeviceLogits, opts?: SoftCrossEntropyOptions): Promise<SoftResult | CudaSoftResult> {
  const fn = 'softCrossEntropyForwardAsync';
  const g = gpuPlan(fn, logits, target, opts, 'soft');
  if (g) return cudaSoftForward(fn, logits, target, 'target', g.o, g.p, g.mode, true) as Promise<SoftResult | CudaSoftResult>;
  const p = planForward(fn, logits, target, opts, false);
  return softResult(p, await native().softForward({ ...p.req, async: true }));
}

function planBackward(fn: string, logits: unknown, target: unknown, lse: unknown, opts: unknown) {
  const o = checkOptions(fn, opts, SOFT_BACKWARD_OPTIONS) as Partial<Record<string, unknown>>;
  const probs = (o.targetKind === undefined ? 'logits' : checkOneOf(fn, 'targetKind', o.targetKind, ['logits', 'probs'] as const)) === 'probs';
  const tSquared = o.tSquared === undefined ? false : checkBoolean(fn, 'tSquared', o.tSquared);
  const s = shared(fn, logits, target, o, OP.soft, probs, tSquared, 'target');
  if (!(lse instanceof Float32Array))
    throw typeError(fn, 'lse', `a Float32Array of length rows (${s.z.rows}), as returned by softCrossEntropyForward`, lse);
  if (lse.length !== s.z.rows) throw rangeError(fn, 'lse', `of length rows (${s.z.rows})`, lse);
  const { gradOutput, rowGrad } = checkGradOutput(fn, o.gradOutput, s.reduction, s.z.rows);
  const gt = gradTarget(fn, o, s.z);
  const req: NativeSoftBackwardRequest = { ...s.req, lse, gradOutput, gradOutputRows: rowGrad, gradDtype: dtypeCode(gt.gradDtype), out: gt.gradOut };
  return { s, gt, req };
}

/** Gradient of the soft cross-entropy w.r.t. logits from the forward's fp32 lse (the fused forward's gradient to rounding: that one works from its pass's exps and the double lse). */
export function softCrossEntropyBackward(logits: DeviceLogits, target: Logits | DeviceLogits, lse: Float32Array | DeviceVector, opts?: SoftCrossEntropyBackwardOptions): DeviceLogits;
export function softCrossEntropyBackward(logits: Logits, target: Logits | DeviceLogits, lse: Float32Array | DeviceVector, opts?: SoftCrossEntropyBackwardOptions): Logits;
export function softCrossEntropyBackward(logits: Logits | DeviceLogits, target: Logits | DeviceLogits, lse: Float32Array | DeviceVector, opts?: SoftCrossEntropyBackwardOptions): Logits | DeviceLogits {
  const fn = 'softCrossEntropyBackward';
  const g = gpuPlan(fn, logits, target, opts, 'softBackward') ?? (lse instanceof DeviceVector_ ? gpuPlan(fn, logits, target, { ...(opts ?? {}), device: 'cuda' }, 'softBackward') : null);
  if (g) return cudaSoftBackward(fn, logits, target, lse, g.o, g.p, g.mode, false) as Logits | DeviceLogits;
  const p = planBackward(fn, logits, target, lse, opts);
  return { data: native().softBackward(p.req).grad, dtype: p.gt.gradDtype, rows: p.s.z.rows, vocab: p.s.z.vocab };
}

/** softCrossEntropyBackward off the main thread. */
export async function softCrossEntropyBackwardAsync(logits: DeviceLogits, target: Logits | DeviceLogits, lse: Float32Array | DeviceVector, opts?: SoftCrossEntropyBackwardOptions): Promise<DeviceLogits>;
export async function softCrossEntropyBackwardAsync(logits: Logits, target: Logits | DeviceLogits, lse: Float32Array | DeviceVector, opts?: SoftCrossEntropyBackwardOptions): Promise<Logits>;
export async function softCrossEntropyBackwardAsync(logits: Logits | DeviceLogits, target: Logits | DeviceLogits, lse: Float32Array | DeviceVector, opts?: SoftCrossEntropyBackwardOptions): Promise<Logits | DeviceLogits> {
  const fn = 'softCrossEntropyBackwardAsync';
  const g = gpuPlan(fn, logits, target, opts, 'softBackward') ?? (lse instanceof DeviceVector_ ? gpuPlan(fn, logits, target, { ...(opts ?? {}), device: 'cuda' }, 'softBackward') : null);
  if (g) return cudaSoftBackward(fn, logits, target, lse, g.o, g.p, g.mode, true) as Promise<Logits | DeviceLogits>;
  const p = planBackward(fn, logits, target, lse, opts);
  return { data: (await native().softBackward({ ...p.req, async: true })).grad, dtype: p.gt.gradDtype, rows: p.s.z.rows, vocab: p.s.z.vocab };
}

/**
 * KL divergence between the trained model (logits) and a fixed reference (refLogits), both
 * [rows, vocab], at temperature T. direction 'forward' = KL(ref ‖ model), 'reverse' = KL(model ‖ ref).
 * @example
 *   const { loss, grad } = klDivergenceForward(policy, reference, { direction: 'reverse', withGrad: true });
 */
export function klDivergenceForward(logits: DeviceLogits, refLogits: Logits | DeviceLogits, opts?: KlDivergenceOptions): CudaKlResult;
export function klDivergenceForward(logits: Logits, refLogits: Logits | DeviceLogits, opts?: KlDivergenceOptions): KlResult;
export function klDivergenceForward(logits: Logits | DeviceLogits, refLogits: Logits | DeviceLogits, opts?: KlDivergenceOptions): KlResult | CudaKlResult {
  const fn = 'klDivergenceForward';
  const g = gpuPlan(fn, logits, refLogits, opts, 'kl');
  if (g) return klOfSoft(cudaSoftForward(fn, logits, refLogits, 'refLogits', g.o, g.p, g.mode, false) as SoftResult | CudaSoftResult);
  const p = planForward(fn, logits, refLogits, opts, true);
  return klResult(p, native().softForward(p.req));
}

/** klDivergenceForward off the main thread. */
export async function klDivergenceForwardAsync(logits: DeviceLogits, refLogits: Logits | DeviceLogits, opts?: KlDivergenceOptions): Promise<CudaKlResult>;
export async function klDivergenceForwardAsync(logits: Logits, refLogits: Logits | DeviceLogits, opts?: KlDivergenceOptions): Promise<KlResult>;
export async function klDivergenceForwardAsync(logits: Logits | DeviceLogits, refLogits: Logits | DeviceLogits, opts?: KlDivergenceOptions): Promise<KlResult | CudaKlResult> {
  const fn = 'klDivergenceForwardAsync';
  const g = gpuPlan(fn, logits, refLogits, opts, 'kl');
  if (g) return klOfSoft(await (cudaSoftForward(fn, logits, refLogits, 'refLogits', g.o, g.p, g.mode, true) as Promise<SoftResult | CudaSoftResult>));
  const p = planForward(fn, logits, refLogits, opts, true);
  return klResult(p, await native().softForward({ ...p.req, async: true }));
}

function planEntropy(fn: string, logits: unknown, opts: unknown) {
  const o = checkOptions(fn, opts, ENTROPY_OPTIONS);
  const z = checkLogits(fn, 'logits', logits);
  return { fn, logits: z.data, dtype: dtypeCode(z.dtype), rows: z.rows, vocab: z.vocab, invTemperature: 1 / checkTemperature(fn, o.temperature),
    threads: checkThreads(fn, o.threads) };
}

/** Entropy of softmax(logits/T) per row, in nats: Float32Array(rows). */
export function entropy(logits: DeviceLogits, opts?: EntropyOptions): DeviceVector;
export function entropy(logits: Logits, opts?: EntropyOptions): Float32Array;
export function entropy(logits: Logits | DeviceLogits, opts?: EntropyOptions): Float32Array | DeviceVector {
  const g = gpuPlan('entropy', logits, null, opts, 'entropy');
  if (g) return entropyOfSoft(cudaSoftForward('entropy', logits, null, '', g.o, g.p, g.mode, false) as SoftResult | CudaSoftResult);
  return native().entropy(planEntropy('entropy', logits, opts)).entropy;
}

/** entropy off the main thread. */
export async function entropyAsync(logits: DeviceLogits, opts?: EntropyOptions): Promise<DeviceVector>;
export async function entropyAsync(logits: Logits, opts?: EntropyOptions): Promise<Float32Array>;
export async function entropyAsync(logits: Logits | DeviceLogits, opts?: EntropyOptions): Promise<Float32Array | DeviceVector> {
  const g = gpuPlan('entropyAsync', logits, null, opts, 'entropy');
  if (g) return entropyOfSoft(await (cudaSoftForward('entropyAsync', logits, null, '', g.o, g.p, g.mode, true) as Promise<SoftResult | CudaSoftResult>));
  return (await native().entropy({ ...planEntropy('entropyAsync', logits, opts), async: true })).entropy;
}

// ---- entropy as a loss, with its gradient ----------------------------------------------------
//   losses_i = H(softmax(z_i/T)) = −Σ_j p_j·log p_j (nats),   dH/dz_j = −p_j·(log p_j + H)/T
// (an entropy bonus in RL subtracts it, with gradOutput −c). Every row counts.

export interface EntropyForwardOptions extends SoftCommonOptions, SoftGradOptions {}

export interface EntropyResult {
  /** mean: Σ losses / rows; sum and none: Σ losses. */
  loss: number;
  /** Per-row entropy in nats (fp32). */
  losses: Float32Array;
  /** Per-row log-sum-exp of logits/T (fp32). */
  lse: Float32Array;
  /** Rows (all count). */
  count: number;
  grad?: Logits;
}

const ENTROPY_FORWARD_OPTIONS = [...COMMON, ...GRAD] as const;

function planEntropyForward(fn: string, logits: unknown, opts: unknown) {
  const o = checkOptions(fn, opts, ENTROPY_FORWARD_OPTIONS);
  const z = checkLogits(fn, 'logits', logits);
  const reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS);
  const { withGrad, gradOutput } = checkGradRequest(fn, o);
  const gt = gradTarget(fn, o, z);
  const req: NativeEntropyForwardRequest = {
    fn, logits: z.data, dtype: dtypeCode(z.dtype), rows: z.rows, vocab: z.vocab, invTemperature: 1 / checkTemperature(fn, o.temperature),
    reduction: reductionCode(reduction), threads: checkThreads(fn, o.threads), withGrad, gradDtype: dtypeCode(gt.gradDtype), out: gt.gradOut, gradOutput,
  };
  return { z, gt, req };
}

function entropyResult(p: ReturnType<typeof planEntropyForward>, r: NativeSoftResult): EntropyResult {
  const out: EntropyResult = { loss: r.loss, losses: r.losses, lse: r.lse, count: r.count };
  if (r.grad) out.grad = { data: r.grad, dtype: p.gt.gradDtype, rows: p.z.rows, vocab: p.z.vocab };
  return out;
}

/**
 * The entropy of softmax(logits/T) as a loss, with its gradient w.r.t. the logits (an entropy
 * bonus or penalty). `entropy()` stays the plain per-row values.
 * @example
 *   const { loss, grad } = entropyForward(policyLogits, { withGrad: true, gradOutput: -0.01 });  // −0.01·H
 */
export function entropyForward(logits: DeviceLogits, opts?: EntropyForwardOptions): CudaSoftResult;
export function entropyForward(logits: Logits, opts?: EntropyForwardOptions): EntropyResult;
export function entropyForward(logits: Logits | DeviceLogits, opts?: EntropyForwardOptions): EntropyResult | CudaSoftResult {
  const g = gpuPlan('entropyForward', logits, null, opts, 'entropyForward');
  if (g) return cudaSoftForward('entropyForward', logits, null, '', g.o, g.p, g.mode, false) as EntropyResult | CudaSoftResult;
  const p = planEntropyForward('entropyForward', logits, opts);
  return entropyResult(p, native().entropyForward(p.req));
}

/** entropyForward off the main thread. */
export async function entropyForwardAsync(logits: DeviceLogits, opts?: EntropyForwardOptions): Promise<CudaSoftResult>;
export async function entropyForwardAsync(logits: Logits, opts?: EntropyForwardOptions): Promise<EntropyResult>;
export async function entropyForwardAsync(logits: Logits | DeviceLogits, opts?: EntropyForwardOptions): Promise<EntropyResult | CudaSoftResult> {
  const g = gpuPlan('entropyForwardAsync', logits, null, opts, 'entropyForward');
  if (g) return cudaSoftForward('entropyForwardAsync', logits, null, '', g.o, g.p, g.mode, true) as Promise<EntropyResult | CudaSoftResult>;
  const p = planEntropyForward('entropyForwardAsync', logits, opts);
  return entropyResult(p, await native().entropyForward({ ...p.req, async: true }));
}

// ---- the generalized Jensen–Shannon divergence ---------------------------------------------
//   p = softmax(ref/T), q = softmax(z/T), m = β·p + (1 − β)·q
//   loss_i = β·KL(p ‖ m) + (1 − β)·KL(q ‖ m),   dloss/dz_j = (1 − β)·q_j·(log(q_j/m_j) − KL(q ‖ m))/T
// The formula is 0 at β = 0 and β = 1 (m is then q or p); as in Liger-Kernel those two values
// stand for the limits' KL divergences instead: β = 0 is KL(p ‖ q) (forward, distillation) and
// β = 1 is KL(q ‖ p) (reverse), computed by klDivergenceForward. β = 0.5 is the symmetric JSD.

export interface JsDivergenceOptions extends SoftCommonOptions, SoftGradOptions {
  /** β ∈ [0, 1]: the reference's weight in the mixture. Default 0.5. */
  beta?: number;
}

const JSD_OPTIONS = [...COMMON, ...GRAD, 'beta'] as const;

function planJsd(fn: string, logits: unknown, refLogits: unknown, opts: unknown) {
  const o = checkOptions(fn, opts, JSD_OPTIONS);
  const beta = o.beta === undefined ? 0.5 : checkFinite(fn, 'beta', o.beta);
  if (!(beta >= 0 && beta <= 1)) throw rangeError(fn, 'beta', 'in [0, 1]', beta);
  const { beta: _b, ...rest } = o;
  if (beta === 0 || beta === 1) return { kl: { direction: beta === 0 ? ('forward' as const) : ('reverse' as const), ...rest } };
  const z = checkLogits(fn, 'logits', logits);
  const u = checkLogits(fn, 'refLogits', refLogits);
  if (u.rows !== z.rows || u.vocab !== z.vocab)
    throw rangeError(fn, 'refLogits', `a [${z.rows}, ${z.vocab}] matrix like logits`, `[${u.rows}, ${u.vocab}]`);
  const reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS);
  const { withGrad, gradOutput } = checkGradRequest(fn, o);
  const gt = gradTarget(fn, o, z);
  const req: NativeJsdRequest = {
    fn, logits: z.data, dtype: dtypeCode(z.dtype), rows: z.rows, vocab: z.vocab, target: u.data, targetDtype: dtypeCode(u.dtype), beta,
    invTemperature: 1 / checkTemperature(fn, o.temperature), reduction: reductionCode(reduction), threads: checkThreads(fn, o.threads),
    withGrad, gradDtype: dtypeCode(gt.gradDtype), out: gt.gradOut, gradOutput,
  };
  return { z, gt, req };
}

function jsdResult(p: { z: Logits; gt: { gradDtype: DType } }, r: NativeSoftResult): KlResult {
  const out: KlResult = { loss: r.loss, losses: r.losses, count: r.count };
  if (r.grad) out.grad = { data: r.grad, dtype: p.gt.gradDtype, rows: p.z.rows, vocab: p.z.vocab };
  return out;
}

/**
 * The generalized Jensen–Shannon divergence between the model (logits) and a reference
 * (refLogits), both [rows, vocab], at temperature T; the gradient is w.r.t. logits.
 * @example
 *   const { loss, grad } = jsDivergenceForward(student, teacher, { beta: 0.5, withGrad: true });
 */
export function jsDivergenceForward(logits: DeviceLogits, refLogits: Logits | DeviceLogits, opts?: JsDivergenceOptions): CudaKlResult;
export function jsDivergenceForward(logits: Logits, refLogits: Logits | DeviceLogits, opts?: JsDivergenceOptions): KlResult;
export function jsDivergenceForward(logits: Logits | DeviceLogits, refLogits: Logits | DeviceLogits, opts?: JsDivergenceOptions): KlResult | CudaKlResult {
  const fn = 'jsDivergenceForward';
  const lim = jsdLimit(fn, opts);
  if (lim) return klDivergenceForward(logits as Logits, refLogits, lim);
  const g = gpuPlan(fn, logits, refLogits, opts, 'jsd');
  if (g) return klOfSoft(cudaSoftForward(fn, logits, refLogits, 'refLogits', g.o, g.p, g.mode, false) as SoftResult | CudaSoftResult);
  const p = planJsd(fn, logits, refLogits, opts);
  if ('kl' in p) return klDivergenceForward(logits as Logits, refLogits, p.kl as KlDivergenceOptions);
  return jsdResult(p, native().jsdForward(p.req));
}

/** jsDivergenceForward off the main thread. */
export async function jsDivergenceForwardAsync(logits: DeviceLogits, refLogits: Logits | DeviceLogits, opts?: JsDivergenceOptions): Promise<CudaKlResult>;
export async function jsDivergenceForwardAsync(logits: Logits, refLogits: Logits | DeviceLogits, opts?: JsDivergenceOptions): Promise<KlResult>;
export async function jsDivergenceForwardAsync(logits: Logits | DeviceLogits, refLogits: Logits | DeviceLogits, opts?: JsDivergenceOptions): Promise<KlResult | CudaKlResult> {
  const fn = 'jsDivergenceForwardAsync';
  const lim = jsdLimit(fn, opts);
  if (lim) return klDivergenceForwardAsync(logits as Logits, refLogits, lim);
  const g = gpuPlan(fn, logits, refLogits, opts, 'jsd');
  if (g) return klOfSoft(await (cudaSoftForward(fn, logits, refLogits, 'refLogits', g.o, g.p, g.mode, true) as Promise<SoftResult | CudaSoftResult>));
  const p = planJsd(fn, logits, refLogits, opts);
  if ('kl' in p) return klDivergenceForwardAsync(logits as Logits, refLogits, p.kl as KlDivergenceOptions);
  return jsdResult(p, await native().jsdForward({ ...p.req, async: true }));
}

// ---- the GPU results' shapes ----

/** KL and JSD results with device logits (the soft result without lse). */
export interface CudaKlResult {
  loss: number;
  losses: DeviceVector;
  count: number;
  grad?: DeviceLogits;
}

export interface EntropyOptions {
  temperature?: number;
  threads?: number;
  device?: Device;
  stream?: bigint;
}

function klOfSoft(r: SoftResult | CudaSoftResult): KlResult | CudaKlResult {
  const { lse, ...rest } = r;
  if (typeof (lse as { dispose?: unknown }).dispose === 'function') (lse as DeviceVector).dispose();
  return rest as KlResult | CudaKlResult;
}

function entropyOfSoft(r: SoftResult | CudaSoftResult): Float32Array | DeviceVector {
  if (typeof (r.lse as { dispose?: unknown }).dispose === 'function') (r.lse as DeviceVector).dispose();
  return r.losses;
}

/** β = 0 and β = 1 stand for the KL limits (see above): the KL call's options, or null. */
function jsdLimit(fn: string, opts: unknown): KlDivergenceOptions | null {
  const o = checkOptions(fn, opts, JSD_OPTIONS);
  const beta = o.beta === undefined ? 0.5 : checkFinite(fn, 'beta', o.beta);
  if (!(beta >= 0 && beta <= 1)) throw rangeError(fn, 'beta', 'in [0, 1]', beta);
  if (beta !== 0 && beta !== 1) return null;
  const { beta: _b, ...rest } = o;
  return { direction: beta === 0 ? 'forward' : 'reverse', ...rest } as KlDivergenceOptions;
}
