// The cross-entropy suite on the kernels dispatch picks for this CPU (AVX2 where available).
import { backend, cpuInfo } from 'fusedce';
import { expect, it } from 'vitest';
import { crossEntropySuite } from './cross_entropy.suite';

it('dispatch picks AVX2 exactly when the CPU has AVX2, FMA and F16C (x86-64)', () => {
  const c = cpuInfo();
  const expected = c.avx2 && c.fma && c.f16c && process.arch === 'x64' ? 'avx2' : 'scalar';
  expect(backend()).toBe(expected);
});

crossEntropySuite(backend());
