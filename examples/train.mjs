// Train a small language model in Node, with fusedce's cross-entropy and its gradient.
//
// The text is a synthetic source whose entropy rate is known exactly, so the loss has a floor
// to reach: a Markov chain over 256 symbols ("bytes") where each symbol is followed by one of 4
// successors with probabilities P = [0.55, 0.25, 0.12, 0.08] (which 4 depends on the symbol).
// Whatever the stationary distribution, every step draws from P, so the entropy rate is
// H(P) = −Σ p·log2 p ≈ 1.63 bits per token; no model can do better on average.
//
// The model: next-token logits = E[previous token] · W + b (an embedding of width 64, then the
// output layer), trained with Adam. fusedce does the part that costs: the softmax cross-entropy
// and its gradient with respect to the logits, in one fused call that writes into a gradient
// buffer allocated once. The logits can be fed as bf16 (--dtype bf16): the conversion writes into a
// reused Uint16Array too. Everything else (the two small matmuls and Adam) is plain JS.
//
// Run: node examples/train.mjs [--quick] [--steps N] [--batch N] [--dtype f32|bf16] [--svg FILE] [--reliability FILE]
//   --quick        300 steps (well under a minute on 2 cores)
//   --svg          where the loss curve goes (default train-loss.svg)
//   --reliability  where the held-out reliability diagram goes (default train-reliability.svg)
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { bf16, crossEntropyForward, logits, reliabilityDiagramSvg } from 'fusedce';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    steps: { type: 'string' },
    batch: { type: 'string', default: '512' },
    dtype: { type: 'string', default: 'f32' },
    svg: { type: 'string', default: 'train-loss.svg' },
    reliability: { type: 'string', default: 'train-reliability.svg' },
    seed: { type: 'string', default: '1' },
  },
});
const V = 256, D = 64, K = 4;
const P = [0.55, 0.25, 0.12, 0.08];
const FLOOR_BITS = -P.reduce((s, p) => s + p * Math.log2(p), 0);
const FLOOR_NATS = FLOOR_BITS * Math.LN2;
const steps = Number(args.steps ?? (args.quick ? 300 : 2000));
const B = Number(args.batch);
if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`train: --steps must be a positive integer, but got '${args.steps}'`);
if (!Number.isInteger(B) || B < 1) throw new RangeError(`train: --batch must be a positive integer, but got '${args.batch}'`);
if (args.dtype !== 'f32' && args.dtype !== 'bf16') throw new RangeError(`train: --dtype must be 'f32' or 'bf16', but got '${args.dtype}'`);

// ---- the source: seeded, so a run is reproducible
let seed = Number(args.seed) >>> 0 || 1;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const successors = Array.from({ length: V }, () => Array.from({ length: K }, () => Math.floor(rand() * V)));
let state = 0;
function nextToken() {
  const u = rand();
  let k = 0, c = P[0];
  while (u > c && k < K - 1) c += P[++k];
  state = successors[state][k];
  return state;
}
/** A batch of (previous, next) pairs from the stream. */
function batch(n) {
  const prev = new Int32Array(n), next = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    prev[i] = state;
    next[i] = nextToken();
  }
  return { prev, next };
}

// ---- the model and Adam
const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
const E = Float32Array.from({ length: V * D }, () => 0.1 * gauss()); // (V, D)
const W = Float32Array.from({ length: D * V }, () => gauss() / Math.sqrt(D)); // (D, V)
const bias = new Float32Array(V); // (V,)
const params = [E, W, bias];
const adam = params.map((p) => ({ m: new Float32Array(p.length), v: new Float32Array(p.length) }));
const grads = params.map((p) => new Float32Array(p.length));
const LR = 0.01, B1 = 0.9, B2 = 0.999;
function adamStep(t) {
  const c1 = 1 - B1 ** t, c2 = 1 - B2 ** t;
  params.forEach((p, i) => {
    const { m, v } = adam[i], g = grads[i];
    for (let j = 0; j < p.length; j++) {
      m[j] = B1 * m[j] + (1 - B1) * g[j];
      v[j] = B2 * v[j] + (1 - B2) * g[j] * g[j];
      p[j] -= (LR * (m[j] / c1)) / (Math.sqrt(v[j] / c2) + 1e-8);
    }
  });
}

// Buffers allocated once and reused every step: the logits (f32, and their bf16 bits), the
// gradient fusedce writes, and the hidden activations.
const h = new Float32Array(B * D); // (B, D)
const zf = new Float32Array(B * V); // (B, V) logits
const zbits = args.dtype === 'bf16' ? new Uint16Array(B * V) : null;
const z = zbits ? logits(zbits, B, V, 'bf16') : logits(zf, B, V);
const dz = logits(new Float32Array(B * V), B, V); // (B, V) d loss / d logits, f32 whatever the logits' dtype

function forward(prev) {
  for (let i = 0; i < B; i++) h.set(E.subarray(prev[i] * D, prev[i] * D + D), i * D);
  for (let i = 0; i < B; i++) {
    const row = zf.subarray(i * V, i * V + V);
    row.set(bias);
    for (let d = 0; d < D; d++) {
      const a = h[i * D + d];
      const w = W.subarray(d * V, d * V + V);
      for (let j = 0; j < V; j++) row[j] += a * w[j];
    }
  }
  if (zbits) bf16.fromFloat32(zf, zbits); // into the reused buffer
}

function trainStep(t) {
  const { prev, next } = batch(B);
  forward(prev);
  // loss = mean over the batch of −log softmax(z)[next]; dz = (softmax(z) − onehot(next)) / B,
  // written into dz in the same pass
  const r = crossEntropyForward(z, next, { withGrad: true, gradDtype: 'f32', out: dz });
  for (const g of grads) g.fill(0);
  const [gE, gW, gb] = grads;
  const g = dz.data;
  for (let i = 0; i < B; i++) {
    const gi = g.subarray(i * V, i * V + V);
    for (let j = 0; j < V; j++) gb[j] += gi[j];
    for (let d = 0; d < D; d++) {
      const a = h[i * D + d];
      const w = W.subarray(d * V, d * V + V), gw = gW.subarray(d * V, d * V + V);
      let s = 0;
      for (let j = 0; j < V; j++) {
        gw[j] += a * gi[j]; // dW = hᵀ·dz
        s += w[j] * gi[j]; // dh = dz·Wᵀ
      }
      gE[prev[i] * D + d] += s; // dE[prev] += dh
    }
  }
  adamStep(t);
  return r.loss;
}

/**
 * Held-out loss, perplexity and bits per token from fusedce's stats on fresh batches, and the
 * calibration: the reliability bins summed over the batches (count-weighted).
 */
function evaluate(batches = 8) {
  let nats = 0, acc = 0;
  const bins = 10, count = new Float64Array(bins), conf = new Float64Array(bins), hits = new Float64Array(bins);
  for (let k = 0; k < batches; k++) {
    const { prev, next } = batch(B);
    forward(prev);
    const r = crossEntropyForward(z, next, { stats: true, eceBins: bins });
    nats += r.loss;
    acc += r.stats.accuracy;
    const rel = r.stats.reliability;
    for (let b = 0; b < bins; b++) {
      count[b] += rel.count[b];
      conf[b] += rel.confidence[b] * rel.count[b];
      hits[b] += rel.accuracy[b] * rel.count[b];
    }
  }
  nats /= batches;
  const reliability = { count, confidence: conf.map((c, b) => (count[b] ? c / count[b] : 0)), accuracy: hits.map((h, b) => (count[b] ? h / count[b] : 0)) };
  return { loss: nats, perplexity: Math.exp(nats), bitsPerToken: nats / Math.LN2, accuracy: acc / batches, reliability };
}

// ---- the loop, with a progress bar (a terminal that reports no width gets 80 columns)
const tty = process.stdout.isTTY;
const cols = () => (process.stdout.columns || 80) - 1;
function bar(t, loss) {
  const w = 24, f = Math.round((w * t) / steps);
  const line = `[${'#'.repeat(f)}${'.'.repeat(w - f)}] step ${t}/${steps}  loss ${loss.toFixed(4)}  ppl ${Math.exp(loss).toFixed(3)}  ${(loss / Math.LN2).toFixed(3)} bits/token`;
  if (tty) process.stdout.write(`\r\x1b[2K${line.slice(0, cols())}`);
  else if (t % Math.max(1, Math.floor(steps / 10)) === 0 || t === steps) console.log(line);
}

console.log(`source: order-1 Markov over ${V} symbols, entropy rate ${FLOOR_BITS.toFixed(4)} bits/token (${FLOOR_NATS.toFixed(4)} nats); ` +
  `model: embedding ${D} → ${V} logits (${args.dtype}), batch ${B}, ${steps} steps of Adam`);
const start = evaluate();
const curve = [];
let smooth = NaN;
const t0 = performance.now();
for (let t = 1; t <= steps; t++) {
  const loss = trainStep(t);
  smooth = Number.isNaN(smooth) ? loss : 0.95 * smooth + 0.05 * loss;
  curve.push(loss);
  bar(t, smooth);
}
if (tty) process.stdout.write('\n');
const seconds = (performance.now() - t0) / 1e3;
const end = evaluate();
const report = (name, e) => `${name}: loss ${e.loss.toFixed(4)} nats, perplexity ${e.perplexity.toFixed(3)}, ${e.bitsPerToken.toFixed(4)} bits/token, accuracy ${(100 * e.accuracy).toFixed(1)}%`;
console.log(report('held-out before', start));
console.log(report('held-out after ', end));
console.log(`floor (the entropy rate): ${FLOOR_NATS.toFixed(4)} nats, perplexity ${Math.exp(FLOOR_NATS).toFixed(3)}, ${FLOOR_BITS.toFixed(4)} bits/token; ` +
  `the model is ${(end.bitsPerToken - FLOOR_BITS).toFixed(4)} bits/token above it`);
console.log(`${steps} steps in ${seconds.toFixed(1)} s (${((steps * B) / seconds / 1e3).toFixed(1)} K tokens/s)`);

// ---- the loss curve, with the entropy floor, as SVG
function svg() {
  const Wd = 720, Ht = 360, L = 60, R = 20, T = 40, Bm = 45;
  const hi = Math.max(...curve.slice(0, 5), Math.log(V)) * 1.05, lo = 0;
  const x = (i) => L + ((Wd - L - R) * i) / Math.max(curve.length - 1, 1);
  const y = (v) => T + (Ht - T - Bm) * (1 - (v - lo) / (hi - lo));
  const pts = curve.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const ticks = [0, 1, 2, 3, 4, 5, 6].filter((v) => v <= hi);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${Wd}" height="${Ht}" font-family="sans-serif" font-size="12">`,
    `<rect width="${Wd}" height="${Ht}" fill="white"/>`,
    `<text x="${Wd / 2}" y="22" text-anchor="middle" font-size="14">Training loss (nats per token), ${steps} steps, batch ${B}, ${args.dtype} logits</text>`,
    ...ticks.map((v) => `<line x1="${L}" x2="${Wd - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`),
    `<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" points="${pts}"/>`,
    `<line x1="${L}" x2="${Wd - R}" y1="${y(FLOOR_NATS)}" y2="${y(FLOOR_NATS)}" stroke="#d62728" stroke-dasharray="6 4"/>`,
    `<text x="${Wd - R - 4}" y="${y(FLOOR_NATS) - 6}" text-anchor="end" fill="#d62728">entropy floor ${FLOOR_NATS.toFixed(3)} nats (${FLOOR_BITS.toFixed(3)} bits)</text>`,
    `<text x="${(L + Wd - R) / 2}" y="${Ht - 10}" text-anchor="middle">step</text>`,
    `<text x="${L}" y="${Ht - 28}" text-anchor="middle">0</text><text x="${Wd - R}" y="${Ht - 28}" text-anchor="middle">${steps}</text>`,
    '</svg>',
  ].join('\n');
}
writeFileSync(args.svg, svg() + '\n');
writeFileSync(args.reliability, reliabilityDiagramSvg(end.reliability, { title: `Held-out calibration after ${steps} steps` }) + '\n');
console.log(`loss curve: ${args.svg}; reliability diagram: ${args.reliability}`);
