// Float64 references for the loss family (label smoothing, weights, z-loss, softcap, stats, soft
// targets, KL, entropy, binary CE), written straight from the definitions, one row at a time.
// `values` are the exact inputs (dequantised from bf16/f16 where the op saw 16-bit data).

function logSoftmax(x) {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return { lse, lp: x.map((v) => v - lse) };
}

function row(values, r, vocab) {
  return Array.from(values.subarray(r * vocab, (r + 1) * vocab), Number);
}

/**
 * torch.nn.functional.cross_entropy(weight, label_smoothing) on x = softcap(scale·z), plus z-loss,
 * and the statistics. Returns per-row losses, lse, the reduced loss and zLoss, the gradient
 * d(loss)/dz (Float64Array, rows·vocab) and per-row stats.
 */
export function refCrossEntropy(values, rows, vocab, targets, o = {}) {
  const { ignoreIndex = -100, labelSmoothing: eps = 0, weight, zLoss: c = 0, softcap, logitScale: s = 1, reduction = 'mean', focalGamma: gamma = 0 } = o;
  // focal loss (no smoothing, no z-loss): ce = w_t·(1 − p_t)^γ·nll, dce/dx_j = w_t·κ·(p_j − [j = t])
  const focal = (nll) => {
    if (!gamma) return { loss: 1, grad: 1 };
    const q = -Math.expm1(-nll), pt = Math.exp(-nll);
    if (!(q > 0)) return { loss: 0, grad: 0 };
    const qg = Math.pow(q, gamma);
    return { loss: qg, grad: qg * (1 + (gamma * pt * nll) / q) };
  };
  const w = (j) => (weight ? weight[j] : 1);
  const W = weight ? weight.reduce((a, b) => a + b, 0) : vocab;
  const losses = new Float64Array(rows), lse = new Float64Array(rows), ce = new Float64Array(rows), zl = new Float64Array(rows);
  const stats = { argmax: new Int32Array(rows).fill(-1), entropy: new Float64Array(rows), targetLogprob: new Float64Array(rows), maxProb: new Float64Array(rows) };
  const grad = new Float64Array(rows * vocab);
  let N = 0, D = 0;
  const xs = [];
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) { xs.push(null); continue; }
    N++;
    D += w(t);
    const z = row(values, r, vocab);
    const x = z.map((v) => (softcap ? softcap * Math.tanh((s * v) / softcap) : s * v));
    xs.push({ x, z });
    const { lse: L, lp } = logSoftmax(x);
    lse[r] = L;
    let smooth = 0;
    for (let j = 0; j < vocab; j++) smooth -= w(j) * lp[j];
    ce[r] = (1 - eps) * w(t) * -lp[t] * focal(-lp[t]).loss + (eps / vocab) * smooth;
    zl[r] = c * L * L;
    losses[r] = ce[r] + zl[r];
    let best = 0;
    let H = 0;
    for (let j = 0; j < vocab; j++) {
      if (x[j] > x[best]) best = j;
      const p = Math.exp(lp[j]);
      if (p > 0) H -= p * lp[j];
    }
    stats.argmax[r] = best;
    stats.entropy[r] = H;
    stats.targetLogprob[r] = lp[t];
    stats.maxProb[r] = Math.exp(lp[best]);
  }
  const mean = reduction === 'mean';
  // torch's weighted mean divides by Σ w[target] of any sign (0 when it is 0: torch gives NaN)
  const ceNorm = mean ? (D !== 0 ? 1 / D : 0) : 1, zNorm = mean ? (N > 0 ? 1 / N : 0) : 1;
  const ceSum = ce.reduce((a, b) => a + b, 0), zSum = zl.reduce((a, b) => a + b, 0);
  for (let r = 0; r < rows; r++) {
    const e = xs[r];
    if (!e) continue;
    const t = targets[r];
    const { x, z } = e;
    const L = lse[r];
    const kappa = focal(L - x[t]).grad;
    const A = ceNorm * ((1 - eps) * w(t) * kappa + (eps / vocab) * W) + zNorm * 2 * c * L;
    for (let j = 0; j < vocab; j++) {
      const p = Math.exp(x[j] - L);
      let g = A * p - ceNorm * (eps / vocab) * w(j) - (j === t ? ceNorm * (1 - eps) * w(t) * kappa : 0);
      let d = s;
      if (softcap) { const th = Math.tanh((s * z[j]) / softcap); d = s * (1 - th * th); }
      grad[r * vocab + j] = g * d;
    }
  }
  return { losses, lse, grad, stats, N, D, loss: ceSum * ceNorm + zSum * zNorm, zLoss: zSum * zNorm };
}

/**
 * Soft cross-entropy / KL from logits z and a target (logits u, or probabilities q) at temperature T.
 * op: 'soft' | 'klForward' | 'klReverse'; factor multiplies the soft CE (T² with tSquared).
 */
export function refSoft(values, target, rows, vocab, { op = 'soft', T = 1, probs = false, factor = 1, reduction = 'mean' } = {}) {
  const losses = new Float64Array(rows), lse = new Float64Array(rows), grad = new Float64Array(rows * vocab);
  const counted = [];
  for (let r = 0; r < rows; r++) {
    const x = row(values, r, vocab).map((v) => v / T);
    const { lse: Lx, lp } = logSoftmax(x);
    let lq, q;
    if (probs) {
      q = row(target, r, vocab);
      lq = q.map((v) => Math.log(v));
    } else {
      const y = row(target, r, vocab).map((v) => v / T);
      lq = logSoftmax(y).lp;
      q = lq.map(Math.exp);
    }
    const qs = q.reduce((a, b) => a + b, 0);
    if (probs && qs === 0) continue;
    counted.push(r);
    lse[r] = Lx;
    const p = lp.map(Math.exp);
    let loss = 0;
    for (let j = 0; j < vocab; j++) {
      if (op === 'soft') { if (q[j] > 0) loss -= q[j] * lp[j]; }
      else if (op === 'klForward') { if (q[j] > 0) loss += q[j] * (lq[j] - lp[j]); }
      else if (p[j] > 0) loss += p[j] * (lp[j] - lq[j]);
    }
    if (op === 'soft') loss *= factor;
    losses[r] = loss;
    for (let j = 0; j < vocab; j++) {
      let g;
      if (op === 'soft') g = (factor * (qs * p[j] - q[j])) / T;
      else if (op === 'klForward') g = (p[j] - q[j]) / T;
      else g = p[j] > 0 ? (p[j] * (lp[j] - lq[j] - loss)) / T : 0;
      grad[r * vocab + j] = g;
    }
  }
  const sum = counted.reduce((a, r) => a + losses[r], 0);
  const n = counted.length;
  const scale = reduction === 'mean' ? (n > 0 ? 1 / n : 0) : 1;
  for (let i = 0; i < grad.length; i++) grad[i] *= scale;
  return { losses, lse, grad, count: n, loss: sum * scale };
}

export function refEntropy(values, rows, vocab, T = 1) {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const { lp } = logSoftmax(row(values, r, vocab).map((v) => v / T));
    let H = 0;
    for (const l of lp) { const p = Math.exp(l); if (p > 0) H -= p * l; }
    out[r] = H;
  }
  return out;
}

/** torch BCEWithLogitsLoss: elementwise losses, reduced loss, and d(loss)/dx. */
export function refBce(values, y, rows, vocab, { posWeight = 1, weight, reduction = 'mean' } = {}) {
  const n = rows * vocab;
  const losses = new Float64Array(n), grad = new Float64Array(n);
  const scale = reduction === 'mean' ? 1 / n : 1;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = Number(values[i]), t = y[i], j = i % vocab;
    const pw = typeof posWeight === 'number' ? posWeight : posWeight[j];
    const w = weight ? (weight.length === n ? weight[i] : weight[j]) : 1;
    const lw = 1 + (pw - 1) * t;
    const sp = Math.log1p(Math.exp(-Math.abs(x))) + Math.max(-x, 0);
    losses[i] = w * ((1 - t) * x + lw * sp);
    sum += losses[i];
    grad[i] = scale * w * ((1 - t) - lw / (1 + Math.exp(x)));
  }
  return { losses, grad, loss: sum * scale };
}

/** max_i |a_i − b_i| / (atol + rtol·|b_i|): ≤ 1 means within tolerance. */
export function worstRatio(a, b, atol, rtol) {
  let worst = 0, at = -1;
  for (let i = 0; i < b.length; i++) {
    const r = Math.abs(Number(a[i]) - Number(b[i])) / (atol + rtol * Math.abs(Number(b[i])));
    if (!(r <= worst)) { worst = r; at = i; }
  }
  return { worst, at };
}
