// A provider key must never reach a client or a log, even when the provider echoes it back
// in an error body, when it cannot be reached, or when it times out.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Fake, Gateway, RawConn, freePort, rawRequest } from '../lib/harness.mjs';

const CANARY = 'sk-canary-0123456789abcdef';
let fake;
let gw;
const seen = []; // every response (status line, headers, body) the tests received

function canaryModel(name, base, params = {}) {
  return { model_name: name, litellm_params: { model: 'openai/gpt-fake', api_base: base, api_key: CANARY, ...params } };
}

before(async () => {
  fake = await Fake.start();
  const refused = await freePort();
  gw = await Gateway.start({
    model_list: [
      canaryModel('c401', fake.base('echo_key=1,status=401')),
      canaryModel('c403', fake.base('echo_key=1,status=403')),
      canaryModel('c429', fake.base('echo_key=1,status=429,retry_after=1')),
      canaryModel('c500', fake.base('echo_key=1,status=500')),
      canaryModel('cwrongkey', fake.base('key=sk-some-other-key,echo_key=1')),
      canaryModel('crefused', `http://127.0.0.1:${refused}/v1`),
      canaryModel('ctimeout', fake.base('hang=1'), { timeout: 1, stream_timeout: 1 }),
      canaryModel('cmalformed', fake.base('malformed=1,echo_key=1')),
      canaryModel('ccut', fake.base('fixture=chat_stream_text.sse,cut_after=2')),
    ],
    server: { log_level: 'debug' },
  });
});

after(async () => {
  try {
    await gw?.stop();
  } finally {
    await fake?.stop();
  }
});

async function rawCall(path, body) {
  const c = await RawConn.open(gw.port);
  try {
    await c.write(rawRequest(body ? 'POST' : 'GET', path, { body }));
    const r = await c.readResponse(15000);
    seen.push(c.data.toString('latin1'));
    return r;
  } finally {
    c.destroy();
  }
}

function assertNoCanary(r, what) {
  assert.ok(!r.headerText.includes(CANARY), `${what}: canary in response headers`);
  assert.ok(!r.body.toString('latin1').includes(CANARY), `${what}: canary in response body:\n${r.text}`);
  // Partial leaks (a prefix or a masked form ending in the tail) count too.
  assert.ok(!r.text.includes('0123456789abcdef'), `${what}: part of the canary in the body`);
}

/** What the fake would have answered the gateway, called directly with the canary. */
async function directBody(directives, path = '/chat/completions') {
  const res = await fetch(`${fake.base(directives)}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CANARY}`, 'content-type': 'application/json' },
    body: '{"model":"gpt-fake","messages":[{"role":"user","content":"hi"}]}',
  });
  return res.text();
}

for (const [model, status, directives] of [
  ['c401', 401, 'echo_key=1,status=401'],
  ['c403', 403, 'echo_key=1,status=403'],
  ['c429', 429, 'echo_key=1,status=429,retry_after=1'],
  ['c500', 500, 'echo_key=1,status=500'],
]) {
  test(`provider ${status} echoing the key: status passed, key redacted`, async () => {
    const echoed = await directBody(directives);
    const r = await rawCall('/v1/chat/completions', `{"model":"${model}","messages":[{"role":"user","content":"hi"}]}`);
    assert.equal(r.status, status, r.text);
    assertNoCanary(r, model);
    if (echoed.includes(CANARY)) {
      assert.ok(r.text.includes('[redacted]'), `${model}: echoed key replaced by [redacted]: ${r.text}`);
      assert.equal(r.text, echoed.split(CANARY).join('[redacted]'), `${model}: otherwise the provider's body`);
    }
  });

  test(`provider ${status} echoing the key, stream request: key redacted`, async () => {
    const r = await rawCall('/v1/chat/completions', `{"model":"${model}","stream":true,"messages":[{"role":"user","content":"hi"}]}`);
    assert.equal(r.status, status, r.text);
    assertNoCanary(r, `${model} stream`);
  });
}

test('provider rejecting the key (key= directive) with echo: redacted', async () => {
  const r = await rawCall('/v1/chat/completions', '{"model":"cwrongkey","messages":[{"role":"user","content":"hi"}]}');
  assert.ok(r.status >= 400, `status ${r.status}`);
  assertNoCanary(r, 'cwrongkey');
});

test('connection refused: 502 without the key', async () => {
  const r = await rawCall('/v1/chat/completions', '{"model":"crefused","messages":[{"role":"user","content":"hi"}]}');
  assert.equal(r.status, 502, r.text);
  assertNoCanary(r, 'crefused');
  const s = await rawCall('/v1/chat/completions', '{"model":"crefused","stream":true,"messages":[{"role":"user","content":"hi"}]}');
  assert.equal(s.status, 502, s.text);
  assertNoCanary(s, 'crefused stream');
});

test('timeout: 504 without the key', async () => {
  const r = await rawCall('/v1/chat/completions', '{"model":"ctimeout","messages":[{"role":"user","content":"hi"}]}');
  assert.equal(r.status, 504, r.text);
  assertNoCanary(r, 'ctimeout');
});

test('timeout inside a stream: no key in the stream', async () => {
  const r = await rawCall('/v1/chat/completions', '{"model":"ctimeout","stream":true,"messages":[{"role":"user","content":"hi"}]}');
  assert.ok([200, 504].includes(r.status), `status ${r.status}`);
  assertNoCanary(r, 'ctimeout stream');
});

test('malformed provider reply: 502 without the key', async () => {
  const r = await rawCall('/v1/chat/completions', '{"model":"cmalformed","messages":[{"role":"user","content":"hi"}]}');
  assert.equal(r.status, 502, r.text);
  assertNoCanary(r, 'cmalformed');
});

test('stream cut mid-way: error event without the key', async () => {
  const r = await rawCall('/v1/chat/completions', '{"model":"ccut","stream":true,"messages":[{"role":"user","content":"hi"}]}');
  assert.equal(r.status, 200);
  assertNoCanary(r, 'ccut');
});

test('models, model info and metrics never show the key', async () => {
  for (const path of ['/v1/models', '/v1/models/c401', '/metrics', '/health/readiness', '/health/liveliness']) {
    const r = await rawCall(path);
    assert.equal(r.status, 200, `${path}: ${r.text}`);
    assertNoCanary(r, path);
  }
});

test('every response seen, the access log and the process log are free of the key', async () => {
  assert.ok(seen.length >= 10, 'the tests above ran');
  for (const s of seen) assert.ok(!s.includes(CANARY), 'canary in a response');
  const res = await gw.stop();
  assert.ok(res.stdout.length > 0, 'access log lines were written');
  assert.ok(!res.stdout.includes(CANARY), 'canary in the access log (stdout)');
  assert.ok(!res.stderr.includes(CANARY), 'canary in the process log (stderr)');
  assert.ok(!res.stdout.includes('0123456789abcdef'), 'part of the canary in stdout');
  assert.ok(!res.stderr.includes('0123456789abcdef'), 'part of the canary in stderr');
});
