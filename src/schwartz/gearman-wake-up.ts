/**
 * Low-latency wake-ups through gearman, as TypePad ran TheSchwartz "with gearman to fire off workers": after an
 * insert commits, the client submits a background gearman job `schwartz-wake:<funcname>`; workers of that function
 * hold a gearman registration for it and search the queue at once instead of at their next poll.
 *
 * ```
 *  client.insert ──commit──▶ SUBMIT_JOB_BG schwartz-wake:F unique "wake" ──▶ job server ──▶ worker: wake(), done
 *                                    a burst of inserts coalesces on the server into one job (same function and
 *                                    unique), and locally into one submission in flight plus one queued behind it
 * ```
 *
 * The database stays the only source of truth: a wake-up carries no job, a lost one costs latency only (workers
 * still poll), and a notification that fails never fails the insert it follows (it is published on
 * `sharenothing:schwartz:wake`). The gearman client is loaded only when a client or worker is configured with
 * job servers, so `sharenothing/schwartz` alone never loads it.
 *
 * @module
 */

import { performance } from 'node:perf_hooks';
// Address parsing only (no sockets): a typo in the servers fails at construction, not at the first wake-up.
import { parseServer } from '../gearman/client/server-list.ts';
import type { GearmanClient, GearmanWorker, ServerSpec, WorkerJob } from '../gearman/index.ts';
import { asError, publishWakeEvent } from './diagnostics.ts';
import { invalidArgument } from './errors.ts';

/** The gearman function of a TheSchwartz function's wake-ups is this prefix and the funcname. */
export const WAKE_FUNCTION_PREFIX = 'schwartz-wake:';

/**
 * The unique id of every wake-up job. One per function name (the function carries the funcname), so a job server
 * runs one wake-up per function however many inserts asked for it while it was queued.
 */
export const WAKE_UNIQUE = 'wake';

/** The client's `notify` option: where to send wake-ups after inserts. */
export interface SchwartzNotifyOptions {
  /**
   * A `GearmanClient` of the application's (the SchwartzClient does not close it), or the job servers to open one
   * for (`['10.0.0.1:4730']`; closed by `client.close()`).
   */
  gearman: GearmanClient | readonly ServerSpec[];
  /** Gearman function name prefix (default `schwartz-wake:`); the same on clients and workers. */
  functionPrefix?: string;
  /** With job servers given: ms to wait for a server to accept a wake-up (default 2000). */
  submitTimeout?: number;
}

/** The worker's `wakeOn` option: where to listen for wake-ups. */
export interface SchwartzWakeOnOptions {
  /**
   * A `GearmanWorker` of the application's (the SchwartzWorker registers and unregisters its functions on it, and
   * does not close it), or the job servers to open one for while `work()` runs.
   */
  gearman: GearmanWorker | readonly ServerSpec[];
  /** Gearman function name prefix (default `schwartz-wake:`); the same on clients and workers. */
  functionPrefix?: string;
}

function functionPrefix(value: unknown): string {
  if (value === undefined) return WAKE_FUNCTION_PREFIX;
  if (typeof value !== 'string') throw invalidArgument('functionPrefix must be a string');
  return value;
}

function serverList(value: unknown, what: string): readonly ServerSpec[] | undefined {
  if (!Array.isArray(value)) return undefined;
  if (value.length === 0) throw invalidArgument(`${what}.gearman lists no job servers`);
  for (const spec of value) {
    try {
      parseServer(spec);
    } catch (err) {
      throw invalidArgument(`${what}.gearman: ${asError(err).message}`);
    }
  }
  return value as readonly ServerSpec[];
}

/** One function's notifications: the one in flight, and at most one queued behind it. */
interface NotifyChain {
  queued: Promise<boolean> | undefined;
  resolveQueued: ((sent: boolean) => void) | undefined;
}

/**
 * Sends wake-ups for a {@link SchwartzClient}. `notify()` never rejects: it resolves to whether a job server
 * accepted the wake-up.
 */
export class GearmanWakeUpNotifier {
  readonly #prefix: string;
  readonly #servers: readonly ServerSpec[] | undefined;
  readonly #submitTimeout: number;
  #client: GearmanClient | Promise<GearmanClient> | undefined;
  readonly #chains = new Map<string, NotifyChain>();
  readonly #pending = new Set<Promise<boolean>>();
  #closed = false;

  constructor(options: SchwartzNotifyOptions) {
    if (options === null || typeof options !== 'object') throw invalidArgument('notify must be { gearman }');
    this.#prefix = functionPrefix(options.functionPrefix);
    this.#servers = serverList(options.gearman, 'notify');
    if (this.#servers === undefined) {
      const client = options.gearman as GearmanClient;
      if (client === null || typeof client !== 'object' || typeof client.submitBackground !== 'function') {
        throw invalidArgument('notify.gearman must be a GearmanClient or a list of job servers');
      }
      this.#client = client;
    }
    const timeout = options.submitTimeout ?? 2000;
    if (typeof timeout !== 'number' || !(timeout > 0)) throw invalidArgument('submitTimeout must be positive');
    this.#submitTimeout = timeout;
  }

  /**
   * Wakes the workers of `funcname`. While one wake-up for it is in flight, later calls share a single one sent
   * after it (it went out after their commits, so nothing is missed; a burst costs two submissions, not N).
   */
  notify(funcname: string): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    const chain = this.#chains.get(funcname);
    if (chain !== undefined) {
      chain.queued ??= new Promise<boolean>((resolve) => {
        chain.resolveQueued = resolve;
      });
      return chain.queued;
    }
    const fresh: NotifyChain = { queued: undefined, resolveQueued: undefined };
    this.#chains.set(funcname, fresh);
    return this.#run(funcname, fresh);
  }

  #run(funcname: string, chain: NotifyChain): Promise<boolean> {
    const sending = this.#send(funcname);
    this.#pending.add(sending);
    void sending.then(() => {
      this.#pending.delete(sending);
      const resolve = chain.resolveQueued;
      if (resolve === undefined) {
        this.#chains.delete(funcname);
        return;
      }
      chain.queued = undefined;
      chain.resolveQueued = undefined;
      void this.#run(funcname, chain).then(resolve);
    });
    return sending;
  }

  async #send(funcname: string): Promise<boolean> {
    const started = performance.now();
    try {
      const client = await this.#gearman();
      const job = await client.submitBackground(`${this.#prefix}${funcname}`, '', { unique: WAKE_UNIQUE });
      publishWakeEvent({ type: 'sent', funcname, server: job.server, durationMs: performance.now() - started });
      return true;
    } catch (err) {
      publishWakeEvent({ type: 'error', funcname, durationMs: performance.now() - started, error: asError(err) });
      return false;
    }
  }

  #gearman(): GearmanClient | Promise<GearmanClient> {
    this.#client ??= import('../gearman/index.ts').then(
      ({ GearmanClient }) =>
        new GearmanClient({ servers: this.#servers as readonly ServerSpec[], submitTimeout: this.#submitTimeout }),
    );
    return this.#client;
  }

  /** Sends what is queued, then closes the gearman client if this notifier opened it. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    if (this.#servers !== undefined && this.#client !== undefined) {
      const client = await this.#client;
      await client.close();
    }
  }
}

/**
 * A worker's gearman registrations for its functions' wake-ups while `work()` runs: each wake-up job calls
 * `onWake(funcname)` and completes at once.
 */
export class GearmanWakeUpListener {
  readonly #prefix: string;
  readonly #servers: readonly ServerSpec[] | undefined;
  readonly #given: GearmanWorker | undefined;
  readonly #onWake: (funcname: string) => void;
  readonly #names = new Set<string>();
  #worker: GearmanWorker | undefined;
  #starting: Promise<void> | undefined;
  #stopped = false;

  constructor(options: SchwartzWakeOnOptions, onWake: (funcname: string) => void) {
    if (options === null || typeof options !== 'object') throw invalidArgument('wakeOn must be { gearman }');
    this.#prefix = functionPrefix(options.functionPrefix);
    this.#servers = serverList(options.gearman, 'wakeOn');
    if (this.#servers === undefined) {
      const worker = options.gearman as GearmanWorker;
      if (worker === null || typeof worker !== 'object' || typeof worker.register !== 'function') {
        throw invalidArgument('wakeOn.gearman must be a GearmanWorker or a list of job servers');
      }
      this.#given = worker;
    }
    this.#onWake = onWake;
  }

  /** Registers `funcnames` (and any added later) until {@link stop}. */
  start(funcnames: Iterable<string>): Promise<void> {
    for (const name of funcnames) this.#names.add(name);
    this.#starting ??= (async () => {
      let worker: GearmanWorker;
      try {
        worker =
          this.#given ??
          new (await import('../gearman/index.ts')).GearmanWorker({ servers: this.#servers as readonly ServerSpec[] });
      } catch (err) {
        // Never fails work(): without wake-ups the worker polls, as it would without `wakeOn`.
        for (const funcname of this.#names)
          publishWakeEvent({ type: 'error', funcname, durationMs: 0, error: asError(err) });
        return;
      }
      if (this.#stopped) {
        if (worker !== this.#given) await worker.close();
        return;
      }
      this.#worker = worker;
      for (const name of this.#names) this.#register(name);
    })();
    return this.#starting;
  }

  /** One more function to listen for. */
  add(funcname: string): void {
    this.#names.add(funcname);
    if (this.#worker !== undefined) this.#register(funcname);
  }

  #register(funcname: string): void {
    try {
      (this.#worker as GearmanWorker).register(`${this.#prefix}${funcname}`, (job: WorkerJob) => {
        publishWakeEvent({ type: 'received', funcname, server: job.server });
        this.#onWake(funcname);
      });
    } catch (err) {
      // A name gearman refuses (over 512 bytes): this function goes without wake-ups and is polled as before.
      publishWakeEvent({ type: 'error', funcname, durationMs: 0, error: asError(err) });
    }
  }

  /** Unregisters from a given worker, or closes the one opened here. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#starting;
    const worker = this.#worker;
    this.#worker = undefined;
    this.#starting = undefined;
    this.#stopped = false;
    if (worker === undefined) return;
    if (worker === this.#given) for (const name of this.#names) worker.unregister(`${this.#prefix}${name}`);
    else await worker.close();
  }
}
