/**
 * The `stats` groups, with memcached 1.6.18's field names in memcached's order (tools such as `memcstat` and
 * php-memcached's `getStats()` read them by name; memcached's own tests count the lines).
 *
 * @module
 */

import type { ItemStore } from '../store/item-store.ts';
import { sumThreadStats, TS } from '../store/thread-stats.ts';
import type { MemcachedSettings } from './settings.ts';

/** What the report needs beyond the store and the settings. */
export interface StatsSource {
  settings: MemcachedSettings;
  store: ItemStore;
  threadStats: SharedArrayBuffer;
  version: string;
  verbosity: number;
  /** Open connections (all threads), counted by the accept loops. */
  currConnections: number;
  totalConnections: number;
  rejectedConnections: number;
  /** Whether the listeners are accepting (false while at `-c`). */
  accepting: boolean;
  listenDisabledNum: number;
}

type Pairs = Array<[string, string]>;

function usec(micros: number): string {
  const sec = Math.floor(micros / 1e6);
  return `${sec}.${String(Math.floor(micros % 1e6)).padStart(6, '0')}`;
}

/** `stats` (no group). */
export function generalStats(src: StatsSource): Pairs {
  const { store, settings } = src;
  const t = sumThreadStats(src.threadStats);
  const usage = process.resourceUsage();
  const g = store.globalStats();
  const now = store.now;
  const n = (v: number | undefined) => String(v ?? 0);
  return [
    ['pid', String(process.pid)],
    ['uptime', String(Math.max(0, now - 60))],
    ['time', String(now + store.processStarted)],
    ['version', src.version],
    ['libevent', `node-${process.versions.node}`],
    ['pointer_size', '64'],
    ['rusage_user', usec(usage.userCPUTime)],
    ['rusage_system', usec(usage.systemCPUTime)],
    ['max_connections', String(settings.maxConns)],
    ['curr_connections', String(src.currConnections)],
    ['total_connections', String(src.totalConnections)],
    ['rejected_connections', String(src.rejectedConnections)],
    ['connection_structures', String(src.currConnections + 1)],
    ['response_obj_oom', n(t[TS.response_obj_oom])],
    ['response_obj_count', '0'],
    ['response_obj_bytes', '0'],
    ['read_buf_count', '0'],
    ['read_buf_bytes', '0'],
    ['read_buf_bytes_free', '0'],
    ['read_buf_oom', n(t[TS.read_buf_oom])],
    ['reserved_fds', '20'],
    ['cmd_get', n(t[TS.cmd_get])],
    ['cmd_set', n(t[TS.cmd_set])],
    ['cmd_flush', n(t[TS.cmd_flush])],
    ['cmd_touch', n(t[TS.cmd_touch])],
    ['cmd_meta', n(t[TS.cmd_meta])],
    ['get_hits', n(t[TS.get_hits])],
    ['get_misses', n(t[TS.get_misses])],
    ['get_expired', n(t[TS.get_expired])],
    ['get_flushed', n(t[TS.get_flushed])],
    ['delete_misses', n(t[TS.delete_misses])],
    ['delete_hits', n(t[TS.delete_hits])],
    ['incr_misses', n(t[TS.incr_misses])],
    ['incr_hits', n(t[TS.incr_hits])],
    ['decr_misses', n(t[TS.decr_misses])],
    ['decr_hits', n(t[TS.decr_hits])],
    ['cas_misses', n(t[TS.cas_misses])],
    ['cas_hits', n(t[TS.cas_hits])],
    ['cas_badval', n(t[TS.cas_badval])],
    ['touch_hits', n(t[TS.touch_hits])],
    ['touch_misses', n(t[TS.touch_misses])],
    ['store_too_large', n(t[TS.store_too_large])],
    ['store_no_memory', n(t[TS.store_no_memory])],
    ['auth_cmds', n(t[TS.auth_cmds])],
    ['auth_errors', n(t[TS.auth_errors])],
    ...(settings.idleTimeout ? ([['idle_kicks', n(t[TS.idle_kicks])]] as Pairs) : []),
    ['bytes_read', n(t[TS.bytes_read])],
    ['bytes_written', n(t[TS.bytes_written])],
    ['limit_maxbytes', String(g.pageLimit * 1024 * 1024)],
    ['accepting_conns', src.accepting ? '1' : '0'],
    ['listen_disabled_num', String(src.listenDisabledNum)],
    ['time_in_listen_disabled_us', '0'],
    ['threads', String(settings.threads)],
    ['conn_yields', n(t[TS.conn_yields])],
    ['hash_power_level', String(g.hashPowerLevel)],
    ['hash_bytes', String(g.hashBytes)],
    ['hash_is_expanding', '0'],
    ['slab_reassign_rescues', '0'],
    ['slab_reassign_chunk_rescues', '0'],
    ['slab_reassign_evictions_nomem', '0'],
    ['slab_reassign_inline_reclaim', '0'],
    ['slab_reassign_busy_items', '0'],
    ['slab_reassign_busy_deletes', '0'],
    ['slab_reassign_running', '0'],
    ['slabs_moved', '0'],
    ['lru_crawler_running', '0'],
    ['lru_crawler_starts', '0'],
    ['lru_maintainer_juggles', '0'],
    ['malloc_fails', '0'],
    ['log_worker_dropped', '0'],
    ['log_worker_written', '0'],
    ['log_watcher_skipped', '0'],
    ['log_watcher_sent', '0'],
    ['log_watchers', '0'],
    ['unexpected_napi_ids', '0'],
    ['round_robin_fallback', '0'],
    ['bytes', String(g.bytes)],
    ['curr_items', String(g.currItems)],
    ['total_items', String(g.totalItems)],
    ['slab_global_page_pool', '0'],
    ['expired_unfetched', String(g.expiredUnfetched)],
    ['evicted_unfetched', String(g.evictedUnfetched)],
    ['evicted_active', String(g.evictedActive)],
    ['evictions', String(g.evictions)],
    ['reclaimed', String(g.reclaimed)],
    ['crawler_reclaimed', String(g.crawlerReclaimed)],
    ['crawler_items_checked', '0'],
    ['lrutail_reflocked', '0'],
    ['moves_to_cold', '0'],
    ['moves_to_warm', '0'],
    ['moves_within_lru', '0'],
    ['direct_reclaims', '0'],
    ['lru_bumps_dropped', '0'],
  ];
}

/** `stats settings`. */
export function settingsStats(src: StatsSource): Pairs {
  const s = src.settings;
  const yn = (b: boolean) => (b ? 'yes' : 'no');
  return [
    ['maxbytes', String(s.maxBytes)],
    ['maxconns', String(s.maxConns)],
    ['tcpport', String(s.port)],
    ['udpport', String(s.udpPort)],
    ['inter', s.listen.length ? s.listen.join(',') : 'NULL'],
    ['verbosity', String(src.verbosity)],
    ['oldest', '0'],
    ['evictions', s.evictions ? 'on' : 'off'],
    ['domain_socket', 'NULL'],
    ['umask', '700'],
    ['shutdown_command', yn(s.shutdownEnabled)],
    ['growth_factor', s.growthFactor.toFixed(2)],
    ['chunk_size', String(s.chunkSize)],
    ['num_threads', String(s.threads)],
    ['num_threads_per_udp', String(s.threads)],
    ['stat_key_prefix', ':'],
    ['detail_enabled', 'no'],
    ['reqs_per_event', String(s.reqsPerEvent)],
    ['cas_enabled', yn(s.useCas)],
    ['tcp_backlog', String(s.backlog)],
    ['binding_protocol', s.bindingProtocol === 'auto' ? 'auto-negotiate' : s.bindingProtocol],
    ['auth_enabled_sasl', yn(s.sasl)],
    ['auth_enabled_ascii', 'no'],
    ['item_size_max', String(s.itemSizeMax)],
    ['maxconns_fast', 'yes'],
    ['hashpower_init', '0'],
    ['slab_reassign', 'no'],
    ['slab_automove', '0'],
    ['slab_automove_ratio', '0.80'],
    ['slab_automove_window', '30'],
    ['slab_chunk_max', String(s.slabChunkMax)],
    ['lru_crawler', 'yes'],
    ['lru_crawler_sleep', '100'],
    ['lru_crawler_tocrawl', '0'],
    ['tail_repair_time', '0'],
    ['flush_enabled', yn(s.flushEnabled)],
    ['dump_enabled', yn(s.dumpEnabled)],
    ['hash_algorithm', 'fnv1a'],
    ['lru_maintainer_thread', 'no'],
    ['lru_segmented', 'no'],
    ['hot_lru_pct', '20'],
    ['warm_lru_pct', '40'],
    ['hot_max_factor', '0.20'],
    ['warm_max_factor', '2.00'],
    ['temp_lru', 'no'],
    ['temporary_ttl', '61'],
    ['idle_timeout', String(s.idleTimeout)],
    ['watcher_logbuf_size', '262144'],
    ['worker_logbuf_size', '65536'],
    ['read_buf_mem_limit', '0'],
    ['track_sizes', yn(s.trackSizes)],
    ['inline_ascii_response', 'no'],
    ['drop_privileges', 'no'],
  ];
}

/** `stats items`. */
export function itemsStats(src: StatsSource): Pairs {
  const out: Pairs = [];
  for (const c of src.store.classStats()) {
    if (c.items === 0) continue;
    const p = `items:${c.id}:`;
    out.push(
      [`${p}number`, String(c.items)],
      [`${p}number_hot`, '0'],
      [`${p}number_warm`, '0'],
      [`${p}number_cold`, String(c.items)],
      [`${p}age_hot`, '0'],
      [`${p}age_warm`, '0'],
      [`${p}age`, String(c.age)],
      [`${p}mem_requested`, String(c.memRequested)],
      [`${p}evicted`, String(c.evicted)],
      [`${p}evicted_nonzero`, String(c.evictedNonzero)],
      [`${p}evicted_time`, String(c.evictedTime)],
      [`${p}outofmemory`, String(c.outOfMemory)],
      [`${p}tailrepairs`, '0'],
      [`${p}reclaimed`, String(c.reclaimed)],
      [`${p}expired_unfetched`, String(c.expiredUnfetched)],
      [`${p}evicted_unfetched`, String(c.evictedUnfetched)],
      [`${p}evicted_active`, '0'],
      [`${p}crawler_reclaimed`, String(c.crawlerReclaimed)],
      [`${p}crawler_items_checked`, '0'],
      [`${p}lrutail_reflocked`, '0'],
      [`${p}moves_to_cold`, '0'],
      [`${p}moves_to_warm`, '0'],
      [`${p}moves_within_lru`, '0'],
      [`${p}direct_reclaims`, '0'],
      [`${p}hits_to_hot`, '0'],
      [`${p}hits_to_warm`, '0'],
      [`${p}hits_to_cold`, String(c.getHits)],
      [`${p}hits_to_temp`, '0'],
    );
  }
  return out;
}

/** `stats slabs`. */
export function slabsStats(src: StatsSource): Pairs {
  const out: Pairs = [];
  let active = 0;
  let pages = 0;
  for (const c of src.store.classStats()) {
    if (c.totalPages === 0) continue;
    active++;
    pages += c.totalPages;
    const p = `${c.id}:`;
    out.push(
      [`${p}chunk_size`, String(c.chunkSize)],
      [`${p}chunks_per_page`, String(c.chunksPerPage)],
      [`${p}total_pages`, String(c.totalPages)],
      [`${p}total_chunks`, String(c.totalChunks)],
      [`${p}used_chunks`, String(c.usedChunks)],
      [`${p}free_chunks`, String(c.freeChunks)],
      [`${p}free_chunks_end`, String(c.freeChunksEnd)],
      [`${p}get_hits`, String(c.getHits)],
      [`${p}cmd_set`, String(c.cmdSet)],
      [`${p}delete_hits`, String(c.deleteHits)],
      [`${p}incr_hits`, String(c.incrHits)],
      [`${p}decr_hits`, String(c.decrHits)],
      [`${p}cas_hits`, String(c.casHits)],
      [`${p}cas_badval`, String(c.casBadval)],
      [`${p}touch_hits`, String(c.touchHits)],
    );
  }
  out.push(['active_slabs', String(active)], ['total_malloced', String(pages * src.settings.slabChunkMax * 2)]);
  return out;
}

/** `stats sizes` (size histogram only with `-o track_sizes`). */
export function sizesStats(src: StatsSource): Pairs {
  if (!src.settings.trackSizes) return [['sizes_status', 'disabled']];
  // Items bucketed by total size rounded up to 32 bytes, as memcached's histogram.
  const buckets = new Map<number, number>();
  const store = src.store;
  for (let cls = 1; cls <= store.largestClass + 1; cls++) {
    store.forEachInClass(cls, 0, (ref) => {
      const size = Math.ceil(store.itemTotal(ref) / 32) * 32;
      buckets.set(size, (buckets.get(size) ?? 0) + 1);
    });
  }
  return [...buckets.entries()].sort((a, b) => a[0] - b[0]).map(([size, count]) => [String(size), String(count)]);
}
