// Written as a strict TypeScript user would, with no casts: it must compile against dist/*.d.ts.
import { bf16, crossEntropyBackward, crossEntropyForward, logits, type Logits } from 'fusedce';

const rows = 4, vocab = 8;
const x = new Float32Array(rows * vocab);
const t = new Int32Array(rows);
const z = logits(x, rows, vocab);
const zb: Logits<'bf16'> = logits(bf16.fromFloat32(x), rows, vocab, 'bf16');

// the gradient is there, with the array type of its dtype
const g: Float32Array = crossEntropyForward(z, t, { withGrad: true, gradDtype: 'f32' }).grad.data;
const gb: Uint16Array = crossEntropyForward(zb, t, { withGrad: true }).grad.data;
const gf: Float32Array = crossEntropyForward(zb, t, { withGrad: true, gradDtype: 'f32' }).grad.data;
// the statistics are there with stats: true
const ppl: number = crossEntropyForward(z, t, { stats: true }).stats.perplexity;
// the separate backward's gradient dtype follows gradDtype too
const r = crossEntropyForward(zb, t);
const gb2: Float32Array = crossEntropyBackward(zb, t, r.lse, { gradDtype: 'f32' }).data;
// conversions with a reused output
const out = new Uint16Array(x.length);
const same: Uint16Array = bf16.fromFloat32(x, out);

export { g, gb, gf, ppl, gb2, same };

// and the types are not loose: each of these is an error
// @ts-expect-error a bf16 gradient is a Uint16Array
export const wrong: Float32Array = crossEntropyForward(zb, t, { withGrad: true }).grad.data;
// @ts-expect-error without withGrad the gradient may be absent
export const absent: Float32Array = crossEntropyForward(z, t).grad.data;
// @ts-expect-error without stats: true the statistics may be absent
export const noStats: number = crossEntropyForward(z, t).stats.perplexity;
