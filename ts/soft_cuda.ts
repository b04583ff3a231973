// The CUDA path of the soft-target family: softCrossEntropyForward / Backward, klDivergenceForward,
// entropy / entropyForward and jsDivergenceForward on device tensors, or host arrays staged through
// the device. The kernels are cuda/soft_cross_entropy.cuh, the glue cuda/addon.cpp (softForward,
// softBackward); ts/soft_cross_entropy.ts validates the options and documents them, and calls here
// when the call runs on the GPU.
import type { DType } from './dtype';
import { dtypeCode } from './dtype';
import { checkFinite, checkOneOf, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';
import { DEVICES, DeviceLogits, DeviceVector, Staging, cuda, cudaBinding, newVector, resolveDevice } from './cuda';
import { REDUCTIONS, type Reduction, checkGradOutput, checkGradRequest, reductionCode } from './options';
import { cudaGradTarget, downloadGrad } from './cross_entropy_cuda';

/** The kernels' ops (cuda/soft_cross_entropy.cuh SoftKind). */
export const SOFT_KIND = { soft: 0, klForward: 1, klReverse: 2, entropy: 3, jsd: 4 } as const;

/** Per-call constants the facade has checked: 1/T, F, the probability options, β. */
export interface SoftCudaPlan {
  kind: number;
  invTemperature: number;
  lossFactor: number;
  probs: boolean;
  labelSmoothing?: number;
  weight?: Float32Array;
  beta?: number;
}

/** Results with device logits: losses, lse and the gradient stay on the device. */
export interface CudaSoftResult {
  loss: number;
  losses: DeviceVector;
  lse: DeviceVector;
  count: number;
  grad?: DeviceLogits;
}

/**
 * Where a soft-family call runs: 'device' (device logits: results stay there), 'host' (host arrays
 * on the GPU, results downloaded), or null (the CPU). `device` follows setDevice / FUSEDCE_DEVICE.
 */
export function softMode(fn: string, logits: unknown, target: unknown, o: Partial<Record<string, unknown>>): 'device' | 'host' | null {
  if (o.device !== undefined) checkOneOf(fn, 'device', o.device, DEVICES);
  const anyDevice = logits instanceof DeviceLogits || target instanceof DeviceLogits;
  if (anyDevice && o.device === 'cpu')
    throw typeError(fn, 'device', "'cuda' or 'auto' when logits or the target are device tensors", o.device,
      'Download them first (tensor.download()) to run on the CPU');
  let mode: 'device' | 'host' | null;
  if (logits instanceof DeviceLogits) mode = 'device';
  else if (anyDevice) {
    cudaBinding();
    mode = 'host';
  } else mode = resolveDevice(fn, o.device) === 'cuda' ? 'host' : null;
  if (mode === null && o.stream !== undefined)
    throw typeError(fn, 'stream', "undefined unless the call runs on the GPU (device tensors, or device 'cuda')", o.stream);
  if (o.stream !== undefined && (typeof o.stream !== 'bigint' || o.stream < 0n || o.stream >= 2n ** 64n))
    throw typeError(fn, 'stream', 'a bigint cudaStream_t handle (0n: the default stream)', o.stream);
  return mode;
}

function matrix(fn: string, arg: string, v: unknown): Logits | DeviceLogits {
  if (v instanceof DeviceLogits) {
    v.buffer(fn);
    return v;
  }
  return checkLogits(fn, arg, v);
}

/**
 * The finiteness (and with nonneg, ≥ 0) checks the CPU glue makes on weight-like arrays, made on
 * the host before they are uploaded; the message is the CPU glue's.
 */
export function checkFiniteValues(fn: string, name: string, v: Float32Array, nonneg = false): void {
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (!Number.isFinite(x) || (nonneg && !(x >= 0)))
      throw new RangeError(`${fn}: ${name}[${i}] = ${String(x).replace('Infinity', 'inf').replace('NaN', 'nan')} must be a finite number${nonneg ? ' ≥ 0' : ''}`);
  }
}

interface Shared {
  z: Logits | DeviceLogits;
  u: Logits | DeviceLogits | null;
  rows: number;
  vocab: number;
  dtype: DType;
  reduction: Reduction;
}

function sharedChecks(fn: string, logits: unknown, target: unknown, targetName: string, o: Partial<Record<string, unknown>>, p: SoftCudaPlan): Shared {
  const z = matrix(fn, 'logits', logits);
  let u: Logits | DeviceLogits | null = null;
  if (p.kind !== SOFT_KIND.entropy) {
    u = matrix(fn, targetName, target);
    if (u.rows !== z.rows || u.vocab !== z.vocab)
      throw rangeError(fn, targetName, `a [${z.rows}, ${z.vocab}] matrix like logits`, `[${u.rows}, ${u.vocab}]`);
    if (p.probs && u.dtype !== 'f32')
      throw typeError(fn, `${targetName}.dtype`, "'f32' with targetKind 'probs'", u.dtype, 'Probabilities are given in f32');
  }
  if (p.weight) checkFiniteValues(fn, 'weight', p.weight);
  const reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, REDUCTIONS);
  return { z, u, rows: z.rows, vocab: z.vocab, dtype: z.dtype, reduction };
}

function requestFields(fn: string, s: Shared, p: SoftCudaPlan, st: Staging, o: Partial<Record<string, unknown>>) {
  const dz = st.logits(fn, s.z);
  const du = s.u ? st.logits(fn, s.u) : null;
  return {
    fn, logits: dz.buffer(fn), dtype: dtypeCode(s.dtype), rows: s.rows, vocab: s.vocab, target: du ? du.buffer(fn) : null,
    targetDtype: p.probs ? -1 : du ? dtypeCode(du.dtype) : 0, kind: p.kind, invTemperature: p.invTemperature, lossFactor: p.lossFactor,
    ...(p.labelSmoothing ? { labelSmoothing: p.labelSmoothing } : {}), ...(p.weight ? { weight: st.vector(fn, p.weight).buffer(fn) } : {}),
    ...(p.beta !== undefined ? { beta: p.beta } : {}), reduction: reductionCode(s.reduction),
    ...(o.stream !== undefined ? { stream: o.stream as bigint } : {}), dz,
  };
}

/**
 * Host arrays: the same overlap rule as the CPU glue (cpp/glue.h Ranges), though they are staged
 * through the device: a written array (the gradient) must not overlap any input, except the
 * logits exactly (in place).
 */
function checkHostOverlaps(fn: string, s: Shared, targetName: string, gt: { out: Logits | DeviceLogits | null; inPlace: boolean }, withGrad: boolean): void {
  if (!withGrad) return;
  const view = (v: unknown) => (v && typeof v === 'object' && 'data' in v && ArrayBuffer.isView((v as Logits).data) ? (v as Logits).data : null);
  const z = view(s.z), u = view(s.u);
  const w = gt.inPlace ? z : view(gt.out);
  if (!w) return;
  const overlaps = (a: ArrayBufferView, b: ArrayBufferView) =>
    a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
  const exact = (a: ArrayBufferView, b: ArrayBufferView) => a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.byteLength === b.byteLength;
  if (z && !gt.inPlace && overlaps(w, z) && !exact(w, z))
    throw new RangeError(`${fn}: out.data overlaps logits.data without being exactly it (with the same dtype); use inPlace: true to write the gradient over the logits`);
  if (u && overlaps(w, u)) throw new RangeError(`${fn}: out.data overlaps another input (${targetName}.data); give it its own buffer`);
}

/** The forward of any soft-family op on the GPU. */
export function cudaSoftForward(fn: string, logits: unknown, target: unknown, targetName: string, opts: Partial<Record<string, unknown>>,
  p: SoftCudaPlan, mode: 'device' | 'host', async: boolean) {
  const s = sharedChecks(fn, logits, target, targetName, opts, p);
  const { withGrad, gradOutput } = checkGradRequest(fn, opts);
  const gt = cudaGradTarget(fn, opts, s, mode);
  if (mode === 'host') checkHostOverlaps(fn, s, targetName, gt, withGrad);
  const st = new Staging();
  const made: { dispose(): void }[] = [];
  const keep = <T extends { dispose(): void }>(t: T): T => (mode === 'host' ? st.temp(t as never) : (made.push(t), t));
  const fail = (e: unknown): never => {
    for (const m of made) m.dispose();
    st.dispose();
    throw e;
  };
  let losses: DeviceVector, lse: DeviceVector, grad: DeviceLogits | undefined;
  let run: unknown;
  try {
    const { dz, ...req } = requestFields(fn, s, p, st, opts);
    losses = keep(newVector(s.rows));
    lse = keep(newVector(s.rows));
    if (withGrad) grad = gt.inPlace ? dz : gt.out instanceof DeviceLogits ? gt.out : keep(cuda.empty(s.rows, s.vocab, gt.gradDtype));
    run = cudaBinding().softForward({ ...req, losses: losses.buffer(fn), lse: lse.buffer(fn), ...(grad ? { grad: grad.buffer(fn) } : {}),
      gradDtype: dtypeCode(gt.gradDtype), gradOutput, async });
  } catch (e) {
    return fail(e);
  }
  type Totals = { loss: number; count: number };
  const finish = (r: Totals) => {
    try {
      if (mode === 'device') {
        const out: CudaSoftResult = { loss: r.loss, losses, lse, count: r.count };
        if (grad) out.grad = grad;
        st.dispose();
        return out;
      }
      const out: { loss: number; losses: Float32Array; lse: Float32Array; count: number; grad?: Logits } =
        { loss: r.loss, losses: losses.download(), lse: lse.download(), count: r.count };
      if (grad) out.grad = downloadGrad(fn, grad, s.z as Logits, gt);
      st.dispose();
      return out;
    } catch (e) {
      return fail(e);
    }
  };
  if (run instanceof Promise) return (run as Promise<Totals>).then(finish, fail);
  return finish(run as Totals);
}

/** softCrossEntropyBackward on the GPU (soft CE, from teacher logits or probabilities). */
export function cudaSoftBackward(fn: string, logits: unknown, target: unknown, lseIn: unknown, opts: Partial<Record<string, unknown>>,
  p: SoftCudaPlan, mode: 'device' | 'host', async: boolean) {
  const s = sharedChecks(fn, logits, target, 'target', opts, p);
  if (!(lseIn instanceof Float32Array) && !(lseIn instanceof DeviceVector))
    throw typeError(fn, 'lse', `a Float32Array or DeviceVector of length rows (${s.rows}), as returned by softCrossEntropyForward`, lseIn);
  if (lseIn.length !== s.rows) throw rangeError(fn, 'lse', `of length rows (${s.rows})`, lseIn);
  const { gradOutput, rowGrad } = checkGradOutput<Float32Array | DeviceVector>(fn, opts.gradOutput, s.reduction, s.rows, true);
  const gt = cudaGradTarget(fn, opts, s, mode);
  if (mode === 'host') checkHostOverlaps(fn, s, 'target', gt, true);
  const st = new Staging();
  let made: DeviceLogits | null = null;
  const fail = (e: unknown): never => {
    if (made && mode === 'device') made.dispose();
    st.dispose();
    throw e;
  };
  let grad: DeviceLogits;
  let run: unknown;
  try {
    const { dz, ...req } = requestFields(fn, s, p, st, opts);
    const dl = st.vector(fn, lseIn);
    const dr = rowGrad ? st.vector(fn, rowGrad) : null;
    if (gt.inPlace) grad = dz;
    else if (gt.out instanceof DeviceLogits) grad = gt.out;
    else {
      grad = made = cuda.empty(s.rows, s.vocab, gt.gradDtype);
      if (mode === 'host') st.temp(grad);
    }
    run = cudaBinding().softBackward({ ...req, lse: dl.buffer(fn), ...(dr ? { gradOutputRows: dr.buffer(fn) } : {}), grad: grad.buffer(fn),
      gradDtype: dtypeCode(gt.gradDtype), gradOutput, async });
  } catch (e) {
    return fail(e);
  }
  const finish = (): Logits | DeviceLogits => {
    try {
      if (mode === 'device') {
        st.dispose();
        return grad;
      }
      const out = downloadGrad(fn, grad, s.z as Logits, gt);
      st.dispose();
      return out;
    } catch (e) {
      return fail(e);
    }
  };
  if (run instanceof Promise) return run.then(finish, fail);
  return finish();
}

/** 1/T from the temperature option (the facade's rule). */
export function invTemperature(fn: string, v: unknown): number {
  if (v === undefined) return 1;
  const t = checkFinite(fn, 'temperature', v);
  if (!(t > 0)) throw rangeError(fn, 'temperature', 'a finite number > 0', t);
  return 1 / t;
}
