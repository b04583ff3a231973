// fp32 ↔ bf16 / f16 conversions of whole arrays (bf16.fromFloat32 and friends), over the pool.
//
// Rounding is round-to-nearest-even, bitwise what ts/dtype.ts's reference loops compute:
//   bf16: NaN → (x >> 16) | 0x0040 (quiet, sign and top payload kept); else (x + 0x7fff + lsb) >> 16,
//         so overflow rounds to ±inf.
//   f16:  IEEE binary16 with subnormals; ≥ 65520 → ±inf; NaN → sign | 0x7e00 | top 9 payload bits.
//   f16 → f32 is exact; every NaN widens to the canonical quiet NaN 0x7fc00000, as the JS loop's
//   table did (bf16 → f32, a shift, keeps the payload, as its JS loop did).
//         The F16C instruction (vcvtps2ph, imm 0 = nearest even, independent of MXCSR) gives
//         exactly these bits, NaNs included (it sets the quiet bit and keeps the top payload).
// Reads the input once and writes the output once: memory bound, so the pool helps only with
// arrays larger than a thread's share of the caches.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "fusedce.h"
#include "thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FUSEDCE_X86 1
#endif

namespace fusedce {
namespace {

inline uint16_t bf16_of(uint32_t x) {
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x0040u);
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline uint16_t f16_of(uint32_t x) {
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  uint32_t h;
  if (abs > 0x7f800000u) {
    h = 0x7e00u | ((abs >> 13) & 0x3ffu);
  } else if (abs >= 0x477ff000u) {
    h = 0x7c00u;
  } else if (abs >= 0x38800000u) {
    const uint32_t r = abs - 0x38000000u;
    h = (r + 0x0fffu + ((r >> 13) & 1u)) >> 13;
  } else if (abs < 0x33000000u) {
    h = 0;
  } else {
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    h = q;
  }
  return uint16_t(sign | h);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = man ? 0x7fc00000u : sign | 0x7f800000u;  // every NaN becomes the canonical quiet NaN
  } else if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | (uint32_t(127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Portable loops (the compiler vectorises the bf16 ones with the baseline ISA).
template <uint16_t (*Narrow)(uint32_t)>
void narrow_scalar(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t x;
    std::memcpy(&x, s + i, 4);
    d[i] = Narrow(x);
  }
}
void to_bf16_scalar(const float* s, uint16_t* d, int64_t n) { narrow_scalar<bf16_of>(s, d, n); }
void to_f16_scalar(const float* s, uint16_t* d, int64_t n) { narrow_scalar<f16_of>(s, d, n); }
void from_bf16_scalar(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t x = uint32_t(s[i]) << 16;
    std::memcpy(d + i, &x, 4);
  }
}
void from_f16_scalar(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
}

#ifdef FUSEDCE_X86
// AVX2 + F16C: 8 (f16) or 16 (bf16) elements a step, the tail by the portable loop.
__attribute__((target("avx2,f16c"))) void to_bf16_avx2(const float* s, uint16_t* d, int64_t n) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x0040);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i r[2];
    for (int k = 0; k < 2; ++k) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 8 * k));
      const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);  // signed compare: abs < 2^31
      const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), one);
      const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, bias), lsb), 16);
      const __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(x, 16), quiet);
      r[k] = _mm256_blendv_epi8(rounded, qnan, nan);
    }
    // pack the low 16 bits of each 32-bit lane (values < 2^16: packus is exact), fix the lane order
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), packed);
  }
  to_bf16_scalar(s + i, d + i, n - i);
}
__attribute__((target("avx2,f16c"))) void from_bf16_avx2(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm256_slli_epi32(x, 16));
  }
  from_bf16_scalar(s + i, d + i, n - i);
}
__attribute__((target("avx2,f16c"))) void to_f16_avx2(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
  to_f16_scalar(s + i, d + i, n - i);
}
__attribute__((target("avx2,f16c"))) void from_f16_avx2(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    _mm256_storeu_ps(d + i, _mm256_blendv_ps(x, qnan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
  }
  from_f16_scalar(s + i, d + i, n - i);
}
#endif

using Piece = void (*)(const void*, void*, int64_t);
#ifdef FUSEDCE_X86
#define FUSEDCE_AVX2_OR(scalar, avx2, S, D) piece<S, D, avx2>
#else
#define FUSEDCE_AVX2_OR(scalar, avx2, S, D) piece<S, D, scalar>
#endif

template <typename S, typename D, void (*F)(const S*, D*, int64_t)>
void piece(const void* s, void* d, int64_t n) {
  F(static_cast<const S*>(s), static_cast<D*>(d), n);
}

// The loops of each kind: [0] portable, [1] AVX2 + F16C (x86-64 only).
Piece pick(ConvertKind kind, bool portable) {
  static const Piece loops[4][2] = {
      {piece<float, uint16_t, to_bf16_scalar>, FUSEDCE_AVX2_OR(to_bf16_scalar, to_bf16_avx2, float, uint16_t)},
      {piece<float, uint16_t, to_f16_scalar>, FUSEDCE_AVX2_OR(to_f16_scalar, to_f16_avx2, float, uint16_t)},
      {piece<uint16_t, float, from_bf16_scalar>, FUSEDCE_AVX2_OR(from_bf16_scalar, from_bf16_avx2, uint16_t, float)},
      {piece<uint16_t, float, from_f16_scalar>, FUSEDCE_AVX2_OR(from_f16_scalar, from_f16_avx2, uint16_t, float)},
  };
  bool vector = false;
#ifdef FUSEDCE_X86
  const CpuFeatures f = cpu_features();
  vector = !portable && f.avx2 && f.f16c;
#else
  (void)portable;
#endif
  return loops[int(kind)][vector ? 1 : 0];
}

}  // namespace

void convert(const void* src, void* dst, int64_t n, ConvertKind kind, int threads, bool portable) {
  const Piece f = pick(kind, portable);
  const bool narrow = kind == ConvertKind::F32ToBf16 || kind == ConvertKind::F32ToF16;
  const size_t in_size = narrow ? 4 : 2, out_size = narrow ? 2 : 4;
  constexpr int64_t kChunk = int64_t(1) << 16;  // 256 KiB of f32: a task worth a pool hand-off
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1 || threads <= 1) {
    f(src, dst, n);
    return;
  }
  parallel_for(chunks, threads, [&](int64_t c) {
    const int64_t lo = c * kChunk, m = std::min(kChunk, n - lo);
    f(static_cast<const char*>(src) + size_t(lo) * in_size, static_cast<char*>(dst) + size_t(lo) * out_size, m);
  });
}

}  // namespace fusedce
