// Cross-entropy, AVX-512 kernels for CPUs with AVX512_BF16: cross_entropy_avx512.cpp compiled once
// more with -mavx512bf16, where a bf16 gradient (the fused path's second pass and the backward)
// is narrowed by vcvtneps2bf16 instead of ten integer operations. Bitwise the same results
// (test/isa.test.ts compares them with the plain AVX-512 and the AVX2 kernels); dispatch.cpp
// hands these out only when CPUID reports AVX512_BF16.
#define FUSEDCE_NATIVE_BF16 1
#include "cross_entropy_avx512.cpp"
