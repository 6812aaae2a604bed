/**
 * The client never hangs: every failure settles within its timeout with its exact error code, and the other
 * servers of the cluster keep working. Faults: a server killed mid-request, one that accepts but never answers,
 * one that answers garbage, connection refused, a full queue, abort signals, the dead-server window and recovery,
 * failover, connect timeouts, close/destroy.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { existsSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  COMMAND_CHANNEL,
  type CommandEvent,
  MemcacheClient,
  type MemcacheClientOptions,
  type MemcacheErrorCode,
  SERVER_CHANNEL,
  type ServerEvent,
} from '../src/memcached/index.ts';
import { MemcachedServer } from '../src/memcached/server/server.ts';
import { inCI, MEMCACHED_BIN, startOurServer, startRealMemcached } from './helpers/memcached-real.ts';

const realMissing = !existsSync(MEMCACHED_BIN);
if (realMissing && inCI()) throw new Error(`${MEMCACHED_BIN} not installed (CI=true: install the Debian package)`);

/** A server in a process of its own, to be killed. */
interface Killable {
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** Our server as `sharenothing memcached` in a child process. */
async function startOurProcess(): Promise<Killable> {
  const port = await freePort();
  const cli = new URL('../src/cli/main.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, [cli, 'memcached', '-p', String(port), '-l', '127.0.0.1', '-t', '1'], {
    stdio: 'ignore',
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  for (let i = 0; i < 250; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = netConnect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (up) break;
    await sleep(20);
  }
  return {
    port,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

interface Target {
  readonly name: string;
  readonly skip: string | false;
  /** The server that keeps working. */
  start(): Promise<{ port: number; close(): Promise<void> }>;
  /** A server in its own process. */
  startKillable(): Promise<Killable>;
}

const TARGETS: Target[] = [
  {
    name: 'our server',
    skip: false,
    start: () => startOurServer(),
    startKillable: startOurProcess,
  },
  {
    name: 'real memcached',
    skip: realMissing ? 'SKIPPED: memcached not installed' : false,
    async start() {
      const m = await startRealMemcached();
      return { port: m.port, close: () => m.stop() };
    },
    startKillable: () => startRealMemcached(),
  },
];

interface Fake {
  readonly port: number;
  close(): Promise<void>;
}

/** A TCP server with scripted behaviour per connection. */
async function fakeServer(onConnection: (socket: Socket) => void): Promise<Fake> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const f = await fakeServer(() => {});
  await f.close();
  return f.port;
}

/**
 * Asserts that `promise` rejects with `code` within `ms` (plus scheduling slack) and returns the time it took.
 */
async function rejectsWithin(promise: Promise<unknown>, code: MemcacheErrorCode, ms: number): Promise<number> {
  const started = performance.now();
  await assert.rejects(promise, (err: { code?: string; message?: string }) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
  const took = performance.now() - started;
  assert.ok(took <= ms + 150, `settled after ${Math.round(took)} ms, limit ${ms} ms`);
  return took;
}

/** A key that `client` sends to `server` (`host:port`). */
function keyOn(client: MemcacheClient, server: string, tag: string): string {
  for (let i = 0; i < 10000; i++) {
    const key = `${tag}-${i}`;
    if (client.serverFor(key) === server) return key;
  }
  throw new Error(`no key maps to ${server}`);
}

for (const target of TARGETS) {
  describe(`client faults, with ${target.name}`, { skip: target.skip }, () => {
    let good: { port: number; close(): Promise<void> };
    const open: MemcacheClient[] = [];
    const fakes: Fake[] = [];
    const make = (ports: number[], options: Partial<MemcacheClientOptions> = {}) => {
      const c = new MemcacheClient({ servers: ports.map((p) => `127.0.0.1:${p}`), timeout: 300, ...options });
      open.push(c);
      return c;
    };
    const fake = async (onConnection: (socket: Socket) => void) => {
      const f = await fakeServer(onConnection);
      fakes.push(f);
      return f;
    };
    const goodName = () => `127.0.0.1:${good.port}`;

    before(async () => {
      good = await target.start();
    });
    after(async () => {
      for (const c of open) c.destroy();
      await Promise.all(fakes.map((f) => f.close()));
      await good.close();
    });

    /** The good server answers keys that map to it while the bad one fails. */
    async function othersKeepWorking(c: MemcacheClient, tag: string): Promise<void> {
      const key = keyOn(c, goodName(), tag);
      assert.equal(await c.set(key, 'still working'), true);
      assert.equal(await c.get(key), 'still working');
    }

    it('a server that accepts but never answers: MEMCACHED_ERR_TIMEOUT, others keep working', async () => {
      const silent = await fake((s) => s.on('data', () => {}));
      const c = make([silent.port, good.port], { failureLimit: 0 });
      const key = keyOn(c, `127.0.0.1:${silent.port}`, 'silent');
      await Promise.all([rejectsWithin(c.get(key), 'MEMCACHED_ERR_TIMEOUT', 300), othersKeepWorking(c, 'silent')]);
      await rejectsWithin(c.get(key, { timeout: 100 }), 'MEMCACHED_ERR_TIMEOUT', 100);
      // A multi-get spanning both servers fails as a whole with the timeout, within it.
      const other = keyOn(c, goodName(), 'silent');
      await rejectsWithin(c.getMulti([key, other]), 'MEMCACHED_ERR_TIMEOUT', 300);
      await othersKeepWorking(c, 'silent');
    });

    it('the other in-flight requests of a timed-out connection fail with MEMCACHED_ERR_CONNECTION_CLOSED', async () => {
      const silent = await fake((s) => s.on('data', () => {}));
      const c = make([silent.port], { failureLimit: 0 });
      const first = c.get('a', { timeout: 100 });
      const second = c.get('b', { timeout: 1000 });
      await rejectsWithin(first, 'MEMCACHED_ERR_TIMEOUT', 100);
      await rejectsWithin(second, 'MEMCACHED_ERR_CONNECTION_CLOSED', 150);
    });

    it('a server that answers garbage: MEMCACHED_ERR_PROTOCOL, others keep working', async () => {
      const garbage = await fake((s) => s.on('data', () => s.write('HTTP/1.1 400 Bad Request\r\n\r\n')));
      const c = make([garbage.port, good.port], { failureLimit: 0 });
      const key = keyOn(c, `127.0.0.1:${garbage.port}`, 'garbage');
      await rejectsWithin(c.get(key), 'MEMCACHED_ERR_PROTOCOL', 300);
      await rejectsWithin(c.set(key, 1), 'MEMCACHED_ERR_PROTOCOL', 300);
      await othersKeepWorking(c, 'garbage');
      // Binary garbage too.
      const binary = make([garbage.port], { protocol: 'binary', failureLimit: 0 });
      await rejectsWithin(binary.get(key), 'MEMCACHED_ERR_PROTOCOL', 300);
    });

    it('a server killed mid-reply: MEMCACHED_ERR_CONNECTION_CLOSED, others keep working', async () => {
      const dying = await fake((s) =>
        s.on('data', () => {
          s.write('VALUE k 0 10\r\nabc');
          setTimeout(() => s.destroy(), 10);
        }),
      );
      const c = make([dying.port, good.port], { failureLimit: 0 });
      const key = keyOn(c, `127.0.0.1:${dying.port}`, 'dying');
      await rejectsWithin(c.get(key), 'MEMCACHED_ERR_CONNECTION_CLOSED', 300);
      await othersKeepWorking(c, 'dying');
    });

    it('a server process killed mid-request (SIGSTOP, then SIGKILL)', async () => {
      const m = await target.startKillable();
      try {
        const c = make([m.port, good.port], { timeout: 2000, failureLimit: 2, retryTimeout: 5000 });
        const key = keyOn(c, `127.0.0.1:${m.port}`, 'killed');
        assert.equal(await c.set(key, 'before'), true);
        m.child.kill('SIGSTOP');
        const inFlight = c.get(key);
        await sleep(50);
        m.child.kill('SIGKILL');
        await rejectsWithin(inFlight, 'MEMCACHED_ERR_CONNECTION_CLOSED', 300);
        await rejectsWithin(c.get(key), 'MEMCACHED_ERR_CONNECT', 300);
        // Two failures: marked dead, now fails at once.
        const took = await rejectsWithin(c.get(key), 'MEMCACHED_ERR_SERVER_DEAD', 20);
        assert.ok(took < 20);
        await othersKeepWorking(c, 'killed');
      } finally {
        await m.stop();
      }
    });

    it('connection refused: MEMCACHED_ERR_CONNECT, then fail-fast MEMCACHED_ERR_SERVER_DEAD', async () => {
      const port = await freePort();
      const c = make([port, good.port], { failureLimit: 2, retryTimeout: 10000 });
      const key = keyOn(c, `127.0.0.1:${port}`, 'refused');
      await rejectsWithin(c.get(key), 'MEMCACHED_ERR_CONNECT', 300);
      await rejectsWithin(c.get(key), 'MEMCACHED_ERR_CONNECT', 300);
      const took = await rejectsWithin(c.set(key, 1), 'MEMCACHED_ERR_SERVER_DEAD', 10);
      assert.ok(took < 10);
      await othersKeepWorking(c, 'refused');
    });

    it('dead-server window, then recovery when the server comes back', async () => {
      const port = await freePort();
      const events: ServerEvent[] = [];
      const listener = (m: unknown) => events.push(m as ServerEvent);
      diagnostics.subscribe(SERVER_CHANNEL, listener);
      const c = make([port], { failureLimit: 1, retryTimeout: 300, backoff: { initialMs: 10, maxMs: 10 } });
      let server: MemcachedServer | undefined;
      try {
        await rejectsWithin(c.get('k'), 'MEMCACHED_ERR_CONNECT', 300);
        await rejectsWithin(c.get('k'), 'MEMCACHED_ERR_SERVER_DEAD', 10);
        server = new MemcachedServer({ port, listen: ['127.0.0.1'], threads: 1 });
        await server.listen();
        // Still inside the window: fail fast even though the server is back.
        await rejectsWithin(c.get('k'), 'MEMCACHED_ERR_SERVER_DEAD', 10);
        await sleep(320);
        assert.equal(await c.set('k', 'recovered'), true);
        assert.equal(await c.get('k'), 'recovered');
        assert.deepEqual(
          events.filter((e) => e.server === `127.0.0.1:${port}`).map((e) => e.type),
          ['dead', 'connect', 'alive'],
        );
      } finally {
        diagnostics.unsubscribe(SERVER_CHANNEL, listener);
        c.destroy();
        await server?.close(100);
      }
    });

    it('failover: the keys of a dead server go to the next server on the ring', async () => {
      const port = await freePort();
      const c = make([port, good.port], { failover: true, failureLimit: 1, retryTimeout: 10000 });
      const key = keyOn(c, `127.0.0.1:${port}`, 'failover');
      // The first request finds the server refusing and is sent to the next server; later ones skip it.
      assert.equal(await c.set(key, 'moved'), true);
      assert.equal(await c.get(key), 'moved');
      const direct = make([good.port]);
      assert.equal(await direct.get(key), 'moved', 'stored on the surviving server');
      const keys = Array.from({ length: 20 }, (_, i) => `fo-${i}`);
      await c.setMulti(keys.map((k) => [k, k] as const));
      assert.equal((await c.getMulti(keys)).size, 20);
      // Without failover the same situation fails fast.
      const strict = make([port, good.port], { failureLimit: 1, retryTimeout: 10000 });
      await rejectsWithin(strict.get(key), 'MEMCACHED_ERR_CONNECT', 300);
      await rejectsWithin(strict.get(key), 'MEMCACHED_ERR_SERVER_DEAD', 10);
      // With every server dead there is no server at all.
      const allDead = make([port], { failover: true, failureLimit: 1, retryTimeout: 10000 });
      await rejectsWithin(allDead.get(key), 'MEMCACHED_ERR_CONNECT', 300);
      await rejectsWithin(allDead.get(key), 'MEMCACHED_ERR_NO_SERVERS', 10);
    });

    it('queue full: MEMCACHED_ERR_QUEUE_FULL at once, the queued ones time out', async () => {
      const silent = await fake((s) => s.on('data', () => {}));
      const c = make([silent.port], { maxQueue: 5, failureLimit: 0, timeout: 200 });
      const queued = Array.from({ length: 5 }, (_, i) => c.get(`q${i}`));
      const took = await rejectsWithin(c.get('overflow'), 'MEMCACHED_ERR_QUEUE_FULL', 5);
      assert.ok(took < 5);
      const outcomes = await Promise.allSettled(queued);
      assert.ok(outcomes.every((o) => o.status === 'rejected'));
      assert.equal((outcomes[0] as PromiseRejectedResult).reason.code, 'MEMCACHED_ERR_TIMEOUT');
    });

    it('abort signals: before sending, while queued, and after writing (the reply is still consumed)', async () => {
      const pre = AbortSignal.abort(new Error('nope'));
      const c = make([good.port]);
      await rejectsWithin(c.get('x', { signal: pre }), 'MEMCACHED_ERR_ABORTED', 5);
      // A proxy that delays every reply by 100 ms: the aborted request's reply arrives after the abort.
      const proxy = await fake((client) => {
        const upstream = netConnect({ host: '127.0.0.1', port: good.port });
        client.pipe(upstream);
        upstream.on('data', (d: Buffer) => setTimeout(() => client.write(d), 100));
        upstream.on('error', () => client.destroy());
        client.on('close', () => upstream.destroy());
      });
      const slow = make([proxy.port], { timeout: 2000 });
      await slow.set('abort-a', 'A');
      await slow.set('abort-b', 'B');
      const controller = new AbortController();
      const aborted = slow.get('abort-a', { signal: controller.signal });
      const next = slow.get('abort-b');
      setTimeout(() => controller.abort(), 30);
      await rejectsWithin(aborted, 'MEMCACHED_ERR_ABORTED', 40);
      assert.equal(await next, 'B', 'the abandoned reply was read and dropped');
      assert.equal(await slow.get('abort-a'), 'A');
      // Aborting a request still waiting for its connection.
      const silent = await fake((s) => s.on('data', () => {}));
      const stuck = make([silent.port], { failureLimit: 0 });
      const ac = new AbortController();
      const p = stuck.get('s', { signal: ac.signal });
      ac.abort();
      await rejectsWithin(p, 'MEMCACHED_ERR_ABORTED', 5);
    });

    it('connect timeout: a TLS handshake that never completes', async () => {
      const silent = await fake((s) => s.on('data', () => {}));
      const c = make([silent.port, good.port], { tls: true, connectTimeout: 100, timeout: 1000, failureLimit: 0 });
      const key = keyOn(c, `127.0.0.1:${silent.port}`, 'tls');
      await rejectsWithin(c.get(key), 'MEMCACHED_ERR_CONNECT_TIMEOUT', 100);
    });

    it('close() drains in-flight requests; destroy() fails pending ones; both refuse new ones', async () => {
      const proxy = await fake((client) => {
        const upstream = netConnect({ host: '127.0.0.1', port: good.port });
        client.pipe(upstream);
        upstream.on('data', (d: Buffer) => setTimeout(() => client.write(d), 50));
        upstream.on('error', () => client.destroy());
        client.on('close', () => upstream.destroy());
      });
      const c = new MemcacheClient({ servers: [`127.0.0.1:${proxy.port}`], timeout: 1000 });
      const inFlight = c.set('drain', 'ok');
      await sleep(5);
      await c.close();
      assert.equal(await inFlight, true);
      await rejectsWithin(c.get('drain'), 'MEMCACHED_ERR_CLOSED', 5);
      const d = new MemcacheClient({ servers: [`127.0.0.1:${proxy.port}`], timeout: 1000 });
      const pending = d.get('drain');
      await sleep(5);
      d.destroy(new Error('shutting down'));
      await rejectsWithin(pending, 'MEMCACHED_ERR_CLOSED', 5);
      await rejectsWithin(d.get('drain'), 'MEMCACHED_ERR_CLOSED', 5);
      await rejectsWithin(new MemcacheClient({ servers: [] }).get('x'), 'MEMCACHED_ERR_NO_SERVERS', 5);
    });

    it('diagnostics_channel: start/end/error per command, never keys or values', async () => {
      const events: CommandEvent[] = [];
      const listener = (m: unknown) => events.push(m as CommandEvent);
      diagnostics.subscribe(COMMAND_CHANNEL, listener);
      try {
        const port = await freePort();
        const c = make([good.port]);
        await c.set('secret-key', 'secret-value');
        await c.get('secret-key');
        const bad = make([port]);
        await bad.get('secret-key').catch(() => {});
      } finally {
        diagnostics.unsubscribe(COMMAND_CHANNEL, listener);
      }
      assert.deepEqual(
        events.map((e) => `${e.type}:${e.command}`),
        ['start:set', 'end:set', 'start:get', 'end:get', 'start:get', 'error:get'],
      );
      const error = events.at(-1) as Extract<CommandEvent, { type: 'error' }>;
      assert.equal(error.code, 'MEMCACHED_ERR_CONNECT');
      for (const e of events) {
        assert.ok(!JSON.stringify({ ...e, error: undefined }).includes('secret'));
        if (e.type !== 'start') assert.ok(e.durationMs >= 0);
      }
    });
  });
}
