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
    const out = execFileSync(process.execPath, [script, '--quick', '--json', '--threads', '2,1', '--out', 'none'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
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
  it('prints its options with --help, for npx users, and measures nothing', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const o of ['--quick', '--json', '--filter', '--peers', '--threads', '--out']) expect(r.stdout).toContain(o);
    expect(r.stdout).toMatch(/npx fusedce bench/);
    expect(r.stdout).toMatch(/default \.\/fusedce-bench/);
    expect(r.stdout).not.toMatch(/npm run|exp ceiling/);
  });
  it('writes ./fusedce-bench/ by default; its chart has values on the bars, the ceiling inside the plot, every implementation visible and labelled', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedce-benchcwd-'));
    // a git-less folder, as a project that installed the package; tfjs-cpu: the slowest bar
    const r = spawnSync(process.execPath, [script, '--quick', '--peers', 'js,tfjs-cpu', '--threads', '2'], { cwd, encoding: 'utf8', env: { ...process.env, FUSEDCE_GIT_SHA: '' } });
    expect(r.status, r.stderr).toBe(0);
    const files = fs.readdirSync(path.join(cwd, 'fusedce-bench')).sort();
    expect(files.map((f) => f.replace(/\d{4}-\d\d-\d\d/, 'DATE'))).toEqual(['cross-entropy-DATE-quick.json', 'cross-entropy-DATE-quick.md', 'cross-entropy-DATE-quick.svg']);
    expect(r.stdout).toMatch(/written: fusedce-bench\/cross-entropy-/);
    expect(r.stdout).not.toMatch(/npm run|git unknown/);
    const md = fs.readFileSync(path.join(cwd, 'fusedce-bench', files[1]!), 'utf8');
    expect(md.split('\n')[0]).toMatch(/fusedce \d+\.\d+\.\d+(, git [0-9a-f]{7}| \(installed package\))/);
    const svg = fs.readFileSync(path.join(cwd, 'fusedce-bench', files[2]!), 'utf8');
    const H = Number(/<svg [^>]*height="(\d+)"/.exec(svg)![1]);
    const bars = [...svg.matchAll(/<rect x="([\d.]+)" y="([\d.-]+)" width="13" height="([\d.-]+)" fill="(#[0-9a-f]+)"><title>([^<]+)<\/title><\/rect>\s*<text[^>]*>([^<]+)<\/text>/g)];
    const impls = new Set(bars.map((b) => b[5]!.split(' ').slice(0, 2).join(' ')));
    expect([...impls].sort()).toEqual(['fusedce forward', 'fusedce fused', 'plain JS', 'tfjs-cpu forward', 'tfjs-cpu fwd+bwd']);
    for (const b of bars) {
      expect(Number(b[3])).toBeGreaterThan(2); // visible
      expect(Number(b[6])).toBeGreaterThan(0); // its value printed on it
    }
    // legend entries: one per series, and the peers' forward+backward is autograd, not "fused"
    expect(svg).toMatch(/tfjs-cpu fwd\+bwd \(autograd\)/);
    expect(svg).not.toMatch(/(PyTorch|tfjs-\w+|onnxruntime-node) fused/);
    const ceil = [...svg.matchAll(/<line x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)" y2="[\d.]+" stroke="#d62728"/g)].map((m) => Number(m[1]));
    expect(ceil.length).toBeGreaterThan(0);
    for (const y of ceil) {
      expect(y).toBeGreaterThan(60); // below the title and subtitle
      expect(y).toBeLessThan(H);
    }
  });
  it('--out none writes nothing', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedce-benchcwd-'));
    const r = spawnSync(process.execPath, [script, '--quick', '--peers', 'none', '--out', 'none'], { cwd, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });
  const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
  it.runIf(hasScript)('draws its progress bar on a terminal that reports 0 columns', () => {
    const script = fileURLToPath(new URL('../bench/cross_entropy.bench.mjs', import.meta.url));
    const r = spawnSync('script', ['-qec', `stty cols 0 rows 0; ${JSON.stringify(process.execPath)} ${JSON.stringify(script)} --quick --peers none --out none`, '/dev/null'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\[#+\.*\] \d+\/\d+ /);
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
      // each floor read against its own ratio (null: the case has none)
      if (r.floor === null) expect(r.meetsFloor).toBeNull();
      else expect(r.meetsFloor).toBe(r.relativeToPlain >= r.floor);
    }
    expect(report.results.filter((r: { floor: number | null }) => r.floor !== null).length).toBeGreaterThanOrEqual(25);
    expect(report.results.filter((r: { name: string }) => r.name === 'plain').map((r: { relativeToPlain: number }) => r.relativeToPlain)).toEqual([1, 1]);
  });
});

describe('fusedce command line', () => {
  const bin = fileURLToPath(new URL('../bin/fusedce.mjs', import.meta.url));
  it('prints its usage, and rejects an unknown command with exit 2', () => {
    const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' }).stdout;
    for (const c of ['bench', 'gradcheck', 'info', 'build-cuda']) expect(help).toContain(`npx fusedce ${c}`);
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
