// The fake provider's dialects (Anthropic, Gemini, Bedrock, Cohere, and OpenAI's tool calls),
// checked structurally against the fake alone: the gateway's end-to-end tests rely on these
// shapes, so a change here must be deliberate.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Fake } from '../lib/harness.mjs';

let fake;

before(async () => {
  fake = await Fake.start({ threads: 1 });
});

after(async () => {
  await fake?.stop();
});

const WEATHER_SCHEMA = { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } } };
const ANTH = { 'x-api-key': 'sk-ant', 'anthropic-version': '2023-06-01' };

async function post(path, body, headers = {}) {
  const r = await fetch(`${fake.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const buf = Buffer.from(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, buf, text: buf.toString('utf8') };
}

/** SSE events split on `sep`: [{event, data}] with data parsed as JSON. */
function sse(text, sep = '\n\n') {
  return text
    .split(sep)
    .filter((e) => e.trim() !== '')
    .map((e) => {
      const lines = e.split(/\r?\n/);
      const ev = lines.find((l) => l.startsWith('event: '));
      const data = lines.find((l) => l.startsWith('data: '));
      return { event: ev ? ev.slice(7) : undefined, data: JSON.parse(data.slice(6)) };
    });
}

// ---- CRC-32 and the event-stream decoder (AWS vnd.amazon.eventstream) ----

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Frames of a body: [{headers, payload, preludeOk, messageOk}]; throws on a torn frame. */
function decodeFrames(buf) {
  const frames = [];
  let o = 0;
  while (o < buf.length) {
    assert.ok(buf.length - o >= 16, 'frame shorter than its prelude');
    const total = buf.readUInt32BE(o);
    const hlen = buf.readUInt32BE(o + 4);
    assert.ok(total >= 16 + hlen && o + total <= buf.length, `bad frame length ${total}`);
    const preludeOk = buf.readUInt32BE(o + 8) === crc32(buf.subarray(o, o + 8));
    const messageOk = buf.readUInt32BE(o + total - 4) === crc32(buf.subarray(o, o + total - 4));
    const headers = {};
    let h = o + 12;
    while (h < o + 12 + hlen) {
      const nlen = buf[h];
      const name = buf.subarray(h + 1, h + 1 + nlen).toString();
      h += 1 + nlen;
      assert.equal(buf[h], 7, 'string header');
      const vlen = buf.readUInt16BE(h + 1);
      headers[name] = buf.subarray(h + 3, h + 3 + vlen).toString();
      h += 3 + vlen;
    }
    const payload = buf.subarray(o + 12 + hlen, o + total - 4).toString();
    frames.push({ headers, payload, preludeOk, messageOk });
    o += total;
  }
  return frames;
}

/** SigV4-shaped headers: the fake checks the shape and the payload hash, not the signature. */
function sigv4(body, akid = 'AKIDFAKE') {
  return {
    authorization: `AWS4-HMAC-SHA256 Credential=${akid}/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${'ab'.repeat(32)}`,
    'x-amz-date': '20250101T000000Z',
    'x-amz-content-sha256': createHash('sha256').update(body).digest('hex'),
  };
}

async function bedrock(path, obj, extra = {}) {
  const body = JSON.stringify(obj);
  return post(path, body, { ...sigv4(body), ...extra });
}

// ---- Anthropic ----

test('anthropic: text reply, usage and the envelope', async () => {
  const r = await post('/v1/messages', { model: 'claude-x', max_tokens: 50, messages: [{ role: 'user', content: 'Hi there friend' }] }, ANTH);
  assert.equal(r.status, 200);
  const j = JSON.parse(r.text);
  assert.equal(j.type, 'message');
  assert.equal(j.model, 'claude-x');
  assert.deepEqual(j.content, [{ type: 'text', text: 'Hello from the switchboard demo provider. You said: Hi there friend' }]);
  assert.equal(j.stop_reason, 'end_turn');
  assert.equal(j.usage.input_tokens, 3);
  assert.equal(j.usage.output_tokens, 11);
  assert.match(r.headers.get('request-id'), /^req_fake_/);
});

test('anthropic: tool call, then the tool result reply', async () => {
  const tools = [{ name: 'get_weather', input_schema: WEATHER_SCHEMA }, { name: 'other', input_schema: { type: 'object' } }];
  let r = await post('/v1/messages', { model: 'c', max_tokens: 50, tools, messages: [{ role: 'user', content: 'Paris' }] }, ANTH);
  let j = JSON.parse(r.text);
  assert.equal(j.stop_reason, 'tool_use');
  assert.equal(j.content.length, 1);
  assert.equal(j.content[0].type, 'tool_use');
  assert.match(j.content[0].id, /^toolu_fake_\d+$/);
  assert.equal(j.content[0].name, 'get_weather');
  assert.deepEqual(j.content[0].input, { city: 'Paris' });

  r = await post('/v1/messages', { model: 'c', max_tokens: 50, tools, tool_choice: { type: 'tool', name: 'other' }, messages: [{ role: 'user', content: 'Paris' }] }, ANTH);
  j = JSON.parse(r.text);
  assert.equal(j.content[0].name, 'other');
  assert.deepEqual(j.content[0].input, { input: 'Paris' });

  r = await post('/v1/messages', { model: 'c', max_tokens: 50, tools, tool_choice: { type: 'none' }, messages: [{ role: 'user', content: 'Paris' }] }, ANTH);
  assert.equal(JSON.parse(r.text).content[0].type, 'text');

  r = await post('/v1/messages', {
    model: 'c', max_tokens: 50, tools,
    messages: [
      { role: 'user', content: 'Paris' },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '22 C and sunny' }] }] },
    ],
  }, ANTH);
  j = JSON.parse(r.text);
  assert.equal(j.stop_reason, 'end_turn');
  assert.equal(j.content[0].text, 'The tool returned: 22 C and sunny');
});

test('anthropic: stream with thinking and a tool call', async () => {
  const r = await post('/_f/thinking=1,cached=7/v1/messages', {
    model: 'c', max_tokens: 50, stream: true, tools: [{ name: 'get_weather', input_schema: WEATHER_SCHEMA }],
    messages: [{ role: 'user', content: 'Weather in Paris' }],
  }, ANTH);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/event-stream/);
  const evs = sse(r.text);
  for (const e of evs) assert.equal(e.event, e.data.type);
  const types = evs.map((e) => e.event);
  assert.equal(types[0], 'message_start');
  assert.ok(types.includes('ping'));
  assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
  assert.equal(evs[0].data.message.usage.cache_read_input_tokens, 7);
  const starts = evs.filter((e) => e.event === 'content_block_start').map((e) => e.data);
  assert.deepEqual(starts.map((s) => [s.index, s.content_block.type]), [[0, 'thinking'], [1, 'tool_use']]);
  const deltas = evs.filter((e) => e.event === 'content_block_delta').map((e) => e.data);
  const thinking = deltas.filter((d) => d.delta.type === 'thinking_delta').map((d) => d.delta.thinking).join('');
  assert.equal(thinking, 'Let me think about that.');
  const sig = deltas.find((d) => d.delta.type === 'signature_delta');
  assert.match(sig.delta.signature, /^sig-fake-\d+$/);
  const pieces = deltas.filter((d) => d.delta.type === 'input_json_delta').map((d) => d.delta.partial_json);
  assert.equal(pieces[0], '');
  assert.ok(pieces.length >= 3, 'the empty piece, then at least two');
  assert.deepEqual(JSON.parse(pieces.join('')), { city: 'Weather in Paris' });
  const md = evs.find((e) => e.event === 'message_delta').data;
  assert.equal(md.delta.stop_reason, 'tool_use');
  assert.equal(md.usage.output_tokens, 3 + 5, 'argument words plus thinking words');
});

test('anthropic: auth, status and in-stream errors', async () => {
  let r = await post('/v1/messages', {}, { 'anthropic-version': '2023-06-01' });
  assert.equal(r.status, 401);
  assert.equal(JSON.parse(r.text).error.type, 'authentication_error');
  r = await post('/v1/messages', {}, { 'x-api-key': 'k' });
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.text).error.type, 'invalid_request_error');
  r = await post('/_f/key=right/v1/messages', {}, { ...ANTH, 'x-api-key': 'wrong' });
  assert.equal(r.status, 401);
  assert.equal(JSON.parse(r.text).error.message, 'invalid x-api-key');
  r = await post('/_f/status=529,retry_after=2/v1/messages', {}, ANTH);
  assert.equal(r.status, 529);
  assert.equal(r.headers.get('retry-after'), '2');
  const j = JSON.parse(r.text);
  assert.equal(j.type, 'error');
  assert.deepEqual(j.error, { type: 'overloaded_error', message: 'Overloaded' });
  r = await post('/_f/status=429/v1/messages', {}, ANTH);
  assert.equal(JSON.parse(r.text).error.type, 'rate_limit_error');
  r = await post('/_f/stream_error=1/v1/messages', { model: 'c', max_tokens: 5, stream: true, messages: [{ role: 'user', content: 'hi' }] }, ANTH);
  assert.equal(r.status, 200);
  assert.ok(r.text.endsWith('event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'));
  assert.ok(!r.text.includes('message_stop'));
  r = await post('/v1/messages/count_tokens', { model: 'c', messages: [{ role: 'user', content: 'one two three' }] }, ANTH);
  assert.deepEqual(JSON.parse(r.text), { input_tokens: 3 });
});

test('anthropic: split=1 sends the same bytes; cut_after ends the stream early', async () => {
  const body = { model: 'c', max_tokens: 5, stream: true, messages: [{ role: 'user', content: 'hi there' }] };
  const whole = await post('/v1/messages', body, ANTH);
  const split = await post('/_f/split=1/v1/messages', body, ANTH);
  assert.equal(split.text.replace(/msg_fake_\d+/g, 'ID'), whole.text.replace(/msg_fake_\d+/g, 'ID'));
  await assert.rejects(post('/_f/cut_after=2/v1/messages', body, ANTH));
});

// ---- Gemini ----

const GTOOLS = [{ functionDeclarations: [{ name: 'get_weather', parameters: { type: 'OBJECT', properties: { city: { type: 'STRING' } } } }] }];

test('gemini: generateContent text, thinking and cached usage', async () => {
  const r = await post('/_f/thinking=1,cached=5/v1beta/models/gemini-2.5-flash:generateContent', {
    contents: [{ role: 'user', parts: [{ text: 'Hi there' }] }],
  }, { 'x-goog-api-key': 'g' });
  assert.equal(r.status, 200);
  const j = JSON.parse(r.text);
  const c = j.candidates[0];
  assert.equal(c.finishReason, 'STOP');
  assert.equal(c.content.role, 'model');
  assert.equal(c.content.parts[0].thought, true);
  assert.equal(c.content.parts[0].text, 'Let me think about that.');
  assert.equal(c.content.parts[1].text, 'Hello from the switchboard demo provider. You said: Hi there');
  assert.equal(j.modelVersion, 'gemini-2.5-flash');
  const u = j.usageMetadata;
  assert.equal(u.promptTokenCount, 2 + 5);
  assert.equal(u.cachedContentTokenCount, 5);
  assert.equal(u.candidatesTokenCount, 10);
  assert.equal(u.thoughtsTokenCount, 5);
  assert.equal(u.totalTokenCount, 7 + 10 + 5);
});

test('gemini: stream framing, a function call, gemini3 ids and the result turn', async () => {
  let r = await post('/v1beta/models/g:streamGenerateContent?alt=sse&key=g', { contents: [{ role: 'user', parts: [{ text: 'Hi there' }] }] });
  assert.equal(r.status, 200);
  assert.ok(r.text.endsWith('\r\n\r\n') && !r.text.includes('[DONE]'));
  let evs = sse(r.text, '\r\n\r\n');
  assert.ok(evs.length > 2);
  const text = evs.map((e) => e.data.candidates[0].content.parts.map((p) => p.text).join('')).join('');
  assert.equal(text, 'Hello from the switchboard demo provider. You said: Hi there');
  evs.slice(0, -1).forEach((e) => assert.equal(e.data.candidates[0].finishReason, undefined));
  assert.equal(evs.at(-1).data.candidates[0].finishReason, 'STOP');
  const counts = evs.map((e) => e.data.usageMetadata.candidatesTokenCount);
  assert.deepEqual(counts, [...counts].sort((a, b) => a - b), 'cumulative usage');
  assert.equal(counts.at(-1), 10);

  r = await post('/v1beta/models/g:streamGenerateContent?alt=sse&key=g', { contents: [{ role: 'user', parts: [{ text: 'Rome' }] }], tools: GTOOLS });
  evs = sse(r.text, '\r\n\r\n');
  assert.equal(evs.length, 1);
  let part = evs[0].data.candidates[0].content.parts[0];
  assert.deepEqual(part.functionCall, { name: 'get_weather', args: { city: 'Rome' } });
  assert.equal(part.thoughtSignature, undefined);

  r = await post('/_f/gemini3=1/v1beta/models/g:generateContent?key=g', { contents: [{ role: 'user', parts: [{ text: 'Rome' }] }], tools: GTOOLS });
  part = JSON.parse(r.text).candidates[0].content.parts[0];
  assert.match(part.functionCall.id, /^g3fake\d+$/);
  assert.match(part.thoughtSignature, /^sig-fake-\d+$/);

  r = await post('/v1beta/models/g:generateContent?key=g', {
    tools: GTOOLS,
    contents: [
      { role: 'user', parts: [{ text: 'Rome' }] },
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Rome' } } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp: 22 } } }] },
    ],
  });
  assert.equal(JSON.parse(r.text).candidates[0].content.parts[0].text, 'The tool returned: {"temp":22}');

  r = await post('/v1beta/models/g:generateContent?key=g', {
    tools: GTOOLS, toolConfig: { functionCallingConfig: { mode: 'NONE' } },
    contents: [{ role: 'user', parts: [{ text: 'Rome' }] }],
  });
  assert.ok(JSON.parse(r.text).candidates[0].content.parts[0].text.startsWith('Hello'));
});

test('gemini: auth, Vertex paths, errors and embeddings', async () => {
  const contents = [{ role: 'user', parts: [{ text: 'hi' }] }];
  let r = await post('/_f/key=good/v1beta/models/g:generateContent?key=bad', { contents });
  assert.equal(r.status, 400);
  let e = JSON.parse(r.text).error;
  assert.equal(e.status, 'INVALID_ARGUMENT');
  assert.equal(e.details[0].reason, 'API_KEY_INVALID');
  r = await post('/_f/key=good/v1beta/models/g:generateContent', { contents }, { 'x-goog-api-key': 'good' });
  assert.equal(r.status, 200);
  r = await post('/v1beta/models/g:streamGenerateContent?key=g', { contents });
  assert.equal(r.status, 400, 'streaming without alt=sse');
  const vertex = '/v1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent';
  r = await post(vertex, { contents });
  assert.equal(r.status, 401);
  assert.equal(JSON.parse(r.text).error.status, 'UNAUTHENTICATED');
  r = await post(vertex, { contents }, { authorization: 'Bearer ya29.token' });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.text).modelVersion, 'gemini-2.5-pro');
  r = await post('/_f/status=429/v1beta/models/g:generateContent?key=g', { contents });
  e = JSON.parse(r.text).error;
  assert.equal(e.code, 429);
  assert.equal(e.status, 'RESOURCE_EXHAUSTED');
  assert.equal(e.details.find((d) => d['@type'].endsWith('RetryInfo')).retryDelay, '34.4s');
  r = await post('/_f/status=503/v1beta/models/g:generateContent?key=g', { contents });
  assert.equal(JSON.parse(r.text).error.status, 'UNAVAILABLE');
  r = await post('/_f/stream_error=1/v1beta/models/g:streamGenerateContent?alt=sse&key=g', { contents: [{ role: 'user', parts: [{ text: 'a b c' }] }] });
  const evs = sse(r.text, '\r\n\r\n');
  assert.equal(evs.at(-1).data.error.status, 'UNAVAILABLE');
  r = await post('/v1beta/models/text-embedding-004:batchEmbedContents?key=g', {
    requests: [{ content: { parts: [{ text: 'a' }] } }, { content: { parts: [{ text: 'a' }] }, outputDimensionality: 3 }],
  });
  const emb = JSON.parse(r.text).embeddings;
  assert.equal(emb[0].values.length, 8);
  assert.equal(emb[1].values.length, 3);
  r = await post('/v1beta/models/text-embedding-004:embedContent?key=g', { content: { parts: [{ text: 'a' }] } });
  assert.deepEqual(JSON.parse(r.text).embedding.values, emb[0].values);
  r = await post('/v1beta/models/g:countTokens?key=g', { contents: [{ parts: [{ text: 'a b c d' }] }] });
  assert.equal(JSON.parse(r.text).totalTokens, 4);
});

// ---- Bedrock ----

const BTOOLS = { tools: [{ toolSpec: { name: 'get_weather', inputSchema: { json: WEATHER_SCHEMA } } }] };

test('bedrock: converse text and tool call with thinking', async () => {
  let r = await bedrock('/model/us.anthropic.claude-sonnet-4%3A0/converse', { messages: [{ role: 'user', content: [{ text: 'Hi there' }] }] });
  assert.equal(r.status, 200);
  let j = JSON.parse(r.text);
  assert.equal(j.stopReason, 'end_turn');
  assert.equal(j.output.message.content[0].text, 'Hello from the switchboard demo provider. You said: Hi there');
  assert.deepEqual(j.usage, { inputTokens: 2, outputTokens: 10, totalTokens: 12 });
  r = await bedrock('/_f/thinking=1,cached=3/model/m/converse', { messages: [{ role: 'user', content: [{ text: 'Oslo' }] }], toolConfig: BTOOLS });
  j = JSON.parse(r.text);
  assert.equal(j.stopReason, 'tool_use');
  const [think, call] = j.output.message.content;
  assert.equal(think.reasoningContent.reasoningText.text, 'Let me think about that.');
  assert.match(think.reasoningContent.reasoningText.signature, /^sig-fake-\d+$/);
  assert.match(call.toolUse.toolUseId, /^tooluse_fake_\d+$/);
  assert.deepEqual(call.toolUse.input, { city: 'Oslo' });
  assert.equal(j.usage.cacheReadInputTokens, 3);
  r = await bedrock('/model/m/converse', {
    toolConfig: BTOOLS,
    messages: [
      { role: 'user', content: [{ text: 'Oslo' }] },
      { role: 'assistant', content: [{ toolUse: { toolUseId: 't1', name: 'get_weather', input: { city: 'Oslo' } } }] },
      { role: 'user', content: [{ toolResult: { toolUseId: 't1', content: [{ json: { temp: -3 } }] } }] },
    ],
  });
  assert.equal(JSON.parse(r.text).output.message.content[0].text, 'The tool returned: {"temp":-3}');
});

test('bedrock: converse-stream frames, both CRCs, events', async () => {
  const r = await bedrock('/_f/thinking=1/model/m/converse-stream', { messages: [{ role: 'user', content: [{ text: 'Oslo' }] }], toolConfig: BTOOLS });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/vnd.amazon.eventstream');
  const frames = decodeFrames(r.buf);
  for (const f of frames) {
    assert.ok(f.preludeOk && f.messageOk, 'CRCs');
    assert.equal(f.headers[':message-type'], 'event');
    assert.equal(f.headers[':content-type'], 'application/json');
  }
  const evs = frames.map((f) => [f.headers[':event-type'], JSON.parse(f.payload)]);
  assert.equal(evs[0][0], 'messageStart');
  assert.deepEqual(evs[0][1], { role: 'assistant' });
  const names = evs.map((e) => e[0]);
  assert.deepEqual(names.slice(-2), ['messageStop', 'metadata']);
  assert.equal(evs.at(-2)[1].stopReason, 'tool_use');
  const meta = evs.at(-1)[1];
  assert.equal(meta.usage.totalTokens, meta.usage.inputTokens + meta.usage.outputTokens);
  assert.equal(typeof meta.metrics.latencyMs, 'number');
  const reasoning = evs.filter((e) => e[0] === 'contentBlockDelta' && e[1].delta.reasoningContent);
  assert.equal(reasoning.map((e) => e[1].delta.reasoningContent.text || '').join(''), 'Let me think about that.');
  assert.ok(reasoning.some((e) => e[1].delta.reasoningContent.signature));
  const start = evs.find((e) => e[0] === 'contentBlockStart')[1];
  assert.equal(start.contentBlockIndex, 1);
  assert.equal(start.start.toolUse.name, 'get_weather');
  const pieces = evs.filter((e) => e[0] === 'contentBlockDelta' && e[1].delta.toolUse).map((e) => e[1].delta.toolUse.input);
  assert.ok(pieces.length >= 2);
  assert.deepEqual(JSON.parse(pieces.join('')), { city: 'Oslo' });

  const text = await bedrock('/model/m/converse-stream', { messages: [{ role: 'user', content: [{ text: 'Hi' }] }] });
  const tev = decodeFrames(text.buf).map((f) => [f.headers[':event-type'], JSON.parse(f.payload)]);
  assert.ok(!tev.some((e) => e[0] === 'contentBlockStart'), 'text deltas carry no contentBlockStart');
  assert.equal(tev.filter((e) => e[0] === 'contentBlockDelta').map((e) => e[1].delta.text).join(''),
    'Hello from the switchboard demo provider. You said: Hi');
});

test('bedrock: exception frames, malformed frames, errors and auth', async () => {
  const msgs = { messages: [{ role: 'user', content: [{ text: 'a b c' }] }] };
  let r = await bedrock('/_f/stream_error=2/model/m/converse-stream', msgs);
  let frames = decodeFrames(r.buf);
  const last = frames.at(-1);
  assert.equal(last.headers[':message-type'], 'exception');
  assert.equal(last.headers[':exception-type'], 'throttlingException');
  assert.ok(last.messageOk);
  r = await bedrock('/_f/stream_error=1/model/m/converse-stream', msgs);
  assert.equal(decodeFrames(r.buf).at(-1).headers[':exception-type'], 'modelStreamErrorException');
  r = await bedrock('/_f/malformed=1/model/m/converse-stream', msgs);
  frames = decodeFrames(r.buf);
  assert.equal(frames.filter((f) => !f.messageOk).length, 1, 'one frame with a bad message CRC');

  r = await bedrock('/_f/status=429/model/m/converse', msgs);
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('x-amzn-errortype'), 'ThrottlingException');
  assert.equal(typeof JSON.parse(r.text).message, 'string');
  r = await post('/model/m/converse', msgs);
  assert.equal(r.status, 403);
  const body = JSON.stringify(msgs);
  r = await post('/model/m/converse', body, { ...sigv4(body), 'x-amz-content-sha256': 'ab'.repeat(32) });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('x-amzn-errortype'), 'InvalidSignatureException');
  r = await post('/_f/key=AKIDOTHER/model/m/converse', body, sigv4(body));
  assert.equal(r.headers.get('x-amzn-errortype'), 'UnrecognizedClientException');
  r = await post('/_f/key=AKIDOTHER/model/m/converse', body, sigv4(body, 'AKIDOTHER'));
  assert.equal(r.status, 200);

  r = await bedrock('/model/amazon.titan-embed-text-v2%3A0/invoke', { inputText: 'hello world', dimensions: 4 });
  const j = JSON.parse(r.text);
  assert.equal(j.embedding.length, 4);
  assert.equal(j.inputTextTokenCount, 2);
});

// ---- Cohere ----

const CTOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: WEATHER_SCHEMA } }];
const CAUTH = { authorization: 'Bearer co-key' };

test('cohere: chat, tool call stream, tool result, embed and errors', async () => {
  let r = await post('/v2/chat', { model: 'command-a', messages: [{ role: 'user', content: 'Hi there' }] }, CAUTH);
  let j = JSON.parse(r.text);
  assert.equal(j.finish_reason, 'COMPLETE');
  assert.deepEqual(j.message.content, [{ type: 'text', text: 'Hello from the switchboard demo provider. You said: Hi there' }]);
  assert.deepEqual(j.usage.tokens, { input_tokens: 2, output_tokens: 10 });

  r = await post('/v2/chat', { model: 'command-a', stream: true, tools: CTOOLS, messages: [{ role: 'user', content: 'Lima' }] }, CAUTH);
  const evs = sse(r.text);
  for (const e of evs) assert.equal(e.event, e.data.type);
  assert.equal(evs[0].event, 'message-start');
  assert.ok(evs.some((e) => e.event === 'tool-plan-delta'));
  const start = evs.find((e) => e.event === 'tool-call-start').data.delta.message.tool_calls;
  assert.match(start.id, /^cohere_fake_\d+$/);
  assert.equal(start.function.name, 'get_weather');
  const pieces = evs.filter((e) => e.event === 'tool-call-delta').map((e) => e.data.delta.message.tool_calls.function.arguments);
  assert.ok(pieces.length >= 2);
  assert.deepEqual(JSON.parse(pieces.join('')), { city: 'Lima' });
  const end = evs.at(-1);
  assert.equal(end.event, 'message-end');
  assert.equal(end.data.delta.finish_reason, 'TOOL_CALL');
  assert.equal(typeof end.data.delta.usage.tokens.output_tokens, 'number');

  r = await post('/v2/chat', {
    model: 'command-a', tools: CTOOLS,
    messages: [
      { role: 'user', content: 'Lima' },
      { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: [{ type: 'document', document: { data: '19 C' } }] },
    ],
  }, CAUTH);
  j = JSON.parse(r.text);
  assert.equal(j.message.content[0].text, 'The tool returned: 19 C');

  r = await post('/v2/embed', { model: 'embed-v4.0', texts: ['a', 'b'], input_type: 'search_document', embedding_types: ['float'] }, CAUTH);
  j = JSON.parse(r.text);
  assert.equal(j.embeddings.float.length, 2);

  r = await post('/v2/chat', {}, {});
  assert.equal(r.status, 401);
  assert.equal(typeof JSON.parse(r.text).message, 'string');
  r = await post('/_f/status=429/v2/chat', {}, CAUTH);
  assert.equal(r.status, 429);
  r = await post('/_f/stream_error=1/v2/chat', { model: 'm', stream: true, messages: [{ role: 'user', content: 'a b' }] }, CAUTH);
  assert.equal(sse(r.text).at(-1).event, 'error');
});

// ---- OpenAI tool calls ----

test('openai: tool calls, the tool result reply and cached tokens', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: WEATHER_SCHEMA } }];
  let r = await post('/_f/cached=4/v1/chat/completions', { model: 'm', tools, messages: [{ role: 'user', content: 'Quito' }] });
  let j = JSON.parse(r.text);
  assert.equal(j.choices[0].finish_reason, 'tool_calls');
  const call = j.choices[0].message.tool_calls[0];
  assert.match(call.id, /^call_fake_\d+$/);
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Quito' });
  assert.equal(j.usage.prompt_tokens, 1 + 4);
  assert.equal(j.usage.prompt_tokens_details.cached_tokens, 4);

  r = await post('/v1/chat/completions', { model: 'm', stream: true, tools, messages: [{ role: 'user', content: 'Quito' }] });
  const chunks = r.text.split('\n\n').filter(Boolean);
  assert.equal(chunks.at(-1), 'data: [DONE]');
  const parsed = chunks.slice(0, -1).map((c) => JSON.parse(c.slice(6)));
  const args = parsed.flatMap((c) => c.choices[0].delta.tool_calls || []).map((t) => t.function.arguments);
  assert.ok(args.filter((a) => a !== '').length >= 2);
  assert.deepEqual(JSON.parse(args.join('')), { city: 'Quito' });
  assert.equal(parsed.at(-1).choices[0].finish_reason, 'tool_calls');

  r = await post('/v1/chat/completions', {
    model: 'm', tools,
    messages: [
      { role: 'user', content: 'Quito' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'c', content: 'cloudy' },
    ],
  });
  j = JSON.parse(r.text);
  assert.equal(j.choices[0].message.content, 'The tool returned: cloudy');
  assert.equal(j.choices[0].finish_reason, 'stop');

  r = await post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'Quito' }] });
  assert.equal(JSON.parse(r.text).choices[0].message.content, 'Hello from the switchboard demo provider. You said: Quito');
});

test('requests to every dialect are recorded', async () => {
  await fake.clear();
  await post('/v1beta/models/g:generateContent?key=rec', { contents: [{ role: 'user', parts: [{ text: 'x' }] }] });
  const rec = await fake.lastUpstream();
  assert.equal(rec.path, '/v1beta/models/g:generateContent?key=rec');
  assert.deepEqual(JSON.parse(rec.body), { contents: [{ role: 'user', parts: [{ text: 'x' }] }] });
});
