// The native boundary: every failure found by the fuzzer and by hand on the first boundary
// (README "Memory safety"), each ending in a clear error or a correct result. Anything that could
// take a process down runs in a child process, so a crash is a failure here, not the end of the run.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bf16,
  binaryCrossEntropyWithLogits,
  binaryCrossEntropyWithLogitsAsync,
  crossEntropyBackward,
  crossEntropyBackwardAsync,
  crossEntropyForward,
  crossEntropyForwardAsync,
  entropyAsync,
  f16,
  klDivergenceForward,
  logits,
  softCrossEntropyBackward,
  softCrossEntropyForward,
  softCrossEntropyForwardAsync,
} from 'fusedce';
import { randomTargets, testRng } from './reference.mjs';

const root = path.resolve(__dirname, '..');

/** Runs a CommonJS snippet in a fresh node with `f` = the package; returns what happened. */
function child(code: string, opts: { ulimitKb?: number; env?: Record<string, string> } = {}) {
  const script = `const f = require(${JSON.stringify(root)});\n${code}`;
  const cmd = opts.ulimitKb ? 'bash' : process.execPath;
  const args = opts.ulimitKb ? ['-c', `ulimit -v ${opts.ulimitKb}; exec "${process.execPath}" -e "$0"`, script] : ['-e', script];
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 60_000 });
  return { status: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

function sinLogits(rows: number, vocab: number): Float32Array {
  return new Float32Array(rows * vocab).map((_, i) => 3 * Math.sin(i * 0.37));
}

describe('one overlap rule, for every op and both directions', () => {
  const rows = 8, vocab = 64;
  it('a gradient over the targets is a RangeError, not a SIGSEGV (forward and backward)', () => {
    // the reproduction of the report: the targets live in the first 32 bytes of the gradient's buffer
    const buf = new ArrayBuffer(rows * vocab * 4);
    const t = new Int32Array(buf, 0, rows).fill(1);
    const z = logits(sinLogits(rows, vocab), rows, vocab);
    const out = { data: new Float32Array(buf), dtype: 'f32' as const, rows, vocab };
    expect(() => crossEntropyForward(z, t, { withGrad: true, out, threads: 1 })).toThrow(RangeError);
    expect(() => crossEntropyForward(z, t, { withGrad: true, out, threads: 1 })).toThrow(/crossEntropyForward: out.data overlaps another input \(targets\)/);
    const lse = new Float32Array(rows);
    expect(() => crossEntropyBackward(z, t, lse, { out })).toThrow(/crossEntropyBackward: out.data overlaps another input \(targets\)/);
    expect(Array.from(t)).toEqual(new Array(rows).fill(1));  // nothing was written
  });
  it('a gradient over lse, a per-row gradOutput or the class weights is a RangeError', () => {
    const z = logits(sinLogits(rows, vocab), rows, vocab);
    const t = randomTargets(testRng('ov'), rows, vocab, -100, 0);
    const { lse } = crossEntropyForward(z, t);
    const big = new Float32Array(rows * vocab + vocab);
    big.set(lse, 5);
    const out = logits(big.subarray(0, rows * vocab), rows, vocab);
    const lseIn = big.subarray(5, 5 + rows);
    expect(() => crossEntropyBackward(z, t, lseIn, { out })).toThrow(/out.data overlaps another input \(lse\)/);
    const go = big.subarray(9, 9 + rows).fill(1);
    expect(() => crossEntropyBackward(z, t, lse, { out, reduction: 'none', gradOutput: go })).toThrow(/overlaps another input \(gradOutput\)/);
    const w = big.subarray(rows * vocab - 3, rows * vocab - 3 + vocab).fill(1);
    expect(() => crossEntropyForward(z, t, { withGrad: true, out, weight: w })).toThrow(/overlaps another input \(weight\)/);
    expect(() => crossEntropyBackward(z, t, lse, { out, weight: w })).toThrow(/overlaps another input \(weight\)/);
  });
  it('soft CE, KL and BCE use the same rule (targets, posWeight, weight)', () => {
    const buf = new Float32Array(2 * rows * vocab + vocab);
    const z = logits(sinLogits(rows, vocab), rows, vocab);
    const q = logits(buf.subarray(0, rows * vocab), rows, vocab);
    const out = logits(buf.subarray(rows * vocab - 1, 2 * rows * vocab - 1), rows, vocab);
    expect(() => softCrossEntropyForward(z, q, { withGrad: true, out })).toThrow(/softCrossEntropyForward: out.data overlaps another input \(target.data\)/);
    expect(() => klDivergenceForward(z, q, { withGrad: true, out })).toThrow(/klDivergenceForward: out.data overlaps another input/);
    const lse = new Float32Array(rows);
    expect(() => softCrossEntropyBackward(z, q, lse, { out })).toThrow(/softCrossEntropyBackward: out.data overlaps another input/);
    const y = new Float32Array(rows * vocab).fill(0.5);
    const bout = logits(buf.subarray(rows * vocab, 2 * rows * vocab), rows, vocab);
    const pw = buf.subarray(2 * rows * vocab - 4, 2 * rows * vocab - 4 + vocab).fill(1);
    expect(() => binaryCrossEntropyWithLogits(z, y, { withGrad: true, out: bout, posWeight: pw })).toThrow(/overlaps another input \(posWeight\)/);
    const yb = buf.subarray(0, rows * vocab).fill(0.5);
    expect(() => binaryCrossEntropyWithLogits(z, yb, { withGrad: true, out })).toThrow(/overlaps another input \(targets\)/);
  });
  it('the exact in-place gradient stays allowed; a shifted one is refused', () => {
    const z = logits(sinLogits(rows, vocab), rows, vocab);
    const t = new Int32Array(rows).fill(3);
    const ref = crossEntropyForward(z, t, { withGrad: true }).grad.data;
    const zc = logits(z.data.slice(), rows, vocab);
    const g = crossEntropyForward(zc, t, { withGrad: true, inPlace: true }).grad.data;
    expect(g.buffer).toBe(zc.data.buffer);
    expect(Array.from(g)).toEqual(Array.from(ref));
  });
});

describe('async calls keep their memory valid', () => {
  const rows = 64, vocab = 32003;
  const mk = () => logits(bf16.fromFloat32(sinLogits(rows, vocab)), rows, vocab, 'bf16');
  it('detaching (transferring) the logits or out during the call copies instead, and the result is the sync one', async () => {
    const z = mk();
    const t = randomTargets(testRng('detach'), rows, vocab, -100, 0.1);
    const sync = crossEntropyForward(z, t, { withGrad: true });
    const out = logits(new Uint16Array(rows * vocab), rows, vocab, 'bf16');
    const p = crossEntropyForwardAsync(z, t, { withGrad: true, out });
    const moved = structuredClone(z.data.buffer, { transfer: [z.data.buffer as ArrayBuffer] });
    const moved2 = structuredClone(out.data.buffer, { transfer: [out.data.buffer as ArrayBuffer] });
    expect(z.data.length).toBe(rows * vocab);  // still attached: the transfer copied
    expect(out.data.length).toBe(rows * vocab);
    expect(moved.byteLength).toBe(z.data.byteLength);
    expect(moved2.byteLength).toBe(out.data.byteLength);
    const r = await p;
    expect(r.loss).toBe(sync.loss);
    expect(Buffer.compare(Buffer.from(out.data.buffer), Buffer.from(sync.grad.data.buffer))).toBe(0);
  });
  it('rewriting the targets during the call changes nothing: they were copied and checked first', async () => {
    const z = mk();
    const t = randomTargets(testRng('rewrite'), rows, vocab, -100, 0.1);
    const sync = crossEntropyForward(z, t, { withGrad: true });
    const p = crossEntropyForwardAsync(z, t, { withGrad: true });
    t.fill(2 ** 30);  // out of range: the kernel would index past the row
    const r = await p;
    expect(r.loss).toBe(sync.loss);
    expect(Array.from(r.losses)).toEqual(Array.from(sync.losses));
    const lse = sync.lse.slice();
    const pb = crossEntropyBackwardAsync(z, randomTargets(testRng('rewrite'), rows, vocab, -100, 0.1), lse);
    lse.fill(-1e30);
    const g = await pb;
    const gs = crossEntropyBackward(z, randomTargets(testRng('rewrite'), rows, vocab, -100, 0.1), sync.lse);
    expect(Buffer.compare(Buffer.from(g.data.buffer), Buffer.from(gs.data.buffer))).toBe(0);
  });
  it('a resizable ArrayBuffer is refused by async calls (a resize could release the memory), naming the argument', async () => {
    const ab = new (ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer)(rows * vocab * 2, { maxByteLength: rows * vocab * 4 });
    const z = logits(new Uint16Array(ab, 0, rows * vocab), rows, vocab, 'bf16');
    const t = new Int32Array(rows);
    await expect(crossEntropyForwardAsync(z, t)).rejects.toThrow(TypeError);
    await expect(crossEntropyForwardAsync(z, t)).rejects.toThrow(/crossEntropyForwardAsync: logits.data is backed by a resizable ArrayBuffer/);
    await expect(entropyAsync(z)).rejects.toThrow(/resizable/);
    // the sync call runs no JS while it works: it accepts one
    expect(crossEntropyForward(z, t).loss).toBeGreaterThan(0);
  });
  it('SharedArrayBuffer-backed arrays work (sync and async), bitwise as ordinary ones', async () => {
    const plain = mk();
    const sab = new SharedArrayBuffer(plain.data.byteLength);
    const shared = new Uint16Array(sab);
    shared.set(plain.data);
    const zs = logits(shared, rows, vocab, 'bf16');
    const t = randomTargets(testRng('sab'), rows, vocab, -100, 0.1);
    const tSab = new Int32Array(new SharedArrayBuffer(rows * 4));
    tSab.set(t);
    const a = crossEntropyForward(plain, t, { withGrad: true });
    const b = crossEntropyForward(zs, tSab, { withGrad: true });
    const c = await crossEntropyForwardAsync(zs, tSab, { withGrad: true });
    expect(b.loss).toBe(a.loss);
    expect(c.loss).toBe(a.loss);
    expect(Array.from(c.grad.data)).toEqual(Array.from(a.grad.data));
    const y = new Float32Array(new SharedArrayBuffer(rows * vocab * 4)).fill(0.25);
    const bce = await binaryCrossEntropyWithLogitsAsync(zs, y);
    expect(bce.loss).toBe(binaryCrossEntropyWithLogits(plain, y.slice()).loss);
    expect(Array.from(bf16.toFloat32(shared).subarray(0, 9))).toEqual(Array.from(bf16.toFloat32(plain.data).subarray(0, 9)));
  });
  it('results are ordinary typed arrays: transferable and structured-cloneable', async () => {
    const z = mk();
    const r = await crossEntropyForwardAsync(z, new Int32Array(rows), { withGrad: true });
    const copy = structuredClone(r.grad.data);
    expect(Array.from(copy.subarray(0, 9))).toEqual(Array.from(r.grad.data.subarray(0, 9)));
    const moved = structuredClone(r.grad.data, { transfer: [r.grad.data.buffer as ArrayBuffer] });
    expect(r.grad.data.length).toBe(0);  // transferred, not copied: the result was not pinned
    expect(moved.length).toBe(rows * vocab);
  });
});

describe('teardown and failures never abort', () => {
  it('terminating a Worker with async calls in flight, or exiting, is quiet', () => {
    const worker = child(`
      const { Worker } = require('node:worker_threads');
      let done = 0;
      for (let k = 0; k < 4; k++) {
        const w = new Worker(\`
          const f = require(${JSON.stringify(root)});
          const rows = 64, vocab = 128256;
          const z = f.logits(new Uint16Array(rows * vocab).fill(0x3f80), rows, vocab, 'bf16');
          for (let i = 0; i < 6; i++) f.crossEntropyForwardAsync(z, new Int32Array(rows), { withGrad: true });
          for (let i = 0; i < 2; i++) f.softCrossEntropyForwardAsync(z, z, { withGrad: true });
          require('node:worker_threads').parentPort.postMessage('go');\`, { eval: true });
        w.on('message', () => setTimeout(() => w.terminate().then(() => { if (++done === 4) console.log('ok'); }), k));
      }`);
    expect(worker.signal).toBeNull();
    expect(worker.err).not.toMatch(/terminate called|Napi::Error|FATAL/);
    expect(worker.status).toBe(0);
    expect(worker.out.trim()).toBe('ok');
    const exit = child(`
      const rows = 64, vocab = 128256;
      const z = f.logits(new Uint16Array(rows * vocab), rows, vocab, 'bf16');
      for (let i = 0; i < 4; i++) f.crossEntropyForwardAsync(z, new Int32Array(rows), { withGrad: true });
      setTimeout(() => process.exit(0), 1);`);
    expect(exit.signal).toBeNull();
    expect(exit.status).toBe(0);
  });
  // (not under the sanitizers: ASan reserves terabytes of shadow address space, so ulimit -v stops it first)
  const limited = process.env.FUSEDCE_SANITIZE === '1' ? it.skip : it;
  limited('an output that cannot be allocated is a RangeError naming the call and the bytes', () => {
    // a 4 GiB f32 gradient under a 6 GB address-space limit
    const r = child(`
      const rows = 8192, vocab = 131072;
      const z = f.logits(new Uint16Array(rows * vocab), rows, vocab, 'bf16');
      try { f.crossEntropyForward(z, new Int32Array(rows), { withGrad: true, gradDtype: 'f32' }); console.log('no error'); }
      catch (e) { console.log(e.constructor.name + ': ' + e.message); }
      try { f.crossEntropyBackward(z, new Int32Array(rows), new Float32Array(rows), { gradDtype: 'f32' }); }
      catch (e) { console.log(e.constructor.name + ': ' + e.message); }
      console.log(f.crossEntropyForward(f.logits(new Float32Array(8), 2, 4), new Int32Array(2)).loss.toFixed(4));`, { ulimitKb: 6_000_000 });
    expect(r.signal).toBeNull();
    expect(r.err).not.toMatch(/FATAL|Allocation failed - process out of memory/);
    expect(r.status).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toBe('RangeError: crossEntropyForward: cannot allocate 4294967296 bytes for the gradient; use smaller batches, or pass `out` to reuse a buffer');
    expect(lines[1]).toMatch(/^RangeError: crossEntropyBackward: cannot allocate 4294967296 bytes/);
    expect(lines[2]).toBe(Math.log(4).toFixed(4));  // and it still works afterwards
  });
  limited('scratch memory that cannot be allocated (a driver vector) is a RangeError, sync and async', () => {
    // 2^27 rows of vocab 1: the logits fit, the per-row double vectors of the forward do not
    const r = child(`
      const rows = 2 ** 27;
      const z = f.logits(new Uint16Array(rows), rows, 1, 'bf16');
      const t = new Int32Array(rows);
      (async () => {
        for (const call of [() => f.crossEntropyForward(z, t, { threads: 2 }), () => f.crossEntropyForwardAsync(z, t, { threads: 2 })]) {
          try { await call(); console.log('no error'); } catch (e) { console.log(e.constructor.name + ': ' + e.message.split(':')[0]); }
        }
      })();`, { ulimitKb: 3_000_000 });
    expect(r.signal).toBeNull();
    expect(r.err).not.toMatch(/terminate called|bad_alloc|FATAL/);
    expect(r.status).toBe(0);
    // under this limit either an output or the scratch runs out first; both are RangeErrors naming the call
    expect(r.out.trim().split('\n')).toEqual(['RangeError: crossEntropyForward', 'RangeError: crossEntropyForwardAsync']);
  });
});

describe('the raw binding reads each field once, then only C++ values', () => {
  const native = () => (require(path.join(root, 'dist', 'cjs', 'binding.js')) as typeof import('../ts/binding')).native();
  const rows = 4, vocab = 16;
  const base = () => ({
    fn: 'raw', logits: sinLogits(rows, vocab), dtype: 0, rows, vocab, targets: new Int32Array(rows).fill(1),
    ignoreIndex: -100, reduction: 0, threads: 1,
  });
  it('a getter that detaches the logits after they were read cannot make the kernel read freed memory', () => {
    const req = base();
    const victim = req.logits;
    const r = Object.defineProperty({ ...req }, 'threads', {
      enumerable: true,
      get() {
        structuredClone(victim.buffer, { transfer: [victim.buffer as ArrayBuffer] });
        return 1;
      },
    });
    expect(() => native().crossEntropyForward(r)).toThrow(/raw: logits views a detached ArrayBuffer/);
  });
  it('a getter that rewrites the targets runs before they are copied and checked', () => {
    const req = base();
    const r = Object.defineProperty({ ...req }, 'reduction', {
      enumerable: true,
      get() {
        req.targets.fill(1e9);
        return 0;
      },
    });
    expect(() => native().crossEntropyForward(r)).toThrow(/raw: targets\[0\] = 1000000000 is outside \[0, 16\)/);
  });
  it('the public options are read once (a getter runs once)', () => {
    let reads = 0;
    const opts = Object.defineProperty({}, 'reduction', { enumerable: true, get: () => (reads++, 'sum') });
    crossEntropyForward(logits(sinLogits(rows, vocab), rows, vocab), new Int32Array(rows), opts);
    expect(reads).toBe(1);
  });
  it('the device option is checked on every call', () => {
    const z = logits(sinLogits(rows, vocab), rows, vocab);
    const t = new Int32Array(rows);
    expect(() => crossEntropyForward(z, t, { device: 'gpu' as never, labelSmoothing: 0.1 })).toThrow(/crossEntropyForward: device must be 'auto' \| 'cpu' \| 'cuda', but got 'gpu'/);
    expect(() => crossEntropyForward(z, t, { device: 42 as never, zLoss: 1e-4 })).toThrow(TypeError);
    expect(() => crossEntropyBackward(z, t, new Float32Array(rows), { device: 'gpu' as never, weight: new Float32Array(vocab) })).toThrow(RangeError);
  });
  it('a parallel_for task that throws becomes a RangeError and the pool keeps working', () => {
    expect(() => native().kernels.poolFault(64, 2, 37)).toThrow(/kernels.poolFault: out of memory/);
    expect(() => native().kernels.poolFault(64, 2, 0)).toThrow(RangeError);
    expect(native().kernels.poolFault(64, 2, -1)).toBe(64);
    expect(crossEntropyForward(logits(new Float32Array(8), 2, 4), new Int32Array(2)).loss).toBeCloseTo(Math.log(4), 6);
  });
});

describe('fast defaults: native conversions', () => {
  it('bf16/f16 fromFloat32/toFloat32 write into out when given, bitwise the reference loops', async () => {
    const { reference } = require(path.join(root, 'dist', 'cjs', 'dtype.js')) as typeof import('../ts/dtype');
    const r = testRng('conv');
    const u = new Uint32Array(100_003).map(() => Math.floor(r() * 2 ** 32));
    const x = new Float32Array(u.buffer);
    for (const [lib, ref] of [[bf16, reference.bf16], [f16, reference.f16]] as const) {
      const out = new Uint16Array(x.length);
      expect(lib.fromFloat32(x, out)).toBe(out);
      expect(Buffer.compare(Buffer.from(out.buffer), Buffer.from(ref.fromFloat32(x).buffer))).toBe(0);
      const back = new Float32Array(x.length);
      expect(lib.toFloat32(out, back)).toBe(back);
      expect(Buffer.compare(Buffer.from(back.buffer), Buffer.from(ref.toFloat32(out).buffer))).toBe(0);
      expect(() => lib.fromFloat32(x, new Uint16Array(3))).toThrow(RangeError);
      expect(() => lib.fromFloat32(x, new Float32Array(x.length) as never)).toThrow(TypeError);
      expect(() => lib.fromFloat32(x, new Uint16Array(x.buffer, 0, x.length) as never)).toThrow(/overlaps/);
    }
  });
});
