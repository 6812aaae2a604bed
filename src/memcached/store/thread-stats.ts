/**
 * Per-thread counters, as memcached keeps them (`struct thread_stats`): each serving thread owns one row of a
 * shared `Float64Array` and is its only writer, so no lock or atomic is needed; `stats` sums the rows.
 *
 * @module
 */

/** Counter names in the order of their columns; the names are memcached's `stats` field names. */
export const THREAD_STAT_NAMES = [
  'get_expired',
  'get_flushed',
  'cmd_get',
  'get_hits',
  'get_misses',
  'cmd_touch',
  'touch_hits',
  'touch_misses',
  'cmd_set',
  'delete_misses',
  'delete_hits',
  'incr_misses',
  'incr_hits',
  'decr_misses',
  'decr_hits',
  'cas_misses',
  'cas_hits',
  'cas_badval',
  'cmd_flush',
  'auth_cmds',
  'auth_errors',
  'bytes_read',
  'bytes_written',
  'conn_yields',
  'curr_connections',
  'total_connections',
  'rejected_connections',
  'store_too_large',
  'store_no_memory',
  'meta_cmds',
  'cmd_meta',
  'response_obj_oom',
  'read_buf_oom',
  'idle_kicks',
] as const;

/** A counter's name. */
export type ThreadStatName = (typeof THREAD_STAT_NAMES)[number];

/** Column of each counter: `TS.cmd_get` is the index of `cmd_get` in a thread's row. */
export const TS: { readonly [K in ThreadStatName]: number } = Object.fromEntries(
  THREAD_STAT_NAMES.map((name, i) => [name, i]),
) as { [K in ThreadStatName]: number };

/** Number of columns in a row. */
export const THREAD_STAT_COUNT = THREAD_STAT_NAMES.length;

/** Allocates the shared rows for `threads` threads. */
export function createThreadStatsBuffer(threads: number): SharedArrayBuffer {
  return new SharedArrayBuffer(threads * THREAD_STAT_COUNT * 8);
}

/** Returns the row of thread `index`. */
export function threadStatsRow(buffer: SharedArrayBuffer, index: number): Float64Array {
  return new Float64Array(buffer, index * THREAD_STAT_COUNT * 8, THREAD_STAT_COUNT);
}

/** Sums every thread's row into one. */
export function sumThreadStats(buffer: SharedArrayBuffer): Float64Array {
  const all = new Float64Array(buffer);
  const sum = new Float64Array(THREAD_STAT_COUNT);
  for (let i = 0; i < all.length; i++) sum[i % THREAD_STAT_COUNT]! += all[i]!;
  return sum;
}

/** Zeroes every row but the connection gauges (`stats reset` keeps `curr_connections`). */
export function resetThreadStats(buffer: SharedArrayBuffer): void {
  const all = new Float64Array(buffer);
  for (let i = 0; i < all.length; i++) {
    if (i % THREAD_STAT_COUNT !== TS.curr_connections) all[i] = 0;
  }
}
