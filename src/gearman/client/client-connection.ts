/**
 * The client side of one connection to one job server: which reply belongs to which request, and which job a
 * WORK_* packet is about.
 *
 * ```
 *  requests ──▶ [ replies FIFO: submit, submit, status, … ] ◀── JOB_CREATED / STATUS_RES / OPTION_RES / ERROR
 *                                                                 (the server answers a connection in order)
 *  JOB_CREATED(handle) ──▶ byHandle: handle → WireJob { listeners } ◀── WORK_DATA / STATUS / COMPLETE / FAIL …
 *  fg submit with a unique ──▶ byKey: function\0unique → WireJob (joined locally, never sent twice)
 * ```
 *
 * Foreground submissions of the same (function, unique) on one connection are joined here before they reach the
 * server. The server would coalesce them too, but it keeps one listener per submission and sends every WORK_*
 * packet once per listener, so two submissions on one connection would each see every update twice. A
 * {@link WireJob} therefore lives until the job ends (or the connection does), whether or not anyone still listens.
 *
 * A request whose answer nobody waits for any more (timed out, aborted) stays in the FIFO: its answer still arrives
 * and must be matched and dropped.
 *
 * @module
 */

import { REQUEST, RESPONSE, splitArguments } from '../protocol/packet-codec.ts';
import { PacketConnection } from './connection.ts';
import { publishServerEvent } from './diagnostics.ts';
import { GearmanError } from './errors.ts';
import type { JobListener } from './foreground-job.ts';
import type { ServerSlot } from './server-list.ts';

/** One request waiting for its direct answer. */
export interface ReplyWaiter {
  /** The response type that answers it (ERROR answers any). */
  readonly expects: number;
  reply(data: Buffer): void;
  /** ERROR packet, or the connection was lost after the request may have been sent. */
  error(error: GearmanError): void;
  /** The connection never connected: the request was not sent. */
  unsent(error: GearmanError): void;
}

/** A submission, encoded arguments ready. */
export interface WireSubmission {
  /** SUBMIT_* packet type. */
  readonly type: number;
  readonly functionName: string;
  /** Packet arguments: function, unique, [epoch,] payload. */
  readonly args: readonly Buffer[];
  /** Key joining foreground submissions locally (`function\0unique`), or undefined when they never join. */
  readonly joinKey: string | undefined;
}

/** What a {@link ClientConnection} reports to the client. */
export interface ClientConnectionEvents {
  /** The connection closed; `established` false means it never connected (nothing was sent). */
  closed(conn: ClientConnection, error: GearmanError, established: boolean): void;
}

/** Options of {@link ClientConnection}. */
export interface ClientConnectionOptions {
  readonly connectTimeout: number;
  readonly keepAlive: number;
  readonly maxPacketSize: number;
  /** Send OPTION_REQ "exceptions" first. */
  readonly exceptions: boolean;
  readonly events: ClientConnectionEvents;
}

/** One job on the server that this connection waits for, and everyone here who waits for it. */
class WireJob {
  readonly joinKey: string | undefined;
  handle: string | undefined;
  readonly listeners = new Set<JobListener>();
  /** Until the job ends or the connection does; only live wire jobs count as work. */
  live = true;

  constructor(joinKey: string | undefined) {
    this.joinKey = joinKey;
  }
}

/** A FIFO with O(1) push and shift. */
class Fifo<T> {
  #items: Array<T | undefined> = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  drain(): T[] {
    const out = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return out;
  }
}

const EMPTY = Buffer.alloc(0);

/** The handle at the start of a WORK_* packet (gearmand ends WORK_FAIL's lone handle with a NUL). */
function handleOf(data: Buffer): { handle: string; rest: Buffer } {
  const nul = data.indexOf(0);
  if (nul < 0) return { handle: data.toString('latin1'), rest: EMPTY };
  return { handle: data.toString('latin1', 0, nul), rest: data.subarray(nul + 1) };
}

/** A number field of a status packet (an empty or garbled field reads as 0). */
export function statusNumber(field: Buffer | undefined): number {
  if (field === undefined || field.length === 0) return 0;
  const n = Number(field.toString('latin1'));
  return Number.isFinite(n) ? n : 0;
}

/** The client's half of one connection. */
export class ClientConnection {
  readonly slot: ServerSlot;
  readonly #o: ClientConnectionOptions;
  readonly #conn: PacketConnection;
  readonly #replies = new Fifo<ReplyWaiter>();
  readonly #byHandle = new Map<string, WireJob>();
  readonly #byKey = new Map<string, WireJob>();
  /** Wire jobs with at least one listener (they keep the process alive). */
  #listened = 0;
  #refed = true;

  constructor(slot: ServerSlot, options: ClientConnectionOptions) {
    this.slot = slot;
    this.#o = options;
    this.#conn = new PacketConnection({
      host: slot.host,
      port: slot.port,
      name: slot.name,
      connectTimeout: options.connectTimeout,
      keepAlive: options.keepAlive,
      maxPacketSize: options.maxPacketSize,
      events: {
        connect: () => publishServerEvent({ type: 'connect', role: 'client', server: slot.name }),
        packet: (type, data) => this.#onPacket(type, data),
        close: (error, established) => this.#onClose(error, established),
      },
    });
    if (options.exceptions) {
      this.#conn.send(REQUEST.OPTION_REQ, ['exceptions']);
      this.#replies.push({ expects: RESPONSE.OPTION_RES, reply() {}, error() {}, unsent() {} });
    }
  }

  /** `host:port`. */
  get name(): string {
    return this.slot.name;
  }

  /** Requests sent (or queued) whose answer has not arrived. */
  get awaitingReplies(): number {
    return this.#replies.length;
  }

  /** True once the socket closed. */
  get closed(): boolean {
    return this.#conn.closed;
  }

  /** Sends a request whose answer goes to `waiter`. */
  request(type: number, args: readonly (Buffer | string)[], waiter: ReplyWaiter): void {
    this.#conn.send(type, args);
    this.#replies.push(waiter);
    this.#updateRef();
  }

  /**
   * Submits a foreground job for `listener`, or joins the same (function, unique) already submitted on this
   * connection. Returns the function to call when the listener stops waiting on its own (timeout, abort).
   */
  submitForeground(sub: WireSubmission, listener: JobListener): () => void {
    const key = sub.joinKey;
    let wire = key === undefined ? undefined : this.#byKey.get(key);
    if (wire !== undefined) {
      this.#listen(wire, listener);
      if (wire.handle !== undefined) listener.created(wire.handle, this.name);
      return this.#detacher(wire, listener);
    }
    wire = new WireJob(key);
    if (key !== undefined) this.#byKey.set(key, wire);
    this.#listen(wire, listener);
    const job = wire;
    this.request(sub.type, sub.args, {
      expects: RESPONSE.JOB_CREATED,
      reply: (data) => {
        const handle = data.toString('latin1');
        job.handle = handle;
        const other = this.#byHandle.get(handle);
        if (other !== undefined && other !== job) {
          // The server joined two submissions we did not (unique `-` with equal payloads): keep one wire job. Its
          // updates now come twice (once per submission); that is the server's doing and cannot be told apart.
          this.#forget(job);
          for (const l of job.listeners) this.#listen(other, l);
          for (const l of job.listeners) l.created(handle, this.name);
          return;
        }
        this.#byHandle.set(handle, job);
        for (const l of job.listeners) l.created(handle, this.name);
      },
      error: (error) => this.#end(job, error),
      unsent: (error) => {
        this.#forget(job);
        for (const l of [...job.listeners]) l.reroute(error);
      },
    });
    return this.#detacher(wire, listener);
  }

  #detacher(wire: WireJob, listener: JobListener): () => void {
    return () => {
      // After a merge (see the JOB_CREATED handler) the listener sits on the surviving wire job instead.
      const target = wire.live ? wire : this.#byHandle.get(wire.handle ?? '');
      if (target === undefined || !target.listeners.delete(listener)) return;
      if (target.listeners.size === 0 && target.live) this.#listened--;
      this.#updateRef();
    };
  }

  /** Writes what is queued and ends the socket. */
  end(): Promise<void> {
    return this.#conn.end();
  }

  /** Closes the socket now; everything waiting fails with `error`. */
  destroy(error: GearmanError): void {
    this.#conn.destroy(error);
  }

  #listen(wire: WireJob, listener: JobListener): void {
    if (wire.listeners.has(listener)) return;
    if (wire.listeners.size === 0 && wire.live) this.#listened++;
    wire.listeners.add(listener);
    this.#updateRef();
  }

  #forget(wire: WireJob): void {
    if (!wire.live) return;
    wire.live = false;
    if (wire.joinKey !== undefined && this.#byKey.get(wire.joinKey) === wire) this.#byKey.delete(wire.joinKey);
    if (wire.handle !== undefined && this.#byHandle.get(wire.handle) === wire) this.#byHandle.delete(wire.handle);
    if (wire.listeners.size > 0) this.#listened--;
    this.#updateRef();
  }

  /** The job ended (or the wait did): every listener learns it, the wire job is forgotten. */
  #end(wire: WireJob, error: GearmanError | undefined, data?: Buffer): void {
    this.#forget(wire);
    const listeners = [...wire.listeners];
    wire.listeners.clear();
    for (const l of listeners) {
      if (error === undefined) l.complete(data!);
      else l.fail(error);
    }
  }

  /** An idle socket must not keep the process alive; one with work must. */
  #updateRef(): void {
    const busy = this.#replies.length > 0 || this.#listened > 0;
    if (busy !== this.#refed) {
      this.#refed = busy;
      this.#conn.keepAlive(busy);
    }
  }

  #protocolError(message: string): void {
    this.#conn.destroy(new GearmanError('GEARMAN_ERR_PROTOCOL', message, { server: this.name }));
  }

  #onPacket(type: number, data: Buffer): void {
    switch (type) {
      case RESPONSE.WORK_DATA:
      case RESPONSE.WORK_WARNING:
      case RESPONSE.WORK_STATUS:
      case RESPONSE.WORK_COMPLETE:
      case RESPONSE.WORK_FAIL:
      case RESPONSE.WORK_EXCEPTION:
        this.#onWork(type, data);
        return;
      case RESPONSE.JOB_CREATED:
      case RESPONSE.STATUS_RES:
      case RESPONSE.STATUS_RES_UNIQUE:
      case RESPONSE.OPTION_RES:
      case RESPONSE.ECHO_RES:
      case RESPONSE.ERROR: {
        const waiter = this.#replies.shift();
        if (waiter === undefined) {
          this.#protocolError(`the server sent a reply (type ${type}) to no request`);
          return;
        }
        if (type === RESPONSE.ERROR) {
          const [code, text] = splitArguments(data, 2).args;
          const serverCode = code!.toString('latin1');
          waiter.error(
            new GearmanError('GEARMAN_ERR_SERVER_ERROR', `${serverCode}: ${text!.toString('latin1')}`, {
              server: this.name,
              serverCode,
            }),
          );
        } else if (waiter.expects !== type) {
          waiter.error(new GearmanError('GEARMAN_ERR_PROTOCOL', 'unexpected reply', { server: this.name }));
          this.#protocolError(`the server answered a request with the wrong reply (type ${type})`);
          return;
        } else waiter.reply(data);
        this.#updateRef();
        return;
      }
      default:
        // NOOP, NO_JOB, JOB_ASSIGN*: worker packets on a client connection.
        this.#protocolError(`the server sent a worker packet (type ${type}) to a client`);
    }
  }

  #onWork(type: number, data: Buffer): void {
    const { handle, rest } = handleOf(data);
    const wire = this.#byHandle.get(handle);
    if (wire === undefined) return; // a job nobody here waits for any more
    switch (type) {
      case RESPONSE.WORK_DATA:
      case RESPONSE.WORK_WARNING: {
        if (wire.listeners.size === 0) return;
        const update = { type: type === RESPONSE.WORK_DATA ? 'data' : 'warning', data: Buffer.from(rest) } as const;
        for (const l of wire.listeners) l.update(update);
        return;
      }
      case RESPONSE.WORK_STATUS: {
        const [numerator, denominator] = splitArguments(rest, 2).args;
        const update = {
          type: 'status',
          numerator: statusNumber(numerator),
          denominator: statusNumber(denominator),
        } as const;
        for (const l of wire.listeners) l.update(update);
        return;
      }
      case RESPONSE.WORK_COMPLETE:
        this.#end(wire, undefined, Buffer.from(rest));
        return;
      case RESPONSE.WORK_FAIL:
        this.#end(wire, new GearmanError('GEARMAN_ERR_WORK_FAIL', undefined, { server: this.name, handle }));
        return;
      default: {
        const exception = Buffer.from(rest);
        const text = exception.toString('utf8', 0, Math.min(exception.length, 512));
        this.#end(
          wire,
          new GearmanError('GEARMAN_ERR_WORK_EXCEPTION', text === '' ? undefined : `job threw: ${text}`, {
            server: this.name,
            handle,
            data: exception,
          }),
        );
      }
    }
  }

  #onClose(error: GearmanError, established: boolean): void {
    // The client first (a server that never connected is marked dead), then the requests (rerouted past it).
    this.#o.events.closed(this, error, established);
    const waiters = this.#replies.drain();
    const wires = new Set([...this.#byHandle.values(), ...this.#byKey.values()]);
    this.#byHandle.clear();
    this.#byKey.clear();
    for (const wire of wires) wire.live = false;
    this.#listened = 0;
    if (established) {
      publishServerEvent({ type: 'disconnect', role: 'client', server: this.name, error });
      // Submissions waiting for JOB_CREATED fail through their waiter; jobs already created fail here.
      for (const w of waiters) w.error(error);
      for (const wire of wires) {
        if (wire.handle === undefined) continue;
        const failed = new GearmanError(error.code, `${error.message}; job ${wire.handle} lost`, {
          handle: wire.handle,
          cause: error,
        });
        for (const l of [...wire.listeners]) l.fail(failed);
      }
    } else {
      for (const w of waiters) w.unsent(error);
    }
  }
}
