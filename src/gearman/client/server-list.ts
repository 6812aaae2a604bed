/**
 * The job servers of a client or worker: address parsing, which server a submission goes to, and which servers are
 * marked dead.
 *
 * Placement follows Perl's `Gearman::Client` (`Gearman::Task::hash`, `Gearman::Taskset::_get_hashed_sock`), the only
 * widely used client that hashes: a job with a unique id goes to server `((crc32(unique) >> 16) & 0x7fff) % n`
 * (with unique `-` the payload is hashed, as the server keys such jobs on the payload), and when that server is
 * dead to the next one in the list, wrapping around. So every client with the same server list — ours and Perl's —
 * sends the same unique id to the same server, where the server coalesces it. Jobs without a unique id go round
 * robin. libgearman (PHP, the `gearman` tool) does not hash: it uses the first server that is not busy.
 *
 * @module
 */

import { crc32 } from 'node:zlib';
import { GearmanError } from './errors.ts';

/** The default gearman port (IANA). */
export const GEARMAN_DEFAULT_PORT = 4730;

/** A server: `'host'`, `'host:port'`, `'[::1]:4730'`, or an object. */
export type ServerSpec = string | { host: string; port?: number };

/** A parsed server address. */
export interface ServerAddress {
  readonly host: string;
  readonly port: number;
  /** `host:port` (`[v6]:port`), for errors and diagnostics. */
  readonly name: string;
}

/** Parses a {@link ServerSpec}; throws `GEARMAN_ERR_INVALID_ARGUMENT`. */
export function parseServer(spec: ServerSpec): ServerAddress {
  let host: string;
  let port: number;
  if (typeof spec === 'object' && spec !== null) {
    host = spec.host;
    port = spec.port ?? GEARMAN_DEFAULT_PORT;
  } else {
    const m = typeof spec === 'string' ? /^(?:\[([^\]\s]+)\]|([^:[\]\s]+))(?::(\d+))?$/.exec(spec.trim()) : undefined;
    if (m === null || m === undefined) throw invalidServer(spec);
    host = (m[1] ?? m[2])!;
    port = m[3] === undefined ? GEARMAN_DEFAULT_PORT : Number(m[3]);
  }
  if (typeof host !== 'string' || host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalidServer(spec);
  }
  return { host, port, name: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}` };
}

function invalidServer(spec: unknown): GearmanError {
  return new GearmanError(
    'GEARMAN_ERR_INVALID_ARGUMENT',
    `invalid server ${JSON.stringify(spec)}: expected host[:port]`,
  );
}

/** Perl `Gearman::Task::hash`: `(crc32(key) >> 16) & 0x7fff`. */
export function uniqueHash(key: Buffer): number {
  return (crc32(key) >>> 16) & 0x7fff;
}

/** One server and its health. */
export interface ServerSlot extends ServerAddress {
  /** `Date.now()` until which the server is skipped (0: alive). */
  deadUntil: number;
}

/** The servers, in the order given (placement depends on it). */
export class ServerList<T extends ServerSlot> {
  readonly servers: readonly T[];
  readonly #retryTimeout: number;
  #next = 0;

  /** @param retryTimeout how long a dead server is skipped (ms) */
  constructor(servers: readonly T[], retryTimeout: number) {
    this.servers = servers;
    this.#retryTimeout = retryTimeout;
  }

  /** Whether `slot` may be used now. */
  isLive(slot: T, now = Date.now()): boolean {
    return slot.deadUntil <= now;
  }

  /** Skips `slot` for the retry window. */
  markDead(slot: T): void {
    slot.deadUntil = Date.now() + this.#retryTimeout;
  }

  /** Clears a dead mark (the server answered). */
  markAlive(slot: T): void {
    slot.deadUntil = 0;
  }

  /**
   * The server for a job: by `hashKey` (see the module comment) or round robin when undefined, skipping dead
   * servers and those in `exclude`. Undefined when none is left.
   */
  pick(hashKey: Buffer | undefined, exclude?: ReadonlySet<T>): T | undefined {
    const servers = this.servers;
    const n = servers.length;
    if (n === 0) return undefined;
    const start = hashKey === undefined ? this.#next++ % n : uniqueHash(hashKey) % n;
    if (this.#next >= 0x3fffffff) this.#next = 0;
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      const slot = servers[(start + i) % n]!;
      if (this.isLive(slot, now) && !exclude?.has(slot)) return slot;
    }
    return undefined;
  }
}
