// Float64 reference for cross-entropy and the helpers the tests share: fresh random data from a
// seeded generator (the seed is printed, so a failure can be replayed with FUSEDCE_SEED=…),
// correctly rounded float64 → bf16/f16, and ulp distances.
import { bf16, f16, logits } from 'fusedce';
// ---------- random data ----------
const envSeed = process.env.FUSEDCE_SEED;
export const SEED = envSeed ? Number(envSeed) : Math.floor(Math.random() * 2 ** 31);
let seedPrinted = false;
/** mulberry32: small, fast, good enough for test data. */
export function rng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
/** A generator for one test, derived from the run's seed and a label. */
export function testRng(label) {
    if (!seedPrinted) {
        seedPrinted = true;
        console.log(`fusedce tests: FUSEDCE_SEED=${SEED}`);
    }
    let h = SEED;
    for (let i = 0; i < label.length; i++)
        h = Math.imul(h ^ label.charCodeAt(i), 0x9e3779b1);
    return rng(h);
}
export function normal(r) {
    const u = Math.max(r(), 1e-300);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}
/** Logit values in f32, shaped like a language model's: N(0, σ²) with a few large spikes per row. */
export function randomLogits(r, rows, vocab, sigma = 2) {
    const x = new Float32Array(rows * vocab);
    for (let i = 0; i < x.length; i++)
        x[i] = sigma * normal(r);
    for (let row = 0; row < rows; row++)
        for (let k = 0; k < 3; k++)
            x[row * vocab + Math.floor(r() * vocab)] = 8 + 4 * r();
    return x;
}
export function randomTargets(r, rows, vocab, ignoreFraction = 0, ignoreIndex = -100) {
    const t = new Int32Array(rows);
    for (let i = 0; i < rows; i++)
        t[i] = r() < ignoreFraction ? ignoreIndex : Math.floor(r() * vocab);
    return t;
}
/**
 * Targets drawn from softmax(x/τ₀) per row: a model whose right temperature is about τ₀, so a
 * temperature fit on them has a well-defined optimum (uniform targets put it near τ = ∞, where the
 * NLL is flat and τ is decided by rounding). Rows drawn below ignoreFraction get ignoreIndex.
 */
export function sampleTargets(r, x, rows, vocab, tau0, ignoreFraction = 0, ignoreIndex = -100) {
    const t = new Int32Array(rows);
    const p = new Float64Array(vocab);
    for (let i = 0; i < rows; i++) {
        if (r() < ignoreFraction) {
            t[i] = ignoreIndex;
            continue;
        }
        let m = -Infinity;
        for (let j = 0; j < vocab; j++)
            m = Math.max(m, x[i * vocab + j] / tau0);
        let s = 0;
        for (let j = 0; j < vocab; j++)
            s += p[j] = Math.exp(x[i * vocab + j] / tau0 - m);
        let u = r() * s, j = 0;
        while (u > p[j] && j < vocab - 1)
            u -= p[j++];
        t[i] = j;
    }
    return t;
}
/** Builds Logits of the given dtype from f32 values; `values` are the exact (dequantised) inputs. */
export function makeLogits(x, rows, vocab, dtype) {
    if (dtype === 'f32')
        return { z: logits(x, rows, vocab), values: x };
    const conv = dtype === 'bf16' ? bf16 : f16;
    const bits = conv.fromFloat32(x);
    return { z: logits(bits, rows, vocab, dtype), values: conv.toFloat32(bits) };
}
export function toFloat32(g) {
    if (g.dtype === 'f32')
        return g.data;
    return (g.dtype === 'bf16' ? bf16 : f16).toFloat32(g.data);
}
/**
 * torch.nn.functional.cross_entropy in float64, with the fusedce convention that no counted row
 * gives loss 0 and gradient 0. The target gradient is −Σ_{j≠t} p_j (= p_t − 1 without cancellation).
 */
export function reference(values, targets, rows, vocab, opts = {}) {
    const reduction = opts.reduction ?? 'mean';
    const ignore = opts.ignoreIndex ?? -100;
    const lse = new Float64Array(rows);
    const losses = new Float64Array(rows);
    const grad = new Float64Array(rows * vocab);
    let count = 0;
    for (let i = 0; i < rows; i++)
        if (targets[i] !== ignore)
            count++;
    let sum = 0;
    for (let i = 0; i < rows; i++) {
        const t = targets[i];
        if (t === ignore)
            continue;
        const o = i * vocab;
        let m = -Infinity;
        let bad = false;
        for (let j = 0; j < vocab; j++) {
            const v = values[o + j];
            if (Number.isNaN(v) || v === Infinity)
                bad = true;
            if (v > m)
                m = v;
        }
        let s = 0;
        for (let j = 0; j < vocab; j++)
            s += Math.exp(values[o + j] - m);
        const l = bad ? NaN : m + Math.log(s);
        lse[i] = l;
        // loss = lse − z_t = log1p(Σ_{j≠t} e^(z_j − z_t)), without the cancellation of lse − z_t
        let rest = 0;
        for (let j = 0; j < vocab; j++)
            if (j !== t)
                rest += Math.exp(values[o + j] - values[o + t]);
        losses[i] = bad ? NaN : values[o + t] === -Infinity ? Infinity : Math.log1p(rest);
        sum += losses[i];
        const go = opts.gradOutput instanceof Float32Array ? opts.gradOutput[i] : (opts.gradOutput ?? 1);
        const scale = reduction === 'mean' ? go / count : go;
        let others = 0;
        for (let j = 0; j < vocab; j++) {
            if (j === t)
                continue;
            const p = Math.exp(values[o + j] - l);
            others += p;
            grad[o + j] = p * scale;
        }
        grad[o + t] = -others * scale;
    }
    const loss = reduction === 'mean' ? (count ? sum / count : 0) : sum;
    return { lse, losses, loss, count, grad };
}
// ---------- rounding and ulps ----------
/** float64 → nearest value with `mant` fraction bits and minimum normal exponent `emin`, ties to even. */
function roundTo(x, mant, emin, max) {
    if (!Number.isFinite(x) || x === 0)
        return x;
    const e = Math.max(Math.floor(Math.log2(Math.abs(x))), emin);
    // Math.log2 may be off by one near powers of two; fix e so that 2^e ≤ |x| < 2^(e+1) (or e = emin)
    let ee = e;
    if (ee > emin && Math.abs(x) < 2 ** ee)
        ee--;
    if (Math.abs(x) >= 2 ** (ee + 1))
        ee++;
    const ulp = 2 ** (ee - mant);
    const q = x / ulp;
    let r = Math.round(q);
    if (Math.abs(q - Math.trunc(q)) === 0.5)
        r = 2 * Math.round(q / 2); // ties to even
    const y = r * ulp;
    return Math.abs(y) > max ? Math.sign(y) * Infinity : y;
}
/** Correctly rounded float64 → bf16 bits. */
export function f64ToBf16(x) {
    if (Number.isNaN(x))
        return 0x7fc0;
    const y = roundTo(x, 7, -126, 3.3895313892515355e38);
    return bf16.fromFloat32(new Float32Array([y]))[0]; // y is exactly representable: no second rounding
}
/** Correctly rounded float64 → f16 bits. */
export function f64ToF16(x) {
    if (Number.isNaN(x))
        return 0x7e00;
    const y = roundTo(x, 10, -14, 65504);
    return f16.fromFloat32(new Float32Array([y]))[0];
}
/** Map 16-bit float bits to integers that are monotonic in value (so ulp distance is a difference). */
function ordered16(h) {
    return h & 0x8000 ? -(h & 0x7fff) : h;
}
export function ulpDistance16(a, b) {
    return Math.abs(ordered16(a) - ordered16(b));
}
