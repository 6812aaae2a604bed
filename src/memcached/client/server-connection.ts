/**
 * One socket to one memcached server, pipelined: requests are written back to back (all the requests of one event
 * loop turn in one corked write) and their replies come back in the same order, so the connection keeps a FIFO of
 * written requests and hands each reply to the oldest one.
 *
 * ```
 *  enqueue ──▶ [ queued … ] ──flush (setImmediate, cork)──▶ socket ──▶ [ in flight … ] ──reply──▶ settle
 *                 │ timeout/abort: dropped lazily                        │ abort: abandoned (its reply is still read)
 *                 │ connect fails: failed with the connect error         │ timeout: socket destroyed, all fail
 * ```
 *
 * What is queued is a {@link Pending}: one wire request and whoever waits for it — one caller
 * ({@link PendingRequest}) or several (a coalesced get, `coalesced-get.ts`, whose request is encoded only when it is
 * written).
 *
 * Timeouts cost no timer per request: every request carries its deadline, and the connection keeps one timer, armed
 * for the earliest deadline it knows of. When it fires, the queue and the FIFO are swept, expired requests fail, and
 * the timer is re-armed for the earliest deadline left. Requests mostly share one timeout and complete long before
 * it, so the timer fires about once per `timeout` while the connection is busy.
 *
 * A request that times out after it was written destroys the socket: nobody can tell where its reply would have
 * ended, so every other in-flight request fails with `MEMCACHED_ERR_CONNECTION_CLOSED` (cause: the timeout).
 * Requests not yet written stay queued for the next connection. Reconnection policy (backoff, dead marking) is the
 * owner's ({@link ConnectionEvents}); this class only reports.
 *
 * @module
 */

import { connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions as TlsOptions, connect as tlsConnect } from 'node:tls';
import type { CommandCodec, ReplyParser, WireRequest } from './commands.ts';
import { MemcacheError } from './errors.ts';

/** Where a {@link Pending} stands. */
export type RequestState = 'queued' | 'written' | 'abandoned' | 'done';

/** What a connection queues and keeps in flight: one wire request and the caller(s) waiting for it. */
export interface Pending {
  /** The wire request; read once {@link markWritten} was called (a coalesced get is encoded then). */
  readonly request: WireRequest<unknown>;
  readonly state: RequestState;
  /** True while some caller still waits for it. */
  readonly open: boolean;
  /** The earliest deadline (`performance.now()` ms) of a caller still waiting; `Infinity` for none. */
  readonly deadline: number;
  /** The request's bytes are about to be handed to the socket. */
  markWritten(): void;
  /** All replies are in (or none were expected): settles the callers with the result. */
  complete(server: string): void;
  /** Fails every caller still waiting (no-op for those already settled). */
  fail(error: MemcacheError): void;
  /**
   * Fails the callers whose deadline is at or before `now` with `MEMCACHED_ERR_TIMEOUT`. Returns the timeout error
   * when one of them was already written (the connection must then be closed), else undefined.
   */
  expire(now: number, server: string): MemcacheError | undefined;
}

/** The `MEMCACHED_ERR_TIMEOUT` of a request of `command` with a timeout of `ms`. */
export function timeoutError(command: string, ms: number, server: string): MemcacheError {
  return new MemcacheError('MEMCACHED_ERR_TIMEOUT', `${command} timed out after ${ms} ms`, { server });
}

/** A request with one caller: the wire request plus how it settles. */
export class PendingRequest<T = unknown> implements Pending {
  readonly request: WireRequest<T>;
  readonly deadline: number;
  readonly #timeoutMs: number;
  /** Stored type-erased so that a `PendingRequest<T>` is a `PendingRequest<unknown>` (the FIFO holds any). */
  readonly #resolve: (value: unknown) => void;
  readonly #reject: (err: Error) => void;
  readonly #onSettled: (error: MemcacheError | undefined) => void;
  #state: RequestState = 'queued';

  /**
   * @param onSettled called once, when the caller's promise settles (with the error, if any)
   * @param timeoutMs the request's timeout, counted from now (`Infinity`: none)
   */
  constructor(
    request: WireRequest<T>,
    resolve: (value: T) => void,
    reject: (err: Error) => void,
    onSettled: (error: MemcacheError | undefined) => void,
    timeoutMs = Number.POSITIVE_INFINITY,
  ) {
    this.request = request;
    this.#resolve = resolve as (value: unknown) => void;
    this.#reject = reject;
    this.#onSettled = onSettled;
    this.#timeoutMs = timeoutMs;
    this.deadline = timeoutMs === Number.POSITIVE_INFINITY ? timeoutMs : performance.now() + timeoutMs;
  }

  /** Where the request stands. */
  get state(): RequestState {
    return this.#state;
  }

  /** True until the caller's promise has settled. */
  get open(): boolean {
    return this.#state === 'queued' || this.#state === 'written';
  }

  /** The request's bytes were handed to the socket. */
  markWritten(): void {
    if (this.#state === 'queued') this.#state = 'written';
  }

  /** All replies are in (or none were expected): settles with the request's result. */
  complete(server: string): void {
    if (!this.open) {
      this.#state = 'done';
      return;
    }
    this.#state = 'done';
    let value: T;
    try {
      value = this.request.result(server);
    } catch (err) {
      const error =
        err instanceof MemcacheError
          ? err
          : new MemcacheError('MEMCACHED_ERR_PROTOCOL', 'could not read the reply', { server, cause: err });
      this.#onSettled(error);
      this.#reject(error);
      return;
    }
    this.#onSettled(undefined);
    this.#resolve(value);
  }

  /** Fails the request now (no-op when already settled). */
  fail(error: MemcacheError): void {
    if (!this.open) return;
    this.#state = 'done';
    this.#onSettled(error);
    this.#reject(error);
  }

  /**
   * Settles the caller with `error` but, when the request is already written, keeps it in the FIFO as abandoned so
   * that its reply is read and dropped.
   */
  abandon(error: MemcacheError): void {
    if (!this.open) return;
    const written = this.#state === 'written';
    this.fail(error);
    if (written) this.#state = 'abandoned';
  }

  expire(now: number, server: string): MemcacheError | undefined {
    if (!this.open || this.deadline > now) return undefined;
    const written = this.#state === 'written';
    const error = timeoutError(this.request.command, this.#timeoutMs, server);
    this.fail(error);
    return written ? error : undefined;
  }
}

/** A FIFO with O(1) push and shift (an array and a head index, compacted now and then). */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head]!;
    (this.#items as (T | undefined)[])[this.#head] = undefined;
    this.#head++;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Calls `fn` for every item, oldest first. */
  forEach(fn: (item: T) => void): void {
    const items = this.#items;
    for (let i = this.#head; i < items.length; i++) fn(items[i]!);
  }

  /** Removes and returns everything. */
  drain(): T[] {
    const out = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return out;
  }
}

/** What a connection reports to its owner. */
export interface ConnectionEvents {
  /** Connected (and authenticated): requests flow. */
  connected(conn: ServerConnection): void;
  /** The connection attempt failed; the requests that waited for it were failed with `error`. */
  connectFailed(conn: ServerConnection, error: MemcacheError): void;
  /** An established connection closed; `inFlight` says whether requests were lost with it. */
  lost(conn: ServerConnection, error: MemcacheError, inFlight: boolean): void;
  /** A request got its complete reply: the server is alive. */
  answered(conn: ServerConnection): void;
}

/** Options of {@link ServerConnection}. */
export interface ServerConnectionOptions {
  readonly host: string;
  readonly port: number;
  /** `host:port`, for errors and diagnostics. */
  readonly name: string;
  readonly codec: CommandCodec;
  readonly connectTimeout: number;
  /** TLS options, or undefined for plain TCP. */
  readonly tls: TlsOptions | undefined;
  /** TCP keep-alive initial delay in ms (0: off). */
  readonly keepAlive: number;
  readonly events: ConnectionEvents;
}

/** Where the socket stands. */
type ConnectionState = 'idle' | 'connecting' | 'ready' | 'closing' | 'destroyed';

const isIp = (host: string): boolean => /^[0-9.]+$/.test(host) || host.includes(':');

/** One pipelined connection to one server. */
export class ServerConnection {
  readonly #o: ServerConnectionOptions;
  #state: ConnectionState = 'idle';
  #socket: Socket | undefined;
  #parser: ReplyParser | undefined;
  #queue: Pending[] = [];
  readonly #inFlight = new Fifo<Pending>();
  /** True while the socket and the deadline timer keep the process alive (there is work). */
  #refed = false;
  /** The deadline timer, armed for {@link #timerAt}. */
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #flushScheduled = false;
  #needDrain = false;
  #connectTimer: NodeJS.Timeout | undefined;
  /** Why the socket is being closed, when we close it. */
  #closeReason: MemcacheError | undefined;
  /** The handshake request (SASL) while it runs. */
  #handshake: Pending | undefined;
  #closing = false;
  #drained: (() => void) | undefined;

  constructor(options: ServerConnectionOptions) {
    this.#o = options;
  }

  /** `host:port`. */
  get name(): string {
    return this.#o.name;
  }

  /** True when there is no socket and none is being opened. */
  get idle(): boolean {
    return this.#state === 'idle';
  }

  /** True when connected (and authenticated): requests are written. */
  get ready(): boolean {
    return this.#state === 'ready';
  }

  /** Requests queued or in flight (abandoned ones included: they still hold a reply slot). */
  get load(): number {
    return this.#queue.length + this.#inFlight.length;
  }

  /** Queues a request; it is written on the next flush once connected (call {@link connect} when {@link idle}). */
  enqueue(p: Pending): void {
    if (this.#state === 'destroyed') {
      p.fail(new MemcacheError('MEMCACHED_ERR_CLOSED', undefined, { server: this.name }));
      return;
    }
    this.#queue.push(p);
    // A socket with work keeps the process alive; an idle one does not (a forgotten close() never hangs exit).
    if (!this.#refed) {
      this.#refed = true;
      this.#socket?.ref();
      this.#timer?.ref();
    }
    this.watch(p.deadline);
    if (this.#state === 'ready') this.#scheduleFlush();
  }

  /** Makes sure the deadline timer fires by `deadline` (`performance.now()` ms). */
  watch(deadline: number): void {
    if (deadline >= this.#timerAt) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = deadline;
    this.#timer = setTimeout(this.#sweep, Math.max(1, Math.ceil(deadline - performance.now())));
    if (!this.#refed) this.#timer.unref();
  }

  /** Fails what is past its deadline; closes the socket when a written request timed out; re-arms the timer. */
  readonly #sweep = (): void => {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    let timedOut: MemcacheError | undefined;
    const check = (p: Pending): void => {
      if (!p.open) return;
      const error = p.expire(now, this.name);
      timedOut ??= error;
      if (p.open && p.deadline < next) next = p.deadline;
    };
    for (const p of this.#queue) check(p);
    this.#inFlight.forEach(check);
    if (timedOut !== undefined) {
      // Nobody can tell where the timed-out reply would have ended: the others in flight lose the connection.
      this.#closeSocket(
        new MemcacheError('MEMCACHED_ERR_CONNECTION_CLOSED', 'connection closed: another request timed out', {
          server: this.name,
          cause: timedOut,
        }),
      );
    }
    if (next !== Number.POSITIVE_INFINITY) this.watch(next);
    this.#checkDrained();
  };

  /** Writes what is queued now instead of at the end of the event loop turn (when connected and not blocked). */
  flushNow(): void {
    this.#flush();
  }

  /** A caller of a queued request settled on its own (an abort): `close()` may have been waiting for it. */
  noteSettled(): void {
    this.#checkDrained();
  }

  /** Opens the socket (and authenticates). */
  connect(): void {
    if (this.#state !== 'idle') return;
    this.#state = 'connecting';
    this.#closeReason = undefined;
    this.#parser = this.#o.codec.createParser();
    const { host, port } = this.#o;
    const socket =
      this.#o.tls === undefined
        ? netConnect({ host, port })
        : tlsConnect({ host, port, ...(isIp(host) ? {} : { servername: host }), ...this.#o.tls });
    this.#socket = socket;
    // connect() is called for queued work: the new socket keeps the process alive until it is idle.
    this.#refed = true;
    socket.setNoDelay(true);
    if (this.#o.keepAlive > 0) socket.setKeepAlive(true, this.#o.keepAlive);
    this.#connectTimer = setTimeout(() => {
      this.#closeSocket(
        new MemcacheError('MEMCACHED_ERR_CONNECT_TIMEOUT', `connect timed out after ${this.#o.connectTimeout} ms`, {
          server: this.name,
        }),
      );
    }, this.#o.connectTimeout);
    socket.once(this.#o.tls === undefined ? 'connect' : 'secureConnect', () => this.#onConnect(socket));
    socket.on('data', (chunk: Buffer) => this.#onData(socket, chunk));
    socket.on('error', (err) => {
      if (this.#socket !== socket) return;
      this.#closeReason ??=
        this.#state === 'connecting'
          ? new MemcacheError('MEMCACHED_ERR_CONNECT', `could not connect: ${err.message}`, {
              server: this.name,
              cause: err,
            })
          : new MemcacheError('MEMCACHED_ERR_CONNECTION_CLOSED', `connection lost: ${err.message}`, {
              server: this.name,
              cause: err,
            });
    });
    socket.once('close', () => this.#onClose(socket));
  }

  /** A request's signal fired. */
  abort(p: PendingRequest, error: MemcacheError): void {
    p.abandon(error);
    this.#checkDrained();
  }

  /** Fails every request that is queued and not yet written (the server was marked dead). */
  failQueued(error: MemcacheError): void {
    const queue = this.#queue;
    this.#queue = [];
    for (const p of queue) p.fail(error);
    this.#checkDrained();
  }

  /**
   * Ends the connection once every queued and in-flight request has settled (requests still arrive meanwhile: the
   * owner stops sending them).
   */
  close(): Promise<void> {
    this.#closing = true;
    return new Promise((resolve) => {
      this.#drained = resolve;
      this.#checkDrained();
    });
  }

  /** Closes the socket now, failing everything queued or in flight with `error`. */
  destroy(error: MemcacheError): void {
    const socket = this.#socket;
    this.#state = 'destroyed';
    clearTimeout(this.#connectTimer);
    this.#stopTimer();
    this.failQueued(error);
    for (const p of this.#inFlight.drain()) p.fail(error);
    this.#handshake?.fail(error);
    this.#socket = undefined;
    socket?.destroy();
    this.#drained?.();
  }

  #checkDrained(): void {
    if (!this.#closing || this.#drained === undefined) return;
    if (this.#queue.some((p) => p.open) || this.#inFlight.length > 0) return;
    const done = this.#drained;
    this.#drained = undefined;
    const socket = this.#socket;
    this.#state = 'destroyed';
    this.#socket = undefined;
    clearTimeout(this.#connectTimer);
    this.#stopTimer();
    if (socket === undefined || socket.destroyed) {
      done();
      return;
    }
    // An idle socket is unref'd: without this, a script ending in `await client.close()` would exit before the
    // 'close' event, with close() unsettled (exit code 13).
    socket.ref();
    socket.end();
    const force = setTimeout(() => socket.destroy(), 1000);
    force.unref();
    socket.once('close', () => {
      clearTimeout(force);
      done();
    });
  }

  #onConnect(socket: Socket): void {
    if (this.#socket !== socket) return;
    const handshake = this.#o.codec.handshake?.();
    if (handshake === undefined) {
      this.#becomeReady();
      return;
    }
    // Authentication runs before anything queued: its reply is the first on the connection.
    const p = new PendingRequest<void>(
      handshake,
      () => this.#becomeReady(),
      (err) => {
        // Bytes that are no reply stay a protocol error; any refusal (bad credentials, no SASL) is an auth error.
        const error = err as MemcacheError;
        this.#closeSocket(
          error.code === 'MEMCACHED_ERR_AUTH' || error.code === 'MEMCACHED_ERR_PROTOCOL'
            ? error
            : new MemcacheError('MEMCACHED_ERR_AUTH', `authentication failed: ${error.message}`, {
                server: this.name,
                cause: error,
              }),
        );
      },
      () => {},
    );
    this.#handshake = p;
    p.markWritten();
    this.#inFlight.push(p);
    socket.write(handshake.data);
  }

  #becomeReady(): void {
    if (this.#state !== 'connecting') return;
    this.#handshake = undefined;
    clearTimeout(this.#connectTimer);
    this.#state = 'ready';
    this.#o.events.connected(this);
    this.#scheduleFlush();
    this.#unrefWhenIdle();
  }

  #unrefWhenIdle(): void {
    if (this.#refed && this.#state === 'ready' && this.#queue.length === 0 && this.#inFlight.length === 0) {
      this.#refed = false;
      this.#socket?.unref();
      this.#timer?.unref();
    }
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Writes every queued request in one corked batch. */
  #flush(): void {
    const socket = this.#socket;
    if (this.#state !== 'ready' || socket === undefined || this.#needDrain) return;
    const queue = this.#queue;
    if (queue.length === 0) return;
    this.#queue = [];
    let ok = true;
    socket.cork();
    for (const p of queue) {
      if (p.state !== 'queued' || !p.open) continue;
      p.markWritten();
      ok = socket.write(p.request.data);
      if (p.request.expectsReply) this.#inFlight.push(p);
      else p.complete(this.name);
    }
    socket.uncork();
    this.#unrefWhenIdle();
    if (!ok) {
      this.#needDrain = true;
      socket.once('drain', () => {
        this.#needDrain = false;
        this.#flush();
      });
    }
    this.#checkDrained();
  }

  #onData(socket: Socket, chunk: Buffer): void {
    if (this.#socket !== socket) return;
    try {
      this.#parser!.push(chunk, this.#onReply);
    } catch (err) {
      const error =
        err instanceof MemcacheError
          ? new MemcacheError(err.code, err.message, { server: this.name, cause: err.cause })
          : new MemcacheError('MEMCACHED_ERR_PROTOCOL', 'could not parse the reply', { server: this.name, cause: err });
      // The request the bad bytes were meant for gets the protocol error; the others lose their connection.
      this.#inFlight.peek()?.fail(error);
      this.#closeSocket(error);
    }
  }

  readonly #onReply = (reply: unknown): void => {
    if (this.#socket === undefined) return;
    const p = this.#inFlight.peek();
    if (p === undefined) throw new MemcacheError('MEMCACHED_ERR_PROTOCOL', 'reply without a request');
    if (!p.request.feed(reply)) return;
    this.#inFlight.shift();
    p.complete(this.name);
    if (p !== this.#handshake) this.#o.events.answered(this);
    this.#unrefWhenIdle();
    this.#checkDrained();
  };

  /** Destroys the socket for `reason`; the `close` handler settles the requests. */
  #closeSocket(reason: MemcacheError): void {
    if (this.#socket === undefined) return;
    this.#closeReason ??= reason;
    // From now on nothing more is written to this socket: new requests wait for the next connection.
    if (this.#state === 'ready') this.#state = 'closing';
    this.#socket.destroy();
  }

  #onClose(socket: Socket): void {
    if (this.#socket !== socket) return;
    const wasConnecting = this.#state === 'connecting';
    clearTimeout(this.#connectTimer);
    this.#socket = undefined;
    this.#parser = undefined;
    this.#needDrain = false;
    this.#handshake = undefined;
    this.#state = this.#closing ? 'destroyed' : 'idle';
    const reason =
      this.#closeReason ??
      new MemcacheError(
        wasConnecting ? 'MEMCACHED_ERR_CONNECT' : 'MEMCACHED_ERR_CONNECTION_CLOSED',
        wasConnecting ? 'connection closed while connecting' : 'connection closed by the server',
        { server: this.name },
      );
    this.#closeReason = undefined;
    const lost = this.#inFlight.drain();
    let inFlight = false;
    for (const p of lost) {
      if (p.open) inFlight = true;
      // In-flight requests always fail as "connection closed"; a timeout or protocol error is the cause.
      p.fail(
        reason.code === 'MEMCACHED_ERR_CONNECTION_CLOSED' || wasConnecting
          ? reason
          : new MemcacheError('MEMCACHED_ERR_CONNECTION_CLOSED', `connection closed after ${reason.code}`, {
              server: this.name,
              cause: reason,
            }),
      );
    }
    if (wasConnecting) {
      // Nothing queued was sent: fail it with the connect error (safe to send elsewhere).
      this.failQueued(reason);
      this.#o.events.connectFailed(this, reason);
    } else {
      if (this.#closing) this.failQueued(reason);
      this.#o.events.lost(this, reason, inFlight || reason.code === 'MEMCACHED_ERR_PROTOCOL');
    }
    // Nothing left to wait for: the deadline timer must not keep the process alive (it fires once, harmlessly).
    if (this.#queue.length === 0 && this.#refed) {
      this.#refed = false;
      this.#timer?.unref();
    }
    this.#checkDrained();
  }
}
