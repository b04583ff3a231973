#!/usr/bin/env node
// Builds the CUDA variant's N-API addon over the CPU emulation layer (cuda/emu/), for tests on
// machines without a GPU: build/cuda-emu/fusedce_cuda.node. The kernel source is the very same
// cuda/cross_entropy.cu, compiled as C++ by the host compiler ($CXX, default g++).
// Rebuilds only when a cuda/ source is newer than the output. Prints the output path.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
// FUSEDCE_SANITIZE=1: the AddressSanitizer + UBSan build of npm run test:sanitize, in its own folder
// (the emulation's assembly fiber switch trips ASan's stack checks, so it takes the ucontext one)
const sanitize = process.env.FUSEDCE_SANITIZE === '1';
const outDir = sanitize ? path.join(root, 'build-sanitize', 'cuda-emu') : path.join(root, 'build', 'cuda-emu');
const sanFlags = sanitize ? ['-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-g', '-O1', '-DFCE_EMU_ASM_SWITCH=0'] : [];
const out = path.join(outDir, 'fusedce_cuda.node');
const sources = ['cuda/addon.cpp', 'cuda/emu/emu.cpp', 'cuda/cross_entropy.cu'];
const deps = [...sources, 'cuda/cross_entropy.cuh', 'cuda/cross_entropy_options.cuh', 'cuda/soft_cross_entropy.cuh', 'cuda/binary_cross_entropy.cuh', 'cuda/compat.cuh', 'cuda/emu/emu.h', 'cuda/fusedce_cuda.h', 'cpp/glue.h'];

function nodeInclude() {
  const cands = [];
  if (process.env.npm_config_nodedir) cands.push(path.join(process.env.npm_config_nodedir, 'include', 'node'));
  cands.push(path.join(path.dirname(process.execPath), '..', 'include', 'node'));
  try {
    cands.push(path.dirname(require.resolve('node-api-headers/include/node_api.h', { paths: [root] })));
  } catch {}
  cands.push(path.join(os.homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'));
  return cands.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
}

const mtime = (p) => (fs.existsSync(p) ? fs.statSync(p).mtimeMs : -1);
const newest = Math.max(...deps.map((d) => mtime(path.join(root, d))));
if (mtime(out) >= newest && !process.argv.includes('--force')) {
  console.log(out);
  process.exit(0);
}
const inc = nodeInclude();
if (!inc) {
  console.error('fusedce: cannot find the Node-API headers (node_api.h) to build the CUDA emulation');
  process.exit(1);
}
fs.mkdirSync(outDir, { recursive: true });
const cxx = process.env.CXX || 'g++';
const addonApi = path.join(root, require('node-addon-api').include_dir);
const common = [...sanFlags, '-std=c++17', '-O2', '-fPIC', '-fvisibility=hidden', '-fno-math-errno', `-I${inc}`, `-I${addonApi}`,
  `-I${path.join(root, 'cuda')}`, `-I${path.join(root, 'cpp')}`, '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS', '-DNODE_ADDON_API_DISABLE_DEPRECATED'];
// Compile the three sources in parallel, then link.
const objs = sources.map((s) => path.join(outDir, path.basename(s) + '.o'));
const { spawn } = require('node:child_process');
const jobs = sources.map((s, i) => new Promise((resolve) => {
  const args = [...common, '-c', ...(s.endsWith('.cu') ? ['-x', 'c++'] : []), path.join(root, s), '-o', objs[i]];
  const p = spawn(cxx, args, { stdio: 'inherit' });
  p.on('close', resolve);
}));
Promise.all(jobs).then((codes) => {
  if (codes.some((c) => c !== 0)) process.exit(1);
  const link = spawnSync(cxx, ['-shared', '-o', out, ...objs, '-pthread', ...(sanitize ? ['-fsanitize=address,undefined'] : [])], { stdio: 'inherit' });
  if (link.status !== 0) process.exit(link.status ?? 1);
  console.log(out);
});
