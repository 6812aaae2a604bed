/**
 * The embedded engine: `node:sqlite` (SQLite compiled into Node), no server, no dependency.
 *
 * `node:sqlite` is synchronous; the adapter keeps the promise surface of the other engines so callers are written once.
 * One connection per file per process: every `openSqlite` of the same path shares it (reference-counted), and
 * statements run at once unless a transaction is open, in which case they wait for it. Two connections of one
 * process would otherwise block each other for real: node:sqlite waits for a lock synchronously, so while one holds
 * a transaction across an `await`, the other's busy wait would freeze the event loop the first needs to finish.
 * Other processes are fine (WAL, busy timeout). Files open in WAL mode with `synchronous=FULL`, so a resolved write
 * is on disk: one fsync per commit, which is what group commit amortises.
 *
 * @module
 */

import { resolve } from 'node:path';
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

/** One open file, shared by every {@link SqliteDatabase} of this process that opened the same path. */
class SqliteFile {
  readonly db: DatabaseSync;
  readonly exec: SqliteExecutor;
  readonly mutex = new AsyncMutex();
  inTransaction = 0;
  refs = 0;
  #busyTimeout: number;
  #full: boolean;

  constructor(file: string, options: SqliteOptions) {
    this.#busyTimeout = options.busyTimeout ?? 5000;
    this.#full = options.synchronous !== 'normal';
    this.db = new DatabaseSync(file, { timeout: this.#busyTimeout });
    if (file !== ':memory:') this.db.exec('PRAGMA journal_mode = WAL');
    this.db.exec(`PRAGMA synchronous = ${this.#full ? 'FULL' : 'NORMAL'}`);
    this.exec = new SqliteExecutor(this.db);
  }

  /** Another opener of the same file: the stricter of both settings applies (durable commits, longer lock wait). */
  adopt(options: SqliteOptions): void {
    if (options.synchronous !== 'normal' && !this.#full) {
      this.#full = true;
      this.db.exec('PRAGMA synchronous = FULL');
    }
    const timeout = options.busyTimeout ?? 5000;
    if (timeout > this.#busyTimeout) {
      this.#busyTimeout = timeout;
      this.db.exec(`PRAGMA busy_timeout = ${Math.floor(timeout)}`);
    }
  }
}

const openFiles = new Map<string, SqliteFile>();

class SqliteDatabase implements SqlDatabase {
  readonly dialect = 'sqlite' as const;
  readonly #file: SqliteFile;
  readonly #key: string | undefined;
  #closed = false;

  constructor(file: SqliteFile, key: string | undefined) {
    this.#file = file;
    this.#key = key;
    file.refs++;
  }

  query<R extends SqlRow = SqlRow>(sql: string, params: readonly SqlValue[] = []): Promise<R[]> {
    const f = this.#file;
    if (f.inTransaction === 0) return f.exec.query<R>(sql, params);
    return f.mutex.lock(() => f.exec.querySync<R>(sql, params));
  }

  run(sql: string, params: readonly SqlValue[] = []): Promise<SqlRunResult> {
    const f = this.#file;
    if (f.inTransaction === 0) return f.exec.run(sql, params);
    return f.mutex.lock(() => f.exec.runSync(sql, params));
  }

  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const f = this.#file;
    f.inTransaction++;
    return f.mutex
      .lock(async () => {
        // IMMEDIATE takes the write lock up front: two processes that both read then write would otherwise
        // deadlock on the upgrade and one would get SQLITE_BUSY at once.
        f.db.exec('BEGIN IMMEDIATE');
        try {
          const result = await fn(f.exec);
          f.db.exec('COMMIT');
          return result;
        } catch (err) {
          try {
            f.db.exec('ROLLBACK');
          } catch {
            // Already rolled back by SQLite (e.g. after SQLITE_FULL); the original error is what matters.
          }
          throw err;
        }
      })
      .finally(() => {
        f.inTransaction--;
      });
  }

  close(): Promise<void> {
    const f = this.#file;
    return f.mutex.lock(() => {
      if (this.#closed) return;
      this.#closed = true;
      if (--f.refs > 0) return;
      if (this.#key !== undefined && openFiles.get(this.#key) === f) openFiles.delete(this.#key);
      f.db.close();
    });
  }
}

/**
 * Opens (creating if needed) a SQLite database file, or `:memory:` (never shared). A path this process already has
 * open shares that connection, with the stricter of the openers' settings.
 */
export function openSqlite(file: string, options: SqliteOptions = {}): SqlDatabase {
  if (file === ':memory:' || file === '') return new SqliteDatabase(new SqliteFile(file, options), undefined);
  const key = resolve(file);
  let shared = openFiles.get(key);
  if (shared === undefined) {
    shared = new SqliteFile(file, options);
    openFiles.set(key, shared);
  } else shared.adopt(options);
  return new SqliteDatabase(shared, key);
}
