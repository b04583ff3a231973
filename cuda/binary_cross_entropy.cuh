// Binary cross-entropy from logits on CUDA: torch.nn.BCEWithLogitsLoss, the CPU's semantics
// (cpp/fusedce.h above BceArgs; cpp/binary_cross_entropy.cpp). Elementwise over (rows, V), with
// lw = 1 + (pw_j − 1)·y:
//   l     = w·[(1 − y)·x + lw·(log1p(e^{−|x|}) + max(−x, 0))]
//         = w·[pos ? (1 − y)·x : pw·y·|x|] + w·lw·log1p(e^{−|x|})      (sums of non-negative terms)
//   dl/dx = w·[(1 − y) − lw·σ(−x)] = w·((1 − y)·a − pw·y·b)/(1 + e^{−|x|}),  (a, b) = (1, e) for
//           x ≥ 0 and (e, 1) for x < 0, e = e^{−|x|}: the only exp, never overflowing.
// Reductions: 'mean' divides by rows·V elements; 'sum' sums; 'none' writes every element's loss.
//
// Kernels, and what each reads and writes:
//   bce_check_kernel   grid-strided over the targets: the first index whose y is outside [0, 1]
//                      (NaN included), an integer atomicMin per block (order-free: deterministic).
//   bce_rows_kernel    one block per row (grid-strided): reads x, y (and the weights) once; writes
//                      the losses ('none') and the gradient once; the row's sum in double (fixed
//                      order) for the batch sum. Nothing runs when a target was out of range.
#pragma once

#include "cross_entropy.cuh"
#include "soft_cross_entropy.cuh"

namespace fusedce_cuda {

struct BceParams {
  const void* z;            // (rows, V) of dt
  int dt, gdt;
  int64_t rows, vocab;
  const float* y;           // (rows, V) targets in [0, 1]
  const float* pw;          // (V,) pos weights, or null: pw_scalar
  float pw_scalar;
  const float* w;           // (rows, V), or (V,) with w_per_class, or null
  int w_per_class;
  float* losses;            // (rows, V) out, or null
  void* g;                  // (rows, V) of gdt, or null; may be z itself
  float scale;              // the gradient's upstream·(1/(rows·V) | 1)
  double* row_loss;         // (rows,) out
  const long long* bad;     // (1,): the first bad target's index (rows·V: none)
};

// out[0] = min(out[0], the first i in [0, n) with y_i outside [0, 1]); out[0] starts at n.
// Shared memory: 1024 · 8 bytes.
__global__ void __launch_bounds__(1024) bce_check_kernel(const float* y /* (n,) */, int64_t n, long long* out /* (1,) */) {
  FCE_SHARED_MEMORY(smem);
  auto* sb = reinterpret_cast<long long*>(smem);
  long long b = n;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const float v = y[i];
    if (!(v >= 0.0f && v <= 1.0f) && i < b) b = i;
  }
  sb[threadIdx.x] = b;
  __syncthreads();
  for (unsigned k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k && sb[threadIdx.x + k] < sb[threadIdx.x]) sb[threadIdx.x] = sb[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0 && sb[0] < n) atomicMin(out, sb[0]);
}

// Sets out[0] = n (no bad target yet), before bce_check_kernel.
__global__ void bce_check_init_kernel(int64_t n, long long* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = n;
}

__global__ void __launch_bounds__(256, 1) bce_rows_kernel(BceParams B) {  // launched with ≤ 256 threads
  FCE_SHARED_MEMORY(smem);
  const int64_t V = B.vocab;
  const unsigned tid = threadIdx.x, T = blockDim.x;
  if (B.bad[0] < B.rows * V) return;  // a target outside [0, 1]: the host reports it
  for (int64_t r = blockIdx.x; r < B.rows; r += gridDim.x) {
    const unsigned char* z = static_cast<const unsigned char*>(B.z) + r * V * dt_size(B.dt);
    const float* y = B.y + r * V;
    const float* w = B.w ? (B.w_per_class ? B.w : B.w + r * V) : nullptr;
    float* l = B.losses ? B.losses + r * V : nullptr;
    void* g = B.g ? static_cast<unsigned char*>(B.g) + r * V * dt_size(B.gdt) : nullptr;
    double acc = 0.0;
    for (int64_t j = tid; j < V; j += T) {
      const float x = load_dt(z, B.dt, j), yj = y[j];
      const float pw = B.pw ? B.pw[j] : B.pw_scalar, wj = w ? w[j] : 1.0f;
      const float lw = 1.0f + (pw - 1.0f) * yj;
      const float e = expf(-fabsf(x));
      const bool pos = x >= 0.0f;
      const float lv = wj * ((pos ? (1.0f - yj) * x : -pw * yj * x) + lw * log1pf(e));
      acc += double(lv);
      if (l) l[j] = lv;
      if (g) {
        const float a = pos ? 1.0f : e, b = pos ? e : 1.0f;
        store_dt(g, B.gdt, j, B.scale * (wj * ((1.0f - yj) * a - pw * yj * b) / (1.0f + e)));
      }
    }
    const double s = block_sum<double>(acc, smem);
    if (tid == 0) B.row_loss[r] = s;
  }
}

}  // namespace fusedce_cuda
