/**
 * Test helpers for the memcached proof tests: the real memcached 1.6.18 from Debian as a child process, our server
 * in-process, a raw "send bytes, collect the reply" client, and the skip-locally / fail-in-CI rule for Debian tools.
 *
 * @module
 */

import { spawnSync } from 'node:child_process';
import dc from 'node:diagnostics_channel';
import { accessSync, constants } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemcachedServer, type MemcachedServerOptions } from '../../src/memcached/server/server.ts';
import { parseMemcachedArgs } from '../../src/memcached/server/settings.ts';
import { type Daemon, startDaemon } from './daemon.ts';

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

/** The skip-or-fail rule: skips visibly with the reason, or throws when `CI=true`. */
export function missing(t: SkippableContext, name: string): false {
  const message = `${name} not installed`;
  if (inCI()) throw new Error(`${message} (CI=true: install the Debian package; tests may not skip in CI)`);
  t.diagnostic(`SKIPPED: ${message}`);
  t.skip(message);
  return false;
}

/** True when the executable (or file) at `path` exists. */
export function toolAvailable(path: string): boolean {
  try {
    accessSync(path, path.startsWith('/usr/bin/') ? constants.X_OK : constants.R_OK);
    return true;
  } catch {
    return false;
  }
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
  return toolAvailable(path) || missing(t, name);
}

/** Like {@link requireTool}, for a Debian package with no executable of its own (`python3-pymemcache`, …). */
export function requirePackage(t: SkippableContext, pkg: string): boolean {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax.
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.includes('install ok installed')) return true;
  return missing(t, pkg);
}

/** A running real memcached. */
export type RealMemcached = Daemon;

/**
 * Spawns `/usr/bin/memcached -u root -U 0 -l 127.0.0.1 -p <port> ...flags` on a random port in 20000–32000
 * (memcached cannot be told to pick a free port, and its `-p 0` is not portable) and resolves once it accepts
 * connections.
 */
export async function startRealMemcached(flags: readonly string[] = []): Promise<RealMemcached> {
  if (!toolAvailable(MEMCACHED_BIN)) throw new Error(`${MEMCACHED_BIN} not installed`);
  return startDaemon({
    bin: MEMCACHED_BIN,
    args: (port) => ['-u', 'root', '-U', '0', '-l', '127.0.0.1', '-p', String(port), ...flags],
    retryOn: /address already in use|failed to listen/i,
  });
}

/** Our server, started in-process on a free loopback port. */
export interface OurMemcached {
  readonly server: MemcachedServer;
  readonly port: number;
  /**
   * Closes the server (1 s drain deadline). Rejects if `MemcachedServer.close()` has not resolved 3 s later, after
   * destroying the server-side sockets still open, so a hanging close fails its test instead of hanging the run.
   */
  close(): Promise<void>;
}

/** Server-side sockets of our in-process servers, by local port (seen through `net.server.socket`). */
const serverSockets = new Map<number, Map<Socket, string>>();
dc.subscribe('net.server.socket', (message) => {
  const socket = (message as { socket: Socket }).socket;
  const open = serverSockets.get(socket.localPort ?? -1);
  if (!open) return;
  open.set(socket, `client port ${socket.remotePort}`);
  socket.once('close', () => open.delete(socket));
});

/**
 * Starts our server on 127.0.0.1, port 0, one thread. `options` is either memcached's command line (parsed exactly
 * as the CLI does, so both servers of a differential test get the same flags) or server options.
 */
export async function startOurServer(options: readonly string[] | MemcachedServerOptions = {}): Promise<OurMemcached> {
  const base = Array.isArray(options) ? parseMemcachedArgs(options) : (options as MemcachedServerOptions);
  const server = new MemcachedServer({ threads: 1, ...base, port: 0, listen: ['127.0.0.1'] });
  const { port } = await server.listen();
  const sockets = new Map<Socket, string>();
  serverSockets.set(port, sockets);
  let closing: Promise<void> | undefined;
  const close = async () => {
    const closed = server.close(1000);
    const hung = await Promise.race([closed.then(() => false), sleep(3000).then(() => true)]);
    serverSockets.delete(port);
    if (!hung) return;
    const open = [...sockets].map(([s, label]) => `${label} (readable ${s.readable}, writable ${s.writable})`);
    for (const socket of sockets.keys()) socket.destroy();
    throw new Error(
      `MemcachedServer.close() did not resolve within 3 s; server-side sockets still open: ${open.join(', ')}`,
    );
  };
  return {
    server,
    port,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}

/** Options of {@link exchange}. */
export interface ExchangeOptions {
  /** The reply is complete when nothing arrives for this long after the last write (default 150 ms). */
  quietMs?: number;
  /** Write this many bytes per `socket.write`, letting the server see each piece separately (default: one write). */
  chunkSize?: number;
  /** Stop waiting after this long in total and resolve with what came (default 10 s; see `timedOut`). */
  timeoutMs?: number;
  /** Finish as soon as the reply so far satisfies this (instead of waiting for quiet). */
  until?: (reply: Buffer) => boolean;
  /**
   * Start looking for the quiet period only once the reply satisfies this (e.g. it is as long as the reply expected).
   * An in-process server shares the event loop with the client: on a loaded machine it may not even have accepted
   * the connection when a wall-clock quiet period ends, so differential tests wait for the expected amount first.
   */
  complete?: (reply: Buffer) => boolean;
}

/** What came back from a raw exchange. */
export interface ExchangeResult {
  /** Every byte the server sent. */
  reply: Buffer;
  /** True when the server closed (or reset) the connection. */
  closed: boolean;
  /** True when `timeoutMs` passed before the reply was complete. */
  timedOut: boolean;
}

function waitWritten(socket: Socket, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    socket.write(data, () => resolve());
  });
}

/** Request bytes: a string (latin1), a buffer, or explicit pieces, each written separately. */
export type RequestBytes = string | Buffer | readonly Buffer[];

function piecesOf(bytes: RequestBytes, chunkSize: number | undefined): Buffer[] {
  if (Array.isArray(bytes)) return [...(bytes as readonly Buffer[])];
  const data = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : (bytes as Buffer);
  if (chunkSize === undefined || chunkSize >= data.length) return [data];
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += chunkSize) out.push(data.subarray(at, at + chunkSize));
  return out;
}

/**
 * Opens a connection, sends `bytes` (as one write, in pieces of `chunkSize`, or as the given pieces; each piece is
 * written only after the previous one left and the event loop turned, so an in-process server reads them
 * separately), then collects the reply until the server has been quiet for `quietMs` or closes the connection.
 */
export function exchange(port: number, bytes: RequestBytes, options: ExchangeOptions = {}): Promise<ExchangeResult> {
  const pieces = piecesOf(bytes, options.chunkSize);
  const quietMs = options.quietMs ?? 150;
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const parts: Buffer[] = [];
    let received = 0;
    let closed = false;
    let writing = true;
    let done = false;
    let timedOut = false;
    let quiet: NodeJS.Timeout | undefined;
    let reply: Buffer = Buffer.alloc(0);
    let complete = options.complete === undefined;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(overall);
      socket.destroy();
      resolve({ reply: Buffer.concat(parts), closed, timedOut });
    };
    // The timer may fire while an in-process server still has our bytes queued (a busy event loop runs timers
    // before I/O; accepting, reading, answering and our read take a loop turn each): let the loop turn a few
    // times, and only call it quiet if nothing more arrived meanwhile.
    const onQuiet = async () => {
      const seen = received;
      for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
      if (received === seen) finish();
      else arm();
    };
    const arm = () => {
      clearTimeout(quiet);
      if (!writing && !done && complete) quiet = setTimeout(onQuiet, quietMs);
    };
    const overall = setTimeout(() => {
      timedOut = true;
      finish();
    }, options.timeoutMs ?? 10000);
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      received += d.length;
      if (options.until !== undefined || options.complete !== undefined) reply = Buffer.concat(parts);
      if (options.until?.(reply)) return finish();
      if (!complete && options.complete?.(reply)) complete = true;
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
      } else if (!done) {
        done = true;
        clearTimeout(overall);
        clearTimeout(quiet);
        reject(err);
      }
    });
    socket.once('connect', async () => {
      for (const piece of pieces) {
        if (socket.destroyed || closed) break;
        await waitWritten(socket, piece);
        if (pieces.length > 1) await new Promise<void>((r) => setImmediate(r));
      }
      writing = false;
      arm();
    });
  });
}

/** Sends `bytes` on a fresh connection and resolves with everything the server answered (see {@link exchange}). */
export async function transcript(port: number, bytes: RequestBytes, options: ExchangeOptions = {}): Promise<Buffer> {
  return (await exchange(port, bytes, options)).reply;
}
