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

export interface NativeBinding {
  crossEntropyForward(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Int32Array, ignoreIndex: number,
    reduction: number, threads: number, withGrad: boolean, gradDtype: number, gradOut: Data | null,
    gradOutput: number, async: false,
  ): NativeForwardResult;
  crossEntropyForward(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Int32Array, ignoreIndex: number,
    reduction: number, threads: number, withGrad: boolean, gradDtype: number, gradOut: Data | null,
    gradOutput: number, async: true,
  ): Promise<NativeForwardResult>;
  crossEntropyBackward(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Int32Array, ignoreIndex: number,
    reduction: number, threads: number, lse: Float32Array, gradOutput: number, gradOutputRows: Float32Array | null,
    gradDtype: number, gradOut: Data | null, async: false,
  ): Data;
  crossEntropyBackward(
    logits: Data, dtype: number, rows: number, vocab: number, targets: Int32Array, ignoreIndex: number,
    reduction: number, threads: number, lse: Float32Array, gradOutput: number, gradOutputRows: Float32Array | null,
    gradDtype: number, gradOut: Data | null, async: true,
  ): Promise<Data>;
  backend(): 'scalar' | 'avx2' | 'avx512';
  /** y = exp(x) with the active kernels' exp, `repeat` times (tests and the benchmark's exp ceiling). */
  expKernel(x: Float32Array, y: Float32Array, repeat: number): void;
  /** A streaming read of data over `threads` threads (the benchmark's read-bandwidth ceiling). */
  readKernel(data: ArrayBufferView, threads: number): number;
  cpuFeatures(): { avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean };
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
