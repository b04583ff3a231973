// The CUDA path of crossEntropyForward / crossEntropyBackward: device tensors stay on the device;
// host arrays are staged through the device and the results downloaded. The kernels are
// cuda/cross_entropy.cu, the glue cuda/addon.cpp (the request reader of cpp/glue.h).
import { type DType, dtypeCode } from './dtype';
import { checkBoolean, checkInteger, checkOneOf, checkOptions, rangeError, typeError } from './errors';
import { type Logits, checkLogits } from './logits';
import { DEVICES, DeviceLogits, DeviceTargets, DeviceVector, Staging, cuda, cudaBinding, newInt32Vector, newVector, resolveDevice } from './cuda';
import { batchStats, checkTextSize } from './stats';
import { BACKWARD_OPTIONS, CE_REDUCTIONS, FORWARD_OPTIONS, type Reduction, checkGradDtype, checkLossOptions, checkGradOutput, checkGradRequest, reductionCode } from './options';
import { type SequencePlan, checkSequences, sequenceMean, sequenceMeanRowGrad, sequenceRowGrad, sequenceSums } from './sequences';
import type { NativeCeOptions } from './binding';
import type { CrossEntropyResult, CrossEntropyStats, CudaCrossEntropyResult, CudaDeviceLossResult } from './cross_entropy';
import type { SequenceResult } from './sequences';


/**
 * Whether a call runs on the GPU: 'device' (device logits: results stay on the device), 'host'
 * (host arrays on the GPU: results come back as host arrays), or null (the CPU).
 */
export function cudaMode(fn: string, logits: unknown, targets: unknown, opts: unknown, known: readonly string[]): 'device' | 'host' | null {
  const o = checkOptions(fn, opts, known);
  const mode = where(fn, logits, targets, o);
  // the GPU-only options: refused where the call runs on the CPU
  if (mode === null)
    for (const k of ['stream', 'lossOnDevice'] as const)
      if (o[k] !== undefined && o[k] !== false)
        throw typeError(fn, k, "undefined unless the call runs on the GPU (device tensors, or device 'cuda')", o[k],
          k === 'stream' ? 'A stream orders work on the GPU; the CPU path has none' : 'Upload the logits (cuda.upload) to keep the loss on the device');
  return mode;
}

function where(fn: string, logits: unknown, targets: unknown, o: Partial<Record<string, unknown>>): 'device' | 'host' | null {
  // device is checked on every call, whichever backend the other options select
  if (o.device !== undefined) checkOneOf(fn, 'device', o.device, DEVICES);
  const anyDevice = logits instanceof DeviceLogits || targets instanceof DeviceTargets;
  if (anyDevice && o.device === 'cpu')
    throw typeError(fn, 'device', "'cuda' or 'auto' when logits or targets are device tensors", o.device,
      'Download them first (tensor.download()) to run on the CPU');
  if (logits instanceof DeviceLogits) return 'device';
  if (targets instanceof DeviceTargets) {
    cudaBinding();
    return 'host';
  }
  return resolveDevice(fn, o.device) === 'cuda' ? 'host' : null;
}

/** stream: a cudaStream_t handle as a bigint (e.g. torch's `torch.cuda.current_stream().cuda_stream`); 0n the default stream. */
function checkStream(fn: string, v: unknown): bigint | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'bigint')
    throw typeError(fn, 'stream', 'a bigint cudaStream_t handle (0n: the default stream)', v, 'Pass BigInt(handle), or a stream from cuda.createStream()');
  if (v < 0n || v >= 2n ** 64n) throw rangeError(fn, 'stream', 'a 64-bit handle', v);
  return v;
}

export interface CudaCommon {
  stream: bigint | undefined;
  /** the loss options that change the result (null: the plain kernels) */
  ce: CudaCeOptions | null;
  z: Logits | DeviceLogits;
  targets: Int32Array | DeviceTargets;
  rows: number;
  vocab: number;
  dtype: DType;
  /** the reduction the kernels run ('sequenceMean' runs as 'none' with per-row gradient scales) */
  reduction: Reduction;
  sequenceMean: boolean;
  /** with sequenceIds: the sequences, counted from the host targets */
  seq: SequencePlan | null;
  /** with sequenceIds: the targets on the host */
  hostTargets: Int32Array | null;
  ignoreIndex: number;
}

function cudaCommon(fn: string, logits: unknown, targets: unknown, o: Partial<Record<string, unknown>>): CudaCommon {
  let z: Logits | DeviceLogits;
  if (logits instanceof DeviceLogits) {
    logits.buffer(fn);
    z = logits;
  } else {
    z = checkLogits(fn, 'logits', logits);
  }
  if (!(targets instanceof Int32Array) && !(targets instanceof DeviceTargets))
    throw typeError(fn, 'targets', `an Int32Array or DeviceTargets of length rows (${z.rows})`, targets,
      'Convert with Int32Array.from(targets), or cuda.uploadTargets(…)');
  if (targets.length !== z.rows) throw rangeError(fn, 'targets', `of length rows (${z.rows})`, targets);
  if (o.threads !== undefined) checkInteger(fn, 'threads', o.threads, 1, 65536);
  const reduction = o.reduction === undefined ? 'mean' : checkOneOf(fn, 'reduction', o.reduction, CE_REDUCTIONS);
  const ignoreIndex = o.ignoreIndex === undefined ? -100 : checkInteger(fn, 'ignoreIndex', o.ignoreIndex, -(2 ** 31), 2 ** 31 - 1);
  const ce = cudaLossOptions(fn, o, z.vocab);
  // sequences are counted on the host (device targets are downloaded: rows × 4 bytes)
  const hostTargets = o.sequenceIds === undefined && reduction !== 'sequenceMean' ? null
    : targets instanceof Int32Array ? targets : targets.download();
  const seq = hostTargets ? checkSequences(fn, o.sequenceIds, hostTargets, ignoreIndex, reduction === 'sequenceMean') : null;
  return {
    stream: checkStream(fn, o.stream),
    ce,
    z,
    targets,
    rows: z.rows,
    vocab: z.vocab,
    dtype: z.dtype,
    reduction: reduction === 'sequenceMean' ? 'none' : reduction,
    sequenceMean: reduction === 'sequenceMean',
    seq,
    hostTargets,
    ignoreIndex,
  };
}

/**
 * The loss options for the CUDA kernels (cross_entropy_options.cuh), checked as on the CPU (the
 * weights' finiteness is checked on the device, before any kernel reads them, and reported as the
 * CPU reports it). null when none changes the result (focalGamma 0, logitScale 1…): those calls run the plain kernels.
 */
function cudaLossOptions(fn: string, o: Partial<Record<string, unknown>>, vocab: number): CudaCeOptions | null {
  // weight: a Float32Array (uploaded for the call) or a DeviceVector of length vocab (used in place)
  let dw: DeviceVector | null = null;
  if (o.weight instanceof DeviceVector) {
    o.weight.buffer(fn);
    if (o.weight.length !== vocab) throw rangeError(fn, 'weight', `of length vocab (${vocab})`, o.weight);
    dw = o.weight;
    o = { ...o, weight: undefined };
  }
  const checked = checkLossOptions(fn, o, vocab);
  const ce: CudaCeOptions | null = dw ? { ...(checked ?? {}), weight: dw } : checked;
  if (!ce) return null;
  const any = (ce.labelSmoothing ?? 0) !== 0 || ce.weight || (ce.zLoss ?? 0) !== 0 || (ce.logitScale ?? 1) !== 1 ||
    (ce.softcap ?? 0) !== 0 || (ce.focalGamma ?? 0) !== 0;
  return any ? ce : null;
}

type CudaCeOptions = Omit<NativeCeOptions, 'weight'> & { weight?: Float32Array | DeviceVector | null };

/** The options' fields of a binding request, the weights staged on the device. */
function optionFields(fn: string, ce: CudaCeOptions | null, st: Staging): Record<string, unknown> {
  if (!ce) return {};
  const { weight, ...rest } = ce;
  return weight ? { ...rest, weight: st.vector(fn, weight).buffer(fn) } : rest;
}

/** Where the gradient goes on the GPU: a new tensor, `out`, or the logits themselves (inPlace). */
export interface CudaGradTarget {
  gradDtype: DType;
  out: Logits | DeviceLogits | null;
  inPlace: boolean;
}

export function cudaGradTarget(fn: string, o: Partial<Record<string, unknown>>, c: Pick<CudaCommon, "z" | "rows" | "vocab" | "dtype">, mode: 'device' | 'host'): CudaGradTarget {
  const inPlace = o.inPlace === undefined ? false : checkBoolean(fn, 'inPlace', o.inPlace);
  const gradDtype = checkGradDtype(fn, o.gradDtype, c.dtype);
  if (o.out !== undefined) {
    if (inPlace) throw typeError(fn, 'out', 'undefined when inPlace is true (the gradient goes into the logits)', o.out);
    let out: Logits | DeviceLogits;
    if (mode === 'device') {
      if (!(o.out instanceof DeviceLogits))
        throw typeError(fn, 'out', 'a DeviceLogits (cuda.empty) when the logits are on the device', o.out);
      o.out.buffer(fn);
      out = o.out;
    } else {
      if (o.out instanceof DeviceLogits) throw typeError(fn, 'out', 'host Logits when the logits are host arrays', o.out);
      out = checkLogits(fn, 'out', o.out);
    }
    if (out.rows !== c.rows || out.vocab !== c.vocab)
      throw rangeError(fn, 'out', `a [${c.rows}, ${c.vocab}] matrix like logits`, `[${out.rows}, ${out.vocab}]`);
    if (o.gradDtype !== undefined && out.dtype !== gradDtype) throw typeError(fn, 'out.dtype', `gradDtype ('${gradDtype}')`, out.dtype);
    if (out === c.z || (mode === 'device' && (out as DeviceLogits).address === (c.z as DeviceLogits).address))
      throw rangeError(fn, 'out', 'a tensor other than logits', out, 'use inPlace: true to write the gradient over the logits');
    return { gradDtype: out.dtype, out, inPlace: false };
  }
  if (inPlace && gradDtype !== c.dtype)
    throw rangeError(fn, 'gradDtype', `the logits' dtype ('${c.dtype}') when inPlace is true`, gradDtype);
  return { gradDtype, out: null, inPlace };
}

/**
 * Host arrays on the GPU: the device gradient downloaded into where the caller asked for it
 * (inPlace: the logits' data; out: its data; else a fresh array), as host Logits.
 */
export function downloadGrad(fn: string, grad: DeviceLogits, z: Logits, gt: CudaGradTarget): Logits {
  const n = z.rows * z.vocab;
  const data = gt.inPlace ? z.data : gt.out ? (gt.out as Logits).data : gt.gradDtype === 'f32' ? new Float32Array(n) : new Uint16Array(n);
  if (data.length > 0) grad.buffer(fn).download(data);
  return { data, dtype: gt.gradDtype, rows: z.rows, vocab: z.vocab };
}

export function cudaForward(fn: string, logits: unknown, targets: unknown, opts: unknown, mode: 'device' | 'host', async: boolean) {
  const o = checkOptions(fn, opts, FORWARD_OPTIONS);
  const c = cudaCommon(fn, logits, targets, o);
  const { withGrad, gradOutput } = checkGradRequest(fn, o);
  const gt = cudaGradTarget(fn, o, c, mode);
  const stats = o.stats === undefined ? false : checkBoolean(fn, 'stats', o.stats);
  const eceBins = o.eceBins === undefined ? 15 : checkInteger(fn, 'eceBins', o.eceBins, 1, 1e6);
  const text = checkTextSize(fn, o, stats);
  // lossOnDevice: the reduced loss as a DeviceVector(1), and no host wait (nothing is read back)
  const lossOnDevice = o.lossOnDevice === undefined ? false : checkBoolean(fn, 'lossOnDevice', o.lossOnDevice);
  if (lossOnDevice && mode !== 'device')
    throw typeError(fn, 'lossOnDevice', 'false with host logits (their results are downloaded, which waits anyway)', o.lossOnDevice,
      'Upload the logits first (cuda.upload) to keep the whole step on the device');
  if (lossOnDevice && stats)
    throw typeError(fn, 'stats', 'undefined with lossOnDevice (the batch statistics are computed on the host)', o.stats);
  if (lossOnDevice && c.seq)
    throw typeError(fn, 'sequenceIds', 'undefined with lossOnDevice (the per-sequence sums are taken on the host)', o.sequenceIds,
      'Drop lossOnDevice to get the sequences (the call then reads rows × 8 bytes back)');
  // sequences: the rows' double losses, and with loss options each row's log p(target) (the
  // statistics' targetLogprob: the row loss is then not −log p); 'sequenceMean' runs as 'none' with
  // the per-row gradient scales w_i·gradOutput
  const seqLogprob = c.seq !== null && c.ce !== null;
  const rowGrad = c.sequenceMean && withGrad ? sequenceRowGrad(c.seq!, gradOutput) : null;

  const st = new Staging();
  const made: { dispose(): void }[] = [];  // results made here: disposed if the call fails
  const keep = <T extends { dispose(): void }>(t: T): T => (mode === 'host' ? st.temp(t as never) : (made.push(t), t));
  const fail = (e: unknown): never => {
    for (const m of made) m.dispose();
    st.dispose();
    throw e;
  };
  let run: unknown;
  let losses: DeviceVector, lse: DeviceVector, grad: DeviceLogits | undefined, dloss: DeviceVector | undefined;
  // the per-row statistics: temporaries on the device, downloaded for the batch statistics
  let sv: { argmax: DeviceTargets; entropy: DeviceVector; targetLogprob: DeviceVector; maxProb: DeviceVector } | null = null;
  let l64: DeviceVector | null = null;  // (2·rows) f32 words: rows f64 row losses
  try {
    const dz = st.logits(fn, c.z as Logits | DeviceLogits);
    const dt = st.targets(fn, c.targets);
    losses = keep(newVector(c.rows));
    lse = keep(newVector(c.rows));
    if (lossOnDevice) dloss = keep(newVector(1));
    if (withGrad) {
      if (gt.inPlace) grad = dz;
      else if (gt.out instanceof DeviceLogits) grad = gt.out;
      else grad = keep(cuda.empty(c.rows, c.vocab, gt.gradDtype));
    }
    if (c.seq) l64 = st.temp(newVector(2 * c.rows));
    if (stats || seqLogprob)
      sv = { argmax: st.temp(newInt32Vector(c.rows)), entropy: st.temp(newVector(c.rows)), targetLogprob: st.temp(newVector(c.rows)),
        maxProb: st.temp(newVector(c.rows)) };
    run = cudaBinding().crossEntropyForward({
      fn, logits: dz.buffer(fn), dtype: dtypeCode(c.dtype), rows: c.rows, vocab: c.vocab, targets: dt.buffer(fn),
      ignoreIndex: c.ignoreIndex, reduction: reductionCode(c.reduction), losses: losses.buffer(fn), lse: lse.buffer(fn),
      grad: grad ? grad.buffer(fn) : null, gradDtype: dtypeCode(gt.gradDtype), gradOutput, ...optionFields(fn, c.ce, st),
      ...(sv ? { argmax: sv.argmax.buffer(fn), entropy: sv.entropy.buffer(fn), targetLogprob: sv.targetLogprob.buffer(fn),
        maxProb: sv.maxProb.buffer(fn) } : {}),
      ...(dloss ? { deviceLoss: dloss.buffer(fn) } : {}), ...(c.stream !== undefined ? { stream: c.stream } : {}),
      ...(l64 ? { losses64: l64.buffer(fn) } : {}), ...(rowGrad ? { gradOutputRows: st.vector(fn, rowGrad).buffer(fn) } : {}),
      async: async as false,
    });
  } catch (e) {
    return fail(e);
  }
  type Totals = { loss: number; count: number; zLoss: number; weightSum: number };
  const extras = (r: Totals, out: { loss: number; zLoss?: number; weightSum?: number; stats?: CrossEntropyStats; sequences?: SequenceResult }) => {
    if (c.ce && (c.ce.zLoss ?? 0) > 0) out.zLoss = r.zLoss;
    if (c.ce?.weight) out.weightSum = r.weightSum;
    // each is downloaded once, for the sequences and the statistics alike
    const tlp = sv ? sv.targetLogprob.download() : null;
    const hostTargets = c.hostTargets ?? (sv ? (c.targets instanceof Int32Array ? c.targets : c.targets.download()) : null);
    if (c.seq && l64) {
      const w = l64.download(), losses64 = new Float64Array(w.buffer, w.byteOffset, c.rows);
      out.sequences = sequenceSums(c.seq, hostTargets!, c.ignoreIndex, (i) => (seqLogprob ? tlp![i]! : -losses64[i]!));
      if (c.sequenceMean) out.loss = sequenceMean(c.seq, losses64);
    }
    if (sv && stats) {
      out.stats = batchStats(hostTargets!, c.ignoreIndex, sv.argmax.download(), sv.entropy.download(), tlp!,
        sv.maxProb.download(), eceBins, text);
    }
  };
  const finish = (r: Totals): CrossEntropyResult | CudaCrossEntropyResult | CudaDeviceLossResult => {
    try {
      const loss = r.loss;
      if (dloss) {
        const out: CudaDeviceLossResult = { loss: dloss, losses, lse };
        if (grad) out.grad = grad;
        st.dispose();
        return out;
      }
      if (mode === 'device') {
        const out: CudaCrossEntropyResult = { loss, losses, lse, count: r.count };
        if (grad) out.grad = grad;
        extras(r, out);
        st.dispose();  // what was staged for the call (host targets, weights, statistics)
        return out;
      }
      const out: CrossEntropyResult = { loss, losses: losses.download(), lse: lse.download(), count: r.count };
      extras(r, out);
      if (grad) out.grad = downloadGrad(fn, grad, c.z as Logits, gt);
      st.dispose();
      return out;
    } catch (e) {
      return fail(e);
    }
  };
  if (run instanceof Promise) return (run as Promise<Totals>).then(finish, fail);
  return finish(run as Totals);
}

export function cudaBackward(fn: string, logits: unknown, targets: unknown, lseIn: unknown, opts: unknown, mode: 'device' | 'host', async: boolean) {
  const o = checkOptions(fn, opts, BACKWARD_OPTIONS);
  const c = cudaCommon(fn, logits, targets, o);
  if (!(lseIn instanceof Float32Array) && !(lseIn instanceof DeviceVector))
    throw typeError(fn, 'lse', `a Float32Array or DeviceVector of length rows (${c.rows}), as returned by crossEntropyForward`, lseIn);
  if (lseIn.length !== c.rows) throw rangeError(fn, 'lse', `of length rows (${c.rows})`, lseIn);
  let gradOutput: number, rowGrad: Float32Array | DeviceVector | null;
  if (c.sequenceMean) {
    // the per-row scales w_i·gradOutput of the sequence mean, with reduction 'none'
    gradOutput = 1;
    rowGrad = sequenceMeanRowGrad(fn, c.seq!, o.gradOutput, c.rows);
  } else {
    ({ gradOutput, rowGrad } = checkGradOutput<Float32Array | DeviceVector>(fn, o.gradOutput, c.reduction, c.rows, true));
  }
  const gt = cudaGradTarget(fn, o, c, mode);

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
    const dz = st.logits(fn, c.z as Logits | DeviceLogits);
    const dt = st.targets(fn, c.targets);
    const dl = st.vector(fn, lseIn);
    const dr = rowGrad ? st.vector(fn, rowGrad) : null;
    if (gt.inPlace) grad = dz;
    else if (gt.out instanceof DeviceLogits) grad = gt.out;
    else {
      grad = made = cuda.empty(c.rows, c.vocab, gt.gradDtype);
      if (mode === 'host') st.temp(grad);
    }
    run = cudaBinding().crossEntropyBackward({
      fn, logits: dz.buffer(fn), dtype: dtypeCode(c.dtype), rows: c.rows, vocab: c.vocab, targets: dt.buffer(fn),
      ignoreIndex: c.ignoreIndex, reduction: reductionCode(c.reduction), lse: dl.buffer(fn), gradOutput,
      gradOutputRows: dr ? dr.buffer(fn) : null, grad: grad.buffer(fn), gradDtype: dtypeCode(gt.gradDtype),
      ...optionFields(fn, c.ce, st), ...(c.stream !== undefined ? { stream: c.stream } : {}), async: async as false,
    });
  } catch (e) {
    return fail(e);
  }
  const finish = (): Logits | DeviceLogits => {
    try {
      if (mode === 'device') {
        st.dispose();
        return grad;
      }
      const out = downloadGrad(fn, grad, c.z as Logits, gt);
      st.dispose();
      return out;
    } catch (e) {
      return fail(e);
    }
  };
  if (run instanceof Promise) return run.then(finish, fail);
  return finish();
}

