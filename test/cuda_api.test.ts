// The CUDA backend's device tensors and its API edges: upload/download round trips, results that
// stay on the device, out / inPlace on the device, async calls, dispose (and use after it),
// Symbol.dispose, fromPointer, and bad input as clear errors. On a GPU when there is one,
// otherwise on the CPU emulation of the kernels (see cuda_env.ts).
import {
  type Logits,
  DeviceLogits,
  DeviceVector,
  bf16,
  crossEntropyBackward,
  crossEntropyBackwardAsync,
  crossEntropyForward,
  crossEntropyForwardAsync,
  cuda,
  backend,
  cpuBackend,
  logits,
  setDevice,
} from 'fusedce';
import { describe, expect, it } from 'vitest';
import { randomLogits, randomTargets, testRng } from './reference.mjs';
import { useCudaBackend } from './cuda_env';

const { label, onGpu } = useCudaBackend();

function problem(label: string, rows = 6, vocab = 3001) {
  const r = testRng(label);
  const x = randomLogits(r, rows, vocab);
  const z = logits(bf16.fromFloat32(x), rows, vocab, 'bf16');
  return { z, t: randomTargets(r, rows, vocab, 0.2), rows, vocab };
}

describe(`device tensors (${label})`, () => {
  it('reports a device', () => {
    expect(cuda.isAvailable()).toBe(true);
    const info = cuda.deviceInfo();
    expect(info.name.length).toBeGreaterThan(0);
    expect(info.multiprocessors).toBeGreaterThan(0);
    expect(info.totalMemory).toBeGreaterThan(0);
  });

  it('upload → download round-trips every dtype bit for bit', () => {
    const { z, t } = problem('roundtrip');
    const d = cuda.upload(z);
    expect(d).toBeInstanceOf(DeviceLogits);
    expect([d.rows, d.vocab, d.dtype, d.bytes]).toEqual([z.rows, z.vocab, 'bf16', z.data.byteLength]);
    expect(d.download().data).toEqual(z.data);
    const f = cuda.upload(logits(new Float32Array([1, -2, 3.5, Number.NaN]), 2, 2));
    expect(Array.from(f.download().data as Float32Array)).toEqual([1, -2, 3.5, Number.NaN]);
    const dt = cuda.uploadTargets(t);
    expect(dt.download()).toEqual(t);
    d.dispose();
    f.dispose();
    dt.dispose();
  });

  it('device results equal the host-array results on the same backend, and stay on the device', () => {
    const { z, t } = problem('device-results');
    const host = crossEntropyForward(z, t, { withGrad: true });
    const dz = cuda.upload(z);
    const dt = cuda.uploadTargets(t);
    const dev = crossEntropyForward(dz, dt, { withGrad: true });
    expect(dev.losses).toBeInstanceOf(DeviceVector);
    expect(dev.grad).toBeInstanceOf(DeviceLogits);
    expect(dev.loss).toBe(host.loss);
    expect(dev.count).toBe(host.count);
    expect(dev.losses.download()).toEqual(host.losses);
    expect(dev.lse.download()).toEqual(host.lse);
    expect(dev.grad!.download().data).toEqual(host.grad!.data);
    // backward from the device lse, into a reused device `out`, f32
    const out = cuda.empty(z.rows, z.vocab, 'f32');
    const g = crossEntropyBackward(dz, dt, dev.lse, { out, reduction: 'mean' });
    expect(g).toBe(out);
    const hostG = crossEntropyBackward(z, t, host.lse, { gradDtype: 'f32' });
    expect(g.download().data).toEqual(hostG.data);
    for (const x of [dz, dt, dev.losses, dev.lse, dev.grad!, out]) x.dispose();
  });

  it('host targets with device logits, and a per-row device gradOutput', () => {
    const { z, t, rows } = problem('mixed');
    const dz = cuda.upload(z);
    const a = crossEntropyForward(dz, t, { reduction: 'none' });
    const go = new Float32Array(rows).map((_, i) => (i % 3) - 1);
    const g1 = crossEntropyBackward(dz, t, a.lse, { reduction: 'none', gradOutput: cuda.uploadVector(go) });
    const g2 = crossEntropyBackward(z, t, a.lse.download(), { reduction: 'none', gradOutput: go });
    expect(g1.download().data).toEqual(g2.data);
    dz.dispose();
  });

  it('inPlace on the device writes the gradient over the logits', () => {
    const { z, t } = problem('inplace');
    const expected = crossEntropyForward(z, t, { withGrad: true }).grad!.data;
    const dz = cuda.upload(z);
    const r = crossEntropyForward(dz, t, { withGrad: true, inPlace: true });
    expect(r.grad).toBe(dz);
    expect(dz.download().data).toEqual(expected);
    dz.dispose();
  });

  it('async calls settle with the sync results, concurrently', async () => {
    const { z, t } = problem('async');
    const dz = cuda.upload(z);
    const sync = crossEntropyForward(dz, t, { withGrad: true });
    const runs = await Promise.all([0, 1, 2].map(() => crossEntropyForwardAsync(dz, t, { withGrad: true })));
    for (const r of runs) {
      expect(r.loss).toBe(sync.loss);
      expect(r.grad!.download().data).toEqual(sync.grad!.download().data);
    }
    const g = await crossEntropyBackwardAsync(dz, t, sync.lse);
    expect(g.download().data).toEqual(crossEntropyBackward(dz, t, sync.lse).download().data);
    // a pending call holds its tensors: dispose() is refused until it settles
    const p = crossEntropyForwardAsync(dz, t);
    let refused: unknown;
    try {
      dz.dispose();
    } catch (e) {
      refused = e;
    }
    await p;
    expect(String(refused)).toMatch(/in use by a pending async call/);
    dz.dispose();
    expect(dz.disposed).toBe(true);
  });

  it('dispose is idempotent, Symbol.dispose disposes, and use after dispose throws naming it', () => {
    const { z, t } = problem('dispose');
    const dz = cuda.upload(z);
    expect(dz.disposed).toBe(false);
    dz[Symbol.dispose]();
    expect(dz.disposed).toBe(true);
    dz.dispose();
    expect(() => dz.download()).toThrow(/DeviceLogits has been disposed/);
    expect(() => crossEntropyForward(dz, t)).toThrow(/crossEntropyForward: the DeviceLogits has been disposed/);
    const dt = cuda.uploadTargets(t);
    dt.dispose();
    expect(() => crossEntropyForward(z, dt)).toThrow(/DeviceTargets has been disposed/);
  });

  it('fromPointer wraps device memory without owning it', () => {
    const { z, t, rows, vocab } = problem('frompointer');
    const owner = cuda.upload(z);
    const view = cuda.fromPointer(owner.address, rows, vocab, 'bf16');
    expect(crossEntropyForward(view, t).loss).toBe(crossEntropyForward(owner, t).loss);
    view.dispose(); // forgets it; the owner's memory stays valid
    expect(owner.download().data).toEqual(z.data);
    owner.dispose();
  });
});

describe(`bad input on the CUDA backend is a clear error (${label})`, () => {
  const { z, t, rows, vocab } = problem('errors');
  it('targets out of range name the row, on device and host targets, and write nothing', () => {
    const dz = cuda.upload(z);
    const bad = Int32Array.from(t);
    bad[4] = vocab;
    const out = cuda.empty(rows, vocab, 'bf16');
    const before = out.download().data;
    expect(() => crossEntropyForward(dz, cuda.uploadTargets(bad), { withGrad: true, out }))
      .toThrow(new RangeError(`crossEntropyForward: targets[4] = ${vocab} is outside [0, ${vocab}) and is not ignoreIndex (-100)`));
    expect(out.download().data).toEqual(before);
    expect(() => crossEntropyBackward(dz, bad, new Float32Array(rows))).toThrow(RangeError);
    dz.dispose();
  });
  it('shapes, kinds and options', () => {
    const dz = cuda.upload(z);
    expect(() => crossEntropyForward(dz, new Int32Array(rows + 1))).toThrow(/targets must be of length rows/);
    expect(() => crossEntropyForward(dz, [1, 2] as unknown as Int32Array)).toThrow(TypeError);
    expect(() => crossEntropyForward(dz, t, { device: 'cpu' })).toThrow(/device must be 'cuda' or 'auto' when logits or targets are device tensors/);
    expect(() => crossEntropyForward(dz, t, { withGrad: true, out: z as Logits })).toThrow(/out must be a DeviceLogits/);
    expect(() => crossEntropyForward(dz, t, { withGrad: true, out: cuda.empty(rows, vocab + 1, 'bf16') })).toThrow(/out must be a \[6, 3001\] matrix/);
    expect(() => crossEntropyForward(dz, t, { withGrad: true, out: dz })).toThrow(/out must be a tensor other than logits/);
    expect(() => crossEntropyForward(dz, t, { withGrad: true, inPlace: true, gradDtype: 'f32' })).toThrow(/gradDtype must be the logits' dtype/);
    expect(() => crossEntropyBackward(dz, t, new Float32Array(rows - 1))).toThrow(/lse must be of length rows/);
    expect(() => crossEntropyForward(dz, t, { reduction: 'avg' as never })).toThrow(RangeError);
    expect(() => crossEntropyForward(dz, t, { devcie: 'cuda' } as never)).toThrow(/unknown option 'devcie'/);
    dz.dispose();
  });
  it('running out of device memory is an Error saying what to do, not a crash', () => {
    expect(() => cuda.empty(2 ** 20, 2 ** 20, 'f32')).toThrow(/cannot allocate 4398046511104 bytes of device memory: .*out of memory.*dispose/);
  });
  it("device 'auto' picks a real GPU, never the emulation", () => {
    setDevice('auto');
    try {
      expect(backend()).toBe(onGpu ? 'cuda' : cpuBackend());
    } finally {
      setDevice('cuda');
    }
  });
  it('constructors check their arguments', () => {
    expect(() => cuda.upload({ data: new Float32Array(3), rows: 2, vocab: 2, dtype: 'f32' })).toThrow(RangeError);
    expect(() => cuda.empty(-1, 4, 'f32')).toThrow(/cuda.empty: rows must be an integer/);
    expect(() => cuda.empty(2, 4, 'f64' as never)).toThrow(/cuda.empty: dtype/);
    expect(() => cuda.uploadTargets(new Float32Array(2) as never)).toThrow(/cuda.uploadTargets: targets must be an Int32Array/);
    expect(() => cuda.fromPointer(5 as never, 1, 1, 'f32')).toThrow(/cuda.fromPointer: ptr must be a bigint/);
    expect(() => cuda.fromPointer(0n, 1, 1, 'f32')).toThrow(RangeError);
    expect(() => cuda.fromPointer(3n, 1, 1, 'f32')).toThrow(/aligned to the 4-byte element size/);
    // host memory is not device memory
    expect(() => cuda.fromPointer(0x1000n, 1, 4, 'f32')).toThrow(/not device memory/);
    expect(() => setDevice('gpu' as never)).toThrow(/setDevice: device must be 'auto' \| 'cpu' \| 'cuda'/);
  });
});
