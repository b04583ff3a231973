// The cross-entropy suite on the portable scalar kernels, forced with FUSEDCE_ISA=scalar. The
// choice is made at the first kernel call of a process; vitest runs each file in its own process.
import { backend } from 'fusedce';
import { expect, it } from 'vitest';
import { crossEntropySuite } from './cross_entropy.suite';

process.env.FUSEDCE_ISA = 'scalar';

it('runs on the scalar kernels', () => {
  expect(backend()).toBe('scalar');
});

crossEntropySuite('scalar');
