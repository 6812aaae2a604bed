/**
 * Interop proof: real clients from Debian's packages against our server. libmemcached's `memccapable` must pass
 * every test (text and binary); `memcstat` must read our stats; php-memcached, pymemcache and Cache::Memcached drive
 * their whole API, and where a client's results depend on server behaviour, the same script also runs against the
 * real memcached 1.6.18 and both result sets must be equal.
 *
 * A missing package skips its test with a visible message locally and fails it when `CI=true`.
 *
 * @module
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  exchange,
  MEMCACHED_BIN,
  type OurMemcached,
  requirePackage,
  requireTool,
  startOurServer,
  startRealMemcached,
} from './helpers/memcached-real.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/memcached-clients/', import.meta.url));

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program without blocking the event loop (our server runs in this process). */
function run(file: string, args: string[], timeoutMs = 30000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts one of our servers for the duration of the test. */
async function ourServer(t: { after: (fn: () => Promise<void>) => void }, options = {}): Promise<OurMemcached> {
  const server = await startOurServer(options);
  t.after(() => server.close());
  return server;
}

/** Starts a fresh real memcached 1.6.18 for the duration of the test. */
async function realServer(t: { after: (fn: () => Promise<void>) => void }): Promise<{ port: number }> {
  const real = await startRealMemcached();
  t.after(() => real.stop());
  return real;
}

/** Parses memccapable's `name   [pass]` lines. */
function memccapableResults(stdout: string): Map<string, string> {
  const results = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^(.+?)\s+\[(\w+)\]\s*$/.exec(line);
    if (m) results.set(m[1]!, m[2]!);
  }
  return results;
}

describe('memcached interop: Debian clients against our server', { concurrency: true }, () => {
  for (const [flag, protocol] of [
    ['-a', 'ascii'],
    ['-b', 'binary'],
  ] as const) {
    it(`libmemcached memccapable ${flag} passes every ${protocol} test`, async (t) => {
      if (!requireTool(t, '/usr/bin/memccapable')) return;
      const { port } = await ourServer(t);
      const r = await run('/usr/bin/memccapable', ['-h', '127.0.0.1', '-p', String(port), flag, '-t', '5']);
      const results = memccapableResults(r.stdout);
      t.diagnostic(
        `memccapable ${flag}: ${[...results.values()].filter((v) => v === 'pass').length}/${results.size} pass`,
      );
      const failed = [...results].filter(([, v]) => v !== 'pass').map(([k, v]) => `${k} [${v}]`);
      assert.deepEqual(failed, [], `memccapable ${flag} failures:\n${r.stdout}${r.stderr}`);
      assert.ok(results.size >= 25, `memccapable ran only ${results.size} tests:\n${r.stdout}${r.stderr}`);
      for (const name of results.keys()) assert.ok(name.startsWith(`${protocol} `), `unexpected test ${name}`);
      assert.match(r.stdout, /All tests passed/);
      assert.equal(r.code, 0, `exit code ${r.code}\n${r.stdout}${r.stderr}`);
    });
  }

  it('memcstat reads our stats (curr_items, version, limit_maxbytes) and --analyze reports on two servers', async (t) => {
    if (!requireTool(t, '/usr/bin/memcstat')) return;
    const a = await ourServer(t, { maxBytes: 32 * 1024 * 1024 });
    const b = await ourServer(t);
    const setup = Array.from({ length: 3 }, (_, i) => `set k${i} 0 0 5\r\nvalue\r\n`).join('');
    await exchange(a.port, setup, { until: (r) => r.toString() === 'STORED\r\n'.repeat(3) });
    await exchange(b.port, 'set only 0 0 1\r\nx\r\n', { until: (r) => r.toString() === 'STORED\r\n' });

    const stat = await run('/usr/bin/memcstat', [`--servers=127.0.0.1:${a.port}`]);
    assert.equal(stat.code, 0, stat.stderr);
    assert.match(stat.stdout, new RegExp(`^Server: 127\\.0\\.0\\.1 \\(${a.port}\\)$`, 'm'));
    const fields = new Map<string, string>();
    for (const m of stat.stdout.matchAll(/^\t(\w+): (.*)$/gm)) fields.set(m[1]!, m[2]!);
    assert.equal(fields.get('curr_items'), '3');
    assert.equal(fields.get('version'), '1.6.18');
    assert.equal(fields.get('limit_maxbytes'), String(32 * 1024 * 1024));
    assert.equal(fields.get('cmd_set'), '3');
    assert.equal(fields.get('threads'), '1');
    for (const name of ['pid', 'uptime', 'time', 'pointer_size', 'rusage_user', 'curr_connections', 'bytes']) {
      assert.ok(fields.has(name), `memcstat shows no ${name}`);
    }
    assert.ok(Math.abs(Number(fields.get('time')) - Date.now() / 1000) < 5, `time ${fields.get('time')}`);

    const version = await run('/usr/bin/memcstat', [`--servers=127.0.0.1:${a.port}`, '-S']);
    assert.equal(version.code, 0, version.stderr);
    // memcstat prints the version line on stderr.
    assert.match(version.stdout + version.stderr, new RegExp(`127\\.0\\.0\\.1:${a.port} 1\\.6\\.18`));

    const servers = `--servers=127.0.0.1:${a.port},127.0.0.1:${b.port}`;
    const analyze = await run('/usr/bin/memcstat', [servers, '--analyze']);
    assert.equal(analyze.code, 0, analyze.stderr);
    assert.match(analyze.stdout, /Number of Servers Analyzed\s*: 2\n/);
    assert.match(analyze.stdout, /Average Item Size \(incl\/overhead\)\s*: [1-9]\d* bytes/);
    // Server a holds 3 of the 4 items and has half the memory of b.
    assert.match(
      analyze.stdout,
      new RegExp(`most memory consumption\\s*: 127\\.0\\.0\\.1:${a.port} \\([1-9]\\d* bytes\\)`),
    );
    assert.match(
      analyze.stdout,
      new RegExp(`least free space\\s*: 127\\.0\\.0\\.1:${a.port} \\(\\d+ bytes remaining\\)`),
    );
    assert.match(analyze.stdout, /Pool-wide Hit Ratio\s*: \d+%/);

    const latency = await run('/usr/bin/memcstat', [servers, '--analyze=latency', '--iterations=50']);
    assert.equal(latency.code, 0, latency.stderr);
    assert.match(latency.stdout, /Network Latency Test/);
    assert.doesNotMatch(latency.stdout + latency.stderr, /fail/i);
  });

  for (const protocol of ['text', 'binary'] as const) {
    it(`php-memcached (${protocol} protocol): the whole API gives the same results as against memcached 1.6.18`, async (t) => {
      if (!requireTool(t, '/usr/bin/php')) return;
      if (!requirePackage(t, 'php-memcached')) return;
      if (!requireTool(t, MEMCACHED_BIN)) return;
      const script = `${FIXTURES}php-memcached-api.php`;
      const [ours, real] = await Promise.all([ourServer(t), realServer(t)]);
      const [mine, theirs] = await Promise.all([
        run('/usr/bin/php', [script, String(ours.port), protocol]),
        run('/usr/bin/php', [script, String(real.port), protocol]),
      ]);
      assert.equal(theirs.code, 0, `against memcached: ${theirs.stdout}${theirs.stderr}`);
      assert.equal(mine.code, 0, `against ours: ${mine.stdout}${mine.stderr}`);
      const expected = JSON.parse(theirs.stdout) as Record<string, unknown>;
      const actual = JSON.parse(mine.stdout) as Record<string, unknown>;

      // getAllKeys walks `stats cachedump`, whose coverage depends on memcached's LRU segments: only check that
      // ours answers the same way (a list or false) and lists nothing that was not stored.
      const theirKeys = expected.getAllKeys;
      const myKeys = actual.getAllKeys;
      delete expected.getAllKeys;
      delete actual.getAllKeys;
      if (Array.isArray(theirKeys)) {
        assert.ok(Array.isArray(myKeys), `getAllKeys: ${JSON.stringify(myKeys)}`);
        const stored = ['s', 'f', 'bool', 'a', 'big', 'm3', 'add', 'app', 'n', 'bk', 'exp'];
        for (const key of myKeys as string[]) assert.ok(stored.includes(key), `getAllKeys lists ${key}`);
      } else {
        t.diagnostic(
          `getAllKeys is unsupported by memcached 1.6.18 over ${protocol} too (${JSON.stringify(theirKeys)})`,
        );
      }
      assert.deepEqual(actual, expected);

      // And the results are the right ones, not only the same ones.
      assert.deepEqual(actual.get_array, { value: { x: 1, y: [1, 2, 'z'] }, code: 0 });
      assert.deepEqual(actual.get_float, { value: 3.25, code: 0 });
      assert.deepEqual(actual.get_big_equal, { value: true, code: 0 });
      assert.deepEqual(actual.get_app, { value: '<<mid>>', code: 0 });
      assert.deepEqual(actual.get_after_cas, { value: 'changed', code: 0 });
      assert.deepEqual(actual.getByKey, { value: 'by key', code: 0 });
      assert.deepEqual(actual.version, ['1.6.18']);
      if (protocol === 'binary') assert.deepEqual(actual.increment_initial, { value: 100, code: 0 });
    });
  }

  it('pymemcache Client: the whole API gives the same results as against memcached 1.6.18', async (t) => {
    if (!requirePackage(t, 'python3-pymemcache')) return;
    if (!requireTool(t, MEMCACHED_BIN)) return;
    const script = `${FIXTURES}pymemcache-api.py`;
    const [ours, real] = await Promise.all([ourServer(t), realServer(t)]);
    const [mine, theirs] = await Promise.all([
      run('/usr/bin/python3', [script, String(ours.port)]),
      run('/usr/bin/python3', [script, String(real.port)]),
    ]);
    assert.equal(theirs.code, 0, `against memcached: ${theirs.stdout}${theirs.stderr}`);
    assert.equal(mine.code, 0, `against ours: ${mine.stdout}${mine.stderr}`);
    const actual = JSON.parse(mine.stdout) as Record<string, unknown>;
    assert.deepEqual(actual, JSON.parse(theirs.stdout));
    assert.equal(actual.get_bytes, '\x00\r\nEND\r\n\xff');
    assert.deepEqual(actual.get_many, { m1: 'one', m2: 2, m3: [3] });
    assert.equal(actual.incr_wrap, 1);
    assert.equal(actual.get_big_len, 512000);
    assert.equal(actual.version, '1.6.18');
  });

  it('pymemcache HashClient spreads keys over two of our servers and reads them all back', async (t) => {
    if (!requirePackage(t, 'python3-pymemcache')) return;
    const [a, b] = await Promise.all([ourServer(t), ourServer(t)]);
    const r = await run('/usr/bin/python3', [
      `${FIXTURES}pymemcache-api.py`,
      String(a.port),
      String(a.port),
      String(b.port),
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const result = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(result.hash_set_many, []);
    assert.equal(result.hash_get_many_ok, true);
    const perServer = result.hash_per_server as number[];
    assert.equal(perServer.length, 2);
    assert.equal(perServer[0]! + perServer[1]!, 100);
    assert.ok(perServer[0]! > 0 && perServer[1]! > 0, `keys per server: ${perServer}`);
    assert.equal(result.hash_incr, 42);
    assert.equal(result.hash_delete, true);
    assert.equal(result.hash_get_deleted, null);
  });

  it('Perl Cache::Memcached: set/get/get_multi/incr/decr/add/replace/delete and a 500 KB value', async (t) => {
    if (!requireTool(t, '/usr/bin/perl')) return;
    if (!requirePackage(t, 'libcache-memcached-perl')) return;
    const { port } = await ourServer(t);
    const r = await run('/usr/bin/perl', [`${FIXTURES}cache-memcached.pl`, String(port)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const result = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((line) => line.split('\t')),
    );
    assert.deepEqual(result, {
      set: '1',
      get: 'hello',
      get_miss: 'undef',
      set_ref: '1',
      get_ref: '1,2',
      set_n: '1',
      incr: '15',
      decr: '13',
      incr_missing: 'undef',
      add_existing: '0',
      replace: '1',
      get_multi: 'pl_n=13,pl_s=world',
      delete: '1',
      delete_missing: '0',
      get_deleted: 'undef',
      set_big: '1',
      get_big: 'same',
    });
  });
});
