// The loss-family tests on the portable scalar kernels (FUSEDCE_ISA=scalar, chosen at the first
// kernel call of this process): the new ops call the block kernels of whichever set is active.
import { cpuBackend } from 'fusedce';
import { expect, it } from 'vitest';
import './cross_entropy_options.test';
import './soft_cross_entropy.test';
import './binary_cross_entropy.test';
import './split_rows.test';
import './jsd.test';

process.env.FUSEDCE_ISA = 'scalar';

it('runs on the scalar kernels', () => {
  expect(cpuBackend()).toBe('scalar');
});
