// info(): what this installation of fusedce runs on, for bug reports and `npx fusedce info`:
// the version, the CPU kernels and features, the files the native code was loaded from, and the
// CUDA variant's state with the reason when it cannot be used. Never throws for a missing CUDA
// variant or driver (the CPU addon must load).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native, nativePath, packageRoot } from './binding';
import { cudaCacheDir, loadCuda } from './cuda_binding';
import { cuda, getDevice } from './cuda';

export interface FusedceInfo {
  version: string;
  node: string;
  napiVersion: number;
  platform: string;
  /** The package's folder. */
  root: string;
  cpu: { model: string; kernels: 'avx512' | 'avx2' | 'scalar'; avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean; avx512bf16: boolean; threads: number };
  /** The CPU addon's file (a prebuild under prebuilds/, or build/Release from a source build). */
  nativeBinary: string;
  cuda: {
    /** Whether calls can run on a GPU (a real one; the CPU emulation counts too). */
    available: boolean;
    /** Why not ('' when available). */
    reason: string;
    /** The CUDA variant's file, or null when none was found. */
    binary: string | null;
    /** Where `npx fusedce build-cuda` puts the variant for an installed package. */
    cacheDir: string;
    device: ReturnType<typeof cuda.deviceInfo> | null;
  };
  /** The default device for host arrays (setDevice / FUSEDCE_DEVICE / 'auto'). */
  defaultDevice: string;
}

export function info(): FusedceInfo {
  const root = packageRoot();
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  const b = native();
  const l = loadCuda();
  const available = cuda.isAvailable();
  return {
    version: pkg.version,
    node: process.version,
    napiVersion: b.napiVersion,
    platform: `${process.platform}-${process.arch}`,
    root,
    cpu: { model: os.cpus()[0]?.model ?? 'unknown', kernels: b.backend(), ...b.cpuFeatures(), threads: b.hardwareThreads() },
    nativeBinary: nativePath(),
    cuda: {
      available,
      reason: cuda.unavailableReason(),
      binary: l.binding ? l.from : null,
      cacheDir: cudaCacheDir(),
      device: available ? cuda.deviceInfo() : null,
    },
    defaultDevice: getDevice(),
  };
}
