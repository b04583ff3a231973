// The batch evaluation statistics of crossEntropyForward(…, { stats: true }), from the per-row
// ones the kernel wrote in the same pass (cpp/cross_entropy_options.cpp):
//   perplexity = exp(NLL / N), bitsPerToken = NLL / (N·ln 2), accuracy = #{argmax = t} / N,
//   meanEntropy = Σ H_i / N, ECE = Σ_b (n_b / N)·|accuracy_b − confidence_b|
// over the N counted rows, in row order.
import type { CrossEntropyStats } from './cross_entropy';

export /** Batch statistics over counted rows, in row order, from the per-row ones the kernel wrote. */
function batchStats(targets: Int32Array, ignoreIndex: number, argmax: Int32Array, entropy: Float32Array,
  targetLogprob: Float32Array, maxProb: Float32Array, bins: number): CrossEntropyStats {
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
  return {
    argmax, entropy, targetLogprob, maxProb,
    perplexity: Math.exp(meanNll),
    bitsPerToken: meanNll / Math.LN2,
    accuracy: n > 0 ? correct / n : NaN,
    meanEntropy: n > 0 ? ent / n : NaN,
    ece: n > 0 ? ece : NaN,
  };
}

