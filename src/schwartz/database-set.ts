/**
 * The databases of one client, as TheSchwartz keeps them: each is known by `md5_hex("<dsn>|<user>")` (the first
 * half of every job handle), tried in random order, and skipped for `retrySeconds` after a failure.
 *
 * ```
 *   DatabaseSet ── shuffledLive() ──▶ [SchwartzDatabase, …]   random order, dead ones left out
 *        │                               │  hash = md5_hex(dsn|user)   tables = prefix + name
 *        └── markDead(db, err) ─────────▶│  deadUntil = now + retrySeconds
 *                                        │  funcmap cache: funcname ⇄ funcid (per database, never invalidated)
 *                                        └─ open(): SqlDatabase, opened on first use
 * ```
 *
 * @module
 */

import { createHash } from 'node:crypto';
import {
  isUniqueViolation,
  type OpenDatabaseOptions,
  openDatabase,
  parseConnectionString,
  redact,
  type SqlDatabase,
  type SqlDialect,
  type SqlExecutor,
} from '../sql/index.ts';
import { asError, publishDatabaseEvent } from './diagnostics.ts';
import { invalidArgument, SchwartzError } from './errors.ts';
import { type SchwartzTables, schwartzTables } from './schema.ts';

/** One database of a client, as TheSchwartz's `databases => [{ dsn, user, pass, prefix }]` lists them. */
export interface SchwartzDatabaseConfig {
  /**
   * Where the database is: a Perl DBI DSN (`dbi:mysql:database=jobs;host=db1`), a URL (`mysql://…`,
   * `postgres://…`, `sqlite:/path`) or a SQLite file. The string as written is part of every job handle: Perl and
   * Node processes that should share handles must spell it the same way.
   */
  dsn: string;
  /** User name (also part of the handle hash, as in TheSchwartz). */
  user?: string;
  password?: string;
  /** Table name prefix (`prefix` in TheSchwartz): letters, digits and `_`. */
  prefix?: string;
  /**
   * An open database to use instead of opening `dsn` (shares the application's pool; `dsn` and `user` still make
   * the handle hash). The client does not close it.
   */
  database?: SqlDatabase;
}

/** `md5_hex("<dsn>|<user>")`: the database part of a job handle, as TheSchwartz's `hash_databases` computes it. */
export function databaseHash(dsn: string, user?: string): string {
  // Perl: join '|', map { $ref->{$_} || '' } qw(dsn user) — so an undefined, empty or "0" user is ''.
  const u = user === undefined || user === '' || user === '0' ? '' : user;
  return createHash('md5').update(`${dsn}|${u}`, 'utf8').digest('hex');
}

/** The current unix time in whole seconds, as Perl's `time()`. */
export function unixTime(): number {
  return Math.floor(Date.now() / 1000);
}

/** One configured database: its connection, its funcmap cache and its dead mark. */
export class SchwartzDatabase {
  /** `md5_hex("<dsn>|<user>")`. */
  readonly hash: string;
  /** The DSN as configured. */
  readonly dsn: string;
  readonly user: string | undefined;
  readonly prefix: string;
  readonly tables: SchwartzTables;
  readonly dialect: SqlDialect;
  readonly #config: SchwartzDatabaseConfig;
  readonly #openOptions: OpenDatabaseOptions;
  #db: SqlDatabase | undefined;
  #opening: Promise<SqlDatabase> | undefined;
  #deadUntil = 0;
  readonly #idByName = new Map<string, number>();
  readonly #nameById = new Map<number, string>();
  #funcmapLoaded = false;

  constructor(config: SchwartzDatabaseConfig, openOptions: OpenDatabaseOptions = {}) {
    if (typeof config?.dsn !== 'string' || config.dsn === '') throw invalidArgument('every database needs a dsn');
    this.dsn = config.dsn;
    this.user = config.user;
    this.prefix = config.prefix ?? '';
    this.tables = schwartzTables(this.prefix);
    this.hash = databaseHash(config.dsn, config.user);
    this.#config = config;
    this.#openOptions = openOptions;
    this.#db = config.database;
    if (config.database !== undefined) {
      this.dialect = config.database.dialect;
    } else {
      try {
        this.dialect = parseConnectionString(config.dsn).dialect;
      } catch (err) {
        throw new SchwartzError('SCHWARTZ_ERR_INVALID_ARGUMENT', `bad dsn "${redact(config.dsn)}"`, { cause: err });
      }
    }
  }

  /** The DSN with any password removed, for logs. */
  get redactedDsn(): string {
    return redact(this.dsn);
  }

  /** The database, opened on first use (a failed open is tried again next time). */
  open(): Promise<SqlDatabase> {
    if (this.#db !== undefined) return Promise.resolve(this.#db);
    this.#opening ??= openDatabase(this.dsn, {
      ...this.#openOptions,
      ...(this.#config.user !== undefined && { user: this.#config.user }),
      ...(this.#config.password !== undefined && { password: this.#config.password }),
    }).then(
      (db) => {
        this.#db = db;
        this.#opening = undefined;
        return db;
      },
      (err: unknown) => {
        this.#opening = undefined;
        throw err;
      },
    );
    return this.#opening;
  }

  /** Closes the connection if the client opened it. */
  async close(): Promise<void> {
    const opening = this.#opening;
    if (opening !== undefined) await opening.catch(() => undefined);
    const db = this.#db;
    if (db === undefined || db === this.#config.database) return;
    this.#db = undefined;
    await db.close();
  }

  /**
   * True while the database is marked dead. As in TheSchwartz, a mark ends once `retrySeconds` have passed, and the
   * database is tried again.
   */
  isDead(now = Date.now()): boolean {
    if (this.#deadUntil === 0) return false;
    if (this.#deadUntil < now) {
      this.#deadUntil = 0;
      publishDatabaseEvent({ type: 'alive', database: this.hash, dsn: this.redactedDsn });
      return false;
    }
    return true;
  }

  /** Skips this database for `retryMs`. */
  markDead(err: unknown, operation: string, retryMs: number): void {
    const error = asError(err);
    publishDatabaseEvent({ type: 'error', database: this.hash, dsn: this.redactedDsn, operation, error });
    this.#deadUntil = Date.now() + retryMs;
    publishDatabaseEvent({ type: 'dead', database: this.hash, dsn: this.redactedDsn, operation, error });
  }

  /**
   * "Now" for comparisons with `run_after` and `grabbed_until`, as TheSchwartz takes it: the server's
   * `UNIX_TIMESTAMP()` on MySQL, the client's clock on SQLite and PostgreSQL (Data::ObjectDriver has no server-time
   * SQL for them).
   */
  async now(exec: SqlExecutor): Promise<number> {
    if (this.dialect !== 'mysql') return unixTime();
    const [row] = await exec.query<{ now: number }>('SELECT UNIX_TIMESTAMP() AS now');
    return Number(row?.now);
  }

  /** SQL for "now" in statements (purges): `UNIX_TIMESTAMP()` on MySQL, a bound client time elsewhere. */
  nowSql(): { sql: string; params: number[] } {
    return this.dialect === 'mysql' ? { sql: 'UNIX_TIMESTAMP()', params: [] } : { sql: '?', params: [unixTime()] };
  }

  /**
   * The funcid of `funcname` in this database, creating the funcmap row on demand as TheSchwartz does (SELECT, else
   * INSERT, and SELECT again when a concurrent INSERT won the unique key). Cached per database for the client's life.
   *
   * With `executor` (a caller's transaction) nothing is cached: the row may be rolled back with it.
   */
  async funcid(
    funcname: string,
    options: { executor?: SqlExecutor; create?: boolean } = {},
  ): Promise<number | undefined> {
    const cached = this.#idByName.get(funcname);
    if (cached !== undefined) return cached;
    const exec = options.executor ?? (await this.open());
    if (options.executor === undefined && !this.#funcmapLoaded) {
      await this.#loadFuncmap(exec);
      const loaded = this.#idByName.get(funcname);
      if (loaded !== undefined) return loaded;
    }
    let id = await this.#selectFuncid(exec, funcname);
    if (id === undefined && options.create !== false) {
      id = await this.#insertFuncid(exec, funcname);
      id ??= await this.#selectFuncid(exec, funcname);
    }
    if (id !== undefined && options.executor === undefined) this.#remember(funcname, id);
    return id;
  }

  /** The funcname of `funcid`, from the cache (reloaded once for an id it does not know). */
  async funcname(funcid: number): Promise<string | undefined> {
    const known = this.#nameById.get(funcid);
    if (known !== undefined) return known;
    await this.#loadFuncmap(await this.open());
    return this.#nameById.get(funcid);
  }

  /** The cached funcid of `funcname`, if any. */
  cachedFuncid(funcname: string): number | undefined {
    return this.#idByName.get(funcname);
  }

  /** The cached funcname of `funcid`, if any. */
  cachedFuncname(funcid: number): string | undefined {
    return this.#nameById.get(funcid);
  }

  #remember(funcname: string, funcid: number): void {
    this.#idByName.set(funcname, funcid);
    this.#nameById.set(funcid, funcname);
  }

  async #loadFuncmap(exec: SqlExecutor): Promise<void> {
    const rows = await exec.query<{ funcid: number; funcname: string }>(
      `SELECT funcid, funcname FROM ${this.tables.funcmap}`,
    );
    for (const r of rows) this.#remember(r.funcname, Number(r.funcid));
    this.#funcmapLoaded = true;
  }

  async #selectFuncid(exec: SqlExecutor, funcname: string): Promise<number | undefined> {
    const [row] = await exec.query<{ funcid: number }>(`SELECT funcid FROM ${this.tables.funcmap} WHERE funcname = ?`, [
      funcname,
    ]);
    return row === undefined ? undefined : Number(row.funcid);
  }

  /** Inserts a funcmap row; undefined when another process inserted the name first. */
  async #insertFuncid(exec: SqlExecutor, funcname: string): Promise<number | undefined> {
    if (this.dialect === 'postgres') {
      // ON CONFLICT instead of catching the violation: an error would abort a surrounding transaction.
      const [row] = await exec.query<{ funcid: number }>(
        `INSERT INTO ${this.tables.funcmap} (funcname) VALUES (?) ON CONFLICT DO NOTHING RETURNING funcid`,
        [funcname],
      );
      return row === undefined ? undefined : Number(row.funcid);
    }
    try {
      const r = await exec.run(`INSERT INTO ${this.tables.funcmap} (funcname) VALUES (?)`, [funcname]);
      return r.lastInsertId === undefined ? undefined : Number(r.lastInsertId);
    } catch (err) {
      if (isUniqueViolation(err)) return undefined;
      throw err;
    }
  }
}

/** Fisher–Yates, in place (List::Util `shuffle`). */
export function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const t = items[i] as T;
    items[i] = items[j] as T;
    items[j] = t;
  }
  return items;
}

/** Every database of a client, by handle hash. */
export class DatabaseSet {
  readonly #list: SchwartzDatabase[];
  readonly #byHash = new Map<string, SchwartzDatabase>();
  readonly #retryMs: number;

  constructor(configs: readonly SchwartzDatabaseConfig[], retrySeconds: number, openOptions: OpenDatabaseOptions) {
    if (!Array.isArray(configs) || configs.length === 0) throw invalidArgument('databases must list at least one');
    this.#list = configs.map((c) => new SchwartzDatabase(c, openOptions));
    for (const db of this.#list) {
      if (this.#byHash.has(db.hash)) {
        throw invalidArgument(`database "${db.redactedDsn}" (user ${db.user ?? "''"}) is listed twice`);
      }
      this.#byHash.set(db.hash, db);
    }
    this.#retryMs = retrySeconds * 1000;
  }

  /** Every database, in configuration order. */
  get all(): readonly SchwartzDatabase[] {
    return this.#list;
  }

  /** The databases not marked dead, in random order (TheSchwartz `shuffled_databases` minus dead ones). */
  shuffledLive(): SchwartzDatabase[] {
    const now = Date.now();
    return shuffle(this.#list.filter((db) => !db.isDead(now)));
  }

  /** The database whose handle hash is `hash`. */
  get(hash: string): SchwartzDatabase {
    const db = this.#byHash.get(hash);
    if (db === undefined) {
      throw new SchwartzError('SCHWARTZ_ERR_UNKNOWN_DATABASE', `no configured database has the hash ${hash}`);
    }
    return db;
  }

  /**
   * The database named by its DSN as configured or its hash; with `name` undefined, the only database (an error
   * when there are several).
   */
  pick(name: string | undefined): SchwartzDatabase {
    if (name === undefined) {
      if (this.#list.length === 1) return this.#list[0] as SchwartzDatabase;
      throw invalidArgument('this client has several databases: say which one with `database`');
    }
    const byHash = this.#byHash.get(name);
    if (byHash !== undefined) return byHash;
    const byDsn = this.#list.filter((db) => db.dsn === name);
    if (byDsn.length === 1) return byDsn[0] as SchwartzDatabase;
    if (byDsn.length > 1) throw invalidArgument(`several databases have the dsn "${redact(name)}": use its hash`);
    throw new SchwartzError('SCHWARTZ_ERR_UNKNOWN_DATABASE', `no configured database is "${redact(name)}"`);
  }

  /** Marks `db` dead for `retrySeconds` after `err` during `operation`. */
  markDead(db: SchwartzDatabase, err: unknown, operation: string): void {
    db.markDead(err, operation, this.#retryMs);
  }

  /** Closes every database the client opened. */
  async close(): Promise<void> {
    await Promise.all(this.#list.map((db) => db.close()));
  }
}
