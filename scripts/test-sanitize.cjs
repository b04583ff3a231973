#!/usr/bin/env node
// npm run test:sanitize: the whole suite and the boundary fuzz against an AddressSanitizer +
// UndefinedBehaviorSanitizer build of the addon (and of the CUDA emulation).
//
// 1. Builds build-sanitize/build/Release/fusedce.node with node-gyp from a shadow folder
//    (build-sanitize/: binding.gyp and links to cpp/ and node_modules/), with
//    -fsanitize=address,undefined -fno-omit-frame-pointer -g -O1; and the CUDA emulation with the
//    same flags and its ucontext fiber switch (-DFCE_EMU_ASM_SWITCH=0: the assembly one trips
//    ASan's stack checks). Both are rebuilt only when a source is newer.
// 2. Runs vitest and test/fuzz/run.cjs with FUSEDCE_NATIVE_PATH / FUSEDCE_CUDA_EMU_BINARY at those
//    builds, libasan preloaded (node itself is not instrumented), detect_leaks=0 (V8 keeps memory
//    to the end by design; test/leak.test.ts checks ours), and any sanitizer report fatal
//    (halt_on_error, abort_on_error): a report fails the test that triggered it.
// The nvcc test (cuda_build.test.ts) is left out: nvcc crashes with libasan preloaded, and it
// checks compilation, not memory. FUSEDCE_SANITIZE=1 tells the two tests that limit the address
// space (ulimit -v) to stand aside: ASan reserves terabytes of shadow memory at start-up.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const shadow = path.join(root, 'build-sanitize');
const flags = '-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1';
const onlyBuild = process.argv.includes('--build-only');
// test files to run (vitest filters); with any, only those run, and not the fuzz
const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) {
    console.error(`fusedce: ${path.basename(cmd)} ${args.slice(0, 3).join(' ')} … failed (${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

const newest = (dir, exts) =>
  Math.max(0, ...fs.readdirSync(path.join(root, dir)).filter((f) => exts.some((e) => f.endsWith(e)))
    .map((f) => fs.statSync(path.join(root, dir, f)).mtimeMs));
const mtime = (p) => (fs.existsSync(p) ? fs.statSync(p).mtimeMs : -1);

// ---- 1. builds
fs.mkdirSync(shadow, { recursive: true });
for (const link of ['cpp', 'node_modules']) {
  const p = path.join(shadow, link);
  if (!fs.existsSync(p)) fs.symlinkSync(path.join('..', link), p);
}
fs.copyFileSync(path.join(root, 'binding.gyp'), path.join(shadow, 'binding.gyp'));
const addon = path.join(shadow, 'build', 'Release', 'fusedce.node');
if (mtime(addon) < Math.max(newest('cpp', ['.cpp', '.h']), mtime(path.join(root, 'binding.gyp')))) {
  const gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm')] });
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const nodedir = fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
  console.log('fusedce: building the sanitizer build of the addon (build-sanitize/) …');
  run(process.execPath, [gyp, 'rebuild', '--jobs', 'max', '--loglevel=warn', ...nodedir], {
    cwd: shadow,
    env: { ...process.env, CFLAGS: flags, CXXFLAGS: flags, LDFLAGS: '-fsanitize=address,undefined' },
  });
}
run(process.execPath, [path.join(root, 'scripts', 'build-cuda-emu.cjs')], { env: { ...process.env, FUSEDCE_SANITIZE: '1' } });
if (onlyBuild) process.exit(0);

// ---- 2. the suite and the fuzz under the sanitizers
const libasan = spawnSync(process.env.CC || 'gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
const env = {
  ...process.env,
  LD_PRELOAD: libasan,
  ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1',
  UBSAN_OPTIONS: 'halt_on_error=1:abort_on_error=1:print_stacktrace=1',
  FUSEDCE_NATIVE_PATH: addon,
  FUSEDCE_CUDA_EMU_BINARY: path.join(shadow, 'cuda-emu', 'fusedce_cuda.node'),
  FUSEDCE_TEST_EMULATION: '1',
  FUSEDCE_SANITIZE: '1',
};
const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
console.log('fusedce: the suite under AddressSanitizer + UBSan …');
run(process.execPath, [vitest, 'run', '--exclude', 'test/cuda_build.test.ts', '--exclude', 'test/install.test.ts', ...filters], { env });
if (filters.length) process.exit(0);
console.log('fusedce: the boundary fuzz under AddressSanitizer + UBSan …');
run(process.execPath, [path.join(root, 'test', 'fuzz', 'run.cjs'), '--public', '6000', '--raw', '4000'], { env });
console.log('fusedce: sanitizer run clean');
