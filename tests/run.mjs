// Runs the Node suites one file at a time: `node run.mjs [integration|e2e|FILE...]`.
// Node 20's --test does not expand globs, so the file list is built here.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const suites = ['integration', 'e2e'];

function listSuite(name) {
  const dir = join(here, name);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.test.mjs'))
    .sort()
    .map((f) => join(dir, f));
}

const args = process.argv.slice(2);
const picked = args.length === 0 ? suites : args;
const files = picked.flatMap((a) => (suites.includes(a) ? listSuite(a) : [resolve(a)]));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}

const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
  cwd: here,
});
process.exit(r.status ?? 1);
