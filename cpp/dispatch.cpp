// Run-time choice of CPU kernels. What ships is compiled for baseline x86-64 (or aarch64); ISA
// specific kernels live in their own translation units and are chosen here by CPUID, so one
// binary runs everywhere. FUSEDCE_ISA=scalar forces the portable kernels (the AVX2 ones are only
// ever used where the CPU has AVX2, FMA and F16C).
#include <cstdlib>
#include <cstring>

#include "fusedce.h"

namespace fusedce {

// Defined by cross_entropy_avx2.cpp where it is built (x86-64).
#if FUSEDCE_HAVE_AVX2
const Kernels* avx2_kernels();
#else
static const Kernels* avx2_kernels() { return nullptr; }
#endif

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

}  // namespace fusedce
