/// <reference lib="esnext.disposable" preserve="true" />
// The CUDA backend in the facade: device selection, device tensors, and the ops on them.
//
// Device tensors own device memory: free it with dispose() (or `using`, through Symbol.dispose);
// a tensor that is garbage-collected without it is freed by its finalizer, and the garbage
// collector is told how much device memory each one holds. Using a disposed tensor throws.
import { type DType, DTYPES, dtypeCode } from './dtype';
import { checkInteger, checkOneOf, rangeError, typeError } from './errors';
import { type Logits, checkLogits, MAX_VOCAB } from './logits';
import { type NativeCudaBinding, type NativeDeviceBuffer, cudaBinaryPresent, loadCuda } from './cuda_binding';

export type Device = 'auto' | 'cpu' | 'cuda';
export const DEVICES: readonly Device[] = ['auto', 'cpu', 'cuda'];

let chosen: Device | undefined;

/** The default device for calls with host arrays: setDevice(), else FUSEDCE_DEVICE, else 'auto'. */
export function getDevice(): Device {
  if (chosen) return chosen;
  const env = process.env.FUSEDCE_DEVICE;
  if (env === undefined || env === '') return 'auto';
  if (!(DEVICES as readonly string[]).includes(env))
    throw new RangeError(`fusedce: FUSEDCE_DEVICE must be 'auto' | 'cpu' | 'cuda', but got '${env}'`);
  return env as Device;
}

/**
 * Where calls with host arrays run. 'auto' (default): on the GPU when the CUDA variant is built
 * and a device answers, else on the CPU; 'cpu'; 'cuda', which throws at once (an Error listing
 * fixes) when CUDA cannot work here, so a script learns it at setDevice, not at its first call.
 * Device tensors always run on the GPU.
 */
export function setDevice(device: Device): void {
  const d = checkOneOf('setDevice', 'device', device, DEVICES);
  if (d === 'cuda') cudaBinding();
  chosen = d;
}

interface CudaState {
  binding: NativeCudaBinding | null;
  ok: boolean;
  reason: string;
  emulated: boolean;
  /** false: the variant is built, but this machine has no NVIDIA driver at all */
  driver: boolean;
}
let state: CudaState | undefined;
let warned = false;

function cudaState(): CudaState {
  if (state) return state;
  const l = loadCuda();
  if (!l.binding) {
    state = { binding: null, ok: false, reason: `the CUDA variant is not built or does not load (${l.error})`, emulated: false, driver: true };
    return state;
  }
  const p = l.binding.probe();
  let emulated = false;
  if (p.ok) emulated = l.binding.deviceInfo().emulated;
  state = { binding: l.binding, ok: p.ok, reason: p.ok ? '' : p.reason, emulated, driver: p.driver !== false };
  return state;
}

/** What to do about it, the likeliest fix first: build the variant, get a driver/GPU, or use the CPU. */
function cudaFixes(s: CudaState): string {
  const fixes = !s.binding
    ? ['build the CUDA variant: npx fusedce build-cuda (needs the CUDA toolkit, nvcc, and CMake ≥ 3.18)']
    : !s.driver
      ? ['this machine has no NVIDIA driver: run on a machine with an NVIDIA GPU and its driver (nvidia-smi lists the GPUs)']
      : ['check that the driver sees a GPU: nvidia-smi (a driver older than the CUDA toolkit the variant was built with reports cudaErrorInsufficientDriver: update the driver)'];
  fixes.push("run on the CPU instead: device: 'cpu', setDevice('cpu') or FUSEDCE_DEVICE=cpu");
  return `fusedce: device 'cuda' cannot be used: ${s.reason}.\nPossible solutions:\n${fixes.map((f) => `  - ${f}`).join('\n')}`;
}

/** The CUDA binding, or an Error listing fixes. */
export function cudaBinding(): NativeCudaBinding {
  const s = cudaState();
  if (!s.binding || !s.ok) throw new Error(cudaFixes(s));
  return s.binding;
}

/** Where a call with host arrays runs, for the option `device` (or the default). */
export function resolveDevice(fn: string, requested: unknown): 'cpu' | 'cuda' {
  const d = requested === undefined ? getDevice() : checkOneOf(fn, 'device', requested, DEVICES);
  if (d === 'cpu') return 'cpu';
  if (d === 'cuda') {
    cudaBinding();
    return 'cuda';
  }
  const s = cudaState();
  if (s.ok && !s.emulated) return 'cuda';
  // 'auto' says once why a built variant is not used, unless the reason is that there is no
  // driver at all: a CPU-only machine with a CUDA build (a shared image) is not a problem
  if (!s.ok && s.driver && !warned && cudaBinaryPresent()) {
    warned = true;
    process.stderr.write(`fusedce: the CUDA variant cannot be used (${s.reason}); running on the CPU\n`);
  }
  return 'cpu';
}

// ---- device tensors ----

abstract class DeviceTensor {
  readonly device = 'cuda' as const;
  #buf: NativeDeviceBuffer | null;
  protected constructor(buf: NativeDeviceBuffer) {
    this.#buf = buf;
  }
  /** Device memory held, in bytes. */
  get bytes(): number {
    return this.#buf?.bytes ?? 0;
  }
  get disposed(): boolean {
    return this.#buf === null || this.#buf.disposed;
  }
  /** The device address (for other native code). */
  get address(): bigint {
    return this.buffer('address').address;
  }
  /** The index of the CUDA device the memory lives on. */
  get deviceIndex(): number {
    return this.buffer('deviceIndex').device;
  }
  /** Frees the device memory now (memory from cuda.fromPointer stays its owner's). Idempotent. */
  dispose(): void {
    if (this.#buf && !this.#buf.disposed) this.#buf.dispose();
    this.#buf = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
  /** @internal the live buffer, or an Error naming the use after dispose. */
  buffer(use: string): NativeDeviceBuffer {
    if (!this.#buf || this.#buf.disposed)
      throw new Error(`${use}: the ${this.constructor.name} has been disposed (it cannot be used after dispose())`);
    return this.#buf;
  }
}

/** A [rows, vocab] matrix of f32/f16/bf16 in device memory: logits, or a gradient. */
export class DeviceLogits extends DeviceTensor {
  /** @internal */
  constructor(buf: NativeDeviceBuffer, readonly rows: number, readonly vocab: number, readonly dtype: DType) {
    super(buf);
  }
  /** Copies the matrix to the host. */
  download(): Logits {
    const n = this.rows * this.vocab;
    const data = this.dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n);
    if (n > 0) this.buffer('DeviceLogits.download').download(data);
    return { data, dtype: this.dtype, rows: this.rows, vocab: this.vocab };
  }
}

/** A per-row fp32 vector in device memory (losses, lse, a per-row gradOutput). */
export class DeviceVector extends DeviceTensor {
  /** @internal */
  constructor(buf: NativeDeviceBuffer, readonly length: number) {
    super(buf);
  }
  download(): Float32Array {
    const out = new Float32Array(this.length);
    if (this.length > 0) this.buffer('DeviceVector.download').download(out);
    return out;
  }
}

/** int32 targets [rows] in device memory. */
export class DeviceTargets extends DeviceTensor {
  /** @internal */
  constructor(buf: NativeDeviceBuffer, readonly length: number) {
    super(buf);
  }
  download(): Int32Array {
    const out = new Int32Array(this.length);
    if (this.length > 0) this.buffer('DeviceTargets.download').download(out);
    return out;
  }
}

function alloc(bytes: number): NativeDeviceBuffer {
  const b = cudaBinding();
  return new b.DeviceBuffer(bytes);
}

const dsize = (d: DType) => (d === 'f32' ? 4 : 2);

export interface CudaDeviceInfo {
  name: string;
  multiprocessors: number;
  computeCapability: string;
  totalMemory: number;
  freeMemory: number;
  l2Bytes: number;
  sharedMemoryPerBlock: number;
  /** true for the CPU emulation the tests run without a GPU. */
  emulated: boolean;
  /** The device's index (cuda.setDevice). */
  index: number;
}

/** The CUDA backend: availability, device info, and device tensors. */
export const cuda = {
  /** Whether the CUDA variant is built and a device answers. Never throws. */
  isAvailable(): boolean {
    return cudaState().ok;
  },
  /** Why CUDA cannot be used ('' when it can). */
  unavailableReason(): string {
    return cudaState().reason;
  },
  /** Name, multiprocessors, memory and compute capability of a device (default: the current one). */
  deviceInfo(device?: number): CudaDeviceInfo {
    if (device !== undefined) checkInteger('cuda.deviceInfo', 'device', device, 0);
    return cudaBinding().deviceInfo(device);
  },
  /** The number of CUDA devices (0 when the CUDA variant is missing or no device answers). Never throws. */
  deviceCount(): number {
    return cudaState().ok ? cudaBinding().deviceCount() : 0;
  },
  /** The current device: where new device tensors are allocated (and host-array calls run). Default 0. */
  getDevice(): number {
    return cudaBinding().getDevice();
  },
  /**
   * Selects the device for new device tensors (upload, empty, results) on a multi-GPU host. A call
   * runs on its tensors' device; tensors of one call must share it (else a TypeError).
   */
  setDevice(device: number): void {
    checkInteger('cuda.setDevice', 'device', device, 0);
    cudaBinding().setDevice(device);
  },
  /**
   * A new non-blocking CUDA stream (a cudaStream_t as a bigint) on a device (default: the current
   * one), for the `stream` option when no framework supplies one. Free it with destroyStream.
   */
  createStream(device?: number): bigint {
    if (device !== undefined) checkInteger('cuda.createStream', 'device', device, 0);
    return cudaBinding().createStream(device);
  },
  destroyStream(stream: bigint): void {
    if (typeof stream !== 'bigint') throw typeError('cuda.destroyStream', 'stream', 'a bigint from cuda.createStream', stream);
    cudaBinding().destroyStream(stream);
  },
  /** Waits until everything queued on a stream (default: the default stream) has run. */
  synchronize(stream?: bigint): void {
    if (stream !== undefined && typeof stream !== 'bigint') throw typeError('cuda.synchronize', 'stream', 'a bigint stream handle', stream);
    cudaBinding().synchronize(stream);
  },
  /** Copies host logits to the device. */
  upload(logits: Logits): DeviceLogits {
    const z = checkLogits('cuda.upload', 'logits', logits);
    const buf = alloc(z.data.byteLength);
    try {
      if (z.data.length > 0) buf.upload(z.data);
    } catch (e) {
      buf.dispose();
      throw e;
    }
    return new DeviceLogits(buf, z.rows, z.vocab, z.dtype);
  },
  /** An uninitialised [rows, vocab] matrix on the device (e.g. for `out`). */
  empty(rows: number, vocab: number, dtype: DType): DeviceLogits {
    const r = checkInteger('cuda.empty', 'rows', rows, 0);
    const v = checkInteger('cuda.empty', 'vocab', vocab, 1, MAX_VOCAB);
    const d = checkOneOf('cuda.empty', 'dtype', dtype, DTYPES);
    return new DeviceLogits(alloc(r * v * dsize(d)), r, v, d);
  },
  /** Copies int32 targets to the device. */
  uploadTargets(targets: Int32Array): DeviceTargets {
    if (!(targets instanceof Int32Array))
      throw typeError('cuda.uploadTargets', 'targets', 'an Int32Array', targets, 'Convert with Int32Array.from(targets)');
    const buf = alloc(targets.byteLength);
    if (targets.length > 0) buf.upload(targets);
    return new DeviceTargets(buf, targets.length);
  },
  /** Copies a Float32Array to the device (a per-row gradOutput, a saved lse). */
  uploadVector(v: Float32Array): DeviceVector {
    if (!(v instanceof Float32Array)) throw typeError('cuda.uploadVector', 'v', 'a Float32Array', v);
    const buf = alloc(v.byteLength);
    if (v.length > 0) buf.upload(v);
    return new DeviceVector(buf, v.length);
  },
  /**
   * Wraps device memory owned by other native code (a framework tensor's data pointer) as logits,
   * without copying. dispose() only forgets it; the owner frees it. The pointer must be device
   * memory of the current device, 16-byte aligned for full speed, holding rows·vocab elements.
   */
  fromPointer(ptr: bigint, rows: number, vocab: number, dtype: DType): DeviceLogits {
    if (typeof ptr !== 'bigint') throw typeError('cuda.fromPointer', 'ptr', 'a bigint device address', ptr);
    if (ptr <= 0n || ptr >= 2n ** 64n) throw rangeError('cuda.fromPointer', 'ptr', 'a non-zero 64-bit address', ptr);
    const r = checkInteger('cuda.fromPointer', 'rows', rows, 0);
    const v = checkInteger('cuda.fromPointer', 'vocab', vocab, 1, MAX_VOCAB);
    const d = checkOneOf('cuda.fromPointer', 'dtype', dtype, DTYPES);
    const b = cudaBinding();
    if (ptr % BigInt(dsize(d)) !== 0n)
      throw rangeError('cuda.fromPointer', 'ptr', `aligned to the ${dsize(d)}-byte element size of '${d}'`, ptr);
    return new DeviceLogits(new b.DeviceBuffer(r * v * dsize(d), ptr), r, v, d);
  },
};

export function isDeviceTensor(v: unknown): v is DeviceLogits | DeviceVector | DeviceTargets {
  return v instanceof DeviceTensor;
}

// ---- ops (used by cross_entropy.ts once its options are checked) ----

export interface CudaPlanCommon {
  rows: number;
  vocab: number;
  dtype: DType;
  ignoreIndex: number;
  reduction: number;
}

/** Uploads what is on the host; disposes those temporaries after. */
export class Staging {
  private temps: DeviceTensor[] = [];
  logits(fn: string, z: Logits | DeviceLogits): DeviceLogits {
    if (z instanceof DeviceLogits) {
      z.buffer(fn);
      return z;
    }
    const d = cuda.upload(z);
    this.temps.push(d);
    return d;
  }
  targets(fn: string, t: Int32Array | DeviceTargets): DeviceTargets {
    if (t instanceof DeviceTargets) {
      t.buffer(fn);
      return t;
    }
    const d = cuda.uploadTargets(t);
    this.temps.push(d);
    return d;
  }
  vector(fn: string, v: Float32Array | DeviceVector): DeviceVector {
    if (v instanceof DeviceVector) {
      v.buffer(fn);
      return v;
    }
    const d = cuda.uploadVector(v);
    this.temps.push(d);
    return d;
  }
  temp<T extends DeviceTensor>(t: T): T {
    this.temps.push(t);
    return t;
  }
  dispose(): void {
    for (const t of this.temps) t.dispose();
    this.temps = [];
  }
}

export function newVector(rows: number): DeviceVector {
  return new DeviceVector(alloc(rows * 4), rows);
}

/** An uninitialised int32 vector [rows] on the device (per-row argmax). */
export function newInt32Vector(rows: number): DeviceTargets {
  return new DeviceTargets(alloc(rows * 4), rows);
}

export { dtypeCode };
