/**
 * `MemcacheClient`: the memcached client a Node team would switch to. It works the same against memcached 1.6 and
 * against this project's server.
 *
 * Layers: `text-codec.ts` / `binary-codec.ts` (bytes) → `commands.ts` (requests and their replies) →
 * `server-connection.ts` (one pipelined socket) → `server-node.ts` (a server: connections, timeouts, health) → this
 * file (the cluster: key distribution from `hash-ring.ts`, serialization, multi-key fan-out, the cache features).
 *
 * @module
 */

import type { ConnectionOptions as TlsOptions } from 'node:tls';
import {
  type CommandCodec,
  composite,
  type MetaGetResult,
  type QuietWrite,
  type RawItem,
  type Settled,
  type StoreOutcome,
  textCommands,
  type WireRequest,
} from './commands.ts';
import { MemcacheError } from './errors.ts';
import {
  createDistribution,
  type Distribution,
  type DistributionMode,
  MEMCACHED_DEFAULT_PORT,
  type ModuloHash,
} from './hash-ring.ts';
import { LocalCache, type LocalEntry } from './local-cache.ts';
import {
  type Compression,
  type CompressionOptions,
  compress,
  decompress,
  resolveCompression,
  resolveSerializer,
  type SerializedValue,
  type Serializer,
  type SerializerName,
  ValueFlag,
} from './serializer.ts';
import { type Prelude, type SendOptions, ServerNode, type ServerNodeOptions } from './server-node.ts';
import { encodeKey, type RetrievalCommand, type StorageCommand, wireKey } from './text-codec.ts';

/** A server: `'host'`, `'host:port'`, `'host:port:weight'`, `'[::1]:11211'`, or an object. */
export type ServerSpec = string | { host: string; port?: number; weight?: number };

/** Options of {@link MemcacheClient}. Times are milliseconds, TTLs seconds. */
export interface MemcacheClientOptions {
  /** The cluster (order matters for `'modulo'` and `'crc32'`, as in every other client). */
  servers: readonly ServerSpec[];
  /** Key distribution (default `'ketama'`, libmemcached-compatible; see `hash-ring.ts`). */
  distribution?: DistributionMode;
  /** Key hash of `'modulo'` distribution (default `'md5'`). */
  hash?: ModuloHash;
  /** Prepended to every key on the wire (namespacing); counts toward the 250-byte limit. */
  prefix?: string;
  /** Hash keys with the prefix (libmemcached's `HASH_WITH_NAMESPACE`; default false: without). */
  hashWithPrefix?: boolean;
  /** Per-operation timeout, from the call to the reply (default 1000). */
  timeout?: number;
  /** Connect timeout, TLS handshake and SASL included (default 1000). */
  connectTimeout?: number;
  /** Send the keys of a dead or unreachable server to the next server on the ring (default false). */
  failover?: boolean;
  /** How long a dead server is skipped (default 2000; 0: never mark dead). */
  retryTimeout?: number;
  /** Consecutive failures that mark a server dead (default 2; 0: never mark dead). */
  failureLimit?: number;
  /** Most requests queued or in flight per server (default 10000). */
  maxQueue?: number;
  /** Sockets per server (default 1: one pipelined connection is usually fastest). */
  connectionsPerServer?: number;
  /** Reconnect delays after failures (default 50 ms doubling up to 2000 ms). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** TCP keep-alive delay (default 30000; 0: off). */
  keepAlive?: number;
  /** Value format (default `'auto'`: php-memcached-compatible types; see `serializer.ts`). */
  serializer?: SerializerName | Serializer;
  /** zlib compression above a size threshold (default off; `true`: 16 KiB). */
  compression?: boolean | CompressionOptions;
  /** Largest value sent, after serialization and compression (default 1 MiB, memcached's `-I`). */
  maxValueSize?: number;
  /** An in-process LRU in front of the cluster (default none). */
  localCache?: { max: number; ttlMs: number };
  /** TLS for every connection: `true`, or `node:tls` connect options (CA, client certificate, …). */
  tls?: boolean | TlsOptions;
  /** SASL PLAIN credentials (connections then speak the binary protocol). */
  sasl?: { username: string; password: string };
  /** Wire protocol (default `'text'`, or `'binary'` when `sasl` is set). */
  protocol?: 'text' | 'binary';
  /**
   * `noreply` writes are batched per server and sent when `maxBatch` are waiting, after `flushMs`, or before the
   * next read from that server (default: `{ maxBatch: 100, flushMs: 0 }`: batched within one event loop turn).
   */
  bufferedWrites?: { maxBatch?: number; flushMs?: number; onError?: (error: MemcacheError) => void };
  /** How long a namespace version read is reused (default 0: read with every operation). */
  namespaceVersionTtlMs?: number;
  /**
   * Send concurrent single {@link MemcacheClient.get}s for one server as one multi-key `get k1 k2 …` —
   * libmemcached's "implicit multi-get" (default true): the gets made before the connection writes (within one
   * event loop turn, or while it connects), up to 16 per request. The server then parses one line and ends one
   * reply instead of one per get: with many gets in flight that is much less work for memcached's worker thread.
   * Each call keeps its own result, timeout and abort signal; a key asked for twice is sent twice; requests still go
   * out in call order (a get made after a `set` is not merged into a get before it). Only plain `get` is coalesced
   * (`gets`, `gat`, `getItem`, `getOrSet`, … are sent as they are). `diagnostics_channel` still sees one `get` per
   * call.
   */
  coalesceGets?: boolean;
}

/** Options every call takes. */
export interface CallOptions {
  /** Overrides `timeout` for this call. */
  timeout?: number;
  signal?: AbortSignal;
  /** Pick the server by this key instead of the item's key (libmemcached's `*_by_key`). */
  groupKey?: string;
}

/** Options of the storage commands. */
export interface SetOptions extends CallOptions {
  /** Seconds (above 30 days: a Unix time); 0 (default): no expiry. */
  ttl?: number;
  /**
   * `set` only: do not wait for the server; the write is batched with others (see `bufferedWrites`) and the call
   * resolves true at once. Errors go to `bufferedWrites.onError`. Other commands ignore it.
   */
  noreply?: boolean;
}

/** Options of `delete`. */
export interface DeleteOptions extends CallOptions {
  /** As for {@link SetOptions.noreply}. */
  noreply?: boolean;
}

/** Options of `get` (read-through when `loader` is given). */
export interface GetOptions<T> extends CallOptions {
  /** Called on a miss; its result (unless undefined) is stored with `ttl` and returned. */
  loader?: (key: string) => T | undefined | Promise<T | undefined>;
  /** TTL of what the loader returns. */
  ttl?: number;
}

/** Options of `getMulti` (read-through when `loader` is given). */
export interface GetMultiOptions<T> extends CallOptions {
  /** Called once with every missing key; what it returns is stored with `ttl` and merged into the result. */
  loader?: (
    keys: string[],
  ) => Map<string, T> | Record<string, T> | Promise<Map<string, T> | Record<string, T>> | undefined;
  ttl?: number;
}

/** Options of `incr`/`decr`. */
export interface CounterOptions extends CallOptions {
  /** Create a missing counter with this value (meta `ma` / binary initial) instead of answering undefined. */
  initial?: number | bigint;
  /** TTL of a counter created with `initial`. */
  ttl?: number;
}

/** Options of {@link MemcacheClient.getOrSet}. */
export interface GetOrSetOptions extends CallOptions {
  /** Seconds the value is fresh. */
  ttl: number;
  /**
   * Seconds after `ttl` during which the old value is still served while exactly one caller (the one memcached
   * gives the win flag to) recomputes it (default 0: no stale serving).
   */
  staleTtl?: number;
  /** Seconds the "being computed" placeholder of a missing key lives, should its computer die (default 30). */
  lockTtl?: number;
  /** How long a caller waits for another's computation before computing itself (default: `timeout`). */
  waitMs?: number;
}

/** A value with its cas unique. */
export interface CasValue<T> {
  readonly value: T;
  readonly cas: bigint;
}

/** A value with what memcached knows about it. */
export interface ItemInfo<T> {
  readonly value: T;
  readonly cas: bigint | undefined;
  readonly flags: number;
  /** Remaining seconds, -1 for none; undefined over the binary protocol (no meta commands). */
  readonly ttl: number | undefined;
}

/** A multi-get started now, awaited later ({@link MemcacheClient.fetchLater}). */
export interface FetchHandle<T> {
  readonly keys: readonly string[];
  /** The hits, by key. Rejections are not "unhandled" if never awaited. */
  readonly result: Promise<Map<string, T>>;
}

interface ResolvedOptions {
  readonly prefix: Buffer | undefined;
  /** `prefix` as a wire key (latin1, '' for none). */
  readonly prefixWire: string;
  readonly hashWithPrefix: boolean;
  readonly timeout: number;
  readonly failover: boolean;
  readonly maxValueSize: number;
  readonly serializer: Serializer;
  readonly compression: Compression | undefined;
  readonly maxBatch: number;
  readonly flushMs: number;
  readonly onWriteError: ((error: MemcacheError) => void) | undefined;
  readonly namespaceVersionTtlMs: number;
  readonly coalesceGets: boolean;
}

/** A key on its way to the wire. */
class KeyRef {
  /** The key as the caller gave it. */
  readonly user: string;
  /** The wire key (prefix included) as latin1, one char per byte: what requests carry, the local cache key. */
  readonly id: string;
  /** What the distribution hashes. */
  readonly route: string | Buffer;
  #wire: Buffer | undefined;

  constructor(user: string, id: string, route: string | Buffer) {
    this.user = user;
    this.id = id;
    this.route = route;
  }

  /** The wire key's bytes (made on first use: multi-gets never need them). */
  get wire(): Buffer {
    this.#wire ??= Buffer.from(this.id, 'latin1');
    return this.#wire;
  }
}

/** No server excluded (the first attempt of every request). */
const NONE: ReadonlySet<number> = new Set();

interface WriteBuffer {
  writes: QuietWrite[];
  /** Cancels the scheduled flush, when one is scheduled. */
  cancel: (() => void) | undefined;
}

/** The identity `map` of a coalesced get: the raw item. */
const same = (item: RawItem | undefined): RawItem | undefined => item;

function invalid(message: string): MemcacheError {
  return new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', message);
}

/** `value` (a finite number >= 0), or `fallback` when undefined. */
function nonNegative(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) throw invalid(`${name} must be a number >= 0, got ${value}`);
  return value;
}

/** Parses `'host'`, `'host:port'`, `'host:port:weight'`, `'[v6]:port[:weight]'`. */
export function parseServer(spec: ServerSpec): { host: string; port: number; weight: number } {
  if (typeof spec === 'object' && spec !== null) {
    const port = spec.port ?? MEMCACHED_DEFAULT_PORT;
    if (typeof spec.host !== 'string' || spec.host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw invalid(`invalid server ${JSON.stringify(spec)}`);
    }
    return { host: spec.host, port, weight: spec.weight ?? 1 };
  }
  if (typeof spec !== 'string') throw invalid(`invalid server ${String(spec)}`);
  const m = /^(?:\[([^\]\s]+)\]|([^:[\]\s]+))(?::(\d+))?(?::(\d+(?:\.\d+)?))?$/.exec(spec.trim());
  if (m === null) throw invalid(`invalid server ${JSON.stringify(spec)}: host[:port[:weight]]`);
  const port = m[3] === undefined ? MEMCACHED_DEFAULT_PORT : Number(m[3]);
  if (port < 1 || port > 65535) throw invalid(`invalid port in ${JSON.stringify(spec)}`);
  return { host: (m[1] ?? m[2])!, port, weight: m[4] === undefined ? 1 : Number(m[4]) };
}

function toBigInt(n: number | bigint, name: string): bigint {
  if (typeof n === 'bigint') {
    if (n < 0n || n > 0xffffffffffffffffn) throw invalid(`${name} must be a 64-bit unsigned integer`);
    return n;
  }
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(`${name} must be a non-negative integer, got ${n}`);
  return BigInt(n);
}

function ttlOf(ttl: number | undefined): number {
  if (ttl === undefined) return 0;
  if (!Number.isInteger(ttl) || ttl < -1) throw invalid(`ttl must be an integer number of seconds, got ${ttl}`);
  return ttl;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new MemcacheError('MEMCACHED_ERR_ABORTED', undefined, { cause: signal.reason }));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(new MemcacheError('MEMCACHED_ERR_ABORTED', undefined, { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A memcached cluster client.
 *
 * Commands to one server share one pipelined connection and go out in call order; concurrent single `get`s to one
 * server are sent as one multi-key `get` (see {@link MemcacheClientOptions.coalesceGets}).
 *
 * @example
 * import { MemcacheClient } from 'sharenothing/memcached';
 *
 * const cache = new MemcacheClient({ servers: ['10.0.0.1:11211', '10.0.0.2:11211'], prefix: 'app:' });
 * await cache.set('user:42', { name: 'Ada' }, { ttl: 300 });
 * const user = await cache.get<{ name: string }>('user:42'); // undefined on a miss
 * const page = await cache.getOrSet('page:/', () => render('/'), { ttl: 60, staleTtl: 30 });
 * await cache.close();
 */
export class MemcacheClient {
  readonly #o: ResolvedOptions;
  readonly #specs: { host: string; port: number; weight: number }[];
  readonly #nodeOptions: Omit<ServerNodeOptions, 'host' | 'port' | 'codec'>;
  readonly #distribution: Distribution | undefined;
  readonly #local: LocalCache | undefined;
  #nodes: ServerNode[] | undefined;
  #meta = true;
  #codec: CommandCodec | undefined;
  readonly #loading: Promise<void> | undefined;
  readonly #buffers = new Map<number, WriteBuffer>();
  readonly #loads = new Map<string, Promise<unknown>>();
  readonly #namespaceVersions = new Map<string, { version: string; until: number }>();
  #closed: Promise<void> | undefined;
  #destroyed = false;

  constructor(options: MemcacheClientOptions) {
    if (options === null || typeof options !== 'object' || !Array.isArray(options.servers)) {
      throw invalid('options.servers must be an array');
    }
    this.#specs = options.servers.map(parseServer);
    const prefix = options.prefix ? Buffer.from(options.prefix, 'utf8') : undefined;
    if (prefix !== undefined) encodeKey('x', prefix);
    const buffered = options.bufferedWrites ?? {};
    this.#o = {
      prefix,
      prefixWire: prefix === undefined ? '' : prefix.toString('latin1'),
      hashWithPrefix: options.hashWithPrefix ?? false,
      timeout: nonNegative(options.timeout, 1000, 'timeout'),
      failover: options.failover ?? false,
      maxValueSize: nonNegative(options.maxValueSize, 1024 * 1024, 'maxValueSize'),
      serializer: resolveSerializer(options.serializer),
      compression: resolveCompression(options.compression),
      maxBatch: Math.max(1, nonNegative(buffered.maxBatch, 100, 'bufferedWrites.maxBatch')),
      flushMs: nonNegative(buffered.flushMs, 0, 'bufferedWrites.flushMs'),
      onWriteError: buffered.onError,
      namespaceVersionTtlMs: nonNegative(options.namespaceVersionTtlMs, 0, 'namespaceVersionTtlMs'),
      coalesceGets: options.coalesceGets ?? true,
    };
    let tls: TlsOptions | undefined;
    if (options.tls === true) tls = {};
    else if (options.tls !== undefined && options.tls !== false) tls = options.tls;
    this.#nodeOptions = {
      connections: Math.max(1, Math.floor(nonNegative(options.connectionsPerServer, 1, 'connectionsPerServer'))),
      connectTimeout: nonNegative(options.connectTimeout, 1000, 'connectTimeout'),
      timeout: this.#o.timeout,
      maxQueue: nonNegative(options.maxQueue, 10000, 'maxQueue'),
      failureLimit: nonNegative(options.failureLimit, 2, 'failureLimit'),
      retryTimeout: nonNegative(options.retryTimeout, 2000, 'retryTimeout'),
      backoffInitialMs: nonNegative(options.backoff?.initialMs, 50, 'backoff.initialMs'),
      backoffMaxMs: nonNegative(options.backoff?.maxMs, 2000, 'backoff.maxMs'),
      tls,
      keepAlive: nonNegative(options.keepAlive, 30000, 'keepAlive'),
    };
    if (this.#specs.length > 0) {
      try {
        this.#distribution = createDistribution(
          this.#specs,
          options.distribution ?? 'ketama',
          options.hash === undefined ? {} : { hash: options.hash },
        );
      } catch (err) {
        throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', (err as Error).message, { cause: err });
      }
    }
    if (options.localCache !== undefined) {
      const { max, ttlMs } = options.localCache;
      this.#local = new LocalCache(nonNegative(max, 0, 'localCache.max'), nonNegative(ttlMs, 0, 'localCache.ttlMs'));
    }
    const protocol = options.sasl !== undefined ? 'binary' : (options.protocol ?? 'text');
    if (protocol === 'text') {
      this.#createNodes(textCommands);
    } else if (protocol === 'binary') {
      const sasl = options.sasl;
      // Loaded only when asked for: text users never load the binary codec.
      this.#loading = import('./binary-codec.ts').then((m) => this.#createNodes(m.createBinaryCommands(sasl)));
      this.#loading.catch(() => {});
    } else {
      throw invalid(`unknown protocol ${String(protocol)}`);
    }
  }

  #createNodes(codec: CommandCodec): void {
    this.#codec = codec;
    this.#meta = codec.meta;
    this.#nodes = this.#specs.map((s) => new ServerNode({ ...this.#nodeOptions, host: s.host, port: s.port, codec }));
  }

  /** The servers as `host:port`, in configuration order. */
  get servers(): string[] {
    return this.#specs.map((s) => (s.host.includes(':') ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`));
  }

  /** The server (`host:port`) that owns `key` while every server is up. */
  serverFor(key: string): string | undefined {
    if (this.#distribution === undefined) return undefined;
    const ref = this.#ref(key);
    return this.servers[this.#distribution.serverFor(ref.route)];
  }

  // ---- plumbing ------------------------------------------------------------------------------------------------

  /**
   * The servers, when they can take requests now; undefined while the binary codec loads. Every operation queues
   * its requests synchronously when it can (`this.#readyNow() ?? (await this.#ready())`), so that requests go out
   * in the order the calls were made: `get`, `set`, `get` in one tick are answered in that order.
   */
  #readyNow(): ServerNode[] | undefined {
    if (this.#closed !== undefined || this.#destroyed) throw new MemcacheError('MEMCACHED_ERR_CLOSED');
    const nodes = this.#nodes;
    if (nodes !== undefined && nodes.length === 0) throw new MemcacheError('MEMCACHED_ERR_NO_SERVERS');
    return nodes;
  }

  async #ready(): Promise<ServerNode[]> {
    if (this.#closed !== undefined || this.#destroyed) throw new MemcacheError('MEMCACHED_ERR_CLOSED');
    if (this.#nodes === undefined) await this.#loading;
    if (this.#nodes === undefined || this.#nodes.length === 0) throw new MemcacheError('MEMCACHED_ERR_NO_SERVERS');
    return this.#nodes;
  }

  #ref(key: string, groupKey?: string): KeyRef {
    if (typeof key !== 'string') throw new MemcacheError('MEMCACHED_ERR_BAD_KEY', 'invalid key: keys are strings');
    const id = wireKey(key, this.#o.prefixWire);
    let route: string | Buffer = groupKey ?? key;
    if (this.#o.hashWithPrefix) {
      route = groupKey === undefined ? Buffer.from(id, 'latin1') : encodeKey(groupKey, this.#o.prefix);
    }
    return new KeyRef(key, id, route);
  }

  /** The server index for `route`, skipping `exclude` and (with failover) dead servers. */
  #route(
    nodes: ServerNode[],
    route: string | Buffer,
    exclude: ReadonlySet<number> = NONE,
    last?: MemcacheError,
  ): number {
    const ring = this.#distribution!;
    const first = ring.serverFor(route);
    if (!this.#o.failover) {
      if (exclude.has(first)) throw last ?? new MemcacheError('MEMCACHED_ERR_NO_SERVERS');
      return first;
    }
    if (!exclude.has(first) && !nodes[first]!.isDead()) return first;
    const next = ring.serverForWithout(route, (i) => exclude.has(i) || nodes[i]!.isDead());
    if (next < 0) {
      throw last ?? new MemcacheError('MEMCACHED_ERR_NO_SERVERS', 'no servers available: every server is marked dead');
    }
    return next;
  }

  /** A retryable failure under `failover`: the request never reached the server. */
  #retryable(err: unknown): err is MemcacheError {
    return this.#o.failover && err instanceof MemcacheError && err.failoverSafe;
  }

  /** The buffered writes of server `index` as a prelude of a read, if there are any. */
  #preludeFor(index: number): Prelude<unknown> | undefined {
    if (this.#buffers.size === 0) return undefined;
    const buffer = this.#buffers.get(index);
    return buffer !== undefined && buffer.writes.length > 0 ? this.#takeBatch(buffer) : undefined;
  }

  /** Sends to server `index`, after its buffered writes when `read`. */
  #send<T>(nodes: ServerNode[], index: number, request: WireRequest<T>, options: SendOptions, read: boolean) {
    return nodes[index]!.send(request, options, read ? this.#preludeFor(index) : undefined);
  }

  /** One request for one key, with failover. */
  #exec<T>(ref: KeyRef, build: (codec: CommandCodec) => WireRequest<T>, options: CallOptions, read: boolean) {
    return this.#attempt(ref, (nodes, index) => this.#send(nodes, index, build(this.#codec!), options, read));
  }

  /** Runs `run` on the server of `ref`; with failover, again on the next server while it fails before sending. */
  async #attempt<T>(ref: KeyRef, run: (nodes: ServerNode[], index: number) => Promise<T>): Promise<T> {
    const nodes = this.#readyNow() ?? (await this.#ready());
    let exclude = NONE;
    let last: MemcacheError | undefined;
    for (;;) {
      const index = this.#route(nodes, ref.route, exclude, last);
      try {
        return await run(nodes, index);
      } catch (err) {
        if (!this.#retryable(err)) throw err;
        last = err;
        exclude = new Set([...exclude, index]);
      }
    }
  }

  /**
   * Groups keys per server, runs `run` on each group (the indexes into `refs` of its keys) in parallel, re-routes
   * the groups of unreachable servers.
   */
  async #fanOut(
    refs: readonly KeyRef[],
    run: (nodes: ServerNode[], index: number, positions: number[]) => Promise<void>,
  ): Promise<void> {
    const nodes = this.#readyNow() ?? (await this.#ready());
    const pass = async (
      positions: readonly number[],
      exclude: ReadonlySet<number>,
      last?: MemcacheError,
    ): Promise<void> => {
      const groups = new Map<number, number[]>();
      for (const p of positions) {
        const index = this.#route(nodes, refs[p]!.route, exclude, last);
        const g = groups.get(index);
        if (g === undefined) groups.set(index, [p]);
        else g.push(p);
      }
      await Promise.all(
        [...groups].map(async ([index, g]) => {
          try {
            await run(nodes, index, g);
          } catch (err) {
            if (!this.#retryable(err)) throw err;
            await pass(g, new Set([...exclude, index]), err);
          }
        }),
      );
    };
    await pass(
      refs.map((_, i) => i),
      NONE,
    );
  }

  #encode(value: unknown): SerializedValue {
    let serialized: SerializedValue;
    try {
      serialized = this.#o.serializer.serialize(value);
    } catch (err) {
      if (err instanceof MemcacheError) throw err;
      throw new MemcacheError('MEMCACHED_ERR_SERIALIZATION', `could not serialize: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const out = compress(serialized, this.#o.compression);
    if (out.data.length > this.#o.maxValueSize) {
      throw new MemcacheError(
        'MEMCACHED_ERR_VALUE_TOO_LARGE',
        `value of ${out.data.length} bytes is larger than maxValueSize (${this.#o.maxValueSize})`,
      );
    }
    return out;
  }

  /** Raw item → the decompressed bytes and flags the local cache keeps. */
  #entry(item: { value: Buffer; flags: number }): LocalEntry {
    return decompress(item.value, item.flags);
  }

  /** Raw item → value, without the intermediate entry when there is nothing to decompress. */
  #decodeItem<T>(item: RawItem): T {
    if ((item.flags & ValueFlag.COMPRESSED) === 0) return this.#deserialize<T>(item.value, item.flags);
    return this.#decode<T>(this.#entry(item));
  }

  /** The `map` of a coalesced get without a local cache. */
  readonly #decodeHit = (item: RawItem | undefined): unknown =>
    item === undefined ? undefined : this.#decodeItem(item);

  #decode<T>(entry: LocalEntry): T {
    return this.#deserialize<T>(entry.data, entry.flags);
  }

  #deserialize<T>(data: Buffer, flags: number): T {
    try {
      return this.#o.serializer.deserialize(data, flags) as T;
    } catch (err) {
      if (err instanceof MemcacheError) throw err;
      throw new MemcacheError('MEMCACHED_ERR_SERIALIZATION', `could not deserialize: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  // ---- buffered writes -----------------------------------------------------------------------------------------

  #buffer(nodes: ServerNode[], index: number, write: QuietWrite): void {
    let buffer = this.#buffers.get(index);
    if (buffer === undefined) {
      buffer = { writes: [], cancel: undefined };
      this.#buffers.set(index, buffer);
    }
    buffer.writes.push(write);
    if (buffer.writes.length >= this.#o.maxBatch) {
      this.#flushBuffer(nodes, index, buffer);
    } else if (buffer.cancel === undefined) {
      const b = buffer;
      if (this.#o.flushMs > 0) {
        const timer = setTimeout(() => this.#flushBuffer(nodes, index, b), this.#o.flushMs);
        buffer.cancel = () => clearTimeout(timer);
      } else {
        const immediate = setImmediate(() => this.#flushBuffer(nodes, index, b));
        buffer.cancel = () => clearImmediate(immediate);
      }
    }
  }

  /** The buffered writes of a server as one request (prelude of a read, or sent alone). */
  #takeBatch(buffer: WriteBuffer): Prelude<unknown> & { done: Promise<void> } {
    buffer.cancel?.();
    buffer.cancel = undefined;
    const writes = buffer.writes;
    buffer.writes = [];
    const request = this.#codec!.quietBatch(writes);
    let finish!: (error?: MemcacheError) => void;
    const done = new Promise<void>((resolve, reject) => {
      finish = (error) => (error === undefined ? resolve() : reject(error));
    });
    done.catch(() => {});
    return {
      request,
      done,
      settled: (outcome) => {
        const errors = outcome.ok ? (outcome.value as MemcacheError[]) : [outcome.error];
        for (const e of errors) this.#o.onWriteError?.(e);
        finish(errors[0]);
      },
    };
  }

  #flushBuffer(nodes: ServerNode[], index: number, buffer: WriteBuffer): Promise<void> {
    if (buffer.writes.length === 0) return Promise.resolve();
    const batch = this.#takeBatch(buffer);
    nodes[index]!.send(batch.request, {}).then(
      (value) => batch.settled({ ok: true, value }),
      (error: MemcacheError) => batch.settled({ ok: false, error }),
    );
    return batch.done;
  }

  /**
   * Sends every buffered `noreply` write now and resolves once the servers have read them all.
   *
   * @throws MemcacheError the first error a server reported for one of them
   */
  async flushBuffered(): Promise<void> {
    const nodes = this.#nodes;
    if (nodes === undefined) return;
    const flushes = [...this.#buffers].map(([index, buffer]) => this.#flushBuffer(nodes, index, buffer));
    const outcomes = await Promise.allSettled(flushes);
    for (const o of outcomes) if (o.status === 'rejected') throw o.reason;
  }

  // ---- retrieval -----------------------------------------------------------------------------------------------

  async #retrieveOne(
    command: RetrievalCommand,
    ref: KeyRef,
    options: CallOptions,
    exptime = 0,
  ): Promise<RawItem | undefined> {
    if (command === 'get' && this.#o.coalesceGets) {
      return this.#attempt(ref, (nodes, index) => nodes[index]!.get(ref.id, options, this.#preludeFor(index), same));
    }
    const items = await this.#exec(ref, (codec) => codec.retrieve(command, [ref.id], exptime), options, true);
    return items[0];
  }

  /**
   * The value of `key`, or undefined on a miss. With `loader`: read-through (the loader's value is stored and
   * returned).
   */
  get<T = unknown>(key: string, options: GetOptions<T> = {}): Promise<T | undefined> {
    // Not async: the common case (no loader, no failover, coalesced) makes one promise, settled by the reply.
    try {
      const ref = this.#ref(key, options.groupKey);
      const local = this.#local;
      const cached = local?.get(ref.id);
      if (cached !== undefined) return Promise.resolve(this.#decode<T>(cached));
      const nodes = this.#nodes;
      if (
        nodes === undefined ||
        nodes.length === 0 ||
        options.loader !== undefined ||
        !this.#o.coalesceGets ||
        this.#o.failover ||
        this.#closed !== undefined ||
        this.#destroyed
      ) {
        return this.#getAsync(ref, options);
      }
      const index = this.#route(nodes, ref.route);
      const map =
        local === undefined
          ? (this.#decodeHit as (item: RawItem | undefined) => T | undefined)
          : (item: RawItem | undefined): T | undefined => {
              if (item === undefined) return undefined;
              const entry = this.#entry(item);
              const value = this.#decode<T>(entry);
              local.set(ref.id, entry);
              return value;
            };
      return nodes[index]!.get(ref.id, options, this.#preludeFor(index), map);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #getAsync<T>(ref: KeyRef, options: GetOptions<T>): Promise<T | undefined> {
    const item = await this.#retrieveOne('get', ref, options);
    if (item !== undefined) {
      const entry = this.#entry(item);
      const value = this.#decode<T>(entry);
      this.#local?.set(ref.id, entry);
      return value;
    }
    if (options.loader === undefined) return undefined;
    const loaded = await options.loader(ref.user);
    if (loaded !== undefined) await this.set(ref.user, loaded, { ...options, ttl: options.ttl });
    return loaded;
  }

  /** The value and cas unique of `key`, or undefined. */
  async gets<T = unknown>(key: string, options: CallOptions = {}): Promise<CasValue<T> | undefined> {
    const ref = this.#ref(key, options.groupKey);
    const item = await this.#retrieveOne('gets', ref, options);
    if (item === undefined) return undefined;
    return { value: this.#decode<T>(this.#entry(item)), cas: item.cas ?? 0n };
  }

  /** Get-and-touch: the value, with the TTL reset to `ttl`. */
  async gat<T = unknown>(key: string, ttl: number, options: CallOptions = {}): Promise<T | undefined> {
    const ref = this.#ref(key, options.groupKey);
    this.#local?.delete(ref.id);
    const item = await this.#retrieveOne('gat', ref, options, ttlOf(ttl));
    return item === undefined ? undefined : this.#decode<T>(this.#entry(item));
  }

  /** Get-and-touch with the cas unique. */
  async gats<T = unknown>(key: string, ttl: number, options: CallOptions = {}): Promise<CasValue<T> | undefined> {
    const ref = this.#ref(key, options.groupKey);
    this.#local?.delete(ref.id);
    const item = await this.#retrieveOne('gats', ref, options, ttlOf(ttl));
    if (item === undefined) return undefined;
    return { value: this.#decode<T>(this.#entry(item)), cas: item.cas ?? 0n };
  }

  /** The value with its cas, flags and remaining TTL (meta `mg`; one round trip). */
  async getItem<T = unknown>(key: string, options: CallOptions = {}): Promise<ItemInfo<T> | undefined> {
    const ref = this.#ref(key, options.groupKey);
    if (this.#readyNow() === undefined) await this.#ready();
    if (!this.#meta) {
      const item = await this.#retrieveOne('gets', ref, options);
      if (item === undefined) return undefined;
      return { value: this.#decode<T>(this.#entry(item)), cas: item.cas, flags: item.flags, ttl: undefined };
    }
    const r = await this.#exec(ref, (codec) => codec.metaGet!(ref.wire, ['v', 'f', 'c', 't']), options, true);
    if (!r.hit || r.value === undefined) return undefined;
    const flags = r.flags.flags ?? 0;
    return {
      value: this.#decode<T>(this.#entry({ value: r.value, flags })),
      cas: r.flags.cas,
      flags,
      ttl: r.flags.ttl,
    };
  }

  /** The items of `refs` (aligned with them; undefined for a miss): one request per server, in parallel. */
  async #retrieveMany(
    command: RetrievalCommand,
    refs: readonly KeyRef[],
    options: CallOptions,
  ): Promise<(RawItem | undefined)[]> {
    if (refs.length === 0) return [];
    const nodes = this.#readyNow() ?? (await this.#ready());
    const keys = (positions: readonly number[] | undefined): string[] => {
      const n = positions === undefined ? refs.length : positions.length;
      const out = new Array<string>(n);
      for (let i = 0; i < n; i++) out[i] = refs[positions === undefined ? i : positions[i]!]!.id;
      return out;
    };
    if (nodes.length === 1 && !this.#o.failover) {
      // One server: the request's items are already in the order of `refs`.
      return this.#send(nodes, 0, this.#codec!.retrieve(command, keys(undefined)), options, true);
    }
    const found = new Array<RawItem | undefined>(refs.length);
    await this.#fanOut(refs, async (nodes, index, positions) => {
      const items = await this.#send(nodes, index, this.#codec!.retrieve(command, keys(positions)), options, true);
      for (let i = 0; i < positions.length; i++) found[positions[i]!] = items[i];
    });
    return found;
  }

  #refs(keys: Iterable<string>, groupKey: string | undefined): KeyRef[] {
    const seen = new Set<string>();
    const refs: KeyRef[] = [];
    for (const key of keys) {
      if (seen.has(key)) continue;
      seen.add(key);
      refs.push(this.#ref(key, groupKey));
    }
    return refs;
  }

  /**
   * The hits among `keys`, by key: one pipelined request per server, all servers in parallel. With `loader`: the
   * misses are loaded (in one call), stored and included.
   *
   * @throws MemcacheError the first server error (with `failover`, unreachable servers' keys go to the next server)
   */
  async getMulti<T = unknown>(keys: Iterable<string>, options: GetMultiOptions<T> = {}): Promise<Map<string, T>> {
    // Keys are not de-duplicated: a key given twice is asked for twice (the result holds it once).
    const out = new Map<string, T>();
    const local = this.#local;
    const remote: KeyRef[] = [];
    for (const key of keys) {
      const ref = this.#ref(key, options.groupKey);
      const cached = local?.get(ref.id);
      if (cached !== undefined) out.set(ref.user, this.#decode<T>(cached));
      else remote.push(ref);
    }
    const found = await this.#retrieveMany('get', remote, options);
    const missing: string[] = [];
    for (let i = 0; i < remote.length; i++) {
      const ref = remote[i]!;
      const item = found[i];
      if (item === undefined) {
        missing.push(ref.user);
      } else if (local === undefined) {
        out.set(ref.user, this.#decodeItem<T>(item));
      } else {
        const entry = this.#entry(item);
        out.set(ref.user, this.#decode<T>(entry));
        local.set(ref.id, entry);
      }
    }
    if (options.loader !== undefined && missing.length > 0) {
      const wanted = new Set(missing.filter((k) => !out.has(k)));
      const loaded = wanted.size === 0 ? undefined : await options.loader([...wanted]);
      if (loaded !== undefined) {
        const entries = loaded instanceof Map ? [...loaded] : Object.entries(loaded);
        const toStore = entries.filter(([k, v]) => wanted.has(k) && v !== undefined);
        for (const [k, v] of toStore) out.set(k, v);
        if (toStore.length > 0) await this.setMulti(toStore, { ...options, ttl: options.ttl });
      }
    }
    return out;
  }

  /** Like {@link getMulti}, with cas uniques. */
  async getsMulti<T = unknown>(keys: Iterable<string>, options: CallOptions = {}): Promise<Map<string, CasValue<T>>> {
    const refs: KeyRef[] = [];
    for (const key of keys) refs.push(this.#ref(key, options.groupKey));
    const found = await this.#retrieveMany('gets', refs, options);
    const out = new Map<string, CasValue<T>>();
    for (let i = 0; i < refs.length; i++) {
      const item = found[i];
      if (item !== undefined) out.set(refs[i]!.user, { value: this.#decodeItem<T>(item), cas: item.cas ?? 0n });
    }
    return out;
  }

  /**
   * Starts a multi-get now and returns at once ("delayed fetch"): do other work, then await `handle.result`.
   *
   * @example
   * const handle = cache.fetchLater(['a', 'b', 'c']);
   * const rows = await db.query('…'); // meanwhile, the gets are on the wire
   * const hits = await handle.result;
   */
  fetchLater<T = unknown>(keys: Iterable<string>, options: CallOptions = {}): FetchHandle<T> {
    const list = [...keys];
    const result = this.getMulti<T>(list, options);
    result.catch(() => {});
    return { keys: list, result };
  }

  // ---- storage -------------------------------------------------------------------------------------------------

  async #store(
    command: StorageCommand,
    key: string,
    value: SerializedValue,
    options: SetOptions,
    cas?: bigint,
  ): Promise<StoreOutcome> {
    const ref = this.#ref(key, options.groupKey);
    const exptime = ttlOf(options.ttl);
    this.#local?.delete(ref.id);
    if (options.noreply && command === 'set') {
      const nodes = this.#readyNow() ?? (await this.#ready());
      const index = this.#route(nodes, ref.route);
      this.#buffer(nodes, index, { op: 'set', key: ref.wire, value: value.data, flags: value.flags, exptime });
      return 'stored';
    }
    const outcome = await this.#exec(
      ref,
      (codec) => codec.store(command, ref.wire, value.data, value.flags, exptime, cas),
      options,
      false,
    );
    return outcome;
  }

  /** Stores `value` (serialized, maybe compressed). Resolves true when stored. */
  async set(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return (await this.#store('set', key, this.#encode(value), options)) === 'stored';
  }

  /** Stores `value` only if `key` is missing. Resolves false when it exists. */
  async add(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return (await this.#store('add', key, this.#encode(value), options)) === 'stored';
  }

  /** Stores `value` only if `key` exists. Resolves false when it is missing. */
  async replace(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return (await this.#store('replace', key, this.#encode(value), options)) === 'stored';
  }

  /** Appends raw bytes to the stored value. Resolves false when `key` is missing. */
  async append(key: string, data: string | Uint8Array, options: CallOptions = {}): Promise<boolean> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    return (await this.#store('append', key, { data: bytes, flags: 0 }, options)) === 'stored';
  }

  /** Prepends raw bytes to the stored value. Resolves false when `key` is missing. */
  async prepend(key: string, data: string | Uint8Array, options: CallOptions = {}): Promise<boolean> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    return (await this.#store('prepend', key, { data: bytes, flags: 0 }, options)) === 'stored';
  }

  /**
   * Compare-and-swap: stores `value` only if the item still has the cas unique `cas` (from {@link gets}).
   * Resolves false when it changed or was deleted meanwhile.
   */
  async cas(key: string, value: unknown, cas: bigint, options: SetOptions = {}): Promise<boolean> {
    if (typeof cas !== 'bigint') throw invalid('cas must be a bigint (from gets())');
    return (await this.#store('cas', key, this.#encode(value), { ...options, noreply: false }, cas)) === 'stored';
  }

  /** Deletes `key`. Resolves false when it was missing (true at once with `noreply`). */
  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    const ref = this.#ref(key, options.groupKey);
    this.#local?.delete(ref.id);
    if (options.noreply) {
      const nodes = this.#readyNow() ?? (await this.#ready());
      this.#buffer(nodes, this.#route(nodes, ref.route), { op: 'delete', key: ref.wire });
      return true;
    }
    return this.#exec(ref, (codec) => codec.delete(ref.wire), options, false);
  }

  async #counter(command: 'incr' | 'decr', key: string, delta: number | bigint, options: CounterOptions) {
    const ref = this.#ref(key, options.groupKey);
    const d = toBigInt(delta, 'delta');
    this.#local?.delete(ref.id);
    const create =
      options.initial === undefined
        ? undefined
        : { initial: toBigInt(options.initial, 'initial'), exptime: ttlOf(options.ttl) };
    const n = await this.#exec(ref, (codec) => codec.arithmetic(command, ref.wire, d, create), options, false);
    return n === undefined ? undefined : Number(n);
  }

  /**
   * Adds `delta` to a decimal counter; resolves the new value, or undefined when `key` is missing (unless
   * `initial` is given). Counters are 64-bit unsigned and wrap; results above 2^53 are rounded.
   */
  incr(key: string, delta: number | bigint = 1, options: CounterOptions = {}): Promise<number | undefined> {
    return this.#counter('incr', key, delta, options);
  }

  /** Subtracts `delta` from a counter (memcached stops at 0). */
  decr(key: string, delta: number | bigint = 1, options: CounterOptions = {}): Promise<number | undefined> {
    return this.#counter('decr', key, delta, options);
  }

  /** Sets a new TTL. Resolves false when `key` is missing. */
  async touch(key: string, ttl: number, options: CallOptions = {}): Promise<boolean> {
    const ref = this.#ref(key, options.groupKey);
    this.#local?.delete(ref.id);
    return this.#exec(ref, (codec) => codec.touch(ref.wire, ttlOf(ttl)), options, false);
  }

  /**
   * Stores many values: one pipelined request per server, all in parallel. Resolves whether each was stored.
   */
  async setMulti(
    entries: Map<string, unknown> | Iterable<readonly [string, unknown]> | Record<string, unknown>,
    options: SetOptions = {},
  ): Promise<Map<string, boolean>> {
    const list: (readonly [string, unknown])[] =
      entries instanceof Map || Symbol.iterator in Object(entries)
        ? [...(entries as Iterable<readonly [string, unknown]>)]
        : Object.entries(entries);
    const exptime = ttlOf(options.ttl);
    const values = new Map<string, SerializedValue>();
    for (const [k, v] of list) values.set(k, this.#encode(v));
    const refs = this.#refs(values.keys(), options.groupKey);
    for (const ref of refs) this.#local?.delete(ref.id);
    const out = new Map<string, boolean>();
    if (options.noreply) {
      const nodes = this.#readyNow() ?? (await this.#ready());
      for (const ref of refs) {
        const v = values.get(ref.user)!;
        const index = this.#route(nodes, ref.route);
        this.#buffer(nodes, index, { op: 'set', key: ref.wire, value: v.data, flags: v.flags, exptime });
        out.set(ref.user, true);
      }
      return out;
    }
    await this.#fanOut(refs, async (nodes, index, positions) => {
      const codec = this.#codec!;
      const group = positions.map((p) => refs[p]!);
      const request = composite(
        'set',
        group.map((ref) => {
          const v = values.get(ref.user)!;
          return codec.store('set', ref.wire, v.data, v.flags, exptime);
        }),
      );
      const settled = await this.#send(nodes, index, request, options, false);
      this.#collect(group, settled, (o) => o === 'stored', out);
    });
    return out;
  }

  /** Deletes many keys (one pipelined request per server). Resolves whether each existed. */
  async deleteMulti(keys: Iterable<string>, options: DeleteOptions = {}): Promise<Map<string, boolean>> {
    const refs = this.#refs(keys, options.groupKey);
    for (const ref of refs) this.#local?.delete(ref.id);
    const out = new Map<string, boolean>();
    if (options.noreply) {
      const nodes = this.#readyNow() ?? (await this.#ready());
      for (const ref of refs) {
        this.#buffer(nodes, this.#route(nodes, ref.route), { op: 'delete', key: ref.wire });
        out.set(ref.user, true);
      }
      return out;
    }
    await this.#fanOut(refs, async (nodes, index, positions) => {
      const codec = this.#codec!;
      const group = positions.map((p) => refs[p]!);
      const request = composite(
        'delete',
        group.map((ref) => codec.delete(ref.wire)),
      );
      const settled = await this.#send(nodes, index, request, options, false);
      this.#collect(group, settled, (deleted) => deleted, out);
    });
    return out;
  }

  #collect<R>(group: KeyRef[], settled: Settled<R>[], ok: (r: R) => boolean, out: Map<string, boolean>): void {
    for (let i = 0; i < group.length; i++) {
      const s = settled[i]!;
      if (!s.ok) throw s.error;
      out.set(group[i]!.user, ok(s.value));
    }
  }

  // ---- stampede protection -------------------------------------------------------------------------------------

  /**
   * The cached value of `key`, or `loader()`'s, stored for `ttl` seconds — with stampede protection: of all the
   * clients missing the key at once, exactly one runs the loader (memcached's meta win flag); the others wait for
   * its value. With `staleTtl`, once the value is older than `ttl` one caller recomputes it while everyone else
   * keeps getting the old value for up to `staleTtl` more seconds. Concurrent calls in this process share one
   * computation.
   *
   * Over the binary protocol (SASL) there are no meta commands: the computer is the caller that `add`s
   * `<key>.lock`, the others poll for its value, and `staleTtl` is ignored.
   */
  getOrSet<T>(key: string, loader: (key: string) => T | Promise<T>, options: GetOrSetOptions): Promise<T> {
    const ref = this.#ref(key, options.groupKey);
    const running = this.#loads.get(ref.id);
    if (running !== undefined) return running as Promise<T>;
    const promise = this.#getOrSet(ref, loader, options).finally(() => this.#loads.delete(ref.id));
    this.#loads.set(ref.id, promise);
    return promise;
  }

  async #getOrSet<T>(ref: KeyRef, loader: (key: string) => T | Promise<T>, options: GetOrSetOptions): Promise<T> {
    const local = this.#local?.get(ref.id);
    if (local !== undefined) return this.#decode<T>(local);
    const ttl = ttlOf(options.ttl);
    const staleTtl = ttlOf(options.staleTtl);
    if (this.#readyNow() === undefined) await this.#ready();
    if (!this.#meta) return this.#getOrSetWithLock(ref, loader, options, ttl);
    const lockTtl = ttlOf(options.lockTtl ?? 30);
    const flags = ['v', 'f', 'c', `N${lockTtl}`];
    if (staleTtl > 0) flags.push(`R${staleTtl}`);
    const deadline = Date.now() + (options.waitMs ?? this.#o.timeout);
    let wait = 10;
    for (;;) {
      const r: MetaGetResult = await this.#exec(ref, (codec) => codec.metaGet!(ref.wire, flags), options, true);
      const f = r.flags;
      const hasValue =
        r.hit && r.value !== undefined && !(r.value.length === 0 && (f.flags ?? 0) === 0 && (f.win || f.alreadyWon));
      if (f.win || !r.hit) {
        // Ours to compute: a placeholder we created (N), an expiring value (R) or a stale one (X).
        return this.#recompute(ref, loader, options, ttl + staleTtl, r.hit && !hasValue ? f.cas : undefined);
      }
      if (hasValue) {
        const entry = this.#entry({ value: r.value!, flags: f.flags ?? 0 });
        const value = this.#decode<T>(entry);
        if (!f.stale && !f.alreadyWon) this.#local?.set(ref.id, entry);
        return value;
      }
      // Someone else is computing it and there is nothing to serve meanwhile: wait, then look again.
      if (Date.now() + wait > deadline) return this.#recompute(ref, loader, options, ttl + staleTtl, undefined);
      await sleep(wait, options.signal);
      wait = Math.min(wait * 2, 100);
    }
  }

  /**
   * getOrSet without meta commands (binary protocol): the caller that `add`s the `<key>.lock` key computes; the
   * others poll for the value. No stale serving.
   */
  async #getOrSetWithLock<T>(
    ref: KeyRef,
    loader: (key: string) => T | Promise<T>,
    options: GetOrSetOptions,
    ttl: number,
  ): Promise<T> {
    const lockId = `${ref.id}.lock`;
    const lock = lockId.length <= 250 ? new KeyRef(`${ref.user}.lock`, lockId, ref.route) : undefined;
    const lockTtl = ttlOf(options.lockTtl ?? 30);
    const deadline = Date.now() + (options.waitMs ?? this.#o.timeout);
    let wait = 10;
    for (;;) {
      const item = await this.#retrieveOne('get', ref, options);
      if (item !== undefined) return this.#decode<T>(this.#entry(item));
      const won =
        lock === undefined ||
        Date.now() + wait > deadline ||
        (await this.#exec(
          lock,
          (codec) => codec.store('add', lock.wire, Buffer.from('1', 'latin1'), 0, lockTtl),
          options,
          false,
        )) === 'stored';
      if (won) {
        try {
          const value = await loader(ref.user);
          const encoded = this.#encode(value);
          await this.#exec(
            ref,
            (codec) => codec.store('set', ref.wire, encoded.data, encoded.flags, ttl),
            options,
            false,
          );
          return value;
        } finally {
          if (lock !== undefined)
            await this.#exec(lock, (codec) => codec.delete(lock.wire), options, false).catch(() => {});
        }
      }
      await sleep(wait, options.signal);
      wait = Math.min(wait * 2, 100);
    }
  }

  async #recompute<T>(
    ref: KeyRef,
    loader: (key: string) => T | Promise<T>,
    options: GetOrSetOptions,
    exptime: number,
    placeholderCas: bigint | undefined,
  ): Promise<T> {
    let value: T;
    try {
      value = await loader(ref.user);
    } catch (err) {
      // Let the next caller win at once instead of waiting for the placeholder to expire.
      if (placeholderCas !== undefined) {
        await this.#exec(ref, (codec) => codec.metaDelete!(ref.wire, [`C${placeholderCas}`]), options, false).catch(
          () => {},
        );
      }
      throw err;
    }
    const encoded = this.#encode(value);
    await this.#exec(
      ref,
      (codec) => codec.metaSet!(ref.wire, encoded.data, [`T${exptime}`, `F${encoded.flags}`]),
      options,
      false,
    );
    return value;
  }

  /**
   * Marks `key` stale instead of deleting it (meta `md … I`): the next {@link getOrSet} recomputes it while the
   * other callers keep getting the old value, for at most `staleTtl` seconds (default 30). Resolves false when
   * the key is missing. Over the binary protocol this is a plain delete.
   */
  async markStale(key: string, options: CallOptions & { staleTtl?: number } = {}): Promise<boolean> {
    const ref = this.#ref(key, options.groupKey);
    this.#local?.delete(ref.id);
    if (this.#readyNow() === undefined) await this.#ready();
    if (!this.#meta) return this.#exec(ref, (codec) => codec.delete(ref.wire), options, false);
    const staleTtl = ttlOf(options.staleTtl ?? 30);
    return this.#exec(ref, (codec) => codec.metaDelete!(ref.wire, ['I', `T${staleTtl}`]), options, false);
  }

  // ---- namespaces ----------------------------------------------------------------------------------------------

  /**
   * A view whose keys live in namespace `name`: each key is stored as `<name>:<version>:<key>`, the version being
   * read from the key `<name>:ns`. {@link invalidateNamespace} bumps the version, which orphans every key of the
   * namespace at once (they age out of the LRU) — "delete by namespace" in one write.
   */
  namespace(name: string): MemcacheNamespace {
    encodeKey(`${name}:ns`, this.#o.prefix);
    return new MemcacheNamespace(this, name, (options) => this.#namespaceVersion(name, options));
  }

  /** Bumps the version of namespace `name`: every key of it is gone for its views. */
  async invalidateNamespace(name: string, options: CallOptions = {}): Promise<void> {
    const versionKey = `${name}:ns`;
    this.#namespaceVersions.delete(name);
    const bumped = await this.incr(versionKey, 1, options);
    if (bumped === undefined) await this.#createNamespaceVersion(versionKey, options);
  }

  async #createNamespaceVersion(versionKey: string, options: CallOptions): Promise<string> {
    // A fresh number (not 1) so that a version key evicted and re-created never resurrects old keys.
    const initial = String(Date.now());
    const ref = this.#ref(versionKey);
    const stored = await this.#exec(
      ref,
      (codec) => codec.store('add', ref.wire, Buffer.from(initial, 'latin1'), 1, 0),
      options,
      false,
    );
    if (stored === 'stored') return initial;
    const item = await this.#retrieveOne('get', ref, options);
    return item === undefined ? initial : item.value.toString('latin1');
  }

  /** The current version of namespace `name`, shared by concurrent callers. */
  async #namespaceVersion(name: string, options: CallOptions = {}): Promise<string> {
    const cached = this.#namespaceVersions.get(name);
    if (cached !== undefined && cached.until > Date.now()) return cached.version;
    const loadKey = `\0ns:${name}`;
    let running = this.#loads.get(loadKey) as Promise<string> | undefined;
    if (running === undefined) {
      running = (async () => {
        const versionKey = `${name}:ns`;
        const item = await this.#retrieveOne('get', this.#ref(versionKey), options);
        const version =
          item === undefined ? await this.#createNamespaceVersion(versionKey, options) : item.value.toString('latin1');
        if (this.#o.namespaceVersionTtlMs > 0) {
          this.#namespaceVersions.set(name, { version, until: Date.now() + this.#o.namespaceVersionTtlMs });
        }
        return version;
      })().finally(() => this.#loads.delete(loadKey));
      this.#loads.set(loadKey, running);
    }
    return running;
  }

  // ---- *ByKey --------------------------------------------------------------------------------------------------

  /** {@link get} on the server chosen by `groupKey` (libmemcached's `memcached_get_by_key`). */
  getByKey<T = unknown>(groupKey: string, key: string, options: GetOptions<T> = {}): Promise<T | undefined> {
    return this.get<T>(key, { ...options, groupKey });
  }

  /** {@link getMulti} with every key on the server chosen by `groupKey`. */
  getMultiByKey<T = unknown>(groupKey: string, keys: Iterable<string>, options: GetMultiOptions<T> = {}) {
    return this.getMulti<T>(keys, { ...options, groupKey });
  }

  /** {@link set} on the server chosen by `groupKey`. */
  setByKey(groupKey: string, key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return this.set(key, value, { ...options, groupKey });
  }

  /** {@link add} on the server chosen by `groupKey`. */
  addByKey(groupKey: string, key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return this.add(key, value, { ...options, groupKey });
  }

  /** {@link replace} on the server chosen by `groupKey`. */
  replaceByKey(groupKey: string, key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return this.replace(key, value, { ...options, groupKey });
  }

  /** {@link delete} on the server chosen by `groupKey`. */
  deleteByKey(groupKey: string, key: string, options: DeleteOptions = {}): Promise<boolean> {
    return this.delete(key, { ...options, groupKey });
  }

  /** {@link incr} on the server chosen by `groupKey`. */
  incrByKey(groupKey: string, key: string, delta: number | bigint = 1, options: CounterOptions = {}) {
    return this.incr(key, delta, { ...options, groupKey });
  }

  /** {@link touch} on the server chosen by `groupKey`. */
  touchByKey(groupKey: string, key: string, ttl: number, options: CallOptions = {}): Promise<boolean> {
    return this.touch(key, ttl, { ...options, groupKey });
  }

  // ---- every server --------------------------------------------------------------------------------------------

  async #everyServer<T>(
    build: (codec: CommandCodec) => WireRequest<T>,
    options: CallOptions,
  ): Promise<Map<string, T | MemcacheError>> {
    const nodes = this.#readyNow() ?? (await this.#ready());
    const out = new Map<string, T | MemcacheError>();
    await Promise.all(
      nodes.map(async (node, index) => {
        try {
          out.set(node.name, await this.#send(nodes, index, build(this.#codec!), options, true));
        } catch (err) {
          if (!(err instanceof MemcacheError)) throw err;
          out.set(node.name, err);
        }
      }),
    );
    return new Map(nodes.map((n) => [n.name, out.get(n.name)!]));
  }

  /** `stats [group]` of every server, by `host:port` (a server that failed maps to its error). */
  stats(group?: string, options: CallOptions = {}): Promise<Map<string, Record<string, string> | MemcacheError>> {
    return this.#everyServer((codec) => codec.stats(group), options);
  }

  /** The version of every server, by `host:port` (a server that failed maps to its error). */
  version(options: CallOptions = {}): Promise<Map<string, string | MemcacheError>> {
    return this.#everyServer((codec) => codec.version(), options);
  }

  /**
   * `flush_all [delay]` on every server (and clears the local cache).
   *
   * @throws MemcacheError the first server's error
   */
  async flush(delay = 0, options: CallOptions = {}): Promise<void> {
    this.#local?.clear();
    const results = await this.#everyServer((codec) => codec.flushAll(ttlOf(delay)), options);
    for (const r of results.values()) if (r instanceof MemcacheError) throw r;
  }

  // ---- lifecycle -----------------------------------------------------------------------------------------------

  /** Sends the buffered writes, waits for every request in flight, then closes the connections. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#loading?.catch(() => {});
      const nodes = this.#nodes ?? [];
      await Promise.allSettled([...this.#buffers].map(([index, buffer]) => this.#flushBuffer(nodes, index, buffer)));
      await Promise.all(nodes.map((n) => n.close()));
    })();
    return this.#closed;
  }

  /** Fails every pending request now (`MEMCACHED_ERR_CLOSED`, cause `error`) and closes the connections. */
  destroy(error?: Error): void {
    this.#destroyed = true;
    for (const buffer of this.#buffers.values()) {
      buffer.cancel?.();
      buffer.cancel = undefined;
      buffer.writes = [];
    }
    for (const n of this.#nodes ?? []) n.destroy(error);
  }
}

/** A namespaced view of a {@link MemcacheClient} (see {@link MemcacheClient.namespace}). */
export class MemcacheNamespace {
  readonly #client: MemcacheClient;
  readonly #version: (options: CallOptions) => Promise<string>;
  /** The namespace's name. */
  readonly name: string;

  /** Made by {@link MemcacheClient.namespace}. */
  constructor(client: MemcacheClient, name: string, version: (options: CallOptions) => Promise<string>) {
    this.#client = client;
    this.#version = version;
    this.name = name;
  }

  async #key(key: string, options: CallOptions): Promise<string> {
    return `${this.name}:${await this.#version(options)}:${key}`;
  }

  async #keys(keys: Iterable<string>, options: CallOptions): Promise<{ full: string[]; back: Map<string, string> }> {
    const version = await this.#version(options);
    const full: string[] = [];
    const back = new Map<string, string>();
    for (const k of keys) {
      const f = `${this.name}:${version}:${k}`;
      full.push(f);
      back.set(f, k);
    }
    return { full, back };
  }

  #unmap<V>(m: Map<string, V>, back: Map<string, string>): Map<string, V> {
    const out = new Map<string, V>();
    for (const [k, v] of m) out.set(back.get(k) ?? k, v);
    return out;
  }

  /** {@link MemcacheClient.get} in this namespace. */
  async get<T = unknown>(key: string, options: GetOptions<T> = {}): Promise<T | undefined> {
    const full = await this.#key(key, options);
    const loader = options.loader;
    return this.#client.get<T>(full, loader === undefined ? options : { ...options, loader: () => loader(key) });
  }

  /** {@link MemcacheClient.set} in this namespace. */
  async set(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return this.#client.set(await this.#key(key, options), value, options);
  }

  /** {@link MemcacheClient.add} in this namespace. */
  async add(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return this.#client.add(await this.#key(key, options), value, options);
  }

  /** {@link MemcacheClient.replace} in this namespace. */
  async replace(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    return this.#client.replace(await this.#key(key, options), value, options);
  }

  /** {@link MemcacheClient.delete} in this namespace. */
  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    return this.#client.delete(await this.#key(key, options), options);
  }

  /** {@link MemcacheClient.incr} in this namespace. */
  async incr(key: string, delta: number | bigint = 1, options: CounterOptions = {}): Promise<number | undefined> {
    return this.#client.incr(await this.#key(key, options), delta, options);
  }

  /** {@link MemcacheClient.decr} in this namespace. */
  async decr(key: string, delta: number | bigint = 1, options: CounterOptions = {}): Promise<number | undefined> {
    return this.#client.decr(await this.#key(key, options), delta, options);
  }

  /** {@link MemcacheClient.touch} in this namespace. */
  async touch(key: string, ttl: number, options: CallOptions = {}): Promise<boolean> {
    return this.#client.touch(await this.#key(key, options), ttl, options);
  }

  /** {@link MemcacheClient.getMulti} in this namespace. */
  async getMulti<T = unknown>(keys: Iterable<string>, options: CallOptions = {}): Promise<Map<string, T>> {
    const { full, back } = await this.#keys(keys, options);
    return this.#unmap(await this.#client.getMulti<T>(full, options), back);
  }

  /** {@link MemcacheClient.setMulti} in this namespace. */
  async setMulti(
    entries: Map<string, unknown> | Iterable<readonly [string, unknown]>,
    options: SetOptions = {},
  ): Promise<Map<string, boolean>> {
    const list = [...entries];
    const { full, back } = await this.#keys(
      list.map(([k]) => k),
      options,
    );
    const mapped = list.map(([, v], i) => [full[i]!, v] as const);
    return this.#unmap(await this.#client.setMulti(mapped, options), back);
  }

  /** {@link MemcacheClient.deleteMulti} in this namespace. */
  async deleteMulti(keys: Iterable<string>, options: DeleteOptions = {}): Promise<Map<string, boolean>> {
    const { full, back } = await this.#keys(keys, options);
    return this.#unmap(await this.#client.deleteMulti(full, options), back);
  }

  /** {@link MemcacheClient.getOrSet} in this namespace. */
  async getOrSet<T>(key: string, loader: (key: string) => T | Promise<T>, options: GetOrSetOptions): Promise<T> {
    return this.#client.getOrSet(await this.#key(key, options), () => loader(key), options);
  }

  /** Drops every key of this namespace ({@link MemcacheClient.invalidateNamespace}). */
  invalidate(options: CallOptions = {}): Promise<void> {
    return this.#client.invalidateNamespace(this.name, options);
  }
}
