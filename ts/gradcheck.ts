// Gradient verification by central finite differences, for our ops and for a user's own
// composition of them:
//   numeric_i = (f(x + h·e_i) − f(x − h·e_i)) / Δ_i,   Δ_i = (x_i + h) − (x_i − h) as actually stored
// The perturbation is taken in float64; with precision 'f32' (the default for a Float32Array
// input) the perturbed value is rounded to f32 first and Δ_i is the difference of the rounded
// values, so the rounding of x ± h never enters the quotient. An element passes when
// |analytic − numeric| ≤ atol + rtol·|numeric|.
import { type DType, bf16, f16 } from './dtype';
import { checkFinite, checkInteger, checkOneOf, checkOptions, rangeError, typeError } from './errors';
import { type Logits, logits as makeLogits } from './logits';
import { crossEntropyForward } from './cross_entropy';
import { klDivergenceForward, softCrossEntropyForward } from './soft_cross_entropy';
import { binaryCrossEntropyWithLogits } from './binary_cross_entropy';

export interface GradcheckOptions {
  /** Step h. Default 1e-2 for precision 'f32' (the f32 kernels' sums carry ~1e-7 relative noise), 1e-6 for 'f64'. */
  eps?: number;
  /** Absolute tolerance. Default 1e-5. */
  atol?: number;
  /** Relative tolerance. Default 1e-2 for 'f32', 1e-6 for 'f64'. */
  rtol?: number;
  /** Elements to check. Default: all when there are at most `samples`, else the samples/2 largest |analytic| and samples/2 others, chosen by `seed`. */
  indices?: readonly number[];
  samples?: number;
  seed?: number;
  /**
   * How fn stores its input: 'f32' rounds each perturbed value to f32 (and takes the f32 step and
   * tolerances). Default: 'f32' for a Float32Array input; for any other input (Float64Array,
   * number[]) it is detected: when moving an element by less than half an f32 ulp leaves fn's loss
   * bitwise unchanged, fn computes in f32 (as every fusedce op does), else in float64. The report
   * says which was used and why.
   */
  precision?: 'f32' | 'f64';
}

export interface GradcheckElement {
  index: number;
  analytic: number;
  numeric: number;
  absError: number;
  relError: number;
}

export interface GradcheckReport {
  ok: boolean;
  checked: number;
  failed: number;
  maxAbsError: number;
  maxRelError: number;
  /** The element furthest outside (or least inside) its tolerance. */
  worst: GradcheckElement;
  /** max over elements of |analytic − numeric| / (atol + rtol·|numeric|): ok is exactly maxErrorRatio ≤ 1. */
  maxErrorRatio: number;
  /** The precision the differences were taken in, and why ('given', a Float32Array input, or what detection saw). */
  precision: 'f32' | 'f64';
  precisionReason: string;
  eps: number;
  atol: number;
  rtol: number;
}

/** What fn returns: the scalar objective, and (at the unperturbed input) its gradient w.r.t. the input. */
export type GradcheckFn = (x: Float64Array) => { loss: number; grad?: ArrayLike<number> | Logits };

function gradValues(g: ArrayLike<number> | Logits): ArrayLike<number> {
  if (g && typeof g === 'object' && 'dtype' in g && 'data' in g) {
    const l = g as Logits;
    if (l.dtype === 'f32') return l.data as Float32Array;
    return l.dtype === 'bf16' ? bf16.toFloat32(l.data as Uint16Array) : f16.toFloat32(l.data as Uint16Array);
  }
  return g as ArrayLike<number>;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Whether fn computes in f32: at up to three elements of largest |gradient|, x_i is set to an f32
 * value v and then to v + ulp_f32(v)/16, which rounds back to v in f32. An f32 computation gives
 * the bitwise same loss at both; a float64 one moves by about gradient·ulp/16, far above the
 * loss's float64 ulp. One unchanged probe is enough to choose 'f32': its larger step is harmless
 * for a float64 fn (the differences use the rounded points exactly), while float64's 1e-6 step
 * on an f32 fn measures rounding noise.
 */
function detectPrecision(fn: GradcheckFn, x: Float64Array, g: ArrayLike<number>): { precision: 'f32' | 'f64'; reason: string } {
  const order = Array.from({ length: x.length }, (_, i) => i).filter((i) => Number.isFinite(x[i]!) && Number(g[i]) !== 0)
    .sort((a, b) => Math.abs(Number(g[b])) - Math.abs(Number(g[a]))).slice(0, 3);
  for (const i of order) {
    const v = Math.fround(x[i]!);
    const ulp = v === 0 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(Math.abs(v))) - 23);
    const xp = x.slice();
    xp[i] = v;
    const a = fn(xp).loss;
    xp[i] = v + ulp / 16;
    const b = fn(xp).loss;
    if (a === b)
      return { precision: 'f32', reason: `detected: moving x[${i}] by 1/16 of an f32 ulp left the loss bitwise unchanged, so fn computes in f32` };
  }
  if (order.length === 0) return { precision: 'f32', reason: 'detected: the gradient is 0 everywhere, nothing to probe (f32, the safer step)' };
  return { precision: 'f64', reason: `detected: the loss follows perturbations below f32 resolution at ${order.length} element(s), so fn computes in float64` };
}

/**
 * Checks fn's analytic gradient against central differences around `input`.
 * @example
 *   const r = gradcheck((x) => {
 *     const z = logits(Float32Array.from(x), rows, vocab);
 *     const { loss, grad } = crossEntropyForward(z, targets, { withGrad: true, reduction: 'sum' });
 *     return { loss, grad };
 *   }, x0);
 *   if (!r.ok) console.log(r.worst);
 */
export function gradcheck(fn: GradcheckFn, input: ArrayLike<number>, opts?: GradcheckOptions): GradcheckReport {
  const name = 'gradcheck';
  if (typeof fn !== 'function') throw typeError(name, 'fn', 'a function (x: Float64Array) => { loss, grad }', fn);
  if (!ArrayBuffer.isView(input) && !Array.isArray(input)) throw typeError(name, 'inputs', 'a Float32Array, Float64Array or number[]', input);
  const o = checkOptions(name, opts, ['eps', 'atol', 'rtol', 'indices', 'samples', 'seed', 'precision'] as const);
  const positive = (k: 'eps' | 'atol' | 'rtol', fallback: number) => {
    if (o[k] === undefined) return fallback;
    const v = checkFinite(name, k, o[k]);
    if (!(v >= 0) || (k === 'eps' && v === 0)) throw rangeError(name, k, k === 'eps' ? 'a finite number > 0' : 'a finite number ≥ 0', v);
    return v;
  };
  if (o.precision !== undefined) checkOneOf(name, 'precision', o.precision, ['f32', 'f64'] as const);
  const x = Float64Array.from(input as ArrayLike<number>);
  const n = x.length;
  if (n === 0) throw rangeError(name, 'inputs', 'non-empty', input);
  const base = fn(x.slice());
  if (!base || typeof base.loss !== 'number' || base.grad === undefined)
    throw typeError(name, 'fn', 'a function returning { loss: number, grad } at the input', base);
  const g = gradValues(base.grad);
  if (g.length !== n) throw rangeError(name, 'fn().grad', `of length inputs.length (${n})`, g);
  const { precision, reason: precisionReason } = o.precision !== undefined
    ? { precision: o.precision as 'f32' | 'f64', reason: 'given (the precision option)' }
    : input instanceof Float32Array ? { precision: 'f32' as const, reason: 'the input is a Float32Array' } : detectPrecision(fn, x, g);
  const eps = positive('eps', precision === 'f32' ? 1e-2 : 1e-6);
  const atol = positive('atol', 1e-5);
  const rtol = positive('rtol', precision === 'f32' ? 1e-2 : 1e-6);

  let indices: number[];
  if (o.indices !== undefined) {
    if (!Array.isArray(o.indices)) throw typeError(name, 'indices', 'an array of element indices', o.indices);
    indices = (o.indices as unknown[]).map((i) => checkInteger(name, 'indices[…]', i, 0, n - 1));
  } else {
    const samples = o.samples === undefined ? 32 : checkInteger(name, 'samples', o.samples, 1, 1e7);
    if (n <= samples) {
      indices = Array.from({ length: n }, (_, i) => i);
    } else {
      const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => Math.abs(g[b]!) - Math.abs(g[a]!));
      const chosen = new Set(order.slice(0, Math.ceil(samples / 2)));
      const r = mulberry32(o.seed === undefined ? 1234 : checkInteger(name, 'seed', o.seed, 0, 2 ** 32 - 1));
      while (chosen.size < samples) chosen.add(Math.floor(r() * n));
      indices = [...chosen].sort((a, b) => a - b);
    }
  }

  const round = precision === 'f32' ? Math.fround : (v: number) => v;
  let maxAbs = 0, maxRel = 0, failed = 0, worstMargin = -Infinity;
  let worst: GradcheckElement | undefined;
  for (const i of indices) {
    const xi = x[i]!;
    const hi = round(xi + eps), lo = round(xi - eps);
    const xp = x.slice();
    xp[i] = hi;
    const fp = fn(xp).loss;
    xp[i] = lo;
    const fm = fn(xp).loss;
    const numeric = (fp - fm) / (hi - lo);
    const analytic = Number(g[i]);
    const absError = Math.abs(analytic - numeric);
    const relError = absError / Math.max(Math.abs(numeric), 1e-300);
    const bound = atol + rtol * Math.abs(numeric);
    if (!(absError <= bound)) failed++;
    maxAbs = Math.max(maxAbs, absError);
    if (Math.abs(numeric) > atol) maxRel = Math.max(maxRel, relError);
    const margin = Number.isNaN(absError) ? Infinity : absError / Math.max(bound, 1e-300);
    if (margin > worstMargin) {
      worstMargin = margin;
      worst = { index: i, analytic, numeric, absError, relError };
    }
  }
  return { ok: failed === 0, checked: indices.length, failed, maxAbsError: maxAbs, maxRelError: maxRel, worst: worst!,
    maxErrorRatio: worstMargin, precision, precisionReason, eps, atol, rtol };
}

// ---- Ready-made checks of our ops (the CLI's `fusedce gradcheck`) ----------------------------

export type GradcheckOp = 'ce' | 'soft' | 'kl' | 'bce';
export const GRADCHECK_OPS: readonly GradcheckOp[] = ['ce', 'soft', 'kl', 'bce'];

export interface GradcheckOpOptions extends GradcheckOptions {
  dtype?: DType;
  rows?: number;
  vocab?: number;
}

export interface GradcheckOpReport extends GradcheckReport {
  op: string;
  dtype: DType;
  rows: number;
  vocab: number;
}

function roundTo(dtype: DType, x: Float32Array): Float32Array {
  if (dtype === 'f32') return x;
  const c = dtype === 'bf16' ? bf16 : f16;
  return c.toFloat32(c.fromFloat32(x));
}

function asDtype(dtype: DType, x: Float32Array, rows: number, vocab: number): Logits {
  if (dtype === 'f32') return makeLogits(x, rows, vocab);
  return makeLogits((dtype === 'bf16' ? bf16 : f16).fromFloat32(x), rows, vocab, dtype);
}

/**
 * Runs gradcheck on one of our ops with random logits ([rows, vocab], values exactly
 * representable in `dtype`): the analytic gradient comes from the op in that dtype (f32 gradient),
 * the differences from the same op in f32 at the perturbed points (a 16-bit dtype cannot hold
 * x ± h). Each op is checked with its options switched on: ce with labelSmoothing, class weights,
 * zLoss, logitScale and softcap; soft with a temperature and T²; kl in reverse; bce with posWeight and weights.
 */
export function gradcheckOp(op: GradcheckOp, opts: GradcheckOpOptions = {}): GradcheckOpReport[] {
  const name = 'gradcheckOp';
  checkOneOf(name, 'op', op, GRADCHECK_OPS);
  const { dtype = 'f32', rows = 3, vocab = 1000, ...rest } = opts;
  checkOneOf(name, 'dtype', dtype, ['f32', 'bf16', 'f16'] as const);
  checkInteger(name, 'rows', rows, 1, 1 << 16);
  checkInteger(name, 'vocab', vocab, 2, 1 << 22);
  const r = mulberry32(rest.seed ?? 7);
  const normal = () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-300))) * Math.cos(2 * Math.PI * r());
  const x0 = roundTo(dtype, Float32Array.from({ length: rows * vocab }, () => 2 * normal()));
  const other = Float32Array.from({ length: rows * vocab }, () => 2 * normal());
  const targets = Int32Array.from({ length: rows }, () => Math.floor(r() * vocab));
  const weight = Float32Array.from({ length: vocab }, () => 0.5 + r());
  const bceTargets = Float32Array.from({ length: rows * vocab }, () => (r() < 0.1 ? 1 : r() < 0.5 ? 0 : r()));
  const reports: GradcheckOpReport[] = [];
  const run = (label: string, f: (z: Logits, withGrad: boolean) => { loss: number; grad?: Logits }) => {
    const fn: GradcheckFn = (x) => {
      const f32 = Float32Array.from(x);
      const exact = f32.every((v, i) => v === x0[i]);  // the unperturbed point: the op in `dtype`
      const z = exact ? asDtype(dtype, f32, rows, vocab) : makeLogits(f32, rows, vocab);
      const out = f(z, exact);
      return { loss: out.loss, grad: out.grad };
    };
    const rep = gradcheck(fn, x0, { ...rest, precision: 'f32' });
    reports.push({ op: label, dtype, rows, vocab, ...rep });
  };
  const g = (withGrad: boolean) => ({ withGrad, gradDtype: 'f32' as const, reduction: 'sum' as const });
  if (op === 'ce') {
    run('crossEntropy', (z, w) => crossEntropyForward(z, targets, g(w)));
    run('crossEntropy +labelSmoothing 0.1 +weight +zLoss 1e-3 +logitScale 1.5 +softcap 5', (z, w) =>
      crossEntropyForward(z, targets, { ...g(w), labelSmoothing: 0.1, weight, zLoss: 1e-3, logitScale: 1.5, softcap: 5 }));
  } else if (op === 'soft') {
    const teacher = asDtype('f32', other, rows, vocab);
    run('softCrossEntropy T=2 tSquared', (z, w) => softCrossEntropyForward(z, teacher, { ...g(w), temperature: 2, tSquared: true }));
  } else if (op === 'kl') {
    const ref = asDtype('f32', other, rows, vocab);
    run('klDivergence forward', (z, w) => klDivergenceForward(z, ref, { ...g(w), direction: 'forward' }));
    run('klDivergence reverse T=1.5', (z, w) => klDivergenceForward(z, ref, { ...g(w), direction: 'reverse', temperature: 1.5 }));
  } else {
    run('binaryCrossEntropyWithLogits +posWeight 2 +weight', (z, w) =>
      binaryCrossEntropyWithLogits(z, bceTargets, { ...g(w), posWeight: 2, weight }));
  }
  return reports;
}
