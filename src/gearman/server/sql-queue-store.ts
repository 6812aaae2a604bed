/**
 * Durable background queues on SQL (gearmand's `libsqlite3`, `MySQL` and `Postgres` queues), with group commit.
 *
 * The table is gearmand's, column for column, so a database gearmand wrote is replayed here and the other way round:
 *
 * ```
 *  unique_key | function_name | priority | data | when_to_run      PRIMARY KEY / UNIQUE (unique_key, function_name)
 * ```
 *
 * gearmand commits one transaction per job (one or more fsyncs each: ~520 submits/s on SQLite here). Here every
 * `add` and `done` joins a batch; one transaction writes the whole batch, and each submitter's JOB_CREATED is
 * released only after that commit. While a commit is in flight the next batch gathers, so the number of fsyncs
 * per second stays bounded while the number of jobs per fsync grows with the load:
 *
 * ```
 *  add(a) add(b) done(x) add(c) ─► [ tx: REPLACE a,b ; DELETE x ; REPLACE c ] ─► commit ─► resolve a, b, c
 *                        add(d) add(e) ────────────────────────────────────────► [ tx: REPLACE d,e ] …
 * ```
 *
 * Operations keep their order inside a batch (a job that completes and is submitted again under the same unique id
 * must end up stored). Background jobs whose unique id is empty or `-` get a generated key, because gearmand's key
 * would let them overwrite each other (issue #87 there); the key maps back to the original unique id on replay.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SqlDatabase, SqlDialect, SqlExecutor, SqlValue } from '../../sql/index.ts';
import { keyMatch, openDatabase, parseConninfo, quoteIdent, replaceRows } from '../../sql/index.ts';
import { BuiltinQueueStore, type JobPriority, type QueueStore, type StoredJob } from './queue-store.ts';
import type { GearmanSettings } from './settings.ts';

/** gearmand's columns, in its order. */
const COLUMNS = ['unique_key', 'function_name', 'priority', 'data', 'when_to_run'] as const;
const KEY = ['unique_key', 'function_name'] as const;

/** Generated keys for jobs gearmand would store under an empty or `-` unique id. */
const ANONYMOUS = 'sharenothing:anon:';
const PAYLOAD_KEYED = 'sharenothing:payload:';

/** Rows per multi-row statement, and bytes of job data per statement (under MySQL's 16 MiB max_allowed_packet). */
const MAX_ROWS = 500;
const MAX_STATEMENT_BYTES = 4 * 1024 * 1024;

/** Options of {@link SqlQueueStore}. */
export interface SqlQueueStoreOptions {
  /** Name in logs: gearmand's queue type (`libsqlite3`, `MySQL`, `Postgres`). */
  name: string;
  /** Opens the database (called once, by `replay`). */
  open: () => Promise<SqlDatabase>;
  /** Table name (gearmand's defaults: `gearman_queue`; `queue` for Postgres). */
  table: string;
}

interface Operation {
  kind: 'add' | 'done';
  job: StoredJob;
  resolve: () => void;
  reject: (err: unknown) => void;
  /** Failed attempts so far (deletes are retried). */
  attempts: number;
}

/** A delete is tried this many times (backing off from {@link RETRY_BASE_MS}) before it is reported as failed. */
const DONE_ATTEMPTS = 5;
const RETRY_BASE_MS = 200;

/** The DDL gearmand runs when the table is missing (its types per engine). */
export function createQueueTableSql(dialect: SqlDialect, table: string): string {
  const t = quoteIdent(dialect, table);
  if (dialect === 'sqlite') {
    return `CREATE TABLE IF NOT EXISTS ${t} ( unique_key TEXT, function_name TEXT, priority INTEGER, data BLOB, when_to_run INTEGER, PRIMARY KEY (unique_key, function_name))`;
  }
  if (dialect === 'mysql') {
    return `CREATE TABLE IF NOT EXISTS ${t} ( unique_key VARCHAR(64), function_name VARCHAR(255), priority INT, data LONGBLOB, when_to_run BIGINT, UNIQUE KEY (unique_key, function_name))`;
  }
  return `CREATE TABLE IF NOT EXISTS ${t} ( unique_key VARCHAR(64), function_name VARCHAR(255), priority INTEGER, data BYTEA, when_to_run INTEGER, UNIQUE (unique_key, function_name))`;
}

/**
 * A {@link QueueStore} over `src/sql` with group commit. `add` resolves once the job is committed; `done` joins the
 * next batch too (a failed delete is retried a few times, so a finished job is not replayed after a restart).
 */
export class SqlQueueStore implements QueueStore {
  readonly name: string;
  readonly durable = true;
  readonly #open: () => Promise<SqlDatabase>;
  readonly #table: string;
  #db: Promise<SqlDatabase> | undefined;
  #pending: Operation[] = [];
  #flushing: Promise<void> | undefined;
  #scheduled = false;
  #closed = false;
  /** Deletes waiting for their retry timer. */
  #retrying = 0;
  /** Batches committed and operations written (exposed for metrics and tests). */
  readonly stats = { commits: 0, adds: 0, dones: 0, failedBatches: 0 };

  constructor(options: SqlQueueStoreOptions) {
    this.name = options.name;
    this.#open = options.open;
    this.#table = options.table;
  }

  #database(): Promise<SqlDatabase> {
    this.#db ??= this.#open().then(async (db) => {
      try {
        await db.run(createQueueTableSql(db.dialect, this.#table));
      } catch (err) {
        await db.close().catch(() => {});
        throw err;
      }
      return db;
    });
    return this.#db;
  }

  add(job: StoredJob): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`${this.name} queue is closed`));
    if (job.unique === '' || job.unique === '-') {
      job.key ??= (job.unique === '' ? ANONYMOUS : PAYLOAD_KEYED) + randomBytes(16).toString('base64url');
    }
    return this.#enqueue('add', job);
  }

  done(job: StoredJob): Promise<void> {
    return this.#enqueue('done', job);
  }

  #enqueue(kind: 'add' | 'done', job: StoredJob): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ kind, job, resolve, reject, attempts: 0 });
      this.#schedule();
    });
  }

  /** Starts a flush after the current I/O phase (so every packet read in it joins), unless one is running. */
  #schedule(): void {
    if (this.#scheduled || this.#flushing !== undefined) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#flushing ??= this.#drain().finally(() => {
        this.#flushing = undefined;
        if (this.#pending.length > 0) this.#schedule();
      });
    });
  }

  async #drain(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending;
      this.#pending = [];
      let db: SqlDatabase;
      try {
        db = await this.#database();
        await this.#write(db, batch);
      } catch (err) {
        this.stats.failedBatches++;
        const opened = batch.length > 1 ? await this.#database().catch(() => undefined) : undefined;
        if (opened === undefined) {
          for (const op of batch) this.#failed(op, err);
          continue;
        }
        db = opened;
        // Nothing of the batch is committed. One bad row (a function name or epoch the column cannot hold) must
        // not refuse its neighbours: write the operations one by one, in order, so only the bad one fails.
        for (const op of batch) {
          try {
            await this.#write(db, [op]);
            this.#succeeded(op);
          } catch (oneErr) {
            this.#failed(op, oneErr);
          }
        }
        continue;
      }
      this.stats.commits++;
      for (const op of batch) this.#succeeded(op);
    }
  }

  #succeeded(op: Operation): void {
    if (op.kind === 'add') this.stats.adds++;
    else this.stats.dones++;
    op.resolve();
  }

  /**
   * An operation that was not committed. An add is refused (its client gets QUEUE_ERROR and may retry). A delete is
   * tried again later from a timer, so it never holds up new submissions (a finished job left stored would run again
   * after a restart); after DONE_ATTEMPTS, or when closing, it is reported to the router, which logs it.
   */
  #failed(op: Operation, err: unknown): void {
    if (op.kind !== 'done' || this.#closed || ++op.attempts >= DONE_ATTEMPTS) {
      op.reject(err);
      return;
    }
    this.#retrying++;
    setTimeout(
      () => {
        this.#retrying--;
        this.#pending.push(op);
        this.#schedule();
      },
      RETRY_BASE_MS * 2 ** (op.attempts - 1),
    ).unref();
  }

  /** Writes a batch in one transaction (one statement needs none), keeping the order of its operations. */
  async #write(db: SqlDatabase, batch: Operation[]): Promise<void> {
    const statements = this.#statements(db.dialect, batch);
    if (statements.length === 1) {
      const [sql, params] = statements[0]!;
      await db.run(sql, params);
      return;
    }
    await db.transaction(async (tx: SqlExecutor) => {
      for (const [sql, params] of statements) await tx.run(sql, params);
    });
  }

  /** Consecutive adds become multi-row replaces, consecutive dones multi-row deletes (bounded in rows and bytes). */
  #statements(dialect: SqlDialect, batch: Operation[]): [string, SqlValue[]][] {
    const out: [string, SqlValue[]][] = [];
    let i = 0;
    while (i < batch.length) {
      const kind = batch[i]!.kind;
      const rows: StoredJob[] = [];
      const keys = new Set<string>();
      let bytes = 0;
      while (i < batch.length && batch[i]!.kind === kind && rows.length < MAX_ROWS) {
        const job = batch[i]!.job;
        const id = `${job.functionName}\0${job.key ?? job.unique}`;
        // PostgreSQL refuses one key twice in one upsert; the later row must win, so start a new statement.
        if (keys.has(id)) break;
        if (rows.length > 0 && kind === 'add' && bytes + job.data.length > MAX_STATEMENT_BYTES) break;
        keys.add(id);
        bytes += job.data.length;
        rows.push(job);
        i++;
      }
      const params: SqlValue[] = [];
      if (kind === 'add') {
        for (const job of rows) {
          params.push(job.key ?? job.unique, job.functionName, job.priority, job.data, job.whenToRun);
        }
        out.push([replaceRows(dialect, this.#table, COLUMNS, KEY, rows.length), params]);
      } else {
        for (const job of rows) params.push(job.key ?? job.unique, job.functionName);
        out.push([
          `DELETE FROM ${quoteIdent(dialect, this.#table)} WHERE ${keyMatch(dialect, KEY, rows.length)}`,
          params,
        ]);
      }
    }
    return out;
  }

  /** Opens the database (creating the table as gearmand does) and queues every stored job again. */
  async replay(add: (job: StoredJob) => void): Promise<void> {
    const db = await this.#database();
    const t = quoteIdent(db.dialect, this.#table);
    // SQLite's rowid is insertion order: replay oldest first. The other engines have no such column in this schema.
    const order = db.dialect === 'sqlite' ? ' ORDER BY rowid' : '';
    const rows = await db.query<{
      unique_key: string | null;
      function_name: string | null;
      priority: number | null;
      data: Buffer | string | null;
      when_to_run: number | null;
    }>(`SELECT unique_key, function_name, priority, data, when_to_run FROM ${t}${order}`);
    for (const row of rows) {
      const key = row.unique_key ?? '';
      const job: StoredJob = {
        unique: key.startsWith(ANONYMOUS) ? '' : key.startsWith(PAYLOAD_KEYED) ? '-' : key,
        functionName: row.function_name ?? '',
        data: row.data === null ? Buffer.alloc(0) : Buffer.isBuffer(row.data) ? row.data : Buffer.from(row.data),
        priority: toPriority(row.priority),
        whenToRun: Number(row.when_to_run ?? 0),
      };
      if (key !== job.unique) job.key = key;
      add(job);
    }
  }

  /** Writes what is pending, then closes the database. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing !== undefined || this.#scheduled || this.#pending.length > 0 || this.#retrying > 0) {
      if (this.#flushing === undefined && !this.#scheduled && this.#pending.length > 0) this.#schedule();
      await (this.#flushing ?? sleep(this.#retrying > 0 ? 20 : 0));
    }
    if (this.#db !== undefined) {
      const db = await this.#db.catch(() => undefined);
      await db?.close();
    }
  }
}

function toPriority(v: number | null): JobPriority {
  return v === 0 || v === 2 ? v : 1;
}

/** The store `-q` names, with gearmand's options (the database is opened by `replay`, at `listen()`). */
export function queueStoreFor(settings: GearmanSettings): QueueStore {
  const q = settings.queue;
  switch (settings.queueType) {
    case 'builtin':
      return new BuiltinQueueStore();
    case 'libsqlite3':
      return new SqlQueueStore({
        name: 'libsqlite3',
        table: q.libsqlite3Table,
        open: () => openDatabase({ dialect: 'sqlite', file: q.libsqlite3Db ?? ':memory:' }),
      });
    case 'MySQL':
      return new SqlQueueStore({
        name: 'MySQL',
        table: q.mysqlTable,
        open: () =>
          openDatabase({
            dialect: 'mysql',
            host: q.mysqlHost,
            port: q.mysqlPort,
            ...(q.mysqlUser !== undefined && { user: q.mysqlUser }),
            ...(q.mysqlPassword !== undefined && { password: q.mysqlPassword }),
            ...(q.mysqlDb !== undefined && { database: q.mysqlDb }),
          }),
      });
    case 'Postgres':
      return new SqlQueueStore({
        name: 'Postgres',
        table: q.libpqTable,
        open: () => openDatabase(parseConninfo(q.libpqConninfo)),
      });
  }
}
