// The cross-entropy suite on the kernels dispatch picks for this CPU (AVX-512, else AVX2, where
// available).
import { backend, cpuInfo } from 'fusedce';
import { expect, it } from 'vitest';
import { crossEntropySuite } from './cross_entropy.suite';

it('dispatch picks AVX-512 with AVX-512 F/BW/VL, else AVX2 with AVX2, FMA and F16C (x86-64)', () => {
  const c = cpuInfo();
  const avx2 = c.avx2 && c.fma && c.f16c && process.arch === 'x64';
  const expected = avx2 && c.avx512 ? 'avx512' : avx2 ? 'avx2' : 'scalar';
  expect(backend()).toBe(expected);
});

crossEntropySuite(backend());
