// sequenceIds and reduction 'sequenceMean' on the CUDA backend: the CPU's suite runs again with host
// arrays on the GPU (FUSEDCE_DEVICE=cuda), then the device-tensor contract (device logits and
// targets give the host-array results; the sequences come back as host arrays; lossOnDevice is
// refused). The per-row double losses come from the kernels (fce_cuda_args::losses64), the
// sequence sums are taken on the host. On a GPU when there is one, else on the CPU emulation.
import { describe, expect, it } from 'vitest';
import { DeviceLogits, DeviceVector, crossEntropyBackward, crossEntropyForward, crossEntropyForwardAsync, cuda } from 'fusedce';
import { makeLogits, randomLogits, randomTargets, testRng } from './reference.mjs';
import { useCudaBackend } from './cuda_env';

const { label } = useCudaBackend();

// The CPU suite, on this backend.
await import('./sequences.test');

const bits = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe(`sequences on device tensors (${label})`, () => {
  const rows = 19, vocab = 1031;
  const r = testRng('sequences cuda device');
  const { z } = makeLogits(randomLogits(r, rows, vocab, 3), rows, vocab, 'bf16');
  const t = randomTargets(r, rows, vocab, 0.2);
  const ids = Int32Array.from({ length: rows }, (_, i) => Math.floor(i / 4) + (i >= 8 ? 1 : 0));  // sequence 2 is empty

  for (const o of [{}, { labelSmoothing: 0.1, zLoss: 1e-3 }, { logitScale: 0.7, softcap: 10 }] as const) {
    it(`device logits and targets give the host arrays' sequences and loss (${JSON.stringify(o)})`, async () => {
      const dz = cuda.upload(z), dt = cuda.uploadTargets(t);
      const host = crossEntropyForward(z, t, { ...o, sequenceIds: ids, reduction: 'sequenceMean', withGrad: true });
      const dev = crossEntropyForward(dz, dt, { ...o, sequenceIds: ids, reduction: 'sequenceMean', withGrad: true });
      expect(dev.loss).toBe(host.loss);
      expect(dev.sequences!.logprob).toEqual(host.sequences!.logprob);
      expect(dev.sequences!.tokens).toEqual(host.sequences!.tokens);
      expect(dev.sequences!.meanLoss).toEqual(host.sequences!.meanLoss);
      expect(dev.sequences!.tokens[2]).toBe(0);
      // and they are the CPU's, to the rounding of the kernels' fp32 lse
      const cpu = crossEntropyForward(z, t, { ...o, sequenceIds: ids, reduction: 'sequenceMean', device: 'cpu' });
      expect(Math.abs(dev.loss - cpu.loss)).toBeLessThanOrEqual(2e-6 * cpu.loss);
      expect(dev.sequences!.tokens).toEqual(cpu.sequences!.tokens);
      cpu.sequences!.logprob.forEach((v, s) => expect(Math.abs(dev.sequences!.logprob[s]! - v)).toBeLessThanOrEqual(1e-5 * Math.abs(v) + 1e-6));
      expect(cpu.sequences!.logprob.some((v) => v < -1)).toBe(true);
      expect(dev.losses).toBeInstanceOf(DeviceVector);
      expect(dev.grad).toBeInstanceOf(DeviceLogits);
      expect(bits(dev.grad!.download().data).equals(bits(host.grad!.data))).toBe(true);
      // the separate backward from the device lse, and the async forward with host targets
      const back = crossEntropyBackward(dz, dt, dev.lse, { ...o, sequenceIds: ids, reduction: 'sequenceMean', gradOutput: 2 });
      const hostBack = crossEntropyBackward(z, t, host.lse, { ...o, sequenceIds: ids, reduction: 'sequenceMean', gradOutput: 2 });
      expect(bits(back.download().data).equals(bits(hostBack.data))).toBe(true);
      const a = await crossEntropyForwardAsync(dz, t, { ...o, sequenceIds: ids });
      expect(a.sequences!.logprob).toEqual(host.sequences!.logprob);
      expect(a.loss).toBe(crossEntropyForward(z, t, { ...o, sequenceIds: ids }).loss);
      for (const x of [dz, dt, dev.losses, dev.lse, dev.grad!, back, a.losses, a.lse]) x.dispose();
    });
  }

  it('lossOnDevice cannot give sequences, and bad sequence ids are the CPU errors', () => {
    const dz = cuda.upload(z);
    expect(() => crossEntropyForward(dz, t, { sequenceIds: ids, lossOnDevice: true }))
      .toThrow(/crossEntropyForward: sequenceIds must be undefined with lossOnDevice \(the per-sequence sums are taken on the host\)/);
    expect(() => crossEntropyForward(dz, t, { reduction: 'sequenceMean' }))
      .toThrow(/sequenceIds must be an Int32Array\(19\) of sequence ids ≥ 0 with reduction 'sequenceMean'/);
    expect(() => crossEntropyForward(dz, t, { sequenceIds: Int32Array.from({ length: rows }, (_, i) => (i === 3 ? -1 : 0)) }))
      .toThrow(/sequenceIds\[3\] must be a sequence id in \[0, /);
    expect(() => crossEntropyBackward(dz, t, new Float32Array(rows), { sequenceIds: ids, reduction: 'sequenceMean', gradOutput: new Float32Array(rows) }))
      .toThrow(/gradOutput must be a finite number with reduction 'sequenceMean'/);
    dz.dispose();
  });
});
