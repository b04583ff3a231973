// The raw CUDA binding (cuda/addon.cpp), typed separately from the facade, and its loader.
//
// Where it comes from, in order (scripts/build-cuda.cjs writes to the same places):
//   1. FUSEDCE_CUDA_BINARY: a path to a .node file (the CUDA build, or the CPU-emulated build the
//      tests use);
//   2. FUSEDCE_CUDA_DIR/fusedce_cuda.node;
//   3. the package's cuda/ folder through node-gyp-build (cuda/build/Release/fusedce_cuda.node
//      from `npm run build:cuda` in a clone, or cuda/prebuilds/…);
//   4. the user cache, where `npx fusedce build-cuda` puts it for an installed package (outside
//      node_modules, so `npm ci` keeps it): ${XDG_CACHE_HOME:-~/.cache}/fusedce/<version>-napi<N>-<platform>-<arch>/.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from './binding';

export interface NativeDeviceBuffer {
  readonly bytes: number;
  readonly disposed: boolean;
  readonly owned: boolean;
  readonly address: bigint;
  /** the CUDA device it lives on */
  readonly device: number;
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
  /** a cudaStream_t (0n or absent: the default stream) */
  stream?: bigint;
  // the loss options (cuda/cross_entropy_options.cuh); absent: the plain kernels
  labelSmoothing?: number;
  /** device (vocab,) f32 class weights */
  weight?: NativeDeviceBuffer;
  zLoss?: number;
  logitScale?: number;
  softcap?: number;
  focalGamma?: number;
}
export interface CudaForwardRequest extends CudaRequest {
  losses: NativeDeviceBuffer;
  lse: NativeDeviceBuffer;
  grad: NativeDeviceBuffer | null;
  gradDtype: number;
  gradOutput: number;
  /** device (1,) f32: the reduced loss is written there and the call does not wait */
  deviceLoss?: NativeDeviceBuffer;
}
export interface CudaBackwardRequest extends CudaRequest {
  lse: NativeDeviceBuffer;
  gradOutput: number;
  gradOutputRows: NativeDeviceBuffer | null;
  grad: NativeDeviceBuffer;
  gradDtype: number;
}

/** loss as reduced (mean: Σ ce / weightSum + Σ zl / count), lossSum = Σ loss_i, the z part reduced alone, Σ w[target] (count without weights). */
export interface CudaForwardTotals {
  loss: number;
  lossSum: number;
  count: number;
  zLoss: number;
  weightSum: number;
}

export interface NativeCudaBinding {
  DeviceBuffer: new (bytes: number, address?: bigint) => NativeDeviceBuffer;
  // One request object per call (cpp/glue.h, shared with the CPU glue): device buffers and numbers.
  crossEntropyForward(req: CudaForwardRequest & { async: false }): CudaForwardTotals;
  crossEntropyForward(req: CudaForwardRequest & { async: true }): Promise<CudaForwardTotals>;
  crossEntropyBackward(req: CudaBackwardRequest & { async: false }): { count: number };
  crossEntropyBackward(req: CudaBackwardRequest & { async: true }): Promise<{ count: number }>;
  /** soft CE, KL, entropy, JSD (cuda/soft_cross_entropy.cuh): see cuda/addon.cpp SoftForward / SoftBackward */
  softForward(req: Record<string, unknown> & { async: boolean }): { loss: number; lossSum: number; count: number } | Promise<{ loss: number; lossSum: number; count: number }>;
  softBackward(req: Record<string, unknown> & { async: boolean }): { count: number } | Promise<{ count: number }>;
  /** binary CE (cuda/binary_cross_entropy.cuh): see cuda/addon.cpp BinaryCrossEntropy */
  binaryCrossEntropy(req: Record<string, unknown> & { async: boolean }): { loss: number; lossSum: number; count: number } | Promise<{ loss: number; lossSum: number; count: number }>;
  /** driver: false when there is no NVIDIA driver at all (absent in builds before it was reported: treated as true). */
  probe(): { ok: boolean; count: number; reason: string; driver?: boolean };
  deviceInfo(device?: number): {
    name: string; multiprocessors: number; computeCapability: string; totalMemory: number; freeMemory: number;
    l2Bytes: number; sharedMemoryPerBlock: number; emulated: boolean; index: number;
  };
  deviceCount(): number;
  getDevice(): number;
  setDevice(device: number): void;
  createStream(device?: number): bigint;
  destroyStream(stream: bigint): void;
  synchronize(stream?: bigint): void;
  napiVersion: number;
}

type Loaded = { binding: NativeCudaBinding; from: string } | { binding: null; error: string; tried: string };
let loaded: Loaded | undefined;

/** The user-cache folder of this version's CUDA variant (the rule of scripts/build-cuda.cjs). */
export function cudaCacheDir(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string; binary: { napi_versions: number[] } };
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'fusedce', `${pkg.version}-napi${pkg.binary.napi_versions[0]}-${process.platform}-${process.arch}`);
}

/** The .node files the loader would try, in order, that exist (the first one loads). */
function candidates(): string[] {
  const c: string[] = [];
  if (process.env.FUSEDCE_CUDA_DIR) c.push(path.join(path.resolve(process.env.FUSEDCE_CUDA_DIR), 'fusedce_cuda.node'));
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    c.push((require('node-gyp-build') as { resolve(d: string): string }).resolve(path.join(packageRoot(), 'cuda')));
  } catch {
    /* nothing in the package */
  }
  c.push(path.join(cudaCacheDir(), 'fusedce_cuda.node'));
  return c.filter((f) => fs.existsSync(f));
}

/** The CUDA binding, or why it is not there (never throws). */
export function loadCuda(): Loaded {
  if (loaded) return loaded;
  const explicit = process.env.FUSEDCE_CUDA_BINARY;
  const file = explicit ? path.resolve(explicit) : candidates()[0];
  try {
    if (!file) throw new Error('no fusedce_cuda.node was found');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = { binding: require(file) as NativeCudaBinding, from: file };
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0] ?? String(e);
    const dir = path.join(packageRoot(), 'cuda');
    loaded = { binding: null, error: msg, tried: file ?? `${dir}/build/Release, ${dir}/prebuilds, ${cudaCacheDir()}` };
  }
  return loaded;
}

/** Whether a CUDA binary file exists where the loader looks (a failed load then deserves a line). */
export function cudaBinaryPresent(): boolean {
  const explicit = process.env.FUSEDCE_CUDA_BINARY;
  return explicit ? fs.existsSync(path.resolve(explicit)) : candidates().length > 0;
}
