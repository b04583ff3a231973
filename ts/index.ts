// fusedce: fused softmax cross-entropy from logits.
export { type DType, bf16, f16 } from './dtype';
export { type Logits, type DataOf, logits, MAX_VOCAB } from './logits';
export {
  type Reduction,
  type CrossEntropyOptions,
  type CrossEntropyForwardOptions,
  type CrossEntropyBackwardOptions,
  type CrossEntropyResult,
  type CudaCrossEntropyResult,
  type CrossEntropyStats,
  type CrossEntropyResultFor,
  type GradDtypeOf,
  crossEntropyForward,
  crossEntropyForwardAsync,
  crossEntropyBackward,
  crossEntropyBackwardAsync,
} from './cross_entropy';
export {
  type SoftCrossEntropyOptions,
  type SoftCrossEntropyBackwardOptions,
  type KlDivergenceOptions,
  type SoftResult,
  type KlResult,
  softCrossEntropyForward,
  softCrossEntropyForwardAsync,
  softCrossEntropyBackward,
  softCrossEntropyBackwardAsync,
  klDivergenceForward,
  klDivergenceForwardAsync,
  entropy,
  entropyAsync,
} from './soft_cross_entropy';
export {
  type BinaryCrossEntropyOptions,
  type BinaryCrossEntropyResult,
  binaryCrossEntropyWithLogits,
  binaryCrossEntropyWithLogitsAsync,
} from './binary_cross_entropy';
export {
  type GradcheckOptions,
  type GradcheckReport,
  type GradcheckElement,
  type GradcheckFn,
  type GradcheckOp,
  type GradcheckOpOptions,
  type GradcheckOpReport,
  GRADCHECK_OPS,
  gradcheck,
  gradcheckOp,
} from './gradcheck';
export {
  type Device,
  type CudaDeviceInfo,
  DeviceLogits,
  DeviceTargets,
  DeviceVector,
  cuda,
  getDevice,
  setDevice,
} from './cuda';
import { native } from './binding';
import { resolveDevice } from './cuda';
import { checkInteger, rangeError, typeError } from './errors';

/**
 * Where calls with host arrays run by default: 'cuda' when the default device (setDevice,
 * FUSEDCE_DEVICE, 'auto') resolves to the GPU, else the CPU kernels in use (cpuBackend()).
 */
export function backend(): 'cuda' | 'avx512' | 'avx2' | 'scalar' {
  return resolveDevice('backend', undefined) === 'cuda' ? 'cuda' : native().backend();
}

/**
 * The CPU kernels in use: 'avx512' (AVX-512 F/BW/VL/DQ; where the CPU also has AVX512_BF16, a
 * bf16 gradient is narrowed by its conversion instruction), 'avx2' (AVX2 + FMA + F16C) or
 * 'scalar', the best the CPU has. FUSEDCE_ISA=avx512 (no AVX512_BF16), FUSEDCE_ISA=avx2 or
 * FUSEDCE_ISA=scalar, set before the first call, asks for a lower one (avx512 with or without
 * AVX512_BF16 and avx2 give bitwise identical results; scalar differs by its exp).
 */
export function cpuBackend(): 'avx512' | 'avx2' | 'scalar' {
  return native().backend();
}

/** CPU features seen by CPUID, and the hardware thread count. */
export function cpuInfo(): { avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean; avx512bf16: boolean; threads: number } {
  return { ...native().cpuFeatures(), threads: native().hardwareThreads() };
}

/** The CPU kernels' building blocks, for accuracy checks and benchmarks. */
export const kernels = {
  /**
   * out = exp(x) computed with the exp the active CPU kernels use (vectorised on AVX2 and AVX-512,
   * expf on the scalar path), `repeat` times over the same data (a benchmark keeps x in L1 to measure the
   * machine's exp ceiling). Returns `out`.
   */
  exp(x: Float32Array, out: Float32Array = new Float32Array(x.length), repeat = 1): Float32Array {
    if (!(x instanceof Float32Array)) throw typeError('kernels.exp', 'x', 'a Float32Array', x);
    if (!(out instanceof Float32Array)) throw typeError('kernels.exp', 'out', 'a Float32Array', out);
    if (out.length !== x.length) throw rangeError('kernels.exp', 'out', `of length x.length (${x.length})`, out);
    native().kernels.exp(x, out, checkInteger('kernels.exp', 'repeat', repeat, 1, 1e9));
    return out;
  },
  /**
   * The pool's exp throughput: every one of `threads` threads exponentiates its own L1-resident
   * buffer of 4096 floats (in [−20, 0]) `repeat` times (rounded up to a multiple of 16), with
   * the exp the active CPU kernels use, in tasks claimed from the pool as a forward's rows are.
   * Returns the number of elements exponentiated; time the call for the benchmark's exp ceiling
   * at that thread count (on a shared or SMT machine, 2 threads rarely give twice 1 thread's).
   */
  expCeiling(repeat = 256, threads: number = cpuInfo().threads): number {
    return native().kernels.expCeiling(
      checkInteger('kernels.expCeiling', 'repeat', repeat, 1, 1e9),
      checkInteger('kernels.expCeiling', 'threads', threads, 1, 65536),
    );
  },
  /**
   * Reads every byte of `data` once (a streaming sum over `threads` threads of the pool), for the
   * benchmark's read-bandwidth ceiling. Returns a checksum (the low 32 bits of the sum of the
   * 64-bit words; trailing bytes past a multiple of 8 are not read).
   */
  read(data: ArrayBufferView, threads: number = cpuInfo().threads): number {
    if (!ArrayBuffer.isView(data) || data instanceof DataView) throw typeError('kernels.read', 'data', 'a typed array', data);
    if (data.byteOffset % 8 !== 0) throw rangeError('kernels.read', 'data', 'starting at a multiple of 8 bytes', data.byteOffset);
    return native().kernels.read(data, checkInteger('kernels.read', 'threads', threads, 1, 65536));
  },
};
