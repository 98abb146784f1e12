// A throwaway Redis server for a test file: Debian's redis-server on a free port, no
// persistence, in a temp folder; stopped (or killed, paused) by the test.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, sleep } from './harness.mjs';

export class Redis {
  static async start({ port } = {}) {
    const r = new Redis(port ?? (await freePort()));
    await r.launch();
    return r;
  }

  constructor(port) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.dir = mkdtempSync(join(tmpdir(), 'sb-redis-'));
    this.proc = null;
    this.log = '';
  }

  async launch() {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout.on('data', (d) => (this.log += d));
    this.proc.stderr.on('data', (d) => (this.log += d));
    const deadline = Date.now() + 10000;
    for (;;) {
      try {
        if (this.cli('PING') === 'PONG') return;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not start:\n${this.log}`);
      await sleep(50);
    }
  }

  /** One command through redis-cli; the reply as text. */
  cli(...args) {
    return execFileSync('redis-cli', ['-p', String(this.port), '--raw', ...args], { encoding: 'utf8', timeout: 5000 }).trim();
  }

  signal(sig) {
    this.proc?.kill(sig);
  }

  /** Stops the server (its data is gone: no persistence). */
  async stop() {
    if (!this.proc) return;
    const p = this.proc;
    this.proc = null;
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((res) => p.once('exit', res));
      p.kill('SIGCONT');
      p.kill('SIGKILL');
      await exited;
    }
  }

  async destroy() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
