import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global_setup.ts'],
    // The native addon runs in forked child processes (one per test file), not worker threads.
    pool: 'forks',
    testTimeout: 120_000,
    // Host arrays run on the CPU unless a test file asks for the GPU (the CUDA test files set
    // FUSEDCE_DEVICE=cuda themselves), so the CPU kernels are what the CPU tests check on any machine.
    env: { FUSEDCE_DEVICE: 'cpu' },
    hookTimeout: 120_000,
  },
});
