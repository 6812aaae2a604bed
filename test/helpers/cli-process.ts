/**
 * `sharenothing …` as a child process for CLI tests: output captured, an optional "ready" line to wait for, and
 * every child killed when the test file ends (whatever happened to it).
 *
 * @module
 */

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { after } from 'node:test';

/** The CLI entry point. */
export const CLI_MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** A running `sharenothing` child. */
export interface CliProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** The exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Resolves once stdout matched `untilStdout` (or the child exited); rejects after `timeoutMs`. */
  readonly ready: Promise<void>;
  out(): string;
  err(): string;
}

const children = new Set<ChildProcessWithoutNullStreams>();
let cleanupRegistered = false;

/** Spawns `node src/cli/main.ts ...args` with the test's Node. */
export function runCli(args: readonly string[], opts: { untilStdout?: RegExp; timeoutMs?: number } = {}): CliProcess {
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    after(() => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
  }
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end();
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  void exited.then(() => children.delete(child));
  const ready = new Promise<void>((resolve, reject) => {
    const until = opts.untilStdout;
    if (until === undefined) return resolve();
    const timer = setTimeout(
      () => reject(new Error(`timeout; stdout=${stdout} stderr=${stderr}`)),
      opts.timeoutMs ?? 10_000,
    );
    child.stdout.on('data', () => {
      if (until.test(stdout)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  return { child, exited, ready, out: () => stdout, err: () => stderr };
}
