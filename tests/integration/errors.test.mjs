// Gateway-made errors: every row of the contract's error table, in the OpenAI envelope.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  MASTER_KEY,
  PROVIDER_KEY,
  assertEnvelope,
  fakeModel,
  freePort,
  rawExchange,
  rawRequest,
  startStack,
} from '../lib/harness.mjs';

const UNSET_ENV = 'SB_TEST_UNSET_PROVIDER_KEY_51';
let stack;
let refusedPort;

before(async () => {
  delete process.env[UNSET_ENV];
  refusedPort = await freePort();
  stack = await startStack({
    general_settings: { max_request_size_mb: 1 },
    server: { max_header_bytes: 16384 },
    models: (fake) => [
      fakeModel(fake, 'demo'),
      fakeModel(fake, 'disabled', '', { api_key: `os.environ/${UNSET_ENV}` }),
      {
        model_name: 'refused',
        litellm_params: {
          model: 'openai/gpt-fake',
          api_base: `http://127.0.0.1:${refusedPort}/v1`,
          api_key: PROVIDER_KEY,
        },
      },
      fakeModel(fake, 'hang', 'hang=1', { timeout: 1 }),
      fakeModel(fake, 'malformed', 'malformed=1'),
    ],
  });
});

after(async () => {
  await stack?.stop();
});

const chat = (model = 'demo') => `{"model":"${model}","messages":[{"role":"user","content":"hi"}]}`;

test('401 invalid_api_key: missing key, wrong key, wrong scheme', async () => {
  const cases = [
    { key: null },
    { key: 'sk-wrong' },
    { key: `${MASTER_KEY}x` },
    { key: MASTER_KEY.slice(0, -1) },
    { key: null, headers: { authorization: `Basic ${MASTER_KEY}` } },
    { key: null, headers: { 'x-api-key': 'sk-wrong' } },
  ];
  for (const c of cases) {
    const res = await stack.gw.call('/v1/chat/completions', { body: chat(), ...c });
    assertEnvelope(res, 401, 'invalid_request_error', 'invalid_api_key');
  }
  const models = await stack.gw.call('/v1/models', { key: null });
  assertEnvelope(models, 401, 'invalid_request_error', 'invalid_api_key');
});

test('the master key is accepted as Bearer, x-api-key and api-key', async () => {
  for (const headers of [{}, { 'x-api-key': MASTER_KEY }, { 'api-key': MASTER_KEY }]) {
    const key = Object.keys(headers).length ? null : MASTER_KEY;
    const res = await stack.gw.call('/v1/chat/completions', { body: chat(), headers, key });
    assert.equal(res.status, 200, `${JSON.stringify(headers)}: ${res.text}`);
  }
});

test('health and metrics need no key', async () => {
  const live = await stack.gw.call('/health/liveliness', { key: null });
  assert.equal(live.status, 200);
  assert.equal(live.json, "I'm alive!");
  const ready = await stack.gw.call('/health/readiness', { key: null });
  assert.equal(ready.status, 200);
  assert.equal(ready.json.status, 'healthy');
  const metrics = await stack.gw.call('/metrics', { key: null });
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /switchboard_/);
});

test('400 invalid_json: not JSON, not an object, truncated, empty', async () => {
  for (const body of ['not json', '[1,2]', '"demo"', '42', 'null', '{"model":"demo"', '{"model":"demo",}', '']) {
    const res = await stack.gw.call('/v1/chat/completions', { body, method: 'POST' });
    assertEnvelope(res, 400, 'invalid_request_error', 'invalid_json');
  }
});

test('400 missing_model with param "model"', async () => {
  for (const body of ['{"messages":[{"role":"user","content":"hi"}]}', '{}', '{"metadata":{"model":"demo"}}']) {
    const res = await stack.gw.call('/v1/chat/completions', { body });
    assertEnvelope(res, 400, 'invalid_request_error', 'missing_model', 'model');
  }
});

test('400 invalid_json for two model keys', async () => {
  for (const body of ['{"model":"demo","model":"demo","messages":[{"role":"user","content":"hi"}]}', '{"model":"demo","messages":[{"role":"user","content":"hi"}],"model":"other"}']) {
    const res = await stack.gw.call('/v1/chat/completions', { body });
    assertEnvelope(res, 400, 'invalid_request_error', 'invalid_json');
  }
});

test('404 model_not_found with param "model"', async () => {
  for (const path of ['/v1/chat/completions', '/v1/embeddings', '/v1/completions']) {
    const res = await stack.gw.call(path, { body: '{"model":"no-such-model","messages":[{"role":"user","content":"hi"}],"input":"x","prompt":"x"}' });
    assertEnvelope(res, 404, 'invalid_request_error', 'model_not_found', 'model');
  }
});

test('503 model_unavailable when every deployment of the alias is disabled', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('disabled') });
  assertEnvelope(res, 503, 'api_error', 'model_unavailable');
});

test('404 not_found for unknown routes', async () => {
  for (const [method, path] of [['GET', '/v1/nope'], ['POST', '/v2/chat/completions'], ['GET', '/'], ['POST', '/v1/chat/completions/extra']]) {
    const res = await stack.gw.call(path, { method, body: method === 'POST' ? chat() : undefined });
    assertEnvelope(res, 404, 'invalid_request_error', 'not_found');
  }
});

test('405 method_not_allowed with an Allow header', async () => {
  const cases = [
    ['GET', '/v1/chat/completions', 'POST'],
    ['PUT', '/v1/embeddings', 'POST'],
    ['POST', '/v1/models', 'GET'],
    ['DELETE', '/v1/models', 'GET'],
  ];
  for (const [method, path, allowed] of cases) {
    const res = await stack.gw.call(path, { method, body: method === 'GET' ? undefined : chat() });
    assertEnvelope(res, 405, 'invalid_request_error', 'method_not_allowed');
    const allow = res.headers.get('allow');
    assert.ok(allow, `Allow header on ${method} ${path}`);
    assert.ok(allow.split(/\s*,\s*/).includes(allowed), `Allow: ${allow} should include ${allowed}`);
  }
});

test('413 request_too_large by Content-Length; connection closed; a new connection is served', async () => {
  const head = [
    'POST /v1/chat/completions HTTP/1.1',
    'Host: 127.0.0.1',
    `Authorization: Bearer ${MASTER_KEY}`,
    'Content-Type: application/json',
    `Content-Length: ${2 * 1024 * 1024}`,
    '',
    '',
  ].join('\r\n');
  const r = await rawExchange(stack.gw.port, [head, '{"model":"demo","messages":['], { timeoutMs: 5000 });
  assert.equal(r.responses.length, 1, `one response: ${r.data.toString('latin1')}`);
  const res = r.responses[0];
  assertEnvelope({ ...res, headers: new Map(Object.entries(res.headers)) }, 413, 'invalid_request_error', 'request_too_large');
  assert.equal(r.closed, true, 'connection closed after 413');
  const next = await stack.gw.call('/v1/chat/completions', { body: chat() });
  assert.equal(next.status, 200, 'the gateway still serves');
});

test('413 request_too_large for a chunked body that grows past the limit', async () => {
  const head = [
    'POST /v1/chat/completions HTTP/1.1',
    'Host: 127.0.0.1',
    `Authorization: Bearer ${MASTER_KEY}`,
    'Content-Type: application/json',
    'Transfer-Encoding: chunked',
    '',
    '',
  ].join('\r\n');
  const piece = Buffer.alloc(256 * 1024, 0x20);
  const chunk = Buffer.concat([Buffer.from(piece.length.toString(16) + '\r\n'), piece, Buffer.from('\r\n')]);
  const parts = [head, '1\r\n{\r\n'];
  for (let i = 0; i < 5; i++) parts.push(chunk, 20);
  const r = await rawExchange(stack.gw.port, parts, { timeoutMs: 5000 });
  assert.equal(r.responses.length, 1, `one response: ${r.data.toString('latin1').slice(0, 500)}`);
  const res = r.responses[0];
  assertEnvelope({ ...res, headers: new Map(Object.entries(res.headers)) }, 413, 'invalid_request_error', 'request_too_large');
  assert.equal(r.closed, true, 'connection closed after 413');
  const next = await stack.gw.call('/health/liveliness');
  assert.equal(next.status, 200);
});

test('a body just under the limit is accepted', async () => {
  const pad = 'x'.repeat(1024 * 1024 - 200);
  const res = await stack.gw.call('/v1/chat/completions', {
    body: `{"model":"demo","messages":[{"role":"user","content":"hi"}],"pad":"${pad}"}`,
  });
  assert.equal(res.status, 200, res.text.slice(0, 300));
});

test('431 headers_too_large; connection closed', async () => {
  const req = rawRequest('GET', '/v1/models', { headers: [['X-Big', 'a'.repeat(17000)]] });
  const r = await rawExchange(stack.gw.port, req, { timeoutMs: 5000 });
  assert.equal(r.responses.length, 1, r.data.toString('latin1').slice(0, 500));
  const res = r.responses[0];
  assertEnvelope({ ...res, headers: new Map(Object.entries(res.headers)) }, 431, 'invalid_request_error', 'headers_too_large');
  assert.equal(r.closed, true);
  const many = [];
  for (let i = 0; i < 400; i++) many.push([`X-H${i}`, 'v'.repeat(40)]);
  const r2 = await rawExchange(stack.gw.port, rawRequest('GET', '/v1/models', { headers: many }), { timeoutMs: 5000 });
  assert.equal(r2.responses.length, 1);
  assert.equal(r2.responses[0].status, 431);
  assert.equal(r2.closed, true);
});

test('502 upstream_unavailable when the provider refuses the connection', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('refused') });
  assertEnvelope(res, 502, 'api_error', 'upstream_unavailable');
  assert.ok(res.headers.get('x-request-id'));
});

test('504 upstream_timeout when the provider never answers', async () => {
  const t0 = Date.now();
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('hang') });
  assertEnvelope(res, 504, 'api_error', 'upstream_timeout');
  const took = Date.now() - t0;
  assert.ok(took >= 900 && took < 8000, `timeout honoured (took ${took} ms)`);
});

test('502 upstream_invalid_response for a 200 with invalid JSON', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('malformed') });
  assertEnvelope(res, 502, 'api_error', 'upstream_invalid_response');
});

test('error responses carry x-request-id (client value echoed)', async () => {
  const res = await stack.gw.call('/v1/chat/completions', {
    body: chat('no-such-model'),
    headers: { 'x-request-id': 'err-rid-77' },
  });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('x-request-id'), 'err-rid-77');
});
