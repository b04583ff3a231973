// Block helpers for the loss family's CPU kernels (cross_entropy_options.cpp,
// soft_cross_entropy.cpp, binary_cross_entropy.cpp).
//
// A row is still cut into the fixed kBlock blocks of the plain kernels (for_each_piece), so every
// result is independent of the thread count. Each block is widened to fp32 into a thread's own
// L1-resident buffer, transformed there (logit scale, softcap, 1/temperature), and exponentiated
// by the active ISA's vectorised exp (Kernels::exp, ≤ 2 ulp). Sums over a block are taken in
// double over 16 interleaved lanes (lane_sum), folded across blocks in double in block order.
//
// These kernels pay for their generality: a widen pass, a transform pass and an exp pass over L1
// instead of one fused loop. The plain cross-entropy (no option set) never comes here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "dtype.h"
#include "fusedce.h"

namespace fusedce {

// x[j] = float(z[j]) for j in [0, n).              z: (n,) of dt;  x: (n,) fp32
inline void widen(const void* z, DType dt, int64_t n, float* x) {
  switch (dt) {
    case DType::F32: {
      const auto* p = static_cast<const float*>(z);
      for (int64_t j = 0; j < n; ++j) x[j] = p[j];
      break;
    }
    case DType::BF16: {
      const auto* p = static_cast<const uint16_t*>(z);
      for (int64_t j = 0; j < n; ++j) x[j] = bits_to_float(uint32_t(p[j]) << 16);
      break;
    }
    case DType::F16: {
      const auto* p = static_cast<const uint16_t*>(z);
      for (int64_t j = 0; j < n; ++j) x[j] = f16_to_float(p[j]);
      break;
    }
  }
}

// g[j] = v[j] converted to dt, for j in [0, n).     v: (n,) fp32;  g: (n,) of dt
inline void narrow(const float* v, DType dt, int64_t n, void* g) {
  switch (dt) {
    case DType::F32: {
      auto* p = static_cast<float*>(g);
      for (int64_t j = 0; j < n; ++j) p[j] = v[j];
      break;
    }
    case DType::BF16: {
      auto* p = static_cast<uint16_t*>(g);
      for (int64_t j = 0; j < n; ++j) p[j] = float_to_bf16(v[j]);
      break;
    }
    case DType::F16: {
      auto* p = static_cast<uint16_t*>(g);
      for (int64_t j = 0; j < n; ++j) p[j] = float_to_f16(v[j]);
      break;
    }
  }
}

// Max of x[0, n), NaN-propagating (a NaN, once seen, is the result); −inf for n = 0.
inline float max_of(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    if (x[j] != x[j]) return x[j];
    m = x[j] > m ? x[j] : m;
  }
  return m;
}

// Σ_j f(j) for j in [0, n) in double over kLanes interleaved lanes (element j in lane j mod 16),
// lanes reduced pairwise. The order is fixed by n alone. Double rather than the plain kernels'
// fp32: these sums feed losses that users difference (finite-difference gradient checks), and
// an fp32 sum's rounding (~1e-7 relative) divided by a step of 1e-2 would swamp small gradients.
template <class F>
inline double lane_sum(int64_t n, F&& f) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += double(f(j + l));
  for (int l = 0; j < n; ++j, ++l) acc[l] += double(f(j));
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// e[j] = exp(x[j] − m) for j in [0, n) with the ISA's exp. x and e may be the same buffer.
inline void exp_shifted(const Kernels& k, const float* x, float m, int64_t n, float* e) {
  for (int64_t j = 0; j < n; ++j) e[j] = x[j] - m;
  k.exp(e, e, n);
}

// A thread's block buffers (kBlock fp32 each), kept between calls.
struct BlockBuffers {
  float a[kBlock], b[kBlock], c[kBlock], d[kBlock];
};
inline BlockBuffers& block_buffers() {
  thread_local BlockBuffers buf;
  return buf;
}

// Rows per task for a parallel_for over rows: enough that a task streams ≥ 64K elements.
inline int64_t loss_rows_per_task(int64_t vocab) {
  return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, vocab));
}

}  // namespace fusedce
