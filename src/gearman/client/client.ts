/**
 * `GearmanClient`: submits jobs to a cluster of gearman job servers (gearmand 1.1 or this project's server).
 *
 * Layers: `../protocol/packet-codec.ts` (bytes) → `connection.ts` (one socket, batched writes) →
 * `client-connection.ts` (replies matched to requests, WORK_* to jobs) → this file (the cluster: placement and
 * failover from `server-list.ts`, timeouts, abort, close) → `foreground-job.ts` (what `submitJob` returns).
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { REQUEST, RESPONSE, splitArguments } from '../protocol/packet-codec.ts';
import { functionNameBytes, invalid, millis, type Payload, toBuffer, uniqueBytes } from './arguments.ts';
import { ClientConnection, statusNumber, type WireSubmission } from './client-connection.ts';
import { type JobEvent, jobChannel, publishServerEvent } from './diagnostics.ts';
import { GearmanError } from './errors.ts';
import { ForegroundJob, JobRun } from './foreground-job.ts';
import { parseServer, ServerList, type ServerSlot, type ServerSpec } from './server-list.ts';

export type { Payload };

/** Job priority: which of the server's three queues the job joins. */
export type JobPriority = 'high' | 'normal' | 'low';

/** Options of {@link GearmanClient}. Times are milliseconds; 0 means "no limit". */
export interface GearmanClientOptions {
  /** The job servers (default `['127.0.0.1:4730']`). Order matters for placement, as in Perl's client. */
  servers?: readonly ServerSpec[];
  /**
   * Ask each server for WORK_EXCEPTION packets (OPTION_REQ "exceptions", once per connection), so a job whose
   * worker threw rejects with `GEARMAN_ERR_WORK_EXCEPTION` and the worker's message rather than a bare
   * `GEARMAN_ERR_WORK_FAIL`. Default true.
   */
  exceptions?: boolean;
  /** Until JOB_CREATED (default 10 000). */
  submitTimeout?: number;
  /** Until a foreground job's result, counted from the submission (default 0: none). */
  resultTimeout?: number;
  /** TCP connect (default 1000). */
  connectTimeout?: number;
  /** How long a server that failed to connect is skipped (default 2000). */
  retryTimeout?: number;
  /** Requests waiting for an answer per server before new ones are refused (default 10 000). */
  maxQueue?: number;
  /** TCP keep-alive initial delay (default 0: off). */
  keepAlive?: number;
  /** Largest packet accepted from a server (default 64 MiB). */
  maxPacketSize?: number;
}

/** Options of one call. */
export interface CallOptions {
  /** Aborts the wait (the job, once submitted, goes on running on the server). */
  signal?: AbortSignal;
}

/** Options of {@link GearmanClient.submitJob}. */
export interface SubmitJobOptions extends CallOptions {
  /**
   * The job's unique id (at most 64 bytes): the server runs one job per (function, unique) and gives its result to
   * every submitter, and the client sends a unique id to the same server whatever client submits it. `-` keys the
   * job on its payload. Default: none (never coalesced, round robin across servers).
   */
  unique?: string;
  /** Default `'normal'`. */
  priority?: JobPriority;
  /** Overrides the client's `submitTimeout`. */
  submitTimeout?: number;
  /** Overrides the client's `resultTimeout`. */
  resultTimeout?: number;
}

/** Options of {@link GearmanClient.submitBackground}. */
export interface SubmitBackgroundOptions extends CallOptions {
  /** The job's unique id (at most 64 bytes). Default: a random UUID, so persistent queues keep every job. */
  unique?: string;
  /** Default `'normal'`. Not with `runAt`. */
  priority?: JobPriority;
  /**
   * Do not run the job before this time: a `Date`, or milliseconds since the epoch like `Date.now()` (sent as
   * SUBMIT_JOB_EPOCH, rounded up to the second; normal priority only).
   */
  runAt?: Date | number;
  /** Overrides the client's `submitTimeout`. */
  submitTimeout?: number;
}

/** Options of the status calls. */
export interface StatusOptions extends CallOptions {
  /** Ask this server (`host:port`, one of the client's servers). */
  server?: string;
  /** Default: the client's `submitTimeout`. */
  timeout?: number;
}

/** A background job the server accepted. */
export interface BackgroundJob {
  readonly handle: string;
  /** The job server (`host:port`) that holds it: pass the object to {@link GearmanClient.getStatus}. */
  readonly server: string;
  readonly functionName: string;
  readonly unique: string;
}

/** Answer to GET_STATUS. */
export interface JobStatus {
  readonly handle: string;
  readonly server: string;
  /** The server knows the job (queued or running); false once it finished or for a foreign handle. */
  readonly known: boolean;
  readonly running: boolean;
  /** The last WORK_STATUS (0/0 before any). */
  readonly numerator: number;
  readonly denominator: number;
}

/** Answer to GET_STATUS_UNIQUE. */
export interface UniqueJobStatus {
  readonly unique: string;
  readonly server: string;
  readonly known: boolean;
  readonly running: boolean;
  readonly numerator: number;
  readonly denominator: number;
  /** Foreground clients waiting for the job. */
  readonly waitingClients: number;
}

const SUBMIT_TYPE = {
  foreground: { high: REQUEST.SUBMIT_JOB_HIGH, normal: REQUEST.SUBMIT_JOB, low: REQUEST.SUBMIT_JOB_LOW },
  background: { high: REQUEST.SUBMIT_JOB_HIGH_BG, normal: REQUEST.SUBMIT_JOB_BG, low: REQUEST.SUBMIT_JOB_LOW_BG },
} as const;

interface ClientSlot extends ServerSlot {
  conn: ClientConnection | undefined;
}

interface Settings {
  readonly exceptions: boolean;
  readonly submitTimeout: number;
  readonly resultTimeout: number;
  readonly connectTimeout: number;
  readonly retryTimeout: number;
  readonly maxQueue: number;
  readonly keepAlive: number;
  readonly maxPacketSize: number;
}

function priorityOf(priority: JobPriority | undefined): JobPriority {
  if (priority === undefined) return 'normal';
  if (priority !== 'high' && priority !== 'normal' && priority !== 'low') {
    throw invalid(`priority must be 'high', 'normal' or 'low', got ${String(priority)}`);
  }
  return priority;
}

/** Something the client waits for, failed all at once by `destroy()`. */
interface Outstanding {
  fail(error: GearmanError): void;
}

/**
 * One request with a direct answer (a background submission, a status query): settles once, with its own deadline
 * and abort signal; the FIFO entry stays (its answer is dropped) when it settles first.
 */
class PendingCall<T> implements Outstanding {
  readonly #resolve: (value: T) => void;
  readonly #reject: (error: GearmanError) => void;
  readonly #signal: AbortSignal | undefined;
  readonly #done: (call: PendingCall<T>, error: GearmanError | undefined) => void;
  #timer: NodeJS.Timeout | undefined;
  settled = false;
  /** The server it went to last. */
  server: string | undefined;

  constructor(
    resolve: (value: T) => void,
    reject: (error: GearmanError) => void,
    timeoutMs: number,
    what: string,
    signal: AbortSignal | undefined,
    done: (call: PendingCall<T>, error: GearmanError | undefined) => void,
  ) {
    this.#resolve = resolve;
    this.#reject = reject;
    this.#signal = signal;
    this.#done = done;
    if (signal?.aborted) {
      this.#abort();
      return;
    }
    signal?.addEventListener('abort', this.#abort, { once: true });
    if (timeoutMs > 0) {
      this.#timer = setTimeout(() => {
        this.fail(
          new GearmanError('GEARMAN_ERR_TIMEOUT', `${what} timed out after ${timeoutMs} ms`, { server: this.server }),
        );
      }, timeoutMs);
    }
  }

  readonly #abort = (): void => {
    this.fail(new GearmanError('GEARMAN_ERR_ABORTED', undefined, { server: this.server, cause: this.#signal?.reason }));
  };

  #finish(error: GearmanError | undefined): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#abort);
    this.#done(this, error);
    return true;
  }

  succeed(value: T): void {
    if (this.#finish(undefined)) this.#resolve(value);
  }

  fail(error: GearmanError): void {
    if (this.#finish(error)) this.#reject(error);
  }
}

/**
 * A gearman client over several job servers.
 *
 * - **Placement:** a job with a unique id goes to the server its id hashes to (Perl `Gearman::Client`'s hash, so
 *   both clients agree), and to the next live server when that one is down; jobs without one go round robin.
 * - **Failing fast:** a server that failed to connect is skipped for `retryTimeout` ms; submissions that never
 *   reached it go to the next server. `submitTimeout` bounds the wait for JOB_CREATED, `resultTimeout` the wait for
 *   the result; every call takes an `AbortSignal`.
 * - **Pipelining:** one connection per server carries every request; requests made in one event loop turn go out
 *   in one write.
 *
 * @example
 * const client = new GearmanClient({ servers: ['10.0.0.1:4730', '10.0.0.2:4730'] });
 * const reversed = await client.submitJob('reverse', 'hello'); // Buffer 'olleh'
 * const { handle } = await client.submitBackground('send_mail', JSON.stringify(mail), { unique: `mail:${id}` });
 * await client.close();
 */
export class GearmanClient {
  readonly #s: Settings;
  readonly #list: ServerList<ClientSlot>;
  readonly #outstanding = new Set<Outstanding>();
  #closing = false;
  #closed: Promise<void> | undefined;
  #idle: (() => void) | undefined;

  constructor(options: GearmanClientOptions = {}) {
    const specs = options.servers ?? ['127.0.0.1:4730'];
    if (!Array.isArray(specs)) throw invalid('servers must be an array');
    const slots: ClientSlot[] = specs.map((spec) => ({ ...parseServer(spec), deadUntil: 0, conn: undefined }));
    this.#s = {
      exceptions: options.exceptions ?? true,
      submitTimeout: millis(options.submitTimeout, 10_000, 'submitTimeout'),
      resultTimeout: millis(options.resultTimeout, 0, 'resultTimeout'),
      connectTimeout: millis(options.connectTimeout, 1000, 'connectTimeout'),
      retryTimeout: millis(options.retryTimeout, 2000, 'retryTimeout'),
      maxQueue: millis(options.maxQueue, 10_000, 'maxQueue'),
      keepAlive: millis(options.keepAlive, 0, 'keepAlive'),
      maxPacketSize: millis(options.maxPacketSize, 64 * 1024 * 1024, 'maxPacketSize'),
    };
    this.#list = new ServerList(slots, this.#s.retryTimeout);
  }

  /** The servers, as `host:port`, in placement order. */
  get servers(): string[] {
    return this.#list.servers.map((s) => s.name);
  }

  /**
   * Submits a foreground job. The returned {@link ForegroundJob} is a promise of the result (the WORK_COMPLETE
   * data) and an async iterator of the job's updates. Foreground jobs of the same (function, unique) submitted
   * through one client share one submission.
   */
  submitJob(functionName: string, payload?: Payload, options: SubmitJobOptions = {}): ForegroundJob {
    const fn = functionNameBytes(functionName);
    const unique = options.unique ?? '';
    const uniqueBuf = uniqueBytes(unique);
    const data = toBuffer(payload);
    const type = SUBMIT_TYPE.foreground[priorityOf(options.priority)];
    const sub: WireSubmission = {
      type,
      functionName,
      args: [fn, uniqueBuf, data],
      joinKey:
        unique === '' ? undefined : `${functionName}\0${unique === '-' ? `-\0${data.toString('latin1')}` : unique}`,
    };
    const hashKey = unique === '' ? undefined : unique === '-' ? data : uniqueBuf;
    let tried: Set<ClientSlot> | undefined;
    let current: ClientSlot | undefined;
    let detach: (() => void) | undefined;
    let lastError: GearmanError | undefined;
    const dispatch = (run: JobRun): void => {
      const slot = this.#pick(hashKey, tried);
      current = slot;
      if (slot === undefined) {
        run.fail(this.#noServers(lastError));
        return;
      }
      const conn = this.#connectionFor(slot);
      if (conn.awaitingReplies >= this.#s.maxQueue) {
        run.fail(this.#queueFull(slot));
        return;
      }
      run.server = slot.name;
      this.#publish({ type: 'submit', functionName, server: slot.name, background: false });
      detach = conn.submitForeground(sub, run);
    };
    const run = new JobRun({
      functionName,
      unique,
      submitTimeout: millis(options.submitTimeout, this.#s.submitTimeout, 'submitTimeout'),
      resultTimeout: millis(options.resultTimeout, this.#s.resultTimeout, 'resultTimeout'),
      signal: options.signal,
      reroute: (r, error) => {
        lastError = error;
        tried ??= new Set();
        if (current !== undefined) tried.add(current);
        detach = undefined;
        dispatch(r);
      },
      settled: (r, error) => {
        detach?.();
        this.#outstanding.delete(r);
        this.#publishEnd(r.functionName, r.server, false, r.handle, r.startedAt, error);
        this.#checkIdle();
      },
    });
    const job = new ForegroundJob(run);
    if (!run.open) return job; // aborted already
    if (this.#closing) {
      run.fail(new GearmanError('GEARMAN_ERR_CLOSED'));
      return job;
    }
    this.#outstanding.add(run);
    dispatch(run);
    return job;
  }

  /** Submits a background job; resolves once the server accepted it (JOB_CREATED). */
  submitBackground(
    functionName: string,
    payload?: Payload,
    options: SubmitBackgroundOptions = {},
  ): Promise<BackgroundJob> {
    const fn = functionNameBytes(functionName);
    const unique = options.unique ?? randomUUID();
    const uniqueBuf = uniqueBytes(unique);
    const data = toBuffer(payload);
    let type: number;
    let args: Buffer[];
    if (options.runAt !== undefined) {
      if (options.priority !== undefined && options.priority !== 'normal') {
        throw invalid('runAt jobs (SUBMIT_JOB_EPOCH) have normal priority');
      }
      const ms = options.runAt instanceof Date ? options.runAt.getTime() : options.runAt;
      if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw invalid('runAt must be a Date or a time');
      type = REQUEST.SUBMIT_JOB_EPOCH;
      args = [fn, uniqueBuf, Buffer.from(String(Math.ceil(ms / 1000)), 'latin1'), data];
    } else {
      type = SUBMIT_TYPE.background[priorityOf(options.priority)];
      args = [fn, uniqueBuf, data];
    }
    const timeout = millis(options.submitTimeout, this.#s.submitTimeout, 'submitTimeout');
    const hashKey = unique === '' ? undefined : unique === '-' ? data : uniqueBuf;
    const startedAt = performance.now();
    return new Promise<BackgroundJob>((resolve, reject) => {
      let tried: Set<ClientSlot> | undefined;
      let lastError: GearmanError | undefined;
      let handle: string | undefined;
      const call = new PendingCall<BackgroundJob>(
        resolve,
        reject,
        timeout,
        'background submission',
        options.signal,
        (c, error) => {
          this.#outstanding.delete(c);
          this.#publishEnd(functionName, c.server, true, handle, startedAt, error);
          this.#checkIdle();
        },
      );
      if (call.settled) return;
      if (this.#closing) {
        call.fail(new GearmanError('GEARMAN_ERR_CLOSED'));
        return;
      }
      this.#outstanding.add(call);
      const dispatch = (): void => {
        if (call.settled) return;
        const slot = this.#pick(hashKey, tried);
        if (slot === undefined) {
          call.fail(this.#noServers(lastError));
          return;
        }
        const conn = this.#connectionFor(slot);
        if (conn.awaitingReplies >= this.#s.maxQueue) {
          call.fail(this.#queueFull(slot));
          return;
        }
        call.server = slot.name;
        this.#publish({ type: 'submit', functionName, server: slot.name, background: true });
        conn.request(type, args, {
          expects: RESPONSE.JOB_CREATED,
          reply: (reply) => {
            handle = reply.toString('latin1');
            call.succeed({ handle, server: slot.name, functionName, unique });
          },
          error: (error) => call.fail(error),
          unsent: (error) => {
            lastError = error;
            tried ??= new Set();
            tried.add(slot);
            dispatch();
          },
        });
      };
      dispatch();
    });
  }

  /**
   * Asks for a job's status by handle (GET_STATUS). Give the object {@link submitBackground} resolved with (or
   * `options.server`): handles are only unique per server. With a bare handle and several servers, every server is
   * asked in turn until one knows the job.
   */
  getStatus(job: string | { handle: string; server?: string }, options: StatusOptions = {}): Promise<JobStatus> {
    const handle = typeof job === 'string' ? job : job?.handle;
    if (typeof handle !== 'string' || handle === '' || handle.includes('\0')) throw invalid('invalid job handle');
    const named = options.server ?? (typeof job === 'string' ? undefined : job.server);
    const slots = named === undefined ? [...this.#list.servers] : [this.#slotNamed(named)];
    return this.#askInOrder(slots, options, 'GET_STATUS', (conn, call) => {
      conn.request(REQUEST.GET_STATUS, [handle], {
        expects: RESPONSE.STATUS_RES,
        reply: (data) => {
          const [h, known, running, num, den] = splitArguments(data, 5).args;
          call.succeed({
            handle: h!.toString('latin1'),
            server: conn.name,
            known: statusNumber(known) !== 0,
            running: statusNumber(running) !== 0,
            numerator: statusNumber(num),
            denominator: statusNumber(den),
          });
        },
        error: (error) => call.fail(error),
        unsent: (error) => call.fail(error),
      });
    });
  }

  /**
   * Asks for a job's status by unique id (GET_STATUS_UNIQUE), first at the server the id hashes to, then at the
   * others until one knows it (a failover may have put the job elsewhere).
   */
  getStatusUnique(unique: string, options: StatusOptions = {}): Promise<UniqueJobStatus> {
    const uniqueBuf = uniqueBytes(unique);
    if (unique === '') throw invalid('unique must not be empty');
    let slots: ClientSlot[];
    if (options.server !== undefined) slots = [this.#slotNamed(options.server)];
    else {
      const servers = this.#list.servers;
      const n = servers.length;
      const first = n === 0 ? 0 : servers.indexOf(this.#list.pick(uniqueBuf) ?? servers[0]!);
      slots = servers.map((_, i) => servers[(first + i) % n]!);
    }
    return this.#askInOrder(slots, options, 'GET_STATUS_UNIQUE', (conn, call) => {
      conn.request(REQUEST.GET_STATUS_UNIQUE, [uniqueBuf], {
        expects: RESPONSE.STATUS_RES_UNIQUE,
        reply: (data) => {
          const [u, known, running, num, den, waiting] = splitArguments(data, 6).args;
          call.succeed({
            unique: u!.toString('utf8'),
            server: conn.name,
            known: statusNumber(known) !== 0,
            running: statusNumber(running) !== 0,
            numerator: statusNumber(num),
            denominator: statusNumber(den),
            waitingClients: statusNumber(waiting),
          });
        },
        error: (error) => call.fail(error),
        unsent: (error) => call.fail(error),
      });
    });
  }

  /**
   * Stops taking new calls, waits for every call in progress to settle (foreground jobs to finish, submissions to
   * be answered), then closes the connections.
   */
  close(): Promise<void> {
    this.#closing = true;
    this.#closed ??= (async () => {
      if (this.#outstanding.size > 0) {
        await new Promise<void>((resolve) => {
          this.#idle = resolve;
        });
      }
      await Promise.all(this.#list.servers.map((s) => s.conn?.end()));
    })();
    return this.#closed;
  }

  /** Fails every call in progress with `error` (default `GEARMAN_ERR_CLOSED`) and closes the connections now. */
  destroy(error?: Error): void {
    this.#closing = true;
    const reason =
      error instanceof GearmanError
        ? error
        : new GearmanError('GEARMAN_ERR_CLOSED', error === undefined ? 'client destroyed' : error.message, {
            cause: error,
          });
    for (const call of [...this.#outstanding]) call.fail(reason);
    for (const slot of this.#list.servers) slot.conn?.destroy(reason);
    this.#idle?.();
  }

  #checkIdle(): void {
    if (this.#outstanding.size === 0 && this.#idle !== undefined) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle();
    }
  }

  #pick(hashKey: Buffer | undefined, tried: ReadonlySet<ClientSlot> | undefined): ClientSlot | undefined {
    return this.#list.pick(hashKey, tried);
  }

  #slotNamed(name: string): ClientSlot {
    const wanted = parseServer(name).name;
    const slot = this.#list.servers.find((s) => s.name === wanted);
    if (slot === undefined) throw invalid(`${name} is not one of the client's servers`);
    return slot;
  }

  #noServers(cause: GearmanError | undefined): GearmanError {
    return new GearmanError(
      'GEARMAN_ERR_NO_SERVERS',
      this.#list.servers.length === 0 ? 'no job servers configured' : 'every job server is down',
      { cause },
    );
  }

  #queueFull(slot: ClientSlot): GearmanError {
    return new GearmanError('GEARMAN_ERR_QUEUE_FULL', `${this.#s.maxQueue} requests already wait`, {
      server: slot.name,
    });
  }

  #connectionFor(slot: ClientSlot): ClientConnection {
    const existing = slot.conn;
    if (existing !== undefined && !existing.closed) return existing;
    const conn = new ClientConnection(slot, {
      connectTimeout: this.#s.connectTimeout,
      keepAlive: this.#s.keepAlive,
      maxPacketSize: this.#s.maxPacketSize,
      exceptions: this.#s.exceptions,
      events: {
        closed: (c, error, established) => {
          if (slot.conn === c) slot.conn = undefined;
          if (!established && error.code === 'GEARMAN_ERR_CONNECT') {
            this.#list.markDead(slot);
            publishServerEvent({ type: 'dead', role: 'client', server: slot.name, error });
          }
        },
      },
    });
    slot.conn = conn;
    return conn;
  }

  /** Asks each server in turn until one knows the job; the last answer (or error) otherwise. */
  #askInOrder<T extends { known: boolean }>(
    slots: ClientSlot[],
    options: StatusOptions,
    what: string,
    send: (conn: ClientConnection, call: PendingCall<T>) => void,
  ): Promise<T> {
    if (this.#closing) return Promise.reject(new GearmanError('GEARMAN_ERR_CLOSED'));
    if (slots.length === 0) return Promise.reject(this.#noServers(undefined));
    const timeout = millis(options.timeout, this.#s.submitTimeout, 'timeout');
    const ask = (slot: ClientSlot): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        // close() may have finished between two servers' answers: open no new connection then.
        if (this.#closing) {
          reject(new GearmanError('GEARMAN_ERR_CLOSED'));
          return;
        }
        const call = new PendingCall<T>(resolve, reject, timeout, what, options.signal, (c, _error) => {
          this.#outstanding.delete(c);
          this.#checkIdle();
        });
        if (call.settled) return;
        this.#outstanding.add(call);
        call.server = slot.name;
        if (!this.#list.isLive(slot)) {
          call.fail(new GearmanError('GEARMAN_ERR_CONNECT', 'server marked dead', { server: slot.name }));
          return;
        }
        const conn = this.#connectionFor(slot);
        if (conn.awaitingReplies >= this.#s.maxQueue) call.fail(this.#queueFull(slot));
        else send(conn, call);
      });
    return (async () => {
      let answer: T | undefined;
      let failure: unknown;
      for (const slot of slots) {
        try {
          answer = await ask(slot);
          if (answer.known) return answer;
        } catch (err) {
          if (isAbortOrClose(err)) throw err;
          failure ??= err;
        }
      }
      if (answer !== undefined) return answer;
      throw failure;
    })();
  }

  #publish(event: JobEvent): void {
    if (jobChannel.hasSubscribers) jobChannel.publish(event);
  }

  #publishEnd(
    functionName: string,
    server: string | undefined,
    background: boolean,
    handle: string | undefined,
    startedAt: number,
    error: GearmanError | undefined,
  ): void {
    if (!jobChannel.hasSubscribers) return;
    const durationMs = performance.now() - startedAt;
    if (error !== undefined) {
      jobChannel.publish({
        type: 'error',
        functionName,
        server,
        background,
        handle,
        durationMs,
        code: error.code,
        error,
      } satisfies JobEvent);
    } else {
      jobChannel.publish({
        type: background ? 'created' : 'complete',
        functionName,
        server: server ?? '',
        background,
        handle: handle ?? '',
        durationMs,
      } satisfies JobEvent);
    }
  }
}

function isAbortOrClose(err: unknown): boolean {
  return err instanceof GearmanError && (err.code === 'GEARMAN_ERR_ABORTED' || err.code === 'GEARMAN_ERR_CLOSED');
}
