// The CUDA kernels against a float64 reference, through the C API only (fusedce_cuda.h).
//
// Built two ways from this one file: with nvcc's host compiler against the CUDA build (run on a
// GPU, and under compute-sanitizer), and with g++ against the emulated build (CI: proves the
// kernels' indexing, tails, reductions and merges on the CPU — not their speed).
//
// Every case: fresh random logits (N(0, 2²) with spikes, some −inf, extreme rows where asked),
// random targets with ignored rows, every reduction; outputs poisoned before the call and every
// element checked after. Prints one line per case and exits 1 on any failure.
//   kernel_check [--quick] [--seed N]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../fusedce_cuda.h"

namespace {

float bf16_to_f(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float f16_to_f(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t u;
  if (e == 0x1fu) u = sign | 0x7f800000u | (m << 13);
  else if (e != 0) u = sign | ((e + 112u) << 23) | (m << 13);
  else {
    const float v = float(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f_to_f16(float f) {  // round to nearest even via double steps (test-side, simple)
  if (std::isnan(f)) return 0x7e00;
  const double a = std::fabs(double(f));
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (a >= 65520.0) return sign | 0x7c00;
  if (a < std::ldexp(1.0, -14)) return sign | uint16_t(std::nearbyint(a / std::ldexp(1.0, -24)));
  int ex;
  std::frexp(a, &ex);  // a = f·2^ex, f in [0.5, 1)
  const double q = std::ldexp(1.0, ex - 11);
  const double r = std::nearbyint(a / q) * q;
  int e2;
  const double fr = std::frexp(r, &e2);
  const uint32_t mant = uint32_t(std::ldexp(fr, 11)) & 0x3ffu;
  return sign | uint16_t(((e2 - 1 + 15) << 10) | mant);
}

const char* kName[3] = {"f32", "f16", "bf16"};

struct Dev {
  void* p = nullptr;
  explicit Dev(size_t bytes) {
    char err[256];
    if (fce_cuda_malloc(&p, bytes, err, sizeof err)) {
      std::fprintf(stderr, "malloc: %s\n", err);
      std::exit(2);
    }
  }
  ~Dev() { fce_cuda_free(p, nullptr, 0); }
};
void up(void* d, const void* h, size_t n) {
  char err[256];
  if (fce_cuda_memcpy(d, h, n, 0, err, sizeof err)) std::fprintf(stderr, "h2d: %s\n", err), std::exit(2);
}
void down(void* h, const void* d, size_t n) {
  char err[256];
  if (fce_cuda_memcpy(h, d, n, 1, err, sizeof err)) std::fprintf(stderr, "d2h: %s\n", err), std::exit(2);
}

int failures = 0;

// One case: forward (+fused grad) and backward for (rows, V, dt, gdt, reduction).
void run_case(std::mt19937_64& rng, int64_t rows, int64_t V, int dt, int gdt, int red, bool extreme, bool masked,
              bool in_place) {
  const size_t R = static_cast<size_t>(rows);
  const size_t n = size_t(rows * V), esz = dt == 0 ? 4 : 2, gsz = gdt == 0 ? 4 : 2;
  std::normal_distribution<float> nd(0.0f, extreme ? 40.0f : 2.0f);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < 3; ++k) x[size_t(r * V + int64_t(ud(rng) * double(V)))] = 8.0f + 4.0f * float(ud(rng));
  if (masked)
    for (size_t i = 0; i < n; ++i)
      if (ud(rng) < 0.3) x[i] = -INFINITY;
  // the device input and its exact value
  std::vector<unsigned char> zin(n * esz);
  std::vector<double> val(n);
  for (size_t i = 0; i < n; ++i) {
    if (dt == 0) {
      std::memcpy(&zin[i * 4], &x[i], 4);
      val[i] = x[i];
    } else {
      const uint16_t h = dt == 2 ? f_to_bf16(x[i]) : f_to_f16(x[i]);
      std::memcpy(&zin[i * 2], &h, 2);
      val[i] = dt == 2 ? bf16_to_f(h) : f16_to_f(h);
    }
  }
  std::vector<int32_t> tg(R);
  for (auto& t : tg) t = ud(rng) < 0.2 ? -100 : int32_t(ud(rng) * double(V));
  if (masked)  // a masked target still counts: its logit must be finite for a finite loss
    for (int64_t r = 0; r < rows; ++r)
      if (tg[size_t(r)] >= 0 && std::isinf(val[size_t(r * V + tg[size_t(r)])])) {
        val[size_t(r * V + tg[size_t(r)])] = 1.0;
        const float one = 1.0f;
        if (dt == 0) std::memcpy(&zin[size_t(r * V + tg[size_t(r)]) * 4], &one, 4);
        else {
          const uint16_t h = dt == 2 ? f_to_bf16(1.0f) : f_to_f16(1.0f);
          std::memcpy(&zin[size_t(r * V + tg[size_t(r)]) * 2], &h, 2);
        }
      }

  // float64 reference
  int64_t count = 0;
  for (auto t : tg) count += t != -100;
  const double go = 1.0;
  const double scale = red == 0 ? (count ? go / double(count) : 0.0) : go;
  std::vector<double> rlse(R), rloss(R), rg(n);
  double rsum = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = tg[size_t(r)];
    if (t == -100) continue;
    const double* v = &val[size_t(r * V)];
    double M = -INFINITY;
    for (int64_t j = 0; j < V; ++j) M = std::max(M, v[j]);
    double S = 0, Sothers = 0;
    for (int64_t j = 0; j < V; ++j) S += std::exp(v[j] - M);
    const double lse = M + std::log(S);
    for (int64_t j = 0; j < V; ++j)
      if (j != t) Sothers += std::exp(v[j] - lse);
    rlse[size_t(r)] = lse;
    rloss[size_t(r)] = std::log1p(Sothers / std::exp(v[t] - lse) * 1.0) ;  // = lse − z_t without cancellation
    rsum += rloss[size_t(r)];
    for (int64_t j = 0; j < V; ++j) rg[size_t(r * V + j)] = (j == t ? -Sothers : std::exp(v[j] - lse)) * scale;
  }

  Dev dz(n * esz), dt_(size_t(rows) * 4 + 4), dl(size_t(rows) * 4 + 4), dlse(size_t(rows) * 4 + 4),
      dg(in_place ? 16 : n * gsz);
  up(dz.p, zin.data(), zin.size());
  up(dt_.p, tg.data(), size_t(rows) * 4);
  std::vector<unsigned char> poison(std::max(n * gsz, size_t(rows) * 4 + 4), 0xFF);  // NaN in every dtype
  up(dl.p, poison.data(), size_t(rows) * 4);
  up(dlse.p, poison.data(), size_t(rows) * 4);
  void* gp = in_place ? dz.p : dg.p;
  if (!in_place) up(dg.p, poison.data(), n * gsz);

  fce_cuda_args a{};
  a.logits = dz.p;
  a.dtype = dt;
  a.rows = rows;
  a.vocab = V;
  a.targets = static_cast<const int32_t*>(dt_.p);
  a.ignore_index = -100;
  a.reduction = red;
  a.losses = static_cast<float*>(dl.p);
  a.lse = static_cast<float*>(dlse.p);
  a.grad = gp;
  a.grad_dtype = gdt;
  a.grad_output = go;
  char err[512] = "";
  double loss_sum = -1;
  int64_t cnt = -1;
  const int rc = fce_cuda_forward(&a, &loss_sum, &cnt, err, sizeof err);
  std::string what;
  if (rc) what = std::string("forward failed: ") + err;
  std::vector<float> losses(R), lse(R);
  std::vector<unsigned char> g(n * gsz);
  down(losses.data(), dl.p, size_t(rows) * 4);
  down(lse.data(), dlse.p, size_t(rows) * 4);
  down(g.data(), gp, n * gsz);

  auto gval = [&](const std::vector<unsigned char>& b, size_t i) -> double {
    if (gdt == 0) {
      float f;
      std::memcpy(&f, &b[i * 4], 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, &b[i * 2], 2);
    return gdt == 2 ? bf16_to_f(h) : f16_to_f(h);
  };
  // tolerances: fp32 results ~1e-6 relative (extreme rows: the fp32 exponent argument, |z − lse|
  // up to ~300, costs up to ~2e-5); 16-bit gradients one unit in the last place
  const double tol_f32 = extreme ? 3e-5 : 2e-6;
  const double ulp16 = gdt == 2 ? std::ldexp(1.0, -8) : gdt == 1 ? std::ldexp(1.0, -11) : 0;
  double worst_loss = 0, worst_g = 0;
  int64_t bad_g = -1;
  if (what.empty()) {
    if (cnt != count) what = "count " + std::to_string(cnt) + " != " + std::to_string(count);
    for (int64_t r = 0; r < rows && what.empty(); ++r) {
      const double el = std::fabs(losses[size_t(r)] - rloss[size_t(r)]) / std::max(1e-30, std::fabs(rloss[size_t(r)]));
      const double ee = std::fabs(lse[size_t(r)] - rlse[size_t(r)]) / std::max(1.0, std::fabs(rlse[size_t(r)]));
      worst_loss = std::max(worst_loss, std::max(el, ee));
      if (!(el <= 1e-5 || std::fabs(losses[size_t(r)] - rloss[size_t(r)]) < 1e-6) || !(ee <= 1e-6))
        what = "row " + std::to_string(r) + ": loss " + std::to_string(losses[size_t(r)]) + " vs " +
               std::to_string(rloss[size_t(r)]) + ", lse " + std::to_string(lse[size_t(r)]) + " vs " +
               std::to_string(rlse[size_t(r)]);
    }
    if (what.empty() && std::fabs(loss_sum - rsum) > 1e-5 * std::max(1.0, std::fabs(rsum)))
      what = "loss_sum " + std::to_string(loss_sum) + " vs " + std::to_string(rsum);
  }
  auto check_grad = [&](const char* which) {
    for (size_t i = 0; i < n && what.empty(); ++i) {
      const double r = rg[i], v = gval(g, i);
      const double tol = gdt == 0 ? tol_f32 * std::fabs(r) + 1e-37 : ulp16 * std::fabs(r) * 1.01 + (gdt == 1 ? 6e-8 : 1e-38);
      const double e = std::fabs(v - r);
      if (!(e <= tol)) {
        bad_g = int64_t(i);
        what = std::string(which) + " grad[" + std::to_string(i / size_t(V)) + ", " + std::to_string(i % size_t(V)) +
               "] = " + std::to_string(v) + " vs " + std::to_string(r);
      }
      worst_g = std::max(worst_g, r != 0 ? e / std::fabs(r) : e);
    }
  };
  check_grad("fused");

  // backward from the lse just computed (not in place: the logits are now the gradient there)
  if (what.empty() && !in_place) {
    up(dg.p, poison.data(), n * gsz);
    int64_t c2 = -1;
    if (fce_cuda_backward(&a, &c2, err, sizeof err)) what = std::string("backward failed: ") + err;
    down(g.data(), dg.p, n * gsz);
    // the backward starts from the fp32 lse: its rounding (≤ 2^-24·|lse|) adds to the tolerance
    check_grad("backward");
  }
  std::printf("%-5s %-4s→%-4s %-4s %7lld x %-7lld%s%s%s  max rel err loss/lse %.2e grad %.2e  %s\n",
              what.empty() ? "ok" : "FAIL", kName[dt], kName[gdt], red == 0 ? "mean" : red == 1 ? "sum" : "none",
              (long long)rows, (long long)V, extreme ? " extreme" : "", masked ? " masked" : "",
              in_place ? " in-place" : "", worst_loss, worst_g, what.c_str());
  if (!what.empty()) ++failures;
  (void)bad_g;
}

// ---- the loss family's kernels (f32 logits), against float64 references ----
// Each: outputs poisoned (NaN) first, every element checked after; fused gradients included.

struct FamilyCheck {
  std::string name, what;
  double worst = 0;
  // |v − r| ≤ rtol·|r| + atol, NaN where r is NaN
  void near(const char* what_, size_t i, double v, double r, double rtol, double atol) {
    if (!what.empty()) return;
    const double e = std::fabs(v - r);
    worst = std::max(worst, e / (std::fabs(r) + atol));
    if (!(e <= rtol * std::fabs(r) + atol))
      what = std::string(what_) + "[" + std::to_string(i) + "] = " + std::to_string(v) + " vs " + std::to_string(r);
  }
  void report() {
    std::printf("%-5s family %-44s max rel err %.2e  %s\n", what.empty() ? "ok" : "FAIL", name.c_str(), worst, what.c_str());
    if (!what.empty()) ++failures;
  }
};

std::vector<double> lse_rows(const std::vector<float>& x, int64_t rows, int64_t V, double s) {
  std::vector<double> out(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY;
    for (int64_t j = 0; j < V; ++j) m = std::max(m, s * x[size_t(r * V + j)]);
    double t = 0;
    for (int64_t j = 0; j < V; ++j) t += std::exp(s * x[size_t(r * V + j)] - m);
    out[size_t(r)] = m + std::log(t);
  }
  return out;
}

void family_cases(std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  char err[512] = "";
  for (const int64_t V : {int64_t(1000), int64_t(20001)}) {
    const int64_t rows = 5;
    const size_t n = size_t(rows * V);
    std::vector<float> x(n), y(n), w(static_cast<size_t>(V)), q(n, 0.0f), yb(n);
    for (auto& v : x) v = nd(rng);
    for (auto& v : y) v = nd(rng);
    for (auto& v : w) v = 0.2f + ud(rng);
    for (auto& v : yb) v = ud(rng) < 0.3f ? 1.0f : ud(rng);
    for (int64_t r = 0; r < rows; ++r)
      for (int k = 0; k < 7; ++k) q[size_t(r * V + (r * 13 + k * 101) % V)] = 0.1f + ud(rng);
    std::vector<int32_t> t(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) t[size_t(r)] = r == 2 ? -100 : int32_t((r * 7919) % V);
    std::vector<unsigned char> poison(n * 4, 0xFF);
    Dev dz(n * 4), dy(n * 4), dq(n * 4), dw(size_t(V) * 4), dyb(n * 4), dt_(size_t(rows) * 4), dl(size_t(rows) * 4),
        dlse(size_t(rows) * 4), dg(n * 4), dloss(4), dstat(size_t(rows) * 16);
    up(dz.p, x.data(), n * 4);
    up(dy.p, y.data(), n * 4);
    up(dq.p, q.data(), n * 4);
    up(dw.p, w.data(), size_t(V) * 4);
    up(dyb.p, yb.data(), n * 4);
    up(dt_.p, t.data(), size_t(rows) * 4);
    auto poison_all = [&] {
      up(dl.p, poison.data(), size_t(rows) * 4);
      up(dlse.p, poison.data(), size_t(rows) * 4);
      up(dg.p, poison.data(), n * 4);
      up(dstat.p, poison.data(), size_t(rows) * 16);
    };
    std::vector<float> lo(static_cast<size_t>(rows)), g(n), st(size_t(rows) * 4);
    const std::string shape = std::to_string(rows) + "x" + std::to_string(V);

    // 1. cross-entropy with smoothing, weights, z-loss, logit scale and softcap, statistics; mean
    {
      FamilyCheck c{"options+stats " + shape};
      const float eps = 0.1f, zc = 1e-3f, s = 0.8f, cap = 6.0f;
      std::vector<double> xs(n), d(n);
      for (size_t i = 0; i < n; ++i) {
        const double th = std::tanh(double(x[i]) * s / cap);
        xs[i] = cap * th;
        d[i] = s * (1 - th * th);
      }
      double D = 0, W = 0, N = 0;
      for (int64_t j = 0; j < V; ++j) W += w[size_t(j)];
      for (int64_t r = 0; r < rows; ++r)
        if (t[size_t(r)] != -100) D += w[size_t(t[size_t(r)])], N += 1;
      poison_all();
      fce_cuda_args a{};
      a.logits = dz.p, a.dtype = 0, a.rows = rows, a.vocab = V, a.targets = static_cast<const int32_t*>(dt_.p), a.ignore_index = -100;
      a.reduction = 0, a.losses = static_cast<float*>(dl.p), a.lse = static_cast<float*>(dlse.p), a.grad = dg.p, a.grad_dtype = 0;
      a.grad_output = 1.0;
      fce_cuda_ce_options o{eps, static_cast<const float*>(dw.p), zc, s, cap, 0.0f};
      auto* sp = static_cast<unsigned char*>(dstat.p);
      fce_cuda_ce_stats stt{reinterpret_cast<int32_t*>(sp), reinterpret_cast<float*>(sp + rows * 4), reinterpret_cast<float*>(sp + rows * 8),
                            reinterpret_cast<float*>(sp + rows * 12)};
      fce_cuda_opt_totals tot{};
      if (fce_cuda_forward_opt(&a, &o, &stt, &tot, err, sizeof err)) c.what = std::string("failed: ") + err;
      down(lo.data(), dl.p, size_t(rows) * 4);
      down(g.data(), dg.p, n * 4);
      down(st.data(), dstat.p, size_t(rows) * 16);
      double gmax = 0;
      std::vector<double> rg(n, 0.0);
      for (int64_t r = 0; r < rows; ++r) {
        const int32_t tt = t[size_t(r)];
        const double* v = &xs[size_t(r * V)];
        double m = -INFINITY, S = 0;
        for (int64_t j = 0; j < V; ++j) m = std::max(m, v[j]);
        for (int64_t j = 0; j < V; ++j) S += std::exp(v[j] - m);
        const double L = m + std::log(S);
        if (tt == -100) {
          c.near("loss", size_t(r), lo[size_t(r)], 0.0, 0, 0);
          c.near("argmax", size_t(r), reinterpret_cast<int32_t*>(st.data())[r], -1, 0, 0);
          continue;
        }
        double sm = 0, H = 0;
        int64_t am = 0;
        for (int64_t j = 0; j < V; ++j) {
          sm += w[size_t(j)] * (L - v[j]);
          H += std::exp(v[j] - L) * (L - v[j]);
          if (v[j] > v[am]) am = j;
        }
        const double wt = w[size_t(tt)], ce = (1 - eps) * wt * (L - v[tt]) + eps / V * sm;
        c.near("loss", size_t(r), lo[size_t(r)], ce + zc * L * L, 2e-6, 1e-6);
        c.near("argmax", size_t(r), reinterpret_cast<int32_t*>(st.data())[r], double(am), 0, 0);
        c.near("entropy", size_t(r), st[size_t(rows + r)], H, 2e-6, 1e-6);
        const double A = (1 - eps) * wt / D + eps / V * W / D + 2 * zc * L / N, beta = eps / V / D;
        for (int64_t j = 0; j < V; ++j) {
          const double p = std::exp(v[j] - L);
          double gj = A * p - beta * w[size_t(j)] - (j == tt ? (1 - eps) * wt / D : 0.0);
          gj *= d[size_t(r * V + j)];
          rg[size_t(r * V + j)] = gj;
          gmax = std::max(gmax, std::fabs(gj));
        }
      }
      for (size_t i = 0; i < n; ++i) c.near("grad", i, g[i], rg[i], 2e-5, 2e-6 * gmax);
      c.report();
    }

    // 2. the reduced loss on the device, no read-back (lossOnDevice)
    {
      FamilyCheck c{"device loss (plain, mean) " + shape};
      poison_all();
      fce_cuda_args a{};
      a.logits = dz.p, a.dtype = 0, a.rows = rows, a.vocab = V, a.targets = static_cast<const int32_t*>(dt_.p), a.ignore_index = -100;
      a.reduction = 0, a.losses = static_cast<float*>(dl.p), a.lse = static_cast<float*>(dlse.p), a.grad_output = 1.0;
      a.device_loss = static_cast<float*>(dloss.p);
      double ls = -1;
      int64_t cnt = -1;
      if (fce_cuda_forward(&a, &ls, &cnt, err, sizeof err)) c.what = std::string("failed: ") + err;
      float dlv = 0;
      down(&dlv, dloss.p, 4);
      const auto L = lse_rows(x, rows, V, 1.0);
      double sum = 0, cntr = 0;
      for (int64_t r = 0; r < rows; ++r)
        if (t[size_t(r)] != -100) sum += L[size_t(r)] - x[size_t(r * V + t[size_t(r)])], cntr += 1;
      c.near("loss", 0, dlv, sum / cntr, 2e-6, 1e-6);
      c.report();
    }

    // 3. the soft family: KL forward and reverse, soft CE (teacher logits, T = 2, tSquared), JSD
    //    β = 0.3, entropy; each fused, sum
    for (const int kind : {0, 1, 2, 3, 4}) {
      const char* names[] = {"soft CE T=2 tSquared", "KL forward", "KL reverse", "entropy", "JSD 0.3"};
      FamilyCheck c{std::string(names[kind]) + " " + shape};
      const double T = kind == 0 ? 2.0 : 1.0, F = kind == 0 ? T * T : 1.0, beta = 0.3;
      poison_all();
      fce_cuda_soft_args a{};
      a.logits = dz.p, a.dtype = 0, a.rows = rows, a.vocab = V, a.target = kind == 3 ? nullptr : dy.p, a.target_dtype = 0, a.kind = kind;
      a.inv_temperature = float(1 / T), a.loss_factor = F, a.beta = beta, a.reduction = 1;
      a.losses = static_cast<float*>(dl.p), a.lse = static_cast<float*>(dlse.p), a.grad = dg.p, a.grad_dtype = 0, a.grad_output = 1.0;
      double ls = -1;
      int64_t cnt = -1;
      if (fce_cuda_soft_forward(&a, &ls, &cnt, err, sizeof err)) c.what = std::string("failed: ") + err;
      down(lo.data(), dl.p, size_t(rows) * 4);
      down(g.data(), dg.p, n * 4);
      const auto Lx = lse_rows(x, rows, V, 1 / T), Ly = lse_rows(y, rows, V, 1 / T);
      std::vector<double> rg(n);
      double gmax = 0;
      for (int64_t r = 0; r < rows; ++r) {
        double loss = 0, klqm = 0;
        std::vector<double> lp(static_cast<size_t>(V)), lq(static_cast<size_t>(V)), lm(static_cast<size_t>(V));
        for (int64_t j = 0; j < V; ++j) {
          lp[size_t(j)] = x[size_t(r * V + j)] / T - Lx[size_t(r)];
          lq[size_t(j)] = y[size_t(r * V + j)] / T - Ly[size_t(r)];
          lm[size_t(j)] = std::log(beta * std::exp(lq[size_t(j)]) + (1 - beta) * std::exp(lp[size_t(j)]));
        }
        for (int64_t j = 0; j < V; ++j) {
          const double p = std::exp(lp[size_t(j)]), qv = std::exp(lq[size_t(j)]);
          if (kind == 0) loss += -F * qv * lp[size_t(j)];
          if (kind == 1) loss += qv * (lq[size_t(j)] - lp[size_t(j)]);
          if (kind == 2) loss += p * (lp[size_t(j)] - lq[size_t(j)]);
          if (kind == 3) loss += -p * lp[size_t(j)];
          if (kind == 4) {
            loss += beta * qv * (lq[size_t(j)] - lm[size_t(j)]) + (1 - beta) * p * (lp[size_t(j)] - lm[size_t(j)]);
            klqm += p * (lp[size_t(j)] - lm[size_t(j)]);
          }
        }
        c.near("loss", size_t(r), lo[size_t(r)], loss, 5e-6, 1e-6);
        for (int64_t j = 0; j < V; ++j) {
          const double p = std::exp(lp[size_t(j)]), qv = std::exp(lq[size_t(j)]);
          double gj = 0;
          if (kind == 0) gj = F * (p - qv) / T;
          if (kind == 1) gj = p - qv;
          if (kind == 2) gj = p * ((lp[size_t(j)] - lq[size_t(j)]) - loss);
          if (kind == 3) gj = -p * (lp[size_t(j)] + loss);
          if (kind == 4) gj = (1 - beta) * p * ((lp[size_t(j)] - lm[size_t(j)]) - klqm);
          rg[size_t(r * V + j)] = gj;
          gmax = std::max(gmax, std::fabs(gj));
        }
      }
      for (size_t i = 0; i < n; ++i) c.near("grad", i, g[i], rg[i], 2e-5, 2e-6 * gmax);
      c.report();
    }

    // 4. probability targets (top-7 rows, not summing to 1), smoothing 0.1; mean over counted rows
    {
      FamilyCheck c{"soft CE probs + smoothing " + shape};
      poison_all();
      fce_cuda_soft_args a{};
      a.logits = dz.p, a.dtype = 0, a.rows = rows, a.vocab = V, a.target = dq.p, a.target_dtype = -1, a.kind = 0;
      a.inv_temperature = 1.0f, a.loss_factor = 1.0, a.label_smoothing = 0.1f, a.reduction = 2;
      a.losses = static_cast<float*>(dl.p), a.lse = static_cast<float*>(dlse.p), a.grad = dg.p, a.grad_dtype = 0, a.grad_output = 1.0;
      double ls = -1;
      int64_t cnt = -1;
      if (fce_cuda_soft_forward(&a, &ls, &cnt, err, sizeof err)) c.what = std::string("failed: ") + err;
      down(lo.data(), dl.p, size_t(rows) * 4);
      down(g.data(), dg.p, n * 4);
      const auto Lx = lse_rows(x, rows, V, 1.0);
      double gmax = 0;
      std::vector<double> rg(n);
      for (int64_t r = 0; r < rows; ++r) {
        double loss = 0, qs = 0;
        for (int64_t j = 0; j < V; ++j) {
          const double qt = 0.9 * q[size_t(r * V + j)] + 0.1 / double(V);
          qs += qt;
          loss += qt * (Lx[size_t(r)] - x[size_t(r * V + j)]);
        }
        c.near("loss", size_t(r), lo[size_t(r)], loss, 5e-6, 1e-6);
        for (int64_t j = 0; j < V; ++j) {
          const double qt = 0.9 * q[size_t(r * V + j)] + 0.1 / double(V);
          rg[size_t(r * V + j)] = qs * std::exp(x[size_t(r * V + j)] - Lx[size_t(r)]) - qt;
          gmax = std::max(gmax, std::fabs(rg[size_t(r * V + j)]));
        }
      }
      for (size_t i = 0; i < n; ++i) c.near("grad", i, g[i], rg[i], 2e-5, 2e-6 * gmax);
      if (cnt != rows) c.what = "count " + std::to_string(cnt);
      c.report();
    }

    // 5. binary CE, posWeight 2, per-class weights, mean
    {
      FamilyCheck c{"binary CE " + shape};
      poison_all();
      fce_cuda_bce_args a{};
      a.logits = dz.p, a.dtype = 0, a.rows = rows, a.vocab = V, a.targets = static_cast<const float*>(dyb.p), a.pos_weight_scalar = 2.0f;
      a.weight = static_cast<const float*>(dw.p), a.weight_per_class = 1, a.reduction = 0, a.grad = dg.p, a.grad_dtype = 0, a.grad_output = 1.0;
      double ls = -1;
      if (fce_cuda_bce_forward(&a, &ls, err, sizeof err)) c.what = std::string("failed: ") + err;
      down(g.data(), dg.p, n * 4);
      double sum = 0, gmax = 0;
      std::vector<double> rg(n);
      for (size_t i = 0; i < n; ++i) {
        const double xv = x[i], yv = yb[i], wv = w[i % size_t(V)], lw = 1 + (2.0 - 1) * yv;
        sum += wv * ((1 - yv) * xv + lw * (std::log1p(std::exp(-std::fabs(xv))) + std::max(-xv, 0.0)));
        rg[i] = wv * ((1 - yv) - lw / (1 + std::exp(xv))) / double(n);
        gmax = std::max(gmax, std::fabs(rg[i]));
      }
      // (1 − y) − lw·σ(−x) cancels for mixed targets: the fp32 result is good to ~1e-7 of the largest
      for (size_t i = 0; i < n; ++i) c.near("grad", i, g[i], rg[i], 2e-5, 1e-6 * gmax);
      c.near("loss", 0, ls / double(n), sum / double(n), 2e-6, 1e-9);
      c.report();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  uint64_t seed = std::random_device{}();
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
  }
  int ndev = 0;
  char err[512];
  if (fce_cuda_device_count(&ndev, err, sizeof err) || ndev == 0) {
    std::fprintf(stderr, "no CUDA device: %s\n", err);
    return 2;
  }
  fce_cuda_device_info info;
  fce_cuda_device_info_get(0, &info, err, sizeof err);
  std::printf("device: %s (%d SMs, cc %d.%d)  seed %llu\n", info.name, info.multiprocessors, info.major, info.minor,
              (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  // Shapes, each for a reason (the emulated device has 4 SMs, so rows < 4 take the split path):
  struct Shape {
    int64_t rows, V;
  };
  std::vector<Shape> shapes = {
      {1, 1},        // a single class: loss 0, gradient 0
      {3, 5},        // tiny, fewer elements than one vector
      {7, 1000},     // unaligned rows (1000 bf16 = 2000 B: rows start off 16-byte boundaries)
      {5, 4099},     // odd vocab: every row has a head and a tail
      {2, 20001},    // few rows, long: the split path (chunks merged in order)
      {9, 32001},    // many rows: one block per row; ragged last vector
  };
  if (!quick) {
    shapes.push_back({4, 128256});  // Llama-3 vocabulary
    shapes.push_back({1, 262144});  // largest spec vocab, split path
    shapes.push_back({200, 2048});  // more rows than blocks in flight
  }
  for (const auto& s : shapes)
    for (int dt = 0; dt < 3; ++dt)
      for (int gdt = 0; gdt < 3; ++gdt) {
        if (quick && gdt != dt && gdt != 0) continue;
        run_case(rng, s.rows, s.V, dt, gdt, int((s.rows + s.V + dt + gdt) % 3), false, false, false);
      }
  // extreme logits, masked (−inf) logits, in place
  for (int dt = 0; dt < 3; ++dt) {
    run_case(rng, 6, 3001, dt, dt, 0, true, false, false);
    run_case(rng, 6, 3001, dt, dt, 1, false, true, false);
    run_case(rng, 2, 20001, dt, dt, 1, false, true, false);
    run_case(rng, 6, 3001, dt, dt, 0, false, false, true);
    run_case(rng, 2, 20001, dt, dt, 2, false, false, true);
  }
  family_cases(rng);
  std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
