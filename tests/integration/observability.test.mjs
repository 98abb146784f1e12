// Access log lines, /metrics and x-request-id.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RawConn, fakeModel, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'demo', 'fixture=chat_text_raw_bytes.response.json'),
      fakeModel(fake, 'streamy', 'fixture=chat_stream_include_usage.sse'),
      fakeModel(fake, 'other'),
    ],
  });
});

after(async () => {
  await stack?.stop();
});

/** The first present field among `names` (the access log's field names are not fixed yet). */
function field(line, names, what) {
  for (const n of names) if (line[n] !== undefined) return line[n];
  assert.fail(`access log line has no ${what} field (tried ${names.join(', ')}): ${JSON.stringify(line)}`);
}

const ID = ['request_id', 'x_request_id', 'id', 'rid'];
const ROUTE = ['route', 'path', 'endpoint'];
const MODEL = ['model', 'model_name', 'alias'];
const STATUS = ['status', 'status_code', 'http_status'];
const TIN = ['tokens_in', 'input_tokens', 'prompt_tokens', 'in_tokens'];
const TOUT = ['tokens_out', 'output_tokens', 'completion_tokens', 'out_tokens'];

function latencies(line) {
  return Object.entries(line).filter(([k, v]) => typeof v === 'number' && /(latency|duration|_ms$|_s$|ttfb|ttft|time)/i.test(k));
}

test('access log line for a chat request: id, route, model, status, tokens, latencies', async () => {
  const res = await stack.gw.call('/v1/chat/completions', {
    body: '{"model":"demo","messages":[{"role":"user","content":"hi"}]}',
    headers: { 'x-request-id': 'obs-rid-0001' },
  });
  assert.equal(res.status, 200);
  const line = await stack.gw.waitForAccess((l) => Object.values(l).includes('obs-rid-0001'));
  assert.equal(field(line, ID, 'request id'), 'obs-rid-0001');
  assert.match(String(field(line, ROUTE, 'route')), /chat/);
  assert.equal(field(line, MODEL, 'model'), 'demo');
  assert.equal(Number(field(line, STATUS, 'status')), 200);
  // chat_text_raw_bytes.response.json: prompt_tokens 20, completion_tokens 18.
  assert.equal(Number(field(line, TIN, 'input tokens')), 20);
  assert.equal(Number(field(line, TOUT, 'output tokens')), 18);
  const lat = latencies(line);
  assert.ok(lat.length > 0, `latency fields present: ${JSON.stringify(line)}`);
  for (const [k, v] of lat) assert.ok(Number.isFinite(v) && v >= 0, `${k} = ${v}`);
});

test('access log line for a stream counts the usage chunk tokens', async () => {
  const res = await stack.gw.call('/v1/chat/completions', {
    body: '{"model":"streamy","stream":true,"messages":[{"role":"user","content":"hi"}]}',
    headers: { 'x-request-id': 'obs-rid-stream' },
  });
  assert.equal(res.status, 200);
  assert.ok(!res.text.includes('"usage"'), 'the client did not ask for usage');
  const line = await stack.gw.waitForAccess((l) => Object.values(l).includes('obs-rid-stream'));
  assert.equal(Number(field(line, STATUS, 'status')), 200);
  assert.equal(field(line, MODEL, 'model'), 'streamy');
  // chat_stream_include_usage.sse: prompt_tokens 12, completion_tokens 100.
  assert.equal(Number(field(line, TIN, 'input tokens')), 12);
  assert.equal(Number(field(line, TOUT, 'output tokens')), 100);
  for (const [k, v] of latencies(line)) assert.ok(Number.isFinite(v) && v >= 0, `${k} = ${v}`);
});

test('access log line for an error request', async () => {
  const res = await stack.gw.call('/v1/chat/completions', {
    body: '{"model":"nope","messages":[{"role":"user","content":"hi"}]}',
    headers: { 'x-request-id': 'obs-rid-404' },
  });
  assert.equal(res.status, 404);
  const line = await stack.gw.waitForAccess((l) => Object.values(l).includes('obs-rid-404'));
  assert.equal(Number(field(line, STATUS, 'status')), 404);
});

test('x-request-id: client value echoed, generated when absent, replaced when unusable', async () => {
  const given = await stack.gw.call('/health/liveliness', { headers: { 'x-request-id': 'abc-123_XYZ.~' } });
  assert.equal(given.headers.get('x-request-id'), 'abc-123_XYZ.~');

  const a = await stack.gw.call('/v1/chat/completions', { body: '{"model":"demo","messages":[{"role":"user","content":"hi"}]}' });
  const b = await stack.gw.call('/v1/chat/completions', { body: '{"model":"demo","messages":[{"role":"user","content":"hi"}]}' });
  const ida = a.headers.get('x-request-id');
  const idb = b.headers.get('x-request-id');
  assert.ok(ida && idb, 'generated ids present');
  assert.notEqual(ida, idb, 'generated ids are unique');
  assert.match(ida, /^[\x21-\x7e]{1,128}$/);
  await stack.gw.waitForAccess((l) => Object.values(l).includes(ida));

  const long = 'r'.repeat(129);
  const c = await stack.gw.call('/health/liveliness', { headers: { 'x-request-id': long } });
  const idc = c.headers.get('x-request-id');
  assert.ok(idc && idc !== long, 'a 129-byte id is replaced');
  const max = 'm'.repeat(128);
  const d = await stack.gw.call('/health/liveliness', { headers: { 'x-request-id': max } });
  assert.equal(d.headers.get('x-request-id'), max, 'a 128-byte id is kept');
});

test('x-request-id with non-printable bytes is replaced', async () => {
  // Bytes a header value may carry (HTAB, obs-text) that are not printable ASCII.
  for (const bad of ['bad\tid', 'caf\xe9']) {
    const c = await RawConn.open(stack.gw.port);
    try {
      await c.write(`GET /health/liveliness HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${bad}\r\n\r\n`);
      const r = await c.readResponse(5000);
      assert.equal(r.status, 200, `${JSON.stringify(bad)}: ${r.text}`);
      assert.ok(r.headers['x-request-id'], 'an id is present');
      assert.notEqual(r.headers['x-request-id'], bad);
      assert.match(r.headers['x-request-id'], /^[\x21-\x7e]+$/);
    } finally {
      c.destroy();
    }
  }
});

test('x-request-id with a control byte is a malformed header: 400', async () => {
  const c = await RawConn.open(stack.gw.port);
  try {
    await c.write('GET /health/liveliness HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad\x01id\r\n\r\n');
    const r = await c.readResponse(5000);
    assert.equal(r.status, 400);
    assert.ok(!r.headerText.includes('\x01'), 'the control byte is not echoed');
  } finally {
    c.destroy();
  }
});

function metricValue(text, name, labels) {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const m = /^[a-z_]+\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const got = Object.fromEntries([...m[1].matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[2]);
  }
  return undefined;
}

test('/metrics counts requests per route, model and status', async () => {
  const before = await stack.gw.call('/metrics', { key: null });
  assert.equal(before.status, 200);
  assert.match(String(before.headers.get('content-type')), /^text\/plain/);
  const labels = { route: 'chat_completions', model: 'other', status: '200' };
  const n0 = metricValue(before.text, 'switchboard_requests_total', labels) ?? 0;
  for (let i = 0; i < 3; i++) {
    const r = await stack.gw.call('/v1/chat/completions', { body: '{"model":"other","messages":[{"role":"user","content":"hi"}]}' });
    assert.equal(r.status, 200);
  }
  const m = await stack.gw.call('/metrics', { key: null });
  assert.match(m.text, /^# TYPE switchboard_requests_total counter$/m);
  assert.equal(metricValue(m.text, 'switchboard_requests_total', labels), n0 + 3, m.text);
  const nf = metricValue(m.text, 'switchboard_requests_total', { route: 'chat_completions', model: 'demo', status: '404' });
  assert.equal(nf, undefined, 'no demo/404 series');
  const unknown = metricValue(m.text, 'switchboard_requests_total', { route: 'chat_completions', model: '', status: '404' });
  assert.ok(unknown >= 1, 'unknown model counted under model=""');
  assert.ok(!m.text.includes('model="nope"'), 'client-chosen model names do not become labels');
  const tin = metricValue(m.text, 'switchboard_tokens_total', { model: 'demo', direction: 'input' });
  assert.ok(tin >= 20, `input tokens for demo: ${tin}`);
  assert.match(m.text, /^switchboard_build_info\{version="[^"]+"\} 1$/m);
});
