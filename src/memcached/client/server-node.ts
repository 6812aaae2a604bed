/**
 * One server of the cluster: its connections (`connectionsPerServer`), its bounded request count, per-request
 * timeouts and abort signals, reconnection with exponential backoff, and dead marking.
 *
 * Health, as libmemcached does it (`server_failure_limit`, `retry_timeout`):
 *
 * ```
 *          failure (connect error/timeout, lost in-flight request, request timeout, protocol error)
 *  alive ────────────────────────────────────────────────────────────────▶ failures++ ──┐
 *    ▲                                                                                  │ failures ≥ failureLimit
 *    │ a reply arrives (failures = 0)                                                   ▼
 *    └──────────── probe: the first request after retryTimeout ◀──────────────── dead until now + retryTimeout
 *                                                                             (requests fail at once: SERVER_DEAD)
 * ```
 *
 * Between failures below the limit, a new connection is attempted no sooner than the backoff delay
 * (`backoff.initialMs · 2^(failures-1)`, at most `backoff.maxMs`, plus up to 20 % jitter); requests wait for it
 * within their own timeout.
 *
 * Single `get`s go through {@link ServerNode.get}: the ones made while a coalesced get is still queued (and nothing
 * was queued behind it) join it (`coalesced-get.ts`).
 *
 * @module
 */

import type { ConnectionOptions as TlsOptions } from 'node:tls';
import { CoalescedGet } from './coalesced-get.ts';
import type { CommandCodec, RawItem, WireRequest } from './commands.ts';
import { type CommandEvent, commandChannel, publishServerEvent } from './diagnostics.ts';
import { MemcacheError } from './errors.ts';
import { type ConnectionEvents, PendingRequest, ServerConnection } from './server-connection.ts';

/** Options of {@link ServerNode}. */
export interface ServerNodeOptions {
  readonly host: string;
  readonly port: number;
  readonly codec: CommandCodec;
  readonly connections: number;
  readonly connectTimeout: number;
  readonly timeout: number;
  readonly maxQueue: number;
  readonly failureLimit: number;
  readonly retryTimeout: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly tls: TlsOptions | undefined;
  readonly keepAlive: number;
}

/** Per-request options. */
export interface SendOptions {
  /** Overrides the client's `timeout` (ms). */
  readonly timeout?: number;
  readonly signal?: AbortSignal;
}

/** A request sent ahead of another on the same connection (buffered writes before a read). */
export interface Prelude<T> {
  readonly request: WireRequest<T>;
  readonly settled: (outcome: { ok: true; value: T } | { ok: false; error: MemcacheError }) => void;
}

/** One server: connections, queue bound, timeouts, health. */
export class ServerNode {
  /** `host:port`. */
  readonly name: string;
  readonly #o: ServerNodeOptions;
  readonly #connections: ServerConnection[] = [];
  readonly #connectTimers = new Map<ServerConnection, NodeJS.Timeout>();
  #pending = 0;
  #failures = 0;
  #deadUntil = 0;
  #nextConnectAt = 0;
  #closed: MemcacheError | undefined;
  /** The coalesced get single gets join, while it is joinable and last in its connection's queue. */
  #batch: CoalescedGet | undefined;
  readonly #release = (): void => {
    this.#pending--;
  };

  constructor(options: ServerNodeOptions) {
    this.#o = options;
    this.name = options.host.includes(':') ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`;
    const events: ConnectionEvents = {
      connected: () => publishServerEvent({ type: 'connect', server: this.name }),
      connectFailed: (conn, error) => this.#onFailure(conn, error, true),
      lost: (conn, error, inFlight) => {
        publishServerEvent({ type: 'disconnect', server: this.name, error });
        if (inFlight) this.#onFailure(conn, error, false);
        else if (conn.load > 0) this.#connectSoon(conn);
      },
      answered: () => {
        if (this.#failures > 0 || this.#deadUntil > 0) {
          if (this.#deadUntil > 0) publishServerEvent({ type: 'alive', server: this.name });
          this.#failures = 0;
          this.#deadUntil = 0;
          this.#nextConnectAt = 0;
        }
      },
    };
    for (let i = 0; i < Math.max(1, options.connections); i++) {
      this.#connections.push(
        new ServerConnection({
          host: options.host,
          port: options.port,
          name: this.name,
          codec: options.codec,
          connectTimeout: options.connectTimeout,
          tls: options.tls,
          keepAlive: options.keepAlive,
          events,
        }),
      );
    }
  }

  /** True while the server is marked dead (requests fail fast). */
  isDead(): boolean {
    // The clock is read only while a mark is set: this runs for every request.
    return this.#deadUntil !== 0 && this.#deadUntil > Date.now();
  }

  /** Consecutive failures so far. */
  get failures(): number {
    return this.#failures;
  }

  /** Requests not yet settled. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * Sends a request (after `prelude`, on the same connection, when given) and resolves with its result.
   *
   * @throws MemcacheError `CLOSED`, `SERVER_DEAD`, `QUEUE_FULL`, `ABORTED` at once; `TIMEOUT`, `CONNECT`,
   *   `CONNECT_TIMEOUT`, `AUTH`, `CONNECTION_CLOSED`, `PROTOCOL` and the command's own errors later.
   */
  send<T>(request: WireRequest<T>, options: SendOptions = {}, prelude?: Prelude<unknown>): Promise<T> {
    const refused = this.#refuse(options.signal, prelude === undefined ? 1 : 2);
    if (refused !== undefined) {
      if (prelude !== undefined) prelude.settled({ ok: false, error: refused });
      return Promise.reject(refused);
    }
    const conn = this.#pick();
    if (prelude !== undefined) this.#startPrelude(conn, prelude, options);
    // Replies come in request order: a get made after this request must not join a coalesced get queued before it.
    this.#batch = undefined;
    const result = this.#start(conn, request, options);
    if (conn.idle) this.#connectSoon(conn);
    return result;
  }

  /**
   * A single `get` of wire key `key` (after `prelude`, when given), coalesced with the other single gets made before
   * the connection writes them (see `coalesced-get.ts`). Resolves with `map(item)`, `map(undefined)` for a miss.
   *
   * @throws MemcacheError as {@link send}
   */
  get<R>(
    key: string,
    options: SendOptions,
    prelude: Prelude<unknown> | undefined,
    map: (item: RawItem | undefined) => R,
  ): Promise<R> {
    const refused = this.#refuse(options.signal, prelude === undefined ? 1 : 2);
    if (refused !== undefined) {
      if (prelude !== undefined) prelude.settled({ ok: false, error: refused });
      return Promise.reject(refused);
    }
    const timeoutMs = options.timeout ?? this.#o.timeout;
    const batch = this.#batch;
    if (prelude === undefined && batch !== undefined && batch.joinable) {
      this.#pending++;
      return batch.add(key, timeoutMs, options.signal, map);
    }
    const conn = this.#pick();
    if (prelude !== undefined) this.#startPrelude(conn, prelude, options);
    const created = new CoalescedGet(conn, this.#o.codec, this.name, this.#release);
    this.#batch = created;
    this.#pending++;
    const result = created.add(key, timeoutMs, options.signal, map);
    conn.enqueue(created);
    if (conn.idle) this.#connectSoon(conn);
    return result;
  }

  #startPrelude(conn: ServerConnection, prelude: Prelude<unknown>, options: SendOptions): void {
    this.#start(conn, prelude.request, options).then(
      (value) => prelude.settled({ ok: true, value }),
      (error: MemcacheError) => prelude.settled({ ok: false, error }),
    );
  }

  /** Why a request cannot be taken now, if it cannot. */
  #refuse(signal: AbortSignal | undefined, count: number): MemcacheError | undefined {
    if (this.#closed !== undefined) {
      return new MemcacheError('MEMCACHED_ERR_CLOSED', undefined, { server: this.name, cause: this.#closed.cause });
    }
    if (signal?.aborted) {
      return new MemcacheError('MEMCACHED_ERR_ABORTED', undefined, { server: this.name, cause: signal.reason });
    }
    if (this.isDead()) {
      return new MemcacheError('MEMCACHED_ERR_SERVER_DEAD', undefined, { server: this.name });
    }
    if (this.#pending + count > this.#o.maxQueue) {
      return new MemcacheError('MEMCACHED_ERR_QUEUE_FULL', `request queue full (${this.#o.maxQueue})`, {
        server: this.name,
      });
    }
    return undefined;
  }

  #start<T>(conn: ServerConnection, request: WireRequest<T>, options: SendOptions): Promise<T> {
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    const timeoutMs = options.timeout ?? this.#o.timeout;
    const signal = options.signal;
    const traced = commandChannel.hasSubscribers;
    const started = traced ? performance.now() : 0;
    if (traced) {
      commandChannel.publish({
        type: 'start',
        command: request.command,
        server: this.name,
        keys: request.keys,
      } satisfies CommandEvent);
    }
    let onAbort: (() => void) | undefined;
    this.#pending++;
    const p = new PendingRequest<T>(
      request,
      resolve,
      reject,
      (error) => {
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
        this.#pending--;
        if (traced && commandChannel.hasSubscribers) {
          const durationMs = performance.now() - started;
          const base = { command: request.command, server: this.name, keys: request.keys, durationMs };
          commandChannel.publish(
            (error === undefined
              ? { type: 'end', ...base }
              : { type: 'error', ...base, code: error.code, error }) satisfies CommandEvent,
          );
        }
      },
      timeoutMs,
    );
    if (signal !== undefined) {
      onAbort = () => {
        conn.abort(
          p,
          new MemcacheError('MEMCACHED_ERR_ABORTED', undefined, { server: this.name, cause: signal.reason }),
        );
      };
      signal.addEventListener('abort', onAbort, { once: true });
    }
    conn.enqueue(p);
    return promise;
  }

  /** The least loaded connection, preferring ready ones. */
  #pick(): ServerConnection {
    const conns = this.#connections;
    if (conns.length === 1) return conns[0]!;
    let best = conns[0]!;
    for (const c of conns) {
      if ((c.ready && !best.ready) || (c.ready === best.ready && c.load < best.load)) best = c;
    }
    return best;
  }

  #connectSoon(conn: ServerConnection): void {
    if (!conn.idle || this.#connectTimers.has(conn) || this.#closed !== undefined) return;
    const delay = this.#nextConnectAt - Date.now();
    if (delay <= 0) {
      conn.connect();
      return;
    }
    const timer = setTimeout(() => {
      this.#connectTimers.delete(conn);
      if (this.isDead()) return;
      if (conn.load > 0) conn.connect();
    }, delay);
    this.#connectTimers.set(conn, timer);
  }

  #onFailure(conn: ServerConnection, error: MemcacheError, connecting: boolean): void {
    this.#failures++;
    const { backoffInitialMs, backoffMaxMs, failureLimit, retryTimeout } = this.#o;
    const backoff = Math.min(backoffMaxMs, backoffInitialMs * 2 ** (this.#failures - 1));
    this.#nextConnectAt = Date.now() + backoff * (1 + Math.random() * 0.2);
    if (failureLimit > 0 && retryTimeout > 0 && this.#failures >= failureLimit) {
      this.#deadUntil = Date.now() + retryTimeout;
      publishServerEvent({ type: 'dead', server: this.name, error });
      const dead = new MemcacheError('MEMCACHED_ERR_SERVER_DEAD', undefined, { server: this.name, cause: error });
      for (const c of this.#connections) c.failQueued(dead);
      return;
    }
    if (!connecting || conn.load > 0) this.#connectSoon(conn);
  }

  /** Stops taking requests and resolves once every pending one has settled and the sockets are closed. */
  async close(): Promise<void> {
    this.#closed ??= new MemcacheError('MEMCACHED_ERR_CLOSED', undefined, { server: this.name });
    for (const timer of this.#connectTimers.values()) clearTimeout(timer);
    this.#connectTimers.clear();
    // Requests waiting for a backoff delay would wait for nothing now: connect for them.
    for (const c of this.#connections) if (c.idle && c.load > 0) c.connect();
    await Promise.all(this.#connections.map((c) => c.close()));
  }

  /** Fails everything pending now and closes the sockets. */
  destroy(cause?: Error): void {
    this.#closed ??= new MemcacheError('MEMCACHED_ERR_CLOSED', undefined, { server: this.name, cause });
    for (const timer of this.#connectTimers.values()) clearTimeout(timer);
    this.#connectTimers.clear();
    const error = new MemcacheError('MEMCACHED_ERR_CLOSED', 'client destroyed', { server: this.name, cause });
    for (const c of this.#connections) c.destroy(error);
  }
}
