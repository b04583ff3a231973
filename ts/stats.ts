// The batch evaluation statistics of crossEntropyForward(…, { stats: true }), from the per-row
// ones the kernel wrote in the same pass (cpp/cross_entropy_options.cpp):
//   perplexity = exp(NLL / N), bitsPerToken = NLL / (N·ln 2), accuracy = #{argmax = t} / N,
//   meanEntropy = Σ H_i / N, ECE = Σ_b (n_b / N)·|accuracy_b − confidence_b|,
//   reliability: per bin b of maxProb, confidence_b = mean maxProb, accuracy_b = #{argmax = t} / n_b,
//   count_b = n_b (the ECE's own bins), and with the text's size
//   bitsPerCharacter = NLL / (characters·ln 2), bitsPerByte = NLL / (bytes·ln 2)
// over the N counted rows, in row order (NLL = Σ −log p(target), unsmoothed and unweighted).
import type { CrossEntropyStats } from './cross_entropy';
import { checkFinite, rangeError, typeError } from './errors';

/** The size of the text the rows predict, for tokenizer-independent rates. */
export interface TextSize {
  characters?: number;
  bytes?: number;
}

export /** Batch statistics over counted rows, in row order, from the per-row ones the kernel wrote. */
function batchStats(targets: Int32Array, ignoreIndex: number, argmax: Int32Array, entropy: Float32Array,
  targetLogprob: Float32Array, maxProb: Float32Array, bins: number, text: TextSize = {}): CrossEntropyStats {
  let n = 0, nll = 0, correct = 0, ent = 0;
  const binCount = new Float64Array(bins), binCorrect = new Float64Array(bins), binConf = new Float64Array(bins);
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] === ignoreIndex) continue;
    n++;
    nll -= targetLogprob[i];
    ent += entropy[i];
    const hit = argmax[i] === targets[i] ? 1 : 0;
    correct += hit;
    const conf = maxProb[i];
    const b = Math.min(bins - 1, Math.max(0, Math.ceil(conf * bins) - 1));
    binCount[b]++;
    binCorrect[b] += hit;
    binConf[b] += conf;
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) if (binCount[b] > 0) ece += Math.abs(binCorrect[b] - binConf[b]) / n;
  const meanNll = n > 0 ? nll / n : NaN;
  // per-bin means; an empty bin has count 0 and reports 0 for both
  const confidence = new Float64Array(bins), accuracy = new Float64Array(bins);
  for (let b = 0; b < bins; b++)
    if (binCount[b]! > 0) {
      confidence[b] = binConf[b]! / binCount[b]!;
      accuracy[b] = binCorrect[b]! / binCount[b]!;
    }
  const out: CrossEntropyStats = {
    argmax, entropy, targetLogprob, maxProb,
    perplexity: Math.exp(meanNll),
    bitsPerToken: meanNll / Math.LN2,
    accuracy: n > 0 ? correct / n : NaN,
    meanEntropy: n > 0 ? ent / n : NaN,
    ece: n > 0 ? ece : NaN,
    reliability: { confidence, accuracy, count: binCount },
  };
  if (text.characters !== undefined) out.bitsPerCharacter = nll / (text.characters * Math.LN2);
  if (text.bytes !== undefined) out.bitsPerByte = nll / (text.bytes * Math.LN2);
  return out;
}

/** characters / bytes: a finite number > 0, and only with stats (they scale a statistic). */
export function checkTextSize(fn: string, o: Partial<Record<string, unknown>>, stats: boolean): TextSize {
  const text: TextSize = {};
  for (const k of ['characters', 'bytes'] as const) {
    if (o[k] === undefined) continue;
    const v = checkFinite(fn, k, o[k]);
    if (!(v > 0)) throw rangeError(fn, k, 'a finite number > 0 (the size of the text the rows predict)', v);
    if (!stats) throw typeError(fn, k, 'undefined unless stats is true', o[k], `bits per ${k === 'characters' ? 'character' : 'byte'} is a statistic: pass stats: true`);
    text[k] = v;
  }
  return text;
}
