// Translation details checked at the bytes: what goes upstream and what the client gets for
// signatures across turns, usage with cached tokens, in-stream errors, retry hints, count_tokens,
// embeddings of every provider, and the Anthropic envelope of the /v1/messages route.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MASTER_KEY, PROVIDER_KEY, recordedBody, recordedHeader, sseData, startStack } from '../lib/harness.mjs';

const anthropic = (fake, d = '') => ({ model: 'anthropic/claude-fake', api_base: fake.base(d, ''), api_key: PROVIDER_KEY });
const gemini = (fake, d = '') => ({ model: 'gemini/gemini-fake', api_base: fake.base(d, ''), api_key: PROVIDER_KEY });
const bedrock = (fake, d = '', model = 'anthropic.claude-fake-v1:0') => ({
  model: `bedrock/${model}`,
  api_base: fake.base(d, ''),
  aws_access_key_id: 'AKIDFAKE',
  aws_secret_access_key: 'fake-secret-key',
});
const cohere = (fake, d = '', model = 'command-fake') => ({ model: `cohere/${model}`, api_base: fake.base(d, ''), api_key: PROVIDER_KEY });
const openai = (fake, d = '') => ({ model: 'openai/gpt-fake', api_base: fake.base(d), api_key: PROVIDER_KEY });

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      { model_name: 'ant', litellm_params: anthropic(fake) },
      { model_name: 'ant-think', litellm_params: anthropic(fake, 'thinking=1') },
      { model_name: 'ant-cached', litellm_params: anthropic(fake, 'cached=100') },
      { model_name: 'ant-stream-error', litellm_params: anthropic(fake, 'stream_error=1') },
      { model_name: 'ant-529', litellm_params: anthropic(fake, 'status=529') },
      { model_name: 'ant-fixture-tools', litellm_params: anthropic(fake, 'fixture=anthropic%2Fmessages_stream_tool_use.sse') },
      { model_name: 'gem', litellm_params: gemini(fake) },
      { model_name: 'gem3', litellm_params: gemini(fake, 'gemini3=1') },
      { model_name: 'gem-429', litellm_params: gemini(fake, 'status=429') },
      { model_name: 'gem-cached', litellm_params: gemini(fake, 'cached=40') },
      { model_name: 'gem-embed', litellm_params: { ...gemini(fake), model: 'gemini/text-embedding-004' } },
      { model_name: 'titan', litellm_params: bedrock(fake, '', 'amazon.titan-embed-text-v2:0') },
      { model_name: 'cohere-embed', litellm_params: cohere(fake, '', 'embed-v4.0') },
      { model_name: 'oai', litellm_params: openai(fake) },
      {
        model_name: 'vertex',
        litellm_params: { model: 'vertex_ai/gemini-fake', api_base: fake.base('', ''), api_key: PROVIDER_KEY, vertex_project: 'p' },
      },
      // A 529 on one deployment is retried on the other one of the group.
      { model_name: 'ant-group', litellm_params: anthropic(fake, 'status=529') },
      { model_name: 'ant-group', litellm_params: anthropic(fake) },
    ],
    extra: { router_settings: { num_retries: 2, routing_strategy: 'simple-shuffle' } },
  });
});

after(async () => {
  await stack?.stop();
});

async function post(path, body, headers = {}) {
  const res = await fetch(`${stack.gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // streams and bad bodies
  }
  return { status: res.status, headers: res.headers, text, json };
}

const chat = (model, extra = {}) =>
  post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hello' }], ...extra });
const upstreamBody = async () => JSON.parse(recordedBody(await stack.fake.lastUpstream()).toString());

describe('thinking and signatures across turns', () => {
  test('Anthropic thinking reaches an OpenAI client as reasoning_content and thinking_blocks, and goes back', async () => {
    const r = await chat('ant-think');
    assert.equal(r.status, 200, r.text);
    const msg = r.json.choices[0].message;
    assert.match(msg.reasoning_content, /Let me think/);
    assert.equal(msg.thinking_blocks[0].type, 'thinking');
    assert.match(msg.thinking_blocks[0].signature, /^sig-fake-/);
    await stack.fake.clear();
    const r2 = await post('/v1/chat/completions', {
      model: 'ant',
      messages: [
        { role: 'user', content: 'hello' },
        msg,
        { role: 'user', content: 'and then?' },
      ],
    });
    assert.equal(r2.status, 200, r2.text);
    const sent = await upstreamBody();
    const assistant = sent.messages.find((m) => m.role === 'assistant');
    assert.equal(assistant.content[0].type, 'thinking');
    assert.equal(assistant.content[0].signature, msg.thinking_blocks[0].signature);
    assert.equal(assistant.content[0].thinking, msg.thinking_blocks[0].thinking);
  });

  test('Gemini 3: the functionCall id and thoughtSignature come back on the next turn', async () => {
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }];
    const r = await post('/v1/chat/completions', { model: 'gem3', messages: [{ role: 'user', content: 'find it' }], tools });
    assert.equal(r.status, 200, r.text);
    const msg = r.json.choices[0].message;
    assert.equal(r.json.choices[0].finish_reason, 'tool_calls');
    const call = msg.tool_calls[0];
    assert.match(call.id, /^g3fake/);
    assert.ok(msg.thinking_blocks?.some((b) => /^sig-fake-/.test(b.signature)), JSON.stringify(msg));
    await stack.fake.clear();
    const r2 = await post('/v1/chat/completions', {
      model: 'gem3',
      tools,
      messages: [
        { role: 'user', content: 'find it' },
        msg,
        { role: 'tool', tool_call_id: call.id, content: '{"answer": 42}' },
      ],
    });
    assert.equal(r2.status, 200, r2.text);
    const sent = await upstreamBody();
    const model = sent.contents.find((c) => c.role === 'model');
    const fc = model.parts.find((p) => p.functionCall);
    assert.equal(fc.functionCall.id, call.id);
    assert.equal(fc.functionCall.name, 'lookup');
    assert.match(fc.thoughtSignature, /^sig-fake-/);
    const resp = sent.contents[sent.contents.length - 1].parts.find((p) => p.functionResponse);
    assert.equal(resp.functionResponse.name, 'lookup', 'the name is found from the call id');
    assert.deepEqual(resp.functionResponse.response, { answer: 42 });
  });
});

describe('usage', () => {
  test('Anthropic cache reads count in prompt_tokens and cached_tokens', async () => {
    const r = await chat('ant-cached');
    const u = r.json.usage;
    assert.equal(u.prompt_tokens_details.cached_tokens, 100);
    assert.ok(u.prompt_tokens > 100, JSON.stringify(u));
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  });

  test('Gemini cached content is part of promptTokenCount, not added twice', async () => {
    const plain = (await chat('gem')).json.usage;
    const cached = (await chat('gem-cached')).json.usage;
    assert.equal(cached.prompt_tokens_details.cached_tokens, 40);
    assert.equal(cached.prompt_tokens, plain.prompt_tokens + 40, `${JSON.stringify(plain)} ${JSON.stringify(cached)}`);
  });

  test('an Anthropic client served by OpenAI sees input_tokens without the cached part', async () => {
    const r = await post('/v1/messages', { model: 'oai', max_tokens: 10, messages: [{ role: 'user', content: 'hi there' }] });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.usage.input_tokens > 0);
    assert.equal(r.json.usage.cache_read_input_tokens, 0);
  });

  test('the access log has the translated usage', async () => {
    await chat('ant-cached');
    const line = await stack.gw.waitForAccess((l) => l.model === 'ant-cached');
    assert.ok(line.tokens_in > 100);
    assert.equal(line.tokens_cached, 100);
    assert.ok(line.tokens_out > 0);
  });
});

describe('errors', () => {
  test('an error inside an Anthropic stream becomes an OpenAI error event', async () => {
    const r = await chat('ant-stream-error', { stream: true });
    assert.equal(r.status, 200);
    const events = sseData(r.text);
    const last = JSON.parse(events[events.length - 1]);
    assert.ok(last.error, r.text);
    assert.match(last.error.message, /Overloaded/i);
    assert.ok(!events.includes('[DONE]'));
  });

  test('a 529 is retried on the other deployment of the group', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await chat('ant-group');
      assert.equal(r.status, 200, r.text);
    }
  });

  test('a lone 529 reaches an OpenAI client as 503, an Anthropic client as 529', async () => {
    const r = await chat('ant-529');
    assert.equal(r.status, 503, r.text);
    assert.ok(r.json.error.message);
    const a = await post('/v1/messages', { model: 'ant-529', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(a.status, 529, a.text);
    assert.equal(a.json.type, 'error');
    assert.equal(a.json.error.type, 'overloaded_error');
  });

  test("Gemini's RetryInfo becomes a Retry-After header", async () => {
    const r = await chat('gem-429');
    assert.equal(r.status, 429, r.text);
    assert.match(String(r.headers.get('retry-after')), /^\d+$/);
    assert.equal(r.json.error.type, 'rate_limit_error');
  });

  test('the gateway answers /v1/messages in the Anthropic envelope', async () => {
    const unknown = await post('/v1/messages', { model: 'nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(unknown.status, 404);
    assert.deepEqual(Object.keys(unknown.json).sort(), ['error', 'type']);
    assert.equal(unknown.json.error.type, 'not_found_error');
    const noMax = await post('/v1/messages', { model: 'oai', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(noMax.status, 400);
    assert.equal(noMax.json.error.type, 'invalid_request_error');
    assert.match(noMax.json.error.message, /max_tokens/);
    const bad = await post('/v1/messages', '{"model":');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.type, 'error');
    const noKey = await fetch(`${stack.gw.url}/v1/messages`, { method: 'POST', body: '{}' });
    assert.equal(noKey.status, 401);
    assert.equal((await noKey.json()).error.type, 'authentication_error');
  });

  test('the legacy completions endpoint is refused for a non-OpenAI model', async () => {
    const r = await post('/v1/completions', { model: 'ant', prompt: 'x' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'unsupported_endpoint');
  });
});

describe('streams', () => {
  test('a recorded Anthropic tool-use stream reaches an OpenAI client with tool-call indexes counting calls only', async () => {
    const r = await chat('ant-fixture-tools', { stream: true, stream_options: { include_usage: true } });
    assert.equal(r.status, 200);
    const events = sseData(r.text);
    assert.equal(events[events.length - 1], '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const calls = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
    assert.ok(calls.length > 1);
    assert.ok(calls.every((c) => c.index === 0), 'one tool call: index 0 although its Anthropic block index is 1');
    assert.ok(calls[0].id && calls[0].function.name);
    const args = calls.map((c) => c.function.arguments ?? '').join('');
    assert.doesNotThrow(() => JSON.parse(args));
    const finish = chunks.find((c) => c.choices[0]?.finish_reason);
    assert.equal(finish.choices[0].finish_reason, 'tool_calls');
    const usage = chunks[chunks.length - 1];
    assert.deepEqual(usage.choices, []);
    assert.ok(usage.usage.prompt_tokens > 0);
  });

  test('the Anthropic event sequence for an OpenAI-served stream', async () => {
    const res = await fetch(`${stack.gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': MASTER_KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'oai', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'a b' }] }),
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    const names = [...text.matchAll(/^event: (.+)$/gm)].map((m) => m[1]);
    assert.equal(names[0], 'message_start');
    assert.equal(names[names.length - 1], 'message_stop');
    assert.equal(names[names.length - 2], 'message_delta');
    assert.ok(names.includes('content_block_start') && names.includes('content_block_delta') && names.includes('content_block_stop'));
    for (const m of text.matchAll(/^event: (.+)\ndata: (.+)$/gm)) assert.equal(JSON.parse(m[2]).type, m[1]);
  });
});

describe('count_tokens', () => {
  test('an Anthropic model counts upstream', async () => {
    await stack.fake.clear();
    const r = await post('/v1/messages/count_tokens', { model: 'ant', messages: [{ role: 'user', content: 'count these words' }] });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.input_tokens > 0);
    assert.match((await stack.fake.lastUpstream()).path, /\/v1\/messages\/count_tokens$/);
  });

  test('other models get an estimate that says so', async () => {
    const r = await post('/v1/messages/count_tokens', {
      model: 'oai',
      system: 'You are terse.',
      messages: [{ role: 'user', content: 'count these words please, all of them' }],
    });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.input_tokens > 5);
    assert.equal(r.headers.get('x-switchboard-token-count'), 'estimated');
  });
});

describe('embeddings', () => {
  const input = ['alpha', 'beta gamma', 'delta'];

  test('Gemini: one batch call, vectors in OpenAI shape', async () => {
    await stack.fake.clear();
    const r = await post('/v1/embeddings', { model: 'gem-embed', input, dimensions: 8 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'list');
    assert.equal(r.json.data.length, 3);
    r.json.data.forEach((d, i) => {
      assert.equal(d.index, i);
      assert.equal(d.object, 'embedding');
      assert.ok(d.embedding.length > 0);
    });
    const ups = await stack.fake.upstreamRequests();
    assert.equal(ups.length, 1);
    assert.match(ups[0].path, /:batchEmbedContents$/);
  });

  test('Bedrock Titan: one call per input, in order', async () => {
    await stack.fake.clear();
    const r = await post('/v1/embeddings', { model: 'titan', input });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.data.length, 3);
    const ups = await stack.fake.upstreamRequests();
    assert.equal(ups.length, 3);
    assert.deepEqual(ups.map((u) => JSON.parse(recordedBody(u).toString()).inputText), input);
    assert.ok(ups.every((u) => /\/model\/amazon\.titan-embed-text-v2%3A0\/invoke$/.test(u.path)));
    assert.ok(r.json.usage.prompt_tokens > 0);
  });

  test('Cohere, base64', async () => {
    const f = await post('/v1/embeddings', { model: 'cohere-embed', input: 'one' });
    const b = await post('/v1/embeddings', { model: 'cohere-embed', input: 'one', encoding_format: 'base64' });
    assert.equal(b.status, 200, b.text);
    const buf = Buffer.from(b.json.data[0].embedding, 'base64');
    const floats = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4));
    assert.equal(floats.length, f.json.data[0].embedding.length);
    floats.forEach((v, i) => assert.ok(Math.abs(v - f.json.data[0].embedding[i]) < 1e-6));
  });

  test('a model without embeddings says so', async () => {
    const r = await post('/v1/embeddings', { model: 'ant', input: 'x' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'unsupported_endpoint');
  });
});

describe('upstream requests', () => {
  test('an Anthropic client served by OpenAI: tool results become tool messages before the text', async () => {
    await stack.fake.clear();
    const r = await post('/v1/messages', {
      model: 'oai',
      max_tokens: 20,
      system: [{ type: 'text', text: 'sys' }],
      tools: [{ name: 't', input_schema: { type: 'object', properties: {} } }],
      messages: [
        { role: 'user', content: 'go' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 't', input: { a: 1 } }] },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: 'done' },
            { type: 'text', text: 'thanks' },
          ],
        },
      ],
    });
    assert.equal(r.status, 200, r.text);
    const sent = await upstreamBody();
    assert.deepEqual(sent.messages.map((m) => m.role), ['system', 'user', 'assistant', 'tool', 'user']);
    assert.equal(sent.messages[2].tool_calls[0].id, 'toolu_1');
    assert.deepEqual(JSON.parse(sent.messages[2].tool_calls[0].function.arguments), { a: 1 });
    assert.equal(sent.messages[3].tool_call_id, 'toolu_1');
    assert.equal(sent.max_completion_tokens, 20);
    assert.equal(recordedHeader(await stack.fake.lastUpstream(), 'authorization'), `Bearer ${PROVIDER_KEY}`);
  });

  test('the client key never reaches a provider of any dialect', async () => {
    await stack.fake.clear();
    for (const model of ['ant', 'gem', 'vertex', 'oai']) await chat(model);
    for (const u of await stack.fake.upstreamRequests()) assert.ok(!JSON.stringify(u).includes(MASTER_KEY), u.path);
  });
});

describe('Claude Code shapes', () => {
  test('a Claude Code-like request (beta query, cache_control, thinking, metadata) runs on an OpenAI model', async () => {
    await stack.fake.clear();
    const res = await fetch(`${stack.gw.url}/v1/messages?beta=true`, {
      method: 'POST',
      headers: {
        'x-api-key': MASTER_KEY,
        'anthropic-version': '2023-06-01',
        'anthropic-beta': 'claude-code-20250219,interleaved-thinking-2025-05-14',
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'oai',
        max_tokens: 32000,
        stream: true,
        metadata: { user_id: 'user_abc_account__session_123' },
        system: [
          { type: 'text', text: 'You are Claude Code.', cache_control: { type: 'ephemeral' } },
          { type: 'text', text: 'Be concise.' },
        ],
        thinking: { type: 'enabled', budget_tokens: 4000 },
        tools: [
          {
            name: 'Bash',
            description: 'Run a command',
            input_schema: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] },
            cache_control: { type: 'ephemeral' },
          },
        ],
        messages: [{ role: 'user', content: [{ type: 'text', text: 'list files', cache_control: { type: 'ephemeral' } }] }],
      }),
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    const events = [...text.matchAll(/^data: (.+)$/gm)].map((m) => JSON.parse(m[1]));
    const start = events.find((e) => e.type === 'content_block_start' && e.content_block.type === 'tool_use');
    assert.ok(start, text);
    assert.equal(start.content_block.name, 'Bash');
    const args = events
      .filter((e) => e.type === 'content_block_delta' && e.delta.type === 'input_json_delta')
      .map((e) => e.delta.partial_json)
      .join('');
    assert.deepEqual(JSON.parse(args), { command: 'list files' });
    const delta = events.find((e) => e.type === 'message_delta');
    assert.equal(delta.delta.stop_reason, 'tool_use');
    const sent = await upstreamBody();
    assert.equal(sent.messages[0].role, 'system');
    assert.match(JSON.stringify(sent.messages[0]), /You are Claude Code/);
    assert.equal(sent.reasoning_effort, 'high');
    assert.equal(sent.user, 'user_abc_account__session_123');
    assert.equal(sent.tools[0].function.name, 'Bash');
  });
});
