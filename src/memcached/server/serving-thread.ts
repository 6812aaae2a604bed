/**
 * What each serving thread runs: its listeners (one per `-l` address, all with `reusePort`), its connections, and
 * its handle on the shared store. The main thread runs one of these; `-t N` adds N-1 worker threads.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { createLogger, type Logger } from '../../net/logger.ts';
import { closeServer, listenTcp } from '../../net/reuse-port.ts';
import { ItemStore, type StoreShared } from '../store/item-store.ts';
import { resetThreadStats, TS, threadStatsRow } from '../store/thread-stats.ts';
import { Connection, type ConnectionHost } from './connection.ts';
import type { MemcachedSettings } from './settings.ts';
import { generalStats, itemsStats, type StatsSource, settingsStats, sizesStats, slabsStats } from './stats-report.ts';

/** The version we report: memcached's, so clients that parse it (npm `memcached`, libmemcached) are content. */
export const MEMCACHED_VERSION = '1.6.18';

/** Shared, process-wide connection counters (Int32 slots, updated with Atomics). */
export const CONN = { CURR: 0, TOTAL: 1, REJECTED: 2, VERBOSITY: 3, LISTEN_DISABLED: 4 } as const;

/** Everything a serving thread needs; plain data so it can be posted to a worker. */
export interface ServingThreadInit {
  settings: MemcachedSettings;
  shared: StoreShared;
  threadStats: SharedArrayBuffer;
  connCounters: SharedArrayBuffer;
  index: number;
  /** Port to bind (the real one once the first thread has bound port 0). */
  port: number;
}

/** One thread's listeners and connections. */
export class ServingThread implements ConnectionHost {
  readonly settings: MemcachedSettings;
  readonly store: ItemStore;
  readonly connections = new Set<Connection>();
  readonly version = MEMCACHED_VERSION;
  /** memcached's `-v`/`-vv` output: NDJSON on stderr, gated by {@link verbosity} (the `verbosity` command changes it). */
  readonly log: Logger;
  #nextConnId = 0;
  readonly #init: ServingThreadInit;
  readonly #counters: Int32Array;
  readonly #servers: Server[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #passwords: Map<string, string>;
  #timer: NodeJS.Timeout | undefined;
  /** Called by `shutdown` (the owner decides how to stop the process). */
  onShutdown: (graceful: boolean) => void = () => {};

  constructor(init: ServingThreadInit) {
    this.#init = init;
    this.settings = init.settings;
    this.store = new ItemStore(init.shared, threadStatsRow(init.threadStats, init.index));
    this.#counters = new Int32Array(init.connCounters);
    this.#passwords = loadPasswords(init.settings);
    this.log = createLogger({
      name: 'memcached',
      level: 'debug',
      stream: process.stderr,
      base: { thread: init.index },
    });
  }

  get verbosity(): number {
    return Atomics.load(this.#counters, CONN.VERBOSITY);
  }

  set verbosity(level: number) {
    Atomics.store(this.#counters, CONN.VERBOSITY, level);
  }

  /** Binds every listen address; returns the first bound address. */
  async listen(): Promise<AddressInfo> {
    const hosts = this.settings.listen.length ? this.settings.listen : [undefined];
    let first: AddressInfo | undefined;
    let port = this.#init.port;
    for (const host of hosts) {
      const server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
      server.on('error', () => {});
      const address = await listenTcp(server, {
        host,
        port,
        reusePort: this.settings.threads > 1,
        backlog: this.settings.backlog,
      });
      // With -p 0 and several -l addresses, every address gets the port the first one drew.
      if (port === 0) port = address.port;
      first ??= address;
      this.#servers.push(server);
    }
    this.#timer = setInterval(() => this.#everySecond(), 1000);
    this.#timer.unref();
    return first!;
  }

  #accept(socket: Socket): void {
    const counters = this.#counters;
    const curr = Atomics.add(counters, CONN.CURR, 1);
    if (curr >= this.settings.maxConns) {
      // memcached's maxconns_fast: tell the client and hang up.
      Atomics.sub(counters, CONN.CURR, 1);
      Atomics.add(counters, CONN.REJECTED, 1);
      if (this.verbosity >= 1) this.log.warn('Too many open connections', { remote: socket.remoteAddress });
      socket.on('error', () => {});
      socket.end('ERROR Too many open connections\r\n', () => socket.destroy());
      socket.setTimeout(1000, () => socket.destroy());
      return;
    }
    Atomics.add(counters, CONN.TOTAL, 1);
    this.#sockets.add(socket);
    const conn = new Connection(socket, this, this.store.stats, ++this.#nextConnId);
    this.connections.add(conn);
    if (this.verbosity >= 2) {
      this.log.debug('new client connection', {
        conn: conn.id,
        remote: `${socket.remoteAddress}:${socket.remotePort}`,
      });
    }
    socket.on('close', () => {
      if (this.verbosity >= 2) this.log.debug('connection closed', { conn: conn.id });
      Atomics.sub(counters, CONN.CURR, 1);
      this.#sockets.delete(socket);
      this.connections.delete(conn);
    });
  }

  #everySecond(): void {
    this.store.tick();
    const idle = this.settings.idleTimeout;
    if (idle > 0) {
      const limit = Date.now() - idle * 1000;
      for (const conn of this.connections) {
        if (conn.lastCommandAt >= limit) continue;
        this.store.stats[TS.idle_kicks]!++;
        conn.socket.destroy();
      }
    }
  }

  /** The {@link StatsSource} of the whole process, as seen from this thread. */
  statsSource(): StatsSource {
    const c = this.#counters;
    return {
      settings: this.settings,
      store: this.store,
      threadStats: this.#init.threadStats,
      version: this.version,
      verbosity: this.verbosity,
      currConnections: Atomics.load(c, CONN.CURR),
      totalConnections: Atomics.load(c, CONN.TOTAL),
      rejectedConnections: Atomics.load(c, CONN.REJECTED),
      accepting: Atomics.load(c, CONN.CURR) < this.settings.maxConns,
      listenDisabledNum: Atomics.load(c, CONN.LISTEN_DISABLED),
    };
  }

  statsGroup(group: string, conn: Connection | undefined): Array<[string, string]> | undefined {
    const src = this.statsSource();
    const store = this.store;
    store.lock();
    try {
      switch (group) {
        case '':
          return generalStats(src);
        case 'settings':
          return settingsStats(src);
        case 'items':
          return itemsStats(src);
        case 'slabs':
          return slabsStats(src);
        case 'sizes':
          return sizesStats(src);
        case 'conns':
          return this.#connsStats(conn);
        default:
          return undefined;
      }
    } finally {
      store.unlock();
    }
  }

  #connsStats(self: Connection | undefined): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    let id = 0;
    const now = Date.now();
    for (const server of this.#servers) {
      const a = server.address() as AddressInfo | null;
      if (!a) continue;
      out.push([`${id}:addr`, `tcp:${a.address}:${a.port}`], [`${id}:state`, 'conn_listening']);
      out.push([`${id}:secs_since_last_cmd`, '0']);
      id++;
    }
    for (const conn of this.connections) {
      const s = conn.socket;
      out.push([`${id}:addr`, `tcp:${s.remoteAddress}:${s.remotePort}`]);
      out.push([`${id}:listen_addr`, `tcp:${s.localAddress}:${s.localPort}`]);
      out.push([`${id}:state`, conn === self ? 'conn_parse_cmd' : 'conn_waiting']);
      out.push([`${id}:secs_since_last_cmd`, String(Math.floor((now - conn.lastCommandAt) / 1000))]);
      id++;
    }
    return out;
  }

  resetStats(): void {
    resetThreadStats(this.#init.threadStats);
    Atomics.store(this.#counters, CONN.TOTAL, 0);
    Atomics.store(this.#counters, CONN.REJECTED, 0);
    this.store.lock();
    try {
      this.store.resetStats();
    } finally {
      this.store.unlock();
    }
  }

  shutdown(graceful: boolean): void {
    this.onShutdown(graceful);
  }

  checkPassword(user: string, password: string): boolean {
    const expected = this.#passwords.get(user);
    return expected !== undefined && expected === password;
  }

  /** Stops accepting, lets connections finish what they sent, destroys what is left after the deadline. */
  async close(deadlineMs = 5000): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await Promise.all(
      this.#servers.map((server) =>
        closeServer(server, {
          connections: this.#sockets,
          deadlineMs,
          onDrain: (socket) => socket.end(),
        }),
      ),
    );
    for (const s of this.#sockets) s.destroy();
  }
}

/** Reads the SASL password file: `user:password` per line (as memcached's `MEMCACHED_SASL_PWDB`). */
function loadPasswords(settings: MemcachedSettings): Map<string, string> {
  const map = new Map<string, string>();
  if (!settings.sasl || !settings.saslPasswordFile) return map;
  for (const line of readFileSync(settings.saslPasswordFile, 'utf8').split('\n')) {
    const trimmed = line.replace(/\r$/, '');
    const colon = trimmed.indexOf(':');
    if (colon <= 0) continue;
    map.set(trimmed.slice(0, colon), trimmed.slice(colon + 1));
  }
  return map;
}
