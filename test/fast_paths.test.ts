// The loss family's block-kernel paths (options on the plain driver, smoothing, entropy, soft
// targets, probabilities, BCE) against the portable loops (FUSEDCE_ISA=scalar, in a child process)
// on extreme inputs: masked runs, ±80, NaN and all-masked rows, ignored rows, ragged blocks. The two
// agree on every NaN and infinity, and on finite values to the fp32 rounding of their different
// summation orders. (Each is also checked against the float64 reference on ordinary data by the
// op's own test file.)
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { backend } from 'fusedce';
import { describe, expect, it } from 'vitest';
import { fastPathCases } from './fast_path_cases.mjs';
import { SEED } from './reference.mjs';

type Case = Record<string, (number | string)[]>;

function scalarCases(): Record<string, Case> {
  const script = fileURLToPath(new URL('./fast_path_cases.mjs', import.meta.url));
  return JSON.parse(execFileSync(process.execPath, [script, String(SEED)], {
    encoding: 'utf8', env: { ...process.env, FUSEDCE_ISA: 'scalar' }, maxBuffer: 1 << 30,
  }));
}

/** The first disagreement of two output arrays, or null: the same non-finite entries, and finite
 *  ones within 2e-5 relative plus 2e-6 of the array's largest finite magnitude. */
function disagreement(a: (number | string)[], b: (number | string)[]): string | null {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  let big = 0;
  for (const v of b) if (typeof v === 'number') big = Math.max(big, Math.abs(v));
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (typeof x === 'string' || typeof y === 'string') {
      if (x !== y) return `[${i}]: ${x} vs ${y}`;
      continue;
    }
    if (Math.abs(x - y) > 2e-5 * Math.abs(y) + 2e-6 * big) return `[${i}]: ${x} vs ${y}`;
  }
  return null;
}

describe.runIf(backend() !== 'scalar')('the family\'s block kernels agree with the portable loops on extreme inputs', () => {
  it(`every op, f32 and bf16, vocab 9001 and 128256 (seed ${SEED})`, () => {
    const ours = fastPathCases(SEED) as Record<string, Case>;
    const theirs = scalarCases();
    expect(Object.keys(ours).length).toBeGreaterThanOrEqual(40);
    const bad: string[] = [];
    for (const [k, c] of Object.entries(ours))
      for (const [field, v] of Object.entries(c)) {
        const d = disagreement(v, theirs[k]![field]!);
        if (d) bad.push(`${k} ${field} ${d}`);
      }
    expect(bad).toEqual([]);
  }, 300_000);

  it('the cases do reach the extremes (NaN rows, +inf losses, masked rows)', () => {
    const ours = fastPathCases(SEED) as Record<string, Case>;
    const ce = ours['7x9001 f32 ce smoothing']!;
    expect(ce.losses[2]).toBe('NaN');       // the NaN row
    expect(ce.losses[3]).toBe(0);           // the ignored all-masked row
    expect(ours['7x9001 f32 probs']!.losses[0]).toBe('Infinity');  // mass on a masked logit
    expect(ours['7x9001 f32 probs']!.losses[3]).toBe('NaN');       // an all-masked row (torch: NaN)
    expect(ce.losses[0]).toBe('Infinity');  // row 0: smoothing puts mass on its masked logits (as torch)
    expect(typeof ours['7x9001 f32 ce weight zLoss']!.losses[0]).toBe('number');  // finite without smoothing
    expect(ours['7x9001 f32 entropyForward']!.grad[3 * 9001]).toBe('NaN');  // no finite logit
  }, 300_000);
});
