// Block helpers for the loss family's CPU kernels (cross_entropy_options.cpp,
// soft_cross_entropy.cpp, binary_cross_entropy.cpp).
//
// A row is still cut into the fixed kBlock blocks of the plain kernels (for_each_piece), so every
// result is independent of the thread count. Each block is widened to fp32 into a thread's own
// L1-resident buffer, transformed there (logit scale, softcap, 1/temperature), and exponentiated
// by the active ISA's vectorised exp (Kernels::exp, ≤ 2 ulp). Sums over a block are fp32 lanes
// per 256-element chunk, added in double (lane_sum), and folded across blocks in double in block
// order.
//
// These loops pay for their generality: a widen pass, a transform pass and an exp pass over L1
// instead of one fused loop. Where the ISA has them, the family's block kernels (fusedce.h, Kernels:
// partial_smooth, partial_entropy, partial_pair, partial_probs, bce_block and their gradient stores)
// do the same work in one loop; softcap, the statistics and the JSD still come here.
#pragma once

#include <vector>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "dtype.h"
#include "fusedce.h"
#include "thread_pool.h"

namespace fusedce {

// x[j] = float(z[j]) for j in [0, n), vectorised (cpp/loss_rows.cpp).   z: (n,) of dt;  x: (n,) fp32
void widen_block(const void* z, DType dt, int64_t n, float* x);
inline void widen(const void* z, DType dt, int64_t n, float* x) {
  if (n == 1) {  // single elements (a target's logit): no call through the clones' resolver
    x[0] = dt == DType::F32 ? *static_cast<const float*>(z)
         : dt == DType::BF16 ? bits_to_float(uint32_t(*static_cast<const uint16_t*>(z)) << 16)
                             : f16_to_float(*static_cast<const uint16_t*>(z));
    return;
  }
  widen_block(z, dt, n, x);
}

// x ← s·x, then (c > 0) x ← c·tanh(x/c) (softcap), and with d, d = dx/dz = s·(1 − tanh²) (s alone
// without softcap); vectorised (cpp/loss_rows.cpp).   x, d: (n,) fp32;  t: (n,) scratch
void scale_softcap_block(const Kernels& k, float* x, int64_t n, float s, float c, float* t, float* d);

// g[j] = (w ? fma(−β, w[j], e[j]·c) : e[j]·c − β)·(d ? d[j] : 1), converted to gdt, for j in [0, n):
// the options' gradient store, bitwise Kernels::scale_sub_mul_store (cpp/loss_rows.cpp).
//   e, d, w: (n,) fp32 (d, w may be nullptr);  v: (n,) fp32 scratch, may be e;  g: (n,) of gdt
void sub_mul_store_block(const float* e, const float* d, const float* w, int64_t n, float c, float beta, float* v,
                         DType gdt, void* g);

// g[j] = v[j] converted to dt, for j in [0, n), vectorised (cpp/loss_rows.cpp).   v: (n,) fp32;  g: (n,) of dt
void narrow_block(const float* v, DType dt, int64_t n, void* g);
inline void narrow(const float* v, DType dt, int64_t n, void* g) {
  if (n == 1) {  // single elements (a target's gradient): no call through the clones' resolver
    if (dt == DType::F32) *static_cast<float*>(g) = v[0];
    else *static_cast<uint16_t*>(g) = dt == DType::BF16 ? float_to_bf16(v[0]) : float_to_f16(v[0]);
    return;
  }
  narrow_block(v, dt, n, g);
}

// Σ_j f(j) for j in [0, n): fp32 over kLanes interleaved lanes (element j in lane j mod 16) for
// each chunk of 256 elements, the chunks' lanes added in double, the double lanes reduced
// pairwise. The order is fixed by n alone. Why not all in fp32 like the plain kernels: these sums
// feed losses that users difference (finite-difference gradient checks), and the rounding of a
// whole block's fp32 sum (~1e-7 of it), divided by a step of 1e-2, swamps small gradients; a
// chunk's rounding is ~256/4096 of that. Why not all in double: that halves the vector width.
template <class F>
inline double lane_sum(int64_t n, F&& f) {
  constexpr int64_t kChunk = 16 * kLanes;
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kChunk <= n; j += kChunk) {
    float c[kLanes] = {};
    for (int64_t i = 0; i < kChunk; i += kLanes)
      for (int l = 0; l < kLanes; ++l) c[l] += f(j + i + l);
    for (int l = 0; l < kLanes; ++l) acc[l] += double(c[l]);
  }
  {
    float c[kLanes] = {};
    for (int l = 0; j < n; ++j, l = (l + 1) % kLanes) c[l] += f(j);
    for (int l = 0; l < kLanes; ++l) acc[l] += double(c[l]);
  }
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// Σ_j f(j) for j in [0, n) in double over kLanes interleaved lanes, reduced pairwise: for sums
// whose every term is of the order of the total (elementwise losses), where even a 256-element
// fp32 chunk would round by more than a finite-difference step can see.
template <class F>
inline double lane_sum_f64(int64_t n, F&& f) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += double(f(j + l));
  for (int l = 0; j < n; ++j, ++l) acc[l] += double(f(j));
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// y[j] = tanh(u[j]) for j in [0, n), ≤ 3 ulp, vectorised (cpp/loss_rows.cpp); t: (n,) scratch;
// with sech2 (or nullptr), also sech2[j] = 1 − tanh²(u[j]) to a few ulps.
void tanh_block(const Kernels& k, const float* u, int64_t n, float* y, float* t, float* sech2 = nullptr);

// The JSD's per-call constants in fp32 (soft_cross_entropy.cpp, jsd_forward).
struct JsdConsts {
  float beta, gamma;    // the weights of p and of q (γ = 1 − β, rounded from double)
  float lx_hi, lx_lo;   // lse of x, and of y, each in two parts (hi = float(lse), lo the rest)
  float ly_hi, ly_lo;
  float delta;          // float(lse_x − lse_y)
};
// The JSD's element terms of one block in fp32, as a sum of non-negative parts (cpp/loss_rows.cpp
// has the math). The exps are the ISA's (k.exp).
//   z, u: (n,) fp32 (the logits, widened, not scaled);  s = 1/T;  term: (n,) out;
//   q, lqm: (n,) out (q_j and log(q_j/m_j)), or nullptr
void jsd_terms_f32(const Kernels& k, const float* z, const float* u, int64_t n, float s, const JsdConsts& c, float* term,
                   float* q, float* lqm);
// g[j] = c·q[j]·(lqm[j] − kl), 0 where q[j] = 0.   q, lqm, g: (n,) fp32
void jsd_grad_f32(const float* q, const float* lqm, int64_t n, float c, float kl, float* g);

// The JSD's element terms of one block in double, by libm, for β below the smallest normal float
// (cpp/loss_rows.cpp has the math):
//   x, y: (n,) fp32 (z/T, u/T);  term, kl: (n,) double out;  qrow, lrow: (n,) double out, or nullptr
void jsd_terms(const float* x, const float* y, int64_t n, double lx, double ly, double beta, double* term, double* kl,
               double* qrow, double* lrow);

// On x86-64 Linux with GCC or Clang, the hot element loops of the loss family are built for
// AVX-512, AVX2 and baseline x86-64, the best chosen once at load time (ifunc). The clones run
// the same operations in the same order (the build turns FMA contraction off), so the results do
// not depend on which one runs. A clone cannot inline a helper built for the baseline target, so
// cloned loops keep their arithmetic in their own body.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define FUSEDCE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
// For loops that ask for fused multiply-adds by std::fma (the JSD's terms): the x86-64-v4 and v3
// levels include FMA, so there each std::fma is one vfmadd; the baseline clone calls fmaf, which
// rounds the same (once), so the bits are still the same whichever clone runs.
#define FUSEDCE_CLONES_FMA __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FUSEDCE_CLONES
#define FUSEDCE_CLONES_FMA
#endif

// A thread's block buffers (kBlock fp32 each), kept between calls. Out of line (loss_rows.cpp) on
// purpose: inlined, GCC re-derived the thread_local address of a buffer inside element loops that
// store to it (a __tls_get_addr call every 4 elements in the options' gradient, ~10% of a fused
// softcap call); from an opaque call the buffer is a plain pointer.
struct BlockBuffers {
  float a[kBlock], b[kBlock], c[kBlock], d[kBlock];
};
BlockBuffers& block_buffers();

// Rows per task for a parallel_for over rows: enough that a task streams ≥ 64K elements.
inline int64_t loss_rows_per_task(int64_t vocab) {
  return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, vocab));
}

// The loss family's row driver (options, soft targets, KL, entropy, BCE; the plain
// cross-entropy has its own, which also splits single rows across threads): fn(r) for every row
// r in [0, rows), in tasks of loss_rows_per_task(vocab) consecutive rows claimed from the pool.
// Which thread runs a row is unspecified; fn writes only row r's outputs.
template <class Fn>
void for_each_row(int64_t rows, int64_t vocab, int threads, Fn&& fn) {
  const int64_t rpt = loss_rows_per_task(vocab);
  parallel_for((rows + rpt - 1) / rpt, threads, [&](int64_t task) {
    for (int64_t r = task * rpt; r < std::min(rows, (task + 1) * rpt); ++r) fn(r);
  });
}

// fn(r, b) for block b (elements [b·kBlock, min(vocab, (b + 1)·kBlock))) of every row r, each
// (row, block) a task claimed from the pool (for passes where split_rows, row_math.h, says so).
// fn writes only that block's outputs.
template <class Fn>
void for_each_block(int64_t rows, int64_t vocab, int threads, Fn&& fn) {
  const int64_t nb = (vocab + kBlock - 1) / kBlock;
  parallel_for(rows * nb, threads, [&](int64_t task) { fn(task / nb, task % nb); });
}

// The per-row losses of a pass (K parts a row: the cross-entropy and the z-loss for the options,
// one elsewhere), kept until the pass ends and then summed over the rows that count, in row
// order, in double: the totals are bitwise the same for any thread count.
template <int K>
class CountedRows {
 public:
  explicit CountedRows(int64_t rows) : part_(size_t(rows) * K, 0.0), counted_(size_t(rows), 0) {}
  // Row r counts, with these parts (called once per counted row, from any thread).
  void count(int64_t r, const double (&parts)[K]) {
    for (int k = 0; k < K; ++k) part_[size_t(r) * K + k] = parts[k];
    counted_[size_t(r)] = 1;
  }
  struct Totals {
    double sum[K];
    int64_t count;
  };
  Totals totals() const {
    Totals t{};
    for (size_t r = 0; r < counted_.size(); ++r) {
      if (!counted_[r]) continue;
      for (int k = 0; k < K; ++k) t.sum[k] += part_[r * K + k];
      ++t.count;
    }
    return t;
  }

 private:
  std::vector<double> part_;
  std::vector<uint8_t> counted_;
};

}  // namespace fusedce
