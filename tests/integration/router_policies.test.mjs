// retry_policy per error class, fallbacks chosen by the provider's error (context length,
// content policy), max_fallbacks, and a stress run with mixed faults in which every request
// is answered exactly once.
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { RawConn, fakeModel, rawRequest, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'long', 'status=400,code=context_length_exceeded'),
      fakeModel(fake, 'long-ctx', 'delay_ms=1'),
      fakeModel(fake, 'filtered', 'status=400,code=content_policy_violation'),
      fakeModel(fake, 'lenient', 'delay_ms=2'),
      fakeModel(fake, 'plain-bad', 'status=400'),
      fakeModel(fake, 'throttled', 'status=429'),
      fakeModel(fake, 'broken', 'status=500'),
      fakeModel(fake, 'spare1', 'status=502'),
      fakeModel(fake, 'spare2', 'status=503'),
      fakeModel(fake, 'spare3', 'delay_ms=3'),
      // The stress mix: one alias over several faulty deployments, with a fallback.
      fakeModel(fake, 'mixed', ''),
      fakeModel(fake, 'mixed', 'status=500,retry_after_ms=0'),
      fakeModel(fake, 'mixed', 'hang=1', { timeout: 0.3, stream_timeout: 0.3 }),
      fakeModel(fake, 'mixed', 'fixture=chat_stream_text.sse,cut_after=2'),
      fakeModel(fake, 'mixed', 'delay_ms=20'),
      fakeModel(fake, 'mixed-backup', 'delay_ms=4'),
    ],
    extra: {
      router_settings: {
        num_retries: 2,
        allowed_fails: 1000, // the stress run measures retries and answers, not cooldowns
        retry_policy: { RateLimitErrorRetries: 0, InternalServerErrorRetries: 1 },
        fallbacks: [{ broken: ['spare1', 'spare2', 'spare3'] }, { mixed: ['mixed-backup'] }, { 'plain-bad': ['spare3'] }],
        context_window_fallbacks: [{ long: ['long-ctx'] }],
        content_policy_fallbacks: [{ filtered: ['lenient'] }],
        max_fallbacks: 2,
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

test('a context-length error goes to context_window_fallbacks, without a retry', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('long') });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-switchboard-fallback'), 'long-ctx');
  assert.equal(r.headers.get('x-switchboard-attempts'), '2');
});

test('a content-policy refusal goes to content_policy_fallbacks', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('filtered') });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-switchboard-fallback'), 'lenient');
});

test('a plain 400 is answered as it is: no retry, no fallback even when one is listed', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('plain-bad') });
  assert.equal(r.status, 400);
  assert.equal(r.headers.get('x-switchboard-attempts'), '1');
});

test('retry_policy: RateLimitErrorRetries 0 means one call only', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('throttled') });
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('x-switchboard-attempts'), '1');
  assert.equal((await stack.fake.upstreamRequests()).length, 1);
});

test('retry_policy and max_fallbacks bound the calls: 1 + 1 retry + 2 fallbacks', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('broken') });
  // spare1 (502) and spare2 (503) fail; max_fallbacks 2 stops before spare3.
  assert.equal(r.status, 503, r.text);
  assert.equal(r.headers.get('x-switchboard-attempts'), '4');
  assert.equal((await stack.fake.upstreamRequests()).length, 4);
});

test("the request's own fallbacks replace the config's, and never reach the provider", async () => {
  const body = '{"fallbacks" : ["spare3"],"model":"broken","messages":[{"role":"user","content":"hi"}]}';
  const r = await stack.gw.call('/v1/chat/completions', { body });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-switchboard-fallback'), 'spare3');
  const reqs = await stack.fake.upstreamRequests();
  assert.equal(reqs.length, 3); // broken, its retry, spare3
  for (const q of reqs) {
    const sent = JSON.parse(q.body);
    assert.equal(sent.fallbacks, undefined, q.body);
  }
  // Last member, objects with "model", and a stream: still valid JSON upstream.
  await stack.fake.clear();
  const s2 = await stack.gw.call('/v1/chat/completions', {
    body: '{"model":"throttled","stream":true,"messages":[{"role":"user","content":"hi"}],"fallbacks":[{"model":"spare3"}]}',
  });
  assert.equal(s2.status, 200, s2.text);
  assert.equal(s2.headers.get('x-switchboard-fallback'), 'spare3');
  for (const q of await stack.fake.upstreamRequests()) {
    const sent = JSON.parse(q.body);
    assert.equal(sent.fallbacks, undefined);
    assert.equal(sent.stream_options.include_usage, true);
  }
  const bad = await stack.gw.call('/v1/chat/completions', {
    body: '{"model":"broken","fallbacks":["nope"],"messages":[]}',
  });
  assert.equal(bad.status, 404);
  assert.equal(bad.json.error.param, 'fallbacks');
});

test('x-switchboard-config: fallback and loadbalance targets, retry attempts', async () => {
  const call = (cfg, model = 'whatever-the-body-says') =>
    stack.gw.call('/v1/chat/completions', {
      body: chat(model),
      headers: { 'x-switchboard-config': JSON.stringify(cfg) },
    });
  const a = await call({ strategy: { mode: 'fallback' }, targets: [{ model: 'broken' }, { model: 'spare3' }] });
  assert.equal(a.status, 200, a.text);
  assert.equal(a.headers.get('x-switchboard-fallback'), 'spare3');
  assert.equal(a.headers.get('x-switchboard-attempts'), '3'); // broken, its retry, spare3
  const b = await call({
    strategy: { mode: 'fallback' },
    targets: [{ model: 'broken' }, { override_params: { model: 'spare3' } }],
    retry: { attempts: 0 },
  });
  assert.equal(b.status, 200);
  assert.equal(b.headers.get('x-switchboard-attempts'), '2');
  for (let i = 0; i < 5; i++) {
    const c = await call({
      strategy: { mode: 'loadbalance' },
      targets: [{ model: 'spare3', weight: 1 }, { model: 'broken', weight: 0 }],
    });
    assert.equal(c.status, 200);
    assert.equal(c.headers.get('x-switchboard-attempts'), '1');
  }
  for (const bad of ['not json', '{"strategy":{"mode":"random"},"targets":[{"model":"spare3"}]}',
    '{"strategy":{"mode":"fallback"},"targets":[{"model":"nope"}]}', '{"retry":{"attempts":99}}']) {
    const r = await stack.gw.call('/v1/chat/completions', { body: chat('spare3'), headers: { 'x-switchboard-config': bad } });
    assert.equal(r.status, 400, bad);
    assert.equal(r.json.error.code, 'invalid_config');
  }
});

test('stress: 2000 requests over faulty deployments, every one answered exactly once', async () => {
  const n = 2000;
  const ids = [];
  const results = [];
  for (let i = 0; i < n; i += 30) {
    const batch = Array.from({ length: Math.min(30, n - i) }, async (_, k) => {
      const id = `stress-${i + k}`;
      ids.push(id);
      const stream = (i + k) % 3 === 0;
      const c = await RawConn.open(stack.gw.port);
      try {
        await c.write(rawRequest('POST', '/v1/chat/completions', {
          body: JSON.stringify(chat('mixed', { stream })),
          headers: [['x-request-id', id]],
        }));
        const r = await c.readResponse(15000);
        return { id, status: r.status, text: r.text, stream, headers: r.headers };
      } finally {
        c.destroy();
      }
    });
    results.push(...(await Promise.all(batch)));
  }
  assert.equal(results.length, n);
  let ok = 0;
  for (const r of results) {
    const attempts = Number(r.headers['x-switchboard-attempts'] || 0);
    // 1 + num_retries (InternalServerErrorRetries 1, timeouts 2) + 1 fallback.
    assert.ok(attempts >= 1 && attempts <= 4, `${r.id}: ${attempts} attempts`);
    if (r.status === 200) ok++;
    else assert.ok([500, 502, 503, 504].includes(r.status), `${r.id}: ${r.status} ${r.text}`);
  }
  // Retries and the fallback make nearly everything succeed.
  assert.ok(ok >= n * 0.9, `${ok} of ${n} succeeded`);
  // The access log has exactly one line per request.
  // Lines are written once per loop turn, a moment after the responses: wait for all.
  const stressLines = () =>
    stack.gw.accessLines().filter((l) => String(l.request_id).startsWith('stress-'));
  await stack.gw.child.waitFor(() => stressLines().length >= n, 10000, `${n} access log lines`);
  const lines = stressLines();
  assert.equal(lines.length, n);
  assert.equal(new Set(lines.map((l) => l.request_id)).size, n);
  // The attempts header is written when the response starts; the access log counts every
  // call made. Equal counts mean no call was made once a response (a stream) had begun.
  const byId = new Map(lines.map((l) => [l.request_id, l]));
  let cutStreams = 0;
  for (const r of results) {
    assert.equal(byId.get(r.id).attempts, Number(r.headers['x-switchboard-attempts']), r.id);
    if (r.stream && r.status === 200 && r.text.includes('data: {"error"')) cutStreams++;
  }
  assert.ok(cutStreams > 0, 'some streams were cut after their first bytes');
});
