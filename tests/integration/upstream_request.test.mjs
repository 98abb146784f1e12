// What reaches the provider: the client's body byte for byte (only the model value changes),
// the deployment's credentials, and none of the client's headers.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  MASTER_KEY,
  PROVIDER_KEY,
  fakeModel,
  recordedBody,
  recordedHeader,
  startStack,
} from '../lib/harness.mjs';

const AZURE_KEY = 'azure-key-7f3e9c';
let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'demo'),
      {
        model_name: 'azure-demo',
        litellm_params: {
          model: 'azure/my-deployment',
          api_base: fake.url,
          api_key: AZURE_KEY,
          api_version: '2024-10-21',
        },
      },
    ],
  });
});

after(async () => {
  await stack?.stop();
});

async function sendAndRecord(path, body, headers = {}, key = MASTER_KEY) {
  await stack.fake.clear();
  const res = await stack.gw.call(path, { body, headers, key });
  const rec = await stack.fake.lastUpstream();
  return { res, rec };
}

test('body is forwarded byte for byte except the model value', async () => {
  const before = '{ "messages" :[ {"role":"user", "content":"caf\\u00e9 \\ud83d\\ude00 \\"quoted\\" \\/ \\t über 日本"} ] ,\n\t"model"  :  ';
  const after = ' , "temperature":0.50, "n":1,"metadata":{"model":"demo"},"x_extra" : {"a":[1,2.0e0,{}],"b":null}  }';
  const sent = `${before}"demo"${after}`;
  const expected = `${before}"gpt-fake"${after}`;
  const { res, rec } = await sendAndRecord('/v1/chat/completions', sent);
  assert.equal(res.status, 200, res.text);
  assert.equal(rec.method, 'POST');
  assert.equal(rec.path, '/v1/chat/completions');
  assert.equal(recordedBody(rec).toString('utf8'), expected);
});

test('model as the last member, with escapes in the alias, is replaced exactly', async () => {
  const sent = '{"messages":[{"role":"user","content":"hi"}],"model":"d\\u0065mo"}';
  const { res, rec } = await sendAndRecord('/v1/chat/completions', sent);
  assert.equal(res.status, 200, res.text);
  assert.equal(recordedBody(rec).toString('utf8'), '{"messages":[{"role":"user","content":"hi"}],"model":"gpt-fake"}');
});

test('provider credentials go upstream, client headers and key do not', async () => {
  const sent = '{"model":"demo","messages":[{"role":"user","content":"hi"}]}';
  const { res, rec } = await sendAndRecord('/v1/chat/completions', sent, {
    'x-request-id': 'upstream-rid-0001',
    'x-client-secret': 'client-only-value-93841',
    cookie: 'session=client-cookie-93841',
    'openai-organization': 'org-client-93841',
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(recordedHeader(rec, 'authorization'), `Bearer ${PROVIDER_KEY}`);
  assert.match(String(recordedHeader(rec, 'content-type')), /^application\/json/);
  assert.equal(recordedHeader(rec, 'x-request-id'), 'upstream-rid-0001');
  for (const [n, v] of rec.headers) {
    assert.ok(!String(v).includes(MASTER_KEY), `client key leaked upstream in ${n}`);
    assert.ok(!String(v).includes('93841'), `client header leaked upstream: ${n}: ${v}`);
  }
  assert.equal(recordedHeader(rec, 'x-client-secret'), undefined);
  assert.equal(recordedHeader(rec, 'cookie'), undefined);
  assert.equal(recordedHeader(rec, 'openai-organization'), undefined);
});

test('client key sent as x-api-key or api-key is not forwarded either', async () => {
  for (const h of ['x-api-key', 'api-key']) {
    const { res, rec } = await sendAndRecord(
      '/v1/chat/completions',
      '{"model":"demo","messages":[{"role":"user","content":"hi"}]}',
      { [h]: MASTER_KEY },
      null,
    );
    assert.equal(res.status, 200, `${h}: ${res.text}`);
    assert.equal(recordedHeader(rec, 'authorization'), `Bearer ${PROVIDER_KEY}`);
    for (const [n, v] of rec.headers) assert.ok(!String(v).includes(MASTER_KEY), `client key leaked upstream in ${n}`);
  }
});

test('a generated x-request-id is sent upstream and returned to the client', async () => {
  const { res, rec } = await sendAndRecord('/v1/chat/completions', '{"model":"demo","messages":[{"role":"user","content":"hi"}]}');
  assert.equal(res.status, 200, res.text);
  const rid = res.headers.get('x-request-id');
  assert.ok(rid && rid.length > 0, 'x-request-id in the response');
  assert.equal(recordedHeader(rec, 'x-request-id'), rid);
});

test('stream:true without stream_options gets include_usage appended as the last member', async () => {
  const sent = '{"model":"demo", "stream" : true,"messages":[{"role":"user","content":"hi"}] }';
  const { res, rec } = await sendAndRecord('/v1/chat/completions', sent);
  assert.equal(res.status, 200, res.text);
  const got = recordedBody(rec).toString('utf8');
  const prefix = '{"model":"gpt-fake", "stream" : true,"messages":[{"role":"user","content":"hi"}]';
  assert.ok(got.startsWith(prefix), `upstream body keeps the client's bytes: ${got}`);
  assert.match(got.slice(prefix.length), /^\s*,\s*"stream_options"\s*:\s*\{\s*"include_usage"\s*:\s*true\s*\}\s*\}\s*$/);
  const parsed = JSON.parse(got);
  assert.deepEqual(Object.keys(parsed), ['model', 'stream', 'messages', 'stream_options']);
});

test('stream:true that already asks for include_usage is forwarded unchanged', async () => {
  const sent = '{"model":"demo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}';
  const { res, rec } = await sendAndRecord('/v1/chat/completions', sent);
  assert.equal(res.status, 200, res.text);
  assert.equal(
    recordedBody(rec).toString('utf8'),
    '{"model":"gpt-fake","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}',
  );
});

test('non-stream request gets no stream_options added', async () => {
  const sent = '{"model":"demo","stream":false,"messages":[{"role":"user","content":"hi"}]}';
  const { rec } = await sendAndRecord('/v1/chat/completions', sent);
  assert.equal(recordedBody(rec).toString('utf8'), '{"model":"gpt-fake","stream":false,"messages":[{"role":"user","content":"hi"}]}');
});

test('path suffix is appended to api_base for each endpoint, with or without /v1', async () => {
  const cases = [
    ['/v1/chat/completions', '{"model":"demo","messages":[{"role":"user","content":"hi"}]}', '/v1/chat/completions'],
    ['/chat/completions', '{"model":"demo","messages":[{"role":"user","content":"hi"}]}', '/v1/chat/completions'],
    ['/v1/completions', '{"model":"demo","prompt":"x"}', '/v1/completions'],
    ['/completions', '{"model":"demo","prompt":"x"}', '/v1/completions'],
    ['/v1/embeddings', '{"model":"demo","input":"x"}', '/v1/embeddings'],
    ['/embeddings', '{"model":"demo","input":"x"}', '/v1/embeddings'],
  ];
  for (const [path, body, upstreamPath] of cases) {
    const { res, rec } = await sendAndRecord(path, body);
    assert.equal(res.status, 200, `${path}: ${res.text}`);
    assert.equal(rec.path, upstreamPath, path);
    assert.equal(recordedBody(rec).toString('utf8'), body.replace('"demo"', '"gpt-fake"'), path);
  }
});

test('azure: deployment URL with api-version, api-key header, no Authorization', async () => {
  const sent = '{"model":"azure-demo","messages":[{"role":"user","content":"hi"}]}';
  const { rec } = await sendAndRecord('/v1/chat/completions', sent);
  assert.equal(rec.method, 'POST');
  assert.equal(rec.path, '/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21');
  assert.equal(recordedHeader(rec, 'api-key'), AZURE_KEY);
  assert.equal(recordedHeader(rec, 'authorization'), undefined);
  assert.equal(
    recordedBody(rec).toString('utf8'),
    '{"model":"my-deployment","messages":[{"role":"user","content":"hi"}]}',
  );
  for (const [n, v] of rec.headers) assert.ok(!String(v).includes(MASTER_KEY), `client key leaked upstream in ${n}`);
});

test('azure embeddings use the same deployment URL scheme', async () => {
  const { rec } = await sendAndRecord('/v1/embeddings', '{"model":"azure-demo","input":"x"}');
  assert.equal(rec.path, '/openai/deployments/my-deployment/embeddings?api-version=2024-10-21');
  assert.equal(recordedHeader(rec, 'api-key'), AZURE_KEY);
});
