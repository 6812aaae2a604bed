/**
 * `sharenothing gearmand`: gearmand's flags, refusals with reasons, pid file, log file, metrics, signals.
 */

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseGearmandArgs } from '../src/gearman/server/settings.ts';
import { runCli } from './helpers/cli-process.ts';

const dir = mkdtempSync(join(tmpdir(), 'sharenothing-gearmand-cli-'));

/** `sharenothing gearmand ...args` (killed when the file's tests end). */
const run = (args: string[]) => runCli(['gearmand', ...args]);

/** Sends an admin line; resolves with the reply once it ends with `until`. */
function ask(port: number, line: string, until = /\n$/): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(line));
    let data = '';
    s.on('data', (d) => {
      data += d;
      if (until.test(data)) {
        s.end();
        resolve(data);
      }
    });
    s.on('error', reject);
  });
}

async function waitUp(port: number): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const reply = await ask(port, 'version\n').catch(() => '');
    if (reply) return reply;
    await sleep(50);
  }
  throw new Error('server did not come up');
}

const randomPort = () => 20000 + Math.floor(Math.random() * 12000);

describe('sharenothing gearmand', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--help lists gearmand flags; -V prints the version; --check-args validates and exits', async () => {
    const h = run(['--help']);
    assert.equal(await h.exited, 0);
    assert.match(h.out(), /-j, --job-retries/);
    assert.match(h.out(), /-w, --worker-wakeup/);
    const v = run(['-V']);
    assert.equal(await v.exited, 0);
    assert.match(v.out(), /^gearmand 1\.1\.20 /);
    assert.equal(await run(['--check-args', '-p', '1234', '-j', '3']).exited, 0);
  });

  it('refuses what it does not do, with exit code 64 and the reason', async () => {
    const r = run(['-t', '4']);
    assert.equal(await r.exited, 64);
    assert.match(r.err(), /only -t 0 or -t 1 is supported\. Job routing runs in one thread by design/);
    const cases: Array<[string[], RegExp]> = [
      [['-q', 'libsqlite3'], /missing required --libsqlite3-db=<dbfile> argument/],
      [['-q', 'MySQL'], /-q MySQL needs --mysql-db/],
      [['-q', 'redis'], /--queue-type redis: not supported/],
      [['--redis-server', 'x'], /the redis queue is not supported/],
      [['--store-queue-on-shutdown'], /--store-queue-on-shutdown is not supported: every background job is committed/],
      [['--mysql-port', '0'], /--mysql-port: 0 is out of range/],
      [['-q', 'none'], /Unknown queue none/],
      [['-d'], /daemon mode \(-d\) is not supported/],
      [['-f', '1024'], /ulimit -n/],
      [['-v'], /Option -v has been deprecated, please use --verbose/],
      [['--verbose', 'LOUD'], /Invalid value for --verbose supplied/],
      [['--frobnicate'], /unrecognised option '--frobnicate'/],
      [['-x'], /unrecognised option '-x'/],
      [['-p'], /the required argument for option '--port' is missing/],
      [['-p', 'x'], /--port: 'x' is not a number/],
      [['-p', '70000'], /out of range/],
      [['--exceptions=yes'], /does not take any arguments/],
      [['-Rx'], /does not take any arguments/],
      [['--job-handle-prefix', 'x'.repeat(64)], /not enough to store job handle prefix/],
      [['--ssl'], /TLS/],
      [['--keepalive-count', '3'], /--keepalive-count is not supported/],
      [['-r', 'http'], /protocol modules/],
      [['--admin', 'nowhere'], /--admin requires host:port/],
      [['stray'], /unexpected argument 'stray'/],
    ];
    for (const [args, message] of cases) {
      assert.throws(() => parseGearmandArgs(args), message, args.join(' '));
    }
  });

  it('parses long, short, attached and --opt=value forms, and --config-file', () => {
    const config = join(dir, 'gearmand.conf');
    writeFileSync(config, '--job-retries 5\n-R\n--worker-wakeup=2\n');
    const { settings } = parseGearmandArgs([
      '-p4731',
      '--listen=127.0.0.1',
      '-L',
      '::1',
      '-t',
      '0',
      '--exceptions',
      '--job-handle-prefix',
      'H:box',
      '--hashtable-buckets',
      '17',
      '--keepalive',
      '--keepalive-idle',
      '30',
      '--verbose',
      'INFO',
      '-q',
      'mysql',
      '--libsqlite3-db=q.db',
      '--libsqlite3-table',
      'qt',
      '--mysql-host',
      'db.local',
      '--mysql-port=3307',
      '--mysql-user',
      'gm',
      '--mysql-password',
      'pw',
      '--mysql-db',
      'gdb',
      '--mysql-table',
      'jobs',
      '--libpq-conninfo',
      'host=x dbname=y',
      '--libpq-table',
      'pq',
      '--config-file',
      config,
      '--max-packet-size',
      '4096',
      '--enable-shutdown',
      '--admin',
      ':9000',
    ]);
    assert.equal(settings.port, 4731);
    assert.equal(settings.queueType, 'MySQL');
    assert.deepEqual(settings.queue, {
      libsqlite3Db: 'q.db',
      libsqlite3Table: 'qt',
      mysqlHost: 'db.local',
      mysqlPort: 3307,
      mysqlUser: 'gm',
      mysqlPassword: 'pw',
      mysqlDb: 'gdb',
      mysqlTable: 'jobs',
      libpqConninfo: 'host=x dbname=y',
      libpqTable: 'pq',
    });
    assert.deepEqual(settings.listen, ['127.0.0.1', '::1']);
    assert.equal(settings.threads, 0);
    assert.equal(settings.exceptions, true);
    assert.equal(settings.jobHandlePrefix, 'H:box');
    assert.equal(settings.hashtableBuckets, 17);
    assert.equal(settings.keepaliveIdle, 30);
    assert.equal(settings.verbose, 'INFO');
    assert.equal(settings.jobRetries, 5);
    assert.equal(settings.roundRobin, true);
    assert.equal(settings.workerWakeup, 2);
    assert.equal(settings.maxPacketSize, 4096);
    assert.equal(settings.enableShutdown, true);
    assert.deepEqual(settings.admin, { host: '127.0.0.1', port: 9000 });
    assert.throws(() => parseGearmandArgs(['--config-file', join(dir, 'missing.conf')]), /Could not open/);
  });

  it('serves on the given port, writes and removes its pid file, logs to -l, stops on SIGTERM', async () => {
    const port = randomPort();
    const pidFile = join(dir, 'gearmand.pid');
    const logFile = join(dir, 'gearmand.log');
    const r = run(['-p', String(port), '-L', '127.0.0.1', '-P', pidFile, '-l', logFile, '--verbose', 'INFO']);
    assert.equal(await waitUp(port), 'OK 1.1.20\n');
    assert.equal(readFileSync(pidFile, 'utf8'), `${r.child.pid}\n`);
    assert.equal(await ask(port, 'getpid\n'), `OK ${r.child.pid}\n`);
    assert.equal(await ask(port, 'verbose\n'), 'OK INFO\n');
    r.child.kill('SIGTERM');
    assert.equal(await r.exited, 0);
    assert.equal(existsSync(pidFile), false);
    const log = readFileSync(logFile, 'utf8');
    assert.match(log, /"msg":"listening"/);
    assert.match(log, /"msg":"shut down"/);
  });

  it('--enable-shutdown: the admin shutdown command stops the process', async () => {
    const port = randomPort();
    const r = run(['-p', String(port), '-L', '127.0.0.1', '--enable-shutdown', '-l', 'none']);
    await waitUp(port);
    assert.equal(await ask(port, 'shutdown\r\n'), 'OK\r\n');
    assert.equal(await r.exited, 0);
  });

  it('--admin serves Prometheus metrics of the job server', async () => {
    const port = randomPort();
    const adminPort = port + 1;
    const r = run(['-p', String(port), '-L', '127.0.0.1', '--admin', `127.0.0.1:${adminPort}`]);
    await waitUp(port);
    await ask(port, 'create function metered\r\n');
    let text = '';
    for (let i = 0; i < 50 && !text; i++) {
      text = await fetch(`http://127.0.0.1:${adminPort}/metrics`)
        .then((res) => res.text())
        .catch(() => '');
      if (!text) await sleep(100);
    }
    assert.match(text, /^gearman_functions 1$/m);
    assert.match(text, /^gearman_jobs_submitted_total 0$/m);
    assert.match(text, /^gearman_connections \d+$/m);
    r.child.kill('SIGTERM');
    assert.equal(await r.exited, 0);
  });

  it('exits 71 when the port is taken', async () => {
    const port = randomPort();
    const first = run(['-p', String(port), '-L', '127.0.0.1']);
    await waitUp(port);
    const second = run(['-p', String(port), '-L', '127.0.0.1']);
    assert.equal(await second.exited, 71);
    assert.match(second.err(), /failed to listen/);
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
  });
});
