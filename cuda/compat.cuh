// What the kernel source needs from CUDA, spelled so that it compiles both with nvcc (a GPU) and
// with a host C++ compiler over the emulation layer (emu/emu.h: CI without a GPU).
//
// The kernels use only: threadIdx/blockIdx/blockDim/gridDim, __syncthreads, __shfl_xor_sync,
// shared memory through FCE_SHARED_MEMORY, integer atomics, 16-byte vector loads/stores through
// the helpers below, and the fp32/fp64 math of <cmath> (expf, logf, exp, log, log1p, fmaxf).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define FCE_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
// The block's dynamic shared memory, as bytes (16-byte aligned).
#define FCE_SHARED_MEMORY(name) \
  extern __shared__ __align__(16) unsigned char fce_dynamic_smem_[]; \
  unsigned char* name = fce_dynamic_smem_
#define FCE_EMULATED 0
#else
#include "emu/emu.h"
#define FCE_SHARED_MEMORY(name) unsigned char* name = ::fce_emu::shared_memory()
#define FCE_EMULATED 1
#endif

#define FCE_DEV __device__ __forceinline__
#if defined(__CUDACC__)
#define FCE_UNROLL _Pragma("unroll")
#else
#define FCE_UNROLL
#endif

namespace fusedce_cuda {

// ---- 16-bit formats (bit patterns in uint16_t), round to nearest even, exact ----
FCE_DEV float bf16_bits_to_float(uint32_t h) { return __uint_as_float(h << 16); }

FCE_DEV uint16_t float_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN, sign kept
  u += 0x7fffu + ((u >> 16) & 1u);  // round half to even; overflow carries into inf
  return uint16_t(u >> 16);
}

FCE_DEV float f16_bits_to_float(uint32_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(uint16_t(h)));
#else
  const uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (m << 13));
  if (e != 0) return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
  const float v = float(m) * 5.9604644775390625e-8f;  // subnormal: m · 2^-24, exact
  return sign ? -v : v;
#endif
}

FCE_DEV uint16_t float_to_f16_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  const uint32_t u = __float_as_uint(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
  if (a >= 0x38800000u) {
    uint32_t r = a - 0x38000000u;
    r += 0x0fffu + ((r >> 13) & 1u);
    return uint16_t(sign | (r >> 13));
  }
  if (a < 0x33000000u) return sign;
  const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126u - e;
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return uint16_t(sign | q);
#endif
}

// dtype codes shared with the CPU core: 0 f32, 1 f16, 2 bf16.
template <int DT>
struct Elem;
template <>
struct Elem<0> {
  using T = float;
  static constexpr int kSize = 4;
  static FCE_DEV float load(const T* p) { return *p; }
  static FCE_DEV void store(T* p, float v) { *p = v; }
};
template <>
struct Elem<1> {
  using T = uint16_t;
  static constexpr int kSize = 2;
  static FCE_DEV float load(const T* p) { return f16_bits_to_float(*p); }
  static FCE_DEV void store(T* p, float v) { *p = float_to_f16_bits(v); }
};
template <>
struct Elem<2> {
  using T = uint16_t;
  static constexpr int kSize = 2;
  static FCE_DEV float load(const T* p) { return bf16_bits_to_float(*p); }
  static FCE_DEV void store(T* p, float v) { *p = float_to_bf16_bits(v); }
};

// A 16-byte vector of the input dtype, widened to fp32: 4 floats or 8 halves.
template <int DT>
struct Vec {
  static constexpr int kN = 16 / Elem<DT>::kSize;
  float v[kN];
};

template <int DT>
FCE_DEV Vec<DT> widen(uint4 w) {
  Vec<DT> r;
  const uint32_t u[4] = {w.x, w.y, w.z, w.w};
  if constexpr (DT == 0) {
FCE_UNROLL
    for (int k = 0; k < 4; ++k) r.v[k] = __uint_as_float(u[k]);
  } else if constexpr (DT == 2) {
FCE_UNROLL
    for (int k = 0; k < 4; ++k) {
      r.v[2 * k] = __uint_as_float(u[k] << 16);
      r.v[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
  } else {
FCE_UNROLL
    for (int k = 0; k < 4; ++k) {
      r.v[2 * k] = f16_bits_to_float(u[k] & 0xffffu);
      r.v[2 * k + 1] = f16_bits_to_float(u[k] >> 16);
    }
  }
  return r;
}

// Loads that bypass nothing special on the emulator; on the GPU the first read of the logits
// streams (evict-first), so the L2 keeps what will be read again.
FCE_DEV uint4 load16(const void* p) {
#if defined(__CUDA_ARCH__)
  return __ldcs(static_cast<const uint4*>(p));
#else
  return *static_cast<const uint4*>(p);
#endif
}
FCE_DEV uint4 load16_cached(const void* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(static_cast<const uint4*>(p));
#else
  return *static_cast<const uint4*>(p);
#endif
}
// Gradient stores are written once and not read back by the kernel: streaming stores.
FCE_DEV void store16(void* p, uint4 v) {
#if defined(__CUDA_ARCH__)
  __stcs(static_cast<uint4*>(p), v);
#else
  *static_cast<uint4*>(p) = v;
#endif
}

// A hint to bring the 128-byte line holding p into L2 (no register, no wait). No-op when emulated.
FCE_DEV void prefetch_l2(const void* p) {
#if defined(__CUDA_ARCH__)
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
  (void)p;
#endif
}

}  // namespace fusedce_cuda
