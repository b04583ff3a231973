// The soft-target family on the CUDA kernels (cuda/soft_cross_entropy.cuh): the CPU's own suites —
// soft-target CE from teacher logits and from probabilities (smoothing, class weights, top-k rows),
// KL forward and reverse, entropy and entropyForward, the generalized JSD, each against its float64
// reference and finite differences — run again with host arrays on the GPU (FUSEDCE_DEVICE=cuda),
// then the device-tensor contract. On a GPU when there is one, otherwise on the CPU emulation of the
// same kernel source (see cuda_env.ts).
import { describe, expect, it } from 'vitest';
import {
  DeviceLogits, DeviceVector, bf16, cuda, entropy, entropyForward, jsDivergenceForward, klDivergenceForward, klDivergenceForwardAsync,
  logits, softCrossEntropyBackward, softCrossEntropyForward,
} from 'fusedce';
import { makeLogits, randomLogits, testRng, toFloat32 } from './reference.mjs';
import { useCudaBackend } from './cuda_env';

const { label } = useCudaBackend();

// The CPU suites, on this backend (their describe names say CPU; the calls go to CUDA here).
await import('./soft_cross_entropy.test');
await import('./soft_probs.test');
await import('./entropy_loss.test');
await import('./jsd.test');

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe(`the soft family on device tensors (${label})`, () => {
  const rows = 6, vocab = 3001;
  const r = testRng('soft cuda device');
  const { z } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');
  const { z: u } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, 'bf16');

  it('device results equal the host-array results bit for bit and stay on the device', async () => {
    const dz = cuda.upload(z), du = cuda.upload(u);
    const calls: [string, (a: typeof z | DeviceLogits, b: typeof u | DeviceLogits) => { loss: number; losses: Float32Array | DeviceVector; grad?: unknown }][] = [
      ['soft CE', (a, b) => softCrossEntropyForward(a as never, b, { temperature: 2, tSquared: true, withGrad: true })],
      ['KL forward', (a, b) => klDivergenceForward(a as never, b, { withGrad: true })],
      ['KL reverse', (a, b) => klDivergenceForward(a as never, b, { direction: 'reverse', withGrad: true, reduction: 'sum' })],
      ['JSD', (a, b) => jsDivergenceForward(a as never, b, { beta: 0.3, withGrad: true })],
      ['entropy', (a) => entropyForward(a as never, { withGrad: true, temperature: 0.7 })],
    ];
    for (const [name, call] of calls) {
      const host = call(z, u) as { loss: number; losses: Float32Array; grad: { data: Uint16Array } };
      const dev = call(dz, du) as { loss: number; losses: DeviceVector; grad: DeviceLogits; lse?: DeviceVector };
      expect(dev.losses, name).toBeInstanceOf(DeviceVector);
      expect(dev.grad, name).toBeInstanceOf(DeviceLogits);
      expect(dev.loss, name).toBe(host.loss);
      expect(bits(dev.losses.download()).equals(bits(host.losses)), name).toBe(true);
      expect(bits(dev.grad.download().data).equals(bits(host.grad.data)), name).toBe(true);
      for (const t of [dev.losses, dev.grad, dev.lse]) t?.dispose();
    }
    const a = await klDivergenceForwardAsync(dz, du, { withGrad: true });
    expect(a.loss).toBe(klDivergenceForward(z, u, { withGrad: true }).loss);
    const ent = entropy(dz);
    expect(ent).toBeInstanceOf(DeviceVector);
    expect(bits(ent.download()).equals(bits(entropy(z)))).toBe(true);
    // host logits with a device target run on the GPU too
    expect(klDivergenceForward(z, du).loss).toBe(klDivergenceForward(z, u).loss);
    for (const t of [dz, du, a.losses, a.grad!, ent]) t.dispose();
  });

  it('the backward from a device lse, with a per-row device gradOutput, and in place', () => {
    const dz = cuda.upload(z), du = cuda.upload(u);
    const f = softCrossEntropyForward(dz, du, { reduction: 'none' });
    const go = Float32Array.from({ length: rows }, (_, i) => i - 2);
    const g1 = softCrossEntropyBackward(dz, du, f.lse, { reduction: 'none', gradOutput: cuda.uploadVector(go), gradDtype: 'f32' });
    const g2 = softCrossEntropyBackward(z, u, f.lse.download(), { reduction: 'none', gradOutput: go, gradDtype: 'f32' });
    expect(bits(g1.download().data).equals(bits(g2.data))).toBe(true);
    // and it agrees with the CPU's to rounding
    const cpu = softCrossEntropyBackward(z, u, f.lse.download(), { reduction: 'none', gradOutput: go, gradDtype: 'f32', device: 'cpu' });
    let m = 0;
    for (const v of cpu.data as Float32Array) m = Math.max(m, Math.abs(v));
    const a = g2.data as Float32Array, b = cpu.data as Float32Array;
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(2e-6 * m + 1e-6 * Math.abs(b[i]!));
    // in place on the device: the gradient over the logits
    const ref = klDivergenceForward(z, u, { withGrad: true }).grad!.data;
    const dz2 = cuda.upload(z);
    const k = klDivergenceForward(dz2, du, { withGrad: true, inPlace: true });
    expect(k.grad).toBe(dz2);
    expect(bits(dz2.download().data).equals(bits(ref))).toBe(true);
    for (const t of [dz, du, dz2, f.losses, f.lse, g1]) t.dispose();
  });

  it('probability targets are checked on the device, naming the bad value; all-zero rows count nowhere', () => {
    const q = new Float32Array(rows * vocab);
    for (let i = 0; i < rows; i++) for (let k = 0; k < 5; k++) q[i * vocab + ((i * 7 + k * 11) % vocab)] = 0.2;
    q.fill(0, 2 * vocab, 3 * vocab);  // row 2: all zero
    const dq = cuda.upload(logits(q, rows, vocab));
    const dz = cuda.upload(z);
    const out = softCrossEntropyForward(dz, dq, { targetKind: 'probs', withGrad: true, gradDtype: 'f32' });
    expect(out.count).toBe(rows - 1);
    expect(out.losses.download()[2]).toBe(0);
    const g = out.grad!.download().data as Float32Array;
    expect(g.subarray(2 * vocab, 3 * vocab).every((v) => v === 0)).toBe(true);
    const bad = q.slice();
    bad[4 * vocab + 17] = -0.5;
    const dbad = cuda.upload(logits(bad, rows, vocab));
    expect(() => softCrossEntropyForward(dz, dbad, { targetKind: 'probs' })).toThrow(RangeError);
    expect(() => softCrossEntropyForward(dz, dbad, { targetKind: 'probs' }))
      .toThrow(/softCrossEntropyForward: target\[4, 17\] = -0\.500000 must be a finite probability ≥ 0 \(targetKind 'probs'\)/);
    bad[4 * vocab + 17] = Number.NaN;
    expect(() => softCrossEntropyForward(z, logits(bad, rows, vocab), { targetKind: 'probs' })).toThrow(/target\[4, 17\] = -?nan must be a finite probability/);
    for (const t of [dq, dz, dbad, out.losses, out.lse, out.grad!]) t.dispose();
  });

  it('bad input is a clear error on the GPU path too', () => {
    const dz = cuda.upload(z);
    expect(() => klDivergenceForward(dz, u, { device: 'cpu' })).toThrow(/device must be 'cuda' or 'auto' when logits or the target are device tensors/);
    expect(() => klDivergenceForward(dz, logits(new Float32Array(rows * 5), rows, 5))).toThrow(/refLogits must be a \[6, 3001\] matrix like logits/);
    expect(() => softCrossEntropyForward(dz, u, { targetKind: 'probs' })).toThrow(/target\.dtype must be 'f32' with targetKind 'probs'/);
    expect(() => softCrossEntropyForward(dz, u, { labelSmoothing: 0.1 })).toThrow(/labelSmoothing must be undefined unless targetKind is 'probs'/);
    expect(() => jsDivergenceForward(dz, u, { beta: 2 })).toThrow(/beta must be in \[0, 1\]/);
    expect(() => entropyForward(dz, { withGrad: true, out: z })).toThrow(/out must be a DeviceLogits/);
    expect(() => entropyForward(dz, { stream: 1 as never })).toThrow(/stream must be a bigint/);
    expect(() => entropyForward(z, { stream: 0n, device: 'cpu' })).toThrow(/stream must be undefined unless the call runs on the GPU/);
    const w = new Float32Array(vocab).fill(1);
    w[3] = Number.NaN;
    expect(() => softCrossEntropyForward(dz, cuda.upload(logits(new Float32Array(rows * vocab).fill(1 / vocab), rows, vocab)), { targetKind: 'probs', weight: w }))
      .toThrow(/weight\[3\] = nan must be a finite number/);
    dz.dispose();
    expect(() => entropyForward(dz)).toThrow(/the DeviceLogits has been disposed/);
  });

  it('16-bit gradients are the f32 gradient rounded', () => {
    const f32 = toFloat32(klDivergenceForward(z, u, { direction: 'reverse', withGrad: true, gradDtype: 'f32' }).grad!);
    const b = bf16.toFloat32(klDivergenceForward(z, u, { direction: 'reverse', withGrad: true, gradDtype: 'bf16' }).grad!.data as Uint16Array);
    let m = 0;
    for (const v of f32) m = Math.max(m, Math.abs(v));
    for (let i = 0; i < b.length; i++) expect(Math.abs(b[i]! - f32[i]!)).toBeLessThanOrEqual(2 ** -8 * Math.abs(f32[i]!) + 1e-7 * m);
  });
});
