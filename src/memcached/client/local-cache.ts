/**
 * The in-process cache in front of the cluster (`localCache` option): a bounded LRU with a time to live, holding
 * values as bytes and flags (decoded on every hit, so callers never share a mutable object).
 *
 * A `Map` keeps insertion order: re-inserting on a hit moves an entry to the back, so the front is the least
 * recently used entry.
 *
 * @module
 */

/** An entry of {@link LocalCache}. */
export interface LocalEntry {
  readonly data: Buffer;
  readonly flags: number;
}

interface Slot extends LocalEntry {
  readonly expires: number;
}

/** Bounded LRU with per-entry expiry. */
export class LocalCache {
  readonly #max: number;
  readonly #ttlMs: number;
  readonly #map = new Map<string, Slot>();

  /**
   * @param max most entries kept
   * @param ttlMs how long an entry is served (the cluster's TTL is not known here: keep this short)
   */
  constructor(max: number, ttlMs: number) {
    this.#max = max;
    this.#ttlMs = ttlMs;
  }

  /** Number of entries (expired ones included until they are looked up or evicted). */
  get size(): number {
    return this.#map.size;
  }

  /** The live entry for `key`, if any (and marks it recently used). */
  get(key: string, now = Date.now()): LocalEntry | undefined {
    const slot = this.#map.get(key);
    if (slot === undefined) return undefined;
    this.#map.delete(key);
    if (slot.expires <= now) return undefined;
    this.#map.set(key, slot);
    return slot;
  }

  /** Stores an entry, evicting the least recently used ones beyond `max`. */
  set(key: string, entry: LocalEntry, now = Date.now()): void {
    if (this.#max <= 0) return;
    this.#map.delete(key);
    this.#map.set(key, { data: entry.data, flags: entry.flags, expires: now + this.#ttlMs });
    while (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value as string;
      this.#map.delete(oldest);
    }
  }

  /** Forgets `key`. */
  delete(key: string): void {
    this.#map.delete(key);
  }

  /** Forgets everything. */
  clear(): void {
    this.#map.clear();
  }
}
