// Wildcard aliases, the context-window check before the call, and the time-to-first-byte
// timeout.
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { PROVIDER_KEY, fakeModel, recordedBody, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      { model_name: 'fake/*', litellm_params: { model: 'openai/*', api_base: fake.base('delay_ms=1'), api_key: PROVIDER_KEY } },
      { model_name: '*', litellm_params: { model: 'openai/catchall-*', api_base: fake.base('delay_ms=2'), api_key: PROVIDER_KEY } },
      { ...fakeModel(fake, 'small', 'delay_ms=3'), model_info: { max_input_tokens: 50 } },
      fakeModel(fake, 'big', 'delay_ms=4'),
      fakeModel(fake, 'slowstart', 'delay_ms=1500', { ttft_timeout: 0.2 }),
      fakeModel(fake, 'slowstart', 'delay_ms=5', { ttft_timeout: 0.2 }),
      fakeModel(fake, 'slowonly', 'delay_ms=1500', { ttft_timeout: 0.2 }),
    ],
    extra: {
      router_settings: {
        routing_strategy: 'round-robin',
        num_retries: 1,
        context_window_fallbacks: [{ small: ['big'] }],
        routing_rules: [
          { model: 'small', if: { 'request.last_user_message': { $regex: '(?i)python' } }, then: 'big' },
          { if: { 'metadata.plan': 'enterprise' }, then: 'big' },
          { if: { 'headers.x-team': { $in: ['research', 'ml'] } }, then: 'big' },
          { if: { 'headers.authorization': { $exists: true } }, then: 'slowonly' },
        ],
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

const chat = (model, content = 'hi', extra = {}) => ({
  model,
  messages: [{ role: 'user', content }],
  ...extra,
});

async function upstreamModel() {
  const last = await stack.fake.lastUpstream();
  return JSON.parse(recordedBody(last)).model;
}

test('a wildcard alias passes what its * matched on to the provider', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('fake/gpt-x') });
  assert.equal(r.status, 200, r.text);
  assert.equal(await upstreamModel(), 'gpt-x');
  // The catch-all takes what no other alias matches; the longer prefix wins otherwise.
  const c = await stack.gw.call('/v1/chat/completions', { body: chat('zzz-1') });
  assert.equal(c.status, 200, c.text);
  assert.equal(await upstreamModel(), 'catchall-zzz-1');
});

test('a prompt larger than the context window goes to context_window_fallbacks first', async () => {
  const short = await stack.gw.call('/v1/chat/completions', { body: chat('small') });
  assert.equal(short.status, 200);
  assert.equal(short.headers.get('x-switchboard-fallback'), null);
  await stack.fake.clear();
  const long = await stack.gw.call('/v1/chat/completions', { body: chat('small', 'word '.repeat(100)) });
  assert.equal(long.status, 200, long.text);
  assert.equal(long.headers.get('x-switchboard-fallback'), 'big');
  assert.equal(long.headers.get('x-switchboard-attempts'), '1');
  const paths = (await stack.fake.upstreamRequests()).map((q) => q.path);
  assert.deepEqual(paths.map((p) => p.includes('delay_ms=4')), [true], 'small was not called');
});

test('no first byte within ttft_timeout: a timeout the router retries elsewhere', async () => {
  for (let i = 0; i < 2; i++) {
    const t0 = Date.now();
    const r = await stack.gw.call('/v1/chat/completions', { body: chat('slowstart', 'hi', { stream: true }) });
    assert.equal(r.status, 200, r.text);
    assert.ok(Date.now() - t0 < 1200, 'did not wait for the slow deployment');
  }
  const t0 = Date.now();
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('slowonly') });
  const took = Date.now() - t0;
  assert.equal(r.status, 504, r.text);
  assert.equal(r.json.error.code, 'upstream_timeout');
  assert.ok(took < 1200, `answered after ${took} ms`);
});

test('routing_rules: a query on the request picks another alias', async () => {
  const py = await stack.gw.call('/v1/chat/completions', { body: chat('small', 'Write PYTHON please') });
  assert.equal(py.status, 200);
  const paths = (await stack.fake.upstreamRequests()).map((q) => q.path);
  assert.ok(paths[0].includes('delay_ms=4'), `served by big: ${paths}`);
  const line = await stack.gw.waitForAccess((l) => l.request_id === py.headers.get('x-request-id'));
  assert.equal(line.model, 'big');
  // A rule without a model applies to every alias; metadata may come from a header.
  await stack.fake.clear();
  const ent = await stack.gw.call('/v1/chat/completions', {
    body: chat('fake/gpt-x'),
    headers: { 'x-switchboard-metadata': '{"plan":"enterprise"}' },
  });
  assert.equal(ent.status, 200);
  assert.ok((await stack.fake.upstreamRequests())[0].path.includes('delay_ms=4'));
  // Request headers (never credentials: the rule on authorization does not hold).
  await stack.fake.clear();
  const team = await stack.gw.call('/v1/chat/completions', {
    body: chat('small', 'hello'),
    headers: { 'X-Team': 'ml' },
  });
  assert.equal(team.status, 200);
  assert.ok((await stack.fake.upstreamRequests())[0].path.includes('delay_ms=4'));
  // No rule holds: the alias as asked.
  await stack.fake.clear();
  const plain = await stack.gw.call('/v1/chat/completions', { body: chat('small', 'hello') });
  assert.equal(plain.status, 200);
  assert.ok((await stack.fake.upstreamRequests())[0].path.includes('delay_ms=3'));
});

test('x-switchboard-config conditional mode: conditions pick a named target', async () => {
  const cfg = {
    strategy: {
      mode: 'conditional',
      conditions: [
        { query: { 'metadata.tier': { $eq: 'gold' } }, then: 'fast' },
        { query: { 'params.temperature': { $gt: 1 } }, then: 'creative' },
      ],
      default: 'cheap',
    },
    targets: [
      { name: 'fast', model: 'big' },
      { name: 'creative', model: 'small' },
      { name: 'cheap', model: 'fake/*' },
    ],
  };
  const send = async (body, meta) => {
    await stack.fake.clear();
    const headers = { 'x-switchboard-config': JSON.stringify(cfg) };
    if (meta) headers['x-switchboard-metadata'] = JSON.stringify(meta);
    const r = await stack.gw.call('/v1/chat/completions', { body, headers });
    assert.equal(r.status, 200, r.text);
    return (await stack.fake.upstreamRequests())[0].path.match(/delay_ms=(\d)/)[1];
  };
  assert.equal(await send(chat('ignored'), { tier: 'gold' }), '4');
  assert.equal(await send({ ...chat('ignored'), temperature: 1.5 }), '3');
  assert.equal(await send(chat('ignored')), '1');
  const bad = await stack.gw.call('/v1/chat/completions', {
    body: chat('small'),
    headers: {
      'x-switchboard-config': JSON.stringify({
        strategy: { mode: 'conditional', conditions: [{ query: { a: { $regex: '(' } }, then: 'x' }] },
        targets: [{ name: 'x', model: 'big' }],
      }),
    },
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.code, 'invalid_config');
});
