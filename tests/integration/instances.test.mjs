// Two gateways on one database (PostgreSQL, and one SQLite file on one machine): admin changes
// made through one instance reach the other through the store's change feed, and budgets see
// the spend of both through the spend sync (general_settings.sync_interval_ms, 1000 by
// default). Each gateway has its own journal_dir.
//
// The PostgreSQL half needs a server: run from tests/ as
// `../scripts/with-pg.sh node --test integration/instances.test.mjs` (SB_TEST_PG_URL). Without
// SB_TEST_PG_URL it is skipped; the SQLite half always runs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Fake, Gateway, fakeModel, sleep } from '../lib/harness.mjs';
import { admin, chat, generateKey, keyInfo, nano, settledKeyInfo } from '../lib/keys.mjs';

const PG_URL = process.env.SB_TEST_PG_URL;
const PG_BIN = process.env.SB_TEST_PG_BIN || '/usr/lib/postgresql/15/bin';

const PRICES = { input_cost_per_token: 1e-6, output_cost_per_token: 1e-5 };
const COST = 91000; // 1 prompt + 9 completion tokens, nano-dollars
const SYNC_MS = 1000; // the default sync interval
const log = (m) => process.env.SB_TEST_VERBOSE && process.stderr.write(`[instances ${new Date().toISOString()}] ${m}\n`);

/** Polls fn until it returns a truthy value; returns it and how long it took. */
async function until(what, fn, timeoutMs = 5000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return { v, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

const status = async (gw, key, model = 'ok') => (await chat(gw, key, model, { extra: { max_tokens: 20 } })).status;

function suite(name, { skip, dbUrl, reset }) {
  describe(`two instances on one database: ${name}`, { skip }, () => {
    let fake;
    let dir;
    let a;
    let b;

    const start = (label) =>
      Gateway.start({
        model_list: [fakeModel(fake, 'ok', '', PRICES)],
        general_settings: { database_url: dbUrl(dir) },
        server: { journal_dir: join(dir, `journal-${label}`) },
      });

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'sb-instances-'));
      reset?.();
      fake = await Fake.start();
      a = await start('a');
      b = await start('b');
    });

    after(async () => {
      await a?.stop().catch(() => {});
      await b?.stop().catch(() => {});
      await fake?.stop();
      reset?.();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('a key generated, blocked, unblocked and deleted on A takes effect on B', { timeout: 30000 }, async () => {
      const { key, token } = await generateKey(a, { key_alias: `inst-${name}` });
      assert.equal(await status(a, key), 200);
      const seen = await until('B accepts the new key', async () => (await status(b, key)) === 200);
      log(`${name}: new key on B after ${seen.ms} ms`);
      assert.ok(seen.ms <= 3 * SYNC_MS, `converged in ${seen.ms} ms`);

      await admin(a, '/key/block', { key: token });
      assert.equal(await status(a, key), 401);
      const blocked = await until('B refuses the blocked key', async () => (await status(b, key)) === 401);
      log(`${name}: block on B after ${blocked.ms} ms`);
      await admin(a, '/key/unblock', { key: token });
      await until('B accepts the unblocked key', async () => (await status(b, key)) === 200);

      await admin(a, '/key/delete', { keys: [token] });
      assert.equal(await status(a, key), 401);
      const gone = await until('B refuses the deleted key', async () => (await status(b, key)) === 401);
      log(`${name}: delete on B after ${gone.ms} ms`);
    });

    test('a team budget changed on A applies on B', { timeout: 30000 }, async () => {
      const team = `team-${name}`;
      await admin(a, '/team/new', { team_id: team, max_budget: 10 });
      const { key } = await generateKey(a, { team_id: team });
      await until('B accepts the team key', async () => (await status(b, key)) === 200);
      // One nano-dollar: not even the input of a request fits.
      await admin(a, '/team/update', { team_id: team, max_budget: 1e-9 });
      assert.equal(await status(a, key), 400);
      const r = await until('B applies the new team budget', async () => {
        const x = await chat(b, key, 'ok', { extra: { max_tokens: 20 } });
        return x.status === 400 ? x : null;
      });
      assert.equal(r.v.json.error.code, 'budget_exceeded');
      assert.match(r.v.json.error.message, new RegExp(`Team=${team}`));
    });

    test('a budget spent through A is refused on B after the sync', { timeout: 30000 }, async () => {
      const budget = 5 * COST;
      const { key, token } = await generateKey(a, { max_budget: budget / 1e9 });
      await until('B knows the key', async () => (await status(b, key)) === 200);
      // Spend it on A, one request at a time, until A refuses.
      let n = 0;
      while ((await status(a, key)) === 200) n++;
      const info = await settledKeyInfo(a, token);
      const spent = nano(info.spend);
      log(`${name}: A admitted ${n} more, spend ${spent} of ${budget}`);
      assert.ok(spent <= budget, `spend ${spent} within the budget ${budget}`);
      // A's rows reach the database within the flush interval, B reads them on its next sync.
      let admittedOnB = 0;
      const refused = await until(
        'B refuses the spent key',
        async () => {
          const st = await status(b, key);
          if (st === 200) admittedOnB++;
          return st === 400;
        },
        4 * SYNC_MS,
      );
      log(`${name}: B refused after ${refused.ms} ms, admitting ${admittedOnB} first`);
      const total = nano((await settledKeyInfo(a, token)).spend);
      // Every 200 is billed once; what B admitted before it saw A's spend (requests within
      // one sync interval plus A's journal lag) is the only overspend.
      assert.equal(total, spent + admittedOnB * COST);
      assert.ok(total <= budget + admittedOnB * COST, `total ${total}`);
      // Once both have synced, neither admits anything.
      await sleep(2 * SYNC_MS);
      assert.equal(await status(a, key), 400);
      assert.equal(await status(b, key), 400);
    });

    test('a burst on both instances at once: each holds the budget, together at most twice it', { timeout: 30000 }, async () => {
      const budget = 5 * COST;
      const { key, token } = await generateKey(a, { max_budget: budget / 1e9 });
      await until('B knows the key', async () => (await status(b, key)) === 200);
      const before = nano((await settledKeyInfo(a, token)).spend);
      const rs = await Promise.all(Array.from({ length: 24 }, (_, i) => chat(i % 2 ? b : a, key, 'ok', { extra: { max_tokens: 20 } })));
      assert.ok(rs.every((x) => x.status === 200 || x.status === 400), rs.map((x) => x.status).join(','));
      const info = await settledKeyInfo(a, token);
      const total = nano(info.spend);
      log(`${name}: burst ${rs.filter((x) => x.status === 200).length} admitted, total ${total} of ${budget}`);
      // Each instance reserves against its own view (the database total + its own unsynced
      // spend), so with no sync in between the two together stop at twice the budget at most.
      assert.ok(total <= 2 * budget, `total ${total} within twice the budget`);
      assert.ok(total >= before);
      await sleep(2 * SYNC_MS);
      assert.equal(await status(a, key), 400);
      assert.equal(await status(b, key), 400);
    });

    test('a budget_duration period ends on both: reset once, spend after the reset kept', { timeout: 40000 }, async () => {
      const { key, token } = await generateKey(a, { max_budget: 1, budget_duration: '5s' });
      await until('B knows the key', async () => (await status(b, key)) === 200);
      assert.equal(await status(a, key), 200);
      const first = await keyInfo(a, token);
      assert.ok(first.budget_reset_at > 0, JSON.stringify(first));
      // Wait for the period to end and be reset (by either instance).
      const reset = await until(
        'the period is reset',
        async () => {
          const i = await keyInfo(a, token);
          return i.budget_reset_at !== first.budget_reset_at ? i : null;
        },
        15000,
      );
      const at = reset.v.budget_reset_at;
      // Spend on both right after the reset, then give the other instance time to reach its
      // own reset tick: it must see that the period moved and leave the spend alone.
      assert.equal(await status(a, key), 200);
      assert.equal(await status(b, key), 200);
      await sleep(2500);
      const info = await settledKeyInfo(a, token, { quietMs: 600 });
      assert.equal(info.budget_reset_at, at, 'reset once');
      assert.equal(nano(info.spend), 2 * COST, 'the spend after the reset is kept');
    });
  });
}

suite('SQLite file', { skip: false, dbUrl: (dir) => `sqlite://${dir}/shared.db` });

suite('PostgreSQL', {
  skip: PG_URL ? false : 'SB_TEST_PG_URL is not set: run through scripts/with-pg.sh to test PostgreSQL',
  dbUrl: () => PG_URL,
  reset: () => {
    // A database shared with other suites: start from empty tables (the gateway migrates).
    execFileSync(join(PG_BIN, 'psql'), [PG_URL, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c',
      'SET client_min_messages = warning; DROP TABLE IF EXISTS sb_spend_logs, sb_key_model_spend, sb_keys, sb_teams, sb_users, sb_customers, sb_changes, sb_schema'], { stdio: 'ignore' });
  },
});
