// The cross-entropy options suite (label smoothing, class weights, z-loss, logit scale, softcap,
// focal) on the CUDA kernels (cuda/cross_entropy_options.cuh), through host arrays, against the
// same float64 references as the CPU. On a GPU when there is one; otherwise on the CPU emulation
// of the same kernel source (see cuda_env.ts).
import { describe, expect, it } from 'vitest';
import { backend, cuda, crossEntropyBackward, crossEntropyForward, crossEntropyForwardAsync, logits } from 'fusedce';
import { makeLogits, randomLogits, randomTargets, testRng, toFloat32 } from './reference.mjs';
import { refCrossEntropy, worstRatio } from './loss_reference.mjs';
import { optionsSuite } from './cross_entropy_options.suite';
import { useCudaBackend } from './cuda_env';

const { label } = useCudaBackend();

it(`host arrays with options run on the CUDA backend (${label})`, () => {
  expect(backend()).toBe('cuda');
});

optionsSuite(label);

/** The same bits: typed arrays compared byte for byte. */
function sameBits(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe(`cross-entropy options on device tensors (${label})`, () => {
  const rows = 7, vocab = 4099;
  const r = testRng('cuda options device');
  const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
  const t = randomTargets(r, rows, vocab, 0.2);
  const w = Float32Array.from({ length: vocab }, () => 0.1 + r());
  const opts = { labelSmoothing: 0.1, weight: w, zLoss: 1e-3, softcap: 12, logitScale: 0.8 } as const;

  it('device results equal the host-array results bit for bit, stay on the device, and report zLoss and weightSum', () => {
    const host = crossEntropyForward(z, t, { ...opts, withGrad: true });
    const dz = cuda.upload(z), dt = cuda.uploadTargets(t);
    const dev = crossEntropyForward(dz, dt, { ...opts, withGrad: true });
    expect(dev.loss).toBe(host.loss);
    expect(dev.zLoss).toBe(host.zLoss);
    expect(dev.weightSum).toBe(host.weightSum);
    expect(host.zLoss).toBeGreaterThan(0);
    expect(sameBits(dev.losses.download(), host.losses)).toBe(true);
    expect(sameBits(dev.grad!.download().data, host.grad!.data)).toBe(true);
    // the weights as a DeviceVector give the same bits
    const dw = cuda.uploadVector(w);
    const dev2 = crossEntropyForward(dz, dt, { ...opts, weight: dw, withGrad: true });
    expect(dev2.loss).toBe(host.loss);
    expect(sameBits(dev2.grad!.download().data, host.grad!.data)).toBe(true);
    // backward from the device lse with a per-row device gradOutput (reduction 'none')
    const go = Float32Array.from({ length: rows }, (_, i) => (i % 3) - 0.5);
    const g1 = crossEntropyBackward(dz, dt, dev.lse, { ...opts, weight: dw, reduction: 'none', gradOutput: cuda.uploadVector(go) });
    const g2 = crossEntropyBackward(z, t, dev.lse.download(), { ...opts, reduction: 'none', gradOutput: go });
    expect(sameBits(g1.download().data, g2.data)).toBe(true);
    // and those agree with the CPU's to rounding
    const cpu = crossEntropyBackward(z, t, dev.lse.download(), { ...opts, reduction: 'none', gradOutput: go, gradDtype: 'f32', device: 'cpu' });
    const gf = crossEntropyBackward(z, t, dev.lse.download(), { ...opts, reduction: 'none', gradOutput: go, gradDtype: 'f32' });
    let m = 0;
    for (const v of cpu.data as Float32Array) m = Math.max(m, Math.abs(v));
    expect(worstRatio(gf.data as Float32Array, Float64Array.from(cpu.data as Float32Array), 2e-6 * m, 2e-6).worst).toBeLessThanOrEqual(1);
    for (const x of [dz, dt, dw, dev.losses, dev.lse, dev.grad!, dev2.losses, dev2.lse, dev2.grad!, g1]) x.dispose();
  });

  it('inPlace and out on the device write the out-of-place gradient; async gives the same bits', async () => {
    const ref = crossEntropyForward(z, t, { ...opts, withGrad: true });
    const dz = cuda.upload(z);
    const a = crossEntropyForward(dz, t, { ...opts, withGrad: true, inPlace: true });
    expect(a.grad).toBe(dz);
    expect(sameBits(dz.download().data, ref.grad!.data)).toBe(true);
    const dz2 = cuda.upload(z);
    const out = cuda.empty(rows, vocab, 'f32');
    const b = await crossEntropyForwardAsync(dz2, t, { ...opts, withGrad: true, out });
    expect(b.grad).toBe(out);
    const f32 = crossEntropyForward(z, t, { ...opts, withGrad: true, gradDtype: 'f32' });
    expect(sameBits(out.download().data, f32.grad!.data)).toBe(true);
    expect(b.loss).toBe(ref.loss);
    for (const x of [dz, dz2, out, a.losses, a.lse, b.losses, b.lse]) x.dispose();
  });

  it('16-bit gradients are the f32 gradient rounded (within the 16-bit exp of the gradient pass)', () => {
    const f32 = toFloat32(crossEntropyForward(z, t, { ...opts, withGrad: true, gradDtype: 'f32' }).grad!);
    let m = 0;
    for (const v of f32) m = Math.max(m, Math.abs(v));
    for (const gradDtype of ['bf16', 'f16'] as const) {
      const g = toFloat32(crossEntropyForward(z, t, { ...opts, withGrad: true, gradDtype }).grad!);
      const rel = gradDtype === 'bf16' ? 2 ** -8 : 2 ** -11;
      expect(worstRatio(g, Float64Array.from(f32), 1e-6 * m + 6e-8, rel + 2e-6).worst).toBeLessThanOrEqual(1);
    }
  });

  it('extreme rows agree with the CPU: ±1e4 logits, masked (−inf) runs, a NaN row, ignored rows', () => {
    const V = 3001, n = 6;
    const x = Float32Array.from({ length: n * V }, (_, i) => Math.sin(i * 0.37) * 4);
    for (let j = 0; j < V; j += 3) x[j] = -Infinity;                   // row 0: a third masked
    x[V + 5] = 1e4;                                                      // row 1: one huge logit
    x[2 * V + 9] = -1e4;
    x[3 * V + 100] = Number.NaN;                                         // row 3: NaN
    for (let j = 0; j < V; j++) if (j !== 17) x[4 * V + j] = -Infinity;  // row 4: all masked but the target
    const tt = Int32Array.of(1, 5, 9, 0, 17, -100);
    for (const o of [{ labelSmoothing: 0.1 }, { zLoss: 1e-3, weight: Float32Array.from({ length: V }, (_, j) => 0.5 + (j % 7) / 7) },
      { softcap: 30, logitScale: 1.5 }, { focalGamma: 2 }] as const) {
      const a = crossEntropyForward(logits(x, n, V), tt, { ...o, reduction: 'none', withGrad: true, gradDtype: 'f32', device: 'cpu' });
      const b = crossEntropyForward(logits(x, n, V), tt, { ...o, reduction: 'none', withGrad: true, gradDtype: 'f32' });
      for (let i = 0; i < n; i++) {
        const [la, lb] = [a.losses[i]!, b.losses[i]!];
        if (Number.isNaN(la)) expect(lb, `${JSON.stringify(Object.keys(o))} row ${i}`).toBeNaN();
        else if (!Number.isFinite(la)) expect(lb).toBe(la);
        else expect(Math.abs(la - lb), `${JSON.stringify(Object.keys(o))} row ${i}: ${la} vs ${lb}`).toBeLessThanOrEqual(2e-6 * Math.abs(la) + 2e-6);
      }
      const ga = a.grad!.data as Float32Array, gb = b.grad!.data as Float32Array;
      for (let k = 0; k < ga.length; k++) {
        if (Number.isNaN(ga[k]!)) expect(gb[k]).toBeNaN();
        else expect(Math.abs(ga[k]! - gb[k]!), `${JSON.stringify(Object.keys(o))} element ${k}`).toBeLessThanOrEqual(2e-6 * Math.abs(ga[k]!) + 1e-7);
      }
    }
  });

  it('bad weights are errors naming the element, checked on the device before any kernel reads them', () => {
    const bad = w.slice();
    bad[1234] = Number.NaN;
    const dz = cuda.upload(z);
    const out = cuda.empty(rows, vocab, 'bf16');
    const before = out.download().data;
    const dw = cuda.uploadVector(bad);
    expect(() => crossEntropyForward(dz, t, { weight: dw, withGrad: true, out })).toThrow(RangeError);
    expect(() => crossEntropyForward(dz, t, { weight: dw, withGrad: true, out })).toThrow(/crossEntropyForward: weight\[1234\] = -?nan must be a finite number/);
    expect(sameBits(out.download().data, before)).toBe(true);
    expect(() => crossEntropyForward(z, t, { weight: bad })).toThrow(/weight\[1234\] = -?nan must be a finite number/);
    expect(() => crossEntropyForward(dz, t, { weight: cuda.uploadVector(new Float32Array(vocab - 1)) })).toThrow(/weight must be of length vocab \(4099\)/);
    // a DeviceVector of weights is for the GPU: on the CPU it is a TypeError saying what to pass
    expect(() => crossEntropyForward(z, t, { weight: dw, device: 'cpu' })).toThrow(/weight must be a Float32Array of length vocab/);
    expect(() => crossEntropyForward(dz, t, { labelSmoothing: 2 })).toThrow(/labelSmoothing must be a finite number in \[0, 1\]/);
    expect(() => crossEntropyForward(dz, t, { focalGamma: 1, zLoss: 1e-3 })).toThrow(TypeError);
    for (const x of [dz, out, dw]) x.dispose();
  });
});
