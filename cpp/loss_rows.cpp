// Out-of-line element loops of the loss family (see loss_rows.h), each built in several ISA clones.
#include "loss_rows.h"

#include <algorithm>
#include <cmath>
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

double sum_f64(const float* v, int64_t n) { return lane_sum_f64(n, [&](int64_t j) { return v[j]; }); }

int64_t count_nonzero_rows(const float* q, int64_t rows, int64_t vocab, int threads) {
  std::vector<uint8_t> any(size_t(rows), 0);
  parallel_for(rows, threads, [&](int64_t r) { any[size_t(r)] = any_nonzero(q + size_t(r) * size_t(vocab), vocab); });
  int64_t count = 0;
  for (uint8_t a : any) count += a;
  return count;
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
    const float vs = near0 ? v : 0.0f, v2 = vs * vs;  // the series only ever sees |u| < 0.55
    // tanh u = u + u³·P(u²), P's coefficients the series' (−1/3, 2/15, −17/315, 62/2835, …)
    float p = 5.9002744094558595e-4f;
    p = p * v2 - 1.4558343870513183e-3f;
    p = p * v2 + 3.5921280365724810e-3f;
    p = p * v2 - 8.8632355299021966e-3f;
    p = p * v2 + 2.1869488536155203e-2f;
    p = p * v2 - 5.3968253968253968e-2f;
    p = p * v2 + 1.3333333333333333e-1f;
    p = p * v2 - 3.3333333333333333e-1f;
    const float small = vs + vs * v2 * p;
    const float big = std::copysign((1.0f - E) / (1.0f + E), v);  // ±1 for u = ±inf (E = 0)
    y[j] = near0 ? small : big;
    // 1 − tanh² = 4E/(1 + E)² above 0.55, where 1 − tanh² itself would lose ~1/(1 − tanh²) ulps
    if (sech2) sech2[j] = near0 ? 1.0f - small * small : 4.0f * E / ((1.0f + E) * (1.0f + E));
  }
}

}  // namespace fusedce
