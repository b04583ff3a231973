// Cross-entropy, AVX2 + FMA + F16C kernels (x86-64). This translation unit alone is compiled with
// -mavx2 -mfma -mf16c; dispatch.cpp only hands these out when CPUID reports all three.
//
// Same contract and same summation order as the scalar kernels (fusedce.h): 16 lanes = two
// 8-wide accumulators, element j always in lane j mod 16, lanes reduced pairwise at the end. The
// only numeric difference is the exp (below), ≤ 2 ulp where the scalar path calls expf.
//
// Inputs are widened to fp32 as they are loaded: bf16 by a 16-bit shift, f16 by vcvtph2ps.
// Tails (n mod 16) go through a small buffer padded with −inf (exp → 0), so no load or store
// ever touches memory past the range.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "dtype.h"
#include "exp_consts.h"
#include "fusedce.h"

namespace fusedce {
namespace {

// exp(x) for 8 floats, ≤ 2 ulp (test/exp.test.ts measures it against float64 over [−104, 88]):
//   k = round(x·log2 e) (1.5·2^23 shifter),  r = x − k·ln2 (Cody–Waite: ln2 = C1 + C2, C1 with 9 bits so k·C1 is
//   exact),  e^r ≈ 1 + r + c2·r² + … + c6·r⁶ on |r| ≤ ln2/2 by Horner (six FMAs),
//   e^x = e^r · 2^k, 2^k built in the exponent field.
// c2…c6 minimise the relative error of e^r (Lawson's weighted least squares, float64): 3.1e-9,
// 0.03 ulp, so the result is within 1 ulp of the correctly rounded e^x (0.06 ulp on average; the
// error is the fp32 rounding of the last FMAs). Cephes' 1 + r + r²·P(r) with a degree-5 P took
// two more operations for an error this size.
// Results below 2^−126 (x < −87.3), and those of x in (88.37, 89], are made with two
// power-of-two factors so that they are rounded once, correctly, like expf (subnormal, or
// finite up to FLT_MAX at x = 88.72, then +inf); that slow path runs only for vectors that have
// such a lane. x < −104 gives 0, NaN gives NaN, x ≥ 89 and +inf give +inf.
// exp_ps on M vectors at once, each lane the same bits as exp_ps alone: one range test (and so one
// branch) covers all M, so that the M dependency chains interleave. A caller whose own chain is
// long (binary CE's exp, division and series: ~120 cycles an 8-vector) is latency-bound on one.
// Always inlined: GCC left it out of line in some callers (label smoothing with class weights: a
// call per 8 elements, with the loop's vectors spilled around it, half that kernel's time).
template <int M>
__attribute__((always_inline)) inline void exp_ps_n(__m256 (&v)[M]) {
  using namespace expk;
  const __m256 lo = _mm256_set1_ps(kLo), hi = _mm256_set1_ps(kHi);
  const __m256 shifter = _mm256_set1_ps(kShifter);
  __m256 p[M];
  __m256i ki[M], out = _mm256_setzero_si256();
  for (int u = 0; u < M; ++u) {
    const __m256 x = _mm256_min_ps(hi, _mm256_max_ps(lo, v[u]));  // constant first: a NaN in x is kept
    // k = round(x·log2 e) by the 1.5·2^23 shifter: t's low mantissa bits hold k as an integer
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(kLog2e), shifter);
    const __m256 k = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Lo), r);
    p[u] = _mm256_set1_ps(kHorner[0]);  // e^r by Horner (exp_consts.h)
    for (int i = 1; i < kHornerLen; ++i) p[u] = _mm256_fmadd_ps(p[u], r, _mm256_set1_ps(kHorner[i]));
    ki[u] = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(shifter));
    // 2^k is built in one step for −125 ≤ k ≤ 127, where p·2^k (p ∈ [0.70, 1.42]) is a normal,
    // finite float. Outside, i.e. subnormal results (k ≤ −126) and
    // x in (88.37, 89] (k = 128, whose 2^k alone is not a float): the two-factor path. The range
    // test is one unsigned compare, (k + 125) > 252, done as a signed one with the sign bit flipped.
    out = _mm256_or_si256(out, _mm256_cmpgt_epi32(_mm256_add_epi32(ki[u], _mm256_set1_epi32(int(125u + 0x80000000u))),
                                                  _mm256_set1_epi32(int(252u + 0x80000000u))));
  }
  if (__builtin_expect(_mm256_movemask_ps(_mm256_castsi256_ps(out)) == 0, 1)) {
    for (int u = 0; u < M; ++u)
      v[u] = _mm256_mul_ps(p[u], _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ki[u], _mm256_set1_epi32(127)), 23)));
    return;
  }
  // 2^k = 2^(k1) · 2^(k − k1), k1 = k/2: both factors normal, the last product rounds once (for a
  // lane in the one-step range both products are exact, so it gets the one-step bits)
  for (int u = 0; u < M; ++u) {
    const __m256i k1 = _mm256_srai_epi32(ki[u], 1);
    const __m256i k2 = _mm256_sub_epi32(ki[u], k1);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, _mm256_set1_epi32(127)), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, _mm256_set1_epi32(127)), 23));
    v[u] = _mm256_mul_ps(_mm256_mul_ps(p[u], s1), s2);
  }
}
__attribute__((always_inline)) inline __m256 exp_ps(__m256 x) {
  __m256 v[1] = {x};
  exp_ps_n<1>(v);
  return v[0];
}

// ---- loads: 8 elements → 8 floats ----
template <DType D>
struct V;
template <>
struct V<DType::F32> {
  using T = float;
  static __m256 load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, __m256 v) { _mm256_storeu_ps(p, v); }
  static constexpr int kAlign = 32;  // a non-temporal store needs p aligned to this
  static void stream(T* p, __m256 v) { _mm256_stream_ps(p, v); }
};
template <>
struct V<DType::BF16> {
  using T = uint16_t;
  static __m256 load(const T* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static void store(T* p, __m256 v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), pack(v));
  }
  static constexpr int kAlign = 16;
  static void stream(T* p, __m256 v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), pack(v)); }
  // round to nearest even: (u + 0x7fff + ((u >> 16) & 1)) >> 16; NaN → (u >> 16) | 0x40
  static __m128i pack(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    r = _mm256_blendv_epi8(r, qnan, nan);
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  }
};
template <>
struct V<DType::F16> {
  using T = uint16_t;
  static __m256 load(const T* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static void store(T* p, __m256 v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  static constexpr int kAlign = 16;
  static void stream(T* p, __m256 v) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
};

// Tail staging: copies the last n (< 16) elements into a 16-element buffer padded with −inf.
template <DType D>
struct Tail {
  using T = typename V<D>::T;
  alignas(32) T buf[kLanes];
  Tail(const T* src, int64_t n) {
    const T pad = Elem<D>::store(-std::numeric_limits<float>::infinity());
    for (int i = 0; i < kLanes; ++i) buf[i] = i < n ? src[i] : pad;
  }
};

// Horizontal pairwise sum of 16 lanes (acc0 = lanes 0–7, acc1 = lanes 8–15), the scalar order:
// lane l += lane l+8, then l += l+4, l += l+2, l += l+1.
inline float reduce16(__m256 a0, __m256 a1) {
  const __m256 s8 = _mm256_add_ps(a0, a1);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// One block: pass 1 takes the max (and notices NaN, which vmaxps alone would drop); pass 2 (from
// L1) sums exp(z − m), and with Store also writes each exp to e (the fused path's scratch).
// Scaled: of x = sc·z (each product rounded to fp32; the tail's padding stays −inf whatever the
// sign of sc), bitwise the AVX-512 scaled kernels (the logit scale on the plain path).
template <DType D, bool Store, bool Scaled = false>
Partial partial_impl(const void* zv, int64_t n, float* e, float sc = 1.0f) {
  using T = typename V<D>::T;
  const T* z = static_cast<const T*>(zv);
  const int64_t n16 = n & ~int64_t(kLanes - 1);
  Tail<D> tail(z + n16, n - n16);
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), scv = _mm256_set1_ps(sc);
  // 8 elements at p of which the first `valid` are real (≥ 8: all)
  const auto ld = [&](const T* p, int64_t valid) {
    const __m256 v = V<D>::load(p);
    if (!Scaled) return v;
    const __m256 x = _mm256_mul_ps(v, scv);
    if (valid >= 8) return x;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::max<int64_t>(valid, 0))), lane)));
  };
  __m256 m0 = ninf, m1 = m0;
  __m256 bad = _mm256_setzero_ps();
  auto max_step = [&](const T* p, int64_t valid) {
    const __m256 a = ld(p, valid), b = ld(p + 8, valid - 8);
    m0 = _mm256_max_ps(m0, a);
    m1 = _mm256_max_ps(m1, b);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
  };
  for (int64_t j = 0; j < n16; j += kLanes) max_step(z + j, kLanes);
  if (n > n16) max_step(tail.buf, n - n16);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float m = _mm256_movemask_ps(bad) ? nan : hmax(_mm256_max_ps(m0, m1));
  if (m != m || m == -std::numeric_limits<float>::infinity()) {  // NaN, or a fully masked block
    if (Store)
      for (int64_t j = 0; j < n; ++j) e[j] = m != m ? nan : 0.0f;
    return {m, m != m ? nan : 0.0f};
  }
  // m = +inf gives inf − inf = NaN sums, as in the scalar path
  const __m256 mv = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  auto sum_step = [&](const T* p, int64_t valid, float* dst) {
    const __m256 e0 = exp_ps(_mm256_sub_ps(ld(p, valid), mv));
    const __m256 e1 = exp_ps(_mm256_sub_ps(ld(p + 8, valid - 8), mv));
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
    if (Store) {
      _mm256_storeu_ps(dst, e0);
      _mm256_storeu_ps(dst + 8, e1);
    }
  };
  // While the FP ports work on this block, fetch the next one (kBlock elements on: the next
  // piece of the row, or the next row) into L2, so that its pass 1 does not wait on L3/DRAM.
  // A prefetch never faults, so running past the logits is harmless.
  const char* ahead = reinterpret_cast<const char*>(z + kBlock);
  for (int64_t j = 0; j < n16; j += kLanes) {
    _mm_prefetch(ahead + j * int64_t(sizeof(T)), _MM_HINT_T1);
    sum_step(z + j, kLanes, Store ? e + j : nullptr);
  }
  if (n > n16) {
    alignas(32) float out[kLanes];
    sum_step(tail.buf, n - n16, out);
    if (Store) std::memcpy(e + n16, out, size_t(n - n16) * sizeof(float));
  }
  return {m, reduce16(s0, s1)};
}

template <DType D>
Partial partial_avx2(const void* z, int64_t n) {
  return partial_impl<D, false>(z, n, nullptr);
}
template <DType D>
Partial partial_store_avx2(const void* z, int64_t n, float* e) {
  return partial_impl<D, true>(z, n, e);
}
template <DType D>
Partial partial_scaled_avx2(const void* z, int64_t n, float s) {
  return partial_impl<D, false, true>(z, n, nullptr, s);
}
template <DType D>
Partial partial_store_scaled_avx2(const void* z, int64_t n, float* e, float s) {
  return partial_impl<D, true, true>(z, n, e, s);
}

// lane_sum's accumulation in vector form, bitwise the AVX-512 DAcc: 16 fp32 lanes (f[0] = lanes
// 0–7, f[1] = 8–15) per 256-element chunk, added into 16 double lanes (d[0..3], 4 each) by flush,
// reduced pairwise in the scalar order.
struct DAcc {
  __m256 f[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256d d[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  void flush() {
    for (int h = 0; h < 2; ++h) {
      d[2 * h] = _mm256_add_pd(d[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(f[h])));
      d[2 * h + 1] = _mm256_add_pd(d[2 * h + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(f[h], 1)));
      f[h] = _mm256_setzero_ps();
    }
  }
  double reduce() {
    flush();
    const __m256d s4 = _mm256_add_pd(_mm256_add_pd(d[0], d[2]), _mm256_add_pd(d[1], d[3]));
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  }
};

// Label smoothing's block (Kernels::partial_smooth), bitwise the AVX-512 kernel: the same lanes
// (acc0 = lanes 0–7, acc1 = lanes 8–15) and operations; tails padded, their lanes kept out of q.
template <DType D, bool Store, int Mode, bool Scaled>
SmoothPartial partial_smooth_impl(const void* zv, int64_t n, float sc, const float* wt, float* e) {
  // Mode 0: q = Σ (m − x_j); 1: q = Σ w_j·(m − x_j), wsum = Σ w_j; 2 (entropy): q = Σ e_j·(m − x_j),
  // with m − x_j capped at FLT_MAX so that a masked element (e_j = 0, x_j = −inf) adds 0
  // Mode 3 (probability targets): as 1 over the elements with w_j ≠ 0 only, and s as the entropy's
  constexpr bool Weighted = Mode == 1 || Mode == 3, Ent = Mode == 2, Masked = Mode == 3, DS = Ent || Masked;
  using T = typename V<D>::T;
  const T* z = static_cast<const T*>(zv);
  const int64_t n16 = n & ~int64_t(kLanes - 1), nt = n - n16;
  Tail<D> tail(z + n16, nt);
  alignas(32) float wtail[kLanes] = {};
  if (Weighted)
    for (int64_t i = 0; i < nt; ++i) wtail[i] = wt[n16 + i];
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), scv = _mm256_set1_ps(sc);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const auto keep = [&](int64_t valid) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::max<int64_t>(valid, 0))), lane));
  };
  const auto ld = [&](const T* p, int64_t valid) {
    const __m256 v = V<D>::load(p);
    if (!Scaled) return v;
    const __m256 x = _mm256_mul_ps(v, scv);
    return valid >= 8 ? x : _mm256_blendv_ps(ninf, x, keep(valid));
  };
  __m256 m0 = ninf, m1 = ninf, bad = _mm256_setzero_ps();
  auto max_step = [&](const T* p, int64_t valid) {
    const __m256 a = ld(p, valid), b = ld(p + 8, valid - 8);
    m0 = _mm256_max_ps(m0, a);
    m1 = _mm256_max_ps(m1, b);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
  };
  for (int64_t j = 0; j < n16; j += kLanes) max_step(z + j, kLanes);
  if (nt) max_step(tail.buf, nt);
  const float m = _mm256_movemask_ps(bad) ? nan : hmax(_mm256_max_ps(m0, m1));
  const auto wload = [&](int64_t j) { return j < n16 ? _mm256_loadu_ps(wt + j) : _mm256_load_ps(wtail + (j - n16)); };
  if (m != m || m == -std::numeric_limits<float>::infinity()) {
    if (Store)
      for (int64_t j = 0; j < n; ++j) e[j] = m != m ? nan : 0.0f;
    float ws = float(n);
    if (Weighted) {
      __m256 w0 = _mm256_setzero_ps(), w1 = w0;
      for (int64_t j = 0; j < n; j += kLanes) {
        w0 = _mm256_add_ps(w0, wload(j));
        w1 = _mm256_add_ps(w1, wload(j + 8));
      }
      ws = reduce16(w0, w1);
    }
    return {m, m != m ? nan : 0.0, m != m ? nan : (ws > 0.0f ? std::numeric_limits<double>::infinity() : 0.0), double(ws)};
  }
  const __m256 mv = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, w0 = s0, w1 = s0;
  DAcc qa, sa, wa;  // q; the entropy's and probabilities' s; the latter's wsum
  __m256 &q0 = qa.f[0], &q1 = qa.f[1];
  auto step = [&](const T* p, int64_t j, int64_t valid, float* dst) {
    const __m256 d0 = _mm256_sub_ps(ld(p, valid), mv), d1 = _mm256_sub_ps(ld(p + 8, valid - 8), mv);
    const __m256 e0 = exp_ps(d0), e1 = exp_ps(d1);
    if (DS) {
      sa.f[0] = _mm256_add_ps(sa.f[0], e0);
      sa.f[1] = _mm256_add_ps(sa.f[1], e1);
    } else {
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
    }
    __m256 nq0, nq1;
    if (Weighted) {
      const __m256 a = wload(j), b = wload(j + 8);
      nq0 = _mm256_fnmadd_ps(a, d0, q0);
      nq1 = _mm256_fnmadd_ps(b, d1, q1);
      if (Masked) {
        nq0 = _mm256_blendv_ps(q0, nq0, _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        nq1 = _mm256_blendv_ps(q1, nq1, _mm256_cmp_ps(b, _mm256_setzero_ps(), _CMP_NEQ_UQ));
      }
      if (Masked) {
        wa.f[0] = _mm256_add_ps(wa.f[0], a);
        wa.f[1] = _mm256_add_ps(wa.f[1], b);
      } else {
        w0 = _mm256_add_ps(w0, a);
        w1 = _mm256_add_ps(w1, b);
      }
    } else if (Ent) {
      const __m256 big = _mm256_set1_ps(-std::numeric_limits<float>::max());
      nq0 = _mm256_fnmadd_ps(e0, _mm256_max_ps(d0, big), q0);
      nq1 = _mm256_fnmadd_ps(e1, _mm256_max_ps(d1, big), q1);
    } else {
      nq0 = _mm256_sub_ps(q0, d0);
      nq1 = _mm256_sub_ps(q1, d1);
    }
    q0 = valid >= 8 ? nq0 : _mm256_blendv_ps(q0, nq0, keep(valid));
    q1 = valid >= 16 ? nq1 : _mm256_blendv_ps(q1, nq1, keep(valid - 8));
    if (Store) {
      _mm256_storeu_ps(dst, e0);
      _mm256_storeu_ps(dst + 8, e1);
    }
    if (((j + kLanes) & 255) == 0) {  // a 256-element chunk ends
      qa.flush();
      if (DS) sa.flush();
      if (Masked) wa.flush();
    }
  };
  const char* ahead = reinterpret_cast<const char*>(z + kBlock);
  for (int64_t j = 0; j < n16; j += kLanes) {
    _mm_prefetch(ahead + j * int64_t(sizeof(T)), _MM_HINT_T1);
    // and the weights' next block (a line per step), which leave L2 between rows at large vocabularies
    if (Weighted) _mm_prefetch(reinterpret_cast<const char*>(wt + kBlock + j), _MM_HINT_T1);
    step(z + j, j, kLanes, Store ? e + j : nullptr);
  }
  if (nt) {
    alignas(32) float out[kLanes];
    step(tail.buf, n16, nt, out);
    if (Store) std::memcpy(e + n16, out, size_t(nt) * sizeof(float));
  }
  return {m, DS ? sa.reduce() : double(reduce16(s0, s1)), qa.reduce(), Masked ? wa.reduce() : Weighted ? double(reduce16(w0, w1)) : double(n)};
}

template <DType D>
SmoothPartial partial_smooth_avx2(const void* z, int64_t n, float s, const float* w, float* e) {
  if (s == 1.0f) {
    if (w) return e ? partial_smooth_impl<D, true, 1, false>(z, n, s, w, e) : partial_smooth_impl<D, false, 1, false>(z, n, s, w, e);
    return e ? partial_smooth_impl<D, true, 0, false>(z, n, s, w, e) : partial_smooth_impl<D, false, 0, false>(z, n, s, w, e);
  }
  if (w) return e ? partial_smooth_impl<D, true, 1, true>(z, n, s, w, e) : partial_smooth_impl<D, false, 1, true>(z, n, s, w, e);
  return e ? partial_smooth_impl<D, true, 0, true>(z, n, s, w, e) : partial_smooth_impl<D, false, 0, true>(z, n, s, w, e);
}

template <DType D>
SmoothPartial partial_entropy_avx2(const void* z, int64_t n, float s, float* e) {
  if (s == 1.0f) return e ? partial_smooth_impl<D, true, 2, false>(z, n, s, nullptr, e) : partial_smooth_impl<D, false, 2, false>(z, n, s, nullptr, e);
  return e ? partial_smooth_impl<D, true, 2, true>(z, n, s, nullptr, e) : partial_smooth_impl<D, false, 2, true>(z, n, s, nullptr, e);
}

// Writes g[0, n) as val(j) for 8 elements at j and one(j) for one (the same roundings): with
// stream, the elements one by one until g + j is aligned, then the aligned middle with
// non-temporal stores and an sfence (as scale_store); the rest with ordinary stores.
template <DType DOut, class Val, class One>
void store_span(typename V<DOut>::T* g, int64_t n, bool stream, Val&& val, One&& one) {
  int64_t j = 0;
  if (stream) {
    for (; j < n && reinterpret_cast<uintptr_t>(g + j) % V<DOut>::kAlign; ++j) g[j] = one(j);
    for (; j + 8 <= n; j += 8) V<DOut>::stream(g + j, val(j));
    _mm_sfence();
  }
  for (; j + 8 <= n; j += 8) V<DOut>::store(g + j, val(j));
  for (; j < n; ++j) g[j] = one(j);
}

// The entropy's gradient from pass 1's exps, bitwise the AVX-512 kernel (scalar tail, same roundings).
template <DType DIn, DType DOut>
void entropy_grad_store_avx2(const void* zv, const float* e, void* gv, int64_t n, float s, float m, float k, float c,
                             bool stream) {
  const auto* z = static_cast<const typename V<DIn>::T*>(zv);
  auto* g = static_cast<typename V<DOut>::T*>(gv);
  const __m256 sv = _mm256_set1_ps(s), mv = _mm256_set1_ps(m), kv = _mm256_set1_ps(k), cv = _mm256_set1_ps(c);
  const auto val = [&](int64_t j) {
    const __m256 zx = V<DIn>::load(z + j), ev = _mm256_loadu_ps(e + j);
    const __m256 x = s == 1.0f ? zx : _mm256_mul_ps(zx, sv);
    const __m256 pe = _mm256_mul_ps(ev, cv);
    const __m256 v = _mm256_mul_ps(pe, _mm256_add_ps(_mm256_sub_ps(x, mv), kv));
    return _mm256_and_ps(v, _mm256_cmp_ps(pe, _mm256_setzero_ps(), _CMP_NEQ_UQ));
  };
  const auto one = [&](int64_t j) {
    const float zx = Elem<DIn>::load(z[j]), x = s == 1.0f ? zx : zx * s;
    const float pe = e[j] * c, v = pe * ((x - m) + k);
    return Elem<DOut>::store(pe != 0.0f ? v : 0.0f);
  };
  store_span<DOut>(g, n, stream, val, one);
}

// A block pair (Kernels::partial_pair), bitwise the AVX-512 kernel: both blocks widened (and
// scaled) into −inf-padded float buffers in pass 1, then the same 16 lanes in pass 2.
template <DType DZ, DType DU, int Op, bool Store, bool Scaled>
PairPartial partial_pair_impl(const void* zv, const void* uv, int64_t n, float sc, float* ex, float* ey) {
  const auto* z = static_cast<const typename V<DZ>::T*>(zv);
  const auto* u = static_cast<const typename V<DU>::T*>(uv);
  const int64_t n16 = n & ~int64_t(kLanes - 1), nt = n - n16, nr = nt ? n16 + kLanes : n16;
  const float ninf = -std::numeric_limits<float>::infinity();
  alignas(32) float wx[kBlock], wy[kBlock];
  int64_t j = 0;
  for (; j < n16; j += 8) {
    __m256 a = V<DZ>::load(z + j), b = V<DU>::load(u + j);
    if (Scaled) a = _mm256_mul_ps(a, _mm256_set1_ps(sc)), b = _mm256_mul_ps(b, _mm256_set1_ps(sc));
    _mm256_store_ps(wx + j, a);
    _mm256_store_ps(wy + j, b);
  }
  for (int64_t i = 0; i < kLanes && nt; ++i) {  // the tail, one by one (the same products)
    wx[n16 + i] = i < nt ? (Scaled ? Elem<DZ>::load(z[n16 + i]) * sc : Elem<DZ>::load(z[n16 + i])) : ninf;
    wy[n16 + i] = i < nt ? (Scaled ? Elem<DU>::load(u[n16 + i]) * sc : Elem<DU>::load(u[n16 + i])) : ninf;
  }
  __m256 mx0 = _mm256_set1_ps(ninf), my0 = mx0;
  for (j = 0; j < nr; j += 8) {
    mx0 = _mm256_max_ps(mx0, _mm256_load_ps(wx + j));
    my0 = _mm256_max_ps(my0, _mm256_load_ps(wy + j));
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float mx = hmax(mx0), my = hmax(my0);  // NaN blocks: reported canonically after pass 2
  const __m256 mxv = _mm256_set1_ps(mx == ninf ? 0.0f : mx), myv = _mm256_set1_ps(my == ninf ? 0.0f : my);
  const __m256 zero = _mm256_setzero_ps();
  DAcc sxa, sya, ca;
  __m256 *sx = sxa.f, *sy = sya.f, *c = ca.f;
  const char* ahead_z = reinterpret_cast<const char*>(z + kBlock);
  const char* ahead_u = reinterpret_cast<const char*>(u + kBlock);
  for (j = 0; j < nr; j += 8) {
    if (!(j & 15)) {
      _mm_prefetch(ahead_z + j * int64_t(sizeof(*z)), _MM_HINT_T1);
      _mm_prefetch(ahead_u + j * int64_t(sizeof(*u)), _MM_HINT_T1);
    }
    const int h = int((j / 8) & 1);  // lanes 0–7 or 8–15 of the 16
    const __m256 x = _mm256_load_ps(wx + j), y = _mm256_load_ps(wy + j);
    const __m256 dx = _mm256_sub_ps(x, mxv), dy = _mm256_sub_ps(y, myv);
    const __m256 a = exp_ps(dx), b = exp_ps(dy);
    sx[h] = _mm256_add_ps(sx[h], a);
    sy[h] = _mm256_add_ps(sy[h], b);
    if (Op == 0) c[h] = _mm256_blendv_ps(c[h], _mm256_fnmadd_ps(b, dx, c[h]), _mm256_cmp_ps(b, zero, _CMP_NEQ_UQ));
    if (Op == 1) c[h] = _mm256_blendv_ps(c[h], _mm256_fmadd_ps(b, _mm256_sub_ps(y, x), c[h]), _mm256_cmp_ps(b, zero, _CMP_NEQ_UQ));
    if (Op == 2) c[h] = _mm256_blendv_ps(c[h], _mm256_fmadd_ps(a, _mm256_sub_ps(x, y), c[h]), _mm256_cmp_ps(a, zero, _CMP_NEQ_UQ));
    if (h == 1 && ((j + 8) & 255) == 0) {  // a 256-element chunk ends
      sxa.flush();
      sya.flush();
      ca.flush();
    }
    if (Store) {
      if (j + 8 <= n) {
        _mm256_storeu_ps(ex + j, a);
        _mm256_storeu_ps(ey + j, b);
      } else {
        alignas(32) float ta[8], tb[8];
        _mm256_store_ps(ta, a);
        _mm256_store_ps(tb, b);
        for (int64_t i = j; i < n; ++i) ex[i] = ta[i - j], ey[i] = tb[i - j];
      }
    }
  }
  const double ssx = sxa.reduce(), ssy = sya.reduce(), cr = ca.reduce(), cs = Op == 0 && mx == ninf ? 0.0 : cr;
  if (ssx != ssx || ssy != ssy) {
    if (Store)
      for (int64_t i = 0; i < n; ++i) ex[i] = ey[i] = nan;
    return {nan, nan, nan, nan, nan};
  }
  return {mx, ssx, my, ssy, cs};
}

template <int Op, DType DZ, DType DU>
PairPartial partial_pair_avx2(const void* z, const void* u, int64_t n, float s, float* ex, float* ey) {
  if (s == 1.0f)
    return ex ? partial_pair_impl<DZ, DU, Op, true, false>(z, u, n, s, ex, ey) : partial_pair_impl<DZ, DU, Op, false, false>(z, u, n, s, ex, ey);
  return ex ? partial_pair_impl<DZ, DU, Op, true, true>(z, u, n, s, ex, ey) : partial_pair_impl<DZ, DU, Op, false, true>(z, u, n, s, ex, ey);
}

template <DType DOut>
void pair_grad_store_avx2(const float* ex, const float* ey, void* gv, int64_t n, float a, float b, bool stream) {
  auto* g = static_cast<typename V<DOut>::T*>(gv);
  const __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
  const auto val = [&](int64_t j) { return _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(ex + j), av), _mm256_mul_ps(_mm256_loadu_ps(ey + j), bv)); };
  store_span<DOut>(g, n, stream, val, [&](int64_t j) { return Elem<DOut>::store(ex[j] * a - ey[j] * b); });
}

// KL reverse's gradient, bitwise the AVX-512 kernel (scalar tail, the same roundings).
template <DType DZ, DType DU, DType DOut>
void klr_grad_store_avx2(const void* zv, const void* uv, const float* ex, void* gv, int64_t n, float s, float mx,
                         float my, float k, float c, bool stream) {
  const auto* z = static_cast<const typename V<DZ>::T*>(zv);
  const auto* u = static_cast<const typename V<DU>::T*>(uv);
  auto* g = static_cast<typename V<DOut>::T*>(gv);
  const __m256 sv = _mm256_set1_ps(s), mxv = _mm256_set1_ps(mx), myv = _mm256_set1_ps(my), kv = _mm256_set1_ps(k),
               cv = _mm256_set1_ps(c);
  const auto val = [&](int64_t j) {
    const __m256 zx = V<DZ>::load(z + j), uy = V<DU>::load(u + j), e = _mm256_loadu_ps(ex + j);
    const __m256 x = s == 1.0f ? zx : _mm256_mul_ps(zx, sv), y = s == 1.0f ? uy : _mm256_mul_ps(uy, sv);
    const __m256 pe = _mm256_mul_ps(cv, e);
    const __m256 v = _mm256_mul_ps(pe, _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(x, mxv), _mm256_sub_ps(y, myv)), kv));
    return _mm256_and_ps(v, _mm256_cmp_ps(pe, _mm256_setzero_ps(), _CMP_NEQ_UQ));
  };
  const auto one = [&](int64_t j) {
    const float zx = Elem<DZ>::load(z[j]), uy = Elem<DU>::load(u[j]);
    const float x = s == 1.0f ? zx : zx * s, y = s == 1.0f ? uy : uy * s;
    const float pe = c * ex[j], v = pe * (((x - mx) - (y - my)) + k);
    return Elem<DOut>::store(pe != 0.0f ? v : 0.0f);
  };
  store_span<DOut>(g, n, stream, val, one);
}

template <DType D>
SmoothPartial partial_probs_avx2(const void* z, int64_t n, float s, const float* q, float* e) {
  if (s == 1.0f) return e ? partial_smooth_impl<D, true, 3, false>(z, n, s, q, e) : partial_smooth_impl<D, false, 3, false>(z, n, s, q, e);
  return e ? partial_smooth_impl<D, true, 3, true>(z, n, s, q, e) : partial_smooth_impl<D, false, 3, true>(z, n, s, q, e);
}

// Binary CE's block, bitwise the AVX-512 kernel: a 16-lane group as two 8-vectors (its lanes 0–7
// and 8–15), a last half group as one, a tail staged into zero-padded buffers (padding adds +0 to the sums, as its masked lanes do).
// Unit (pw and w nullptr: every weight 1) drops their loads and products; each one dropped is exact
// (lw = (1 − 1)·y + 1 = 1, 1·y, 1·v, fma(1, L, lin) = L + lin), so the bits are the weighted loop's.
template <DType DIn, DType DOut, bool WithL, bool WithG, bool Unit>
double bce_block_impl(const void* xv, const float* y, const float* pwb, const float* wb, int64_t n, float* l, void* gv,
                      float gscale) {
  const auto* z = static_cast<const typename V<DIn>::T*>(xv);
  auto* g = static_cast<typename V<DOut>::T*>(gv);
  const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), zero = _mm256_setzero_ps();
  const __m256 sv = _mm256_set1_ps(gscale), sign = _mm256_set1_ps(-0.0f);
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  // M 8-vectors at once (their chains interleave: see exp_ps_n), vector u being lanes 0–7 (h = 0)
  // or 8–15 (h = 1) of a 16-lane group: x, y, pw, w loaded; its losses into lo + 8u, gradient into go + 8u
  // (unit: the Unit arithmetic, or the weighted one, which the tail always takes: its zero-padded
  // lanes have w = 0 and so add +0)
  const auto step = [&](auto m, auto unit, const __m256* x, const __m256* yj, const __m256* pw, const __m256* wj, int h,
                        float* lo, float* go) {
    constexpr int M = decltype(m)::value;
    constexpr bool U = decltype(unit)::value;
    __m256 e1[M];
    for (int u = 0; u < M; ++u) e1[u] = _mm256_or_ps(x[u], sign);
    exp_ps_n<M>(e1);  // e^{−|x|}
    for (int u = 0; u < M; ++u) {
      const int hu = (h + u) & 1;
      const __m256 s = _mm256_div_ps(e1[u], _mm256_add_ps(two, e1[u]));
      const __m256 s2 = _mm256_mul_ps(s, s);
      __m256 q = _mm256_set1_ps(1.0f / 15);
      for (const float c : {1.0f / 13, 1.0f / 11, 1.0f / 9, 1.0f / 7, 1.0f / 5, 1.0f / 3, 1.0f})
        q = _mm256_fmadd_ps(q, s2, _mm256_set1_ps(c));
      const __m256 L = _mm256_mul_ps(_mm256_add_ps(s, s), q);
      const __m256 pos = _mm256_cmp_ps(x[u], zero, _CMP_GE_OQ);
      const __m256 omy = _mm256_sub_ps(one, yj[u]), pwy = U ? yj[u] : _mm256_mul_ps(pw[u], yj[u]);
      const __m256 lin = _mm256_mul_ps(_mm256_blendv_ps(_mm256_xor_ps(pwy, sign), omy, pos), x[u]);
      const __m256 lv = U ? _mm256_add_ps(L, lin)
                             : _mm256_mul_ps(wj[u], _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_sub_ps(pw[u], one), yj[u], one), L, lin));
      _mm256_storeu_ps(lo + 8 * u, lv);
      acc[2 * hu] = _mm256_add_pd(acc[2 * hu], _mm256_cvtps_pd(_mm256_castps256_ps128(lv)));
      acc[2 * hu + 1] = _mm256_add_pd(acc[2 * hu + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(lv, 1)));
      if (WithG) {
        const __m256 av = _mm256_blendv_ps(e1[u], one, pos), bv = _mm256_blendv_ps(one, e1[u], pos);
        const __m256 num = _mm256_fmsub_ps(omy, av, _mm256_mul_ps(pwy, bv));
        _mm256_storeu_ps(go + 8 * u, _mm256_mul_ps(_mm256_div_ps(U ? num : _mm256_mul_ps(wj[u], num), _mm256_add_ps(one, e1[u])), sv));
      }
    }
  };
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  alignas(32) float lb[16] = {}, gb[16];
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {  // whole 16-lane groups, two vectors at once
    const __m256 xs[2] = {V<DIn>::load(z + j), V<DIn>::load(z + j + 8)};
    const __m256 ys[2] = {_mm256_loadu_ps(y + j), _mm256_loadu_ps(y + j + 8)};
    const __m256 ps[2] = {Unit ? one : _mm256_loadu_ps(pwb + j), Unit ? one : _mm256_loadu_ps(pwb + j + 8)};
    const __m256 ws[2] = {Unit ? one : _mm256_loadu_ps(wb + j), Unit ? one : _mm256_loadu_ps(wb + j + 8)};
    step(Two{}, std::bool_constant<Unit>{}, xs, ys, ps, ws, 0, WithL ? l + j : lb, gb);
    if (WithG) {
      V<DOut>::store(g + j, _mm256_load_ps(gb));
      V<DOut>::store(g + j + 8, _mm256_load_ps(gb + 8));
    }
  }
  for (; j + 8 <= n; j += 8) {  // a last half group
    const __m256 xs[1] = {V<DIn>::load(z + j)}, ys[1] = {_mm256_loadu_ps(y + j)},
                 ps[1] = {Unit ? one : _mm256_loadu_ps(pwb + j)}, ws[1] = {Unit ? one : _mm256_loadu_ps(wb + j)};
    step(One{}, std::bool_constant<Unit>{}, xs, ys, ps, ws, int((j / 8) & 1), WithL ? l + j : lb, gb);
    if (WithG) V<DOut>::store(g + j, _mm256_load_ps(gb));
  }
  if (j < n) {  // the tail: the rest of a 16-lane group, 8 lanes at a time, zero-padded
    const int64_t group = j & ~int64_t(15);
    for (int64_t h0 = j; h0 < group + 16; h0 += 8) {
      alignas(32) float xs[8] = {}, ys[8] = {}, ps[8] = {}, ws[8] = {};
      for (int64_t i = h0; i < std::min(n, h0 + 8); ++i) {
        xs[i - h0] = Elem<DIn>::load(z[i]);
        ys[i - h0] = y[i];
        ps[i - h0] = Unit ? 1.0f : pwb[i];
        ws[i - h0] = Unit ? 1.0f : wb[i];
      }
      const __m256 xv[1] = {_mm256_load_ps(xs)}, yv[1] = {_mm256_load_ps(ys)}, pv[1] = {_mm256_load_ps(ps)},
                   wv[1] = {_mm256_load_ps(ws)};
      step(One{}, std::false_type{}, xv, yv, pv, wv, int((h0 / 8) & 1), lb, gb);
      for (int64_t i = h0; i < std::min(n, h0 + 8); ++i) {
        if (WithL) l[i] = lb[i - h0];
        if (WithG) g[i] = Elem<DOut>::store(gb[i - h0]);
      }
    }
  }
  const __m256d s4 = _mm256_add_pd(_mm256_add_pd(acc[0], acc[2]), _mm256_add_pd(acc[1], acc[3]));
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

template <DType DIn, DType DOut, bool Unit>
double bce_block_for(const void* x, const float* y, const float* pw, const float* w, int64_t n, float* l, void* g,
                     float gscale) {
  if (l) return g ? bce_block_impl<DIn, DOut, true, true, Unit>(x, y, pw, w, n, l, g, gscale) : bce_block_impl<DIn, DOut, true, false, Unit>(x, y, pw, w, n, l, g, gscale);
  return g ? bce_block_impl<DIn, DOut, false, true, Unit>(x, y, pw, w, n, l, g, gscale) : bce_block_impl<DIn, DOut, false, false, Unit>(x, y, pw, w, n, l, g, gscale);
}
template <DType DIn, DType DOut>
double bce_block_avx2(const void* x, const float* y, const float* pw, const float* w, int64_t n, float* l, void* g,
                      float gscale) {
  // pw and w both nullptr: every weight 1 (Kernels::bce_block)
  return !pw && !w ? bce_block_for<DIn, DOut, true>(x, y, pw, w, n, l, g, gscale) : bce_block_for<DIn, DOut, false>(x, y, pw, w, n, l, g, gscale);
}

}  // namespace

// The options' gradient store (Kernels::scale_sub_mul_store): g = (fma(−β, w, e·c) or e·c − β)·d
// (d nullptr: no product), by store_span; the scalar head and tail round as the vectors. External:
// the AVX-512 table takes it too (cross_entropy_avx512.cpp).
template <DType DOut>
void scale_sub_mul_store_avx2(const float* e, const float* d, void* gv, int64_t n, float c, float beta, const float* w,
                              bool stream) {
  auto* g = static_cast<typename V<DOut>::T*>(gv);
  const __m256 cv = _mm256_set1_ps(c), bv = _mm256_set1_ps(beta);
  const auto val = [&](int64_t j) {
    const __m256 ec = _mm256_mul_ps(_mm256_loadu_ps(e + j), cv);
    const __m256 v = w ? _mm256_fnmadd_ps(bv, _mm256_loadu_ps(w + j), ec) : _mm256_sub_ps(ec, bv);
    return d ? _mm256_mul_ps(v, _mm256_loadu_ps(d + j)) : v;
  };
  const auto one = [&](int64_t j) {
    const float v = w ? std::fma(-beta, w[j], e[j] * c) : e[j] * c - beta;
    return Elem<DOut>::store(d ? v * d[j] : v);
  };
  store_span<DOut>(g, n, stream, val, one);
}

namespace {

// g = e·c − beta·w (w nullptr: − beta): the store above without d.
template <DType DOut>
void scale_sub_store_avx2(const float* e, void* g, int64_t n, float c, float beta, const float* w, bool stream) {
  scale_sub_mul_store_avx2<DOut>(e, nullptr, g, n, c, beta, w, stream);
}

// g = e · c. With stream, the aligned middle is written with non-temporal stores: a large
// gradient then goes to memory without first being read into the cache (no read-for-ownership),
// which is what bounds this pass; the caller asks for it only when the gradient is far larger
// than the caches. Ends with sfence so the stores are visible to other threads after return.
template <DType DOut>
void scale_store_avx2(const float* e, void* gv, int64_t n, float c, bool stream) {
  using TO = typename V<DOut>::T;
  TO* g = static_cast<TO*>(gv);
  const __m256 cv = _mm256_set1_ps(c);
  int64_t j = 0;
  if (stream) {
    for (; j < n && reinterpret_cast<uintptr_t>(g + j) % V<DOut>::kAlign; ++j) g[j] = Elem<DOut>::store(e[j] * c);
    for (; j + 8 <= n; j += 8) V<DOut>::stream(g + j, _mm256_mul_ps(_mm256_loadu_ps(e + j), cv));
    _mm_sfence();
  }
  for (; j + 8 <= n; j += 8) V<DOut>::store(g + j, _mm256_mul_ps(_mm256_loadu_ps(e + j), cv));
  for (; j < n; ++j) g[j] = Elem<DOut>::store(e[j] * c);
}

template <DType DIn, DType DOut>
float grad_avx2(const void* zv, void* gv, int64_t n, float lse, float scale) {
  using TI = typename V<DIn>::T;
  using TO = typename V<DOut>::T;
  const TI* z = static_cast<const TI*>(zv);
  TO* g = static_cast<TO*>(gv);
  const int64_t n16 = n & ~int64_t(kLanes - 1);
  const __m256 lv = _mm256_set1_ps(lse), sv = _mm256_set1_ps(scale);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  // both halves are loaded before either is stored: in-place (g == z) is safe
  auto step = [&](const TI* src, TO* dst) {
    const __m256 p0 = exp_ps(_mm256_sub_ps(V<DIn>::load(src), lv));
    const __m256 p1 = exp_ps(_mm256_sub_ps(V<DIn>::load(src + 8), lv));
    s0 = _mm256_add_ps(s0, p0);
    s1 = _mm256_add_ps(s1, p1);
    V<DOut>::store(dst, _mm256_mul_ps(p0, sv));
    V<DOut>::store(dst + 8, _mm256_mul_ps(p1, sv));
  };
  for (int64_t j = 0; j < n16; j += kLanes) step(z + j, g + j);
  if (n > n16) {
    Tail<DIn> tail(z + n16, n - n16);
    alignas(32) TO out[kLanes];
    step(tail.buf, out);
    std::memcpy(g + n16, out, size_t(n - n16) * sizeof(TO));
  }
  return reduce16(s0, s1);
}

void exp_avx2(const float* x, float* y, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, exp_ps(_mm256_loadu_ps(x + j)));
  if (j < n) {
    alignas(32) float buf[8] = {};
    std::memcpy(buf, x + j, size_t(n - j) * 4);
    _mm256_store_ps(buf, exp_ps(_mm256_load_ps(buf)));
    std::memcpy(y + j, buf, size_t(n - j) * 4);
  }
}

// tanh u by its series, |u| < 0.55: loss_rows.cpp's tanh_series, FMA for FMA.
inline __m256 tanh_series8(__m256 u) {
  const __m256 v2 = _mm256_mul_ps(u, u);
  __m256 p = _mm256_set1_ps(5.9002744094558595e-4f);
  p = _mm256_fmadd_ps(p, v2, _mm256_set1_ps(-1.4558343870513183e-3f));
  p = _mm256_fmadd_ps(p, v2, _mm256_set1_ps(3.5921280365724810e-3f));
  p = _mm256_fmadd_ps(p, v2, _mm256_set1_ps(-8.8632355299021966e-3f));
  p = _mm256_fmadd_ps(p, v2, _mm256_set1_ps(2.1869488536155203e-2f));
  p = _mm256_fmadd_ps(p, v2, _mm256_set1_ps(-5.3968253968253968e-2f));
  p = _mm256_fmadd_ps(p, v2, _mm256_set1_ps(1.3333333333333333e-1f));
  p = _mm256_fmadd_ps(p, v2, _mm256_set1_ps(-3.3333333333333333e-1f));
  return _mm256_fmadd_ps(_mm256_mul_ps(u, v2), p, u);
}

// Softcap's block (Kernels::partial_softcap). Pass 1 widens z, takes u = (z·s)·(1/c), notes any
// |u| ≥ 0.55 (or NaN: the compare is unordered-true), and keeps x = tanh(u)·c in L1 (and d), with
// the max; pass 2 is partial_impl's on x (the same 16 lanes: acc0 = lanes 0–7, acc1 = 8–15). One
// loop where the general path has four (widen; u and its range check; the series; partial's two),
// so the block is read from L1 twice instead of six times. A tail's padding lanes are kept out of
// the range check and set to −inf in x.
template <DType D, bool Scaled>
CapPartial partial_softcap_impl(const void* zv, int64_t n, float s, float c, float* e, float* d) {
  using T = typename V<D>::T;
  const T* z = static_cast<const T*>(zv);
  const int64_t n16 = n & ~int64_t(kLanes - 1);
  Tail<D> tail(z + n16, n - n16);
  alignas(32) float x[kBlock];
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), sv = _mm256_set1_ps(s),
               iv = _mm256_set1_ps(1.0f / c), cv = _mm256_set1_ps(c), lim = _mm256_set1_ps(0.55f),
               one = _mm256_set1_ps(1.0f), absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 far = _mm256_setzero_ps(), m0 = ninf, m1 = ninf;
  // 8 elements at p, x[j..j+8) and d[j..) from them; of the 8, the first `valid` are real
  const auto step = [&](const T* p, int64_t j, int64_t valid, __m256& mm) {
    const __m256 zx = V<D>::load(p);
    const __m256 u = _mm256_mul_ps(Scaled ? _mm256_mul_ps(zx, sv) : zx, iv);
    __m256 out = _mm256_cmp_ps(_mm256_and_ps(u, absm), lim, _CMP_NLT_UQ);
    const __m256 th = tanh_series8(u);
    __m256 xv = _mm256_mul_ps(th, cv);
    const __m256 dv = _mm256_mul_ps(_mm256_sub_ps(one, _mm256_mul_ps(th, th)), sv);
    if (valid >= 8) {
      if (d) _mm256_storeu_ps(d + j, dv);
    } else {
      const __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::max<int64_t>(valid, 0))), lane);
      out = _mm256_and_ps(out, _mm256_castsi256_ps(in));
      xv = _mm256_blendv_ps(ninf, xv, _mm256_castsi256_ps(in));
      if (d) _mm256_maskstore_ps(d + j, in, dv);
    }
    far = _mm256_or_ps(far, out);
    _mm256_store_ps(x + j, xv);
    mm = _mm256_max_ps(mm, xv);
  };
  const char* ahead = reinterpret_cast<const char*>(z + kBlock);
  for (int64_t j = 0; j < n16; j += kLanes) {
    _mm_prefetch(ahead + j * int64_t(sizeof(T)), _MM_HINT_T1);
    step(z + j, j, 8, m0);
    step(z + j + 8, j + 8, 8, m1);
  }
  if (n > n16) {  // x keeps the −inf padding: n16 + 16 ≤ kBlock
    step(tail.buf, n16, n - n16, m0);
    step(tail.buf + 8, n16 + 8, n - n16 - 8, m1);
  }
  if (_mm256_movemask_ps(far)) return {0.0f, 0.0f, true};
  // every x is finite here (|x| < 0.55·c)
  const float m = hmax(_mm256_max_ps(m0, m1));
  const __m256 mv = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  const auto sum_step = [&](int64_t j, float* dst) {
    const __m256 e0 = exp_ps(_mm256_sub_ps(_mm256_load_ps(x + j), mv));
    const __m256 e1 = exp_ps(_mm256_sub_ps(_mm256_load_ps(x + j + 8), mv));
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
    if (dst) {
      _mm256_storeu_ps(dst, e0);
      _mm256_storeu_ps(dst + 8, e1);
    }
  };
  for (int64_t j = 0; j < n16; j += kLanes) sum_step(j, e ? e + j : nullptr);
  if (n > n16) {
    alignas(32) float out[kLanes];
    sum_step(n16, out);
    if (e) std::memcpy(e + n16, out, size_t(n - n16) * sizeof(float));
  }
  return {m, reduce16(s0, s1), false};
}

}  // namespace

// The AVX-512 table's as well (cross_entropy_avx512.cpp), so it has external linkage, as
// scale_sub_mul_store_avx2 above; a 512-bit version of either is not written yet.
template <DType D>
CapPartial partial_softcap_avx2(const void* z, int64_t n, float s, float c, float* e, float* d) {
  return s == 1.0f ? partial_softcap_impl<D, false>(z, n, s, c, e, d) : partial_softcap_impl<D, true>(z, n, s, c, e, d);
}

template CapPartial partial_softcap_avx2<DType::F32>(const void*, int64_t, float, float, float*, float*);
template CapPartial partial_softcap_avx2<DType::F16>(const void*, int64_t, float, float, float*, float*);
template CapPartial partial_softcap_avx2<DType::BF16>(const void*, int64_t, float, float, float*, float*);
template void scale_sub_mul_store_avx2<DType::F32>(const float*, const float*, void*, int64_t, float, float,
                                                   const float*, bool);
template void scale_sub_mul_store_avx2<DType::F16>(const float*, const float*, void*, int64_t, float, float,
                                                   const float*, bool);
template void scale_sub_mul_store_avx2<DType::BF16>(const float*, const float*, void*, int64_t, float, float,
                                                    const float*, bool);

namespace {

const Kernels kAvx2 = {
    "avx2",
    {partial_avx2<DType::F32>, partial_avx2<DType::F16>, partial_avx2<DType::BF16>},
    {
        {grad_avx2<DType::F32, DType::F32>, grad_avx2<DType::F32, DType::F16>, grad_avx2<DType::F32, DType::BF16>},
        {grad_avx2<DType::F16, DType::F32>, grad_avx2<DType::F16, DType::F16>, grad_avx2<DType::F16, DType::BF16>},
        {grad_avx2<DType::BF16, DType::F32>, grad_avx2<DType::BF16, DType::F16>, grad_avx2<DType::BF16, DType::BF16>},
    },
    {partial_store_avx2<DType::F32>, partial_store_avx2<DType::F16>, partial_store_avx2<DType::BF16>},
    {scale_store_avx2<DType::F32>, scale_store_avx2<DType::F16>, scale_store_avx2<DType::BF16>},
    exp_avx2,
    // partial_store_write: none; the caller writes the pending span after partial_store. The
    // AVX-512 file's in-loop writer ported here measured 0.87–1.09× (fused, 64 × 128256, bf16 and
    // f32, 1 and 2 threads, FUSEDCE_ISA=avx2 on an AVX-512 machine): no gain, so it was left out.
    {},
    {partial_scaled_avx2<DType::F32>, partial_scaled_avx2<DType::F16>, partial_scaled_avx2<DType::BF16>},
    {partial_store_scaled_avx2<DType::F32>, partial_store_scaled_avx2<DType::F16>, partial_store_scaled_avx2<DType::BF16>},
    {},  // partial_store_write_scaled: none, as partial_store_write
    {partial_smooth_avx2<DType::F32>, partial_smooth_avx2<DType::F16>, partial_smooth_avx2<DType::BF16>},
    {scale_sub_store_avx2<DType::F32>, scale_sub_store_avx2<DType::F16>, scale_sub_store_avx2<DType::BF16>},
    {partial_entropy_avx2<DType::F32>, partial_entropy_avx2<DType::F16>, partial_entropy_avx2<DType::BF16>},
    {
        {entropy_grad_store_avx2<DType::F32, DType::F32>, entropy_grad_store_avx2<DType::F32, DType::F16>,
         entropy_grad_store_avx2<DType::F32, DType::BF16>},
        {entropy_grad_store_avx2<DType::F16, DType::F32>, entropy_grad_store_avx2<DType::F16, DType::F16>,
         entropy_grad_store_avx2<DType::F16, DType::BF16>},
        {entropy_grad_store_avx2<DType::BF16, DType::F32>, entropy_grad_store_avx2<DType::BF16, DType::F16>,
         entropy_grad_store_avx2<DType::BF16, DType::BF16>},
    },
    {
        {{partial_pair_avx2<0, DType::F32, DType::F32>, partial_pair_avx2<0, DType::F32, DType::F16>, partial_pair_avx2<0, DType::F32, DType::BF16>},
         {partial_pair_avx2<0, DType::F16, DType::F32>, partial_pair_avx2<0, DType::F16, DType::F16>, partial_pair_avx2<0, DType::F16, DType::BF16>},
         {partial_pair_avx2<0, DType::BF16, DType::F32>, partial_pair_avx2<0, DType::BF16, DType::F16>, partial_pair_avx2<0, DType::BF16, DType::BF16>}},
        {{partial_pair_avx2<1, DType::F32, DType::F32>, partial_pair_avx2<1, DType::F32, DType::F16>, partial_pair_avx2<1, DType::F32, DType::BF16>},
         {partial_pair_avx2<1, DType::F16, DType::F32>, partial_pair_avx2<1, DType::F16, DType::F16>, partial_pair_avx2<1, DType::F16, DType::BF16>},
         {partial_pair_avx2<1, DType::BF16, DType::F32>, partial_pair_avx2<1, DType::BF16, DType::F16>, partial_pair_avx2<1, DType::BF16, DType::BF16>}},
        {{partial_pair_avx2<2, DType::F32, DType::F32>, partial_pair_avx2<2, DType::F32, DType::F16>, partial_pair_avx2<2, DType::F32, DType::BF16>},
         {partial_pair_avx2<2, DType::F16, DType::F32>, partial_pair_avx2<2, DType::F16, DType::F16>, partial_pair_avx2<2, DType::F16, DType::BF16>},
         {partial_pair_avx2<2, DType::BF16, DType::F32>, partial_pair_avx2<2, DType::BF16, DType::F16>, partial_pair_avx2<2, DType::BF16, DType::BF16>}},
    },
    {pair_grad_store_avx2<DType::F32>, pair_grad_store_avx2<DType::F16>, pair_grad_store_avx2<DType::BF16>},
    {
        {{klr_grad_store_avx2<DType::F32, DType::F32, DType::F32>, klr_grad_store_avx2<DType::F32, DType::F32, DType::F16>, klr_grad_store_avx2<DType::F32, DType::F32, DType::BF16>},
         {klr_grad_store_avx2<DType::F32, DType::F16, DType::F32>, klr_grad_store_avx2<DType::F32, DType::F16, DType::F16>, klr_grad_store_avx2<DType::F32, DType::F16, DType::BF16>},
         {klr_grad_store_avx2<DType::F32, DType::BF16, DType::F32>, klr_grad_store_avx2<DType::F32, DType::BF16, DType::F16>, klr_grad_store_avx2<DType::F32, DType::BF16, DType::BF16>}},
        {{klr_grad_store_avx2<DType::F16, DType::F32, DType::F32>, klr_grad_store_avx2<DType::F16, DType::F32, DType::F16>, klr_grad_store_avx2<DType::F16, DType::F32, DType::BF16>},
         {klr_grad_store_avx2<DType::F16, DType::F16, DType::F32>, klr_grad_store_avx2<DType::F16, DType::F16, DType::F16>, klr_grad_store_avx2<DType::F16, DType::F16, DType::BF16>},
         {klr_grad_store_avx2<DType::F16, DType::BF16, DType::F32>, klr_grad_store_avx2<DType::F16, DType::BF16, DType::F16>, klr_grad_store_avx2<DType::F16, DType::BF16, DType::BF16>}},
        {{klr_grad_store_avx2<DType::BF16, DType::F32, DType::F32>, klr_grad_store_avx2<DType::BF16, DType::F32, DType::F16>, klr_grad_store_avx2<DType::BF16, DType::F32, DType::BF16>},
         {klr_grad_store_avx2<DType::BF16, DType::F16, DType::F32>, klr_grad_store_avx2<DType::BF16, DType::F16, DType::F16>, klr_grad_store_avx2<DType::BF16, DType::F16, DType::BF16>},
         {klr_grad_store_avx2<DType::BF16, DType::BF16, DType::F32>, klr_grad_store_avx2<DType::BF16, DType::BF16, DType::F16>, klr_grad_store_avx2<DType::BF16, DType::BF16, DType::BF16>}},
    },
    {
        {bce_block_avx2<DType::F32, DType::F32>, bce_block_avx2<DType::F32, DType::F16>, bce_block_avx2<DType::F32, DType::BF16>},
        {bce_block_avx2<DType::F16, DType::F32>, bce_block_avx2<DType::F16, DType::F16>, bce_block_avx2<DType::F16, DType::BF16>},
        {bce_block_avx2<DType::BF16, DType::F32>, bce_block_avx2<DType::BF16, DType::F16>, bce_block_avx2<DType::BF16, DType::BF16>},
    },
    {partial_probs_avx2<DType::F32>, partial_probs_avx2<DType::F16>, partial_probs_avx2<DType::BF16>},
    {},  // partial_smooth_write: none, as partial_store_write (the caller writes the pending span)
    {partial_softcap_avx2<DType::F32>, partial_softcap_avx2<DType::F16>, partial_softcap_avx2<DType::BF16>},
    {scale_sub_mul_store_avx2<DType::F32>, scale_sub_mul_store_avx2<DType::F16>, scale_sub_mul_store_avx2<DType::BF16>},
};

}  // namespace

const Kernels* avx2_kernels() { return &kAvx2; }

}  // namespace fusedce
