// The vector kernel sets agree bit for bit: AVX-512 against AVX2 (same lanes, same summation
// order, same exp), on the dispatched kernels of this CPU against a child process that forces the
// other set. Runs where the CPU has AVX-512 (otherwise there is nothing to compare: the AVX2 and
// scalar sets are each checked against the float64 reference by the suite).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { backend, cpuInfo } from 'fusedce';
import { describe, expect, it } from 'vitest';
import { isaCases } from './isa_cases.mjs';
import { SEED } from './reference.mjs';

function childCases(isa: string): Record<string, string> {
  const script = fileURLToPath(new URL('./isa_cases.mjs', import.meta.url));
  return JSON.parse(
    execFileSync(process.execPath, [script, String(SEED)], {
      encoding: 'utf8',
      env: { ...process.env, FUSEDCE_ISA: isa },
      maxBuffer: 1 << 30,
    }),
  );
}

describe.runIf(backend() === 'avx512')('AVX-512 kernels: bitwise the AVX2 kernels', () => {
  const ours = isaCases(SEED);
  it('forward, fused, backward (every dtype pair) and exp, on extreme, masked and NaN logits', () => {
    const child = childCases('avx2');
    expect(Object.keys(ours).length).toBeGreaterThan(80);
    expect(Object.keys(child).sort()).toEqual(Object.keys(ours).sort());
    const differ = Object.keys(ours).filter((k) => ours[k] !== child[k]);
    expect(differ, `seed ${SEED}`).toEqual([]);
  }, 120_000);
  // Where the CPU has AVX512_BF16 the dispatched set narrows bf16 gradients with vcvtneps2bf16
  // (subnormal lanes by the integer path): the same bits as the AVX-512 set without it.
  it.runIf(cpuInfo().avx512bf16)('with AVX512_BF16: bitwise the AVX-512 kernels without it (bf16 gradients with subnormal and NaN values)', () => {
    const child = childCases('avx512');
    expect(Object.keys(child).sort()).toEqual(Object.keys(ours).sort());
    const differ = Object.keys(ours).filter((k) => ours[k] !== child[k]);
    expect(differ, `seed ${SEED}`).toEqual([]);
  }, 120_000);
});
