// The cross-entropy suite on the AVX2 kernels, forced with FUSEDCE_ISA=avx2: on a CPU with
// AVX-512 the dispatched kernels are the AVX-512 ones, so this is where the AVX2 path is checked
// against the float64 reference. Needs a CPU with AVX2, FMA and F16C (x86-64).
import { backend, cpuInfo } from 'fusedce';
import { describe, expect, it } from 'vitest';
import { crossEntropySuite } from './cross_entropy.suite';

process.env.FUSEDCE_ISA = 'avx2';
const c = cpuInfo();
const hasAvx2 = process.arch === 'x64' && c.avx2 && c.fma && c.f16c;

describe.runIf(hasAvx2)('AVX2 kernels (forced)', () => {
  it('runs on the AVX2 kernels', () => {
    expect(backend()).toBe('avx2');
  });
  crossEntropySuite('avx2');
});
