#!/usr/bin/env node
// `npx fusedce build-cuda` (in a clone: `npm run build:cuda`): builds the CUDA variant
// (CMakeLists.txt) with cmake-js, or with CMake directly where cmake-js is not installed (an
// installed package), and puts fusedce_cuda.node where the loader finds it:
//   - in a clone: cuda/build/Release/fusedce_cuda.node;
//   - in an installed package (under node_modules, which `npm ci` deletes): the user cache,
//     ${XDG_CACHE_HOME:-~/.cache}/fusedce/<version>-napi<N>-<platform>-<arch>/fusedce_cuda.node,
//     which survives reinstalls (ts/cuda_binding.ts looks there too; keep the two rules equal);
//   - FUSEDCE_CUDA_DIR=/some/dir (or --out DIR) puts it in that folder instead, for both the build
//     and the loader.
//
// CUDA is optional: with no nvcc (CUDACXX, PATH, CUDA_PATH/bin or /usr/local/cuda/bin) it prints
// that the CUDA variant is skipped and exits 0. The CPU addon never needs any of this.
// Offline-safe: cmake-js takes the Node-API headers from the node-api-headers package
// (package.json "binary": { "napi_versions" }); plain CMake uses node-api-headers when installed,
// else the running Node's own headers (<prefix>/include/node). Nothing is downloaded.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const outArg = process.argv.indexOf('--out');
const installed = root.split(path.sep).includes('node_modules');
const cacheBase = process.env.XDG_CACHE_HOME || path.join(require('node:os').homedir(), '.cache');
// the folder fusedce_cuda.node goes to, and the build tree beside it
const dest = outArg > 0 && process.argv[outArg + 1] ? path.resolve(process.argv[outArg + 1])
  : process.env.FUSEDCE_CUDA_DIR ? path.resolve(process.env.FUSEDCE_CUDA_DIR)
  : installed ? path.join(cacheBase, 'fusedce', `${pkg.version}-napi${pkg.binary.napi_versions[0]}-${process.platform}-${process.arch}`)
  : path.join(root, 'cuda', 'build', 'Release');
const out = installed || dest !== path.join(root, 'cuda', 'build', 'Release') ? path.join(dest, 'build') : path.join(root, 'cuda', 'build');

// CUDACXX, when set, is the only candidate (CUDACXX=/nonexistent forces "skipped").
function findNvcc() {
  const c = [];
  if (process.env.CUDACXX) return fs.existsSync(process.env.CUDACXX) ? process.env.CUDACXX : undefined;
  for (const d of (process.env.PATH || '').split(path.delimiter)) if (d) c.push(path.join(d, 'nvcc'));
  if (process.env.CUDA_PATH) c.push(path.join(process.env.CUDA_PATH, 'bin', 'nvcc'));
  c.push('/usr/local/cuda/bin/nvcc');
  return c.find((p) => {
    try {
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

const nvcc = findNvcc();
if (!nvcc) {
  console.log('fusedce: CUDA variant skipped: nvcc (the CUDA toolkit) was not found. The CPU build is unaffected.');
  process.exit(0);
}
const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
if (cmake.status !== 0) {
  console.error('fusedce: building the CUDA variant needs CMake ≥ 3.18 (Debian/Ubuntu: apt-get install cmake)');
  process.exit(1);
}
const env = { ...process.env, CUDACXX: nvcc };
let cmakeJs;
try {
  cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
} catch {}
let r;
if (cmakeJs && dest === path.join(root, 'cuda', 'build', 'Release')) {
  r = spawnSync(process.execPath, [cmakeJs, 'compile', '--directory', root, '--out', out, '--config', 'Release',
    '--parallel', String(Math.max(1, require('node:os').availableParallelism()))], { stdio: 'inherit', env, cwd: root });
} else {
  let inc;
  try {
    inc = path.dirname(require.resolve('node-api-headers/include/node_api.h', { paths: [root] }));
  } catch {
    inc = path.join(path.dirname(process.execPath), '..', 'include', 'node');  // the running Node's own headers
  }
  const cfg = spawnSync('cmake', ['-S', root, '-B', out, '-DCMAKE_BUILD_TYPE=Release', `-DNODE_API_INCLUDE_DIR=${inc}`,
    `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${dest}`], { stdio: 'inherit', env });
  r = cfg.status !== 0 ? cfg : spawnSync('cmake', ['--build', out, '--parallel'], { stdio: 'inherit', env });
}
if (r.status !== 0) {
  console.error('\nfusedce: building the CUDA variant failed. The CPU addon is unaffected; run with FUSEDCE_DEVICE=cpu, ' +
    'or fix the toolchain (nvcc ≥ 12 with a host compiler it supports, CMake ≥ 3.18) and run npx fusedce build-cuda again.');
  process.exit(r.status ?? 1);
}
console.log(`fusedce: CUDA variant built: ${path.join(dest, 'fusedce_cuda.node')}` +
  (installed ? ' (outside node_modules: npm ci keeps it; fusedce finds it there)' : ''));
