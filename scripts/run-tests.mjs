#!/usr/bin/env node
// Runs the compiled tests (dist/test/<group>/**/*.test.js) with node's built-in runner.
// Usage: node scripts/run-tests.mjs [group ...]   (groups: unit contract integration; default all)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const groups = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'contract', 'integration'];
const files = [];
const walk = (dir) => {
  let entries;
  try { entries = readdirSync(dir); } catch { return; }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (e.endsWith('.test.js')) files.push(p);
  }
};
for (const g of groups) walk(join('dist', 'test', g));
if (files.length === 0) {
  console.error('no test files found (did the build run?)');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=2', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
