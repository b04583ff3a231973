// reliabilityDiagramSvg: the reliability diagram of crossEntropyForward(…, { stats: true })'s
// stats.reliability, as an SVG a person can look at.
//   top:    per bin of confidence (maxProb), the accuracy as a bar, the bin's mean confidence as a
//           red tick, the gap shaded where the bin is over-confident (confidence above the bar),
//           and the diagonal (a calibrated model's bars touch it);
//   bottom: how many rows fell in each bin (the weights of the ECE).
// ECE = Σ_b (count_b / N)·|accuracy_b − confidence_b| is printed in the title.
import type { Reliability } from './cross_entropy';
import { checkOptions, rangeError, typeError } from './errors';

export interface ReliabilityDiagramOptions {
  /** The title's text before the ECE. Default 'Reliability diagram'. */
  title?: string;
  /** Width and height in pixels. Default 480 × 520. */
  width?: number;
  height?: number;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** The diagram of stats.reliability (any number of bins), as an SVG document string. */
export function reliabilityDiagramSvg(reliability: Reliability, opts?: ReliabilityDiagramOptions): string {
  const fn = 'reliabilityDiagramSvg';
  if (reliability === null || typeof reliability !== 'object')
    throw typeError(fn, 'reliability', 'stats.reliability ({ confidence, accuracy, count })', reliability);
  const { confidence, accuracy, count } = reliability;
  for (const [name, a] of [['confidence', confidence], ['accuracy', accuracy], ['count', count]] as const)
    if (!(a instanceof Float64Array)) throw typeError(fn, `reliability.${name}`, 'a Float64Array', a);
  const bins = count.length;
  if (bins < 1 || confidence.length !== bins || accuracy.length !== bins)
    throw rangeError(fn, 'reliability', 'three Float64Arrays of one length ≥ 1', `lengths ${confidence.length}, ${accuracy.length}, ${bins}`);
  for (let b = 0; b < bins; b++)
    if (!(count[b]! >= 0) || !(confidence[b]! >= 0 && confidence[b]! <= 1) || !(accuracy[b]! >= 0 && accuracy[b]! <= 1))
      throw rangeError(fn, `reliability (bin ${b})`, 'a count ≥ 0 and a confidence and accuracy in [0, 1]', `${count[b]}, ${confidence[b]}, ${accuracy[b]}`);
  const o = checkOptions(fn, opts, ['title', 'width', 'height'] as const);
  const title = o.title === undefined ? 'Reliability diagram' : String(o.title);
  const W = o.width === undefined ? 480 : Number(o.width), H = o.height === undefined ? 520 : Number(o.height);
  if (!(W >= 200 && H >= 240)) throw rangeError(fn, 'width/height', 'at least 200 × 240', `${W} × ${H}`);

  let n = 0, ece = 0;
  for (let b = 0; b < bins; b++) n += count[b]!;
  for (let b = 0; b < bins; b++) if (count[b]! > 0) ece += (count[b]! / n) * Math.abs(accuracy[b]! - confidence[b]!);
  const L = 56, R = 16, T = 44, gap = 40;
  const histH = Math.round((H - T - gap - 36) * 0.25), mainH = H - T - gap - 36 - histH;
  const pw = W - L - R;
  const x = (v: number) => L + pw * v;
  const y = (v: number) => T + mainH * (1 - v);
  const hy0 = T + mainH + gap, hy = (frac: number) => hy0 + histH * (1 - frac);
  const maxCount = Math.max(1, ...count);
  const bw = pw / bins;
  const f = (v: number) => v.toFixed(1);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<text x="${W / 2}" y="36" text-anchor="middle" fill="#555">ECE ${n > 0 ? (100 * ece).toFixed(2) + '%' : 'n/a'} over ${n} rows, ${bins} bins</text>`,
  ];
  for (let t = 0; t <= 10; t += 2) {
    const v = t / 10;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${f(y(v))}" y2="${f(y(v))}" stroke="#eee"/>`,
      `<text x="${L - 6}" y="${f(y(v) + 4)}" text-anchor="end">${v.toFixed(1)}</text>`,
      `<text x="${f(x(v))}" y="${f(T + mainH + 14)}" text-anchor="middle">${v.toFixed(1)}</text>`);
  }
  parts.push(`<line x1="${x(0)}" y1="${y(0)}" x2="${x(1)}" y2="${y(1)}" stroke="#888" stroke-dasharray="4 3"/>`);
  for (let b = 0; b < bins; b++) {
    if (count[b] === 0) continue;
    const x0 = L + b * bw + 1, w = Math.max(1, bw - 2);
    const a = accuracy[b]!, c = confidence[b]!;
    // the gap first, so the accuracy bar covers it where the bin is under-confident; the tick shows the confidence either way
    parts.push(`<rect x="${f(x0)}" y="${f(y(Math.max(a, c)))}" width="${f(w)}" height="${f(Math.abs(y(a) - y(c)))}" fill="#d62728" fill-opacity="0.3"/>`,
      `<rect x="${f(x0)}" y="${f(y(a))}" width="${f(w)}" height="${f(y(0) - y(a))}" fill="#1f77b4"><title>bin ${b}: accuracy ${a.toFixed(3)}, confidence ${c.toFixed(3)}, ${count[b]} rows</title></rect>`,
      `<line x1="${f(x0)}" x2="${f(x0 + w)}" y1="${f(y(c))}" y2="${f(y(c))}" stroke="#d62728" stroke-width="2"/>`,
      `<rect x="${f(x0)}" y="${f(hy(count[b]! / maxCount))}" width="${f(w)}" height="${f(hy(0) - hy(count[b]! / maxCount))}" fill="#7f7f7f"/>`);
  }
  parts.push(
    `<rect x="${L}" y="${T}" width="${pw}" height="${mainH}" fill="none" stroke="#333"/>`,
    `<text transform="translate(16 ${T + mainH / 2}) rotate(-90)" text-anchor="middle">accuracy</text>`,
    `<text x="${L + pw / 2}" y="${T + mainH + 28}" text-anchor="middle">confidence (max probability)</text>`,
    `<rect x="${L}" y="${hy0}" width="${pw}" height="${histH}" fill="none" stroke="#333"/>`,
    `<text x="${L - 6}" y="${hy0 + 10}" text-anchor="end">${maxCount}</text>`,
    `<text transform="translate(16 ${hy0 + histH / 2}) rotate(-90)" text-anchor="middle">rows</text>`,
    `<rect x="${L + 8}" y="${T + 8}" width="10" height="10" fill="#1f77b4"/><text x="${L + 22}" y="${T + 17}">accuracy</text>`,
    `<line x1="${L + 90}" x2="${L + 100}" y1="${T + 13}" y2="${T + 13}" stroke="#d62728" stroke-width="2"/><text x="${L + 104}" y="${T + 17}">mean confidence (shaded: over-confidence)</text>`,
    '</svg>');
  return parts.join('\n');
}
