#!/usr/bin/env node
// Builds the CPU addon from source with node-gyp (build/Release/fusedce.node).
//
// `--if-missing` (the package's install step) follows node-gyp-build's rule: when a prebuild
// (prebuilds/<platform>-<arch>/) or an earlier build already loads, nothing is built; otherwise,
// or with --build-from-source / npm_config_build_from_source=true, it builds from source.
//
// Offline-safe: when the running Node ships its own headers (<prefix>/include/node/node_api.h,
// true for official tarballs, nvm and distro packages), they are passed as --nodedir, so the
// build never tries to download headers. An explicit npm_config_nodedir wins.
// FUSEDCE_VERBOSE_BUILD=1 shows node-gyp's full log.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] }));
  } catch {}
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  candidates.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((c) => fs.existsSync(c));
}

function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

function alreadyLoads() {
  if (process.env.npm_config_build_from_source === 'true' || process.argv.includes('--build-from-source')) return false;
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

module.exports = { findNodeGyp, nodeDir };
if (require.main !== module) return;

if (process.argv.includes('--if-missing') && alreadyLoads()) process.exit(0);

const gyp = findNodeGyp();
if (!gyp) {
  console.error(
    'fusedce: cannot find node-gyp to build the native addon.\n' +
      'Possible solutions:\n' +
      '  - run the build through npm (npm install / npm rebuild fusedce), which ships node-gyp\n' +
      '  - or install it: npm install -g node-gyp\n',
  );
  process.exit(1);
}
const args = [gyp, 'rebuild', '--jobs', 'max'];
if (!process.env.FUSEDCE_VERBOSE_BUILD) args.push('--loglevel=warn');
const dir = nodeDir();
if (dir) args.push(`--nodedir=${dir}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    '\nfusedce: building the native addon failed.\n' +
      'Possible solutions:\n' +
      '  - install a C++17 compiler, make and python3 (Debian/Ubuntu: apt-get install g++ make python3)\n' +
      '  - without network access, point node-gyp at local Node headers: npm_config_nodedir=/usr (or your Node prefix)\n',
  );
  process.exit(r.status ?? 1);
}
