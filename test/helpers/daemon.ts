/**
 * Spawning a real daemon (memcached, gearmand, …) for a test: a random port below 32768, retried when it is taken,
 * ready once it accepts connections, always killed (by `stop()`, or at process exit as a safety net).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** A running daemon. */
export interface Daemon {
  readonly port: number;
  readonly child: ChildProcess;
  /** What it wrote on stderr so far. */
  stderr(): string;
  /** Kills it and waits for the exit (idempotent). */
  stop(): Promise<void>;
}

/** How to start one. */
export interface DaemonSpec {
  bin: string;
  /** The command line for a given port. */
  args(port: number): string[];
  /** Start-up errors that mean "port taken": only those are retried on another port. */
  retryOn: RegExp;
  /** Runs after the daemon exited (e.g. removing its pid file). */
  cleanup?(port: number): void;
}

const children = new Set<ChildProcess>();
// Never leave a daemon behind, even when a test forgets its cleanup.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Whether something accepts connections on 127.0.0.1:`port`. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Starts the daemon on a free port in 20000–32000 and resolves once it accepts connections. */
export async function startDaemon(spec: DaemonSpec): Promise<Daemon> {
  let lastError = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    // Something else (a previous attempt's daemon, one of our servers) is there already.
    if (await canConnect(port)) continue;
    const child = spawn(spec.bin, spec.args(port), { stdio: ['ignore', 'ignore', 'pipe'] });
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
    const kill = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      spec.cleanup?.(port);
    };
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
      return { port, child, stderr: () => stderr, stop: () => (stopping ??= kill()) };
    }
    await kill();
    lastError = stderr.trim() || `exit code ${child.exitCode}`;
    // A daemon refusing its flags is not a port problem: do not retry.
    if (!spec.retryOn.test(lastError)) break;
  }
  throw new Error(`could not start ${spec.bin}: ${lastError}`);
}
