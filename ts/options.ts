// The option and validation helpers every op shares (cross-entropy, soft targets, KL, BCE, the
// CUDA path): reductions, threads, the gradient request (withGrad, gradOutput, out, inPlace,
// gradDtype). Each throws TypeError / RangeError naming the function and the argument.
import { availableParallelism } from 'node:os';
import { type DType, DTYPES } from './dtype';
import { checkBoolean, checkFinite, checkInteger, checkOneOf, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';
import { DeviceVector } from './cuda';
import type { NativeCeOptions } from './binding';

export type Reduction = 'mean' | 'sum' | 'none';
export const REDUCTIONS: readonly Reduction[] = ['mean', 'sum', 'none'];
/** Cross-entropy's reductions: the shared three, and 'sequenceMean' (with sequenceIds). */
export type CeReduction = Reduction | 'sequenceMean';
export const CE_REDUCTIONS: readonly CeReduction[] = [...REDUCTIONS, 'sequenceMean'];


export function checkGradDtype(fn: string, v: unknown, fallback: DType): DType {
  return v === undefined ? fallback : checkOneOf(fn, 'gradDtype', v, DTYPES);
}

export function reductionCode(r: Reduction): number {
  return r === 'mean' ? 0 : r === 'sum' ? 1 : 2;
}

/** The threads option: an integer in [1, 65536], default all cores. */
export function checkThreads(fn: string, v: unknown): number {
  return v === undefined ? availableParallelism() : checkInteger(fn, 'threads', v, 1, 65536);
}

/** A forward's gradient request: withGrad and gradOutput, and inPlace / out only with withGrad. */
export function checkGradRequest(fn: string, o: Partial<Record<string, unknown>>): { withGrad: boolean; gradOutput: number } {
  const withGrad = o.withGrad === undefined ? false : checkBoolean(fn, 'withGrad', o.withGrad);
  const gradOutput = o.gradOutput === undefined ? 1 : checkFinite(fn, 'gradOutput', o.gradOutput);
  if (!withGrad && o.inPlace) throw rangeError(fn, 'inPlace', 'false unless withGrad is true', o.inPlace);
  if (!withGrad && o.out !== undefined) throw typeError(fn, 'out', 'undefined unless withGrad is true', o.out);
  return { withGrad, gradOutput };
}

/**
 * A backward's gradOutput: a finite number (default 1), or per row (a Float32Array, or with
 * `device` a DeviceVector, of length rows) with reduction 'none'.
 */
export function checkGradOutput<R extends Float32Array | DeviceVector = Float32Array>(fn: string, v: unknown, reduction: Reduction,
  rows: number, device = false): { gradOutput: number; rowGrad: R | null } {
  if (v instanceof Float32Array || (device && v instanceof DeviceVector)) {
    if (reduction !== 'none')
      throw typeError(fn, 'gradOutput', `a number with reduction '${reduction}' (per-row gradOutput needs reduction 'none')`, v);
    if (v.length !== rows) throw rangeError(fn, 'gradOutput', `of length rows (${rows})`, v);
    return { gradOutput: 1, rowGrad: v as R };
  }
  if (v === undefined) return { gradOutput: 1, rowGrad: null };
  if (typeof v !== 'number')
    throw typeError(fn, 'gradOutput', "a finite number, or a Float32Array of length rows with reduction 'none'", v);
  return { gradOutput: checkFinite(fn, 'gradOutput', v), rowGrad: null };
}

/**
 * Where the gradient goes, from the options gradDtype, out and inPlace: a new array (gradOut
 * null), the given `out` (its dtype decides), or logits.data itself (inPlace).
 */
export function gradTarget(fn: string, o: Partial<Record<string, unknown>>, z: Logits): { gradDtype: DType; gradOut: Logits['data'] | null } {
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


/** The options of crossEntropyForward / crossEntropyBackward (unknown keys are a TypeError). */
export const LOSS_OPTIONS = ['labelSmoothing', 'weight', 'zLoss', 'softcap', 'logitScale', 'focalGamma'] as const;
export const FORWARD_OPTIONS = ['reduction', 'ignoreIndex', 'threads', 'withGrad', 'gradDtype', 'inPlace', 'out', 'gradOutput', 'device', ...LOSS_OPTIONS, 'stats', 'eceBins', 'characters', 'bytes', 'sequenceIds', 'stream', 'lossOnDevice'] as const;
export const BACKWARD_OPTIONS = ['reduction', 'ignoreIndex', 'threads', 'gradOutput', 'gradDtype', 'out', 'inPlace', 'device', ...LOSS_OPTIONS, 'sequenceIds', 'stream'] as const;


/** The loss options (labelSmoothing, weight, zLoss, softcap, logitScale), checked; null when none is set. */
export function checkLossOptions(fn: string, o: Partial<Record<string, unknown>>, vocab: number): NativeCeOptions | null {
  if (LOSS_OPTIONS.every((k) => o[k] === undefined)) return null;
  const inRange = (k: string, lo: number, hi: number, fallback: number, loOpen = false): number => {
    if (o[k] === undefined) return fallback;
    const v = checkFinite(fn, k, o[k]);
    if (v < lo || v > hi || (loOpen && v === lo))
      throw rangeError(fn, k, `a finite number in ${loOpen ? '(' : '['}${lo}, ${hi === Infinity ? '∞)' : hi + ']'}`, v);
    return v;
  };
  let weight: Float32Array | null = null;
  if (o.weight !== undefined) {
    if (!(o.weight instanceof Float32Array))
      throw typeError(fn, 'weight', `a Float32Array of length vocab (${vocab})`, o.weight, 'Convert with Float32Array.from(weights)');
    if (o.weight.length !== vocab) throw rangeError(fn, 'weight', `of length vocab (${vocab})`, o.weight);
    weight = o.weight;
  }
  return {
    labelSmoothing: inRange('labelSmoothing', 0, 1, 0),
    weight,
    zLoss: inRange('zLoss', 0, Infinity, 0),
    logitScale: o.logitScale === undefined ? 1 : checkFinite(fn, 'logitScale', o.logitScale),
    softcap: inRange('softcap', 0, Infinity, 0, true),
    ...focalGamma(fn, o),
  };
}

/** focalGamma γ ≥ 0; with labelSmoothing or zLoss it is a TypeError (no agreed semantics). γ = 0 is plain CE. */
function focalGamma(fn: string, o: Partial<Record<string, unknown>>): { focalGamma?: number } {
  if (o.focalGamma === undefined) return {};
  const g = checkFinite(fn, 'focalGamma', o.focalGamma);
  if (!(g >= 0)) throw rangeError(fn, 'focalGamma', 'a finite number ≥ 0', g);
  if (g > 0)
    for (const k of ['labelSmoothing', 'zLoss'] as const)
      if (o[k] !== undefined && o[k] !== 0)
        throw typeError(fn, k, 'undefined (or 0) with focalGamma', o[k], 'The focal loss has no agreed semantics with label smoothing or a z-loss: use one or the other');
  return g > 0 ? { focalGamma: g } : {};
}
