/**
 * The TheSchwartz client: queues jobs in one of several databases and reads them back, as `TheSchwartz->new(databases
 * => […])` does, on the same tables, so Perl and Node processes share one queue.
 *
 * Inserts go to a random live database and fail over to the next; a database that fails (anything but a duplicate
 * `uniqkey`) is skipped for `retrySeconds`. A job never moves between databases: its handle names the database.
 *
 * @module
 */

import { performance } from 'node:perf_hooks';
import { isUniqueViolation, type SqlExecutor } from '../sql/index.ts';
import { DatabaseSet, type SchwartzDatabase, type SchwartzDatabaseConfig, unixTime } from './database-set.ts';
import { asError, insertChannel, type SchwartzInsertEvent } from './diagnostics.ts';
import { invalidArgument, isSchwartzError, SchwartzError } from './errors.ts';
import { GearmanWakeUpNotifier, type SchwartzNotifyOptions } from './gearman-wake-up.ts';
import {
  type Housekeeping,
  JobHandle,
  type JobRecord,
  lookupJobRecord,
  parseJobHandle,
  resolveFuncids,
  toJobRecord,
} from './job.ts';
import {
  checkForDialect,
  insertJobRow,
  type JobArg,
  type JobId,
  type NewJob,
  type NormalizedJob,
  normalizeNewJob,
  selectJobs,
  toUnixSeconds,
} from './job-store.ts';
import { ensureSchema } from './schema.ts';

/** Options of {@link SchwartzClient}, as `TheSchwartz->new` takes them. */
export interface SchwartzClientOptions {
  /** The databases (`databases => [{ dsn, user, pass, prefix }]`). */
  databases: readonly SchwartzDatabaseConfig[];
  /** Seconds a failed database is skipped (`retry_seconds`, 30). */
  retrySeconds?: number;
  /** Workers take higher `priority` first (`prioritize`). */
  prioritize?: boolean;
  /** With `prioritize`: workers take only jobs with `priority >= floor` (`floor`). */
  floor?: number;
  /** Candidate rows per search (`batch_size`, 50). */
  batchSize?: number;
  /** Pool size per MySQL/PostgreSQL database the client opens (default 10). */
  connections?: number;
  /** Connect timeout for MySQL/PostgreSQL (ms, default 10000). */
  connectTimeout?: number;
  /** Share of exit-status writes that also delete expired exit statuses (TheSchwartz: 0.1). */
  exitStatusPurgeProbability?: number;
  /** Failures older than this many seconds are deleted when a failure is recorded (TheSchwartz: 7 days). */
  errorMaxAge?: number;
  /**
   * Wake workers through gearman after each committed insert of a job that may run now (see
   * `docs/schwartz.md`, "Wake-ups through gearman"). A failed notification never fails the insert.
   */
  notify?: SchwartzNotifyOptions;
}

/** The optional fields of a job, for {@link SchwartzClient.insert}. */
export type InsertOptions = Omit<NewJob, 'funcname' | 'arg'>;

/** Which database a caller's transaction belongs to: its DSN as configured, or its hash (default: the only one). */
export interface InTransactionOptions {
  database?: string;
}

/** What {@link SchwartzClient.listJobs} selects (TheSchwartz `list_jobs`). */
export interface ListJobsQuery {
  /** One function or several. */
  funcname: string | readonly string[];
  /** `run_after <= runAfter` */
  runAfter?: number | Date;
  /** `grabbed_until <= grabbedUntil` */
  grabbedUntil?: number | Date;
  jobid?: JobId;
  /** `coalesce = value` */
  coalesce?: string;
  /** `coalesce LIKE 'prefix%'` */
  coalescePrefix?: string;
  /** Rows per database (default `batchSize`). */
  limit?: number;
}

/** What the worker reads from its client (not exported from the package). */
export interface ClientInternals {
  readonly set: DatabaseSet;
  readonly prioritize: boolean;
  readonly floor: number | undefined;
  readonly batchSize: number;
  readonly housekeeping: Housekeeping;
  /** Inserts one job into `db` only (no failover; the scheduler's uniqkeys are only unique per database). */
  insertInto(db: SchwartzDatabase, job: NewJob): Promise<JobHandle | undefined>;
  /** Sends wake-ups for the functions of jobs just committed that may run now (no-op without `notify`). */
  notifyInserted(jobs: readonly NormalizedJob[]): void;
}

let internals!: (client: SchwartzClient) => ClientInternals;

/** The worker's view of a client. */
export function clientInternals(client: SchwartzClient): ClientInternals {
  return internals(client);
}

function positive(name: string, value: number | undefined, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw invalidArgument(`${name} must be a positive ${integer ? 'integer' : 'number'}`);
  }
  return value;
}

function publishInsert(event: SchwartzInsertEvent): void {
  if (insertChannel.hasSubscribers) insertChannel.publish(event);
}

/** Escapes LIKE wildcards for `ESCAPE '!'`. */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[!%_]/g, (c) => `!${c}`)}%`;
}

/**
 * Queues jobs and reads them back.
 *
 * @example
 * const client = new SchwartzClient({ databases: [{ dsn: 'dbi:mysql:database=jobs;host=db1', user: 'app' }] });
 * const handle = await client.insert('MyApp::Resize', JSON.stringify({ photo: 42 }), { uniqkey: 'photo-42' });
 * if (handle === undefined) console.log('already queued');
 * else console.log(String(handle), await handle.isPending());
 */
export class SchwartzClient {
  readonly #set: DatabaseSet;
  readonly #internals: ClientInternals;
  readonly #notifier: GearmanWakeUpNotifier | undefined;

  static {
    internals = (client) => client.#internals;
  }

  constructor(options: SchwartzClientOptions) {
    if (options === null || typeof options !== 'object') throw invalidArgument('options must be an object');
    const retrySeconds = positive('retrySeconds', options.retrySeconds, 30);
    const batchSize = positive('batchSize', options.batchSize, 50, true);
    if (options.floor !== undefined) {
      if (!options.prioritize) throw invalidArgument('floor works only with prioritize');
      if (!Number.isInteger(options.floor)) throw invalidArgument('floor must be an integer');
    }
    const probability = options.exitStatusPurgeProbability ?? 0.1;
    if (!(probability >= 0 && probability <= 1)) throw invalidArgument('exitStatusPurgeProbability must be 0 to 1');
    this.#set = new DatabaseSet(options.databases, retrySeconds, {
      ...(options.connections !== undefined && { connections: positive('connections', options.connections, 10, true) }),
      ...(options.connectTimeout !== undefined && {
        connectTimeout: positive('connectTimeout', options.connectTimeout, 10_000),
      }),
    });
    this.#notifier = options.notify === undefined ? undefined : new GearmanWakeUpNotifier(options.notify);
    this.#internals = {
      set: this.#set,
      prioritize: options.prioritize === true,
      floor: options.floor,
      batchSize,
      housekeeping: {
        exitStatusPurgeProbability: probability,
        errorMaxAge: positive('errorMaxAge', options.errorMaxAge, 7 * 86_400, true),
      },
      insertInto: async (db, job) => {
        const normalized = normalizeNewJob(job);
        const handle = await this.#insertInto(db, normalized, performance.now());
        if (handle !== undefined) this.#notifyInserted([normalized]);
        return handle;
      },
      notifyInserted: (jobs) => this.#notifyInserted(jobs),
    };
  }

  /** The configured databases' handle hashes (`md5_hex("dsn|user")`), in configuration order. */
  get databaseHashes(): string[] {
    return this.#set.all.map((db) => db.hash);
  }

  /** Creates TheSchwartz's tables in every database where they are missing (see `ensureSchema`). */
  async ensureSchema(): Promise<void> {
    for (const db of this.#set.all) await ensureSchema(await db.open(), db.prefix);
  }

  /**
   * Queues one job in a random live database, failing over to the others. Resolves to its handle, or `undefined`
   * when a job with the same funcname and `uniqkey` exists in the database chosen. Rejects with
   * `SCHWARTZ_ERR_NO_DATABASES` when no database took it.
   */
  insert(funcname: string, arg?: JobArg, options: InsertOptions = {}): Promise<JobHandle | undefined> {
    return this.insertJob({ ...options, funcname, arg });
  }

  /** {@link insert} for a job given as one object. */
  async insertJob(job: NewJob): Promise<JobHandle | undefined> {
    const normalized = normalizeNewJob(job);
    let lastError: unknown;
    for (const db of this.#set.shuffledLive()) {
      let handle: JobHandle | undefined;
      try {
        handle = await this.#insertInto(db, normalized, performance.now());
      } catch (err) {
        if (isSchwartzError(err)) throw err;
        lastError = err;
        continue;
      }
      if (handle !== undefined) this.#notifyInserted([normalized]);
      return handle;
    }
    throw new SchwartzError('SCHWARTZ_ERR_NO_DATABASES', undefined, { cause: lastError });
  }

  /** One job into one database: its handle, `undefined` for a duplicate; a failure marks the database dead. */
  async #insertInto(db: SchwartzDatabase, job: NormalizedJob, started: number): Promise<JobHandle | undefined> {
    try {
      checkForDialect(db.dialect, job);
      const sql = await db.open();
      const funcid = (await db.funcid(job.funcname)) as number;
      const jobid = await insertJobRow(sql, db, funcid, job, unixTime());
      return this.#inserted(db, job.funcname, jobid, started);
    } catch (err) {
      if (isSchwartzError(err)) throw err;
      if (isUniqueViolation(err)) return this.#inserted(db, job.funcname, undefined, started);
      this.#failed(db, job.funcname, err, started);
      throw err;
    }
  }

  /**
   * Wakes the workers of `funcname` through gearman now (the client's `notify` option; without it, does nothing
   * and resolves to false). Inserts do this on their own; call it after committing a transaction that queued jobs
   * with {@link insertWith}. Never rejects: resolves to whether a job server took the wake-up.
   */
  notify(funcname: string): Promise<boolean> {
    if (this.#notifier === undefined) return Promise.resolve(false);
    return this.#notifier.notify(funcname);
  }

  /** Wake-ups for the functions of committed jobs that may run now (a later `runAfter` is left to polling). */
  #notifyInserted(jobs: readonly NormalizedJob[]): void {
    if (this.#notifier === undefined) return;
    const now = unixTime();
    const names = new Set<string>();
    for (const j of jobs) if (j.runAfter === undefined || j.runAfter <= now) names.add(j.funcname);
    for (const name of names) void this.#notifier.notify(name);
  }

  /**
   * Queues several jobs in one transaction of one database (random, failing over as a whole). Resolves to one
   * handle per job, `undefined` for a duplicate `uniqkey` (skipped; the others are committed).
   */
  async insertJobs(jobs: readonly NewJob[]): Promise<(JobHandle | undefined)[]> {
    const normalized = jobs.map(normalizeNewJob);
    if (normalized.length === 0) return [];
    let lastError: unknown;
    for (const db of this.#set.shuffledLive()) {
      const started = performance.now();
      try {
        for (const j of normalized) checkForDialect(db.dialect, j);
        const sql = await db.open();
        const funcids = await resolveFuncids(db, normalized);
        const ids = await sql.transaction((tx) => this.#insertAll(tx, db, normalized, funcids));
        this.#notifyInserted(normalized.filter((_, i) => ids[i] !== undefined));
        return ids.map((id, i) => this.#inserted(db, (normalized[i] as NormalizedJob).funcname, id, started));
      } catch (err) {
        if (isSchwartzError(err)) throw err;
        lastError = err;
        this.#failed(db, '', err, started);
      }
    }
    throw new SchwartzError('SCHWARTZ_ERR_NO_DATABASES', undefined, { cause: lastError });
  }

  /**
   * Queues a job inside the caller's own transaction `tx` (commits and rolls back with it), in the database
   * `options.database` names. No failover and no dead marks: errors are the caller's. No wake-up is sent (the
   * client cannot see the commit): call {@link notify} after committing.
   *
   * @example
   * await db.transaction(async (tx) => {
   *   await tx.run('UPDATE photos SET state = ? WHERE id = ?', ['queued', 42]);
   *   await client.insertWith(tx, 'MyApp::Resize', '42');
   * });
   */
  async insertWith(
    tx: SqlExecutor,
    funcname: string,
    arg?: JobArg,
    options: InsertOptions & InTransactionOptions = {},
  ): Promise<JobHandle | undefined> {
    const { database, ...fields } = options;
    const [handle] = await this.insertJobsWith(tx, [{ ...fields, funcname, arg }], { database });
    return handle;
  }

  /** {@link insertJobs} inside the caller's transaction `tx` (see {@link insertWith}). */
  async insertJobsWith(
    tx: SqlExecutor,
    jobs: readonly NewJob[],
    options: InTransactionOptions = {},
  ): Promise<(JobHandle | undefined)[]> {
    const db = this.#set.pick(options.database);
    if (tx.dialect !== db.dialect) {
      throw invalidArgument(`the transaction is ${tx.dialect}, the database ${db.redactedDsn} is ${db.dialect}`);
    }
    const normalized = jobs.map(normalizeNewJob);
    for (const j of normalized) checkForDialect(db.dialect, j);
    const funcids = new Map<string, number>();
    for (const j of normalized) {
      if (!funcids.has(j.funcname)) funcids.set(j.funcname, (await db.funcid(j.funcname, { executor: tx })) as number);
    }
    const started = performance.now();
    const ids = await this.#insertAll(tx, db, normalized, funcids);
    return ids.map((id, i) => this.#inserted(db, (normalized[i] as NormalizedJob).funcname, id, started));
  }

  async #insertAll(
    exec: SqlExecutor,
    db: SchwartzDatabase,
    jobs: readonly NormalizedJob[],
    funcids: Map<string, number>,
  ): Promise<(JobId | undefined)[]> {
    const now = unixTime();
    const ids: (JobId | undefined)[] = [];
    for (const j of jobs) ids.push(await insertJobRow(exec, db, funcids.get(j.funcname) as number, j, now));
    return ids;
  }

  #inserted(db: SchwartzDatabase, funcname: string, jobid: JobId | undefined, started: number): JobHandle | undefined {
    const durationMs = performance.now() - started;
    if (jobid === undefined) {
      publishInsert({ type: 'duplicate', funcname, database: db.hash, durationMs });
      return undefined;
    }
    const handle = new JobHandle(db.hash, jobid, this.#set);
    publishInsert({ type: 'inserted', funcname, database: db.hash, handle: handle.toString(), durationMs });
    return handle;
  }

  #failed(db: SchwartzDatabase, funcname: string, err: unknown, started: number): void {
    const error = asError(err);
    publishInsert({ type: 'error', funcname, database: db.hash, durationMs: performance.now() - started, error });
    this.#set.markDead(db, err, 'insert');
  }

  /** The handle a string names (`<hash>-<jobid>`), bound to this client. */
  handle(handle: string): JobHandle {
    return parseJobHandle(handle, this.#set);
  }

  /** The job a handle names, or `undefined` once it is gone (completed or failed for good). */
  async lookupJob(handle: string | JobHandle): Promise<JobRecord | undefined> {
    const h = typeof handle === 'string' ? this.handle(handle) : handle;
    return lookupJobRecord(this.#set.get(h.database), h);
  }

  /**
   * Jobs of one or several functions across every live database (TheSchwartz `list_jobs`), each database's rows
   * in the workers' order (jobid, or priority then jobid with `prioritize`), at most `limit` per database.
   */
  async listJobs(query: ListJobsQuery): Promise<JobRecord[]> {
    const names = typeof query.funcname === 'string' ? [query.funcname] : [...(query.funcname ?? [])];
    if (names.length === 0 || names.some((n) => typeof n !== 'string' || n === '')) {
      throw invalidArgument('listJobs needs a funcname');
    }
    const { prioritize, floor, batchSize } = this.#internals;
    const limit = positive('limit', query.limit, batchSize, true);
    if (query.coalesce !== undefined && query.coalescePrefix !== undefined) {
      throw invalidArgument('give coalesce or coalescePrefix, not both');
    }
    const coalesce =
      query.coalesce !== undefined
        ? { op: '=' as const, value: query.coalesce }
        : query.coalescePrefix !== undefined
          ? { op: 'LIKE' as const, value: likePrefix(query.coalescePrefix) }
          : undefined;
    const out: JobRecord[] = [];
    for (const db of this.#set.shuffledLive()) {
      const funcids: number[] = [];
      for (const n of names) {
        const id = await db.funcid(n, { create: false });
        if (id !== undefined) funcids.push(id);
      }
      const rows = await selectJobs(await db.open(), db, {
        funcids,
        ...(query.runAfter !== undefined && { runAfter: toUnixSeconds('runAfter', query.runAfter) }),
        ...(query.grabbedUntil !== undefined && { grabbedUntil: toUnixSeconds('grabbedUntil', query.grabbedUntil) }),
        ...(query.jobid !== undefined && { jobid: query.jobid }),
        ...(coalesce !== undefined && { coalesce }),
        ...(floor !== undefined && { floor }),
        prioritize,
        limit,
      });
      for (const row of rows) {
        const handle = new JobHandle(db.hash, row.jobid, this.#set);
        out.push(toJobRecord(row, (await db.funcname(row.funcid)) ?? '', handle));
      }
    }
    return out;
  }

  /**
   * Sends the wake-ups still queued and closes the gearman client it opened, then closes the databases the client
   * opened (not those given as `database`).
   */
  async close(): Promise<void> {
    await this.#notifier?.close();
    await this.#set.close();
  }
}
