// A small CUDA emulation layer: runs fusedce's kernel source (cuda/*.cuh) on the CPU, so that a
// machine without a GPU (CI) executes the very same kernels against the float64 reference.
//
// It proves indexing, tails, reductions and merges — not speed, not the memory model.
//
// What it provides, and how:
//   threadIdx, blockIdx, blockDim, gridDim   per emulated thread (set by the scheduler)
//   __syncthreads()                          a barrier over the block's threads
//   __shfl_xor_sync / __shfl_sync            exchange through per-warp slots between two warp barriers
//   shared memory                            one buffer per block (dynamic size from the launch);
//                                            kernels take it through FCE_SHARED_MEMORY (compat.cuh)
//   atomicAdd / atomicMin (int)              plain read-modify-write (one emulated thread runs at a time)
//   launches                                 blocks run one after another; the threads of a block
//                                            run as cooperative fibers (ucontext) on the calling
//                                            OS thread, switching only at barriers, so a block's
//                                            threads interleave exactly where CUDA lets them
//   cudaMalloc/cudaMemcpy/…                  host memory; streams and events are no-ops
//
// Emulated launches are serialised by a process-wide mutex (async calls may overlap).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};

namespace fce_emu {

// The running emulated thread's coordinates (one emulated thread runs at a time).
struct Coords {
  uint3 thread{0, 0, 0}, block{0, 0, 0};
  dim3 block_dim, grid_dim;
};
extern Coords g_coords;

void syncthreads();
// Exchanges 8-byte values within the warp: every lane publishes `mine`, then reads lane `src`'s.
uint64_t warp_exchange(uint64_t mine, unsigned src_lane);
unsigned char* shared_memory();

using KernelBody = void (*)(void* closure);
// Runs body(closure) for every thread of every block of the grid; returns 0, or a cudaError code.
int launch(dim3 grid, dim3 block, size_t shared_bytes, KernelBody body, void* closure);

template <class T>
T shfl_xor(T v, int lane_mask) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "emulated shuffles move ≤ 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const unsigned lane = g_coords.thread.x & 31u;
  bits = warp_exchange(bits, lane ^ unsigned(lane_mask));
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
template <class T>
T shfl(T v, int src) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(bits, unsigned(src) & 31u);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

}  // namespace fce_emu

#define threadIdx (::fce_emu::g_coords.thread)
#define blockIdx (::fce_emu::g_coords.block)
#define blockDim (::fce_emu::g_coords.block_dim)
#define gridDim (::fce_emu::g_coords.grid_dim)

inline void __syncthreads() { ::fce_emu::syncthreads(); }
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  return ::fce_emu::shfl_xor(v, lane_mask);
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src) {
  return ::fce_emu::shfl(v, src);
}
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  *p = old + v;
  return old;
}
inline long long atomicMin(long long* p, long long v) {
  const long long old = *p;
  if (v < old) *p = v;
  return old;
}
inline void __threadfence() {}

inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}

// ---- the runtime API subset the launchers use ----
using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorMemoryAllocation = 2;
constexpr cudaError_t cudaErrorInvalidConfiguration = 9;
constexpr cudaError_t cudaErrorNoDevice = 100;
using cudaStream_t = void*;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount,
  cudaDevAttrMaxSharedMemoryPerBlockOptin,
  cudaDevAttrComputeCapabilityMajor,
  cudaDevAttrComputeCapabilityMinor,
  cudaDevAttrL2CacheSize,
};
enum cudaMemoryType { cudaMemoryTypeUnregistered = 0, cudaMemoryTypeHost = 1, cudaMemoryTypeDevice = 2, cudaMemoryTypeManaged = 3 };
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};

cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t);
cudaError_t cudaFreeAsync(void* p, cudaStream_t);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t);
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
// Streams: the emulation runs every launch and copy at once, in call order, so a stream is only a
// handle (a distinct non-null pointer) that the API accepts and checks.
constexpr unsigned cudaStreamNonBlocking = 1;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p);
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
template <class K>
cudaError_t cudaFuncSetAttribute(K*, cudaFuncAttribute, int) {
  return cudaSuccess;
}
// One block per emulated SM.
template <class K>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, K*, int, size_t) {
  *n = 1;
  return cudaSuccess;
}
// The emulated device's name and properties (deviceInfo).
const char* fce_emu_device_name();

// Last launch error (set by FCE_LAUNCH, read by cudaGetLastError).
namespace fce_emu {
extern thread_local cudaError_t g_last_error;
}

// kernel<<<grid, block, smem, stream>>>(args…) for the emulator: the arguments are copied into a
// closure once and every emulated thread calls the kernel with them.
#define FCE_LAUNCH(kernel, grid, block, smem, stream, ...)                                            \
  do {                                                                                                 \
    auto fce_closure_ = [&] { kernel(__VA_ARGS__); };                                                  \
    using fce_closure_t_ = decltype(fce_closure_);                                                     \
    ::fce_emu::g_last_error = ::fce_emu::launch(                                                       \
        (grid), (block), (smem), [](void* c) { (*static_cast<fce_closure_t_*>(c))(); }, &fce_closure_); \
    (void)(stream);                                                                                    \
  } while (0)

struct alignas(8) float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
