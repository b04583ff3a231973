// The boundary fuzz (test/fuzz/boundary_fuzz.cjs) in child processes, a few thousand cases:
// every crash, accepted invalid call, wrong result or unexpected error fails the test.
// `npm run fuzz` runs more (10^4 and up).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

describe('boundary fuzz', () => {
  it('finds 0 crashes and 0 accepted invalid calls (public API and raw binding)', () => {
    const seed = Number(process.env.FUSEDCE_SEED ?? Date.now() % 100000);
    const r = spawnSync(process.execPath, [path.join(__dirname, 'fuzz', 'run.cjs'), '--public', '3000', '--raw', '2000', '--seed', String(seed)], {
      encoding: 'utf8',
    });
    const report = r.stdout + r.stderr;
    console.log(report.trim());
    expect(report).toMatch(/"crashes":0,"acceptedInvalid":0,"wrong":0,"unexpected":0/);
    expect(r.status).toBe(0);
  });
});
