#!/usr/bin/env node
// Installs the benchmark's optional peers (TensorFlow.js cpu/wasm, onnxruntime-node) into
// bench/peers/node_modules, from bench/peers/package-lock.json. They are never dependencies of the
// library. onnxruntime-node's CPU binaries ship inside its npm package, so its install script's
// download (GPU binaries) is skipped. PyTorch is found separately: `python3 -c 'import torch'`
// (e.g. Debian's python3-torch) or FUSEDCE_BENCH_PYTHON.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const dir = path.resolve(__dirname, '..', 'bench', 'peers');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const r = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], {
  cwd: dir,
  stdio: 'inherit',
  env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
  shell: process.platform === 'win32',
});
process.exit(r.status ?? 1);
