// Limits and budgets shared by two gateway instances through Redis (general_settings.redis_url):
// RPM of a key and of a team exact across both, parallel requests across both, one budget
// that two instances together never overspend, Redis stopped or paused (each instance goes on
// alone, then shares again), and the holds of a crashed instance released when its heartbeat
// expires. Two real gateways on one SQLite file, a real redis-server, the fake provider.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Fake, Gateway, fakeModel, sleep } from '../lib/harness.mjs';
import { admin, chat, generateKey, hashKey, nano, waitForFreshWindow } from '../lib/keys.mjs';
import { Redis } from '../lib/redis.mjs';

const PRICES = { input_cost_per_token: 1e-6, output_cost_per_token: 1e-5 };
const COST = 91000; // the fake's answer: 1 prompt + 9 completion tokens, nano-dollars

let dir;
let fake;
let redis;
let a;
let b;
const keys = {};

async function startGateway(name) {
  const gw = await Gateway.start({
    model_list: [fakeModel(fake, 'ok', '', PRICES), fakeModel(fake, 'slow', 'delay_ms=1500', PRICES)],
    general_settings: { database_url: `sqlite://${join(dir, 'shared.db')}`, redis_url: redis.url },
    server: { journal_dir: join(dir, `journal-${name}`) },
  });
  // Every worker connects at start; wait until the first one logs nothing bad and serves.
  return gw;
}

/** n requests, alternating between the two gateways, all at once. */
async function burst(n, key, model = 'ok', extra = {}) {
  return Promise.all(Array.from({ length: n }, (_, i) => chat(i % 2 ? b : a, key, model, { extra })));
}

const count = (rs, status) => rs.filter((r) => r.status === status).length;

/** Script calls Redis ran so far (admissions and settlements, each call carrying a batch). */
function scriptCalls() {
  const info = redis.cli('INFO', 'commandstats');
  let n = 0;
  for (const m of info.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+)/gm)) n += Number(m[1]);
  return n;
}

async function kill9(gw) {
  gw.child.proc.kill('SIGKILL');
  await gw.child.exitPromise;
  gw.stopped = Promise.resolve({ timedOut: false, code: null, signal: 'SIGKILL' });
  rmSync(gw.dir, { recursive: true, force: true });
}

describe('limits and budgets shared through Redis', () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-shared-'));
    redis = await Redis.start();
    fake = await Fake.start();
    a = await startGateway('a');
    // Every key and team is made before the second instance starts (it loads them at start).
    const team = (await admin(a, '/team/new', { team_alias: 'shared-team', rpm_limit: 5 })).json;
    keys.rpm = await generateKey(a, { rpm_limit: 7 });
    keys.team1 = await generateKey(a, { team_id: team.team_id });
    keys.team2 = await generateKey(a, { team_id: team.team_id });
    keys.par = await generateKey(a, { max_parallel_requests: 2 });
    keys.budget = await generateKey(a, { max_budget: (10 * COST) / 1e9 });
    keys.down = await generateKey(a, { rpm_limit: 4 });
    keys.back = await generateKey(a, { rpm_limit: 3 });
    keys.paused = await generateKey(a, { rpm_limit: 100 });
    keys.crash = await generateKey(a, { max_parallel_requests: 1 });
    keys.tpm = await generateKey(a, { tpm_limit: 25 });
    keys.model = await generateKey(a, { model_rpm_limit: { ok: 3 } });
    keys.plain = await generateKey(a, {});
    keys.batch = await generateKey(a, { max_budget: 1000, max_parallel_requests: 1000, rpm_limit: 100000 });
    await admin(a, '/customer/new', { user_id: 'shared-end-user', max_budget: (4 * COST) / 1e9 });
    b = await startGateway('b');
  });

  after(async () => {
    for (const gw of [a, b]) if (gw && !gw.child.exited) await gw.stop().catch(() => {});
    await fake?.stop();
    await redis?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('RPM 7 admits exactly 7 of 30 requests spread over two instances', { timeout: 90000 }, async () => {
    await waitForFreshWindow(20000);
    const rs = await burst(30, keys.rpm.key);
    assert.equal(count(rs, 200), 7, rs.map((r) => r.status).join(' '));
    assert.equal(count(rs, 429), 23);
    const refused = rs.find((r) => r.status === 429);
    assert.match(refused.json.error.message, /Rate limit reached for key\. Limit of 7 requests per minute/);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    // x-ratelimit-remaining-requests counts both instances' requests.
    const remaining = rs.filter((r) => r.status === 200).map((r) => Number(r.headers.get('x-ratelimit-remaining-requests')));
    assert.deepEqual(remaining.sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6]);
  });

  test("a team's RPM holds across instances and across the team's keys", { timeout: 90000 }, async () => {
    await waitForFreshWindow(20000);
    const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => chat(i % 2 ? b : a, i % 4 < 2 ? keys.team1.key : keys.team2.key, 'ok')));
    assert.equal(count(rs, 200), 5, rs.map((r) => r.status).join(' '));
    assert.match(rs.find((r) => r.status === 429).json.error.message, /Rate limit reached for team/);
  });

  test('max_parallel_requests 2 holds across instances; the slots come back', { timeout: 60000 }, async () => {
    const rs = await burst(6, keys.par.key, 'slow');
    assert.equal(count(rs, 200), 2, rs.map((r) => r.status).join(' '));
    assert.match(rs.find((r) => r.status === 429).json.error.message, /Max parallel request limit reached for key/);
    const again = await burst(2, keys.par.key, 'slow');
    assert.deepEqual(again.map((r) => r.status), [200, 200]);
    assert.equal(redis.cli('HLEN', `sb:k:${keys.par.token}:p`), '0', 'no slot left held');
  });

  test('one budget, two instances, 120 concurrent requests: spend never passes it', { timeout: 90000 }, async () => {
    const budget = 10 * COST;
    const rs = await burst(120, keys.budget.key, 'ok', { max_tokens: 9 });
    const ok = rs.filter((r) => r.status === 200);
    const spent = ok.reduce((s, r) => s + nano(r.headers.get('x-switchboard-response-cost')), 0);
    assert.ok(ok.length > 0, 'some requests are served');
    assert.ok(spent <= budget, `spent ${spent} > budget ${budget} (${ok.length} served)`);
    assert.ok(ok.length <= 10, `${ok.length} served: more than the budget pays for`);
    for (const r of rs.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.type, 'budget_exceeded');
    }
    // Settled in Redis: the shared spend is what was billed, nothing stays reserved.
    const hash = hashKey(keys.budget.key);
    assert.equal(Number(redis.cli('HGET', `sb:k:${hash}:b`, 'spend')), spent);
    assert.equal(redis.cli('HLEN', `sb:k:${hash}:v`), '0');
    // Spent out: both instances refuse.
    for (const gw of [a, b]) {
      const r = await chat(gw, keys.budget.key, 'ok', { extra: { max_tokens: 9 } });
      if (spent + 1000 * 30 + 9 * 10000 > budget) assert.equal(r.status, 400, r.text);
    }
  });

  test('a burst is settled in batches, each request exactly once', { timeout: 60000 }, async (t) => {
    const hash = hashKey(keys.batch.key);
    const before = scriptCalls();
    const n = 300;
    // Answers that come back together end together: several in one pass of a worker's loop.
    const rs = await burst(n, keys.batch.key, 'ok', { max_tokens: 9 });
    assert.equal(count(rs, 200), n, rs.map((r) => r.status).join(' '));
    const billed = rs.reduce((s, r) => s + nano(r.headers.get('x-switchboard-response-cost')), 0);
    // The settlements follow the responses: wait until nothing is held.
    const deadline = Date.now() + 10000;
    while (redis.cli('HLEN', `sb:k:${hash}:p`) !== '0' && Date.now() < deadline) await sleep(50);
    const logged = [a, b].flatMap((gw) => gw.logLines().filter((l) => /redis/.test(l.msg)).map((l) => l.msg));
    assert.equal(redis.cli('HLEN', `sb:k:${hash}:p`), '0', `no in-flight slot left; ${logged.join('; ')}`);
    assert.equal(redis.cli('HLEN', `sb:k:${hash}:v`), '0', 'no reservation left');
    assert.equal(Number(redis.cli('HGET', `sb:k:${hash}:b`, 'spend')), billed);
    // A call each to admit and to settle would be 2n; requests admitted or ended in the same
    // pass share one (how many depends on how they arrive; the unit test pins the batch sizes
    // down).
    const calls = scriptCalls() - before;
    t.diagnostic(`${calls} script calls for ${n} requests`);
    assert.ok(calls >= 2 && calls < 2 * n, `${calls} script calls for ${n} requests`);
  });

  test('TPM 25 across instances: the tokens settled on one count on the other', { timeout: 90000 }, async () => {
    await waitForFreshWindow(20000);
    const statuses = [];
    for (let i = 0; i < 4; i++) {
      const r = await chat(i % 2 ? b : a, keys.tpm.key, 'ok');
      statuses.push(r.status);
      await sleep(200); // the settlement reaches Redis after the response
    }
    // 10 tokens a request: 0, 10, 20 are under 25; at 30 the window is spent.
    assert.deepEqual(statuses, [200, 200, 200, 429]);
  });

  test("a key's per-model RPM holds across instances", { timeout: 90000 }, async () => {
    await waitForFreshWindow(20000);
    const rs = await burst(10, keys.model.key);
    assert.equal(count(rs, 200), 3, rs.map((r) => r.status).join(' '));
    assert.match(rs.find((r) => r.status === 429).json.error.message, /Rate limit reached for model/);
  });

  test("an end user's budget holds across instances", { timeout: 60000 }, async () => {
    const rs = await burst(40, keys.plain.key, 'ok', { user: 'shared-end-user', max_tokens: 9 });
    const ok = rs.filter((r) => r.status === 200);
    const spent = ok.reduce((s, r) => s + nano(r.headers.get('x-switchboard-response-cost')), 0);
    assert.ok(ok.length > 0 && spent <= 4 * COST, `spent ${spent} in ${ok.length} requests`);
    const refused = rs.find((r) => r.status === 400);
    assert.match(refused.json.error.message, /Budget has been exceeded! End User=shared-end-user/);
  });

  test('Redis stopped: each instance enforces its limits alone; back: shared again', { timeout: 90000 }, async () => {
    await redis.stop();
    await waitForFreshWindow(30000);
    const ra = await Promise.all(Array.from({ length: 6 }, () => chat(a, keys.down.key, 'ok')));
    const rb = await Promise.all(Array.from({ length: 6 }, () => chat(b, keys.down.key, 'ok')));
    assert.equal(count(ra, 200), 4, ra.map((r) => r.status).join(' '));
    assert.equal(count(rb, 200), 4, rb.map((r) => r.status).join(' '));
    for (const gw of [a, b])
      await gw.child.waitFor(() => gw.logLines().some((l) => /redis .*(cannot connect|connection lost|timed out)/.test(l.msg)), 10000, 'the outage logged');

    await redis.launch();
    for (const gw of [a, b])
      await gw.child.waitFor(() => gw.logLines().some((l) => /limits and budgets are shared again/.test(l.msg)), 20000, 'the reconnect logged');
    // Both workers of both instances reconnect within the backoff (at most 5 s).
    await sleep(6000);
    await waitForFreshWindow(20000);
    const rs = await burst(10, keys.back.key);
    assert.equal(count(rs, 200), 3, rs.map((r) => r.status).join(' '));
  });

  test('Redis paused: requests are served after the timeout, by each instance alone', { timeout: 60000 }, async () => {
    redis.signal('SIGSTOP');
    try {
      const rs = await burst(6, keys.paused.key);
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
    } finally {
      redis.signal('SIGCONT');
    }
    for (const gw of [a, b])
      await gw.child.waitFor(() => gw.logLines().filter((l) => /limits and budgets are shared again/.test(l.msg)).length >= 2, 20000, 'the reconnect logged');
  });

  test("a crashed instance's in-flight slot is released when its heartbeat expires", { timeout: 90000 }, async () => {
    await sleep(6000); // every worker reconnected after the pause
    const inflight = chat(a, keys.crash.key, 'slow');
    await sleep(500);
    const refused = await chat(b, keys.crash.key, 'ok');
    assert.equal(refused.status, 429, refused.text);
    await kill9(a);
    await inflight;
    // Redis drops the dead connection's slot once its 15 s heartbeat lapses.
    const deadline = Date.now() + 30000;
    let r;
    do {
      await sleep(1000);
      r = await chat(b, keys.crash.key, 'ok');
    } while (r.status === 429 && Date.now() < deadline);
    assert.equal(r.status, 200, r.text);
  });
});
