// The raw native binding (cpp/addon.cpp), typed separately from the public facade, and its lazy
// loader. Loading is deferred to the first call that needs a kernel, so conversions and argument
// checks work (and load errors surface) with a clear message.
import * as fs from 'node:fs';
import * as path from 'node:path';

type Data = Float32Array | Uint16Array;

export interface NativeForwardResult {
  losses: Float32Array;
  lse: Float32Array;
  lossSum: number;
  count: number;
  grad?: Data;
}

/** Cross-entropy options of the general kernel (cpp/cross_entropy_options.cpp); null: the plain kernel. */
export interface NativeCeOptions {
  labelSmoothing: number;
  weight: Float32Array | null;
  zLoss: number;
  logitScale: number;
  softcap: number;
}

export interface NativeForwardOptResult extends NativeForwardResult {
  ceSum?: number;
  zSum?: number;
  weightSum?: number;
  argmax?: Int32Array;
  entropy?: Float32Array;
  targetLogprob?: Float32Array;
  maxProb?: Float32Array;
}

export interface NativeSoftResult {
  losses: Float32Array;
  lse: Float32Array;
  lossSum: number;
  count: number;
  grad?: Data;
}

/** The arguments softForward and softBackward share. targetDtype −1: f32 probabilities. */
type SoftShared = [
  logits: Data, dtype: number, rows: number, vocab: number, target: Data, targetDtype: number, op: number,
  invTemperature: number, lossFactor: number, reduction: number, threads: number,
];

export interface NativeBinding {
  crossEntropyForward(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Int32Array, ignoreIndex: number,
    reduction: number, threads: number, withGrad: boolean, gradDtype: number, gradOut: Data | null,
    gradOutput: number, async: false, options?: NativeCeOptions | null, stats?: boolean,
  ): NativeForwardOptResult;
  crossEntropyForward(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Int32Array, ignoreIndex: number,
    reduction: number, threads: number, withGrad: boolean, gradDtype: number, gradOut: Data | null,
    gradOutput: number, async: true, options?: NativeCeOptions | null, stats?: boolean,
  ): Promise<NativeForwardOptResult>;
  softForward(...args: [...SoftShared, withGrad: boolean, gradDtype: number, gradOut: Data | null, gradOutput: number, async: false]): NativeSoftResult;
  softForward(...args: [...SoftShared, withGrad: boolean, gradDtype: number, gradOut: Data | null, gradOutput: number, async: true]): Promise<NativeSoftResult>;
  softBackward(...args: [...SoftShared, lse: Float32Array, gradOutput: number, gradOutputRows: Float32Array | null, gradDtype: number, gradOut: Data | null, async: false]): Data;
  softBackward(...args: [...SoftShared, lse: Float32Array, gradOutput: number, gradOutputRows: Float32Array | null, gradDtype: number, gradOut: Data | null, async: true]): Promise<Data>;
  entropy(logits: Data, dtype: number, rows: number, vocab: number, invTemperature: number, threads: number, async: false): Float32Array;
  entropy(logits: Data, dtype: number, rows: number, vocab: number, invTemperature: number, threads: number, async: true): Promise<Float32Array>;
  binaryCrossEntropy(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Float32Array, posWeight: number | Float32Array,
    weight: Float32Array | null, reduction: number, threads: number, withGrad: boolean, gradDtype: number,
    gradOut: Data | null, gradOutput: number, async: boolean,
  ): { lossSum: number; count: number; losses?: Float32Array; grad?: Data } | Promise<{ lossSum: number; count: number; losses?: Float32Array; grad?: Data }>;
  crossEntropyBackward(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Int32Array, ignoreIndex: number,
    reduction: number, threads: number, lse: Float32Array, gradOutput: number, gradOutputRows: Float32Array | null,
    gradDtype: number, gradOut: Data | null, async: false, options?: NativeCeOptions | null,
  ): Data;
  crossEntropyBackward(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Int32Array, ignoreIndex: number,
    reduction: number, threads: number, lse: Float32Array, gradOutput: number, gradOutputRows: Float32Array | null,
    gradDtype: number, gradOut: Data | null, async: true, options?: NativeCeOptions | null,
  ): Promise<Data>;
  backend(): 'scalar' | 'avx2' | 'avx512';
  /** y = exp(x) with the active kernels' exp, `repeat` times (tests and the benchmark's exp ceiling). */
  expKernel(x: Float32Array, y: Float32Array, repeat: number): void;
  /** The pool's exp over per-thread L1-resident buffers; returns the elements done (the benchmark's exp ceiling). */
  expCeilingKernel(repeat: number, threads: number): number;
  /** A streaming read of data over `threads` threads (the benchmark's read-bandwidth ceiling). */
  readKernel(data: ArrayBufferView, threads: number): number;
  cpuFeatures(): { avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean; avx512bf16: boolean };
  hardwareThreads(): number;
  napiVersion: number;
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

export function native(): NativeBinding {
  if (cached) return cached;
  const root = packageRoot();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require('node-gyp-build')(root) as NativeBinding;
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
