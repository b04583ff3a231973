// The npm tarball as a user gets it: `npm pack` (prepack builds the TypeScript and the
// prebuildify binary into prebuilds/linux-x64/), then `npm install <tarball>` into a fresh
// project with a PATH on which there is node and sh and nothing else: no compiler, make, python or
// cmake. The install must compile nothing, print nothing of its own, and the package must work:
// require, import, the CLI (npx fusedce info), fusedce/tfjs's message without tfjs.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const npmCli = process.env.npm_execpath?.endsWith('.js') ? process.env.npm_execpath
  : path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedce-install-'));
// a PATH with node and a shell (npm runs install scripts through sh) and nothing else
const bin = path.join(tmp, 'bin');
fs.mkdirSync(bin);
fs.symlinkSync(process.execPath, path.join(bin, 'node'));
fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
// its own user cache (where an installed package's CUDA variant would be), and npm's cache kept
const bare = { ...process.env, PATH: bin, npm_config_nodedir: '', CC: '', CXX: '', XDG_CACHE_HOME: path.join(tmp, 'cache'),
  npm_config_cache: path.join(os.homedir(), '.npm') } as Record<string, string>;
for (const k of Object.keys(bare)) if ((k.startsWith('npm_') && k !== 'npm_config_cache') || k === 'INIT_CWD' || k.startsWith('FUSEDCE_')) delete bare[k];
const project = path.join(tmp, 'project');

const npm = (args: string[], cwd: string, env: Record<string, string>) =>
  spawnSync(process.execPath, [npmCli, ...args, '--no-audit', '--no-fund', '--no-update-notifier'], { cwd, env, encoding: 'utf8' });

describe.runIf(onLinuxX64 && fs.existsSync(npmCli))('the npm tarball installs and runs with no compiler', () => {
  let tarball = '';
  let install: ReturnType<typeof spawnSync>;
  // the development builds under build/ that other test files use (the CUDA emulation, the addon)
  const devBuilds = ['build/Release/fusedce.node', 'build/cuda-emu/fusedce_cuda.node'].filter((f) => fs.existsSync(path.join(root, f)));
  beforeAll(() => {
    const pack = npm(['pack', '--pack-destination', tmp, '--json'], root, process.env as Record<string, string>);
    expect(pack.status, pack.stderr).toBe(0);
    const info = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('[')))[0];
    tarball = path.join(tmp, info.filename);
    const files = info.files.map((f: { path: string }) => f.path);
    expect(files).toContain('prebuilds/linux-x64/fusedce.node');
    expect(files).toContain('dist/cjs/tfjs.js');
    expect(files.some((f: string) => f.startsWith('build/'))).toBe(false);
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    install = npm(['install', tarball, '--foreground-scripts'], project, bare);
  }, 300_000);

  it('packing left the development builds in build/ where they were (prebuildify rebuilds in a build/ of its own)', () => {
    for (const f of devBuilds) expect(fs.existsSync(path.join(root, f)), f).toBe(true);
  });

  it('the PATH really has no compiler, make, python or cmake', () => {
    for (const tool of ['g++', 'gcc', 'cc', 'c++', 'make', 'python3', 'cmake'])
      expect(spawnSync(tool, ['--version'], { env: bare }).error, tool).toBeDefined();
  });

  it('npm install succeeds, compiles nothing, and fusedce prints nothing of its own', () => {
    expect(install.status, String(install.stderr)).toBe(0);
    const pkg = path.join(project, 'node_modules', 'fusedce');
    expect(fs.existsSync(path.join(pkg, 'prebuilds', 'linux-x64', 'fusedce.node'))).toBe(true);
    expect(fs.existsSync(path.join(pkg, 'build'))).toBe(false);
    // the install step itself, run again: silent, exit 0
    const step = spawnSync(process.execPath, [path.join(pkg, 'scripts', 'build-native.cjs'), '--if-missing'], { cwd: pkg, env: bare, encoding: 'utf8' });
    expect([step.status, step.stdout, step.stderr]).toEqual([0, '', '']);
    expect(`${install.stdout}${install.stderr}`).not.toMatch(/fusedce:|gyp |node-gyp/);
  });

  it('require, import and a call work from the project', () => {
    const call = 'const z = f.logits(new Float32Array([0, 0, 0, 0]), 1, 4); console.log(f.crossEntropyForward(z, new Int32Array([2])).loss.toFixed(6), f.info().nativeBinary)';
    const cjs = spawnSync(process.execPath, ['-e', `const f = require('fusedce'); ${call}`], { cwd: project, env: bare, encoding: 'utf8' });
    expect(cjs.stderr).toBe('');
    expect(cjs.stdout.trim()).toBe(`${Math.log(4).toFixed(6)} ${path.join(project, 'node_modules', 'fusedce', 'prebuilds', 'linux-x64', 'fusedce.node')}`);
    const esm = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as f from 'fusedce'; ${call}`], { cwd: project, env: bare, encoding: 'utf8' });
    expect(esm.stdout.split(' ')[0]).toBe(Math.log(4).toFixed(6));
  });

  it('npx fusedce info and gradcheck work from the project', () => {
    const fusedce = path.join(project, 'node_modules', '.bin', 'fusedce');
    const info = spawnSync(process.execPath, [fusedce, 'info'], { cwd: project, env: bare, encoding: 'utf8' });
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/^fusedce \d+\.\d+\.\d+ /);
    expect(info.stdout).toMatch(/native addon: .*prebuilds\/linux-x64\/fusedce\.node/);
    expect(info.stdout).toMatch(/cuda: not available: the CUDA variant is not built/);
    expect(info.stdout).toContain(`cuda variant: not built (npx fusedce build-cuda puts it in ${path.join(tmp, 'cache', 'fusedce')}`);
    const gc = spawnSync(process.execPath, [fusedce, 'gradcheck', '--op', 'ce', '--dtype', 'f32', '--vocab', '50'], { cwd: project, env: bare, encoding: 'utf8' });
    expect(gc.status, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/\| crossEntropy \| f32 .*\| ok \|/);
  });

  it('with install scripts skipped (--ignore-scripts, or npm\'s allowScripts not approving them) the prebuild still loads', () => {
    const other = path.join(tmp, 'project-ignore-scripts');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'package.json'), JSON.stringify({ name: 'consumer2', version: '1.0.0', private: true }));
    const r = npm(['install', tarball, '--ignore-scripts'], other, bare);
    expect(r.status, r.stderr).toBe(0);
    const call = spawnSync(process.execPath, ['-e', "const f = require('fusedce'); console.log(f.crossEntropyForward(f.logits(new Float32Array(4), 1, 4), new Int32Array([0])).loss.toFixed(6))"],
      { cwd: other, env: bare, encoding: 'utf8' });
    expect(call.stdout.trim()).toBe(Math.log(4).toFixed(6));
  });

  it('the training example ships in the package and runs from the project', () => {
    const r = spawnSync(process.execPath, [path.join(project, 'node_modules', 'fusedce', 'examples', 'train.mjs'), '--steps', '20', '--svg', path.join(tmp, 'loss.svg')],
      { cwd: project, env: bare, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/held-out after : loss [\d.]+ nats/);
  });

  it('fusedce/tfjs resolves, and without TensorFlow.js says what to install', () => {
    const r = spawnSync(process.execPath, ['-e', "const t = require('fusedce/tfjs'); try { t.sparseSoftmaxCrossEntropy(null, null) } catch (e) { console.log(e.message) }"],
      { cwd: project, env: bare, encoding: 'utf8' });
    expect(r.stdout).toMatch(/^sparseSoftmaxCrossEntropy: cannot load TensorFlow\.js[^]*npm install @tensorflow\/tfjs/);
  });
});

// `npx fusedce build-cuda` from the installed package: no cmake-js there (a devDependency), so
// the CMake fallback with the running Node's headers; the variant goes outside node_modules and
// the loader finds it. Needs nvcc and cmake (CI has both; the full PATH here).
const hasCudaToolchain = spawnSync('nvcc', ['--version']).status === 0 && spawnSync('cmake', ['--version']).status === 0;
describe.runIf(onLinuxX64 && fs.existsSync(npmCli) && hasCudaToolchain)('npx fusedce build-cuda from an installed package', () => {
  it('builds the CUDA variant into the user cache, where the package then finds it', () => {
    const project = fs.readdirSync(tmp).includes('project') ? path.join(tmp, 'project') : '';
    expect(project).not.toBe('');
    const cache = path.join(tmp, 'cache-cuda');
    const env = { ...process.env, XDG_CACHE_HOME: cache } as Record<string, string>;
    for (const k of Object.keys(env)) if (k.startsWith('FUSEDCE_')) delete env[k];
    const fusedce = path.join(project, 'node_modules', '.bin', 'fusedce');
    const r = spawnSync(process.execPath, [fusedce, 'build-cuda'], { cwd: project, env, encoding: 'utf8' });
    expect(r.status, r.stdout.slice(-2000) + r.stderr.slice(-2000)).toBe(0);
    const dir = fs.readdirSync(path.join(cache, 'fusedce'));
    expect(dir).toEqual([expect.stringMatching(/^\d+\.\d+\.\d+-napi8-linux-x64$/)]);
    const built = path.join(cache, 'fusedce', dir[0]!, 'fusedce_cuda.node');
    expect(r.stdout).toContain(`fusedce: CUDA variant built: ${built} (outside node_modules`);
    const info = spawnSync(process.execPath, [fusedce, 'info', '--json'], { cwd: project, env, encoding: 'utf8' });
    expect(JSON.parse(info.stdout).cuda.binary).toBe(built);
  }, 900_000);
});
