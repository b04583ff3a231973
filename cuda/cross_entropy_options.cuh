// Cross-entropy with options on CUDA: label smoothing, class weights, z-loss, logit scale, softcap
// and focal loss (the CPU's semantics: cpp/fusedce.h above CeOptions). The plain kernel
// (cross_entropy.cuh) is untouched: these are kernels of their own, chosen per call.
//
// Math, per counted row i with target t, x = T(z) (x = s·z, then x ← c·tanh(x/c) with softcap c),
// lse = log Σ_j exp(x_j), nll = lse − x_t = log1p(S≠t/e_t) as in the plain kernel, w ≡ 1 without
// weights, W = Σ_j w_j:
//   ce_i   = (1 − ε)·w_t·nll + (ε/V)·Σ_j w_j·(lse − x_j)      (focal: w_t·(1 − p_t)^γ·nll)
//   zl_i   = c_z·lse²,     loss_i = ce_i + zl_i
//   Σ_j w_j·(lse − x_j) = w_t·nll + W≠t·(lse − m) + Q,   Q = Σ_{j≠t} w_j·(m − x_j) ≥ 0 (w ≥ 0)
// with m the row's max over j ≠ t: every term is a sum of non-negative parts (no cancellation),
// kept relative to each thread's running max and rebased as it grows (Q += W·(m' − m)), then
// merged across the block the same way. Masked elements (x_j = −inf, p_j = 0) with w_j ≠ 0 make
// the smoothing term ±inf, as log p_j = −inf does; with w_j = 0 they add nothing.
// Reductions: mean = Σ ce_i / D + Σ zl_i / N, D = Σ_i w_{t_i} (N without weights; 0 when D is 0);
// sum and none: Σ loss_i. Gradient, with a = up·(1/D | 1), b = up·(1/N | 1), κ the focal factor:
//   g_j = (A·p_j − β·w_j)·d_j (j ≠ t),   g_t = (β·(W − w_t) + γ' − A·Σ_{j≠t} p_j)·d_t
//   A = α + β·W + γ',  α = a·(1 − ε)·w_t·κ,  β = a·ε/V,  γ' = b·2c_z·lse,  d_j = dx_j/dz_j
// (the last form of g_t keeps p_t − 1 out of the arithmetic, as the CPU does; the separate backward,
// whose p_j carry the fp32 lse's rounding, takes g_t = A·p_t − (A − target) when p_t < 0.5).
//
// Kernels, and what each reads and writes (bytes of the [rows, V] matrices):
//   opt_rows_kernel<FORWARD>   one block per row (grid-strided): reads z (and w) once, writes
//                              loss, lse and the double ce_i, zl_i for the fixed-order sums.
//   opt_rows_kernel<FUSED>     as FORWARD, then pass 2 re-reads z (L2 for rows up to its size)
//                              and writes g once: exp(x_j − m)·exp(m − lse)·A − β·w_j.
//   opt_rows_kernel<BACKWARD>  from a saved lse: reads z once, writes g once.
//   weight_sums_kernel         one block: W = Σ_j w_j and D = Σ_i w[t_i] in double, fixed order.
// Compile-time variants: Smooth (the Q, W sums) and Cap (tanh); weights, z-loss and focal are
// uniform branches on per-call constants. Rows are not split across blocks here (one block per
// row); the plain kernel's split path serves plain CE only.
#pragma once

#include "cross_entropy.cuh"

namespace fusedce_cuda {

// The options of one call (by value in OptParams).
struct CeOpt {
  float eps;          // label smoothing ε in [0, 1]
  const float* w;     // device (V,) class weights, or null
  float zc;           // z-loss coefficient ≥ 0
  float s;            // logit scale
  float cap, inv_cap; // softcap c > 0 and 1/c (the Cap variant only)
  float gamma;        // focal γ ≥ 0
};

struct OptParams {
  Params P;                // the plain kernel's (z, targets, rows, vocab, losses, lse, row_loss, g, check, …)
  CeOpt o;
  const double* wsums;     // device (3,): W, D and the first non-finite weight's index from weight_sums_kernel
                           // (null without weights)
  double* row_z;           // (rows,) out: zl_i in double [forward, fused]
  // the Stats variant's per-row outputs (rows,): 0 (argmax −1) at ignored rows
  int32_t* argmax;         // first index of the largest x_j
  float* entropy;          // H = Σ_j p_j·(lse − x_j), nats
  float* target_logprob;   // x_t − lse
  float* max_prob;         // max_j p_j
};

// x = T(z) and, with d, dx/dz. The same fp32 steps as the CPU's Transform.
template <bool Cap>
FCE_DEV float transform(float z, const CeOpt& o, float* d) {
  const float x = z * o.s;
  if constexpr (Cap) {
    const float u = x * o.inv_cap, th = tanhf(u);
    if (d) {
      // 1 − tanh² = 4E/(1 + E)², E = e^{−2|u|}, above 0.55 (as the CPU's tanh_block): 1 − th² itself
      // would lose ~1/(1 − th²) ulps where tanh is near ±1
      const float a = fabsf(u);
      float sech2;
      if (a < 0.55f) {
        sech2 = 1.0f - th * th;
      } else {
        const float E = expf(-2.0f * a);
        sech2 = 4.0f * E / ((1.0f + E) * (1.0f + E));
      }
      *d = sech2 * o.s;
    }
    return th * o.cap;
  } else {
    if (d) *d = o.s;
    return x;
  }
}

// Per-thread (then per-block) state of pass 1 over j ≠ t: the online softmax (m, s) and, for
// smoothing, W = Σ w_j and Q = Σ w_j·(m − x_j) over unmasked elements, and Qm over masked ones;
// for statistics T = Σ e_j·(m − x_j) (e_j = exp(x_j − m), rebased as m grows:
// T' = f·(T + s·(m' − m)), f = exp(m − m')) and the first index of m.
struct OS {
  float m, s, W, Q, Qm, T;
  int64_t arg;
};
constexpr int64_t kNoIndex = INT64_MAX;

// Adds x[0, N) at row indices j0 … j0 + N − 1 (the target already masked: x = −inf, w = 0).
template <bool Smooth, bool Stats, int N>
FCE_DEV void accumulate_opt(OS& st, const float (&x)[N], const float (&w)[N], int64_t j0) {
  float mx = x[0];
FCE_UNROLL
  for (int k = 1; k < N; ++k) mx = fmaxf(mx, x[k]);
  if (mx > st.m) {
    if (st.m != kNegInf) {
      const float f = exp_fast(st.m - mx);
      if (Stats) st.T = f * (st.T + st.s * (mx - st.m));
      st.s *= f;
      if (Smooth) st.Q += st.W * (mx - st.m);
    }
    st.m = mx;
    if (Stats) {
      int64_t a = kNoIndex;
FCE_UNROLL
      for (int k = N - 1; k >= 0; --k)
        if (x[k] == mx) a = j0 + k;
      st.arg = a;
    }
  }
  const float ms = safe(st.m);
  float acc = 0.0f;
FCE_UNROLL
  for (int k = 0; k < N; ++k) {
    const float e = exp_fast(x[k] - ms);
    acc += e;  // NaN and +inf poison s, as in the plain kernel
    if (Stats && x[k] != kNegInf) st.T += e * (ms - x[k]);
    if (Smooth) {
      if (x[k] == kNegInf) {
        if (w[k] != 0.0f) st.Qm += w[k] * INFINITY;
      } else {
        st.Q += w[k] * (ms - x[k]);
        st.W += w[k];
      }
    }
  }
  st.s += acc;
}

template <bool Smooth, bool Stats>
FCE_DEV OS merge_opt(OS a, OS b) {
  const MS ms = merge(MS{a.m, a.s}, MS{b.m, b.s});
  OS r{ms.m, ms.s, 0.0f, 0.0f, 0.0f, 0.0f, kNoIndex};
  if (Stats) {
    // T of each side rebased to the merged max: f·(T + s·(M − m)), f = exp(m − M); a side over
    // masked elements only adds nothing. The first index of the max: the smaller on a tie.
    const float M = ms.m;
    const float ta = a.m == kNegInf ? 0.0f : (a.m == M ? a.T : expf(a.m - M) * (a.T + a.s * (M - a.m)));
    const float tb = b.m == kNegInf ? 0.0f : (b.m == M ? b.T : expf(b.m - M) * (b.T + b.s * (M - b.m)));
    r.T = ta + tb;
    r.arg = a.m == M && b.m == M ? (a.arg < b.arg ? a.arg : b.arg) : a.m == M ? a.arg : b.m == M ? b.arg : kNoIndex;
  }
  if (Smooth) {
    // a state with no unmasked element (m = −inf) has W = Q = 0: nothing to rebase
    const float qa = a.m == kNegInf ? 0.0f : a.Q + a.W * (ms.m - a.m);
    const float qb = b.m == kNegInf ? 0.0f : b.Q + b.W * (ms.m - b.m);
    r.W = a.W + b.W;
    r.Q = qa + qb;
    r.Qm = a.Qm + b.Qm;
  }
  return r;
}

template <bool Smooth, bool Stats>
FCE_DEV OS shfl_merge(OS st, int o) {
  OS other{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o), 0.0f, 0.0f, 0.0f, 0.0f, kNoIndex};
  if (Smooth) {
    other.W = __shfl_xor_sync(0xffffffffu, st.W, o);
    other.Q = __shfl_xor_sync(0xffffffffu, st.Q, o);
    other.Qm = __shfl_xor_sync(0xffffffffu, st.Qm, o);
  }
  if (Stats) {
    other.T = __shfl_xor_sync(0xffffffffu, st.T, o);
    other.arg = __shfl_xor_sync(0xffffffffu, st.arg, o);
  }
  return merge_opt<Smooth, Stats>(st, other);
}

// The block's state from every thread's (fixed order, as block_merge). red: 33·sizeof(OS) bytes.
template <bool Smooth, bool Stats>
__device__ __forceinline__ OS block_merge_opt(OS st, unsigned char* red) {
  auto* slots = reinterpret_cast<OS*>(red);
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
FCE_UNROLL
  for (int o = 16; o > 0; o >>= 1) st = shfl_merge<Smooth, Stats>(st, o);
  if (lane == 0) slots[warp] = st;
  __syncthreads();
  if (warp == 0) {
    OS w = lane < warps ? slots[lane] : OS{kNegInf, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, kNoIndex};
FCE_UNROLL
    for (int o = 16; o > 0; o >>= 1) w = shfl_merge<Smooth, Stats>(w, o);
    if (lane == 0) slots[32] = w;
  }
  __syncthreads();
  const OS r = slots[32];
  __syncthreads();
  return r;
}
constexpr int kOptReduceBytes = 33 * int(sizeof(OS)) + 64;  // the slots, then 8 floats of broadcast

// The focal loss's factors (cpp/row_math.h focal_factors): (1 − p_t)^γ for the loss, κ for the gradient.
FCE_DEV void focal(double gamma, double nll, double* loss_f, double* grad_f) {
  *loss_f = *grad_f = 1.0;
  if (gamma == 0.0) return;
  const double q = -expm1(-nll), pt = exp(-nll);
  if (!(q > 0.0)) {
    *loss_f = *grad_f = 0.0;
    return;
  }
  const double qg = exp(gamma * log(q));  // q^γ, q > 0 (pow would be a call: registers saved around it)
  *loss_f = qg;
  *grad_f = qg * (1.0 + gamma * pt * nll / q);
}

// The gradient constants of a row (A, β, the target's numerator) for upstream `up`.
struct OptGrad {
  double A, beta, target;
};
FCE_DEV OptGrad opt_grad(const OptParams& Q, int64_t r, double wt, double lse, double nll) {
  const Params& P = Q.P;
  const CeOpt& o = Q.o;
  const double up = P.row_scale ? double(P.row_scale[r]) : P.grad_output;
  const double n = double(P.check[0]);
  const double D = o.w ? Q.wsums[1] : n;
  const double W = o.w ? Q.wsums[0] : double(P.vocab);
  const double a = P.mean ? (D != 0.0 ? up / D : 0.0) : up;
  const double b = P.mean ? (n > 0.0 ? up / n : 0.0) : up;
  double lf, kappa;
  focal(o.gamma, nll, &lf, &kappa);
  const double alpha = a * (1.0 - double(o.eps)) * wt * kappa;
  const double gam = b * 2.0 * double(o.zc) * lse;
  const double beta = a * double(o.eps) / double(P.vocab);
  return {alpha + beta * W + gam, beta, beta * (W - wt) + gam};
}

// Loads N weights w[j0, j0 + N) (1 without weights).
template <int N>
FCE_DEV void load_w(const float* w, int64_t j0, float (&out)[N]) {
FCE_UNROLL
  for (int k = 0; k < N; ++k) out[k] = w ? w[j0 + k] : 1.0f;
}

// One block per row, rows strided by gridDim.x. Shared memory: kOptReduceBytes.
template <int DT, int GDT, int MODE, bool Smooth, bool Cap, bool Stats>
__global__ void __launch_bounds__(256, 1) opt_rows_kernel(OptParams Q) {  // launched with ≤ 256 threads
  constexpr int VN = 16 / Elem<DT>::kSize;
  FCE_SHARED_MEMORY(smem);
  const Params& P = Q.P;
  const CeOpt& o = Q.o;
  const int64_t V = P.vocab;
  const unsigned tid = threadIdx.x, T = blockDim.x;
  auto* bcast = reinterpret_cast<float*>(smem + 33 * sizeof(OS));
  if (!targets_ok(P) || (o.w && Q.wsums[2] < double(V))) return;  // a bad target or weight: the host reports it

  for (int64_t r = blockIdx.x; r < P.rows; r += gridDim.x) {
    const int64_t t = P.targets[r];
    const unsigned char* z = row_ptr<DT>(P.z, r, V);
    void* g = MODE == kForward ? nullptr : static_cast<unsigned char*>(P.g) + r * V * Elem<GDT>::kSize;
    if (t == P.ignore_index) {
      if (MODE != kBackward && tid == 0) {
        P.losses[r] = 0.0f, P.lse[r] = 0.0f, P.row_loss[r] = 0.0, Q.row_z[r] = 0.0;
        if (Stats) Q.argmax[r] = -1, Q.entropy[r] = 0.0f, Q.target_logprob[r] = 0.0f, Q.max_prob[r] = 0.0f;
      }
      if (MODE != kForward) zero_range<GDT>(g, V);
      continue;
    }
    const Span sp = span_of<DT>(z, V);
    // x_t and d_t before any of the row is written (in place)
    float dt_t;
    const float xt = transform<Cap>(load_one<DT>(z, t), o, &dt_t);
    const double wt = o.w ? double(o.w[t]) : 1.0;
    __syncthreads();  // every thread has read z_t before thread 0 may write g_t (in place)

    // pass 1 over j ≠ t: the row's (m, s) and the options' sums, merged over the block (every
    // thread gets the result)
    auto pass1 = [&]() -> OS {
      OS st{kNegInf, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, kNoIndex};
      for (int64_t j = tid; j < sp.head; j += T) {
        const float x[1] = {j == t ? kNegInf : transform<Cap>(load_one<DT>(z, j), o, nullptr)};
        const float w[1] = {j == t ? 0.0f : (o.w ? o.w[j] : 1.0f)};
        accumulate_opt<Smooth, Stats, 1>(st, x, w, j);
      }
      for (int64_t i = tid; i < sp.nvec; i += T) {
        const int64_t j0 = sp.head + i * VN;
        Vec<DT> x = widen<DT>(MODE == kFused ? load16_cached(z + j0 * Elem<DT>::kSize) : load16(z + j0 * Elem<DT>::kSize));
        float w[VN];
        if (Smooth) load_w<VN>(o.w, j0, w);
FCE_UNROLL
        for (int k = 0; k < VN; ++k) x.v[k] = transform<Cap>(x.v[k], o, nullptr);
        if (uint64_t(t - j0) < uint64_t(VN)) x.v[t - j0] = kNegInf, w[t - j0] = 0.0f;
        accumulate_opt<Smooth, Stats, VN>(st, x.v, w, j0);
      }
      for (int64_t j = sp.tail + tid; j < V; j += T) {
        const float x[1] = {j == t ? kNegInf : transform<Cap>(load_one<DT>(z, j), o, nullptr)};
        const float w[1] = {j == t ? 0.0f : (o.w ? o.w[j] : 1.0f)};
        accumulate_opt<Smooth, Stats, 1>(st, x, w, j);
      }
      return block_merge_opt<Smooth, Stats>(st, smem);
    };

    if (MODE == kBackward) {
      const float lse = P.lse[r];
      double nll = double(lse) - double(xt);
      // Focal near p_t = 1 (as the CPU's row_grad_opt): κ(nll) amplifies an error in nll by about
      // γ/nll and the fp32 lse carries |lse|·2⁻²⁴, so where γ/nll > 1 the row's lse is taken again
      // in double by pass 1 (every thread takes the branch: lse and x_t are the row's)
      if (o.gamma > 0.0f && nll < double(o.gamma)) {
        const OS st = pass1();
        nll = finish_row(MS{st.m, st.s}, xt).loss;
      }
      const OptGrad G = opt_grad(Q, r, wt, double(lse), nll);
      const float Af = float(G.A), bf = float(G.beta);
      float others = 0.0f;
      auto elem = [&](float zj, int64_t j, float wj) -> float {
        float d;
        const float x = transform<Cap>(zj, o, &d);
        const float p = j == t ? 0.0f : exp_grad<GDT>(x - lse);
        others += p;
        return (Af * p - bf * wj) * d;
      };
      const bool gv = grad_vec_ok<DT, GDT>(g, sp.head);
      for (int64_t j = tid; j < sp.head; j += T) store_one<GDT>(g, j, elem(load_one<DT>(z, j), j, o.w ? o.w[j] : 1.0f));
      for (int64_t i = tid; i < sp.nvec; i += T) {
        const int64_t j0 = sp.head + i * VN;
        const Vec<DT> x = widen<DT>(load16(z + j0 * Elem<DT>::kSize));
        float w[VN], v[VN];
        load_w<VN>(o.w, j0, w);
FCE_UNROLL
        for (int k = 0; k < VN; ++k) v[k] = elem(x.v[k], j0 + k, w[k]);
        store_n<GDT, VN>(g, j0, v, gv);
      }
      for (int64_t j = sp.tail + tid; j < V; j += T) store_one<GDT>(g, j, elem(load_one<DT>(z, j), j, o.w ? o.w[j] : 1.0f));
      const float total = block_sum(others, smem);
      // g_t from p_t itself when p_t < 0.5 (as the CPU's store_target): 1 − Σ_{j≠t} p_j carries the
      // fp32 lse's rounding times A, large where A·p_t and α + β·w_t nearly cancel
      const double pt = exp(double(xt) - double(lse));
      const double gtd = pt < 0.5 ? G.A * pt - (G.A - G.target) : G.target - G.A * double(total);
      if (tid == 0) store_one<GDT>(g, t, float(gtd * double(dt_t)));
      __syncthreads();
      continue;
    }

    // ---- pass 1 over j ≠ t ----
    OS st = pass1();

    // ---- the row's lse, loss and gradient constants (thread 0, double) ----
    if (tid == 0) {
      const Finish f = finish_row(MS{st.m, st.s}, xt);
      const double lse = f.lse, nll = f.loss;
      double lf, kf;
      focal(o.gamma, nll, &lf, &kf);
      double ce = wt * nll * lf;
      if (Smooth) {
        const double eps = o.eps;
        double smooth = wt * nll + double(st.Qm);
        if (st.m != kNegInf) smooth += double(st.W) * (lse - double(st.m)) + double(st.Q);
        ce = (1.0 - eps) * wt * nll + eps / double(V) * smooth;
      }
      const double zl = double(o.zc) * lse * lse;
      P.losses[r] = float(ce + zl);
      P.lse[r] = float(lse);
      P.row_loss[r] = ce;
      Q.row_z[r] = zl;
      if (Stats) {
        // H = p_t·nll + e^{m − lse}·[(lse − m)·S + T]; the largest of m (first at arg) and x_t
        if (lse != lse) {
          Q.argmax[r] = -1;
          Q.entropy[r] = Q.target_logprob[r] = Q.max_prob[r] = NAN;
        } else {
          double H = nll < INFINITY ? exp(-nll) * nll : 0.0;
          if (st.s > 0.0f) {
            const double m = st.m;
            H += exp(m - lse) * ((lse - m) * double(st.s) + double(st.T));
          }
          const bool others = st.s > 0.0f && st.m != kNegInf;
          int64_t arg = t;
          double best = xt;
          if (others && (st.m > xt || (st.m == xt && st.arg < t))) arg = st.arg, best = st.m;
          Q.argmax[r] = int32_t(arg);
          Q.entropy[r] = float(H);
          Q.target_logprob[r] = float(-nll);
          Q.max_prob[r] = float(exp(best - lse));
        }
      }
      if (MODE == kFused) {
        const OptGrad G = opt_grad(Q, r, wt, lse, nll);
        const double e = st.s == 0.0f ? 0.0 : exp(double(safe(st.m)) - lse);
        bcast[0] = float(G.A * e);
        bcast[1] = float(G.beta);
        bcast[2] = float((G.target - G.A * double(st.s) * e) * double(dt_t));
      }
    }
    if (MODE != kFused) continue;
    __syncthreads();
    const float cm = bcast[0], bf = bcast[1], gt = bcast[2];
    const float ms = safe(st.m);
    __syncthreads();  // bcast is reused by the next row

    // ---- pass 2: g_j = (exp(x_j − m)·cm − β·w_j)·d_j; each element read and written by one thread ----
    auto elem = [&](float zj, float wj) -> float {
      float d;
      const float x = transform<Cap>(zj, o, &d);
      return (exp_grad<GDT>(x - ms) * cm - bf * wj) * d;
    };
    const bool gv = grad_vec_ok<DT, GDT>(g, sp.head);
    for (int64_t j = tid; j < sp.head; j += T)
      store_one<GDT>(g, j, j == t ? gt : elem(load_one<DT>(z, j), o.w ? o.w[j] : 1.0f));
    for (int64_t i = tid; i < sp.nvec; i += T) {
      const int64_t j0 = sp.head + i * VN;
      const Vec<DT> x = widen<DT>(load16_cached(z + j0 * Elem<DT>::kSize));
      float w[VN], v[VN];
      load_w<VN>(o.w, j0, w);
FCE_UNROLL
      for (int k = 0; k < VN; ++k) v[k] = elem(x.v[k], w[k]);
      if (uint64_t(t - j0) < uint64_t(VN)) v[t - j0] = gt;
      store_n<GDT, VN>(g, j0, v, gv);
    }
    for (int64_t j = sp.tail + tid; j < V; j += T)
      store_one<GDT>(g, j, j == t ? gt : elem(load_one<DT>(z, j), o.w ? o.w[j] : 1.0f));
  }
}

// One block of 1024 threads: out[0] = W = Σ_j w_j, out[1] = D = Σ_i w[t_i] over rows whose target
// is in [0, V) and is not ignore_index, each in double in a fixed order (thread k sums k, k+1024, …,
// then a fixed tree); out[2] = the first j whose w_j is not finite (V when none), which the loss
// kernels check before they read any weight. Shared memory: 1024 · 24 bytes.
__global__ void __launch_bounds__(1024) weight_sums_kernel(const float* w /* (V,) */, int64_t vocab,
                                                           const int32_t* targets /* (rows,) */, int64_t rows,
                                                           int32_t ignore_index, double* out /* (3,) */) {
  FCE_SHARED_MEMORY(smem);
  auto* sw = reinterpret_cast<double*>(smem);
  auto* sd = sw + blockDim.x;
  auto* sb = sd + blockDim.x;
  double aw = 0.0, ad = 0.0, bad = double(vocab);
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = w[j];
    if (!(v - v == 0.0f)) {  // NaN or ±inf
      if (double(j) < bad) bad = double(j);
    } else {
      aw += double(v);
    }
  }
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const int32_t t = targets[r];
    if (t != ignore_index && t >= 0 && int64_t(t) < vocab) ad += double(w[t]);
  }
  sw[threadIdx.x] = aw;
  sd[threadIdx.x] = ad;
  sb[threadIdx.x] = bad;
  __syncthreads();
  for (unsigned k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) {
      sw[threadIdx.x] += sw[threadIdx.x + k], sd[threadIdx.x] += sd[threadIdx.x + k];
      sb[threadIdx.x] = fmin(sb[threadIdx.x], sb[threadIdx.x + k]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = sw[0], out[1] = sd[0], out[2] = sb[0];
}

}  // namespace fusedce_cuda
