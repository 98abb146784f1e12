// SIGTERM while a slow stream is in flight: the stream finishes, new connections are refused,
// the process exits 0.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { Fake, Gateway, RawConn, fakeModel, fixture, rawRequest, sleep, sseData } from '../lib/harness.mjs';

let fake;
let gw;

before(async () => {
  fake = await Fake.start();
  gw = await Gateway.start({
    model_list: [
      fakeModel(fake, 'slow', 'fixture=chat_stream_include_usage.sse,drip_ms=400'),
      fakeModel(fake, 'demo'),
    ],
    server: { drain_timeout_ms: 15000 },
  });
});

after(async () => {
  try {
    await gw?.stop();
  } finally {
    await fake?.stop();
  }
});

function tryConnect(port) {
  return new Promise((res) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('connect', () => {
      // Accepted: see whether it is served or closed unanswered.
      s.write('GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      let data = '';
      s.on('data', (d) => (data += d));
      s.on('close', () => res({ connected: true, data }));
      s.setTimeout(2000, () => {
        s.destroy();
        res({ connected: true, data, timedOut: true });
      });
    });
    s.on('error', (e) => res({ connected: false, code: e.code }));
  });
}

test('SIGTERM during a slow stream: stream completes, new connections refused, exit 0', async (t) => {
  const events = sseData(fixture('openai/chat_stream_include_usage.sse'));

  // An idle keep-alive connection opened before the signal.
  const idle = await RawConn.open(gw.port);
  await idle.write('GET /health/readiness HTTP/1.1\r\nHost: x\r\n\r\n');
  const ready = await idle.readResponse(5000);
  assert.equal(ready.status, 200);

  // A request whose head is only half sent when the signal arrives.
  const half = await RawConn.open(gw.port);
  await half.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n');

  const c = await RawConn.open(gw.port);
  await c.write(
    rawRequest('POST', '/v1/chat/completions', {
      body: '{"model":"slow","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}',
    }),
  );
  await c.until(() => c.data.includes('data: '), 10000, 'the first event');
  const t0 = Date.now();
  gw.signal('SIGTERM');
  await sleep(300);

  const conn = await tryConnect(gw.port);
  assert.equal(conn.connected, false, `new connection after SIGTERM was accepted: ${JSON.stringify(conn)}`);
  assert.equal(conn.code, 'ECONNREFUSED');

  // A request on a connection accepted before the signal: 503 shutting_down, or closed.
  await idle.write('GET /health/readiness HTTP/1.1\r\nHost: x\r\n\r\n');
  try {
    const r = await idle.readResponse(3000);
    assert.equal(r.status, 503, r.text);
    t.diagnostic(`readiness while draining: ${r.status} ${r.text}`);
    await idle.write(rawRequest('POST', '/v1/chat/completions', { body: '{"model":"demo","messages":[{"role":"user","content":"hi"}]}' }));
    const p = await idle.readResponse(3000);
    assert.equal(p.status, 503, p.text);
    assert.equal(p.json?.error?.code, 'shutting_down', p.text);
    assert.equal(p.json?.error?.type, 'api_error', p.text);
  } catch (e) {
    if (!idle.closed) throw e;
    assert.equal(idle.data.length - idle.consumed, 0, 'closed without a partial response');
    t.diagnostic('idle keep-alive connection was closed at drain start');
  } finally {
    idle.destroy();
  }

  // The half-sent request, completed during the drain: 503 shutting_down, or closed unanswered.
  await half.write(
    rawRequest('POST', '/v1/chat/completions', { body: '{"model":"demo","messages":[{"role":"user","content":"hi"}]}' })
      .subarray('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n'.length),
  );
  try {
    const h = await half.readResponse(3000);
    t.diagnostic(`request finished during the drain: ${h.status} ${h.text}`);
    assert.equal(h.status, 503, h.text);
    assert.equal(h.json?.error?.code, 'shutting_down', h.text);
    assert.equal(h.json?.error?.type, 'api_error', h.text);
  } catch (e) {
    if (!half.closed) throw e;
    assert.equal(half.data.length, 0, `closed after a partial response: ${half.data.toString('latin1')}`);
    t.diagnostic('half-sent request: connection closed unanswered');
  } finally {
    half.destroy();
  }

  const r = await c.readResponse(15000);
  c.destroy();
  assert.equal(r.status, 200);
  assert.equal(r.complete, true, 'stream ended with the last chunk');
  assert.deepEqual(sseData(r.text), events, 'every event, then [DONE]');
  assert.ok(Date.now() - t0 >= 400, 'the stream really was still running at SIGTERM');

  const res = await gw.stop();
  assert.equal(res.code, 0);
});
