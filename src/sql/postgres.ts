/**
 * PostgreSQL through `pg` (an optional peer dependency, loaded only when a `postgres://` location is opened).
 *
 * `?` placeholders are renumbered to `$n` once per distinct statement text. BIGINT comes back as `number` (or `bigint`
 * past 2^53) instead of pg's default string, so rows look the same as on the other engines; the parser is set per
 * pool, never on pg's global type table.
 *
 * @module
 */

import type { SqlConnectionOptions } from './connection-url.ts';
import {
  normalizeValue,
  numberPlaceholders,
  type SqlDatabase,
  type SqlExecutor,
  type SqlRow,
  type SqlRunResult,
  type SqlValue,
} from './database.ts';
import { loadPeer } from './peer.ts';

/** Options of {@link openPostgres}. */
export interface PostgresPoolOptions {
  /** Pool size (default 10). */
  connections?: number;
  /** Connect timeout (ms, default 10000). */
  connectTimeout?: number;
}

interface PgResult {
  rows: Record<string, unknown>[];
  rowCount: number | null;
}
interface PgQueryable {
  query(sql: string, values?: unknown[]): Promise<PgResult>;
}
interface PgClient extends PgQueryable {
  release(destroy?: boolean | Error): void;
}
interface PgPool extends PgQueryable {
  connect(): Promise<PgClient>;
  end(): Promise<void>;
  on(event: 'error', listener: (err: Error) => void): void;
}
interface PgModule {
  Pool: new (options: Record<string, unknown>) => PgPool;
  types: { getTypeParser(oid: number, format?: string): (value: string) => unknown };
}

const INT8_OID = 20;
const placeholderCache = new Map<string, string>();

function toPg(sql: string): string {
  let out = placeholderCache.get(sql);
  if (out === undefined) {
    out = numberPlaceholders(sql);
    if (placeholderCache.size >= 1024) placeholderCache.clear();
    placeholderCache.set(sql, out);
  }
  return out;
}

function params(values: readonly SqlValue[]): unknown[] {
  return values.map((v) => {
    if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v);
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}

class PostgresExecutor implements SqlExecutor {
  readonly dialect = 'postgres' as const;
  readonly #conn: PgQueryable;

  constructor(conn: PgQueryable) {
    this.#conn = conn;
  }

  async query<R extends SqlRow = SqlRow>(sql: string, values: readonly SqlValue[] = []): Promise<R[]> {
    const result = await this.#conn.query(toPg(sql), params(values));
    return result.rows as R[];
  }

  async run(sql: string, values: readonly SqlValue[] = []): Promise<SqlRunResult> {
    const result = await this.#conn.query(toPg(sql), params(values));
    return { changes: result.rowCount ?? 0, lastInsertId: undefined };
  }
}

class PostgresDatabase extends PostgresExecutor implements SqlDatabase {
  readonly #pool: PgPool;

  constructor(pool: PgPool) {
    super(pool);
    this.#pool = pool;
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await fn(new PostgresExecutor(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr as Error; // connection lost: the server rolls back on its own
      }
      throw err;
    } finally {
      client.release(broken);
    }
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}

/** Opens a `pg` pool. */
export async function openPostgres(
  target: SqlConnectionOptions,
  options: PostgresPoolOptions = {},
): Promise<SqlDatabase> {
  const pg = await loadPeer<PgModule>('pg', 'pg', 'PostgreSQL');
  const pool = new pg.Pool({
    // Unset fields fall back to pg's defaults and the PG* environment variables, as libpq's do.
    host: target.socketPath ?? target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    max: options.connections ?? 10,
    connectionTimeoutMillis: options.connectTimeout ?? 10_000,
    types: {
      getTypeParser: (oid: number, format?: string) =>
        oid === INT8_OID ? (v: string) => normalizeValue(BigInt(v)) : pg.types.getTypeParser(oid, format),
    },
  });
  // An idle pooled connection that the server drops emits 'error' on the pool; unhandled, that would end the
  // process. The next query simply gets a fresh connection.
  pool.on('error', () => {});
  return new PostgresDatabase(pool);
}
