/**
 * Key → server distribution for the memcached client, bit-compatible with the clients a Node app shares a fleet with:
 *
 * - `'ketama'`: libmemcached's weighted ketama continuum, as php-memcached builds it with
 *   `Memcached::OPT_LIBKETAMA_COMPATIBLE => true` (`MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`: MD5 key hash,
 *   `MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED`), also what pylibmc's `ketama` and Perl's Cache::Memcached::libmemcached
 *   produce.
 * - `'crc32'`: Cache::Memcached (Perl) 1.30: `(crc32(key) >> 16) & 0x7fff` into a bucket list where each server
 *   appears `weight` times, with its rehash-on-dead-server loop.
 * - `'modulo'`: libmemcached's `MEMCACHED_DISTRIBUTION_MODULA`: `hash(key) % servers.length`, weights ignored.
 *
 * Pure functions and tables: no sockets, no timers. Which servers are dead is the caller's knowledge, passed in as a
 * predicate to {@link Distribution.serverForWithout}.
 *
 * @module
 */

import { hash } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';

/** A server as the distribution sees it: only `host`, `port` and `weight` enter the hash. */
export interface DistributionServer {
  /** Exactly as configured in the other clients (`'10.0.1.1'`, `'cache-a'`): the string is hashed, not resolved. */
  host: string;
  port: number;
  /** Relative share of keys; see {@link createDistribution} for how each mode treats a missing or 0 weight. */
  weight?: number;
}

/** The distribution algorithms (see the module comment). */
export type DistributionMode = 'ketama' | 'crc32' | 'modulo';

/** The key hash of `'modulo'` mode, named after libmemcached's `Memcached::OPT_HASH` values. */
export type ModuloHash = 'md5' | 'crc32' | 'one-at-a-time';

/** Options of {@link createDistribution}. */
export interface DistributionOptions {
  /**
   * Key hash of `'modulo'` mode (ignored by the others): `'md5'` (the default, `HASH_MD5`), `'crc32'` (`HASH_CRC`,
   * which like Cache::Memcached keeps only bits 16..30) or `'one-at-a-time'` (`HASH_DEFAULT`, what php-memcached uses
   * when no option is set).
   */
  hash?: ModuloHash;
}

/** Maps keys to indexes into the server list it was created from. */
export interface Distribution {
  readonly mode: DistributionMode;
  /** Number of servers. */
  readonly size: number;
  /** Index of the server that owns `key` while every server is up. A string key is hashed as its UTF-8 bytes. */
  serverFor(key: string | Uint8Array): number;
  /**
   * Index of the server the original client would use for `key` while the servers for which `isDead(index)` is true
   * are out, or -1 when it would find none:
   *
   * - `'ketama'`: libmemcached's auto-eject (`OPT_REMOVE_FAILED_SERVERS`) rebuilds the continuum from the live servers
   *   only, so with unequal weights the survivors' point counts change too (not just "the next live point").
   * - `'crc32'`: Cache::Memcached's `get_sock` rehash: `hv += _hashfunc(tries . key)`, at most 20 tries in all.
   * - `'modulo'`: libmemcached has no failover for modula: the owner, or -1 when it is dead.
   */
  serverForWithout(key: string | Uint8Array, isDead: (index: number) => boolean): number;
}

/** libmemcached's `MEMCACHED_DEFAULT_PORT`: a server on it is named without `:port` on the continuum. */
export const MEMCACHED_DEFAULT_PORT = 11211;

/** `MEMCACHED_POINTS_PER_SERVER_KETAMA`: points per server of equal weight (40 MD5 digests × 4 points each). */
export const KETAMA_POINTS_PER_SERVER = 160;

/** Cache::Memcached `get_sock`'s bound on attempts (the first choice plus 19 rehashes). */
export const CRC32_MAX_TRIES = 20;

/** The bytes a key is hashed as. */
function keyBytes(key: string | Uint8Array): Uint8Array {
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

/** The MD5 digest of `data` (strings as UTF-8). */
export function md5(data: string | Uint8Array): Buffer {
  return hash('md5', data, 'buffer');
}

/** The standard CRC-32 (IEEE 802.3, as zlib and Perl's String::CRC32 compute it) of `data` (strings as UTF-8). */
export function crc32(data: string | Uint8Array): number {
  return zlibCrc32(data);
}

/** libhashkit's `HASH_MD5` key hash: the first 4 bytes of the MD5 digest, little-endian. */
export function md5Hash(key: string | Uint8Array): number {
  return md5(key).readUInt32LE(0);
}

/** Cache::Memcached's `_hashfunc` and libhashkit's `HASH_CRC`: `(crc32(key) >> 16) & 0x7fff`. */
export function crc32Hash(key: string | Uint8Array): number {
  return (zlibCrc32(key) >>> 16) & 0x7fff;
}

/**
 * libhashkit's `HASH_DEFAULT` (Jenkins one-at-a-time). libhashkit reads the key through a signed `char`, so bytes
 * 0x80..0xff enter sign-extended (0xffffff80..): replicated here, or non-ASCII keys would land elsewhere.
 */
export function oneAtATimeHash(key: string | Uint8Array): number {
  const bytes = keyBytes(key);
  let value = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    value = (value + (b < 0x80 ? b : b | 0xffffff00)) >>> 0;
    value = (value + (value << 10)) >>> 0;
    value = (value ^ (value >>> 6)) >>> 0;
  }
  value = (value + (value << 3)) >>> 0;
  value = (value ^ (value >>> 11)) >>> 0;
  return (value + (value << 15)) >>> 0;
}

/**
 * The string libmemcached hashes for a server's `index`-th digest on the continuum: `host-index` on the default port,
 * `host:port-index` otherwise. Port 0 counts as the default, as `memcached_server_add_with_weight` (php-memcached's
 * `addServer`) turns it into 11211 before the continuum is built.
 */
export function ketamaPointName(host: string, port: number, index: number): string {
  return port === MEMCACHED_DEFAULT_PORT || port === 0 ? `${host}-${index}` : `${host}:${port}-${index}`;
}

/**
 * Number of MD5 digests (4 points each) a server gets on a weighted continuum of `live` servers, as
 * `update_continuum` computes it: `floor(weight / totalWeight * 160 / 4 * live + 1e-10)`, in C `float` arithmetic.
 * Each step is rounded to single precision, as the C code does, so borderline products floor the same way.
 */
export function ketamaDigestCount(weight: number, totalWeight: number, live: number): number {
  const f = Math.fround;
  const pct = f(f(weight) / f(totalWeight));
  let x = f(pct * KETAMA_POINTS_PER_SERVER);
  x = f(x / 4);
  x = f(x * f(live));
  x = f(x + f(1e-10));
  return Math.floor(x);
}

/** libmemcached's server weight: 0 (php-memcached's `addServer` default) and missing mean 1. */
function ketamaWeight(server: DistributionServer): number {
  const w = server.weight ?? 1;
  return w > 0 ? Math.min(Math.floor(w), 0xffffffff) : 1;
}

/*
 * The continuum: every point is (value, server index), sorted by value then index, the order libmemcached's qsort
 * comparator gives. A key belongs to the first point whose value is >= the key's hash, wrapping past the end:
 *
 *   0 ─── p0 ─── p1 ─── … ─── pN-1 ─── 2^32-1
 *   hash ≤ p0 → p0;  p(i-1) < hash ≤ p(i) → p(i);  hash > pN-1 → p0 (wrap)
 *
 * A point is packed as value * 2^20 + index in a Float64Array (exact below 2^53), so one numeric typed-array sort
 * gives the (value, index) order without a comparator.
 */
const INDEX_SPAN = 2 ** 20;

/** A built continuum: parallel arrays of point values and owning server indexes. */
interface Continuum {
  readonly values: Uint32Array;
  readonly owners: Uint32Array;
}

function buildContinuum(servers: readonly DistributionServer[], alive: readonly boolean[]): Continuum {
  let live = 0;
  let totalWeight = 0;
  for (let i = 0; i < servers.length; i++) {
    if (!alive[i]) continue;
    live++;
    totalWeight += ketamaWeight(servers[i]!);
  }
  const packed: number[] = [];
  for (let i = 0; i < servers.length; i++) {
    if (!alive[i]) continue;
    const server = servers[i]!;
    const digests = ketamaDigestCount(ketamaWeight(server), totalWeight, live);
    for (let d = 0; d < digests; d++) {
      const digest = md5(ketamaPointName(server.host, server.port, d));
      // Four points per digest: bytes 0..3, 4..7, 8..11, 12..15, each little-endian.
      for (let a = 0; a < 16; a += 4) packed.push(digest.readUInt32LE(a) * INDEX_SPAN + i);
    }
  }
  const sorted = Float64Array.from(packed).sort();
  const values = new Uint32Array(sorted.length);
  const owners = new Uint32Array(sorted.length);
  for (let p = 0; p < sorted.length; p++) {
    const v = sorted[p]!;
    const owner = v % INDEX_SPAN;
    owners[p] = owner;
    values[p] = (v - owner) / INDEX_SPAN;
  }
  return { values, owners };
}

/** `dispatch_host`: the owner of the first point >= `h`, wrapping to the first point; -1 on an empty continuum. */
function lookup(continuum: Continuum, h: number): number {
  const { values, owners } = continuum;
  if (values.length === 0) return -1;
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! < h) lo = mid + 1;
    else hi = mid;
  }
  return owners[lo === values.length ? 0 : lo]!;
}

/** Rebuilt continua kept per dead set; a fleet rarely has more than a few distinct outages at once. */
const MAX_CACHED_CONTINUA = 16;

class KetamaDistribution implements Distribution {
  readonly mode = 'ketama';
  readonly size: number;
  readonly #servers: readonly DistributionServer[];
  readonly #full: Continuum;
  readonly #withoutCache = new Map<string, Continuum>();

  constructor(servers: readonly DistributionServer[]) {
    this.size = servers.length;
    this.#servers = servers;
    this.#full = buildContinuum(
      servers,
      servers.map(() => true),
    );
  }

  serverFor(key: string | Uint8Array): number {
    // `_generate_hash_wrapper` skips hashing for a single server.
    return this.size === 1 ? 0 : lookup(this.#full, md5Hash(key));
  }

  serverForWithout(key: string | Uint8Array, isDead: (index: number) => boolean): number {
    const alive: boolean[] = [];
    let signature = '';
    for (let i = 0; i < this.size; i++) {
      const up = !isDead(i);
      alive.push(up);
      if (!up) signature += `${i},`;
    }
    if (signature === '') return this.serverFor(key);
    let continuum = this.#withoutCache.get(signature);
    if (continuum === undefined) {
      continuum = buildContinuum(this.#servers, alive);
      if (this.#withoutCache.size >= MAX_CACHED_CONTINUA) this.#withoutCache.clear();
      this.#withoutCache.set(signature, continuum);
    }
    if (continuum.values.length === 0) return -1;
    // With one server configured libmemcached answers 0 without hashing; it is dead here, handled above.
    return lookup(continuum, md5Hash(key));
  }
}

class Crc32BucketDistribution implements Distribution {
  readonly mode = 'crc32';
  readonly size: number;
  /** Server index per bucket: each server repeated `weight` times, in list order (`init_buckets`). */
  readonly #buckets: Uint32Array;

  constructor(servers: readonly DistributionServer[]) {
    this.size = servers.length;
    const buckets: number[] = [];
    servers.forEach((server, index) => {
      // Perl's `for (1..$weight)`: a fractional weight counts its integer part, 0 adds no bucket.
      const weight = server.weight === undefined ? 1 : Math.floor(server.weight);
      for (let w = 0; w < weight; w++) buckets.push(index);
    });
    if (buckets.length === 0) throw new RangeError('crc32 distribution needs at least one server with weight >= 1');
    this.#buckets = Uint32Array.from(buckets);
  }

  serverFor(key: string | Uint8Array): number {
    return this.#buckets[crc32Hash(key) % this.#buckets.length]!;
  }

  serverForWithout(key: string | Uint8Array, isDead: (index: number) => boolean): number {
    const buckets = this.#buckets;
    let hv = crc32Hash(key);
    let realKey: Uint8Array | undefined;
    for (let tries = 1; tries <= CRC32_MAX_TRIES; tries++) {
      const server = buckets[hv % buckets.length]!;
      if (!isDead(server)) return server;
      // "stupid, but works": the attempt number's decimal digits prepended to the key.
      realKey ??= keyBytes(key);
      hv += crc32Hash(Buffer.concat([Buffer.from(String(tries), 'latin1'), realKey]));
    }
    return -1;
  }
}

class ModuloDistribution implements Distribution {
  readonly mode = 'modulo';
  readonly size: number;
  readonly #hash: (key: string | Uint8Array) => number;

  constructor(servers: readonly DistributionServer[], hashName: ModuloHash) {
    this.size = servers.length;
    this.#hash = hashName === 'md5' ? md5Hash : hashName === 'crc32' ? crc32Hash : oneAtATimeHash;
  }

  serverFor(key: string | Uint8Array): number {
    return this.size === 1 ? 0 : this.#hash(key) % this.size;
  }

  serverForWithout(key: string | Uint8Array, isDead: (index: number) => boolean): number {
    const server = this.serverFor(key);
    return isDead(server) ? -1 : server;
  }
}

const MODULO_HASHES: readonly ModuloHash[] = ['md5', 'crc32', 'one-at-a-time'];

/**
 * Creates the key → server map of `mode` over `servers` (an index into `servers` comes back). List the servers in the
 * same order as the other clients do: every mode depends on it.
 *
 * Weights follow each original: `'ketama'` treats a missing or 0 weight as 1 (libmemcached) and splits 160 points per
 * server in proportion; `'crc32'` repeats a server `weight` times (missing is 1, 0 means no bucket, as in Perl);
 * `'modulo'` ignores weights (libmemcached).
 *
 * @example
 * const ring = createDistribution(
 *   [{ host: '10.0.1.1', port: 11211 }, { host: '10.0.1.2', port: 11211, weight: 2 }],
 *   'ketama',
 * );
 * ring.serverFor('user:42'); // same index as php-memcached with OPT_LIBKETAMA_COMPATIBLE
 * ring.serverForWithout('user:42', (i) => i === 1); // where it goes while server 1 is ejected
 */
export function createDistribution(
  servers: ReadonlyArray<DistributionServer>,
  mode: DistributionMode,
  options: DistributionOptions = {},
): Distribution {
  if (!Array.isArray(servers) || servers.length === 0) throw new RangeError('a distribution needs at least one server');
  if (servers.length >= INDEX_SPAN) throw new RangeError(`a distribution takes at most ${INDEX_SPAN - 1} servers`);
  for (const s of servers) {
    if (typeof s.host !== 'string' || s.host === '') throw new TypeError('server host must be a non-empty string');
    if (!Number.isInteger(s.port) || s.port < 0 || s.port > 65535) {
      throw new RangeError(`server port must be an integer in 0..65535, got ${s.port}`);
    }
    if (s.weight !== undefined && !(Number.isFinite(s.weight) && s.weight >= 0)) {
      throw new RangeError(`server weight must be a finite number >= 0, got ${s.weight}`);
    }
  }
  const list = servers.map((s) => ({ ...s }));
  switch (mode) {
    case 'ketama':
      return new KetamaDistribution(list);
    case 'crc32':
      return new Crc32BucketDistribution(list);
    case 'modulo': {
      const hashName = options.hash ?? 'md5';
      if (!MODULO_HASHES.includes(hashName)) throw new RangeError(`unknown modulo hash: ${String(hashName)}`);
      return new ModuloDistribution(list, hashName);
    }
    default:
      throw new RangeError(`unknown distribution mode: ${String(mode)}`);
  }
}
