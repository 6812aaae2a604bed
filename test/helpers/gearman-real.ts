/**
 * The real gearmand 1.1.20 (Debian's `gearman-job-server`) as a child process, for differential and interop tests,
 * and where Debian puts the gearman tools. A missing package skips the test visibly, or fails it when `CI=true`
 * (the rule of `memcached-real.ts`).
 *
 * @module
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inCI, requirePackage, requireTool, type SkippableContext, toolAvailable } from './memcached-real.ts';

export { inCI, requirePackage, requireTool, type SkippableContext, toolAvailable };

/** Debian `gearman-job-server`. */
export const GEARMAND_BIN = '/usr/sbin/gearmand';
/** Debian `gearman-tools`. */
export const GEARMAN_BIN = '/usr/bin/gearman';
/** Debian `gearman-tools`. */
export const GEARADMIN_BIN = '/usr/bin/gearadmin';

/** A running real gearmand. */
export interface RealGearmand {
  readonly port: number;
  readonly child: ChildProcess;
  /** What it wrote on stderr so far. */
  stderr(): string;
  /** Kills it and waits for the exit (idempotent). */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
// Never leave a gearmand behind, even when a test forgets its cleanup.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Spawns `gearmand --port <p> --listen 127.0.0.1 --job-handle-prefix H:test ...flags` on a random port below 32768
 * (logging to stderr, pid file in the temp dir; running as root needs no `-u`), and resolves once it accepts
 * connections.
 */
export async function startRealGearmand(flags: readonly string[] = []): Promise<RealGearmand> {
  if (!toolAvailable(GEARMAND_BIN)) throw new Error(`${GEARMAND_BIN} not installed`);
  let lastError = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (await canConnect(port)) continue;
    const pidFile = join(tmpdir(), `sharenothing-gearmand-${process.pid}-${port}.pid`);
    const child = spawn(
      GEARMAND_BIN,
      [
        '--port',
        String(port),
        '--listen',
        '127.0.0.1',
        '--log-file',
        'stderr',
        '--pid-file',
        pidFile,
        '--job-handle-prefix',
        'H:test',
        ...flags,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.once('exit', () => children.delete(child));
    child.once('error', (err) => {
      stderr += String(err);
    });
    const deadline = Date.now() + 5000;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      if (await canConnect(port)) {
        up = true;
        break;
      }
      await sleep(10);
    }
    if (up && child.exitCode === null) {
      let stopping: Promise<void> | undefined;
      return {
        port,
        child,
        stderr: () => stderr,
        stop: () => {
          stopping ??= (async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
            await exited;
            rmSync(pidFile, { force: true });
          })();
          return stopping;
        },
      };
    }
    child.kill('SIGKILL');
    await exited;
    rmSync(pidFile, { force: true });
    lastError = stderr.trim() || `exit code ${child.exitCode}`;
    if (!/address already in use|bind/i.test(lastError)) break;
  }
  throw new Error(`could not start ${GEARMAND_BIN} ${flags.join(' ')}: ${lastError}`);
}
