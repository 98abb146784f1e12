// HTTP/1.1 framing at the gateway's front door: smuggling attempts, pipelining,
// Expect: 100-continue, chunked request bodies and keep-alive.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  MASTER_KEY,
  RawConn,
  assertEnvelope,
  fakeModel,
  rawExchange,
  rawRequest,
  recordedBody,
  sleep,
  startStack,
} from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({ models: (fake) => [fakeModel(fake, 'demo')] });
});

after(async () => {
  await stack?.stop();
});

const AUTH = `Authorization: Bearer ${MASTER_KEY}`;
// Appended after each malformed request: if it is ever answered, the framing was ambiguous.
const SMUGGLED = 'GET /health/liveliness HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

function asFetchLike(r) {
  return { ...r, headers: new Map(Object.entries(r.headers)) };
}

async function expectSingle400(name, bytes) {
  const r = await rawExchange(stack.gw.port, bytes, { timeoutMs: 4000 });
  assert.equal(r.responses.length, 1, `${name}: exactly one response, got ${r.responses.length}:\n${r.data.toString('latin1')}`);
  assertEnvelope(asFetchLike(r.responses[0]), 400, 'invalid_request_error', 'bad_request');
  assert.equal(r.closed, true, `${name}: connection closed after the 400`);
  assert.equal(r.rest.length, 0, `${name}: nothing after the response`);
}

const body = '{"model":"demo","messages":[{"role":"user","content":"hi"}]}';

test('CL + TE together: one 400, connection closed', async () => {
  const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
  await expectSingle400(
    'CL+TE',
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nContent-Type: application/json\r\nContent-Length: ${chunked.length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}${SMUGGLED}`,
  );
  await expectSingle400(
    'TE+CL',
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  );
});

test('two Content-Length headers with different values: one 400', async () => {
  await expectSingle400(
    'CL+CL different',
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nContent-Length: ${body.length}\r\nContent-Length: ${body.length + 5}\r\n\r\n${body}${SMUGGLED}`,
  );
  await expectSingle400(
    'CL list',
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nContent-Length: ${body.length}, ${body.length}\r\n\r\n${body}${SMUGGLED}`,
  );
});

test('two Content-Length headers with identical values: one 400', async () => {
  await expectSingle400(
    'CL+CL identical',
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nContent-Length: ${body.length}\r\nContent-Length: ${body.length}\r\n\r\n${body}${SMUGGLED}`,
  );
});

test('bad Content-Length values: one 400', async () => {
  for (const cl of ['-1', '+5', '0x10', '1 2', 'abc', '99999999999999999999999']) {
    await expectSingle400(`CL ${cl}`, `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nContent-Length: ${cl}\r\n\r\n${body}${SMUGGLED}`);
  }
});

test('bad chunk sizes: one 400', async () => {
  for (const size of ['zz', '-1', '0x1e', 'ffffffffffffffffffff', ' 1e', '']) {
    await expectSingle400(
      `chunk size ${JSON.stringify(size)}`,
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nTransfer-Encoding: chunked\r\n\r\n${size}\r\n${body}\r\n0\r\n\r\n${SMUGGLED}`,
    );
  }
});

test('chunk data not followed by CRLF: one 400', async () => {
  await expectSingle400(
    'chunk without CRLF',
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdXX\r\n0\r\n\r\n${SMUGGLED}`,
  );
});

test('unsupported Transfer-Encoding values: one 400', async () => {
  for (const te of ['gzip, chunked', 'chunked, gzip', 'xchunked', 'chunked\x0b']) {
    const r = await rawExchange(
      stack.gw.port,
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nTransfer-Encoding: ${te}\r\n\r\n0\r\n\r\n${SMUGGLED}`,
      { timeoutMs: 4000 },
    );
    assert.equal(r.responses.length, 1, `TE ${JSON.stringify(te)}: ${r.data.toString('latin1')}`);
    assert.ok([400, 501].includes(r.responses[0].status), `TE ${JSON.stringify(te)}: status ${r.responses[0].status}`);
    assert.equal(r.closed, true);
  }
});

test('obs-fold (header continuation line): one 400', async () => {
  await expectSingle400(
    'obs-fold',
    `GET /v1/models HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nX-Folded: a\r\n b\r\n\r\n${SMUGGLED}`,
  );
  await expectSingle400(
    'obs-fold tab',
    `GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tb\r\n${AUTH}\r\n\r\n${SMUGGLED}`,
  );
});

test('bare LF line endings: one 400', async () => {
  await expectSingle400('bare LF request', `GET /health/liveliness HTTP/1.1\nHost: x\n\n${SMUGGLED}`);
  await expectSingle400('bare LF in one header', `GET /health/liveliness HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n${SMUGGLED}`);
});

test('other malformed heads: one 400 each', async () => {
  const cases = {
    'space before colon': `GET /health/liveliness HTTP/1.1\r\nHost : x\r\n\r\n`,
    'no colon': `GET /health/liveliness HTTP/1.1\r\nHost x\r\n\r\n`,
    'NUL in header': `GET /health/liveliness HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n`,
    'bad request line': `GET  /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n`,
    'bad version': `GET /health/liveliness HTTP/1.x\r\nHost: x\r\n\r\n`,
  };
  for (const [name, bytes] of Object.entries(cases)) await expectSingle400(name, bytes + SMUGGLED);
});

test('pipelined GET requests on one socket: answered in order', async () => {
  const r = await rawExchange(
    stack.gw.port,
    'GET /health/liveliness HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-1\r\n\r\n' +
      'GET /health/readiness HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-2\r\n\r\n' +
      `GET /v1/models HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nX-Request-Id: pipe-3\r\nConnection: close\r\n\r\n`,
    { timeoutMs: 5000 },
  );
  assert.equal(r.responses.length, 3, r.data.toString('latin1'));
  assert.deepEqual(r.responses.map((x) => x.status), [200, 200, 200]);
  assert.deepEqual(r.responses.map((x) => x.headers['x-request-id']), ['pipe-1', 'pipe-2', 'pipe-3']);
  assert.equal(r.responses[0].json, "I'm alive!");
  assert.equal(r.responses[1].json.status, 'healthy');
  assert.equal(r.responses[2].json.object, 'list');
  assert.equal(r.closed, true, 'Connection: close honoured');
});

test('pipelined POSTs to the provider: answered in order', async () => {
  const a = rawRequest('POST', '/v1/chat/completions', {
    body: '{"model":"demo","messages":[{"role":"user","content":"first"}]}',
    headers: [['X-Request-Id', 'pp-1']],
  });
  const b = rawRequest('POST', '/v1/chat/completions', {
    body: '{"model":"demo","messages":[{"role":"user","content":"second"}]}',
    headers: [['X-Request-Id', 'pp-2']],
    close: true,
  });
  const r = await rawExchange(stack.gw.port, Buffer.concat([a, b]), { timeoutMs: 10000 });
  assert.equal(r.responses.length, 2, r.data.toString('latin1'));
  assert.deepEqual(r.responses.map((x) => x.status), [200, 200]);
  assert.deepEqual(r.responses.map((x) => x.headers['x-request-id']), ['pp-1', 'pp-2']);
  assert.match(r.responses[0].json.choices[0].message.content, /first/);
  assert.match(r.responses[1].json.choices[0].message.content, /second/);
});

test('Expect: 100-continue gets an interim 100 then the response', async () => {
  const c = await RawConn.open(stack.gw.port);
  try {
    const b = '{"model":"demo","messages":[{"role":"user","content":"expect"}]}';
    await c.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
    const interim = await c.readResponse(5000);
    assert.equal(interim.status, 100);
    assert.ok(c.data.toString('latin1').startsWith('HTTP/1.1 100 Continue\r\n'), c.data.toString('latin1'));
    await c.write(b);
    const final = await c.readResponse(10000);
    assert.equal(final.status, 200, final.text);
    assert.match(final.json.choices[0].message.content, /expect/);
  } finally {
    c.destroy();
  }
});

test('chunked request body is decoded and forwarded byte for byte', async () => {
  const b = '{"model":"demo", "messages":[{"role":"user","content":"chunked body"}]}';
  const pieces = [b.slice(0, 7), b.slice(7, 30), b.slice(30)];
  const framed =
    pieces.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('') + '0\r\n\r\n';
  await stack.fake.clear();
  const c = await RawConn.open(stack.gw.port);
  try {
    await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
    for (let i = 0; i < framed.length; i += 11) {
      await c.write(framed.slice(i, i + 11));
      await sleep(5);
    }
    const r = await c.readResponse(10000);
    assert.equal(r.status, 200, r.text);
  } finally {
    c.destroy();
  }
  const rec = await stack.fake.lastUpstream();
  assert.equal(recordedBody(rec).toString('utf8'), b.replace('"demo"', '"gpt-fake"'));
});

test('chunked request with trailers and an uppercase hex size works', async () => {
  const b = '{"model":"demo","messages":[{"role":"user","content":"' + 'y'.repeat(200) + '"}]}';
  const framed = `${b.length.toString(16).toUpperCase()}\r\n${b}\r\n0\r\nX-Trailer: t\r\n\r\n`;
  const r = await rawExchange(
    stack.gw.port,
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${AUTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${framed}`,
    { timeoutMs: 10000 },
  );
  assert.equal(r.responses.length, 1, r.data.toString('latin1'));
  assert.equal(r.responses[0].status, 200, r.responses[0].text);
});

test('keep-alive: one connection serves several requests over time', async () => {
  const c = await RawConn.open(stack.gw.port);
  try {
    for (let i = 0; i < 3; i++) {
      await c.write(
        rawRequest('POST', '/v1/chat/completions', {
          body: `{"model":"demo","messages":[{"role":"user","content":"ka-${i}"}]}`,
        }),
      );
      const r = await c.readResponse(10000);
      assert.equal(r.status, 200, r.text);
      assert.match(r.json.choices[0].message.content, new RegExp(`ka-${i}`));
      assert.notEqual(String(r.headers.connection || '').toLowerCase(), 'close');
      await sleep(200);
      assert.equal(c.closed, false, 'connection still open');
    }
    await c.write('GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n');
    const h = await c.readResponse(5000);
    assert.equal(h.status, 200);
  } finally {
    c.destroy();
  }
});

test('HTTP/1.0 without keep-alive: response then close', async () => {
  const r = await rawExchange(stack.gw.port, 'GET /health/liveliness HTTP/1.0\r\n\r\n', { timeoutMs: 4000 });
  assert.equal(r.responses.length, 1, r.data.toString('latin1'));
  assert.equal(r.responses[0].status, 200);
  assert.equal(r.closed, true);
});

test('the gateway still serves after all of the above', async () => {
  const res = await stack.gw.call('/v1/chat/completions', { body });
  assert.equal(res.status, 200);
});
