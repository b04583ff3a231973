// The per-row math every CPU op shares: folding block partials in order (double), finishing a
// row's lse and target loss without cancellation, and the fixed partition of a row into blocks.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "fusedce.h"
#include "thread_pool.h"

namespace fusedce {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Gradients at least this large are written with non-temporal stores by the fused paths' last
// pass (scale_store and the family's gradient stores), which is otherwise bound by reading each
// line into the cache before writing it. Smaller ones stay in the cache, where the caller will
// read them.
constexpr double kStreamBytes = 8.0 * (1 << 20);
inline bool stream_gradient(int64_t rows, int64_t vocab, DType gdt) {
  return double(rows) * double(vocab) * double(dtype_size(gdt)) >= kStreamBytes;
}

// The block partials (m_b, s_b) of a row folded in order, in double:
//   M' = max(M, m_b),  S' = S·exp(M − M') + s_b·exp(m_b − M').
// A NaN partial (a NaN logit, or +inf which makes s_b = inf − inf) poisons the fold. Fully
// masked blocks (all −inf: s_b = 0) add nothing.
struct Fold {
  double M = -kInf, S = 0.0;
  bool nan = false;
  void add(Partial p) { add(p.m, double(p.s)); }
  void add(float m, double s) {  // a partial whose sum was taken in double
    if (s != s) nan = true;
    if (nan || s == 0.0) return;
    if (double(m) > M) {
      S = S * std::exp(M - double(m)) + s;
      M = m;
    } else {
      S += s * std::exp(double(m) - M);
    }
  }
};

struct RowForward {
  double lse, loss;
};

// One row's lse and loss. The target element is kept out of the fp32 block sums (its block is
// split around t), so with M = max(max_{j≠t} z_j, z_t), S≠t = Σ_{j≠t} exp(z_j − M) and
// e_t = exp(z_t − M):
//   lse  = M + log(S≠t + e_t)
//   loss = lse − z_t = log(1 + S≠t / e_t)          (log1p: no cancellation)
// For a confident prediction the loss is ≈ S≠t/e_t ≪ 1; lse − z_t would cancel to the fp32
// rounding of the block sum 1 + S≠t (≈ 6e-8 absolute), whatever the loss's size.
// zt = NaN or +inf, or an all −inf row, gives NaN; zt = −inf alone gives loss +inf.
// lse and loss from the fold of the non-target elements and the target logit (see above).
inline RowForward finish(const Fold& f, float zt) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (f.nan || zt != zt) return {nan, nan};
  const double M = std::max(f.M, double(zt));
  const double others = f.S == 0.0 ? 0.0 : f.S * std::exp(f.M - M);
  const double et = std::exp(double(zt) - M);  // NaN when M = zt = ±inf: the NaN row we want
  return {M + std::log(others + et), std::log1p(others / et)};
}

// Whether a pass spreads each row's blocks over the pool instead of giving each row to one thread:
// fewer rows than two per thread (threads capped at the machine's), and at least two blocks a row.
// The plain driver (cross_entropy.cpp) and binary CE use it. Each block's work and the in-order
// fold of a row's block results are the same either way, so the choice never changes a bit.
inline bool split_rows(int64_t rows, int64_t vocab, int threads) {
  const int t = std::max(1, std::min(threads, hardware_threads()));
  return t > 1 && vocab >= 2 * kBlock && rows < 2 * int64_t(t);
}

// Calls piece(offset, n) for the row's blocks, the target's block split around t (so the target
// never enters an fp32 block sum). The partition depends only on vocab and t.
template <class PieceFn>
inline void for_each_piece(int64_t vocab, int64_t t, PieceFn&& piece) {
  for (int64_t b0 = 0; b0 < vocab; b0 += kBlock) {
    const int64_t b1 = std::min(vocab, b0 + kBlock);
    if (t >= b0 && t < b1) {
      if (t > b0) piece(b0, t - b0);
      if (b1 > t + 1) piece(t + 1, b1 - t - 1);
    } else {
      piece(b0, b1 - b0);
    }
  }
}

// The focal loss's factors of a row with nll = lse − x_t (fusedce.h, CeOptions): (1 − p_t)^γ for
// the loss, κ for the gradient. q = 1 − p_t = −expm1(−nll) keeps its digits as p_t → 1.
struct Focal {
  double loss, grad;
};
inline Focal focal_factors(double gamma, double nll) {
  if (gamma == 0.0) return {1.0, 1.0};
  const double q = -std::expm1(-nll), pt = std::exp(-nll);
  if (!(q > 0.0)) return {0.0, 0.0};  // p_t = 1: no loss, no gradient (γ > 0)
  const double qg = std::pow(q, gamma);
  return {qg, qg * (1.0 + gamma * pt * nll / q)};
}

}  // namespace fusedce
