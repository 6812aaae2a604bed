/**
 * Prometheus metrics of a job server, read from its tables at scrape time (so serving costs nothing extra).
 *
 * @module
 */

import type { MetricsRegistry } from '../../net/metrics.ts';
import type { RouterCounters } from './job-router.ts';
import type { GearmanServer } from './server.ts';

const COUNTERS: ReadonlyArray<[keyof RouterCounters, string]> = [
  ['submitted', 'jobs created by SUBMIT_* (coalesced submissions not included)'],
  ['coalesced', 'submissions attached to an existing job with the same unique id'],
  ['completed', 'jobs ended by WORK_COMPLETE'],
  ['failed', 'jobs ended by WORK_FAIL'],
  ['exceptions', 'jobs ended by WORK_EXCEPTION'],
  ['requeued', 'running jobs put back in their queue (worker gone, CAN_DO_TIMEOUT, CANT_DO)'],
  ['timedOut', 'running jobs requeued by CAN_DO_TIMEOUT'],
  ['dropped', 'jobs dropped after --job-retries attempts'],
];

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Registers `gearman_*` metrics that sample the server on every scrape. */
export function gearmanMetrics(registry: MetricsRegistry, server: GearmanServer): void {
  registry.addCollector(() => {
    const router = server.router;
    const lines: string[] = [];
    for (const [key, help] of COUNTERS) {
      const name = `gearman_jobs_${snake(key)}_total`;
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${router.counters[key]}`);
    }
    let queued = 0;
    let running = 0;
    let workers = 0;
    for (const fn of router.functions.values()) {
      queued += fn.queued;
      running += fn.running;
      workers += fn.workers.length;
    }
    const gauges: Array<[string, string, number]> = [
      ['gearman_jobs_queued', 'jobs waiting for a worker', queued],
      ['gearman_jobs_running', 'jobs held by a worker', running],
      ['gearman_worker_abilities', 'registered (connection, function) abilities', workers],
      ['gearman_functions', 'known functions', router.functions.size],
      ['gearman_connections', 'open connections', server.connections.size],
    ];
    for (const [name, help, value] of gauges) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
    }
    return `${lines.join('\n')}\n`;
  });
}
