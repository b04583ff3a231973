// Run-time choice of CPU kernels. What ships is compiled for baseline x86-64 (or aarch64); ISA
// specific kernels live in their own translation units and are chosen here by CPUID, so one
// binary runs everywhere. FUSEDCE_ISA=scalar|avx2 overrides the choice (avx2 only where the CPU
// has it). Until the AVX2 kernels land, every CPU runs the scalar kernels.
#include <cstdlib>
#include <cstring>

#include "fusedce.h"

namespace fusedce {

// Defined by an AVX2 translation unit when one is built; nullptr otherwise.
const Kernels* avx2_kernels();

CpuFeatures cpu_features() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return {__builtin_cpu_supports("avx2") != 0, __builtin_cpu_supports("fma") != 0,
          __builtin_cpu_supports("f16c") != 0};
#else
  return {false, false, false};
#endif
}

static const Kernels* choose() {
  const char* env = std::getenv("FUSEDCE_ISA");
  const CpuFeatures f = cpu_features();
  const Kernels* avx2 = (f.avx2 && f.fma && f.f16c) ? avx2_kernels() : nullptr;
  if (env && std::strcmp(env, "scalar") == 0) return &scalar_kernels();
  return avx2 ? avx2 : &scalar_kernels();
}

const Kernels& active_kernels() {
  static const Kernels* k = choose();
  return *k;
}

// No AVX2 translation unit in this build yet.
const Kernels* avx2_kernels() { return nullptr; }

}  // namespace fusedce
