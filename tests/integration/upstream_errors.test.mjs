// Provider errors pass through: status, body and retry hints; provider faults map to the
// gateway's own 502/504 rows.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PROVIDER_KEY, assertEnvelope, fakeModel, fixture, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'r429', 'status=429,retry_after=3'),
      fakeModel(fake, 'r429ms', 'status=429,retry_after_ms=1500'),
      fakeModel(fake, 'r503', 'status=503,retry_after=7'),
      fakeModel(fake, 'r400fx', 'fixture=error_400_unsupported_parameter.json'),
      fakeModel(fake, 'r404fx', 'fixture=error_404_model_not_found.json'),
      fakeModel(fake, 'r500', 'status=500'),
      fakeModel(fake, 'hang', 'hang=1', { timeout: 1 }),
      fakeModel(fake, 'slow-ok', 'delay_ms=300', { timeout: 5 }),
      fakeModel(fake, 'malformed', 'malformed=1'),
      fakeModel(fake, 'huge', `body_bytes=${2 * 1024 * 1024}`),
      fakeModel(fake, 'big-ok', `body_bytes=${512 * 1024}`),
    ],
    server: { max_response_mb: 1 },
  });
});

after(async () => {
  await stack?.stop();
});

const chat = (model) => `{"model":"${model}","messages":[{"role":"user","content":"hi"}]}`;

/** The fake's answer for a deployment, asked directly. */
async function direct(directives, body) {
  const res = await fetch(`${stack.fake.base(directives)}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PROVIDER_KEY}`, 'content-type': 'application/json' },
    body,
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

test('429 with Retry-After: status, body and header passed through', async () => {
  const want = await direct('status=429,retry_after=3', chat('gpt-fake'));
  assert.equal(want.status, 429);
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('r429') });
  assert.equal(res.status, 429);
  assert.equal(res.text, want.text);
  assert.equal(res.headers.get('retry-after'), '3');
  assert.ok(res.headers.get('x-request-id'));
});

test('429 with retry-after-ms passed through', async () => {
  const want = await direct('status=429,retry_after_ms=1500', chat('gpt-fake'));
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('r429ms') });
  assert.equal(res.status, 429);
  assert.equal(res.text, want.text);
  assert.equal(res.headers.get('retry-after-ms'), '1500');
});

test('503 with Retry-After passed through', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('r503') });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '7');
  assert.ok(res.json?.error, res.text);
});

test('a stream request answered with 429 gets the 429 (nothing was sent yet)', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: '{"model":"r429","stream":true,"messages":[{"role":"user","content":"hi"}]}' });
  assert.equal(res.status, 429);
  assert.equal(res.headers.get('retry-after'), '3');
  assert.ok(res.json?.error, res.text);
});

test("provider's error fixtures pass through byte for byte", async () => {
  const a = await stack.gw.call('/v1/chat/completions', { body: chat('r400fx') });
  assert.equal(a.status, 400);
  assert.ok(a.buf.equals(fixture('openai/error_400_unsupported_parameter.json')), a.text);
  const b = await stack.gw.call('/v1/chat/completions', { body: chat('r404fx') });
  assert.equal(b.status, 404);
  assert.ok(b.buf.equals(fixture('openai/error_404_model_not_found.json')), b.text);
});

test('500 passed through with the provider body', async () => {
  const want = await direct('status=500', chat('gpt-fake'));
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('r500') });
  assert.equal(res.status, 500);
  assert.equal(res.text, want.text);
});

test('hang with a short timeout: 504 upstream_timeout', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('hang') });
  assertEnvelope(res, 504, 'api_error', 'upstream_timeout');
});

test('a slow answer inside the timeout is fine', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('slow-ok') });
  assert.equal(res.status, 200, res.text);
});

test('malformed=1 non-stream: 502 upstream_invalid_response', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('malformed') });
  assertEnvelope(res, 502, 'api_error', 'upstream_invalid_response');
});

test('response over max_response_mb: 502 upstream_response_too_large', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('huge') });
  assertEnvelope(res, 502, 'api_error', 'upstream_response_too_large');
});

test('a response under max_response_mb is passed through whole', async () => {
  const want = await direct(`body_bytes=${512 * 1024}`, chat('gpt-fake'));
  assert.equal(want.status, 200);
  const res = await stack.gw.call('/v1/chat/completions', { body: chat('big-ok') });
  assert.equal(res.status, 200);
  // The fake pads to about body_bytes; its ids and timestamps vary by a few bytes.
  assert.ok(Math.abs(res.buf.length - Buffer.byteLength(want.text)) < 16, `${res.buf.length} vs ${want.text.length}`);
  assert.ok(res.buf.length >= 512 * 1024);
  assert.equal(JSON.parse(res.text).object, 'chat.completion');
});
