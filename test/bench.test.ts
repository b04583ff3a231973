// The benchmark script runs (--quick), its peers agree on the loss (it throws otherwise), and it
// reports positive throughputs. Speed itself is never asserted here: that is what the bench is for.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('bench/cross_entropy.bench.mjs --quick', () => {
  it('runs and reports every case with its ceiling', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    const out = execFileSync(process.execPath, [script, '--quick', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const report = JSON.parse(out);
    expect(report.expCeilingPerThread).toBeGreaterThan(0);
    expect(report.mismatches).toEqual([]);
    const impls = new Set(report.results.map((r: { impl: string }) => r.impl));
    expect([...impls].sort()).toEqual(['fusedce', 'plain JS']);
    const ops = new Set(report.results.filter((r: { impl: string }) => r.impl === 'fusedce').map((r: { op: string }) => r.op));
    expect([...ops].sort()).toEqual(['backward', 'forward', 'fused fwd+bwd']);
    for (const r of report.results) {
      expect(r.elementsPerSec).toBeGreaterThan(0);
      expect(r.pctExpCeiling).toBeGreaterThan(0);
      expect(r.pctReadCeiling).toBeGreaterThan(0);
    }
  });
});
