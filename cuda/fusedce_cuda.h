/* fusedce CUDA backend: the plain C API over the kernels in cross_entropy.cuh.
 *
 * No CUDA and no N-API types here: the N-API glue (cuda/addon.cpp), tests and benchmarks (through
 * ctypes, on PyTorch's buffers) include only this header. Pointers named "device" are device
 * memory (or, in the emulated build, memory from fce_cuda_malloc). Every function returns 0 on
 * success, FCE_EINVAL when an argument is invalid (nothing ran), or FCE_ECUDA when CUDA reported
 * an error; err (errlen bytes, may be NULL) then holds a message.
 *
 * Semantics are the CPU core's (cpp/fusedce.h): same math, same ignore_index, same reductions.
 * Results are deterministic (identical run to run on one GPU), not bitwise equal to the CPU's. */
#ifndef FUSEDCE_CUDA_H
#define FUSEDCE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FCE_OK 0
#define FCE_EINVAL 1
#define FCE_ECUDA 2
#define FCE_ENODRIVER 3 /* no NVIDIA driver at all (libcuda.so.1 / nvcuda.dll cannot be loaded) */

#if defined(_WIN32)
#define FCE_API __declspec(dllexport)
#else
#define FCE_API __attribute__((visibility("default")))
#endif

typedef struct {
  const void* logits;     /* device (rows, vocab), dtype 0 f32 | 1 f16 | 2 bf16 */
  int dtype;
  int64_t rows, vocab;    /* rows ≥ 0, vocab ≥ 1 */
  const int32_t* targets; /* device (rows,) */
  int32_t ignore_index;
  int reduction;          /* 0 mean | 1 sum | 2 none (scales the gradient) */
  float* losses;          /* device (rows,) out: loss_i, 0 at ignored rows; may be NULL (forward) */
  float* lse;             /* device (rows,) out (forward) / in (backward); may be NULL (forward) */
  void* grad;             /* device (rows, vocab) of grad_dtype, or NULL (forward without grad);
                             may be logits itself when grad_dtype == dtype (in place) */
  int grad_dtype;
  double grad_output;     /* upstream gradient (a number) */
  const float* row_grad;  /* device (rows,) per-row upstream gradient (reduction none), or NULL */
  void* stream;           /* cudaStream_t, or NULL for the default stream */
  float* device_loss;     /* forward: device (1,) or NULL. When set, the reduced loss is written there
                             on the stream and the call returns without waiting: nothing is read back
                             (loss_sum and count stay 0). A target out of range (or a non-finite
                             weight) then makes loss, losses, lse and the gradient NaN instead of an
                             FCE_EINVAL. */
  int device;             /* the CUDA device the buffers live on; the call makes it current */
  double* losses64;       /* forward: device (rows,) out, or NULL: loss_i in double (ce_i + zl_i with the
                             options), 0 at ignored rows; the values the batch sum adds (per-sequence
                             sums take them) */
} fce_cuda_args;

/* Loss forward (and, with grad, the gradient in the same launch). Checks targets on the device
 * first (count of rows that count; the first row out of range gives FCE_EINVAL naming it), then
 * runs the kernels and waits for them. loss_sum: Σ loss_i over counted rows (double, fixed order);
 * count: counted rows. */
FCE_API int fce_cuda_forward(const fce_cuda_args* a, double* loss_sum, int64_t* count, char* err, size_t errlen);

/* Gradient from a saved lse (a->lse, device (rows,)). Checks targets as the forward does. */
FCE_API int fce_cuda_backward(const fce_cuda_args* a, int64_t* count, char* err, size_t errlen);

/* The loss options (the CPU's CeOptions, cpp/fusedce.h): x = softcap(logit_scale·z), then
 * ce_i = (1 − ε)·w_t·(lse − x_t) + (ε/V)·Σ_j w_j·(lse − x_j) (focal: w_t·(1 − p_t)^γ·(lse − x_t)),
 * loss_i = ce_i + z_loss·lse². Reductions: mean = Σ ce / Σ w[t] + Σ zl / count. */
typedef struct {
  float label_smoothing;  /* ε in [0, 1] */
  const float* weight;    /* device (vocab,) finite class weights (any sign), or NULL */
  float z_loss;           /* ≥ 0 */
  float logit_scale;      /* finite; 1 for none */
  float softcap;          /* > 0, or 0 for none */
  float focal_gamma;      /* ≥ 0; > 0 only without label_smoothing and z_loss */
} fce_cuda_ce_options;

typedef struct {
  double ce_sum, z_sum;   /* Σ ce_i, Σ zl_i over counted rows (double, fixed order) */
  double weight_total;    /* W = Σ_j weight_j (vocab without weights) */
  double weight_sum;      /* D = Σ_i weight[t_i] over counted rows (count without weights) */
  int64_t count;          /* counted rows */
} fce_cuda_opt_totals;

/* Per-row evaluation statistics, each device (rows,); 0 (argmax −1) at ignored rows, NaN (argmax
 * −1) at NaN rows. All four, or pass NULL for none. */
typedef struct {
  int32_t* argmax;        /* first index of the largest transformed logit */
  float* entropy;         /* −Σ_j p_j log p_j, nats */
  float* target_logprob;  /* x_t − lse */
  float* max_prob;        /* max_j p_j */
} fce_cuda_ce_stats;

/* crossEntropyForward with options (and, with a->grad, the fused gradient; with stats, the
 * statistics from the same pass). As fce_cuda_forward; a->losses gets ce_i + zl_i and a->lse the
 * lse of the transformed logits. The plain options (all defaults) are valid: they run these
 * kernels, not the plain ones. */
FCE_API int fce_cuda_forward_opt(const fce_cuda_args* a, const fce_cuda_ce_options* o, const fce_cuda_ce_stats* stats,
                                 fce_cuda_opt_totals* out, char* err, size_t errlen);
/* The gradient with options from a saved lse (of the transformed logits). */
FCE_API int fce_cuda_backward_opt(const fce_cuda_args* a, const fce_cuda_ce_options* o, int64_t* count, char* err,
                                  size_t errlen);

/* Soft targets, KL, entropy and the generalized JSD (the CPU's SoftArgs, cpp/fusedce.h; the math
 * in soft_cross_entropy.cuh). */
typedef struct {
  const void* logits;       /* device (rows, vocab) z of dtype */
  int dtype;
  int64_t rows, vocab;
  const void* target;       /* device (rows, vocab): logits u of target_dtype, or f32 probabilities
                               (target_dtype −1; soft CE only); NULL for the entropy */
  int target_dtype;
  int kind;                 /* 0 soft CE, 1 KL forward, 2 KL reverse, 3 entropy, 4 JSD */
  float inv_temperature;    /* 1/T > 0 */
  double loss_factor;       /* F (T² with tSquared), soft CE only; else 1 */
  float label_smoothing;    /* probabilities only */
  const float* weight;      /* device (vocab,) finite class weights, probabilities only, or NULL */
  double beta;              /* JSD: β in (0, 1) */
  int reduction;            /* 0 mean | 1 sum | 2 none */
  float* losses;            /* device (rows,) out (forward) */
  float* lse;               /* device (rows,) out (forward) / in (backward): lse of z/T */
  void* grad;               /* device (rows, vocab) of grad_dtype, or NULL (forward without grad); may be logits */
  int grad_dtype;
  double grad_output;
  const float* row_grad;    /* device (rows,) per-row upstream (reduction none; backward), or NULL */
  void* stream;
  int device;
} fce_cuda_soft_args;

/* The forward (and with grad the fused gradient). loss_sum: Σ losses over counted rows (double,
 * fixed order); count: rows that count (probabilities: rows not all 0). A probability that is
 * not a finite number ≥ 0 gives FCE_EINVAL naming it, before any loss kernel runs. */
FCE_API int fce_cuda_soft_forward(const fce_cuda_soft_args* a, double* loss_sum, int64_t* count, char* err, size_t errlen);
/* The gradient of soft CE or KL forward from a saved lse. */
FCE_API int fce_cuda_soft_backward(const fce_cuda_soft_args* a, int64_t* count, char* err, size_t errlen);

/* Binary cross-entropy from logits (torch BCEWithLogitsLoss; the CPU's BceArgs, cpp/fusedce.h). */
typedef struct {
  const void* logits;       /* device (rows, vocab) x of dtype */
  int dtype;
  int64_t rows, vocab;
  const float* targets;     /* device (rows, vocab) y in [0, 1] */
  const float* pos_weight;  /* device (vocab,) pw ≥ 0, or NULL: pos_weight_scalar for every class */
  float pos_weight_scalar;
  const float* weight;      /* device (rows, vocab), or (vocab,) when weight_per_class, or NULL */
  int weight_per_class;
  int reduction;            /* 0 mean (over rows·vocab) | 1 sum | 2 none */
  float* losses;            /* device (rows, vocab) out with reduction none, or NULL */
  void* grad;               /* device (rows, vocab) of grad_dtype, or NULL; may be logits */
  int grad_dtype;
  double grad_output;
  void* stream;
  int device;
} fce_cuda_bce_args;

/* loss_sum: Σ l over every element (each row in double, rows in order). A target outside [0, 1]
 * gives FCE_EINVAL naming it, before the loss kernel writes anything. */
FCE_API int fce_cuda_bce_forward(const fce_cuda_bce_args* a, double* loss_sum, char* err, size_t errlen);

typedef struct {
  char name[256];
  int multiprocessors;
  int major, minor;     /* compute capability (0.0 for the emulation) */
  size_t total_memory, free_memory;
  int l2_bytes;
  int shared_per_block_optin;
  int emulated;         /* 1 in the CPU-emulated build */
} fce_cuda_device_info;

/* Number of CUDA devices (0 when there is none or no driver; err says why). */
FCE_API int fce_cuda_device_count(int* n, char* err, size_t errlen);
FCE_API int fce_cuda_device_info_get(int device, fce_cuda_device_info* out, char* err, size_t errlen);

/* Device memory for the N-API layer's tensors. */
FCE_API int fce_cuda_malloc(void** p, size_t bytes, char* err, size_t errlen);
FCE_API int fce_cuda_free(void* p, char* err, size_t errlen);
/* kind: 0 host→device, 1 device→host, 2 device→device. Synchronous. */
FCE_API int fce_cuda_memcpy(void* dst, const void* src, size_t bytes, int kind, char* err, size_t errlen);
/* Whether p is device memory of the current device (1) or not (0). */
FCE_API int fce_cuda_is_device_pointer(const void* p, int* yes, char* err, size_t errlen);
/* The device that p (device memory) lives on. */
FCE_API int fce_cuda_pointer_device(const void* p, int* device, char* err, size_t errlen);
/* Makes device current for the calling thread (allocations, copies). */
FCE_API int fce_cuda_set_device(int device, char* err, size_t errlen);
/* Streams for callers without a framework of their own: a non-blocking stream on device, and
 * waiting for everything queued on one (NULL: the default stream). */
FCE_API int fce_cuda_stream_create(int device, void** stream, char* err, size_t errlen);
FCE_API int fce_cuda_stream_destroy(void* stream, char* err, size_t errlen);
FCE_API int fce_cuda_stream_synchronize(void* stream, char* err, size_t errlen);

/* A streaming read of bytes (a multiple of 16, p 16-byte aligned) of device memory: the benchmark's
 * read-bandwidth ceiling. Asynchronous on stream. */
FCE_API int fce_cuda_read(const void* p, size_t bytes, void* stream, char* err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
