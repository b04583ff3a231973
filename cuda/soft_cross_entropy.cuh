// Soft targets, distillation, KL, entropy and the generalized JSD on CUDA: the CPU's semantics
// (cpp/fusedce.h above SoftArgs; cpp/soft_cross_entropy.cpp). Kernels of their own: the plain
// cross-entropy kernel is untouched.
//
// Math, per row: x = z/T (the trained logits), log p_j = x_j − lse_x; the target y = u/T with
// log q_j = y_j − lse_y (teacher / reference logits u), or given probabilities q (f32, ≥ 0) made
// q̃_j = w_j·((1 − ε)·q_j + ε/V) by label smoothing and class weights (w ≡ 1, ε = 0 without):
//   soft CE       loss = F·Σ_j q_j·(lse_x − x_j)              g_j = c·(Σq·p_j − q_j),  c = up·F/T
//   KL forward    loss = Σ_j q_j·(log q_j − log p_j)          g_j = c·(p_j − q_j),     c = up/T
//   KL reverse    loss = L = Σ_j p_j·(log p_j − log q_j)      g_j = c·p_j·(log p_j − log q_j − L)
//   entropy       loss = H = Σ_j p_j·(lse_x − x_j)            g_j = −c·p_j·(log p_j + H)
//   JSD (β)       P = softmax(y) (reference), Q = p (model), log m = logaddexp(log β + log P, log(1 − β) + log Q)
//                 loss = β·Σ P·(log P − log m) + (1 − β)·Σ Q·(log Q − log m)
//                 g_j = c·(1 − β)·Q_j·((log Q_j − log m_j) − KL(Q ‖ m))
// (F = T² with tSquared, else 1; for logit targets Σq = 1.) Terms whose probability is 0 add 0,
// even where the log is −inf. A probability row that is all 0 counts nowhere (loss 0, lse 0,
// gradient 0); every other row counts. A NaN (or +inf) anywhere, or a row without a finite logit,
// gives a NaN row. 'mean' divides by the rows that count.
//
// Kernels, and what each reads and writes (elements of the [rows, V] matrices):
//   soft_rows_kernel<FORWARD>   one block per row (grid-strided): pass 1 reads z and the target for
//                               the row maxima, pass 2 reads both again (from L2 for rows up to its
//                               size) for the sums relative to them (see pass 2), from which lse
//                               and the loss follow without a large term cancelling; the JSD reads
//                               both a third time for its terms. Writes loss and lse (of x).
//   soft_rows_kernel<FUSED>     as FORWARD, then one more pass reads both and writes g once.
//   soft_rows_kernel<BACKWARD>  soft CE and KL forward from a saved lse: the target's max and sum
//                               (lse_y or Σq̃), then the gradient pass.
//   probs_rows_kernel           probability targets: per row, whether any q ≠ 0 and the first
//                               value that is not a finite number ≥ 0; probs_check_kernel folds
//                               them into (count, first bad row) before any loss kernel runs.
// Loads are scalar (each dtype decoded at run time), coalesced across a warp; every exp is expf.
// The terms are fp32 (the JSD's double: its gradient differences nearly equal logs), summed in
// double per thread and merged in a fixed order: deterministic on a given GPU, and smooth enough
// for finite differences of the loss.
#pragma once

#include "cross_entropy.cuh"

namespace fusedce_cuda {

enum SoftKind : int { kSoftCE = 0, kKlForward = 1, kKlReverse = 2, kEntropy = 3, kJsd = 4 };

struct SoftParams {
  const void* z;            // (rows, V) of dt
  const void* u;            // (rows, V) of udt (teacher / reference logits), or f32 probabilities; null for entropy
  int dt, udt, gdt;
  int probs;                // u holds probabilities
  int64_t rows, vocab;
  float inv_t;              // 1/T
  double factor;            // F (soft CE), else 1
  float eps;                // label smoothing (probabilities only)
  const float* w;           // (V,) class weights (probabilities only), or null
  double beta;              // JSD's β in (0, 1)
  float* losses;            // (rows,) out [forward, fused]
  float* lse;               // (rows,) out [forward, fused] / in [backward]: lse of x
  double* row_loss;         // (rows,) out: loss_i in double, for the fixed-order sum
  void* g;                  // (rows, V) of gdt, may be z itself (in place)
  double grad_output;       // upstream gradient; /count with mean
  int mean;
  const float* row_scale;   // (rows,) per-row upstream (reduction none), or null
  const int* live;          // (rows,) probabilities: 1 where the row counts (null: every row)
  const long long* check;   // (2,): counted rows, first bad row (rows: none)
};

FCE_DEV float load_dt(const void* row, int dt, int64_t j) {
  if (dt == 0) return static_cast<const float*>(row)[j];
  const uint16_t h = static_cast<const uint16_t*>(row)[j];
  return dt == 2 ? bf16_bits_to_float(h) : f16_bits_to_float(h);
}
FCE_DEV void store_dt(void* row, int dt, int64_t j, float v) {
  if (dt == 0) static_cast<float*>(row)[j] = v;
  else static_cast<uint16_t*>(row)[j] = dt == 2 ? float_to_bf16_bits(v) : float_to_f16_bits(v);
}
FCE_DEV int dt_size(int dt) { return dt == 0 ? 4 : 2; }

// max v over the block (NaN ignored: a NaN row shows in its sums), fixed order; every thread gets it.
__device__ __forceinline__ float block_max(float v, unsigned char* red) {
  auto* slots = reinterpret_cast<float*>(red);
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
FCE_UNROLL
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? slots[lane] : kNegInf;
FCE_UNROLL
    for (int o = 16; o > 0; o >>= 1) w = fmaxf(w, __shfl_xor_sync(0xffffffffu, w, o));
    if (lane == 0) slots[32] = w;
  }
  __syncthreads();
  const float r = slots[32];
  __syncthreads();
  return r;
}

// q̃_j of a probability row.
FCE_DEV float q_tilde(const SoftParams& S, const float* q, int64_t j) {
  float v = q[j];
  if (S.eps != 0.0f) v = (1.0f - S.eps) * v + float(double(S.eps) / double(S.vocab));
  return S.w ? S.w[j] * v : v;
}

// The JSD's logs, in double (its gradient is a difference of nearly equal logs): with
// d = log Q − log P, log(P/m) = −logaddexp(log β, log(1 − β) + d) and, by symmetry,
// log(Q/m) = −logaddexp(log(1 − β), log β − d) = log_p_over_m(−d, log(1 − β), log β): each finite
// where its own side is not 0 (d = +inf, a masked reference logit, leaves log(Q/m) = −log(1 − β);
// d + log(P/m) would be inf − inf there).
FCE_DEV double log_p_over_m(double d, double log_b, double log_1b) {
  const double s = log_b, t = log_1b + d;
  const double hi = fmax(s, t), lo = fmin(s, t);
  if (d != d) return NAN;
  return -(hi + log1p(exp(lo - hi)));
}

// Shared memory: 33 doubles (the reductions).
constexpr int kSoftSmem = 33 * 8;

template <int MODE, int KIND>
__global__ void __launch_bounds__(256, 1) soft_rows_kernel(SoftParams S) {  // launched with ≤ 256 threads
  FCE_SHARED_MEMORY(smem);
  const int64_t V = S.vocab;
  const unsigned tid = threadIdx.x, T = blockDim.x;
  if (S.check[1] < S.rows) return;  // a bad probability: the host reports it
  constexpr bool kTarget = KIND != kEntropy;
  const double n = double(S.check[0]);

  for (int64_t r = blockIdx.x; r < S.rows; r += gridDim.x) {
    const unsigned char* z = static_cast<const unsigned char*>(S.z) + r * V * dt_size(S.dt);
    const unsigned char* u = kTarget ? static_cast<const unsigned char*>(S.u) + r * V * (S.probs ? 4 : dt_size(S.udt)) : nullptr;
    const float* q = reinterpret_cast<const float*>(u);
    void* g = MODE == kForward ? nullptr : static_cast<unsigned char*>(S.g) + r * V * dt_size(S.gdt);
    if (S.live && !S.live[r]) {  // an all-zero probability row counts nowhere
      if (MODE != kBackward && tid == 0) S.losses[r] = 0.0f, S.lse[r] = 0.0f, S.row_loss[r] = 0.0;
      if (MODE != kForward)
        for (int64_t j = tid; j < V; j += T) store_dt(g, S.gdt, j, 0.0f);
      continue;
    }

    // ---- pass 1: the row maxima Mx (not for the backward) and My (logit targets) ----
    float mx = kNegInf, my = kNegInf;
    for (int64_t j = tid; j < V; j += T) {
      if (MODE != kBackward) mx = fmaxf(mx, load_dt(z, S.dt, j) * S.inv_t);
      if (kTarget && !S.probs) my = fmaxf(my, load_dt(u, S.udt, j) * S.inv_t);
    }
    if (MODE != kBackward) mx = block_max(mx, smem);
    if (kTarget && !S.probs) my = block_max(my, smem);
    const float msx = safe(mx), msy = safe(my);

    // ---- pass 2: sums relative to the maxima, in double (fp32 terms), each of non-negative terms
    //      where the op allows: Sx = Σ e^{x−Mx}, Sy = Σ e^{y−My} (or Q = Σq̃), and the cross sum
    //        soft CE  C = Σ q_j·(Mx − x_j)·(Sy | 1)   KL fwd  C = Σ e^{y−My}·(y − x)
    //        KL rev   C = Σ e^{x−Mx}·(x − y)          entropy C = Σ e^{x−Mx}·(Mx − x)
    //      so that with Lx = Mx + log Sx and Ly = My + log Sy (no lse enters a term):
    //        soft CE  F·((Lx − Mx)·Σq + C/Sy)   KL fwd  C/Sy + Lx − Ly   KL rev  C/Sx + Ly − Lx
    //        entropy  (Lx − Mx) + C/Sx ----
    double sxd = 0.0, syd = 0.0, cd = 0.0;
    for (int64_t j = tid; j < V; j += T) {
      const float x = MODE != kBackward || KIND == kSoftCE ? load_dt(z, S.dt, j) * S.inv_t : 0.0f;
      float ex = 0.0f;
      if (MODE != kBackward) {
        ex = expf(x - msx);
        sxd += double(ex);
      }
      if (KIND == kEntropy) {
        if (ex != 0.0f) cd += double(ex * (msx - x));
        continue;
      }
      if (S.probs) {
        const float qt = q_tilde(S, q, j);
        syd += double(qt);
        if (MODE != kBackward && qt != 0.0f) cd += double(qt * (msx - x));
        continue;
      }
      const float y = load_dt(u, S.udt, j) * S.inv_t;
      const float ey = expf(y - msy);
      syd += double(ey);
      if (MODE == kBackward || KIND == kJsd) continue;
      if (KIND == kSoftCE) {
        if (ey != 0.0f) cd += double(ey * (msx - x));
      } else if (KIND == kKlForward) {
        if (ey != 0.0f) cd += double(ey * (y - x));
      } else if (KIND == kKlReverse) {
        if (ex != 0.0f) cd += double(ex * (x - y));
      }
    }
    if (MODE != kBackward) sxd = block_sum<double>(sxd, smem);
    if (kTarget) syd = block_sum<double>(syd, smem);
    if (MODE != kBackward && KIND != kJsd) cd = block_sum<double>(cd, smem);
    const double Lx = MODE == kBackward ? double(S.lse[r]) : double(msx) + log(sxd);
    const double Ly = kTarget && !S.probs ? double(msy) + log(syd) : 0.0;
    const double qsum = S.probs ? syd : 1.0;
    const float lx = float(Lx), ly = float(Ly);
    const double dL = Lx - Ly;  // log p − log q = (x − y) − (Lx − Ly)
    const double log_b = KIND == kJsd ? log(S.beta) : 0.0, log_1b = KIND == kJsd ? log1p(-S.beta) : 0.0;

    double loss = 0.0, klqm = 0.0;
    if (MODE != kBackward) {
      if (KIND == kSoftCE) loss = S.factor * (S.probs ? (Lx - double(msx)) * syd + cd : (Lx - double(msx)) + cd / syd);
      else if (KIND == kKlForward) loss = cd / syd + (Lx - Ly);
      else if (KIND == kKlReverse) loss = cd / sxd + (Ly - Lx);
      else if (KIND == kEntropy) loss = (Lx - double(msx)) + cd / sxd;
      else {
        // ---- JSD: pass 3 for its terms, in double, with d = log Q − log P = (x − y) − (Lx − Ly) ----
        double acc = 0.0, acc2 = 0.0;
        for (int64_t j = tid; j < V; j += T) {
          const double x = load_dt(z, S.dt, j) * S.inv_t, y = load_dt(u, S.udt, j) * S.inv_t;
          const double P = exp(y - Ly), Q = exp(x - Lx);
          const double d = (x - y) - dL;
          const double lpm = log_p_over_m(d, log_b, log_1b), lqm = log_p_over_m(-d, log_1b, log_b);
          if (P != 0.0) acc += S.beta * P * lpm;
          if (Q != 0.0) {
            acc += (1.0 - S.beta) * Q * lqm;
            acc2 += Q * lqm;
          }
        }
        loss = block_sum<double>(acc, smem);
        klqm = block_sum<double>(acc2, smem);
      }
      if (Lx != Lx || Ly != Ly) loss = NAN;
      if (tid == 0) {
        S.losses[r] = float(loss);
        S.lse[r] = float(Lx);
        S.row_loss[r] = loss;
      }
      if (MODE == kForward) continue;
    }

    // ---- pass 3: the gradient ----
    const double up = S.row_scale ? double(S.row_scale[r]) : S.grad_output;
    const double cg = (S.mean ? (n > 0.0 ? up / n : 0.0) : up) * (KIND == kSoftCE ? S.factor : 1.0) * double(S.inv_t);
    const float c = float(cg), qsf = float(qsum);
    const float kr = float((Lx - Ly) + loss);
    const float ke = KIND == kEntropy ? float(cd / sxd) : 0.0f;  // KL reverse: log p − log q − L = (x − y) − ((Lx − Ly) + L)
    for (int64_t j = tid; j < V; j += T) {
      const float x = load_dt(z, S.dt, j) * S.inv_t;
      const float lpx = x - lx;
      const float p = expf(lpx);
      float v;
      if (KIND == kEntropy) {
        v = p == 0.0f ? 0.0f : -c * p * ((x - msx) + ke);  // log p_j + H = (x_j − Mx) + C/Sx
      } else if (S.probs) {
        v = c * (qsf * p - q_tilde(S, q, j));
      } else {
        const float y = load_dt(u, S.udt, j) * S.inv_t;
        const float lqy = y - ly;
        if (KIND == kSoftCE || KIND == kKlForward) {
          v = c * (p - expf(lqy));
        } else if (KIND == kKlReverse) {
          v = p == 0.0f ? 0.0f : c * p * ((x - y) - kr);
        } else {
          const double xd = double(x), Q = exp(xd - Lx);
          const double d = (xd - double(y)) - dL;
          const double lqm = log_p_over_m(-d, log_1b, log_b);
          v = Q == 0.0 ? 0.0f : float(cg * (1.0 - S.beta) * Q * (lqm - klqm));
        }
      }
      if (Lx != Lx || Ly != Ly) v = NAN;
      store_dt(g, S.gdt, j, v);  // the same thread read z_j (and u_j) just before: in place is safe
    }
  }
}

// Probability targets, one block per row (grid-strided): live[r] = 1 when some q_j ≠ 0, and
// bad[r] = the first j whose q_j is not a finite number ≥ 0 (V when none).
__global__ void __launch_bounds__(1024) probs_rows_kernel(const float* q /* (rows, V) */, int64_t rows, int64_t vocab,
                                                          int* live /* (rows,) */, long long* bad /* (rows,) */) {
  FCE_SHARED_MEMORY(smem);
  auto* sb = reinterpret_cast<long long*>(smem);
  auto* sl = reinterpret_cast<int*>(smem + 1024 * 8);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = q + r * vocab;
    long long b = vocab;
    int any = 0;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
      const float v = row[j];
      if (!(v >= 0.0f && v <= 3.4028234663852886e38f)) {
        if (j < b) b = j;
      } else if (v != 0.0f) {
        any = 1;
      }
    }
    sb[threadIdx.x] = b;
    sl[threadIdx.x] = any;
    __syncthreads();
    for (unsigned k = blockDim.x / 2; k > 0; k >>= 1) {
      if (threadIdx.x < k) {
        if (sb[threadIdx.x + k] < sb[threadIdx.x]) sb[threadIdx.x] = sb[threadIdx.x + k];
        sl[threadIdx.x] |= sl[threadIdx.x + k];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) live[r] = sl[0], bad[r] = sb[0];
    __syncthreads();
  }
}

// One block: out[0] = Σ live (the rows that count), out[1] = the first row with a bad value (rows
// when none), out[2] = its first bad column. Without probabilities (live null): (rows, rows, 0).
// Shared memory: 1024 · 16 bytes.
__global__ void __launch_bounds__(1024) probs_check_kernel(const int* live, const long long* bad, int64_t rows, int64_t vocab,
                                                           long long* out /* (3,) */) {
  FCE_SHARED_MEMORY(smem);
  auto* cnt = reinterpret_cast<long long*>(smem);
  auto* first = cnt + blockDim.x;
  long long c = 0, f = rows;
  if (!live) {
    if (threadIdx.x == 0) out[0] = rows, out[1] = rows, out[2] = 0;
    return;
  }
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    c += live[r];
    if (bad[r] < vocab && r < f) f = r;
  }
  cnt[threadIdx.x] = c;
  first[threadIdx.x] = f;
  __syncthreads();
  for (unsigned k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) {
      cnt[threadIdx.x] += cnt[threadIdx.x + k];
      if (first[threadIdx.x + k] < first[threadIdx.x]) first[threadIdx.x] = first[threadIdx.x + k];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    out[0] = cnt[0];
    out[1] = first[0];
    out[2] = first[0] < rows ? bad[first[0]] : 0;
  }
}

}  // namespace fusedce_cuda
