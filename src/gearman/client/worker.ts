/**
 * `GearmanWorker`: runs jobs for registered functions, from several job servers at once, up to `concurrency` at a
 * time.
 *
 * Per server one connection ({@link PacketConnection}) and this state machine:
 *
 * ```
 *            connect ─▶ SET_CLIENT_ID?, CAN_DO/CAN_DO_TIMEOUT × functions ─▶ awake
 *  awake:    GRAB_JOB_UNIQ × k (pipelined; k from the free slots) ──▶ JOB_ASSIGN_UNIQ: run it
 *                                                                 └─▶ NO_JOB: exhausted
 *  exhausted and no grab left unanswered ─▶ PRE_SLEEP ─▶ asleep
 *  asleep:   NOOP (or `pollInterval` passed) ─▶ awake
 *  closed:   jobs of this connection are dropped (the server requeues them) ─▶ reconnect after a backoff
 * ```
 *
 * Free slots are `concurrency - running - unanswered grabs`, across servers, so the worker never holds more jobs
 * than it runs; they are handed out one grab at a time round robin over the awake connections.
 *
 * A handler's outcome is always reported, so no job stays "running" on the server: a return value becomes
 * WORK_COMPLETE; a thrown error becomes WORK_EXCEPTION with the error's message (gearmand 1.1 and our server end
 * the job on it and send clients without the exceptions option a WORK_FAIL), or WORK_FAIL with `exceptions: false`
 * or when the error is a `GearmanError` with code `GEARMAN_ERR_WORK_FAIL`. Nothing is sent after WORK_EXCEPTION:
 * a WORK_FAIL after it (what Perl's `Gearman::Worker` does) only earns an `ERROR JOB_NOT_FOUND` from gearmand 1.1.
 * A job that runs past its `timeout` is ended by the worker itself (WORK_EXCEPTION "job ran longer than N ms", or
 * WORK_FAIL), because the server's CAN_DO_TIMEOUT timer is unreliable with concurrency (see {@link GearmanWorker}'s
 * `#timedOut`). A job whose connection closed is dropped: the server requeues it, as it does for any worker that goes
 * away. Either way the handler's `signal` is aborted and its result is dropped.
 *
 * @module
 */

import { REQUEST, RESPONSE, splitArguments } from '../protocol/packet-codec.ts';
import { functionNameBytes, invalid, millis, type Payload, toBuffer } from './arguments.ts';
import { PacketConnection } from './connection.ts';
import { publishServerEvent, type WorkEvent, workChannel } from './diagnostics.ts';
import { GearmanError } from './errors.ts';
import { parseServer, type ServerAddress, type ServerSpec } from './server-list.ts';

/** What a handler receives. */
export interface WorkerJob {
  /** The job handle given by the server. */
  readonly handle: string;
  readonly functionName: string;
  /** The unique id the client gave (empty when none). */
  readonly unique: string;
  readonly payload: Buffer;
  /** The job server (`host:port`) the job came from. */
  readonly server: string;
  /**
   * Aborted when the job's `timeout` passes (reason `GEARMAN_ERR_TIMEOUT`), its connection closes
   * (`GEARMAN_ERR_CONNECTION`), or the worker is destroyed (`GEARMAN_ERR_CLOSED`): the result would be dropped.
   */
  readonly signal: AbortSignal;
  /** WORK_DATA: a piece of the result, passed on to waiting clients. */
  sendData(data: Payload): void;
  /** WORK_WARNING. */
  sendWarning(data: Payload): void;
  /** WORK_STATUS: progress, kept by the server for status queries and passed on to waiting clients. */
  sendStatus(numerator: number, denominator: number): void;
}

/** Runs one job: the value returned is the result (WORK_COMPLETE); a throw fails the job. */
// biome-ignore lint/suspicious/noConfusingVoidType: a handler that returns nothing (`async () => {}`) is valid.
export type JobHandler = (job: WorkerJob) => Payload | undefined | void | Promise<Payload | undefined | void>;

/** Options of {@link GearmanWorker.register}. */
export interface RegisterOptions {
  /**
   * Run-time limit in ms. Past it the worker fails the job (WORK_EXCEPTION "job ran longer than N ms", or WORK_FAIL
   * without `exceptions`), aborts the job's `signal` and drops the handler's result. It is also sent to the server
   * (CAN_DO_TIMEOUT), which requeues the job if the worker cannot report at all (an event loop blocked for good).
   */
  timeout?: number;
}

/** Options of {@link GearmanWorker}. Times are milliseconds. */
export interface GearmanWorkerOptions {
  /** The job servers (default `['127.0.0.1:4730']`); the worker takes jobs from all of them. */
  servers?: readonly ServerSpec[];
  /** Jobs run at once, across servers (default 1). */
  concurrency?: number;
  /** SET_CLIENT_ID: the name shown by the admin `workers` command. */
  clientId?: string;
  /** A thrown error is sent as WORK_EXCEPTION with its message (default true) or as WORK_FAIL. */
  exceptions?: boolean;
  /** TCP connect (default 1000). */
  connectTimeout?: number;
  /** First delay before reconnecting (default 100); doubles per failure up to `maxReconnectDelay`. */
  reconnectDelay?: number;
  /** Longest delay before reconnecting (default 5000). */
  maxReconnectDelay?: number;
  /**
   * While asleep, grab again after this long without a NOOP (default 10 000, libgearman's
   * `GEARMAN_WORKER_WAIT_TIMEOUT`): gearmand sends no NOOP when an epoch job falls due. 0: never.
   */
  pollInterval?: number;
  /** TCP keep-alive initial delay (default 0: off). */
  keepAlive?: number;
  /** Largest packet accepted from a server (default 64 MiB). */
  maxPacketSize?: number;
}

interface Registration {
  readonly name: Buffer;
  readonly handler: JobHandler;
  /** 0: none. */
  readonly timeout: number;
}

/** One server: its connection and where the grab loop stands. */
interface WorkerLink {
  readonly address: ServerAddress;
  conn: PacketConnection | undefined;
  /** Connected and registered. */
  ready: boolean;
  /** GRAB_JOB_UNIQ sent, not yet answered. */
  outstanding: number;
  /** A NO_JOB came: no more grabs until the link has slept. */
  exhausted: boolean;
  /** PRE_SLEEP sent; waiting for NOOP. */
  sleeping: boolean;
  pollTimer: NodeJS.Timeout | undefined;
  reconnectTimer: NodeJS.Timeout | undefined;
  /** Failed connection attempts in a row. */
  failures: number;
  readonly jobs: Set<ActiveJob>;
}

const EMPTY = Buffer.alloc(0);

/** A job being run. */
class ActiveJob implements WorkerJob {
  readonly handle: string;
  readonly functionName: string;
  readonly unique: string;
  readonly payload: Buffer;
  readonly server: string;
  readonly startedAt = performance.now();
  /** The connection the job came on: results go there or nowhere. */
  readonly conn: PacketConnection;
  readonly #controller = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  /** Why the result will be dropped, once it will. */
  dropped: GearmanError | undefined;
  finished = false;

  constructor(
    conn: PacketConnection,
    handle: string,
    functionName: string,
    unique: string,
    payload: Buffer,
    timeout: number,
    onTimeout: (job: ActiveJob, message: string) => void,
  ) {
    this.conn = conn;
    this.handle = handle;
    this.functionName = functionName;
    this.unique = unique;
    this.payload = payload;
    this.server = conn.name;
    if (timeout > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (this.finished || this.dropped !== undefined) return;
        const message = `job ran longer than ${timeout} ms`;
        onTimeout(this, message);
        this.drop(new GearmanError('GEARMAN_ERR_TIMEOUT', message, { server: this.server, handle }));
      }, timeout);
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The result will not be sent: abort the handler's signal. */
  drop(reason: GearmanError): void {
    if (this.finished || this.dropped !== undefined) return;
    this.dropped = reason;
    clearTimeout(this.#timer);
    this.#controller.abort(reason);
  }

  /** True while packets about this job may be sent. */
  get live(): boolean {
    return !this.finished && this.dropped === undefined && !this.conn.closed;
  }

  finish(): void {
    this.finished = true;
    clearTimeout(this.#timer);
  }

  sendData(data: Payload): void {
    if (this.live) this.conn.send(REQUEST.WORK_DATA, [this.handle, toBuffer(data, 'data')]);
  }

  sendWarning(data: Payload): void {
    if (this.live) this.conn.send(REQUEST.WORK_WARNING, [this.handle, toBuffer(data, 'a warning')]);
  }

  sendStatus(numerator: number, denominator: number): void {
    if (!Number.isFinite(numerator) || !Number.isFinite(denominator)) {
      throw invalid('status numerator and denominator must be finite numbers');
    }
    if (this.live) this.conn.send(REQUEST.WORK_STATUS, [this.handle, String(numerator), String(denominator)]);
  }
}

/**
 * A gearman worker over several job servers.
 *
 * @example
 * const worker = new GearmanWorker({ servers: ['10.0.0.1:4730', '10.0.0.2:4730'], concurrency: 8 });
 * worker.register('reverse', (job) => Buffer.from(job.payload).reverse());
 * worker.register('resize', async (job) => {
 *   job.sendStatus(0, 1);
 *   const out = await resize(job.payload, { signal: job.signal });
 *   return out;
 * }, { timeout: 60_000 });
 * process.once('SIGTERM', () => worker.close()); // finishes running jobs, then disconnects
 */
export class GearmanWorker {
  readonly #links: WorkerLink[];
  readonly #functions = new Map<string, Registration>();
  readonly #concurrency: number;
  readonly #clientId: string | undefined;
  readonly #exceptions: boolean;
  readonly #connectTimeout: number;
  readonly #reconnectDelay: number;
  readonly #maxReconnectDelay: number;
  readonly #pollInterval: number;
  readonly #keepAlive: number;
  readonly #maxPacketSize: number;
  #running = 0;
  #next = 0;
  #started = false;
  #closing = false;
  #closed: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  constructor(options: GearmanWorkerOptions = {}) {
    const specs = options.servers ?? ['127.0.0.1:4730'];
    if (!Array.isArray(specs) || specs.length === 0) throw invalid('servers must be a non-empty array');
    this.#links = specs.map((spec) => ({
      address: parseServer(spec),
      conn: undefined,
      ready: false,
      outstanding: 0,
      exhausted: false,
      sleeping: false,
      pollTimer: undefined,
      reconnectTimer: undefined,
      failures: 0,
      jobs: new Set(),
    }));
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw invalid('concurrency must be a positive integer');
    this.#concurrency = concurrency;
    if (options.clientId !== undefined && (typeof options.clientId !== 'string' || options.clientId.includes('\0'))) {
      throw invalid('clientId must be a string without NUL');
    }
    this.#clientId = options.clientId;
    this.#exceptions = options.exceptions ?? true;
    this.#connectTimeout = millis(options.connectTimeout, 1000, 'connectTimeout');
    this.#reconnectDelay = millis(options.reconnectDelay, 100, 'reconnectDelay');
    this.#maxReconnectDelay = millis(options.maxReconnectDelay, 5000, 'maxReconnectDelay');
    this.#pollInterval = millis(options.pollInterval, 10_000, 'pollInterval');
    this.#keepAlive = millis(options.keepAlive, 0, 'keepAlive');
    this.#maxPacketSize = millis(options.maxPacketSize, 64 * 1024 * 1024, 'maxPacketSize');
  }

  /** Jobs running now. */
  get running(): number {
    return this.#running;
  }

  /** The registered function names. */
  get functions(): string[] {
    return [...this.#functions.keys()];
  }

  /**
   * Registers (or replaces) the handler of `functionName` on every server (CAN_DO, or CAN_DO_TIMEOUT with
   * `timeout`). The first registration connects the worker.
   */
  register(functionName: string, handler: JobHandler, options: RegisterOptions = {}): this {
    if (this.#closing) throw new GearmanError('GEARMAN_ERR_CLOSED', 'worker closed');
    const name = functionNameBytes(functionName);
    if (typeof handler !== 'function') throw invalid('handler must be a function');
    const timeout = millis(options.timeout, 0, 'timeout');
    if (!Number.isInteger(timeout)) throw invalid('timeout must be a whole number of milliseconds');
    const registration: Registration = { name, handler, timeout };
    const previous = this.#functions.get(functionName);
    this.#functions.set(functionName, registration);
    // Same function, same timeout: only the handler changes (gearmand would count a second CAN_DO twice).
    if (previous === undefined || previous.timeout !== timeout) {
      for (const link of this.#links) {
        if (!link.ready) continue;
        if (previous !== undefined) link.conn!.send(REQUEST.CANT_DO, [name]);
        this.#sendCanDo(link, registration);
        // Jobs of the new function may be queued already: a sleeping connection would not hear of them.
        this.#wake(link);
      }
    }
    if (!this.#started) {
      this.#started = true;
      for (const link of this.#links) this.#connect(link);
    } else this.#pump();
    return this;
  }

  /**
   * Stops taking jobs of `functionName` (CANT_DO); jobs of it already running finish. A job of it that a grab
   * already in flight brings back is failed (WORK_FAIL) rather than held.
   */
  unregister(functionName: string): boolean {
    const registration = this.#functions.get(functionName);
    if (registration === undefined) return false;
    this.#functions.delete(functionName);
    for (const link of this.#links) if (link.ready) link.conn!.send(REQUEST.CANT_DO, [registration.name]);
    return true;
  }

  /**
   * Stops grabbing, lets the running jobs finish and report, then disconnects. With `deadlineMs`, jobs still running
   * then are dropped ({@link destroy}): the servers requeue them.
   */
  close(deadlineMs?: number): Promise<void> {
    if (this.#closed !== undefined) return this.#closed;
    this.#closing = true;
    for (const link of this.#links) {
      clearTimeout(link.pollTimer);
      clearTimeout(link.reconnectTimer);
      link.pollTimer = undefined;
      link.reconnectTimer = undefined;
      // Not connected: nothing to wait for.
      if (!link.ready) link.conn?.destroy(new GearmanError('GEARMAN_ERR_CLOSED', 'worker closed'));
    }
    this.#closed = (async () => {
      if (!this.#isDrained()) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          this.#drained = resolve;
          if (deadlineMs !== undefined) {
            timer = setTimeout(() => {
              this.destroy(new GearmanError('GEARMAN_ERR_CLOSED', `jobs still running after ${deadlineMs} ms`));
              resolve();
            }, deadlineMs);
          }
        });
        clearTimeout(timer);
      }
      await Promise.all(this.#links.map((link) => link.conn?.end()));
    })();
    return this.#closed;
  }

  /**
   * Disconnects now: running jobs are dropped (their `signal` aborts with `error`, default `GEARMAN_ERR_CLOSED`) and
   * the servers requeue them.
   */
  destroy(error?: Error): void {
    this.#closing = true;
    const reason =
      error instanceof GearmanError
        ? error
        : new GearmanError('GEARMAN_ERR_CLOSED', error?.message ?? 'worker destroyed', { cause: error });
    for (const link of this.#links) {
      clearTimeout(link.pollTimer);
      clearTimeout(link.reconnectTimer);
      link.pollTimer = undefined;
      link.reconnectTimer = undefined;
      for (const job of link.jobs) job.drop(reason);
      link.conn?.destroy(reason);
    }
    this.#closed ??= Promise.resolve();
    const drained = this.#drained;
    this.#drained = undefined;
    drained?.();
  }

  #connect(link: WorkerLink): void {
    link.reconnectTimer = undefined;
    if (this.#closing) return;
    const conn = new PacketConnection({
      host: link.address.host,
      port: link.address.port,
      name: link.address.name,
      connectTimeout: this.#connectTimeout,
      keepAlive: this.#keepAlive,
      maxPacketSize: this.#maxPacketSize,
      events: {
        connect: () => this.#onConnect(link, conn),
        packet: (type, data) => this.#onPacket(link, conn, type, data),
        close: (error, established) => this.#onClose(link, conn, error, established),
      },
    });
    link.conn = conn;
  }

  #onConnect(link: WorkerLink, conn: PacketConnection): void {
    if (link.conn !== conn) return;
    link.ready = true;
    link.failures = 0;
    link.outstanding = 0;
    link.exhausted = false;
    link.sleeping = false;
    publishServerEvent({ type: 'connect', role: 'worker', server: conn.name });
    if (this.#clientId !== undefined) conn.send(REQUEST.SET_CLIENT_ID, [Buffer.from(this.#clientId, 'utf8')]);
    for (const registration of this.#functions.values()) this.#sendCanDo(link, registration);
    this.#pump();
  }

  #sendCanDo(link: WorkerLink, { name, timeout }: Registration): void {
    if (timeout > 0) link.conn!.send(REQUEST.CAN_DO_TIMEOUT, [name, String(timeout)]);
    else link.conn!.send(REQUEST.CAN_DO, [name]);
  }

  #onClose(link: WorkerLink, conn: PacketConnection, error: GearmanError, established: boolean): void {
    if (link.conn !== conn) return;
    link.conn = undefined;
    link.ready = false;
    link.outstanding = 0;
    link.exhausted = false;
    link.sleeping = false;
    clearTimeout(link.pollTimer);
    link.pollTimer = undefined;
    for (const job of link.jobs) {
      job.drop(
        error.code === 'GEARMAN_ERR_CLOSED'
          ? error
          : new GearmanError('GEARMAN_ERR_CONNECTION', `connection lost: ${error.message}`, {
              server: conn.name,
              handle: job.handle,
              cause: error,
            }),
      );
    }
    publishServerEvent({ type: established ? 'disconnect' : 'dead', role: 'worker', server: conn.name, error });
    if (this.#closing) {
      this.#checkDrained();
      return;
    }
    // Back off: 100, 200, 400 … ms (±50 % jitter so a restarted server is not hit by every worker at once).
    const base = Math.min(this.#maxReconnectDelay, this.#reconnectDelay * 2 ** link.failures);
    link.failures = Math.min(link.failures + 1, 30);
    const delay = established ? Math.min(base, this.#reconnectDelay) : base * (0.5 + Math.random() / 2);
    link.reconnectTimer = setTimeout(() => this.#connect(link), delay);
    this.#pump();
  }

  #onPacket(link: WorkerLink, conn: PacketConnection, type: number, data: Buffer): void {
    if (link.conn !== conn) return;
    switch (type) {
      case RESPONSE.NO_JOB:
        if (link.outstanding > 0) link.outstanding--;
        link.exhausted = true;
        this.#maybeSleep(link);
        this.#pump();
        this.#checkDrained();
        return;
      case RESPONSE.JOB_ASSIGN:
      case RESPONSE.JOB_ASSIGN_UNIQ:
      case RESPONSE.JOB_ASSIGN_ALL: {
        if (link.outstanding > 0) link.outstanding--;
        const count = type === RESPONSE.JOB_ASSIGN ? 3 : type === RESPONSE.JOB_ASSIGN_UNIQ ? 4 : 5;
        const args = splitArguments(data, count).args;
        const handle = args[0]!.toString('latin1');
        const functionName = args[1]!.toString('utf8');
        const unique = count > 3 ? args[2]!.toString('utf8') : '';
        this.#run(link, conn, handle, functionName, unique, Buffer.from(args[count - 1]!));
        this.#maybeSleep(link);
        return;
      }
      case RESPONSE.NOOP:
        this.#wake(link);
        this.#pump();
        return;
      case RESPONSE.ERROR: {
        // JOB_NOT_FOUND for a job the server requeued meanwhile, …: nothing waits for it.
        const [code, text] = splitArguments(data, 2).args;
        const serverCode = code!.toString('latin1');
        publishServerEvent({
          type: 'error',
          role: 'worker',
          server: conn.name,
          error: new GearmanError('GEARMAN_ERR_SERVER_ERROR', `${serverCode}: ${text!.toString('latin1')}`, {
            server: conn.name,
            serverCode,
          }),
        });
        return;
      }
      case RESPONSE.ECHO_RES:
      case RESPONSE.OPTION_RES:
        return;
      default:
        conn.destroy(
          new GearmanError('GEARMAN_ERR_PROTOCOL', `the server sent a client packet (type ${type}) to a worker`, {
            server: conn.name,
          }),
        );
    }
  }

  /** The link may grab again (NOOP, poll, a new registration). */
  #wake(link: WorkerLink): void {
    link.sleeping = false;
    link.exhausted = false;
    clearTimeout(link.pollTimer);
    link.pollTimer = undefined;
  }

  /** After the last unanswered grab of a round that saw NO_JOB: PRE_SLEEP (the server NOOPs when a job comes). */
  #maybeSleep(link: WorkerLink): void {
    if (!link.exhausted || link.outstanding > 0 || link.sleeping || this.#closing || !link.ready) return;
    link.sleeping = true;
    link.conn!.send(REQUEST.PRE_SLEEP);
    if (this.#pollInterval > 0) {
      link.pollTimer = setTimeout(() => {
        this.#wake(link);
        this.#pump();
      }, this.#pollInterval);
    }
  }

  /** Hands the free slots out as grabs, one at a time round robin over the awake links. */
  #pump(): void {
    if (this.#closing || this.#functions.size === 0) return;
    const links = this.#links;
    let free = this.#concurrency - this.#running;
    for (const link of links) free -= link.outstanding;
    let idle = 0;
    while (free > 0 && idle < links.length) {
      const link = links[this.#next]!;
      this.#next = (this.#next + 1) % links.length;
      if (!link.ready || link.sleeping || link.exhausted) {
        idle++;
        continue;
      }
      idle = 0;
      link.outstanding++;
      free--;
      link.conn!.send(REQUEST.GRAB_JOB_UNIQ);
    }
  }

  #run(
    link: WorkerLink,
    conn: PacketConnection,
    handle: string,
    functionName: string,
    unique: string,
    payload: Buffer,
  ): void {
    const registration = this.#functions.get(functionName);
    if (registration === undefined) {
      // Unregistered while the grab was in flight: give the job back as failed rather than hold it.
      conn.send(REQUEST.WORK_FAIL, [handle]);
      this.#pump();
      return;
    }
    const job = new ActiveJob(conn, handle, functionName, unique, payload, registration.timeout, this.#timedOut);
    this.#running++;
    link.jobs.add(job);
    if (workChannel.hasSubscribers) {
      workChannel.publish({ type: 'start', functionName, server: conn.name, handle } satisfies WorkEvent);
    }
    let result: ReturnType<JobHandler>;
    try {
      result = registration.handler(job);
    } catch (err) {
      this.#finish(link, job, undefined, err);
      return;
    }
    if (isThenable(result)) {
      result.then(
        (value) => this.#finish(link, job, value, undefined),
        (err: unknown) => this.#finish(link, job, undefined, err ?? new Error('job rejected')),
      );
    } else this.#finish(link, job, result, undefined);
  }

  /**
   * A job ran past its `timeout`: end it now (WORK_EXCEPTION, or WORK_FAIL without `exceptions`). The server's own
   * CAN_DO_TIMEOUT timer cannot be relied on: gearmand cancels it when the connection sends PRE_SLEEP, which a
   * worker running several jobs does while one of them is still running. The slot stays taken until the handler
   * returns; its result is dropped.
   */
  readonly #timedOut = (job: ActiveJob, message: string): void => {
    if (!job.live) return;
    if (this.#exceptions) job.conn.send(REQUEST.WORK_EXCEPTION, [job.handle, Buffer.from(message, 'utf8')]);
    else job.conn.send(REQUEST.WORK_FAIL, [job.handle]);
  };

  #finish(link: WorkerLink, job: ActiveJob, value: ReturnType<JobHandler>, thrown: unknown): void {
    let data: Buffer = EMPTY;
    if (thrown === undefined) {
      try {
        data = toBuffer(value as Payload | undefined, 'a job result');
      } catch (err) {
        thrown = err;
      }
    }
    const live = job.live;
    job.finish();
    link.jobs.delete(job);
    this.#running--;
    const conn = job.conn;
    const durationMs = performance.now() - job.startedAt;
    const { functionName, handle } = job;
    const server = conn.name;
    if (!live) {
      if (workChannel.hasSubscribers) {
        const error = job.dropped ?? new GearmanError('GEARMAN_ERR_CONNECTION', undefined, { server, handle });
        workChannel.publish({
          type: 'error',
          functionName,
          server,
          handle,
          durationMs,
          outcome: 'dropped',
          error,
        } satisfies WorkEvent);
      }
    } else if (thrown === undefined) {
      conn.send(REQUEST.WORK_COMPLETE, [handle, data]);
      if (workChannel.hasSubscribers) {
        workChannel.publish({ type: 'end', functionName, server, handle, durationMs } satisfies WorkEvent);
      }
    } else {
      const error = thrown instanceof Error ? thrown : new Error(String(thrown));
      const fail = !this.#exceptions || (error instanceof GearmanError && error.code === 'GEARMAN_ERR_WORK_FAIL');
      if (fail) conn.send(REQUEST.WORK_FAIL, [handle]);
      else conn.send(REQUEST.WORK_EXCEPTION, [handle, Buffer.from(error.message || error.name, 'utf8')]);
      if (workChannel.hasSubscribers) {
        workChannel.publish({
          type: 'error',
          functionName,
          server,
          handle,
          durationMs,
          outcome: fail ? 'fail' : 'exception',
          error,
        } satisfies WorkEvent);
      }
    }
    this.#pump();
    this.#checkDrained();
  }

  #isDrained(): boolean {
    return this.#running === 0 && this.#links.every((link) => link.outstanding === 0 || !link.ready);
  }

  #checkDrained(): void {
    if (this.#drained === undefined || !this.#isDrained()) return;
    const drained = this.#drained;
    this.#drained = undefined;
    drained();
  }
}

/** A promise, or any thenable a handler may return (another promise library's). */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
