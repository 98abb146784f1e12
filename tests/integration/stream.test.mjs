// Streams: each provider event re-emitted with the same JSON bytes; the usage chunk and the
// "usage":null members are removed unless the client asked for include_usage.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  RawConn,
  fakeModel,
  fixture,
  rawRequest,
  recordedBody,
  sseData,
  startStack,
} from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'st-text', 'fixture=chat_stream_text.sse'),
      fakeModel(fake, 'st-usage', 'fixture=chat_stream_include_usage.sse'),
      fakeModel(fake, 'st-usage-split', 'fixture=chat_stream_include_usage.sse,split=1'),
      fakeModel(fake, 'st-text-split', 'fixture=chat_stream_text.sse,split=1'),
      fakeModel(fake, 'st-tool', 'fixture=chat_stream_tool_call.sse'),
      fakeModel(fake, 'st-legacy', 'fixture=legacy_completions_stream_include_usage.sse'),
    ],
  });
});

after(async () => {
  await stack?.stop();
});

/** The events a provider would have sent a client that did not ask for usage. */
function withoutUsage(events) {
  const out = [];
  for (const e of events) {
    if (e === '[DONE]') {
      out.push(e);
      continue;
    }
    const j = JSON.parse(e);
    if (Array.isArray(j.choices) && j.choices.length === 0 && j.usage) continue;
    if (e.includes(',"usage":null')) out.push(e.replace(',"usage":null', ''));
    else if (e.includes('"usage":null,')) out.push(e.replace('"usage":null,', ''));
    else out.push(e);
  }
  return out;
}

function frame(events) {
  return events.map((e) => `data: ${e}\n\n`).join('');
}

async function streamRaw(model, includeUsage, path = '/v1/chat/completions') {
  const input = path.endsWith('/completions') && !path.includes('chat') ? '"prompt":"def fib"' : '"messages":[{"role":"user","content":"hi"}]';
  const body = includeUsage
    ? `{"model":"${model}","stream":true,"stream_options":{"include_usage":true},${input}}`
    : `{"model":"${model}","stream":true,${input}}`;
  await stack.fake.clear();
  const c = await RawConn.open(stack.gw.port);
  try {
    await c.write(rawRequest('POST', path, { body }));
    const r = await c.readResponse(15000);
    const rec = await stack.fake.lastUpstream();
    return { r, rec };
  } finally {
    c.destroy();
  }
}

function assertStreamHeaders(r) {
  assert.equal(r.status, 200, r.text);
  assert.match(String(r.headers['content-type']), /^text\/event-stream/);
  assert.equal(r.chunked, true, 'stream uses chunked transfer encoding');
  assert.equal(r.complete, true, 'chunked body ends with the last chunk');
  assert.ok(r.headers['x-request-id'], 'x-request-id present');
}

function assertUpstreamAskedUsage(rec) {
  const up = JSON.parse(recordedBody(rec).toString('utf8'));
  assert.equal(up.stream, true);
  assert.deepEqual(up.stream_options, { include_usage: true });
}

const textEvents = sseData(fixture('openai/chat_stream_text.sse'));
const usageEvents = sseData(fixture('openai/chat_stream_include_usage.sse'));

test('fixture sanity: both end in [DONE], the usage one has a usage chunk', () => {
  assert.equal(textEvents.at(-1), '[DONE]');
  assert.equal(usageEvents.at(-1), '[DONE]');
  assert.ok(withoutUsage(usageEvents).length === usageEvents.length - 1);
  assert.deepEqual(withoutUsage(textEvents), textEvents);
});

test('stream without usage in the fixture: identical events, exact framing', async () => {
  const { r, rec } = await streamRaw('st-text', false);
  assertStreamHeaders(r);
  assert.deepEqual(sseData(r.text), textEvents);
  assert.equal(r.text, frame(textEvents));
  assertUpstreamAskedUsage(rec);
});

test('stream with include_usage, fixture without usage: identical events', async () => {
  const { r, rec } = await streamRaw('st-text', true);
  assertStreamHeaders(r);
  assert.equal(r.text, frame(textEvents));
  assertUpstreamAskedUsage(rec);
});

test('client did not ask for usage: usage chunk and "usage":null removed', async () => {
  const { r, rec } = await streamRaw('st-usage', false);
  assertStreamHeaders(r);
  const want = withoutUsage(usageEvents);
  assert.deepEqual(sseData(r.text), want);
  assert.equal(r.text, frame(want));
  assert.ok(!r.text.includes('"usage"'), 'no usage member left');
  assertUpstreamAskedUsage(rec);
});

test('client asked for usage: events identical to the provider, usage chunk included', async () => {
  const { r, rec } = await streamRaw('st-usage', true);
  assertStreamHeaders(r);
  assert.deepEqual(sseData(r.text), usageEvents);
  assert.equal(r.text, frame(usageEvents));
  assertUpstreamAskedUsage(rec);
});

test('provider writing one byte at a time gives the same client output', async () => {
  for (const includeUsage of [false, true]) {
    const { r } = await streamRaw('st-usage-split', includeUsage);
    assertStreamHeaders(r);
    assert.equal(r.text, frame(includeUsage ? usageEvents : withoutUsage(usageEvents)), `include_usage=${includeUsage}`);
  }
  const { r } = await streamRaw('st-text-split', false);
  assertStreamHeaders(r);
  assert.equal(r.text, frame(textEvents));
});

test('tool-call stream: usage chunk removed when not asked, kept when asked', async () => {
  const events = sseData(fixture('openai/chat_stream_tool_call.sse'));
  const a = await streamRaw('st-tool', false);
  assertStreamHeaders(a.r);
  assert.equal(a.r.text, frame(withoutUsage(events)));
  const b = await streamRaw('st-tool', true);
  assert.equal(b.r.text, frame(events));
});

test('stream through fetch: content-type and the joined text', async () => {
  const res = await stack.gw.call('/v1/chat/completions', {
    body: '{"model":"st-text","stream":true,"messages":[{"role":"user","content":"hi"}]}',
  });
  assert.equal(res.status, 200);
  assert.match(String(res.headers.get('content-type')), /^text\/event-stream/);
  const content = sseData(res.text)
    .filter((e) => e !== '[DONE]')
    .map((e) => JSON.parse(e).choices[0]?.delta?.content ?? '')
    .join('');
  const want = textEvents
    .filter((e) => e !== '[DONE]')
    .map((e) => JSON.parse(e).choices[0]?.delta?.content ?? '')
    .join('');
  assert.equal(content, want);
  assert.ok(content.length > 10);
});

test('legacy completions stream: "usage":null as the last member and the usage chunk removed', async () => {
  const events = sseData(fixture('openai/legacy_completions_stream_include_usage.sse'));
  const a = await streamRaw('st-legacy', false, '/v1/completions');
  assertStreamHeaders(a.r);
  assert.ok(a.rec.path.endsWith('/v1/completions'), a.rec.path);
  assertUpstreamAskedUsage(a.rec);
  assert.equal(a.r.text, frame(withoutUsage(events)));
  assert.ok(!a.r.text.includes('"usage"'));
  const b = await streamRaw('st-legacy', true, '/v1/completions');
  assert.equal(b.r.text, frame(events));
});
