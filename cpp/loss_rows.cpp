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

// tanh u = u + u³·P(u²) for |u| < 0.55, P's coefficients the series' (−1/3, 2/15, −17/315, …),
// by Horner with fused multiply-adds: the softcap block kernel (partial_softcap, in
// cross_entropy_avx2.cpp) runs these same FMAs, so every path gives the same bits. Inlined into
// each clone that calls it (the FMA clones: one vfmadd each; the baseline's fmaf rounds the same).
static inline float tanh_series(float vs) {
  const float v2 = vs * vs;
  float p = 5.9002744094558595e-4f;
  p = std::fma(p, v2, -1.4558343870513183e-3f);
  p = std::fma(p, v2, 3.5921280365724810e-3f);
  p = std::fma(p, v2, -8.8632355299021966e-3f);
  p = std::fma(p, v2, 2.1869488536155203e-2f);
  p = std::fma(p, v2, -5.3968253968253968e-2f);
  p = std::fma(p, v2, 1.3333333333333333e-1f);
  p = std::fma(p, v2, -3.3333333333333333e-1f);
  return std::fma(vs * v2, p, vs);
}

FUSEDCE_CLONES_FMA void scale_softcap_block(const Kernels& k, float* x, int64_t n, float s, float c, float* t, float* d) {
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

// The options' gradient store (cross_entropy_options.cpp, GradRow::store) where the ISA has no
// Kernels::scale_sub_mul_store: the same FMA and products, so the same bits.
FUSEDCE_CLONES_FMA void sub_mul_store_block(const float* e, const float* d, const float* w, int64_t n, float c,
                                            float beta, float* v, DType gdt, void* g) {
  if (w) {
    for (int64_t j = 0; j < n; ++j) v[j] = std::fma(-beta, w[j], e[j] * c);
  } else {
    for (int64_t j = 0; j < n; ++j) v[j] = e[j] * c - beta;
  }
  if (d)
    for (int64_t j = 0; j < n; ++j) v[j] *= d[j];
  narrow(v, gdt, n, g);
}

// y[j] = tanh(u[j]) for j in [0, n), ≤ 3 ulp, vectorisable; t: (n,) scratch.
//   |u| < 0.55:  the odd Taylor series to u¹⁷ (the next term is < 3e-9 relative there)
//   |u| ≥ 0.55:  sign(u)·(1 − E)/(1 + E), E = exp(−2|u|) ≤ 1/3 by the ISA's exp: no cancellation
// With sech2, also sech2[j] = 1 − tanh²(u[j]) (the derivative), without cancellation.
// u and y may be the same buffer.
FUSEDCE_CLONES_FMA void tanh_block(const Kernels& k, const float* u, int64_t n, float* y, float* t, float* sech2) {
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

namespace {
// log μ for a normal μ > 0, in fp32, branch-free (Cephes' logf: μ = 2^k·f, f in [√½, √2),
// log f = r − r²/2 + r³·P(r) with r = f − 1, then k·ln 2 in two parts); a few ulps.
inline float log_pos(float mu) {
  uint32_t b;
  std::memcpy(&b, &mu, 4);
  const uint32_t u = b + (0x3f800000u - 0x3f3504f3u);  // the exponent field of μ/√½
  const float k = float(int32_t(u >> 23) - 127);
  const uint32_t fb = (u & 0x007fffffu) + 0x3f3504f3u;  // f in [√½, √2)
  float f;
  std::memcpy(&f, &fb, 4);
  const float r = f - 1.0f, z = r * r;
  float y = 7.0376836292e-2f;
  y = std::fma(y, r, -1.1514610310e-1f);
  y = std::fma(y, r, 1.1676998740e-1f);
  y = std::fma(y, r, -1.2420140846e-1f);
  y = std::fma(y, r, 1.4249322787e-1f);
  y = std::fma(y, r, -1.6668057665e-1f);
  y = std::fma(y, r, 2.0000714765e-1f);
  y = std::fma(y, r, -2.4999993993e-1f);
  y = std::fma(y, r, 3.3333331174e-1f);
  y = y * r * z;
  y = std::fma(k, -2.12194440e-4f, y);
  y = std::fma(-0.5f, z, y);
  return std::fma(k, 0.693359375f, r + y);
}
// P(v) = Σ_{i=0..7} v^i/(2i + 3), v = w²: 2·atanh w = 2w·(1 + w²·P) to fp32 precision for |w| ≤ 1/3
// (the first term left out, w^16/19, is < 4e-9 of the sum there).
inline float atanh_tail(float v) {
  float p = 1.0f / 17.0f;
  p = std::fma(p, v, 1.0f / 15.0f);
  p = std::fma(p, v, 1.0f / 13.0f);
  p = std::fma(p, v, 1.0f / 11.0f);
  p = std::fma(p, v, 1.0f / 9.0f);
  p = std::fma(p, v, 1.0f / 7.0f);
  p = std::fma(p, v, 1.0f / 5.0f);
  p = std::fma(p, v, 1.0f / 3.0f);
  return p;
}
}  // namespace

// The JSD's element terms in fp32 (soft_cross_entropy.cpp, jsd_forward has the row math).
// Per element, with p = e^{y − ly}, q = e^{x − lx}, m = β·p + γ·q (γ = 1 − β), the term
//   h = β·p·log(p/m) + γ·q·log(q/m)
// is written as a sum of two non-negative parts (add β·(m − p) + γ·(m − q) = 0 to it):
//   h = β·p·ψ(m/p − 1) + γ·q·ψ(m/q − 1),   ψ(s) = s − log(1 + s) ≥ 0,
// so that two nearly equal rows, whose terms are ~d² with d = log q − log p, keep their digits:
// no difference of O(1) quantities is ever taken. Both parts are taken relative to the larger of
// p and q, P (weight b_b; the smaller, S = P·e, has weight b_s), with e = e^{−|d|} ≤ 1 and
// em = e − 1 = expm1(−|d|) (its series for |d| < 0.35):
//   m/P = μ = b_b + b_s·e,    m/P − 1 = sA = b_s·em ∈ (−1, 0],    m/S − 1 = sB = −b_b·em/e ≥ 0,
//   h = P·(b_b·ψ(sA) + b_s·e·ψ(sB)).
// ψ and log1p come from w = s/(2 + s): log1p(s) = 2·atanh w = 2w·(1 + w²·P(w²)) and
// ψ(s) = w·(s − 2w²·P(w²)), for s in [−0.5, 1] (|w| ≤ 1/3); outside it, where ψ is no longer
// small against s, ψ(sA) = sA − log μ and e·ψ(sB) = −b_b·em − e·(log μ + |d|) (0·∞ taken as 0).
// d itself is (z − u)/T − (lx − ly), from the logits' difference (exact for close logits) scaled
// once, not from two rounded log-probs, nor from two rounded scaled logits (x = fl(z/T)), whose
// rounding would be all of d for rows within ~1e-6 of each other.
// The gradient's log(q/m) is −log1p(sA) when q is the larger, −log1p(sB) when it is the smaller.
// Each part is within a few ulps (fp32), so the row sum of h is within ~1e-7 relative of float64.
// z, u: (n,) fp32 (the logits, widened);  s = 1/T;  term: (n,) out;  q, lqm: (n,) out (q and log(q/m), 0 where
// q = 0) or nullptr
FUSEDCE_CLONES_FMA void jsd_terms_f32(const Kernels& k, const float* __restrict z, const float* __restrict u, int64_t n,
                                      float s, const JsdConsts& c, float* __restrict term, float* __restrict q,
                                      float* __restrict lqm) {
  constexpr int64_t kChunk = 256;
  alignas(64) float t[kChunk], aP[kChunk], e[kChunk], P[kChunk], qc[kChunk], lc[kChunk];
  // the constants in locals: read through c, they might alias the stores (and the loops would not vectorise)
  const float beta = c.beta, gamma = c.gamma, delta = c.delta, lx_hi = c.lx_hi, lx_lo = c.lx_lo, ly_hi = c.ly_hi,
              ly_lo = c.ly_lo;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t cn = std::min(kChunk, n - c0);
    const float* zc = z + c0;
    const float* uc = u + c0;
    for (int64_t i = 0; i < cn; ++i) {
      const float d = (zc[i] - uc[i]) * s - delta;
      // t = −|d|, held at −104 (e^t is 0 in fp32 below; the far branch takes e·(log μ − t) → 0)
      const float ad = -std::fabs(d);
      t[i] = ad < -104.0f ? -104.0f : ad;
      // log P: of q where q is the larger (d > 0), else of p, each against its lse in two parts
      aP[i] = d > 0.0f ? (zc[i] * s - lx_hi) - lx_lo : (uc[i] * s - ly_hi) - ly_lo;
    }
    k.exp(t, e, cn);
    k.exp(aP, P, cn);
    for (int64_t i = 0; i < cn; ++i) {
      const float d = (zc[i] - uc[i]) * s - delta;
      const bool qbig = d > 0.0f;
      const float bb = qbig ? gamma : beta, bs = qbig ? beta : gamma;
      const float ti = t[i], ei = e[i], Pi = P[i];
      // em = e^t − 1, t ≤ 0: Taylor to t⁸/8! for |t| < 0.35 (the next term < 1e-9 of it)
      const float ts = ti > -0.35f ? ti : 0.0f;
      float pe = 1.0f / 40320.0f;
      pe = std::fma(pe, ts, 1.0f / 5040.0f);
      pe = std::fma(pe, ts, 1.0f / 720.0f);
      pe = std::fma(pe, ts, 1.0f / 120.0f);
      pe = std::fma(pe, ts, 1.0f / 24.0f);
      pe = std::fma(pe, ts, 1.0f / 6.0f);
      pe = std::fma(pe, ts, 0.5f);
      const float em = ti > -0.35f ? std::fma(ts * ts, pe, ts) : ei - 1.0f;
      const float mu = std::fma(bs, ei, bb);
      const float lmu_direct = log_pos(mu);
      // A: ψ(sA) and log1p(sA) = log μ
      const float sA = bs * em;
      const float wA = sA / (2.0f + sA), vA = wA * wA, PA = atanh_tail(vA);
      const bool serA = sA >= -0.5f;
      const float psiA = serA ? wA * std::fma(-2.0f * vA, PA, sA) : sA - lmu_direct;
      const float lmu = serA ? 2.0f * wA * std::fma(vA, PA, 1.0f) : lmu_direct;
      // B: e·ψ(sB) and log1p(sB) = log(m/S), from nb = e·sB = −b_b·em ≥ 0 (sB ≤ 1 ⇔ nb ≤ e)
      const float nb = -bb * em;
      const float wB = nb / (2.0f * ei + nb), vB = wB * wB, PB = atanh_tail(vB);
      const bool serB = nb <= ei;
      const float far = ei > 0.0f ? ei * (lmu - ti) : 0.0f;
      const float epsiB = serB ? wB * std::fma(-2.0f * ei * vB, PB, nb) : nb - far;
      const float l1pB = serB ? 2.0f * wB * std::fma(vB, PB, 1.0f) : lmu - ti;
      const float h = Pi * std::fma(bb, psiA, bs * epsiB);
      term[c0 + i] = Pi > 0.0f ? h : (Pi == Pi ? 0.0f : Pi);  // both 0: adds 0; NaN stays
      const float qi = qbig ? Pi : Pi * ei;
      const float li = qbig ? -lmu : -l1pB;
      qc[i] = qi > 0.0f ? qi : 0.0f;
      lc[i] = qi > 0.0f ? li : 0.0f;
    }
    if (q) {
      std::memcpy(q + c0, qc, size_t(cn) * sizeof(float));
      std::memcpy(lqm + c0, lc, size_t(cn) * sizeof(float));
    }
  }
}

// The JSD's gradient from the terms' q and log(q/m):  g[j] = c·q_j·(lqm_j − kl), 0 where q_j = 0.
FUSEDCE_CLONES void jsd_grad_f32(const float* __restrict q, const float* __restrict lqm, int64_t n, float c, float kl,
                                 float* __restrict g) {
  for (int64_t j = 0; j < n; ++j) g[j] = q[j] == 0.0f ? 0.0f : (c * q[j]) * (lqm[j] - kl);
}

// The JSD's element terms in double, for weights too small for jsd_terms_f32 (β below the smallest
// normal float): the same non-negative parts, h = b_b·P·ψ(b_s·expm1(−|d|)) + b_s·S·ψ(b_b·expm1(|d|)),
// by libm one element at a time (this path is for the edge of the domain, not for speed). S·ψ(sB)
// is taken as b_b·(P − S) − S·log1p(sB), with log1p(sB) = |d| + log(b_b + b_s·e^{−|d|}) past |d| = 30,
// so that e^{|d|} never overflows. One side 0: the term is exact (m = β·p or (1 − β)·q).
// x, y: (n,) fp32 (z/T, u/T);  term, kl: (n,) double out (h, and q·log(q/m));  qrow, lrow: (n,) double out
// (q and log(q/m), 0 where q = 0) or nullptr
void jsd_terms(const float* x, const float* y, int64_t n, double lx, double ly, double beta, double* term, double* kl,
               double* qrow, double* lrow) {
  const double gamma = 1.0 - beta, dl = lx - ly;
  const auto psi = [](double s) { return std::fabs(s) < 1e-4 ? s * s * (0.5 - s * (1.0 / 3.0 - s * 0.25)) : s - std::log1p(s); };
  for (int64_t j = 0; j < n; ++j) {
    const double q = std::exp(double(x[j]) - lx), p = std::exp(double(y[j]) - ly);
    double h, lqm;
    if (q == 0.0 || p == 0.0) {
      h = q == 0.0 ? (p == 0.0 ? 0.0 : -beta * p * std::log(beta)) : -gamma * q * std::log1p(-beta);
      lqm = q == 0.0 ? 0.0 : -std::log1p(-beta);  // m = (1 − β)·q
    } else {
      const double d = (double(x[j]) - double(y[j])) - dl, a = std::fabs(d);
      const bool qbig = d > 0.0;
      const double bb = qbig ? gamma : beta, bs = qbig ? beta : gamma, P = qbig ? q : p, S = qbig ? p : q;
      const double sA = bs * std::expm1(-a);  // m/P − 1
      const double lmu = sA < -0.5 ? std::log(bb + bs * std::exp(-a)) : std::log1p(sA);  // log(m/P)
      const double psiA = std::fabs(sA) < 1e-4 ? psi(sA) : sA - lmu;
      const double l1pB = a > 30.0 ? a + lmu : std::log1p(bb * std::expm1(a));  // log(m/S)
      const double spsiB = a > 30.0 ? bb * (P - S) - S * l1pB : S * psi(bb * std::expm1(a));
      h = bb * P * psiA + bs * spsiB;
      lqm = qbig ? -lmu : -l1pB;
    }
    term[j] = h;
    kl[j] = q * lqm;
    if (qrow) {
      qrow[j] = q;
      lrow[j] = lqm;
    }
  }
}

}  // namespace fusedce
