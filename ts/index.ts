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
  type CudaDeviceLossResult,
  type CrossEntropyStats,
  type Reliability,
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
  type JsDivergenceOptions,
  jsDivergenceForward,
  jsDivergenceForwardAsync,
  entropy,
  entropyAsync,
  type EntropyForwardOptions,
  type EntropyResult,
  entropyForward,
  entropyForwardAsync,
  type EntropyOptions,
  type CudaKlResult,
} from './soft_cross_entropy';
export { type CudaSoftResult } from './soft_cuda';
export {
  type BinaryCrossEntropyOptions,
  type BinaryCrossEntropyResult,
  type CudaBinaryCrossEntropyResult,
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
export { type FusedceInfo, info } from './info';
export { type ReliabilityDiagramOptions, reliabilityDiagramSvg } from './reliability';
export { type FitTemperatureOptions, type FitTemperatureResult, fitTemperature, fitTemperatureAsync } from './temperature';
import { native } from './binding';
import { resolveDevice } from './cuda';

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

