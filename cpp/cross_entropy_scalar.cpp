// Cross-entropy, portable scalar kernels (any CPU). The reference path: the tests compare every
// other backend against the float64 reference *and* this one runs on every machine.
//
// Contract (see fusedce.h): per fixed block of ≤ kBlock elements,
//   partial: m = max z (NaN-propagating), s = Σ_j exp(z_j − m) in fp32 over kLanes interleaved
//            lanes, lanes added pairwise at the end; reads the block twice (the second time from L1).
//   grad:    g_j = exp(z_j − lse) · scale, returns Σ_j exp(z_j − lse) (fp32 lanes, same order).
// exp is the C library's expf (< 1 ulp).
#include <cmath>
#include <limits>

#include "dtype.h"
#include "fusedce.h"

namespace fusedce {
namespace {

// Pairwise sum of the lanes: ((0+1)+(2+3)) + … , a fixed order.
inline float reduce_lanes(float* acc) {
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// One block: the max (keeping a NaN once seen: x > m is false for NaN), then Σ exp(z − m) over
// the lanes, and with Store each exp also written to e (the fused path's scratch). Scaled: of
// x = sc·z, each product rounded to fp32 (the logit scale on the plain path).
template <DType D, bool Store, bool Scaled = false>
Partial partial_impl(const void* zv, int64_t n, float* e, float sc = 1.0f) {
  using E = Elem<D>;
  const auto* z = static_cast<const typename E::T*>(zv);
  const auto load = [&](int64_t j) { return Scaled ? E::load(z[j]) * sc : E::load(z[j]); };
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    const float x = load(j);
    if (x > m || x != x) m = x;
    if (m != m) break;
  }
  if (m != m || m == -std::numeric_limits<float>::infinity()) {  // NaN, or a fully masked block
    if (Store)
      for (int64_t j = 0; j < n; ++j) e[j] = m != m ? m : 0.0f;
    return {m, m != m ? m : 0.0f};
  }
  float acc[kLanes] = {};
  for (int64_t j = 0; j < n; ++j) {
    const float x = std::exp(load(j) - m);  // inf − inf → NaN
    acc[j % kLanes] += x;
    if (Store) e[j] = x;
  }
  return {m, reduce_lanes(acc)};
}

template <DType D>
Partial partial_scalar(const void* z, int64_t n) {
  return partial_impl<D, false>(z, n, nullptr);
}
template <DType D>
Partial partial_store_scalar(const void* z, int64_t n, float* e) {
  return partial_impl<D, true>(z, n, e);
}

template <DType D>
Partial partial_scaled_scalar(const void* z, int64_t n, float s) {
  return partial_impl<D, false, true>(z, n, nullptr, s);
}
template <DType D>
Partial partial_store_scaled_scalar(const void* z, int64_t n, float* e, float s) {
  return partial_impl<D, true, true>(z, n, e, s);
}

template <DType DOut>
void scale_store_scalar(const float* e, void* gv, int64_t n, float c, bool /*stream*/) {
  auto* g = static_cast<typename Elem<DOut>::T*>(gv);
  for (int64_t j = 0; j < n; ++j) g[j] = Elem<DOut>::store(e[j] * c);
}

template <DType DIn, DType DOut>
float grad_scalar(const void* zv, void* gv, int64_t n, float lse, float scale) {
  using EI = Elem<DIn>;
  using EO = Elem<DOut>;
  const auto* z = static_cast<const typename EI::T*>(zv);
  auto* g = static_cast<typename EO::T*>(gv);
  float acc[kLanes] = {};
  for (int64_t j = 0; j < n; ++j) {
    const float p = std::exp(EI::load(z[j]) - lse);  // read z[j] before g[j] is written (in-place)
    acc[j % kLanes] += p;
    g[j] = EO::store(p * scale);
  }
  return reduce_lanes(acc);
}


void exp_scalar(const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = std::exp(x[j]);
}

const Kernels kScalar = {
    "scalar",
    {partial_scalar<DType::F32>, partial_scalar<DType::F16>, partial_scalar<DType::BF16>},
    {
        {grad_scalar<DType::F32, DType::F32>, grad_scalar<DType::F32, DType::F16>, grad_scalar<DType::F32, DType::BF16>},
        {grad_scalar<DType::F16, DType::F32>, grad_scalar<DType::F16, DType::F16>, grad_scalar<DType::F16, DType::BF16>},
        {grad_scalar<DType::BF16, DType::F32>, grad_scalar<DType::BF16, DType::F16>, grad_scalar<DType::BF16, DType::BF16>},
    },
    {partial_store_scalar<DType::F32>, partial_store_scalar<DType::F16>, partial_store_scalar<DType::BF16>},
    {scale_store_scalar<DType::F32>, scale_store_scalar<DType::F16>, scale_store_scalar<DType::BF16>},
    exp_scalar,
    {},  // partial_store_write: none (the caller writes the pending span itself)
    {partial_scaled_scalar<DType::F32>, partial_scaled_scalar<DType::F16>, partial_scaled_scalar<DType::BF16>},
    {partial_store_scaled_scalar<DType::F32>, partial_store_scaled_scalar<DType::F16>,
     partial_store_scaled_scalar<DType::BF16>},
    {},  // partial_store_write_scaled: none
    {},  // partial_smooth: none yet (label smoothing takes the options path's loops here)
    {},  // scale_sub_store: none yet
    {},  // partial_entropy: none (the entropy's own loops run)
    {},  // entropy_grad_store: none
    {},  // partial_pair: none yet (the soft targets' own loops run)
    {},  // pair_grad_store
    {},  // klr_grad_store
    {},  // bce_block: none (the portable block loop, built for this ISA, gives the same bits)
    {},  // partial_probs: none
    {},  // partial_smooth_write: none
    {},  // partial_softcap: none
    {},  // scale_sub_mul_store: none
};

}  // namespace

const Kernels& scalar_kernels() { return kScalar; }

}  // namespace fusedce
