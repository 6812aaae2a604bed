/**
 * Compatibility proof of the client's key distribution: for 10,000 keys, {@link createDistribution} must pick the
 * same server as the real clients from Debian's packages, so a Node app shares keys with a PHP or Perl fleet.
 *
 * - php-memcached (libmemcached 1.1) with `OPT_LIBKETAMA_COMPATIBLE`: `Memcached::getServerByKey()` needs no running
 *   server, so it is asked directly (3 servers, weights 1,1,1 and 1,2,3, on the default port and on other ports, and
 *   29,29,2, whose point counts only come out right in C `float` arithmetic); plus a live pass where PHP `set`s every
 *   key into three of our servers and we read back which one holds it, including a fourth, dead server that
 *   libmemcached auto-ejects (the continuum is rebuilt without it, so some keys of live servers move too).
 * - Cache::Memcached (Perl) has no "which server" call, so it `set`s every key into three of our servers and we read
 *   back which one holds it (weights 1,1,1 and 1,2,3, and a dead fourth server to exercise its rehash loop).
 * - libmemcached's modula with `HASH_MD5`, `HASH_CRC` and `HASH_DEFAULT`, through `getServerByKey()`.
 *
 * Each client runs once, in one process, for all its cases (keys passed in a file, results as JSON). A missing
 * package skips the test visibly; with `CI=true` it fails instead.
 *
 * @module
 */

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  createDistribution,
  type Distribution,
  type DistributionMode,
  type DistributionOptions,
  type DistributionServer,
} from '../src/memcached/client/hash-ring.ts';
import { MemcachedServer } from '../src/memcached/server/server.ts';
import { missing } from './helpers/memcached-real.ts';

const PHP = '/usr/bin/php';
const PERL = '/usr/bin/perl';
const KEY_COUNT = 10_000;

function phpMemcachedInstalled(): boolean {
  return spawnSync(PHP, ['-r', 'exit(extension_loaded("memcached") ? 0 : 1);']).status === 0;
}

function perlCacheMemcachedInstalled(): boolean {
  return spawnSync(PERL, ['-MCache::Memcached', '-MJSON::PP', '-e', '1']).status === 0;
}

/**
 * 10,000 distinct valid memcached keys, the same on every run: printable ASCII of 1..60 characters, with every
 * tenth key carrying multi-byte UTF-8 (hashed as bytes by every client) and some plain `user:<n>` keys.
 */
function makeKeys(): string[] {
  let state = 0x2545f491;
  const next = (n: number): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  const keys = new Set<string>();
  const extra = ['é', 'ü', '日本', 'ß', '€'];
  for (let i = 0; keys.size < KEY_COUNT; i++) {
    if (i % 7 === 0) {
      keys.add(`user:${i}`);
      continue;
    }
    let k = '';
    const len = 1 + next(60);
    for (let c = 0; c < len; c++) k += String.fromCharCode(0x21 + next(0x7e - 0x21 + 1));
    if (i % 10 === 3) k += extra[next(extra.length)];
    keys.add(k);
  }
  return [...keys];
}

/** A port nothing listens on (bound once, then released): connecting to it is refused at once. */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const address = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Runs a script file and parses its JSON stdout; async, so our in-process servers keep serving meanwhile. */
function runJson(cmd: string, args: string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} failed: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

// php-memcached: one Memcached object per run; options are Memcached:: constant names (values may be too).
const PHP_SCRIPT = `<?php
$job = json_decode(file_get_contents($argv[1]), true);
$keys = file($job['keys'], FILE_IGNORE_NEW_LINES);
$out = [];
foreach ($job['runs'] as $run) {
  $m = new Memcached();
  foreach ($run['options'] as $opt => $val) {
    $m->setOption(constant('Memcached::' . $opt), is_string($val) ? constant('Memcached::' . $val) : $val);
  }
  $index = [];
  foreach ($run['servers'] as $i => $s) {
    $m->addServer($s[0], $s[1], $s[2]);
    $index[$s[0] . ':' . ($s[1] === 0 ? 11211 : $s[1])] = $i;
  }
  // Make libmemcached eject the dead server before the measured sets: its first failed request only marks it for
  // timeout, the next one (OPT_SERVER_FAILURE_LIMIT 1) ejects it and rebuilds the continuum. Sets in between would
  // still follow the old continuum.
  if (isset($run['eject'])) {
    for ($n = 0; $n < 1000; $n++) {
      $s = $m->getServerByKey('eject:' . $n);
      if ($s['host'] === $run['eject'][0] && $s['port'] === $run['eject'][1]) $m->set('eject:' . $n, '1');
    }
  }
  $stored = [];
  if ($run['set']) {
    foreach ($keys as $k) $stored[] = $m->set($run['prefix'] . $k, '1');
  }
  $byKey = [];
  foreach ($keys as $k) {
    $s = $m->getServerByKey($run['prefix'] . $k);
    $byKey[] = $s === false ? -1 : $index[$s['host'] . ':' . $s['port']];
  }
  $out[] = ['byKey' => $byKey, 'stored' => $stored];
}
echo json_encode($out);
`;

// Cache::Memcached: servers as "host:port" or ["host:port", weight]; keys are read as raw bytes.
const PERL_SCRIPT = `use strict; use warnings;
use Cache::Memcached; use JSON::PP;
my $job = do { local $/; open my $f, '<:raw', $ARGV[0] or die "$!"; decode_json(<$f>) };
open my $kf, '<:raw', $job->{keys} or die "$!";
my @keys = <$kf>; chomp @keys;
my @out;
for my $run (@{$job->{runs}}) {
  my @servers = map { defined $_->[1] ? [$_->[0], $_->[1]] : $_->[0] } @{$run->{servers}};
  my $m = Cache::Memcached->new({ servers => \\@servers });
  my @stored = map { $m->set($run->{prefix} . $_, '1') ? JSON::PP::true : JSON::PP::false } @keys;
  push @out, { stored => \\@stored };
  $m->disconnect_all;
}
print encode_json(\\@out);
`;

/** One client run: the server list in client terms, and what we build from it. */
interface Run {
  name: string;
  servers: DistributionServer[];
  mode: DistributionMode;
  options?: DistributionOptions;
  /** Indexes of servers that are down (not listening). */
  dead?: number[];
  /** php-memcached options (`Memcached::` constant names). */
  php?: Record<string, string | number | boolean>;
  /** Store every key (prefixed) in the live servers, then read back which server holds it. */
  set: boolean;
  prefix: string;
}

interface PhpResult {
  byKey: number[];
  stored: boolean[];
}

interface PerlResult {
  stored: boolean[];
}

/** The first few keys where `got` differs from `want`, for the assertion message. */
function mismatches(keys: string[], got: readonly number[], want: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < keys.length && out.length < 5; i++) {
    if (got[i] !== want[i]) out.push(`${JSON.stringify(keys[i])}: client ${got[i]}, ours ${want[i]}`);
  }
  return out.join('; ');
}

function countDiff(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

function ours(run: Run, keys: string[]): number[] {
  const d: Distribution = createDistribution(run.servers, run.mode, run.options);
  const dead = new Set(run.dead ?? []);
  return keys.map((k) => (dead.size === 0 ? d.serverFor(k) : d.serverForWithout(k, (i) => dead.has(i))));
}

describe('key distribution matches the real clients (10,000 keys)', () => {
  const keys = makeKeys();
  const servers: MemcachedServer[] = [];
  const ports: number[] = [];
  let dir = '';
  let keysFile = '';
  let down = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hash-compat-'));
    keysFile = join(dir, 'keys.txt');
    writeFileSync(keysFile, `${keys.join('\n')}\n`);
    for (let i = 0; i < 3; i++) {
      const server = new MemcachedServer({ port: 0, listen: ['127.0.0.1'], threads: 1 });
      const { port } = await server.listen();
      servers.push(server);
      ports.push(port);
    }
    down = await deadPort();
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  /** For every key, the index of the one live server holding `prefix + key`, or -1 (asserts at most one holds it). */
  function holders(prefix: string): number[] {
    return keys.map((k) => {
      const bytes = Buffer.from(prefix + k, 'utf8');
      let holder = -1;
      servers.forEach((server, index) => {
        const store = server.store!;
        store.lock();
        try {
          if (store.find(bytes, 0, bytes.length, false) !== 0) {
            assert.equal(holder, -1, `${JSON.stringify(k)} is stored on two servers`);
            holder = index;
          }
        } finally {
          store.unlock();
        }
      });
      return holder;
    });
  }

  const live = (weights?: number[]): DistributionServer[] =>
    ports.map((port, i) => (weights ? { host: '127.0.0.1', port, weight: weights[i]! } : { host: '127.0.0.1', port }));

  it('php-memcached (OPT_LIBKETAMA_COMPATIBLE, modula) picks the same server as ours', async (t) => {
    if (!phpMemcachedInstalled()) {
      missing(t, 'php-memcached');
      return;
    }
    const ketama = { OPT_LIBKETAMA_COMPATIBLE: true };
    const defaultPort = [1, 2, 3].map((n) => ({ host: `10.0.1.${n}`, port: 11211 }));
    const runs: Run[] = [
      { name: 'ketama, 3 servers', servers: live(), mode: 'ketama', php: ketama, set: true, prefix: 'pk1:' },
      {
        name: 'ketama, weights 1,2,3',
        servers: live([1, 2, 3]),
        mode: 'ketama',
        php: ketama,
        set: true,
        prefix: 'pk2:',
      },
      {
        // Weight 5 changes the average weight when ejected, so the rebuild gives the survivors other point counts:
        // ~6% of the keys on live servers move too, which "skip to the next live point" would not do.
        name: 'ketama, weights 1,2,3 + a dead server (weight 5) auto-ejected',
        servers: [...live([1, 2, 3]), { host: '127.0.0.1', port: down, weight: 5 }],
        dead: [3],
        mode: 'ketama',
        php: {
          ...ketama,
          OPT_REMOVE_FAILED_SERVERS: true,
          OPT_SERVER_FAILURE_LIMIT: 1,
          OPT_RETRY_TIMEOUT: 600,
          OPT_DEAD_TIMEOUT: 600,
        },
        set: true,
        prefix: 'pk3:',
      },
      {
        name: 'ketama, default port (no ":port")',
        servers: defaultPort,
        mode: 'ketama',
        php: ketama,
        set: false,
        prefix: '',
      },
      {
        name: 'ketama, default port, weights 5,1,2',
        servers: defaultPort.map((s, i) => ({ ...s, weight: [5, 1, 2][i]! })),
        mode: 'ketama',
        php: ketama,
        set: false,
        prefix: '',
      },
      {
        // 29/60 * 40 * 3 is 58 in real arithmetic but 57.99999 in C float: libmemcached gives 57 digests.
        name: 'ketama, weights 29,29,2 (float rounding of the point count)',
        servers: defaultPort.map((s, i) => ({ ...s, weight: [29, 29, 2][i]! })),
        mode: 'ketama',
        php: ketama,
        set: false,
        prefix: '',
      },
      ...(['md5', 'crc32', 'one-at-a-time'] as const).map(
        (hash): Run => ({
          name: `modulo, ${hash}`,
          servers: live(),
          mode: 'modulo',
          options: { hash },
          php: {
            OPT_DISTRIBUTION: 'DISTRIBUTION_MODULA',
            OPT_HASH: hash === 'md5' ? 'HASH_MD5' : hash === 'crc32' ? 'HASH_CRC' : 'HASH_DEFAULT',
          },
          set: false,
          prefix: '',
        }),
      ),
    ];
    const job = join(dir, 'php-job.json');
    const script = join(dir, 'compat.php');
    writeFileSync(script, PHP_SCRIPT);
    writeFileSync(
      job,
      JSON.stringify({
        keys: keysFile,
        runs: runs.map((r) => ({
          servers: r.servers.map((s) => [s.host, s.port, s.weight ?? 0]),
          options: r.php,
          set: r.set,
          prefix: r.prefix,
          ...(r.dead ? { eject: [r.servers[r.dead[0]!]!.host, r.servers[r.dead[0]!]!.port] } : {}),
        })),
      }),
    );
    const results = (await runJson(PHP, [script, job])) as PhpResult[];
    runs.forEach((run, i) => {
      const result = results[i]!;
      const prefixed = keys.map((k) => run.prefix + k);
      const want = ours(run, prefixed);
      assert.equal(want.length, KEY_COUNT);
      assert.equal(
        countDiff(result.byKey, want),
        0,
        `${run.name}: getServerByKey differs: ${mismatches(keys, result.byKey, want)}`,
      );
      if (run.dead) {
        // The case only proves "rebuilt without the dead server" if keys of live servers moved as well.
        const full = createDistribution(run.servers, run.mode, run.options);
        const movedFromLive = prefixed.filter((k, n) => {
          const owner = full.serverFor(k);
          return !run.dead?.includes(owner) && owner !== want[n];
        }).length;
        assert.ok(movedFromLive > 0, `${run.name}: no live server's key moved`);
        t.diagnostic(`${run.name}: ${movedFromLive} keys of live servers moved with the rebuilt continuum`);
      }
      if (!run.set) return;
      const held = holders(run.prefix);
      // Only keys whose set succeeded are anywhere: php-memcached refuses some UTF-8 keys in text mode (its ASCII
      // key check calls isspace() on a signed char); every ASCII key must have been stored.
      const failed = result.stored.filter((ok) => !ok).length;
      const failedAscii = keys.filter((k, n) => !result.stored[n] && /^[\x21-\x7e]*$/.test(k));
      assert.deepEqual(failedAscii, [], `${run.name}: sets failed`);
      assert.ok(failed < KEY_COUNT / 10, `${run.name}: ${failed} sets failed`);
      const storedWant = want.map((w, k) => (result.stored[k] ? w : -1));
      assert.equal(
        countDiff(held, storedWant),
        0,
        `${run.name}: stored on a different server: ${mismatches(keys, held, storedWant)}`,
      );
      t.diagnostic(`${run.name}: ${KEY_COUNT - failed} keys stored where ours puts them`);
    });
  });

  it('Cache::Memcached (Perl) stores every key where ours puts it', async (t) => {
    if (!perlCacheMemcachedInstalled()) {
      missing(t, 'Cache::Memcached (libcache-memcached-perl)');
      return;
    }
    const runs: Run[] = [
      { name: 'crc32, 3 servers', servers: live(), mode: 'crc32', set: true, prefix: 'pl1:' },
      { name: 'crc32, weights 1,2,3', servers: live([1, 2, 3]), mode: 'crc32', set: true, prefix: 'pl2:' },
      {
        name: 'crc32, weights 1,2,3 + a dead server (weight 5), rehashed',
        servers: [...live([1, 2, 3]), { host: '127.0.0.1', port: down, weight: 5 }],
        dead: [3],
        mode: 'crc32',
        set: true,
        prefix: 'pl3:',
      },
    ];
    const job = join(dir, 'perl-job.json');
    const script = join(dir, 'compat.pl');
    writeFileSync(script, PERL_SCRIPT);
    writeFileSync(
      job,
      JSON.stringify({
        keys: keysFile,
        runs: runs.map((r) => ({
          servers: r.servers.map((s) => [`${s.host}:${s.port}`, s.weight ?? null]),
          prefix: r.prefix,
        })),
      }),
    );
    const results = (await runJson(PERL, [script, job])) as PerlResult[];
    runs.forEach((run, i) => {
      const result = results[i]!;
      const want = ours(
        run,
        keys.map((k) => run.prefix + k),
      );
      const held = holders(run.prefix);
      const failed = result.stored.filter((ok) => !ok).length;
      assert.equal(failed, want.filter((w) => w === -1).length, `${run.name}: failed sets`);
      assert.equal(countDiff(held, want), 0, `${run.name}: stored elsewhere: ${mismatches(keys, held, want)}`);
      t.diagnostic(`${run.name}: ${KEY_COUNT - failed} keys stored where ours puts them`);
    });
  });
});
