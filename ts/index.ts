// fusedce: fused softmax cross-entropy from logits.
export { type DType, bf16, f16 } from './dtype';
export { type Logits, logits, MAX_VOCAB } from './logits';
export {
  type Reduction,
  type CrossEntropyOptions,
  type CrossEntropyForwardOptions,
  type CrossEntropyBackwardOptions,
  type CrossEntropyResult,
  crossEntropyForward,
  crossEntropyForwardAsync,
  crossEntropyBackward,
  crossEntropyBackwardAsync,
} from './cross_entropy';
import { native } from './binding';

/** The kernels in use: 'avx2' or 'scalar' (CPU). FUSEDCE_ISA=scalar forces the portable kernels. */
export function backend(): 'avx2' | 'scalar' {
  return native().backend();
}

/** CPU features seen by CPUID, and the hardware thread count. */
export function cpuInfo(): { avx2: boolean; fma: boolean; f16c: boolean; threads: number } {
  return { ...native().cpuFeatures(), threads: native().hardwareThreads() };
}
