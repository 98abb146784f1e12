// Retries, fallbacks and cooldowns: each fires exactly when it should, the number of upstream
// calls never exceeds 1 + retries + fallbacks, and nothing is retried once a byte reached the
// client. Upstream calls are counted from the fake provider's own recording, by path (each
// deployment's directives make its path distinct).
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { fakeModel, sleep, sseData, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      // Two deployments, one failing: a retry goes to the other one.
      fakeModel(fake, 'flaky', 'status=500'),
      fakeModel(fake, 'flaky'),
      // One deployment asking to wait: the retry waits out Retry-After on the same one.
      fakeModel(fake, 'limited', 'status=429,retry_after=1'),
      // A client error: never retried, never a fallback.
      fakeModel(fake, 'bad', 'status=400'),
      // Failing alias with a fallback.
      fakeModel(fake, 'primary', 'status=503'),
      fakeModel(fake, 'backup', 'delay_ms=1'),
      // Streams cut after two events: bytes reached the client, so no retry.
      fakeModel(fake, 'cutter', 'fixture=chat_stream_text.sse,cut_after=2'),
      fakeModel(fake, 'cutter', 'fixture=chat_stream_text.sse,cut_after=3'),
      // Both deployments failing: after both cool down, the alias fails fast.
      fakeModel(fake, 'dead', 'status=500,retry_after_ms=0'),
      fakeModel(fake, 'dead', 'status=502'),
    ],
    extra: {
      router_settings: {
        routing_strategy: 'round-robin', // deterministic: which deployment fails first is known
        num_retries: 1,
        allowed_fails: 1,
        cooldown_time: 1.5,
        fallbacks: [{ primary: ['backup'] }],
      },
    },
  });
});

after(async () => {
  await stack?.stop();
});

beforeEach(async () => {
  await stack.fake.clear();
});

const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

async function calls(fragment) {
  const reqs = await stack.fake.upstreamRequests();
  return reqs.filter((q) => q.path.includes(fragment)).length;
}

test('a failing deployment is retried on the other one of its group', async () => {
  for (let i = 0; i < 6; i++) {
    const r = await stack.gw.call('/v1/chat/completions', { body: chat('flaky') });
    assert.equal(r.status, 200, r.text);
    const attempts = Number(r.headers.get('x-switchboard-attempts'));
    assert.ok(attempts === 1 || attempts === 2, `attempts ${attempts}`);
  }
  // The failing deployment cooled down after its first failure (allowed_fails: 1): it was
  // called once, not on every other request.
  assert.equal(await calls('status=500/'), 1);
  assert.equal((await stack.fake.upstreamRequests()).length, 7);
});

test('Retry-After is waited out before the same deployment is called again', async () => {
  const t0 = Date.now();
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('limited') });
  const took = Date.now() - t0;
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('retry-after'), '1');
  assert.equal(r.headers.get('x-switchboard-attempts'), '2');
  assert.ok(took >= 950, `retried after ${took} ms, before Retry-After`);
  assert.equal(await calls('status=429'), 2);
});

test('a 400 is answered at once: no retry, no fallback', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('bad') });
  assert.equal(r.status, 400);
  assert.equal(r.headers.get('x-switchboard-attempts'), '1');
  assert.equal(await calls('status=400'), 1);
});

test('an alias that keeps failing falls back: attempts = 1 + retries + fallbacks', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('primary') });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-switchboard-fallback'), 'backup');
  assert.equal(r.headers.get('x-switchboard-attempts'), '3');
  assert.equal(await calls('status=503'), 2);
  assert.equal(await calls('delay_ms=1'), 1);
  const line = await stack.gw.waitForAccess((l) => l.fallback_model === 'backup');
  assert.equal(line.model, 'primary');
  assert.equal(line.attempts, 3);
  // The deployment view and the metrics count the fallback call.
  const view = await stack.gw.call('/router/deployments');
  const backup = view.json.deployments.find((d) => d.model_name === 'backup');
  assert.equal(backup.fallback_calls, 1);
  assert.equal(backup.calls, 1);
  const primary = view.json.deployments.find((d) => d.model_name === 'primary');
  assert.equal(primary.calls, 2);
  const m = await stack.gw.call('/metrics', { key: null });
  assert.match(m.text, /^switchboard_deployment_fallback_calls_total\{model="backup",[^}]*\} 1$/m);
  assert.match(m.text, /^switchboard_deployment_calls_total\{model="primary",[^}]*\} 2$/m);
});

test('a stream that fails after its first bytes is never retried', async () => {
  for (let i = 0; i < 2; i++) {
    const r = await stack.gw.call('/v1/chat/completions', { body: chat('cutter', { stream: true }) });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-switchboard-attempts'), '1');
    const events = sseData(r.text);
    assert.ok(JSON.parse(events[events.length - 1]).error, r.text);
  }
  assert.equal((await stack.fake.upstreamRequests()).length, 2);
  // Failures after the first byte still count toward cooldowns (allowed_fails: 1 here).
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('cutter', { stream: true }) });
  assert.equal(r.status, 503);
  assert.equal((await stack.fake.upstreamRequests()).length, 2);
});

test('when every deployment is cooling down the alias fails fast, then probes again', async () => {
  const a = await stack.gw.call('/v1/chat/completions', { body: chat('dead') });
  assert.ok(a.status === 500 || a.status === 502, a.text);
  assert.equal(a.headers.get('x-switchboard-attempts'), '2');
  const t0 = Date.now();
  const b = await stack.gw.call('/v1/chat/completions', { body: chat('dead') });
  assert.equal(b.status, 503, b.text);
  assert.equal(b.json.error.code, 'no_deployments_available');
  assert.ok(Number(b.headers.get('retry-after')) >= 1);
  assert.ok(Date.now() - t0 < 500, 'answered without calling a provider');
  assert.equal((await stack.fake.upstreamRequests()).length, 2);
  await sleep(1700);
  const c = await stack.gw.call('/v1/chat/completions', { body: chat('dead') });
  assert.ok(c.status === 500 || c.status === 502, `after the cooldown: ${c.text}`);
  // Half-open: the probe failed, so both are cooling again at once.
  const d = await stack.gw.call('/v1/chat/completions', { body: chat('dead') });
  assert.equal(d.status, 503);
});
