// Every pair of client dialect (the official OpenAI and Anthropic SDKs, unchanged) and provider
// dialect (OpenAI, Anthropic, Gemini, Vertex AI, Bedrock, Cohere, all spoken by the fake
// provider): text, streams, tool calls accumulated by the SDKs' stream helpers, a tool result
// turn, usage, errors, and provider streams split at every byte.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { MASTER_KEY, PROVIDER_KEY, recordedBody, recordedHeader, startStack } from '../lib/harness.mjs';

const PROVIDERS = {
  openai: (fake, d) => ({ model: 'openai/gpt-fake', api_base: fake.base(d), api_key: PROVIDER_KEY }),
  anthropic: (fake, d) => ({ model: 'anthropic/claude-fake', api_base: fake.base(d, ''), api_key: PROVIDER_KEY }),
  gemini: (fake, d) => ({ model: 'gemini/gemini-fake', api_base: fake.base(d, ''), api_key: PROVIDER_KEY }),
  vertex: (fake, d) => ({
    model: 'vertex_ai/gemini-fake',
    api_base: fake.base(d, ''),
    api_key: PROVIDER_KEY,
    vertex_project: 'proj-1',
    vertex_location: 'us-central1',
  }),
  bedrock: (fake, d) => ({
    model: 'bedrock/anthropic.claude-fake-v1:0',
    api_base: fake.base(d, ''),
    aws_access_key_id: 'AKIDFAKE',
    aws_secret_access_key: 'fake-secret-key',
    aws_region_name: 'us-east-1',
  }),
  cohere: (fake, d) => ({ model: 'cohere/command-fake', api_base: fake.base(d, ''), api_key: PROVIDER_KEY }),
};

let stack;
let oai;
let ant;

before(async () => {
  stack = await startStack({
    models: (fake) => {
      const list = [];
      for (const [name, params] of Object.entries(PROVIDERS)) {
        list.push({ model_name: `${name}`, litellm_params: params(fake, '') });
        list.push({ model_name: `${name}-split`, litellm_params: params(fake, 'split=1') });
        list.push({ model_name: `${name}-500`, litellm_params: params(fake, 'status=500') });
        list.push({ model_name: `${name}-429`, litellm_params: params(fake, 'status=429') });
        // Bedrock answers bad credentials with a 403 (UnrecognizedClientException), never 401.
        list.push({ model_name: `${name}-401`, litellm_params: params(fake, name === 'bedrock' ? 'status=403' : 'status=401') });
        list.push({ model_name: `${name}-cut`, litellm_params: params(fake, 'cut_after=3') });
      }
      return list;
    },
  });
  oai = new OpenAI({ baseURL: `${stack.gw.url}/v1`, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
  ant = new Anthropic({ baseURL: stack.gw.url, apiKey: MASTER_KEY, maxRetries: 0, timeout: 20000 });
});

after(async () => {
  await stack?.stop();
});

const weatherTool = {
  name: 'get_weather',
  description: 'Weather of a city',
  schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};
const oaiTools = [
  { type: 'function', function: { name: weatherTool.name, description: weatherTool.description, parameters: weatherTool.schema } },
];
const antTools = [{ name: weatherTool.name, description: weatherTool.description, input_schema: weatherTool.schema }];

for (const provider of Object.keys(PROVIDERS)) {
  describe(`OpenAI SDK -> ${provider}`, () => {
    test('text, non-stream, with usage', async () => {
      const r = await oai.chat.completions.create({
        model: provider,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'hello there' },
        ],
      });
      assert.equal(r.object, 'chat.completion');
      assert.equal(r.choices[0].message.role, 'assistant');
      assert.match(r.choices[0].message.content, /You said: hello there/);
      assert.equal(r.choices[0].finish_reason, 'stop');
      assert.ok(r.usage.prompt_tokens > 0, JSON.stringify(r.usage));
      assert.ok(r.usage.completion_tokens > 0);
      assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    });

    test('text, stream, with include_usage', async () => {
      const stream = await oai.chat.completions.create({
        model: provider,
        messages: [{ role: 'user', content: 'stream me' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      let finish = null;
      let usage = null;
      for await (const chunk of stream) {
        assert.equal(chunk.object, 'chat.completion.chunk');
        const c = chunk.choices[0];
        if (c?.delta?.content) text += c.delta.content;
        if (c?.finish_reason) finish = c.finish_reason;
        if (chunk.usage) usage = chunk.usage;
      }
      assert.match(text, /You said: stream me/);
      assert.equal(finish, 'stop');
      assert.ok(usage && usage.prompt_tokens > 0 && usage.completion_tokens > 0, JSON.stringify(usage));
    });

    test('stream split at every byte by the provider', async () => {
      const stream = await oai.chat.completions.create({
        model: `${provider}-split`,
        messages: [{ role: 'user', content: 'split me' }],
        stream: true,
      });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      assert.match(text, /You said: split me/);
    });

    test('tool call, streamed, accumulated by the SDK helper; then a tool result turn', async () => {
      const runner = oai.chat.completions.stream({
        model: provider,
        messages: [{ role: 'user', content: 'Paris' }],
        tools: oaiTools,
      });
      const final = await runner.finalChatCompletion();
      const msg = final.choices[0].message;
      assert.equal(final.choices[0].finish_reason, 'tool_calls');
      assert.equal(msg.tool_calls.length, 1);
      const call = msg.tool_calls[0];
      assert.equal(call.function.name, 'get_weather');
      assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
      assert.ok(call.id);

      const r2 = await oai.chat.completions.create({
        model: provider,
        messages: [
          { role: 'user', content: 'Paris' },
          msg,
          { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' },
        ],
        tools: oaiTools,
      });
      assert.match(r2.choices[0].message.content, /The tool returned: .*sunny, 21 C/);
      assert.equal(r2.choices[0].finish_reason, 'stop');
    });

    test('tool call, non-stream', async () => {
      const r = await oai.chat.completions.create({
        model: provider,
        messages: [{ role: 'user', content: 'Oslo' }],
        tools: oaiTools,
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
      });
      const call = r.choices[0].message.tool_calls[0];
      assert.equal(call.type, 'function');
      assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Oslo' });
      assert.equal(r.choices[0].finish_reason, 'tool_calls');
    });

    test('provider errors: 429 is a RateLimitError, 401 an AuthenticationError, 500 a server error', async () => {
      await assert.rejects(
        oai.chat.completions.create({ model: `${provider}-429`, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof OpenAI.RateLimitError,
      );
      await assert.rejects(
        oai.chat.completions.create({ model: `${provider}-401`, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof OpenAI.AuthenticationError || e instanceof OpenAI.PermissionDeniedError,
      );
      await assert.rejects(
        oai.chat.completions.create({ model: `${provider}-500`, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof OpenAI.InternalServerError,
      );
    });

    test('a stream cut by the provider ends with an error the SDK raises', async () => {
      const stream = await oai.chat.completions.create({
        model: `${provider}-cut`,
        messages: [{ role: 'user', content: 'one two three four five six seven' }],
        stream: true,
      });
      await assert.rejects(async () => {
        for await (const chunk of stream) void chunk;
      });
    });
  });

  describe(`Anthropic SDK -> ${provider}`, () => {
    test('text, non-stream, with usage', async () => {
      const m = await ant.messages.create({
        model: provider,
        max_tokens: 256,
        system: 'Be brief.',
        messages: [{ role: 'user', content: 'hello there' }],
      });
      assert.equal(m.type, 'message');
      assert.equal(m.role, 'assistant');
      assert.equal(m.content[0].type, 'text');
      assert.match(m.content[0].text, /You said: hello there/);
      assert.equal(m.stop_reason, 'end_turn');
      assert.ok(m.usage.input_tokens > 0, JSON.stringify(m.usage));
      assert.ok(m.usage.output_tokens > 0);
    });

    test('text, stream: the SDK stream helper builds the final message', async () => {
      const stream = ant.messages.stream({
        model: provider,
        max_tokens: 256,
        messages: [{ role: 'user', content: 'stream me' }],
      });
      let text = '';
      stream.on('text', (t) => {
        text += t;
      });
      const m = await stream.finalMessage();
      assert.match(text, /You said: stream me/);
      assert.equal(m.content[0].text, text);
      assert.equal(m.stop_reason, 'end_turn');
      assert.ok(m.usage.output_tokens > 0);
    });

    test('stream split at every byte by the provider', async () => {
      const m = await ant.messages
        .stream({ model: `${provider}-split`, max_tokens: 64, messages: [{ role: 'user', content: 'split me' }] })
        .finalMessage();
      assert.match(m.content[0].text, /You said: split me/);
    });

    test('tool use, streamed, input accumulated by the SDK; then a tool_result turn', async () => {
      const stream = ant.messages.stream({
        model: provider,
        max_tokens: 256,
        messages: [{ role: 'user', content: 'Paris' }],
        tools: antTools,
      });
      const m = await stream.finalMessage();
      assert.equal(m.stop_reason, 'tool_use');
      const use = m.content.find((b) => b.type === 'tool_use');
      assert.ok(use, JSON.stringify(m.content));
      assert.equal(use.name, 'get_weather');
      assert.deepEqual(use.input, { city: 'Paris' });

      const m2 = await ant.messages.create({
        model: provider,
        max_tokens: 256,
        tools: antTools,
        messages: [
          { role: 'user', content: 'Paris' },
          { role: 'assistant', content: m.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 21 C' }] },
        ],
      });
      const text = m2.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
      assert.match(text, /The tool returned: .*sunny, 21 C/);
      assert.equal(m2.stop_reason, 'end_turn');
    });

    test('provider errors in the Anthropic envelope', async () => {
      await assert.rejects(
        ant.messages.create({ model: `${provider}-429`, max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof Anthropic.RateLimitError && e.error?.type === 'error',
      );
      await assert.rejects(
        ant.messages.create({ model: `${provider}-401`, max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof Anthropic.AuthenticationError || e instanceof Anthropic.PermissionDeniedError,
      );
      await assert.rejects(
        ant.messages.create({ model: `${provider}-500`, max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof Anthropic.InternalServerError,
      );
    });

    test('a stream cut by the provider ends with an error the SDK raises', async () => {
      const stream = ant.messages.stream({
        model: `${provider}-cut`,
        max_tokens: 64,
        messages: [{ role: 'user', content: 'one two three four five six seven' }],
      });
      await assert.rejects(stream.finalMessage());
    });
  });
}

describe('what goes upstream', () => {
  test('Anthropic to Anthropic passes the body through with only the model changed', async () => {
    await stack.fake.clear();
    const body = { model: 'anthropic', max_tokens: 32, messages: [{ role: 'user', content: 'keep me' }], top_k: 7 };
    const m = await ant.messages.create(body);
    assert.match(m.content[0].text, /keep me/);
    const rec = await stack.fake.lastUpstream();
    assert.match(rec.path, /\/v1\/messages$/);
    const sent = JSON.parse(recordedBody(rec).toString());
    assert.deepEqual(sent, { ...body, model: 'claude-fake' });
    assert.equal(recordedHeader(rec, 'x-api-key'), PROVIDER_KEY);
    assert.equal(recordedHeader(rec, 'anthropic-version'), '2023-06-01');
    assert.equal(recordedHeader(rec, 'authorization'), undefined);
  });

  test('OpenAI to Anthropic: system hoisted, max_tokens defaulted, tools translated', async () => {
    await stack.fake.clear();
    await oai.chat.completions.create({
      model: 'anthropic',
      messages: [
        { role: 'system', content: 'S1' },
        { role: 'user', content: 'Paris' },
      ],
      tools: oaiTools,
      tool_choice: 'required',
      parallel_tool_calls: false,
    });
    const sent = JSON.parse(recordedBody(await stack.fake.lastUpstream()).toString());
    assert.equal(sent.model, 'claude-fake');
    assert.equal(sent.system, 'S1');
    assert.ok(sent.max_tokens > 0);
    assert.equal(sent.messages.length, 1);
    assert.equal(sent.messages[0].role, 'user');
    assert.match(JSON.stringify(sent.messages[0].content), /Paris/);
    assert.equal(sent.tools[0].name, 'get_weather');
    assert.deepEqual(sent.tools[0].input_schema, weatherTool.schema);
    assert.equal(sent.tool_choice.type, 'any');
    assert.equal(sent.tool_choice.disable_parallel_tool_use, true);
  });

  test('Gemini: key header, model in the path, SSE for streams', async () => {
    await stack.fake.clear();
    const s = await oai.chat.completions.create({ model: 'gemini', messages: [{ role: 'user', content: 'hi' }], stream: true });
    for await (const c of s) void c;
    const rec = await stack.fake.lastUpstream();
    assert.match(rec.path, /\/v1beta\/models\/gemini-fake:streamGenerateContent\?alt=sse$/);
    assert.equal(recordedHeader(rec, 'x-goog-api-key'), PROVIDER_KEY);
  });

  test('Vertex AI: project and location in the path, bearer token', async () => {
    await stack.fake.clear();
    await oai.chat.completions.create({ model: 'vertex', messages: [{ role: 'user', content: 'hi' }] });
    const rec = await stack.fake.lastUpstream();
    assert.match(rec.path, /\/v1\/projects\/proj-1\/locations\/us-central1\/publishers\/google\/models\/gemini-fake:generateContent$/);
    assert.equal(recordedHeader(rec, 'authorization'), `Bearer ${PROVIDER_KEY}`);
  });

  test('Bedrock: SigV4 over the encoded model path; the secret never leaves', async () => {
    await stack.fake.clear();
    await oai.chat.completions.create({ model: 'bedrock', messages: [{ role: 'user', content: 'hi' }] });
    const rec = await stack.fake.lastUpstream();
    assert.match(rec.path, /\/model\/anthropic\.claude-fake-v1%3A0\/converse$/);
    const auth = recordedHeader(rec, 'authorization');
    assert.match(auth, /^AWS4-HMAC-SHA256 Credential=AKIDFAKE\/\d{8}\/us-east-1\/bedrock\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/);
    assert.match(recordedHeader(rec, 'x-amz-date'), /^\d{8}T\d{6}Z$/);
    assert.ok(!JSON.stringify(rec).includes('fake-secret-key'));
  });
});
