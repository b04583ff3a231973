#!/usr/bin/env node
// Builds what is missing or stale before tests and the demo: the native addon when a cpp/ file
// or binding.gyp is newer than it (or it does not load), the TypeScript when a ts/ file is newer
// than dist/.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const newest = (...paths) =>
  Math.max(
    0,
    ...paths.flatMap((p) => {
      const abs = path.join(root, p);
      if (!fs.existsSync(abs)) return [];
      const st = fs.statSync(abs);
      if (!st.isDirectory()) return [st.mtimeMs];
      return fs.readdirSync(abs).map((f) => fs.statSync(path.join(abs, f)).mtimeMs);
    }),
  );
const mtime = (p) => (fs.existsSync(path.join(root, p)) ? fs.statSync(path.join(root, p)).mtimeMs : -1);
const run = (script) => {
  const r = spawnSync(process.execPath, [path.join(__dirname, script)], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

const addon = 'build/Release/fusedce.node';
const hasPrebuild = fs.existsSync(path.join(root, 'prebuilds'));
if (mtime(addon) < newest('cpp', 'binding.gyp') && !(hasPrebuild && mtime(addon) < 0)) run('build-native.cjs');
if (mtime('dist/esm/index.mjs') < newest('ts', 'tsconfig.json', 'scripts/build-ts.cjs')) run('build-ts.cjs');
