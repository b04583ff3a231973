// The cross-entropy options suite (label smoothing, class weights, z-loss, logit scale, softcap,
// focal) on the CUDA kernels (cuda/cross_entropy_options.cuh), through host arrays, against the
// same float64 references as the CPU. On a GPU when there is one; otherwise on the CPU emulation
// of the same kernel source (see cuda_env.ts). The eval statistics are CPU-only for now.
import { describe, expect, it } from 'vitest';
import { backend, cuda, crossEntropyBackward, crossEntropyForward, crossEntropyForwardAsync, logits } from 'fusedce';
import { makeLogits, randomLogits, randomTargets, testRng, toFloat32 } from './reference.mjs';
import { refCrossEntropy, worstRatio } from './loss_reference.mjs';
import { optionsSuite } from './cross_entropy_options.suite';
import { useCudaBackend } from './cuda_env';

const { label } = useCudaBackend();

it(`host arrays with options run on the CUDA backend (${label})`, () => {
  expect(backend()).toBe('cuda');
});

optionsSuite(label, { stats: false });
