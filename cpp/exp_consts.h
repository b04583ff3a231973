// The constants of the vectorised exp shared by the AVX2 (exp_ps) and AVX-512 (exp16) kernels.
// Both must use these very values, operation for operation, for their results to agree bit for
// bit (test/isa.test.ts); the reduction and the polynomial are described at exp_ps in
// cross_entropy_avx2.cpp.
#pragma once

namespace fusedce {
namespace expk {

constexpr float kLo = -104.0f;  // e^x rounds to 0 below (clamp, so −inf and huge |x| stay finite)
constexpr float kHi = 89.0f;    // e^x is +inf above
constexpr float kShifter = 12582912.0f;  // 1.5·2^23: t = x·log2 e + shifter holds round(x·log2 e)
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;     // Cody–Waite ln2 = hi + lo, hi with 9 bits (k·hi exact)
constexpr float kLn2Lo = -2.12194440e-4f;
// e^r ≈ 1 + r(1 + r(c2 + r(c3 + r(c4 + r(c5 + r·c6))))) on |r| ≤ ln2/2, Horner from the highest
// degree: c6, c5, c4, c3, c2, 1, 1 (six FMAs after the first).
constexpr float kHorner[] = {1.3814540580e-3f, 8.3687454462e-3f, 4.1668388993e-2f, 1.6666521132e-1f,
                             4.9999994040e-1f, 1.0f, 1.0f};
constexpr int kHornerLen = int(sizeof(kHorner) / sizeof(kHorner[0]));

}  // namespace expk
}  // namespace fusedce
