/**
 * Test helpers for the memcached proof tests: the real memcached 1.6.18 from Debian as a child process, our server
 * in-process, a raw "send bytes, collect the reply" client, and the skip-locally / fail-in-CI rule for Debian tools.
 *
 * @module
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemcachedServer, type MemcachedServerOptions } from '../../src/memcached/server/server.ts';
import { parseMemcachedArgs } from '../../src/memcached/server/settings.ts';

/** Where Debian's `memcached` package puts the daemon. */
export const MEMCACHED_BIN = '/usr/bin/memcached';

/** What {@link requireTool} needs from a `node:test` context. */
export interface SkippableContext {
  skip(message?: string): void;
  diagnostic(message: string): void;
}

/** True when the run is a CI run, where a missing package is a failure rather than a skip. */
export function inCI(): boolean {
  return process.env.CI === 'true';
}

function missing(t: SkippableContext, name: string): false {
  const message = `${name} not installed`;
  if (inCI()) throw new Error(`${message} (CI=true: install the Debian package; tests may not skip in CI)`);
  t.diagnostic(`SKIPPED: ${message}`);
  t.skip(message);
  return false;
}

/**
 * Returns true when the executable (or file) at `path` exists. Otherwise skips the test with a visible
 * `<name> not installed` message, or throws when `CI=true` (a missing package in CI is a failure).
 *
 * @example
 * it('passes memccapable', (t) => {
 *   if (!requireTool(t, '/usr/bin/memccapable')) return;
 *   // …
 * });
 */
export function requireTool(t: SkippableContext, path: string, name = basename(path)): boolean {
  try {
    accessSync(path, path.startsWith('/usr/bin/') ? constants.X_OK : constants.R_OK);
    return true;
  } catch {
    return missing(t, name);
  }
}

/** Like {@link requireTool}, for a Debian package with no executable of its own (`python3-pymemcache`, …). */
export function requirePackage(t: SkippableContext, pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.includes('install ok installed')) return true;
  return missing(t, pkg);
}

/** A running real memcached. */
export interface RealMemcached {
  readonly port: number;
  readonly child: ChildProcess;
  /** Kills the daemon and waits for it to exit (idempotent). */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
// A safety net: never leave a memcached behind, even when a test forgets its cleanup or the runner is killed.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Spawns `/usr/bin/memcached -u root -U 0 -l 127.0.0.1 -p <port> ...flags` on a random port in 20000–32000
 * (memcached cannot be told to pick a free port, and its `-p 0` is not portable), retrying on another port when the
 * daemon exits early (port taken), and resolves once it accepts connections.
 */
export async function startRealMemcached(flags: readonly string[] = []): Promise<RealMemcached> {
  let lastError = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    // Something else (maybe a previous attempt's daemon, or one of our servers) is there already.
    if (await canConnect(port)) continue;
    const child = spawn(MEMCACHED_BIN, ['-u', 'root', '-U', '0', '-l', '127.0.0.1', '-p', String(port), ...flags], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.once('exit', () => children.delete(child));
    child.once('error', (err) => {
      stderr += String(err);
    });
    const deadline = Date.now() + 5000;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      if (await canConnect(port)) {
        up = true;
        break;
      }
      await sleep(10);
    }
    if (up && child.exitCode === null) {
      let stopping: Promise<void> | undefined;
      return {
        port,
        child,
        stop: () => {
          stopping ??= (async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
            await exited;
          })();
          return stopping;
        },
      };
    }
    child.kill('SIGKILL');
    await exited;
    lastError = stderr.trim() || `exit code ${child.exitCode}`;
    // memcached refusing its flags is not a port problem: do not retry.
    if (!/address already in use|failed to listen/i.test(lastError)) break;
  }
  throw new Error(`could not start ${MEMCACHED_BIN} ${flags.join(' ')}: ${lastError}`);
}

/** Our server, started in-process on a free loopback port. */
export interface OurMemcached {
  readonly server: MemcachedServer;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Starts our server on 127.0.0.1, port 0, one thread. `options` is either memcached's command line (parsed exactly
 * as the CLI does, so both servers of a differential test get the same flags) or server options.
 */
export async function startOurServer(options: readonly string[] | MemcachedServerOptions = {}): Promise<OurMemcached> {
  const base = Array.isArray(options) ? parseMemcachedArgs(options) : (options as MemcachedServerOptions);
  const server = new MemcachedServer({ threads: 1, ...base, port: 0, listen: ['127.0.0.1'] });
  const { port } = await server.listen();
  return { server, port, close: () => server.close(1000) };
}

/** Options of {@link exchange}. */
export interface ExchangeOptions {
  /** The reply is complete when nothing arrives for this long after the last write (default 150 ms). */
  quietMs?: number;
  /** Write this many bytes per `socket.write`, letting the server see each piece separately (default: one write). */
  chunkSize?: number;
  /** Give up after this long in total (default 10 s). */
  timeoutMs?: number;
}

/** What came back from a raw exchange. */
export interface ExchangeResult {
  /** Every byte the server sent. */
  reply: Buffer;
  /** True when the server closed (or reset) the connection. */
  closed: boolean;
}

function waitWritten(socket: Socket, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    socket.write(data, () => resolve());
  });
}

/**
 * Opens a connection, sends `bytes` (in pieces of `chunkSize`, each written only after the previous one left and
 * the event loop turned, so an in-process server reads them separately), then collects the reply until the server
 * has been quiet for `quietMs` or closes the connection.
 */
export function exchange(port: number, bytes: Buffer | string, options: ExchangeOptions = {}): Promise<ExchangeResult> {
  const data = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  const quietMs = options.quietMs ?? 150;
  const chunkSize = options.chunkSize ?? data.length;
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const parts: Buffer[] = [];
    let closed = false;
    let writing = true;
    let quiet: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(quiet);
      clearTimeout(overall);
      socket.destroy();
      resolve({ reply: Buffer.concat(parts), closed });
    };
    const arm = () => {
      clearTimeout(quiet);
      if (!writing) quiet = setTimeout(finish, quietMs);
    };
    const overall = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no quiet period within ${options.timeoutMs ?? 10000} ms`));
    }, options.timeoutMs ?? 10000);
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      arm();
    });
    socket.on('end', () => {
      closed = true;
      finish();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
        closed = true;
        finish();
      } else {
        clearTimeout(overall);
        reject(err);
      }
    });
    socket.once('connect', async () => {
      for (let at = 0; at < data.length && !socket.destroyed && !closed; at += chunkSize) {
        await waitWritten(socket, data.subarray(at, at + chunkSize));
        if (chunkSize < data.length) await new Promise<void>((r) => setImmediate(r));
      }
      writing = false;
      arm();
    });
  });
}

/** Sends `bytes` on a fresh connection and resolves with everything the server answered (see {@link exchange}). */
export async function transcript(port: number, bytes: Buffer | string, options: ExchangeOptions = {}): Promise<Buffer> {
  return (await exchange(port, bytes, options)).reply;
}
