#!/usr/bin/env node
// `npm run prebuild` (run by `npm pack` / `npm publish` through prepack): builds the CPU addon
// with prebuildify into prebuilds/<platform>-<arch>/fusedce.node (Node-API, so one binary serves
// every Node ≥ 20; stripped), which goes inside the npm tarball. An install then loads it through
// node-gyp-build and compiles nothing: no compiler, make, python or cmake is needed.
// The CUDA variant is never prebuilt here: it stays opt-in (npx fusedce build-cuda).
// Offline-safe like scripts/build-native.cjs: the running Node's own headers as nodedir.
// build/ (the development builds) is left as it was.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { findNodeGyp, nodeDir } = require('./build-native.cjs');

const root = path.resolve(__dirname, '..');
const gyp = findNodeGyp();
if (!gyp) {
  console.error('fusedce prebuild: cannot find node-gyp (run it through npm: npm run prebuild)');
  process.exit(1);
}
const env = { ...process.env };
const dir = nodeDir();
if (dir) env.npm_config_nodedir = dir;
const bin = require.resolve('prebuildify/bin.js', { paths: [root] });
// prebuildify runs `node-gyp rebuild`, which deletes build/ first: the development builds there
// (build/Release, the CUDA emulation in build/cuda-emu) are moved aside and put back after.
const build = path.join(root, 'build');
const aside = path.join(root, `.build-aside-${process.pid}`);
const hadBuild = fs.existsSync(build);
if (hadBuild) fs.renameSync(build, aside);
let status = 1;
try {
  // node-gyp's bin is a node script with a shebang: prebuildify spawns it directly
  status = spawnSync(process.execPath, [bin, '--napi', '--strip', '--node-gyp', gyp], { cwd: root, stdio: 'inherit', env }).status ?? 1;
} finally {
  fs.rmSync(build, { recursive: true, force: true });
  if (hadBuild) fs.renameSync(aside, build);
}
process.exit(status);
