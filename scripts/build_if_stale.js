#!/usr/bin/env node
'use strict';
// `npm start` runs this first: rebuild only when a source file is newer than the build output
// (an mtime comparison, milliseconds), so an up-to-date checkout starts at once.
const { execSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const output = path.join(root, 'dist', 'src', 'cluster', 'local_cluster.js');

function newestMtimeMs(entry) {
  const stat = fs.statSync(entry);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const name of fs.readdirSync(entry)) {
    newest = Math.max(newest, newestMtimeMs(path.join(entry, name)));
  }
  return newest;
}

function builtMtimeMs() {
  try {
    return fs.statSync(output).mtimeMs;
  } catch {
    return 0;
  }
}

const inputs = ['src', 'tsconfig.json', 'package.json'].map((name) => path.join(root, name));
const source_ms = Math.max(...inputs.map(newestMtimeMs));
if (source_ms > builtMtimeMs()) {
  process.stderr.write('sources changed since the last build: npm run build\n');
  execSync('npm run build', { cwd: root, stdio: 'inherit' });
}
