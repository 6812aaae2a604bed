/**
 * Slab class sizing, as memcached's `slabs_init()` computes it.
 *
 * Class 1 holds `48 + chunkSize` bytes (memcached's `sizeof(item)` plus `-n`), each next class is `-f` times larger,
 * every size is rounded up to 8 bytes, and the last class is always `slabChunkMax` (half a page). With the defaults
 * (`-n 48 -f 1.25`, 1 MiB pages) that gives memcached's 39 classes, 96 … 394840, 524288.
 *
 * @module
 */

/** memcached's `sizeof(item)` on 64-bit: the base every class size starts from. */
export const MEMCACHED_ITEM_HEADER = 48;
/** Chunk sizes are multiples of this. */
export const CHUNK_ALIGN_BYTES = 8;
/** memcached's `MAX_NUMBER_OF_SLAB_CLASSES` (63 + the largest). */
export const MAX_SLAB_CLASSES = 63;

/** The inputs of the class table: `-n`, `-f`, the page size and the largest chunk. */
export interface SlabClassOptions {
  /** `-n`: minimum space for key + value + flags (default 48). */
  chunkSize: number;
  /** `-f`: growth factor between classes (default 1.25). */
  growthFactor: number;
  /** Slab page size in bytes (1 MiB). */
  pageSize: number;
  /** Largest chunk (`-o slab_chunk_max`, default half a page). */
  slabChunkMax: number;
}

/**
 * Returns the chunk size of every class, index 0 being class 1.
 *
 * @example computeSlabClassSizes({ chunkSize: 48, growthFactor: 1.25, pageSize: 1 << 20, slabChunkMax: 1 << 19 })
 */
export function computeSlabClassSizes(options: SlabClassOptions): number[] {
  const sizes: number[] = [];
  let size = MEMCACHED_ITEM_HEADER + options.chunkSize;
  // memcached stops one short of MAX_NUMBER_OF_SLAB_CLASSES - 1 and then appends the largest class.
  while (sizes.length < MAX_SLAB_CLASSES - 2) {
    if (size >= options.slabChunkMax / options.growthFactor) break;
    if (size % CHUNK_ALIGN_BYTES) size += CHUNK_ALIGN_BYTES - (size % CHUNK_ALIGN_BYTES);
    sizes.push(size);
    // memcached keeps `size` in an unsigned int: the product is truncated.
    size = Math.trunc(size * options.growthFactor);
  }
  sizes.push(options.slabChunkMax);
  return sizes;
}
