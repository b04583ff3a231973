// fitTemperature: post-hoc temperature scaling (Guo et al. 2017). The τ > 0 that minimises the
// mean negative log-likelihood of softmax(z/τ) over the counted rows of a validation set.
//
// With β = 1/τ, NLL(β) = mean_i [lse(β·z_i) − β·z_i,t] is convex in β, and
//   dNLL/dβ = mean_i (E_p[z_i] − z_i,t) = mean_i (NLL_i − H_i) / β,
// where H_i is the entropy of softmax(β·z_i). Both NLL_i and H_i come out of one forward pass with
// logitScale β and stats (targetLogprob and entropy), so each step costs one pass over the logits.
// The derivative's sign brackets the root: β grows or shrinks by 2× until the sign changes, then
// the bracket is shrunk by the Illinois variant of regula falsi on g(β) = mean(NLL_i − H_i), in
// log β. It ends when the bracket is within `tolerance` (relative): 9–16 passes, the two reports
// included, on the sets tried (300×500 τ₀ 2.5, 200×777 τ₀ 0.6, 100×1000 τ₀ 1, 50×40 τ₀ 3).
import { crossEntropyForward, crossEntropyForwardAsync } from './cross_entropy';
import { checkFinite, checkInteger, checkOptions, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';
import { type Device, DeviceLogits, DeviceTargets } from './cuda';

export interface FitTemperatureOptions {
  /** Rows whose target equals this count nowhere. Default -100. */
  ignoreIndex?: number;
  /** CPU threads for each pass. Default: all cores. */
  threads?: number;
  /** The range τ is searched in, [min, max]. Default [0.01, 100]. */
  bounds?: [number, number];
  /** Relative width of the final bracket on τ. Default 1e-7. */
  tolerance?: number;
  /** Most passes over the logits. Default 100. */
  maxIterations?: number;
  /** Bins of the ECE reported before and after. Default 15. */
  eceBins?: number;
  /**
   * Where the passes run for host arrays ('auto', 'cpu', 'cuda', as crossEntropyForward's); device
   * logits run on the GPU (the per-row statistics each pass needs are read back: rows·16 bytes).
   */
  device?: Device;
}

export interface FitTemperatureResult {
  /** The fitted τ (logits are divided by it). */
  temperature: number;
  /** Mean NLL over counted rows at τ = 1, and at the fitted τ (nats). */
  nllBefore: number;
  nllAfter: number;
  /** Expected calibration error at τ = 1 and at the fitted τ. */
  eceBefore: number;
  eceAfter: number;
  /** Passes over the logits, the two reports included. */
  iterations: number;
  /** Whether τ came to rest on a bound (the optimum may lie beyond it). */
  atBound: boolean;
}

const OPTIONS = ['ignoreIndex', 'threads', 'bounds', 'tolerance', 'maxIterations', 'eceBins', 'device'] as const;

interface Plan {
  z: Logits | DeviceLogits;
  /** as given (host or device) */
  targets: Int32Array | DeviceTargets;
  /** on the host, for the summaries */
  hostTargets: Int32Array;
  base: { ignoreIndex?: number; threads?: number; eceBins: number; device?: Device };
  lo: number;
  hi: number;
  tolerance: number;
  maxIterations: number;
}

function plan(fn: string, logits: unknown, targets: unknown, opts: unknown): Plan {
  const o = checkOptions(fn, opts, OPTIONS);
  const z = logits instanceof DeviceLogits ? (logits.buffer(fn), logits) : checkLogits(fn, 'logits', logits);
  if (!(targets instanceof Int32Array) && !(targets instanceof DeviceTargets))
    throw typeError(fn, 'targets', `an Int32Array (or DeviceTargets) of length rows (${z.rows})`, targets);
  let lo = 0.01, hi = 100;
  if (o.bounds !== undefined) {
    if (!Array.isArray(o.bounds) || o.bounds.length !== 2) throw typeError(fn, 'bounds', '[min, max], two numbers', o.bounds);
    lo = checkFinite(fn, 'bounds[0]', o.bounds[0]);
    hi = checkFinite(fn, 'bounds[1]', o.bounds[1]);
    if (!(lo > 0 && hi > lo)) throw rangeError(fn, 'bounds', '0 < min < max', `[${lo}, ${hi}]`);
  }
  const tolerance = o.tolerance === undefined ? 1e-7 : checkFinite(fn, 'tolerance', o.tolerance);
  if (!(tolerance > 0 && tolerance < 1)) throw rangeError(fn, 'tolerance', 'in (0, 1)', tolerance);
  const maxIterations = o.maxIterations === undefined ? 100 : checkInteger(fn, 'maxIterations', o.maxIterations, 3, 10000);
  const eceBins = o.eceBins === undefined ? 15 : checkInteger(fn, 'eceBins', o.eceBins, 1, 1e6);
  const base = { ignoreIndex: o.ignoreIndex as number | undefined, threads: o.threads as number | undefined, eceBins,
    device: o.device as Device | undefined };
  const hostTargets = targets instanceof DeviceTargets ? targets.download() : targets;
  return { z, targets, hostTargets, base, lo, hi, tolerance, maxIterations };
}

/** What one pass at β = 1/τ gives: the mean NLL, g = mean(NLL_i − H_i) (the derivative's sign), the ECE. */
interface Pass {
  nll: number;
  g: number;
  ece: number;
  count: number;
}

function summarise(targets: Int32Array, ignoreIndex: number, r: { count: number; stats: { targetLogprob: Float32Array; entropy: Float32Array; ece: number } }): Pass {
  let nll = 0, g = 0;
  const { targetLogprob, entropy } = r.stats;
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] === ignoreIndex) continue;
    nll -= targetLogprob[i]!;
    g += -targetLogprob[i]! - entropy[i]!;
  }
  const n = r.count;
  return { nll: n ? nll / n : NaN, g: n ? g / n : NaN, ece: r.stats.ece, count: n };
}

/**
 * The search, as a generator of the β values to evaluate (sync and async callers share it).
 * Receives each pass; returns β*.
 */
function* search(p: Plan): Generator<number, { beta: number; atBound: boolean }, Pass> {
  const bLo = 1 / p.hi, bHi = 1 / p.lo;  // β = 1/τ
  let b = Math.min(bHi, Math.max(bLo, 1));
  let pass = yield b;
  if (!(pass.count > 0)) return { beta: b, atBound: false };
  // bracket: g > 0 means NLL falls with smaller β (a higher temperature)
  let a = b, ga = pass.g;
  let c = b, gc = pass.g;
  const dir = pass.g > 0 ? 0.5 : 2;
  for (;;) {
    if (ga === 0) return { beta: a, atBound: false };
    const next = Math.min(bHi, Math.max(bLo, c * dir));
    if (next === c) return { beta: c, atBound: true };
    a = c; ga = gc;
    c = next;
    pass = yield c;
    gc = pass.g;
    if (Math.sign(gc) !== Math.sign(ga)) break;
  }
  // Illinois regula falsi in u = log β on g(u), which is increasing through its root
  let u0 = Math.log(a), g0 = ga, u1 = Math.log(c), g1 = gc, side = 0;
  for (;;) {
    if (Math.abs(u1 - u0) <= p.tolerance) break;
    let u = u1 - (g1 * (u1 - u0)) / (g1 - g0);
    if (!(u > Math.min(u0, u1) && u < Math.max(u0, u1))) u = 0.5 * (u0 + u1);  // rounding: bisect
    pass = yield Math.exp(u);
    const g = pass.g;
    if (g === 0) return { beta: Math.exp(u), atBound: false };
    if (Math.sign(g) === Math.sign(g1)) {
      u1 = u; g1 = g;
      if (side === 1) g0 /= 2;
      side = 1;
    } else {
      u0 = u1; g0 = g1;
      u1 = u; g1 = g;
      side = 0;
    }
  }
  return { beta: Math.exp(0.5 * (u0 + u1)), atBound: false };
}

/**
 * The whole fit as a generator of the β values to evaluate: τ = 1 first (the "before" report),
 * the search's steps, then the fitted β (the "after" report). The sync and async callers only
 * run the passes it asks for; it counts them and stops at maxIterations.
 */
function* fit(fn: string, p: Plan): Generator<number, FitTemperatureResult, Pass> {
  const before = yield 1;
  if (before.count === 0) throw rangeError(fn, 'targets', 'at least one row that counts (a target that is not ignoreIndex)', 'none');
  let iterations = 1;
  const s = search(p);
  let step = s.next();
  while (!step.done) {
    if (iterations >= p.maxIterations) throw new RangeError(`${fn}: no convergence in maxIterations (${p.maxIterations}) passes; raise maxIterations or tolerance`);
    const beta = step.value;
    step = s.next(beta === 1 ? before : yield beta);
    if (beta !== 1) iterations++;
  }
  const { beta, atBound } = step.value;
  const after = yield beta;
  return { temperature: 1 / beta, nllBefore: before.nll, nllAfter: after.nll, eceBefore: before.ece, eceAfter: after.ece, iterations: iterations + 1, atBound };
}

type PassResult = { count: number; stats: { targetLogprob: Float32Array; entropy: Float32Array; ece: number } };

/** One forward at logit scale β with statistics (on the CPU or the GPU; device results are freed). */
function forward(p: Plan, beta: number): PassResult {
  const r = crossEntropyForward(p.z as Logits, p.targets, { ...p.base, stats: true, logitScale: beta });
  return release(r);
}
async function forwardAsync(p: Plan, beta: number): Promise<PassResult> {
  return release(await crossEntropyForwardAsync(p.z as Logits, p.targets, { ...p.base, stats: true, logitScale: beta }));
}
function release(r: { count: number; stats?: PassResult['stats']; losses: unknown; lse: unknown }): PassResult {
  for (const v of [r.losses, r.lse]) if (v && typeof (v as { dispose?: unknown }).dispose === 'function') (v as { dispose(): void }).dispose();
  return { count: r.count, stats: r.stats! };
}

/** One pass at β: a forward with logitScale β and stats, summarised. */
function passOf(p: Plan, r: { count: number; stats: { targetLogprob: Float32Array; entropy: Float32Array; ece: number } }): Pass {
  return summarise(p.hostTargets, p.base.ignoreIndex ?? -100, r);
}

/**
 * Fits the temperature τ of softmax(z/τ) on a validation set: the τ minimising the mean NLL over
 * the counted rows. Each step is one forward pass (logitScale 1/τ, stats) over the logits.
 * @param logits   [rows, vocab] of f32/bf16/f16
 * @param targets  Int32Array(rows); rows equal to ignoreIndex count nowhere
 * @example
 *   const { temperature } = fitTemperature(valLogits, valTargets);
 *   crossEntropyForward(testLogits, testTargets, { logitScale: 1 / temperature, stats: true });
 */
export function fitTemperature(logits: Logits | DeviceLogits, targets: Int32Array | DeviceTargets, opts?: FitTemperatureOptions): FitTemperatureResult {
  const fn = 'fitTemperature';
  const p = plan(fn, logits, targets, opts);
  const g = fit(fn, p);
  let s = g.next();
  while (!s.done) s = g.next(passOf(p, forward(p, s.value)));
  return s.value;
}

/** fitTemperature off the main thread (each pass is an async forward). */
export async function fitTemperatureAsync(logits: Logits | DeviceLogits, targets: Int32Array | DeviceTargets, opts?: FitTemperatureOptions): Promise<FitTemperatureResult> {
  const fn = 'fitTemperatureAsync';
  const p = plan(fn, logits, targets, opts);
  const g = fit(fn, p);
  let s = g.next();
  while (!s.done) s = g.next(passOf(p, await forwardAsync(p, s.value)));
  return s.value;
}
