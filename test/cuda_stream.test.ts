// The CUDA backend without host waits: the device-resident loss (lossOnDevice), the stream option
// (a cudaStream_t as a bigint), and device selection. On a GPU when there is one, otherwise on the
// CPU emulation of the kernels (see cuda_env.ts), where streams are handles the API checks but every
// launch runs at once, in order: ordering across streams is checked on a GPU only.
import { DeviceVector, bf16, crossEntropyBackward, crossEntropyForward, crossEntropyForwardAsync, cuda, logits } from 'fusedce';
import { describe, expect, it } from 'vitest';
import { randomLogits, randomTargets, testRng } from './reference.mjs';
import { useCudaBackend } from './cuda_env';

const { label } = useCudaBackend();

function problem(name: string, rows = 9, vocab = 5003) {
  const r = testRng(name);
  const x = randomLogits(r, rows, vocab);
  return { z: logits(bf16.fromFloat32(x), rows, vocab, 'bf16'), t: randomTargets(r, rows, vocab, 0.2), rows, vocab, r };
}

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe(`lossOnDevice: the reduced loss stays on the device (${label})`, () => {
  it('is a DeviceVector(1) holding the reduced loss, for every reduction and with options', () => {
    const { z, t, vocab, r } = problem('loss on device');
    const dz = cuda.upload(z), dt = cuda.uploadTargets(t);
    const w = Float32Array.from({ length: vocab }, () => 0.3 + r());
    for (const o of [{}, { labelSmoothing: 0.1 }, { weight: w, zLoss: 1e-3 }, { focalGamma: 2, logitScale: 1.5 }])
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        const sync = crossEntropyForward(dz, dt, { ...o, reduction, withGrad: true });
        const dev = crossEntropyForward(dz, dt, { ...o, reduction, withGrad: true, lossOnDevice: true });
        expect(dev.loss).toBeInstanceOf(DeviceVector);
        expect(dev.loss.length).toBe(1);
        expect('count' in dev).toBe(false);
        const l = dev.loss.download()[0]!;
        expect(l, `${JSON.stringify(Object.keys(o))} ${reduction}`).toBe(Math.fround(sync.loss));
        expect(bits(dev.losses.download()).equals(bits(sync.losses.download()))).toBe(true);
        expect(bits(dev.grad!.download().data).equals(bits(sync.grad!.download().data))).toBe(true);
        for (const x of [sync.losses, sync.lse, sync.grad!, dev.loss, dev.losses, dev.lse, dev.grad!]) x.dispose();
      }
    dz.dispose();
    dt.dispose();
  });

  it('a training step queues forward and backward with no host wait, then reads the loss once', async () => {
    const { z, t, rows, vocab } = problem('train step');
    const dz = cuda.upload(z), dt = cuda.uploadTargets(t);
    const grad = cuda.empty(rows, vocab, 'bf16');
    const f = crossEntropyForward(dz, dt, { lossOnDevice: true, labelSmoothing: 0.05 });
    const g = crossEntropyBackward(dz, dt, f.lse, { out: grad, labelSmoothing: 0.05 });
    cuda.synchronize();
    const ref = crossEntropyForward(z, t, { withGrad: true, labelSmoothing: 0.05 });
    expect(f.loss.download()[0]).toBe(Math.fround(ref.loss));
    expect(g).toBe(grad);
    // the separate backward from the fp32 lse agrees with the fused gradient to rounding
    const a = bf16.toFloat32(g.download().data as Uint16Array), b = bf16.toFloat32(ref.grad!.data as Uint16Array);
    let m = 0;
    for (const v of b) m = Math.max(m, Math.abs(v));
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(2 ** -7 * Math.abs(b[i]!) + 1e-6 * m);
    const asy = await crossEntropyForwardAsync(dz, dt, { lossOnDevice: true, labelSmoothing: 0.05 });
    expect(asy.loss.download()[0]).toBe(Math.fround(ref.loss));
    for (const x of [dz, dt, grad, f.loss, f.losses, f.lse, asy.loss, asy.losses, asy.lse]) x.dispose();
  });

  it('bad targets or weights make every output NaN instead of an error (nothing is read back)', () => {
    const { z, t, vocab } = problem('loss on device bad');
    const dz = cuda.upload(z);
    const bad = t.slice();
    bad[3] = vocab + 7;
    const out = crossEntropyForward(dz, bad, { withGrad: true, gradDtype: 'f32', lossOnDevice: true });
    expect(out.loss.download()[0]).toBeNaN();
    expect(out.losses.download().every(Number.isNaN)).toBe(true);
    expect(out.lse.download().every(Number.isNaN)).toBe(true);
    expect((out.grad!.download().data as Float32Array).every(Number.isNaN)).toBe(true);
    const w = new Float32Array(vocab).fill(1);
    w[11] = Number.POSITIVE_INFINITY;
    const o2 = crossEntropyForward(dz, t, { withGrad: true, weight: w, lossOnDevice: true });
    expect(o2.loss.download()[0]).toBeNaN();
    expect(bf16.toFloat32(o2.grad!.download().data as Uint16Array).every(Number.isNaN)).toBe(true);
    // without lossOnDevice the same calls are errors naming the row / the element
    expect(() => crossEntropyForward(dz, bad)).toThrow(new RegExp(`targets\\[3\\] = ${vocab + 7} is outside`));
    expect(() => crossEntropyForward(dz, t, { weight: w })).toThrow(/weight\[11\] = inf must be a finite number/);
    // an empty batch: a loss of 0
    const e = crossEntropyForward(cuda.empty(0, vocab, 'bf16'), new Int32Array(0), { lossOnDevice: true });
    expect(e.loss.download()[0]).toBe(0);
    for (const x of [dz, out.loss, out.losses, out.lse, out.grad!, o2.loss, o2.losses, o2.lse, o2.grad!]) x.dispose();
  });

  it('is refused where it cannot apply, saying what to do', () => {
    const { z, t } = problem('loss on device refused');
    const dz = cuda.upload(z);
    expect(() => crossEntropyForward(z, t, { lossOnDevice: true } as never)).toThrow(/lossOnDevice must be false with host logits.*cuda\.upload/);
    expect(() => crossEntropyForward(z, t, { lossOnDevice: true, device: 'cpu' } as never)).toThrow(/lossOnDevice must be undefined unless the call runs on the GPU/);
    expect(() => crossEntropyForward(dz, t, { lossOnDevice: true, stats: true })).toThrow(/stats must be undefined with lossOnDevice/);
    expect(() => crossEntropyForward(dz, t, { lossOnDevice: 1 as never })).toThrow(TypeError);
    expect(() => crossEntropyBackward(dz, t, new Float32Array(9), { lossOnDevice: true } as never)).toThrow(/unknown option 'lossOnDevice'/);
    dz.dispose();
  });
});

describe(`the stream option (${label})`, () => {
  it('queues on the given stream: results equal the default stream bit for bit', async () => {
    const { z, t, rows, vocab } = problem('stream');
    const s = cuda.createStream();
    expect(typeof s).toBe('bigint');
    expect(s).not.toBe(0n);
    const dz = cuda.upload(z), dt = cuda.uploadTargets(t);
    const a = crossEntropyForward(dz, dt, { withGrad: true, zLoss: 1e-3 });
    const b = crossEntropyForward(dz, dt, { withGrad: true, zLoss: 1e-3, stream: s });
    expect(b.loss).toBe(a.loss);
    expect(bits(b.grad!.download().data).equals(bits(a.grad!.download().data))).toBe(true);
    const out = cuda.empty(rows, vocab, 'f32');
    const c = crossEntropyForward(dz, dt, { lossOnDevice: true, stream: s });
    crossEntropyBackward(dz, dt, c.lse, { out, stream: s });
    cuda.synchronize(s);
    expect(c.loss.download()[0]).toBe(Math.fround(crossEntropyForward(dz, dt).loss));
    expect(bits(out.download().data).equals(bits(crossEntropyBackward(dz, dt, a.lse, { gradDtype: 'f32' }).download().data))).toBe(true);
    const d = await crossEntropyForwardAsync(dz, dt, { stream: s, withGrad: true, zLoss: 1e-3 });
    expect(d.loss).toBe(a.loss);
    // host arrays on a stream: the call waits for that stream before downloading
    const h = crossEntropyForward(z, t, { stream: s, withGrad: true, zLoss: 1e-3 });
    expect(h.loss).toBe(a.loss);
    cuda.destroyStream(s);
    expect(crossEntropyForward(dz, dt, { stream: 0n }).loss).toBe(crossEntropyForward(dz, dt).loss);
    for (const x of [dz, dt, out]) x.dispose();
  });

  it('bad streams are clear errors', () => {
    const { z, t } = problem('stream errors');
    const dz = cuda.upload(z);
    expect(() => crossEntropyForward(dz, t, { stream: 5 as never })).toThrow(/stream must be a bigint cudaStream_t handle/);
    expect(() => crossEntropyForward(dz, t, { stream: -1n })).toThrow(RangeError);
    expect(() => crossEntropyForward(dz, t, { stream: 2n ** 64n })).toThrow(RangeError);
    expect(() => crossEntropyForward(z, t, { stream: 0n, device: 'cpu' })).toThrow(/stream must be undefined unless the call runs on the GPU/);
    expect(() => crossEntropyBackward(dz, t, new Float32Array(9), { stream: 'x' as never })).toThrow(TypeError);
    expect(() => cuda.destroyStream(0n)).toThrow(/must not be 0n/);
    expect(() => cuda.synchronize(1 as never)).toThrow(TypeError);
    dz.dispose();
  });
});

describe(`device selection (${label})`, () => {
  it('lists devices, selects one, and tensors know theirs', () => {
    const n = cuda.deviceCount();
    expect(n).toBeGreaterThanOrEqual(1);
    expect(cuda.getDevice()).toBe(0);
    cuda.setDevice(0);
    for (let i = 0; i < n; i++) expect(cuda.deviceInfo(i).index).toBe(i);
    expect(cuda.deviceInfo().index).toBe(cuda.getDevice());
    const v = cuda.uploadVector(new Float32Array(4));
    expect(v.deviceIndex).toBe(0);
    v.dispose();
    expect(() => cuda.setDevice(n)).toThrow(new RegExp(`device must be an integer in \\[0, ${n}\\)`));
    expect(() => cuda.setDevice(-1)).toThrow(RangeError);
    expect(() => cuda.setDevice(0.5)).toThrow(RangeError);
    expect(() => cuda.deviceInfo(n)).toThrow(RangeError);
    expect(() => cuda.createStream(n)).toThrow(RangeError);
    expect(cuda.getDevice()).toBe(0);
  });
});
