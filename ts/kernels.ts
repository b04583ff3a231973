// fusedce/kernels: the CPU kernels' building blocks, for accuracy checks and benchmarks (the exp
// the kernels use, the exp and read-bandwidth ceilings). Not part of the main export.
import { native } from './binding';
import { checkInteger, rangeError, typeError } from './errors';
import { cpuInfo } from './index';

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
