/**
 * `node:diagnostics_channel` events of the TheSchwartz client and worker. Publishing is guarded by `hasSubscribers`,
 * so it costs nothing when nobody listens. Events carry function names, handles and redacted DSNs, never job
 * arguments, unique keys or credentials.
 *
 * @example
 * import diagnostics from 'node:diagnostics_channel';
 * diagnostics.subscribe('sharenothing:schwartz:job', (m) => {
 *   const e = m as SchwartzJobEvent;
 *   if (e.type === 'end') histogram.observe({ fn: e.funcname, outcome: e.outcome }, e.durationMs);
 * });
 *
 * @module
 */

import diagnostics from 'node:diagnostics_channel';

/** Name of the client's insert channel. */
export const INSERT_CHANNEL = 'sharenothing:schwartz:insert';
/** Name of the worker's per-job channel. */
export const JOB_CHANNEL = 'sharenothing:schwartz:job';
/** Name of the per-database channel (failures, dead and alive marks). */
export const DATABASE_CHANNEL = 'sharenothing:schwartz:database';
/** Name of the gearman wake-up channel (notifications sent, failed, received). */
export const WAKE_CHANNEL = 'sharenothing:schwartz:wake';
/** Name of the scheduler's channel (recurring jobs queued). */
export const SCHEDULE_CHANNEL = 'sharenothing:schwartz:schedule';

/**
 * One job offered to one database: `inserted`, `duplicate` (its `uniqkey` exists: nothing inserted), or `error`
 * (that database failed; the client tries the next one).
 */
export type SchwartzInsertEvent =
  | {
      readonly type: 'inserted';
      readonly funcname: string;
      /** `md5_hex(dsn|user)`, the first part of job handles. */
      readonly database: string;
      readonly handle: string;
      readonly durationMs: number;
    }
  | { readonly type: 'duplicate'; readonly funcname: string; readonly database: string; readonly durationMs: number }
  | {
      readonly type: 'error';
      readonly funcname: string;
      readonly database: string;
      readonly durationMs: number;
      readonly error: Error;
    };

/**
 * What became of a job a worker ran: `completed`, `retry` (failed, will run again), `failed` (failed for good, also
 * after a permanent failure), `declined`, `replaced`, or `none` (nothing was written: the lease was lost, the
 * outcome's write failed, or the worker was destroyed; the job runs again when its lease ends).
 */
export type SchwartzOutcome = 'completed' | 'retry' | 'failed' | 'declined' | 'replaced' | 'none';

/** A job run by a worker: `start` once grabbed, then `end`; `error` for what went wrong on the way. */
export type SchwartzJobEvent =
  | { readonly type: 'start'; readonly funcname: string; readonly handle: string; readonly database: string }
  | {
      readonly type: 'end';
      readonly funcname: string;
      readonly handle: string;
      readonly database: string;
      readonly outcome: SchwartzOutcome;
      readonly durationMs: number;
    }
  | {
      readonly type: 'error';
      readonly funcname: string;
      readonly handle: string;
      readonly database: string;
      /**
       * `handler`: the handler threw (recorded as a failure); `outcome`: writing the outcome failed; `lease`: a
       * lease renewal failed (retried) or found the lease lost (the job's signal is aborted).
       */
      readonly stage: 'handler' | 'outcome' | 'lease';
      readonly error: Error;
    };

/**
 * A database's state: `error` when a statement failed (the operation says which), `dead` when it is skipped for
 * `retrySeconds`, `alive` when it is used again.
 */
export interface SchwartzDatabaseEvent {
  readonly type: 'error' | 'dead' | 'alive';
  /** `md5_hex(dsn|user)`. */
  readonly database: string;
  /** The DSN as configured, password removed. */
  readonly dsn: string;
  /** What was being done: `insert`, `find`, `grab`, `list`, `renew`, … */
  readonly operation?: string;
  readonly error?: Error;
}

/**
 * A wake-up through gearman: `sent` (the job server accepted the background job `schwartz-wake:<funcname>`),
 * `error` (it did not; the insert it followed is unaffected), `received` (a worker got one and woke up).
 */
export type SchwartzWakeEvent =
  | { readonly type: 'sent'; readonly funcname: string; readonly server: string; readonly durationMs: number }
  | { readonly type: 'error'; readonly funcname: string; readonly durationMs: number; readonly error: Error }
  | { readonly type: 'received'; readonly funcname: string; readonly server: string };

/**
 * One occurrence of a recurring job offered to its database: `queued` (inserted), `exists` (another scheduler
 * queued it: its `uniqkey` is taken), `error` (the insert failed; retried). `due` is unix seconds; `catchUp` marks
 * the latest missed occurrence queued on start (`catchUp: 'latest'`).
 */
export type SchwartzScheduleEvent =
  | {
      readonly type: 'queued';
      readonly name: string;
      readonly funcname: string;
      readonly due: number;
      readonly catchUp: boolean;
      readonly handle: string;
    }
  | {
      readonly type: 'exists';
      readonly name: string;
      readonly funcname: string;
      readonly due: number;
      readonly catchUp: boolean;
    }
  | {
      readonly type: 'error';
      readonly name: string;
      readonly funcname: string;
      readonly due: number;
      readonly catchUp: boolean;
      readonly error: Error;
    };

/** The channel {@link SchwartzInsertEvent}s are published on. */
export const insertChannel = diagnostics.channel(INSERT_CHANNEL);
/** The channel {@link SchwartzJobEvent}s are published on. */
export const jobChannel = diagnostics.channel(JOB_CHANNEL);
/** The channel {@link SchwartzDatabaseEvent}s are published on. */
export const databaseChannel = diagnostics.channel(DATABASE_CHANNEL);

/** The channel {@link SchwartzWakeEvent}s are published on. */
export const wakeChannel = diagnostics.channel(WAKE_CHANNEL);
/** The channel {@link SchwartzScheduleEvent}s are published on. */
export const scheduleChannel = diagnostics.channel(SCHEDULE_CHANNEL);

/** Publishes a wake-up event when someone listens. */
export function publishWakeEvent(event: SchwartzWakeEvent): void {
  if (wakeChannel.hasSubscribers) wakeChannel.publish(event);
}

/** Publishes a schedule event when someone listens. */
export function publishScheduleEvent(event: SchwartzScheduleEvent): void {
  if (scheduleChannel.hasSubscribers) scheduleChannel.publish(event);
}

/** Publishes a database event when someone listens. */
export function publishDatabaseEvent(event: SchwartzDatabaseEvent): void {
  if (databaseChannel.hasSubscribers) databaseChannel.publish(event);
}

/** Publishes a job event when someone listens. */
export function publishJobEvent(event: SchwartzJobEvent): void {
  if (jobChannel.hasSubscribers) jobChannel.publish(event);
}

/** `err` as an `Error` (handlers may throw anything). */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
