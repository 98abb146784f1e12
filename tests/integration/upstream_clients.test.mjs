// The same provider behaviours through both upstream clients: the native HTTP/1.1 client
// (plain http, numeric host: the default) and libcurl (server.upstream_http1: curl, and
// always for https and host names). Each must give the client the same bytes and errors.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RawConn, fakeModel, fixture, rawRequest, sseData, startStack } from '../lib/harness.mjs';

const models = (fake) => [
  fakeModel(fake, 'text', 'fixture=chat_text_raw_bytes.response.json'),
  fakeModel(fake, 'stream', 'fixture=chat_stream_include_usage.sse'),
  fakeModel(fake, 'split', 'fixture=chat_stream_include_usage.sse,split=1'),
  fakeModel(fake, 'cut', 'fixture=chat_stream_text.sse,cut_after=2'),
  fakeModel(fake, 'limited', 'status=429,retry_after=7'),
  fakeModel(fake, 'hang', 'hang=1', { timeout: 1 }),
  fakeModel(fake, 'close', 'close=1'),
  fakeModel(fake, 'drop', 'drop=1'),
  fakeModel(fake, 'drop-stream', 'drop=1'),
  fakeModel(fake, 'ok'),
  {
    model_name: 'refused',
    litellm_params: { model: 'openai/x', api_base: 'http://127.0.0.1:1/v1', api_key: 'k' },
  },
];

const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

for (const client of ['native', 'curl']) {
  describe(`upstream client: ${client}`, () => {
    let stack;
    before(async () => {
      stack = await startStack({ models, server: { upstream_http1: client } });
    });
    after(async () => {
      await stack?.stop();
    });

    test('non-stream body is byte-identical to the provider', async () => {
      const r = await stack.gw.call('/v1/chat/completions', { body: chat('text') });
      assert.equal(r.status, 200);
      assert.ok(r.buf.equals(fixture('openai/chat_text_raw_bytes.response.json')), r.text);
    });

    test('stream with usage asked: events identical, also when split at every byte', async () => {
      const want = sseData(fixture('openai/chat_stream_include_usage.sse'));
      for (const model of ['stream', 'split']) {
        const r = await stack.gw.call('/v1/chat/completions', {
          body: chat(model, { stream: true, stream_options: { include_usage: true } }),
        });
        assert.equal(r.status, 200);
        assert.deepEqual(sseData(r.text), want, model);
      }
    });

    test('a stream cut by the provider ends with an error event', async () => {
      const r = await stack.gw.call('/v1/chat/completions', { body: chat('cut', { stream: true }) });
      const events = sseData(r.text);
      assert.equal(events.length, 3, r.text);
      assert.ok(JSON.parse(events[2]).error, r.text);
    });

    test('429 passes through with Retry-After', async () => {
      const r = await stack.gw.call('/v1/chat/completions', { body: chat('limited') });
      assert.equal(r.status, 429);
      assert.equal(r.headers.get('retry-after'), '7');
    });

    test('refused connection: 502; no answer: 504', async () => {
      const a = await stack.gw.call('/v1/chat/completions', { body: chat('refused') });
      assert.equal(a.status, 502);
      assert.equal(a.json.error.code, 'upstream_unavailable');
      const b = await stack.gw.call('/v1/chat/completions', { body: chat('hang') });
      assert.equal(b.status, 504);
      assert.equal(b.json.error.code, 'upstream_timeout');
    });

    test('providers that close connections (with or without saying so): every request succeeds', async () => {
      for (const model of ['close', 'drop', 'ok', 'drop', 'drop', 'ok']) {
        const r = await stack.gw.call('/v1/chat/completions', { body: chat(model) });
        assert.equal(r.status, 200, `${model}: ${r.text}`);
        assert.ok(r.json.choices[0].message.content.includes('You said: hi'));
      }
      // Back to back on one client connection, so a dropped upstream connection may be
      // picked again before its close is noticed: the request is then sent once more.
      const c = await RawConn.open(stack.gw.port);
      try {
        for (let i = 0; i < 20; i++) {
          await c.write(rawRequest('POST', '/v1/chat/completions', {
            body: JSON.stringify(chat(i % 2 ? 'drop' : 'drop-stream', { stream: i % 4 === 0 })),
          }));
          const r = await c.readResponse(5000);
          assert.equal(r.status, 200, r.text);
        }
      } finally {
        c.destroy();
      }
    });

    test('concurrent requests share pooled connections correctly', async () => {
      const rs = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          stack.gw.call('/v1/chat/completions', {
            body: { model: 'ok', messages: [{ role: 'user', content: `number ${i}` }] },
          }),
        ),
      );
      rs.forEach((r, i) => {
        assert.equal(r.status, 200);
        assert.ok(r.json.choices[0].message.content.endsWith(`You said: number ${i}`), r.text);
      });
    });
  });
}
