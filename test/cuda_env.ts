// Where the CUDA tests run: on a GPU when the CUDA variant is built (npm run build:cuda) and a
// device answers; otherwise on the CPU emulation of the very same kernel source (cuda/emu/), built
// here with the host compiler. The emulation proves indexing, tails, reductions and merges — not
// speed, and not the GPU memory model (compute-sanitizer on a GPU checks that).
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function gpuAnswers(): boolean {
  try {
    const out = execFileSync(process.execPath, ['-e', "process.stdout.write(String(require('./dist/cjs/index.js').cuda.isAvailable()))"],
      { cwd: root, encoding: 'utf8', env: { ...process.env, FUSEDCE_CUDA_BINARY: '' }, stdio: ['ignore', 'pipe', 'ignore'] });
    return out === 'true';
  } catch {
    return false;
  }
}

/** Sets FUSEDCE_DEVICE=cuda (and the emulated binary when there is no GPU); returns a label. */
export function useCudaBackend(): { onGpu: boolean; label: string } {
  const onGpu = !process.env.FUSEDCE_TEST_EMULATION && gpuAnswers();
  if (!onGpu) {
    // built by test/global_setup.ts before any test file runs
    // (npm run test:sanitize points FUSEDCE_CUDA_EMU_BINARY at its sanitizer build)
    process.env.FUSEDCE_CUDA_BINARY = process.env.FUSEDCE_CUDA_EMU_BINARY || path.join(root, 'build', 'cuda-emu', 'fusedce_cuda.node');
  } else {
    delete process.env.FUSEDCE_CUDA_BINARY;
  }
  process.env.FUSEDCE_DEVICE = 'cuda';
  return { onGpu, label: onGpu ? 'cuda (GPU)' : 'cuda (CPU emulation of the kernels: indexing and reductions, not speed)' };
}
