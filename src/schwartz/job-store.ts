/**
 * Every statement TheSchwartz's tables see, in one place: inserting jobs, finding and claiming them, the outcomes,
 * the failure log, exit statuses and the lazy purges. Pure SQL over a {@link SqlExecutor}; which database, retries
 * and leases are decided by the client, worker and job.
 *
 * @module
 */

import { isUniqueViolation, quoteIdent, type SqlDialect, type SqlExecutor, type SqlValue } from '../sql/index.ts';
import { invalidArgument } from './errors.ts';
import type { SchwartzTables } from './schema.ts';

/** A job id: a number, or a bigint past 2^53. */
export type JobId = number | bigint;

/** What a job argument may be: bytes (passed through as they are) or a string (stored as UTF-8). */
export type JobArg = Buffer | Uint8Array | string;

/** A job to insert (`TheSchwartz::Job->new(funcname, arg, uniqkey, run_after, priority, coalesce)`). */
export interface NewJob {
  /** The function, in Perl the worker class name (`MyApp::Worker::Resize`). */
  funcname: string;
  /** The argument: bytes stored as they are (a Perl `Storable` blob passes through untouched), strings as UTF-8. */
  arg?: JobArg | undefined;
  /** At most one job per (funcname, uniqkey) exists in a database; a duplicate insert returns `undefined`. */
  uniqkey?: string | undefined;
  /** Not before this time (unix seconds or a `Date`); default now. */
  runAfter?: number | Date | undefined;
  /** Higher runs first for workers whose client has `prioritize` (a SMALLINT). */
  priority?: number | undefined;
  /** A grouping value for `findJobWithCoalescingValue` / `…Prefix`. */
  coalesce?: string | undefined;
}

/** A {@link NewJob} checked and converted to column values. */
export interface NormalizedJob {
  readonly funcname: string;
  readonly arg: Buffer | null;
  readonly uniqkey: string | null;
  readonly runAfter: number | undefined;
  readonly priority: number | null;
  readonly coalesce: string | null;
}

/** A `job` row as read back. */
export interface JobRow {
  jobid: JobId;
  funcid: number;
  arg: Buffer | null;
  uniqkey: string | null;
  insert_time: number | null;
  run_after: number;
  grabbed_until: number;
  priority: number | null;
  coalesce: string | null;
}

/** The table names and dialect a statement needs. */
export interface StoreTarget {
  readonly dialect: SqlDialect;
  readonly tables: SchwartzTables;
}

const MAX_INT32 = 2_147_483_647;
const MAX_VARCHAR = 255;
const MYSQL_MEDIUMBLOB = 16_777_215;

function checkVarchar(name: string, value: string): void {
  // VARCHAR(255) counts characters (MySQL, PostgreSQL); longer values would be refused (or cut) by the engine.
  if ([...value].length > MAX_VARCHAR) throw invalidArgument(`${name} is longer than ${MAX_VARCHAR} characters`);
}

/** Unix seconds from a number or `Date`, checked to fit the INTEGER columns. */
export function toUnixSeconds(name: string, value: number | Date): number {
  const s = value instanceof Date ? Math.floor(value.getTime() / 1000) : value;
  if (!Number.isInteger(s) || s < 0 || s > MAX_INT32) {
    throw invalidArgument(`${name} must be unix seconds (an integer from 0 to ${MAX_INT32}) or a Date`);
  }
  return s;
}

function toArg(arg: JobArg | undefined): Buffer | null {
  if (arg === undefined || arg === null) return null;
  if (typeof arg === 'string') return Buffer.from(arg, 'utf8');
  if (Buffer.isBuffer(arg)) return arg;
  if (arg instanceof Uint8Array) return Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength);
  throw invalidArgument('arg must be a Buffer, a Uint8Array or a string');
}

/** Checks a {@link NewJob} and converts it to column values (before any database is touched). */
export function normalizeNewJob(job: NewJob): NormalizedJob {
  if (job === null || typeof job !== 'object') throw invalidArgument('a job must be an object with a funcname');
  const { funcname, uniqkey, priority, coalesce, runAfter } = job;
  if (typeof funcname !== 'string' || funcname === '') throw invalidArgument('funcname must be a non-empty string');
  checkVarchar('funcname', funcname);
  if (uniqkey !== undefined && uniqkey !== null) {
    if (typeof uniqkey !== 'string') throw invalidArgument('uniqkey must be a string');
    checkVarchar('uniqkey', uniqkey);
  }
  if (coalesce !== undefined && coalesce !== null) {
    if (typeof coalesce !== 'string') throw invalidArgument('coalesce must be a string');
    checkVarchar('coalesce', coalesce);
  }
  if (
    priority !== undefined &&
    priority !== null &&
    (!Number.isInteger(priority) || priority < -32768 || priority > 65535)
  ) {
    throw invalidArgument('priority must be an integer that fits a SMALLINT');
  }
  return {
    funcname,
    arg: toArg(job.arg),
    uniqkey: uniqkey ?? null,
    // TheSchwartz: `run_after ||= time`, so 0 means now as well.
    runAfter:
      runAfter === undefined || runAfter === null || runAfter === 0 ? undefined : toUnixSeconds('runAfter', runAfter),
    priority: priority ?? null,
    coalesce: coalesce ?? null,
  };
}

/** Refuses values the engine's column types cannot hold (so a bad job never marks a database dead). */
export function checkForDialect(dialect: SqlDialect, job: NormalizedJob): void {
  if (job.priority !== null) {
    if (dialect === 'mysql' && job.priority < 0) throw invalidArgument('priority must be 0 or more on MySQL');
    if (dialect === 'postgres' && job.priority > 32767)
      throw invalidArgument('priority must be 32767 or less on PostgreSQL');
  }
  if (dialect === 'mysql' && job.arg !== null && job.arg.length > MYSQL_MEDIUMBLOB) {
    throw invalidArgument(`arg is larger than a MySQL MEDIUMBLOB (${MYSQL_MEDIUMBLOB} bytes)`);
  }
}

/** The job columns, `coalesce` quoted (a keyword on PostgreSQL). */
export function jobColumns(dialect: SqlDialect): string {
  return `jobid, funcid, arg, uniqkey, insert_time, run_after, grabbed_until, priority, ${quoteIdent(dialect, 'coalesce')}`;
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : num(v);
}

/** A row as every engine's driver returns it, made uniform. */
export function toJobRow(row: Record<string, unknown>): JobRow {
  const arg = row.arg;
  return {
    jobid: typeof row.jobid === 'bigint' ? row.jobid : num(row.jobid),
    funcid: num(row.funcid),
    arg:
      arg === null || arg === undefined
        ? null
        : Buffer.isBuffer(arg)
          ? arg
          : arg instanceof Uint8Array
            ? Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength)
            : Buffer.from(String(arg), 'utf8'),
    uniqkey: (row.uniqkey as string | null | undefined) ?? null,
    insert_time: numOrNull(row.insert_time),
    run_after: num(row.run_after),
    grabbed_until: num(row.grabbed_until),
    priority: numOrNull(row.priority),
    coalesce: (row.coalesce as string | null | undefined) ?? null,
  };
}

/**
 * Inserts one job row (`grabbed_until` 0, `insert_time` and default `run_after` = `now`). Resolves to the new jobid,
 * or `undefined` when (funcid, uniqkey) exists. Safe inside a transaction on every engine: PostgreSQL uses
 * `ON CONFLICT DO NOTHING` (a violation would abort the transaction), MySQL and SQLite roll back only the statement.
 */
export async function insertJobRow(
  exec: SqlExecutor,
  target: StoreTarget,
  funcid: number,
  job: NormalizedJob,
  now: number,
): Promise<JobId | undefined> {
  checkForDialect(target.dialect, job);
  const { dialect, tables } = target;
  const sql = `INSERT INTO ${tables.job} (funcid, arg, uniqkey, insert_time, run_after, grabbed_until, priority, ${quoteIdent(dialect, 'coalesce')}) VALUES (?, ?, ?, ?, ?, 0, ?, ?)`;
  const params: SqlValue[] = [funcid, job.arg, job.uniqkey, now, job.runAfter ?? now, job.priority, job.coalesce];
  if (dialect === 'postgres') {
    const [row] = await exec.query<{ jobid: JobId }>(`${sql} ON CONFLICT DO NOTHING RETURNING jobid`, params);
    return row?.jobid;
  }
  try {
    const r = await exec.run(sql, params);
    return r.lastInsertId;
  } catch (err) {
    if (isUniqueViolation(err)) return undefined;
    throw err;
  }
}

/** What {@link selectJobs} filters on. */
export interface JobQuery {
  funcids: readonly number[];
  /** `run_after <= ?` */
  runAfter?: number;
  /** `grabbed_until <= ?` */
  grabbedUntil?: number;
  jobid?: JobId;
  /** `coalesce = ?` or `coalesce LIKE ? ESCAPE '!'` */
  coalesce?: { op: '=' | 'LIKE'; value: string };
  /** `priority >= ?` */
  floor?: number;
  prioritize: boolean;
  limit: number;
}

/**
 * `SELECT … FROM job WHERE funcid IN (…) AND … ORDER BY jobid | priority DESC, jobid LIMIT n`: TheSchwartz's
 * search for `find_job_for_workers`, `_find_job_with_coalescing` and `list_jobs`.
 */
export async function selectJobs(exec: SqlExecutor, target: StoreTarget, q: JobQuery): Promise<JobRow[]> {
  if (q.funcids.length === 0) return [];
  const { dialect, tables } = target;
  const where = [`funcid IN (${q.funcids.map(() => '?').join(', ')})`];
  const params: SqlValue[] = [...q.funcids];
  if (q.runAfter !== undefined) {
    where.push('run_after <= ?');
    params.push(q.runAfter);
  }
  if (q.grabbedUntil !== undefined) {
    where.push('grabbed_until <= ?');
    params.push(q.grabbedUntil);
  }
  if (q.jobid !== undefined) {
    where.push('jobid = ?');
    params.push(q.jobid);
  }
  if (q.coalesce !== undefined) {
    where.push(`${quoteIdent(dialect, 'coalesce')} ${q.coalesce.op} ?${q.coalesce.op === 'LIKE' ? " ESCAPE '!'" : ''}`);
    params.push(q.coalesce.value);
  }
  if (q.floor !== undefined) {
    where.push('priority >= ?');
    params.push(q.floor);
  }
  // NULL priorities sort as each engine sorts them (last on MySQL and SQLite, first on PostgreSQL), as in Perl.
  const order = q.prioritize ? 'priority DESC, jobid' : 'jobid';
  params.push(q.limit);
  const rows = await exec.query(
    `SELECT ${jobColumns(dialect)} FROM ${tables.job} WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ?`,
    params,
  );
  return rows.map(toJobRow);
}

/** The job row `jobid`, if it exists. */
export async function selectJob(exec: SqlExecutor, target: StoreTarget, jobid: JobId): Promise<JobRow | undefined> {
  const [row] = await exec.query(`SELECT ${jobColumns(target.dialect)} FROM ${target.tables.job} WHERE jobid = ?`, [
    jobid,
  ]);
  return row === undefined ? undefined : toJobRow(row);
}

/**
 * Moves a job's lease from `from` to `to` (`UPDATE job SET grabbed_until = to WHERE jobid = ? AND grabbed_until =
 * from`): the claim of a grab and the renewal of a running job. False when the row no longer has `from` (another
 * worker won the race, or the lease was lost).
 */
export async function moveLease(
  exec: SqlExecutor,
  tables: SchwartzTables,
  jobid: JobId,
  from: number,
  to: number,
): Promise<boolean> {
  const r = await exec.run(`UPDATE ${tables.job} SET grabbed_until = ? WHERE jobid = ? AND grabbed_until = ?`, [
    to,
    jobid,
    from,
  ]);
  return r.changes > 0;
}

/**
 * Claims a found job: `grabbed_until` from the value read to this worker's lease, provided the job is still due.
 * (TheSchwartz checks `grabbed_until` only; a job another worker grabbed and failed with a retry delay returns to
 * `grabbed_until = 0`, which a stale candidate would match before its retry time.)
 */
export async function claimJob(
  exec: SqlExecutor,
  tables: SchwartzTables,
  jobid: JobId,
  from: number,
  lease: number,
  now: number,
): Promise<boolean> {
  const r = await exec.run(
    `UPDATE ${tables.job} SET grabbed_until = ? WHERE jobid = ? AND grabbed_until = ? AND run_after <= ?`,
    [lease, jobid, from, now],
  );
  return r.changes > 0;
}

/** Deletes a job this worker holds (`grabbed_until` still its lease); false when it does not. */
export async function deleteHeldJob(
  exec: SqlExecutor,
  tables: SchwartzTables,
  jobid: JobId,
  lease: number,
): Promise<boolean> {
  const r = await exec.run(`DELETE FROM ${tables.job} WHERE jobid = ? AND grabbed_until = ?`, [jobid, lease]);
  return r.changes > 0;
}

/**
 * Releases a held job for a later run: `grabbed_until = 0` and, when given, a new `run_after` (a retry after a
 * failure, a decline with a time). False when the lease is no longer this worker's.
 */
export async function releaseHeldJob(
  exec: SqlExecutor,
  tables: SchwartzTables,
  jobid: JobId,
  lease: number,
  runAfter: number | undefined,
): Promise<boolean> {
  const r =
    runAfter === undefined
      ? await exec.run(`UPDATE ${tables.job} SET grabbed_until = 0 WHERE jobid = ? AND grabbed_until = ?`, [
          jobid,
          lease,
        ])
      : await exec.run(
          `UPDATE ${tables.job} SET run_after = ?, grabbed_until = 0 WHERE jobid = ? AND grabbed_until = ?`,
          [runAfter, jobid, lease],
        );
  return r.changes > 0;
}

/** Records one failure (`error` row). MySQL's `message` is a VARCHAR(255): longer messages are cut there. */
export async function insertError(
  exec: SqlExecutor,
  target: StoreTarget,
  jobid: JobId,
  funcid: number,
  message: string,
  now: number,
): Promise<void> {
  const text = target.dialect === 'mysql' ? [...message].slice(0, MAX_VARCHAR).join('') : message;
  await exec.run(`INSERT INTO ${target.tables.error} (error_time, jobid, message, funcid) VALUES (?, ?, ?, ?)`, [
    now,
    jobid,
    text,
    funcid,
  ]);
}

/** The failure messages of `jobid`, oldest first. */
export async function failureMessages(exec: SqlExecutor, target: StoreTarget, jobid: JobId): Promise<string[]> {
  // Perl leaves the order to the engine; insertion order is what it gets in practice, so keep to it.
  const order = target.dialect === 'sqlite' ? 'error_time, rowid' : 'error_time';
  const rows = await exec.query<{ message: string }>(
    `SELECT message FROM ${target.tables.error} WHERE jobid = ? ORDER BY ${order}`,
    [jobid],
  );
  return rows.map((r) => String(r.message));
}

/** The number of failures recorded for `jobid`. */
export async function countFailures(exec: SqlExecutor, tables: SchwartzTables, jobid: JobId): Promise<number> {
  const [row] = await exec.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${tables.error} WHERE jobid = ?`, [jobid]);
  return Number(row?.n ?? 0);
}

/** Keeps `status` as the job's exit status for `keepFor` seconds (`exitstatus` row). */
export async function insertExitStatus(
  exec: SqlExecutor,
  tables: SchwartzTables,
  jobid: JobId,
  funcid: number,
  status: number,
  now: number,
  keepFor: number,
): Promise<void> {
  await exec.run(
    `INSERT INTO ${tables.exitstatus} (jobid, funcid, status, completion_time, delete_after) VALUES (?, ?, ?, ?, ?)`,
    [jobid, funcid, status, now, now + keepFor],
  );
}

/** The kept exit status of `jobid`, if any. */
export async function selectExitStatus(
  exec: SqlExecutor,
  tables: SchwartzTables,
  jobid: JobId,
): Promise<number | undefined> {
  const [row] = await exec.query<{ status: number | null }>(`SELECT status FROM ${tables.exitstatus} WHERE jobid = ?`, [
    jobid,
  ]);
  return row === undefined || row.status === null ? undefined : Number(row.status);
}

/** "Now" as SQL with its parameters. */
export interface NowSql {
  sql: string;
  params: number[];
}

/** TheSchwartz's lazy clean-up: exit statuses past `delete_after` (1000 at a time on MySQL). */
export async function purgeExitStatuses(exec: SqlExecutor, target: StoreTarget, now: NowSql): Promise<number> {
  const limit = target.dialect === 'mysql' ? ' LIMIT 1000' : '';
  const r = await exec.run(
    `DELETE FROM ${target.tables.exitstatus} WHERE delete_after < ${now.sql}${limit}`,
    now.params,
  );
  return r.changes;
}

/** TheSchwartz's lazy clean-up: failures older than `maxAge` seconds (1000 at a time on MySQL). */
export async function purgeErrors(
  exec: SqlExecutor,
  target: StoreTarget,
  now: NowSql,
  maxAge: number,
): Promise<number> {
  const limit = target.dialect === 'mysql' ? ' LIMIT 1000' : '';
  // A bound "now" is subtracted here: PostgreSQL cannot type `? - ?`.
  const [bound] = now.params;
  const r =
    bound === undefined
      ? await exec.run(`DELETE FROM ${target.tables.error} WHERE error_time < ${now.sql} - ?${limit}`, [maxAge])
      : await exec.run(`DELETE FROM ${target.tables.error} WHERE error_time < ?${limit}`, [bound - maxAge]);
  return r.changes;
}
