// The package as users load it: ESM import and CommonJS require of 'fusedce', in fresh processes.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const run = (args: string[]) => execFileSync(process.execPath, args, { encoding: 'utf8' }).trim();
const script = (api: string) =>
  `const z = ${api}.logits(new Float32Array([0, 0, 0, 0]), 1, 4);` +
  `console.log(${api}.crossEntropyForward(z, new Int32Array([2])).loss.toFixed(6), typeof ${api}.backend());`;

describe('package entry points', () => {
  it("works with require('fusedce')", () => {
    expect(run(['-e', `const f = require('fusedce'); ${script('f')}`])).toBe(`${Math.log(4).toFixed(6)} string`);
  });
  it("works with import … from 'fusedce'", () => {
    expect(run(['--input-type=module', '-e', `import * as f from 'fusedce'; ${script('f')}`])).toBe(`${Math.log(4).toFixed(6)} string`);
  });
  it('exports the same names from both entry points, and a default export for ESM', () => {
    const cjs = run(['-e', "console.log(Object.keys(require('fusedce')).filter(k => k !== '__esModule').sort().join(','))"]);
    const esm = run(['--input-type=module', '-e', "import * as f from 'fusedce'; console.log(Object.keys(f).filter(k => k !== 'default').sort().join(','))"]);
    expect(esm).toBe(cjs);
    for (const name of ['logits', 'bf16', 'f16', 'crossEntropyForward', 'crossEntropyBackward', 'crossEntropyForwardAsync', 'crossEntropyBackwardAsync', 'backend'])
      expect(cjs.split(',')).toContain(name);
  });
});
