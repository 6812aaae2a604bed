/**
 * Test helpers shared by the gearman interop and client/worker tests: child processes (real clients and workers
 * from Debian's packages, our worker in a child), a job server of either kind (ours in-process or the real gearmand)
 * that can be restarted on the same port, and admin-protocol probes.
 *
 * @module
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GearmanServer } from '../../src/gearman/server/server.ts';
import { canConnect } from './daemon.ts';
import { RawGearman, startOurGearman } from './gearman-raw.ts';
import { GEARMAND_BIN, startRealGearmand, toolAvailable } from './gearman-real.ts';

/** The output of a finished child process. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** Runs a command to completion (killed after `timeoutMs`). */
export function run(cmd: string, args: string[], input?: string, timeoutMs = 10_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('latin1').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('latin1').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** A long-running child (a worker), stopped by {@link stopAll}. */
export interface Started {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves once the output matches `pattern` (rejects after `timeoutMs` or when the child exits first). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
}

/** Starts a long-running child process. */
export function start(cmd: string, args: string[]): Started {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout?.setEncoding('latin1').on('data', (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding('latin1').on('data', (d: string) => {
    out += d;
  });
  child.once('exit', () => children.delete(child));
  return {
    child,
    output: () => out,
    async waitFor(pattern, timeoutMs = 8000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = pattern.exec(out);
        if (m !== null) return m;
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`child exited before printing ${pattern}: ${out}`);
        }
        if (Date.now() > deadline) throw new Error(`child did not print ${pattern}: ${out}`);
        await sleep(10);
      }
    },
  };
}

/** SIGKILLs every child started here and waits for their exit. */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((child) => kill(child)));
}

/** SIGKILLs one child and waits for its exit. */
export function kill(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** Runs the checks in order, stopping at the first that fails (it skipped the test, or threw in CI). */
export function present(...checks: Array<() => boolean>): boolean {
  return checks.every((check) => check());
}

/** One row of the admin `status` report. */
export interface FunctionStatus {
  total: number;
  running: number;
  workers: number;
}

/** The admin `status` report of the server on `port`. */
export async function adminStatus(port: number): Promise<Map<string, FunctionStatus>> {
  const admin = await RawGearman.connect(port);
  try {
    const out = new Map<string, FunctionStatus>();
    for (const line of await admin.list('status')) {
      const [fn, total, running, workers] = line.split('\t');
      out.set(fn!, { total: Number(total), running: Number(running), workers: Number(workers) });
    }
    return out;
  } finally {
    admin.close();
  }
}

/** The admin `show unique jobs` report of the server on `port`. */
export async function adminUniqueJobs(port: number): Promise<string[]> {
  const admin = await RawGearman.connect(port);
  try {
    return await admin.list('show unique jobs');
  } finally {
    admin.close();
  }
}

/** Polls the async `check` until it holds (throws after `timeoutMs`). */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(10);
  }
}

/** Waits until `count` workers registered `fn` (seen through the admin `status`). */
export async function workersReady(port: number, fn: string, count = 1, why = ''): Promise<void> {
  const deadline = Date.now() + 8000;
  for (;;) {
    const status = (await adminStatus(port)).get(fn);
    if (status !== undefined && status.workers >= count) return;
    if (Date.now() > deadline) throw new Error(`no worker for ${fn} came up ${why}`);
    await sleep(20);
  }
}

/** Which job server a test runs against. */
export type PeerKind = 'ours' | 'gearmand';

/** A job server of either kind, on loopback. */
export interface JobServerPeer {
  readonly kind: PeerKind;
  readonly port: number;
  /** Stops it (idempotent). */
  stop(): Promise<void>;
  /** Kills it (no graceful close) and starts a fresh one on the same port (empty queues). */
  restart(): Promise<void>;
}

/** True when the real gearmand is installed. */
export function gearmandAvailable(): boolean {
  return toolAvailable(GEARMAND_BIN);
}

/** Starts a job server of `kind`; gearmand's `flags` are passed to either (ours parses gearmand's flags). */
export async function startPeer(kind: PeerKind, flags: readonly string[] = []): Promise<JobServerPeer> {
  if (kind === 'ours') {
    let g = await startOurGearman(flags);
    const port = g.port;
    return {
      kind,
      port,
      stop: () => g.close(),
      async restart() {
        // Like gearmand's SIGKILL: no graceful wait for running jobs.
        await g.server.close(10);
        const server = new GearmanServer({ ...g.server.settings, port, listen: ['127.0.0.1'] });
        await server.listen();
        let closing: Promise<void> | undefined;
        g = { server, port, close: () => (closing ??= server.close(1000)) };
      },
    };
  }
  const first = await startRealGearmand(flags);
  const port = first.port;
  let stop = first.stop;
  return {
    kind,
    port,
    stop: () => stop(),
    async restart() {
      await stop();
      stop = await spawnGearmandOn(port, flags);
    },
  };
}

/** gearmand on a given port (for restarts); resolves with its stop function once it accepts connections. */
async function spawnGearmandOn(port: number, flags: readonly string[]): Promise<() => Promise<void>> {
  const pidFile = join(tmpdir(), `sharenothing-gearmand-${process.pid}-${port}-again.pid`);
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
  child.once('exit', () => children.delete(child));
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= kill(child).then(() => {
      rmSync(pidFile, { force: true });
    }));
  // The old process's socket may linger for a moment: gearmand retries binding for a while by itself.
  const deadline = Date.now() + 8000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`could not restart gearmand on ${port}: ${stderr}`);
    }
    await sleep(10);
  }
  return stop;
}
