/**
 * Prometheus metrics of a memcached server, read from its stats at scrape time (so serving costs nothing extra).
 *
 * @module
 */

import type { MemcachedServer } from '../memcached/server/server.ts';
import type { MetricsRegistry } from '../net/metrics.ts';

const COUNTERS = [
  'cmd_get',
  'cmd_set',
  'get_hits',
  'get_misses',
  'evictions',
  'total_items',
  'total_connections',
  'bytes_read',
  'bytes_written',
] as const;
const GAUGES = ['curr_items', 'bytes', 'curr_connections', 'limit_maxbytes'] as const;

/** Registers `memcached_*` metrics that sample the server's `stats` on every scrape. */
export function memcachedMetrics(registry: MetricsRegistry, server: MemcachedServer): void {
  registry.addCollector(() => {
    const stats = server.stats();
    const lines: string[] = [];
    for (const name of COUNTERS) {
      lines.push(`# HELP memcached_${name}_total memcached stat ${name}`, `# TYPE memcached_${name}_total counter`);
      lines.push(`memcached_${name}_total ${stats.get(name) ?? '0'}`);
    }
    for (const name of GAUGES) {
      lines.push(`# HELP memcached_${name} memcached stat ${name}`, `# TYPE memcached_${name} gauge`);
      lines.push(`memcached_${name} ${stats.get(name) ?? '0'}`);
    }
    return `${lines.join('\n')}\n`;
  });
}
