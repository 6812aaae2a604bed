/**
 * Throw-away databases for tests: a temp SQLite file always, and a uniquely named MySQL/MariaDB or PostgreSQL database
 * when `SHARENOTHING_TEST_MYSQL` / `SHARENOTHING_TEST_POSTGRES` name a server (`.ci/run` sets both). Each is dropped
 * by `drop()`; an unset variable skips that engine with a visible message.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type SqlDialect } from '../../src/sql/index.ts';

/** A database created for one test file. */
export interface TestDatabase {
  dialect: SqlDialect;
  /** Location to pass to `openDatabase` (or to a CLI flag). */
  location: string;
  /** Database name (MySQL/PostgreSQL) or file (SQLite). */
  name: string;
  /** Removes the database and everything in it. */
  drop(): Promise<void>;
}

/** Environment variable naming each server engine's test instance. */
export const TEST_DATABASE_ENV = {
  mysql: 'SHARENOTHING_TEST_MYSQL',
  postgres: 'SHARENOTHING_TEST_POSTGRES',
} as const;

/** The engines to run a test against: sqlite always, the others when their variable is set. */
export function testDialects(): SqlDialect[] {
  const out: SqlDialect[] = ['sqlite'];
  if (process.env[TEST_DATABASE_ENV.mysql]) out.push('mysql');
  if (process.env[TEST_DATABASE_ENV.postgres]) out.push('postgres');
  return out;
}

/** Why an engine is skipped (for `t.skip`/`{ skip }`), or undefined when it runs. */
export function skipReason(dialect: SqlDialect): string | undefined {
  if (dialect === 'sqlite') return undefined;
  const env = TEST_DATABASE_ENV[dialect];
  return process.env[env] ? undefined : `${env} is not set: no ${dialect} server to test against`;
}

/** Every engine with its skip reason, for `for (const [dialect, skip] of allDialects()) describe(..., { skip })`. */
export function allDialects(): [SqlDialect, string | undefined][] {
  return (['sqlite', 'mysql', 'postgres'] as const).map((d) => [d, skipReason(d)]);
}

/** Creates an empty database (or SQLite file) named `sn_<prefix>_<random>`. */
export async function createTestDatabase(dialect: SqlDialect, prefix = 'test'): Promise<TestDatabase> {
  const name = `sn_${prefix}_${randomBytes(5).toString('hex')}`.toLowerCase();
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), `${name}-`));
    const file = join(dir, 'db.sqlite');
    return {
      dialect,
      location: `sqlite:${file}`,
      name: file,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const server = process.env[TEST_DATABASE_ENV[dialect]];
  if (!server) throw new Error(`${TEST_DATABASE_ENV[dialect]} is not set`);
  const admin = await openDatabase(server, { connections: 1 });
  try {
    await admin.run(`CREATE DATABASE ${name}`);
  } finally {
    await admin.close();
  }
  const url = new URL(server);
  url.pathname = `/${name}`;
  return {
    dialect,
    location: url.toString(),
    name,
    drop: async () => {
      const a = await openDatabase(server, { connections: 1 });
      try {
        await a.run(
          dialect === 'postgres' ? `DROP DATABASE IF EXISTS ${name} WITH (FORCE)` : `DROP DATABASE IF EXISTS ${name}`,
        );
      } finally {
        await a.close();
      }
    },
  };
}
