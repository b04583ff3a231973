// PyTorch as an independent oracle for the semantics users expect from it (torch's own
// label_smoothing/weight interplay, BCEWithLogitsLoss's pos_weight, KL and probability targets),
// in float64 on small random data. Runs where a python3 with torch is found (Debian:
// apt-get install python3-torch); elsewhere the describe is skipped, saying why.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { findTorch } from './torch_python.mjs';
import { binaryCrossEntropyWithLogits, crossEntropyForward, klDivergenceForward, logits, softCrossEntropyForward } from 'fusedce';
import { randomLogits, testRng } from './reference.mjs';

const python = findTorch();

const SCRIPT = String.raw`
import json, sys, torch, torch.nn.functional as F
a = json.load(sys.stdin)
R, V = a['rows'], a['vocab']
z = torch.tensor(a['z'], dtype=torch.float64).reshape(R, V).requires_grad_()
out = {}
t = torch.tensor(a['targets'])
w = torch.tensor(a['weight'], dtype=torch.float64)
for red in ['mean', 'sum', 'none']:
    z.grad = None
    l = F.cross_entropy(z, t, weight=w, label_smoothing=a['eps'], reduction=red, ignore_index=-100)
    l.sum().backward()
    out['ce_' + red] = {'loss': l.tolist(), 'grad': z.grad.flatten().tolist()}
u = torch.tensor(a['u'], dtype=torch.float64).reshape(R, V)
z.grad = None
T = a['T']
l = F.kl_div(F.log_softmax(z / T, 1), F.log_softmax(u / T, 1), log_target=True, reduction='sum')
l.backward()
out['kl'] = {'loss': l.item(), 'grad': z.grad.flatten().tolist()}
z.grad = None
q = torch.softmax(u, 1)
l = F.cross_entropy(z, q, reduction='mean')
l.backward()
out['soft'] = {'loss': l.item(), 'grad': z.grad.flatten().tolist()}
z.grad = None
y = torch.tensor(a['y'], dtype=torch.float64).reshape(R, V)
pw = torch.tensor(a['pw'], dtype=torch.float64)
l = F.binary_cross_entropy_with_logits(z, y, weight=w, pos_weight=pw, reduction='mean')
l.backward()
out['bce'] = {'loss': l.item(), 'grad': z.grad.flatten().tolist()}
json.dump(out, sys.stdout)
`;

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): number {
  let worst = 0;
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(Number(a[i]) - Number(b[i])) / (tol * (1 + Math.abs(Number(b[i])))));
  return worst;
}

describe.skipIf(python === null)(`PyTorch oracle (${python ?? 'no python3 with torch found: apt-get install python3-torch'})`, () => {
  it.each([
    ['weights ≥ 0 with zeros', (r: () => number) => (r() < 0.2 ? 0 : 0.1 + r())],
    ['negative weights', (r: () => number) => 2.5 * r() - 1],
  ])('cross_entropy(weight, label_smoothing, ignore_index), kl_div, probability targets and BCEWithLogits agree (%s)', (label, draw) => {
    const r = testRng(`torch oracle ${label}`);
    const rows = 6, vocab = 37;
    const x = randomLogits(r, rows, vocab), u = randomLogits(r, rows, vocab);
    const targets = Int32Array.from({ length: rows }, (_, i) => (i === 2 ? -100 : Math.floor(r() * vocab)));
    const weight = Float32Array.from({ length: vocab }, () => draw(r));
    const y = Float32Array.from({ length: rows * vocab }, () => (r() < 0.3 ? 1 : r() < 0.5 ? 0 : r()));
    const pw = Float32Array.from({ length: vocab }, () => 3 * r());
    const T = 1.7, eps = 0.15;
    const res = JSON.parse(execFileSync(python!, ['-c', SCRIPT], {
      input: JSON.stringify({ rows, vocab, z: Array.from(x), u: Array.from(u), targets: Array.from(targets), weight: Array.from(weight), y: Array.from(y), pw: Array.from(pw), T, eps }),
      encoding: 'utf8',
    }));
    const z = logits(x, rows, vocab);
    for (const reduction of ['mean', 'sum', 'none'] as const) {
      const o = crossEntropyForward(z, targets, { weight, labelSmoothing: eps, reduction, withGrad: true });
      const ref = res[`ce_${reduction}`];
      if (reduction === 'none') expect(close(o.losses, ref.loss, 2e-6)).toBeLessThanOrEqual(1);
      else expect(close([o.loss], [ref.loss], 2e-6)).toBeLessThanOrEqual(1);
      // torch's 'none' gradient is of Σ losses; ours with gradOutput 1 is the same
      expect(close(o.grad!.data as Float32Array, ref.grad, 2e-6)).toBeLessThanOrEqual(1);
    }
    const kl = klDivergenceForward(z, logits(u, rows, vocab), { temperature: T, reduction: 'sum', withGrad: true });
    expect(close([kl.loss], [res.kl.loss], 3e-6)).toBeLessThanOrEqual(1);
    expect(close(kl.grad!.data as Float32Array, res.kl.grad, 3e-6)).toBeLessThanOrEqual(1);
    const soft = softCrossEntropyForward(z, logits(u, rows, vocab), { withGrad: true });
    expect(close([soft.loss], [res.soft.loss], 3e-6)).toBeLessThanOrEqual(1);
    expect(close(soft.grad!.data as Float32Array, res.soft.grad, 3e-6)).toBeLessThanOrEqual(1);
    const bce = binaryCrossEntropyWithLogits(z, y, { weight, posWeight: pw, withGrad: true });
    expect(close([bce.loss], [res.bce.loss], 2e-6)).toBeLessThanOrEqual(1);
    expect(close(bce.grad!.data as Float32Array, res.bce.grad, 2e-6)).toBeLessThanOrEqual(1);
  });
});
