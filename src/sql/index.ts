/**
 * One thin adapter over `node:sqlite` (embedded default), `mysql2` and `pg` (optional peer dependencies, loaded only
 * when used): `?` placeholders everywhere, rows as plain objects, transactions, and the dialect differences in
 * `dialect.ts`. Used by gearman's durable queues, TheSchwartz and the MogileFS tracker.
 *
 * @module
 * @example
 * import { openDatabase } from 'sharenothing/sql';
 * const db = await openDatabase('sqlite:/var/lib/app/queue.db'); // or mysql://…, postgres://…, dbi:Pg:…
 * await db.run('CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB)');
 * await db.transaction(async (tx) => tx.run('INSERT INTO kv VALUES (?, ?)', ['a', Buffer.from('1')]));
 * const rows = await db.query<{ k: string; v: Buffer }>('SELECT k, v FROM kv');
 * await db.close();
 */

import { parseConnectionString, type SqlConnectionOptions } from './connection-url.ts';
import type { SqlDatabase } from './database.ts';
import { openMysql } from './mysql.ts';
import { openPostgres } from './postgres.ts';
import { openSqlite, type SqliteOptions } from './sqlite.ts';

export {
  parseConnectionString,
  parseConninfo,
  redact,
  type SqlConnectionOptions,
  type SqlDialect,
  SqlUrlError,
} from './connection-url.ts';
export {
  AsyncMutex,
  numberPlaceholders,
  type SqlDatabase,
  type SqlExecutor,
  type SqlRow,
  type SqlRunResult,
  type SqlValue,
} from './database.ts';
export {
  insertIgnoringDuplicates,
  isConnectionError,
  isUniqueViolation,
  keyMatch,
  quoteIdent,
  replaceRows,
  valuesList,
} from './dialect.ts';
export { SqlDriverMissingError } from './peer.ts';
export type { SqliteOptions } from './sqlite.ts';

/** Options of {@link openDatabase}. */
export interface OpenDatabaseOptions extends SqliteOptions {
  /** Credentials given apart from the location (as Perl DBI takes them). */
  user?: string;
  password?: string;
  /** Pool size for MySQL/PostgreSQL (default 10). */
  connections?: number;
  /** Connect timeout for MySQL/PostgreSQL (ms, default 10000). */
  connectTimeout?: number;
}

/**
 * Opens a database from a URL, DBI DSN, libpq conninfo or SQLite path (see `connection-url.ts`), or from parsed
 * options. MySQL/PostgreSQL pools connect lazily: a wrong address fails the first statement, not this call.
 */
export async function openDatabase(
  location: string | SqlConnectionOptions,
  options: OpenDatabaseOptions = {},
): Promise<SqlDatabase> {
  const target =
    typeof location === 'string'
      ? parseConnectionString(location, { user: options.user, password: options.password })
      : location;
  const pool = {
    ...(options.connections !== undefined && { connections: options.connections }),
    ...(options.connectTimeout !== undefined && { connectTimeout: options.connectTimeout }),
  };
  switch (target.dialect) {
    case 'sqlite':
      return openSqlite(target.file ?? ':memory:', options);
    case 'mysql':
      return openMysql(target, pool);
    case 'postgres':
      return openPostgres(target, pool);
  }
}
