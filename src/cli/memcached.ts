/**
 * `sharenothing memcached`: memcached's command line, memcached's behaviour.
 *
 * @module
 */

import { MemcachedServer } from '../memcached/server/server.ts';
import { MEMCACHED_VERSION } from '../memcached/server/serving-thread.ts';
import { parseMemcachedArgs, SettingsError } from '../memcached/server/settings.ts';
import { startAdminServer } from '../net/admin-server.ts';
import { createLogger } from '../net/logger.ts';
import { MetricsRegistry } from '../net/metrics.ts';
import { switchUser } from '../net/privileges.ts';
import { installShutdownHandlers } from '../net/shutdown.ts';
import { memcachedMetrics } from './memcached-metrics.ts';

const HELP = `sharenothing memcached: a memcached ${MEMCACHED_VERSION}-compatible cache server

-p, --port=<num>          TCP port to listen on (default: 11211, 0 = any free port)
-U, --udp-port=<num>      UDP port (only 0 = off is supported; memcached's default)
-l, --listen=<addr>       interface(s) to listen on, comma separated (default: all)
-m, --memory-limit=<mb>   item memory in megabytes (default: 64)
-c, --conn-limit=<num>    max simultaneous connections (default: 1024)
-t, --threads=<num>       serving threads sharing one store (default: 4)
-I, --max-item-size=<n>   max item size, with k/m suffix (default: 1m)
-f, --slab-growth-factor  chunk size growth factor (default: 1.25)
-n, --slab-min-size=<n>   min space for key+value+flags (default: 48)
-M, --disable-evictions   return an error on memory exhausted instead of evicting
-C, --disable-cas         disable use of CAS
-u, --user=<name>         when started as root, run as this user once the port is bound
-R, --max-reqs-per-event  requests per event before yielding (default: 20)
-b, --listen-backlog      listen backlog (default: 1024)
-B, --protocol=<name>     auto, ascii or binary (default: auto)
-S, --enable-sasl         require SASL PLAIN (binary protocol); passwords from MEMCACHED_SASL_PWDB
                          or -o sasl_pwdb=<file>, lines user:password
-F, --disable-flush-all   refuse flush_all
-A, --enable-shutdown     allow the shutdown command
-X, --disable-dumping     refuse stats cachedump and lru_crawler metadump
-v, -vv                   log connections / commands
-o, --extended            slab_chunk_max=<kb>, track_sizes, idle_timeout=<s>, sasl_pwdb=<file>
    --admin=<host:port>   serve Prometheus /metrics and /healthz there (not a memcached flag)
-V, --version             print the version
`;

/** Runs the daemon; resolves with an exit code for usage errors, or never (until a signal) when serving. */
export async function runMemcached(args: string[]): Promise<number | undefined> {
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.includes('-V') || args.includes('--version')) {
    process.stdout.write(`memcached ${MEMCACHED_VERSION} (sharenothing)\n`);
    return 0;
  }
  let settings: ReturnType<typeof parseMemcachedArgs>;
  try {
    settings = parseMemcachedArgs(args);
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`sharenothing memcached: ${err.message}\n`);
      return 64;
    }
    throw err;
  }
  const logger = createLogger({
    name: 'memcached',
    level: settings.verbose >= 2 ? 'debug' : settings.verbose === 1 ? 'info' : 'warn',
    stream: process.stderr,
  });
  const server = new MemcachedServer({ ...settings, logger });
  let admin: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  const close = async (deadlineMs: number) => {
    await Promise.all([server.close(deadlineMs), admin?.close()]);
  };
  // Installed before binding: a signal that arrives while worker threads start still shuts down cleanly.
  const uninstall = installShutdownHandlers({ close, logger });
  server.onShutdown = () => {
    uninstall();
    void close(5000).then(() => process.exit(0));
  };
  let address: Awaited<ReturnType<MemcachedServer['listen']>>;
  try {
    address = await server.listen();
  } catch (err) {
    uninstall();
    process.stderr.write(
      `sharenothing memcached: failed to listen on port ${settings.port}: ${(err as Error).message}\n`,
    );
    return 71;
  }
  if (settings.user !== undefined) {
    try {
      switchUser(settings.user);
    } catch (err) {
      process.stderr.write(
        `sharenothing memcached: can't switch to user ${settings.user}: ${(err as Error).message}\n`,
      );
      await close(0);
      uninstall();
      return 71;
    }
  }
  if (settings.admin) {
    const registry = new MetricsRegistry();
    memcachedMetrics(registry, server);
    admin = await startAdminServer({ ...settings.admin, registry, logger });
    logger.warn('admin listener', { host: admin.address.host, port: admin.address.port });
  }
  logger.info('listening', { host: address.address, port: address.port });
  return undefined;
}
