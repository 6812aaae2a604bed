/**
 * The one database surface every part uses (gearman's durable queues, TheSchwartz, the MogileFS tracker).
 *
 * Statements are written once with `?` placeholders; the PostgreSQL adapter renumbers them to `$1…`. Rows come back
 * as plain objects with BLOB/BYTEA columns as `Buffer` and integers as `number` (or `bigint` past 2^53). What still
 * differs between engines (upserts, identifier quoting, "insert or ignore", error classification) lives in
 * `dialect.ts`, so callers never branch on the engine themselves.
 *
 * @module
 */

import type { SqlDialect } from './connection-url.ts';

/** A bound parameter. */
export type SqlValue = string | number | bigint | boolean | Buffer | Uint8Array | null;

/** A result row. */
export type SqlRow = Record<string, unknown>;

/** What a statement that returns no rows reports. */
export interface SqlRunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
  /** SQLite rowid / MySQL AUTO_INCREMENT of the last insert; undefined for PostgreSQL (use `RETURNING`). */
  lastInsertId: number | bigint | undefined;
}

/** Runs statements: a database, or one transaction of it. */
export interface SqlExecutor {
  readonly dialect: SqlDialect;
  /** Runs a statement that returns rows. */
  query<R extends SqlRow = SqlRow>(sql: string, params?: readonly SqlValue[]): Promise<R[]>;
  /** Runs a statement that returns no rows. */
  run(sql: string, params?: readonly SqlValue[]): Promise<SqlRunResult>;
}

/** A connection pool (MySQL, PostgreSQL) or an open file (SQLite). */
export interface SqlDatabase extends SqlExecutor {
  /**
   * Runs `fn` inside one transaction on one connection: committed when `fn` resolves, rolled back when it throws.
   * Statements issued on the database itself (not on `tx`) meanwhile run outside it.
   */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Closes the pool or file once statements in progress have finished. */
  close(): Promise<void>;
}

/** Rewrites `?` placeholders (outside quotes and comments) as PostgreSQL's `$1, $2, …`. */
export function numberPlaceholders(sql: string): string {
  let out = '';
  let n = 0;
  let quote: string | undefined;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i] as string;
    if (quote !== undefined) {
      out += c;
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
      out += c;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end < 0 ? sql.length : end;
      out += sql.slice(i, stop);
      i = stop - 1;
    } else if (c === '?') {
      out += `$${++n}`;
    } else out += c;
  }
  return out;
}

/** `Uint8Array` → `Buffer` (a view, no copy), integers past 2^53 kept as `bigint`, others to `number`. */
export function normalizeValue(v: unknown): unknown {
  if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)) {
    return Number(v);
  }
  return v;
}

/** Serialises asynchronous critical sections (one SQLite connection, one transaction at a time). */
export class AsyncMutex {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `fn` after every earlier holder has finished. */
  lock<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.#tail.then(fn);
    this.#tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}
