// examples/train.mjs --quick: the example a user copies trains, its held-out loss falls to near the
// source's entropy rate (and not below it, which would mean a wrong loss), and it writes the SVG
// loss curve with the floor drawn on it, and the held-out reliability diagram. bf16 logits run too.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../examples/train.mjs', import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedce-train-'));

function train(...args: string[]) {
  const svg = path.join(tmp, `curve-${args.join('_').replace(/\W/g, '')}.svg`);
  const rel = path.join(tmp, `reliability-${args.join('_').replace(/\W/g, '')}.svg`);
  const r = spawnSync(process.execPath, [script, ...args, '--svg', svg, '--reliability', rel], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const num = (re: RegExp) => Number(re.exec(r.stdout)![1]);
  return {
    out: r.stdout,
    svg: fs.readFileSync(svg, 'utf8'),
    reliability: fs.readFileSync(rel, 'utf8'),
    before: num(/held-out before: loss ([\d.]+) nats/),
    after: num(/held-out after : loss ([\d.]+) nats/),
    floor: num(/floor \(the entropy rate\): ([\d.]+) nats/),
  };
}

describe('examples/train.mjs', () => {
  it('--quick: the loss falls from ln 256 to within 0.15 nats of the entropy rate, and writes the loss curve', () => {
    const r = train('--quick');
    // H([0.55, 0.25, 0.12, 0.08]) in nats
    expect(r.floor).toBeCloseTo(-[0.55, 0.25, 0.12, 0.08].reduce((s, p) => s + p * Math.log(p), 0), 4);
    expect(r.before).toBeGreaterThan(Math.log(256) - 0.5);
    expect(r.after).toBeLessThan(r.floor + 0.15);
    // a held-out estimate over 4096 tokens: within its noise of the floor, never far below it
    expect(r.after).toBeGreaterThan(r.floor - 0.05);
    expect(r.out).toMatch(/perplexity [\d.]+, [\d.]+ bits\/token/);
    expect(r.out).toMatch(/\[#+\] step 300\/300/);
    expect(r.svg).toMatch(/^<svg /);
    expect(r.svg).toMatch(/<polyline [^>]*points="(?:[\d.]+,[\d.]+ ){299}[\d.]+,[\d.]+"/);
    expect(r.svg).toMatch(/entropy floor 1\.132 nats/);
    // the held-out reliability diagram, drawn by reliabilityDiagramSvg from stats.reliability
    expect(r.reliability).toMatch(/Held-out calibration after 300 steps/);
    expect(r.reliability).toMatch(/ECE [\d.]+% over 4096 rows, 10 bins/);
  }, 120_000);
  it('--dtype bf16: the logits go through bf16.fromFloat32 into a reused buffer, and it trains', () => {
    const r = train('--dtype', 'bf16', '--steps', '150');
    expect(r.after).toBeLessThan(r.before - 3);
    expect(r.after).toBeGreaterThan(r.floor - 0.05);
  }, 120_000);
  it('rejects a bad option, naming it', () => {
    const r = spawnSync(process.execPath, [script, '--steps', 'many'], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/RangeError: train: --steps must be a positive integer, but got 'many'/);
  });
});
