// Logits: a [rows, vocab] matrix of f32 / f16 / bf16 values, row-major.
import { type DType, DTYPES } from './dtype';
import { checkInteger, checkOneOf, rangeError, typeError, describe } from './errors';

/** The array type of a dtype: Float32Array for 'f32', a Uint16Array of raw bits for 'f16' / 'bf16'. */
export type DataOf<D extends DType> = D extends 'f32' ? Float32Array : Uint16Array;

/** A [rows, vocab] matrix. `Logits<'f32'>` has a Float32Array, `Logits<'bf16'>` a Uint16Array; `Logits` either. */
export interface Logits<D extends DType = DType> {
  /** Row-major (rows, vocab). Float32Array for 'f32'; Uint16Array of raw bits for 'f16' / 'bf16'. */
  data: DataOf<D>;
  dtype: D;
  rows: number;
  vocab: number;
}

/** Largest vocab: targets are int32. */
export const MAX_VOCAB = 2 ** 31 - 1;

const hasFloat16Array = typeof (globalThis as { Float16Array?: unknown }).Float16Array === 'function';
function isFloat16Array(v: unknown): v is ArrayBufferView & { length: number } {
  return hasFloat16Array && v instanceof (globalThis as unknown as { Float16Array: new () => object }).Float16Array;
}

/**
 * Checks (and normalises) a [rows, vocab] matrix. `arg` names it in messages ('logits', 'out' …).
 * A Float16Array (where Node has one) becomes a Uint16Array view of the same memory.
 */
export function checkMatrix(fn: string, arg: string, data: unknown, rows: unknown, vocab: unknown, dtype: unknown): Logits {
  const r = checkInteger(fn, `${arg}.rows`, rows, 0);
  const v = checkInteger(fn, `${arg}.vocab`, vocab, 1, MAX_VOCAB);
  let d: DType | undefined = dtype === undefined ? undefined : checkOneOf(fn, `${arg}.dtype`, dtype, DTYPES);
  let arr: Float32Array | Uint16Array;
  if (data instanceof Float32Array) {
    if (d !== undefined && d !== 'f32')
      throw typeError(fn, `${arg}.data`, `a Uint16Array of raw ${d} bits for dtype '${d}'`, data,
        `Convert with ${d}.fromFloat32(data), or use dtype 'f32'`);
    arr = data;
    d = 'f32';
  } else if (data instanceof Uint16Array) {
    if (d === undefined)
      throw typeError(fn, `${arg}.dtype`, "'bf16' or 'f16' for Uint16Array data (it holds raw 16-bit values)", dtype);
    if (d === 'f32')
      throw typeError(fn, `${arg}.data`, "a Float32Array for dtype 'f32'", data,
        "A Uint16Array holds raw bits: pass dtype 'bf16' or 'f16'");
    arr = data;
  } else if (isFloat16Array(data)) {
    if (d !== undefined && d !== 'f16') throw typeError(fn, `${arg}.data`, `a Uint16Array for dtype '${d}'`, data);
    arr = new Uint16Array(data.buffer, data.byteOffset, data.length);
    d = 'f16';
  } else {
    throw typeError(fn, `${arg}.data`, 'a Float32Array (f32) or a Uint16Array of raw bf16/f16 bits', data);
  }
  if (arr.length !== r * v)
    throw rangeError(fn, `${arg}.data`, `of length rows·vocab = ${r}·${v} = ${r * v}`, data);
  return { data: arr, dtype: d, rows: r, vocab: v } as Logits;
}

/** Validating constructor. dtype is inferred for Float32Array ('f32') and Float16Array ('f16'). */
export function logits(data: Float32Array, rows: number, vocab: number, dtype?: 'f32'): Logits<'f32'>;
export function logits<D extends 'bf16' | 'f16'>(data: Uint16Array, rows: number, vocab: number, dtype: D): Logits<D>;
export function logits(data: Float32Array | Uint16Array | ArrayBufferView, rows: number, vocab: number, dtype?: DType): Logits;
export function logits(
  data: Float32Array | Uint16Array | ArrayBufferView,
  rows: number,
  vocab: number,
  dtype?: DType,
): Logits {
  return checkMatrix('logits', 'logits', data, rows, vocab, dtype);
}

/**
 * Checks a Logits-shaped object passed to an op. A device tensor (DeviceLogits, recognised by its
 * `device` field: cuda.ts imports this file) is refused with what to do. The ops with a GPU path
 * take device tensors before they get here; what reaches this with one is a host-only argument.
 */
export function checkLogits(fn: string, arg: string, l: unknown): Logits {
  if (l !== null && typeof l === 'object' && (l as { device?: unknown }).device === 'cuda')
    throw typeError(fn, arg, 'host logits (a Logits object; see logits())', l,
      `${fn} runs on the CPU only (the CUDA kernels do not implement it yet): download the tensor first (${arg}.download())`);
  if (l === null || typeof l !== 'object' || ArrayBuffer.isView(l))
    throw typeError(fn, arg, 'a Logits object { data, dtype, rows, vocab } (see logits())', l);
  const o = l as Partial<Logits>;
  return checkMatrix(fn, arg, o.data, o.rows, o.vocab, o.dtype);
}

export { describe };
