// The official OpenAI SDK, unchanged, pointed at the gateway.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI, {
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  RateLimitError,
} from 'openai';
import { MASTER_KEY, fakeModel, fixture, recordedBody, sseData, startStack } from '../lib/harness.mjs';

let stack;
let client;

before(async () => {
  stack = await startStack({
    general_settings: { max_request_size_mb: 1 },
    models: (fake) => [
      fakeModel(fake, 'demo'),
      fakeModel(fake, 'text-stream', 'fixture=chat_stream_text.sse'),
      fakeModel(fake, 'tool-stream', 'fixture=chat_stream_tool_call.sse'),
      fakeModel(fake, 'emb'),
      fakeModel(fake, 'limited', 'status=429,retry_after=1'),
      fakeModel(fake, 'broken', 'status=500'),
      fakeModel(fake, 'stream-error', 'stream_error=1'),
      fakeModel(fake, 'stream-cut', 'fixture=chat_stream_text.sse,cut_after=2'),
    ],
  });
  client = new OpenAI({ baseURL: `${stack.gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
});

after(async () => {
  await stack?.stop();
});

const messages = [{ role: 'user', content: 'hello sdk' }];

test('chat completion, non-stream', async () => {
  const r = await client.chat.completions.create({ model: 'demo', messages });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.match(r.choices[0].message.content, /Hello from the switchboard demo provider\. You said: hello sdk/);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens > 0);
});

test('chat completion, non-stream, with the raw response and request id', async () => {
  const { data, response } = await client.chat.completions
    .create({ model: 'demo', messages })
    .withResponse();
  assert.equal(response.status, 200);
  assert.ok(response.headers.get('x-request-id'));
  assert.ok(data.choices[0].message.content.length > 0);
});

test('streaming text: chunks joined equal the provider text', async () => {
  const want = sseData(fixture('openai/chat_stream_text.sse'))
    .filter((e) => e !== '[DONE]')
    .map((e) => JSON.parse(e).choices[0]?.delta?.content ?? '')
    .join('');
  const stream = await client.chat.completions.create({ model: 'text-stream', messages, stream: true });
  let text = '';
  let n = 0;
  let finish = null;
  for await (const chunk of stream) {
    n++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.usage, undefined, 'no usage member when not asked');
    const c = chunk.choices[0];
    if (c?.delta?.content) text += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  assert.equal(text, want);
  assert.ok(n > 10);
  assert.equal(finish, 'stop');
});

test('streaming default reply with include_usage: last chunk carries usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'demo',
    messages,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.match(text, /You said: hello sdk/);
  assert.ok(usage && usage.total_tokens > 0, 'usage chunk received');
});

test('streamed tool call through the stream() helper: name and parsed arguments', async () => {
  const stream = client.chat.completions.stream({
    model: 'tool-stream',
    messages: [{ role: 'user', content: "What's the weather like in New York City?" }],
    tools: [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
    ],
  });
  const argDeltas = [];
  stream.on('tool_calls.function.arguments.delta', (e) => argDeltas.push(e.arguments_delta));
  const final = await stream.finalChatCompletion();
  const msg = final.choices[0].message;
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.tool_calls.length, 1);
  const call = msg.tool_calls[0];
  assert.equal(call.id, 'call_4XzlGBLtUe9dy3GVNV4jhq7h');
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'New York City' });
  assert.ok(argDeltas.length >= 2, 'arguments arrived in pieces');
});

test('embeddings: SDK default (base64) decodes to the same floats as a float request', async () => {
  await stack.fake.clear();
  const b64 = await client.embeddings.create({ model: 'emb', input: 'embed me' });
  const sent = JSON.parse(recordedBody(await stack.fake.lastUpstream()).toString('utf8'));
  assert.equal(sent.encoding_format, 'base64', 'the SDK asked for base64');
  const flt = await client.embeddings.create({ model: 'emb', input: 'embed me', encoding_format: 'float' });
  const a = b64.data[0].embedding;
  const b = flt.data[0].embedding;
  assert.ok(Array.isArray(a), 'decoded to an array');
  assert.ok(a.length > 0);
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.equal(typeof a[i], 'number');
    assert.ok(Math.abs(a[i] - b[i]) <= 1e-6 * Math.max(1, Math.abs(b[i])), `element ${i}: ${a[i]} vs ${b[i]}`);
  }
  assert.equal(b64.object, 'list');
});

test('models: list and retrieve', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), ['broken', 'demo', 'emb', 'limited', 'stream-cut', 'stream-error', 'text-stream', 'tool-stream']);
  const one = await client.models.retrieve('demo');
  assert.equal(one.id, 'demo');
  assert.equal(one.object, 'model');
});

async function rejectsWith(promise, cls, status) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
    if (status !== undefined) assert.equal(e.status, status);
    return true;
  });
}

test('401 → AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL: `${stack.gw.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
  await rejectsWith(bad.chat.completions.create({ model: 'demo', messages }), AuthenticationError, 401);
  await rejectsWith(bad.models.list(), AuthenticationError, 401);
});

test('unknown model → NotFoundError with code model_not_found', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages }), (e) => {
    assert.ok(e instanceof NotFoundError, e?.constructor?.name);
    assert.equal(e.status, 404);
    assert.equal(e.code, 'model_not_found');
    assert.equal(e.param, 'model');
    assert.equal(e.type, 'invalid_request_error');
    return true;
  });
});

test('missing model → BadRequestError', async () => {
  await assert.rejects(client.chat.completions.create({ messages }), (e) => {
    assert.ok(e instanceof BadRequestError, e?.constructor?.name);
    assert.equal(e.status, 400);
    assert.equal(e.code, 'missing_model');
    return true;
  });
});

test('429 → RateLimitError', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'limited', messages }), (e) => {
    assert.ok(e instanceof RateLimitError, e?.constructor?.name);
    assert.equal(e.status, 429);
    assert.equal(e.headers.get('retry-after'), '1');
    return true;
  });
});

test('500 → InternalServerError', async () => {
  await rejectsWith(client.chat.completions.create({ model: 'broken', messages }), InternalServerError, 500);
});

test('413 → APIError with status 413', async () => {
  const big = 'x'.repeat(1536 * 1024);
  await assert.rejects(
    client.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: big }] }),
    (e) => {
      assert.ok(e instanceof APIError, e?.constructor?.name);
      assert.equal(e.status, 413, `status ${e.status}: ${e.message}`);
      assert.equal(e.code, 'request_too_large');
      return true;
    },
  );
  const ok = await client.chat.completions.create({ model: 'demo', messages });
  assert.ok(ok.choices[0].message.content);
});

test('provider in-stream error → APIError thrown during iteration', async () => {
  const stream = await client.chat.completions.create({ model: 'stream-error', messages, stream: true });
  let threw = null;
  try {
    for await (const chunk of stream) void chunk;
  } catch (e) {
    threw = e;
  }
  assert.ok(threw instanceof APIError, `expected APIError, got ${threw?.constructor?.name}: ${threw?.message}`);
});

test('stream cut by the provider → APIError after the first chunks', async () => {
  const stream = await client.chat.completions.create({ model: 'stream-cut', messages, stream: true });
  let chunks = 0;
  let threw = null;
  try {
    for await (const chunk of stream) {
      void chunk;
      chunks++;
    }
  } catch (e) {
    threw = e;
  }
  assert.equal(chunks, 2, 'the chunks before the cut arrived');
  assert.ok(threw instanceof APIError, `expected APIError, got ${threw?.constructor?.name}: ${threw?.message}`);
});
