// The benchmark script runs (--quick), its peers agree on the loss (it throws otherwise), and it
// reports positive throughputs. Speed itself is never asserted here: that is what the bench is for.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('bench/cross_entropy.bench.mjs --quick', () => {
  it('runs and reports every case with its ceiling', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    // --threads as a user would give it (unsorted); the bench runs exactly those counts
    const out = execFileSync(process.execPath, [script, '--quick', '--json', '--threads', '2,1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const report = JSON.parse(out);
    expect(report.threads).toEqual([1, 2]);
    // the exp ceiling is measured at every thread count the bench runs
    const threads = Object.keys(report.expCeiling).map(Number);
    expect(threads).toEqual([1, 2]);
    expect(new Set(report.results.filter((r: { impl: string }) => r.impl === 'fusedce').map((r: { threads: number }) => r.threads))).toEqual(new Set([1, 2]));
    for (const t of threads) {
      expect(report.expCeiling[t]).toBeGreaterThan(0);
      expect(report.expCeilingSamples[t].length).toBeGreaterThanOrEqual(2);
    }
    expect(report.mismatches).toEqual([]);
    const impls = new Set(report.results.map((r: { impl: string }) => r.impl));
    expect([...impls].sort()).toEqual(['fusedce', 'plain JS']);
    const ops = new Set(report.results.filter((r: { impl: string }) => r.impl === 'fusedce').map((r: { op: string }) => r.op));
    expect([...ops].sort()).toEqual(['backward', 'forward', 'fused fwd+bwd']);
    for (const r of report.results) {
      expect(r.elementsPerSec).toBeGreaterThan(0);
      expect(r.pctExpCeiling).toBeGreaterThan(0);
      expect(r.pctExpCeiling).toBeCloseTo((100 * r.elementsPerSec) / r.expCeiling, 6);
      expect(r.pctReadCeiling).toBeGreaterThan(0);
    }
  });
  it('rejects an unknown --peers entry, naming the option, before measuring anything', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--quick', '--peers', 'torch,bogus'], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/RangeError: --peers: unknown peer 'bogus'/);
  });
  it('rejects a --threads entry that is not a positive integer, naming the option', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    for (const bad of ['0', '1,two', '2.5', '']) {
      const r = spawnSync(process.execPath, [script, '--quick', '--threads', bad], { encoding: 'utf8' });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/RangeError: --threads: '.*' is not a thread count/);
    }
  });
  it('prints its options with --help and measures nothing', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const o of ['--quick', '--json', '--filter', '--peers', '--threads', '--out']) expect(r.stdout).toContain(o);
    expect(r.stdout).not.toMatch(/exp ceiling/);
  });
});

describe('bench/loss_family.bench.mjs --quick', () => {
  it('runs every option and op and reports its cost relative to the plain path of the same pass', () => {
    const script = fileURLToPath(new URL('../bench/loss_family.bench.mjs', import.meta.url));
    const out = execFileSync(process.execPath, [script, '--quick', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const report = JSON.parse(out);
    expect(report.results.length).toBeGreaterThanOrEqual(20);
    for (const r of report.results) {
      expect(r.elementsPerSec).toBeGreaterThan(0);
      expect(r.relativeToPlain).toBeGreaterThan(0);
    }
    expect(report.results.filter((r: { name: string }) => r.name === 'plain').map((r: { relativeToPlain: number }) => r.relativeToPlain)).toEqual([1, 1]);
  });
});

describe('fusedce command line', () => {
  const bin = fileURLToPath(new URL('../bin/fusedce.mjs', import.meta.url));
  it('prints its usage, and rejects an unknown command with exit 2', () => {
    expect(spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' }).stdout).toMatch(/usage: fusedce bench/);
    const r = spawnSync(process.execPath, [bin, 'nope'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'nope'/);
  });
});

describe('bench/boundary.bench.mjs --quick', () => {
  it('measures the default paths against reused outputs and the native conversions against the JS loops', () => {
    const script = fileURLToPath(new URL('../bench/boundary.bench.mjs', import.meta.url));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedce-boundary-'));
    execFileSync(process.execPath, [script, '--quick', '--out', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'boundary.json'), 'utf8'));
    expect(j.meta.git).toBeTypeOf('string');
    const cases = j.rows.map((r: { case: string }) => r.case);
    expect(cases.filter((c: string) => c.startsWith('withGrad, fresh vs reused out'))).toHaveLength(1);
    expect(cases.filter((c: string) => c.startsWith('backward, fresh vs reused out'))).toHaveLength(1);
    expect(cases.filter((c: string) => /^b?f16\.(from|to)Float32/.test(c))).toHaveLength(8);
    for (const r of j.rows) expect(r.ratio ?? r.speedup).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(dir, 'boundary.md'), 'utf8')).toMatch(/\| case \| A \(ms\)/);
  });
});
