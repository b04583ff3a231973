// Out-of-line element loops of the loss family (see loss_rows.h), each built in several ISA clones.
#include "loss_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "thread_pool.h"

namespace fusedce {

namespace {
// Whether any of v[0, n) is outside [lo, hi] (or NaN): branch-free, so that each clone vectorises it.
FUSEDCE_CLONES bool any_outside(const float* __restrict v, int64_t n, float lo, float hi) {
  int bad = 0;
  for (int64_t j = 0; j < n; ++j) bad |= !(v[j] >= lo && v[j] <= hi);
  return bad != 0;
}
FUSEDCE_CLONES bool any_nonzero(const float* __restrict v, int64_t n) {
  int any = 0;
  for (int64_t j = 0; j < n; ++j) any |= v[j] != 0.0f;
  return any != 0;
}
}  // namespace

int64_t first_outside(const float* v, int64_t n, float lo, float hi, int threads) {
  constexpr int64_t kChunk = int64_t(1) << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<uint8_t> bad(size_t(chunks), 0);
  parallel_for(chunks, threads, [&](int64_t c) {
    const int64_t b = c * kChunk;
    bad[size_t(c)] = any_outside(v + b, std::min(kChunk, n - b), lo, hi);
  });
  for (int64_t c = 0; c < chunks; ++c)
    if (bad[size_t(c)])
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i)
        if (!(v[i] >= lo && v[i] <= hi)) return i;
  return -1;
}

__attribute__((noinline)) BlockBuffers& block_buffers() {
  thread_local BlockBuffers buf;
  return buf;
}

double sum_f64(const float* v, int64_t n) { return lane_sum_f64(n, [&](int64_t j) { return v[j]; }); }

int64_t count_nonzero_rows(const float* q, int64_t rows, int64_t vocab, int threads) {
  std::vector<uint8_t> any(size_t(rows), 0);
  parallel_for(rows, threads, [&](int64_t r) { any[size_t(r)] = any_nonzero(q + size_t(r) * size_t(vocab), vocab); });
  int64_t count = 0;
  for (uint8_t a : any) count += a;
  return count;
}

// The element loops of widen and of the cross-entropy's logit transform (loss_rows.h), here so that
// each is built in the ISA clones: in the general loops' callers they ran at baseline width.
FUSEDCE_CLONES void widen_block(const void* z, DType dt, int64_t n, float* x) {
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

// narrow's loops (loss_rows.h), cloned for the same reason: inline in the gradient drivers they
// ran at baseline width (4 lanes). The conversions are integer operations, the same bits at any width.
FUSEDCE_CLONES void narrow_block(const float* __restrict v, DType dt, int64_t n, void* __restrict g) {
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

// tanh u = u + u³·P(u²) for |u| < 0.55, P's coefficients the series' (−1/3, 2/15, −17/315, …);
// inlined into each clone that calls it.
static inline float tanh_series(float vs) {
  const float v2 = vs * vs;
  float p = 5.9002744094558595e-4f;
  p = p * v2 - 1.4558343870513183e-3f;
  p = p * v2 + 3.5921280365724810e-3f;
  p = p * v2 - 8.8632355299021966e-3f;
  p = p * v2 + 2.1869488536155203e-2f;
  p = p * v2 - 5.3968253968253968e-2f;
  p = p * v2 + 1.3333333333333333e-1f;
  p = p * v2 - 3.3333333333333333e-1f;
  return vs + vs * v2 * p;
}

FUSEDCE_CLONES void scale_softcap_block(const Kernels& k, float* x, int64_t n, float s, float c, float* t, float* d) {
  if (c > 0.0f) {
    const float inv = 1.0f / c;
    // u = (s·x)/c in one pass, noting whether any |u| reaches 0.55 (NaN counts)
    int far = 0;
    if (s != 1.0f) {
      for (int64_t j = 0; j < n; ++j) {
        const float u = (x[j] * s) * inv;
        x[j] = u;
        far |= !(std::fabs(u) < 0.55f);
      }
    } else {
      for (int64_t j = 0; j < n; ++j) {
        const float u = x[j] * inv;
        x[j] = u;
        far |= !(std::fabs(u) < 0.55f);
      }
    }
    if (!far) {
      // tanh by its series alone (no exp, no division), then ×c (and d = s·(1 − tanh²)) in the same
      // pass: the same operations, in the same order, as tanh_block's selects would take for every
      // element of this block followed by the loops below, so the same bits
      if (d) {
        for (int64_t j = 0; j < n; ++j) {
          const float th = tanh_series(x[j]);
          d[j] = (1.0f - th * th) * s;
          x[j] = th * c;
        }
      } else {
        for (int64_t j = 0; j < n; ++j) x[j] = tanh_series(x[j]) * c;
      }
      return;
    }
    tanh_block(k, x, n, x, t, d);
    if (d)
      for (int64_t j = 0; j < n; ++j) d[j] *= s;
    for (int64_t j = 0; j < n; ++j) x[j] *= c;
  } else {
    if (s != 1.0f)
      for (int64_t j = 0; j < n; ++j) x[j] *= s;
    if (d)
      for (int64_t j = 0; j < n; ++j) d[j] = s;
  }
}

// y[j] = tanh(u[j]) for j in [0, n), ≤ 3 ulp, vectorisable; t: (n,) scratch.
//   |u| < 0.55:  the odd Taylor series to u¹⁷ (the next term is < 3e-9 relative there)
//   |u| ≥ 0.55:  sign(u)·(1 − E)/(1 + E), E = exp(−2|u|) ≤ 1/3 by the ISA's exp: no cancellation
// With sech2, also sech2[j] = 1 − tanh²(u[j]) (the derivative), without cancellation.
// u and y may be the same buffer.
FUSEDCE_CLONES void tanh_block(const Kernels& k, const float* u, int64_t n, float* y, float* t, float* sech2) {
  for (int64_t j = 0; j < n; ++j) t[j] = -2.0f * std::fabs(u[j]);
  k.exp(t, t, n);
  // Both branches are computed and one is selected (a blend: no control flow, so it vectorises).
  for (int64_t j = 0; j < n; ++j) {
    const float v = u[j], a = std::fabs(v), E = t[j];
    const bool near0 = a < 0.55f;
    const float small = tanh_series(near0 ? v : 0.0f);  // the series only ever sees |u| < 0.55
    const float big = std::copysign((1.0f - E) / (1.0f + E), v);  // ±1 for u = ±inf (E = 0)
    y[j] = near0 ? small : big;
    // 1 − tanh² = 4E/(1 + E)² above 0.55, where 1 − tanh² itself would lose ~1/(1 − tanh²) ulps
    if (sech2) sech2[j] = near0 ? 1.0f - small * small : 4.0f * E / ((1.0f + E) * (1.0f + E));
  }
}

// The JSD's element terms in double (soft_cross_entropy.cpp, jsd_forward), for j in [0, n):
//   lq = x_j − lx, lp = y_j − ly,  q = e^lq, p = e^lp,  m = β·p + (1 − β)·q
//   kl[j]   = q·(lq − log m)                         (0 where q = 0)
//   term[j] = β·p·(lp − log m) + (1 − β)·kl[j]       (p's part 0 where p = 0)
// and with qrow, qrow[j] = q and lrow[j] = lq − log m (0 where q = 0), for the gradient.
// exp and log are written out here, branch-free, so that each clone vectorises them in double:
//   e^a:   k = rint(a/ln 2), r = a − k·ln 2 (ln 2 in two parts, |r| ≤ ln2/2), e^r by its Taylor
//          series to r¹³ (the next term < 5e-18 relative), times 2^⌊k/2⌋·2^(k−⌊k/2⌋) so that
//          results down to the subnormals come out of two exact exponent scalings (a ≥ −760: 0)
//   log m: m = 2^e·f with f in [√½, √2) (a subnormal m first scaled by 2^54),
//          log f = 2·atanh(s), s = (f − 1)/(f + 1), |s| ≤ 0.172, by its series to s²³
//          (the next term < 3e-19 relative), then log m = e·ln2_hi + (e·ln2_lo + log f)
// Each is within a few ulps of the correctly rounded double, like the libm calls they replace.
// x, y: (n,) fp32;  term, kl: (n,) double;  qrow, lrow: (n,) double or nullptr
FUSEDCE_CLONES void jsd_terms(const float* __restrict x, const float* __restrict y, int64_t n, double lx, double ly,
                              double beta, double* __restrict term, double* __restrict kl, double* __restrict qrow,
                              double* __restrict lrow) {
  constexpr double kMagic = 0x1.8p52, kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kLog2e = 1.4426950408889634;
  constexpr uint64_t kSqrtHalf = 0x3fe6a09e667f3bcdull;  // √½'s bits
  const double a_ = 1.0 - beta;
  // In chunks of 256 elements, each step its own simple loop (they vectorise cleanly; one loop
  // holding both exps and the log did not): the exponents, their exps, then m, log m and the terms.
  constexpr int64_t kChunk = 256;
  alignas(64) double l[2 * kChunk], e[2 * kChunk];
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t cn = std::min(kChunk, n - c0);
    for (int64_t i = 0; i < cn; ++i) {
      l[i] = double(x[c0 + i]) - lx;           // log q
      l[kChunk + i] = double(y[c0 + i]) - ly;  // log p
    }
    for (int64_t i = cn; i < kChunk; ++i) l[i] = l[kChunk + i] = 0.0;  // a short last chunk's tail
    for (int64_t i = 0; i < 2 * kChunk; ++i) {
      const double a = std::min(std::max(l[i], -760.0), 709.0);  // NaN stays NaN
      const double kd = a * kLog2e + kMagic, k = kd - kMagic;       // k = rint(a/ln 2)
      const double r = (a - k * kLn2Hi) - k * kLn2Lo;
      double p = 1.0 / 6227020800.0;
      p = p * r + 1.0 / 479001600.0;
      p = p * r + 1.0 / 39916800.0;
      p = p * r + 1.0 / 3628800.0;
      p = p * r + 1.0 / 362880.0;
      p = p * r + 1.0 / 40320.0;
      p = p * r + 1.0 / 5040.0;
      p = p * r + 1.0 / 720.0;
      p = p * r + 1.0 / 120.0;
      p = p * r + 1.0 / 24.0;
      p = p * r + 1.0 / 6.0;
      p = p * r + 0.5;
      p = p * r + 1.0;
      p = p * r + 1.0;
      // 2^k1·2^k2, k1 = ⌊k/2⌋, each exponent built from the low bits of k_i + 1023 + magic
      const double k1 = std::floor(k * 0.5), k2 = k - k1;
      uint64_t b1, b2, mb;
      const double t1 = k1 + (kMagic + 1023.0), t2 = k2 + (kMagic + 1023.0);
      std::memcpy(&b1, &t1, 8);
      std::memcpy(&b2, &t2, 8);
      std::memcpy(&mb, &kMagic, 8);
      b1 = (b1 - mb) << 52;
      b2 = (b2 - mb) << 52;
      double s1, s2;
      std::memcpy(&s1, &b1, 8);
      std::memcpy(&s2, &b2, 8);
      e[i] = l[i] != l[i] ? l[i] : p * s1 * s2;
    }
    for (int64_t i = 0; i < cn; ++i) {
      const int64_t j = c0 + i;
      const double q = e[i], p = e[kChunk + i], lq = l[i], lp = l[kChunk + i];
      const double m = beta * p + a_ * q;
      // log m, for m > 0 (0 is selected below for m = 0)
      const bool sub = m < 0x1p-1022;
      const double mm = sub ? m * 0x1p54 : (m > 0.0 ? m : 1.0);
      uint64_t b;
      std::memcpy(&b, &mm, 8);
      const uint64_t u = b + (0x3ff0000000000000ull - kSqrtHalf);  // exponent field of m/√½, biased
      const uint64_t fb = (u & 0x000fffffffffffffull) + kSqrtHalf;   // f in [√½, √2)
      uint64_t eb = (u >> 52) | 0x4330000000000000ull;
      double ed, f;
      std::memcpy(&ed, &eb, 8);
      std::memcpy(&f, &fb, 8);
      ed = (ed - (kMagic / 1.5 + 1023.0)) - (sub ? 54.0 : 0.0);  // kMagic/1.5 = 2^52
      const double s = (f - 1.0) / (f + 1.0), s2 = s * s;
      double c = 2.0 / 23.0;
      c = c * s2 + 2.0 / 21.0;
      c = c * s2 + 2.0 / 19.0;
      c = c * s2 + 2.0 / 17.0;
      c = c * s2 + 2.0 / 15.0;
      c = c * s2 + 2.0 / 13.0;
      c = c * s2 + 2.0 / 11.0;
      c = c * s2 + 2.0 / 9.0;
      c = c * s2 + 2.0 / 7.0;
      c = c * s2 + 2.0 / 5.0;
      c = c * s2 + 2.0 / 3.0;
      const double logf = 2.0 * s + s * s2 * c;
      const double lm = m > 0.0 ? ed * kLn2Hi + (ed * kLn2Lo + logf) : (m == m ? 0.0 : m);
      const double tq = q > 0.0 ? q * (lq - lm) : 0.0;
      const double tp = p > 0.0 ? p * (lp - lm) : 0.0;
      term[j] = beta * tp + a_ * tq;
      kl[j] = tq;
      if (qrow) {
        qrow[j] = q;
        lrow[j] = q > 0.0 ? lq - lm : 0.0;
      }
    }
  }
}

}  // namespace fusedce
