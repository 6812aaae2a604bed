/**
 * The cache's storage engine: items in slab pages, an open hash index and per-class LRUs, all in shared memory.
 *
 * Nothing here is a JS object per item. Every item lives in a chunk of a slab page inside one `SharedArrayBuffer`
 * (the arena, `-m` bytes, touched by the OS only as pages are used); the hash index is a `Uint32Array` of chain
 * heads; the LRU links and the hash chain are fields of the item itself. Worker threads each build an `ItemStore`
 * over the same {@link StoreShared} buffers and serialise on one futex-style lock ({@link ItemStore.lock}).
 *
 * Item layout (offsets in bytes; an item starts 8-byte aligned; a "ref" is `offset / 8 + 1`, 0 meaning none):
 *
 * ```
 *  0 prev    u32  LRU neighbour towards the head       20 nbytes  u32  value length
 *  4 next    u32  LRU neighbour towards the tail       24 flags   u32  client flags
 *  8 hnext   u32  next item in the same hash bucket    28 nkey u8 | clsid u8 | itflags u8 | pad u8
 * 12 time    u32  last access (server-relative secs)   32 cas     f64
 * 16 exptime u32  0 = never, else server-relative secs  40 key bytes, then the value
 * ```
 *
 * A value too large for the largest class is "chained": the item chunk holds the header, the key and a list of
 * u32 refs to data chunks of the largest class, each filled with raw value bytes (memcached's chunked items).
 *
 * @module
 */

import { computeSlabClassSizes } from './slab-classes.ts';
import { TS } from './thread-stats.ts';

/** Result of a storage command, shared by the text, meta and binary protocols. */
export const StoreResult = {
  STORED: 0,
  NOT_STORED: 1,
  EXISTS: 2,
  NOT_FOUND: 3,
  TOO_LARGE: 4,
  NO_MEMORY: 5,
} as const;
/** One of {@link StoreResult}. */
export type StoreResult = (typeof StoreResult)[keyof typeof StoreResult];

/** Storage modes (`set`, `add`, …) as memcached's `NREAD_*`. */
export const StoreOp = {
  SET: 1,
  ADD: 2,
  REPLACE: 3,
  APPEND: 4,
  PREPEND: 5,
  CAS: 6,
} as const;
/** One of {@link StoreOp}. */
export type StoreOp = (typeof StoreOp)[keyof typeof StoreOp];

/** Result of incr/decr. */
export const DeltaResult = { OK: 0, NOT_FOUND: 1, NON_NUMERIC: 2, EXISTS: 3, NO_MEMORY: 4 } as const;
/** One of {@link DeltaResult}. */
export type DeltaResult = (typeof DeltaResult)[keyof typeof DeltaResult];

/** Item flag bits (`itflags`). */
export const ItemFlag = {
  LINKED: 1,
  CHAINED: 2,
  FETCHED: 4,
  /** Marked stale by meta `md I` / `ms I`. */
  STALE: 8,
  /** A meta win token (`W`) was handed out for this item. */
  TOKEN_SENT: 16,
  /** The key was sent base64-encoded (meta `b`): meta replies echo it base64-encoded. */
  KEY_BINARY: 32,
} as const;

/** Every knob of the storage engine, already converted from memcached's flags. */
export interface StoreConfig {
  /** `-m` in bytes. */
  maxBytes: number;
  /** `-I` in bytes. */
  itemSizeMax: number;
  /** `-n`. */
  chunkSize: number;
  /** `-f`. */
  growthFactor: number;
  /** Slab page size (1 MiB, or `-I` when that is smaller). */
  pageSize: number;
  /** `-o slab_chunk_max` (default half a page). */
  slabChunkMax: number;
  /** false with `-M`: return an error instead of evicting. */
  evictions: boolean;
  /** false with `-C`. */
  useCas: boolean;
  /** Number of serving threads (rows of thread stats). */
  threads: number;
}

/** The shared memory behind a store; plain data, so it can be posted to worker threads. */
export interface StoreShared {
  config: StoreConfig;
  arena: SharedArrayBuffer;
  buckets: SharedArrayBuffer;
  control: SharedArrayBuffer;
  lock: SharedArrayBuffer;
}

/** Seconds in 30 days: larger expiry times are absolute Unix times. */
export const REALTIME_MAXDELTA = 60 * 60 * 24 * 30;
/** An accessed item is moved to the LRU head at most this often (memcached's `ITEM_UPDATE_INTERVAL`). */
const ITEM_UPDATE_INTERVAL = 60;
const HEADER = 40;
const LRU_SEARCH_DEPTH = 5;

// Field indices into the u32 view, relative to an item's first u32.
const F_PREV = 0;
const F_NEXT = 1;
const F_HNEXT = 2;
const F_TIME = 3;
const F_EXPTIME = 4;
const F_NBYTES = 5;
const F_FLAGS = 6;
// Byte offsets.
const B_NKEY = 28;
const B_CLSID = 29;
const B_ITFLAGS = 30;

// Control block (Float64Array): globals first, then one block per LRU list.
const G_PAGES_USED = 0;
const G_CAS = 1;
const G_OLDEST_LIVE = 2;
const G_OLDEST_CAS = 3;
const G_CURR_ITEMS = 4;
const G_TOTAL_ITEMS = 5;
const G_BYTES = 6;
const G_EVICTIONS = 7;
const G_RECLAIMED = 8;
const G_EXPIRED_UNFETCHED = 9;
const G_EVICTED_UNFETCHED = 10;
const G_PROCESS_STARTED = 11;
const G_PAGE_LIMIT = 12;
const G_CRAWLER_RECLAIMED = 13;
const G_EVICTED_ACTIVE = 14;
const G_HASH_POWER = 15;
/** memcached's default `hashpower`: the index starts with 2^16 buckets. */
const HASH_POWER_INIT = 16;
const GLOBALS = 32;
/** Per-class fields. */
const C = {
  FREE_HEAD: 0,
  CARVE_OFF: 1,
  CARVE_LEFT: 2,
  LRU_HEAD: 3,
  LRU_TAIL: 4,
  ITEMS: 5,
  PAGES: 6,
  USED_CHUNKS: 7,
  FREE_CHUNKS: 8,
  EVICTED: 9,
  EVICTED_NONZERO: 10,
  EVICTED_TIME: 11,
  OUT_OF_MEMORY: 12,
  RECLAIMED: 13,
  EXPIRED_UNFETCHED: 14,
  EVICTED_UNFETCHED: 15,
  MEM_REQUESTED: 16,
  GET_HITS: 17,
  CMD_SET: 18,
  DELETE_HITS: 19,
  INCR_HITS: 20,
  DECR_HITS: 21,
  CAS_HITS: 22,
  CAS_BADVAL: 23,
  TOUCH_HITS: 24,
  CRAWLER_RECLAIMED: 25,
  TOTAL_CHUNKS: 26,
} as const;
const CLASS_FIELDS = 32;

/** Statistics of one slab class, for `stats slabs` and `stats items`. */
export interface SlabClassStats {
  id: number;
  chunkSize: number;
  chunksPerPage: number;
  totalPages: number;
  totalChunks: number;
  usedChunks: number;
  freeChunks: number;
  freeChunksEnd: number;
  memRequested: number;
  items: number;
  /** Age of the LRU tail in seconds. */
  age: number;
  evicted: number;
  evictedNonzero: number;
  evictedTime: number;
  outOfMemory: number;
  reclaimed: number;
  expiredUnfetched: number;
  evictedUnfetched: number;
  crawlerReclaimed: number;
  getHits: number;
  cmdSet: number;
  deleteHits: number;
  incrHits: number;
  decrHits: number;
  casHits: number;
  casBadval: number;
  touchHits: number;
}

/** Global item statistics, for `stats`. */
export interface GlobalItemStats {
  currItems: number;
  totalItems: number;
  bytes: number;
  evictions: number;
  reclaimed: number;
  expiredUnfetched: number;
  evictedUnfetched: number;
  evictedActive: number;
  crawlerReclaimed: number;
  pagesUsed: number;
  pageLimit: number;
  hashPowerLevel: number;
  hashBytes: number;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * Hashes `len` bytes of `src` from `off` (FNV-1a, 32-bit). Keys are at most 250 bytes, so a byte loop is cheap.
 */
export function hashKey(src: Uint8Array, off: number, len: number): number {
  let h = FNV_OFFSET;
  for (let i = off, end = off + len; i < end; i++) {
    h = Math.imul(h ^ src[i]!, FNV_PRIME);
  }
  // A final avalanche so the low bits (the bucket index) depend on every byte.
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

/** Builds the shared buffers for a store. The arena is reserved, not touched: RSS grows as pages are used. */
export function createStoreShared(config: StoreConfig): StoreShared {
  const pages = Math.max(1, Math.floor(config.maxBytes / config.pageSize));
  const classes = computeSlabClassSizes(config).length;
  // The index starts at 2^16 buckets and doubles as items grow (see #maybeExpand); its buffer is reserved for the
  // largest table `-m` can need (one bucket per 64 bytes of cache), but only the part in use is ever touched.
  let maxPower = HASH_POWER_INIT;
  while (2 ** maxPower < config.maxBytes / 64 && maxPower < 30) maxPower++;
  const control = new SharedArrayBuffer((GLOBALS + (classes + 2) * CLASS_FIELDS) * 8);
  const ctl = new Float64Array(control);
  ctl[G_PAGE_LIMIT] = pages;
  ctl[G_HASH_POWER] = HASH_POWER_INIT;
  ctl[G_PROCESS_STARTED] = Math.floor(Date.now() / 1000) - ITEM_UPDATE_INTERVAL - 2;
  return {
    config,
    arena: new SharedArrayBuffer((pages + classes) * config.pageSize),
    buckets: new SharedArrayBuffer(4 * 2 ** maxPower),
    control,
    lock: new SharedArrayBuffer(4),
  };
}

/**
 * One thread's handle on the shared store. Every method but {@link lock}/{@link unlock} and the clock expects the
 * caller to hold the lock (a no-op when only one thread serves).
 */
export class ItemStore {
  /** Shared buffers (post these to other threads). */
  readonly shared: StoreShared;
  /** Chunk size of each class; index 0 is unused so that class ids are indices. */
  readonly classSizes: number[];
  /** Id of the largest class (data chunks of chained items come from it). */
  readonly largestClass: number;
  /** LRU list of chained items. */
  readonly #chainedList: number;
  readonly #u8: Uint8Array;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  readonly #arena: Buffer;
  readonly #buckets: Uint32Array;
  readonly #ctl: Float64Array;
  readonly #lockWord: Int32Array;
  readonly #threaded: boolean;
  readonly #config: StoreConfig;
  /** This thread's counters (a row of the thread stats). */
  readonly stats: Float64Array;
  /** Server-relative "now" in seconds, memcached's `current_time`; advanced by {@link tick}. */
  now = 0;
  /** Cas of the item the last successful store / delta / touch left behind. */
  lastCas = 0;
  /** Value after the last successful incr/decr. */
  lastDelta = 0n;
  /** Set by {@link find} on a miss: 1 when the key was present but expired, 2 when flushed. */
  lastMiss = 0;

  constructor(shared: StoreShared, threadStats: Float64Array) {
    this.shared = shared;
    this.#config = shared.config;
    this.classSizes = [0, ...computeSlabClassSizes(shared.config)];
    this.largestClass = this.classSizes.length - 1;
    this.#chainedList = this.largestClass + 1;
    this.#u8 = new Uint8Array(shared.arena);
    this.#u32 = new Uint32Array(shared.arena);
    this.#f64 = new Float64Array(shared.arena);
    this.#arena = Buffer.from(shared.arena);
    this.#buckets = new Uint32Array(shared.buckets);
    this.#ctl = new Float64Array(shared.control);
    this.#lockWord = new Int32Array(shared.lock);
    this.#threaded = shared.config.threads > 1;
    this.stats = threadStats;
    this.tick();
  }

  /** The store's configuration. */
  get config(): StoreConfig {
    return this.#config;
  }

  /** Unix time the relative clock counts from (memcached's `process_started`). */
  get processStarted(): number {
    return this.#ctl[G_PROCESS_STARTED]!;
  }

  /** Advances {@link now} from the wall clock; call once a second and before serving a batch. */
  tick(): void {
    this.now = Math.floor(Date.now() / 1000) - this.#ctl[G_PROCESS_STARTED]!;
  }

  /** Takes the store lock (Drepper's three-state futex mutex over `Atomics`). */
  lock(): void {
    if (!this.#threaded) return;
    const l = this.#lockWord;
    let c = Atomics.compareExchange(l, 0, 0, 1);
    if (c === 0) return;
    for (let spin = 0; spin < 64; spin++) {
      c = Atomics.compareExchange(l, 0, 0, 1);
      if (c === 0) return;
    }
    do {
      if (c === 2 || Atomics.compareExchange(l, 0, 1, 2) !== 0) Atomics.wait(l, 0, 2);
      c = Atomics.compareExchange(l, 0, 0, 2);
    } while (c !== 0);
  }

  /** Releases the store lock. */
  unlock(): void {
    if (!this.#threaded) return;
    const l = this.#lockWord;
    if (Atomics.sub(l, 0, 1) !== 1) {
      Atomics.store(l, 0, 0);
      Atomics.notify(l, 0, 1);
    }
  }

  /**
   * Converts a protocol expiry time into a server-relative one (memcached's `realtime()`): 0 never expires, up to 30
   * days is relative, larger is an absolute Unix time, and a negative one (text/meta) is already expired.
   */
  realtime(exptime: number): number {
    if (exptime === 0) return 0;
    if (exptime < 0) return 1;
    if (exptime > REALTIME_MAXDELTA) {
      const started = this.#ctl[G_PROCESS_STARTED]!;
      if (exptime <= started) return 1;
      return Math.min(exptime - started, 0xffffffff);
    }
    return exptime + this.now;
  }

  /** Converts a relative expiry back to a Unix time (0 stays 0). */
  unixTime(rel: number): number {
    return rel === 0 ? 0 : rel + this.#ctl[G_PROCESS_STARTED]!;
  }

  // ---- item accessors ------------------------------------------------------------------------------------------

  /** Value length of an item. */
  valueLength(ref: number): number {
    return this.#u32[((ref - 1) << 1) + F_NBYTES]!;
  }
  /** Client flags of an item. */
  flags(ref: number): number {
    return this.#u32[((ref - 1) << 1) + F_FLAGS]!;
  }
  /** Relative expiry of an item (0 = never). */
  exptime(ref: number): number {
    return this.#u32[((ref - 1) << 1) + F_EXPTIME]!;
  }
  /** Relative time of the last access. */
  accessTime(ref: number): number {
    return this.#u32[((ref - 1) << 1) + F_TIME]!;
  }
  /** Cas unique of an item. */
  cas(ref: number): number {
    return this.#f64[ref + 3]!;
  }
  /** Key length of an item. */
  keyLength(ref: number): number {
    return this.#u8[((ref - 1) << 3) + B_NKEY]!;
  }
  /** Slab class of an item. */
  classId(ref: number): number {
    return this.#u8[((ref - 1) << 3) + B_CLSID]!;
  }
  /** Item flag bits ({@link ItemFlag}). */
  itemFlags(ref: number): number {
    return this.#u8[((ref - 1) << 3) + B_ITFLAGS]!;
  }
  /** Sets item flag bits. */
  addItemFlags(ref: number, bits: number): void {
    this.#u8[((ref - 1) << 3) + B_ITFLAGS] = this.#u8[((ref - 1) << 3) + B_ITFLAGS]! | bits;
  }
  /** Clears item flag bits. */
  clearItemFlags(ref: number, bits: number): void {
    this.#u8[((ref - 1) << 3) + B_ITFLAGS] = this.#u8[((ref - 1) << 3) + B_ITFLAGS]! & ~bits;
  }
  /** Copies an item's key into `dst` at `off`; returns the end offset. */
  copyKey(ref: number, dst: Uint8Array, off: number): number {
    const start = ((ref - 1) << 3) + HEADER;
    const n = this.keyLength(ref);
    dst.set(this.#u8.subarray(start, start + n), off);
    return off + n;
  }
  /** Sets an item's relative expiry (touch), keeping its cas. */
  setExptime(ref: number, rel: number): void {
    this.#u32[((ref - 1) << 1) + F_EXPTIME] = rel;
  }
  /** Sets an item's cas. */
  setCas(ref: number, cas: number): void {
    this.#f64[ref + 3] = cas;
  }
  /** Returns the next cas unique (0 with `-C`). */
  nextCas(): number {
    if (!this.#config.useCas) return 0;
    const cas = this.#ctl[G_CAS]! + 1;
    this.#ctl[G_CAS] = cas;
    return cas;
  }
  /** Size an item occupies in its class, as counted by the `bytes` stat. */
  itemTotal(ref: number): number {
    const nbytes = this.valueLength(ref);
    const nkey = this.keyLength(ref);
    if (this.itemFlags(ref) & ItemFlag.CHAINED) return HEADER + nkey + nbytes;
    return HEADER + nkey + nbytes;
  }

  /**
   * Copies `len` bytes of an item's value, from `valueOff`, into `dst` at `dstOff`. Returns the end offset in `dst`.
   */
  copyValue(
    ref: number,
    dst: Uint8Array,
    dstOff: number,
    valueOff = 0,
    len = this.valueLength(ref) - valueOff,
  ): number {
    const base = ((ref - 1) << 3) + HEADER + this.keyLength(ref);
    if (!(this.itemFlags(ref) & ItemFlag.CHAINED)) {
      const s = base + valueOff;
      dst.set(this.#u8.subarray(s, s + len), dstOff);
      return dstOff + len;
    }
    const per = this.classSizes[this.largestClass]!;
    const listIdx = (base + 3) >>> 2;
    let pos = valueOff;
    const end = valueOff + len;
    while (pos < end) {
      const chunk = Math.floor(pos / per);
      const within = pos - chunk * per;
      const n = Math.min(per - within, end - pos);
      const s = ((this.#u32[listIdx + chunk]! - 1) << 3) + within;
      dst.set(this.#u8.subarray(s, s + n), dstOff);
      dstOff += n;
      pos += n;
    }
    return dstOff;
  }

  /** Writes `len` bytes from `src` into an item's value at `valueOff` (the item must not be visible yet). */
  writeValue(ref: number, src: Uint8Array, srcOff: number, len: number, valueOff = 0): void {
    const base = ((ref - 1) << 3) + HEADER + this.keyLength(ref);
    if (!(this.itemFlags(ref) & ItemFlag.CHAINED)) {
      this.#u8.set(src.subarray(srcOff, srcOff + len), base + valueOff);
      return;
    }
    const per = this.classSizes[this.largestClass]!;
    const listIdx = (base + 3) >>> 2;
    let pos = valueOff;
    const end = valueOff + len;
    while (pos < end) {
      const chunk = Math.floor(pos / per);
      const within = pos - chunk * per;
      const n = Math.min(per - within, end - pos);
      this.#u8.set(src.subarray(srcOff, srcOff + n), ((this.#u32[listIdx + chunk]! - 1) << 3) + within);
      srcOff += n;
      pos += n;
    }
  }

  /** Copies part of one item's value into another's (append/prepend); `dst` must not be visible yet. */
  #copyBetween(from: number, to: number, toOff: number): void {
    const len = this.valueLength(from);
    if (!(this.itemFlags(from) & ItemFlag.CHAINED)) {
      const s = ((from - 1) << 3) + HEADER + this.keyLength(from);
      this.writeValue(to, this.#u8, s, len, toOff);
      return;
    }
    const tmp = Buffer.allocUnsafe(len);
    this.copyValue(from, tmp, 0);
    this.writeValue(to, tmp, 0, len, toOff);
  }

  /** The arena as a Buffer (for `latin1Slice` of keys in `stats cachedump`). */
  get arenaBuffer(): Buffer {
    return this.#arena;
  }

  /** Byte offset of an item's key in the arena. */
  keyOffset(ref: number): number {
    return ((ref - 1) << 3) + HEADER;
  }

  // ---- lookup --------------------------------------------------------------------------------------------------

  /** Whether a live item is expired or invalidated by `flush_all` at {@link now}; sets {@link lastMiss}. */
  #isDead(ref: number): boolean {
    const exp = this.#u32[((ref - 1) << 1) + F_EXPTIME]!;
    if (exp !== 0 && exp <= this.now) {
      this.lastMiss = 1;
      return true;
    }
    const oldestLive = this.#ctl[G_OLDEST_LIVE]!;
    if (oldestLive !== 0 && oldestLive <= this.now) {
      const oldestCas = this.#ctl[G_OLDEST_CAS]!;
      const cas = this.#f64[ref + 3]!;
      if (this.#u32[((ref - 1) << 1) + F_TIME]! <= oldestLive || (oldestCas !== 0 && cas !== 0 && cas < oldestCas)) {
        this.lastMiss = 2;
        return true;
      }
    }
    return false;
  }

  /** Finds the item of a key without judging expiry. */
  #lookup(key: Uint8Array, off: number, len: number, hv: number): number {
    const u8 = this.#u8;
    let ref = this.#buckets[hv & this.#mask()]!;
    while (ref !== 0) {
      const b = (ref - 1) << 3;
      if (u8[b + B_NKEY] === len) {
        const k = b + HEADER;
        let i = 0;
        while (i < len && u8[k + i] === key[off + i]) i++;
        if (i === len) return ref;
      }
      ref = this.#u32[((ref - 1) << 1) + F_HNEXT]!;
    }
    return 0;
  }

  /**
   * Returns the live item of a key, or 0. An expired or flushed item found on the way is unlinked and freed (lazy
   * expiry) and counted in `get_expired`/`get_flushed`. With `bump`, a hit is moved to its LRU head at most once a
   * minute, as memcached's `do_item_update` does.
   */
  find(key: Uint8Array, off: number, len: number, bump = true): number {
    this.lastMiss = 0;
    const ref = this.#lookup(key, off, len, hashKey(key, off, len));
    if (ref === 0) return 0;
    if (this.#isDead(ref)) {
      if (this.lastMiss === 1) {
        this.stats[TS.get_expired]!++;
        if (!(this.itemFlags(ref) & ItemFlag.FETCHED)) {
          this.#ctl[G_EXPIRED_UNFETCHED]!++;
          this.#classCtl(this.classId(ref), C.EXPIRED_UNFETCHED, 1);
        }
      } else {
        this.stats[TS.get_flushed]!++;
      }
      this.unlink(ref);
      return 0;
    }
    if (bump) this.bump(ref);
    return ref;
  }

  /** Records an access: sets FETCHED (unless `fetched` is false, as for incr/decr) and moves the item to its LRU head if it was last moved a minute ago. */
  bump(ref: number, fetched = true): void {
    const ti = ((ref - 1) << 1) + F_TIME;
    if (fetched) this.addItemFlags(ref, ItemFlag.FETCHED);
    if (this.#u32[ti]! < this.now - ITEM_UPDATE_INTERVAL) {
      const list = this.#listOf(ref);
      this.#lruRemove(list, ref);
      this.#u32[ti] = this.now;
      this.#lruPush(list, ref);
    }
  }

  // ---- allocation ----------------------------------------------------------------------------------------------

  /** The smallest class whose chunks hold `total` bytes, or 0 when none does. */
  classFor(total: number): number {
    const sizes = this.classSizes;
    if (total > sizes[this.largestClass]!) return 0;
    let lo = 1;
    let hi = this.largestClass;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sizes[mid]! >= total) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /**
   * Whether an item with this key and value length fits under `-I` (memcached's `item_size_ok`; callers add 4 to
   * `nbytes` when the client flags are not 0, as memcached stores them only then).
   */
  fits(nkey: number, nbytes: number): boolean {
    // memcached counts its 48-byte header, the cas, the key, "\r\n" and a NUL against -I.
    return 48 + 8 + nkey + 1 + nbytes + 2 <= this.#config.itemSizeMax;
  }

  /**
   * Allocates an unlinked item for `key` with room for `nbytes` of value. Returns its ref, or
   * `-StoreResult.TOO_LARGE` / `-StoreResult.NO_MEMORY`. The caller writes the value and then {@link link}s or
   * {@link free}s it.
   */
  alloc(key: Uint8Array, kOff: number, nkey: number, flags: number, exptime: number, nbytes: number): number {
    if (!this.fits(nkey, nbytes + (flags !== 0 ? 4 : 0))) return -StoreResult.TOO_LARGE;
    const total = HEADER + nkey + nbytes;
    let cls = this.classFor(total);
    let chained = 0;
    if (cls === 0) {
      const per = this.classSizes[this.largestClass]!;
      chained = Math.ceil(nbytes / per);
      cls = this.classFor(HEADER + nkey + 3 + chained * 4);
      if (cls === 0) return -StoreResult.TOO_LARGE;
    }
    const ref = this.#allocChunk(cls);
    if (ref === 0) return -StoreResult.NO_MEMORY;
    const b = (ref - 1) << 3;
    const w = (ref - 1) << 1;
    const u32 = this.#u32;
    u32[w + F_PREV] = 0;
    u32[w + F_NEXT] = 0;
    u32[w + F_HNEXT] = 0;
    u32[w + F_TIME] = this.now;
    u32[w + F_EXPTIME] = exptime;
    u32[w + F_NBYTES] = nbytes;
    u32[w + F_FLAGS] = flags;
    this.#u8[b + B_NKEY] = nkey;
    this.#u8[b + B_CLSID] = cls;
    this.#u8[b + B_ITFLAGS] = 0;
    this.#f64[ref + 3] = 0;
    this.#u8.set(key.subarray(kOff, kOff + nkey), b + HEADER);
    if (chained > 0) {
      this.#u8[b + B_ITFLAGS] = ItemFlag.CHAINED;
      const listIdx = (b + HEADER + nkey + 3) >>> 2;
      for (let i = 0; i < chained; i++) {
        const data = this.#allocChunk(this.largestClass);
        if (data === 0) {
          for (let j = 0; j < i; j++) this.#freeChunk(this.largestClass, u32[listIdx + j]!);
          this.#freeChunk(cls, ref);
          return -StoreResult.NO_MEMORY;
        }
        u32[listIdx + i] = data;
      }
    }
    return ref;
  }

  /** Frees an item that was allocated but never linked. */
  free(ref: number): void {
    if (this.itemFlags(ref) & ItemFlag.CHAINED) {
      const listIdx = (((ref - 1) << 3) + HEADER + this.keyLength(ref) + 3) >>> 2;
      const n = Math.ceil(this.valueLength(ref) / this.classSizes[this.largestClass]!);
      for (let i = 0; i < n; i++) this.#freeChunk(this.largestClass, this.#u32[listIdx + i]!);
    }
    this.#freeChunk(this.classId(ref), ref);
  }

  #classCtl(cls: number, field: number, add: number): void {
    this.#ctl[GLOBALS + cls * CLASS_FIELDS + field]! += add;
  }

  #getCtl(cls: number, field: number): number {
    return this.#ctl[GLOBALS + cls * CLASS_FIELDS + field]!;
  }

  #setCtl(cls: number, field: number, value: number): void {
    this.#ctl[GLOBALS + cls * CLASS_FIELDS + field] = value;
  }

  #freeChunk(cls: number, ref: number): void {
    this.#u32[((ref - 1) << 1) + F_HNEXT] = this.#getCtl(cls, C.FREE_HEAD);
    this.#u8[((ref - 1) << 3) + B_ITFLAGS] = 0;
    this.#setCtl(cls, C.FREE_HEAD, ref);
    this.#classCtl(cls, C.FREE_CHUNKS, 1);
    this.#classCtl(cls, C.USED_CHUNKS, -1);
  }

  /** Takes a chunk of class `cls`: free list, then the current page, then a new page, then eviction. */
  #allocChunk(cls: number): number {
    for (let attempt = 0; attempt < 10; attempt++) {
      const free = this.#getCtl(cls, C.FREE_HEAD);
      if (free !== 0) {
        this.#setCtl(cls, C.FREE_HEAD, this.#u32[((free - 1) << 1) + F_HNEXT]!);
        this.#classCtl(cls, C.FREE_CHUNKS, -1);
        this.#classCtl(cls, C.USED_CHUNKS, 1);
        return free;
      }
      if (this.#getCtl(cls, C.CARVE_LEFT) > 0) {
        const off = this.#getCtl(cls, C.CARVE_OFF);
        this.#setCtl(cls, C.CARVE_OFF, off + this.classSizes[cls]!);
        this.#classCtl(cls, C.CARVE_LEFT, -1);
        this.#classCtl(cls, C.USED_CHUNKS, 1);
        return (off >>> 3) + 1;
      }
      if (this.#newPage(cls)) continue;
      if (!this.#config.evictions) {
        this.#classCtl(cls, C.OUT_OF_MEMORY, 1);
        return 0;
      }
      if (!this.#evictFrom(cls)) {
        this.#classCtl(cls, C.OUT_OF_MEMORY, 1);
        return 0;
      }
    }
    this.#classCtl(cls, C.OUT_OF_MEMORY, 1);
    return 0;
  }

  #newPage(cls: number): boolean {
    const used = this.#ctl[G_PAGES_USED]!;
    // Past the limit a class may still take its first page, as memcached's `do_slabs_newslab` allows; the arena
    // reserves one spare page per class for that.
    if (used >= this.#ctl[G_PAGE_LIMIT]! && this.#getCtl(cls, C.PAGES) > 0) return false;
    if ((used + 1) * this.#config.pageSize > this.shared.arena.byteLength) return false;
    this.#ctl[G_PAGES_USED] = used + 1;
    const perPage = Math.floor(this.#config.pageSize / this.classSizes[cls]!);
    this.#setCtl(cls, C.CARVE_OFF, used * this.#config.pageSize);
    this.#setCtl(cls, C.CARVE_LEFT, perPage);
    this.#classCtl(cls, C.PAGES, 1);
    this.#classCtl(cls, C.TOTAL_CHUNKS, perPage);
    return true;
  }

  /**
   * Frees at least one chunk of class `cls` from its LRU tail: an expired item among the last few first, else the
   * tail itself (an eviction). Data chunks of the largest class also come back by evicting chained items.
   */
  #evictFrom(cls: number): boolean {
    const lists = cls === this.largestClass ? [cls, this.#chainedList] : [cls];
    for (const list of lists) {
      let ref = this.#getCtl(list, C.LRU_TAIL);
      for (let depth = 0; ref !== 0 && depth < LRU_SEARCH_DEPTH; depth++) {
        const prev = this.#u32[((ref - 1) << 1) + F_PREV]!;
        const exp = this.exptime(ref);
        if ((exp !== 0 && exp <= this.now) || this.#isFlushed(ref)) {
          this.#ctl[G_RECLAIMED]!++;
          this.#classCtl(this.classId(ref), C.RECLAIMED, 1);
          if (!(this.itemFlags(ref) & ItemFlag.FETCHED)) {
            this.#ctl[G_EXPIRED_UNFETCHED]!++;
            this.#classCtl(this.classId(ref), C.EXPIRED_UNFETCHED, 1);
          }
          this.unlink(ref);
          return true;
        }
        ref = prev;
      }
    }
    // No expired item near the tail: evict the oldest of the lists.
    let victim = 0;
    for (const list of lists) {
      const tail = this.#getCtl(list, C.LRU_TAIL);
      if (tail !== 0 && (victim === 0 || this.accessTime(tail) < this.accessTime(victim))) victim = tail;
    }
    if (victim === 0) return false;
    const vc = this.classId(victim);
    this.#ctl[G_EVICTIONS]!++;
    this.#classCtl(vc, C.EVICTED, 1);
    this.#setCtl(vc, C.EVICTED_TIME, this.now - this.accessTime(victim));
    if (this.exptime(victim) !== 0) this.#classCtl(vc, C.EVICTED_NONZERO, 1);
    if (!(this.itemFlags(victim) & ItemFlag.FETCHED)) {
      this.#ctl[G_EVICTED_UNFETCHED]!++;
      this.#classCtl(vc, C.EVICTED_UNFETCHED, 1);
    }
    this.unlink(victim);
    return true;
  }

  #isFlushed(ref: number): boolean {
    const oldestLive = this.#ctl[G_OLDEST_LIVE]!;
    if (oldestLive === 0 || oldestLive > this.now) return false;
    const oldestCas = this.#ctl[G_OLDEST_CAS]!;
    const cas = this.cas(ref);
    return this.accessTime(ref) <= oldestLive || (oldestCas !== 0 && cas !== 0 && cas < oldestCas);
  }

  // ---- linking -------------------------------------------------------------------------------------------------

  #listOf(ref: number): number {
    return this.itemFlags(ref) & ItemFlag.CHAINED ? this.#chainedList : this.classId(ref);
  }

  #lruPush(list: number, ref: number): void {
    const w = (ref - 1) << 1;
    const head = this.#getCtl(list, C.LRU_HEAD);
    this.#u32[w + F_PREV] = 0;
    this.#u32[w + F_NEXT] = head;
    if (head !== 0) this.#u32[((head - 1) << 1) + F_PREV] = ref;
    else this.#setCtl(list, C.LRU_TAIL, ref);
    this.#setCtl(list, C.LRU_HEAD, ref);
  }

  #lruRemove(list: number, ref: number): void {
    const w = (ref - 1) << 1;
    const prev = this.#u32[w + F_PREV]!;
    const next = this.#u32[w + F_NEXT]!;
    if (prev !== 0) this.#u32[((prev - 1) << 1) + F_NEXT] = next;
    else this.#setCtl(list, C.LRU_HEAD, next);
    if (next !== 0) this.#u32[((next - 1) << 1) + F_PREV] = prev;
    else this.#setCtl(list, C.LRU_TAIL, prev);
    this.#u32[w + F_PREV] = 0;
    this.#u32[w + F_NEXT] = 0;
  }

  /**
   * Makes an allocated item visible: replaces whatever item has the same key, gives it a new cas (or `cas` when
   * given), and puts it at the head of its LRU.
   */
  link(ref: number, cas = this.nextCas()): void {
    const b = (ref - 1) << 3;
    const nkey = this.#u8[b + B_NKEY]!;
    const hv = hashKey(this.#u8, b + HEADER, nkey);
    const old = this.#lookup(this.#u8, b + HEADER, nkey, hv);
    if (old !== 0) this.unlink(old);
    const bucket = hv & this.#mask();
    this.#u32[((ref - 1) << 1) + F_HNEXT] = this.#buckets[bucket]!;
    this.#buckets[bucket] = ref;
    this.#u32[((ref - 1) << 1) + F_TIME] = this.now;
    this.#f64[ref + 3] = cas;
    this.addItemFlags(ref, ItemFlag.LINKED);
    const list = this.#listOf(ref);
    this.#lruPush(list, ref);
    const cls = this.classId(ref);
    this.#classCtl(list, C.ITEMS, 1);
    this.#classCtl(cls, C.MEM_REQUESTED, this.itemTotal(ref));
    this.#ctl[G_CURR_ITEMS]!++;
    this.#ctl[G_TOTAL_ITEMS]!++;
    this.#ctl[G_BYTES]! += this.itemTotal(ref);
    this.lastCas = cas;
    this.#maybeExpand();
  }

  /** Current bucket mask (the table grows, so every thread reads the power from the shared control block). */
  #mask(): number {
    return 2 ** this.#ctl[G_HASH_POWER]! - 1;
  }

  /**
   * Doubles the index when items outnumber buckets by 1.5 (memcached's rule). Bucket `i` splits into `i` and
   * `i + 2^power` by one more bit of each item's hash, in place, under the store lock: one pass over the items,
   * ~10 ms per million, happening log2(items) times in the life of the cache.
   */
  #maybeExpand(): void {
    const power = this.#ctl[G_HASH_POWER]!;
    const size = 2 ** power;
    if (this.#ctl[G_CURR_ITEMS]! <= size * 1.5 || 4 * size * 2 > this.#buckets.byteLength) return;
    const buckets = this.#buckets;
    const u32 = this.#u32;
    const u8 = this.#u8;
    for (let i = 0; i < size; i++) {
      let ref = buckets[i]!;
      let low = 0;
      let high = 0;
      while (ref !== 0) {
        const next = u32[((ref - 1) << 1) + F_HNEXT]!;
        const b = (ref - 1) << 3;
        if (hashKey(u8, b + HEADER, u8[b + B_NKEY]!) & size) {
          u32[((ref - 1) << 1) + F_HNEXT] = high;
          high = ref;
        } else {
          u32[((ref - 1) << 1) + F_HNEXT] = low;
          low = ref;
        }
        ref = next;
      }
      buckets[i] = low;
      buckets[i + size] = high;
    }
    this.#ctl[G_HASH_POWER] = power + 1;
  }

  /** Removes a linked item from the index and its LRU and frees its memory. */
  unlink(ref: number): void {
    const b = (ref - 1) << 3;
    const nkey = this.#u8[b + B_NKEY]!;
    const bucket = hashKey(this.#u8, b + HEADER, nkey) & this.#mask();
    let cur = this.#buckets[bucket]!;
    let prev = 0;
    while (cur !== 0 && cur !== ref) {
      prev = cur;
      cur = this.#u32[((cur - 1) << 1) + F_HNEXT]!;
    }
    const next = this.#u32[((ref - 1) << 1) + F_HNEXT]!;
    if (cur === ref) {
      if (prev === 0) this.#buckets[bucket] = next;
      else this.#u32[((prev - 1) << 1) + F_HNEXT] = next;
    }
    const list = this.#listOf(ref);
    this.#lruRemove(list, ref);
    this.#classCtl(list, C.ITEMS, -1);
    this.#classCtl(this.classId(ref), C.MEM_REQUESTED, -this.itemTotal(ref));
    this.#ctl[G_CURR_ITEMS]!--;
    this.#ctl[G_BYTES]! -= this.itemTotal(ref);
    this.free(ref);
  }

  // ---- commands ------------------------------------------------------------------------------------------------

  /**
   * Stores a value (memcached's `do_store_item`). `cas` 0 means no compare; with `staleCas` a lower cas than the
   * item's replaces the value but marks it stale (meta `ms I`). On STORED, {@link lastCas} holds the new cas.
   */
  store(
    op: StoreOp,
    key: Uint8Array,
    kOff: number,
    nkey: number,
    flags: number,
    exptime: number,
    value: Uint8Array,
    vOff: number,
    nbytes: number,
    cas = 0,
    staleCas = false,
  ): StoreResult {
    const old = this.find(key, kOff, nkey, false);
    const stats = this.stats;
    if (old !== 0) {
      const oldCas = this.cas(old);
      const casMatch = cas !== 0 && cas === oldCas;
      const casStale = cas !== 0 && !casMatch && staleCas && cas < oldCas;
      if (op === StoreOp.ADD) {
        this.bump(old);
        return StoreResult.NOT_STORED;
      }
      let stale = false;
      if (op === StoreOp.CAS) {
        if (casMatch) {
          this.#classCtl(this.classId(old), C.CAS_HITS, 1);
          stats[TS.cas_hits]!++;
        } else if (casStale) {
          this.#classCtl(this.classId(old), C.CAS_HITS, 1);
          stats[TS.cas_hits]!++;
          stale = true;
          exptime = this.exptime(old);
        } else {
          this.#classCtl(this.classId(old), C.CAS_BADVAL, 1);
          stats[TS.cas_badval]!++;
          return StoreResult.EXISTS;
        }
      }
      if (op === StoreOp.APPEND || op === StoreOp.PREPEND) {
        if (cas !== 0 && !casMatch) return StoreResult.EXISTS;
        const oldLen = this.valueLength(old);
        const oldFlags = this.flags(old);
        const oldExp = this.exptime(old);
        const ref = this.alloc(key, kOff, nkey, oldFlags, oldExp, oldLen + nbytes);
        if (ref < 0) return -ref as StoreResult;
        // The allocation may have evicted the old item: then there is nothing left to append to.
        if (this.find(key, kOff, nkey, false) !== old || this.cas(old) !== oldCas) {
          this.free(ref);
          return StoreResult.NOT_STORED;
        }
        if (op === StoreOp.APPEND) {
          this.#copyBetween(old, ref, 0);
          this.writeValue(ref, value, vOff, nbytes, oldLen);
        } else {
          this.writeValue(ref, value, vOff, nbytes, 0);
          this.#copyBetween(old, ref, nbytes);
        }
        this.#classCtl(this.classId(ref), C.CMD_SET, 1);
        this.link(ref);
        return StoreResult.STORED;
      }
      const ref = this.alloc(key, kOff, nkey, flags, exptime, nbytes);
      if (ref < 0) return -ref as StoreResult;
      this.writeValue(ref, value, vOff, nbytes);
      if (stale) {
        this.addItemFlags(ref, ItemFlag.STALE);
        // The old item may be gone (evicted by the allocation): only then is the token bit lost.
        const again = this.find(key, kOff, nkey, false);
        if (again !== 0 && this.itemFlags(again) & ItemFlag.TOKEN_SENT) this.addItemFlags(ref, ItemFlag.TOKEN_SENT);
      }
      this.#classCtl(this.classId(ref), C.CMD_SET, 1);
      this.link(ref);
      return StoreResult.STORED;
    }
    if (op === StoreOp.CAS) {
      stats[TS.cas_misses]!++;
      return StoreResult.NOT_FOUND;
    }
    if (op === StoreOp.REPLACE || op === StoreOp.APPEND || op === StoreOp.PREPEND) return StoreResult.NOT_STORED;
    const ref = this.alloc(key, kOff, nkey, flags, exptime, nbytes);
    if (ref < 0) return -ref as StoreResult;
    this.writeValue(ref, value, vOff, nbytes);
    this.#classCtl(this.classId(ref), C.CMD_SET, 1);
    this.link(ref);
    return StoreResult.STORED;
  }

  /**
   * incr/decr (memcached's `do_add_delta`): the value must be a decimal uint64; incr wraps at 2^64, decr stops at 0.
   * A shorter result is written in place, padded with spaces (memcached does the same); a longer one reallocates.
   * On OK, {@link lastDelta} and {@link lastCas} hold the result.
   */
  delta(key: Uint8Array, kOff: number, nkey: number, incr: boolean, delta: bigint, cas = 0): DeltaResult {
    const ref = this.find(key, kOff, nkey, false);
    if (ref === 0) return DeltaResult.NOT_FOUND;
    const len = this.valueLength(ref);
    if (len === 0 || this.itemFlags(ref) & ItemFlag.CHAINED) return DeltaResult.NON_NUMERIC;
    if (cas !== 0 && this.cas(ref) !== cas) return DeltaResult.EXISTS;
    const start = ((ref - 1) << 3) + HEADER + this.keyLength(ref);
    const current = parseUint64Value(this.#u8, start, start + len);
    if (current < 0n) return DeltaResult.NON_NUMERIC;
    let next: bigint;
    if (incr) next = (current + delta) & 0xffffffffffffffffn;
    else next = delta > current ? 0n : current - delta;
    this.#classCtl(this.classId(ref), incr ? C.INCR_HITS : C.DECR_HITS, 1);
    const text = next.toString();
    if (text.length <= len) {
      this.#arena.write(text, start, 'latin1');
      this.#u8.fill(0x20, start + text.length, start + len);
      const newCas = this.nextCas();
      this.setCas(ref, newCas);
      // memcached's do_item_update: refresh the LRU position, but an incr is not a fetch.
      this.bump(ref, false);
      this.lastCas = newCas;
      this.lastDelta = next;
      return DeltaResult.OK;
    }
    const flags = this.flags(ref);
    const exp = this.exptime(ref);
    const oldCas = this.cas(ref);
    const fresh = this.alloc(key, kOff, nkey, flags, exp, text.length);
    if (fresh < 0) return DeltaResult.NO_MEMORY;
    if (this.find(key, kOff, nkey, false) !== ref || this.cas(ref) !== oldCas) {
      this.free(fresh);
      return DeltaResult.NOT_FOUND;
    }
    const tmp = Buffer.from(text, 'latin1');
    this.writeValue(fresh, tmp, 0, tmp.length);
    this.link(fresh);
    this.lastDelta = next;
    return DeltaResult.OK;
  }

  /** Creates a numeric item (binary/meta incr on a miss with an initial value). */
  createNumber(key: Uint8Array, kOff: number, nkey: number, value: bigint, exptime: number): StoreResult {
    const tmp = Buffer.from(value.toString(), 'latin1');
    return this.store(StoreOp.ADD, key, kOff, nkey, 0, exptime, tmp, 0, tmp.length);
  }

  /**
   * Drops whatever a key holds, taking the lock itself: memcached does this when a `set` is refused as too large,
   * to "avoid stale data persisting in cache because we failed alloc".
   */
  discardStale(key: Uint8Array, kOff: number, nkey: number): void {
    this.lock();
    try {
      const old = this.find(key, kOff, nkey, false);
      if (old !== 0) this.unlink(old);
    } finally {
      this.unlock();
    }
  }

  /** Deletes a key; with `cas`, only when it matches. */
  delete(key: Uint8Array, kOff: number, nkey: number, cas = 0): StoreResult {
    const ref = this.find(key, kOff, nkey, false);
    if (ref === 0) {
      this.stats[TS.delete_misses]!++;
      return StoreResult.NOT_FOUND;
    }
    if (cas !== 0 && this.cas(ref) !== cas) return StoreResult.EXISTS;
    this.#classCtl(this.classId(ref), C.DELETE_HITS, 1);
    this.stats[TS.delete_hits]!++;
    this.unlink(ref);
    return StoreResult.STORED;
  }

  /** Touches a key: new expiry, same cas. Returns the ref or 0. */
  touch(key: Uint8Array, kOff: number, nkey: number, exptime: number): number {
    const ref = this.find(key, kOff, nkey, true);
    this.stats[TS.cmd_touch]!++;
    if (ref === 0) {
      this.stats[TS.touch_misses]!++;
      return 0;
    }
    this.stats[TS.touch_hits]!++;
    this.#classCtl(this.classId(ref), C.TOUCH_HITS, 1);
    this.setExptime(ref, exptime);
    return ref;
  }

  /** Counts a get hit in the item's class (for `stats slabs`). */
  countGetHit(ref: number): void {
    this.#classCtl(this.classId(ref), C.GET_HITS, 1);
  }

  /** Counts a touch hit in the item's class (meta `mg T`, which touches without {@link touch}). */
  countTouchHit(ref: number): void {
    this.#classCtl(this.classId(ref), C.TOUCH_HITS, 1);
  }

  /** Counts a cas miss/hit/badval outside {@link store} (meta). */
  countCas(ref: number, hit: boolean): void {
    this.#classCtl(this.classId(ref), hit ? C.CAS_HITS : C.CAS_BADVAL, 1);
  }

  /**
   * `flush_all [delay]`: items last stored before now (+delay) become invisible. `delay` is a protocol expiry time.
   */
  flushAll(delay: number): void {
    const newOldest = delay > 0 ? this.realtime(delay) : this.now;
    if (this.#config.useCas) {
      this.#ctl[G_OLDEST_LIVE] = newOldest - 1;
      if (newOldest - 1 <= this.now) this.#ctl[G_OLDEST_CAS] = this.nextCas();
    } else {
      this.#ctl[G_OLDEST_LIVE] = newOldest;
    }
  }

  /** `cache_memlimit`: changes the page limit (pages already in use stay). */
  setMemoryLimit(bytes: number): void {
    const pages = Math.floor(bytes / this.#config.pageSize);
    this.#ctl[G_PAGE_LIMIT] = Math.max(1, Math.min(pages, this.shared.arena.byteLength / this.#config.pageSize));
  }

  /**
   * Reclaims expired and flushed items from the tail end of every LRU, at most `budget` items looked at; returns
   * how many were freed. The background reclaimer calls it in small slices (memcached's LRU crawler).
   */
  reclaim(budget: number): number {
    let freed = 0;
    for (let list = 1; list <= this.#chainedList && budget > 0; list++) {
      let ref = this.#getCtl(list, C.LRU_TAIL);
      while (ref !== 0 && budget > 0) {
        budget--;
        const prev = this.#u32[((ref - 1) << 1) + F_PREV]!;
        const exp = this.exptime(ref);
        if ((exp !== 0 && exp <= this.now) || this.#isFlushed(ref)) {
          this.#ctl[G_CRAWLER_RECLAIMED]!++;
          this.#classCtl(this.classId(ref), C.CRAWLER_RECLAIMED, 1);
          this.unlink(ref);
          freed++;
        }
        ref = prev;
      }
    }
    return freed;
  }

  /**
   * Visits up to `limit` live items of an LRU list from the head (for `stats cachedump`).
   */
  forEachInClass(cls: number, limit: number, visit: (ref: number) => void): void {
    let ref = this.#getCtl(cls, C.LRU_HEAD);
    for (let n = 0; ref !== 0 && (limit === 0 || n < limit); n++) {
      visit(ref);
      ref = this.#u32[((ref - 1) << 1) + F_NEXT]!;
    }
  }

  // ---- statistics ----------------------------------------------------------------------------------------------

  /** Global item statistics. */
  globalStats(): GlobalItemStats {
    const ctl = this.#ctl;
    return {
      currItems: ctl[G_CURR_ITEMS]!,
      totalItems: ctl[G_TOTAL_ITEMS]!,
      bytes: ctl[G_BYTES]!,
      evictions: ctl[G_EVICTIONS]!,
      reclaimed: ctl[G_RECLAIMED]!,
      expiredUnfetched: ctl[G_EXPIRED_UNFETCHED]!,
      evictedUnfetched: ctl[G_EVICTED_UNFETCHED]!,
      evictedActive: ctl[G_EVICTED_ACTIVE]!,
      crawlerReclaimed: ctl[G_CRAWLER_RECLAIMED]!,
      pagesUsed: ctl[G_PAGES_USED]!,
      pageLimit: ctl[G_PAGE_LIMIT]!,
      hashPowerLevel: ctl[G_HASH_POWER]!,
      hashBytes: 4 * 2 ** ctl[G_HASH_POWER]!,
    };
  }

  /** Statistics of every class that has pages or items (the LRU of chained items is folded into the largest). */
  classStats(): SlabClassStats[] {
    const out: SlabClassStats[] = [];
    for (let cls = 1; cls <= this.largestClass; cls++) {
      const g = (f: number) =>
        this.#getCtl(cls, f) + (cls === this.largestClass ? this.#getCtl(this.#chainedList, f) : 0);
      const pages = this.#getCtl(cls, C.PAGES);
      const items = g(C.ITEMS);
      if (pages === 0 && items === 0) continue;
      let tail = this.#getCtl(cls, C.LRU_TAIL);
      if (tail === 0 && cls === this.largestClass) tail = this.#getCtl(this.#chainedList, C.LRU_TAIL);
      const perPage = Math.floor(this.#config.pageSize / this.classSizes[cls]!);
      out.push({
        id: cls,
        chunkSize: this.classSizes[cls]!,
        chunksPerPage: perPage,
        totalPages: pages,
        totalChunks: this.#getCtl(cls, C.TOTAL_CHUNKS),
        usedChunks: this.#getCtl(cls, C.USED_CHUNKS),
        freeChunks: this.#getCtl(cls, C.FREE_CHUNKS) + this.#getCtl(cls, C.CARVE_LEFT),
        freeChunksEnd: this.#getCtl(cls, C.CARVE_LEFT),
        memRequested: this.#getCtl(cls, C.MEM_REQUESTED),
        items,
        age: tail === 0 ? 0 : this.now - this.accessTime(tail),
        evicted: this.#getCtl(cls, C.EVICTED),
        evictedNonzero: this.#getCtl(cls, C.EVICTED_NONZERO),
        evictedTime: this.#getCtl(cls, C.EVICTED_TIME),
        outOfMemory: this.#getCtl(cls, C.OUT_OF_MEMORY),
        reclaimed: this.#getCtl(cls, C.RECLAIMED),
        expiredUnfetched: this.#getCtl(cls, C.EXPIRED_UNFETCHED),
        evictedUnfetched: this.#getCtl(cls, C.EVICTED_UNFETCHED),
        crawlerReclaimed: this.#getCtl(cls, C.CRAWLER_RECLAIMED),
        getHits: this.#getCtl(cls, C.GET_HITS),
        cmdSet: this.#getCtl(cls, C.CMD_SET),
        deleteHits: this.#getCtl(cls, C.DELETE_HITS),
        incrHits: this.#getCtl(cls, C.INCR_HITS),
        decrHits: this.#getCtl(cls, C.DECR_HITS),
        casHits: this.#getCtl(cls, C.CAS_HITS),
        casBadval: this.#getCtl(cls, C.CAS_BADVAL),
        touchHits: this.#getCtl(cls, C.TOUCH_HITS),
      });
    }
    return out;
  }

  /** `stats reset`: zeroes the event counters (not the item counts). */
  resetStats(): void {
    const ctl = this.#ctl;
    ctl[G_TOTAL_ITEMS] = 0;
    ctl[G_EVICTIONS] = 0;
    ctl[G_RECLAIMED] = 0;
    ctl[G_EXPIRED_UNFETCHED] = 0;
    ctl[G_EVICTED_UNFETCHED] = 0;
    ctl[G_EVICTED_ACTIVE] = 0;
    ctl[G_CRAWLER_RECLAIMED] = 0;
    for (let list = 1; list <= this.#chainedList; list++) {
      for (const f of [
        C.EVICTED,
        C.EVICTED_NONZERO,
        C.EVICTED_TIME,
        C.OUT_OF_MEMORY,
        C.RECLAIMED,
        C.EXPIRED_UNFETCHED,
        C.EVICTED_UNFETCHED,
        C.GET_HITS,
        C.CMD_SET,
        C.DELETE_HITS,
        C.INCR_HITS,
        C.DECR_HITS,
        C.CAS_HITS,
        C.CAS_BADVAL,
        C.TOUCH_HITS,
        C.CRAWLER_RECLAIMED,
      ]) {
        this.#setCtl(list, f, 0);
      }
    }
  }
}

const SPACE = 0x20;

function isSpace(c: number | undefined): boolean {
  return c === SPACE || (c !== undefined && c >= 0x09 && c <= 0x0d);
}

/**
 * Parses a stored value as memcached's `safe_strtoull` does: leading white space, an optional sign, decimal digits,
 * then white space or the end. Returns -1n when it is not a uint64 (overflow, junk, a negative number).
 */
export function parseUint64Value(src: Uint8Array, start: number, end: number): bigint {
  let i = start;
  while (i < end && isSpace(src[i])) i++;
  let negative = false;
  if (i < end && (src[i] === 0x2b || src[i] === 0x2d)) {
    negative = src[i] === 0x2d;
    i++;
  }
  const digitsStart = i;
  let value = 0n;
  let small = 0;
  let n = 0;
  while (i < end && src[i]! >= 0x30 && src[i]! <= 0x39) {
    small = small * 10 + (src[i]! - 0x30);
    n++;
    if (n === 15) {
      value = value * 10n ** 15n + BigInt(small);
      small = 0;
      n = 0;
    }
    i++;
  }
  if (i === digitsStart) return -1n;
  value = value * 10n ** BigInt(n) + BigInt(small);
  if (i < end && !isSpace(src[i])) return -1n;
  if (value > 0xffffffffffffffffn) return -1n;
  if (negative && value !== 0n) {
    value = (1n << 64n) - value;
    if (value >= 1n << 63n) return -1n;
  }
  return value;
}
