// Binary cross-entropy from logits, CPU (torch.nn.BCEWithLogitsLoss semantics; math in fusedce.h
// above BceArgs). Elementwise and stable for any |x|: e^{−|x|} ≤ 1 is the only exp taken (the
// ISA's vectorised exp over an L1 block) and log1p(e^{−|x|}) never overflows; the loss and the
// gradient are rewritten per sign of x so that no two large terms cancel (below).
// Reads x, y (and the weights) once; writes the losses and the gradient once each.
#include <algorithm>
#include <cmath>
#include <vector>

#include "dtype.h"
#include "fusedce.h"
#include "loss_rows.h"
#include "row_math.h"
#include "thread_pool.h"

namespace fusedce {
namespace {

// One block's losses and gradients (see the file comment); ISA clones (FUSEDCE_CLONES).
//   x: logits, e: e^{−|x|}, y: targets, pwb: pos weights, wb: weights, all (n,); l, g: (n,) out
// (__restrict: without it the compiler needs more run-time overlap checks than it will emit, and
// leaves the loop scalar.)
FUSEDCE_CLONES void bce_block(const float* __restrict x, const float* __restrict e, const float* __restrict yb,
                              const float* __restrict pwb, const float* __restrict wb, int64_t n,
                              float* __restrict l, float* __restrict g) {
  for (int64_t j = 0; j < n; ++j) {
    const float yj = yb[j], pw = pwb[j], wj = wb[j];
    const float lw = 1.0f + (pw - 1.0f) * yj;
    // l = (1 − y)·x + lw·softplus(−x) with softplus(−x) = max(−x, 0) + log1p(e^{−|x|}); since
    // 1 − y − lw = −pw·y, for x < 0 this is pw·y·|x| + lw·log1p(e^{−|x|}): both forms are sums
    // of non-negative terms, so nothing cancels.
    // log1p(e1), e1 ∈ (0, 1], ≤ 2 ulp: 2·atanh(s), s = e1/(2 + e1) ∈ (0, 1/3], as
    // 2·s·(1 + s²/3 + … + s¹⁴/15) (the next term is < 2e-9 relative)
    const float e1 = e[j], s = e1 / (2.0f + e1), s2 = s * s;
    float q = 1.0f / 15;
    q = q * s2 + 1.0f / 13;
    q = q * s2 + 1.0f / 11;
    q = q * s2 + 1.0f / 9;
    q = q * s2 + 1.0f / 7;
    q = q * s2 + 1.0f / 5;
    q = q * s2 + 1.0f / 3;
    q = q * s2 + 1.0f;
    const float L = 2.0f * s * q;
    const bool pos = x[j] >= 0.0f;
    const float lin_pos = (1.0f - yj) * x[j], lin_neg = -pw * yj * x[j];
    l[j] = wj * ((pos ? lin_pos : lin_neg) + lw * L);
    // dl/dx = (1 − y) − lw·σ(−x) = ((1 − y)·a − pw·y·b)/(1 + e^{−|x|}), (a, b) = (1, e) for x ≥ 0
    // and (e, 1) for x < 0. (Selects between computed values, no branches: it vectorises.)
    const float av = pos ? 1.0f : e1, bv = pos ? e1 : 1.0f;
    g[j] = wj * ((1.0f - yj) * av - pw * yj * bv) / (1.0f + e1);
  }
}

}  // namespace

double bce_forward(const BceArgs& a, const BceOut& out) {
  const Kernels& k = active_kernels();
  const size_t V = size_t(a.vocab);
  CountedRows<1> parts(a.rows);  // every row counts
  const auto fast = k.bce_block[int(a.dtype)][int(out.grad.data ? out.grad.dtype : DType::F32)];
  // no weights and a posWeight of 1: fast gets nullptr for both, which it takes as all ones
  // without reading them
  const bool unit = !a.pos_weight && a.pos_weight_scalar == 1.0f && !a.weight;
  // Σ_j l_j over block b of row r (and its losses and gradient written), in double lanes
  auto block_sum = [&](int64_t r, int64_t b) -> double {
    BlockBuffers& buf = block_buffers();
    float *x = buf.a, *e = buf.b, *l = buf.c, *g = buf.d;
    // Absent weights are read from constant blocks, so the element loop has no branch on them
    // (filled again only when a call's scalar posWeight differs from the thread's last one).
    thread_local float pw_const[kBlock], w_const[kBlock];
    thread_local bool filled = false;
    thread_local float pw_filled = 0.0f;
    if (!filled || !(pw_filled == a.pos_weight_scalar)) {
      std::fill(pw_const, pw_const + kBlock, a.pos_weight_scalar);
      std::fill(w_const, w_const + kBlock, 1.0f);
      pw_filled = a.pos_weight_scalar;
      filled = true;
    }
    const char* z = static_cast<const char*>(a.logits) + size_t(r) * V * dtype_size(a.dtype);
    const float* y = a.targets + size_t(r) * V;
    const float* w = a.weight ? (a.weight_per_class ? a.weight : a.weight + size_t(r) * V) : nullptr;
    const int64_t b0 = b * kBlock, n = std::min(kBlock, a.vocab - b0);
    if (fast)  // the same loop in one pass from z, where the ISA has it (bitwise this one)
      return fast(z + size_t(b0) * dtype_size(a.dtype), y + b0,
                  unit ? nullptr : a.pos_weight ? a.pos_weight + b0 : pw_const, unit ? nullptr : w ? w + b0 : w_const, n,
                  out.losses ? out.losses + size_t(r) * V + size_t(b0) : nullptr,
                  out.grad.data ? static_cast<char*>(out.grad.data) + (size_t(r) * V + size_t(b0)) * dtype_size(out.grad.dtype)
                                : nullptr,
                  out.grad.scale);
    widen(z + size_t(b0) * dtype_size(a.dtype), a.dtype, n, x);
    for (int64_t j = 0; j < n; ++j) e[j] = -std::fabs(x[j]);
    k.exp(e, e, n);  // e^{−|x|} in (0, 1]
    const float* pwb = a.pos_weight ? a.pos_weight + b0 : pw_const;
    const float* wb = w ? w + b0 : w_const;
    const float* yb = y + b0;
    bce_block(x, e, yb, pwb, wb, n, l, g);
    const double sum = lane_sum_f64(n, [&](int64_t j) { return l[j]; });
    if (out.losses) std::copy(l, l + n, out.losses + size_t(r) * V + size_t(b0));
    if (out.grad.data) {
      const float s = out.grad.scale;
      for (int64_t j = 0; j < n; ++j) g[j] *= s;
      narrow(g, out.grad.dtype, n, static_cast<char*>(out.grad.data) + (size_t(r) * V + size_t(b0)) * dtype_size(out.grad.dtype));
    }
    return sum;
  };
  const int64_t nb = (a.vocab + kBlock - 1) / kBlock;
  if (split_rows(a.rows, a.vocab, a.threads)) {
    // few rows: the blocks over the pool, then each row's block sums added in block order
    std::vector<double> sums(size_t(a.rows * nb), 0.0);
    for_each_block(a.rows, a.vocab, a.threads, [&](int64_t r, int64_t b) { sums[size_t(r * nb + b)] = block_sum(r, b); });
    for (int64_t r = 0; r < a.rows; ++r) {
      double sum = 0.0;
      for (int64_t b = 0; b < nb; ++b) sum += sums[size_t(r * nb + b)];
      parts.count(r, {sum});
    }
  } else {
    for_each_row(a.rows, a.vocab, a.threads, [&](int64_t r) {
      double sum = 0.0;
      for (int64_t b = 0; b < nb; ++b) sum += block_sum(r, b);
      parts.count(r, {sum});
    });
  }
  return parts.totals().sum[0];
}

}  // namespace fusedce
