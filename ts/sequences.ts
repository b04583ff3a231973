// Per-sequence results of crossEntropyForward with `sequenceIds` (one id ≥ 0 per row, n = max + 1
// sequences), and the 'sequenceMean' reduction:
//   logprob_s  = Σ_{counted i ∈ s} log p(t_i)          tokens_s = #{counted i ∈ s}
//   meanLoss_s = −logprob_s / tokens_s (0 when tokens_s is 0)
//   sequenceMean = (1/S)·Σ_{s: tokens_s > 0} (1/tokens_s)·Σ_{i ∈ s} loss_i,   S = #{s: tokens_s > 0}
// so row i's weight in the loss (and its gradient scale) is w_i = 1/(S·tokens_{s(i)}): the kernel
// runs with reduction 'none' and those per-row scales, in the same single pass.
// log p(t_i) is −loss_i for plain cross-entropy; with loss options (smoothing, weights, focal …)
// the row loss is not the log-likelihood, so it is x_t − lse_i of the transformed logits.
import { bf16, f16 } from './dtype';
import { rangeError, typeError } from './errors';
import type { Logits } from './logits';
import { checkGradOutput } from './options';

export interface SequenceResult {
  /** Σ log p(target) over each sequence's counted rows (float64). */
  logprob: Float64Array;
  /** Counted rows per sequence. */
  tokens: Int32Array;
  /** −logprob / tokens, 0 for a sequence with no counted row. */
  meanLoss: Float64Array;
}

export interface SequencePlan {
  ids: Int32Array;
  n: number;
  tokens: Int32Array;
  /** w_i = 1/(S·tokens_{s(i)}) at counted rows, 0 elsewhere. */
  weights: Float64Array;
}

/** Largest sequence id + 1 accepted (the per-sequence arrays are dense). */
const MAX_SEQUENCES = 2 ** 26;

export function checkSequences(fn: string, v: unknown, targets: Int32Array, ignoreIndex: number, sequenceMean: boolean): SequencePlan | null {
  const rows = targets.length;
  if (v === undefined) {
    if (sequenceMean) throw typeError(fn, 'sequenceIds', `an Int32Array(${rows}) of sequence ids ≥ 0 with reduction 'sequenceMean'`, v);
    return null;
  }
  if (!(v instanceof Int32Array)) throw typeError(fn, 'sequenceIds', `an Int32Array of length rows (${rows})`, v, 'Convert with Int32Array.from(ids)');
  if (v.length !== rows) throw rangeError(fn, 'sequenceIds', `of length rows (${rows})`, v);
  let n = 0;
  for (let i = 0; i < rows; i++) {
    const id = v[i]!;
    if (id < 0 || id >= MAX_SEQUENCES) throw rangeError(fn, `sequenceIds[${i}]`, `a sequence id in [0, ${MAX_SEQUENCES})`, id);
    if (id + 1 > n) n = id + 1;
  }
  const tokens = new Int32Array(n);
  for (let i = 0; i < rows; i++) if (targets[i] !== ignoreIndex) tokens[v[i]!]!++;
  let S = 0;
  for (let s = 0; s < n; s++) if (tokens[s]! > 0) S++;
  const weights = new Float64Array(rows);
  for (let i = 0; i < rows; i++) if (targets[i] !== ignoreIndex) weights[i] = 1 / (S * tokens[v[i]!]!);
  return { ids: v, n, tokens, weights };
}

/** x_t per row of the transformed logits (x = s·z, then c·tanh(x/c)), float64; 0 at ignored rows. */
function targetLogits(z: Logits, targets: Int32Array, ignoreIndex: number, scale: number, softcap: number): Float64Array {
  const rows = z.rows, V = z.vocab;
  const raw = new Float32Array(rows);
  if (z.dtype === 'f32') {
    for (let i = 0; i < rows; i++) if (targets[i] !== ignoreIndex) raw[i] = (z.data as Float32Array)[i * V + targets[i]!]!;
  } else {
    const bits = new Uint16Array(rows);
    for (let i = 0; i < rows; i++) if (targets[i] !== ignoreIndex) bits[i] = (z.data as Uint16Array)[i * V + targets[i]!]!;
    raw.set((z.dtype === 'bf16' ? bf16 : f16).toFloat32(bits));
  }
  const x = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const v = Math.fround(scale * raw[i]!);
    x[i] = softcap > 0 ? softcap * Math.tanh(v / softcap) : v;
  }
  return x;
}

/** The per-sequence sums, from the forward's per-row losses and lse. */
export function sequenceResult(p: SequencePlan, z: Logits, targets: Int32Array, ignoreIndex: number, losses: Float64Array, lse: Float32Array,
  options: { logitScale?: number; softcap?: number } | null): SequenceResult {
  const xt = options ? targetLogits(z, targets, ignoreIndex, options.logitScale ?? 1, options.softcap ?? 0) : null;
  return sequenceSums(p, targets, ignoreIndex, (i) => (xt ? xt[i]! - lse[i]! : -losses[i]!));
}

/** The per-sequence sums from each counted row's log p(target) (logprobOf(i)), summed in row order. */
export function sequenceSums(p: SequencePlan, targets: Int32Array, ignoreIndex: number, logprobOf: (row: number) => number): SequenceResult {
  const logprob = new Float64Array(p.n);
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] === ignoreIndex) continue;
    logprob[p.ids[i]!]! += logprobOf(i);
  }
  const meanLoss = new Float64Array(p.n);
  for (let s = 0; s < p.n; s++) meanLoss[s] = p.tokens[s]! > 0 ? -logprob[s]! / p.tokens[s]! : 0;
  return { logprob, tokens: p.tokens, meanLoss };
}

/** Σ_i w_i·loss_i over the rows' double losses, in row order: the sequenceMean loss. */
export function sequenceMean(p: SequencePlan, losses: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < losses.length; i++) if (p.weights[i] !== 0) sum += p.weights[i]! * losses[i]!;
  return sum;
}

/** The per-row upstream gradient of sequenceMean: w_i·gradOutput (f32). */
export function sequenceRowGrad(p: SequencePlan, gradOutput: number): Float32Array {
  return Float32Array.from(p.weights, (w) => w * gradOutput);
}

/**
 * The backward's per-row upstream of 'sequenceMean', w_i·gradOutput, from its gradOutput option
 * (a number, default 1; a per-row array has no meaning for a mean over sequences).
 */
export function sequenceMeanRowGrad(fn: string, p: SequencePlan, gradOutput: unknown, rows: number): Float32Array {
  if (gradOutput !== undefined && typeof gradOutput !== 'number')
    throw typeError(fn, 'gradOutput', "a finite number with reduction 'sequenceMean'", gradOutput);
  return sequenceRowGrad(p, checkGradOutput(fn, gradOutput, 'mean', rows).gradOutput);
}
