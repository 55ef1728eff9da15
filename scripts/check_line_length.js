#!/usr/bin/env node
// Fails when a TypeScript line is longer than the style limit. Biome's formatter wraps code at the
// same width but leaves long comments and string literals alone; this catches those.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const COLUMNS_MAX = 100;
const ROOTS = ['src', 'test', 'bench'];

function* typescriptFiles(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* typescriptFiles(full);
    else if (entry.name.endsWith('.ts')) yield full;
  }
}

let violations = 0;
for (const root of ROOTS) {
  if (!fs.existsSync(root)) continue;
  for (const file of typescriptFiles(root)) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (line.length > COLUMNS_MAX) {
        violations++;
        console.error(`${file}:${i + 1}: ${line.length} columns (limit ${COLUMNS_MAX})`);
      }
    });
  }
}
if (violations > 0) {
  console.error(`${violations} lines over ${COLUMNS_MAX} columns`);
  process.exit(1);
}
