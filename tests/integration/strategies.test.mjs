// Each routing strategy, measured over many requests against deployments that differ in
// speed, limits or price; allowed_fails_policy; router_settings.timeout.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { fakeModel, sleep, startStack } from '../lib/harness.mjs';

const chat = (model) => ({ model, messages: [{ role: 'user', content: 'hi' }] });

async function countPaths(stack) {
  const out = {};
  for (const q of await stack.fake.upstreamRequests()) {
    const m = q.path.match(/delay_ms=(\d+)/);
    if (m) out[m[1]] = (out[m[1]] || 0) + 1;
  }
  return out;
}

function withStack(strategy, models, extraRouter = {}) {
  let stack;
  const get = async () => {
    if (!stack) {
      stack = await startStack({
        models,
        extra: { router_settings: { routing_strategy: strategy, ...extraRouter } },
      });
    }
    return stack;
  };
  after(async () => {
    await stack?.stop();
  });
  return get;
}

describe('latency-based-routing', () => {
  const get = withStack('latency-based-routing', (fake) => [
    fakeModel(fake, 'm', 'delay_ms=1'),
    fakeModel(fake, 'm', 'delay_ms=60'),
  ]);
  test('most traffic goes to the faster deployment', async () => {
    const stack = await get();
    await stack.fake.clear();
    for (let i = 0; i < 40; i++) {
      const r = await stack.gw.call('/v1/chat/completions', { body: chat('m') });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('x-switchboard-overhead-ms'), /^\d+\.\d{3}$/);
    }
    const c = await countPaths(stack);
    assert.ok((c['1'] || 0) >= 32, JSON.stringify(c)); // 1 in 16 explores, plus the first probe
  });
});

describe('least-busy', () => {
  const get = withStack('least-busy', (fake) => [
    fakeModel(fake, 'm', 'delay_ms=1'),
    fakeModel(fake, 'm', 'delay_ms=150'),
  ]);
  test('concurrent traffic avoids the deployment with calls piling up', async () => {
    const stack = await get();
    await stack.fake.clear();
    // Requests arrive every 10 ms; a call to the slow deployment lasts 150 ms.
    const pending = [];
    for (let i = 0; i < 60; i++) {
      pending.push(stack.gw.call('/v1/chat/completions', { body: chat('m') }));
      await sleep(10);
    }
    (await Promise.all(pending)).forEach((r) => assert.equal(r.status, 200));
    const c = await countPaths(stack);
    assert.ok((c['1'] || 0) > 2 * (c['150'] || 0), JSON.stringify(c));
  });
});

describe('usage-based-routing', () => {
  const get = withStack('usage-based-routing', (fake) => [
    fakeModel(fake, 'm', 'delay_ms=1', { rpm: 10 }),
    fakeModel(fake, 'm', 'delay_ms=2', { rpm: 30 }),
  ]);
  test('calls follow each deployment rpm headroom', async () => {
    const stack = await get();
    await stack.fake.clear();
    for (let i = 0; i < 40; i++) {
      const r = await stack.gw.call('/v1/chat/completions', { body: chat('m') });
      assert.equal(r.status, 200);
    }
    const c = await countPaths(stack);
    // Within one minute: 10 and 30 (a minute boundary during the test shifts it a little).
    assert.ok(c['2'] >= 25 && c['1'] >= 5, JSON.stringify(c));
  });
});

describe('cost-based-routing and a global timeout', () => {
  const get = withStack(
    'cost-based-routing',
    (fake) => [
      fakeModel(fake, 'm', 'delay_ms=1', { input_cost_per_token: 0.00001, output_cost_per_token: 0.00003 }),
      { ...fakeModel(fake, 'm', 'delay_ms=2'), model_info: { input_cost_per_token: 0.0000001, output_cost_per_token: 0.0000004 } },
      fakeModel(fake, 'm', 'delay_ms=3'), // no price: last
      fakeModel(fake, 'slow', 'delay_ms=2000'),
    ],
    { timeout: 0.3 },
  );
  test('the cheapest deployment takes the traffic', async () => {
    const stack = await get();
    await stack.fake.clear();
    for (let i = 0; i < 10; i++) {
      const r = await stack.gw.call('/v1/chat/completions', { body: chat('m') });
      assert.equal(r.status, 200);
    }
    assert.deepEqual(await countPaths(stack), { 2: 10 });
  });
  test('router_settings.timeout applies to deployments without their own', async () => {
    const stack = await get();
    const t0 = Date.now();
    const r = await stack.gw.call('/v1/chat/completions', { body: chat('slow') });
    assert.equal(r.status, 504, r.text);
    assert.ok(Date.now() - t0 < 1500, `answered after ${Date.now() - t0} ms`);
  });
});

describe('allowed_fails_policy', () => {
  const get = withStack(
    'round-robin',
    (fake) => [fakeModel(fake, 'm', 'status=500'), fakeModel(fake, 'm', 'delay_ms=1')],
    { allowed_fails: 1, allowed_fails_policy: { InternalServerErrorAllowedFails: 3 } },
  );
  test('a server-error deployment cools down after 3 failures, not after 1', async () => {
    const stack = await get();
    await stack.fake.clear();
    for (let i = 0; i < 12; i++)
      await stack.gw.call('/v1/chat/completions', { body: chat('m') });
    const failing = (await stack.fake.upstreamRequests()).filter((q) => q.path.includes('status=500'));
    assert.equal(failing.length, 3);
  });
});
