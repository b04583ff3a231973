// The vector kernel sets agree bit for bit: AVX-512 against AVX2 (same lanes, same summation
// order, same exp), on the dispatched kernels of this CPU against a child process that forces the
// other set. Runs where the CPU has AVX-512 (otherwise there is nothing to compare: the AVX2 and
// scalar sets are each checked against the float64 reference by the suite).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { backend } from 'fusedce';
import { describe, expect, it } from 'vitest';
import { isaCases } from './isa_cases.mjs';
import { SEED } from './reference.mjs';

describe.runIf(backend() === 'avx512')('AVX-512 kernels: bitwise the AVX2 kernels', () => {
  it('forward, fused, backward (every dtype pair) and exp, on extreme and masked logits', () => {
    const script = fileURLToPath(new URL('./isa_cases.mjs', import.meta.url));
    const child = JSON.parse(
      execFileSync(process.execPath, [script, String(SEED)], {
        encoding: 'utf8',
        env: { ...process.env, FUSEDCE_ISA: 'avx2' },
        maxBuffer: 1 << 30,
      }),
    );
    const ours = isaCases(SEED);
    expect(Object.keys(ours).length).toBeGreaterThan(80);
    expect(Object.keys(child).sort()).toEqual(Object.keys(ours).sort());
    const differ = Object.keys(ours).filter((k) => ours[k] !== child[k]);
    expect(differ, `seed ${SEED}`).toEqual([]);
  }, 120_000);
});
