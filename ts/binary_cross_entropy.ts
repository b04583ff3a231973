// Binary cross-entropy from logits, elementwise over [rows, vocab] (multi-label classification):
// torch.nn.BCEWithLogitsLoss semantics, over cpp/binary_cross_entropy.cpp. With lw = 1 + (pw_j − 1)·y,
//   l = w·[(1 − y)·x + lw·log(1 + e^{−x})]      (computed as log1p(e^{−|x|}) + max(−x, 0): stable for any x)
//   dl/dx = w·[(1 − y) − lw·σ(−x)]
// posWeight pw broadcasts over the last dimension (a number or Float32Array(vocab)); weight w is
// elementwise (Float32Array(rows·vocab)) or per class (Float32Array(vocab)). Reductions: 'mean'
// divides by rows·vocab elements, 'sum' sums, 'none' returns every element's loss.
import { type NativeBceRequest, type NativeBceResult, native } from './binding';
import { type DType, dtypeCode } from './dtype';
import { checkFinite, checkOneOf, checkOptions, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';
import { REDUCTIONS, type Reduction, checkGradRequest, checkThreads, gradTarget, reductionCode } from './options';
import { type Device, DeviceLogits, DeviceVector, Staging, cuda, cudaBinding, newVector } from './cuda';
import { cudaGradTarget, downloadGrad } from './cross_entropy_cuda';
import { checkFiniteValues, softMode } from './soft_cuda';

export interface BinaryCrossEntropyOptions {
  /** Weight of the positive term per class (a number ≥ 0, or Float32Array(vocab)). Default 1. */
  posWeight?: number | Float32Array;
  /** Elementwise weight, Float32Array(rows·vocab), or per class, Float32Array(vocab); any finite numbers, negative included (torch). */
  weight?: Float32Array;
  /** 'mean' (default): Σ l / (rows·vocab); 'sum'; 'none': `losses` holds every element's loss. */
  reduction?: Reduction;
  withGrad?: boolean;
  gradDtype?: DType;
  /** Upstream gradient d(objective)/d(loss). Default 1. */
  gradOutput?: number;
  out?: Logits;
  inPlace?: boolean;
  /** Threads for this call (≥ 1). CPU only. */
  threads?: number;
  /** Where a call with host arrays runs ('auto', 'cpu', 'cuda'); device tensors run on the GPU. */
  device?: Device;
  /** GPU: the CUDA stream to queue the work on (a cudaStream_t as a bigint). */
  stream?: bigint;
}

export interface BinaryCrossEntropyResult {
  loss: number;
  /** With reduction 'none': every element's loss, Float32Array(rows·vocab). */
  losses?: Float32Array;
  /** Elements counted (rows·vocab). */
  count: number;
  grad?: Logits;
}

const BCE_OPTIONS = ['posWeight', 'weight', 'reduction', 'withGrad', 'gradDtype', 'gradOutput', 'out', 'inPlace', 'threads', 'device', 'stream'] as const;

/** posWeight, weight and reduction, checked by the same rules on both backends (shapes here; values in the glue or on the GPU path). */
function checkBceOptions(fn: string, o: Partial<Record<string, unknown>>, rows: number, vocab: number) {
  const n = rows * vocab;
  let posWeight: number | Float32Array = 1;
  if (o.posWeight instanceof Float32Array) {
    if (o.posWeight.length !== vocab) throw rangeError(fn, 'posWeight', `of length vocab (${vocab})`, o.posWeight);
    posWeight = o.posWeight;
  } else if (o.posWeight !== undefined) {
    if (typeof o.posWeight !== 'number') throw typeError(fn, 'posWeight', 'a number ≥ 0 or a Float32Array of length vocab', o.posWeight);
    posWeight = checkFinite(fn, 'posWeight', o.posWeight);
    if (posWeight < 0) throw rangeError(fn, 'posWeight', 'a finite number ≥ 0', posWeight);
  }
  let weight: Float32Array | null = null;
  if (o.weight !== undefined) {
    if (!(o.weight instanceof Float32Array))
      throw typeError(fn, 'weight', `a Float32Array of length rows·vocab (${n}) or vocab (${vocab})`, o.weight);
    if (o.weight.length !== n && o.weight.length !== vocab)
      throw rangeError(fn, 'weight', `of length rows·vocab (${n}) or vocab (${vocab})`, o.weight);
    weight = o.weight;
  }
  const reduction: Reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS);
  return { posWeight, weight, reduction };
}

function plan(fn: string, logits: unknown, targets: unknown, opts: unknown) {
  const o = checkOptions(fn, opts, BCE_OPTIONS) as Partial<Record<string, unknown>>;
  const z = checkLogits(fn, 'logits', logits);
  const n = z.rows * z.vocab;
  if (!(targets instanceof Float32Array))
    throw typeError(fn, 'targets', `a Float32Array of length rows·vocab (${n}) with values in [0, 1]`, targets);
  if (targets.length !== n) throw rangeError(fn, 'targets', `of length rows·vocab (${n})`, targets);
  const { posWeight, weight, reduction } = checkBceOptions(fn, o, z.rows, z.vocab);
  const { withGrad, gradOutput } = checkGradRequest(fn, o);
  const threads = checkThreads(fn, o.threads);
  const gt = gradTarget(fn, o, z);
  const req: NativeBceRequest = {
    fn, logits: z.data, dtype: dtypeCode(z.dtype), rows: z.rows, vocab: z.vocab, targets, posWeight, weight, reduction: reductionCode(reduction),
    threads, withGrad, gradDtype: dtypeCode(gt.gradDtype), out: gt.gradOut, gradOutput,
  };
  return { z, reduction, gt, req };
}

function result(p: ReturnType<typeof plan>, r: NativeBceResult): BinaryCrossEntropyResult {
  const out: BinaryCrossEntropyResult = { loss: r.loss, count: r.count };
  if (r.losses) out.losses = r.losses;
  if (r.grad) out.grad = { data: r.grad, dtype: p.gt.gradDtype, rows: p.z.rows, vocab: p.z.vocab };
  return out;
}

/**
 * Binary cross-entropy with logits over [rows, vocab] (torch BCEWithLogitsLoss), targets in [0, 1].
 * @example
 *   const { loss, grad } = binaryCrossEntropyWithLogits(z, labels, { posWeight: 3, withGrad: true });
 */
export function binaryCrossEntropyWithLogits(logits: DeviceLogits, targets: Float32Array | DeviceLogits, opts?: BinaryCrossEntropyOptions): CudaBinaryCrossEntropyResult;
export function binaryCrossEntropyWithLogits(logits: Logits, targets: Float32Array | DeviceLogits, opts?: BinaryCrossEntropyOptions): BinaryCrossEntropyResult;
export function binaryCrossEntropyWithLogits(logits: Logits | DeviceLogits, targets: Float32Array | DeviceLogits, opts?: BinaryCrossEntropyOptions): BinaryCrossEntropyResult | CudaBinaryCrossEntropyResult {
  const fn = 'binaryCrossEntropyWithLogits';
  const o = checkOptions(fn, opts, BCE_OPTIONS) as Partial<Record<string, unknown>>;
  const mode = softMode(fn, logits, targets, o);
  if (mode) return cudaBce(fn, logits, targets, o, mode, false) as BinaryCrossEntropyResult | CudaBinaryCrossEntropyResult;
  const p = plan(fn, logits, targets, opts);
  return result(p, native().binaryCrossEntropy(p.req));
}

/** binaryCrossEntropyWithLogits off the main thread. */
export async function binaryCrossEntropyWithLogitsAsync(logits: DeviceLogits, targets: Float32Array | DeviceLogits, opts?: BinaryCrossEntropyOptions): Promise<CudaBinaryCrossEntropyResult>;
export async function binaryCrossEntropyWithLogitsAsync(logits: Logits, targets: Float32Array | DeviceLogits, opts?: BinaryCrossEntropyOptions): Promise<BinaryCrossEntropyResult>;
export async function binaryCrossEntropyWithLogitsAsync(logits: Logits | DeviceLogits, targets: Float32Array | DeviceLogits, opts?: BinaryCrossEntropyOptions): Promise<BinaryCrossEntropyResult | CudaBinaryCrossEntropyResult> {
  const fn = 'binaryCrossEntropyWithLogitsAsync';
  const o = checkOptions(fn, opts, BCE_OPTIONS) as Partial<Record<string, unknown>>;
  const mode = softMode(fn, logits, targets, o);
  if (mode) return cudaBce(fn, logits, targets, o, mode, true) as Promise<BinaryCrossEntropyResult | CudaBinaryCrossEntropyResult>;
  const p = plan(fn, logits, targets, opts);
  return result(p, await native().binaryCrossEntropy({ ...p.req, async: true }));
}

// ---- the GPU path (cuda/binary_cross_entropy.cuh) ----

/** The result with device logits: losses ('none') and the gradient stay on the device. */
export interface CudaBinaryCrossEntropyResult {
  loss: number;
  /** With reduction 'none': every element's loss, a DeviceVector(rows·vocab). */
  losses?: DeviceVector;
  count: number;
  grad?: DeviceLogits;
}

function cudaBce(fn: string, logits: unknown, targets: unknown, o: Partial<Record<string, unknown>>, mode: 'device' | 'host', async: boolean) {
  const z: Logits | DeviceLogits = logits instanceof DeviceLogits ? (logits.buffer(fn), logits) : checkLogits(fn, 'logits', logits);
  const n = z.rows * z.vocab;
  if (targets instanceof DeviceLogits) {
    targets.buffer(fn);
    if (targets.dtype !== 'f32' || targets.rows !== z.rows || targets.vocab !== z.vocab)
      throw typeError(fn, 'targets', `an f32 [${z.rows}, ${z.vocab}] matrix like logits (or a Float32Array of length rows·vocab)`, targets);
  } else {
    if (!(targets instanceof Float32Array))
      throw typeError(fn, 'targets', `a Float32Array of length rows·vocab (${n}) with values in [0, 1]`, targets);
    if (targets.length !== n) throw rangeError(fn, 'targets', `of length rows·vocab (${n})`, targets);
  }
  const { posWeight, weight, reduction } = checkBceOptions(fn, o, z.rows, z.vocab);
  if (posWeight instanceof Float32Array) checkFiniteValues(fn, 'posWeight', posWeight, true);
  if (weight) checkFiniteValues(fn, 'weight', weight);
  const { withGrad, gradOutput } = checkGradRequest(fn, o);
  if (o.threads !== undefined) checkThreads(fn, o.threads);
  const gt = cudaGradTarget(fn, o, { z, rows: z.rows, vocab: z.vocab, dtype: z.dtype }, mode);
  if (mode === 'host' && withGrad) {
    // the CPU glue's overlap rule on the host arrays, though they are staged through the device
    const w = gt.inPlace ? (z as Logits).data : gt.out ? (gt.out as Logits).data : null;
    const overlaps = (a: ArrayBufferView, b: ArrayBufferView) =>
      a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
    if (w && !gt.inPlace && overlaps(w, (z as Logits).data))
      throw rangeError(fn, 'out.data', 'memory of its own, not overlapping logits.data (use inPlace: true to write over the logits)', 'an overlapping array');
    const inputs: [string, unknown][] = [['targets', targets], ['posWeight', posWeight], ['weight', weight]];
    for (const [name, v] of inputs)
      if (w && ArrayBuffer.isView(v) && overlaps(w, v)) throw new RangeError(`${fn}: out.data overlaps another input (${name}); give it its own buffer`);
  }
  const st = new Staging();
  const made: { dispose(): void }[] = [];
  const keep = <T extends { dispose(): void }>(t: T): T => (mode === 'host' ? st.temp(t as never) : (made.push(t), t));
  const fail = (e: unknown): never => {
    for (const m of made) m.dispose();
    st.dispose();
    throw e;
  };
  let losses: DeviceVector | undefined, grad: DeviceLogits | undefined;
  let run: unknown;
  try {
    const dz = st.logits(fn, z);
    const dy = targets instanceof DeviceLogits ? targets.buffer(fn) : st.vector(fn, targets as Float32Array).buffer(fn);
    if (reduction === 'none') losses = keep(newVector(n));
    if (withGrad) grad = gt.inPlace ? dz : gt.out instanceof DeviceLogits ? gt.out : keep(cuda.empty(z.rows, z.vocab, gt.gradDtype));
    run = cudaBinding().binaryCrossEntropy({
      fn, logits: dz.buffer(fn), dtype: dtypeCode(z.dtype), rows: z.rows, vocab: z.vocab, targets: dy,
      posWeight: typeof posWeight === 'number' ? posWeight : st.vector(fn, posWeight).buffer(fn),
      ...(weight ? { weight: st.vector(fn, weight).buffer(fn), weightPerClass: weight.length !== n } : {}),
      reduction: reductionCode(reduction), ...(losses ? { losses: losses.buffer(fn) } : {}), ...(grad ? { grad: grad.buffer(fn) } : {}),
      gradDtype: dtypeCode(gt.gradDtype), gradOutput, ...(o.stream !== undefined ? { stream: o.stream as bigint } : {}), async,
    });
  } catch (e) {
    return fail(e);
  }
  type Totals = { loss: number; count: number };
  const finish = (r: Totals) => {
    try {
      if (mode === 'device') {
        const out: CudaBinaryCrossEntropyResult = { loss: r.loss, count: r.count };
        if (losses) out.losses = losses;
        if (grad) out.grad = grad;
        st.dispose();
        return out;
      }
      const out: BinaryCrossEntropyResult = { loss: r.loss, count: r.count };
      if (losses) out.losses = losses.download();
      if (grad) out.grad = downloadGrad(fn, grad, z as Logits, gt);
      st.dispose();
      return out;
    } catch (e) {
      return fail(e);
    }
  };
  if (run instanceof Promise) return (run as Promise<Totals>).then(finish, fail);
  return finish(run as Totals);
}
