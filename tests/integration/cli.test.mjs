// Command line: --version, --help, --check-config, and the no-master-key loopback rule.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Gateway, buildDir, freePort, toYaml } from '../lib/harness.mjs';

const bin = join(buildDir, 'switchboard');
let dir;

before(() => {
  assert.ok(existsSync(bin), `${bin} not built`);
  dir = mkdtempSync(join(tmpdir(), 'sb-cli-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function run(args, timeout = 15000) {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout });
  assert.ok(!/AddressSanitizer|LeakSanitizer|runtime error:/.test(r.stderr), r.stderr);
  return r;
}

function writeConfig(name, text) {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const valid = {
  model_list: [{ model_name: 'demo', litellm_params: { model: 'openai/gpt-fake', api_base: 'http://127.0.0.1:9/v1', api_key: 'k' } }],
  general_settings: { master_key: 'sk-m' },
};

test('--version prints the version and exits 0', () => {
  const r = run(['--version']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\d+\.\d+\.\d+/);
});

test('--help prints usage and exits 0', () => {
  const r = run(['--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /--config/);
  assert.match(r.stdout, /--check-config/);
});

test('--check-config: valid file exits 0', () => {
  const r = run(['--check-config', writeConfig('valid.yaml', toYaml(valid))]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('--check-config: a wrongly typed value exits 1 with file:line', () => {
  const text = toYaml({ ...valid, server: { port: 'not-a-number' } });
  const p = writeConfig('bad.yaml', text);
  const line = text.split('\n').findIndex((l) => l.includes('not-a-number')) + 1;
  const r = run(['--check-config', p]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.ok((r.stdout + r.stderr).includes(`${p}:${line}`), `expected ${p}:${line} in:\n${r.stdout}${r.stderr}`);
});

test('--check-config: broken YAML and a missing file exit 1', () => {
  const r = run(['--check-config', writeConfig('broken.yaml', 'model_list:\n  - model_name: [unclosed\n')]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  const m = run(['--check-config', join(dir, 'does-not-exist.yaml')]);
  assert.equal(m.status, 1);
});

test('--check-config never prints secret values', () => {
  const text = toYaml({ ...valid, general_settings: { master_key: 'sk-secret-master-4411' }, server: { port: 'x' } });
  const r = run(['--check-config', writeConfig('secret.yaml', text)]);
  assert.equal(r.status, 1);
  assert.ok(!(r.stdout + r.stderr).includes('sk-secret-master-4411'));
});

test('without master_key: refuses to start on a non-loopback address', async () => {
  const port = await freePort();
  const p = writeConfig(
    'open.yaml',
    toYaml({ model_list: valid.model_list, server: { host: '0.0.0.0', port } }),
  );
  const r = run(['--config', p], 10000);
  assert.notEqual(r.status, 0, 'must not start');
  assert.equal(r.signal, null, 'exited by itself (did not keep running)');
});

test('without master_key on loopback: serves without auth', async () => {
  const gw = await Gateway.start({ model_list: valid.model_list, general_settings: { master_key: null } });
  try {
    const res = await gw.call('/v1/models', { key: null });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json.data.map((m) => m.id), ['demo']);
  } finally {
    await gw.stop();
  }
});
