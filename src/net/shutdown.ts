/**
 * Graceful shutdown on signals, with close-with-grace semantics:
 *
 * ```
 *  SIGTERM ──► log, close(deadlineMs) ──┬─ resolves before the deadline ──► exit(0)
 *                                       ├─ rejects                       ──► exit(1)
 *                                       └─ deadline passes first         ──► exit(1)
 *  SIGTERM/SIGINT again while closing   ───────────────────────────────────► exit(1) at once
 * ```
 *
 * @module
 */

import type { Logger } from './logger.ts';
import { silentLogger } from './logger.ts';

/** Options of {@link installShutdownHandlers}. */
export interface ShutdownOptions {
  /** Drains and closes everything; gets the deadline so it can pass it on (e.g. to `closeServer`). */
  close: (deadlineMs: number) => Promise<void>;
  /** How long `close` may take before the process exits with 1 anyway (default 10000). */
  deadlineMs?: number;
  /** Receives the shutdown lifecycle (info) and failures (error). */
  logger?: Logger;
  /** Signals that start the shutdown (default `SIGTERM`, `SIGINT`). */
  signals?: readonly NodeJS.Signals[];
  /** Ends the process (default `process.exit`); injectable for tests. */
  exit?: (code: number) => void;
}

/**
 * Installs the signal handlers and returns a function that removes them again.
 *
 * @example
 * const uninstall = installShutdownHandlers({
 *   close: (deadlineMs) => server.close(deadlineMs),
 *   logger,
 * });
 */
export function installShutdownHandlers(options: ShutdownOptions): () => void {
  const { close } = options;
  const deadlineMs = options.deadlineMs ?? 10_000;
  const logger = options.logger ?? silentLogger;
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const exit = options.exit ?? ((code: number) => process.exit(code));

  let closing = false;
  let settled = false;
  let timer: NodeJS.Timeout | undefined;

  const finish = (code: number): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    exit(code);
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) {
      logger.warn('second signal while closing, exiting now', { signal });
      finish(1);
      return;
    }
    closing = true;
    logger.info('shutting down', { signal, deadlineMs });
    const started = Date.now();
    timer = setTimeout(() => {
      logger.error('shutdown deadline passed, exiting', { deadlineMs });
      finish(1);
    }, deadlineMs);
    let closed: Promise<void>;
    try {
      closed = Promise.resolve(close(deadlineMs));
    } catch (err) {
      closed = Promise.reject(err);
    }
    closed.then(
      () => {
        if (settled) return;
        logger.info('shut down', { ms: Date.now() - started });
        finish(0);
      },
      (err: unknown) => {
        if (settled) return;
        logger.error('shutdown failed', { err });
        finish(1);
      },
    );
  };

  for (const signal of signals) process.on(signal, onSignal);
  return () => {
    for (const signal of signals) process.off(signal, onSignal);
    // Once uninstalled, nothing here calls exit: neither the deadline timer nor a close that settles later.
    settled = true;
    clearTimeout(timer);
  };
}
