/**
 * The whole `MemcacheClient` API against our server and against the real memcached 1.6.18 (two servers of each,
 * started here), over the text protocol and over the binary protocol; then TLS, SASL and the session store.
 *
 * The real memcached is skipped visibly when it is not installed, and a failure when `CI=true`.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer as createTlsServer } from 'node:tls';
import {
  COMMAND_CHANNEL,
  type CommandEvent,
  MemcacheClient,
  type MemcacheClientOptions,
  MemcacheError,
  MemcacheSessionStore,
  type SessionData,
} from '../src/memcached/index.ts';
import { inCI, MEMCACHED_BIN, startOurServer, startRealMemcached } from './helpers/memcached-real.ts';

interface Running {
  readonly port: number;
  stop(): Promise<void>;
}

interface Target {
  readonly name: string;
  /** A skip reason, or false. */
  readonly skip: string | false;
  start(flags?: string[]): Promise<Running>;
}

const realMissing = !existsSync(MEMCACHED_BIN);
if (realMissing && inCI()) throw new Error(`${MEMCACHED_BIN} not installed (CI=true: install the Debian package)`);

const TARGETS: Target[] = [
  {
    name: 'our server',
    skip: false,
    async start(flags = []) {
      const s = await startOurServer(flags);
      return { port: s.port, stop: () => s.close() };
    },
  },
  {
    name: 'real memcached',
    skip: realMissing ? 'SKIPPED: memcached not installed' : false,
    async start(flags = []) {
      const m = await startRealMemcached(flags);
      return { port: m.port, stop: () => m.stop() };
    },
  },
];

/** Collects the command events published while `fn` runs. */
async function traced<T>(fn: () => Promise<T>): Promise<{ result: T; events: CommandEvent[] }> {
  const events: CommandEvent[] = [];
  const listener = (m: unknown) => events.push(m as CommandEvent);
  diagnostics.subscribe(COMMAND_CHANNEL, listener);
  try {
    return { result: await fn(), events };
  } finally {
    diagnostics.unsubscribe(COMMAND_CHANNEL, listener);
  }
}

let unique = 0;
/** A key no other test uses (the servers are shared by the tests of one target). */
const k = (name: string) => `${name}-${++unique}`;

for (const target of TARGETS) {
  for (const protocol of ['text', 'binary'] as const) {
    describe(`MemcacheClient over ${protocol} against ${target.name}`, { skip: target.skip }, () => {
      const servers: Running[] = [];
      const clients: MemcacheClient[] = [];
      const client = (options: Partial<MemcacheClientOptions> = {}) => {
        const c = new MemcacheClient({
          servers: servers.map((s) => `127.0.0.1:${s.port}`),
          protocol,
          timeout: 2000,
          ...options,
        });
        clients.push(c);
        return c;
      };
      let mc: MemcacheClient;

      before(async () => {
        servers.push(await target.start(), await target.start());
        mc = client();
      });
      after(async () => {
        await Promise.all(clients.map((c) => c.close()));
        await Promise.all(servers.map((s) => s.stop()));
      });

      it('storage and retrieval commands with typed results (a miss is undefined)', async () => {
        const key = k('basic');
        assert.equal(await mc.get(key), undefined);
        assert.equal(await mc.set(key, 'v1'), true);
        assert.equal(await mc.get(key), 'v1');
        assert.equal(await mc.add(key, 'v2'), false);
        assert.equal(await mc.replace(key, 'v3'), true);
        assert.equal(await mc.replace(k('missing'), 'x'), false);
        assert.equal(await mc.append(key, '-end'), true);
        assert.equal(await mc.prepend(key, 'start-'), true);
        assert.equal(await mc.get(key), 'start-v3-end');
        assert.equal(await mc.append(k('missing'), 'x'), false);
        const g = await mc.gets<string>(key);
        assert.ok(g !== undefined && typeof g.cas === 'bigint');
        assert.equal(await mc.cas(key, 'v4', g.cas), true);
        assert.equal(await mc.cas(key, 'v5', g.cas), false, 'stale cas');
        assert.equal(await mc.get(key), 'v4');
        assert.equal(await mc.touch(key, 100), true);
        assert.equal(await mc.touch(k('missing'), 100), false);
        assert.equal(await mc.gat(key, 200), 'v4');
        const gats = await mc.gats(key, 300);
        assert.equal(gats?.value, 'v4');
        assert.equal(await mc.gat(k('missing'), 1), undefined);
        assert.equal(await mc.delete(key), true);
        assert.equal(await mc.delete(key), false);
        assert.equal(await mc.get(key), undefined);
        assert.equal(await mc.set(key, 'gone', { ttl: -1 }), true);
        assert.equal(await mc.get(key), undefined, 'ttl -1 expires at once');
      });

      it('counters, with and without an initial value', async () => {
        const key = k('counter');
        assert.equal(await mc.incr(key), undefined);
        await mc.set(key, 10);
        assert.equal(await mc.incr(key, 5), 15);
        assert.equal(await mc.decr(key, 20), 0, 'memcached stops at 0');
        assert.equal(await mc.get(key), 0);
        const created = k('counter');
        assert.equal(await mc.incr(created, 1, { initial: 100, ttl: 60 }), 100);
        assert.equal(await mc.incr(created, 1, { initial: 100 }), 101);
        await mc.set(key, { not: 'a number' });
        await assert.rejects(mc.incr(key), { code: 'MEMCACHED_ERR_NOT_NUMERIC' });
      });

      it('serializers record the type in the flags (php-memcached layout)', async () => {
        const raw = client({ serializer: 'buffer' });
        const values: [unknown, number][] = [
          ['string ü', 0],
          [42, 1],
          [1.25, 2],
          [true, 3],
          [{ nested: [1, 'two'] }, 6],
          [Buffer.from([0, 1, 2, 255]), 0x100],
        ];
        for (const [value, flags] of values) {
          const key = k('ser');
          await mc.set(key, value);
          assert.deepEqual(await mc.get(key), value);
          const item = await raw.getItem(key);
          assert.equal(item?.flags, flags);
        }
        const custom = client({
          serializer: {
            serialize: (v) => ({ data: Buffer.from(`<${String(v)}>`), flags: 0x10000 }),
            deserialize: (d, f) => `${d.toString()}:${f}`,
          },
        });
        const key = k('custom');
        await custom.set(key, 'x');
        assert.equal(await custom.get(key), '<x>:65536');
        await assert.rejects(mc.set(key, undefined), { code: 'MEMCACHED_ERR_SERIALIZATION' });
        await assert.rejects(mc.set('bad key', 1), { code: 'MEMCACHED_ERR_BAD_KEY' });
        await assert.rejects(mc.set('x'.repeat(251), 1), { code: 'MEMCACHED_ERR_BAD_KEY' });
      });

      it('compresses large values (and reads them back), below the limits', async () => {
        const zc = client({ compression: { threshold: 1000 } });
        const raw = client({ serializer: 'buffer' });
        const key = k('big');
        const big = 'compressible '.repeat(20000);
        await zc.set(key, big);
        assert.equal(await zc.get(key), big);
        // Reading is transparent whatever the reader's settings; the wire flags show the compression.
        const item = await raw.getItem<Buffer>(key);
        assert.equal(item!.flags & 0x30, 0x30);
        assert.equal(item!.value.toString(), big);
        await assert.rejects(mc.set(k('huge'), Buffer.alloc(2 * 1024 * 1024)), {
          code: 'MEMCACHED_ERR_VALUE_TOO_LARGE',
        });
        // Over the client's limit but under the server's: the server's own refusal.
        const loose = client({ maxValueSize: 4 * 1024 * 1024 });
        await assert.rejects(loose.set(k('huge'), Buffer.alloc(1024 * 1024 + 10)), {
          code: 'MEMCACHED_ERR_VALUE_TOO_LARGE',
        });
        assert.equal(await loose.set(k('after'), 'still in step'), true);
      });

      it('multi-get: one pipelined request per server, all servers in parallel', async () => {
        const keys = Array.from({ length: 60 }, () => k('multi'));
        const set = await mc.setMulti(keys.map((key, i) => [key, i] as const));
        assert.equal(set.size, 60);
        assert.ok([...set.values()].every(Boolean));
        keys.push(k('ключ-ü')); // UTF-8 keys map back too
        await mc.set(keys.at(-1)!, 60);
        const missing = k('multi-miss');
        const { result, events } = await traced(() => mc.getMulti([...keys, missing]));
        assert.equal(result.size, 61);
        for (const [i, key] of keys.entries()) assert.equal(result.get(key), i);
        assert.equal(result.has(missing), false);
        const starts = events.filter((e) => e.type === 'start');
        assert.equal(starts.length, 2, 'one request per server');
        assert.deepEqual(new Set(starts.map((e) => e.server)).size, 2);
        assert.equal(
          starts.reduce((n, e) => n + e.keys, 0),
          62,
        );
        const cas = await mc.getsMulti(keys.slice(0, 3));
        assert.equal(cas.size, 3);
        const deleted = await mc.deleteMulti([...keys.slice(0, 30), missing]);
        assert.equal([...deleted.values()].filter(Boolean).length, 30);
        assert.equal(deleted.get(missing), false);
        assert.equal((await mc.getMulti(keys)).size, 31);
        assert.deepEqual(await mc.getMulti([]), new Map());
      });

      it('concurrent single commands are pipelined on one connection', async () => {
        const single = client({ servers: [`127.0.0.1:${servers[0]!.port}`] });
        const keys = Array.from({ length: 200 }, () => k('pipe'));
        await Promise.all(keys.map((key, i) => single.set(key, `v${i}`)));
        const values = await Promise.all(keys.map((key) => single.get(key)));
        assert.deepEqual(
          values,
          keys.map((_, i) => `v${i}`),
        );
        const stats = (await single.stats()).values().next().value as Record<string, string>;
        // This client opened one connection (others exist from the other clients of this suite).
        assert.ok(Number(stats.curr_connections) <= clients.length + 2);
      });

      it('delayed fetch and read-through callbacks', async () => {
        const keys = [k('later'), k('later')];
        await mc.set(keys[0]!, 'a');
        const handle = mc.fetchLater(keys);
        assert.deepEqual(handle.keys, keys);
        await sleep(1);
        assert.deepEqual(await handle.result, new Map([[keys[0]!, 'a']]));
        const loaded: string[] = [];
        const key = k('through');
        const loader = async (name: string) => {
          loaded.push(name);
          return { loaded: name };
        };
        assert.deepEqual(await mc.get(key, { loader, ttl: 60 }), { loaded: key });
        assert.deepEqual(await mc.get(key, { loader }), { loaded: key });
        assert.deepEqual(loaded, [key]);
        const more = [key, k('through'), k('through')];
        const got = await mc.getMulti(more, {
          loader: (missing) => new Map(missing.map((m) => [m, m.length])),
          ttl: 60,
        });
        assert.equal(got.size, 3);
        assert.equal(await mc.get(more[1]!), more[1]!.length);
      });

      it('buffered noreply writes are flushed before the next read', async () => {
        const bw = client({ bufferedWrites: { maxBatch: 1000, flushMs: 60000 } });
        const keys = Array.from({ length: 20 }, () => k('buffered'));
        const { events } = await traced(async () => {
          for (const key of keys) assert.equal(await bw.set(key, key, { noreply: true }), true);
          assert.equal(await bw.delete(keys[0]!, { noreply: true }), true);
          const got = await bw.getMulti(keys);
          assert.equal(got.size, 19);
          assert.equal(got.get(keys[1]!), keys[1]);
        });
        assert.ok(events.some((e) => e.type === 'end' && e.command === 'batch'));
        assert.ok(!events.some((e) => e.command === 'set'), 'no per-key set requests');
        await bw.setMulti([[k('buffered'), 1]], { noreply: true });
        await bw.flushBuffered();
      });

      it('key locality: *ByKey puts related keys on one server', async () => {
        const group = k('user');
        const keys = Array.from({ length: 10 }, () => k('byKey'));
        for (const key of keys) await mc.setByKey(group, key, key);
        const owner = mc.serverFor(group);
        const direct = client({ servers: [owner!] });
        assert.equal((await direct.getMulti(keys)).size, 10);
        assert.equal((await mc.getMultiByKey(group, keys)).size, 10);
        assert.equal(await mc.getByKey(group, keys[0]!), keys[0]);
        assert.equal(await mc.addByKey(group, keys[0]!, 'x'), false);
        assert.equal(await mc.replaceByKey(group, keys[0]!, 'y'), true);
        assert.equal(await mc.touchByKey(group, keys[0]!, 100), true);
        assert.equal(await mc.deleteByKey(group, keys[0]!), true);
        await mc.setByKey(group, keys[1]!, 1);
        assert.equal(await mc.incrByKey(group, keys[1]!, 2), 3);
      });

      it('key prefix and namespaces (delete by namespace)', async () => {
        const prefixed = client({ prefix: 'app1:' });
        const key = k('pre');
        await prefixed.set(key, 'namespaced');
        // The server is chosen by the key without the prefix (libmemcached's default).
        const owner = client({ servers: [prefixed.serverFor(key)!] });
        assert.equal(await owner.get(`app1:${key}`), 'namespaced');
        assert.equal(await prefixed.get(key), 'namespaced');
        const ns = prefixed.namespace(k('ns'));
        await ns.set('a', 1);
        await ns.setMulti([
          ['b', 2],
          ['c', 3],
        ]);
        assert.equal(await ns.get('a'), 1);
        assert.deepEqual(
          await ns.getMulti(['a', 'b', 'c']),
          new Map([
            ['a', 1],
            ['b', 2],
            ['c', 3],
          ]),
        );
        assert.equal(await ns.incr('a'), 2);
        await ns.invalidate();
        assert.equal(await ns.get('a'), undefined);
        assert.deepEqual(await ns.getMulti(['a', 'b']), new Map());
        await ns.set('a', 'new');
        assert.equal(await ns.get('a'), 'new');
        assert.equal(await ns.delete('a'), true);
        assert.equal(await ns.getOrSet('g', () => 'gv', { ttl: 10 }), 'gv');
      });

      it('getOrSet: one caller computes, everyone gets its value', async () => {
        const key = k('stampede');
        let calls = 0;
        const loader = async () => {
          calls++;
          await sleep(50);
          return { computedAt: calls };
        };
        // Five clients (as five processes would), four callers each.
        const many = Array.from({ length: 5 }, () => client());
        const results = await Promise.all(
          many.flatMap((c) => Array.from({ length: 4 }, () => c.getOrSet(key, loader, { ttl: 60 }))),
        );
        assert.equal(calls, 1, 'exactly one computation across clients');
        for (const r of results) assert.deepEqual(r, { computedAt: 1 });
        assert.deepEqual(await mc.get(key), { computedAt: 1 });
      });

      it('getOrSet serves the stale value while exactly one caller recomputes', async () => {
        if (protocol === 'binary') return;
        const key = k('stale');
        await mc.getOrSet(key, () => 'v1', { ttl: 60, staleTtl: 60 });
        assert.equal(await mc.markStale(key), true);
        let computing = 0;
        let release!: () => void;
        const gate = new Promise<void>((r) => {
          release = r;
        });
        const loader = async () => {
          computing++;
          await gate;
          return 'v2';
        };
        const others = Array.from({ length: 4 }, () => client());
        const winner = mc.getOrSet(key, loader, { ttl: 60, staleTtl: 60 });
        await sleep(30);
        const meanwhile = await Promise.all(others.map((c) => c.getOrSet(key, loader, { ttl: 60, staleTtl: 60 })));
        assert.deepEqual(meanwhile, ['v1', 'v1', 'v1', 'v1'], 'others get the stale value at once');
        release();
        assert.equal(await winner, 'v2');
        assert.equal(computing, 1);
        const item = await mc.getItem(key);
        assert.equal(item?.value, 'v2');
        assert.ok(item?.ttl !== undefined && item.ttl > 60, 'stored for ttl + staleTtl');
      });

      it('a loader failure lets the next caller compute at once', async () => {
        if (protocol === 'binary') return;
        const key = k('failing');
        await assert.rejects(
          mc.getOrSet(
            key,
            () => {
              throw new Error('db down');
            },
            { ttl: 10 },
          ),
          /db down/,
        );
        const other = client();
        assert.equal(await other.getOrSet(key, () => 'ok', { ttl: 10, waitMs: 50 }), 'ok');
      });

      it('TTL and CAS are read with the value', async () => {
        const key = k('item');
        await mc.set(key, 'with ttl', { ttl: 100 });
        const item = await mc.getItem(key);
        assert.equal(item?.value, 'with ttl');
        assert.equal(typeof item?.cas, 'bigint');
        if (protocol === 'text') assert.ok(item!.ttl! > 90 && item!.ttl! <= 100);
        else assert.equal(item?.ttl, undefined);
        assert.equal(await mc.getItem(k('none')), undefined);
      });

      it('the local LRU in front of the cluster', async () => {
        const local = client({ localCache: { max: 100, ttlMs: 60000 } });
        const key = k('local');
        await mc.set(key, 'remote');
        assert.equal(await local.get(key), 'remote');
        const { result, events } = await traced(() => local.get(key));
        assert.equal(result, 'remote');
        assert.equal(events.length, 0, 'served from the local cache');
        await mc.set(key, 'changed elsewhere');
        assert.equal(await local.get(key), 'remote', 'until ttlMs');
        await local.set(key, 'mine');
        assert.equal(await local.get(key), 'mine');
        await local.delete(key);
        assert.equal(await local.get(key), undefined);
      });

      it('stats, version, flush', async () => {
        const stats = await mc.stats();
        assert.equal(stats.size, 2);
        for (const s of stats.values()) {
          assert.ok(!(s instanceof MemcacheError));
          assert.ok(Number(s.pid) > 0);
        }
        for (const v of (await mc.version()).values()) assert.equal(v, '1.6.18');
        const settings = (await mc.stats('settings')).values().next().value as Record<string, string>;
        assert.ok('maxbytes' in settings);
        const key = k('flush');
        await mc.set(key, 1);
        await mc.flush();
        assert.equal(await mc.get(key), undefined);
      });
    });
  }
}

/** A self-signed certificate for 127.0.0.1 (openssl from Debian), or undefined when openssl is missing. */
function makeCertificate(dir: string): { cert: string; key: string } | undefined {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ]);
  return r.status === 0 ? { cert, key } : undefined;
}

describe('TLS', () => {
  let dir: string;
  let pem: { cert: string; key: string } | undefined;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mc-tls-'));
    pem = makeCertificate(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('against the real memcached with -Z', { skip: realMissing && 'SKIPPED: memcached not installed' }, async (t) => {
    if (pem === undefined) {
      if (inCI()) throw new Error('openssl not installed');
      t.skip('openssl not installed');
      return;
    }
    const m = await startRealMemcached(['-Z', '-o', `ssl_chain_cert=${pem.cert},ssl_key=${pem.key}`]);
    const c = new MemcacheClient({ servers: [`127.0.0.1:${m.port}`], tls: { ca: [readPem(pem.cert)] } });
    try {
      assert.equal(await c.set('tls', 'secret'), true);
      assert.equal(await c.get('tls'), 'secret');
      // Plain TCP to a TLS port: the garbage the TLS server answers is a protocol error, not a hang.
      const plain = new MemcacheClient({ servers: [`127.0.0.1:${m.port}`], timeout: 500 });
      await assert.rejects(plain.get('tls'), (err: MemcacheError) =>
        ['MEMCACHED_ERR_PROTOCOL', 'MEMCACHED_ERR_TIMEOUT', 'MEMCACHED_ERR_CONNECTION_CLOSED'].includes(err.code),
      );
      plain.destroy();
    } finally {
      await c.close();
      await m.stop();
    }
  });

  it('against our server behind a TLS terminator', async (t) => {
    if (pem === undefined) {
      if (inCI()) throw new Error('openssl not installed');
      t.skip('openssl not installed');
      return;
    }
    const ours = await startOurServer();
    const terminator = createTlsServer({ cert: readPem(pem.cert), key: readPem(pem.key) }, (tlsSocket) => {
      const upstream = netConnect({ host: '127.0.0.1', port: ours.port });
      tlsSocket.pipe(upstream).pipe(tlsSocket);
      upstream.on('error', () => tlsSocket.destroy());
      tlsSocket.on('error', () => upstream.destroy());
    });
    await new Promise<void>((r) => terminator.listen(0, '127.0.0.1', r));
    const port = (terminator.address() as { port: number }).port;
    const c = new MemcacheClient({ servers: [`127.0.0.1:${port}`], tls: { ca: [readPem(pem.cert)] } });
    try {
      assert.equal(await c.set('tls', { over: 'tls' }), true);
      assert.deepEqual(await c.get('tls'), { over: 'tls' });
      const untrusted = new MemcacheClient({ servers: [`127.0.0.1:${port}`], tls: true, connectTimeout: 1000 });
      await assert.rejects(untrusted.get('tls'), { code: 'MEMCACHED_ERR_CONNECT' });
      untrusted.destroy();
    } finally {
      await c.close();
      await new Promise<void>((r) => terminator.close(() => r()));
      await ours.close();
    }
  });
});

function readPem(path: string): string {
  return readFileSync(path, 'utf8');
}

describe('SASL PLAIN (binary protocol) against our server', () => {
  let dir: string;
  let server: Awaited<ReturnType<typeof startOurServer>>;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-sasl-'));
    const pwdb = join(dir, 'pwdb');
    writeFileSync(pwdb, 'ada:lovelace\n');
    server = await startOurServer({ sasl: true, saslPasswordFile: pwdb });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('authenticates every connection and runs the commands over binary', async () => {
    const c = new MemcacheClient({
      servers: [`127.0.0.1:${server.port}`],
      sasl: { username: 'ada', password: 'lovelace' },
      connectionsPerServer: 2,
    });
    try {
      assert.equal(await c.set('s', { n: 1 }), true);
      assert.deepEqual(await c.get('s'), { n: 1 });
      assert.deepEqual(await c.getMulti(['s', 'nope']), new Map([['s', { n: 1 }]]));
      assert.equal(await c.incr('n', 1, { initial: 5 }), 5);
      assert.equal(await c.getOrSet('g', () => 'computed', { ttl: 5 }), 'computed');
    } finally {
      await c.close();
    }
  });

  it('a wrong password fails with MEMCACHED_ERR_AUTH, then fast as a dead server', async () => {
    const c = new MemcacheClient({
      servers: [`127.0.0.1:${server.port}`],
      sasl: { username: 'ada', password: 'wrong' },
      failureLimit: 1,
    });
    await assert.rejects(c.get('s'), { code: 'MEMCACHED_ERR_AUTH' });
    await assert.rejects(c.get('s'), { code: 'MEMCACHED_ERR_SERVER_DEAD' }, 'marked dead after failureLimit');
    c.destroy();
  });
});

describe('express-session store', () => {
  let server: Awaited<ReturnType<typeof startOurServer>>;
  let client: MemcacheClient;
  before(async () => {
    server = await startOurServer();
    client = new MemcacheClient({ servers: [`127.0.0.1:${server.port}`], serializer: 'string' });
  });
  after(async () => {
    await client.close();
    await server.close();
  });

  it('get/set/touch/destroy with callbacks, borrowing the base Store methods', async () => {
    // A tiny stand-in for the `express-session` module: its Store supplies regenerate/load/createSession.
    class FakeStore {
      regenerate(this: { generate?: () => void }, _req: unknown, fn: (err?: Error) => void) {
        fn();
      }
      load(this: MemcacheSessionStore, sid: string, fn: (err: Error | null, s?: unknown) => void) {
        this.get(sid, (err, s) => fn(err ?? null, s));
      }
      createSession(_req: unknown, sess: unknown) {
        return sess;
      }
    }
    const store = new MemcacheSessionStore({ client, session: { Store: FakeStore }, ttl: 60 });
    const asCallback = <T>(fn: (cb: (err?: Error | null, v?: T) => void) => void) =>
      new Promise<T | undefined>((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
    const sess: SessionData = { cookie: { maxAge: 30000 }, user: 'ada' };
    await asCallback((cb) => store.set('sid1', sess, cb));
    assert.deepEqual(await asCallback((cb) => store.get('sid1', cb)), sess);
    await asCallback((cb) => store.touch('sid1', sess, cb));
    const loaded = await asCallback((cb) =>
      (store as unknown as FakeStore).load.call(store, 'sid1', (e, s) => cb(e, s)),
    );
    assert.deepEqual(loaded, sess);
    assert.equal(typeof (store as unknown as FakeStore).createSession, 'function');
    await asCallback((cb) => store.destroy('sid1', cb));
    assert.equal(await asCallback((cb) => store.get('sid1', cb)), null);
    assert.equal(await store.get('never'), null);
    // Errors reach the callback.
    const broken = new MemcacheSessionStore({ client: new MemcacheClient({ servers: [] }) });
    await assert.rejects(
      asCallback((cb) => broken.get('x', cb)),
      { code: 'MEMCACHED_ERR_NO_SERVERS' },
    );
  });
});
