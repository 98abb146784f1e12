// Virtual keys end to end: budgets that hold under 500 concurrent requests (with cancellations,
// timeouts and provider errors mixed in), the output limit lowered for a budget, RPM / TPM /
// parallel limits of keys, teams and models, model access, blocked / expired / deleted keys,
// end-user budgets, cost headers and missing prices, and the plaintext key kept out of the
// database, the journal and the logs. Real gateway, fake provider, SQLite.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fakeModel, recordedBody, sleep, startStack } from '../lib/harness.mjs';
import {
  admin,
  chat,
  chatBody,
  filesContaining,
  generateKey,
  hashKey,
  keyInfo,
  nano,
  settledKeyInfo,
  spendLogs,
  sqlite,
  sqliteJson,
  waitForFreshWindow,
  waitRows,
} from '../lib/keys.mjs';

// Prices: $1e-6 per input token, $1e-5 per output token (1000 and 10000 nano-dollars).
const PRICE_IN = 1000;
const PRICE_OUT = 10000;
const PRICES = { input_cost_per_token: PRICE_IN / 1e9, output_cost_per_token: PRICE_OUT / 1e9 };
// The fake answers "Hello from the switchboard demo provider. You said: hi": usage 1 prompt
// token (the words of the messages) and 9 completion tokens.
const COST = 1 * PRICE_IN + 9 * PRICE_OUT; // 91000 nano-dollars

/** The gateway's worst case for a body: input estimated at bytes/4 + 1, output at max_tokens. */
const reservation = (bodyText, maxTokens) => (Math.floor(Buffer.byteLength(bodyText) / 4) + 1) * PRICE_IN + maxTokens * PRICE_OUT;

let stack;
let dataDir;
const plaintexts = new Set();

async function newKey(body = {}) {
  const k = await generateKey(stack.gw, body);
  plaintexts.add(k.key);
  return k;
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'sb-keys-'));
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'ok', '', PRICES),
      fakeModel(fake, 'ok2', '', PRICES),
      fakeModel(fake, 'slow', 'drip_ms=100', PRICES),
      fakeModel(fake, 'delayed', 'delay_ms=1500', PRICES),
      fakeModel(fake, 'err', 'status=500', PRICES),
      fakeModel(fake, 'hang', 'hang=1', { ...PRICES, timeout: 1, stream_timeout: 1 }),
      fakeModel(fake, 'cut', 'cut_after=3', PRICES),
      fakeModel(fake, 'cut1', 'cut_after=4', PRICES),
      fakeModel(fake, 'slow1', 'drip_ms=200', PRICES),
      fakeModel(fake, 'free'), // no price: openai/gpt-fake is not in the table
    ],
    general_settings: { database_url: `sqlite://${dataDir}/sb.db` },
    extra: { router_settings: { num_retries: 0 } },
  });
});

after(async () => {
  await stack?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('budgets under concurrency', () => {
  test('500 concurrent requests, mixed with cancellations, timeouts and errors, never pass the budget; every 200 is billed; nothing stays reserved', { timeout: 120000 }, async () => {
    const gw = stack.gw;
    const B = 100 * COST;
    const { key, token } = await newKey({ key_alias: 'storm', max_budget: B / 1e9 });
    const kinds = [
      { model: 'ok' },
      { model: 'ok' },
      { model: 'ok', keyHeader: 'x-api-key' },
      { model: 'ok' },
      { model: 'ok', stream: true },
      { model: 'ok', stream: true },
      { model: 'slow', stream: true, abortAfterMs: 250 },
      { model: 'err' },
      { model: 'hang', stream: true },
      { model: 'cut', stream: true },
    ];
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) => {
        const k = kinds[i % kinds.length];
        return chat(gw, key, k.model, { ...k, extra: { max_tokens: 20 } }).then((r) => ({ ...r, kind: k }));
      }),
    );
    const byStatus = {};
    for (const r of results) byStatus[r.status] = (byStatus[r.status] || 0) + 1;
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 400 && r.json?.error?.code === 'budget_exceeded');
    assert.ok(ok.length >= 50, `at least half the budget's worth of requests served: ${JSON.stringify(byStatus)}`);
    assert.ok(refused.length > 0, `the budget refused some requests: ${JSON.stringify(byStatus)}`);
    for (const r of results) {
      assert.ok([200, 400, 408, 429, 500, 502, 503, 504].includes(r.status) || r.error, `unexpected answer ${r.status}: ${r.text.slice(0, 300)}`);
    }
    // Every 200 the clients saw is in the ledger; completed ones are billed (not zero).
    const ids = ok.map((r) => r.rid);
    assert.ok(ids.every(Boolean), 'every 200 carries x-request-id');
    const rows = await waitRows(gw, ids, { api_key: token });
    const info = await settledKeyInfo(gw, token);
    const spend = nano(info.spend);
    assert.ok(spend <= B, `spend ${spend} nano-dollars passed the budget ${B}`);
    assert.ok(spend >= B / 2, `the storm used the budget (spend ${spend} of ${B})`);
    const rowById = new Map(rows.map((r) => [r.request_id, r]));
    for (const r of ok) {
      const row = rowById.get(r.rid);
      // A client that went away mid-stream is recorded as 499 (client closed request).
      if (r.aborted) assert.ok([200, 499].includes(row.status), `ledger status of ${r.rid}: ${row.status}`);
      else assert.equal(row.status, 200, `ledger status of ${r.rid}`);
      if (r.complete && r.kind.model === 'ok') {
        assert.equal(nano(row.spend), COST, `a completed request is billed its usage: ${JSON.stringify(row)}`);
        assert.equal(row.completion_tokens, 9);
      }
      if (!r.kind.stream) {
        assert.equal(nano(r.headers.get('x-switchboard-response-cost')), COST, 'x-switchboard-response-cost');
      }
    }
    // The running total and the rows agree.
    const allRows = await spendLogs(gw, { api_key: token });
    const sum = allRows.reduce((a, r) => a + nano(r.spend), 0);
    assert.equal(sum, spend, 'the sum of the key\'s spend rows equals its spend');
    assert.equal(new Set(allRows.map((r) => r.request_id)).size, allRows.length, 'one row per request id');

    // Nothing is left reserved: a budget covering exactly one more worst case admits it unlowered.
    const body = JSON.stringify(chatBody('ok', { max_tokens: 20 }));
    const R = reservation(body, 20);
    await admin(gw, '/key/update', { key: token, max_budget: (spend + R) / 1e9 });
    const last = await chat(gw, key, 'ok', { body });
    assert.equal(last.status, 200, `the last request fits exactly: ${last.text}`);
    assert.equal(last.headers.get('x-switchboard-max-tokens-lowered'), null, 'not lowered: nothing was left reserved');
    // One nano-dollar less would not have fitted unlowered (the check above can fail).
    const after1 = nano((await settledKeyInfo(gw, token, { pred: (i) => nano(i.spend) === spend + COST })).spend);
    await admin(gw, '/key/update', { key: token, max_budget: (after1 + R - 1) / 1e9 });
    const lowered = await chat(gw, key, 'ok', { body });
    assert.equal(lowered.status, 200, lowered.text);
    assert.equal(lowered.headers.get('x-switchboard-max-tokens-lowered'), '19');
  });
});

describe('output limit lowered for the budget', () => {
  test('a budget that pays only a shorter answer lowers max_tokens upstream; below 16 tokens: 400 budget_exceeded', async () => {
    const gw = stack.gw;
    const body = JSON.stringify(chatBody('ok', { max_tokens: 100 }));
    const inCost = reservation(body, 0);
    const { key } = await newKey({ max_budget: (inCost + 40 * PRICE_OUT) / 1e9 });
    await stack.fake.clear();
    const r = await chat(gw, key, 'ok', { body });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-switchboard-max-tokens-lowered'), '40');
    const up = JSON.parse(recordedBody(await stack.fake.lastUpstream()).toString());
    assert.equal(up.max_tokens, 40, 'the upstream request carries the lowered limit');

    // A client without a limit: the assumed default goes upstream when a budget applies.
    const { key: roomy } = await newKey({ max_budget: 10 });
    await stack.fake.clear();
    const r2 = await chat(gw, roomy, 'ok');
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.headers.get('x-switchboard-max-tokens-lowered'), null);
    const up2 = JSON.parse(recordedBody(await stack.fake.lastUpstream()).toString());
    assert.equal(up2.max_completion_tokens ?? up2.max_tokens, 4096, `the reserved default goes upstream: ${JSON.stringify(up2)}`);

    // Only 15 output tokens fit: refused, and the provider is not called.
    const { key: poor } = await newKey({ max_budget: (inCost + 15 * PRICE_OUT) / 1e9 });
    await stack.fake.clear();
    const r3 = await chat(gw, poor, 'ok', { body });
    assert.equal(r3.status, 400, r3.text);
    assert.equal(r3.json.error.type, 'budget_exceeded');
    assert.equal(r3.json.error.code, 'budget_exceeded');
    assert.equal((await stack.fake.upstreamRequests()).length, 0, 'nothing went upstream');
    // 16 fit: admitted, lowered to 16.
    const { key: just } = await newKey({ max_budget: (inCost + 16 * PRICE_OUT) / 1e9 });
    const r4 = await chat(gw, just, 'ok', { body });
    assert.equal(r4.status, 200, r4.text);
    assert.equal(r4.headers.get('x-switchboard-max-tokens-lowered'), '16');
  });
});

describe('rate limits', () => {
  test('RPM limit 7 admits exactly 7 of 30 concurrent requests; the rest 429 with Retry-After; x-ratelimit-* headers', async () => {
    const gw = stack.gw;
    const { key } = await newKey({ rpm_limit: 7 });
    await waitForFreshWindow();
    const rs = await Promise.all(Array.from({ length: 30 }, (_, i) => chat(gw, key, 'ok', { stream: i % 3 === 0 })));
    const ok = rs.filter((r) => r.status === 200);
    const limited = rs.filter((r) => r.status === 429);
    assert.equal(ok.length, 7, `admitted: ${rs.map((r) => r.status).join(',')}`);
    assert.equal(limited.length, 23);
    for (const r of limited) {
      assert.equal(r.json.error.code, 'rate_limit_exceeded');
      const ra = Number(r.headers.get('retry-after'));
      assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 60, `Retry-After: ${r.headers.get('retry-after')}`);
    }
    const remaining = ok.map((r) => Number(r.headers.get('x-ratelimit-remaining-requests'))).sort();
    assert.deepEqual(remaining, [0, 1, 2, 3, 4, 5, 6], 'each admitted request saw its own remaining count');
    for (const r of ok) {
      assert.equal(r.headers.get('x-ratelimit-limit-requests'), '7');
      assert.match(r.headers.get('x-ratelimit-reset-requests') || '', /^\d+ms$/);
    }
  });

  test('TPM limit: requests pass while the minute\'s settled tokens are under the limit', async () => {
    const gw = stack.gw;
    const { key } = await newKey({ tpm_limit: 25 });
    await waitForFreshWindow();
    const statuses = [];
    const remainingTokens = [];
    for (let i = 0; i < 5; i++) {
      const r = await chat(gw, key, 'ok');
      statuses.push(r.status);
      if (r.status === 200) remainingTokens.push(r.headers.get('x-ratelimit-remaining-tokens'));
      else assert.equal(r.json.error.code, 'rate_limit_exceeded');
    }
    // Each request settles 10 tokens (1 prompt + 9 completion): 0, 10, 20 are under 25.
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    assert.deepEqual(remainingTokens, ['25', '15', '5']);
  });

  test('max_parallel_requests 2: of 6 concurrent slow requests exactly 2 are served; the slots come back', async () => {
    const gw = stack.gw;
    const { key } = await newKey({ max_parallel_requests: 2 });
    const rs = await Promise.all(Array.from({ length: 6 }, () => chat(gw, key, 'delayed')));
    assert.equal(rs.filter((r) => r.status === 200).length, 2, rs.map((r) => r.status).join(','));
    assert.equal(rs.filter((r) => r.status === 429).length, 4);
    const again = await Promise.all([chat(gw, key, 'ok'), chat(gw, key, 'ok')]);
    assert.deepEqual(again.map((r) => r.status), [200, 200], 'both slots were released');
  });

  test('a team\'s RPM limit is shared by its keys', async () => {
    const gw = stack.gw;
    await admin(gw, '/team/new', { team_id: 'team-rpm', rpm_limit: 3 });
    const a = await newKey({ team_id: 'team-rpm' });
    const b = await newKey({ team_id: 'team-rpm' });
    const other = await newKey({});
    await waitForFreshWindow();
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => chat(gw, i % 2 ? a.key : b.key, 'ok')));
    assert.equal(rs.filter((r) => r.status === 200).length, 3, rs.map((r) => r.status).join(','));
    assert.ok(rs.filter((r) => r.status === 429).every((r) => /team/.test(r.json.error.message)), 'the 429 names the team');
    assert.equal((await chat(gw, other.key, 'ok')).status, 200, 'a key outside the team is not limited');
  });

  test('model_rpm_limit limits one model of a key, not the others', async () => {
    const gw = stack.gw;
    const { key } = await newKey({ model_rpm_limit: { ok: 2 } });
    await waitForFreshWindow();
    const rs = await Promise.all(Array.from({ length: 6 }, () => chat(gw, key, 'ok')));
    assert.equal(rs.filter((r) => r.status === 200).length, 2, rs.map((r) => r.status).join(','));
    assert.equal(rs.filter((r) => r.status === 429).length, 4);
    const other = await Promise.all(Array.from({ length: 4 }, () => chat(gw, key, 'ok2')));
    assert.deepEqual(other.map((r) => r.status), [200, 200, 200, 200]);
  });
});

describe('access', () => {
  test('a model the key may not use: 403 naming the model', async () => {
    const { key } = await newKey({ models: ['ok'] });
    assert.equal((await chat(stack.gw, key, 'ok')).status, 200);
    const r = await chat(stack.gw, key, 'ok2');
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.error.code, 'model_not_allowed');
    assert.match(r.json.error.message, /ok2/);
  });

  test('/v1/models lists only what the key may call', async () => {
    const { key } = await newKey({ models: ['ok'] });
    const get = (path, k) => fetch(`${stack.gw.url}${path}`, { headers: { authorization: `Bearer ${k}` } });
    const list = await (await get('/v1/models', key)).json();
    assert.deepEqual(list.data.map((m) => m.id), ['ok']);
    assert.equal((await get('/v1/models/ok', key)).status, 200);
    assert.equal((await get('/v1/models/ok2', key)).status, 404);
    const all = await (await get('/v1/models', (await newKey({})).key)).json();
    assert.ok(all.data.length > 1 && all.data.some((m) => m.id === 'ok2'));
  });

  test('blocked, expired and deleted keys: 401; an unblocked key works again', async () => {
    const gw = stack.gw;
    const { key, token } = await newKey({});
    assert.equal((await chat(gw, key, 'ok')).status, 200);
    await admin(gw, '/key/block', { key: token });
    let r = await chat(gw, key, 'ok');
    assert.equal(r.status, 401, r.text);
    assert.equal(r.json.error.code, 'key_blocked');
    await admin(gw, '/key/unblock', { key: token });
    assert.equal((await chat(gw, key, 'ok')).status, 200);
    await admin(gw, '/key/delete', { keys: [token] });
    r = await chat(gw, key, 'ok');
    assert.equal(r.status, 401, r.text);

    const { key: brief } = await newKey({ duration: '1s' });
    await new Promise((res) => setTimeout(res, 2100));
    r = await chat(gw, brief, 'ok');
    assert.equal(r.status, 401, r.text);
    assert.equal(r.json.error.code, 'key_expired');
    r = await chat(gw, 'sk-never-issued-0123456789', 'ok');
    assert.equal(r.status, 401, r.text);
  });

  test('an end user\'s budget (/customer/new max_budget) binds requests naming it in `user`', async () => {
    const gw = stack.gw;
    await admin(gw, '/customer/new', { user_id: 'cust-budget', max_budget: 300000 / 1e9 });
    const { key } = await newKey({});
    const statuses = [];
    let last;
    for (let i = 0; i < 3; i++) {
      last = await chat(gw, key, 'ok', { extra: { user: 'cust-budget', max_tokens: 20 } });
      statuses.push(last.status);
    }
    // 300000: one worst case (about 220000) fits, then a lowered one, then not 16 tokens.
    assert.deepEqual(statuses, [200, 200, 400]);
    assert.equal(last.json.error.code, 'budget_exceeded');
    assert.match(last.json.error.message, /End User=cust-budget/);
    assert.equal((await chat(gw, key, 'ok', { extra: { user: 'someone-else', max_tokens: 20 } })).status, 200);
    // The store's total follows the ledger (applied every ~200 ms).
    let spend;
    for (let i = 0; i < 100; i++) {
      const r = await gw.call('/customer/info?end_user_id=cust-budget');
      assert.equal(r.status, 200, r.text);
      spend = nano(r.json.spend);
      if (spend === 2 * COST) break;
      await sleep(100);
    }
    assert.equal(spend, 2 * COST, 'the end user\'s spend');
  });
});

describe('cost', () => {
  test('x-switchboard-response-cost is the configured prices times the usage; streamed usage is billed', async () => {
    const gw = stack.gw;
    const { key, token } = await newKey({});
    const r = await chat(gw, key, 'ok');
    assert.equal(r.status, 200);
    assert.equal(r.json.usage.prompt_tokens, 1);
    assert.equal(r.json.usage.completion_tokens, 9);
    const expected = r.json.usage.prompt_tokens * PRICE_IN + r.json.usage.completion_tokens * PRICE_OUT;
    assert.equal(nano(r.headers.get('x-switchboard-response-cost')), expected);
    const s = await chat(gw, key, 'ok', { stream: true });
    assert.equal(s.status, 200);
    assert.ok(s.complete);
    assert.ok(!/"usage":\{/.test(s.text), 'the client did not ask for usage: none reaches it');
    const rows = await waitRows(gw, [r.rid, s.rid], { api_key: token });
    const row = rows.find((x) => x.request_id === s.rid);
    assert.equal(nano(row.spend), COST, `streamed usage billed: ${JSON.stringify(row)}`);
    assert.equal(row.completion_tokens, 9);
    assert.equal(row.cost_known, true);
  });

  test('a stream cut by the provider, or aborted by the client, is billed for what was generated', async () => {
    const gw = stack.gw;
    const { key, token } = await newKey({});
    const cut = await chat(gw, key, 'cut1', { stream: true });
    assert.equal(cut.status, 200, cut.text);
    assert.ok(!cut.complete, 'the stream was cut');
    assert.match(cut.text, /Hello/, 'some content reached the client');
    // The client goes away once the first words arrived.
    const ac = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(chatBody('slow1', { stream: true })),
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    const abortedId = res.headers.get('x-request-id');
    const reader = res.body.getReader();
    let seen = '';
    while (!/from/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += Buffer.from(value).toString('utf8');
    }
    ac.abort();
    await reader.cancel().catch(() => {});
    assert.match(seen, /Hello/);
    const rows = await waitRows(gw, [cut.rid, abortedId], { api_key: token });
    for (const id of [cut.rid, abortedId]) {
      const row = rows.find((x) => x.request_id === id);
      assert.ok(row.completion_tokens > 0 && nano(row.spend) > 0, `billed for the generated words, not zero: ${JSON.stringify(row)}`);
    }
    const info = await settledKeyInfo(gw, token);
    assert.ok(nano(info.spend) > 0, 'the key\'s spend counts them');
  });

  test('a model with no price: flagged in a header and a warning, billed 0, still in /spend/logs', async () => {
    const gw = stack.gw;
    const { key, token } = await newKey({ max_budget: 1 });
    const r = await chat(gw, key, 'free');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-switchboard-price-missing'), 'true');
    assert.equal(r.headers.get('x-switchboard-response-cost'), null, 'no cost claimed for an unpriced model');
    assert.ok(gw.logLines().some((l) => l.level === 'warn' && /no price/.test(l.msg) && /free/.test(l.msg)), 'a warning names the model');
    const [row] = await waitRows(gw, [r.rid], { request_id: r.rid });
    assert.equal(row.request_id, r.rid);
    assert.equal(row.cost_known, false);
    assert.equal(nano(row.spend), 0);
    assert.equal(row.completion_tokens, 9, 'tokens are recorded even without a price');
    assert.equal(nano((await keyInfo(gw, token)).spend), 0);
  });
});

describe('security', () => {
  const INJECTIONS = [
    "sk-' OR '1'='1",
    "'; DROP TABLE sb_keys; --",
    'sk-x" OR 1=1 --',
    "sk-') UNION SELECT token FROM sb_keys --",
    'sk-%27%3B--',
  ];

  test('SQL injection in x-api-key, Authorization and `user`: refused or stored verbatim, nothing broken', async () => {
    const gw = stack.gw;
    const db = `${dataDir}/sb.db`;
    const tablesBefore = sqlite(db, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name");
    const keysBefore = sqlite(db, 'SELECT count(*) FROM sb_keys');
    for (const inj of INJECTIONS) {
      for (const keyHeader of ['authorization', 'x-api-key']) {
        const r = await chat(gw, inj, 'ok', { keyHeader });
        assert.equal(r.status, 401, `${keyHeader}: ${inj}: ${r.text}`);
      }
    }
    const { key, token } = await newKey({});
    const ids = [];
    for (const inj of INJECTIONS) {
      const r = await chat(gw, key, 'ok', { extra: { user: inj } });
      assert.equal(r.status, 200, r.text);
      ids.push([r.rid, inj]);
    }
    const rows = await waitRows(gw, ids.map(([id]) => id), { api_key: token });
    for (const [id, inj] of ids) assert.equal(rows.find((r) => r.request_id === id).end_user, inj, 'the end user is stored verbatim');
    assert.equal(sqlite(db, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"), tablesBefore);
    assert.equal(Number(sqlite(db, 'SELECT count(*) FROM sb_keys')), Number(keysBefore) + 1);
    const ledger = sqliteJson(db, `SELECT count(*) AS n FROM sb_spend_logs WHERE request_id IN (${ids.map(([id]) => `'${id.replace(/'/g, "''")}'`).join(',')})`);
    assert.equal(ledger[0].n, INJECTIONS.length);
  });

  test('after a run the plaintext keys are nowhere: not in the database files, the journal, stdout or stderr', async () => {
    assert.ok(plaintexts.size >= 10, 'the run used many keys');
    const gw = stack.gw;
    await stack.stop();
    const seen = [];
    for (const k of plaintexts) {
      const files = filesContaining(dataDir, k);
      if (files.length) seen.push(`${k.slice(0, 8)}… in ${files.join(', ')}`);
      if (gw.stdout.includes(k)) seen.push(`${k.slice(0, 8)}… on stdout`);
      if (gw.stderr.includes(k)) seen.push(`${k.slice(0, 8)}… on stderr`);
    }
    assert.deepEqual(seen, []);
    // The scan reads the right files: the hashes are there.
    const hashed = [...plaintexts].filter((k) => filesContaining(dataDir, hashKey(k)).length > 0);
    assert.ok(hashed.length >= plaintexts.size / 2, `key hashes found in the database files: ${hashed.length}`);
    // The database is sound after a graceful stop.
    assert.equal(sqlite(`${dataDir}/sb.db`, 'PRAGMA integrity_check'), 'ok');
  });
});
