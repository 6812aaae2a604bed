/**
 * Job server settings and gearmand's command line (`gearmand --help` of 1.1.20), parsed the way boost's
 * program_options does: `--port 4730`, `--port=4730`, `-p 4730`, `-p4730`.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { DEFAULT_JOB_BUCKETS } from './gearmand-hash.ts';
import { QUEUE_TYPES } from './queue-store.ts';

/** gearmand's verbosity names (`--verbose`), least verbose first. */
export const VERBOSE_LEVELS = ['FATAL', 'ALERT', 'CRITICAL', 'ERROR', 'WARNING', 'NOTICE', 'INFO', 'DEBUG'] as const;

/** A `--verbose` level. */
export type VerboseLevel = (typeof VERBOSE_LEVELS)[number];

/** Everything a job server can be told; defaults are gearmand 1.1.20's unless noted. */
export interface GearmanSettings {
  /** `-p` TCP port (default 4730; 0 picks a free one). */
  port: number;
  /** `-L` addresses to listen on (default: every interface). */
  listen: string[];
  /** `-b` listen backlog (default 32). */
  backlog: number;
  /**
   * `-t` I/O threads. Only 0 and 1 are accepted (default 1, where gearmand's is 4): job routing is one thread by
   * design, as in gearmand (its "processing thread"), and moving packets between Node worker threads would cost more
   * than parsing them. `-t 0` and `-t 1` both mean "everything in the one thread".
   */
  threads: number;
  /** `-q` persistent queue: `builtin` (memory only), `libsqlite3`, `MySQL` or `Postgres` (canonical spelling). */
  queueType: QueueType;
  /** The durable queues' options, with gearmand's names and defaults. */
  queue: QueueOptions;
  /** `-j` attempts before a job is dropped (0 = no limit). */
  jobRetries: number;
  /** `-w` workers woken per new job (0 = all). */
  workerWakeup: number;
  /** `-R` rotate a worker's functions after each job. */
  roundRobin: boolean;
  /** `--exceptions` forward WORK_EXCEPTION to every client without OPTION_REQ. */
  exceptions: boolean;
  /** `--job-handle-prefix` (default `H:<hostname>`); handles are `<prefix>:<n>`. */
  jobHandlePrefix: string;
  /** `--hashtable-buckets` (default 991): only the order of `show jobs` / `show unique jobs` depends on it. */
  hashtableBuckets: number;
  /** `--keepalive`. */
  keepalive: boolean;
  /** `--keepalive-idle` seconds (-1 = system default). */
  keepaliveIdle: number;
  /** `--verbose` (default ERROR). */
  verbose: VerboseLevel;
  /** `-l` log file: a path, `stderr` (the default here) or `none`. */
  logFile: string;
  /** `-P` pid file, written on start and removed on exit (none by default). */
  pidFile: string | undefined;
  /** `-u` user to switch to once the port is bound. */
  user: string | undefined;
  /** Accept the admin `shutdown [graceful]` command (gearmand removed it in 1.1.15; not a gearmand flag). */
  enableShutdown: boolean;
  /** Largest packet accepted, in bytes (default 64 MiB; gearmand has no limit; not a gearmand flag). */
  maxPacketSize: number;
  /**
   * Estimated bytes all jobs may hold before new ones get `ERROR MEMORY_ALLOCATION_FAILURE` (`--max-job-memory`
   * in MiB; default 60% of the V8 heap limit; 0 = none; not a gearmand flag, gearmand grows until malloc fails).
   */
  maxJobMemory: number;
  /**
   * Unsent output a connection may pile up before it is closed as not reading (default 64 MiB; not a gearmand
   * flag). Replies to a connection's own requests never get there: its input waits while its output is blocked.
   */
  maxOutputBuffer: number;
  /** Opt-in admin listener (`--admin host:port`) for /metrics and /healthz; not a gearmand flag. */
  admin: { host: string; port: number } | undefined;
  /** `--check-args`: validate the command line, then exit. */
  checkArgs: boolean;
}

/** The `-q` values served here. */
export type QueueType = 'builtin' | 'libsqlite3' | 'MySQL' | 'Postgres';

/** Options of the durable queues (gearmand's `--libsqlite3-*`, `--mysql-*`, `--libpq-*`). */
export interface QueueOptions {
  /** `--libsqlite3-db` (required with `-q libsqlite3`). */
  libsqlite3Db: string | undefined;
  /** `--libsqlite3-table` (default `gearman_queue`). */
  libsqlite3Table: string;
  /** `--mysql-host` (default `localhost`). */
  mysqlHost: string;
  /** `--mysql-port` (default 3306). */
  mysqlPort: number;
  mysqlUser: string | undefined;
  mysqlPassword: string | undefined;
  /** `--mysql-db` (required with `-q MySQL`, as gearmand fails without one). */
  mysqlDb: string | undefined;
  /** `--mysql-table` (default `gearman_queue`). */
  mysqlTable: string;
  /** `--libpq-conninfo` (default empty: libpq's environment variables and defaults). */
  libpqConninfo: string;
  /** `--libpq-table` (default `queue`). */
  libpqTable: string;
}

/** Returns the defaults. */
export function defaultGearmanSettings(): GearmanSettings {
  return {
    port: 4730,
    listen: [],
    backlog: 32,
    threads: 1,
    queueType: 'builtin',
    queue: {
      libsqlite3Db: undefined,
      libsqlite3Table: 'gearman_queue',
      mysqlHost: 'localhost',
      mysqlPort: 3306,
      mysqlUser: undefined,
      mysqlPassword: undefined,
      mysqlDb: undefined,
      mysqlTable: 'gearman_queue',
      libpqConninfo: '',
      libpqTable: 'queue',
    },
    jobRetries: 0,
    workerWakeup: 0,
    roundRobin: false,
    exceptions: false,
    jobHandlePrefix: `H:${hostname()}`,
    hashtableBuckets: DEFAULT_JOB_BUCKETS,
    keepalive: false,
    keepaliveIdle: -1,
    verbose: 'ERROR',
    logFile: 'stderr',
    pidFile: undefined,
    user: undefined,
    enableShutdown: false,
    maxPacketSize: 64 * 1024 * 1024,
    maxJobMemory: Math.floor(getHeapStatistics().heap_size_limit * 0.6),
    maxOutputBuffer: 64 * 1024 * 1024,
    admin: undefined,
    checkArgs: false,
  };
}

/** A bad flag or value: the CLI prints the message and exits 64 (EX_USAGE). */
export class GearmanSettingsError extends Error {
  readonly code = 'GEARMAN_ERR_BAD_FLAG';
}

const SHORT: Record<string, string> = {
  '-b': '--backlog',
  '-d': '--daemon',
  '-f': '--file-descriptors',
  '-h': '--help',
  '-j': '--job-retries',
  '-l': '--log-file',
  '-L': '--listen',
  '-P': '--pid-file',
  '-r': '--protocol',
  '-R': '--round-robin',
  '-q': '--queue-type',
  '-t': '--threads',
  '-u': '--user',
  '-V': '--version',
  '-w': '--worker-wakeup',
  '-p': '--port',
};

/** Switches (no value). */
const SWITCHES = new Set([
  '--daemon',
  '--exceptions',
  '--help',
  '--keepalive',
  '--round-robin',
  '--syslog',
  '--coredump',
  '--version',
  '--check-args',
  '--ssl',
  '--store-queue-on-shutdown',
  '--enable-shutdown',
]);

/** gearmand options that make no sense here or are not there yet: refused with the reason, never ignored. */
const UNSUPPORTED: Record<string, string> = {
  '--daemon': 'daemon mode (-d) is not supported; run under a supervisor (systemd, runit)',
  '--file-descriptors': 'setting the descriptor limit (-f) is not supported; use `ulimit -n` or systemd LimitNOFILE',
  '--protocol': 'protocol modules (-r, the HTTP protocol) are not supported',
  '--http-port': 'the HTTP protocol module is not supported',
  '--syslog': 'syslog is not supported; logs are NDJSON on stderr or in the -l file',
  '--coredump': '--coredump is not supported (Node writes core files with --abort-on-uncaught-exception)',
  '--keepalive-interval': '--keepalive-interval is not supported (Node sets only the idle time)',
  '--keepalive-count': '--keepalive-count is not supported (Node sets only the idle time)',
  '--ssl': 'TLS (--ssl) is not supported by the job server yet',
  '--ssl-ca-file': 'TLS (--ssl-ca-file) is not supported by the job server yet',
  '--ssl-certificate': 'TLS (--ssl-certificate) is not supported by the job server yet',
  '--ssl-key': 'TLS (--ssl-key) is not supported by the job server yet',
};

/** Options of the persistent queues gearmand has and we do not serve. */
const QUEUE_OPTIONS: Record<string, string> = {
  '--redis-server': 'redis',
  '--redis-port': 'redis',
  '--redis-password': 'redis',
  '--redis-prefix': 'redis',
  '--libmemcached-servers': 'libmemcached',
  '--libmemcached-prefix': 'libmemcached',
};

function intValue(value: string, flag: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(value)) throw new GearmanSettingsError(`${flag}: '${value}' is not a number`);
  const n = Number(value);
  if (n < min || n > max) throw new GearmanSettingsError(`${flag}: ${value} is out of range (${min}..${max})`);
  return n;
}

/** What the command line asked for besides settings. */
export interface GearmandCommandLine {
  settings: GearmanSettings;
  help: boolean;
  version: boolean;
}

/**
 * Parses gearmand's command line. Unknown, unsupported or invalid options throw a {@link GearmanSettingsError}
 * with a clear message; nothing is silently ignored.
 */
export function parseGearmandArgs(argv: readonly string[]): GearmandCommandLine {
  const s = defaultGearmanSettings();
  const out: GearmandCommandLine = { settings: s, help: false, version: false };
  const args = [...argv];
  for (let i = 0; i < args.length; i++) {
    const raw = args[i]!;
    let name: string;
    let inline: string | undefined;
    if (raw.startsWith('--')) {
      const eq = raw.indexOf('=');
      name = eq > 0 ? raw.slice(0, eq) : raw;
      inline = eq > 0 ? raw.slice(eq + 1) : undefined;
    } else if (raw.startsWith('-') && raw.length >= 2) {
      const flag = raw.slice(0, 2);
      if (flag === '-v') throw new GearmanSettingsError('Option -v has been deprecated, please use --verbose');
      const long = SHORT[flag];
      if (long === undefined) throw new GearmanSettingsError(`unrecognised option '${raw}'`);
      name = long;
      if (raw.length > 2) inline = raw.slice(2);
    } else {
      throw new GearmanSettingsError(`unexpected argument '${raw}'`);
    }
    if (SWITCHES.has(name) && inline !== undefined) {
      throw new GearmanSettingsError(`option '${name}' does not take any arguments`);
    }
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = args[++i];
      if (next === undefined) throw new GearmanSettingsError(`the required argument for option '${name}' is missing`);
      return next;
    };
    const queue = QUEUE_OPTIONS[name];
    if (queue !== undefined) {
      throw new GearmanSettingsError(
        `${name}: the ${queue} queue is not supported (durable queues here: libsqlite3, MySQL, Postgres)`,
      );
    }
    const unsupported = UNSUPPORTED[name];
    if (unsupported !== undefined) throw new GearmanSettingsError(unsupported);
    switch (name) {
      case '--help':
        out.help = true;
        break;
      case '--version':
        out.version = true;
        break;
      case '--check-args':
        s.checkArgs = true;
        break;
      case '--port':
        s.port = intValue(value(), '--port', 0, 65535);
        break;
      case '--listen':
        s.listen.push(value());
        break;
      case '--backlog':
        s.backlog = intValue(value(), '--backlog', 1, 65535);
        break;
      case '--threads': {
        const v = value();
        s.threads = intValue(v, '--threads', 0, 1024);
        if (s.threads > 1) {
          throw new GearmanSettingsError(
            `--threads ${v}: only -t 0 or -t 1 is supported. Job routing runs in one thread by design (like ` +
              "gearmand's processing thread); I/O threads would have to pass every packet to it, which costs more " +
              "in Node than parsing them. Run one server per core behind your clients' server list instead.",
          );
        }
        break;
      }
      case '--queue-type': {
        // gearmand matches queue names without regard to case.
        const v = value();
        const known = QUEUE_TYPES.find((q) => q.toLowerCase() === v.toLowerCase());
        if (known === undefined) throw new GearmanSettingsError(`Unknown queue ${v}`);
        if (known === 'redis' || known === 'libmemcached') {
          throw new GearmanSettingsError(
            `--queue-type ${v}: not supported (durable queues here: libsqlite3, MySQL, Postgres; builtin is memory only)`,
          );
        }
        s.queueType = known;
        break;
      }
      case '--libsqlite3-db':
        s.queue.libsqlite3Db = value();
        break;
      case '--libsqlite3-table':
        s.queue.libsqlite3Table = value();
        break;
      case '--store-queue-on-shutdown':
        throw new GearmanSettingsError(
          '--store-queue-on-shutdown is not supported: every background job is committed before JOB_CREATED ' +
            '(group commit keeps that fast), so there is nothing left to store at shutdown',
        );
      case '--mysql-host':
        s.queue.mysqlHost = value();
        break;
      case '--mysql-port':
        s.queue.mysqlPort = intValue(value(), '--mysql-port', 1, 65535);
        break;
      case '--mysql-user':
        s.queue.mysqlUser = value();
        break;
      case '--mysql-password':
        s.queue.mysqlPassword = value();
        break;
      case '--mysql-db':
        s.queue.mysqlDb = value();
        break;
      case '--mysql-table':
        s.queue.mysqlTable = value();
        break;
      case '--libpq-conninfo':
        s.queue.libpqConninfo = value();
        break;
      case '--libpq-table':
        s.queue.libpqTable = value();
        break;
      case '--job-retries':
        s.jobRetries = intValue(value(), '--job-retries', 0, 255);
        break;
      case '--worker-wakeup':
        s.workerWakeup = intValue(value(), '--worker-wakeup', 0, 255);
        break;
      case '--round-robin':
        s.roundRobin = true;
        break;
      case '--exceptions':
        s.exceptions = true;
        break;
      case '--job-handle-prefix':
        s.jobHandlePrefix = value();
        break;
      case '--hashtable-buckets':
        s.hashtableBuckets = intValue(value(), '--hashtable-buckets', 1, 2 ** 32 - 1);
        break;
      case '--keepalive':
        s.keepalive = true;
        break;
      case '--keepalive-idle':
        s.keepaliveIdle = intValue(value(), '--keepalive-idle', -1, 2 ** 31 - 1);
        break;
      case '--verbose': {
        const v = value();
        if (!(VERBOSE_LEVELS as readonly string[]).includes(v)) {
          throw new GearmanSettingsError('Invalid value for --verbose supplied');
        }
        s.verbose = v as VerboseLevel;
        break;
      }
      case '--log-file':
        s.logFile = value();
        break;
      case '--pid-file':
        s.pidFile = value();
        break;
      case '--user':
        s.user = value();
        break;
      case '--config-file': {
        // gearmand's format: its options, separated by spaces or newlines. (gearmand also reads
        // /etc/gearmand.conf when it exists; we read a file only when asked to.)
        const file = value();
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch {
          throw new GearmanSettingsError('Could not open configuration file.');
        }
        const extra = text.split(/[ \n\r]+/).filter((t) => t !== '');
        args.splice(i + 1, 0, ...extra);
        break;
      }
      case '--enable-shutdown':
        s.enableShutdown = true;
        break;
      case '--max-packet-size':
        s.maxPacketSize = intValue(value(), '--max-packet-size', 1024, 2 ** 32 - 1);
        break;
      case '--max-job-memory':
        s.maxJobMemory = intValue(value(), '--max-job-memory', 0, 2 ** 32 - 1) * 1024 * 1024;
        break;
      case '--admin': {
        const m = /^(.*):(\d+)$/.exec(value());
        if (!m) throw new GearmanSettingsError('--admin requires host:port');
        s.admin = { host: m[1] || '127.0.0.1', port: intValue(m[2]!, '--admin', 0, 65535) };
        break;
      }
      default:
        throw new GearmanSettingsError(`unrecognised option '${name}'`);
    }
  }
  validateGearmanSettings(s);
  return out;
}

/** Start-up checks (gearmand refuses a handle prefix that leaves no room in its 64-byte handles). */
export function validateGearmanSettings(s: GearmanSettings): void {
  if (Buffer.byteLength(s.jobHandlePrefix, 'latin1') >= 64) {
    throw new GearmanSettingsError(`Available length 64 not enough to store job handle prefix ${s.jobHandlePrefix}`);
  }
  if (s.threads > 1) throw new GearmanSettingsError('only 0 or 1 threads are supported');
  // gearmand's start-up failures for a durable queue without its database.
  if (s.queueType === 'libsqlite3' && (s.queue.libsqlite3Db === undefined || s.queue.libsqlite3Db === '')) {
    throw new GearmanSettingsError('missing required --libsqlite3-db=<dbfile> argument');
  }
  if (s.queueType === 'MySQL' && (s.queue.mysqlDb === undefined || s.queue.mysqlDb === '')) {
    throw new GearmanSettingsError('-q MySQL needs --mysql-db (gearmand: "No database selected")');
  }
}
