// Routing strategies over many requests, priority tiers, model_group_alias, and what the
// gateway shows of deployment state (GET /router/deployments, /metrics).
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { fakeModel, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'weighted', 'delay_ms=0', { weight: 1 }),
      fakeModel(fake, 'weighted', 'delay_ms=1', { weight: 3 }),
      fakeModel(fake, 'tiered', 'delay_ms=2', { order: 2 }),
      fakeModel(fake, 'tiered', 'delay_ms=3', { order: 1 }),
    ],
    // The default strategy: simple-shuffle (LiteLLM's).
    extra: { router_settings: { model_group_alias: { 'gpt-4': 'weighted' } } },
  });
});

after(async () => {
  await stack?.stop();
});

beforeEach(async () => {
  await stack.fake.clear();
});

const chat = (model) => ({ model, messages: [{ role: 'user', content: 'hi' }] });

async function countByPath() {
  const out = {};
  for (const q of await stack.fake.upstreamRequests()) {
    const m = q.path.match(/delay_ms=(\d)/);
    if (m) out[m[1]] = (out[m[1]] || 0) + 1;
  }
  return out;
}

async function burst(model, n) {
  for (let i = 0; i < n; i += 20) {
    const rs = await Promise.all(
      Array.from({ length: Math.min(20, n - i) }, () =>
        stack.gw.call('/v1/chat/completions', { body: chat(model) }),
      ),
    );
    for (const r of rs) assert.equal(r.status, 200, r.text);
  }
}

test('simple-shuffle spreads load by weight (1:3, 240 requests)', async () => {
  // The fake keeps its last 64 requests: count in rounds of 60.
  const c = { 0: 0, 1: 0 };
  for (let round = 0; round < 4; round++) {
    await stack.fake.clear();
    await burst('weighted', 60);
    const got = await countByPath();
    c[0] += got['0'] || 0;
    c[1] += got['1'] || 0;
  }
  assert.equal(c[0] + c[1], 240);
  // Expected 60 and 180; a binomial spread of about ±7: the bounds are 4 standard deviations.
  assert.ok(c[1] >= 150 && c[1] <= 210, JSON.stringify(c));
});

test('order: the first tier takes all traffic while it is healthy', async () => {
  await burst('tiered', 40);
  const c = await countByPath();
  assert.deepEqual(c, { 3: 40 });
});

test('model_group_alias routes another name to the group', async () => {
  const r = await stack.gw.call('/v1/chat/completions', { body: chat('gpt-4') });
  assert.equal(r.status, 200);
  assert.ok(['openai/gpt-fake'].includes(r.headers.get('x-switchboard-deployment')));
  const line = await stack.gw.waitForAccess((l) => l.request_id === r.headers.get('x-request-id'));
  assert.equal(line.model, 'weighted');
});

test('GET /router/deployments shows each deployment, with the master key only', async () => {
  const anon = await stack.gw.call('/router/deployments', { key: null });
  assert.equal(anon.status, 401);
  const r = await stack.gw.call('/router/deployments');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.routing_strategy, 'simple-shuffle');
  assert.equal(r.json.deployments.length, 4);
  for (const d of r.json.deployments) {
    assert.equal(d.state, 'healthy');
    assert.equal(d.in_flight, 0);
    assert.ok(!JSON.stringify(d).includes('sk-'), 'no key in the view');
  }
  const used = r.json.deployments.filter((d) => d.latency_ms > 0);
  assert.ok(used.length >= 3, JSON.stringify(r.json));
  assert.deepEqual(
    r.json.deployments.map((d) => d.order),
    [0, 0, 2, 1],
  );
});

test('/metrics has per-deployment state, in-flight and latency gauges', async () => {
  const r = await stack.gw.call('/metrics', { key: null });
  assert.equal(r.status, 200);
  assert.match(r.text, /^switchboard_deployment_cooling_down\{model="weighted",deployment="openai\/gpt-fake",deployment_id="0"\} 0$/m);
  assert.match(r.text, /^switchboard_deployment_in_flight\{model="tiered",.*\} 0$/m);
  assert.match(r.text, /^switchboard_deployment_latency_seconds\{model="weighted",.*deployment_id="1"\} 0\.\d+$/m);
});
