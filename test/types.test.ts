// The published declarations, as a strict consumer sees them: test/consumer/ compiles with
// strict, skipLibCheck false, the default lib of target es2022 (no esnext.disposable) and no
// @types/node, writing the gradient and the statistics with no casts; its @ts-expect-error lines
// fail the compile if the types turn loose.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');

describe('published types', () => {
  it('a strict consumer compiles with no casts (and the wrong uses are errors)', () => {
    const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
    const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'test', 'consumer', 'tsconfig.json')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
  it('fusedce/tfjs types fit TensorFlow.js: the losses go into model.compile, bad options are errors', () => {
    const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
    const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'test', 'consumer', 'tsconfig.tfjs.json')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
