/**
 * Prometheus metrics for TheSchwartz clients and workers, fed by their `diagnostics_channel` events (so a process
 * that registers no metrics pays nothing). `sharenothing schwartz work --admin host:port` serves them.
 *
 * ```
 *  schwartz_jobs_total{funcname, outcome}        completed | retry | failed | declined | replaced | none
 *  schwartz_job_duration_seconds{funcname}       handler run time (histogram)
 *  schwartz_jobs_running{funcname}               jobs in progress in this process
 *  schwartz_job_errors_total{funcname, stage}    handler | outcome | lease
 *  schwartz_inserts_total{funcname, result}      inserted | duplicate | error
 *  schwartz_database_events_total{event, operation}   error | dead | alive
 *  schwartz_wakeups_total{funcname, event}        sent | error | received (gearman wake-ups)
 *  schwartz_schedule_total{schedule, result}      queued | exists | error (recurring jobs)
 * ```
 *
 * @module
 */

import diagnostics from 'node:diagnostics_channel';
import type { MetricsRegistry } from '../net/metrics.ts';
import {
  DATABASE_CHANNEL,
  INSERT_CHANNEL,
  JOB_CHANNEL,
  SCHEDULE_CHANNEL,
  type SchwartzDatabaseEvent,
  type SchwartzInsertEvent,
  type SchwartzJobEvent,
  type SchwartzScheduleEvent,
  type SchwartzWakeEvent,
  WAKE_CHANNEL,
} from './diagnostics.ts';

const DURATION_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800];

/** Registers the `schwartz_*` metrics on `registry`; returns a function that stops feeding them. */
export function schwartzMetrics(registry: MetricsRegistry): () => void {
  const jobs = registry.counter('schwartz_jobs_total', 'Jobs worked, by outcome', ['funcname', 'outcome']);
  const duration = registry.histogram('schwartz_job_duration_seconds', 'Time from grab to outcome', DURATION_BUCKETS, [
    'funcname',
  ]);
  const running = registry.gauge('schwartz_jobs_running', 'Jobs in progress in this process', ['funcname']);
  const errors = registry.counter('schwartz_job_errors_total', 'Handler, outcome and lease errors', [
    'funcname',
    'stage',
  ]);
  const inserts = registry.counter('schwartz_inserts_total', 'Insert attempts, by result', ['funcname', 'result']);
  const dbEvents = registry.counter('schwartz_database_events_total', 'Database errors and dead/alive changes', [
    'event',
    'operation',
  ]);
  const wakeups = registry.counter('schwartz_wakeups_total', 'Gearman wake-ups sent, failed and received', [
    'funcname',
    'event',
  ]);
  const schedule = registry.counter('schwartz_schedule_total', 'Recurring job occurrences offered', [
    'schedule',
    'result',
  ]);
  const inProgress = new Map<string, number>();
  const onJob = (message: unknown) => {
    const e = message as SchwartzJobEvent;
    if (e.type === 'start') {
      const n = (inProgress.get(e.funcname) ?? 0) + 1;
      inProgress.set(e.funcname, n);
      running.set({ funcname: e.funcname }, n);
    } else if (e.type === 'end') {
      const n = Math.max(0, (inProgress.get(e.funcname) ?? 1) - 1);
      inProgress.set(e.funcname, n);
      running.set({ funcname: e.funcname }, n);
      jobs.inc({ funcname: e.funcname, outcome: e.outcome });
      duration.observe({ funcname: e.funcname }, e.durationMs / 1000);
    } else {
      errors.inc({ funcname: e.funcname, stage: e.stage });
    }
  };
  const onInsert = (message: unknown) => {
    const e = message as SchwartzInsertEvent;
    inserts.inc({ funcname: e.funcname, result: e.type });
  };
  const onDatabase = (message: unknown) => {
    const e = message as SchwartzDatabaseEvent;
    dbEvents.inc({ event: e.type, operation: e.operation ?? '' });
  };
  const onWake = (message: unknown) => {
    const e = message as SchwartzWakeEvent;
    wakeups.inc({ funcname: e.funcname, event: e.type });
  };
  const onSchedule = (message: unknown) => {
    const e = message as SchwartzScheduleEvent;
    schedule.inc({ schedule: e.name, result: e.type });
  };
  const subscriptions: [string, (message: unknown) => void][] = [
    [JOB_CHANNEL, onJob],
    [INSERT_CHANNEL, onInsert],
    [DATABASE_CHANNEL, onDatabase],
    [WAKE_CHANNEL, onWake],
    [SCHEDULE_CHANNEL, onSchedule],
  ];
  for (const [channel, fn] of subscriptions) diagnostics.subscribe(channel, fn);
  return () => {
    for (const [channel, fn] of subscriptions) diagnostics.unsubscribe(channel, fn);
  };
}
