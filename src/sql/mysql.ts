/**
 * MySQL / MariaDB through `mysql2` (an optional peer dependency, loaded only when a `mysql://` location is opened).
 *
 * Statements go through `pool.query` (client-side escaping): no server-side prepared statement per distinct SQL text,
 * which matters for the multi-row statements group commit builds.
 *
 * @module
 */

import type { SqlConnectionOptions } from './connection-url.ts';
import {
  normalizeValue,
  type SqlDatabase,
  type SqlExecutor,
  type SqlRow,
  type SqlRunResult,
  type SqlValue,
} from './database.ts';
import { loadPeer } from './peer.ts';

/** Options of {@link openMysql}. */
export interface MysqlPoolOptions {
  /** Pool size (default 10). */
  connections?: number;
  /** Connect timeout (ms, default 10000). */
  connectTimeout?: number;
}

interface Mysql2Result {
  affectedRows?: number;
  insertId?: number | string;
}
interface Mysql2Queryable {
  query(sql: string, values?: unknown[]): Promise<[unknown, unknown]>;
}
interface Mysql2Connection extends Mysql2Queryable {
  beginTransaction(): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  release(): void;
  destroy(): void;
}
interface Mysql2Pool extends Mysql2Queryable {
  getConnection(): Promise<Mysql2Connection>;
  end(): Promise<void>;
}
interface Mysql2Module {
  createPool(options: Record<string, unknown>): Mysql2Pool;
}

function params(values: readonly SqlValue[]): unknown[] {
  return values.map((v) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v) : v));
}

class MysqlExecutor implements SqlExecutor {
  readonly dialect = 'mysql' as const;
  readonly #conn: Mysql2Queryable;

  constructor(conn: Mysql2Queryable) {
    this.#conn = conn;
  }

  async query<R extends SqlRow = SqlRow>(sql: string, values: readonly SqlValue[] = []): Promise<R[]> {
    const [rows] = await this.#conn.query(sql, params(values));
    if (!Array.isArray(rows)) return [];
    return rows.map((row: Record<string, unknown>) => {
      const out: SqlRow = {};
      for (const k in row) out[k] = normalizeValue(row[k]);
      return out as R;
    });
  }

  async run(sql: string, values: readonly SqlValue[] = []): Promise<SqlRunResult> {
    const [result] = (await this.#conn.query(sql, params(values))) as [Mysql2Result, unknown];
    const id = result.insertId;
    return {
      changes: result.affectedRows ?? 0,
      lastInsertId: id === undefined || id === 0 ? undefined : typeof id === 'string' ? BigInt(id) : id,
    };
  }
}

class MysqlDatabase extends MysqlExecutor implements SqlDatabase {
  readonly #pool: Mysql2Pool;

  constructor(pool: Mysql2Pool) {
    super(pool);
    this.#pool = pool;
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const conn = await this.#pool.getConnection();
    let broken = false;
    try {
      await conn.beginTransaction();
      const result = await fn(new MysqlExecutor(conn));
      await conn.commit();
      return result;
    } catch (err) {
      try {
        await conn.rollback();
      } catch {
        broken = true; // the connection is gone; the server rolls back on its own
      }
      throw err;
    } finally {
      if (broken) conn.destroy();
      else conn.release();
    }
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}

/** Opens a `mysql2` pool (MySQL or MariaDB). */
export async function openMysql(target: SqlConnectionOptions, options: MysqlPoolOptions = {}): Promise<SqlDatabase> {
  const mysql = await loadPeer<Mysql2Module>('mysql2/promise', 'mysql2', 'MySQL/MariaDB');
  const pool = mysql.createPool({
    host: target.host ?? 'localhost',
    port: target.port ?? 3306,
    user: target.user ?? 'root',
    password: target.password,
    database: target.database,
    socketPath: target.socketPath,
    connectionLimit: options.connections ?? 10,
    connectTimeout: options.connectTimeout ?? 10_000,
    supportBigNumbers: true,
    // BIGINT as number, or bigint past 2^53 (mysql2 would give a string), the same as the other engines.
    typeCast: (field: { type: string; string(): string | null }, next: () => unknown) => {
      if (field.type !== 'LONGLONG') return next();
      const v = field.string();
      return v === null ? null : normalizeValue(BigInt(v));
    },
    // DATETIME etc. as strings: the schemas we serve store unix times in integer columns.
    dateStrings: true,
    charset: 'utf8mb4',
  });
  return new MysqlDatabase(pool);
}
