/**
 * TheSchwartz for Node: `sharenothing/schwartz`. A reliable job queue in MySQL/MariaDB, PostgreSQL or SQLite with
 * TheSchwartz 1.12's tables and semantics, so Perl (`TheSchwartz`) and Node clients and workers share one queue:
 * the same job handles, retries, exit statuses, failure logs, priorities and `replace_with`.
 *
 * @module
 * @example
 * import { SchwartzClient, SchwartzWorker } from 'sharenothing/schwartz';
 *
 * const client = new SchwartzClient({
 *   databases: [{ dsn: 'dbi:mysql:database=jobs;host=db1', user: 'app', password: 'secret' }],
 * });
 * await client.ensureSchema(); // creates TheSchwartz's tables where missing
 * await client.insert('MyApp::Resize', JSON.stringify({ photo: 42 }), { uniqkey: 'photo-42' });
 *
 * const worker = new SchwartzWorker(client, { concurrency: 4 });
 * worker.canDo('MyApp::Resize', async (job) => {
 *   const { photo } = JSON.parse(job.arg!.toString());
 *   await resize(photo, { signal: job.signal }); // resolving completes the job, throwing fails it
 * }, { maxRetries: 3, retryDelay: (failures) => 30 * 2 ** failures, keepExitStatusFor: 86_400 });
 * await worker.workUntilDone();
 *
 * // Beyond TheSchwartz: recurring jobs, one per due time however many processes run the schedule.
 * const scheduler = new SchwartzScheduler(client, {
 *   schedules: [{ name: 'nightly', funcname: 'MyApp::Report', cron: '0 3 * * *', timezone: 'Europe/Berlin' }],
 * });
 * await scheduler.tick(); // queues the next occurrence; `scheduler.run({ signal })` keeps doing so
 * await client.close();
 */

export {
  type InsertOptions,
  type InTransactionOptions,
  type ListJobsQuery,
  SchwartzClient,
  type SchwartzClientOptions,
} from './client.ts';
export { CronExpression, type CronOptions } from './cron-expression.ts';
export { databaseHash, type SchwartzDatabaseConfig } from './database-set.ts';
export {
  DATABASE_CHANNEL,
  INSERT_CHANNEL,
  JOB_CHANNEL,
  SCHEDULE_CHANNEL,
  type SchwartzDatabaseEvent,
  type SchwartzInsertEvent,
  type SchwartzJobEvent,
  type SchwartzOutcome,
  type SchwartzScheduleEvent,
  type SchwartzWakeEvent,
  WAKE_CHANNEL,
} from './diagnostics.ts';
export {
  isSchwartzError,
  SCHWARTZ_ERROR_CODES,
  SchwartzError,
  type SchwartzErrorCode,
  type SchwartzErrorInfo,
} from './errors.ts';
export {
  type SchwartzNotifyOptions,
  type SchwartzWakeOnOptions,
  WAKE_FUNCTION_PREFIX,
  WAKE_UNIQUE,
} from './gearman-wake-up.ts';
export { type Housekeeping, Job, JobHandle, type JobRecord, type JobSettings } from './job.ts';
export type { JobArg, JobId, NewJob } from './job-store.ts';
export { schwartzMetrics } from './metrics.ts';
export { type FunctionSummary, queueSummary, type RetryResult, retryJob } from './queue-admin.ts';
export {
  type RecurringJob,
  type ScheduleResult,
  SchwartzScheduler,
  type SchwartzSchedulerOptions,
} from './scheduler.ts';
export { ensureSchema, type SchwartzTables, schemaStatements, schwartzTables } from './schema.ts';
export type { RateLimit } from './token-bucket.ts';
export {
  type AbilityOptions,
  type JobHandler,
  SchwartzWorker,
  type SchwartzWorkerOptions,
} from './worker.ts';
