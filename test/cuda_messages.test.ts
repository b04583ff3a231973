// What a CUDA-less machine says. A stand-in CUDA binding (FUSEDCE_CUDA_BINARY, a JS module whose
// probe() answers as the real variant does) plays each state in a fresh process:
//   - no driver at all (probe().driver false): 'auto' stays quiet and runs on the CPU;
//     setDevice('cuda') throws at once, and the first fix is not "build the CUDA variant";
//   - a driver that fails (too old): 'auto' says so once on stderr;
//   - no variant built: the first fix is `npx fusedce build-cuda`.
// When this machine has a real CUDA build and no driver, the real variant is checked too.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedce-cudamsg-'));

function fakeBinding(name: string, probe: object): string {
  const file = path.join(tmp, `${name}.js`);
  fs.writeFileSync(file, `module.exports = { probe: () => (${JSON.stringify(probe)}), deviceInfo() { throw new Error('no device'); }, napiVersion: 8 };\n`);
  return file;
}

const SCRIPT = `
const f = require(${JSON.stringify(root)});
const z = f.logits(new Float32Array(8), 2, 4), t = Int32Array.from([0, 1]);
const out = { auto: f.crossEntropyForward(z, t).loss };
try { f.setDevice('cuda'); out.setDevice = 'no error'; } catch (e) { out.setDevice = e.message; }
out.device = f.getDevice();
out.info = f.info().cuda;
console.log(JSON.stringify(out));
`;

function run(env: Record<string, string>) {
  const e: Record<string, string> = { ...process.env, ...env } as Record<string, string>;
  delete e.FUSEDCE_DEVICE; // 'auto', as a user's process starts
  const r = spawnSync(process.execPath, ['-e', SCRIPT], { encoding: 'utf8', env: e });
  expect(r.status, r.stderr).toBe(0);
  return { ...JSON.parse(r.stdout.trim().split('\n').at(-1)!), stderr: r.stderr };
}

describe('CUDA messages on a machine where CUDA cannot work', () => {
  it('no NVIDIA driver: auto is quiet, setDevice("cuda") throws at once, no "build the CUDA variant" first', () => {
    const reason = 'no NVIDIA driver / no GPU: libcuda.so.1 (the driver) is not installed (cudaGetDeviceCount: cudaErrorInsufficientDriver)';
    const r = run({ FUSEDCE_CUDA_BINARY: fakeBinding('nodriver', { ok: false, count: 0, reason, driver: false }) });
    expect(r.auto).toBeCloseTo(Math.log(4), 6);
    expect(r.stderr).toBe('');
    expect(r.setDevice).toContain(`device 'cuda' cannot be used: ${reason}`);
    const fixes = r.setDevice.split('\n').filter((l: string) => l.startsWith('  - '));
    expect(fixes[0]).toMatch(/no NVIDIA driver: run on a machine with an NVIDIA GPU/);
    expect(r.setDevice).not.toMatch(/build the CUDA variant|npm run/);
    expect(r.device).toBe('auto'); // the failed setDevice changed nothing
    expect(r.info).toMatchObject({ available: false, reason, device: null });
  });

  it('a driver that cannot run the variant: auto says so once on stderr; the first fix is the driver', () => {
    const reason = 'CUDA error cudaErrorInsufficientDriver (CUDA driver version is insufficient for CUDA runtime version) in cudaGetDeviceCount';
    const r = run({ FUSEDCE_CUDA_BINARY: fakeBinding('olddriver', { ok: false, count: 0, reason, driver: true }) });
    expect(r.stderr.trim().split('\n')).toEqual([`fusedce: the CUDA variant cannot be used (${reason}); running on the CPU`]);
    expect(r.setDevice.split('\n').find((l: string) => l.startsWith('  - '))).toMatch(/nvidia-smi .*update the driver/);
  });

  it('no CUDA variant: auto is quiet; the first fix is npx fusedce build-cuda', () => {
    const r = run({ FUSEDCE_CUDA_BINARY: path.join(tmp, 'not-built.node') });
    expect(r.stderr).toBe('');
    expect(r.setDevice).toMatch(/the CUDA variant is not built or does not load/);
    expect(r.setDevice.split('\n').find((l: string) => l.startsWith('  - '))).toMatch(/build the CUDA variant: npx fusedce build-cuda/);
    expect(r.info.binary).toBeNull();
  });

  const real = path.join(root, 'cuda', 'build', 'Release', 'fusedce_cuda.node');
  const noDriver = !fs.existsSync('/proc/driver/nvidia/version');
  it.runIf(fs.existsSync(real) && noDriver)('the real CUDA variant built here, without a driver, reports "no NVIDIA driver" and stays quiet', () => {
    const r = run({ FUSEDCE_CUDA_BINARY: real });
    expect(r.stderr).toBe('');
    expect(r.info.reason).toMatch(/^no NVIDIA driver \/ no GPU: libcuda\.so\.1/);
    expect(r.setDevice).toMatch(/no NVIDIA driver: run on a machine with an NVIDIA GPU/);
  });
});
