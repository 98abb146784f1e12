// Test harness: runs a fake provider and a switchboard gateway as child processes, and gives
// the tests raw-socket and fetch helpers to talk to them.
//
// Binaries come from $SB_BUILD_DIR (default build-asan), relative to the repository root.
// stop() fails the calling test when the gateway exits non-zero or a sanitizer reported
// anything, so a memory error found while serving a request fails the suite.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const buildDir = resolve(repoRoot, process.env.SB_BUILD_DIR || 'build-asan');
export const fixturesDir = join(repoRoot, 'tests', 'data', 'fixtures');

export const MASTER_KEY = 'sk-master-test-key';
export const PROVIDER_KEY = 'sk-provider-key-abc';

const READY_TIMEOUT_MS = 20000;
const SANITIZER_MARKERS = ['AddressSanitizer', 'LeakSanitizer', 'runtime error:'];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Like sleep, but does not keep the process alive (for timeouts raced against events). */
const idleTimeout = (ms, value) =>
  new Promise((r) => {
    setTimeout(() => r(value), ms).unref();
  });

function findBinary(name) {
  const candidates = [
    join(buildDir, name),
    join(buildDir, 'tests', 'fakes', name),
    join(buildDir, 'src', name),
  ];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(`${name} not found in ${buildDir} (build it first, or set SB_BUILD_DIR)`);
}

/** A port that was free a moment ago (listen on 0, read the port, close). */
export function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export function fixture(rel) {
  return readFileSync(join(fixturesDir, rel));
}

// ---------------------------------------------------------------------------------------------
// YAML: the config is written in block style from a plain JS object; strings are always
// double-quoted so nothing is reinterpreted (e.g. "2024-10-21" stays a string).

function yamlKey(k) {
  return /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(k) ? k : JSON.stringify(k);
}

function yamlScalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  return JSON.stringify(String(v));
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function yamlLines(v, indent) {
  const out = [];
  if (Array.isArray(v)) {
    for (const item of v) {
      if (isPlainObject(item) && Object.keys(item).length > 0) {
        const inner = yamlLines(item, indent + '  ');
        inner[0] = indent + '- ' + inner[0].slice(indent.length + 2);
        out.push(...inner);
      } else if (Array.isArray(item) && item.length > 0) {
        out.push(indent + '-');
        out.push(...yamlLines(item, indent + '  '));
      } else {
        out.push(indent + '- ' + yamlInline(item));
      }
    }
  } else {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) continue;
      if ((isPlainObject(val) && Object.keys(val).length > 0) || (Array.isArray(val) && val.length > 0)) {
        out.push(`${indent}${yamlKey(k)}:`);
        out.push(...yamlLines(val, indent + '  '));
      } else {
        out.push(`${indent}${yamlKey(k)}: ${yamlInline(val)}`);
      }
    }
  }
  return out;
}

function yamlInline(v) {
  if (Array.isArray(v)) return '[]';
  if (isPlainObject(v)) return '{}';
  return yamlScalar(v);
}

export function toYaml(obj) {
  return yamlLines(obj, '').join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Child processes

function childEnv(extra) {
  const env = { ...process.env, ...extra };
  // Everything here talks to 127.0.0.1; a proxy from the machine's environment must not
  // get in the way (the gateway honours these variables like libcurl does).
  for (const k of ['http_proxy', 'https_proxy', 'HTTPS_PROXY', 'ALL_PROXY', 'all_proxy']) {
    if (!extra || !(k in extra)) delete env[k];
  }
  env.ASAN_OPTIONS ||= 'detect_leaks=1:halt_on_error=1';
  env.UBSAN_OPTIONS ||= 'print_stacktrace=1:halt_on_error=1';
  return env;
}

function sanitizerFindings(text) {
  return SANITIZER_MARKERS.filter((m) => text.includes(m));
}

class Child {
  constructor(name, bin, args, env, cwd) {
    this.name = name;
    this.stdout = '';
    this.stderr = '';
    this.exited = null;
    this.proc = spawn(bin, args, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
    this.proc.stdout.setEncoding('utf8');
    this.proc.stderr.setEncoding('utf8');
    this.listeners = new Set();
    const notify = () => {
      for (const l of this.listeners) l();
    };
    this.proc.stdout.on('data', (d) => {
      this.stdout += d;
      notify();
    });
    this.proc.stderr.on('data', (d) => {
      this.stderr += d;
      notify();
    });
    this.exitPromise = new Promise((res) => {
      this.proc.on('exit', (code, signal) => {
        this.exited = { code, signal };
        notify();
        res(this.exited);
      });
      this.proc.on('error', (err) => {
        this.stderr += `\n[spawn error] ${err.message}\n`;
        this.exited = { code: -1, signal: null };
        notify();
        res(this.exited);
      });
    });
    // The streams may deliver their last bytes after 'exit'; 'close' means all output is in.
    this.closePromise = new Promise((res) => this.proc.on('close', res));
  }

  signal(sig) {
    if (sig === 'SIGTERM' || sig === 'SIGINT') this.signalled = true;
    this.proc.kill(sig);
  }

  /** Resolves once pred() is true; rejects on timeout or if the process exits first. */
  waitFor(pred, timeoutMs, what) {
    return new Promise((res, rej) => {
      const check = () => {
        let v;
        try {
          v = pred();
        } catch (e) {
          v = false;
        }
        if (v) {
          cleanup();
          res(v);
        } else if (this.exited) {
          cleanup();
          rej(
            new Error(
              `${this.name} exited (${JSON.stringify(this.exited)}) before ${what}\n--- stderr ---\n${this.stderr}\n--- stdout ---\n${this.stdout}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        rej(
          new Error(
            `timeout (${timeoutMs} ms) waiting for ${this.name}: ${what}\n--- stderr ---\n${this.stderr}\n--- stdout ---\n${this.stdout}`,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** SIGTERM (unless one was already sent: a second one may mean "stop now"), then wait. */
  async terminate(timeoutMs) {
    if (!this.exited && !this.signalled) this.signal('SIGTERM');
    const r = await Promise.race([this.exitPromise, idleTimeout(timeoutMs, 'timeout')]);
    if (r === 'timeout') {
      this.proc.kill('SIGKILL');
      await this.exitPromise;
      await this.closePromise;
      return { timedOut: true, ...this.exited };
    }
    await Promise.race([this.closePromise, idleTimeout(2000)]);
    return { timedOut: false, ...this.exited };
  }
}

// ---------------------------------------------------------------------------------------------
// Fake provider

export class Fake {
  static async start({ threads = 2 } = {}) {
    const port = await freePort();
    const bin = findBinary('fake-provider');
    const child = new Child('fake-provider', bin, [
      '--port', String(port), '--threads', String(threads), '--fixtures', fixturesDir,
    ]);
    await child.waitFor(
      () => /fake-provider listening on/.test(child.stdout + child.stderr),
      READY_TIMEOUT_MS,
      'its "listening" line',
    );
    return new Fake(port, child);
  }

  constructor(port, child) {
    this.port = port;
    this.child = child;
    this.url = `http://127.0.0.1:${port}`;
  }

  /** api_base for a deployment: `directives` like "status=429,retry_after=3" (or ""). */
  base(directives = '', suffix = '/v1') {
    return directives ? `${this.url}/_f/${directives}${suffix}` : `${this.url}${suffix}`;
  }

  /** The last requests the fake received: [{method, path, headers: [[n, v]], body}]. */
  async requests() {
    const r = await fetch(`${this.url}/_fake/requests`);
    assert.equal(r.status, 200, 'GET /_fake/requests');
    return r.json();
  }

  async clear() {
    const r = await fetch(`${this.url}/_fake/requests`, { method: 'DELETE' });
    await r.arrayBuffer();
  }

  /** Recorded requests other than the recording endpoint itself. */
  async upstreamRequests() {
    return (await this.requests()).filter((q) => !String(q.path).startsWith('/_fake/'));
  }

  async lastUpstream() {
    const all = await this.upstreamRequests();
    assert.ok(all.length > 0, 'the fake provider recorded no request');
    return all[all.length - 1];
  }

  async stop() {
    const r = await this.child.terminate(10000);
    const found = sanitizerFindings(this.child.stderr);
    assert.deepEqual(found, [], `fake-provider sanitizer report:\n${this.child.stderr}`);
    return r;
  }
}

/** Header value from a recorded request ([[name, value]]), case-insensitive; undefined if absent. */
export function recordedHeader(rec, name) {
  const n = name.toLowerCase();
  const h = (rec.headers || []).find(([k]) => String(k).toLowerCase() === n);
  return h ? h[1] : undefined;
}

/** The recorded body as a Buffer (the fake may store text or base64). */
export function recordedBody(rec) {
  if (typeof rec.body_base64 === 'string') return Buffer.from(rec.body_base64, 'base64');
  if (rec.body === null || rec.body === undefined) return Buffer.alloc(0);
  return Buffer.from(String(rec.body), 'utf8');
}

// ---------------------------------------------------------------------------------------------
// Gateway

/** A model_list entry pointing at the fake. */
export function fakeModel(fake, name, directives = '', params = {}) {
  return {
    model_name: name,
    litellm_params: {
      model: 'openai/gpt-fake',
      api_base: fake.base(directives),
      api_key: PROVIDER_KEY,
      ...params,
    },
  };
}

export class Gateway {
  /**
   * config: { model_list, general_settings, server } (server.host/port are filled in).
   * general_settings.master_key defaults to MASTER_KEY; pass master_key: null for none.
   */
  static async start(config = {}, { env = {}, args = [] } = {}) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'sb-test-'));
    const general = { master_key: MASTER_KEY, ...(config.general_settings || {}) };
    if (general.master_key === null) delete general.master_key;
    // Each gateway keeps its virtual keys and spend in its own temp folder.
    if (general.master_key && !general.database_url) general.database_url = `sqlite://${dir}/switchboard.db`;
    const cfg = {
      ...config,
      model_list: config.model_list || [],
      general_settings: general,
      server: { host: '127.0.0.1', workers: 2, access_log: 'stdout', ...(config.server || {}), port },
    };
    const path = join(dir, 'switchboard.yaml');
    writeFileSync(path, toYaml(cfg));
    const bin = findBinary('switchboard');
    const child = new Child('switchboard', bin, ['--config', path, ...args], env, dir);
    const gw = new Gateway(port, child, dir, cfg);
    await child.waitFor(() => gw.logLines().some((l) => typeof l.msg === 'string' && l.msg.startsWith('listening on')),
      READY_TIMEOUT_MS, 'its "listening on" log line').catch((e) => {
      child.proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw e;
    });
    return gw;
  }

  constructor(port, child, dir, cfg) {
    this.port = port;
    this.child = child;
    this.dir = dir;
    this.config = cfg;
    this.url = `http://127.0.0.1:${port}`;
    this.stopped = null;
  }

  get stdout() {
    return this.child.stdout;
  }

  get stderr() {
    return this.child.stderr;
  }

  /** stderr JSON log lines (lines that are not JSON are skipped). */
  logLines() {
    return parseJsonLines(this.child.stderr);
  }

  /** Access log lines (stdout, JSON). */
  accessLines() {
    return parseJsonLines(this.child.stdout);
  }

  async waitForAccess(pred, timeoutMs = 5000) {
    await this.child.waitFor(() => this.accessLines().some(pred), timeoutMs, 'an access log line');
    return this.accessLines().find(pred);
  }

  /** Sends SIGTERM without waiting (for drain tests). */
  signal(sig = 'SIGTERM') {
    this.child.signal(sig);
  }

  /**
   * SIGTERM, wait for exit, and assert a clean exit (code 0) with no sanitizer report.
   * Safe to call twice; the second call returns the first result.
   */
  async stop() {
    if (!this.stopped) {
      this.stopped = (async () => {
        const drain = Number(this.config.server.drain_timeout_ms ?? 30000);
        const r = await this.child.terminate(drain + 10000);
        rmSync(this.dir, { recursive: true, force: true });
        return r;
      })();
    }
    const r = await this.stopped;
    const found = sanitizerFindings(this.child.stderr);
    assert.deepEqual(found, [], `switchboard sanitizer report:\n${this.child.stderr}`);
    assert.equal(r.timedOut, false, `switchboard did not exit after SIGTERM\n${this.child.stderr}`);
    assert.equal(r.signal, null, `switchboard died from ${r.signal}\n${this.child.stderr}`);
    assert.equal(r.code, 0, `switchboard exit code ${r.code}\n${this.child.stderr}`);
    return { ...r, stdout: this.child.stdout, stderr: this.child.stderr };
  }

  /** fetch against the gateway; key defaults to the master key (null: no auth header). */
  async call(path, { method, body, headers = {}, key = MASTER_KEY } = {}) {
    const h = { ...headers };
    if (key !== null && key !== undefined) h.authorization = `Bearer ${key}`;
    let payload = body;
    if (body !== undefined && typeof body !== 'string' && !(body instanceof Uint8Array)) {
      payload = JSON.stringify(body);
    }
    if (payload !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
      h['content-type'] = 'application/json';
    }
    const res = await fetch(this.url + path, {
      method: method || (payload === undefined ? 'GET' : 'POST'),
      headers: h,
      body: payload,
    });
    const buf = Buffer.from(await res.arrayBuffer());
    const text = buf.toString('utf8');
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, buf, text, json };
  }
}

function parseJsonLines(text) {
  const out = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    try {
      out.push(JSON.parse(t));
    } catch {
      /* a partial or non-JSON line */
    }
  }
  return out;
}

/** Starts a fake and a gateway; models is (fake) => model_list; extra adds top-level config
 * sections (router_settings, ...). */
export async function startStack({ models = () => [], general_settings, server, env, extra } = {}) {
  const fake = await Fake.start();
  let gw;
  try {
    gw = await Gateway.start({ ...(extra || {}), model_list: models(fake), general_settings, server }, { env });
  } catch (e) {
    await fake.stop().catch(() => {});
    throw e;
  }
  return {
    fake,
    gw,
    async stop() {
      try {
        await gw.stop();
      } finally {
        await fake.stop();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// OpenAI envelope

/** Asserts a gateway-made error: status, envelope shape, type, code and (optionally) param. */
export function assertEnvelope(res, status, type, code, param) {
  assert.equal(res.status, status, `status (body: ${res.text})`);
  assert.ok(res.json && typeof res.json === 'object', `JSON body expected, got: ${res.text}`);
  const e = res.json.error;
  assert.ok(e && typeof e === 'object', `"error" object expected: ${res.text}`);
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type'], `envelope keys: ${res.text}`);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0, 'non-empty message');
  assert.equal(e.type, type, `type (body: ${res.text})`);
  assert.equal(e.code, code, `code (body: ${res.text})`);
  if (param !== undefined) assert.equal(e.param, param, `param (body: ${res.text})`);
  const ct = typeof res.headers.get === 'function' ? res.headers.get('content-type') : res.headers['content-type'];
  assert.match(String(ct), /^application\/json/, 'content-type of an error');
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over a socket

export class RawConn {
  static open(port, host = '127.0.0.1') {
    return new Promise((res, rej) => {
      const c = new RawConn();
      c.sock = net.connect({ port, host }, () => res(c));
      c.sock.on('error', (e) => {
        c.error = e;
        if (!c.connected) rej(e);
        c.notify();
      });
      c.sock.on('data', (d) => {
        c.data = Buffer.concat([c.data, d]);
        c.notify();
      });
      c.sock.on('end', () => {
        c.ended = true;
        c.notify();
      });
      c.sock.on('close', () => {
        c.closed = true;
        c.notify();
      });
      c.sock.once('connect', () => {
        c.connected = true;
      });
    });
  }

  constructor() {
    this.data = Buffer.alloc(0);
    this.closed = false;
    this.ended = false;
    this.error = null;
    this.connected = false;
    this.waiters = new Set();
    this.consumed = 0;
  }

  notify() {
    for (const w of this.waiters) w();
  }

  /** Writes bytes; write errors (e.g. EPIPE after the server closed) are recorded, not thrown. */
  write(bytes) {
    return new Promise((res) => {
      if (this.closed || this.sock.destroyed) return res(false);
      this.sock.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, (err) => {
        if (err) this.error = err;
        res(!err);
      });
    });
  }

  until(pred, timeoutMs, what) {
    return new Promise((res, rej) => {
      const check = () => {
        const v = pred();
        if (v) {
          cleanup();
          res(v);
        } else if (this.closed) {
          cleanup();
          rej(new Error(`connection closed while waiting for ${what}; received:\n${this.data.toString('latin1')}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        rej(new Error(`timeout (${timeoutMs} ms) waiting for ${what}; received:\n${this.data.toString('latin1')}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Waits for the next complete response after those already returned. */
  async readResponse(timeoutMs = 5000) {
    const r = await this.until(
      () => {
        const { responses } = parseResponses(this.data.subarray(this.consumed), { atEof: this.closed });
        return responses.length > 0 && responses[0].complete ? responses[0] : null;
      },
      timeoutMs,
      'a complete response',
    );
    this.consumed += r.rawLength;
    return r;
  }

  /** Resolves true when the peer closed within timeoutMs, false otherwise. */
  async waitClose(timeoutMs = 3000) {
    try {
      await this.until(() => this.ended || this.closed, timeoutMs, 'close');
      return true;
    } catch (e) {
      if (this.closed || this.ended) return true;
      return false;
    }
  }

  destroy() {
    this.sock.destroy();
  }
}

/**
 * Sends `parts` (strings are sent as latin1 bytes, numbers are pauses in ms) and collects
 * everything until the server closes or timeoutMs passes.
 * Returns { data, closed, responses, rest }.
 */
export async function rawExchange(port, parts, { timeoutMs = 3000 } = {}) {
  const c = await RawConn.open(port);
  for (const p of Array.isArray(parts) ? parts : [parts]) {
    if (typeof p === 'number') await sleep(p);
    else await c.write(p);
  }
  const closed = await c.waitClose(timeoutMs);
  c.destroy();
  const { responses, rest } = parseResponses(c.data, { atEof: closed });
  return { data: c.data, closed, responses, rest, error: c.error };
}

/**
 * Parses consecutive HTTP/1.1 responses from buf. Each: { status, reason, headers (lowercase
 * name -> value, duplicates joined by ", "), rawHeaders [[n, v]], headerText, body (Buffer,
 * de-chunked), chunks (Buffer[] when chunked), chunked, complete, rawLength }.
 */
export function parseResponses(buf, { atEof = false } = {}) {
  const responses = [];
  let off = 0;
  while (off < buf.length) {
    const end = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (end < 0) break;
    const headerText = buf.subarray(off, end).toString('latin1');
    const lines = headerText.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const rawHeaders = [];
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i <= 0) throw new Error(`bad header line: ${JSON.stringify(l)}`);
      const n = l.slice(0, i);
      const v = l.slice(i + 1).trim();
      rawHeaders.push([n, v]);
      const k = n.toLowerCase();
      headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    }
    let p = end + 4;
    const r = { status, reason: m[2] || '', headers, rawHeaders, headerText, chunked: false, complete: false };
    if ((status >= 100 && status < 200) || status === 204 || status === 304) {
      r.body = Buffer.alloc(0);
      r.complete = true;
    } else if (/\bchunked\b/i.test(headers['transfer-encoding'] || '')) {
      r.chunked = true;
      r.chunks = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) break;
        const sizeText = buf.subarray(p, le).toString('latin1').split(';')[0].trim();
        if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new Error(`bad chunk size: ${JSON.stringify(sizeText)}`);
        const size = parseInt(sizeText, 16);
        if (size === 0) {
          // last-chunk, then optional trailer lines, then an empty line
          let q = le + 2;
          for (;;) {
            const e = buf.indexOf('\r\n', q, 'latin1');
            if (e < 0) break;
            if (e === q) {
              p = q + 2;
              r.complete = true;
              break;
            }
            q = e + 2;
          }
          break;
        }
        if (buf.length < le + 2 + size + 2) break;
        r.chunks.push(buf.subarray(le + 2, le + 2 + size));
        if (buf.subarray(le + 2 + size, le + 4 + size).toString('latin1') !== '\r\n') {
          throw new Error('chunk not followed by CRLF');
        }
        p = le + 4 + size;
      }
      r.body = Buffer.concat(r.chunks);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      r.body = buf.subarray(p, Math.min(buf.length, p + n));
      if (buf.length >= p + n) {
        r.complete = true;
        p += n;
      }
    } else {
      r.body = buf.subarray(p);
      r.complete = atEof;
      p = buf.length;
    }
    r.text = r.body.toString('utf8');
    try {
      r.json = JSON.parse(r.text);
    } catch {
      r.json = undefined;
    }
    r.rawLength = (r.complete ? p : buf.length) - off;
    responses.push(r);
    if (!r.complete) {
      off = buf.length;
      break;
    }
    off = p;
  }
  return { responses, rest: buf.subarray(off) };
}

/** A raw request with the master key; body is a string (UTF-8) or Buffer. */
export function rawRequest(method, path, { body, headers = [], key = MASTER_KEY, close = false, chunked = false } = {}) {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1'];
  if (key) lines.push(`Authorization: Bearer ${key}`);
  const b = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  if (b) {
    lines.push('Content-Type: application/json');
    if (chunked) lines.push('Transfer-Encoding: chunked');
    else lines.push(`Content-Length: ${b.length}`);
  }
  for (const h of headers) lines.push(Array.isArray(h) ? `${h[0]}: ${h[1]}` : h);
  if (close) lines.push('Connection: close');
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  if (!b) return head;
  if (!chunked) return Buffer.concat([head, b]);
  return Buffer.concat([head, Buffer.from(b.length.toString(16) + '\r\n', 'latin1'), b, Buffer.from('\r\n0\r\n\r\n', 'latin1')]);
}

// ---------------------------------------------------------------------------------------------
// SSE

/** The `data:` payloads of an event stream, in order (one per event). */
export function sseData(text) {
  const s = Buffer.isBuffer(text) ? text.toString('utf8') : text;
  const out = [];
  for (const block of s.replace(/\r\n/g, '\n').split('\n\n')) {
    const data = block
      .split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''));
    if (data.length) out.push(data.join('\n'));
  }
  return out;
}

/** Does a text (or any of a list of texts) contain the needle? */
export function containsSecret(haystacks, needle) {
  return haystacks.some((h) => String(h).includes(needle));
}
