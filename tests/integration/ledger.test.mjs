// The spend ledger across crashes and shutdowns: kill -9 under load, then a restart on the same
// database and journal, must leave every request a client saw complete in the ledger exactly
// once, in a sound SQLite file; a graceful SIGTERM flushes every row before the process exits.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Fake, Gateway, fakeModel, sleep } from '../lib/harness.mjs';
import { chat, filesUnder, generateKey, keyInfo, nano, sqlite, sqliteJson } from '../lib/keys.mjs';

const PRICES = { input_cost_per_token: 1e-6, output_cost_per_token: 1e-5 };
const COST = 91000; // 1 prompt token and 9 completion tokens at the prices above, nano-dollars

let fake;
let dir;
let db;
let journal;
const gateways = [];

function config() {
  return {
    model_list: [fakeModel(fake, 'ok', '', PRICES), fakeModel(fake, 'slowish', 'drip_ms=5', PRICES)],
    general_settings: { database_url: `sqlite://${db}` },
    server: { journal_dir: journal },
  };
}

async function startGateway() {
  const gw = await Gateway.start(config());
  gateways.push(gw);
  return gw;
}

/** SIGKILL; the harness's stop() would demand a clean exit, so its temp folder goes by hand. */
async function kill9(gw) {
  gw.child.proc.kill('SIGKILL');
  const r = await gw.child.exitPromise;
  assert.equal(r.signal, 'SIGKILL');
  gw.stopped = Promise.resolve({ timedOut: false, code: null, signal: 'SIGKILL' });
  rmSync(gw.dir, { recursive: true, force: true });
}

/** request id -> number of rows with it. */
function ledgerCounts() {
  const rows = sqliteJson(db, 'SELECT request_id, count(*) AS n FROM sb_spend_logs GROUP BY request_id');
  return new Map(rows.map((r) => [r.request_id, r.n]));
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sb-ledger-'));
  db = join(dir, 'spend.db');
  journal = join(dir, 'journal');
  fake = await Fake.start();
});

after(async () => {
  for (const gw of gateways) if (!gw.child.exited) gw.child.proc.kill('SIGKILL');
  await fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('kill -9 under load, then a restart: every request a client saw complete is in the ledger exactly once; integrity_check ok', { timeout: 90000 }, async (t) => {
  let gw = await startGateway();
  const { key, token } = await generateKey(gw, { key_alias: 'crash' });
  const completed = [];
  let stop = false;
  let served = 0;
  const client = async (c) => {
    for (let i = 0; !stop; i++) {
      const stream = (c + i) % 2 === 0;
      const r = await chat(gw, key, stream ? 'slowish' : 'ok', { stream });
      if (r.error || r.status === 0) return; // the gateway is gone
      if (r.status === 200 && r.complete) {
        completed.push(r.rid);
        served++;
      }
    }
  };
  const clients = Array.from({ length: 20 }, (_, c) => client(c));
  // Kill once a good number of requests went through, while all 20 clients are busy.
  const deadline = Date.now() + 30000;
  while (served < 300 && Date.now() < deadline) await sleep(20);
  assert.ok(served >= 300, `load reached the gateway (${served} completed)`);
  await kill9(gw);
  stop = true;
  await Promise.all(clients);
  const seenComplete = [...completed];
  const journaled = filesUnder(journal).length;
  const atKill = ledgerCounts();
  const inDbAtKill = seenComplete.filter((id) => atKill.has(id)).length;

  gw = await startGateway(); // applies the journal left behind before it listens
  // Wait for the ledger to have every completed id (it should already: the journal is applied
  // at start), then check exactly once.
  let counts;
  for (let i = 0; i < 100; i++) {
    counts = ledgerCounts();
    if (seenComplete.every((id) => counts.has(id))) break;
    await sleep(100);
  }
  const missing = seenComplete.filter((id) => !counts.has(id));
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} of ${seenComplete.length} completed requests are not in the ledger`);
  const dup = [...counts].filter(([, n]) => n !== 1);
  assert.deepEqual(dup, [], 'every request id is in the ledger exactly once');
  assert.equal(sqlite(db, 'PRAGMA integrity_check'), 'ok');
  t.diagnostic(`${seenComplete.length} completed before the kill, ${inDbAtKill} of them in the database at the kill, ${counts.size} rows after the restart, ${journaled} journal files left behind`);

  // The running total is updated in the same transaction as the rows: a journal applied
  // again after the crash must not count a row twice.
  const [tot] = sqliteJson(db, `SELECT (SELECT spend_nano FROM sb_keys WHERE token = '${token}') AS total, (SELECT sum(cost_nano) FROM sb_spend_logs WHERE api_key = '${token}') AS rows`);
  assert.equal(tot.total, tot.rows, 'the key\'s running total equals the sum of its rows');
  assert.ok(tot.rows >= seenComplete.length * COST, `every completed request is billed (${tot.rows} nano-dollars)`);
  assert.equal(nano((await keyInfo(gw, token)).spend), tot.total);
  // The restarted gateway serves and bills the same key.
  const r = await chat(gw, key, 'ok');
  assert.equal(r.status, 200, r.text);
  await gw.stop();
});

test('a graceful SIGTERM flushes every spend row before the process exits', { timeout: 60000 }, async () => {
  const gw = await startGateway();
  const { key } = await generateKey(gw, { key_alias: 'graceful' });
  const ids = [];
  await Promise.all(
    Array.from({ length: 10 }, async (_, c) => {
      for (let i = 0; i < 10; i++) {
        const r = await chat(gw, key, c % 2 ? 'ok' : 'slowish', { stream: c % 2 === 0 });
        assert.equal(r.status, 200, r.text);
        assert.ok(r.complete);
        ids.push(r.rid);
      }
    }),
  );
  // Stop right away: the ledger may not have applied its last batch yet.
  await gw.stop();
  const counts = ledgerCounts();
  const missing = ids.filter((id) => counts.get(id) !== 1);
  assert.deepEqual(missing, [], 'every row is in the database right after exit, once');
  assert.equal(sqlite(db, 'PRAGMA integrity_check'), 'ok');
});
