// Non-stream responses: the provider's body comes back byte for byte.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RawConn, fakeModel, fixture, rawRequest, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'raw', 'fixture=chat_text_raw_bytes.response.json'),
      fakeModel(fake, 'emb', 'fixture=embeddings_float.response.json'),
      fakeModel(fake, 'split', 'fixture=chat_text_raw_bytes.response.json,split=1'),
      fakeModel(fake, 'demo'),
    ],
  });
});

after(async () => {
  await stack?.stop();
});

test('chat response body is byte-identical to the provider fixture', async () => {
  const res = await stack.gw.call('/v1/chat/completions', {
    body: '{"model":"raw","messages":[{"role":"user","content":"hi"}]}',
    headers: { 'x-request-id': 'pass-rid-1' },
  });
  assert.equal(res.status, 200);
  assert.ok(res.buf.equals(fixture('openai/chat_text_raw_bytes.response.json')), `body differs:\n${res.text}`);
  assert.match(String(res.headers.get('content-type')), /^application\/json/);
  assert.equal(res.headers.get('x-request-id'), 'pass-rid-1');
});

test('raw bytes on the wire: framing is valid and the body is the fixture', async () => {
  const c = await RawConn.open(stack.gw.port);
  try {
    await c.write(rawRequest('POST', '/v1/chat/completions', { body: '{"model":"raw","messages":[{"role":"user","content":"hi"}]}' }));
    const r = await c.readResponse(10000);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(fixture('openai/chat_text_raw_bytes.response.json')));
    assert.ok(r.headers['x-request-id'], 'x-request-id present');
  } finally {
    c.destroy();
  }
});

test('a response the provider writes one byte at a time is still byte-identical', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: '{"model":"split","messages":[{"role":"user","content":"hi"}]}' });
  assert.equal(res.status, 200);
  assert.ok(res.buf.equals(fixture('openai/chat_text_raw_bytes.response.json')));
});

test('embeddings response body is byte-identical to the provider fixture', async () => {
  const res = await stack.gw.call('/v1/embeddings', { body: '{"model":"emb","input":"hello"}' });
  assert.equal(res.status, 200);
  assert.ok(res.buf.equals(fixture('openai/embeddings_float.response.json')), 'embeddings body differs');
});

test('default provider reply is passed through as the fake sent it', async () => {
  const body = '{"model":"demo","messages":[{"role":"user","content":"ping"}]}';
  const direct = await fetch(`${stack.fake.base()}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer x' },
    body: body.replace('"demo"', '"gpt-fake"'),
  });
  const directText = await direct.text();
  const res = await stack.gw.call('/v1/chat/completions', { body });
  assert.equal(res.status, 200);
  assert.equal(res.json.choices[0].message.content, JSON.parse(directText).choices[0].message.content);
  assert.match(res.json.choices[0].message.content, /You said: ping/);
});

test('GET /v1/models lists the configured aliases', async () => {
  for (const path of ['/v1/models', '/models']) {
    const res = await stack.gw.call(path);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.object, 'list');
    const ids = res.json.data.map((m) => m.id).sort();
    assert.deepEqual(ids, ['demo', 'emb', 'raw', 'split']);
    for (const m of res.json.data) assert.equal(m.object, 'model');
  }
});

test('GET /v1/models/{id} returns one model, unknown id is model_not_found', async () => {
  const res = await stack.gw.call('/v1/models/demo');
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.id, 'demo');
  assert.equal(res.json.object, 'model');
  const missing = await stack.gw.call('/v1/models/no-such-model');
  assert.equal(missing.status, 404, missing.text);
  assert.equal(missing.json?.error?.code, 'model_not_found');
});
