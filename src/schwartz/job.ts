/**
 * Jobs: the handle (`<md5_hex(dsn|user)>-<jobid>`, TheSchwartz's `TheSchwartz::JobHandle`), a read-only record
 * (`lookupJob`, `listJobs`), and the grabbed {@link Job} a worker runs, with TheSchwartz's outcomes.
 *
 * A grabbed job holds a lease: its row's `grabbed_until`. Every outcome is written only while the row still carries
 * that value (`… WHERE jobid = ? AND grabbed_until = <lease>`), so a worker whose lease ran out and was taken over
 * cannot complete, fail or release the job under the new holder. While the handler runs the worker renews the lease
 * (half-way through `grabFor`); a renewal that finds the row changed aborts `job.signal`.
 *
 * ```
 *  grabbed ──handler──▶ completed()         exit status 0 (if kept), DELETE
 *     │                 failed(msg, exit)   error row; retry (run_after, grabbed_until = 0) or exit status + DELETE
 *     │                 permanentFailure()  error row, exit status, DELETE
 *     │                 declined(runAfter?) UPDATE run_after, grabbed_until = 0 — or leave it until the lease ends
 *     │                 replaceWith(jobs)   INSERT new jobs + completed, one transaction, same database
 *     └── one outcome per job ("did_something"): later calls resolve to false and write nothing
 * ```
 *
 * @module
 */

import type { SqlDatabase } from '../sql/index.ts';
import { type DatabaseSet, type SchwartzDatabase, unixTime } from './database-set.ts';
import { asError, publishDatabaseEvent, publishJobEvent, type SchwartzOutcome } from './diagnostics.ts';
import { SchwartzError } from './errors.ts';
import {
  checkForDialect,
  countFailures,
  deleteHeldJob,
  failureMessages,
  insertError,
  insertExitStatus,
  insertJobRow,
  type JobId,
  type JobRow,
  moveLease,
  type NewJob,
  type NormalizedJob,
  normalizeNewJob,
  purgeErrors,
  purgeExitStatuses,
  releaseHeldJob,
  selectExitStatus,
  selectJob,
  toUnixSeconds,
} from './job-store.ts';

/** Where handles find their database: the client's {@link DatabaseSet}. */
export type HandleResolver = Pick<DatabaseSet, 'get'>;

/**
 * A job's address: `<md5_hex("dsn|user")>-<jobid>`, the same string TheSchwartz's `$handle->as_string` gives when
 * both sides configure the database with the same DSN string and user.
 */
export class JobHandle {
  /** `md5_hex("<dsn>|<user>")` of the job's database. */
  readonly database: string;
  readonly jobid: JobId;
  readonly #resolver: HandleResolver;

  constructor(database: string, jobid: JobId, resolver: HandleResolver) {
    this.database = database;
    this.jobid = jobid;
    this.#resolver = resolver;
  }

  /** `<hash>-<jobid>` (Perl `as_string`). */
  toString(): string {
    return `${this.database}-${this.jobid}`;
  }

  /** The handle string, so handles serialise as Perl prints them. */
  toJSON(): string {
    return this.toString();
  }

  #db(): SchwartzDatabase {
    return this.#resolver.get(this.database);
  }

  /** True while the job's row exists (not yet completed or failed for good). */
  async isPending(): Promise<boolean> {
    const db = this.#db();
    const rows = await (await db.open()).query(`SELECT jobid FROM ${db.tables.job} WHERE jobid = ?`, [this.jobid]);
    return rows.length > 0;
  }

  /** The exit status kept for the job (0 completed, else the failure's), or undefined (pending, or not kept). */
  async exitStatus(): Promise<number | undefined> {
    const db = this.#db();
    return selectExitStatus(await db.open(), db.tables, this.jobid);
  }

  /** The messages of the job's failures, oldest first. */
  async failureLog(): Promise<string[]> {
    const db = this.#db();
    return failureMessages(await db.open(), db, this.jobid);
  }

  /** The number of the job's failures. */
  async failures(): Promise<number> {
    const db = this.#db();
    return countFailures(await db.open(), db.tables, this.jobid);
  }

  /** The job's row, or undefined once it is gone. */
  async job(): Promise<JobRecord | undefined> {
    return lookupJobRecord(this.#db(), this);
  }
}

/** Parses `<32 hex digits>-<jobid>` (what `JobHandle.toString()` and Perl's `as_string` give). */
export function parseJobHandle(handle: string, resolver: HandleResolver): JobHandle {
  const m = /^([0-9a-f]{32})-(\d{1,20})$/.exec(typeof handle === 'string' ? handle : '');
  if (m === null) throw new SchwartzError('SCHWARTZ_ERR_BAD_HANDLE', `malformed job handle "${String(handle)}"`);
  const digits = m[2] as string;
  const big = BigInt(digits);
  const jobid = big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  return new JobHandle(m[1] as string, jobid, resolver);
}

/** A job as stored (`lookupJob`, `listJobs`): read-only. */
export interface JobRecord {
  readonly handle: JobHandle;
  readonly jobid: JobId;
  /** The function (Perl worker class) name, from the database's funcmap. */
  readonly funcname: string;
  readonly funcid: number;
  /** The argument bytes as stored (undefined for SQL NULL). */
  readonly arg: Buffer | undefined;
  readonly uniqkey: string | undefined;
  /** Unix seconds. */
  readonly insertTime: number | undefined;
  /** Unix seconds: not grabbed before. */
  readonly runAfter: number;
  /** Unix seconds: held by a worker until (0 when free). */
  readonly grabbedUntil: number;
  readonly priority: number | undefined;
  readonly coalesce: string | undefined;
}

/** A {@link JobRecord} from a row. */
export function toJobRecord(row: JobRow, funcname: string, handle: JobHandle): JobRecord {
  return {
    handle,
    jobid: row.jobid,
    funcname,
    funcid: row.funcid,
    arg: row.arg ?? undefined,
    uniqkey: row.uniqkey ?? undefined,
    insertTime: row.insert_time ?? undefined,
    runAfter: row.run_after,
    grabbedUntil: row.grabbed_until,
    priority: row.priority ?? undefined,
    coalesce: row.coalesce ?? undefined,
  };
}

/** Reads the job `handle` names from `db`. */
export async function lookupJobRecord(db: SchwartzDatabase, handle: JobHandle): Promise<JobRecord | undefined> {
  const row = await selectJob(await db.open(), db, handle.jobid);
  if (row === undefined) return undefined;
  return toJobRecord(row, (await db.funcname(row.funcid)) ?? '', handle);
}

/** A function's settings that decide a job's fate (TheSchwartz::Worker's class methods). */
export interface JobSettings {
  /** Retries after the first failure (`max_retries`; default 0). A function gets the job. */
  readonly maxRetries: number | ((job: Job) => number);
  /** Seconds before retry number `failures` (`retry_delay`; default 0: at once). */
  readonly retryDelay: number | ((failures: number) => number);
  /** Lease in seconds (`grab_for`; default 3600). */
  readonly grabFor: number;
  /** Seconds to keep the exit status (`keep_exit_status_for`; default 0: not kept). */
  readonly keepExitStatusFor: number;
}

/** The lazy clean-ups' tuning (TheSchwartz's `$T_EXITSTATUS_CLEAN_THRES` and `$T_ERRORS_MAX_AGE`). */
export interface Housekeeping {
  /** Share of exit-status writes that also delete expired exit statuses (0.1). */
  readonly exitStatusPurgeProbability: number;
  /** Failures older than this many seconds are deleted when a failure is recorded (7 days). */
  readonly errorMaxAge: number;
}

/** What the worker (or a coalescing grab) gives a new {@link Job}. */
export interface JobInit {
  readonly db: SchwartzDatabase;
  readonly resolver: HandleResolver;
  readonly row: JobRow;
  readonly funcname: string;
  /** The `grabbed_until` the grab wrote. */
  readonly lease: number;
  readonly settings: JobSettings;
  readonly housekeeping: Housekeeping;
  /** Told of the jobs a `replaceWith` committed (wake-ups). */
  readonly onInserted?: (jobs: readonly NormalizedJob[]) => void;
}

/** The worker's controls over a job, kept off the public surface. */
export interface JobControl {
  startLeaseRenewal(job: Job): void;
  stopLeaseRenewal(job: Job): void;
  abort(job: Job, reason: Error): void;
  /** True when the last outcome write failed for a reason other than a lost lease. */
  writeFailed(job: Job): boolean;
}

let control!: JobControl;

/** The worker's controls over jobs (not exported from the package). */
export function jobControl(): JobControl {
  return control;
}

type JobState = 'open' | 'writing' | 'done';

/**
 * A job grabbed by this process: its fields, its `signal`, and TheSchwartz's outcomes. Each outcome writes at once
 * and resolves to true; a job takes one outcome only, so later calls resolve to false without writing (Perl's
 * `did_something` guard). An outcome whose lease is gone rejects with `SCHWARTZ_ERR_LEASE_LOST`.
 */
export class Job implements JobRecord {
  readonly handle: JobHandle;
  readonly #db: SchwartzDatabase;
  readonly #row: JobRow;
  readonly #funcname: string;
  readonly #settings: JobSettings;
  readonly #housekeeping: Housekeeping;
  readonly #resolver: HandleResolver;
  readonly #onInserted: ((jobs: readonly NormalizedJob[]) => void) | undefined;
  readonly #controller = new AbortController();
  #lease: number;
  #state: JobState = 'open';
  #outcome: SchwartzOutcome | undefined;
  #leaseLost = false;
  #writeFailed = false;
  #renewing = false;
  #timer: NodeJS.Timeout | undefined;
  #leaseOp: Promise<void> = Promise.resolve();

  static {
    control = {
      startLeaseRenewal: (job) => {
        job.#renewing = true;
        job.#scheduleRenewal(job.#renewDelayMs());
      },
      stopLeaseRenewal: (job) => {
        job.#renewing = false;
        job.#clearTimer();
      },
      abort: (job, reason) => {
        job.#renewing = false;
        job.#clearTimer();
        if (!job.#controller.signal.aborted) job.#controller.abort(reason);
      },
      writeFailed: (job) => job.#writeFailed,
    };
  }

  /** Made by the worker when it grabs a job. */
  constructor(init: JobInit) {
    this.#db = init.db;
    this.#row = init.row;
    this.#funcname = init.funcname;
    this.#lease = init.lease;
    this.#settings = init.settings;
    this.#housekeeping = init.housekeeping;
    this.#resolver = init.resolver;
    this.#onInserted = init.onInserted;
    this.handle = new JobHandle(init.db.hash, init.row.jobid, init.resolver);
  }

  get jobid(): JobId {
    return this.#row.jobid;
  }
  get funcname(): string {
    return this.#funcname;
  }
  get funcid(): number {
    return this.#row.funcid;
  }
  get arg(): Buffer | undefined {
    return this.#row.arg ?? undefined;
  }
  get uniqkey(): string | undefined {
    return this.#row.uniqkey ?? undefined;
  }
  get insertTime(): number | undefined {
    return this.#row.insert_time ?? undefined;
  }
  get runAfter(): number {
    return this.#row.run_after;
  }
  /** The current lease: `grabbed_until` as this worker last wrote it (renewals move it). */
  get grabbedUntil(): number {
    return this.#lease;
  }
  get priority(): number | undefined {
    return this.#row.priority ?? undefined;
  }
  get coalesce(): string | undefined {
    return this.#row.coalesce ?? undefined;
  }

  /** Aborted when the lease is lost (`SCHWARTZ_ERR_LEASE_LOST`) or the worker is destroyed. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** True once an outcome was written (or the lease was found lost while writing one). */
  get finished(): boolean {
    return this.#state === 'done';
  }

  /** The outcome written, once {@link finished}. */
  get outcome(): SchwartzOutcome | undefined {
    return this.#outcome;
  }

  /** True when this worker no longer holds the job (the lease ran out and the row changed). */
  get leaseLost(): boolean {
    return this.#leaseLost;
  }

  /** The job's failures so far (error rows). */
  failures(): Promise<number> {
    return this.handle.failures();
  }

  /** The job's failure messages so far. */
  failureLog(): Promise<string[]> {
    return this.handle.failureLog();
  }

  /** Done: keeps exit status 0 when `keepExitStatusFor` is set, and deletes the job. */
  completed(): Promise<boolean> {
    return this.#finish(async (sql) => {
      await this.#remove(sql, 0, undefined);
      return 'completed';
    });
  }

  /**
   * Failed: records `message` as a failure. While `maxRetries` is at least the number of failures (this one
   * included) the job runs again after `retryDelay(failures)` seconds; otherwise its exit status (`exitStatus`, or
   * 1) is kept and it is deleted.
   */
  failed(message = '', exitStatus?: number): Promise<boolean> {
    return this.#finish(async (sql) => {
      const failures = (await countFailures(sql, this.#db.tables, this.jobid)) + 1;
      const { maxRetries, retryDelay } = this.#settings;
      const max = typeof maxRetries === 'function' ? maxRetries(this) : maxRetries;
      if (max >= failures) {
        const delay = typeof retryDelay === 'function' ? retryDelay(failures) : retryDelay;
        const now = unixTime();
        const runAfter = delay > 0 ? now + Math.ceil(delay) : undefined;
        await sql.transaction(async (tx) => {
          await insertError(tx, this.#db, this.jobid, this.funcid, String(message), now);
          if (!(await releaseHeldJob(tx, this.#db.tables, this.jobid, this.#lease, runAfter))) throw this.#lostError();
        });
        await this.#purgeErrors(sql);
        return 'retry';
      }
      await this.#remove(sql, exitStatus || 1, String(message));
      return 'failed';
    });
  }

  /** Failed for good, whatever `maxRetries` says: records `message`, keeps the exit status (or 1), deletes. */
  permanentFailure(message = '', exitStatus?: number): Promise<boolean> {
    return this.#finish(async (sql) => {
      await this.#remove(sql, exitStatus || 1, String(message));
      return 'failed';
    });
  }

  /**
   * Not now: with `runAfter` (unix seconds or a `Date`) the job is released to run after it; without, the row is
   * left alone and the job is grabbed again when the lease (`grabFor`) ends.
   */
  declined(runAfter?: number | Date): Promise<boolean> {
    const when = runAfter === undefined || runAfter === 0 ? undefined : toUnixSeconds('runAfter', runAfter);
    return this.#finish(async (sql) => {
      if (when !== undefined && !(await releaseHeldJob(sql, this.#db.tables, this.jobid, this.#lease, when))) {
        throw this.#lostError();
      }
      return 'declined';
    });
  }

  /**
   * Replaces this job with `jobs` atomically: in one transaction of this job's database, inserts them and completes
   * this one. Resolves to their handles (undefined for a duplicate `uniqkey`, which is skipped), or false when the
   * job already had an outcome.
   */
  async replaceWith(jobs: readonly NewJob[]): Promise<(JobHandle | undefined)[] | false> {
    const normalized = jobs.map(normalizeNewJob);
    for (const j of normalized) checkForDialect(this.#db.dialect, j);
    let handles: (JobHandle | undefined)[] = [];
    const done = await this.#finish(async (sql) => {
      const funcids = await resolveFuncids(this.#db, normalized);
      const now = unixTime();
      await sql.transaction(async (tx) => {
        handles = [];
        for (const j of normalized) {
          const id = await insertJobRow(tx, this.#db, funcids.get(j.funcname) as number, j, now);
          handles.push(id === undefined ? undefined : new JobHandle(this.#db.hash, id, this.#resolver));
        }
        if (!(await deleteHeldJob(tx, this.#db.tables, this.jobid, this.#lease))) throw this.#lostError();
        await this.#keepExitStatus(tx, 0, now);
      });
      await this.#purgeExitStatuses(sql);
      return 'replaced';
    });
    if (done) this.#onInserted?.(normalized.filter((_, i) => handles[i] !== undefined));
    return done ? handles : false;
  }

  /** Runs one outcome write: once, after any renewal in flight, with the guard and the lease bookkeeping. */
  async #finish(write: (sql: SqlDatabase) => Promise<SchwartzOutcome>): Promise<boolean> {
    if (this.#state !== 'open') return false;
    this.#state = 'writing';
    this.#clearTimer();
    await this.#leaseOp;
    try {
      if (this.#leaseLost) throw this.#lostError();
      this.#outcome = await write(await this.#db.open());
      this.#state = 'done';
      this.#writeFailed = false;
      return true;
    } catch (err) {
      if (err instanceof SchwartzError && err.code === 'SCHWARTZ_ERR_LEASE_LOST') {
        this.#state = 'done';
        this.#outcome = 'none';
        this.#loseLease(err);
      } else {
        this.#state = 'open';
        this.#writeFailed = true;
        if (this.#renewing) this.#scheduleRenewal(Math.min(this.#renewDelayMs(), 1000));
      }
      throw err;
    }
  }

  /** Deletes the held job, with a failure row and/or exit status when asked, in one transaction. */
  async #remove(sql: SqlDatabase, status: number, failure: string | undefined): Promise<void> {
    const now = unixTime();
    if (failure === undefined && this.#settings.keepExitStatusFor <= 0) {
      if (!(await deleteHeldJob(sql, this.#db.tables, this.jobid, this.#lease))) throw this.#lostError();
      return;
    }
    await sql.transaction(async (tx) => {
      if (failure !== undefined) await insertError(tx, this.#db, this.jobid, this.funcid, failure, now);
      if (!(await deleteHeldJob(tx, this.#db.tables, this.jobid, this.#lease))) throw this.#lostError();
      await this.#keepExitStatus(tx, status, now);
    });
    if (failure !== undefined) await this.#purgeErrors(sql);
    await this.#purgeExitStatuses(sql);
  }

  async #keepExitStatus(tx: Parameters<typeof insertExitStatus>[0], status: number, now: number): Promise<void> {
    const keep = this.#settings.keepExitStatusFor;
    if (keep > 0) await insertExitStatus(tx, this.#db.tables, this.jobid, this.funcid, status, now, keep);
  }

  /** TheSchwartz deletes expired exit statuses on 10% of exit-status writes. Best effort: errors are published. */
  async #purgeExitStatuses(sql: SqlDatabase): Promise<void> {
    if (this.#settings.keepExitStatusFor <= 0) return;
    if (Math.random() >= this.#housekeeping.exitStatusPurgeProbability) return;
    await this.#housekeep('purge-exitstatus', () => purgeExitStatuses(sql, this.#db, this.#db.nowSql()));
  }

  /** TheSchwartz deletes failures older than 7 days whenever it records one. Best effort. */
  async #purgeErrors(sql: SqlDatabase): Promise<void> {
    await this.#housekeep('purge-errors', () =>
      purgeErrors(sql, this.#db, this.#db.nowSql(), this.#housekeeping.errorMaxAge),
    );
  }

  async #housekeep(operation: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      publishDatabaseEvent({
        type: 'error',
        database: this.#db.hash,
        dsn: this.#db.redactedDsn,
        operation,
        error: asError(err),
      });
    }
  }

  #lostError(): SchwartzError {
    return new SchwartzError('SCHWARTZ_ERR_LEASE_LOST', `job ${this.handle} is no longer held by this worker`);
  }

  #loseLease(reason: SchwartzError): void {
    if (this.#leaseLost) return;
    this.#leaseLost = true;
    this.#renewing = false;
    this.#clearTimer();
    publishJobEvent({
      type: 'error',
      funcname: this.#funcname,
      handle: this.handle.toString(),
      database: this.#db.hash,
      stage: 'lease',
      error: reason,
    });
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  /** Half the lease, less the second that whole-second `grabbed_until` values may lose. */
  #renewDelayMs(): number {
    return Math.min(Math.max(200, ((this.#settings.grabFor - 1) * 1000) / 2), 2 ** 31 - 1);
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #scheduleRenewal(delayMs: number): void {
    this.#clearTimer();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#leaseOp = this.#renew();
    }, delayMs);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#state !== 'open' || !this.#renewing || this.#leaseLost) return;
    const delay = this.#renewDelayMs();
    try {
      const sql = await this.#db.open();
      const next = (await this.#db.now(sql)) + this.#settings.grabFor;
      if (next >= this.#lease) {
        if (!(await moveLease(sql, this.#db.tables, this.jobid, this.#lease, next))) {
          this.#loseLease(this.#lostError());
          return;
        }
        this.#lease = next;
      }
      if (this.#state === 'open' && this.#renewing) this.#scheduleRenewal(delay);
    } catch (err) {
      // The database may be back before the lease ends; nobody else can grab the job meanwhile either.
      publishJobEvent({
        type: 'error',
        funcname: this.#funcname,
        handle: this.handle.toString(),
        database: this.#db.hash,
        stage: 'lease',
        error: asError(err),
      });
      if (this.#state === 'open' && this.#renewing) this.#scheduleRenewal(Math.min(delay, 1000));
    }
  }
}

/** The funcids of the jobs' funcnames in `db` (created on demand), outside any transaction. */
export async function resolveFuncids(
  db: SchwartzDatabase,
  jobs: readonly NormalizedJob[],
): Promise<Map<string, number>> {
  const ids = new Map<string, number>();
  for (const j of jobs) {
    if (!ids.has(j.funcname)) ids.set(j.funcname, (await db.funcid(j.funcname)) as number);
  }
  return ids;
}
