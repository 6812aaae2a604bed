/**
 * Recurring jobs: a cron expression or a fixed interval per schedule, turned into ordinary TheSchwartz jobs (so
 * Perl workers run them too), exactly one per due time however many processes run the same schedules.
 *
 * No table of its own: each occurrence is a job with `uniqkey = "cron:<name>:<due unix seconds>"` and `run_after`
 * its due time, and TheSchwartz's `UNIQUE(funcid, uniqkey)` lets only one process insert it. A uniqkey is free again
 * once its job has run and been deleted, so an occurrence must never be inserted after it may have run. Hence
 * occurrences are queued **ahead**: the moment one falls due, each scheduler queues the next (and on start, the next
 * after now). Every insert is of a time still to come, whose job cannot have run yet; the first process wins and
 * the others get "duplicate".
 *
 * ```
 *  time ──────────●─────────────────────●─────────────────────●──▶   occurrences D1 D2 D3
 *   start: queue D1 (run_after D1)      │
 *                 D1 falls due: queue D2; workers run D1, wake-up sent (client `notify`)
 *                                        D2 falls due: queue D3 …    (other processes: duplicates, no-ops)
 * ```
 *
 * Each schedule's jobs go to one database of the client, chosen from its name (the same on every process with the
 * same databases): uniqkeys are only unique per database, so there is no failover for them.
 *
 * @module
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { crc32 } from 'node:zlib';
import { type ClientInternals, clientInternals, type SchwartzClient } from './client.ts';
import { CronExpression } from './cron-expression.ts';
import type { SchwartzDatabase } from './database-set.ts';
import { asError, publishScheduleEvent } from './diagnostics.ts';
import { invalidArgument, isSchwartzError, SchwartzError } from './errors.ts';
import type { JobHandle } from './job.ts';
import { type JobArg, normalizeNewJob } from './job-store.ts';

/** One recurring job. */
export interface RecurringJob {
  /**
   * The schedule's name: with the due time it makes each job's `uniqkey` (`cron:<name>:<unix seconds>`), so every
   * process running this schedule must give it the same name. Letters, digits and `_.:@/-`, at most 200 characters.
   */
  name: string;
  /** The function (Perl worker class) the jobs are for. */
  funcname: string;
  /** A cron expression (five fields, `@daily` …): see {@link CronExpression}. Give this or `every`. */
  cron?: string;
  /** Every this many ms, a whole number of seconds, counted from the unix epoch (3 600 000: on the hour, UTC). */
  every?: number;
  /** The time zone `cron` is read in (default `UTC`). */
  timezone?: string;
  /** The jobs' argument, or a function of the due time making it. */
  arg?: JobArg | ((due: Date) => JobArg);
  /** The jobs' priority. */
  priority?: number;
  /** The jobs' coalesce value. */
  coalesce?: string;
  /**
   * What a scheduler that starts after a downtime does about occurrences nobody queued (default `none`):
   * `latest` queues the latest one as well, when no process has queued the next one yet (see `docs/schwartz.md`).
   */
  catchUp?: 'none' | 'latest';
}

/** Options of {@link SchwartzScheduler}. */
export interface SchwartzSchedulerOptions {
  schedules: readonly RecurringJob[];
  /** Ms before a failed insert is tried again (default 5000). */
  retryInterval?: number;
}

/** What one {@link SchwartzScheduler.tick} did for one occurrence. */
export interface ScheduleResult {
  readonly name: string;
  readonly funcname: string;
  readonly due: Date;
  /** The latest missed occurrence, queued on start (`catchUp: 'latest'`). */
  readonly catchUp: boolean;
  /** `queued` by this call, `exists` (queued by another process or an earlier run), or `error` (retried). */
  readonly outcome: 'queued' | 'exists' | 'error';
  readonly handle?: JobHandle;
  readonly error?: Error;
}

/** Occurrence arithmetic, in ms. */
interface Occurrences {
  next(after: number): number | undefined;
  previous(atOrBefore: number): number | undefined;
}

interface ScheduleState {
  readonly spec: RecurringJob;
  readonly occurrences: Occurrences;
  /** The occurrence known to be queued (by us or another process): the next one to fall due. */
  queued: number | undefined;
  /** Set once the first occurrence was queued (or found queued): the catch-up question is settled then. */
  started: boolean;
  /** A catch-up occurrence whose insert failed, retried until the next occurrence falls due. */
  catchUp: number | undefined;
  /** The last occurrence whose due moment sent a wake-up. */
  woken: number | undefined;
}

/** The longest sleep between ticks: a long wait is cut into pieces so timers stay in range. */
const MAX_SLEEP = 60_000;
const NAME = /^[A-Za-z0-9_.:@/-]{1,200}$/;

function occurrencesOf(spec: RecurringJob): Occurrences {
  if ((spec.cron === undefined) === (spec.every === undefined)) {
    throw invalidArgument(`schedule "${spec.name}" needs cron or every (one of them)`);
  }
  if (spec.cron !== undefined) {
    const cron = new CronExpression(spec.cron, spec.timezone === undefined ? {} : { timezone: spec.timezone });
    if (cron.next(Date.now()) === undefined) throw invalidArgument(`cron "${spec.cron}" never occurs`);
    return {
      next: (t) => cron.next(t)?.getTime(),
      previous: (t) => cron.previous(t)?.getTime(),
    };
  }
  const every = spec.every as number;
  if (!Number.isInteger(every) || every < 1000 || every % 1000 !== 0) {
    throw invalidArgument(`schedule "${spec.name}": every must be a whole number of seconds in ms (1000 or more)`);
  }
  if (spec.timezone !== undefined) throw invalidArgument(`schedule "${spec.name}": timezone goes with cron`);
  return {
    next: (t) => (Math.floor(t / every) + 1) * every,
    previous: (t) => Math.floor(t / every) * every,
  };
}

/**
 * Queues recurring jobs. Run one in any number of processes with the same schedules: each occurrence becomes
 * exactly one job.
 *
 * @example
 * const scheduler = new SchwartzScheduler(client, {
 *   schedules: [
 *     { name: 'nightly-report', funcname: 'MyApp::Report', cron: '0 3 * * *', timezone: 'Europe/Berlin' },
 *     { name: 'sweep', funcname: 'MyApp::Sweep', every: 5 * 60_000, arg: '{"older_than":3600}' },
 *   ],
 * });
 * const stop = new AbortController();
 * process.once('SIGTERM', () => stop.abort());
 * await scheduler.run({ signal: stop.signal });
 */
export class SchwartzScheduler {
  readonly #client: SchwartzClient;
  readonly #internals: ClientInternals;
  readonly #states: ScheduleState[];
  readonly #retryInterval: number;
  #running: Promise<void> | undefined;
  #closed = false;
  readonly #stop = new AbortController();

  constructor(client: SchwartzClient, options: SchwartzSchedulerOptions) {
    this.#client = client;
    this.#internals = clientInternals(client);
    if (options === null || typeof options !== 'object' || !Array.isArray(options.schedules)) {
      throw invalidArgument('options.schedules must be an array');
    }
    const retry = options.retryInterval ?? 5000;
    if (typeof retry !== 'number' || !(retry > 0) || !Number.isFinite(retry)) {
      throw invalidArgument('retryInterval must be a positive number of ms');
    }
    this.#retryInterval = retry;
    const names = new Set<string>();
    this.#states = options.schedules.map((spec) => {
      if (spec === null || typeof spec !== 'object') throw invalidArgument('a schedule must be an object');
      if (typeof spec.name !== 'string' || !NAME.test(spec.name)) {
        throw invalidArgument(`schedule name ${JSON.stringify(spec.name)}: letters, digits and _.:@/- (1-200)`);
      }
      if (names.has(spec.name)) throw invalidArgument(`schedule "${spec.name}" is listed twice`);
      names.add(spec.name);
      if (spec.catchUp !== undefined && spec.catchUp !== 'none' && spec.catchUp !== 'latest') {
        throw invalidArgument(`schedule "${spec.name}": catchUp is 'none' or 'latest'`);
      }
      // Checks funcname, priority and coalesce now rather than at the first due time.
      normalizeNewJob({ funcname: spec.funcname, priority: spec.priority, coalesce: spec.coalesce });
      return {
        spec: { ...spec },
        occurrences: occurrencesOf(spec),
        queued: undefined,
        started: false,
        catchUp: undefined,
        woken: undefined,
      };
    });
  }

  /** The next due time of the schedule `name` after `after` (default now), or `undefined` if it never comes. */
  next(name: string, after: Date | number = Date.now()): Date | undefined {
    const state = this.#states.find((s) => s.spec.name === name);
    if (state === undefined) throw invalidArgument(`no schedule "${name}"`);
    const t = state.occurrences.next(after instanceof Date ? after.getTime() : after);
    return t === undefined ? undefined : new Date(t);
  }

  /**
   * One pass: for each schedule, queues the next occurrence after `now` unless it is known to be queued (and, on
   * the first pass with `catchUp: 'latest'`, the latest missed one), and wakes the workers of an occurrence that
   * has just fallen due. Insert failures are results, not rejections. `run()` calls this; tests and cron-driven
   * scripts may call it directly.
   */
  async tick(now: Date | number = Date.now()): Promise<ScheduleResult[]> {
    const t = now instanceof Date ? now.getTime() : now;
    const results: ScheduleResult[] = [];
    for (const state of this.#states) {
      const { spec } = state;
      if (state.queued !== undefined && state.queued <= t && state.woken !== state.queued) {
        // The occurrence falls due now: its job is runnable, but workers would only see it at their next poll.
        state.woken = state.queued;
        void this.#client.notify(spec.funcname);
      }
      if (state.catchUp !== undefined && state.queued !== undefined && state.queued <= t) state.catchUp = undefined;
      const next = state.occurrences.next(t);
      if (next !== undefined && state.queued !== next) {
        const result = await this.#offer(state, next, false);
        results.push(result);
        if (result.outcome !== 'error') {
          state.queued = next;
          if (!state.started) {
            state.started = true;
            // Nobody had queued the next occurrence: no scheduler saw the latest one fall due.
            if (spec.catchUp === 'latest' && result.outcome === 'queued') state.catchUp = state.occurrences.previous(t);
          }
        }
      }
      if (state.catchUp !== undefined) {
        const result = await this.#offer(state, state.catchUp, true);
        results.push(result);
        if (result.outcome !== 'error') state.catchUp = undefined;
      }
    }
    return results;
  }

  /** Ms from `now` until the next tick has something to do. */
  #delay(now: number): number {
    let wait = MAX_SLEEP;
    for (const state of this.#states) {
      const next = state.occurrences.next(now);
      if ((next !== undefined && state.queued !== next) || state.catchUp !== undefined) {
        wait = Math.min(wait, this.#retryInterval);
      } else if (state.queued !== undefined && state.queued > now) {
        wait = Math.min(wait, state.queued - now);
      }
    }
    return Math.max(wait, 0);
  }

  async #offer(state: ScheduleState, due: number, catchUp: boolean): Promise<ScheduleResult> {
    const { spec } = state;
    const seconds = Math.floor(due / 1000);
    const base = { name: spec.name, funcname: spec.funcname, due: new Date(seconds * 1000), catchUp };
    const event = { name: spec.name, funcname: spec.funcname, due: seconds, catchUp };
    const failed = (error: Error): ScheduleResult => {
      publishScheduleEvent({ type: 'error', ...event, error });
      return { ...base, outcome: 'error', error };
    };
    let arg: JobArg | undefined;
    try {
      arg = typeof spec.arg === 'function' ? spec.arg(base.due) : spec.arg;
    } catch (err) {
      return failed(asError(err)); // the application's own error, retried like an insert
    }
    let handle: JobHandle | undefined;
    try {
      handle = await this.#internals.insertInto(this.#home(spec.name), {
        funcname: spec.funcname,
        arg,
        uniqkey: `cron:${spec.name}:${seconds}`,
        runAfter: seconds,
        priority: spec.priority,
        coalesce: spec.coalesce,
      });
    } catch (err) {
      if (isSchwartzError(err)) return failed(err);
      const cause = asError(err);
      return failed(
        new SchwartzError('SCHWARTZ_ERR_NO_DATABASES', `schedule "${spec.name}": ${cause.message}`, { cause }),
      );
    }
    if (handle === undefined) {
      publishScheduleEvent({ type: 'exists', ...event });
      return { ...base, outcome: 'exists' };
    }
    publishScheduleEvent({ type: 'queued', ...event, handle: handle.toString() });
    return { ...base, outcome: 'queued', handle };
  }

  /** The schedule's database: by a hash of its name over the databases sorted by handle hash. */
  #home(name: string): SchwartzDatabase {
    const dbs = [...this.#internals.set.all].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
    return dbs[crc32(name) % dbs.length] as SchwartzDatabase;
  }

  /**
   * Ticks until `signal` aborts or {@link close}: at each due time, after a failed insert every `retryInterval`,
   * and at least once a minute. Resolves when stopped.
   */
  run(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#closed) return Promise.reject(new SchwartzError('SCHWARTZ_ERR_CLOSED', 'scheduler closed'));
    if (this.#running !== undefined) return Promise.reject(invalidArgument('run() is running already'));
    const signal =
      options.signal === undefined ? this.#stop.signal : AbortSignal.any([options.signal, this.#stop.signal]);
    this.#running = (async () => {
      try {
        while (!signal.aborted) {
          await this.tick();
          // +1 ms: wake just after the due moment, so that `next(now)` has moved on.
          await sleep(this.#delay(Date.now()) + 1, undefined, { signal }).catch(() => {});
        }
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  /** Stops `run()` (an insert in progress finishes) and resolves when it has returned. The client stays open. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort();
    await this.#running;
  }
}
