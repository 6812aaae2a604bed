/**
 * N copies of a server in `worker_threads`, all listening on one port with `SO_REUSEPORT` so the kernel spreads
 * connections across them (one event loop per core, nothing shared but the port).
 *
 * ```
 *  main thread                         worker i (entry module, may be a .ts file)
 *  ───────────                         ─────────
 *  ThreadGroup.start() ── spawn ─────► listenTcp(server, { port, reusePort: true })
 *                      ◄── ready ───── workerReady(address)
 *  group.broadcast(m)  ── m ─────────► onWorkerMessage(handler)
 *  group.close(ms)     ── close ─────► onWorkerClose((ms) => closeServer(...)) ─► thread exits
 *  'exit' after ready  ── log + respawn (at most maxRestarts per restartWindowMs)
 * ```
 *
 * Worker 0 is started alone first and the rest once it is ready, so a group asked to listen on port 0 can hand the
 * port worker 0 got to the others through `workerDataFor` (restarts get it too).
 *
 * @module
 */

import type { AddressInfo } from 'node:net';
import { isMainThread, parentPort, Worker, type WorkerOptions } from 'node:worker_threads';
import { NetError } from './errors.ts';
import type { Logger } from './logger.ts';
import { silentLogger } from './logger.ts';

/** A listening address as workers report it. */
export interface ThreadAddress {
  host: string;
  port: number;
}

/** What a worker posts to the main thread. */
export type WorkerToParentMessage =
  | { type: 'ready'; address?: ThreadAddress }
  | { type: 'error'; message: string; code?: string };

/** What the main thread posts to a worker to close it; anything else comes from `broadcast`. */
export interface CloseWorkerMessage {
  type: 'close';
  /** The worker should have closed within this many milliseconds; it is terminated one second later. */
  deadlineMs: number;
}

/** Describes one worker being spawned, for {@link ThreadGroupOptions.workerDataFor}. */
export interface WorkerSpawn {
  /** Slot number, 0 … count-1; a restarted worker keeps its slot. */
  index: number;
  /** Whether this spawn replaces a worker that died. */
  restart: boolean;
  /** The address worker 0 reported as ready (undefined while spawning worker 0 the first time). */
  address: ThreadAddress | undefined;
}

/** Options of {@link ThreadGroup.start}. */
export interface ThreadGroupOptions {
  /** The worker module, e.g. `new URL('./server-worker.ts', import.meta.url)`. */
  entry: URL | string;
  /** Number of workers (at least 1). */
  count: number;
  /** `workerData` for every worker (structured-cloned). */
  workerData?: unknown;
  /** `workerData` per spawn, overriding `workerData`; use it to pass worker 0's port on to the others. */
  workerDataFor?: (spawn: WorkerSpawn) => unknown;
  /** Receives crashes and restarts (error), lifecycle (info/debug). */
  logger?: Logger;
  /** A worker that has not posted `ready` within this many milliseconds fails (default 10000). */
  readyTimeoutMs?: number;
  /** Restarts allowed per `restartWindowMs` across the group (default 5). */
  maxRestarts?: number;
  /** Sliding window for `maxRestarts` in milliseconds (default 60000). */
  restartWindowMs?: number;
  /** Receives every message a worker posts other than `ready` and `error`. */
  onMessage?: (message: unknown, index: number) => void;
  /** Called when a worker died and the restart budget is spent, so the daemon can decide to exit. */
  onRestartLimit?: (index: number) => void;
  /** Other `Worker` options (`resourceLimits`, `env`, `execArgv`, …). */
  workerOptions?: Omit<WorkerOptions, 'workerData'>;
}

interface Slot {
  worker: Worker | undefined;
  ready: boolean;
}

function isMessage(message: unknown, type: string): boolean {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

/**
 * A running group of worker threads. Create it with {@link ThreadGroup.start}.
 *
 * @example
 * const group = await ThreadGroup.start({
 *   entry: new URL('./memcached-worker.ts', import.meta.url),
 *   count: 4,
 *   workerDataFor: ({ address }) => ({ host: '127.0.0.1', port: address?.port ?? 11211 }),
 *   logger,
 * });
 * installShutdownHandlers({ close: (ms) => group.close(ms), logger });
 */
export class ThreadGroup {
  #options: ThreadGroupOptions;
  #logger: Logger;
  #slots: Slot[];
  #address: ThreadAddress | undefined;
  #closing = false;
  #closed: Promise<void> | undefined;
  #restartTimes: number[] = [];
  #restarts = 0;

  private constructor(options: ThreadGroupOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#slots = Array.from({ length: options.count }, () => ({ worker: undefined, ready: false }));
  }

  /**
   * Spawns `count` workers and resolves once each has posted `{ type: 'ready' }`. Rejects with a
   * `NET_ERR_WORKER_START` (or `NET_ERR_WORKER_READY_TIMEOUT`) {@link NetError} when any worker posts
   * `{ type: 'error' }`, throws or exits first; the other workers are terminated before it rejects.
   */
  static async start(options: ThreadGroupOptions): Promise<ThreadGroup> {
    if (!Number.isInteger(options.count) || options.count < 1) {
      throw new NetError('NET_ERR_INVALID_OPTION', `count must be a positive integer, got ${options.count}`);
    }
    const group = new ThreadGroup(options);
    try {
      await group.#spawn(0, false);
      const rest: Promise<void>[] = [];
      for (let i = 1; i < options.count; i++) rest.push(group.#spawn(i, false));
      await Promise.all(rest);
    } catch (err) {
      group.#closing = true;
      await Promise.all(group.#slots.map((slot) => slot.worker?.terminate()));
      throw err;
    }
    group.#logger.info('worker threads ready', { count: options.count, address: group.#address });
    return group;
  }

  /** The address worker 0 reported, if it reported one. */
  get address(): ThreadAddress | undefined {
    return this.#address;
  }

  /** Workers currently running and ready. */
  get size(): number {
    let n = 0;
    for (const slot of this.#slots) if (slot.worker !== undefined && slot.ready) n++;
    return n;
  }

  /** Restarts performed since start. */
  get restarts(): number {
    return this.#restarts;
  }

  /** `threadId` of every running worker, by slot (`undefined` for an empty slot). */
  get threadIds(): Array<number | undefined> {
    return this.#slots.map((slot) => slot.worker?.threadId);
  }

  /** Posts `message` to every running worker. */
  broadcast(message: unknown): void {
    for (const slot of this.#slots) slot.worker?.postMessage(message);
  }

  /**
   * Posts `{ type: 'close', deadlineMs }` to every worker and resolves once all have exited; a worker still running
   * one second after the deadline is terminated. Stops restarts. Idempotent.
   */
  close(deadlineMs = 10_000): Promise<void> {
    this.#closed ??= this.#close(deadlineMs);
    return this.#closed;
  }

  async #close(deadlineMs: number): Promise<void> {
    this.#closing = true;
    const live = this.#slots.flatMap((slot) => (slot.worker === undefined ? [] : [slot.worker]));
    this.#logger.info('closing worker threads', { count: live.length, deadlineMs });
    const exited = live.map((worker) => new Promise<void>((resolve) => worker.once('exit', () => resolve())));
    const message: CloseWorkerMessage = { type: 'close', deadlineMs };
    for (const worker of live) worker.postMessage(message);
    const timer = setTimeout(() => {
      for (const worker of live) {
        if (worker.threadId === -1) continue;
        this.#logger.warn('worker thread missed the close deadline, terminating', { threadId: worker.threadId });
        void worker.terminate();
      }
    }, deadlineMs + 1000);
    await Promise.all(exited);
    clearTimeout(timer);
  }

  /** Starts a worker in slot `index`; resolves when it is ready, rejects if it fails first. */
  #spawn(index: number, restart: boolean): Promise<void> {
    const options = this.#options;
    let worker: Worker;
    try {
      const workerData =
        options.workerDataFor === undefined
          ? options.workerData
          : options.workerDataFor({ index, restart, address: this.#address });
      worker = new Worker(options.entry, { ...options.workerOptions, workerData });
    } catch (err) {
      // A bad entry or uncloneable workerData throws here; it must reach start() or #restart() as a rejection.
      const reason = err instanceof Error ? err.message : String(err);
      return Promise.reject(
        new NetError('NET_ERR_WORKER_START', `worker ${index} failed to start: ${reason}`, { cause: err }),
      );
    }
    const slot = this.#slots[index]!;
    slot.worker = worker;
    slot.ready = false;
    const threadId = worker.threadId;
    const logger = this.#logger;

    return new Promise<void>((resolve, reject) => {
      let ready = false;
      let settled = false;
      let lastError: Error | undefined;
      const fail = (err: NetError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
        // A worker that failed to start is of no use; make sure it is gone (no-op when it already exited).
        void worker.terminate();
      };
      const timer = setTimeout(() => {
        fail(
          new NetError(
            'NET_ERR_WORKER_READY_TIMEOUT',
            `worker ${index} did not post ready within ${options.readyTimeoutMs ?? 10_000} ms`,
          ),
        );
      }, options.readyTimeoutMs ?? 10_000);

      worker.on('message', (message: unknown) => {
        if (!ready && isMessage(message, 'ready')) {
          ready = true;
          settled = true;
          clearTimeout(timer);
          slot.ready = true;
          const address = (message as { address?: ThreadAddress }).address;
          if (index === 0 && address !== undefined) this.#address = address;
          logger.debug('worker thread ready', { index, threadId, restart });
          resolve();
        } else if (!ready && isMessage(message, 'error')) {
          const reported = message as { message?: unknown; code?: unknown };
          fail(new NetError('NET_ERR_WORKER_START', `worker ${index} failed to start: ${String(reported.message)}`));
        } else {
          options.onMessage?.(message, index);
        }
      });
      // 'error' (an uncaught exception in the worker) is always followed by 'exit'; without a listener it would
      // be rethrown in the main thread.
      worker.on('error', (err: Error) => {
        lastError = err;
        if (!ready) {
          fail(new NetError('NET_ERR_WORKER_START', `worker ${index} failed to start: ${err.message}`, { cause: err }));
        }
      });
      worker.on('exit', (code: number) => {
        if (slot.worker === worker) {
          slot.worker = undefined;
          slot.ready = false;
        }
        if (!ready) {
          fail(new NetError('NET_ERR_WORKER_START', `worker ${index} exited with code ${code} before it was ready`));
          return;
        }
        if (this.#closing) {
          logger.debug('worker thread exited', { index, threadId, code });
          return;
        }
        logger.error('worker thread died', { index, threadId, code, err: lastError });
        this.#restart(index);
      });
    });
  }

  /** Respawns slot `index` unless closing or the restart budget is spent. */
  #restart(index: number): void {
    if (this.#closing) return;
    const now = Date.now();
    const windowMs = this.#options.restartWindowMs ?? 60_000;
    this.#restartTimes = this.#restartTimes.filter((t) => now - t < windowMs);
    if (this.#restartTimes.length >= (this.#options.maxRestarts ?? 5)) {
      this.#logger.error('worker restart limit reached, not restarting', { index, windowMs });
      this.#options.onRestartLimit?.(index);
      return;
    }
    this.#restartTimes.push(now);
    this.#restarts++;
    this.#spawn(index, true).then(
      () => this.#logger.info('worker thread restarted', { index }),
      (err: unknown) => {
        if (this.#closing) return;
        this.#logger.error('worker thread restart failed', { index, err });
        this.#restart(index);
      },
    );
  }
}

function port(): NonNullable<typeof parentPort> {
  if (isMainThread || parentPort === null) throw new TypeError('only callable inside a ThreadGroup worker thread');
  return parentPort;
}

/** Worker side: tells the group this worker is listening. Pass the address so the group can report it. */
export function workerReady(address?: AddressInfo | ThreadAddress): void {
  const message: WorkerToParentMessage = { type: 'ready' };
  if (address !== undefined) {
    message.address = { host: 'address' in address ? address.address : address.host, port: address.port };
  }
  port().postMessage(message);
}

/** Worker side: tells the group this worker cannot start, making `ThreadGroup.start()` reject with the message. */
export function workerFailed(err: unknown): void {
  const message: WorkerToParentMessage = {
    type: 'error',
    message: err instanceof Error ? err.message : String(err),
  };
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') message.code = code;
  port().postMessage(message);
}

/**
 * Worker side: receives every message the main thread posts (broadcasts and `close`). Returns a function that
 * removes the handler; while any handler is installed the worker's port keeps the thread alive.
 */
export function onWorkerMessage(handler: (message: unknown) => void): () => void {
  const p = port();
  p.on('message', handler);
  return () => {
    p.off('message', handler);
  };
}

/**
 * Worker side: runs `handler(deadlineMs)` when the group closes, then releases the port so the thread exits once
 * its own handles are closed. A handler that rejects exits the thread with code 1.
 *
 * @example
 * onWorkerClose((deadlineMs) => closeServer(server, { connections, deadlineMs }));
 */
export function onWorkerClose(handler: (deadlineMs: number) => Promise<void> | void): () => void {
  const p = port();
  const listener = (message: unknown): void => {
    if (!isMessage(message, 'close')) return;
    p.off('message', listener);
    Promise.resolve()
      .then(() => handler((message as CloseWorkerMessage).deadlineMs))
      .then(
        () => p.close(),
        () => process.exit(1),
      );
  };
  p.on('message', listener);
  return () => {
    p.off('message', listener);
  };
}
