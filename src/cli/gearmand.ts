/**
 * `sharenothing gearmand`: gearmand's command line, gearmand's behaviour.
 *
 * @module
 */

import { openSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import { gearmanMetrics } from '../gearman/server/metrics.ts';
import { GEARMAND_VERSION, GearmanServer, QueueOpenError } from '../gearman/server/server.ts';
import {
  type GearmandCommandLine,
  GearmanSettingsError,
  parseGearmandArgs,
  type VerboseLevel,
} from '../gearman/server/settings.ts';
import { startAdminServer } from '../net/admin-server.ts';
import { createLogger, type Logger, type LogLevel, silentLogger } from '../net/logger.ts';
import { MetricsRegistry } from '../net/metrics.ts';
import { switchUser } from '../net/privileges.ts';
import { installShutdownHandlers } from '../net/shutdown.ts';

const HELP = `sharenothing gearmand: a gearmand ${GEARMAND_VERSION}-compatible job server

-p, --port=<num>            TCP port to listen on (default: 4730, 0 = any free port)
-L, --listen=<addr>         address to listen on, repeatable (default: all interfaces)
-b, --backlog=<num>         listen backlog (default: 32)
-t, --threads=<num>         0 or 1: job routing is single-threaded by design (gearmand's default is 4)
-q, --queue-type=<type>     builtin (memory only, default), libsqlite3, MySQL or Postgres: background jobs
                            are committed before JOB_CREATED and replayed at start
    --libsqlite3-db=<file>  SQLite file (required with -q libsqlite3)
    --libsqlite3-table=<t>  table (default: gearman_queue)
    --mysql-host=<h>        MySQL/MariaDB host (default: localhost); --mysql-port (3306), --mysql-user,
                            --mysql-password, --mysql-db (required), --mysql-table (default: gearman_queue)
    --libpq-conninfo=<s>    PostgreSQL conninfo ("host=... dbname=..."; default: libpq's PG* variables)
    --libpq-table=<t>       table (default: queue)
-j, --job-retries=<num>     attempts before a job is dropped with WORK_FAIL (default: 0 = no limit)
-w, --worker-wakeup=<num>   sleeping workers woken per job (default: 0 = all)
-R, --round-robin           rotate a worker's functions after each job
    --exceptions            forward WORK_EXCEPTION to every client
    --job-handle-prefix=<s> job handles are <s>:<n> (default: H:<hostname>)
    --hashtable-buckets=<n> bucket count of the job tables (only the order of \`show jobs\`)
    --keepalive             TCP keepalive on connections (--keepalive-idle=<s> sets the idle time)
    --verbose=<level>       FATAL, ALERT, CRITICAL, ERROR (default), WARNING, NOTICE, INFO or DEBUG
-l, --log-file=<file>       NDJSON log destination: a file, stderr (default) or none
-P, --pid-file=<file>       write the process id there (removed on exit)
-u, --user=<user>           switch to this user once the port is bound (when started as root)
    --config-file=<file>    read more options from a file (gearmand's format)
    --check-args            check the command line and exit
    --enable-shutdown       accept the admin \`shutdown [graceful]\` command (not a gearmand flag)
    --max-packet-size=<n>   largest packet accepted (default: 64 MiB; not a gearmand flag)
    --max-job-memory=<MiB>  job memory (payloads + ~1 KiB per job) before new jobs get ERROR
                            MEMORY_ALLOCATION_FAILURE (default: 60% of the heap limit; 0 = none; not a gearmand flag)
    --admin=<host:port>     serve Prometheus /metrics and /healthz there (not a gearmand flag)
-h, --help                  print this help
-V, --version               print the version
`;

/** gearmand's verbosity names mapped to our log levels. */
const LOG_LEVEL: Record<VerboseLevel, LogLevel> = {
  FATAL: 'error',
  ALERT: 'error',
  CRITICAL: 'error',
  ERROR: 'error',
  WARNING: 'warn',
  NOTICE: 'info',
  INFO: 'info',
  DEBUG: 'debug',
};

/** An append-only log file written synchronously, so the last lines survive `process.exit()`. */
function logFileStream(path: string): Writable {
  const fd = openSync(path, 'a');
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      try {
        writeSync(fd, chunk);
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
  });
}

function makeLogger(file: string, verbose: VerboseLevel): Logger {
  if (file === 'none') return silentLogger;
  const stream = file === 'stderr' ? process.stderr : logFileStream(file);
  return createLogger({ name: 'gearmand', level: LOG_LEVEL[verbose], stream });
}

/** Runs the daemon; resolves with an exit code for usage errors, or undefined once serving (until a signal). */
export async function runGearmand(args: string[]): Promise<number | undefined> {
  let parsed: GearmandCommandLine;
  try {
    parsed = parseGearmandArgs(args);
  } catch (err) {
    if (err instanceof GearmanSettingsError) {
      process.stderr.write(`sharenothing gearmand: ${err.message}\n`);
      return 64;
    }
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.version) {
    process.stdout.write(`gearmand ${GEARMAND_VERSION} (sharenothing)\n`);
    return 0;
  }
  const settings = parsed.settings;
  if (settings.checkArgs) return 0;
  const logger = makeLogger(settings.logFile, settings.verbose);
  const server = new GearmanServer({ ...settings, logger });
  let admin: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  let pidWritten = false;
  const removePid = () => {
    if (!pidWritten || settings.pidFile === undefined) return;
    pidWritten = false;
    try {
      unlinkSync(settings.pidFile);
    } catch {
      // Already gone, or no longer ours to remove (after -u).
    }
  };
  const close = async (deadlineMs: number) => {
    await Promise.all([server.close(deadlineMs), admin?.close()]);
    removePid();
  };
  // Installed before binding: a signal that arrives while starting still shuts down cleanly.
  const uninstall = installShutdownHandlers({ close, logger });
  server.onShutdown = () => {
    uninstall();
    void close(5000).then(() => process.exit(0));
  };
  let address: Awaited<ReturnType<GearmanServer['listen']>>;
  try {
    address = await server.listen();
  } catch (err) {
    uninstall();
    const what = err instanceof QueueOpenError ? '' : `failed to listen on port ${settings.port}: `;
    process.stderr.write(`sharenothing gearmand: ${what}${(err as Error).message}\n`);
    return 71;
  }
  if (settings.pidFile !== undefined) {
    try {
      writeFileSync(settings.pidFile, `${process.pid}\n`);
      pidWritten = true;
    } catch (err) {
      process.stderr.write(`sharenothing gearmand: could not write ${settings.pidFile}: ${(err as Error).message}\n`);
      await close(0);
      uninstall();
      return 73;
    }
  }
  if (settings.user !== undefined) {
    try {
      switchUser(settings.user, { requireRoot: true });
    } catch (err) {
      process.stderr.write(
        `sharenothing gearmand: Could not switch to user ${settings.user}: ${(err as Error).message}\n`,
      );
      await close(0);
      uninstall();
      return 71;
    }
  }
  if (settings.admin) {
    const registry = new MetricsRegistry();
    gearmanMetrics(registry, server);
    admin = await startAdminServer({ ...settings.admin, registry, logger });
    logger.warn('admin listener', { host: admin.address.host, port: admin.address.port });
  }
  logger.info('listening', { host: address.address, port: address.port });
  return undefined;
}
