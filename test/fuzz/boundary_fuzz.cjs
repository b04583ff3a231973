#!/usr/bin/env node
// Property-based fuzz of the native boundary (fast-check), run in a child process so that a crash
// is a failure of the parent, never the end of its run (test/fuzz.test.ts, npm run fuzz).
//
//   node test/fuzz/boundary_fuzz.cjs --mode public|raw --cases N --seed S
//
// public: random calls of every op through the package (dtype, shape, options, sync or async),
//   each either valid or made invalid by one known mutation (an overlap, a target out of range,
//   a bad option, a detached or resizable buffer …). A valid call must succeed with a correct
//   result (cross-entropy against a float64 reference, finite losses, gradient rows that sum to
//   0); an invalid one must throw (or reject with) a TypeError or RangeError naming the function.
//   Async calls also get their inputs transferred, rewritten or resized while they run.
// raw: valid native requests with one field replaced by junk (wrong types and lengths, NaN,
//   huge numbers, getters that detach buffers or rewrite targets, SharedArrayBuffer views):
//   nothing may crash; requests that are certainly invalid must throw.
// The last line of stdout is a JSON summary: { mode, cases, valid, rejected, acceptedInvalid,
// wrong, unexpected } where the last three list failures (they must be empty).
// FUZZ_TRACE=1 prints every case to stderr before it runs (to find the one that crashed).
'use strict';
const path = require('node:path');
const fc = require('fast-check');

const root = path.resolve(__dirname, '..', '..');
const f = require(root);
const { native } = require(path.join(root, 'dist', 'cjs', 'binding.js'));

const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const mode = arg('mode', 'public');
const cases = Number(arg('cases', '500'));
const seed = Number(arg('seed', String(Date.now() % 2 ** 31)));
const trace = process.env.FUZZ_TRACE === '1';

const summary = { mode, seed, cases: 0, valid: 0, rejected: 0, acceptedInvalid: [], wrong: [], unexpected: [] };
const note = (list, c, what) => {
  if (list.length < 20) list.push({ case: describe(c), what: String(what).slice(0, 300) });
};
function describe(c) {
  return JSON.stringify(c, (k, v) => (typeof v === 'function' ? 'fn' : ArrayBuffer.isView(v) ? `${v.constructor.name}(${v.length})` : v));
}

// ---- data ----------------------------------------------------------------------------------------
function rng(s) {
  let x = s >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}
function values(r, n, extreme) {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = extreme && r() < 0.2 ? (r() < 0.5 ? -1 : 1) * (60 + 40 * r()) : 6 * (r() - 0.5);
  return v;
}
function encode(v, dtype) {
  return dtype === 'f32' ? v : dtype === 'bf16' ? f.bf16.fromFloat32(v) : f.f16.fromFloat32(v);
}
function decode(d, dtype) {
  return dtype === 'f32' ? d : dtype === 'bf16' ? f.bf16.toFloat32(d) : f.f16.toFloat32(d);
}
function newData(dtype, n) {
  return dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n);
}
const esize = (dtype) => (dtype === 'f32' ? 4 : 2);

// float64 reference of plain cross-entropy rows (loss_i = lse_i − z_t)
function ceReference(z, t, rows, vocab, ignore) {
  let sum = 0, count = 0;
  const losses = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    if (t[i] === ignore) continue;
    let m = -Infinity;
    for (let j = 0; j < vocab; j++) m = Math.max(m, z[i * vocab + j]);
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(z[i * vocab + j] - m);
    losses[i] = m + Math.log(s) - z[i * vocab + t[i]];
    sum += losses[i];
    count++;
  }
  return { sum, count, losses };
}

// ---- public-API cases -------------------------------------------------------------------------
const OPS = ['ceF', 'ceB', 'softF', 'softB', 'kl', 'ent', 'bce', 'conv'];
const MUTATIONS = {
  ceF: ['targetOOR', 'targetsLen', 'gradOverTargets', 'gradShifted', 'outWrongLen', 'badOption', 'wrongArray', 'unknownOption', 'badDevice', 'detached', 'weightNonFinite', 'resizable'],
  ceB: ['targetOOR', 'gradOverTargets', 'gradOverLse', 'gradShifted', 'lseLen', 'badOption', 'detached', 'resizable', 'rowGradNotNone'],
  softF: ['gradOverTargets', 'gradShifted', 'badOption', 'probsNegative', 'targetShape', 'detached', 'resizable'],
  softB: ['gradOverTargets', 'gradOverLse', 'badOption', 'lseLen', 'detached'],
  kl: ['gradOverTargets', 'badOption', 'targetShape', 'detached', 'resizable'],
  ent: ['badOption', 'wrongArray', 'detached', 'resizable'],
  bce: ['bceTargetRange', 'gradOverTargets', 'gradShifted', 'weightNonFinite', 'targetsLen', 'badOption', 'detached', 'resizable'],
  conv: ['outWrongLen', 'wrongArray', 'gradShifted'],
};
const DURING = ['none', 'transferLogits', 'rewriteTargets', 'transferOut'];

const publicCase = fc.record({
  op: fc.constantFrom(...OPS),
  dtype: fc.constantFrom('f32', 'bf16', 'f16'),
  rows: fc.integer({ min: 0, max: 5 }),
  vocab: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constant(4099)),
  async: fc.boolean(),
  threads: fc.constantFrom(1, 2),
  reduction: fc.constantFrom('mean', 'sum', 'none'),
  withGrad: fc.boolean(),
  gradF32: fc.boolean(),
  useOut: fc.boolean(),
  inPlace: fc.boolean(),
  ignoreFrac: fc.constantFrom(0, 0.3, 1),
  option: fc.constantFrom('none', 'labelSmoothing', 'weight', 'zLoss', 'softcap', 'logitScale', 'stats'),
  extreme: fc.boolean(),
  mutate: fc.boolean(),
  mutation: fc.nat(100),
  during: fc.constantFrom(...DURING),
  seed: fc.nat(),
});

function resizableCopy(a) {
  const ab = new ArrayBuffer(a.byteLength, { maxByteLength: a.byteLength * 2 });
  const v = new a.constructor(ab, 0, a.length);
  v.set(a);
  return v;
}

// Builds the call of a case: { run(): result | Promise, check(result), invalid: string | null, fn }
function build(c) {
  const r = rng(c.seed + 1);
  const { op, dtype, rows, vocab } = c;
  const n = rows * vocab;
  const list = MUTATIONS[op];
  let mutation = c.mutate ? list[c.mutation % list.length] : null;
  // mutations of data need data: with no element they leave a valid call
  const shapeOnly = ['badOption', 'unknownOption', 'badDevice', 'wrongArray', 'targetsLen', 'lseLen', 'outWrongLen', 'targetShape', 'rowGradNotNone', 'weightNonFinite'];
  if (mutation && n === 0 && !shapeOnly.includes(mutation)) mutation = null;
  if (mutation === 'targetShape' && rows === 0) mutation = null;
  if (mutation === 'gradShifted' && n < 2) mutation = null;  // a shift needs two elements
  if (mutation === 'resizable' && !c.async) return null;  // sync calls accept resizable buffers
  const zv = values(r, n, c.extreme);
  const zd = encode(zv, dtype);
  const zf = decode(zd, dtype).slice();  // the values the kernel sees (a copy: inPlace overwrites zd)
  const z = { data: zd, dtype, rows, vocab };
  const ignore = -100;
  const t = new Int32Array(rows).map(() => (r() < c.ignoreFrac ? ignore : Math.floor(r() * vocab)));
  const gdt = c.gradF32 ? 'f32' : dtype;
  const o = { threads: c.threads };
  const fnName = (base) => (c.async ? `${base}Async` : base);
  let fn, run, check = () => null;
  let targetBuf = null;  // the op's big second input, for overlaps
  const gradOpts = () => {
    if (!c.withGrad && op !== 'ceB' && op !== 'softB') return;
    if (op !== 'ceB' && op !== 'softB') o.withGrad = true;
    o.gradDtype = gdt;
    if (c.inPlace && gdt === dtype) o.inPlace = true;
    else if (c.useOut) o.out = { data: newData(gdt, n), dtype: gdt, rows, vocab };
  };
  if (op === 'ceF' || op === 'ceB') {
    fn = fnName(op === 'ceF' ? 'crossEntropyForward' : 'crossEntropyBackward');
    o.reduction = c.reduction;
    if (c.option === 'labelSmoothing') o.labelSmoothing = 0.1;
    if (c.option === 'weight') o.weight = new Float32Array(vocab).map(() => r() * 3 - 1);  // negative included
    if (c.option === 'zLoss') o.zLoss = 1e-3;
    if (c.option === 'softcap') o.softcap = 15;
    if (c.option === 'logitScale') { o.logitScale = 0.5; o.focalGamma = 2; }  // with a focal γ
    if (c.option === 'stats' && op === 'ceF') o.stats = true;
    gradOpts();
    let lse = op === 'ceB' ? f.crossEntropyForward({ data: zd.slice(), dtype, rows, vocab }, t, { ...o, withGrad: undefined, gradDtype: undefined, out: undefined, inPlace: undefined, stats: undefined }).lse : null;
    const plain = c.option === 'none' || c.option === 'stats';
    check = (res) => {
      const g = op === 'ceF' ? res.grad : res;
      if (op === 'ceF') {
        if (res.losses.length !== rows || !Number.isFinite(res.loss)) return `bad losses/loss ${res.loss}`;
        if (plain && c.reduction !== 'none') {
          const ref = ceReference(zf, t, rows, vocab, ignore);
          const want = c.reduction === 'mean' ? (ref.count ? ref.sum / ref.count : 0) : ref.sum;
          if (Math.abs(res.loss - want) > 1e-4 * Math.max(1, Math.abs(want))) return `loss ${res.loss} vs reference ${want}`;
        }
        if (c.option === 'stats' && !res.stats) return 'no stats';
      }
      if (g) {
        if (g.data.length !== n) return 'gradient length';
        const gf = decode(g.data, g.dtype);
        if (plain && c.reduction === 'sum' && !o.weight)
          for (let i = 0; i < rows; i++) {
            let s = 0;
            for (let j = 0; j < vocab; j++) s += gf[i * vocab + j];
            if (!(Math.abs(s) < 2e-2 * Math.max(1, vocab / 64))) return `gradient row ${i} sums to ${s}`;
          }
        for (let i = 0; i < gf.length; i++) if (Number.isNaN(gf[i])) return `NaN gradient at ${i}`;
      } else if (op === 'ceF' && o.withGrad) return 'no gradient';
      return null;
    };
    // mutations
    if (mutation === 'targetOOR' && rows > 0) t[Math.floor(r() * rows)] = r() < 0.5 ? vocab : -1;
    if (mutation === 'targetsLen') return withCall(c, fn, () => f[fn](z, new Int32Array(rows + 1), o), mutation, check);
    // any finite class weight is valid (torch's semantics, negative included); a non-finite one is not
    if (mutation === 'weightNonFinite') o.weight = new Float32Array(vocab).fill(1).fill([NaN, Infinity, -Infinity][Math.floor(r() * 3)], Math.floor(r() * vocab));
    if (mutation === 'badOption') {
      const [k, v] = [['labelSmoothing', 2], ['zLoss', -1], ['softcap', 0], ['reduction', 'avg'], ['threads', 0], ['gradOutput', NaN],
        ['logitScale', Infinity], ['ignoreIndex', 0.5], ['gradDtype', 'f64']][Math.floor(r() * 9)];
      o[k] = v;
    }
    if (mutation === 'unknownOption') o.labelSmothing = 0.1;
    if (mutation === 'badDevice') o.device = r() < 0.5 ? 'gpu' : 42;
    if (mutation === 'wrongArray') z.data = new Float64Array(n);
    if (mutation === 'lseLen') lse = new Float32Array(rows + 1);
    if (mutation === 'rowGradNotNone') { o.reduction = 'mean'; o.gradOutput = new Float32Array(rows); }
    if ((mutation === 'gradOverTargets' || mutation === 'gradOverLse') && n > 0) {
      // the gradient's buffer also holds the targets (or lse) in its first bytes
      const buf = new ArrayBuffer(Math.max(n * esize(gdt), rows * 4) + 8);
      const inner = mutation === 'gradOverTargets' ? new Int32Array(buf, 0, rows) : new Float32Array(buf, 0, rows);
      if (mutation === 'gradOverTargets') { inner.set(t); } else { inner.set(lse); lse = inner; }
      const out = { data: gdt === 'f32' ? new Float32Array(buf, 0, n) : new Uint16Array(buf, 0, n), dtype: gdt, rows, vocab };
      delete o.inPlace; o.out = out; if (op === 'ceF') o.withGrad = true;
      const tt = mutation === 'gradOverTargets' ? inner : t;
      if (rows === 0) return null;
      return withCall(c, fn, () => (op === 'ceF' ? f[fn](z, tt, o) : f[fn](z, tt, lse, o)), mutation, check);
    }
    if (mutation === 'gradShifted' && n > 1) {
      const buf = newData(gdt, n + 1);
      delete o.inPlace;
      o.out = { data: buf.subarray(1), dtype: gdt, rows, vocab };
      if (op === 'ceF') o.withGrad = true;
      const zz = { ...z, data: gdt === dtype ? buf.subarray(0, n) : z.data };
      if (gdt === dtype) zz.data.set(zd); else return null;
      return withCall(c, fn, () => (op === 'ceF' ? f[fn](zz, t, o) : f[fn](zz, t, lse, o)), mutation, check);
    }
    if (mutation === 'outWrongLen') { delete o.inPlace; o.withGrad = true; o.out = { data: newData(gdt, n + 1), dtype: gdt, rows, vocab }; }
    run = () => (op === 'ceF' ? f[fn](z, t, o) : f[fn](z, t, lse, o));
    targetBuf = t;
    return finish(c, fn, run, mutation, check, { z, t, o });
  }
  if (op === 'softF' || op === 'softB' || op === 'kl') {
    fn = fnName(op === 'softF' ? 'softCrossEntropyForward' : op === 'softB' ? 'softCrossEntropyBackward' : 'klDivergenceForward');
    o.reduction = c.reduction;
    const probs = op !== 'kl' && c.option === 'weight';  // reuse the flag: probability targets
    let q;
    if (probs) {
      const p = new Float32Array(n);
      for (let i = 0; i < rows; i++) {
        let s = 0;
        for (let j = 0; j < vocab; j++) s += p[i * vocab + j] = r();
        for (let j = 0; j < vocab; j++) p[i * vocab + j] /= s;
      }
      q = { data: p, dtype: 'f32', rows, vocab };
      o.targetKind = 'probs';
      // torch's smoothing and class weights on probability targets, negative weights included
      if (r() < 0.5) { o.labelSmoothing = 0.1; o.weight = new Float32Array(vocab).map(() => r() * 3 - 1); }
    } else {
      q = { data: encode(values(r, n, false), dtype), dtype, rows, vocab };
    }
    if (op !== 'kl' && c.option === 'zLoss') o.temperature = 2;
    gradOpts();
    let lse = op === 'softB' ? f.softCrossEntropyForward({ ...z, data: zd.slice() }, q, { targetKind: o.targetKind, reduction: o.reduction, temperature: o.temperature }).lse : null;
    check = (res) => {
      const g = op === 'softB' ? res : res.grad;
      if (op !== 'softB' && (!Number.isFinite(res.loss) || res.losses.length !== rows)) return `bad loss ${res.loss}`;
      if (g) for (const v of decode(g.data, g.dtype)) if (Number.isNaN(v)) return 'NaN gradient';
      return null;
    };
    if (mutation === 'badOption') o.temperature = [0, -1, NaN, 'hot'][Math.floor(r() * 4)];
    // any finite q ≥ 0 is a valid probability target (rows need not sum to 1, as in torch); a
    // negative or non-finite entry is not
    if (mutation === 'probsNegative' && rows > 0) {
      const p = new Float32Array(n).fill(0.5 / vocab);
      p[Math.floor(r() * n)] = [-0.25, NaN, Infinity][Math.floor(r() * 3)];
      q = { data: p, dtype: 'f32', rows, vocab };
      o.targetKind = 'probs';
    }
    if (mutation === 'targetShape') q = { ...q, data: q.data.subarray(0, Math.max(0, n - vocab)), rows: Math.max(0, rows - 1) };
    if (mutation === 'lseLen') lse = new Float32Array(rows + 2);
    if (mutation === 'gradOverTargets' && n > 0) {
      const gd = o.gradDtype ?? dtype;
      if (gd !== q.dtype) return null;
      delete o.inPlace;
      o.out = { data: q.data, dtype: gd, rows, vocab };  // the gradient over the target itself
      if (op !== 'softB') o.withGrad = true;
    }
    if (mutation === 'gradOverLse' && rows > 0) {
      const gd = o.gradDtype ?? dtype;
      // room for both views: with vocab 1 and a 16-bit gradient, rows f32 values outgrow n 16-bit ones
      const buf = new ArrayBuffer(Math.max(n * esize(gd), rows * 4) + 8);
      const l = new Float32Array(buf, 0, rows);
      l.set(lse);
      lse = l;
      delete o.inPlace;
      o.out = { data: gd === 'f32' ? new Float32Array(buf, 0, n) : new Uint16Array(buf, 0, n), dtype: gd, rows, vocab };
    }
    if (mutation === 'gradShifted' && n > 1) {
      const gd = o.gradDtype ?? dtype;
      if (gd !== dtype) return null;
      const buf = newData(gd, n + 1);
      buf.set(zd);
      z.data = buf.subarray(0, n);
      delete o.inPlace;
      o.out = { data: buf.subarray(1), dtype: gd, rows, vocab };
      o.withGrad = true;
    }
    run = () => (op === 'softB' ? f[fn](z, q, lse, o) : f[fn](z, q, o));
    return finish(c, fn, run, mutation, check, { z, o });
  }
  if (op === 'ent') {
    fn = fnName('entropy');
    if (mutation === 'badOption') o.temperature = [0, -2, Infinity][Math.floor(r() * 3)];
    if (mutation === 'wrongArray') z.data = new Int16Array(n);
    check = (res) => (res.length === rows && res.every((v) => v >= -1e-4 && Number.isFinite(v)) ? null : 'bad entropy');
    return finish(c, fn, () => f[fn](z, o), mutation, check, { z, o });
  }
  if (op === 'bce') {
    fn = fnName('binaryCrossEntropyWithLogits');
    o.reduction = c.reduction;
    let y = new Float32Array(n).map(() => (r() < 0.5 ? 0 : r()));
    if (c.option === 'weight') o.weight = new Float32Array(r() < 0.5 ? vocab : n).map(() => r());
    if (c.option === 'zLoss') o.posWeight = r() < 0.5 ? 2 : new Float32Array(vocab).fill(3);
    gradOpts();
    check = (res) => (Number.isFinite(res.loss) && (!o.withGrad || res.grad) ? null : 'bad bce');
    if (mutation === 'bceTargetRange' && n > 0) y[Math.floor(r() * n)] = r() < 0.5 ? 1.5 : NaN;
    if (mutation === 'weightNonFinite') o.weight = new Float32Array(vocab).fill(-0.5).fill(NaN, Math.floor(r() * vocab));
    if (mutation === 'targetsLen') y = new Float32Array(n + 1);
    if (mutation === 'badOption') o.posWeight = [-1, NaN, '2'][Math.floor(r() * 3)];
    if (mutation === 'gradOverTargets' && n > 0) {
      delete o.inPlace;
      o.withGrad = true;
      o.gradDtype = 'f32';
      o.out = { data: y, dtype: 'f32', rows, vocab };
    }
    if (mutation === 'gradShifted' && n > 1) {
      if (dtype !== 'f32') return null;
      const buf = new Float32Array(n + 1);
      buf.set(zd);
      z.data = buf.subarray(0, n);
      delete o.inPlace;
      o.withGrad = true;
      o.gradDtype = 'f32';
      o.out = { data: buf.subarray(1), dtype: 'f32', rows, vocab };
    }
    return finish(c, fn, () => f[fn](z, y, o), mutation, check, { z, o });
  }
  // conversions
  const lib = dtype === 'f16' ? f.f16 : f.bf16;
  const x = values(r, n, c.extreme);
  fn = dtype === 'f16' ? 'f16.fromFloat32' : 'bf16.fromFloat32';
  let out = c.useOut ? new Uint16Array(n) : undefined;
  let input = x;
  if (mutation === 'outWrongLen') out = new Uint16Array(n + 1);
  if (mutation === 'wrongArray') input = new Float64Array(n);
  if (mutation === 'gradShifted') { if (n < 2) return null; out = new Uint16Array(input.buffer, 2, n); }
  check = (res) => {
    const ref = require(path.join(root, 'dist', 'cjs', 'dtype.js')).reference[dtype === 'f16' ? 'f16' : 'bf16'].fromFloat32(x);
    for (let i = 0; i < n; i++) if (res[i] !== ref[i]) return `conversion ${i}`;
    return null;
  };
  return withCall({ ...c, async: false }, fn, () => lib.fromFloat32(input, out), mutation, check);
}

function finish(c, fn, run, mutation, check, ctx) {
  if (mutation === 'detached') {
    const ab = ctx.z.data.buffer;
    if (ab.byteLength === 0 || ab instanceof SharedArrayBuffer) return null;
    structuredClone(ab, { transfer: [ab] });
  }
  if (mutation === 'resizable') {
    if (ctx.z.data.length === 0) return null;
    ctx.z.data = resizableCopy(ctx.z.data);
  }
  return withCall(c, fn, run, mutation, check, ctx);
}

function withCall(c, fn, run, invalid, check, ctx) {
  return { fn, run, invalid, check, ctx };
}

async function runPublic(c) {
  const call = build(c);
  if (!call) return;
  summary.cases++;
  if (trace) process.stderr.write(`${describe(c)}\n`);
  let res, err;
  try {
    const p = call.run();
    if (p && typeof p.then === 'function') {
      // while it runs: transfer an input or the out buffer, or rewrite the targets
      if (c.during === 'transferLogits' && call.ctx && call.ctx.z.data.byteLength > 0 && !(call.ctx.z.data.buffer instanceof SharedArrayBuffer))
        structuredClone(call.ctx.z.data.buffer, { transfer: [call.ctx.z.data.buffer] });
      if (c.during === 'rewriteTargets' && call.ctx && call.ctx.t) call.ctx.t.fill(2 ** 30);
      if (c.during === 'transferOut' && call.ctx && call.ctx.o.out && call.ctx.o.out.data.byteLength > 0)
        structuredClone(call.ctx.o.out.data.buffer, { transfer: [call.ctx.o.out.data.buffer] });
    }
    res = await p;
  } catch (e) {
    err = e;
  }
  if (call.invalid) {
    if (!err) return note(summary.acceptedInvalid, { ...c, mutation: call.invalid }, 'accepted');
    if (!(err instanceof TypeError || err instanceof RangeError) || !String(err.message).includes(call.fn.replace(/Async$/, '')))
      return note(summary.unexpected, { ...c, mutation: call.invalid }, `${err && err.constructor && err.constructor.name}: ${err && err.message}`);
    summary.rejected++;
    return;
  }
  if (err) return note(summary.unexpected, c, `${err.constructor.name}: ${err.message}`);
  // rewriting the targets after the start must not change the result: the check uses the originals
  if (c.during === 'rewriteTargets' && call.ctx && call.ctx.t) return void summary.valid++;
  const bad = call.check(res);
  if (bad) return note(summary.wrong, c, bad);
  summary.valid++;
}

// ---- raw-binding cases ------------------------------------------------------------------------
const JUNK = ['undefined', 'null', 'neg', 'nan', 'huge', 'frac', 'string', 'object', 'f64', 'i8', 'short', 'long', 'sab',
  'getterDetach', 'getterRewrite', 'bigint', 'detached'];
const rawCase = fc.record({
  op: fc.constantFrom('crossEntropyForward', 'crossEntropyBackward', 'softForward', 'softBackward', 'entropy', 'entropyForward', 'jsdForward',
    'binaryCrossEntropy', 'convert'),
  field: fc.nat(40),
  junk: fc.constantFrom(...JUNK),
  async: fc.boolean(),
  rows: fc.integer({ min: 1, max: 4 }),
  vocab: fc.integer({ min: 1, max: 33 }),
  seed: fc.nat(),
});

function rawRequest(c) {
  const r = rng(c.seed + 7);
  const { rows, vocab } = c;
  const n = rows * vocab;
  const z = values(r, n, false);
  const base = { fn: 'raw', logits: z, dtype: 0, rows, vocab, threads: 1 };
  switch (c.op) {
    case 'crossEntropyForward':
      // reduction 'none' with a per-row gradOutput, the double row losses and a focal γ: every field the glue reads
      return { ...base, targets: new Int32Array(rows), ignoreIndex: -100, reduction: 2, withGrad: true, gradDtype: 0, out: null, gradOutput: 1,
        gradOutputRows: new Float32Array(rows).fill(0.5), losses64: true, focalGamma: 1.5 };
    case 'crossEntropyBackward':
      return { ...base, targets: new Int32Array(rows), ignoreIndex: -100, reduction: 2, lse: new Float32Array(rows), gradOutput: 1, gradOutputRows: new Float32Array(rows), gradDtype: 0, out: new Float32Array(n) };
    case 'softForward':
      return { ...base, target: values(r, n, false), targetDtype: 0, op: 1, invTemperature: 1, lossFactor: 1, reduction: 0, withGrad: true, gradDtype: 0, gradOutput: 1 };
    case 'softBackward':
      return { ...base, target: values(r, n, false), targetDtype: 0, op: 0, invTemperature: 1, lossFactor: 1, reduction: 2, lse: new Float32Array(rows), gradOutput: 1, gradOutputRows: new Float32Array(rows), gradDtype: 0 };
    case 'entropy':
      return { ...base, invTemperature: 1 };
    case 'entropyForward':
      return { ...base, invTemperature: 1, reduction: 0, withGrad: true, gradDtype: 0, out: null, gradOutput: 1 };
    case 'jsdForward':
      return { ...base, target: values(r, n, false), targetDtype: 0, beta: 0.5, invTemperature: 1, reduction: 0, withGrad: true, gradDtype: 0, out: null, gradOutput: 1 };
    case 'binaryCrossEntropy':
      return { ...base, targets: new Float32Array(n).fill(0.5), posWeight: new Float32Array(vocab).fill(1), weight: new Float32Array(vocab).fill(1), reduction: 2, withGrad: true, gradDtype: 0, gradOutput: 1 };
    default:
      return { fn: 'raw', input: z, out: new Uint16Array(n), kind: 0, threads: 1 };
  }
}
// Fields whose junk is certainly invalid (the call must throw): wrong-typed or wrongly sized
// arrays for required arrays, non-numbers and out-of-range values for required numbers.
const REQUIRED_ARRAYS = new Set(['logits', 'targets', 'lse', 'target', 'input']);
const REQUIRED_NUMBERS = new Set(['dtype', 'rows', 'vocab', 'threads', 'reduction', 'ignoreIndex', 'targetDtype', 'op', 'invTemperature', 'kind']);

function junkValue(c, req, key) {
  const n = c.rows * c.vocab;
  switch (c.junk) {
    case 'undefined': return undefined;
    case 'null': return null;
    case 'neg': return -1;
    case 'nan': return NaN;
    case 'huge': return 1e300;
    case 'frac': return 1.5;
    case 'string': return '1';
    case 'object': return { length: n };
    case 'f64': return new Float64Array(n);
    case 'i8': return new Int8Array(n);
    case 'short': return ArrayBuffer.isView(req[key]) ? new req[key].constructor(Math.max(0, req[key].length - 1)) : 0;
    case 'long': return ArrayBuffer.isView(req[key]) ? new req[key].constructor(req[key].length + 3) : 2 ** 40;
    case 'sab': return ArrayBuffer.isView(req[key]) ? new req[key].constructor(new SharedArrayBuffer(req[key].byteLength)) : 1;
    case 'bigint': return 5n;
    case 'detached': {
      if (!ArrayBuffer.isView(req[key])) return req[key];
      const v = new req[key].constructor(req[key].length);
      if (v.byteLength) structuredClone(v.buffer, { transfer: [v.buffer] });
      return v;
    }
    default: return req[key];
  }
}

function certainlyInvalid(c, req, key, v) {
  const orig = req[key];
  if (REQUIRED_ARRAYS.has(key) && ArrayBuffer.isView(orig)) {
    if (!ArrayBuffer.isView(v)) return true;
    if (v.constructor !== orig.constructor) return true;
    if (v.length !== orig.length) return true;
  }
  if (REQUIRED_NUMBERS.has(key) && key !== 'ignoreIndex') {
    if (typeof v !== 'number' || !Number.isFinite(v)) return true;
    if (!Number.isInteger(v) && key !== 'invTemperature') return true;
  }
  return false;
}

async function runRaw(c) {
  const req = rawRequest(c);
  const keys = Object.keys(req);
  const key = keys[c.field % keys.length];
  let v;
  let getter = null;
  if (c.junk === 'getterDetach') {
    const victim = req.logits || req.input;
    getter = () => {
      if (victim.byteLength) structuredClone(victim.buffer, { transfer: [victim.buffer] });
      return req[key];
    };
  } else if (c.junk === 'getterRewrite') {
    getter = () => {
      if (req.targets instanceof Int32Array) req.targets.fill(1e9);
      return req[key];
    };
  } else {
    v = junkValue(c, req, key);
  }
  const sent = { ...req };
  if (getter) Object.defineProperty(sent, key, { enumerable: true, get: getter });
  else sent[key] = v;
  if (c.async && c.op !== 'convert') sent.async = true;
  summary.cases++;
  if (trace) process.stderr.write(`${describe({ ...c, key })}\n`);
  let err = null;
  try {
    await native()[c.op](sent);
  } catch (e) {
    err = e;
  }
  if (!getter && certainlyInvalid(c, req, key, v) && !err) return note(summary.acceptedInvalid, { ...c, key }, 'accepted');
  if (err && !(err instanceof Error)) return note(summary.unexpected, { ...c, key }, `threw a non-Error ${String(err)}`);
  if (err) summary.rejected++;
  else summary.valid++;
}

(async () => {
  const arb = mode === 'raw' ? rawCase : publicCase;
  const runOne = mode === 'raw' ? runRaw : runPublic;
  const samples = fc.sample(arb, { numRuns: cases, seed });
  for (const c of samples) await runOne(c);
  // a little garbage collection pressure between runs is left to V8
  process.stdout.write(`${JSON.stringify(summary)}\n`);
})().catch((e) => {
  process.stdout.write(`${JSON.stringify({ ...summary, unexpected: [...summary.unexpected, { case: 'driver', what: String(e && e.stack) }] })}\n`);
});
