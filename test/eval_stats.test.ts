// The evaluation statistics added to stats: the reliability diagram's bins (the ECE's own),
// bits per character / byte, and reliabilityDiagramSvg, against a float64 reference on fresh
// random data (vocab 128256 and a ragged one, bf16 and f32, ignored rows).
import { describe, expect, it } from 'vitest';
import { crossEntropyForward, reliabilityDiagramSvg } from 'fusedce';
import { makeLogits, randomLogits, randomTargets, testRng } from './reference.mjs';
import { refCrossEntropy } from './loss_reference.mjs';

const CASES: [rows: number, vocab: number, dtype: 'f32' | 'bf16', why: string][] = [
  [37, 1003, 'f32', 'rows and vocab off every vector width'],
  [6, 128256, 'bf16', 'the Llama-3 vocabulary'],
];

describe('stats: reliability bins, bits per character and per byte', () => {
  for (const [rows, vocab, dtype, why] of CASES) {
    it(`${rows}×${vocab} ${dtype} (${why}), a third of the rows ignored`, () => {
      const r = testRng(`eval ${rows} ${vocab} ${dtype}`);
      const x = randomLogits(r, rows, vocab, 3);
      const t = randomTargets(r, rows, vocab, 0.3);
      t[1] = -100;
      const { z, values } = makeLogits(x, rows, vocab, dtype);
      const characters = 4.3 * rows, bytes = 5.1 * rows, bins = 7;
      const res = crossEntropyForward(z, t, { stats: true, eceBins: bins, characters, bytes });
      const ref = refCrossEntropy(values, rows, vocab, t);
      const s = res.stats;
      // bits per character / byte: the counted rows' NLL over the text's size
      let nll = 0;
      for (let i = 0; i < rows; i++) if (t[i] !== -100) nll -= ref.stats.targetLogprob[i]!;
      expect(Math.abs(s.bitsPerCharacter! - nll / (characters * Math.LN2))).toBeLessThanOrEqual(1e-6 * s.bitsPerCharacter!);
      expect(Math.abs(s.bitsPerByte! - nll / (bytes * Math.LN2))).toBeLessThanOrEqual(1e-6 * s.bitsPerByte!);
      expect(s.bitsPerCharacter! / s.bitsPerToken).toBeCloseTo(ref.N / characters, 10);
      // the reliability bins from the float64 reference's confidences, bin b = (b/B, (b+1)/B]
      const count = new Float64Array(bins), conf = new Float64Array(bins), hit = new Float64Array(bins);
      for (let i = 0; i < rows; i++) {
        if (t[i] === -100) continue;
        const p = ref.stats.maxProb[i]!;
        const b = Math.min(bins - 1, Math.max(0, Math.ceil(p * bins) - 1));
        count[b]++;
        conf[b] += p;
        hit[b] += ref.stats.argmax[i] === t[i] ? 1 : 0;
      }
      const rel = s.reliability;
      expect([rel.confidence.length, rel.accuracy.length, rel.count.length]).toEqual([bins, bins, bins]);
      expect(Array.from(rel.count)).toEqual(Array.from(count));
      expect(rel.count.reduce((a, v) => a + v, 0)).toBe(res.count);
      for (let b = 0; b < bins; b++) {
        if (count[b] === 0) {
          expect([rel.confidence[b], rel.accuracy[b]]).toEqual([0, 0]);
          continue;
        }
        expect(Math.abs(rel.confidence[b]! - conf[b]! / count[b]!)).toBeLessThanOrEqual(1e-6);
        expect(rel.accuracy[b]).toBe(hit[b]! / count[b]!);
      }
      // ECE is the count-weighted gap of those bins
      let ece = 0;
      for (let b = 0; b < bins; b++) ece += (rel.count[b]! / res.count) * Math.abs(rel.accuracy[b]! - rel.confidence[b]!);
      expect(s.ece).toBeCloseTo(ece, 12);
    });
  }

  it('without characters or bytes there is no bitsPerCharacter or bitsPerByte', () => {
    const { z } = makeLogits(new Float32Array(12).fill(0.5), 3, 4, 'f32');
    const s = crossEntropyForward(z, new Int32Array([0, 1, 2]), { stats: true }).stats;
    expect('bitsPerCharacter' in s || 'bitsPerByte' in s).toBe(false);
    expect(s.reliability.count.length).toBe(15);
  });

  it('characters and bytes: a finite number > 0, and only with stats', () => {
    const { z } = makeLogits(new Float32Array(12), 3, 4, 'f32');
    const t = new Int32Array([0, 1, 2]);
    expect(() => crossEntropyForward(z, t, { characters: 10 })).toThrow(/crossEntropyForward: characters must be undefined unless stats is true.*pass stats: true/);
    expect(() => crossEntropyForward(z, t, { stats: true, bytes: 0 })).toThrow(RangeError);
    expect(() => crossEntropyForward(z, t, { stats: true, bytes: -3 })).toThrow(/bytes must be a finite number > 0/);
    expect(() => crossEntropyForward(z, t, { stats: true, characters: NaN })).toThrow(RangeError);
    expect(() => crossEntropyForward(z, t, { stats: true, characters: '10' as never })).toThrow(TypeError);
  });
});

describe('reliabilityDiagramSvg', () => {
  const r = testRng('reliability svg');
  const rows = 400, vocab = 30;
  const { z } = makeLogits(randomLogits(r, rows, vocab, 2), rows, vocab, 'f32');
  const t = randomTargets(r, rows, vocab);
  const s = crossEntropyForward(z, t, { stats: true, eceBins: 10 }).stats;

  it('draws one accuracy bar and one confidence tick per non-empty bin, the row histogram, and the ECE', () => {
    const svg = reliabilityDiagramSvg(s.reliability, { title: 'held-out <set>' });
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="480" height="520"/);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    const nonEmpty = Array.from(s.reliability.count).filter((c) => c > 0).length;
    expect(nonEmpty).toBeGreaterThan(1);
    expect([...svg.matchAll(/<title>bin \d+: accuracy/g)]).toHaveLength(nonEmpty);
    expect([...svg.matchAll(/stroke="#d62728" stroke-width="2"\/>/g)]).toHaveLength(nonEmpty + 1); // + the legend's
    expect([...svg.matchAll(/fill="#7f7f7f"\/>/g)]).toHaveLength(nonEmpty);
    expect(svg).toContain(`ECE ${(100 * s.ece).toFixed(2)}% over ${rows} rows, 10 bins`);
    expect(svg).toContain('held-out &lt;set&gt;'); // the title is escaped
  });

  it('rejects what is not stats.reliability, naming the argument', () => {
    expect(() => reliabilityDiagramSvg(null as never)).toThrow(/reliabilityDiagramSvg: reliability must be stats\.reliability/);
    expect(() => reliabilityDiagramSvg({ ...s.reliability, count: [1, 2] } as never)).toThrow(/reliability\.count must be a Float64Array/);
    expect(() => reliabilityDiagramSvg({ ...s.reliability, count: new Float64Array(3) })).toThrow(RangeError);
    const bad = { confidence: new Float64Array([1.5]), accuracy: new Float64Array([0.5]), count: new Float64Array([1]) };
    expect(() => reliabilityDiagramSvg(bad)).toThrow(/reliability \(bin 0\) must be a count ≥ 0 and a confidence and accuracy in \[0, 1\]/);
    expect(() => reliabilityDiagramSvg(s.reliability, { colour: 'red' } as never)).toThrow(/unknown option 'colour'/);
    expect(() => reliabilityDiagramSvg(s.reliability, { width: 10 })).toThrow(/reliabilityDiagramSvg: width\/height must be at least 200 × 240/);
  });
});
