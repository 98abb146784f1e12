// Virtual keys and the spend ledger on PostgreSQL: the basic key flow, a restart that reloads
// keys and spend from the database, and the database stopped for 30 s under load (requests
// keep being served, admin writes answer 503, no spend row is lost, the journal drains).
//
// Needs a server: run from tests/ as `../scripts/with-pg.sh node --test integration/keys_pg.test.mjs`
// (SB_TEST_PG_URL, SB_TEST_PG_DATA, SB_TEST_PG_BIN). Without SB_TEST_PG_URL it is skipped.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Fake, Gateway, fakeModel, sleep } from '../lib/harness.mjs';
import { admin, chat, generateKey, keyInfo, nano, settledKeyInfo, spendLogs, waitRows } from '../lib/keys.mjs';

const PG_URL = process.env.SB_TEST_PG_URL;
const PG_DATA = process.env.SB_TEST_PG_DATA;
const PG_BIN = process.env.SB_TEST_PG_BIN || '/usr/lib/postgresql/15/bin';
const skip = PG_URL ? false : 'SB_TEST_PG_URL is not set: run through scripts/with-pg.sh to test PostgreSQL';

const PRICES = { input_cost_per_token: 1e-6, output_cost_per_token: 1e-5 };
const COST = 91000; // 1 prompt + 9 completion tokens, nano-dollars
const OUTAGE_MS = 30000;
const log = (m) => process.env.SB_TEST_VERBOSE && process.stderr.write(`[keys_pg ${new Date().toISOString()}] ${m}\n`);

let fake;
let dir;
const gateways = [];

function psql(sql) {
  return execFileSync(join(PG_BIN, 'psql'), [PG_URL, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8' }).trim();
}

/** pg_ctl as the cluster's owner (postgres when we are root), as scripts/with-pg.sh does.
 * Its output is not captured: the server it starts inherits the descriptors, and a pipe
 * held open by the server would keep a synchronous call waiting forever. */
function pgCtl(...args) {
  const cmd = [join(PG_BIN, 'pg_ctl'), '-D', PG_DATA, ...args];
  if (process.getuid && process.getuid() === 0) execFileSync('runuser', ['-u', 'postgres', '--', ...cmd], { stdio: 'ignore' });
  else execFileSync(cmd[0], cmd.slice(1), { stdio: 'ignore' });
}

async function startGateway(extraServer = {}) {
  const gw = await Gateway.start({
    model_list: [fakeModel(fake, 'ok', '', PRICES), fakeModel(fake, 'ok2', '', PRICES)],
    general_settings: { database_url: PG_URL },
    server: { journal_dir: join(dir, 'journal'), ...extraServer },
  });
  gateways.push(gw);
  return gw;
}

describe('virtual keys on PostgreSQL', { skip }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-keys-pg-'));
    fake = await Fake.start();
  });

  after(async () => {
    for (const gw of gateways) await gw.stop().catch(() => {});
    await fake?.stop();
    // The database must be back for whatever runs next on this server.
    try {
      pgCtl('status');
    } catch {
      pgCtl('start', '-w');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the key flow: generate, use, model access, spend, block, budget under concurrency, delete; kept across a restart', { timeout: 60000 }, async () => {
    let gw = await startGateway();
    const { key, token } = await generateKey(gw, { key_alias: 'pg-basic', models: ['ok'], max_budget: (20 * COST) / 1e9 });
    assert.equal(psql(`SELECT count(*) FROM sb_keys WHERE token = '${token}'`), '1', 'the key is stored as its hash');
    assert.equal(psql(`SELECT count(*) FROM sb_keys WHERE data LIKE '%${key}%' OR token = '${key}'`), '0', 'the plaintext key is not stored');

    const r = await chat(gw, key, 'ok', { extra: { max_tokens: 20 } });
    assert.equal(r.status, 200, r.text);
    assert.equal(nano(r.headers.get('x-switchboard-response-cost')), COST);
    const denied = await chat(gw, key, 'ok2');
    assert.equal(denied.status, 403, denied.text);
    assert.match(denied.json.error.message, /ok2/);

    // 100 concurrent requests on a budget of 20: never past it.
    const rs = await Promise.all(Array.from({ length: 100 }, (_, i) => chat(gw, key, 'ok', { stream: i % 2 === 0, extra: { max_tokens: 20 } })));
    const ok = rs.filter((x) => x.status === 200);
    assert.ok(rs.every((x) => x.status === 200 || (x.status === 400 && x.json.error.code === 'budget_exceeded')), rs.map((x) => x.status).join(','));
    await waitRows(gw, [r.rid, ...ok.map((x) => x.rid)], { api_key: token });
    const info = await settledKeyInfo(gw, token);
    assert.ok(nano(info.spend) <= 20 * COST, `spend ${info.spend} within the budget`);
    assert.equal(nano(info.spend), (ok.length + 1) * COST, 'every 200 is billed once');
    assert.equal(psql(`SELECT spend_nano FROM sb_keys WHERE token = '${token}'`), String((ok.length + 1) * COST));
    assert.equal(psql(`SELECT coalesce(sum(cost_nano), 0) FROM sb_spend_logs WHERE api_key = '${token}'`), String((ok.length + 1) * COST));

    await admin(gw, '/key/block', { key: token });
    assert.equal((await chat(gw, key, 'ok')).status, 401);
    await admin(gw, '/key/unblock', { key: token });
    await admin(gw, '/key/update', { key: token, max_budget: 1 });
    assert.equal((await chat(gw, key, 'ok')).status, 200);

    // A restart loads keys and spend from the database.
    const { key: other, token: otherToken } = await generateKey(gw, { key_alias: 'pg-doomed' });
    const before = nano((await settledKeyInfo(gw, token)).spend);
    await gw.stop();
    gw = await startGateway();
    assert.equal(nano((await keyInfo(gw, token)).spend), before, 'spend survives the restart');
    const again = await chat(gw, key, 'ok');
    assert.equal(again.status, 200, again.text);
    await admin(gw, '/key/delete', { keys: [otherToken] });
    assert.equal((await chat(gw, other, 'ok')).status, 401, 'a deleted key is refused');
    await gw.stop();
  });

  test('the database stopped for 30 s under load: known keys are served, admin writes answer 503, no spend row is lost', { timeout: 150000 }, async (t) => {
    const gw = await startGateway();
    const { key, token } = await generateKey(gw, { key_alias: 'pg-outage', max_budget: 1000 });
    const completed = [];
    const statuses = {};
    let stop = false;
    const client = async (c) => {
      for (let i = 0; !stop; i++) {
        const stream = (c + i) % 2 === 0;
        const r = await chat(gw, key, 'ok', { stream });
        statuses[r.status] = (statuses[r.status] || 0) + 1;
        if (r.status === 200 && r.complete) completed.push(r.rid);
        await sleep(20);
      }
    };
    const clients = Array.from({ length: 8 }, (_, c) => client(c));
    await sleep(1000);
    log('stopping the database');
    pgCtl('stop', '-m', 'fast', '-w');
    log('stopped');
    const stoppedAt = Date.now();
    let servedDuringOutage = 0;
    const beforeOutage = completed.length;
    try {
      await sleep(2000);
      // Admin writes cannot be committed: 503, nothing changed.
      const w = await gw.call('/key/generate', { body: { key_alias: 'during-outage' } });
      assert.equal(w.status, 503, `an admin write during the outage: ${w.text}`);
      assert.equal(w.json.error.code, 'database_unavailable');
      const u = await gw.call('/key/update', { body: { key: token, rpm_limit: 5 } });
      assert.equal(u.status, 503, `an admin update during the outage: ${u.text}`);
      while (Date.now() - stoppedAt < OUTAGE_MS) await sleep(250);
      servedDuringOutage = completed.length - beforeOutage;
    } finally {
      log('starting the database');
      pgCtl('start', '-w');
      log('started');
    }
    await sleep(1000);
    stop = true;
    await Promise.all(clients);
    log('clients done');
    t.diagnostic(`${completed.length} completed, ${servedDuringOutage} during the outage; statuses ${JSON.stringify(statuses)}`);
    assert.ok(servedDuringOutage >= 100, `requests kept being served during the outage (${servedDuringOutage})`);
    assert.deepEqual(Object.keys(statuses), ['200'], `every request was served: ${JSON.stringify(statuses)}`);

    // The journal drains into the database: every completed request exactly once.
    const deadline = Date.now() + 60000;
    let have;
    for (;;) {
      have = new Set(psql(`SELECT request_id FROM sb_spend_logs WHERE api_key = '${token}'`).split('\n').filter(Boolean));
      if (completed.every((id) => have.has(id)) || Date.now() > deadline) break;
      log(`${have.size} rows`);
      await sleep(500);
    }
    const missing = completed.filter((id) => !have.has(id));
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} of ${completed.length} spend rows are missing after the outage`);
    assert.equal(psql(`SELECT count(*) FROM (SELECT request_id FROM sb_spend_logs GROUP BY request_id HAVING count(*) > 1) d`), '0');
    log('drained');
    const info = await settledKeyInfo(gw, token);
    log('settled');
    assert.equal(psql(`SELECT spend_nano FROM sb_keys WHERE token = '${token}'`), psql(`SELECT sum(cost_nano) FROM sb_spend_logs WHERE api_key = '${token}'`), 'the running total equals the rows');
    assert.ok(nano(info.spend) >= completed.length * COST, 'every completed request is billed');
    // Admin writes work again, and nothing of the refused ones was stored.
    const w = await gw.call('/key/generate', { body: { key_alias: 'after-outage' } });
    assert.equal(w.status, 200, w.text);
    assert.equal(psql("SELECT count(*) FROM sb_keys WHERE key_alias = 'during-outage'"), '0');
    assert.equal((await keyInfo(gw, token)).rpm_limit ?? null, null, 'the refused update changed nothing');
    const logs = await spendLogs(gw, { api_key: token, limit: '5' });
    assert.equal(logs.length, 5);
    await gw.stop();
  });
});

