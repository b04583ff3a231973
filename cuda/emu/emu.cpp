// The CUDA emulation layer's scheduler and runtime (see emu.h).
//
// One launch at a time (a process-wide mutex). Blocks run in order, blockIdx.x fastest. Within a
// block, each CUDA thread is a fiber with its own stack; a fiber runs until it reaches a barrier
// (__syncthreads, or the warp barrier inside a shuffle) or returns, then the next fiber runs.
// A barrier opens when every live thread of its scope has arrived. A thread that returns while
// others wait at __syncthreads would deadlock real hardware too; here it is reported as an error.
#include "emu.h"

#if !defined(FCE_EMU_ASM_SWITCH)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(_WIN32)
#define FCE_EMU_ASM_SWITCH 1
#else
#define FCE_EMU_ASM_SWITCH 0
#endif
#endif
#if !FCE_EMU_ASM_SWITCH
#include <ucontext.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#if FCE_EMU_ASM_SWITCH
// A fiber switch without a system call (glibc's swapcontext also saves the signal mask, one
// syscall per switch): saves the callee-saved registers, MXCSR and the x87 control word on the
// current stack, stores the stack pointer in *save, and continues on the stack `next`.
extern "C" void fce_emu_switch(void** save, void* next);
asm(R"(
.text
.globl fce_emu_switch
.type fce_emu_switch,@function
fce_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size fce_emu_switch, .-fce_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");
#endif

namespace fce_emu {

Coords g_coords;
thread_local cudaError_t g_last_error = cudaSuccess;

namespace {

constexpr size_t kStack = 128 * 1024;

struct Fiber {
#if FCE_EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  unsigned char* stack = nullptr;  // kStack bytes from the stack pool
  uint3 tid;
  bool done = false;
  // Where it waits: 0 nowhere, 1 block barrier, 2 warp barrier; and the generation it waits on.
  int waiting = 0;
  uint64_t gen = 0;
};

struct Block {
  std::vector<Fiber> fibers;
#if !FCE_EMU_ASM_SWITCH
  ucontext_t scheduler;
#endif
  size_t current = 0;
  uint64_t block_gen = 0;
  size_t block_arrived = 0;
  std::vector<uint64_t> warp_gen;
  std::vector<size_t> warp_arrived;
  std::vector<uint64_t> warp_slots;  // (warps, 32)
  std::vector<unsigned char> shared;
#if FCE_EMU_ASM_SWITCH
  void* scheduler_sp = nullptr;
#endif
  KernelBody body = nullptr;
  void* closure = nullptr;
  bool error = false;
  size_t live = 0;
};

Block* g_block = nullptr;
std::mutex g_launch_mutex;
// Fiber stacks, kept across launches (under g_launch_mutex): allocating and zeroing 1024 fresh
// stacks per launch would cost more than the kernels.
std::vector<std::unique_ptr<unsigned char[]>> g_stacks;

void set_coords(const Fiber& f) { g_coords.thread = f.tid; }

void yield_to_scheduler() {
  Fiber& f = g_block->fibers[g_block->current];
#if FCE_EMU_ASM_SWITCH
  fce_emu_switch(&f.sp, g_block->scheduler_sp);
#else
  swapcontext(&f.ctx, &g_block->scheduler);
#endif
  set_coords(g_block->fibers[g_block->current]);
}

// The scheduler runs fiber i until it yields or ends.
void resume(Block& b, size_t i) {
#if FCE_EMU_ASM_SWITCH
  fce_emu_switch(&b.scheduler_sp, b.fibers[i].sp);
#else
  swapcontext(&b.scheduler, &b.fibers[i].ctx);
#endif
}

size_t live_in_warp(size_t w) {
  size_t n = 0;
  const size_t begin = w * 32, end = std::min(begin + 32, g_block->fibers.size());
  for (size_t i = begin; i < end; ++i) n += g_block->fibers[i].done ? 0 : 1;
  return n;
}

void fiber_main(unsigned lo, unsigned hi) {
  (void)hi;
  (void)lo;
  Block* b = g_block;
  b->body(b->closure);
  b->fibers[b->current].done = true;
  --b->live;
#if FCE_EMU_ASM_SWITCH
  void* dead;
  fce_emu_switch(&dead, b->scheduler_sp);  // never resumed
  __builtin_unreachable();
#endif
  // Returning from here resumes uc_link (the scheduler).
}

#if FCE_EMU_ASM_SWITCH
[[noreturn]] void fiber_entry() {
  fiber_main(0, 0);
  __builtin_unreachable();
}
#endif

// Makes f start at fiber_main on its own stack, returning to `back` when it ends. (Kept out of
// launch(): getcontext returns twice, like setjmp.)
#if FCE_EMU_ASM_SWITCH
// The new stack, as fce_emu_switch will pop it: MXCSR/x87 control word, r15 … rbp, then the
// "return address" fiber_entry, above a pad that leaves the stack aligned as at a call.
void start_fiber(Fiber& f, Block&) {
  auto top = reinterpret_cast<uintptr_t>(f.stack + kStack) & ~uintptr_t(15);
  auto* w = reinterpret_cast<uint64_t*>(top);
  w[-1] = 0;                                         // pad: rsp ≡ 8 (mod 16) at fiber_entry
  w[-2] = reinterpret_cast<uint64_t>(&fiber_entry);  // ret target
  for (int k = 3; k <= 8; ++k) w[-k] = 0;            // rbp, rbx, r12, r13, r14, r15
  w[-9] = uint64_t(0x1F80) | (uint64_t(0x037F) << 32);  // MXCSR default, x87 control word default
  f.sp = &w[-9];
}
#else
__attribute__((noinline)) void start_fiber(Fiber& f, Block& b) {
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStack;
  f.ctx.uc_link = &b.scheduler;
  makecontext(&f.ctx, reinterpret_cast<void (*)()>(fiber_main), 2, 0u, 0u);
}
#endif

}  // namespace

void syncthreads() {
  Block* b = g_block;
  Fiber& f = b->fibers[b->current];
  const uint64_t gen = b->block_gen;
  if (++b->block_arrived == b->live) {
    b->block_arrived = 0;
    ++b->block_gen;
    return;
  }
  f.waiting = 1;
  f.gen = gen;
  while (b->block_gen == gen) yield_to_scheduler();
  b->fibers[b->current].waiting = 0;
}

namespace {
void warp_barrier() {
  Block* b = g_block;
  const size_t w = b->current / 32;
  Fiber& f = b->fibers[b->current];
  const uint64_t gen = b->warp_gen[w];
  if (++b->warp_arrived[w] == live_in_warp(w)) {
    b->warp_arrived[w] = 0;
    ++b->warp_gen[w];
    return;
  }
  f.waiting = 2;
  f.gen = gen;
  while (b->warp_gen[w] == gen) yield_to_scheduler();
  b->fibers[b->current].waiting = 0;
}
}  // namespace

uint64_t warp_exchange(uint64_t mine, unsigned src_lane) {
  Block* b = g_block;
  const size_t w = b->current / 32;
  warp_barrier();  // everyone has consumed the previous exchange
  b->warp_slots[w * 32 + (b->current & 31)] = mine;
  warp_barrier();  // everyone has published
  return b->warp_slots[w * 32 + src_lane];
}

unsigned char* shared_memory() { return g_block->shared.data(); }

int launch(dim3 grid, dim3 block, size_t shared_bytes, KernelBody body, void* closure) {
  const size_t nthreads = size_t(block.x) * block.y * block.z;
  if (nthreads == 0 || nthreads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || block.y != 1 || block.z != 1)
    return cudaErrorInvalidConfiguration;
  if (shared_bytes > 227 * 1024) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  Block b;
  b.fibers.resize(nthreads);
  while (g_stacks.size() < nthreads) g_stacks.emplace_back(new unsigned char[kStack]);
  for (size_t i = 0; i < nthreads; ++i) b.fibers[i].stack = g_stacks[i].get();
  const size_t warps = (nthreads + 31) / 32;
  b.warp_gen.assign(warps, 0);
  b.warp_arrived.assign(warps, 0);
  b.warp_slots.assign(warps * 32, 0);
  b.shared.assign(shared_bytes + 16, 0);
  b.body = body;
  b.closure = closure;
  g_block = &b;
  g_coords.block_dim = block;
  g_coords.grid_dim = grid;
  int status = cudaSuccess;
  for (unsigned bz = 0; bz < grid.z && status == cudaSuccess; ++bz)
    for (unsigned by = 0; by < grid.y && status == cudaSuccess; ++by)
      for (unsigned bx = 0; bx < grid.x && status == cudaSuccess; ++bx) {
        g_coords.block = {bx, by, bz};
        // Fresh shared memory contents are undefined on a GPU; poison them here so a kernel that
        // reads shared memory it did not write is caught.
        std::memset(b.shared.data(), 0xA5, b.shared.size());
        b.block_gen = 0;
        b.block_arrived = 0;
        std::fill(b.warp_arrived.begin(), b.warp_arrived.end(), 0);
        b.live = nthreads;
        for (size_t i = 0; i < nthreads; ++i) {
          Fiber& f = b.fibers[i];
          f.done = false;
          f.waiting = 0;
          f.tid = {unsigned(i), 0, 0};
          start_fiber(f, b);
        }
        // Round-robin until every thread has returned. A full round in which nobody can move
        // (all waiting on a barrier that cannot open) is a deadlock.
        for (;;) {
          bool any_live = false, progressed = false;
          for (size_t i = 0; i < nthreads; ++i) {
            Fiber& f = b.fibers[i];
            if (f.done) continue;
            any_live = true;
            const bool blocked = (f.waiting == 1 && b.block_gen == f.gen) ||
                                 (f.waiting == 2 && b.warp_gen[i / 32] == f.gen);
            if (blocked) continue;
            b.current = i;
            set_coords(f);
            resume(b, i);
            progressed = true;
          }
          if (!any_live) break;
          if (!progressed) {
            std::fprintf(stderr, "fusedce CUDA emulation: deadlock in block (%u, %u): threads wait at a barrier others never reach\n", bx, by);
            status = cudaErrorInvalidConfiguration;
            break;
          }
        }
      }
  g_block = nullptr;
  return status;
}

}  // namespace fce_emu

// ---- runtime API ----
namespace {
std::mutex g_alloc_mutex;
std::map<const unsigned char*, size_t>& allocations() {
  static std::map<const unsigned char*, size_t> m;
  return m;
}
}  // namespace

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = 4; break;  // small, so the multi-block paths are taken on small shapes
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 * 1024; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 0; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrL2CacheSize: *v = 1 << 20; break;
  }
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  *free_bytes = size_t(1) << 32;
  *total = size_t(1) << 32;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = nullptr;
  if (bytes > (size_t(1) << 32)) return cudaErrorMemoryAllocation;  // the emulated device has 4 GiB
  void* m = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  if (!m) return cudaErrorMemoryAllocation;
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  allocations()[static_cast<unsigned char*>(m)] = bytes;
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(g_alloc_mutex);
    if (allocations().erase(static_cast<unsigned char*>(p)) == 0) return cudaErrorInvalidValue;
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, k);
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t) {
  if (bytes) std::memset(p, v, bytes);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new unsigned char[1];
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete[] static_cast<unsigned char*>(s);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  const cudaError_t e = fce_emu::g_last_error;
  fce_emu::g_last_error = cudaSuccess;
  return e;
}
// A pointer is "device memory" when it lies inside an emulated allocation.
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  std::lock_guard<std::mutex> lock(g_alloc_mutex);
  const auto* q = static_cast<const unsigned char*>(p);
  auto& m = allocations();
  auto it = m.upper_bound(q);
  a->type = cudaMemoryTypeUnregistered;
  a->device = 0;
  a->devicePointer = nullptr;
  a->hostPointer = nullptr;
  if (it != m.begin()) {
    --it;
    if (q < it->first + it->second) {
      a->type = cudaMemoryTypeDevice;
      a->devicePointer = const_cast<void*>(p);
    }
  }
  return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "unknown error";
  }
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    default: return "cudaErrorUnknown";
  }
}
const char* fce_emu_device_name() { return "fusedce CUDA emulation on the CPU (no GPU)"; }
