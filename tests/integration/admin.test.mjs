// The admin API (LiteLLM-compatible): keys, teams, users, customers, spend and model info,
// against a real gateway with a SQLite database and the fake provider.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MASTER_KEY, RawConn, assertEnvelope, fakeModel, rawRequest, sleep, startStack } from '../lib/harness.mjs';

const INJECTIONS = [
  "'; DROP TABLE sb_keys; --",
  '" OR 1=1 --',
  "Robert'); DELETE FROM sb_spend; --",
  "x' UNION SELECT token FROM keys --",
  '%27%20OR%20%271%27%3D%271',
  '\\"; SELECT 1; --',
];

const ADMIN_ROUTES = [
  ['POST', '/key/generate', {}],
  ['POST', '/key/update', { key: 'sk-nope' }],
  ['POST', '/key/delete', { keys: ['sk-nope'] }],
  ['GET', '/key/info?key=sk-nope'],
  ['GET', '/key/list'],
  ['POST', '/key/regenerate', { key: 'sk-nope' }],
  ['POST', '/key/sk-nope/regenerate', {}],
  ['POST', '/key/block', { key: 'sk-nope' }],
  ['POST', '/key/unblock', { key: 'sk-nope' }],
  ['POST', '/team/new', {}],
  ['POST', '/team/update', { team_id: 'x' }],
  ['POST', '/team/delete', { team_ids: ['x'] }],
  ['GET', '/team/info?team_id=x'],
  ['GET', '/team/list'],
  ['POST', '/team/member_add', { team_id: 'x', member: { user_id: 'u' } }],
  ['POST', '/team/member_delete', { team_id: 'x', user_id: 'u' }],
  ['POST', '/user/new', {}],
  ['POST', '/user/update', { user_id: 'x' }],
  ['POST', '/user/delete', { user_ids: ['x'] }],
  ['GET', '/user/info?user_id=x'],
  ['GET', '/user/list'],
  ['POST', '/customer/new', { user_id: 'c' }],
  ['GET', '/customer/info?end_user_id=c'],
  ['POST', '/customer/delete', { user_ids: ['c'] }],
  ['GET', '/spend/logs'],
  ['GET', '/global/spend/keys'],
  ['GET', '/global/spend/models'],
  ['GET', '/global/spend/teams'],
  ['GET', '/model/info'],
];

let stack;
let dbDir;
const plaintexts = new Set(); // every key shown by the API: must appear nowhere else

const chatBody = (model = 'priced', extra = {}) => ({
  model,
  messages: [{ role: 'user', content: 'hello' }],
  ...extra,
});

async function admin(path, body, opts = {}) {
  return stack.gw.call(path, { body, method: body === undefined ? 'GET' : 'POST', ...opts });
}

async function generate(body = {}, key = MASTER_KEY) {
  const res = await admin('/key/generate', body, { key });
  if (res.status === 200) plaintexts.add(res.json.key);
  return res;
}

async function chat(key, model = 'priced', extra = {}) {
  return stack.gw.call('/v1/chat/completions', { key, body: chatBody(model, extra) });
}

async function waitFor(pred, what, timeoutMs = 8000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function filesUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

function assertNoPlaintext(where, text) {
  for (const k of plaintexts) assert.ok(!text.includes(k), `a plaintext key appears in ${where}`);
}

before(async () => {
  dbDir = mkdtempSync(join(tmpdir(), 'sb-admin-'));
  stack = await startStack({
    general_settings: { master_key: MASTER_KEY, database_url: `sqlite:///${dbDir}/switchboard.db` },
    models: (fake) => [
      fakeModel(fake, 'priced', '', { input_cost_per_token: 0.001, output_cost_per_token: 0.002 }),
      fakeModel(fake, 'other', '', { input_cost_per_token: 0.001, output_cost_per_token: 0.002 }),
      fakeModel(fake, 'unpriced'),
    ],
  });
});

after(async () => {
  let stopped;
  try {
    // After shutdown (WAL checkpointed) the database still holds no plaintext key.
    if (stack) stopped = await stack.gw.stop();
  } finally {
    await stack?.fake.stop();
  }
  try {
    if (stopped) {
      for (const f of filesUnder(dbDir)) assertNoPlaintext(f, readFileSync(f).toString('latin1'));
      assertNoPlaintext('stdout', stopped.stdout);
      assertNoPlaintext('stderr', stopped.stderr);
    }
  } finally {
    rmSync(dbDir, { recursive: true, force: true });
  }
});

describe('keys', () => {
  test('generate: plaintext once, hash as token, LiteLLM fields', async () => {
    const res = await generate({
      key_alias: 'app-one',
      models: ['priced'],
      max_budget: 5,
      rpm_limit: 100,
      metadata: { owner: 'qa' },
      duration: '30d',
      budget_duration: '1d',
    });
    assert.equal(res.status, 200, res.text);
    const k = res.json;
    assert.match(k.key, /^sk-[A-Za-z0-9_-]{43}$/);
    assert.match(k.token, /^[0-9a-f]{64}$/);
    assert.notEqual(k.token, k.key);
    assert.equal(k.key_name, `sk-...${k.key.slice(-4)}`);
    assert.equal(k.key_alias, 'app-one');
    assert.deepEqual(k.models, ['priced']);
    assert.equal(k.max_budget, 5);
    assert.equal(k.rpm_limit, 100);
    assert.deepEqual(k.metadata, { owner: 'qa' });
    assert.equal(k.created_by, 'master');
    assert.match(k.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const exp = Date.parse(k.expires);
    assert.ok(Math.abs(exp - (Date.now() + 30 * 86400e3)) < 120e3, `expires ${k.expires}`);
    assert.equal(typeof k.budget_reset_at, 'number');
    assert.equal(k.blocked, false);

    const ok = await chat(k.key);
    assert.equal(ok.status, 200, ok.text);
    const denied = await chat(k.key, 'other');
    assert.equal(denied.status, 403, denied.text);
  });

  test('generate: every field is type-checked with a 400 naming it', async () => {
    const bad = {
      key_alias: 5,
      duration: 'forever',
      models: 'priced',
      max_budget: 'lots',
      soft_budget: -1,
      budget_duration: 12,
      rpm_limit: 1.5,
      tpm_limit: -3,
      max_parallel_requests: 'x',
      model_max_budget: { priced: 'x' },
      model_rpm_limit: { priced: -1 },
      model_tpm_limit: [],
      metadata: 'x',
      team_id: 7,
      user_id: '',
      blocked: 'no',
      aliases: [],
      permissions: 1,
      user_role: 'root',
      key: 'not-sk-prefixed',
    };
    for (const [field, value] of Object.entries(bad)) {
      const res = await generate({ [field]: value });
      assertEnvelope(res, 400, 'invalid_request_error', 'invalid_field', field);
      assert.ok(res.json.error.message.includes(field), res.text);
    }
    const notObject = await stack.gw.call('/key/generate', { body: '[1,2]' });
    assertEnvelope(notObject, 400, 'invalid_request_error', 'invalid_json');
    const broken = await stack.gw.call('/key/generate', { body: '{"key_alias":' });
    assertEnvelope(broken, 400, 'invalid_request_error', 'invalid_json');
  });

  test('generate: custom key value, unknown team 404, duplicate alias 400', async () => {
    const custom = `sk-custom-${Date.now()}`;
    const res = await generate({ key: custom });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.key, custom);
    assert.equal((await chat(custom)).status, 200);
    const again = await generate({ key: custom });
    assertEnvelope(again, 400, 'invalid_request_error', 'invalid_field', 'key');
    assert.ok(!again.text.includes(custom), 'the error does not echo the key');

    assertEnvelope(await generate({ team_id: 'no-such-team' }), 404, 'invalid_request_error', 'not_found');
    assert.equal((await generate({ key_alias: 'dup-alias' })).status, 200);
    assertEnvelope(await generate({ key_alias: 'dup-alias' }), 400, 'invalid_request_error', 'invalid_field', 'key_alias');
  });

  test('info, list, update, block, unblock', async () => {
    const g = await generate({ key_alias: 'lifecycle', models: ['priced'] });
    const { key, token } = g.json;

    const byKey = await admin(`/key/info?key=${encodeURIComponent(key)}`);
    assert.equal(byKey.status, 200, byKey.text);
    assert.equal(byKey.json.key, token, 'info answers with the hash, never the plaintext');
    assert.equal(byKey.json.info.key_alias, 'lifecycle');
    assert.ok(!byKey.text.includes(key));
    const byHash = await admin(`/key/info?key=${token}`);
    assert.equal(byHash.json.info.token, token);
    assertEnvelope(await admin('/key/info?key=sk-unknown'), 404, 'invalid_request_error', 'not_found');
    assertEnvelope(await admin('/key/info'), 400, 'invalid_request_error', 'invalid_field');

    const list = await admin('/key/list?key_alias=lifecycle');
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.json.keys, [token]);
    assert.equal(list.json.total_count, 1);
    assert.equal(list.json.current_page, 1);
    const full = await admin('/key/list?key_alias=lifecycle&return_full_object=true');
    assert.equal(full.json.keys[0].key_alias, 'lifecycle');
    const paged = await admin('/key/list?page=1&size=2');
    assert.ok(paged.json.keys.length <= 2);
    assert.ok(paged.json.total_count >= 3);
    assertEnvelope(await admin('/key/list?size=0'), 400, 'invalid_request_error', 'invalid_field');
    assertEnvelope(await admin('/key/list?page=abc'), 400, 'invalid_request_error', 'invalid_field');

    const up = await admin('/key/update', { key, models: ['priced', 'other'], max_budget: 3, key_alias: 'lifecycle-2' });
    assert.equal(up.status, 200, up.text);
    assert.deepEqual(up.json.models, ['priced', 'other']);
    assert.equal(up.json.max_budget, 3);
    assert.equal((await chat(key, 'other')).status, 200, 'the update is live on the next request');
    assertEnvelope(await admin('/key/update', { key, rpm_limit: 'x' }), 400, 'invalid_request_error', 'invalid_field', 'rpm_limit');
    assertEnvelope(await admin('/key/update', { key: 'sk-unknown', rpm_limit: 1 }), 404, 'invalid_request_error', 'not_found');
    assertEnvelope(await admin('/key/update', { rpm_limit: 1 }), 400, 'invalid_request_error', 'invalid_field', 'key');

    const blocked = await admin('/key/block', { key });
    assert.equal(blocked.status, 200, blocked.text);
    assert.equal(blocked.json.blocked, true);
    const refused = await chat(key);
    assert.equal(refused.status, 401, refused.text);
    const unblocked = await admin('/key/unblock', { key: token });
    assert.equal(unblocked.json.blocked, false);
    assert.equal((await chat(key)).status, 200);
    assertEnvelope(await admin('/key/block', { key: 'sk-unknown' }), 404, 'invalid_request_error', 'not_found');
    assertEnvelope(await admin('/key/block', {}), 400, 'invalid_request_error', 'invalid_field', 'key');
  });

  test('delete by key, by hash, by alias; unknown keys delete nothing', async () => {
    const a = (await generate({ key_alias: 'del-a' })).json;
    const b = (await generate({ key_alias: 'del-b' })).json;
    const c = (await generate({ key_alias: 'del-c' })).json;
    for (const k of [a, b, c]) assert.equal((await chat(k.key)).status, 200);

    assertEnvelope(await admin('/key/delete', { keys: [a.key, 'sk-unknown'] }), 404, 'invalid_request_error', 'not_found');
    assert.equal((await chat(a.key)).status, 200, 'a failed delete deletes nothing');

    const d1 = await admin('/key/delete', { keys: [a.key, b.token] });
    assert.equal(d1.status, 200, d1.text);
    assert.deepEqual(d1.json.deleted_keys.sort(), [a.token, b.token].sort());
    assert.ok(!d1.text.includes(a.key));
    const d2 = await admin('/key/delete', { key_aliases: ['del-c'] });
    assert.deepEqual(d2.json.deleted_keys, [c.token]);
    for (const k of [a, b, c]) {
      const res = await chat(k.key);
      assert.equal(res.status, 401, res.text);
    }
    assertEnvelope(await admin(`/key/info?key=${a.token}`), 404, 'invalid_request_error', 'not_found');
    assertEnvelope(await admin('/key/delete', {}), 400, 'invalid_request_error', 'invalid_field');
    assertEnvelope(await admin('/key/delete', { keys: [] }), 400, 'invalid_request_error', 'invalid_field', 'keys');
  });

  test('regenerate: new key, same settings, the old one stops working', async () => {
    const old = (await generate({ key_alias: 'regen', models: ['priced'], rpm_limit: 50 })).json;
    assert.equal((await chat(old.key)).status, 200);
    const res = await admin('/key/regenerate', { key: old.key });
    assert.equal(res.status, 200, res.text);
    plaintexts.add(res.json.key);
    assert.notEqual(res.json.key, old.key);
    assert.notEqual(res.json.token, old.token);
    assert.equal(res.json.key_alias, 'regen');
    assert.equal(res.json.rpm_limit, 50);
    assert.deepEqual(res.json.models, ['priced']);
    assert.equal((await chat(old.key)).status, 401, 'the old key is dead');
    assert.equal((await chat(res.json.key)).status, 200);

    const viaPath = await admin(`/key/${res.json.token}/regenerate`, {});
    assert.equal(viaPath.status, 200, viaPath.text);
    plaintexts.add(viaPath.json.key);
    assert.equal((await chat(res.json.key)).status, 401);
    assert.equal((await chat(viaPath.json.key)).status, 200);
    assertEnvelope(await admin('/key/regenerate', { key: old.key }), 404, 'invalid_request_error', 'not_found');

    // The plaintext in the path works too, and the access log records it masked.
    const plainPath = await admin(`/key/${viaPath.json.key}/regenerate`, {});
    assert.equal(plainPath.status, 200, plainPath.text);
    plaintexts.add(plainPath.json.key);
    assert.equal((await chat(viaPath.json.key)).status, 401);
    const tail = viaPath.json.key.slice(-4);
    const line = await stack.gw.waitForAccess((l) => typeof l.path === 'string' && l.path.endsWith(`${tail}/regenerate`));
    assert.match(line.path, /^\/key\/sk-\*+[A-Za-z0-9_-]{4}\/regenerate$/);
  });

  test('regenerate keeps the spend: key info, model spend, budget and its period carry over', async () => {
    const old = (await generate({ key_alias: 'regen-spend', models: ['priced'], max_budget: 1, budget_duration: '30d' })).json;
    for (let i = 0; i < 2; i++) assert.equal((await chat(old.key)).status, 200);
    // Both rows committed: the key's total is their sum.
    const logs = await waitFor(async () => {
      const r = await admin(`/spend/logs?api_key=${old.token}`);
      return Array.isArray(r.json) && r.json.length === 2 ? r : null;
    }, 'two spend rows');
    const sum = logs.json.reduce((a, row) => a + Math.round(row.spend * 1e9), 0);
    const before = await waitFor(async () => {
      const r = await admin(`/key/info?key=${old.token}`);
      return Math.round(r.json?.info?.spend * 1e9) === sum ? r.json.info : null;
    }, 'the key total');
    assert.ok(before.spend > 0);
    assert.equal(Math.round(before.model_spend.priced * 1e9), sum);
    assert.equal(typeof before.budget_reset_at, 'number');
    // The budget is used up exactly: the old key is refused.
    assert.equal((await admin('/key/update', { key: old.token, max_budget: before.spend })).status, 200);
    const refusedOld = await chat(old.key);
    assert.equal(refusedOld.status, 400, refusedOld.text);
    assert.equal(refusedOld.json.error.code, 'budget_exceeded');

    const res = await admin('/key/regenerate', { key: old.key });
    assert.equal(res.status, 200, res.text);
    plaintexts.add(res.json.key);
    assert.equal(res.json.spend, before.spend, 'the answer shows the carried spend');
    assert.deepEqual(res.json.model_spend, before.model_spend);
    const info = (await admin(`/key/info?key=${res.json.token}`)).json.info;
    assert.equal(info.spend, before.spend);
    assert.deepEqual(info.model_spend, before.model_spend);
    assert.equal(info.max_budget, before.spend);
    assert.equal(info.budget_reset_at, before.budget_reset_at, 'the budget period is kept');
    assertEnvelope(await admin(`/key/info?key=${old.token}`), 404, 'invalid_request_error', 'not_found');
    const spendKeys = await admin('/global/spend/keys?limit=1000');
    assert.ok(spendKeys.json.some((e) => e.api_key === old.token), 'the ledger keeps the old rows');

    // The old value is dead; the new one is still out of budget: a regenerate resets nothing.
    assert.equal((await chat(old.key)).status, 401);
    const refused = await chat(res.json.key);
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.json.error.code, 'budget_exceeded');

    // More budget: the new key's spend goes on from the carried total.
    assert.equal((await admin('/key/update', { key: res.json.token, max_budget: 1 })).status, 200);
    assert.equal((await chat(res.json.key)).status, 200);
    const grown = await waitFor(async () => {
      const r = (await admin(`/key/info?key=${res.json.token}`)).json.info;
      return r.spend > before.spend ? r : null;
    }, 'spend on the new key');
    const newRows = (await admin(`/spend/logs?api_key=${res.json.token}`)).json;
    assert.equal(newRows.length, 1);
    assert.equal(Math.round(grown.spend * 1e9), sum + Math.round(newRows[0].spend * 1e9));
    assert.equal(Math.round(grown.model_spend.priced * 1e9), Math.round(grown.spend * 1e9));
  });

  test('expiry: a key with a short duration stops working', async () => {
    const k = (await generate({ duration: '1s' })).json;
    await sleep(2100);
    const res = await chat(k.key);
    assert.equal(res.status, 401, res.text);
  });

  test('key info shows spend after requests; spend logs and global totals', async () => {
    const k = (await generate({ key_alias: 'spender', models: ['priced'] })).json;
    for (let i = 0; i < 3; i++) {
      const res = await chat(k.key, 'priced', { user: 'end-user-1' });
      assert.equal(res.status, 200, res.text);
    }
    const info = await waitFor(async () => {
      const r = await admin(`/key/info?key=${k.token}`);
      return r.json?.info?.spend > 0 ? r : null;
    }, 'spend on the key');
    assert.ok(info.json.info.spend > 0);

    const logs = await waitFor(async () => {
      const r = await admin(`/spend/logs?api_key=${encodeURIComponent(k.key)}`);
      return Array.isArray(r.json) && r.json.length === 3 ? r : null;
    }, 'three spend rows');
    for (const row of logs.json) {
      assert.equal(row.api_key, k.token);
      assert.equal(row.model, 'priced');
      assert.ok(row.spend > 0);
    }
    assert.ok(!logs.text.includes(k.key));
    const one = await admin(`/spend/logs?request_id=${encodeURIComponent(logs.json[0].request_id)}`);
    assert.equal(one.json.length, 1);
    const past = await admin(`/spend/logs?api_key=${k.token}&start_date=2000-01-01&end_date=2000-01-02`);
    assert.deepEqual(past.json, []);
    assertEnvelope(await admin('/spend/logs?start_date=yesterday'), 400, 'invalid_request_error', 'invalid_field');

    const byKey = await admin('/global/spend/keys?limit=100');
    assert.ok(byKey.json.some((e) => e.api_key === k.token && e.total_spend > 0), byKey.text);
    const byModel = await admin('/global/spend/models');
    assert.ok(byModel.json.some((e) => e.model === 'priced'), byModel.text);
    const limited = await admin('/global/spend/models?limit=1');
    assert.equal(limited.json.length, 1);
    assert.equal((await admin('/global/spend/teams')).status, 200);
    const cust = await waitFor(async () => {
      const r = await admin('/customer/info?end_user_id=end-user-1');
      return r.status === 200 && r.json.spend > 0 ? r : null;
    }, 'the end user billed');
    assert.equal(cust.json.user_id, 'end-user-1');
  });

  test('a budget stops a key once spent', async () => {
    const k = (await generate({ models: ['priced'], max_budget: 0.000001 })).json;
    let status = 200;
    for (let i = 0; i < 10 && status === 200; i++) {
      status = (await chat(k.key)).status;
      await sleep(50);
    }
    assert.equal(status, 400, 'budget_exceeded once the budget is gone');
  });
});

describe('teams, users, customers', () => {
  test('team lifecycle and members', async () => {
    const t = await admin('/team/new', { team_alias: 'blue', models: ['priced'], max_budget: 100, rpm_limit: 1000 });
    assert.equal(t.status, 200, t.text);
    const teamId = t.json.team_id;
    assert.match(teamId, /^[0-9a-f]{32}$/);
    assert.equal(t.json.team_alias, 'blue');
    const named = await admin('/team/new', { team_id: 'team-red', team_alias: 'red' });
    assert.equal(named.json.team_id, 'team-red');
    assertEnvelope(await admin('/team/new', { team_id: 'team-red' }), 400, 'invalid_request_error', 'invalid_field', 'team_id');
    assertEnvelope(await admin('/team/new', { max_budget: 'x' }), 400, 'invalid_request_error', 'invalid_field', 'max_budget');

    const k = (await generate({ team_id: teamId })).json;
    assert.equal(k.team_id, teamId);
    assert.equal((await chat(k.key, 'priced')).status, 200);
    assert.equal((await chat(k.key, 'other')).status, 403, 'the team limits the models');

    const info = await admin(`/team/info?team_id=${teamId}`);
    assert.equal(info.status, 200, info.text);
    assert.equal(info.json.team_info.team_alias, 'blue');
    assert.ok(info.json.keys.some((x) => x.token === k.token));
    assert.ok(!info.text.includes(k.key));
    assertEnvelope(await admin('/team/info?team_id=nope'), 404, 'invalid_request_error', 'not_found');
    assertEnvelope(await admin('/team/info'), 400, 'invalid_request_error', 'invalid_field');

    const up = await admin('/team/update', { team_id: teamId, models: ['priced', 'other'] });
    assert.equal(up.status, 200, up.text);
    assert.equal((await chat(k.key, 'other')).status, 200, 'team update is live');
    assertEnvelope(await admin('/team/update', { team_id: 'nope', max_budget: 1 }), 404, 'invalid_request_error', 'not_found');

    const ma = await admin('/team/member_add', { team_id: teamId, member: [{ user_id: 'alice', role: 'admin' }, { user_id: 'bob' }] });
    assert.equal(ma.status, 200, ma.text);
    assert.deepEqual(ma.json.members_with_roles.map((m) => m.user_id).sort(), ['alice', 'bob']);
    const md = await admin('/team/member_delete', { team_id: teamId, user_id: 'bob' });
    assert.deepEqual(md.json.members_with_roles.map((m) => m.user_id), ['alice']);
    assertEnvelope(await admin('/team/member_add', { team_id: teamId, member: { role: 'admin' } }), 400, 'invalid_request_error', 'invalid_field', 'member');
    assertEnvelope(await admin('/team/member_add', { team_id: 'nope', member: { user_id: 'x' } }), 404, 'invalid_request_error', 'not_found');

    const list = await admin('/team/list');
    assert.ok(Array.isArray(list.json));
    assert.ok(list.json.some((x) => x.team_id === teamId));

    const del = await admin('/team/delete', { team_ids: [teamId] });
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json.deleted_teams, [teamId]);
    assert.equal((await chat(k.key)).status, 401, "a deleted team's keys are deleted");
    assertEnvelope(await admin('/team/delete', { team_ids: ['nope'] }), 404, 'invalid_request_error', 'not_found');
    assertEnvelope(await admin('/team/delete', {}), 400, 'invalid_request_error', 'invalid_field', 'team_ids');
  });

  test('user lifecycle', async () => {
    const u = await admin('/user/new', { user_id: 'user-1', user_email: 'u1@example.com', max_budget: 10, user_role: 'internal_user' });
    assert.equal(u.status, 200, u.text);
    assert.equal(u.json.user_id, 'user-1');
    assertEnvelope(await admin('/user/new', { user_id: 'user-1' }), 400, 'invalid_request_error', 'invalid_field', 'user_id');
    assertEnvelope(await admin('/user/new', { user_role: 'god' }), 400, 'invalid_request_error', 'invalid_field', 'user_role');
    const k = (await generate({ user_id: 'user-1' })).json;
    const info = await admin('/user/info?user_id=user-1');
    assert.equal(info.status, 200, info.text);
    assert.equal(info.json.user_info.user_email, 'u1@example.com');
    assert.ok(info.json.keys.some((x) => x.token === k.token));
    const up = await admin('/user/update', { user_id: 'user-1', max_budget: 20 });
    assert.equal(up.json.max_budget, 20);
    assertEnvelope(await admin('/user/update', { user_id: 'nope' }), 404, 'invalid_request_error', 'not_found');
    const list = await admin('/user/list?page=1&page_size=50');
    assert.ok(list.json.users.some((x) => x.user_id === 'user-1'));
    assert.ok(list.json.total >= 1);
    const del = await admin('/user/delete', { user_ids: ['user-1'] });
    assert.deepEqual(del.json.deleted_users, ['user-1']);
    assert.equal((await chat(k.key)).status, 401, "a deleted user's keys are deleted");
    assertEnvelope(await admin('/user/info?user_id=user-1'), 404, 'invalid_request_error', 'not_found');
  });

  test('customer lifecycle', async () => {
    const c = await admin('/customer/new', { user_id: 'cust-1', max_budget: 1, alias: 'Customer One' });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.user_id, 'cust-1');
    assertEnvelope(await admin('/customer/new', {}), 400, 'invalid_request_error', 'invalid_field', 'user_id');
    assertEnvelope(await admin('/customer/new', { user_id: 'cust-1' }), 400, 'invalid_request_error', 'invalid_field', 'user_id');
    const info = await admin('/customer/info?end_user_id=cust-1');
    assert.equal(info.json.alias, 'Customer One');
    assert.equal(info.json.max_budget, 1);
    const del = await admin('/customer/delete', { user_ids: ['cust-1'] });
    assert.equal(del.status, 200, del.text);
    assertEnvelope(await admin('/customer/info?end_user_id=cust-1'), 404, 'invalid_request_error', 'not_found');
    assertEnvelope(await admin('/customer/delete', { user_ids: ['cust-1'] }), 404, 'invalid_request_error', 'not_found');
  });
});

describe('model info', () => {
  test('deployments with prices, without secrets', async () => {
    const res = await admin('/model/info');
    assert.equal(res.status, 200, res.text);
    const names = res.json.data.map((d) => d.model_name);
    assert.deepEqual(names, ['priced', 'other', 'unpriced']);
    const priced = res.json.data[0];
    assert.equal(priced.litellm_params.model, 'openai/gpt-fake');
    assert.equal(priced.model_info.input_cost_per_token, 0.001);
    assert.equal(priced.model_info.output_cost_per_token, 0.002);
    assert.equal(res.json.data[2].model_info.price_known, false);
    assert.ok(!res.text.includes('sk-provider-key'), 'no provider key');
    assert.ok(!res.text.includes(MASTER_KEY), 'no master key');
  });
});

describe('authorization', () => {
  test('no key or an unknown key: 401; a non-admin key: 403 on every admin route', async () => {
    const plain = (await generate({ models: ['priced'] })).json;
    for (const [method, path, body] of ADMIN_ROUTES) {
      const noKey = await stack.gw.call(path, { method, body, key: null });
      assertEnvelope(noKey, 401, 'invalid_request_error', 'invalid_api_key');
      const unknown = await stack.gw.call(path, { method, body, key: 'sk-not-a-key' });
      assertEnvelope(unknown, 401, 'invalid_request_error', 'invalid_api_key');
      const res = await stack.gw.call(path, { method, body, key: plain.key });
      assertEnvelope(res, 403, 'permission_error', 'not_admin');
    }
  });

  test('method mismatch: 405', async () => {
    const res = await stack.gw.call('/key/generate', { method: 'GET' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
    assert.equal((await stack.gw.call('/key/list', { method: 'POST', body: {} })).status, 405);
  });

  test('an admin key cannot give more rights than it has', async () => {
    const adminKey = (await generate({
      user_role: 'proxy_admin',
      models: ['priced'],
      max_budget: 10,
      rpm_limit: 100,
      tpm_limit: 10000,
      max_parallel_requests: 5,
      duration: '1d',
    })).json;
    const base = { models: ['priced'], max_budget: 5, rpm_limit: 10, tpm_limit: 100, max_parallel_requests: 1, duration: '1h' };
    const ok = await generate(base, adminKey.key);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.created_by, adminKey.token);
    assert.equal((await chat(ok.json.key)).status, 200);

    const escalations = [
      { models: ['other'] },
      { models: ['priced', 'other'] },
      { models: [] },
      { models: undefined },
      { max_budget: 11 },
      { max_budget: undefined },
      { rpm_limit: 101 },
      { rpm_limit: undefined },
      { tpm_limit: 10001 },
      { max_parallel_requests: 6 },
      { duration: '30d' },
      { duration: undefined },
      { user_role: 'proxy_admin' },
    ];
    for (const change of escalations) {
      const body = { ...base, ...change };
      for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
      const res = await generate(body, adminKey.key);
      assertEnvelope(res, 403, 'permission_error', 'exceeds_creator_rights');
    }
    // Nor through an update of an existing key (its own included), nor a team or user.
    const up = await admin('/key/update', { key: ok.json.key, max_budget: 1000 }, { key: adminKey.key });
    assertEnvelope(up, 403, 'permission_error', 'exceeds_creator_rights');
    const self = await admin('/key/update', { key: adminKey.token, models: ['priced', 'other'] }, { key: adminKey.key });
    assertEnvelope(self, 403, 'permission_error', 'exceeds_creator_rights');
    const team = await admin('/team/new', { models: ['other'] }, { key: adminKey.key });
    assertEnvelope(team, 403, 'permission_error', 'exceeds_creator_rights');
    const user = await admin('/user/new', { user_role: 'proxy_admin', models: ['priced'], max_budget: 1, rpm_limit: 1, tpm_limit: 1, max_parallel_requests: 1 }, { key: adminKey.key });
    assertEnvelope(user, 403, 'permission_error', 'exceeds_creator_rights');
    // Reads work for the admin key.
    assert.equal((await admin('/key/list', undefined, { key: adminKey.key })).status, 200);
  });
});

describe('client gone', () => {
  test('a client that leaves while its admin job runs: nothing leaks, the write still lands', async () => {
    for (let i = 0; i < 20; i++) {
      const c = await RawConn.open(stack.gw.port);
      c.write(rawRequest('POST', '/key/generate', { body: JSON.stringify({ key_alias: `gone-${i}` }) }));
      c.destroy();
    }
    // The store thread finishes each job; the gateway answers no one and frees the state (the
    // sanitizer at stop() would report a leak or a use after free).
    const list = await waitFor(async () => {
      const r = await admin('/key/list?size=1000&return_full_object=true');
      const n = r.json.keys.filter((k) => String(k.key_alias).startsWith('gone-')).length;
      return n > 0 ? r : null;
    }, 'some of the abandoned keys');
    assert.equal(list.status, 200);
    const gone = await stack.gw.waitForAccess((l) => l.path === '/key/generate' && l.status === 499);
    assert.equal(gone.error, 'client_closed');
  });
});

describe('security', () => {
  test('SQL-injection strings in every field, query parameter and header', async () => {
    for (const s of INJECTIONS) {
      const team = await admin('/team/new', { team_id: s, team_alias: s, metadata: { [s]: s } });
      assert.equal(team.status, 200, team.text);
      assert.equal(team.json.team_id, s);
      const k = await generate({ key_alias: s, team_id: s, user_id: s, models: [s, 'priced'], metadata: { note: s }, aliases: { [s]: s } });
      assert.equal(k.status, 200, k.text);
      assert.equal(k.json.key_alias, s);
      const info = await admin(`/key/info?key=${k.json.token}`);
      assert.equal(info.json.info.key_alias, s);
      assert.equal(info.json.info.user_id, s);
      const tinfo = await admin(`/team/info?team_id=${encodeURIComponent(s)}`);
      assert.equal(tinfo.status, 200, tinfo.text);
      assert.equal(tinfo.json.team_info.team_alias, s);
      const list = await admin(`/key/list?key_alias=${encodeURIComponent(s)}&team_id=${encodeURIComponent(s)}&user_id=${encodeURIComponent(s)}`);
      assert.deepEqual(list.json.keys, [k.json.token]);
      for (const q of ['user_id', 'api_key', 'request_id']) {
        const r = await admin(`/spend/logs?${q}=${encodeURIComponent(s)}`);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json, []);
      }
      assertEnvelope(await admin(`/user/info?user_id=${encodeURIComponent(s)}`), 404, 'invalid_request_error', 'not_found');
      assertEnvelope(await admin(`/customer/info?end_user_id=${encodeURIComponent(s)}`), 404, 'invalid_request_error', 'not_found');
      assertEnvelope(await admin('/key/delete', { keys: [s] }), 404, 'invalid_request_error', 'not_found');
      const bad = await stack.gw.call('/key/list', { key: s });
      assertEnvelope(bad, 401, 'invalid_request_error', 'invalid_api_key');
      const badChat = await stack.gw.call('/v1/chat/completions', { key: s, body: chatBody() });
      assert.equal(badChat.status, 401);
      const hdr = await stack.gw.call('/key/list', { headers: { 'x-request-id': s.replace(/[^\x21-\x7e]/g, '_') } });
      assert.equal(hdr.status, 200);
      const del = await admin('/key/delete', { key_aliases: [s] });
      assert.deepEqual(del.json.deleted_keys, [k.json.token]);
      const tdel = await admin('/team/delete', { team_ids: [s] });
      assert.deepEqual(tdel.json.deleted_teams, [s]);
    }
    // Everything else is still there.
    const all = await admin('/key/list?size=1000');
    assert.ok(all.json.total_count >= 5, all.text);
    const nul = await generate({ key_alias: 'a\u0000b' });
    assertEnvelope(nul, 400, 'invalid_request_error', 'invalid_json');
  });

  test('the plaintext key is nowhere but its creation response', async () => {
    const k = await generate({ key_alias: 'secret-check' });
    const key = k.json.key;
    // Some traffic with it, including failures that might echo it.
    await chat(key);
    await chat(key, 'not-a-model');
    await admin(`/key/info?key=${encodeURIComponent(key)}`);
    await admin('/key/list?return_full_object=true');
    await admin(`/key/${encodeURIComponent(key)}x/regenerate`, {});
    await admin('/key/update', { key, rpm_limit: 'bad' });
    await waitFor(async () => (await admin(`/spend/logs?api_key=${k.json.token}`)).json?.length >= 1, 'spend row');
    const responses = [
      await admin(`/key/info?key=${encodeURIComponent(key)}`),
      await admin('/key/list?return_full_object=true&size=1000'),
      await admin(`/spend/logs?api_key=${encodeURIComponent(key)}`),
      await admin('/global/spend/keys'),
      await admin('/team/list'),
      await admin('/user/list'),
    ];
    for (const r of responses) assertNoPlaintext('an admin response', r.text);
    for (const f of filesUnder(dbDir)) assertNoPlaintext(f, readFileSync(f).toString('latin1'));
    assertNoPlaintext('stdout', stack.gw.stdout);
    assertNoPlaintext('stderr', stack.gw.stderr);
    assert.ok(plaintexts.size >= 10, 'the checks above saw many keys');
    // The database does hold the hashes.
    const bytes = filesUnder(dbDir).map((f) => readFileSync(f).toString('latin1')).join('');
    assert.ok(bytes.includes(k.json.token), 'the hash is stored');
  });
});
