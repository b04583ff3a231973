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

// A block's partial with label smoothing's (or the entropy's) sums (Kernels::partial_smooth).
// q (and s for the entropy) are taken as lane_sum takes its sums: fp32 lanes over each 256-element
// chunk, the chunks added in double (these losses are differenced by gradient checks).
struct SmoothPartial {
  float m;
  double s, q, wsum;
};

// A block pair's partials and cross term (Kernels::partial_pair); sx, sy and c in fp32 lanes per
// 256-element chunk, the chunks added in double, as SmoothPartial's.
struct PairPartial {
  float mx;
  double sx;
  float my;
  double sy, c;
};

// A softcapped block's partial (Kernels::partial_softcap); far: the block has an element the
// kernel does not take (|u| ≥ 0.55 or NaN), and m and s are not set.
struct CapPartial {
  float m, s;
  bool far;
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
  // partial_store of z (input dtype [first index]) with, inside its exp loop, scale_store of a
  // pending span w (gradient dtype [second index]): the fused path's pass 2 of the previous row,
  // so that its stores drain to memory while the exps compute, instead of in a burst between
  // them. Bitwise partial_store(z, n, e) followed by scale_store(w.e, w.g, w.n, w.c, w.stream);
  // w.n may be any length (0 too). nullptr where an ISA has no such kernel: the caller then makes
  // those two calls.
  struct Pending {
    const float* e;  // (n,) fp32 scratch of the previous row's piece
    void* g;         // (n,) gradient dtype; never overlaps z or e
    int64_t n;
    float c;
    bool stream;
    // partial_smooth_write only: the span is scale_sub_store's g = e·c − beta·w (w: (n,) class
    // weights at the span, or nullptr for w ≡ 1)
    float beta = 0.0f;
    const float* w = nullptr;
  };
  Partial (*partial_store_write[3][3])(const void* z, int64_t n, float* e, const Pending& w);
  // partial, partial_store and partial_store_write of x = s·z (each product rounded to fp32, then
  // exactly as the F32 kernels on x): the logit scale on the plain path. nullptr where an ISA has
  // none (the options path then widens and scales each block itself).
  Partial (*partial_scaled[3])(const void* z, int64_t n, float s);
  Partial (*partial_store_scaled[3])(const void* z, int64_t n, float* e, float s);
  Partial (*partial_store_write_scaled[3][3])(const void* z, int64_t n, float* e, const Pending& w, float s);
  // Label smoothing on the plain path. partial_smooth: partial_scaled of x = s·z (s = 1: exactly
  // partial) and, in the same exp loop, q = Σ_j w_j·(m − x_j) and wsum = Σ_j w_j in fp32 lanes
  // (w nullptr: w ≡ 1, wsum = n); with e, also partial_store's e. A fully masked block gives
  // q = (wsum > 0 ? +inf : 0). scale_sub_store: g[j] = e[j]·c − beta·w[j] (w nullptr: − beta).
  // nullptr where an ISA has none (the options path then runs its own loops).
  SmoothPartial (*partial_smooth[3])(const void* z, int64_t n, float s, const float* w, float* e);
  void (*scale_sub_store[3])(const float* e, void* g, int64_t n, float c, float beta, const float* w, bool stream);
  // The entropy's block: partial_scaled of x = s·z and, in the same exp loop, q = Σ_j e_j·(m − x_j)
  // (e_j = exp(x_j − m); a masked element adds 0); with e, also the exps. wsum is unused.
  SmoothPartial (*partial_entropy[3])(const void* z, int64_t n, float s, float* e);
  // The entropy's gradient from those exps: g[j] = c·e[j]·((s·z[j] − m) + k), 0 where c·e[j] = 0.
  // z: (n,) input dtype [first index]; g: (n,) gradient dtype [second]; g may be z (in place).
  void (*entropy_grad_store[3][3])(const void* z, const float* e, void* g, int64_t n, float s, float m, float k, float c,
                                   bool stream);
  // Soft targets from teacher logits (soft_cross_entropy.cpp), per block of x = s·z and y = s·u:
  // partial_pair[op][z dtype][u dtype] gives (mx, Sx) and (my, Sy) as partial_scaled would, and in
  // the same loop the op's cross term C (SoftOp order): Σ e^y_j·(mx − x_j), Σ e^y_j·(y_j − x_j),
  // Σ e^x_j·(x_j − y_j), each over the elements whose exp weight is not 0; with ex and ey (both or
  // neither), the exps are kept there. pair_grad_store: g[j] = ex[j]·a − ey[j]·b (stream: as
  // scale_store's, non-temporal stores for a gradient far larger than the caches).
  PairPartial (*partial_pair[3][3][3])(const void* z, const void* u, int64_t n, float s, float* ex, float* ey);
  void (*pair_grad_store[3])(const float* ex, const float* ey, void* g, int64_t n, float a, float b, bool stream);
  // KL reverse's gradient from pass 1's exps [z dtype][u dtype][gradient dtype]:
  //   g[j] = (c·ex[j])·(((s·z[j] − mx) − (s·u[j] − my)) + k), 0 where c·ex[j] = 0; g may be z.
  void (*klr_grad_store[3][3][3])(const void* z, const void* u, const float* ex, void* g, int64_t n, float s, float mx,
                                  float my, float k, float c, bool stream);
  // Binary CE's block (binary_cross_entropy.cpp) [logits dtype][gradient dtype]: from x (n,) and
  // y, pw, w (n,) f32, the losses (into l, or nowhere when nullptr) and the gradient times gscale
  // (into g, or nowhere); returns Σ l in double lanes (lane_sum_f64's order). pw and w both
  // nullptr: every weight 1, with the bits of blocks of ones (nothing loaded, each product by 1
  // exact). The AVX-512 and AVX2 kernels give the same bits (FMAs where the portable loop has a
  // product and a sum).
  double (*bce_block[3][3])(const void* x, const float* y, const float* pw, const float* w, int64_t n, float* l,
                            void* g, float gscale);
  // Soft CE from probabilities q (f32): partial_smooth with w = q, q's sum taken over the elements
  // with q_j ≠ 0 only (so a masked x_j = −inf with q_j = 0 adds 0), and s in double per chunk.
  SmoothPartial (*partial_probs[3])(const void* z, int64_t n, float s, const float* q, float* e);
  // partial_smooth (with e) with, inside its exp loop, scale_sub_store of a pending span w
  // (w.beta, w.w): label smoothing's fused path, as partial_store_write is the plain one's. Bitwise
  // partial_smooth(z, n, s, wt, e) followed by scale_sub_store(w.e, w.g, w.n, w.c, w.beta, w.w,
  // w.stream). [input dtype][gradient dtype]; nullptr where an ISA has none.
  SmoothPartial (*partial_smooth_write[3][3])(const void* z, int64_t n, float s, const float* wt, float* e, const Pending& w);
  // Softcap's block (cross_entropy_options.cpp): x = c·tanh(u), u = (z·s)·(1/c) (s = 1: z·(1/c)),
  // tanh by its series alone (loss_rows.cpp, tanh_series, the same FMAs), then partial's (m, Σ
  // exp(x − m)) of x in the F32 kernel's order; with e, also the exps, and with d, d[j] = (1 −
  // tanh²)·s. Bitwise scale_softcap_block followed by partial(_store)[F32]. The series holds for
  // |u| < 0.55: a block with any other element (or a NaN) comes back far (e and d partly written),
  // and the caller takes the general loops. nullptr where an ISA has none.
  CapPartial (*partial_softcap[3])(const void* z, int64_t n, float s, float c, float* e, float* d);
  // The options' gradient store [gradient dtype]: g[j] = (w ? fma(−β, w[j], e[j]·c) : e[j]·c − β)
  // ·(d ? d[j] : 1), stream as scale_store's. nullptr: loss_rows.h's sub_mul_store_block (same bits).
  void (*scale_sub_mul_store[3])(const float* e, const float* d, void* g, int64_t n, float c, float beta, const float* w,
                                 bool stream);
};

// Kernels chosen for this CPU (CPUID at first call; FUSEDCE_ISA=scalar|avx2|avx512 overrides).
const Kernels& active_kernels();
// The portable kernels, available everywhere.
const Kernels& scalar_kernels();
// CPU features seen by CPUID (x86-64) or false elsewhere.
struct CpuFeatures {
  bool avx2, fma, f16c;
  bool avx512;      // AVX-512 F + BW + VL + DQ, with OS support
  bool avx512bf16;  // and AVX512_BF16 (vcvtneps2bf16)
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
  double* losses64 = nullptr;  // (rows,) out, optional, zero-filled by the caller: loss_i in double
};

struct ForwardTotals {
  double loss_sum;  // Σ loss_i over counted rows, in row order, in double (before their fp32 rounding)
};

ForwardTotals cross_entropy_forward(const ForwardArgs& a);

struct BackwardArgs {
  Batch batch;
  const float* lse;  // (rows,) from the forward
  GradOut grad;      // grad.data required
};

void cross_entropy_backward(const BackwardArgs& a);

// ---- Cross-entropy with options (cpp/cross_entropy_options.cpp) ------------------------------
// torch.nn.functional.cross_entropy(weight=w, label_smoothing=ε) on transformed logits, plus a
// z-loss. Per counted row i with target t, x = T(z) (below), lse = log Σ_j exp(x_j):
//   ce_i  = (1 − ε)·w_t·(lse − x_t) + (ε/V)·Σ_j w_j·(lse − x_j)      (w ≡ 1 without weights)
//   zl_i  = c·lse²                                                  (PaLM z-loss)
//   loss_i = ce_i + zl_i
// Reductions: mean = Σ ce_i / D + Σ zl_i / N with D = Σ_i w_{t_i} (N without weights) and N the
// counted rows (torch's weighted mean, the z part per row); sum = Σ loss_i.
// Transform: x = s·z (logit scale), then x ← c·tanh(x/c) (softcap, c > 0); dx/dz = s·(1 − tanh²).
// Gradient, with a_i = upstream · (1/D | 1) and b_i = upstream · (1/N | 1):
//   dloss/dx_j = a_i·[((1 − ε)·w_t + (ε/V)·W)·p_j − (1 − ε)·w_t·[j = t] − (ε/V)·w_j] + b_i·2c·lse·p_j
// with W = Σ_j w_j, then times dx/dz.
// Focal loss (γ > 0; never with ε or c): ce_i = w_t·(1 − p_t)^γ·(lse − x_t), and with
// q = 1 − p_t = −expm1(x_t − lse), κ = q^γ·(1 + γ·p_t·(lse − x_t)/q) (κ → 0 as q → 0):
//   dloss/dx_j = a_i·w_t·κ·(p_j − [j = t])
struct CeOptions {
  float label_smoothing = 0.0f;    // ε in [0, 1]
  const float* weight = nullptr;   // (vocab,) class weights, or nullptr
  double weight_total = 0.0;       // W = Σ_j weight_j (vocab without weights)
  float z_loss = 0.0f;             // c ≥ 0
  float logit_scale = 1.0f;        // s
  float softcap = 0.0f;            // c > 0, or 0 for none
  float focal_gamma = 0.0f;        // γ ≥ 0 (0: none)
};
// Multipliers of the gradient's two parts (see above): mean → (1/D, 1/N); sum and none → (1, 1).
struct CeNorm {
  double ce = 1.0, z = 1.0;
};
// Per-row eval statistics, each (rows,) or nullptr; 0 (argmax −1) at ignored rows.
struct CeStats {
  int32_t* argmax = nullptr;         // first index of the largest x_j
  float* entropy = nullptr;          // −Σ_j p_j log p_j, nats
  float* target_logprob = nullptr;   // x_t − lse
  float* max_prob = nullptr;         // max_j p_j
};
struct ForwardOptArgs {
  ForwardArgs base;  // base.losses gets loss_i = ce_i + zl_i; base.lse the lse of x
  CeOptions opt;
  CeNorm norm;
  CeStats stats;
};
struct ForwardOptTotals {
  double ce_sum, z_sum;  // Σ ce_i, Σ zl_i over counted rows, in row order
};
ForwardOptTotals cross_entropy_forward_opt(const ForwardOptArgs& a);
// The options whose rows keep plain CE's per-element work (weights, z-loss, focal, and logit scale
// and label smoothing where the ISA has their kernels; no softcap or statistics) run on the plain driver
// and kernels (cross_entropy.cpp). cross_entropy_forward_opt routes there when this holds.
bool plain_opt_applies(const ForwardOptArgs& a);
ForwardOptTotals cross_entropy_forward_plain_opt(const ForwardOptArgs& a);
// The gradient from a saved lse (of x), as the fused forward computes it (bitwise the same).
void cross_entropy_backward_opt(const BackwardArgs& a, const CeOptions& opt, CeNorm norm);

// ---- Soft targets, distillation, KL and entropy (cpp/soft_cross_entropy.cpp) -------------------
// Per row, x = z/T (the trained logits), p = softmax(x), lse = log Σ exp(x); the target is
// y = u/T with q = softmax(y) (teacher / reference logits u) or given probabilities q (f32, ≥ 0):
//   SoftCrossEntropy  loss = F·Σ_j q_j·(lse − x_j)            dloss/dz_j = F·(Σq·p_j − q_j)/T
//   KlForward         loss = Σ_j q_j·(log q_j − log p_j)       dloss/dz_j = (p_j − q_j)/T
//   KlReverse         loss = Σ_j p_j·(log p_j − log q_j) = L   dloss/dz_j = p_j·(log p_j − log q_j − L)/T
// F = T² with tSquared, else 1. Rows whose probabilities are all 0 count nowhere (loss 0, lse 0,
// gradient 0). Terms with q_j = 0 (resp. p_j = 0) add 0 even where the log is −inf.
enum class SoftOp : int { CrossEntropy = 0, KlForward = 1, KlReverse = 2 };
struct SoftArgs {
  const void* logits;      // (rows, vocab) z, of dtype
  DType dtype;
  const void* target;      // (rows, vocab): logits u of target_dtype, or probabilities q (f32)
  DType target_dtype;
  bool target_probs;
  int64_t rows, vocab;
  SoftOp op;
  float inv_temperature;   // 1/T
  double loss_factor;      // F (SoftCrossEntropy), else 1
  int threads;
  const Kernels* kernels;  // nullptr: active_kernels()
  // Probability targets only (torch's cross_entropy(z, q, weight=w, label_smoothing=ε)): the
  // target becomes q̃_j = w_j·((1 − ε)·q_j + ε/V) (w = 1 without weights). A row whose q is all 0
  // still counts nowhere; rows need not sum to 1, and w may be any finite numbers.
  float label_smoothing = 0.0f;
  const float* weight = nullptr;  // (vocab,) or nullptr
};
struct SoftForwardOut {
  float* losses;  // (rows,) out
  float* lse;     // (rows,) out: lse of x = z/T, 0 at rows that do not count
  GradOut grad;   // optional gradient w.r.t. z (grad.data nullptr: none); scale = upstream·(1/N | 1)
};
struct SoftTotals {
  double loss_sum;  // Σ losses in row order
  int64_t count;    // rows that count
};
SoftTotals soft_forward(const SoftArgs& a, const SoftForwardOut& out);
// The gradient from a saved lse (SoftCrossEntropy and KlForward), from the fp32 lse. Where the ISA
// has the soft targets' block kernels, the fused forward's gradient comes from pass 1's exps and the
// double lse's instead: the two agree to rounding, not bitwise (as plain cross-entropy's).
void soft_backward(const SoftArgs& a, const float* lse /* (rows,) */, const GradOut& grad);
// Entropy of softmax(z/T) per row, in nats: −Σ_j p_j·log p_j.      out: (rows,)
void entropy_rows(const void* logits /* (rows, vocab) */, DType dtype, int64_t rows, int64_t vocab,
                  float inv_temperature, int threads, float* out);
// The generalized Jensen–Shannon divergence, 0 < β < 1 (soft_cross_entropy.cpp): a.logits the
// model z, a.target the reference logits u (a.target_probs false), x = z/T, y = u/T;
// losses[i] = β·KL(p‖m) + (1 − β)·KL(q‖m), m = β·p + (1 − β)·q, p = softmax(y), q = softmax(x);
// with grad.data the gradient w.r.t. z times the row's scale. Returns Σ losses in row order.
double jsd_forward(const SoftArgs& a, double beta, float* losses /* (rows,) */, float* lse /* (rows,) */,
                   const GradOut& grad);
// The entropy as a loss: losses[i] = H_i, lse[i] of z/T, and with grad.data the gradient
// dH/dz_j = −(1/T)·p_j·(log p_j + H_i) times the row's scale. Returns Σ H_i in row order.
double entropy_forward(const void* logits /* (rows, vocab) */, DType dtype, int64_t rows, int64_t vocab,
                       float inv_temperature, int threads, float* losses /* (rows,) */, float* lse /* (rows,) */,
                       const GradOut& grad);

// ---- Binary cross-entropy from logits (cpp/binary_cross_entropy.cpp) --------------------------
// torch.nn.BCEWithLogitsLoss, elementwise over (rows, vocab): with lw = 1 + (pw_j − 1)·y,
//   l = w·[(1 − y)·x + lw·(log1p(e^{−|x|}) + max(−x, 0))]      (= w·[−pw·y·log σ(x) − (1 − y)·log(1 − σ(x))])
//   dl/dx = w·[(1 − y) − lw·σ(−x)]
struct BceArgs {
  const void* logits;         // (rows, vocab) x, of dtype
  DType dtype;
  int64_t rows, vocab;
  const float* targets;       // (rows, vocab) y
  const float* pos_weight;    // (vocab,) pw, or nullptr: pos_weight_scalar for every class
  float pos_weight_scalar;
  const float* weight;        // (rows, vocab), or (vocab,) when weight_per_class, or nullptr (1)
  bool weight_per_class;
  int threads;
};
struct BceOut {
  float* losses;  // (rows, vocab) out, or nullptr
  GradOut grad;   // optional gradient (row_scale unused); scale = upstream·(1/(rows·vocab) | 1)
};
// Returns Σ l over all elements (each row summed in double lanes, rows added in order).
double bce_forward(const BceArgs& a, const BceOut& out);
// The first index i with v[i] outside [lo, hi] (NaN included), or −1: the targets' check before
// bce_forward, vectorised and split over the pool (it reads as many bytes as the kernel's targets).
int64_t first_outside(const float* v /* (n,) */, int64_t n, float lo, float hi, int threads);
// Σ v in double over 16 interleaved lanes, reduced pairwise (lane_sum_f64's fixed order): the class
// weights' total W, without a 128K-long chain of dependent adds.
double sum_f64(const float* v /* (n,) */, int64_t n);
// The rows of q (rows, vocab) with a nonzero element (the probability targets that count).
int64_t count_nonzero_rows(const float* q, int64_t rows, int64_t vocab, int threads);

// ---- dtype conversions (cpp/convert.cpp) -------------------------------------------------------
// dst[i] = src[i] converted, round to nearest even (bf16: NaN stays a quiet NaN; f16: IEEE
// binary16 with subnormals). src and dst do not overlap. portable: the plain loops (tests
// compare them with the vector ones).
enum class ConvertKind : int { F32ToBf16 = 0, F32ToF16 = 1, Bf16ToF32 = 2, F16ToF32 = 3 };
void convert(const void* src /* (n,) */, void* dst /* (n,) */, int64_t n, ConvertKind kind, int threads,
             bool portable = false);

}  // namespace fusedce
