/**
 * Where a database is: one options shape for the three engines, parsed from the spellings users already have.
 *
 * ```
 *  sqlite:/var/lib/app/queue.db   sqlite:///abs/path.db   sqlite::memory:   /plain/file.db
 *  mysql://user:pass@host:3306/db        mariadb://…
 *  postgres://user:pass@host:5432/db     postgresql://…
 *  dbi:SQLite:dbname=/path.db            (Perl DBI, as TheSchwartz and MogileFS configs have them)
 *  dbi:mysql:database=db;host=h;port=3306
 *  dbi:Pg:dbname=db;host=h;port=5432
 *  host=h port=5432 user=u dbname=db     (libpq conninfo, gearmand's --libpq-conninfo)
 * ```
 *
 * @module
 */

/** The engines `src/sql` speaks. */
export type SqlDialect = 'sqlite' | 'mysql' | 'postgres';

/** A parsed database location. `file` is set for SQLite, the network fields for the others. */
export interface SqlConnectionOptions {
  dialect: SqlDialect;
  /** SQLite database file, or `:memory:`. */
  file?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  /** UNIX socket path (MySQL `mysql_socket`, PostgreSQL `host=/run/postgresql`). */
  socketPath?: string;
}

/** A location string that names no engine we speak, or is malformed. */
export class SqlUrlError extends Error {
  override name = 'SqlUrlError';
}

/**
 * Parses a URL, Perl DBI DSN, libpq conninfo string or plain SQLite file path. `user`/`password` given separately
 * (as DBI does) override what the string holds.
 */
export function parseConnectionString(
  location: string,
  credentials: { user?: string | undefined; password?: string | undefined } = {},
): SqlConnectionOptions {
  const parsed = parseLocation(location.trim());
  if (credentials.user !== undefined) parsed.user = credentials.user;
  if (credentials.password !== undefined) parsed.password = credentials.password;
  return parsed;
}

function parseLocation(s: string): SqlConnectionOptions {
  if (s === '') throw new SqlUrlError('empty database location');
  if (/^dbi:/i.test(s)) return parseDbi(s);
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(s)?.[1]?.toLowerCase();
  if (scheme === 'sqlite' || scheme === 'sqlite3' || scheme === 'file')
    return { dialect: 'sqlite', file: sqliteFile(s) };
  if (scheme === 'mysql' || scheme === 'mariadb') return parseNetworkUrl(s, 'mysql');
  if (scheme === 'postgres' || scheme === 'postgresql') return parseNetworkUrl(s, 'postgres');
  if (scheme !== undefined && scheme.length > 1) throw new SqlUrlError(`unsupported database scheme "${scheme}:"`);
  if (/^\s*\w+\s*=/.test(s)) return parseConninfo(s);
  return { dialect: 'sqlite', file: s };
}

function sqliteFile(s: string): string {
  const rest = s.slice(s.indexOf(':') + 1);
  if (rest === ':memory:' || rest === '//:memory:') return ':memory:';
  // sqlite:///abs → /abs ; sqlite://rel → rel ; sqlite:/abs and sqlite:rel as written.
  const path = rest.startsWith('//') ? rest.slice(2) : rest;
  if (path === '') throw new SqlUrlError(`no SQLite file in "${s}"`);
  return decodeURIComponent(path);
}

function parseNetworkUrl(s: string, dialect: 'mysql' | 'postgres'): SqlConnectionOptions {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new SqlUrlError(`malformed database URL "${redact(s)}"`);
  }
  const out: SqlConnectionOptions = { dialect };
  if (url.hostname !== '') out.host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (url.port !== '') out.port = Number(url.port);
  if (url.username !== '') out.user = decodeURIComponent(url.username);
  if (url.password !== '') out.password = decodeURIComponent(url.password);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (database !== '') out.database = database;
  const socket = url.searchParams.get('socket') ?? url.searchParams.get('host');
  if (socket?.startsWith('/')) out.socketPath = socket;
  return out;
}

/** `dbi:Driver:k=v;k=v` (or `dbi:SQLite:/file`). */
function parseDbi(s: string): SqlConnectionOptions {
  const m = /^dbi:([^:]+):(.*)$/is.exec(s);
  if (m === null) throw new SqlUrlError(`malformed DBI DSN "${redact(s)}"`);
  const driver = (m[1] ?? '').toLowerCase();
  const body = m[2] ?? '';
  const pairs = new Map<string, string>();
  let bare: string | undefined;
  for (const part of body.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) bare ??= part;
    else pairs.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const database = pairs.get('dbname') ?? pairs.get('database') ?? pairs.get('db') ?? bare;
  if (driver === 'sqlite' || driver === 'sqlite3') {
    if (database === undefined || database === '') throw new SqlUrlError(`no SQLite file in "${s}"`);
    return { dialect: 'sqlite', file: database };
  }
  let dialect: SqlDialect;
  if (driver === 'mysql' || driver === 'mariadb') dialect = 'mysql';
  else if (driver === 'pg' || driver === 'pgpp') dialect = 'postgres';
  else throw new SqlUrlError(`unsupported DBI driver "${m[1]}"`);
  const out: SqlConnectionOptions = { dialect };
  if (database !== undefined) out.database = database;
  const host = pairs.get('host') ?? pairs.get('hostname');
  if (host !== undefined) {
    if (host.startsWith('/')) out.socketPath = host;
    else out.host = host;
  }
  const socket = pairs.get('mysql_socket');
  if (socket !== undefined) out.socketPath = socket;
  const port = pairs.get('port');
  if (port !== undefined) out.port = toPort(port, s);
  const user = pairs.get('user') ?? pairs.get('username');
  if (user !== undefined) out.user = user;
  const password = pairs.get('password');
  if (password !== undefined) out.password = password;
  return out;
}

/** libpq's `key=value key='quoted value'` conninfo. */
export function parseConninfo(s: string): SqlConnectionOptions {
  const out: SqlConnectionOptions = { dialect: 'postgres' };
  const re = /\s*(\w+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))/gy;
  let m: RegExpExecArray | null;
  let end = 0;
  // biome-ignore lint/suspicious/noAssignInExpressions: the usual regex scanning loop
  while ((m = re.exec(s)) !== null) {
    end = re.lastIndex;
    const key = (m[1] ?? '').toLowerCase();
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
    if (key === 'host' || key === 'hostaddr') {
      if (value.startsWith('/')) out.socketPath = value;
      else out.host = value;
    } else if (key === 'port') out.port = toPort(value, s);
    else if (key === 'user') out.user = value;
    else if (key === 'password') out.password = value;
    else if (key === 'dbname') out.database = value;
  }
  if (s.slice(end).trim() !== '') throw new SqlUrlError(`malformed conninfo near "${s.slice(end, end + 20)}"`);
  return out;
}

function toPort(v: string, whole: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new SqlUrlError(`bad port "${v}" in "${redact(whole)}"`);
  return n;
}

/** The location with any password replaced by `***`, for error messages and logs. */
export function redact(s: string): string {
  return s.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@').replace(/(password\s*=\s*)('[^']*'|[^;\s]*)/gi, '$1***');
}
