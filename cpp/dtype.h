// Scalar conversions between fp32 and the 16-bit formats, round-to-nearest-even, exact.
// bf16: the top 16 bits of an fp32 (8-bit exponent, 7-bit mantissa).
// f16:  IEEE binary16 (5-bit exponent, 10-bit mantissa, subnormals below 2^-14).
#pragma once

#include <cstdint>
#include <cstring>

#include "fusedce.h"

namespace fusedce {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN, keep sign
  u += 0x7fffu + ((u >> 16) & 1u);  // round half to even; overflow carries into inf correctly
  return uint16_t(u >> 16);
}

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
  // zero or subnormal: man · 2^-24, exact in fp32
  float v = float(man) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

inline uint16_t float_to_f16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN stays NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // ≥ 65520 rounds to inf (and inf)
  if (a >= 0x38800000u) {  // normal f16 range: |f| ≥ 2^-14
    uint32_t r = a - 0x38000000u;            // rebias exponent 127 → 15 (in place)
    r += 0x0fffu + ((r >> 13) & 1u);         // round half to even at bit 13
    return uint16_t(sign | (r >> 13));
  }
  // subnormal or zero: value = a_f / 2^-24 units, round half to even
  if (a < 0x33000000u) return sign;  // < 2^-25: rounds to ±0
  const uint32_t e = a >> 23;             // 102 … 112
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;        // 14 … 24: m · 2^(e-150) / 2^-24 = m >> (126 - e)
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return uint16_t(sign | q);
}

template <DType D>
struct Elem;
template <>
struct Elem<DType::F32> {
  using T = float;
  static float load(T x) { return x; }
  static T store(float v) { return v; }
};
template <>
struct Elem<DType::BF16> {
  using T = uint16_t;
  static float load(T x) { return bf16_to_float(x); }
  static T store(float v) { return float_to_bf16(v); }
};
template <>
struct Elem<DType::F16> {
  using T = uint16_t;
  static float load(T x) { return f16_to_float(x); }
  static T store(float v) { return float_to_f16(v); }
};

}  // namespace fusedce
