// The CUDA variant's build, on any machine: every .cu file compiles with nvcc for each target
// architecture (when nvcc is installed; CI has it), the kernel check harness passes on the CPU
// emulation of the kernels (indexing, tails, reductions, merges — not speed), and without nvcc
// `npm run build:cuda` says "skipped" and exits 0.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' }).status === 0;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedce-cuda-'));
const cuFiles = fs.readdirSync(path.join(root, 'cuda')).filter((f) => f.endsWith('.cu'));

describe('CUDA sources', () => {
  it('there are .cu files to build', () => {
    expect(cuFiles).toContain('cross_entropy.cu');
  });
  for (const f of cuFiles) {
    it.runIf(nvcc)(`${f} compiles with nvcc for sm_80, sm_89, sm_90a and compute_90 PTX (no spills)`, () => {
      const r = spawnSync('nvcc', ['-std=c++17', '-O3', '-c', '-Xptxas', '-v',
        '-gencode=arch=compute_80,code=sm_80', '-gencode=arch=compute_89,code=sm_89',
        '-gencode=arch=compute_90a,code=sm_90a', '-gencode=arch=compute_90,code=compute_90',
        path.join(root, 'cuda', f), '-o', path.join(tmp, f + '.o')], { encoding: 'utf8' });
      expect(r.stderr.split('\n').filter((l) => /error/.test(l))).toEqual([]);
      expect(r.status).toBe(0);
      // ptxas reports every kernel's registers; none may spill to local memory
      const spills = r.stderr.split('\n').filter((l) => /[1-9]\d* bytes spill (stores|loads)/.test(l));
      expect(spills).toEqual([]);
    }, 600_000);
  }

  it('the kernel check passes on the CPU emulation of the kernels (indexing and reductions, not speed)', () => {
    const exe = path.join(tmp, 'kernel_check');
    execFileSync(process.env.CXX || 'g++', ['-std=c++17', '-O2', '-x', 'c++', 'cuda/cross_entropy.cu', '-x', 'none',
      'cuda/emu/emu.cpp', 'cuda/test/kernel_check.cpp', '-o', exe], { cwd: root, stdio: 'inherit' });
    const r = spawnSync(exe, [], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/^device: fusedce CUDA emulation/);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([]);
    expect(r.stdout).toMatch(/PASS: 0 failure\(s\)/);
    expect(r.status).toBe(0);
  }, 300_000);

  it('npm run build:cuda without nvcc says the CUDA variant is skipped and exits 0', () => {
    const r = spawnSync(process.execPath, ['scripts/build-cuda.cjs'], {
      cwd: root, encoding: 'utf8', env: { ...process.env, CUDACXX: path.join(tmp, 'no-nvcc-here') },
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/CUDA variant skipped: nvcc \(the CUDA toolkit\) was not found/);
  });
});
