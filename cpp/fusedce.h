// fusedce core contract: softmax cross-entropy straight from logits.
//
// Plain C++17, no N-API and no CUDA: the N-API glue (addon.cpp) and any future backend include
// only this header. Every function here writes into caller-given outputs ("out-param core");
// allocation happens one layer up.
//
// Math, per row i with logits z (length V), target t = targets[i]:
//   lse_i  = log Σ_j exp(z_j)                       (computed as m + log Σ_j exp(z_j − m), m = max z)
//   loss_i = lse_i − z_t
//   dloss_i/dz_j = p_j − [j == t],   p_j = exp(z_j − lse_i)
// Rows whose target equals ignore_index count nowhere: loss 0, lse 0, gradient 0.
//
// Reads and writes, per counted row:
//   forward            reads z once from memory (each fixed block of kBlock elements is read a
//                      second time from L1 when its sum is taken), writes loss_i and lse_i.
//   forward + grad     as forward, and keeps each exp in an fp32 scratch row (L2-resident for
//                      vocab ≤ ~256K), from which it writes the gradient row once (one exp per
//                      element; vocab > 2^20 reads z again instead).
//   backward           reads z and lse_i once, writes the gradient row once.
// No probability matrix is ever stored.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fusedce {

enum class DType : int { F32 = 0, F16 = 1, BF16 = 2 };
enum class Reduction : int { Mean = 0, Sum = 1, None = 2 };

inline size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 2; }

// Each row is cut into fixed blocks of kBlock elements (the last one shorter). A block yields a
// partial (max m_b, Σ exp(z − m_b)) summed in fp32 over 16 interleaved lanes; the partials of a
// row are merged in block order in double precision. The partition depends only on the vocab
// size, never on the thread count, so results are bitwise identical for any `threads`.
// Accumulation error: each fp32 lane sums ≤ kBlock/16 = 256 terms, so the relative error of the
// row sum is ≲ 256·2⁻²⁴ worst case (~1e-6 typical at vocab 262144), i.e. ≲ 1e-6 absolute on lse.
constexpr int64_t kBlock = 4096;
constexpr int kLanes = 16;

// Result of a block: max and Σ exp(z − max). An all-(−inf) block gives (−inf, 0); a block with a
// NaN gives s = NaN (m may be NaN too, or the max of the other elements: the fold looks at s). A
// block whose max is +inf gives s = NaN (inf − inf).
struct Partial {
  float m;
  float s;
};

// One ISA's kernels. Pointers are to the first element of a contiguous range.
struct Kernels {
  const char* name;  // "scalar" | "avx2" | "avx512"
  // (max, Σ exp(z − max)) over z[0, n), n ≤ kBlock.        z: (n,) of the input dtype
  Partial (*partial[3])(const void* z, int64_t n);
  // g[j] = exp(z[j] − lse) · scale for j in [0, n); returns Σ_j exp(z[j] − lse) in fp32.
  // z: (n,) input dtype [dtype index]; g: (n,) output dtype [grad dtype index]; g may equal z
  // (in-place, same dtype) because each element is read before it is written.
  float (*grad[3][3])(const void* z, void* g, int64_t n, float lse, float scale);
  // The fused forward+backward's two halves (one exp per element):
  // partial_store: as partial, and also e[j] = exp(z[j] − m) for j in [0, n) (e: (n,) fp32 scratch)
  Partial (*partial_store[3])(const void* z, int64_t n, float* e);
  // scale_store: g[j] = e[j] · c for j in [0, n), converted to the gradient dtype [index];
  // stream: a hint that g is far larger than the caches (non-temporal stores where supported)
  void (*scale_store[3])(const float* e, void* g, int64_t n, float c, bool stream);
  // y = exp(x), the exp the kernels above use; for tests (accuracy) and benchmarks (the ceiling).
  // x, y: (n,), may be equal.
  void (*exp)(const float* x, float* y, int64_t n);
};

// Kernels chosen for this CPU (CPUID at first call; FUSEDCE_ISA=scalar|avx2 overrides).
const Kernels& active_kernels();
// The portable kernels, available everywhere.
const Kernels& scalar_kernels();
// CPU features seen by CPUID (x86-64) or false elsewhere.
struct CpuFeatures {
  bool avx2, fma, f16c;
  bool avx512;  // AVX-512 F + BW + VL, with OS support
};
CpuFeatures cpu_features();

// Checks targets before any kernel runs. Returns the number of counted rows (target ≠
// ignore_index), or −1 − r for the first row r whose target is outside [0, vocab) and is not
// ignore_index.
int64_t count_targets(const int32_t* targets /* (rows,) */, int64_t rows, int64_t vocab,
                      int32_t ignore_index);

// What both directions share: the logits and targets of a batch, and how to run over it.
struct Batch {
  const void* logits;      // (rows, vocab), dtype
  DType dtype;
  int64_t rows, vocab;
  const int32_t* targets;  // (rows,), already checked by count_targets
  int32_t ignore_index;
  int threads;             // ≥ 1
  const Kernels* kernels;  // nullptr: active_kernels()
};

// Where the gradient goes: g = (p − onehot) · scale_i, scale_i = row_scale ? row_scale[i] : scale.
struct GradOut {
  void* data;              // (rows, vocab) of dtype, or nullptr for none; may be Batch::logits
  DType dtype;             // itself (in place) when the dtypes are equal
  float scale;
  const float* row_scale;  // (rows,) or nullptr
};

struct ForwardArgs {
  Batch batch;
  float* losses;  // (rows,) out: loss_i, 0 at ignored rows
  float* lse;     // (rows,) out: lse_i in fp32, 0 at ignored rows
  GradOut grad;   // optional fused gradient (grad.data == nullptr: none)
};

struct ForwardTotals {
  double loss_sum;  // Σ losses over counted rows, in row order (double)
};

ForwardTotals cross_entropy_forward(const ForwardArgs& a);

struct BackwardArgs {
  Batch batch;
  const float* lse;  // (rows,) from the forward
  GradOut grad;      // grad.data required
};

void cross_entropy_backward(const BackwardArgs& a);

}  // namespace fusedce
