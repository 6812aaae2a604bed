/**
 * A `Map<string, V>` split into 64 maps by a hash of the key's tail.
 *
 * A V8 `Map` grows by rehashing every entry at once: at two million queued jobs one `set` stalls the job server for
 * ~300 ms, and the stall doubles with each growth. Sixty-four smaller maps grow one at a time, each 1/64th of the
 * work, so the pause per growth stays in the low milliseconds (and the 16.7M-entry limit of one `Map` moves to
 * ~1G entries). Lookups pay one short hash.
 *
 * ```
 *  key "H:host:1234567" ─► hash(last 8 chars, length) & 63 ─► shards[k] ─► V
 * ```
 *
 * @module
 */

const SHARDS = 64;

/** FNV-1a over the last (up to) 8 UTF-16 units and the length: handles and unique ids differ at the end. */
function shardOf(key: string): number {
  let h = 0x811c9dc5 ^ key.length;
  for (let i = Math.max(0, key.length - 8); i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h ^ (h >>> 15)) & (SHARDS - 1);
}

/** See the module comment. Iteration order is per shard, not insertion order. */
export class ShardedMap<V> {
  readonly #shards: Map<string, V>[] = Array.from({ length: SHARDS }, () => new Map<string, V>());
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(key: string): V | undefined {
    return this.#shards[shardOf(key)]!.get(key);
  }

  has(key: string): boolean {
    return this.#shards[shardOf(key)]!.has(key);
  }

  set(key: string, value: V): void {
    const shard = this.#shards[shardOf(key)]!;
    const before = shard.size;
    shard.set(key, value);
    this.#size += shard.size - before;
  }

  delete(key: string): boolean {
    const deleted = this.#shards[shardOf(key)]!.delete(key);
    if (deleted) this.#size--;
    return deleted;
  }

  *values(): IterableIterator<V> {
    for (const shard of this.#shards) yield* shard.values();
  }
}
