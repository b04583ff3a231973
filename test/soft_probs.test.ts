// Probability targets as torch.nn.functional.cross_entropy(z, q, weight=w, label_smoothing=ε)
// takes them: q̃_j = w_j·((1 − ε)·q_j + ε/V), loss_i = −Σ_j q̃_ij·log p_ij, any finite q ≥ 0 (rows
// need not sum to 1: top-k distillation), all-zero rows counting nowhere; against float64 on
// fresh random data, and against PyTorch where it is installed.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { findTorch } from './torch_python.mjs';
import { type DType, gradcheck, logits, softCrossEntropyBackward, softCrossEntropyForward } from 'fusedce';
import { makeLogits, randomLogits, testRng, toFloat32 } from './reference.mjs';
import { worstRatio } from './loss_reference.mjs';

/** Top-k rows: the k largest of a random distribution, not renormalised; every 4th row all 0. */
function topkProbs(r: () => number, rows: number, vocab: number, k: number): Float32Array {
  const q = new Float32Array(rows * vocab);
  for (let i = 0; i < rows; i++) {
    if (i % 4 === 3) continue;
    const p = Array.from({ length: vocab }, () => r() ** 6);
    const s = p.reduce((a, b) => a + b, 0);
    const idx = p.map((v, j) => [v, j] as const).sort((a, b) => b[0] - a[0]).slice(0, k);
    for (const [v, j] of idx) q[i * vocab + j] = v / s;
  }
  return q;
}

/** Float64: per-row losses, lse, and the gradient of the reduced loss (mean over rows with any q ≠ 0). */
function ref(values: Float32Array, q: Float32Array, rows: number, vocab: number, eps: number, w: Float32Array | undefined, T: number, reduction: string) {
  const losses = new Float64Array(rows), grad = new Float64Array(rows * vocab);
  const counted: number[] = [];
  for (let i = 0; i < rows; i++) {
    const qi = q.subarray(i * vocab, (i + 1) * vocab);
    if (!qi.some((v) => v !== 0)) continue;
    counted.push(i);
    let m = -Infinity;
    for (let j = 0; j < vocab; j++) m = Math.max(m, values[i * vocab + j]! / T);
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(values[i * vocab + j]! / T - m);
    const lse = m + Math.log(s);
    let loss = 0, qs = 0;
    const qt = new Float64Array(vocab);
    for (let j = 0; j < vocab; j++) {
      qt[j] = (w ? w[j]! : 1) * ((1 - eps) * qi[j]! + eps / vocab);
      qs += qt[j]!;
      if (qt[j] !== 0) loss -= qt[j]! * (values[i * vocab + j]! / T - lse);
    }
    losses[i] = loss;
    for (let j = 0; j < vocab; j++) grad[i * vocab + j] = (qs * Math.exp(values[i * vocab + j]! / T - lse) - qt[j]!) / T;
  }
  const scale = reduction === 'mean' ? 1 / Math.max(counted.length, 1) : 1;
  for (let k = 0; k < grad.length; k++) grad[k]! *= scale;
  const sum = counted.reduce((a, i) => a + losses[i]!, 0);
  return { losses, grad, loss: sum * scale, count: counted.length };
}

const SHAPES: [rows: number, vocab: number, why: string][] = [
  [8, 1003, 'rows and vocab off every vector width'],
  [4, 128256, 'the Llama-3 vocabulary'],
];
const WEIGHTS: [string, (r: () => number, v: number) => Float32Array | undefined][] = [
  ['no weights', () => undefined],
  ['class weights', (r, v) => Float32Array.from({ length: v }, () => 0.2 + 2 * r())],
  ['negative weights', (r, v) => Float32Array.from({ length: v }, () => 2 * r() - 0.7)],
];

describe('probability targets with labelSmoothing and weight, rows not summing to 1', () => {
  for (const [rows, vocab, why] of SHAPES) {
    for (const dtype of (vocab > 10000 ? ['bf16'] : ['f32', 'bf16', 'f16']) as DType[]) {
      for (const [wname, makeW] of WEIGHTS) {
        it(`${rows}×${vocab} ${dtype}, ${wname} (${why})`, () => {
          const r = testRng(`soft probs ${rows} ${vocab} ${dtype} ${wname}`);
          const { z, values } = makeLogits(randomLogits(r, rows, vocab), rows, vocab, dtype);
          const q = topkProbs(r, rows, vocab, 20);
          const target = logits(q, rows, vocab);
          const weight = makeW(r, vocab);
          for (const eps of [0, 0.1]) {
            for (const T of [1, 2]) {
              for (const reduction of ['mean', 'sum', 'none'] as const) {
                const want = ref(values, q, rows, vocab, eps, weight, T, reduction);
                const o = { targetKind: 'probs' as const, labelSmoothing: eps, weight, temperature: T, reduction };
                const out = softCrossEntropyForward(z, target, { ...o, withGrad: true, gradDtype: 'f32' });
                expect(out.count).toBe(want.count);
                expect(worstRatio(out.losses, want.losses, 3e-6, 3e-6).worst).toBeLessThanOrEqual(1);
                let scale = 0;
                for (const v of want.losses) scale += Math.abs(v);
                expect(Math.abs(out.loss - want.loss)).toBeLessThanOrEqual(3e-6 * scale + 1e-9);
                let gmax = 0, xmax = 0;
                for (const v of want.grad) gmax = Math.max(gmax, Math.abs(v));
                for (const v of values) xmax = Math.max(xmax, Math.abs(v / T));
                const g = worstRatio(toFloat32(out.grad!), want.grad, 3e-6 * gmax + gmax * xmax * 2 ** -21 + 1e-12, 3e-6);
                expect(g.worst, `worst gradient element ${g.at}`).toBeLessThanOrEqual(1);
                // the separate backward (from the fp32 lse) within the same tolerance as the fused one
                const back = softCrossEntropyBackward(z, target, out.lse, { ...o, gradDtype: 'f32' });
                const gb = worstRatio(toFloat32(back), want.grad, 3e-6 * gmax + gmax * xmax * 2 ** -21 + 1e-12, 3e-6);
                expect(gb.worst, `worst separate-backward element ${gb.at}`).toBeLessThanOrEqual(1);
              }
            }
          }
        });
      }
    }
  }

  it('an all-zero row counts nowhere, even with smoothing (its loss, lse and gradient are 0)', () => {
    const rows = 3, vocab = 7;
    const q = new Float32Array(rows * vocab);
    q[0] = 0.3; q[2 * vocab + 4] = 2; // row 1 all 0; row 2 sums to 2
    const z = logits(Float32Array.from({ length: rows * vocab }, (_, i) => Math.sin(i)), rows, vocab);
    const out = softCrossEntropyForward(z, logits(q, rows, vocab), { targetKind: 'probs', labelSmoothing: 0.2, withGrad: true });
    expect(out.count).toBe(2);
    expect([out.losses[1], out.lse[1]]).toEqual([0, 0]);
    expect(Array.from((out.grad!.data as Float32Array).subarray(vocab, 2 * vocab)).every((v) => v === 0)).toBe(true);
    expect(out.loss).toBeCloseTo((out.losses[0]! + out.losses[2]!) / 2, 6);
  });

  it('central differences agree (weights, smoothing, non-normalised rows)', () => {
    const r = testRng('soft probs gradcheck');
    const rows = 3, vocab = 300;
    const q = topkProbs(r, rows, vocab, 10);
    const weight = Float32Array.from({ length: vocab }, () => 2 * r() - 0.5);
    const target = logits(q, rows, vocab);
    const rep = gradcheck((v) => {
      const o = softCrossEntropyForward(logits(Float32Array.from(v), rows, vocab), target,
        { targetKind: 'probs', labelSmoothing: 0.1, weight, withGrad: true, reduction: 'sum' });
      return { loss: o.loss, grad: o.grad! };
    }, Float64Array.from(randomLogits(r, rows, vocab)));
    expect(rep.ok, JSON.stringify(rep.worst)).toBe(true);
  });

  it('bad arguments are clear errors', () => {
    const z = logits(new Float32Array(8), 2, 4);
    const q = logits(Float32Array.from([0.5, 0.5, 0, 0, 0, 0, 1, 0]), 2, 4);
    const t = logits(new Float32Array(8), 2, 4);
    expect(() => softCrossEntropyForward(z, t, { labelSmoothing: 0.1 })).toThrow(/softCrossEntropyForward: labelSmoothing must be undefined unless targetKind is 'probs'/);
    expect(() => softCrossEntropyForward(z, t, { weight: new Float32Array(4) })).toThrow(TypeError);
    expect(() => softCrossEntropyForward(z, q, { targetKind: 'probs', labelSmoothing: 1.5 })).toThrow(/labelSmoothing must be in \[0, 1\]/);
    expect(() => softCrossEntropyForward(z, q, { targetKind: 'probs', weight: new Float32Array(3) })).toThrow(/weight must be of length vocab \(4\)/);
    expect(() => softCrossEntropyForward(z, q, { targetKind: 'probs', weight: Float32Array.of(1, NaN, 1, 1) })).toThrow(/weight\[1\] = nan must be a finite number/);
    expect(() => softCrossEntropyForward(z, logits(Float32Array.from([0.5, -0.1, 0, 0, 0, 0, 1, 0]), 2, 4), { targetKind: 'probs' }))
      .toThrow(/target\[0, 1\] = -0\.1.* must be a finite probability ≥ 0/);
    expect(() => softCrossEntropyBackward(z, t, new Float32Array(2), { weight: new Float32Array(4) })).toThrow(/weight must be undefined unless targetKind is 'probs'/);
  });
});

const python = findTorch();
describe.skipIf(python === null)(`PyTorch oracle for probability targets (${python ?? 'no python3 with torch: apt-get install python3-torch'})`, () => {
  it("F.cross_entropy(z, q, weight, label_smoothing) on rows that do not sum to 1, 'sum' and 'none'", () => {
    const r = testRng('soft probs torch');
    const rows = 6, vocab = 41;
    const x = randomLogits(r, rows, vocab);
    const q = topkProbs(r, rows, vocab, 5).map((v, i) => (Math.floor(i / vocab) === 3 ? 0 : v)); // no all-zero rows for torch
    for (let i = 0; i < rows; i++) if (i % 4 === 3) q[i * vocab + 2] = 0.7;
    const weight = Float32Array.from({ length: vocab }, () => 2 * r() - 0.5);
    const script = String.raw`
import json, sys, torch, torch.nn.functional as F
a = json.load(sys.stdin)
z = torch.tensor(a['z'], dtype=torch.float64).reshape(a['rows'], a['vocab']).requires_grad_()
q = torch.tensor(a['q'], dtype=torch.float64).reshape(a['rows'], a['vocab'])
w = torch.tensor(a['w'], dtype=torch.float64)
out = {}
for red in ['sum', 'none', 'mean']:
    z.grad = None
    l = F.cross_entropy(z, q, weight=w, label_smoothing=0.15, reduction=red)
    l.sum().backward()
    out[red] = {'loss': l.tolist(), 'grad': z.grad.flatten().tolist()}
json.dump(out, sys.stdout)`;
    const res = JSON.parse(execFileSync(python!, ['-c', script], { input: JSON.stringify({ rows, vocab, z: Array.from(x), q: Array.from(q), w: Array.from(weight) }), encoding: 'utf8' }));
    const z = logits(x, rows, vocab);
    for (const reduction of ['sum', 'none', 'mean'] as const) {
      const o = softCrossEntropyForward(z, logits(q, rows, vocab), { targetKind: 'probs', weight, labelSmoothing: 0.15, reduction, withGrad: true });
      const want = res[reduction];
      const got = reduction === 'none' ? Array.from(o.losses) : [o.loss];
      const wl = reduction === 'none' ? want.loss : [want.loss];
      for (let i = 0; i < wl.length; i++) expect(Math.abs(got[i]! - wl[i]!)).toBeLessThanOrEqual(2e-6 * (1 + Math.abs(wl[i]!)));
      const g = o.grad!.data as Float32Array;
      for (let i = 0; i < g.length; i++) expect(Math.abs(g[i]! - want.grad[i]!)).toBeLessThanOrEqual(2e-6 * (1 + Math.abs(want.grad[i]!)));
    }
  });
});
