// Host launchers for the CUDA cross-entropy kernels: the C API of fusedce_cuda.h.
//
// Built by nvcc for GPUs, and by a host C++ compiler over the emulation layer (emu/) for CI;
// the code below is the same in both.
//
// Per call: a check kernel counts the rows that count and finds any target out of range (its
// result is read back, so invalid targets never reach the loss kernels), then the loss kernels,
// then a fixed-order sum of the per-row losses. Workspace comes from the stream-ordered allocator.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#if !FCE_EMULATED && defined(__linux__)
#include <dlfcn.h>
#endif

#include "cross_entropy.cuh"
#include "cross_entropy_options.cuh"
#include "soft_cross_entropy.cuh"
#include "binary_cross_entropy.cuh"
#include "fusedce_cuda.h"

namespace fusedce_cuda {
namespace {

int fail(int code, char* err, size_t errlen, const std::string& msg) {
  if (err && errlen) std::snprintf(err, errlen, "%s", msg.c_str());
  return code;
}
int fail_cuda(cudaError_t e, const char* what, char* err, size_t errlen) {
  return fail(FCE_ECUDA, err, errlen,
              std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + what);
}

#define FCE_CHECK(expr)                                                   \
  do {                                                                    \
    const cudaError_t e_ = (expr);                                        \
    if (e_ != cudaSuccess) return fail_cuda(e_, #expr, err, errlen);      \
  } while (0)

int dtype_size(int dt) { return dt == 0 ? 4 : 2; }

struct Device {
  int sms = 1, smem_optin = 48 * 1024;
};

// Properties of the current device, read once per device.
cudaError_t device_props(Device* d) {
  static std::mutex mu;
  static Device cache[64];
  static bool have[64] = {};
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  std::lock_guard<std::mutex> lock(mu);
  if (dev >= 0 && dev < 64 && have[dev]) {
    *d = cache[dev];
    return cudaSuccess;
  }
  if ((e = cudaDeviceGetAttribute(&d->sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
  if ((e = cudaDeviceGetAttribute(&d->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) != cudaSuccess) return e;
  if (dev >= 0 && dev < 64) cache[dev] = *d, have[dev] = true;
  return cudaSuccess;
}

int64_t pow2_at_least(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

// Threads per block for n 16-byte vectors per block: about 8 vectors per thread, 64 … 1024.
int threads_for(int64_t nvec, int64_t lo = 64, int64_t hi = 1024) {
  return int(std::min(hi, std::max(lo, pow2_at_least((nvec + 7) / 8))));
}

// Workspace of one call (device memory, freed on the stream when the call ends).
struct Workspace {
  void* p = nullptr;
  cudaStream_t s = nullptr;
  ~Workspace() {
    if (p) cudaFreeAsync(p, s);
  }
};

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// The calling thread's pinned read-back slot (64 bytes: every call's results fit), so the copy is
// a DMA the stream orders rather than a staged pageable copy. Freed when the thread ends (it was
// a raw thread_local pointer before: the 24-byte allocation compute-sanitizer's leak check found).
struct PinnedSlot {
  void* p = nullptr;
  ~PinnedSlot() {
    if (p) cudaFreeHost(p);
  }
};
template <class T>
cudaError_t pinned_slot(T** out) {
  static_assert(sizeof(T) <= 64, "the read-back slot holds 64 bytes");
  thread_local PinnedSlot slot;
  if (!slot.p) {
    const cudaError_t e = cudaMallocHost(&slot.p, 64);
    if (e != cudaSuccess) return e;
  }
  *out = static_cast<T*>(slot.p);
  return cudaSuccess;
}

// The plan of one call: which kernels, how many threads, how much shared memory.
struct Plan {
  bool split = false;
  int threads = 256;
  size_t smem = kReduceBytes;
  int64_t chunk = 0, chunks = 0, cache_vectors = 0, prefetch_lines = 0;
};

Plan plan_for(const Device& dev, int64_t rows, int64_t vocab, int dt, int mode) {
  Plan p;
  const int64_t vn = 16 / dtype_size(dt);
  const int64_t nvec = (vocab + vn - 1) / vn;
  // Few rows and long ones: cut rows into chunks so that about two blocks per multiprocessor run.
  if (rows < dev.sms && vocab >= 8192) {
    const int64_t per_row = std::max<int64_t>(2, (2 * dev.sms + rows - 1) / std::max<int64_t>(rows, 1));
    p.chunk = std::max<int64_t>(2048, int64_t(align_up(size_t((vocab + per_row - 1) / per_row), 1024)));
    p.chunks = (vocab + p.chunk - 1) / p.chunk;
    p.split = true;
    p.threads = threads_for(p.chunk / vn, 64, 512);
    return p;
  }
  p.threads = threads_for(nvec);
  if (mode == kFused) {
    // The whole row in shared memory when it fits: one block of ≤ 1024 threads per SM for long
    // rows. (Two blocks per SM, each caching half of what fits, measured slower on H100: the
    // uncached rest no longer stays in L2 until pass 2 re-reads it.)
    const int64_t room = std::max<int64_t>(0, int64_t(dev.smem_optin) - kReduceBytes) / 16;
    p.cache_vectors = std::min(nvec, room);
    // During pass 2 (writes only), the next row's first 128 KiB is brought into L2 (256 KiB
    // measured slower: it crowds out what pass 2 re-reads).
    p.prefetch_lines = (128 * 1024) / 128;
  } else {
    // Forward and backward read each element once: blocks of ≤ 256 threads, so several share an
    // SM and one block's row-end reductions overlap the others' reads (128 and 512 measured no
    // better on H100).
    p.threads = std::min(p.threads, 256);
  }
  p.smem = kReduceBytes + size_t(p.cache_vectors) * 16;
  return p;
}

template <class K>
cudaError_t allow_smem(K* kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

template <int DT, int GDT, int MODE>
int launch_rows(const Params& P, const Plan& pl, cudaStream_t s, char* err, size_t errlen) {
  auto* k = &rows_kernel<DT, GDT, MODE>;
  FCE_CHECK(allow_smem(k, pl.smem));
  // A persistent grid: as many blocks as fit on the GPU at once (each streams its next row).
  Device dev;
  FCE_CHECK(device_props(&dev));
  int per_sm = 1;
  FCE_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, pl.threads, pl.smem));
  const int64_t resident = int64_t(std::max(1, per_sm)) * dev.sms;
  const unsigned grid = unsigned(std::min<int64_t>(P.rows, std::min<int64_t>(resident, 2147483647)));
  FCE_LAUNCH(k, dim3(grid), dim3(unsigned(pl.threads)), pl.smem, s, P);
  FCE_CHECK(cudaGetLastError());
  return FCE_OK;
}

template <int DT, int GDT, int MODE>
int launch_split(const Params& P, const Plan& pl, cudaStream_t s, char* err, size_t errlen) {
  const dim3 grid(unsigned(pl.chunks), unsigned(P.rows));
  auto* partial = &split_partial_kernel<DT>;
  auto* finish = &split_finish_kernel<DT, MODE>;
  auto* grad = &split_grad_kernel<DT, GDT>;
  FCE_LAUNCH(partial, grid, dim3(unsigned(pl.threads)), size_t(kReduceBytes), s, P);
  FCE_CHECK(cudaGetLastError());
  const unsigned rg = unsigned((P.rows + 3) / 4);  // a warp per row, four per block
  FCE_LAUNCH(finish, dim3(rg), dim3(128), size_t(0), s, P);
  FCE_CHECK(cudaGetLastError());
  if (MODE == kForward) return FCE_OK;
  FCE_LAUNCH(grad, grid, dim3(unsigned(pl.threads)), size_t(0), s, P);
  FCE_CHECK(cudaGetLastError());
  return FCE_OK;
}

template <int MODE, int DT, int GDT>
int launch(const Params& P, const Plan& pl, cudaStream_t s, char* err, size_t errlen) {
  return pl.split ? launch_split<DT, GDT, MODE>(P, pl, s, err, errlen) : launch_rows<DT, GDT, MODE>(P, pl, s, err, errlen);
}

template <int MODE, int DT>
int launch_g(int gdt, const Params& P, const Plan& pl, cudaStream_t s, char* err, size_t errlen) {
  if constexpr (MODE == kForward) {
    (void)gdt;
    return launch<MODE, DT, 0>(P, pl, s, err, errlen);
  } else {
    switch (gdt) {
      case 0: return launch<MODE, DT, 0>(P, pl, s, err, errlen);
      case 1: return launch<MODE, DT, 1>(P, pl, s, err, errlen);
      default: return launch<MODE, DT, 2>(P, pl, s, err, errlen);
    }
  }
}

template <int MODE>
int launch_any(int dt, int gdt, const Params& P, const Plan& pl, cudaStream_t s, char* err, size_t errlen) {
  switch (dt) {
    case 0: return launch_g<MODE, 0>(gdt, P, pl, s, err, errlen);
    case 1: return launch_g<MODE, 1>(gdt, P, pl, s, err, errlen);
    default: return launch_g<MODE, 2>(gdt, P, pl, s, err, errlen);
  }
}

// ---- cross-entropy with options (cross_entropy_options.cuh) ----

template <int DT, int GDT, int MODE, bool Smooth, bool Cap, bool Stats>
int launch_opt(const OptParams& Q, cudaStream_t s, char* err, size_t errlen) {
  auto* k = &opt_rows_kernel<DT, GDT, MODE, Smooth, Cap, Stats>;
  const int64_t nvec = (Q.P.vocab + 16 / dtype_size(DT) - 1) / (16 / dtype_size(DT));
  const int threads = std::min(threads_for(nvec), 256);
  const size_t smem = size_t(kOptReduceBytes);
  Device dev;
  FCE_CHECK(device_props(&dev));
  int per_sm = 1;
  FCE_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, threads, smem));
  const int64_t resident = int64_t(std::max(1, per_sm)) * dev.sms;
  const unsigned grid = unsigned(std::min<int64_t>(Q.P.rows, std::min<int64_t>(resident, 2147483647)));
  FCE_LAUNCH(k, dim3(grid), dim3(unsigned(threads)), smem, s, Q);
  FCE_CHECK(cudaGetLastError());
  return FCE_OK;
}

template <int DT, int GDT, int MODE, bool Stats>
int launch_opt_s(bool smooth, bool cap, const OptParams& Q, cudaStream_t s, char* err, size_t errlen) {
  if (smooth)
    return cap ? launch_opt<DT, GDT, MODE, true, true, Stats>(Q, s, err, errlen) : launch_opt<DT, GDT, MODE, true, false, Stats>(Q, s, err, errlen);
  return cap ? launch_opt<DT, GDT, MODE, false, true, Stats>(Q, s, err, errlen) : launch_opt<DT, GDT, MODE, false, false, Stats>(Q, s, err, errlen);
}

// The variants: Smooth × Cap, and Stats for the forward passes (the backward has no statistics).
template <int DT, int GDT, int MODE>
int launch_opt_v(bool smooth, bool cap, const OptParams& Q, cudaStream_t s, char* err, size_t errlen) {
  if constexpr (MODE != kBackward)
    if (Q.argmax) return launch_opt_s<DT, GDT, MODE, true>(smooth, cap, Q, s, err, errlen);
  return launch_opt_s<DT, GDT, MODE, false>(smooth, cap, Q, s, err, errlen);
}

template <int MODE, int DT>
int launch_opt_g(int gdt, bool smooth, bool cap, const OptParams& Q, cudaStream_t s, char* err, size_t errlen) {
  if constexpr (MODE == kForward) {
    (void)gdt;
    return launch_opt_v<DT, 0, MODE>(smooth, cap, Q, s, err, errlen);
  } else {
    switch (gdt) {
      case 0: return launch_opt_v<DT, 0, MODE>(smooth, cap, Q, s, err, errlen);
      case 1: return launch_opt_v<DT, 1, MODE>(smooth, cap, Q, s, err, errlen);
      default: return launch_opt_v<DT, 2, MODE>(smooth, cap, Q, s, err, errlen);
    }
  }
}

template <int MODE>
int launch_opt_any(int dt, int gdt, bool smooth, bool cap, const OptParams& Q, cudaStream_t s, char* err, size_t errlen) {
  switch (dt) {
    case 0: return launch_opt_g<MODE, 0>(gdt, smooth, cap, Q, s, err, errlen);
    case 1: return launch_opt_g<MODE, 1>(gdt, smooth, cap, Q, s, err, errlen);
    default: return launch_opt_g<MODE, 2>(gdt, smooth, cap, Q, s, err, errlen);
  }
}

int check_options(const fce_cuda_ce_options* o, char* err, size_t errlen) {
  if (!o) return FCE_OK;
  const auto finite = [](float v) { return v == v && v - v == 0.0f; };
  if (!(o->label_smoothing >= 0.0f && o->label_smoothing <= 1.0f))
    return fail(FCE_EINVAL, err, errlen, "label_smoothing must be in [0, 1]");
  if (!(finite(o->z_loss) && o->z_loss >= 0.0f)) return fail(FCE_EINVAL, err, errlen, "z_loss must be a finite number ≥ 0");
  if (!finite(o->logit_scale)) return fail(FCE_EINVAL, err, errlen, "logit_scale must be finite");
  if (!(finite(o->softcap) && o->softcap >= 0.0f)) return fail(FCE_EINVAL, err, errlen, "softcap must be a finite number > 0, or 0 for none");
  if (!(finite(o->focal_gamma) && o->focal_gamma >= 0.0f)) return fail(FCE_EINVAL, err, errlen, "focal_gamma must be a finite number ≥ 0");
  if (o->focal_gamma > 0.0f && (o->label_smoothing != 0.0f || o->z_loss != 0.0f))
    return fail(FCE_EINVAL, err, errlen, "focal_gamma cannot be combined with label_smoothing or z_loss");
  return FCE_OK;
}

int check_args(const fce_cuda_args* a, bool backward, char* err, size_t errlen) {
  if (!a) return fail(FCE_EINVAL, err, errlen, "args is NULL");
  if (a->dtype < 0 || a->dtype > 2) return fail(FCE_EINVAL, err, errlen, "dtype must be 0 (f32), 1 (f16) or 2 (bf16)");
  if (a->rows < 0) return fail(FCE_EINVAL, err, errlen, "rows must be ≥ 0");
  if (a->vocab < 1 || a->vocab > 2147483647) return fail(FCE_EINVAL, err, errlen, "vocab must be in [1, 2^31 − 1]");
  if (a->reduction < 0 || a->reduction > 2) return fail(FCE_EINVAL, err, errlen, "reduction must be 0 (mean), 1 (sum) or 2 (none)");
  if (a->rows > 0 && (!a->logits || !a->targets || !a->lse))
    return fail(FCE_EINVAL, err, errlen, "logits, targets and lse must be device pointers");
  if (!backward && a->rows > 0 && !a->losses) return fail(FCE_EINVAL, err, errlen, "losses must be a device pointer");
  if (backward && !a->grad && a->rows > 0) return fail(FCE_EINVAL, err, errlen, "grad must be a device pointer");
  if (a->grad && (a->grad_dtype < 0 || a->grad_dtype > 2))
    return fail(FCE_EINVAL, err, errlen, "grad_dtype must be 0 (f32), 1 (f16) or 2 (bf16)");
  if (a->grad && a->grad == a->logits && a->grad_dtype != a->dtype)
    return fail(FCE_EINVAL, err, errlen, "an in-place gradient (grad == logits) needs grad_dtype == dtype");
  if (a->row_grad && a->reduction != 2) return fail(FCE_EINVAL, err, errlen, "a per-row upstream gradient needs reduction none");
  return FCE_OK;
}

// The shared part of forward and backward: check targets, plan, launch. With o, the options
// kernels (cross_entropy_options.cuh) instead of the plain ones. tot: the forward's sums.
int run(const fce_cuda_args* a, const fce_cuda_ce_options* o, const fce_cuda_ce_stats* stats, int mode,
        fce_cuda_opt_totals* tot, char* err, size_t errlen) {
  *tot = fce_cuda_opt_totals{0.0, 0.0, 0.0, 0.0, 0};
  int rc = check_args(a, mode == kBackward, err, errlen);
  if (rc || (rc = check_options(o, err, errlen))) return rc;
  if (stats && a->rows > 0 && (!stats->argmax || !stats->entropy || !stats->target_logprob || !stats->max_prob))
    return fail(FCE_EINVAL, err, errlen, "stats: argmax, entropy, target_logprob and max_prob must all be device pointers");
  if (a->device_loss && mode == kBackward) return fail(FCE_EINVAL, err, errlen, "device_loss is for the forward");
  FCE_CHECK(cudaSetDevice(a->device));
  auto s = static_cast<cudaStream_t>(a->stream);
  const int64_t rows = a->rows, V = a->vocab;
  tot->weight_total = double(V);
  // (with weights an empty batch still checks them, as the CPU does; a device loss is still written)
  if (rows == 0 && !(o && o->weight) && !a->device_loss) return FCE_OK;

  Device dev;
  FCE_CHECK(device_props(&dev));
  const Plan pl = plan_for(dev, rows, V, a->dtype, mode);

  // Workspace: [check: 2 × i64][total: f64][z total: f64][W, D, bad weight: 3 × f64][row_loss: rows × f64]
  //            [row_z: rows × f64][part: rows·chunks × float2][cb: rows·chunks × f32][gt: rows × f32]
  const bool split = pl.split && !o;
  const size_t n_parts = split ? size_t(rows) * size_t(pl.chunks) : 0;
  size_t off = 0;
  const size_t o_check = off;
  off += 16;
  const size_t o_total = off;
  off += 8;
  const size_t o_ztotal = off;
  off += 8;
  const size_t o_wsums = off;
  off += 24;
  const size_t o_rowloss = off = align_up(off, 16);
  off += size_t(rows) * 8;
  const size_t o_rowz = off = align_up(off, 16);
  off += o ? size_t(rows) * 8 : 0;
  const size_t o_part = off = align_up(off, 16);
  off += n_parts * 8;
  const size_t o_cb = off = align_up(off, 16);
  off += n_parts * 4;
  const size_t o_gt = off = align_up(off, 16);
  off += split ? size_t(rows) * 4 : 0;
  Workspace ws;
  ws.s = s;
  FCE_CHECK(cudaMallocAsync(&ws.p, off, s));
  auto* base = static_cast<unsigned char*>(ws.p);
  auto* check = reinterpret_cast<long long*>(base + o_check);
  double* total = reinterpret_cast<double*>(base + o_total);
  double* ztotal = reinterpret_cast<double*>(base + o_ztotal);
  double* wsums = reinterpret_cast<double*>(base + o_wsums);

  // 1. targets: count, and the first bad row. The loss kernels read this on the device and do
  //    nothing when a target is bad, so the host waits only once, at the end.
  FCE_LAUNCH(check_targets_kernel, dim3(1), dim3(1024), size_t(1024 * 16), s, a->targets, rows, V, a->ignore_index, check);
  FCE_CHECK(cudaGetLastError());
  //    with weights, W and D (the weighted mean's denominator) before any loss kernel needs them
  if (o && o->weight) {
    FCE_LAUNCH(weight_sums_kernel, dim3(1), dim3(1024), size_t(1024 * 24), s, o->weight, V, a->targets, rows,
               a->ignore_index, wsums);
    FCE_CHECK(cudaGetLastError());
  }

  // 2. the loss kernels
  Params P{};
  P.z = a->logits;
  P.targets = a->targets;
  P.rows = rows;
  P.vocab = V;
  P.ignore_index = a->ignore_index;
  P.losses = a->losses;
  P.lse = a->lse;
  P.row_loss = reinterpret_cast<double*>(base + o_rowloss);
  P.g = a->grad;
  P.check = check;
  P.grad_output = a->grad_output;
  P.mean = a->reduction == 0;
  P.row_scale = a->row_grad;
  P.cache_vectors = pl.cache_vectors;
  P.prefetch_lines = pl.prefetch_lines;
  P.chunk = pl.chunk;
  P.chunks = pl.chunks;
  P.part = reinterpret_cast<float2*>(base + o_part);
  P.cb = reinterpret_cast<float*>(base + o_cb);
  P.gt = reinterpret_cast<float*>(base + o_gt);
  int r2 = FCE_OK;
  if (rows == 0) {
    // nothing to launch but the checks and sums
  } else if (o) {
    OptParams Q{};
    Q.P = P;
    Q.o = CeOpt{o->label_smoothing, o->weight, o->z_loss, o->logit_scale, o->softcap,
                o->softcap > 0.0f ? 1.0f / o->softcap : 0.0f, o->focal_gamma};
    Q.wsums = wsums;
    Q.row_z = reinterpret_cast<double*>(base + o_rowz);
    if (stats && mode != kBackward) {
      Q.argmax = stats->argmax;
      Q.entropy = stats->entropy;
      Q.target_logprob = stats->target_logprob;
      Q.max_prob = stats->max_prob;
    }
    const bool smooth = o->label_smoothing > 0.0f, cap = o->softcap > 0.0f;
    if (mode == kBackward)
      r2 = launch_opt_any<kBackward>(a->dtype, a->grad_dtype, smooth, cap, Q, s, err, errlen);
    else if (a->grad)
      r2 = launch_opt_any<kFused>(a->dtype, a->grad_dtype, smooth, cap, Q, s, err, errlen);
    else
      r2 = launch_opt_any<kForward>(a->dtype, 0, smooth, cap, Q, s, err, errlen);
  } else if (mode == kBackward) {
    r2 = launch_any<kBackward>(a->dtype, a->grad_dtype, P, pl, s, err, errlen);
  } else if (a->grad) {
    r2 = launch_any<kFused>(a->dtype, a->grad_dtype, P, pl, s, err, errlen);
  } else {
    r2 = launch_any<kForward>(a->dtype, 0, P, pl, s, err, errlen);
  }
  if (r2) return r2;

  // 3. the batch sums, in a fixed order; then one read-back of (count, bad row, sums)
  if (mode != kBackward) {
    FCE_LAUNCH(sum_kernel, dim3(1), dim3(1024), size_t(1024 * 8), s, P.row_loss, rows, total);
    FCE_CHECK(cudaGetLastError());
    if (o) {
      FCE_LAUNCH(sum_kernel, dim3(1), dim3(1024), size_t(1024 * 8), s, reinterpret_cast<const double*>(base + o_rowz),
                 rows, ztotal);
      FCE_CHECK(cudaGetLastError());
    }
    if (a->losses64 && rows > 0) {
      const unsigned blocks = unsigned(std::max<int64_t>(1, std::min<int64_t>(int64_t(dev.sms) * 4, (rows + 255) / 256)));
      FCE_LAUNCH(row_total_kernel, dim3(blocks), dim3(256), size_t(0), s, P.row_loss,
                 o ? reinterpret_cast<const double*>(base + o_rowz) : nullptr, rows, a->losses64);
      FCE_CHECK(cudaGetLastError());
    }
  }
  // A call that does not wait: the reduced loss on the device, NaN outputs on bad input, no read-back.
  if (a->device_loss) {
    const double* ws = o && o->weight ? wsums : nullptr;
    if (rows > 0) {
      const int64_t n = a->grad ? rows * V : 0;
      const unsigned blocks = unsigned(std::max<int64_t>(1, std::min<int64_t>(int64_t(dev.sms) * 4, (std::max(rows, n) + 255) / 256)));
      FCE_LAUNCH(poison_kernel, dim3(blocks), dim3(256), size_t(0), s, check, ws, rows, V, a->losses, a->lse, a->grad,
                 a->grad_dtype, n);
      FCE_CHECK(cudaGetLastError());
    }
    FCE_LAUNCH(finish_loss_kernel, dim3(1), dim3(32), size_t(0), s, check, total, o ? ztotal : nullptr, ws, rows, V,
               a->reduction == 0 ? 1 : 0, a->device_loss);
    FCE_CHECK(cudaGetLastError());
    return FCE_OK;
  }
  struct Result {
    long long count, bad;
    double total, ztotal, W, D, bad_weight;
  };
  static_assert(sizeof(Result) == 56, "check, the totals and the weight sums are contiguous in the workspace");
  Result* pinned = nullptr;
  FCE_CHECK(pinned_slot(&pinned));
  const size_t back = o && o->weight ? 56 : o ? 32 : mode != kBackward ? 24 : 16;
  FCE_CHECK(cudaMemcpyAsync(pinned, check, back, cudaMemcpyDeviceToHost, s));
  FCE_CHECK(cudaStreamSynchronize(s));
  const Result res = *pinned;
  if (res.bad < rows) {
    int32_t tv = 0;
    FCE_CHECK(cudaMemcpy(&tv, a->targets + res.bad, 4, cudaMemcpyDeviceToHost));
    return fail(FCE_EINVAL, err, errlen,
                "targets[" + std::to_string(res.bad) + "] = " + std::to_string(tv) + " is outside [0, " +
                    std::to_string(V) + ") and is not ignoreIndex (" + std::to_string(a->ignore_index) + ")");
  }
  if (o && o->weight && res.bad_weight < double(V)) {
    const int64_t j = int64_t(res.bad_weight);
    float wv = 0.0f;
    FCE_CHECK(cudaMemcpy(&wv, o->weight + j, 4, cudaMemcpyDeviceToHost));
    return fail(FCE_EINVAL, err, errlen, "weight[" + std::to_string(j) + "] = " + std::to_string(wv) + " must be a finite number");
  }
  tot->count = res.count;
  tot->weight_sum = double(res.count);
  if (mode != kBackward) {
    tot->ce_sum = res.total;
    if (o) tot->z_sum = res.ztotal;
  }
  if (o && o->weight) {
    tot->weight_total = res.W;
    tot->weight_sum = res.D;
  }
  return FCE_OK;
}

// ---- soft targets, KL, entropy, JSD (soft_cross_entropy.cuh) ----

template <int MODE, int KIND>
int launch_soft_k(const SoftParams& S, cudaStream_t s, char* err, size_t errlen) {
  auto* k = &soft_rows_kernel<MODE, KIND>;
  Device dev;
  FCE_CHECK(device_props(&dev));
  const int64_t V = S.vocab;
  const int threads = int(std::min<int64_t>(256, std::max<int64_t>(64, pow2_at_least((V + 7) / 8))));
  int per_sm = 1;
  FCE_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, threads, size_t(kSoftSmem)));
  const int64_t resident = int64_t(std::max(1, per_sm)) * dev.sms;
  const unsigned grid = unsigned(std::min<int64_t>(S.rows, std::min<int64_t>(resident, 2147483647)));
  FCE_LAUNCH(k, dim3(grid), dim3(unsigned(threads)), size_t(kSoftSmem), s, S);
  FCE_CHECK(cudaGetLastError());
  return FCE_OK;
}

template <int MODE>
int launch_soft(int kind, const SoftParams& S, cudaStream_t s, char* err, size_t errlen) {
  switch (kind) {
    case kSoftCE: return launch_soft_k<MODE, kSoftCE>(S, s, err, errlen);
    case kKlForward: return launch_soft_k<MODE, kKlForward>(S, s, err, errlen);
    case kKlReverse: return launch_soft_k<MODE, kKlReverse>(S, s, err, errlen);
    case kEntropy: return launch_soft_k<MODE, kEntropy>(S, s, err, errlen);
    default: return launch_soft_k<MODE, kJsd>(S, s, err, errlen);
  }
}

int check_soft(const fce_cuda_soft_args* a, bool backward, char* err, size_t errlen) {
  if (!a) return fail(FCE_EINVAL, err, errlen, "args is NULL");
  if (a->dtype < 0 || a->dtype > 2) return fail(FCE_EINVAL, err, errlen, "dtype must be 0 (f32), 1 (f16) or 2 (bf16)");
  if (a->rows < 0) return fail(FCE_EINVAL, err, errlen, "rows must be ≥ 0");
  if (a->vocab < 1 || a->vocab > 2147483647) return fail(FCE_EINVAL, err, errlen, "vocab must be in [1, 2^31 − 1]");
  if (a->kind < 0 || a->kind > 4) return fail(FCE_EINVAL, err, errlen, "kind must be 0 … 4");
  if (a->reduction < 0 || a->reduction > 2) return fail(FCE_EINVAL, err, errlen, "reduction must be 0 (mean), 1 (sum) or 2 (none)");
  if (!(a->inv_temperature > 0.0f) || a->inv_temperature - a->inv_temperature != 0.0f)
    return fail(FCE_EINVAL, err, errlen, "inv_temperature must be a finite number > 0");
  if (a->target_dtype < -1 || a->target_dtype > 2) return fail(FCE_EINVAL, err, errlen, "target_dtype must be −1 (probabilities), 0, 1 or 2");
  if (a->target_dtype < 0 && a->kind != kSoftCE) return fail(FCE_EINVAL, err, errlen, "probability targets are for the soft cross-entropy only");
  if ((a->label_smoothing != 0.0f || a->weight) && a->target_dtype >= 0)
    return fail(FCE_EINVAL, err, errlen, "label_smoothing and weight are for probability targets");
  if (!(a->label_smoothing >= 0.0f && a->label_smoothing <= 1.0f)) return fail(FCE_EINVAL, err, errlen, "label_smoothing must be in [0, 1]");
  if (a->kind == kJsd && !(a->beta > 0.0 && a->beta < 1.0)) return fail(FCE_EINVAL, err, errlen, "beta must be in (0, 1)");
  if (backward && a->kind != kSoftCE && a->kind != kKlForward)
    return fail(FCE_EINVAL, err, errlen, "the separate backward is for the soft cross-entropy and KL forward");
  if (a->rows > 0 && (!a->logits || !a->lse || (a->kind != kEntropy && !a->target)))
    return fail(FCE_EINVAL, err, errlen, "logits, target and lse must be device pointers");
  if (a->rows > 0 && !backward && !a->losses) return fail(FCE_EINVAL, err, errlen, "losses must be a device pointer");
  if (a->rows > 0 && backward && !a->grad) return fail(FCE_EINVAL, err, errlen, "grad must be a device pointer");
  if (a->grad && (a->grad_dtype < 0 || a->grad_dtype > 2)) return fail(FCE_EINVAL, err, errlen, "grad_dtype must be 0, 1 or 2");
  if (a->grad && a->grad == a->logits && a->grad_dtype != a->dtype)
    return fail(FCE_EINVAL, err, errlen, "an in-place gradient (grad == logits) needs grad_dtype == dtype");
  if (a->row_grad && a->reduction != 2) return fail(FCE_EINVAL, err, errlen, "a per-row upstream gradient needs reduction none");
  return FCE_OK;
}

int run_soft(const fce_cuda_soft_args* a, bool backward, double* loss_sum, int64_t* count, char* err, size_t errlen) {
  *loss_sum = 0.0;
  *count = 0;
  int rc = check_soft(a, backward, err, errlen);
  if (rc) return rc;
  FCE_CHECK(cudaSetDevice(a->device));
  auto s = static_cast<cudaStream_t>(a->stream);
  const int64_t rows = a->rows, V = a->vocab;
  if (rows == 0) return FCE_OK;
  const bool probs = a->target_dtype < 0;
  // Workspace: [check: 3 × i64][total: f64][row_loss: rows × f64][live: rows × i32][bad: rows × i64]
  size_t off = 0;
  const size_t o_check = off;
  off += 24;
  const size_t o_total = off;
  off += 8;
  const size_t o_rowloss = off = align_up(off, 16);
  off += size_t(rows) * 8;
  const size_t o_live = off = align_up(off, 16);
  off += probs ? size_t(rows) * 4 : 0;
  const size_t o_bad = off = align_up(off, 16);
  off += probs ? size_t(rows) * 8 : 0;
  Workspace ws;
  ws.s = s;
  FCE_CHECK(cudaMallocAsync(&ws.p, off, s));
  auto* base = static_cast<unsigned char*>(ws.p);
  auto* check = reinterpret_cast<long long*>(base + o_check);
  double* total = reinterpret_cast<double*>(base + o_total);
  int* live = probs ? reinterpret_cast<int*>(base + o_live) : nullptr;
  long long* bad = probs ? reinterpret_cast<long long*>(base + o_bad) : nullptr;
  Device dev;
  FCE_CHECK(device_props(&dev));
  // 1. probability rows: which count, and the first bad value; the loss kernels read the result
  if (probs) {
    const unsigned grid = unsigned(std::min<int64_t>(rows, int64_t(dev.sms) * 4));
    FCE_LAUNCH(probs_rows_kernel, dim3(grid), dim3(1024), size_t(1024 * 12), s, static_cast<const float*>(a->target), rows, V, live, bad);
    FCE_CHECK(cudaGetLastError());
  }
  FCE_LAUNCH(probs_check_kernel, dim3(1), dim3(1024), size_t(1024 * 16), s, live, bad, rows, V, check);
  FCE_CHECK(cudaGetLastError());
  // 2. the loss kernels
  SoftParams S{};
  S.z = a->logits;
  S.u = a->target;
  S.dt = a->dtype;
  S.udt = probs ? 0 : a->target_dtype;
  S.gdt = a->grad_dtype;
  S.probs = probs ? 1 : 0;
  S.rows = rows;
  S.vocab = V;
  S.inv_t = a->inv_temperature;
  S.factor = a->kind == kSoftCE ? a->loss_factor : 1.0;
  S.eps = a->label_smoothing;
  S.w = a->weight;
  S.beta = a->beta;
  S.losses = a->losses;
  S.lse = a->lse;
  S.row_loss = reinterpret_cast<double*>(base + o_rowloss);
  S.g = a->grad;
  S.grad_output = a->grad_output;
  S.mean = a->reduction == 0;
  S.row_scale = a->row_grad;
  S.live = live;
  S.check = check;
  if (backward) rc = launch_soft<kBackward>(a->kind, S, s, err, errlen);
  else if (a->grad) rc = launch_soft<kFused>(a->kind, S, s, err, errlen);
  else rc = launch_soft<kForward>(a->kind, S, s, err, errlen);
  if (rc) return rc;
  if (!backward) {
    FCE_LAUNCH(sum_kernel, dim3(1), dim3(1024), size_t(1024 * 8), s, S.row_loss, rows, total);
    FCE_CHECK(cudaGetLastError());
  }
  struct Result {
    long long count, bad, col;
    double total;
  };
  static_assert(sizeof(Result) == 32, "check and total are contiguous in the workspace");
  Result* pinned = nullptr;
  FCE_CHECK(pinned_slot(&pinned));
  FCE_CHECK(cudaMemcpyAsync(pinned, check, 32, cudaMemcpyDeviceToHost, s));
  FCE_CHECK(cudaStreamSynchronize(s));
  const Result res = *pinned;
  if (res.bad < rows) {
    float v = 0.0f;
    FCE_CHECK(cudaMemcpy(&v, static_cast<const float*>(a->target) + res.bad * V + res.col, 4, cudaMemcpyDeviceToHost));
    return fail(FCE_EINVAL, err, errlen,
                "target[" + std::to_string(res.bad) + ", " + std::to_string(res.col) + "] = " + std::to_string(v) +
                    " must be a finite probability ≥ 0 (targetKind 'probs')");
  }
  *count = res.count;
  if (!backward) *loss_sum = res.total;
  return FCE_OK;
}

// ---- binary cross-entropy (binary_cross_entropy.cuh) ----

int run_bce(const fce_cuda_bce_args* a, double* loss_sum, char* err, size_t errlen) {
  *loss_sum = 0.0;
  if (!a) return fail(FCE_EINVAL, err, errlen, "args is NULL");
  if (a->dtype < 0 || a->dtype > 2) return fail(FCE_EINVAL, err, errlen, "dtype must be 0 (f32), 1 (f16) or 2 (bf16)");
  if (a->rows < 0 || a->vocab < 1 || a->vocab > 2147483647) return fail(FCE_EINVAL, err, errlen, "rows ≥ 0 and vocab in [1, 2^31 − 1]");
  if (a->reduction < 0 || a->reduction > 2) return fail(FCE_EINVAL, err, errlen, "reduction must be 0 (mean), 1 (sum) or 2 (none)");
  if (a->rows > 0 && (!a->logits || !a->targets)) return fail(FCE_EINVAL, err, errlen, "logits and targets must be device pointers");
  if (a->grad && (a->grad_dtype < 0 || a->grad_dtype > 2)) return fail(FCE_EINVAL, err, errlen, "grad_dtype must be 0, 1 or 2");
  if (a->grad && a->grad == a->logits && a->grad_dtype != a->dtype)
    return fail(FCE_EINVAL, err, errlen, "an in-place gradient (grad == logits) needs grad_dtype == dtype");
  if (!(a->pos_weight_scalar >= 0.0f)) return fail(FCE_EINVAL, err, errlen, "pos_weight_scalar must be ≥ 0");
  FCE_CHECK(cudaSetDevice(a->device));
  auto s = static_cast<cudaStream_t>(a->stream);
  const int64_t rows = a->rows, V = a->vocab, n = rows * V;
  if (rows == 0) return FCE_OK;
  // Workspace: [bad: i64][total: f64][row_loss: rows × f64]
  const size_t o_rowloss = 16;
  Workspace ws;
  ws.s = s;
  FCE_CHECK(cudaMallocAsync(&ws.p, o_rowloss + size_t(rows) * 8, s));
  auto* base = static_cast<unsigned char*>(ws.p);
  auto* bad = reinterpret_cast<long long*>(base);
  double* total = reinterpret_cast<double*>(base + 8);
  Device dev;
  FCE_CHECK(device_props(&dev));
  FCE_LAUNCH(bce_check_init_kernel, dim3(1), dim3(32), size_t(0), s, n, bad);
  FCE_CHECK(cudaGetLastError());
  const unsigned cgrid = unsigned(std::max<int64_t>(1, std::min<int64_t>(int64_t(dev.sms) * 4, (n + 1023) / 1024)));
  FCE_LAUNCH(bce_check_kernel, dim3(cgrid), dim3(1024), size_t(1024 * 8), s, a->targets, n, bad);
  FCE_CHECK(cudaGetLastError());
  BceParams B{};
  B.z = a->logits;
  B.dt = a->dtype;
  B.gdt = a->grad_dtype;
  B.rows = rows;
  B.vocab = V;
  B.y = a->targets;
  B.pw = a->pos_weight;
  B.pw_scalar = a->pos_weight_scalar;
  B.w = a->weight;
  B.w_per_class = a->weight_per_class;
  B.losses = a->losses;
  B.g = a->grad;
  B.scale = float(a->reduction == 0 ? a->grad_output / double(n) : a->grad_output);
  B.row_loss = reinterpret_cast<double*>(base + o_rowloss);
  B.bad = bad;
  const int threads = int(std::min<int64_t>(256, std::max<int64_t>(64, pow2_at_least((V + 7) / 8))));
  const unsigned grid = unsigned(std::min<int64_t>(rows, int64_t(dev.sms) * 8));
  FCE_LAUNCH(bce_rows_kernel, dim3(grid), dim3(unsigned(threads)), size_t(kSoftSmem), s, B);
  FCE_CHECK(cudaGetLastError());
  FCE_LAUNCH(sum_kernel, dim3(1), dim3(1024), size_t(1024 * 8), s, B.row_loss, rows, total);
  FCE_CHECK(cudaGetLastError());
  struct Result {
    long long bad;
    double total;
  };
  Result* pinned = nullptr;
  FCE_CHECK(pinned_slot(&pinned));
  FCE_CHECK(cudaMemcpyAsync(pinned, base, 16, cudaMemcpyDeviceToHost, s));
  FCE_CHECK(cudaStreamSynchronize(s));
  const Result res = *pinned;
  if (res.bad < n) {
    float v = 0.0f;
    FCE_CHECK(cudaMemcpy(&v, a->targets + res.bad, 4, cudaMemcpyDeviceToHost));
    return fail(FCE_EINVAL, err, errlen, "targets[" + std::to_string(res.bad) + "] = " + std::to_string(v) + " must be in [0, 1]");
  }
  *loss_sum = res.total;
  return FCE_OK;
}

// What CUDA knows of a pointer (an invalid one is an error, and not left sticky).
int pointer_attributes(const void* p, cudaPointerAttributes* at, char* err, size_t errlen) {
  const cudaError_t e = cudaPointerGetAttributes(at, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return fail_cuda(e, "cudaPointerGetAttributes", err, errlen);
  }
  return FCE_OK;
}

}  // namespace
}  // namespace fusedce_cuda

using namespace fusedce_cuda;

extern "C" {

int fce_cuda_forward(const fce_cuda_args* a, double* loss_sum, int64_t* count, char* err, size_t errlen) {
  fce_cuda_opt_totals t;
  const int rc = run(a, nullptr, nullptr, a && a->grad ? kFused : kForward, &t, err, errlen);
  if (loss_sum) *loss_sum = t.ce_sum;
  if (count) *count = t.count;
  return rc;
}

int fce_cuda_backward(const fce_cuda_args* a, int64_t* count, char* err, size_t errlen) {
  fce_cuda_opt_totals t;
  const int rc = run(a, nullptr, nullptr, kBackward, &t, err, errlen);
  if (count) *count = t.count;
  return rc;
}

int fce_cuda_forward_opt(const fce_cuda_args* a, const fce_cuda_ce_options* o, const fce_cuda_ce_stats* stats,
                         fce_cuda_opt_totals* out, char* err, size_t errlen) {
  fce_cuda_opt_totals t;
  if (!o) return fail(FCE_EINVAL, err, errlen, "options is NULL");
  const int rc = run(a, o, stats, a && a->grad ? kFused : kForward, &t, err, errlen);
  if (out) *out = t;
  return rc;
}

int fce_cuda_backward_opt(const fce_cuda_args* a, const fce_cuda_ce_options* o, int64_t* count, char* err, size_t errlen) {
  fce_cuda_opt_totals t;
  if (!o) return fail(FCE_EINVAL, err, errlen, "options is NULL");
  const int rc = run(a, o, nullptr, kBackward, &t, err, errlen);
  if (count) *count = t.count;
  return rc;
}

int fce_cuda_soft_forward(const fce_cuda_soft_args* a, double* loss_sum, int64_t* count, char* err, size_t errlen) {
  double ls = 0.0;
  int64_t c = 0;
  const int rc = run_soft(a, false, &ls, &c, err, errlen);
  if (loss_sum) *loss_sum = ls;
  if (count) *count = c;
  return rc;
}

int fce_cuda_soft_backward(const fce_cuda_soft_args* a, int64_t* count, char* err, size_t errlen) {
  double ls = 0.0;
  int64_t c = 0;
  const int rc = run_soft(a, true, &ls, &c, err, errlen);
  if (count) *count = c;
  return rc;
}

int fce_cuda_bce_forward(const fce_cuda_bce_args* a, double* loss_sum, char* err, size_t errlen) {
  double ls = 0.0;
  const int rc = run_bce(a, &ls, err, errlen);
  if (loss_sum) *loss_sum = ls;
  return rc;
}

int fce_cuda_device_count(int* n, char* err, size_t errlen) {
  *n = 0;
  const cudaError_t e = cudaGetDeviceCount(n);
  if (e != cudaSuccess) {
    *n = 0;
    cudaGetLastError();  // not sticky; clear it
#if !FCE_EMULATED && defined(__linux__)
    // The runtime reports a missing driver as cudaErrorInsufficientDriver ("CUDA driver version is
    // insufficient"), the same code as a driver that is too old. Tell the two apart: the runtime
    // loads the driver from libcuda.so.1, so when that cannot be loaded there is no driver at all.
    if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice) {
      void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
      if (!h)
        return fail(FCE_ENODRIVER, err, errlen,
                    std::string("no NVIDIA driver / no GPU: libcuda.so.1 (the driver) is not installed (cudaGetDeviceCount: ") +
                        cudaGetErrorName(e) + ")");
      dlclose(h);
    }
#endif
    return fail_cuda(e, "cudaGetDeviceCount", err, errlen);
  }
  return FCE_OK;
}

int fce_cuda_device_info_get(int device, fce_cuda_device_info* out, char* err, size_t errlen) {
  std::memset(out, 0, sizeof *out);
  FCE_CHECK(cudaSetDevice(device));
#if FCE_EMULATED
  std::snprintf(out->name, sizeof out->name, "%s", fce_emu_device_name());
  out->emulated = 1;
#else
  cudaDeviceProp prop;
  FCE_CHECK(cudaGetDeviceProperties(&prop, device));
  std::snprintf(out->name, sizeof out->name, "%s", prop.name);
#endif
  FCE_CHECK(cudaDeviceGetAttribute(&out->multiprocessors, cudaDevAttrMultiProcessorCount, device));
  FCE_CHECK(cudaDeviceGetAttribute(&out->major, cudaDevAttrComputeCapabilityMajor, device));
  FCE_CHECK(cudaDeviceGetAttribute(&out->minor, cudaDevAttrComputeCapabilityMinor, device));
  FCE_CHECK(cudaDeviceGetAttribute(&out->l2_bytes, cudaDevAttrL2CacheSize, device));
  FCE_CHECK(cudaDeviceGetAttribute(&out->shared_per_block_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  FCE_CHECK(cudaMemGetInfo(&out->free_memory, &out->total_memory));
  return FCE_OK;
}

int fce_cuda_malloc(void** p, size_t bytes, char* err, size_t errlen) {
  *p = nullptr;
  FCE_CHECK(cudaMalloc(p, bytes == 0 ? 16 : bytes));
  return FCE_OK;
}

int fce_cuda_free(void* p, char* err, size_t errlen) {
  FCE_CHECK(cudaFree(p));
  return FCE_OK;
}

int fce_cuda_memcpy(void* dst, const void* src, size_t bytes, int kind, char* err, size_t errlen) {
  const cudaMemcpyKind k = kind == 0 ? cudaMemcpyHostToDevice : kind == 1 ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
  FCE_CHECK(cudaMemcpy(dst, src, bytes, k));
  return FCE_OK;
}

int fce_cuda_is_device_pointer(const void* p, int* yes, char* err, size_t errlen) {
  *yes = 0;
  cudaPointerAttributes at;
  if (const int rc = pointer_attributes(p, &at, err, errlen)) return rc;
  *yes = (at.type == cudaMemoryTypeDevice || at.type == cudaMemoryTypeManaged) ? 1 : 0;
  return FCE_OK;
}

int fce_cuda_pointer_device(const void* p, int* device, char* err, size_t errlen) {
  *device = 0;
  cudaPointerAttributes at;
  if (const int rc = pointer_attributes(p, &at, err, errlen)) return rc;
  *device = at.device;
  return FCE_OK;
}

int fce_cuda_set_device(int device, char* err, size_t errlen) {
  FCE_CHECK(cudaSetDevice(device));
  return FCE_OK;
}

int fce_cuda_stream_create(int device, void** stream, char* err, size_t errlen) {
  *stream = nullptr;
  FCE_CHECK(cudaSetDevice(device));
  cudaStream_t s = nullptr;
  FCE_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  *stream = s;
  return FCE_OK;
}

int fce_cuda_stream_destroy(void* stream, char* err, size_t errlen) {
  FCE_CHECK(cudaStreamDestroy(static_cast<cudaStream_t>(stream)));
  return FCE_OK;
}

int fce_cuda_stream_synchronize(void* stream, char* err, size_t errlen) {
  FCE_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
  return FCE_OK;
}

int fce_cuda_read(const void* p, size_t bytes, void* stream, char* err, size_t errlen) {
  if (bytes % 16 || reinterpret_cast<uintptr_t>(p) % 16)
    return fail(FCE_EINVAL, err, errlen, "fce_cuda_read: p and bytes must be multiples of 16");
  Device dev;
  FCE_CHECK(device_props(&dev));
  static unsigned long long* sink = nullptr;
  if (!sink) FCE_CHECK(cudaMalloc(reinterpret_cast<void**>(&sink), 8));
  const int64_t n = int64_t(bytes / 16);
  const unsigned blocks = unsigned(std::max<int64_t>(1, std::min<int64_t>(int64_t(dev.sms) * 4, (n + 1023) / 1024)));
  FCE_LAUNCH(read_kernel, dim3(blocks), dim3(1024), size_t(0), static_cast<cudaStream_t>(stream),
             static_cast<const uint4*>(p), n, sink);
  FCE_CHECK(cudaGetLastError());
  return FCE_OK;
}

}  // extern "C"
