/**
 * Concurrent single `get`s to one server go out as one multi-key `get` (`coalesceGets`, on by default), each caller
 * keeping its own result, timeout and abort signal; and `await client.close()` ends a script.
 *
 * What the client sends is recorded by a proxy in front of our server and the real memcached 1.6.18 (replies are
 * the real ones), or by a scripted fake server (for what a real one never does: reorder, answer a key not asked for,
 * stay silent).
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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
} from '../src/memcached/index.ts';
import { inCI, MEMCACHED_BIN, startOurServer, startRealMemcached } from './helpers/memcached-real.ts';

const realMissing = !existsSync(MEMCACHED_BIN);
if (realMissing && inCI()) throw new Error(`${MEMCACHED_BIN} not installed (CI=true: install the Debian package)`);

interface Listening {
  readonly port: number;
  close(): Promise<void>;
}

/** A TCP server with scripted behaviour per connection. */
async function tcpServer(onConnection: (socket: Socket) => void): Promise<Listening> {
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

/** The command lines (not the data blocks) of a text-protocol byte stream. */
function commandLines(bytes: string): string[] {
  const lines: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    const nl = bytes.indexOf('\r\n', at);
    if (nl < 0) break;
    const line = bytes.slice(at, nl);
    lines.push(line);
    at = nl + 2;
    // A storage command's data block follows its line.
    const m = /^(?:set|add|replace|append|prepend|cas) \S+ \d+ -?\d+ (\d+)/.exec(line);
    if (m) at += Number(m[1]) + 2;
  }
  return lines;
}

/** A proxy to `port` that records every byte the client sends (and can delay the replies). */
async function recordingProxy(port: number, replyDelayMs = 0): Promise<Listening & { lines(): string[] }> {
  let sent = '';
  const proxy = await tcpServer((client) => {
    const upstream = netConnect({ host: '127.0.0.1', port });
    client.on('data', (d: Buffer) => {
      sent += d.toString('latin1');
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (replyDelayMs > 0) setTimeout(() => client.write(d), replyDelayMs);
      else client.write(d);
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  return { ...proxy, lines: () => commandLines(sent) };
}

/**
 * A fake memcached answering `get` lines from `items` (every key in the order asked, misses left out, unless
 * `reply` rewrites the list, or replaces the answer with a raw one), recording the lines.
 */
async function fakeMemcached(
  items: Map<string, string>,
  reply: (hits: [string, string][]) => [string, string][] | string = (hits) => hits,
): Promise<Listening & { lines: string[] }> {
  const lines: string[] = [];
  const server = await tcpServer((socket) => {
    let buffered = '';
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      for (let nl = buffered.indexOf('\r\n'); nl >= 0; nl = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 2);
        lines.push(line);
        const [command, ...keys] = line.split(' ');
        if (command !== 'get') {
          socket.write('ERROR\r\n');
          continue;
        }
        const hits = keys.filter((k) => items.has(k)).map((k): [string, string] => [k, items.get(k)!]);
        const answer = reply(hits);
        if (typeof answer === 'string') {
          socket.write(answer, 'latin1');
          continue;
        }
        let out = '';
        for (const [k, v] of answer) out += `VALUE ${k} 0 ${v.length}\r\n${v}\r\n`;
        socket.write(`${out}END\r\n`, 'latin1');
      }
    });
  });
  return { ...server, lines };
}

/** Asserts that `promise` rejects with `code`, within `ms` (plus scheduling slack). */
async function rejectsWith(promise: Promise<unknown>, code: MemcacheErrorCode, ms: number): Promise<void> {
  const started = performance.now();
  await assert.rejects(promise, (err: { code?: string; message?: string }) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
  const took = performance.now() - started;
  assert.ok(took <= ms + 150, `settled after ${Math.round(took)} ms, limit ${ms} ms`);
}

const getLines = (lines: readonly string[]) => lines.filter((l) => l.startsWith('get '));

const TARGETS = [
  { name: 'our server', skip: false as const, start: () => startOurServer() },
  {
    name: 'real memcached',
    skip: realMissing ? 'SKIPPED: memcached not installed' : (false as const),
    async start(): Promise<Listening> {
      const m = await startRealMemcached();
      return { port: m.port, close: () => m.stop() };
    },
  },
];

for (const target of TARGETS) {
  describe(`coalesced gets against ${target.name}`, { skip: target.skip }, () => {
    let server: Listening;
    const cleanup: (() => Promise<void> | void)[] = [];
    const client = (port: number, options: Partial<MemcacheClientOptions> = {}) => {
      const c = new MemcacheClient({ servers: [`127.0.0.1:${port}`], timeout: 2000, ...options });
      cleanup.push(() => c.close());
      return c;
    };
    const proxy = async (replyDelayMs = 0) => {
      const p = await recordingProxy(server.port, replyDelayMs);
      cleanup.push(() => p.close());
      return p;
    };

    before(async () => {
      server = await target.start();
    });
    after(async () => {
      for (const c of cleanup.reverse()) await c();
      await server.close();
    });

    it('gets made in one tick are one request; hits, misses and repeated keys each get their own answer', async () => {
      const p = await proxy();
      const c = client(p.port);
      await c.setMulti([
        ['co-a', 'A'],
        ['co-b', { b: 2 }],
        ['co-c', 3],
      ]);
      const before = getLines(p.lines()).length;
      const keys = ['co-a', 'co-missing', 'co-b', 'co-a', 'co-c', 'co-missing-2', 'co-c'];
      const got = await Promise.all(keys.map((k) => c.get(k)));
      assert.deepEqual(got, ['A', undefined, { b: 2 }, 'A', 3, undefined, 3]);
      const lines = getLines(p.lines()).slice(before);
      assert.deepEqual(lines, [`get ${keys.join(' ')}`], 'one request line, every key in call order');
      // The server counted every key of it as one get.
      const stats = (await c.stats()).values().next().value as Record<string, string>;
      assert.ok(Number(stats.cmd_get) >= keys.length);
    });

    it('a coalesced get takes at most 16 callers; the next ones start another', async () => {
      const p = await proxy();
      const c = client(p.port);
      const keys = Array.from({ length: 40 }, (_, i) => `co-many-${i}`);
      await c.setMulti(keys.map((k, i) => [k, i] as const));
      const before = getLines(p.lines()).length;
      assert.deepEqual(
        await Promise.all(keys.map((k) => c.get(k))),
        keys.map((_, i) => i),
      );
      const lines = getLines(p.lines()).slice(before);
      assert.deepEqual(
        lines.map((l) => l.split(' ').length - 1),
        [16, 16, 8],
      );
      assert.deepEqual(
        lines.flatMap((l) => l.split(' ').slice(1)),
        keys,
      );
    });

    it('gets awaited one by one are not held back', async () => {
      const p = await proxy();
      const c = client(p.port);
      await c.set('co-seq', 'x');
      for (let i = 0; i < 3; i++) assert.equal(await c.get('co-seq'), 'x');
      assert.deepEqual(getLines(p.lines()), ['get co-seq', 'get co-seq', 'get co-seq']);
    });

    it('long coalesced requests are split below memcached’s 2048-byte line limit', async () => {
      const p = await proxy();
      const c = client(p.port);
      const keys = Array.from({ length: 40 }, (_, i) => `co-long-${'k'.repeat(200)}-${i}`);
      await c.setMulti(keys.map((k, i) => [k, i] as const));
      const got = await Promise.all(keys.map((k) => c.get(k)));
      assert.deepEqual(
        got,
        keys.map((_, i) => i),
      );
      const lines = getLines(p.lines());
      assert.ok(lines.length > 1 && lines.length < 10, `${lines.length} lines`);
      for (const line of lines) assert.ok(line.length + 2 <= 2048, `line of ${line.length} bytes`);
      assert.equal(lines.flatMap((l) => l.split(' ').slice(1)).length, 40);
    });

    it('a get made after another request in the same tick does not overtake it', async () => {
      const p = await proxy();
      const c = client(p.port);
      await c.set('co-order', 'old');
      const [first, stored, second] = await Promise.all([
        c.get('co-order'),
        c.set('co-order', 'new'),
        c.get('co-order'),
      ]);
      assert.equal(first, 'old');
      assert.equal(stored, true);
      assert.equal(second, 'new', 'the second get is sent after the set');
      assert.deepEqual(getLines(p.lines()).slice(-2), ['get co-order', 'get co-order']);
      // Buffered noreply writes go before the gets made after them, too.
      const bw = client(p.port);
      await bw.set('co-order', 'buffered', { noreply: true });
      assert.equal(await bw.get('co-order'), 'buffered');
    });

    it('aborting one caller lets the others have their values (its reply is read and dropped)', async () => {
      const p = await proxy(100);
      const c = client(p.port);
      await c.setMulti([
        ['co-ab-1', 1],
        ['co-ab-2', 2],
        ['co-ab-3', 3],
      ]);
      const controller = new AbortController();
      const first = c.get('co-ab-1');
      const aborted = c.get('co-ab-2', { signal: controller.signal });
      const third = c.get('co-ab-3');
      setTimeout(() => controller.abort(), 30);
      await rejectsWith(aborted, 'MEMCACHED_ERR_ABORTED', 40);
      assert.equal(await first, 1);
      assert.equal(await third, 3);
      assert.deepEqual(getLines(p.lines()).slice(-1), ['get co-ab-1 co-ab-2 co-ab-3']);
      // The connection is still in step.
      assert.equal(await c.get('co-ab-2'), 2);
    });

    it('coalesceGets: false sends one request per get', async () => {
      const p = await proxy();
      const c = client(p.port, { coalesceGets: false });
      await c.set('co-off', 'v');
      assert.deepEqual(await Promise.all([c.get('co-off'), c.get('co-off')]), ['v', 'v']);
      assert.deepEqual(getLines(p.lines()), ['get co-off', 'get co-off']);
    });

    it('over the binary protocol too (GETKQ per key, one NOOP)', async () => {
      const c = client(server.port, { protocol: 'binary' });
      await c.set('co-bin', 'b');
      assert.deepEqual(await Promise.all([c.get('co-bin'), c.get('co-bin-miss'), c.get('co-bin')]), [
        'b',
        undefined,
        'b',
      ]);
    });
  });
}

describe('coalesced gets: what a real server never does', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  const client = (port: number, options: Partial<MemcacheClientOptions> = {}) => {
    const c = new MemcacheClient({ servers: [`127.0.0.1:${port}`], timeout: 1000, failureLimit: 0, ...options });
    cleanup.push(() => c.destroy());
    return c;
  };
  const fake = async (...args: Parameters<typeof fakeMemcached>) => {
    const f = await fakeMemcached(...args);
    cleanup.push(() => f.close());
    return f;
  };
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it('values answered out of order still reach the right callers', async () => {
    const items = new Map([
      ['a', '1'],
      ['b', '2'],
      ['c', '3'],
    ]);
    const f = await fake(items, (hits) => hits.reverse());
    const c = client(f.port, { serializer: 'string' });
    assert.deepEqual(await Promise.all(['a', 'b', 'x', 'c', 'a'].map((k) => c.get(k))), [
      '1',
      '2',
      undefined,
      '3',
      '1',
    ]);
    assert.deepEqual(f.lines, ['get a b x c a']);
  });

  it('a value for a key nobody asked for fails every caller with MEMCACHED_ERR_PROTOCOL', async () => {
    const f = await fake(new Map([['a', '1']]), (hits) => [...hits, ['intruder', 'x']]);
    const c = client(f.port);
    const outcomes = await Promise.allSettled([c.get('a'), c.get('b')]);
    for (const o of outcomes) {
      assert.equal(o.status, 'rejected');
      assert.equal((o as PromiseRejectedResult).reason.code, 'MEMCACHED_ERR_PROTOCOL');
    }
  });

  it('a server error for the request fails each of its callers with it; the connection stays usable', async () => {
    let calls = 0;
    const f = await fake(new Map([['a', '1']]), (hits) =>
      ++calls === 1 ? 'SERVER_ERROR out of memory writing get response\r\n' : hits,
    );
    const c = client(f.port, { serializer: 'string' });
    const outcomes = await Promise.allSettled([c.get('a'), c.get('b')]);
    for (const o of outcomes) {
      assert.equal(o.status, 'rejected');
      assert.equal((o as PromiseRejectedResult).reason.code, 'MEMCACHED_ERR_SERVER_ERROR');
    }
    assert.equal(await c.get('a'), '1');
  });

  it('a written coalesced get times out per caller: the earliest deadline fails with TIMEOUT, the others lose the connection', async () => {
    const silent = await tcpServer((s) => s.on('data', () => {}));
    cleanup.push(() => silent.close());
    const events: CommandEvent[] = [];
    const listener = (m: unknown) => events.push(m as CommandEvent);
    diagnostics.subscribe(COMMAND_CHANNEL, listener);
    try {
      const c = client(silent.port);
      const fast = c.get('a', { timeout: 100 });
      const slow = c.get('b', { timeout: 1000 });
      const other = c.get('c', { timeout: 1000 });
      await rejectsWith(fast, 'MEMCACHED_ERR_TIMEOUT', 100);
      await rejectsWith(slow, 'MEMCACHED_ERR_CONNECTION_CLOSED', 50);
      await assert.rejects(other, (err: { code?: string; cause?: { code?: string } }) => {
        assert.equal(err.code, 'MEMCACHED_ERR_CONNECTION_CLOSED');
        assert.equal(err.cause?.code, 'MEMCACHED_ERR_TIMEOUT', 'the cause is the timeout');
        return true;
      });
    } finally {
      diagnostics.unsubscribe(COMMAND_CHANNEL, listener);
    }
    // One start and one error per call, never one per request.
    assert.deepEqual(
      events.map((e) => `${e.type}:${e.command}:${e.keys}`),
      ['start:get:1', 'start:get:1', 'start:get:1', 'error:get:1', 'error:get:1', 'error:get:1'],
    );
  });

  it('while waiting for the connection, a caller that times out leaves the others waiting', async () => {
    // A TLS handshake that never completes: the gets stay queued until their own deadlines.
    const silent = await tcpServer((s) => s.on('data', () => {}));
    cleanup.push(() => silent.close());
    const c = client(silent.port, { tls: true, connectTimeout: 2000 });
    const fast = c.get('a', { timeout: 100 });
    const slow = c.get('b', { timeout: 400 });
    await rejectsWith(fast, 'MEMCACHED_ERR_TIMEOUT', 100);
    await rejectsWith(slow, 'MEMCACHED_ERR_TIMEOUT', 300);
  });

  it('aborting every caller of a queued get lets close() finish without sending it', async () => {
    const f = await fake(new Map());
    const c = new MemcacheClient({ servers: [`127.0.0.1:${f.port}`] });
    const controller = new AbortController();
    const gets = [c.get('a', { signal: controller.signal }), c.get('b', { signal: controller.signal })];
    controller.abort();
    for (const g of gets) await rejectsWith(g, 'MEMCACHED_ERR_ABORTED', 5);
    await c.close();
    await sleep(10);
    assert.deepEqual(f.lines, []);
  });

  it('a get made after every caller of a queued get aborted is still sent', async () => {
    const f = await fake(new Map([['b', 'B']]));
    const c = client(f.port, { serializer: 'string' });
    await c.get('warm-up');
    const controller = new AbortController();
    const aborted = c.get('a', { signal: controller.signal });
    controller.abort();
    await rejectsWith(aborted, 'MEMCACHED_ERR_ABORTED', 5);
    // The flush has dropped the abandoned request by now.
    await sleep(5);
    assert.equal(await c.get('b', { timeout: 200 }), 'B');
    assert.deepEqual(f.lines, ['get warm-up', 'get b']);
  });
});

describe('close()', () => {
  let server: Awaited<ReturnType<typeof startOurServer>>;
  before(async () => {
    server = await startOurServer();
  });
  after(() => server.close());

  it('`await client.close()` at the end of a script settles and the process exits with 0', async () => {
    const entry = new URL('../src/memcached/index.ts', import.meta.url).href;
    const script = `
      import { MemcacheClient } from ${JSON.stringify(entry)};
      const c = new MemcacheClient({ servers: ['127.0.0.1:${server.port}'] });
      await c.set('exit-test', 'v');
      if ((await c.get('exit-test')) !== 'v') process.exit(2);
      await c.close();
      console.log('closed');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    assert.equal(code, 0, `exit code ${code}: ${out}`);
    assert.equal(out.trim(), 'closed');
  });
});
