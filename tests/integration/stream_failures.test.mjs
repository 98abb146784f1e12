// Failures after the first byte of a stream reached the client: the events so far, one
// error event in the OpenAI envelope, then a clean end of the chunked body (no [DONE]).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RawConn, fakeModel, fixture, rawRequest, sseData, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'cut3', 'fixture=chat_stream_text.sse,cut_after=3'),
      fakeModel(fake, 'cut1', 'fixture=chat_stream_text.sse,cut_after=1'),
      fakeModel(fake, 'silent', 'fixture=chat_stream_text.sse,drip_ms=3000', { stream_timeout: 1, timeout: 30 }),
      fakeModel(fake, 'inerror', 'stream_error=1'),
      fakeModel(fake, 'ok', 'fixture=chat_stream_text.sse'),
    ],
  });
});

after(async () => {
  await stack?.stop();
});

async function stream(model, timeoutMs = 20000) {
  const c = await RawConn.open(stack.gw.port);
  try {
    await c.write(rawRequest('POST', '/v1/chat/completions', { body: `{"model":"${model}","stream":true,"messages":[{"role":"user","content":"hi"}]}` }));
    const r = await c.readResponse(timeoutMs);
    return { r, closedAfter: c.closed };
  } finally {
    c.destroy();
  }
}

function assertErrorEvent(data, code) {
  const j = JSON.parse(data);
  assert.deepEqual(Object.keys(j), ['error'], `only "error": ${data}`);
  assert.deepEqual(Object.keys(j.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof j.error.message, 'string');
  assert.ok(j.error.message.length > 0);
  if (code) assert.equal(j.error.code, code, data);
  return j.error;
}

const textEvents = sseData(fixture('openai/chat_stream_text.sse'));

test('cut after 3 events: those 3 events, one error event, clean end, no [DONE]', async () => {
  const { r } = await stream('cut3');
  assert.equal(r.status, 200);
  assert.equal(r.complete, true, 'chunked body terminated with the last chunk');
  const events = sseData(r.text);
  assert.equal(events.length, 4, r.text);
  assert.deepEqual(events.slice(0, 3), textEvents.slice(0, 3));
  assertErrorEvent(events[3]);
  assert.ok(!r.text.includes('[DONE]'));
  assert.ok(r.text.endsWith('\n\n'), 'last event framed');
  assert.equal(
    r.text,
    textEvents.slice(0, 3).map((e) => `data: ${e}\n\n`).join('') + `data: ${events[3]}\n\n`,
  );
});

test('cut after 1 event: same shape', async () => {
  const { r } = await stream('cut1');
  assert.equal(r.status, 200);
  assert.equal(r.complete, true);
  const events = sseData(r.text);
  assert.equal(events.length, 2, r.text);
  assert.equal(events[0], textEvents[0]);
  assertErrorEvent(events[1]);
});

test('silence longer than stream_timeout: upstream_timeout (event or 504)', async () => {
  const t0 = Date.now();
  const { r } = await stream('silent', 8000);
  const took = Date.now() - t0;
  assert.ok(took < 10000, `gave up in time (${took} ms)`);
  if (r.status === 200) {
    assert.equal(r.complete, true);
    const events = sseData(r.text);
    assert.ok(events.length >= 1);
    assertErrorEvent(events.at(-1), 'upstream_timeout');
    assert.ok(!r.text.includes('[DONE]'));
  } else {
    assert.equal(r.status, 504, r.text);
    assert.equal(r.json?.error?.code, 'upstream_timeout', r.text);
  }
});

test('provider in-stream error event reaches the client as an error event', async () => {
  const { r } = await stream('inerror');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.complete, true);
  const events = sseData(r.text);
  const errs = events.filter((e) => e !== '[DONE]' && JSON.parse(e).error);
  assert.equal(errs.length, 1, r.text);
  const e = JSON.parse(errs[0]).error;
  assert.equal(typeof e.message, 'string');
});

test('the gateway keeps serving after a failed stream', async (t) => {
  let c = await RawConn.open(stack.gw.port);
  try {
    await c.write(rawRequest('POST', '/v1/chat/completions', { body: '{"model":"cut3","stream":true,"messages":[{"role":"user","content":"hi"}]}' }));
    const a = await c.readResponse(20000);
    assert.equal(a.status, 200);
    assert.equal(a.complete, true);
    // Keeping the connection is allowed but not required after a failed stream.
    if (await c.waitClose(300)) {
      t.diagnostic('connection closed after the failed stream; using a new one');
      c.destroy();
      c = await RawConn.open(stack.gw.port);
    }
    await c.write(rawRequest('POST', '/v1/chat/completions', { body: '{"model":"ok","stream":true,"messages":[{"role":"user","content":"hi"}]}' }));
    const b = await c.readResponse(20000);
    assert.equal(b.status, 200);
    assert.deepEqual(sseData(b.text), textEvents);
  } finally {
    c.destroy();
  }
});
