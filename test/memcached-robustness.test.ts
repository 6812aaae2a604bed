/**
 * Robustness proof: slow, silent, greedy and vanishing clients must not hurt the others; limits (`-c`, `-I`, `-M`,
 * `-m`) answer as memcached does.
 *
 * @module
 */

import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MemcachedServerOptions } from '../src/memcached/server/server.ts';
import { exchange, startOurServer } from './helpers/memcached-real.ts';

/** A persistent raw connection: send bytes, await the reply that satisfies a predicate. */
class RawClient {
  readonly socket: Socket;
  #buf = Buffer.alloc(0);
  #waiter: { until: (b: Buffer) => boolean; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#check();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#waiter?.reject(new Error(`connection closed; got ${JSON.stringify(this.#buf.toString('latin1'))}`));
      this.#waiter = undefined;
    });
  }

  static async open(port: number): Promise<RawClient> {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    await once(socket, 'connect');
    return new RawClient(socket);
  }

  #check(): void {
    if (this.#waiter?.until(this.#buf)) {
      const { resolve } = this.#waiter;
      const out = this.#buf;
      this.#buf = Buffer.alloc(0);
      this.#waiter = undefined;
      resolve(out);
    }
  }

  /** Resolves with everything received once `until` holds (default: one line). */
  read(until: (b: Buffer) => boolean = (b) => b.includes('\r\n'), timeoutMs = 5000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new Error(`timed out; got ${JSON.stringify(this.#buf.toString('latin1').slice(0, 200))}`));
      }, timeoutMs);
      this.#waiter = {
        until,
        resolve: (b) => {
          clearTimeout(timer);
          resolve(b);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      if (this.closed) this.#waiter.reject(new Error('connection closed'));
      else this.#check();
    });
  }

  /** Sends a request and resolves with its reply (one line, or up to `END\r\n` for retrievals). */
  async request(bytes: string | Buffer, until?: (b: Buffer) => boolean): Promise<string> {
    const text = typeof bytes === 'string' ? bytes : '';
    const defaultUntil =
      /^(get|gets|gat|gats|stats) /.test(text) || text === 'stats\r\n' ? endsWith('END\r\n') : undefined;
    const reply = this.read(until ?? defaultUntil);
    this.socket.write(bytes);
    return (await reply).toString('latin1');
  }

  close(): void {
    this.socket.destroy();
  }
}

const endsWith = (s: string) => (b: Buffer) => b.length >= s.length && b.toString('latin1', b.length - s.length) === s;

async function server(t: { after: (fn: () => Promise<void>) => void }, options: MemcachedServerOptions = {}) {
  const s = await startOurServer(options);
  t.after(() => s.close());
  return s;
}

async function statsOf(port: number): Promise<Map<string, string>> {
  const { reply } = await exchange(port, 'stats\r\n', { until: endsWith('END\r\n') });
  return new Map([...reply.toString().matchAll(/^STAT (\S+) (.*)\r$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** Checks that `n` requests on a fresh connection are each answered within `withinMs`. */
async function promptlyServed(port: number, n: number, withinMs: number): Promise<number[]> {
  const c = await RawClient.open(port);
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      assert.equal(await c.request(`set other${i} 0 0 2\r\nok\r\n`), 'STORED\r\n');
      assert.equal(await c.request(`get other${i}\r\n`), `VALUE other${i} 0 2\r\nok\r\nEND\r\n`);
      times.push(performance.now() - t0);
    }
  } finally {
    c.close();
  }
  for (const ms of times) assert.ok(ms < withinMs, `a request took ${ms.toFixed(0)} ms: ${times.map(Math.round)}`);
  return times;
}

describe('memcached robustness: slow, silent and greedy clients', { concurrency: true }, () => {
  it('a set whose data arrives 1 byte every 20 ms is stored, while other clients are served promptly', async (t) => {
    const { port } = await server(t);
    const slow = await RawClient.open(port);
    t.after(() => slow.close());
    const request = Buffer.from('set slow 5 0 20\r\nabcdefghij0123456789\r\n');
    const reply = slow.read();
    let slowDone = false;
    const trickle = (async () => {
      for (let i = 0; i < request.length; i++) {
        slow.socket.write(request.subarray(i, i + 1));
        await sleep(20);
      }
      slowDone = true;
    })();
    await sleep(50);
    await promptlyServed(port, 10, 250);
    assert.equal(slowDone, false, 'the other client should have finished while the slow one was still sending');
    await trickle;
    assert.equal((await reply).toString(), 'STORED\r\n');
    assert.equal(await slow.request('get slow\r\n'), 'VALUE slow 5 20\r\nabcdefghij0123456789\r\nEND\r\n');
  });

  it('a half-open client (half a command, then silence) does not delay anyone', async (t) => {
    const { port } = await server(t);
    const silent: RawClient[] = [];
    t.after(() => {
      for (const c of silent) c.close();
    });
    for (const half of ['set half 0 0 10\r\nabc', 'get hal', 'set x 0 0', '\x80\x00\x00\x03', 'mg half v']) {
      const c = await RawClient.open(port);
      c.socket.write(half);
      silent.push(c);
    }
    await promptlyServed(port, 20, 250);
    // The half-sent set completes whenever its client resumes.
    assert.equal(await silent[0]!.request('defghij\r\n'), 'STORED\r\n');
    assert.equal(await silent[0]!.request('get half\r\n'), 'VALUE half 0 10\r\nabcdefghij\r\nEND\r\n');
  });

  it('-c 3: a 4th connection gets "ERROR Too many open connections" and is closed; the others keep working', async (t) => {
    const ours = await server(t, { maxConns: 3 });
    const { port } = ours;
    const clients = await Promise.all([RawClient.open(port), RawClient.open(port), RawClient.open(port)]);
    t.after(() => {
      for (const c of clients) c.close();
    });
    for (const c of clients) assert.equal(await c.request('version\r\n'), 'VERSION 1.6.18\r\n');

    const fourth = await exchange(port, 'version\r\n', { quietMs: 300 });
    assert.equal(fourth.reply.toString(), 'ERROR Too many open connections\r\n');
    assert.equal(fourth.closed, true, 'the refused connection is closed');

    for (const [i, c] of clients.entries()) {
      assert.equal(await c.request(`set c${i} 0 0 1\r\n${i}\r\n`), 'STORED\r\n');
      assert.equal(await c.request(`get c${i}\r\n`), `VALUE c${i} 0 1\r\n${i}\r\nEND\r\n`);
    }
    const stats = await clients[0]!.request('stats\r\n');
    assert.match(stats, /STAT rejected_connections 1\r\n/);
    assert.match(stats, /STAT curr_connections 3\r\n/);

    // Once one leaves, a newcomer is accepted again.
    clients.pop()!.close();
    let again = '';
    for (let i = 0; i < 40 && again !== 'VERSION 1.6.18\r\n'; i++) {
      again = (
        await exchange(port, 'version\r\n', { until: (b) => b.includes('\r\n'), timeoutMs: 2000 })
      ).reply.toString();
      if (again !== 'VERSION 1.6.18\r\n') await sleep(25);
    }
    assert.equal(again, 'VERSION 1.6.18\r\n');

    // And the refused connection does not keep the server from closing.
    for (const c of clients) c.close();
    await ours.close();
  });

  it('a client disconnecting mid-value stores nothing and leaves the server healthy', async (t) => {
    const { port } = await server(t);
    for (const [i, cut] of [
      `set gone 0 0 100\r\n${'x'.repeat(50)}`,
      'set gone 0 0 10\r\n0123456789',
      'set go',
    ].entries()) {
      const c = await RawClient.open(port);
      c.socket.write(cut);
      await sleep(10);
      if (i === 1) c.socket.resetAndDestroy();
      else c.socket.end();
      await once(c.socket, 'close');
    }
    assert.equal((await exchange(port, 'get gone\r\n', { until: endsWith('END\r\n') })).reply.toString(), 'END\r\n');
    await promptlyServed(port, 3, 250);
    let curr = '';
    for (let i = 0; i < 40 && curr !== '1'; i++) {
      curr = (await statsOf(port)).get('curr_connections') ?? '';
      if (curr !== '1') await sleep(25);
    }
    assert.equal(curr, '1', 'the vanished connections are closed on the server');
  });

  it('10,000 pipelined gets from a client that reads nothing: output stays bounded, then every reply arrives', async (t) => {
    const { port } = await server(t);
    const value = 'v'.repeat(4096);
    const seed = await RawClient.open(port);
    assert.equal(await seed.request(`set big 0 0 ${value.length}\r\n${value}\r\n`), 'STORED\r\n');
    seed.close();

    // Watch the server side of the greedy connection: how much output does it queue in user space?
    let serverSide: Socket | undefined;
    const onSocket = (m: unknown) => {
      const s = (m as { socket: Socket }).socket;
      if (s.localPort === port) serverSide = s;
    };
    dc.subscribe('net.server.socket', onSocket);
    t.after(() => dc.unsubscribe('net.server.socket', onSocket));

    const N = 10000;
    const greedy = connect({ host: '127.0.0.1', port });
    t.after(() => greedy.destroy());
    greedy.on('error', () => {});
    greedy.pause();
    await once(greedy, 'connect');
    greedy.write('get big\r\n'.repeat(N));
    let maxQueued = 0;
    for (let i = 0; i < 40; i++) {
      await sleep(25);
      maxQueued = Math.max(maxQueued, serverSide?.writableLength ?? 0);
    }
    // Others are still served while the greedy one is stuck.
    await promptlyServed(port, 5, 500);

    const reply = `VALUE big 0 ${value.length}\r\n${value}\r\nEND\r\n`;
    const total = reply.length * N;
    let received = 0;
    let tail = '';
    let count = 0;
    const done = new Promise<void>((resolve, reject) => {
      greedy.on('data', (d: Buffer) => {
        received += d.length;
        const text = tail + d.toString('latin1');
        count += text.split('END\r\n').length - 1;
        tail = text.slice(-4);
        if (received >= total) resolve();
      });
      greedy.once('close', () => reject(new Error(`closed after ${received} of ${total} bytes`)));
    });
    greedy.resume();
    await done;
    assert.equal(received, total);
    assert.equal(count, N);
    t.diagnostic(
      `server queued at most ${(maxQueued / 1024 / 1024).toFixed(1)} MiB of ${(total / 1024 / 1024).toFixed(1)} MiB`,
    );
    assert.ok(
      maxQueued <= 8 * 1024 * 1024,
      `the server queued ${maxQueued} bytes for a client that reads nothing (replies total ${total}): ` +
        'it must stop processing requests while the socket is over its high-water mark',
    );
  });

  it('an oversize value is swallowed (SERVER_ERROR object too large for cache) and the connection stays usable', async (t) => {
    const { port } = await server(t);
    const c = await RawClient.open(port);
    t.after(() => c.close());
    assert.equal(await c.request('set big 0 0 5\r\nsmall\r\n'), 'STORED\r\n');
    const huge = 2 * 1024 * 1024;
    const line = `set big 0 0 ${huge}\r\n`;
    const reply = c.read((b) => b.includes('\r\n'));
    c.socket.write(line);
    // The data comes in pieces after the error was already sent.
    for (let sent = 0; sent < huge; sent += 256 * 1024) {
      c.socket.write(Buffer.alloc(Math.min(256 * 1024, huge - sent), 'z'));
      await sleep(5);
    }
    c.socket.write('\r\n');
    assert.equal((await reply).toString(), 'SERVER_ERROR object too large for cache\r\n');
    // memcached also drops the old value under that key.
    assert.equal(await c.request('get big\r\n'), 'END\r\n');
    assert.equal(await c.request('set after 0 0 2\r\nok\r\n'), 'STORED\r\n');
    assert.equal(await c.request('get after\r\n'), 'VALUE after 0 2\r\nok\r\nEND\r\n');
  });

  it('-M -m 2: a full cache answers "SERVER_ERROR out of memory storing object" and evicts nothing', async (t) => {
    const { port } = await server(t, { evictions: false, maxBytes: 2 * 1024 * 1024, itemSizeMax: 1024 * 1024 });
    const c = await RawClient.open(port);
    t.after(() => c.close());
    const value = 'm'.repeat(100 * 1024);
    const stored: number[] = [];
    let refusal = '';
    for (let i = 0; i < 60; i++) {
      const r = await c.request(`set m${i} 0 0 ${value.length}\r\n${value}\r\n`);
      if (r === 'STORED\r\n') stored.push(i);
      else {
        refusal = r;
        break;
      }
    }
    assert.equal(refusal, 'SERVER_ERROR out of memory storing object\r\n', `after ${stored.length} items`);
    assert.ok(stored.length >= 5, `only ${stored.length} items of 100 KiB fit in 2 MiB`);
    // Nothing was evicted: every stored item is still there.
    for (const i of stored) {
      assert.equal(await c.request(`get m${i}\r\n`), `VALUE m${i} 0 ${value.length}\r\n${value}\r\nEND\r\n`);
    }
    const stats = await statsOf(port);
    assert.equal(stats.get('evictions'), '0');
    assert.equal(stats.get('curr_items'), String(stored.length));
    // Small items of another class may still fit; the connection is usable either way.
    assert.match(
      await c.request('set tiny 0 0 1\r\nx\r\n'),
      /^(STORED|SERVER_ERROR out of memory storing object)\r\n$/,
    );
    assert.equal(await c.request('version\r\n'), 'VERSION 1.6.18\r\n');
  });

  it('an eviction flood with -m 2: old items are evicted, stats count evictions, the newest items are readable', async (t) => {
    const { port } = await server(t, { maxBytes: 2 * 1024 * 1024, itemSizeMax: 1024 * 1024 });
    const value = 'e'.repeat(1000);
    const N = 6000;
    const batch: string[] = [];
    for (let i = 0; i < N; i++) batch.push(`set e${i} 0 0 ${value.length} noreply\r\n${value}\r\n`);
    const c = await RawClient.open(port);
    t.after(() => c.close());
    c.socket.write(batch.join(''));
    assert.equal(await c.request('version\r\n'), 'VERSION 1.6.18\r\n');

    const stats = await statsOf(port);
    const evictions = Number(stats.get('evictions'));
    const items = Number(stats.get('curr_items'));
    t.diagnostic(`evictions ${evictions}, curr_items ${items}, total_items ${stats.get('total_items')}`);
    assert.ok(evictions > 0, 'evictions > 0');
    assert.equal(stats.get('total_items'), String(N));
    assert.equal(evictions + items, N, 'every item is either still there or was evicted');
    assert.ok(items > 100 && items < N, `curr_items ${items}`);
    assert.equal(await c.request('get e0\r\n'), 'END\r\n', 'the oldest item was evicted');
    for (let i = N - 20; i < N; i++) {
      assert.equal(await c.request(`get e${i}\r\n`), `VALUE e${i} 0 ${value.length}\r\n${value}\r\nEND\r\n`);
    }
  });
});
