// The raw CUDA binding (cuda/addon.cpp), typed separately from the facade, and its loader.
//
// Where it comes from, in order: FUSEDCE_CUDA_BINARY (a path to a .node file: the CUDA build, or
// the CPU-emulated build the tests use), else the package's cuda/ folder through node-gyp-build
// (cuda/build/Release/fusedce_cuda.node from `npm run build:cuda`, or cuda/prebuilds/…).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from './binding';

export interface NativeDeviceBuffer {
  readonly bytes: number;
  readonly disposed: boolean;
  readonly owned: boolean;
  readonly address: bigint;
  dispose(): void;
  upload(src: ArrayBufferView, byteOffset?: number): void;
  download<T extends ArrayBufferView>(dst: T, byteOffset?: number): T;
  copyFrom(src: NativeDeviceBuffer): void;
}

interface CudaRequest {
  fn?: string;
  logits: NativeDeviceBuffer;
  dtype: number;
  rows: number;
  vocab: number;
  targets: NativeDeviceBuffer;
  ignoreIndex: number;
  reduction: number;
}
export interface CudaForwardRequest extends CudaRequest {
  losses: NativeDeviceBuffer;
  lse: NativeDeviceBuffer;
  grad: NativeDeviceBuffer | null;
  gradDtype: number;
  gradOutput: number;
}
export interface CudaBackwardRequest extends CudaRequest {
  lse: NativeDeviceBuffer;
  gradOutput: number;
  gradOutputRows: NativeDeviceBuffer | null;
  grad: NativeDeviceBuffer;
  gradDtype: number;
}

export interface NativeCudaBinding {
  DeviceBuffer: new (bytes: number, address?: bigint) => NativeDeviceBuffer;
  // One request object per call (cpp/glue.h, shared with the CPU glue): device buffers and numbers.
  crossEntropyForward(req: CudaForwardRequest & { async: false }): { loss: number; lossSum: number; count: number };
  crossEntropyForward(req: CudaForwardRequest & { async: true }): Promise<{ loss: number; lossSum: number; count: number }>;
  crossEntropyBackward(req: CudaBackwardRequest & { async: false }): { count: number };
  crossEntropyBackward(req: CudaBackwardRequest & { async: true }): Promise<{ count: number }>;
  probe(): { ok: boolean; count: number; reason: string };
  deviceInfo(): {
    name: string; multiprocessors: number; computeCapability: string; totalMemory: number; freeMemory: number;
    l2Bytes: number; sharedMemoryPerBlock: number; emulated: boolean;
  };
  napiVersion: number;
}

type Loaded = { binding: NativeCudaBinding; from: string } | { binding: null; error: string; tried: string };
let loaded: Loaded | undefined;

/** The CUDA binding, or why it is not there (never throws). */
export function loadCuda(): Loaded {
  if (loaded) return loaded;
  const explicit = process.env.FUSEDCE_CUDA_BINARY;
  const root = packageRoot();
  const dir = path.join(root, 'cuda');
  try {
    if (explicit) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      loaded = { binding: require(path.resolve(explicit)) as NativeCudaBinding, from: path.resolve(explicit) };
    } else {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const ngb = require('node-gyp-build') as { (d: string): unknown; resolve(d: string): string };
      const file = ngb.resolve(dir);
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      loaded = { binding: require(file) as NativeCudaBinding, from: file };
    }
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0] ?? String(e);
    loaded = { binding: null, error: msg, tried: explicit ? path.resolve(explicit) : `${dir}/build/Release, ${dir}/prebuilds` };
  }
  return loaded;
}

/** Whether a CUDA binary file exists where the loader looks (a failed load then deserves a line). */
export function cudaBinaryPresent(): boolean {
  if (process.env.FUSEDCE_CUDA_BINARY) return true;
  const dir = path.join(packageRoot(), 'cuda');
  return fs.existsSync(path.join(dir, 'build', 'Release', 'fusedce_cuda.node')) || fs.existsSync(path.join(dir, 'prebuilds'));
}
