// The cross-entropy suite — the same tests the CPU kernels pass, against the float64 reference —
// on the CUDA backend, through host arrays (uploaded, computed on the device, downloaded). On a GPU
// when there is one; otherwise on the CPU emulation of the same kernels (see cuda_env.ts).
import { backend } from 'fusedce';
import { expect, it } from 'vitest';
import { crossEntropySuite } from './cross_entropy.suite';
import { useCudaBackend } from './cuda_env';

const { label } = useCudaBackend();

it(`host arrays run on the CUDA backend with FUSEDCE_DEVICE=cuda (${label})`, () => {
  expect(backend()).toBe('cuda');
});

crossEntropySuite(label);
