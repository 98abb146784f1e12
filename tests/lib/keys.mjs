// Helpers for the virtual-key, budget and ledger tests: admin calls, chat calls with a key
// (plain, streamed, aborted), waiting for the ledger to settle, and reading the SQLite file.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MASTER_KEY, sleep } from './harness.mjs';

/** SHA-256 hex of a key: how the gateway stores it (LiteLLM's `token`). */
export const hashKey = (key) => createHash('sha256').update(key).digest('hex');

/** Dollars (a JSON real from the admin API) to integer nano-dollars. */
export const nano = (dollars) => Math.round(Number(dollars) * 1e9);

/** POST /key/generate with the master key; returns { key, token, json }. */
export async function generateKey(gw, body = {}, adminKey = MASTER_KEY) {
  const r = await gw.call('/key/generate', { body, key: adminKey });
  assert.equal(r.status, 200, `/key/generate: ${r.text}`);
  assert.match(r.json.key, /^sk-/, 'a generated key starts with sk-');
  return { key: r.json.key, token: r.json.token || hashKey(r.json.key), json: r.json };
}

export async function admin(gw, path, body, expectStatus = 200) {
  const r = await gw.call(path, { body });
  if (expectStatus !== null) assert.equal(r.status, expectStatus, `${path}: ${r.text}`);
  return r;
}

/** The key's record from GET /key/info (spend in dollars). */
export async function keyInfo(gw, keyOrHash) {
  const r = await gw.call(`/key/info?key=${encodeURIComponent(keyOrHash)}`);
  assert.equal(r.status, 200, `/key/info: ${r.text}`);
  return r.json.info;
}

/**
 * Polls GET /key/info until the key's spend has not changed for `quietMs` (the ledger applies
 * journals every ~200 ms) and, if given, pred(info) holds. Returns the info.
 */
export async function settledKeyInfo(gw, keyOrHash, { quietMs = 800, timeoutMs = 20000, pred } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = await keyInfo(gw, keyOrHash);
  let since = Date.now();
  for (;;) {
    await sleep(150);
    const cur = await keyInfo(gw, keyOrHash);
    if (cur.spend !== last.spend) {
      last = cur;
      since = Date.now();
    } else if (Date.now() - since >= quietMs && (!pred || pred(cur))) {
      return cur;
    }
    if (Date.now() > deadline) {
      assert.fail(`key spend did not settle within ${timeoutMs} ms: ${JSON.stringify(cur)}`);
    }
  }
}

/** GET /spend/logs with a query object; returns the rows. */
export async function spendLogs(gw, query = {}) {
  const qs = new URLSearchParams({ limit: '100000', ...query }).toString();
  const r = await gw.call(`/spend/logs?${qs}`);
  assert.equal(r.status, 200, `/spend/logs: ${r.text}`);
  assert.ok(Array.isArray(r.json), `/spend/logs answers a list: ${r.text.slice(0, 300)}`);
  return r.json;
}

/** Polls until every request id is among the spend rows of `query`; returns the rows. */
export async function waitRows(gw, requestIds, query = {}, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await spendLogs(gw, query);
    const have = new Set(rows.map((r) => r.request_id));
    const missing = requestIds.filter((id) => !have.has(id));
    if (missing.length === 0) return rows;
    if (Date.now() > deadline) {
      assert.fail(`${missing.length} of ${requestIds.length} request ids never reached the ledger, e.g. ${missing.slice(0, 5).join(' ')}`);
    }
    await sleep(200);
  }
}

export const chatBody = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

/**
 * One chat completion with a virtual key. opts: stream, extra body fields, headers,
 * abortAfterMs (a stream is aborted that long after its head arrived), keyHeader
 * ('authorization' | 'x-api-key').
 * Returns { status, headers, text, json, rid, complete, aborted, error }.
 */
export async function chat(gw, key, model, { stream = false, extra = {}, headers = {}, abortAfterMs, keyHeader = 'authorization', body } = {}) {
  const h = { 'content-type': 'application/json', ...headers };
  if (key !== null && key !== undefined) {
    if (keyHeader === 'authorization') h.authorization = `Bearer ${key}`;
    else h[keyHeader] = key;
  }
  const payload = body ?? JSON.stringify(chatBody(model, { ...(stream ? { stream: true } : {}), ...extra }));
  const ac = new AbortController();
  const out = { status: 0, headers: null, text: '', json: undefined, rid: null, complete: false, aborted: false, error: null };
  try {
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: h, body: payload, signal: ac.signal });
    out.status = res.status;
    out.headers = res.headers;
    out.rid = res.headers.get('x-request-id');
    if (abortAfterMs !== undefined) {
      const t = setTimeout(() => {
        out.aborted = true;
        ac.abort();
      }, abortAfterMs);
      try {
        out.text = await res.text();
      } finally {
        clearTimeout(t);
      }
    } else {
      out.text = await res.text();
    }
    out.complete = stream ? /data: \[DONE\]/.test(out.text) : true;
    try {
      out.json = JSON.parse(out.text);
    } catch {
      /* a stream */
    }
  } catch (e) {
    out.error = e;
  }
  return out;
}

/** Waits until the current wall-clock minute has more than `needMs` left (rate windows are
 * minutes since the epoch), so a burst does not straddle a window boundary. */
export async function waitForFreshWindow(needMs = 15000) {
  const left = 60000 - (Date.now() % 60000);
  if (left <= needMs) await sleep(left + 200);
}

/** Runs `sqlite3 -json FILE SQL`; returns the rows (JSON). */
export function sqliteJson(file, sql) {
  const out = execFileSync('sqlite3', ['-json', file, sql], { encoding: 'utf8' });
  return out.trim() === '' ? [] : JSON.parse(out);
}

export function sqlite(file, sql) {
  return execFileSync('sqlite3', [file, sql], { encoding: 'utf8' }).trim();
}

/** Every regular file under dir (recursively). */
export function filesUnder(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

/** Files under dir whose bytes contain needle. */
export function filesContaining(dir, needle) {
  const n = Buffer.from(needle);
  return filesUnder(dir).filter((f) => readFileSync(f).includes(n));
}

/** Runs `n` tasks with at most `width` in flight. */
export async function pool(n, width, task) {
  const results = new Array(n);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
  return results;
}
