// The raw native binding (cpp/addon.cpp), typed separately from the public facade, and its lazy
// loader. Loading is deferred to the first call that needs a kernel, so conversions and argument
// checks work (and load errors surface) with a clear message.
import * as fs from 'node:fs';
import * as path from 'node:path';

type Data = Float32Array | Uint16Array;

// Every native op takes one request object (cpp/glue.h): the native glue reads each field once,
// then validates the values it read; dtype codes are f32 = 0, f16 = 1, bf16 = 2, reductions
// mean = 0, sum = 1, none = 2. `fn` names the user-facing function in error messages. `out`
// is the caller's gradient destination (null: the native side allocates a fresh one).

interface MatrixRequest {
  fn?: string;
  logits: Data;
  dtype: number;
  rows: number;
  vocab: number;
  threads: number;
}

interface GradRequest {
  withGrad?: boolean;
  gradDtype?: number;
  out?: Data | null;
  gradOutput?: number;
}

/** Cross-entropy options of the general kernel (cpp/cross_entropy_options.cpp); absent: the plain kernel. */
export interface NativeCeOptions {
  labelSmoothing?: number;
  weight?: Float32Array | null;
  zLoss?: number;
  logitScale?: number;
  softcap?: number;
  focalGamma?: number;
}

export interface NativeCeRequest extends MatrixRequest, NativeCeOptions {
  targets: Int32Array;
  ignoreIndex: number;
  reduction: number;
}

export interface NativeForwardRequest extends NativeCeRequest, GradRequest {
  stats?: boolean;
  /** a per-row upstream gradient for the fused gradient (reduction 'none'), or null */
  gradOutputRows?: Float32Array | null;
  /** also return the row losses in double (losses64) */
  losses64?: boolean;
}

export interface NativeForwardResult {
  /** The reduced loss (fusedce.h: mean divides the cross-entropy part by weightSum, the z part by count). */
  loss: number;
  lossSum: number;
  count: number;
  /** Σ weight[target] over counted rows (count without weights). */
  weightSum: number;
  /** The z-loss part of loss, reduced the same way (0 without zLoss). */
  zLoss: number;
  losses: Float32Array;
  lse: Float32Array;
  /** with losses64: the row losses in double (0 at ignored rows) */
  losses64?: Float64Array;
  grad?: Data;
  argmax?: Int32Array;
  entropy?: Float32Array;
  targetLogprob?: Float32Array;
  maxProb?: Float32Array;
}

export interface NativeBackwardRequest extends NativeCeRequest {
  lse: Float32Array;
  gradOutput: number;
  gradOutputRows?: Float32Array | null;
  gradDtype: number;
  out?: Data | null;
}

/** softForward / softBackward. targetDtype −1: f32 probabilities; op 0 soft CE, 1 KL forward, 2 KL reverse. */
interface NativeSoftShared extends MatrixRequest {
  target: Data;
  targetDtype: number;
  op: number;
  invTemperature: number;
  lossFactor: number;
  reduction: number;
  /** probability targets only */
  labelSmoothing?: number;
  weight?: Float32Array;
}
export interface NativeSoftForwardRequest extends NativeSoftShared, GradRequest {}
export interface NativeSoftBackwardRequest extends NativeSoftShared {
  lse: Float32Array;
  gradOutput: number;
  gradOutputRows?: Float32Array | null;
  gradDtype: number;
  out?: Data | null;
}
export interface NativeSoftResult {
  loss: number;
  lossSum: number;
  count: number;
  losses: Float32Array;
  lse: Float32Array;
  grad?: Data;
}

export interface NativeEntropyRequest extends MatrixRequest {
  invTemperature: number;
}
export interface NativeJsdRequest extends MatrixRequest, GradRequest {
  target: Data;
  targetDtype: number;
  beta: number;
  invTemperature: number;
  reduction: number;
}
export interface NativeEntropyForwardRequest extends MatrixRequest, GradRequest {
  invTemperature: number;
  reduction: number;
}

export interface NativeBceRequest extends MatrixRequest, GradRequest {
  targets: Float32Array;
  posWeight: number | Float32Array;
  weight?: Float32Array | null;
  reduction: number;
}
export interface NativeBceResult {
  loss: number;
  lossSum: number;
  count: number;
  losses?: Float32Array;
  grad?: Data;
}

/** kind 0 f32 → bf16, 1 f32 → f16, 2 bf16 → f32, 3 f16 → f32. */
export interface NativeConvertRequest {
  fn?: string;
  input: Float32Array | Uint16Array;
  out?: Float32Array | Uint16Array | null;
  kind: number;
  threads: number;
  portable?: boolean;
}

type Op<Req, Res> = {
  (req: Req & { async?: false }): Res;
  (req: Req & { async: true }): Promise<Res>;
};

export interface NativeBinding {
  crossEntropyForward: Op<NativeForwardRequest, NativeForwardResult>;
  crossEntropyBackward: Op<NativeBackwardRequest, { grad: Data; count: number }>;
  softForward: Op<NativeSoftForwardRequest, NativeSoftResult>;
  softBackward: Op<NativeSoftBackwardRequest, { grad: Data; count: number }>;
  entropy: Op<NativeEntropyRequest, { entropy: Float32Array }>;
  entropyForward: Op<NativeEntropyForwardRequest, NativeSoftResult>;
  jsdForward: Op<NativeJsdRequest, NativeSoftResult>;
  binaryCrossEntropy: Op<NativeBceRequest, NativeBceResult>;
  convert(req: NativeConvertRequest): { out: Float32Array | Uint16Array };
  backend(): 'scalar' | 'avx2' | 'avx512';
  /** The kernels' building blocks, for tests and benchmarks (not exported by the package). */
  kernels: {
    /** y = exp(x) with the active kernels' exp, `repeat` times (tests and the benchmark's exp ceiling). */
    exp(x: Float32Array, y: Float32Array, repeat: number): void;
    /** The pool's exp over per-thread L1-resident buffers; returns the elements done (the benchmark's exp ceiling). */
    expCeiling(repeat: number, threads: number): number;
    /** A streaming read of data over `threads` threads (the benchmark's read-bandwidth ceiling). */
    read(data: ArrayBufferView, threads: number): number;
    /** n pool tasks, task failAt throwing std::bad_alloc (tests of parallel_for's exception safety). */
    poolFault(n: number, threads: number, failAt: number): number;
  };
  cpuFeatures(): { avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean; avx512bf16: boolean };
  hardwareThreads(): number;
  napiVersion: number;
  /** Installs the loader's hooks (once): see installHooks below. */
  setHooks(pin: (buffer: ArrayBuffer, name: string) => void, alloc: (bytes: number) => ArrayBuffer): void;
}

/**
 * The two hooks the native glue calls (cpp/glue.h), given to every binding this package loads:
 * - pin(buffer, name), before an async call uses a caller's array in place: a resizable
 *   ArrayBuffer is refused (resize() could decommit the memory the kernel is using), and the
 *   buffer is marked untransferable (worker_threads.markAsUntransferable: a later transfer or
 *   postMessage copies it instead of detaching it). The mark is permanent for that buffer.
 * - alloc(bytes), for every output: Buffer.allocUnsafeSlow's memory, not zero-filled (the kernels
 *   write every element), and a RangeError rather than a process abort when memory runs out.
 *   FUSEDCE_POISON_OUTPUTS=1 fills it with 0xFF bytes (NaN in f32, bf16 and f16) instead, so tests
 *   see any element a kernel failed to write.
 */
export function installHooks(b: { setHooks(pin: (buffer: ArrayBuffer, name: string) => void, alloc: (bytes: number) => ArrayBuffer): void }): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { markAsUntransferable } = require('node:worker_threads') as typeof import('node:worker_threads');
  const resizable = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable')?.get;
  const allocUnsafeSlow = Buffer.allocUnsafeSlow;
  const poison = process.env.FUSEDCE_POISON_OUTPUTS === '1';
  const pin = (buffer: ArrayBuffer, name: string): void => {
    if (resizable && resizable.call(buffer))
      throw new TypeError(`${name} is backed by a resizable ArrayBuffer, which an async call cannot keep valid while it runs ` +
        '(resize() may release its memory). Copy it into a fixed-length array (e.g. arr.slice()), or use the sync function');
    markAsUntransferable(buffer);
  };
  const alloc = (bytes: number): ArrayBuffer => {
    const b = allocUnsafeSlow(bytes);
    if (poison) b.fill(0xff);
    return b.buffer as ArrayBuffer;
  };
  b.setHooks(pin, alloc);
}

/** The package root: the nearest folder above this file whose package.json is fusedce's. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'fusedce') return dir;
      } catch {
        /* keep looking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`fusedce: cannot find the package root above ${__dirname}`);
    dir = up;
  }
}

let cached: NativeBinding | undefined;
let cachedFrom = '';

/** The file the native addon was loaded from (loading it if needed). */
export function nativePath(): string {
  native();
  return cachedFrom;
}

export function native(): NativeBinding {
  if (cached) return cached;
  const root = packageRoot();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    // FUSEDCE_NATIVE_PATH: another build of the addon (the sanitizer build of npm run test:sanitize)
    const file = process.env.FUSEDCE_NATIVE_PATH;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const from = file ? path.resolve(file) : (require('node-gyp-build') as { resolve(d: string): string }).resolve(root);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const b = require(from) as NativeBinding;
    installHooks(b);
    cached = b;
    cachedFrom = from;
  } catch (e) {
    throw new Error(
      `fusedce: could not load the native addon (${(e as Error).message.split('\n')[0]}).\n` +
        'Possible solutions:\n' +
        `  - build it from source: cd ${root} && npm run build:native\n` +
        '  - reinstall so the install step builds it: npm rebuild fusedce\n' +
        '  - make sure a C++17 compiler, make and python3 are installed (Debian/Ubuntu: apt-get install g++ make python3)',
    );
  }
  return cached;
}
