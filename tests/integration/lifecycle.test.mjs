// Connection and request lifecycle: timeouts, a client that goes away mid-stream, and a
// client that reads slowly (backpressure must bound the gateway's memory).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { RawConn, fakeModel, rawRequest, sleep, startStack } from '../lib/harness.mjs';

let stack;

before(async () => {
  stack = await startStack({
    models: (fake) => [
      fakeModel(fake, 'slow', 'fixture=chat_stream_text.sse,drip_ms=400'),
      fakeModel(fake, 'big', 'body_bytes=33554432'),
      fakeModel(fake, 'ok'),
    ],
    server: { header_timeout_ms: 400, body_timeout_ms: 400, idle_timeout_ms: 600 },
    // A small quarantine keeps ASan from holding freed memory, so RSS reflects live buffers.
    env: { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1:quarantine_size_mb=4' },
  });
});

after(async () => {
  await stack?.stop();
});

function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]);
}

test('idle keep-alive connection is closed after idle_timeout_ms, without a response', async () => {
  const c = await RawConn.open(stack.gw.port);
  try {
    const t0 = Date.now();
    await c.waitClose(5000);
    const waited = Date.now() - t0;
    assert.ok(waited >= 400, `closed after ${waited} ms, before the idle timeout`);
    assert.equal(c.data.length, 0, 'no bytes are sent to an idle connection');
  } finally {
    c.destroy();
  }
});

test('a head that does not complete in header_timeout_ms gets 408 and the connection closes', async () => {
  const c = await RawConn.open(stack.gw.port);
  try {
    await c.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: app');
    const r = await c.readResponse(5000);
    assert.equal(r.status, 408);
    assert.equal(JSON.parse(r.text).error.code, 'request_timeout');
    await c.waitClose(4000);
  } finally {
    c.destroy();
  }
});

test('a body that does not arrive in body_timeout_ms gets 408', async () => {
  const c = await RawConn.open(stack.gw.port);
  try {
    await c.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model":');
    const r = await c.readResponse(5000);
    assert.equal(r.status, 408);
  } finally {
    c.destroy();
  }
});

test('a client that disconnects mid-stream aborts the exchange at once (499 in the log)', async () => {
  const c = await RawConn.open(stack.gw.port);
  const t0 = Date.now();
  await c.write(
    rawRequest('POST', '/v1/chat/completions', {
      body: '{"model":"slow","stream":true,"messages":[{"role":"user","content":"hi"}]}',
      headers: [['x-request-id', 'disconnect-test-1']],
    }),
  );
  await c.until(() => c.data.includes('data: '), 5000, 'the first event');
  c.destroy();
  const line = await stack.gw.waitForAccess((l) => l.request_id === 'disconnect-test-1', 5000);
  const elapsed = Date.now() - t0;
  assert.equal(line.status, 499);
  assert.equal(line.error, 'client_closed');
  // The fixture takes about 12 × 400 ms to drip out; the abort is logged long before.
  assert.ok(elapsed < 2500, `logged after ${elapsed} ms`);
  // The gateway keeps serving.
  const ok = await stack.gw.call('/v1/chat/completions', {
    body: { model: 'ok', messages: [{ role: 'user', content: 'still there?' }] },
  });
  assert.equal(ok.status, 200);
});

test('a client that stops reading pauses the provider: memory stays bounded, nothing is lost', async () => {
  const pid = stack.gw.child.proc.pid;
  const before = rssKiB(pid);
  // A plain socket that keeps chunks in a list: 32 MiB must not be re-concatenated per read.
  const sock = net.connect(stack.gw.port, '127.0.0.1');
  await once(sock, 'connect');
  const chunks = [];
  let total = 0;
  let tail = Buffer.alloc(0);
  let ended = false;
  sock.on('data', (b) => {
    chunks.push(b);
    total += b.length;
    tail = Buffer.concat([tail, b]).subarray(-64);
  });
  sock.on('end', () => {
    ended = true;
  });
  try {
    sock.pause(); // read nothing for a while
    sock.write(
      rawRequest('POST', '/v1/chat/completions', {
        body: '{"model":"big","stream":true,"messages":[{"role":"user","content":"hi"}]}',
      }),
    );
    await sleep(2500);
    const grown = rssKiB(pid) - before;
    // 32 MiB are on offer; kernel socket buffers and the 1 MiB high-water mark hold a few.
    assert.ok(grown < 24 * 1024, `gateway RSS grew by ${grown} KiB while the client did not read`);
    sock.resume();
    const deadline = Date.now() + 60000;
    while (!tail.toString('latin1').endsWith('\r\n0\r\n\r\n') && !ended && Date.now() < deadline) {
      await sleep(20);
    }
    const text = Buffer.concat(chunks).toString('latin1');
    assert.ok(text.startsWith('HTTP/1.1 200 OK\r\n'), text.slice(0, 200));
    assert.ok(text.endsWith('data: [DONE]\n\n\r\n0\r\n\r\n'), `the stream ran to [DONE] (${total} bytes)`);
    const word = `"content":" ${'w'.repeat(8191)}"`;
    let words = 0;
    for (let at = text.indexOf(word); at >= 0; at = text.indexOf(word, at + word.length)) words++;
    assert.equal(words, 4096, 'every 8 KiB event arrived');
  } finally {
    sock.destroy();
  }
});
