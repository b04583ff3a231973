// Binary cross-entropy (cuda/binary_cross_entropy.cuh) and temperature scaling (passes of the
// options kernel with logitScale and statistics) on the CUDA backend: the CPU's suites run again
// with host arrays on the GPU (FUSEDCE_DEVICE=cuda), then the device-tensor contract. On a GPU when
// there is one, otherwise on the CPU emulation of the same kernel source (see cuda_env.ts).
import { describe, expect, it } from 'vitest';
import { DeviceLogits, DeviceVector, binaryCrossEntropyWithLogits, binaryCrossEntropyWithLogitsAsync, cuda, fitTemperature, logits } from 'fusedce';
import { makeLogits, randomLogits, sampleTargets, testRng } from './reference.mjs';
import { useCudaBackend } from './cuda_env';

const { label } = useCudaBackend();

// The CPU suites, on this backend.
await import('./binary_cross_entropy.test');
await import('./temperature.test');

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe(`binary CE and temperature scaling on device tensors (${label})`, () => {
  const rows = 5, vocab = 1031;
  const r = testRng('bce cuda device');
  const { z } = makeLogits(randomLogits(r, rows, vocab, 4), rows, vocab, 'bf16');
  const y = Float32Array.from({ length: rows * vocab }, () => (r() < 0.2 ? 1 : r() < 0.5 ? 0 : r()));
  const pw = Float32Array.from({ length: vocab }, () => 0.5 + 2 * r());
  const w = Float32Array.from({ length: rows * vocab }, () => r() * 2 - 0.5);

  it('device results equal the host-array results bit for bit and stay on the device', async () => {
    const dz = cuda.upload(z), dy = cuda.upload(logits(y, rows, vocab));
    for (const o of [{}, { posWeight: pw }, { posWeight: 3, weight: w }, { weight: pw }] as const)
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        const host = binaryCrossEntropyWithLogits(z, y, { ...o, reduction, withGrad: true });
        const dev = binaryCrossEntropyWithLogits(dz, dy, { ...o, reduction, withGrad: true });
        expect(dev.loss).toBe(host.loss);
        expect(dev.count).toBe(rows * vocab);
        expect(dev.grad).toBeInstanceOf(DeviceLogits);
        expect(bits(dev.grad!.download().data).equals(bits(host.grad!.data))).toBe(true);
        if (reduction === 'none') {
          expect(dev.losses).toBeInstanceOf(DeviceVector);
          expect(bits(dev.losses!.download()).equals(bits(host.losses!))).toBe(true);
          dev.losses!.dispose();
        }
        dev.grad!.dispose();
      }
    // host targets with device logits; async; in place
    const a = await binaryCrossEntropyWithLogitsAsync(dz, y, { withGrad: true });
    expect(a.loss).toBe(binaryCrossEntropyWithLogits(z, y).loss);
    const dz2 = cuda.upload(z);
    binaryCrossEntropyWithLogits(dz2, dy, { withGrad: true, inPlace: true });
    expect(bits(dz2.download().data).equals(bits(binaryCrossEntropyWithLogits(z, y, { withGrad: true }).grad!.data))).toBe(true);
    for (const t of [dz, dy, dz2, a.grad!]) t.dispose();
  });

  it('targets are checked on the device (the first one outside [0, 1] is named), and nothing is written', () => {
    const bad = y.slice();
    bad[2 * vocab + 5] = 1.5;
    const dz = cuda.upload(z), dbad = cuda.upload(logits(bad, rows, vocab));
    const out = cuda.empty(rows, vocab, 'bf16');
    const before = out.download().data;
    expect(() => binaryCrossEntropyWithLogits(dz, dbad, { withGrad: true, out }))
      .toThrow(new RegExp(`binaryCrossEntropyWithLogits: targets\\[${2 * vocab + 5}\\] = 1\\.5.* must be in \\[0, 1\\]`));
    expect(bits(out.download().data).equals(bits(before))).toBe(true);
    expect(() => binaryCrossEntropyWithLogits(dz, logits(y, rows, vocab) as never)).toThrow(TypeError);
    expect(() => binaryCrossEntropyWithLogits(dz, cuda.empty(rows, vocab, 'bf16'))).toThrow(/targets must be an f32 \[5, 1031\] matrix like logits/);
    expect(() => binaryCrossEntropyWithLogits(dz, y, { posWeight: Float32Array.of(...pw.subarray(0, vocab - 1), -1) })).toThrow(/posWeight\[1030\] = -1 must be a finite number ≥ 0/);
    for (const t of [dz, dbad, out]) t.dispose();
  });

  it('fitTemperature takes device logits and targets: the same τ as the host arrays', () => {
    const rr = testRng('temperature cuda');
    const n = 64, V = 257;
    const x = randomLogits(rr, n, V, 3);
    // targets from softmax(x/2): an optimum near τ = 2 that the data decide (uniform targets put it
    // near τ = ∞, where the NLL is flat and the two backends' roundings pick different τ)
    const t = sampleTargets(rr, x, n, V, 2, 0.1);
    const zl = logits(x, n, V);
    const host = fitTemperature(zl, t);
    const dz = cuda.upload(zl), dt = cuda.uploadTargets(t);
    const dev = fitTemperature(dz, dt);
    expect(dev.temperature).toBe(host.temperature);
    expect(dev.nllAfter).toBe(host.nllAfter);
    expect(dev.iterations).toBe(host.iterations);
    // and it agrees with the CPU's optimum to the fit's tolerance
    const cpu = fitTemperature(zl, t, { device: 'cpu' });
    expect(Math.abs(dev.temperature - cpu.temperature)).toBeLessThanOrEqual(1e-5 * cpu.temperature);
    dz.dispose();
    dt.dispose();
  });
});
