// Tag routing (LiteLLM's enable_tag_filtering): the request's tags pick the deployments.
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { fakeModel, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'm', 'delay_ms=1', { tags: ['free'] }),
      fakeModel(fake, 'm', 'delay_ms=2', { tags: ['paid', 'fast'] }),
      fakeModel(fake, 'm', 'delay_ms=3', { tags: ['default'] }),
      fakeModel(fake, 'untagged', 'delay_ms=4'),
      fakeModel(fake, 'strict', 'delay_ms=5', { tags: ['a'] }),
    ],
    extra: { router_settings: { enable_tag_filtering: true } },
  });
});

after(async () => {
  await stack?.stop();
});

beforeEach(async () => {
  await stack.fake.clear();
});

async function served(n, { header, metadata, model = 'm' } = {}) {
  for (let i = 0; i < n; i++) {
    const body = { model, messages: [{ role: 'user', content: 'hi' }] };
    if (metadata) body.metadata = metadata;
    const r = await stack.gw.call('/v1/chat/completions', {
      body,
      headers: header ? { 'x-switchboard-tags': header } : {},
    });
    assert.equal(r.status, 200, r.text);
  }
  const seen = new Set();
  for (const q of await stack.fake.upstreamRequests()) seen.add(q.path.match(/delay_ms=(\d)/)[1]);
  return [...seen].sort();
}

test('a tag picks the deployments that carry it', async () => {
  assert.deepEqual(await served(8, { header: 'paid' }), ['2']);
  await stack.fake.clear();
  assert.deepEqual(await served(8, { header: 'free, other' }), ['1']);
  await stack.fake.clear();
  assert.deepEqual(await served(8, { metadata: { tags: ['fast'] } }), ['2']);
});

test('no matching tag, or no tag at all: the "default" deployments', async () => {
  assert.deepEqual(await served(6, { header: 'unknown' }), ['3']);
  await stack.fake.clear();
  assert.deepEqual(await served(6), ['3']);
});

test('a group without tags serves everyone; an unmatched group with no default is a 400', async () => {
  assert.deepEqual(await served(3, { model: 'untagged', header: 'paid' }), ['4']);
  const r = await stack.gw.call('/v1/chat/completions', {
    body: { model: 'strict', messages: [{ role: 'user', content: 'hi' }] },
    headers: { 'x-switchboard-tags': 'b' },
  });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'no_deployment_for_tags');
  await stack.fake.clear();
  assert.deepEqual(await served(2, { model: 'strict', header: 'a' }), ['5']);
});
