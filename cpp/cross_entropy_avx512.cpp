// Cross-entropy, AVX-512 kernels (x86-64: AVX-512 F + BW + VL + DQ). This translation unit alone
// is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c; dispatch.cpp only hands
// these out when CPUID (and the OS, for the zmm state) reports them.
// cross_entropy_avx512bf16.cpp compiles this same file once more with FUSEDCE_NATIVE_BF16 and
// -mavx512bf16, for CPUs with AVX512_BF16 (Cooper Lake, Sapphire Rapids and later, Zen 4 and
// later): there a bf16 gradient is narrowed by one vcvtneps2bf16 (see Bf16Conv::narrow), with the
// same bits. Everything else is the same code.
//
// Bitwise the AVX2 kernels' results, twice as wide: one 16-wide accumulator is exactly the
// AVX2 path's 16 lanes (element j in lane j mod 16, same adds in the same order, same pairwise
// reduction), and the exp below is the same polynomial on the same reduced argument, with 2^k
// applied by vscalefps — exact for normal results and rounded once for subnormal or overflowing
// ones, as the AVX2 path does with two power-of-two factors. test/cross_entropy_avx512.test.ts
// checks the equality bit for bit.
//
// Why it is faster: on this generation of cores a 512-bit operation issues to two ports as a
// 256-bit one does, so each instruction does twice the work; scalef also replaces the AVX2 exp's
// integer exponent construction and its range test (13 vector operations per 16 elements instead
// of ~20 per 8). Tails use masked loads and stores (masked-off lanes neither fault nor write).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "dtype.h"
#include "exp_consts.h"
#include "fusedce.h"

namespace fusedce {

// Softcap's block and the options' gradient store, AVX2 + FMA (cross_entropy_avx2.cpp): this table
// takes them as they are (the same bits as the rest of this table's results).
template <DType D>
CapPartial partial_softcap_avx2(const void* z, int64_t n, float s, float c, float* e, float* d);
template <DType DOut>
void scale_sub_mul_store_avx2(const float* e, const float* d, void* g, int64_t n, float c, float beta, const float* w,
                              bool stream);

namespace {

// exp(x) for 16 floats: see exp_ps in cross_entropy_avx2.cpp for the reduction and polynomial
// (identical here, operation for operation). e^x = p · 2^k with vscalefps.
// The forward's block sums only ever take exp of z − (block max) ≤ 0 or NaN, so they ask for
// kUpTo0 and skip the clamp at 89 that only x = +inf needs (scalef alone already overflows to
// +inf correctly for finite x); that is one of the ~14 operations each 16 elements cost on the
// FP port. The gradient keeps it: a caller's lse may be anything.
enum class Range { kAll, kUpTo0 };
template <Range R = Range::kAll>
inline __m512 exp16(__m512 x) {
  using namespace expk;
  x = _mm512_max_ps(_mm512_set1_ps(kLo), x);  // NaN kept (the second operand is returned)
  if (R == Range::kAll) x = _mm512_min_ps(_mm512_set1_ps(kHi), x);
  const __m512 shifter = _mm512_set1_ps(kShifter);
  const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(kLog2e), shifter);
  const __m512 k = _mm512_sub_ps(t, shifter);  // round(x·log2 e), exactly an integer
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kHorner[0]);  // e^r by Horner (exp_consts.h)
  for (int i = 1; i < kHornerLen; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kHorner[i]));
  return _mm512_scalef_ps(p, k);
}

// ---- 16 elements of a dtype ↔ 16 floats; masked forms for tails (n < 16) ----
inline __mmask16 first(int64_t n) { return __mmask16((1u << n) - 1); }

template <DType D>
struct W;
template <>
struct W<DType::F32> {
  using T = float;
  static constexpr int kAlign = 64;  // a non-temporal store of 16 needs this alignment
  static __m512 load(const T* p) { return _mm512_loadu_ps(p); }
  // masked-off lanes read as −inf (exp → 0: they add nothing)
  static __m512 load_tail(const T* p, int64_t n) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()), first(n), p);
  }
  static void store(T* p, __m512 v) { _mm512_storeu_ps(p, v); }
  static void store_tail(T* p, __m512 v, int64_t n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static void stream(T* p, __m512 v) { _mm512_stream_ps(p, v); }
};

// The 16-bit dtypes share everything but the conversions.
template <class Conv>
struct W16 {
  using T = uint16_t;
  static constexpr int kAlign = 32;
  static __m512 load(const T* p) { return Conv::widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static __m512 load_tail(const T* p, int64_t n) {
    return Conv::widen(_mm256_mask_loadu_epi16(_mm256_set1_epi16(short(Conv::kMinusInf)), first(n), p));
  }
  static void store(T* p, __m512 v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), Conv::narrow(v)); }
  static void store_tail(T* p, __m512 v, int64_t n) { _mm256_mask_storeu_epi16(p, first(n), Conv::narrow(v)); }
  static void stream(T* p, __m512 v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), Conv::narrow(v)); }
};
struct Bf16Conv {
  static constexpr uint16_t kMinusInf = 0xff80;
  // word i of h to the high half of dword i, low half zero: one permute on the shuffle port,
  // leaving the FP port (which the exp saturates) to the exp
  static __m512 widen(__m256i h) {
    const __m512i idx = _mm512_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8, 7, 7, 6, 6, 5, 5,
                                         4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    return _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAAu, idx, _mm512_castsi256_si512(h)));
  }
  // round to nearest even: (u + 0x7fff + ((u >> 16) & 1)) >> 16; NaN → (u >> 16) | 0x40 (quiet),
  // as float_to_bf16 and the AVX2 path
  static __m256i narrow(__m512 v) {
#if FUSEDCE_NATIVE_BF16
    // vcvtneps2bf16 is exactly this for normal numbers, zeros, infinities and NaN (Intel SDM:
    // round to nearest even by the same bias, NaN truncated with bit 6 set), but it treats a
    // subnormal input as ±0. A vector with a subnormal lane (a gradient below 2^−126, rare) takes
    // the integer path below. About 3 operations instead of 10 per 16 elements.
    if (__builtin_expect(_mm512_fpclass_ps_mask(v, 0x20) == 0, 1)) return (__m256i)_mm512_cvtneps_pbh(v);
#endif
    const __m512i u = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
    const __m512i qnan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r, qnan));
  }
};
struct F16Conv {
  static constexpr uint16_t kMinusInf = 0xfc00;
  static __m512 widen(__m256i h) { return _mm512_cvtph_ps(h); }
  static __m256i narrow(__m512 v) { return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT); }
};
template <>
struct W<DType::BF16> : W16<Bf16Conv> {};
template <>
struct W<DType::F16> : W16<F16Conv> {};

// Pairwise sum of the 16 lanes in the scalar (and AVX2) order: l += l+8, l += l+4, l += l+2, l += l+1.
inline float reduce16(__m512 a) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

// lane_sum's accumulation in vector form: 16 fp32 lanes summed over a 256-element chunk, then added
// into 16 double lanes (flush), reduced pairwise in the scalar order at the end. Bitwise the AVX2
// DAcc (the same lanes, adds and order).
struct DAcc {
  __m512 f = _mm512_setzero_ps();
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();  // lanes 0–7, 8–15
  void flush() {
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(f)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1))));
    f = _mm512_setzero_ps();
  }
  double reduce() {
    flush();
    const __m512d s8 = _mm512_add_pd(lo, hi);
    const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  }
};
// Whether the 16 elements at j end a 256-element chunk.
inline bool chunk_end(int64_t j) { return ((j + kLanes) & 255) == 0; }

// g[j] = e[j] · c one by one until g + j is aligned for a non-temporal store of 16 (or j = n);
// returns that j.
template <DType DOut>
int64_t store_head(const float* e, typename W<DOut>::T* g, int64_t n, float c) {
  int64_t j = 0;
  for (; j < n && reinterpret_cast<uintptr_t>(g + j) % W<DOut>::kAlign; ++j) g[j] = Elem<DOut>::store(e[j] * c);
  return j;
}

// g = e · c. With stream, the aligned middle is written with non-temporal stores (see the AVX2
// scale_store); sfence makes them visible to other threads after return.
template <DType DOut>
void scale_store_avx512(const float* e, void* gv, int64_t n, float c, bool stream) {
  using TO = typename W<DOut>::T;
  TO* g = static_cast<TO*>(gv);
  const __m512 cv = _mm512_set1_ps(c);
  int64_t j = 0;
  if (stream) {
    j = store_head<DOut>(e, g, n, c);
    for (; j + kLanes <= n; j += kLanes) W<DOut>::stream(g + j, _mm512_mul_ps(_mm512_loadu_ps(e + j), cv));
    _mm_sfence();
  }
  for (; j + kLanes <= n; j += kLanes) W<DOut>::store(g + j, _mm512_mul_ps(_mm512_loadu_ps(e + j), cv));
  if (j < n) W<DOut>::store_tail(g + j, _mm512_mul_ps(_mm512_maskz_loadu_ps(first(n - j), e + j), cv), n - j);
}

// One block: pass 1 takes the max over two independent accumulators (max is exact, so their
// number changes nothing); pass 2, from L1, sums exp(z − m) in the 16 lanes, and with Store also
// writes each exp to e (the fused path's scratch).
// NaN: vmaxps may drop a NaN, but then exp(NaN − m) makes s NaN, which is all the contract asks.
// Only when the max is −inf (s would be 0 without a pass 2) is the block searched for a NaN.
// Scaled: the block is x = sc·z (each product rounded to fp32; a tail's masked-off lanes stay −inf
// whatever the sign of sc), bitwise the F32 kernel on x (the options path's logit scale).
template <DType D, bool Store, DType DOut = DType::F32, bool Write = false, bool Scaled = false>
Partial partial_impl(const void* zv, int64_t n, float* e, const Kernels::Pending* pend = nullptr, float sc = 1.0f) {
  using T = typename W<D>::T;
  const T* z = static_cast<const T*>(zv);
  const __m512 scv = _mm512_set1_ps(sc);
  const auto ld = [&](int64_t j) { return Scaled ? _mm512_mul_ps(W<D>::load(z + j), scv) : W<D>::load(z + j); };
  const auto ld_tail = [&](int64_t j, int64_t k) {
    const __m512 v = W<D>::load_tail(z + j, k);
    if (!Scaled) return v;
    return _mm512_mask_mul_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()), first(k), v, scv);
  };
  const int64_t n16 = n & ~int64_t(kLanes - 1), n32 = n & ~int64_t(2 * kLanes - 1);
  const float ninf = -std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  // Forward of 16-bit input: pass 1 keeps the widened block in w (16 KiB on the stack), so pass 2
  // reads floats and does not widen again: one shuffle (bf16) or two conversion µops (f16) fewer
  // per 16 elements on the ports the exp needs, for a store to L1. Forward time 0.83–0.93× (A/B,
  // bf16 and f16, 8 and 64 × 128256, 1 and 2 threads). Not in the fused pass (Store): it already
  // stores the exps, and the extra 16 KiB in L1 made it 2–8% slower in 4 of 5 bf16 A/Bs.
  constexpr bool kKeep = D != DType::F32 && !Store;
  alignas(64) float w[kKeep ? kBlock : 1];
  __m512 m0 = _mm512_set1_ps(ninf), m1 = m0;
  for (int64_t j = 0; j < n32; j += 2 * kLanes) {
    const __m512 a = ld(j), b = ld(j + kLanes);
    if (kKeep) {
      _mm512_storeu_ps(w + j, a);
      _mm512_storeu_ps(w + j + kLanes, b);
    }
    m0 = _mm512_max_ps(m0, a);
    m1 = _mm512_max_ps(m1, b);
  }
  if (n16 > n32) {
    const __m512 a = ld(n32);
    if (kKeep) _mm512_storeu_ps(w + n32, a);
    m0 = _mm512_max_ps(m0, a);
  }
  if (n > n16) {
    const __m512 a = ld_tail(n16, n - n16);
    if (kKeep) _mm512_storeu_ps(w + n16, a);  // with its −inf padding: n16 + 16 ≤ kBlock
    m1 = _mm512_max_ps(m1, a);
  }
  float m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
  if (m == ninf) {  // a fully masked block, unless it hides a NaN
    __mmask16 bad = 0;
    for (int64_t j = 0; j < n16; j += kLanes) bad |= _mm512_cmp_ps_mask(ld(j), _mm512_setzero_ps(), _CMP_UNORD_Q);
    if (n > n16) bad |= _mm512_cmp_ps_mask(ld_tail(n16, n - n16), _mm512_setzero_ps(), _CMP_UNORD_Q);
    if (bad) m = nan;
  }
  if (m != m || m == ninf) {
    if (Store)
      for (int64_t j = 0; j < n; ++j) e[j] = m != m ? nan : 0.0f;
    if (Write) scale_store_avx512<DOut>(pend->e, pend->g, pend->n, pend->c, pend->stream);
    return {m, m != m ? nan : 0.0f};
  }
  // the block again, as floats: from w (16-bit input) or from z (f32, L1-resident after pass 1)
  const auto src = [&](int64_t j) { return kKeep ? _mm512_loadu_ps(w + j) : ld(j); };
  const auto src_tail = [&](int64_t j, int64_t k) { return kKeep ? _mm512_loadu_ps(w + j) : ld_tail(j, k); };
  // m = +inf gives inf − inf = NaN sums, as in the scalar path
  const __m512 mv = _mm512_set1_ps(m);
  __m512 s = _mm512_setzero_ps();
  // While the FP port works on this block, fetch the next one (kBlock elements on: the next
  // piece of the row, or the next row) into L2, so that its pass 1 does not wait on L3/DRAM.
  // A prefetch never faults, so running past the logits is harmless.
  const char* ahead = reinterpret_cast<const char*>(z + kBlock);
  // With Write, the pending span (pend) goes out 16 elements per 16 exps (after a head of up to 15
  // written one by one, so that the non-temporal stores are aligned); what is left after this
  // block's loop (a span longer than the block, or the span's tail) goes out afterwards.
  using TO = typename W<DOut>::T;
  TO* const wg = Write ? static_cast<TO*>(pend->g) : nullptr;
  const __m512 wc = _mm512_set1_ps(Write ? pend->c : 0.0f);
  int64_t wj = 0, wend = 0;  // elements [wj, wend) of the span are written in the loop
  if (Write) {
    if (pend->stream) wj = store_head<DOut>(pend->e, wg, pend->n, pend->c);
    wend = wj + std::min((pend->n - wj) / kLanes, n16 / kLanes) * kLanes;
  }
  for (int64_t j = 0; j < n16; j += kLanes) {
    _mm_prefetch(ahead + j * int64_t(sizeof(T)), _MM_HINT_T1);
    const __m512 x = exp16<Range::kUpTo0>(_mm512_sub_ps(src(j), mv));
    s = _mm512_add_ps(s, x);
    if (Store) _mm512_storeu_ps(e + j, x);
    if (Write && wj < wend) {
      const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(pend->e + wj), wc);
      if (pend->stream) W<DOut>::stream(wg + wj, v);
      else W<DOut>::store(wg + wj, v);
      wj += kLanes;
    }
  }
  if (n > n16) {
    const __m512 x = exp16<Range::kUpTo0>(_mm512_sub_ps(src_tail(n16, n - n16), mv));
    s = _mm512_add_ps(s, x);
    if (Store) _mm512_mask_storeu_ps(e + n16, first(n - n16), x);
  }
  if (Write) scale_store_avx512<DOut>(pend->e + wj, wg + wj, pend->n - wj, pend->c, pend->stream);  // the rest; sfence
  return {m, reduce16(s)};
}

template <DType D>
Partial partial_avx512(const void* z, int64_t n) {
  return partial_impl<D, false>(z, n, nullptr);
}
template <DType D>
Partial partial_store_avx512(const void* z, int64_t n, float* e) {
  return partial_impl<D, true>(z, n, e);
}
template <DType D, DType DOut>
Partial partial_store_write_avx512(const void* z, int64_t n, float* e, const Kernels::Pending& w) {
  return partial_impl<D, true, DOut, true>(z, n, e, &w);
}
template <DType D>
Partial partial_scaled_avx512(const void* z, int64_t n, float s) {
  return partial_impl<D, false, DType::F32, false, true>(z, n, nullptr, nullptr, s);
}
template <DType D>
Partial partial_store_scaled_avx512(const void* z, int64_t n, float* e, float s) {
  return partial_impl<D, true, DType::F32, false, true>(z, n, e, nullptr, s);
}
template <DType D, DType DOut>
Partial partial_store_write_scaled_avx512(const void* z, int64_t n, float* e, const Kernels::Pending& w, float s) {
  return partial_impl<D, true, DOut, true, true>(z, n, e, &w, s);
}

// scale_sub_store's elements one by one until g + j is aligned for a non-temporal store of 16 (or
// j = n); returns that j.
template <DType DOut>
int64_t sub_store_head(const float* e, typename W<DOut>::T* g, int64_t n, float c, float beta, const float* w) {
  int64_t j = 0;
  for (; j < n && reinterpret_cast<uintptr_t>(g + j) % W<DOut>::kAlign; ++j)
    g[j] = Elem<DOut>::store(w ? std::fma(-beta, w[j], e[j] * c) : e[j] * c - beta);  // as the vectors
  return j;
}

// g = e·c − beta·w (w nullptr: − beta), as scale_store (stream: non-temporal middle).
template <DType DOut>
void scale_sub_store_avx512(const float* e, void* gv, int64_t n, float c, float beta, const float* w, bool stream) {
  using TO = typename W<DOut>::T;
  TO* g = static_cast<TO*>(gv);
  const __m512 cv = _mm512_set1_ps(c), bv = _mm512_set1_ps(beta);
  const auto val = [&](int64_t j) {
    return w ? _mm512_fnmadd_ps(bv, _mm512_loadu_ps(w + j), _mm512_mul_ps(_mm512_loadu_ps(e + j), cv))
             : _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(e + j), cv), bv);
  };
  int64_t j = 0;
  if (stream) {
    j = sub_store_head<DOut>(e, g, n, c, beta, w);
    for (; j + kLanes <= n; j += kLanes) W<DOut>::stream(g + j, val(j));
    _mm_sfence();
  }
  for (; j + kLanes <= n; j += kLanes) W<DOut>::store(g + j, val(j));
  if (j < n) {
    const __mmask16 k = first(n - j);
    const __m512 ev = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, e + j), cv);
    const __m512 v = w ? _mm512_fnmadd_ps(bv, _mm512_maskz_loadu_ps(k, w + j), ev) : _mm512_sub_ps(ev, bv);
    W<DOut>::store_tail(g + j, v, n - j);
  }
}

// Label smoothing's block (Kernels::partial_smooth): pass 1 the max of x = s·z (kept as floats
// in L1 for 16-bit input, as partial_impl), pass 2 the exps with, per 16 elements, one more
// subtraction (q −= d·w, d = x − m ≤ 0) and with weights one more add (wsum). Tails are masked:
// their padding adds nothing to q or wsum.
// With Write (Store, Modes 0 and 1: the fused smoothing path), the pending span pend goes out as
// scale_sub_store would write it, 16 elements per 16 exps (as partial_impl's Write).
template <DType D, bool Store, int Mode, bool Scaled, DType DOut = DType::F32, bool Write = false>
SmoothPartial partial_smooth_impl(const void* zv, int64_t n, float sc, const float* wt, float* e,
                                  const Kernels::Pending* pend = nullptr) {
  // Mode 0: q = Σ (m − x_j); 1: q = Σ w_j·(m − x_j), wsum = Σ w_j; 2 (entropy): q = Σ e_j·(m − x_j),
  // with m − x_j capped at FLT_MAX so that a masked element (e_j = 0, x_j = −inf) adds 0
  // Mode 3 (probability targets): as 1 over the elements with w_j ≠ 0 only, and s as the entropy's
  constexpr bool Weighted = Mode == 1 || Mode == 3, Ent = Mode == 2, Masked = Mode == 3, DS = Ent || Masked;
  using T = typename W<D>::T;
  const T* z = static_cast<const T*>(zv);
  const int64_t n16 = n & ~int64_t(kLanes - 1);
  const float ninf = -std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const __m512 scv = _mm512_set1_ps(sc), ninfv = _mm512_set1_ps(ninf);
  const auto ld = [&](int64_t j) { return Scaled ? _mm512_mul_ps(W<D>::load(z + j), scv) : W<D>::load(z + j); };
  const auto ld_tail = [&](int64_t j, int64_t k) {
    const __m512 v = W<D>::load_tail(z + j, k);
    return Scaled ? _mm512_mask_mul_ps(ninfv, first(k), v, scv) : v;
  };
  constexpr bool kKeep = D != DType::F32;
  alignas(64) float w[kKeep ? kBlock : 1];
  __m512 m0 = ninfv, m1 = ninfv;
  int64_t j = 0;
  for (; j + 2 * kLanes <= n; j += 2 * kLanes) {
    const __m512 a = ld(j), b = ld(j + kLanes);
    if (kKeep) {
      _mm512_storeu_ps(w + j, a);
      _mm512_storeu_ps(w + j + kLanes, b);
    }
    m0 = _mm512_max_ps(m0, a);
    m1 = _mm512_max_ps(m1, b);
  }
  for (; j + kLanes <= n; j += kLanes) {
    const __m512 a = ld(j);
    if (kKeep) _mm512_storeu_ps(w + j, a);
    m0 = _mm512_max_ps(m0, a);
  }
  if (n > n16) {
    const __m512 a = ld_tail(n16, n - n16);
    if (kKeep) _mm512_storeu_ps(w + n16, a);
    m1 = _mm512_max_ps(m1, a);
  }
  float m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
  // wsum does not depend on the logits
  const auto weight_sum = [&] {
    if (!Weighted) return float(n);
    __m512 ws = _mm512_setzero_ps();
    for (int64_t i = 0; i < n16; i += kLanes) ws = _mm512_add_ps(ws, _mm512_loadu_ps(wt + i));
    if (n > n16) ws = _mm512_add_ps(ws, _mm512_maskz_loadu_ps(first(n - n16), wt + n16));
    return reduce16(ws);
  };
  if (m == ninf) {  // a fully masked block, unless it hides a NaN
    __mmask16 bad = 0;
    for (int64_t i = 0; i < n16; i += kLanes) bad |= _mm512_cmp_ps_mask(ld(i), _mm512_setzero_ps(), _CMP_UNORD_Q);
    if (n > n16) bad |= _mm512_cmp_ps_mask(ld_tail(n16, n - n16), _mm512_setzero_ps(), _CMP_UNORD_Q);
    if (bad) m = nan;
  }
  if (m != m || m == ninf) {
    if (Store)
      for (int64_t i = 0; i < n; ++i) e[i] = m != m ? nan : 0.0f;
    if (Write) scale_sub_store_avx512<DOut>(pend->e, pend->g, pend->n, pend->c, pend->beta, pend->w, pend->stream);
    const float ws = weight_sum();
    return {m, m != m ? nan : 0.0, m != m ? nan : (ws > 0.0f ? std::numeric_limits<double>::infinity() : 0.0), double(ws)};
  }
  const auto src = [&](int64_t i) { return kKeep ? _mm512_loadu_ps(w + i) : ld(i); };
  const __m512 mv = _mm512_set1_ps(m);
  __m512 s = _mm512_setzero_ps(), ws = _mm512_setzero_ps();
  DAcc qa, sa, wa;  // q; the entropy's and probabilities' s and the latter's wsum (the lse's s stays
                    // in fp32 lanes, as the plain kernels)
  const char* ahead = reinterpret_cast<const char*>(z + kBlock);
  using TO = typename W<DOut>::T;
  TO* const wg = Write ? static_cast<TO*>(pend->g) : nullptr;
  const __m512 wc = _mm512_set1_ps(Write ? pend->c : 0.0f), wb = _mm512_set1_ps(Write ? pend->beta : 0.0f);
  int64_t wj = 0, wend = 0;  // elements [wj, wend) of the span are written in the loop
  if (Write) {
    if (pend->stream) wj = sub_store_head<DOut>(pend->e, wg, pend->n, pend->c, pend->beta, pend->w);
    wend = wj + std::min((pend->n - wj) / kLanes, n16 / kLanes) * kLanes;
  }
  for (int64_t i = 0; i < n16; i += kLanes) {
    _mm_prefetch(ahead + i * int64_t(sizeof(T)), _MM_HINT_T1);
    if (Write && wj < wend) {
      // scale_sub_store's value for these 16: e·c − beta·w (w ≡ 1: − beta)
      const __m512 ec = _mm512_mul_ps(_mm512_loadu_ps(pend->e + wj), wc);
      const __m512 v = pend->w ? _mm512_fnmadd_ps(wb, _mm512_loadu_ps(pend->w + wj), ec) : _mm512_sub_ps(ec, wb);
      if (pend->stream) W<DOut>::stream(wg + wj, v);
      else W<DOut>::store(wg + wj, v);
      wj += kLanes;
    }
    const __m512 d = _mm512_sub_ps(src(i), mv);
    const __m512 x = exp16<Range::kUpTo0>(d);
    if (DS) sa.f = _mm512_add_ps(sa.f, x);
    else s = _mm512_add_ps(s, x);
    if (Masked) {
      const __m512 wv = _mm512_loadu_ps(wt + i);
      qa.f = _mm512_mask3_fnmadd_ps(wv, d, qa.f, _mm512_cmp_ps_mask(wv, _mm512_setzero_ps(), _CMP_NEQ_UQ));
      wa.f = _mm512_add_ps(wa.f, wv);
    } else if (Weighted) {
      const __m512 wv = _mm512_loadu_ps(wt + i);
      qa.f = _mm512_fnmadd_ps(wv, d, qa.f);
      ws = _mm512_add_ps(ws, wv);
    } else if (Ent) {
      qa.f = _mm512_fnmadd_ps(x, _mm512_max_ps(d, _mm512_set1_ps(-std::numeric_limits<float>::max())), qa.f);
    } else {
      qa.f = _mm512_sub_ps(qa.f, d);
    }
    if (Store) _mm512_storeu_ps(e + i, x);
    if (chunk_end(i)) {
      qa.flush();
      if (DS) sa.flush();
      if (Masked) wa.flush();
    }
  }
  if (n > n16) {
    const __mmask16 k = first(n - n16);
    const __m512 d = _mm512_sub_ps(kKeep ? _mm512_loadu_ps(w + n16) : ld_tail(n16, n - n16), mv);
    const __m512 x = exp16<Range::kUpTo0>(d);
    if (DS) sa.f = _mm512_add_ps(sa.f, x);
    else s = _mm512_add_ps(s, x);
    if (Weighted) {
      const __m512 wv = _mm512_maskz_loadu_ps(k, wt + n16);
      qa.f = _mm512_mask3_fnmadd_ps(wv, d, qa.f, Masked ? __mmask16(k & _mm512_cmp_ps_mask(wv, _mm512_setzero_ps(), _CMP_NEQ_UQ)) : k);
      if (Masked) wa.f = _mm512_add_ps(wa.f, wv);
      else ws = _mm512_add_ps(ws, wv);
    } else if (Ent) {
      qa.f = _mm512_mask3_fnmadd_ps(x, _mm512_max_ps(d, _mm512_set1_ps(-std::numeric_limits<float>::max())), qa.f, k);
    } else {
      qa.f = _mm512_mask_sub_ps(qa.f, k, qa.f, d);
    }
    if (Store) _mm512_mask_storeu_ps(e + n16, k, x);
  }
  if (Write)  // the rest of the span; its sfence
    scale_sub_store_avx512<DOut>(pend->e + wj, wg + wj, pend->n - wj, pend->c, pend->beta, pend->w ? pend->w + wj : nullptr,
                                 pend->stream);
  return {m, DS ? sa.reduce() : double(reduce16(s)), qa.reduce(), Masked ? wa.reduce() : Weighted ? double(reduce16(ws)) : double(n)};
}

// partial_smooth with e, writing a pending span inside its exp loop (Kernels::partial_smooth_write).
template <DType D, DType DOut>
SmoothPartial partial_smooth_write_avx512(const void* z, int64_t n, float s, const float* w, float* e,
                                          const Kernels::Pending& p) {
  if (s == 1.0f) {
    if (w) return partial_smooth_impl<D, true, 1, false, DOut, true>(z, n, s, w, e, &p);
    return partial_smooth_impl<D, true, 0, false, DOut, true>(z, n, s, w, e, &p);
  }
  if (w) return partial_smooth_impl<D, true, 1, true, DOut, true>(z, n, s, w, e, &p);
  return partial_smooth_impl<D, true, 0, true, DOut, true>(z, n, s, w, e, &p);
}

template <DType D>
SmoothPartial partial_smooth_avx512(const void* z, int64_t n, float s, const float* w, float* e) {
  if (s == 1.0f) {
    if (w) return e ? partial_smooth_impl<D, true, 1, false>(z, n, s, w, e) : partial_smooth_impl<D, false, 1, false>(z, n, s, w, e);
    return e ? partial_smooth_impl<D, true, 0, false>(z, n, s, w, e) : partial_smooth_impl<D, false, 0, false>(z, n, s, w, e);
  }
  if (w) return e ? partial_smooth_impl<D, true, 1, true>(z, n, s, w, e) : partial_smooth_impl<D, false, 1, true>(z, n, s, w, e);
  return e ? partial_smooth_impl<D, true, 0, true>(z, n, s, w, e) : partial_smooth_impl<D, false, 0, true>(z, n, s, w, e);
}

template <DType D>
SmoothPartial partial_entropy_avx512(const void* z, int64_t n, float s, float* e) {
  if (s == 1.0f) return e ? partial_smooth_impl<D, true, 2, false>(z, n, s, nullptr, e) : partial_smooth_impl<D, false, 2, false>(z, n, s, nullptr, e);
  return e ? partial_smooth_impl<D, true, 2, true>(z, n, s, nullptr, e) : partial_smooth_impl<D, false, 2, true>(z, n, s, nullptr, e);
}

// The entropy's gradient from pass 1's exps (Kernels::entropy_grad_store):
//   g_j = c·e_j·((s·z_j − m) + k), 0 where e_j = 0. z_j is loaded before g_j is stored (in place).
// Writes g[0, n) as part(j, k): the values of the k ≤ 16 elements at j, as a vector (masked loads
// past k). With stream, the elements one by one until g + j is aligned, then the aligned middle
// with non-temporal stores and an sfence (as scale_store); the rest with ordinary stores.
template <DType DOut, class Part>
void store_span(typename W<DOut>::T* g, int64_t n, bool stream, Part&& part) {
  int64_t j = 0;
  if (stream) {
    for (; j < n && reinterpret_cast<uintptr_t>(g + j) % W<DOut>::kAlign; ++j) W<DOut>::store_tail(g + j, part(j, 1), 1);
    for (; j + kLanes <= n; j += kLanes) W<DOut>::stream(g + j, part(j, kLanes));
    _mm_sfence();
  }
  for (; j + kLanes <= n; j += kLanes) W<DOut>::store(g + j, part(j, kLanes));
  if (j < n) W<DOut>::store_tail(g + j, part(j, n - j), n - j);
}

template <DType DIn, DType DOut>
void entropy_grad_store_avx512(const void* zv, const float* e, void* gv, int64_t n, float s, float m, float k, float c,
                               bool stream) {
  const auto* z = static_cast<const typename W<DIn>::T*>(zv);
  auto* g = static_cast<typename W<DOut>::T*>(gv);
  const __m512 sv = _mm512_set1_ps(s), mv = _mm512_set1_ps(m), kv = _mm512_set1_ps(k), cv = _mm512_set1_ps(c);
  const auto val = [&](__m512 zx, __m512 ev) {
    const __m512 x = s == 1.0f ? zx : _mm512_mul_ps(zx, sv);
    const __m512 pe = _mm512_mul_ps(ev, cv);  // −(up/T)·p_j: 0 where p_j underflows (or is 0)
    const __m512 v = _mm512_mul_ps(pe, _mm512_add_ps(_mm512_sub_ps(x, mv), kv));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(pe, _mm512_setzero_ps(), _CMP_NEQ_UQ), v);
  };
  store_span<DOut>(g, n, stream, [&](int64_t j, int64_t cnt) {
    if (cnt == kLanes) return val(W<DIn>::load(z + j), _mm512_loadu_ps(e + j));
    return val(W<DIn>::load_tail(z + j, cnt), _mm512_maskz_loadu_ps(first(cnt), e + j));
  });
}

// A block pair of x = s·z and y = s·u (Kernels::partial_pair): pass 1 the two maxima; pass 2 loads
// both blocks again (from L1; keeping them widened on the stack instead measured no faster, A/B
// 0.44–0.48× vs 0.46–0.49× of plain) and takes both exps and the op's cross term, each masked to the elements
// whose exp weight (e^y for Op 0 and 1, e^x for Op 2) is not 0. A fully masked side takes 0 as its
// max in pass 2 (so its exps are 0, not NaN) and reports −inf.
template <DType DZ, DType DU, int Op, bool Store, bool Scaled>
PairPartial partial_pair_impl(const void* zv, const void* uv, int64_t n, float sc, float* ex, float* ey) {
  const auto* z = static_cast<const typename W<DZ>::T*>(zv);
  const auto* u = static_cast<const typename W<DU>::T*>(uv);
  const int64_t n16 = n & ~int64_t(kLanes - 1);
  const float ninf = -std::numeric_limits<float>::infinity();
  const __m512 scv = _mm512_set1_ps(sc), ninfv = _mm512_set1_ps(ninf);
  const auto load2 = [&](int64_t j, __m512& a, __m512& b) {
    if (j < n16) {
      a = W<DZ>::load(z + j);
      b = W<DU>::load(u + j);
      if (Scaled) a = _mm512_mul_ps(a, scv), b = _mm512_mul_ps(b, scv);
    } else {
      const __mmask16 k = first(n - n16);
      a = W<DZ>::load_tail(z + j, n - n16);
      b = W<DU>::load_tail(u + j, n - n16);
      if (Scaled) a = _mm512_mask_mul_ps(ninfv, k, a, scv), b = _mm512_mask_mul_ps(ninfv, k, b, scv);
    }
  };
  __m512 mx0 = ninfv, my0 = ninfv;
  for (int64_t j = 0; j < n; j += kLanes) {
    __m512 a, b;
    load2(j, a, b);
    mx0 = _mm512_max_ps(mx0, a);
    my0 = _mm512_max_ps(my0, b);
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // vmaxps may drop a NaN; it then reaches the sums through its exp. A NaN sum (a NaN, or a +inf
  // max) makes the whole pair NaN, reported canonically after pass 2 (no compare in pass 1).
  const float mx = _mm512_reduce_max_ps(mx0), my = _mm512_reduce_max_ps(my0);
  const __m512 mxv = _mm512_set1_ps(mx == ninf ? 0.0f : mx), myv = _mm512_set1_ps(my == ninf ? 0.0f : my);
  const __m512 zero = _mm512_setzero_ps();
  DAcc sx, sy, c;
  // fetch both rows' next blocks into L2 while the exps run (as partial_impl; never faults)
  const char* ahead_z = reinterpret_cast<const char*>(z + kBlock);
  const char* ahead_u = reinterpret_cast<const char*>(u + kBlock);
  for (int64_t j = 0; j < n; j += kLanes) {
    _mm_prefetch(ahead_z + j * int64_t(sizeof(*z)), _MM_HINT_T1);
    _mm_prefetch(ahead_u + j * int64_t(sizeof(*u)), _MM_HINT_T1);
    __m512 x, y;
    load2(j, x, y);  // again from z and u (L1-resident since pass 1)
    const __m512 dx = _mm512_sub_ps(x, mxv), dy = _mm512_sub_ps(y, myv);
    // dx, dy ≤ 0 (or NaN, from a +inf max): the exp without its upper clamp, as the plain forward
    const __m512 a = exp16<Range::kUpTo0>(dx), b = exp16<Range::kUpTo0>(dy);  // padding: exp(−inf) = 0
    sx.f = _mm512_add_ps(sx.f, a);
    sy.f = _mm512_add_ps(sy.f, b);
    if (Op == 0) c.f = _mm512_mask3_fnmadd_ps(b, dx, c.f, _mm512_cmp_ps_mask(b, zero, _CMP_NEQ_UQ));
    if (Op == 1) c.f = _mm512_mask3_fmadd_ps(b, _mm512_sub_ps(y, x), c.f, _mm512_cmp_ps_mask(b, zero, _CMP_NEQ_UQ));
    if (Op == 2) c.f = _mm512_mask3_fmadd_ps(a, _mm512_sub_ps(x, y), c.f, _mm512_cmp_ps_mask(a, zero, _CMP_NEQ_UQ));
    if (chunk_end(j)) {
      sx.flush();
      sy.flush();
      c.flush();
    }
    if (Store) {
      if (j < n16) {
        _mm512_storeu_ps(ex + j, a);
        _mm512_storeu_ps(ey + j, b);
      } else {
        _mm512_mask_storeu_ps(ex + j, first(n - n16), a);
        _mm512_mask_storeu_ps(ey + j, first(n - n16), b);
      }
    }
  }
  // Op 0 with x fully masked: C = Σ e^y·(mx − x) is taken as 0 (the loss's (lse_x − mx)·Sy term is
  // +inf where Sy > 0), as the portable loop does
  const double ssx = sx.reduce(), ssy = sy.reduce(), cr = c.reduce(), cs = Op == 0 && mx == ninf ? 0.0 : cr;
  if (ssx != ssx || ssy != ssy) {
    if (Store)
      for (int64_t j = 0; j < n; ++j) ex[j] = ey[j] = nan;
    return {nan, nan, nan, nan, nan};
  }
  return {mx, ssx, my, ssy, cs};
}

template <int Op, DType DZ, DType DU>
PairPartial partial_pair_avx512(const void* z, const void* u, int64_t n, float s, float* ex, float* ey) {
  if (s == 1.0f)
    return ex ? partial_pair_impl<DZ, DU, Op, true, false>(z, u, n, s, ex, ey) : partial_pair_impl<DZ, DU, Op, false, false>(z, u, n, s, ex, ey);
  return ex ? partial_pair_impl<DZ, DU, Op, true, true>(z, u, n, s, ex, ey) : partial_pair_impl<DZ, DU, Op, false, true>(z, u, n, s, ex, ey);
}

// g = ex·a − ey·b (two products, then their difference).
template <DType DOut>
void pair_grad_store_avx512(const float* ex, const float* ey, void* gv, int64_t n, float a, float b, bool stream) {
  auto* g = static_cast<typename W<DOut>::T*>(gv);
  const __m512 av = _mm512_set1_ps(a), bv = _mm512_set1_ps(b);
  store_span<DOut>(g, n, stream, [&](int64_t j, int64_t cnt) {
    const __mmask16 k = cnt == kLanes ? __mmask16(0xffff) : first(cnt);
    return _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, ex + j), av), _mm512_mul_ps(_mm512_maskz_loadu_ps(k, ey + j), bv));
  });
}

// KL reverse's gradient (Kernels::klr_grad_store); z_j and u_j are loaded before g_j is stored.
template <DType DZ, DType DU, DType DOut>
void klr_grad_store_avx512(const void* zv, const void* uv, const float* ex, void* gv, int64_t n, float s, float mx,
                           float my, float k, float c, bool stream) {
  const auto* z = static_cast<const typename W<DZ>::T*>(zv);
  const auto* u = static_cast<const typename W<DU>::T*>(uv);
  auto* g = static_cast<typename W<DOut>::T*>(gv);
  const __m512 sv = _mm512_set1_ps(s), mxv = _mm512_set1_ps(mx), myv = _mm512_set1_ps(my), kv = _mm512_set1_ps(k),
               cv = _mm512_set1_ps(c);
  const auto val = [&](__m512 zx, __m512 uy, __m512 e) {
    const __m512 x = s == 1.0f ? zx : _mm512_mul_ps(zx, sv), y = s == 1.0f ? uy : _mm512_mul_ps(uy, sv);
    const __m512 pe = _mm512_mul_ps(cv, e);  // c·p_j: 0 where p_j underflows (or is 0)
    const __m512 v = _mm512_mul_ps(pe, _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(x, mxv), _mm512_sub_ps(y, myv)), kv));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(pe, _mm512_setzero_ps(), _CMP_NEQ_UQ), v);
  };
  store_span<DOut>(g, n, stream, [&](int64_t j, int64_t cnt) {
    if (cnt == kLanes) return val(W<DZ>::load(z + j), W<DU>::load(u + j), _mm512_loadu_ps(ex + j));
    return val(W<DZ>::load_tail(z + j, cnt), W<DU>::load_tail(u + j, cnt), _mm512_maskz_loadu_ps(first(cnt), ex + j));
  });
}

// Binary CE's block (Kernels::bce_block): binary_cross_entropy.cpp's element math with FMAs
// (lw = (pw − 1)·y + 1, the log1p series by Horner, l = w·(lw·L + lin)), 16 elements at a time, the
// losses summed in 16 double lanes as lane_sum_f64. Bitwise the AVX2 kernel (the same operations);
// within rounding of the portable loop, which has no FMA. Unit (pw and w nullptr: every weight 1)
// drops their loads and products, as the AVX2 kernel (each exact, so the same bits).
template <DType DIn, DType DOut, bool WithL, bool WithG, bool Unit>
double bce_block_impl(const void* xv, const float* y, const float* pwb, const float* wb, int64_t n, float* l, void* gv,
                      float gscale) {
  const auto* z = static_cast<const typename W<DIn>::T*>(xv);
  auto* g = static_cast<typename W<DOut>::T*>(gv);
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f), zero = _mm512_setzero_ps();
  const __m512 sv = _mm512_set1_ps(gscale), sign = _mm512_set1_ps(-0.0f);  // −v = v ^ sign, exactly
  __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
  const auto step = [&](int64_t j, __mmask16 k, bool full) {
    const __m512 x = full ? W<DIn>::load(z + j) : _mm512_maskz_mov_ps(k, W<DIn>::load_tail(z + j, n - j));
    const __m512 yj = full ? _mm512_loadu_ps(y + j) : _mm512_maskz_loadu_ps(k, y + j);
    const __m512 pw = Unit ? one : full ? _mm512_loadu_ps(pwb + j) : _mm512_maskz_loadu_ps(k, pwb + j);
    const __m512 wj = Unit ? one : full ? _mm512_loadu_ps(wb + j) : _mm512_maskz_loadu_ps(k, wb + j);
    const __m512 e1 = exp16<Range::kUpTo0>(_mm512_or_ps(x, sign));  // e^{−|x|}
    const __m512 s = _mm512_div_ps(e1, _mm512_add_ps(two, e1)), s2 = _mm512_mul_ps(s, s);
    __m512 q = _mm512_set1_ps(1.0f / 15);
    for (const float c : {1.0f / 13, 1.0f / 11, 1.0f / 9, 1.0f / 7, 1.0f / 5, 1.0f / 3, 1.0f})
      q = _mm512_fmadd_ps(q, s2, _mm512_set1_ps(c));
    const __m512 L = _mm512_mul_ps(_mm512_add_ps(s, s), q);  // log1p(e^{−|x|}) = 2·s·q
    const __mmask16 pos = _mm512_cmp_ps_mask(x, zero, _CMP_GE_OQ);
    const __m512 omy = _mm512_sub_ps(one, yj), pwy = Unit ? yj : _mm512_mul_ps(pw, yj);
    // x ≥ 0: (1 − y)·x; x < 0: −pw·y·x (both forms sums of non-negative terms)
    const __m512 lin = _mm512_mul_ps(_mm512_mask_blend_ps(pos, _mm512_xor_ps(pwy, sign), omy), x);
    __m512 lv = Unit ? _mm512_add_ps(L, lin)
                     : _mm512_mul_ps(wj, _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_sub_ps(pw, one), yj, one), L, lin));
    if (!full) lv = _mm512_maskz_mov_ps(k, lv);
    if (WithL) {
      if (full) _mm512_storeu_ps(l + j, lv);
      else _mm512_mask_storeu_ps(l + j, k, lv);
    }
    acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(lv)));
    acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(lv), 1))));
    if (WithG) {
      // dl/dx = w·((1 − y)·a − pw·y·b)/(1 + e), (a, b) = (1, e) for x ≥ 0 and (e, 1) for x < 0
      const __m512 av = _mm512_mask_blend_ps(pos, e1, one), bv = _mm512_mask_blend_ps(pos, one, e1);
      const __m512 num = _mm512_fmsub_ps(omy, av, _mm512_mul_ps(pwy, bv));
      const __m512 gv2 = _mm512_mul_ps(_mm512_div_ps(Unit ? num : _mm512_mul_ps(wj, num), _mm512_add_ps(one, e1)), sv);
      if (full) W<DOut>::store(g + j, gv2);
      else W<DOut>::store_tail(g + j, gv2, n - j);
    }
  };
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) step(j, 0xffff, true);
  if (j < n) step(j, first(n - j), false);
  const __m512d s8 = _mm512_add_pd(acc0, acc1);
  const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
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
double bce_block_avx512(const void* x, const float* y, const float* pw, const float* w, int64_t n, float* l, void* g,
                        float gscale) {
  // pw and w both nullptr: every weight 1 (Kernels::bce_block)
  return !pw && !w ? bce_block_for<DIn, DOut, true>(x, y, pw, w, n, l, g, gscale) : bce_block_for<DIn, DOut, false>(x, y, pw, w, n, l, g, gscale);
}

template <DType D>
SmoothPartial partial_probs_avx512(const void* z, int64_t n, float s, const float* q, float* e) {
  if (s == 1.0f) return e ? partial_smooth_impl<D, true, 3, false>(z, n, s, q, e) : partial_smooth_impl<D, false, 3, false>(z, n, s, q, e);
  return e ? partial_smooth_impl<D, true, 3, true>(z, n, s, q, e) : partial_smooth_impl<D, false, 3, true>(z, n, s, q, e);
}

// g = exp(z − lse) · scale; returns Σ exp(z − lse) in the 16 lanes. Each 16 are loaded before
// they are stored: in place (g == z) is safe.
template <DType DIn, DType DOut>
float grad_avx512(const void* zv, void* gv, int64_t n, float lse, float scale) {
  const auto* z = static_cast<const typename W<DIn>::T*>(zv);
  auto* g = static_cast<typename W<DOut>::T*>(gv);
  const int64_t n16 = n & ~int64_t(kLanes - 1);
  const __m512 lv = _mm512_set1_ps(lse), sv = _mm512_set1_ps(scale);
  __m512 s = _mm512_setzero_ps();
  for (int64_t j = 0; j < n16; j += kLanes) {
    const __m512 p = exp16(_mm512_sub_ps(W<DIn>::load(z + j), lv));
    s = _mm512_add_ps(s, p);
    W<DOut>::store(g + j, _mm512_mul_ps(p, sv));
  }
  if (n > n16) {
    const __m512 p = exp16(_mm512_sub_ps(W<DIn>::load_tail(z + n16, n - n16), lv));
    s = _mm512_add_ps(s, p);
    W<DOut>::store_tail(g + n16, _mm512_mul_ps(p, sv), n - n16);
  }
  return reduce16(s);
}

void exp_avx512(const float* x, float* y, int64_t n) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) _mm512_storeu_ps(y + j, exp16(_mm512_loadu_ps(x + j)));
  if (j < n) _mm512_mask_storeu_ps(y + j, first(n - j), exp16(_mm512_maskz_loadu_ps(first(n - j), x + j)));
}

const Kernels kAvx512 = {
    "avx512",
    {partial_avx512<DType::F32>, partial_avx512<DType::F16>, partial_avx512<DType::BF16>},
    {
        {grad_avx512<DType::F32, DType::F32>, grad_avx512<DType::F32, DType::F16>, grad_avx512<DType::F32, DType::BF16>},
        {grad_avx512<DType::F16, DType::F32>, grad_avx512<DType::F16, DType::F16>, grad_avx512<DType::F16, DType::BF16>},
        {grad_avx512<DType::BF16, DType::F32>, grad_avx512<DType::BF16, DType::F16>, grad_avx512<DType::BF16, DType::BF16>},
    },
    {partial_store_avx512<DType::F32>, partial_store_avx512<DType::F16>, partial_store_avx512<DType::BF16>},
    {scale_store_avx512<DType::F32>, scale_store_avx512<DType::F16>, scale_store_avx512<DType::BF16>},
    exp_avx512,
    {
        {partial_store_write_avx512<DType::F32, DType::F32>, partial_store_write_avx512<DType::F32, DType::F16>,
         partial_store_write_avx512<DType::F32, DType::BF16>},
        {partial_store_write_avx512<DType::F16, DType::F32>, partial_store_write_avx512<DType::F16, DType::F16>,
         partial_store_write_avx512<DType::F16, DType::BF16>},
        {partial_store_write_avx512<DType::BF16, DType::F32>, partial_store_write_avx512<DType::BF16, DType::F16>,
         partial_store_write_avx512<DType::BF16, DType::BF16>},
    },
    {partial_scaled_avx512<DType::F32>, partial_scaled_avx512<DType::F16>, partial_scaled_avx512<DType::BF16>},
    {partial_store_scaled_avx512<DType::F32>, partial_store_scaled_avx512<DType::F16>,
     partial_store_scaled_avx512<DType::BF16>},
    {
        {partial_store_write_scaled_avx512<DType::F32, DType::F32>, partial_store_write_scaled_avx512<DType::F32, DType::F16>,
         partial_store_write_scaled_avx512<DType::F32, DType::BF16>},
        {partial_store_write_scaled_avx512<DType::F16, DType::F32>, partial_store_write_scaled_avx512<DType::F16, DType::F16>,
         partial_store_write_scaled_avx512<DType::F16, DType::BF16>},
        {partial_store_write_scaled_avx512<DType::BF16, DType::F32>,
         partial_store_write_scaled_avx512<DType::BF16, DType::F16>,
         partial_store_write_scaled_avx512<DType::BF16, DType::BF16>},
    },
    {partial_smooth_avx512<DType::F32>, partial_smooth_avx512<DType::F16>, partial_smooth_avx512<DType::BF16>},
    {scale_sub_store_avx512<DType::F32>, scale_sub_store_avx512<DType::F16>, scale_sub_store_avx512<DType::BF16>},
    {partial_entropy_avx512<DType::F32>, partial_entropy_avx512<DType::F16>, partial_entropy_avx512<DType::BF16>},
    {
        {entropy_grad_store_avx512<DType::F32, DType::F32>, entropy_grad_store_avx512<DType::F32, DType::F16>,
         entropy_grad_store_avx512<DType::F32, DType::BF16>},
        {entropy_grad_store_avx512<DType::F16, DType::F32>, entropy_grad_store_avx512<DType::F16, DType::F16>,
         entropy_grad_store_avx512<DType::F16, DType::BF16>},
        {entropy_grad_store_avx512<DType::BF16, DType::F32>, entropy_grad_store_avx512<DType::BF16, DType::F16>,
         entropy_grad_store_avx512<DType::BF16, DType::BF16>},
    },
    {
        {{partial_pair_avx512<0, DType::F32, DType::F32>, partial_pair_avx512<0, DType::F32, DType::F16>, partial_pair_avx512<0, DType::F32, DType::BF16>},
         {partial_pair_avx512<0, DType::F16, DType::F32>, partial_pair_avx512<0, DType::F16, DType::F16>, partial_pair_avx512<0, DType::F16, DType::BF16>},
         {partial_pair_avx512<0, DType::BF16, DType::F32>, partial_pair_avx512<0, DType::BF16, DType::F16>, partial_pair_avx512<0, DType::BF16, DType::BF16>}},
        {{partial_pair_avx512<1, DType::F32, DType::F32>, partial_pair_avx512<1, DType::F32, DType::F16>, partial_pair_avx512<1, DType::F32, DType::BF16>},
         {partial_pair_avx512<1, DType::F16, DType::F32>, partial_pair_avx512<1, DType::F16, DType::F16>, partial_pair_avx512<1, DType::F16, DType::BF16>},
         {partial_pair_avx512<1, DType::BF16, DType::F32>, partial_pair_avx512<1, DType::BF16, DType::F16>, partial_pair_avx512<1, DType::BF16, DType::BF16>}},
        {{partial_pair_avx512<2, DType::F32, DType::F32>, partial_pair_avx512<2, DType::F32, DType::F16>, partial_pair_avx512<2, DType::F32, DType::BF16>},
         {partial_pair_avx512<2, DType::F16, DType::F32>, partial_pair_avx512<2, DType::F16, DType::F16>, partial_pair_avx512<2, DType::F16, DType::BF16>},
         {partial_pair_avx512<2, DType::BF16, DType::F32>, partial_pair_avx512<2, DType::BF16, DType::F16>, partial_pair_avx512<2, DType::BF16, DType::BF16>}},
    },
    {pair_grad_store_avx512<DType::F32>, pair_grad_store_avx512<DType::F16>, pair_grad_store_avx512<DType::BF16>},
    {
        {{klr_grad_store_avx512<DType::F32, DType::F32, DType::F32>, klr_grad_store_avx512<DType::F32, DType::F32, DType::F16>, klr_grad_store_avx512<DType::F32, DType::F32, DType::BF16>},
         {klr_grad_store_avx512<DType::F32, DType::F16, DType::F32>, klr_grad_store_avx512<DType::F32, DType::F16, DType::F16>, klr_grad_store_avx512<DType::F32, DType::F16, DType::BF16>},
         {klr_grad_store_avx512<DType::F32, DType::BF16, DType::F32>, klr_grad_store_avx512<DType::F32, DType::BF16, DType::F16>, klr_grad_store_avx512<DType::F32, DType::BF16, DType::BF16>}},
        {{klr_grad_store_avx512<DType::F16, DType::F32, DType::F32>, klr_grad_store_avx512<DType::F16, DType::F32, DType::F16>, klr_grad_store_avx512<DType::F16, DType::F32, DType::BF16>},
         {klr_grad_store_avx512<DType::F16, DType::F16, DType::F32>, klr_grad_store_avx512<DType::F16, DType::F16, DType::F16>, klr_grad_store_avx512<DType::F16, DType::F16, DType::BF16>},
         {klr_grad_store_avx512<DType::F16, DType::BF16, DType::F32>, klr_grad_store_avx512<DType::F16, DType::BF16, DType::F16>, klr_grad_store_avx512<DType::F16, DType::BF16, DType::BF16>}},
        {{klr_grad_store_avx512<DType::BF16, DType::F32, DType::F32>, klr_grad_store_avx512<DType::BF16, DType::F32, DType::F16>, klr_grad_store_avx512<DType::BF16, DType::F32, DType::BF16>},
         {klr_grad_store_avx512<DType::BF16, DType::F16, DType::F32>, klr_grad_store_avx512<DType::BF16, DType::F16, DType::F16>, klr_grad_store_avx512<DType::BF16, DType::F16, DType::BF16>},
         {klr_grad_store_avx512<DType::BF16, DType::BF16, DType::F32>, klr_grad_store_avx512<DType::BF16, DType::BF16, DType::F16>, klr_grad_store_avx512<DType::BF16, DType::BF16, DType::BF16>}},
    },
    {
        {bce_block_avx512<DType::F32, DType::F32>, bce_block_avx512<DType::F32, DType::F16>, bce_block_avx512<DType::F32, DType::BF16>},
        {bce_block_avx512<DType::F16, DType::F32>, bce_block_avx512<DType::F16, DType::F16>, bce_block_avx512<DType::F16, DType::BF16>},
        {bce_block_avx512<DType::BF16, DType::F32>, bce_block_avx512<DType::BF16, DType::F16>, bce_block_avx512<DType::BF16, DType::BF16>},
    },
    {partial_probs_avx512<DType::F32>, partial_probs_avx512<DType::F16>, partial_probs_avx512<DType::BF16>},
    {
        {partial_smooth_write_avx512<DType::F32, DType::F32>, partial_smooth_write_avx512<DType::F32, DType::F16>,
         partial_smooth_write_avx512<DType::F32, DType::BF16>},
        {partial_smooth_write_avx512<DType::F16, DType::F32>, partial_smooth_write_avx512<DType::F16, DType::F16>,
         partial_smooth_write_avx512<DType::F16, DType::BF16>},
        {partial_smooth_write_avx512<DType::BF16, DType::F32>, partial_smooth_write_avx512<DType::BF16, DType::F16>,
         partial_smooth_write_avx512<DType::BF16, DType::BF16>},
    },
    // AVX2's (above): no 512-bit version of these yet
    {partial_softcap_avx2<DType::F32>, partial_softcap_avx2<DType::F16>, partial_softcap_avx2<DType::BF16>},
    {scale_sub_mul_store_avx2<DType::F32>, scale_sub_mul_store_avx2<DType::F16>, scale_sub_mul_store_avx2<DType::BF16>},
};

}  // namespace

#if FUSEDCE_NATIVE_BF16
const Kernels* avx512bf16_kernels() { return &kAvx512; }
#else
const Kernels* avx512_kernels() { return &kAvx512; }
#endif

}  // namespace fusedce
