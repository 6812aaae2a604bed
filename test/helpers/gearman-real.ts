/**
 * The real gearmand 1.1.20 (Debian's `gearman-job-server`) as a child process, for differential and interop tests,
 * and where Debian puts the gearman tools. A missing package skips the test visibly, or fails it when `CI=true`
 * (the rule of `memcached-real.ts`).
 *
 * @module
 */

import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Daemon, startDaemon } from './daemon.ts';
import { inCI, requirePackage, requireTool, type SkippableContext, toolAvailable } from './memcached-real.ts';

export { inCI, requirePackage, requireTool, type SkippableContext, toolAvailable };

/** Debian `gearman-job-server`. */
export const GEARMAND_BIN = '/usr/sbin/gearmand';
/** Debian `gearman-tools`. */
export const GEARMAN_BIN = '/usr/bin/gearman';
/** Debian `gearman-tools`. */
export const GEARADMIN_BIN = '/usr/bin/gearadmin';

/** A running real gearmand. */
export type RealGearmand = Daemon;

/**
 * Spawns `gearmand --port <p> --listen 127.0.0.1 --job-handle-prefix H:test ...flags` on a random port below 32768
 * (logging to stderr, pid file in the temp dir; running as root needs no `-u`), and resolves once it accepts
 * connections.
 */
export async function startRealGearmand(flags: readonly string[] = []): Promise<RealGearmand> {
  if (!toolAvailable(GEARMAND_BIN)) throw new Error(`${GEARMAND_BIN} not installed`);
  const pidFile = (port: number) => join(tmpdir(), `sharenothing-gearmand-${process.pid}-${port}.pid`);
  return startDaemon({
    bin: GEARMAND_BIN,
    args: (port) => [
      '--port',
      String(port),
      '--listen',
      '127.0.0.1',
      '--log-file',
      'stderr',
      '--pid-file',
      pidFile(port),
      '--job-handle-prefix',
      'H:test',
      ...flags,
    ],
    retryOn: /address already in use|bind/i,
    cleanup: (port) => rmSync(pidFile(port), { force: true }),
  });
}
