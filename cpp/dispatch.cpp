// Run-time choice of CPU kernels. What ships is compiled for baseline x86-64 (or aarch64); ISA
// specific kernels live in their own translation units and are chosen here by CPUID, so one
// binary runs everywhere. FUSEDCE_ISA=scalar forces the portable kernels, FUSEDCE_ISA=avx2 the AVX2
// ones, FUSEDCE_ISA=avx512 the AVX-512 ones without AVX512_BF16 (each only where the CPU has what
// it needs: AVX2 + FMA + F16C; AVX-512 F/BW/VL/DQ; and AVX512_BF16 for the default's best set).
#include <cstdlib>
#include <cstring>

#include "fusedce.h"

namespace fusedce {

// Defined by cross_entropy_avx2.cpp / cross_entropy_avx512.cpp where they are built (x86-64).
#if FUSEDCE_HAVE_AVX2
const Kernels* avx2_kernels();
const Kernels* avx512_kernels();
const Kernels* avx512bf16_kernels();
#else
static const Kernels* avx2_kernels() { return nullptr; }
static const Kernels* avx512_kernels() { return nullptr; }
static const Kernels* avx512bf16_kernels() { return nullptr; }
#endif

CpuFeatures cpu_features() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // avx512*: also checks that the OS saves the zmm and mask registers (XGETBV)
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return {__builtin_cpu_supports("avx2") != 0, __builtin_cpu_supports("fma") != 0,
          __builtin_cpu_supports("f16c") != 0, avx512, avx512 && __builtin_cpu_supports("avx512bf16")};
#else
  return {false, false, false, false, false};
#endif
}

static const Kernels* choose() {
  const char* env = std::getenv("FUSEDCE_ISA");
  const CpuFeatures f = cpu_features();
  const Kernels* avx2 = (f.avx2 && f.fma && f.f16c) ? avx2_kernels() : nullptr;
  const Kernels* avx512 = (avx2 && f.avx512) ? avx512_kernels() : nullptr;
  const Kernels* avx512bf16 = (avx512 && f.avx512bf16) ? avx512bf16_kernels() : nullptr;
  const Kernels* best = avx512bf16 ? avx512bf16 : avx512 ? avx512 : avx2 ? avx2 : &scalar_kernels();
  if (env && std::strcmp(env, "scalar") == 0) return &scalar_kernels();
  if (env && std::strcmp(env, "avx2") == 0) return avx2 ? avx2 : &scalar_kernels();
  // the AVX-512 kernels without the AVX512_BF16 narrowing (tests compare the two)
  if (env && std::strcmp(env, "avx512") == 0) return avx512 ? avx512 : best;
  return best;
}

const Kernels& active_kernels() {
  static const Kernels* k = choose();
  return *k;
}

}  // namespace fusedce
