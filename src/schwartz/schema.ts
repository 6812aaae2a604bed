/**
 * TheSchwartz 1.12's tables, per engine, with its per-database table prefix: the DDL of its `doc/schema.sql`
 * (MySQL/MariaDB, InnoDB as its test-suite creates it), `doc/schema-postgres.sql` and `t/schema-sqlite.sql`, so Perl
 * workers and ours share one queue.
 *
 * ```
 *  funcmap     funcid ⇄ funcname (the Perl worker class name), one row per function, created on demand
 *  job         jobid, funcid, arg (bytes), uniqkey, insert_time, run_after, grabbed_until, priority, coalesce
 *  error       one row per failure: error_time, jobid, message, funcid (failures = rows for the jobid)
 *  exitstatus  jobid, funcid, status, completion_time, delete_after (only with keep_exit_status_for)
 *  note        in the documented schema, unused by TheSchwartz 1.12 (created for the same table set everywhere)
 * ```
 *
 * Differences, all additive: `IF NOT EXISTS` everywhere; on PostgreSQL the index names carry the prefix too (its
 * index names share one namespace per schema, so two prefixes in one database would collide otherwise); on SQLite
 * the `note` table and the MySQL schema's secondary indexes are added (upstream's test schema has neither, and a
 * queue needs the `(funcid, run_after)` index).
 *
 * @module
 */

import type { SqlDialect, SqlExecutor } from '../sql/index.ts';
import { isUniqueViolation } from '../sql/index.ts';
import { invalidArgument } from './errors.ts';

/** The table names for one prefix (TheSchwartz joins prefix and name with nothing between). */
export interface SchwartzTables {
  readonly funcmap: string;
  readonly job: string;
  readonly note: string;
  readonly error: string;
  readonly exitstatus: string;
}

/**
 * Table names for `prefix`. Names stay unquoted in SQL, as Data::ObjectDriver writes them (PostgreSQL folds them to
 * lower case on both sides), so the prefix is limited to letters, digits and `_`.
 */
export function schwartzTables(prefix = ''): SchwartzTables {
  if (!/^[A-Za-z0-9_]*$/.test(prefix)) {
    throw invalidArgument(`table prefix "${prefix}" may hold only letters, digits and "_"`);
  }
  return {
    funcmap: `${prefix}funcmap`,
    job: `${prefix}job`,
    note: `${prefix}note`,
    error: `${prefix}error`,
    exitstatus: `${prefix}exitstatus`,
  };
}

function mysqlSchema(t: SchwartzTables): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${t.funcmap} (
        funcid         INT UNSIGNED PRIMARY KEY NOT NULL AUTO_INCREMENT,
        funcname       VARCHAR(255) NOT NULL,
        UNIQUE(funcname)
) ENGINE=InnoDB`,
    `CREATE TABLE IF NOT EXISTS ${t.job} (
        jobid           BIGINT UNSIGNED PRIMARY KEY NOT NULL AUTO_INCREMENT,
        funcid          INT UNSIGNED NOT NULL,
        arg             MEDIUMBLOB,
        uniqkey         VARCHAR(255) NULL,
        insert_time     INTEGER UNSIGNED,
        run_after       INTEGER UNSIGNED NOT NULL,
        grabbed_until   INTEGER UNSIGNED NOT NULL,
        priority        SMALLINT UNSIGNED,
        coalesce        VARCHAR(255),
        INDEX (funcid, run_after),
        UNIQUE(funcid, uniqkey),
        INDEX (funcid, coalesce)
) ENGINE=InnoDB`,
    `CREATE TABLE IF NOT EXISTS ${t.note} (
        jobid           BIGINT UNSIGNED NOT NULL,
        notekey         VARCHAR(255),
        PRIMARY KEY (jobid, notekey),
        value           MEDIUMBLOB
) ENGINE=InnoDB`,
    `CREATE TABLE IF NOT EXISTS ${t.error} (
        error_time      INTEGER UNSIGNED NOT NULL,
        jobid           BIGINT UNSIGNED NOT NULL,
        message         VARCHAR(255) NOT NULL,
        funcid          INT UNSIGNED NOT NULL DEFAULT 0,
        INDEX (funcid, error_time),
        INDEX (error_time),
        INDEX (jobid)
) ENGINE=InnoDB`,
    `CREATE TABLE IF NOT EXISTS ${t.exitstatus} (
        jobid           BIGINT UNSIGNED PRIMARY KEY NOT NULL,
        funcid          INT UNSIGNED NOT NULL DEFAULT 0,
        status          SMALLINT UNSIGNED,
        completion_time INTEGER UNSIGNED,
        delete_after    INTEGER UNSIGNED,
        INDEX (funcid),
        INDEX (delete_after)
) ENGINE=InnoDB`,
  ];
}

function postgresSchema(t: SchwartzTables, prefix: string): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${t.funcmap} (
        funcid SERIAL,
        funcname       VARCHAR(255) NOT NULL,
        UNIQUE(funcname)
)`,
    `CREATE TABLE IF NOT EXISTS ${t.job} (
        jobid           BIGSERIAL,
        funcid          INT NOT NULL,
        arg             BYTEA,
        uniqkey         VARCHAR(255) NULL,
        insert_time     INTEGER,
        run_after       INTEGER NOT NULL,
        grabbed_until   INTEGER NOT NULL,
        priority        SMALLINT,
        coalesce        VARCHAR(255)
)`,
    `CREATE UNIQUE INDEX IF NOT EXISTS ${prefix}job_funcid_uniqkey ON ${t.job} (funcid, uniqkey)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}job_funcid_runafter ON ${t.job} (funcid, run_after)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}job_funcid_coalesce ON ${t.job} (funcid, coalesce)`,
    `CREATE TABLE IF NOT EXISTS ${t.note} (
        jobid           BIGINT NOT NULL,
        notekey         VARCHAR(255),
        PRIMARY KEY (jobid, notekey),
        value           BYTEA
)`,
    `CREATE TABLE IF NOT EXISTS ${t.error} (
        error_time      INTEGER NOT NULL,
        jobid           BIGINT NOT NULL,
        message         TEXT NOT NULL,
        funcid          INT NOT NULL DEFAULT 0
)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}error_funcid_errortime ON ${t.error} (funcid, error_time)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}error_time ON ${t.error} (error_time)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}error_jobid ON ${t.error} (jobid)`,
    `CREATE TABLE IF NOT EXISTS ${t.exitstatus} (
        jobid           BIGINT PRIMARY KEY NOT NULL,
        funcid          INT NOT NULL DEFAULT 0,
        status          SMALLINT,
        completion_time INTEGER,
        delete_after    INTEGER
)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}exitstatus_funcid ON ${t.exitstatus} (funcid)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}exitstatus_deleteafter ON ${t.exitstatus} (delete_after)`,
  ];
}

function sqliteSchema(t: SchwartzTables, prefix: string): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${t.funcmap} (
        funcid         INTEGER PRIMARY KEY AUTOINCREMENT,
        funcname       VARCHAR(255) NOT NULL,
        UNIQUE(funcname)
)`,
    // AUTOINCREMENT matters: error rows outlive their job and are counted by jobid, so ids must never be reused.
    `CREATE TABLE IF NOT EXISTS ${t.job} (
        jobid           INTEGER PRIMARY KEY AUTOINCREMENT,
        funcid          INTEGER UNSIGNED NOT NULL,
        arg             MEDIUMBLOB,
        uniqkey         VARCHAR(255) NULL,
        insert_time     INTEGER UNSIGNED,
        run_after       INTEGER UNSIGNED NOT NULL,
        grabbed_until   INTEGER UNSIGNED NOT NULL,
        priority        SMALLINT UNSIGNED,
        coalesce        VARCHAR(255),
        UNIQUE(funcid,uniqkey)
)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}job_funcid_runafter ON ${t.job} (funcid, run_after)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}job_funcid_coalesce ON ${t.job} (funcid, coalesce)`,
    `CREATE TABLE IF NOT EXISTS ${t.note} (
        jobid           INTEGER NOT NULL,
        notekey         VARCHAR(255),
        value           MEDIUMBLOB,
        PRIMARY KEY (jobid, notekey)
)`,
    `CREATE TABLE IF NOT EXISTS ${t.error} (
        error_time      INTEGER UNSIGNED NOT NULL,
        jobid           INTEGER NOT NULL,
        message         VARCHAR(255) NOT NULL,
        funcid          INT UNSIGNED NOT NULL DEFAULT 0
)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}error_funcid_errortime ON ${t.error} (funcid, error_time)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}error_time ON ${t.error} (error_time)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}error_jobid ON ${t.error} (jobid)`,
    `CREATE TABLE IF NOT EXISTS ${t.exitstatus} (
        jobid           INTEGER PRIMARY KEY NOT NULL,
        funcid          INT UNSIGNED NOT NULL DEFAULT 0,
        status          SMALLINT UNSIGNED,
        completion_time INTEGER UNSIGNED,
        delete_after    INTEGER UNSIGNED
)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}exitstatus_funcid ON ${t.exitstatus} (funcid)`,
    `CREATE INDEX IF NOT EXISTS ${prefix}exitstatus_deleteafter ON ${t.exitstatus} (delete_after)`,
  ];
}

/** The `CREATE` statements of TheSchwartz's tables for `dialect`, with `prefix` (for printing or migrations). */
export function schemaStatements(dialect: SqlDialect, prefix = ''): string[] {
  const tables = schwartzTables(prefix);
  switch (dialect) {
    case 'mysql':
      return mysqlSchema(tables);
    case 'postgres':
      return postgresSchema(tables, prefix);
    case 'sqlite':
      return sqliteSchema(tables, prefix);
  }
}

/**
 * Creates TheSchwartz's tables (and indexes) that do not exist yet; existing tables, whoever created them, are left
 * alone. Safe to run from several processes at once.
 *
 * @example
 * const db = await openDatabase('dbi:mysql:database=jobs;host=db1');
 * await ensureSchema(db, 'myapp_');
 */
export async function ensureSchema(db: SqlExecutor, prefix = ''): Promise<void> {
  for (const sql of schemaStatements(db.dialect, prefix)) {
    try {
      await db.run(sql);
    } catch (err) {
      // PostgreSQL's IF NOT EXISTS races with a concurrent creator and then reports the catalog's unique key.
      if (!isUniqueViolation(err)) throw err;
    }
  }
}
