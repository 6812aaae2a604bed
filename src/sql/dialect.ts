/**
 * Everything that differs between SQLite, MySQL/MariaDB and PostgreSQL, in one place: identifier quoting, "insert or
 * replace", "insert or ignore", and what a driver error means.
 *
 * @module
 */

import type { SqlDialect } from './connection-url.ts';

/** Quotes an identifier (table or column name) for `dialect`. */
export function quoteIdent(dialect: SqlDialect, name: string): string {
  if (dialect === 'mysql') return `\`${name.replaceAll('`', '``')}\``;
  return `"${name.replaceAll('"', '""')}"`;
}

/** `(?, ?, ?), (?, ?, ?)`: placeholders for `rows` rows of `columns` values. */
export function valuesList(columns: number, rows: number): string {
  const one = `(${new Array(columns).fill('?').join(', ')})`;
  return new Array(rows).fill(one).join(', ');
}

/**
 * A multi-row insert that replaces rows whose `keyColumns` already exist (SQLite `INSERT OR REPLACE`, MySQL
 * `REPLACE`, PostgreSQL `ON CONFLICT … DO UPDATE`). PostgreSQL refuses two rows with the same key in one statement:
 * callers pass distinct keys.
 */
export function replaceRows(
  dialect: SqlDialect,
  table: string,
  columns: readonly string[],
  keyColumns: readonly string[],
  rows: number,
): string {
  const q = (n: string) => quoteIdent(dialect, n);
  const cols = columns.map(q).join(', ');
  const values = valuesList(columns.length, rows);
  if (dialect === 'sqlite') return `INSERT OR REPLACE INTO ${q(table)} (${cols}) VALUES ${values}`;
  if (dialect === 'mysql') return `REPLACE INTO ${q(table)} (${cols}) VALUES ${values}`;
  const updates = columns
    .filter((c) => !keyColumns.includes(c))
    .map((c) => `${q(c)} = EXCLUDED.${q(c)}`)
    .join(', ');
  return `INSERT INTO ${q(table)} (${cols}) VALUES ${values} ON CONFLICT (${keyColumns.map(q).join(', ')}) DO UPDATE SET ${updates}`;
}

/** A multi-row insert that skips rows whose unique key already exists. */
export function insertIgnoringDuplicates(
  dialect: SqlDialect,
  table: string,
  columns: readonly string[],
  rows: number,
): string {
  const q = (n: string) => quoteIdent(dialect, n);
  const body = `INTO ${q(table)} (${columns.map(q).join(', ')}) VALUES ${valuesList(columns.length, rows)}`;
  if (dialect === 'sqlite') return `INSERT OR IGNORE ${body}`;
  if (dialect === 'mysql') return `INSERT IGNORE ${body}`;
  return `INSERT ${body} ON CONFLICT DO NOTHING`;
}

/** `(a = ? AND b = ?) OR (…)` for deleting or selecting rows by a composite key, `rows` times. */
export function keyMatch(dialect: SqlDialect, keyColumns: readonly string[], rows: number): string {
  const one = `(${keyColumns.map((c) => `${quoteIdent(dialect, c)} = ?`).join(' AND ')})`;
  return new Array(rows).fill(one).join(' OR ');
}

interface DriverError {
  code?: unknown;
  errno?: unknown;
  errcode?: unknown;
  message?: unknown;
}

/** True when `err` is a unique or primary key violation on any engine. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as DriverError | null;
  if (e === null || typeof e !== 'object') return false;
  if (e.code === '23505' || e.code === 'ER_DUP_ENTRY' || e.errno === 1062) return true;
  // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_CONSTRAINT_PRIMARYKEY (1555)
  return e.errcode === 2067 || e.errcode === 1555;
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'PROTOCOL_CONNECTION_LOST',
  'ER_SERVER_SHUTDOWN',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '08000',
  '08003',
  '08006',
]);

/**
 * True when `err` means the database could not be reached or the connection broke (retry later, fail over), as
 * opposed to a statement the database refused.
 */
export function isConnectionError(err: unknown): boolean {
  const e = err as DriverError | null;
  if (e === null || typeof e !== 'object') return false;
  if (typeof e.code === 'string' && CONNECTION_CODES.has(e.code)) return true;
  const msg = typeof e.message === 'string' ? e.message : '';
  return /Connection terminated|connection is in closed state|Can't add new command when connection is in closed state|timeout exceeded when trying to connect/i.test(
    msg,
  );
}
