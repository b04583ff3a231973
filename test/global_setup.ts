// Once before all test files: build the CPU-emulated CUDA addon (build/cuda-emu/), so that test
// files running in parallel never build it concurrently. Up to date, this is a no-op.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, ['scripts/build-cuda-emu.cjs'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}
