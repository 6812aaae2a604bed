/**
 * The embedded engine: `node:sqlite` (SQLite compiled into Node), no server, no dependency.
 *
 * `node:sqlite` is synchronous; the adapter keeps the promise surface of the other engines so callers are written once.
 * One connection per file: statements run at once unless a transaction is open, in which case they wait for it (a
 * second connection would only meet SQLITE_BUSY on the same file). Files open in WAL mode with `synchronous=FULL`, so
 * a resolved write is on disk: one fsync per commit, which is what group commit amortises.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from 'node:sqlite';
import {
  AsyncMutex,
  normalizeValue,
  type SqlDatabase,
  type SqlExecutor,
  type SqlRow,
  type SqlRunResult,
  type SqlValue,
} from './database.ts';

/** Options of {@link openSqlite}. */
export interface SqliteOptions {
  /** How long a statement waits for another process's lock before failing (ms, default 5000). */
  busyTimeout?: number;
  /** `full` (default): commits are fsynced. `normal`: survives a process crash, not a power cut. */
  synchronous?: 'full' | 'normal';
}

type Param = Exclude<SqlValue, boolean> | Uint8Array;

function bind(params: readonly SqlValue[]): Param[] {
  return params.map((p) => (typeof p === 'boolean' ? (p ? 1 : 0) : p));
}

function normalizeRow(row: Record<string, unknown>): SqlRow {
  const out: SqlRow = {};
  for (const k in row) out[k] = normalizeValue(row[k]);
  return out;
}

class SqliteExecutor implements SqlExecutor {
  readonly dialect = 'sqlite' as const;
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  statement(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (st === undefined) {
      st = this.#db.prepare(sql);
      // Integers as bigint first, so values past 2^53 are not refused; normalizeValue narrows the rest to number.
      st.setReadBigInts(true);
      if (this.#statements.size >= 256) this.#statements.clear();
      this.#statements.set(sql, st);
    }
    return st;
  }

  querySync<R extends SqlRow>(sql: string, params: readonly SqlValue[]): R[] {
    return this.statement(sql)
      .all(...(bind(params) as never[]))
      .map((r) => normalizeRow(r as Record<string, unknown>) as R);
  }

  runSync(sql: string, params: readonly SqlValue[]): SqlRunResult {
    const r = this.statement(sql).run(...(bind(params) as never[]));
    return { changes: Number(r.changes), lastInsertId: normalizeValue(r.lastInsertRowid) as number | bigint };
  }

  query<R extends SqlRow = SqlRow>(sql: string, params: readonly SqlValue[] = []): Promise<R[]> {
    try {
      return Promise.resolve(this.querySync<R>(sql, params));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  run(sql: string, params: readonly SqlValue[] = []): Promise<SqlRunResult> {
    try {
      return Promise.resolve(this.runSync(sql, params));
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

class SqliteDatabase implements SqlDatabase {
  readonly dialect = 'sqlite' as const;
  readonly #db: DatabaseSync;
  readonly #exec: SqliteExecutor;
  readonly #mutex = new AsyncMutex();
  #inTransaction = 0;
  #closed = false;

  constructor(file: string, options: SqliteOptions) {
    this.#db = new DatabaseSync(file, { timeout: options.busyTimeout ?? 5000 });
    if (file !== ':memory:') this.#db.exec('PRAGMA journal_mode = WAL');
    this.#db.exec(`PRAGMA synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
    this.#exec = new SqliteExecutor(this.#db);
  }

  query<R extends SqlRow = SqlRow>(sql: string, params: readonly SqlValue[] = []): Promise<R[]> {
    if (this.#inTransaction === 0) return this.#exec.query<R>(sql, params);
    return this.#mutex.lock(() => this.#exec.querySync<R>(sql, params));
  }

  run(sql: string, params: readonly SqlValue[] = []): Promise<SqlRunResult> {
    if (this.#inTransaction === 0) return this.#exec.run(sql, params);
    return this.#mutex.lock(() => this.#exec.runSync(sql, params));
  }

  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    this.#inTransaction++;
    return this.#mutex
      .lock(async () => {
        // IMMEDIATE takes the write lock up front: two processes that both read then write would otherwise
        // deadlock on the upgrade and one would get SQLITE_BUSY at once.
        this.#db.exec('BEGIN IMMEDIATE');
        try {
          const result = await fn(this.#exec);
          this.#db.exec('COMMIT');
          return result;
        } catch (err) {
          try {
            this.#db.exec('ROLLBACK');
          } catch {
            // Already rolled back by SQLite (e.g. after SQLITE_FULL); the original error is what matters.
          }
          throw err;
        }
      })
      .finally(() => {
        this.#inTransaction--;
      });
  }

  close(): Promise<void> {
    return this.#mutex.lock(() => {
      if (this.#closed) return;
      this.#closed = true;
      this.#db.close();
    });
  }
}

/** Opens (creating if needed) a SQLite database file, or `:memory:`. */
export function openSqlite(file: string, options: SqliteOptions = {}): SqlDatabase {
  return new SqliteDatabase(file, options);
}
