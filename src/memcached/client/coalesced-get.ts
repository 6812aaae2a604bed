/**
 * Concurrent single `get`s for one server as one multi-key `get k1 k2 …` request — libmemcached's "implicit
 * multi-get". The server then parses one command line, does one read, and answers with one batch of `VALUE`s ending
 * in one `END`, instead of a line, a lookup round and an `END` per get: with many gets in flight on one connection
 * this is what the server's worker thread spends its time on.
 *
 * ```
 *   get('a') ─┐                                   ┌─▶ 'a' → VALUE a …  (resolves the first caller)
 *   get('b') ─┼─▶ CoalescedGet ──written──▶ get a b c ──▶ 'b' → (miss)    (resolves undefined)
 *   get('c') ─┘   (joinable while queued)         └─▶ 'c' → VALUE c …  (…)
 * ```
 *
 * A coalesced get is queued on a connection like any request ({@link Pending}) and stays open to more callers until
 * it is written (at the end of the event loop turn, like every request), another request is queued behind it
 * (replies keep the order the requests were made in), or it holds {@link MAX_COALESCED_KEYS} callers — then it is
 * written at once. It is encoded when written, with the keys of the callers still waiting (the
 * text codec splits lines longer than memcached's 2048-byte limit). Replies are matched to callers by position, not
 * by key string (see `KeyedItems`), so a key asked for by two callers is sent twice and answered twice.
 *
 * Each caller keeps its own promise, timeout and abort signal:
 * - abort: the caller settles with `MEMCACHED_ERR_ABORTED` at once; its key's reply, if written, is read and dropped;
 * - timeout while queued (no connection yet): the caller fails with `MEMCACHED_ERR_TIMEOUT`, the others wait on;
 * - timeout once written: the caller fails with `MEMCACHED_ERR_TIMEOUT` and, as for any written request, the
 *   connection is closed (where its reply would end is unknown), so the other callers — whose own deadlines have
 *   not passed — fail with `MEMCACHED_ERR_CONNECTION_CLOSED` (cause: the timeout).
 *
 * @module
 */

import type { CommandCodec, RawItem, WireRequest } from './commands.ts';
import { type CommandEvent, commandChannel } from './diagnostics.ts';
import { MemcacheError } from './errors.ts';
import { type Pending, type RequestState, type ServerConnection, timeoutError } from './server-connection.ts';

/**
 * The most callers one coalesced get takes. The one that fills it writes it at once, without waiting for the end of
 * the event loop turn: the server starts on these keys while the client is still producing the next ones, so client
 * and server work at the same time instead of in turns. (50 concurrent gets against memcached on 2 cores: ~330k/s
 * written once per turn, ~520k/s written 16 at a time; 8 and 32 are slower than 16.)
 */
export const MAX_COALESCED_KEYS = 16;

/** One caller of a {@link CoalescedGet}. */
interface Caller {
  /** The wire key (latin1). */
  readonly key: string;
  readonly map: (item: RawItem | undefined) => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly deadline: number;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** `performance.now()` at the start, when traced (else -1). */
  readonly started: number;
  waiting: boolean;
}

/** Several callers' single `get`s, sent as one multi-key `get`. */
export class CoalescedGet implements Pending {
  readonly #conn: ServerConnection;
  readonly #codec: CommandCodec;
  readonly #server: string;
  /** Called once per caller when it settles (the server's request count). */
  readonly #release: () => void;
  #callers: Caller[] = [];
  #request: WireRequest<(RawItem | undefined)[]> | undefined;
  #state: RequestState = 'queued';
  #waiting = 0;
  #deadline = Number.POSITIVE_INFINITY;

  /**
   * @param conn the connection it is (about to be) queued on
   * @param release called once for every caller, when it settles
   */
  constructor(conn: ServerConnection, codec: CommandCodec, server: string, release: () => void) {
    this.#conn = conn;
    this.#codec = codec;
    this.#server = server;
    this.#release = release;
  }

  /** The `get` of the callers still waiting when it was written. */
  get request(): WireRequest<unknown> {
    return this.#request!;
  }

  get state(): RequestState {
    return this.#state;
  }

  get open(): boolean {
    return this.#waiting > 0;
  }

  get deadline(): number {
    return this.#deadline;
  }

  /**
   * True while more callers can join: not yet written, not full, not failed — and someone still waits (one that
   * every caller has left is dropped from the queue, unwritten, at the next flush).
   */
  get joinable(): boolean {
    return this.#state === 'queued' && this.#waiting > 0 && this.#callers.length < MAX_COALESCED_KEYS;
  }

  /**
   * Adds a caller for wire key `key`; resolves with `map(item)` (`map(undefined)` on a miss), or rejects with what
   * `map` throws or the request's error. The caller that fills it writes the connection's queue at once.
   */
  add<R>(
    key: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    map: (item: RawItem | undefined) => R,
  ): Promise<R> {
    const { promise, resolve, reject } = Promise.withResolvers<R>();
    const traced = commandChannel.hasSubscribers;
    const deadline = performance.now() + timeoutMs;
    const caller: Caller = {
      key,
      map,
      resolve: resolve as (value: unknown) => void,
      reject,
      deadline,
      timeoutMs,
      signal,
      onAbort: undefined,
      started: traced ? performance.now() : -1,
      waiting: true,
    };
    if (traced) {
      commandChannel.publish({ type: 'start', command: 'get', server: this.#server, keys: 1 } satisfies CommandEvent);
    }
    this.#callers.push(caller);
    this.#waiting++;
    if (deadline < this.#deadline) {
      this.#deadline = deadline;
      this.#conn.watch(deadline);
    }
    if (signal !== undefined) {
      caller.onAbort = () => {
        // The reply, if the key was written, is still read (and dropped): only this caller is let go.
        this.#fail(
          caller,
          new MemcacheError('MEMCACHED_ERR_ABORTED', undefined, { server: this.#server, cause: signal.reason }),
        );
        if (this.#state === 'queued') this.#conn.noteSettled();
      };
      signal.addEventListener('abort', caller.onAbort, { once: true });
    }
    // Nothing is queued behind a joinable coalesced get: writing the queue now keeps the request order.
    if (this.#callers.length === MAX_COALESCED_KEYS) this.#conn.flushNow();
    return promise;
  }

  markWritten(): void {
    if (this.#state !== 'queued') return;
    this.#state = 'written';
    // Only the keys of callers still waiting go out; the replies are matched to these, by position.
    const callers = this.#waiting === this.#callers.length ? this.#callers : this.#callers.filter((c) => c.waiting);
    this.#callers = callers;
    const keys = new Array<string>(callers.length);
    for (let i = 0; i < callers.length; i++) keys[i] = callers[i]!.key;
    this.#request = this.#codec.retrieve('get', keys);
  }

  complete(server: string): void {
    this.#state = 'done';
    if (this.#waiting === 0) return;
    let items: (RawItem | undefined)[];
    try {
      items = this.#request!.result(server);
    } catch (err) {
      this.fail(
        err instanceof MemcacheError
          ? err
          : new MemcacheError('MEMCACHED_ERR_PROTOCOL', 'could not read the reply', { server, cause: err }),
      );
      return;
    }
    const callers = this.#callers;
    for (let i = 0; i < callers.length; i++) {
      const c = callers[i]!;
      if (!c.waiting) continue;
      // The request succeeded (that is what is traced); decoding the value may still fail the caller.
      this.#settled(c, undefined);
      try {
        c.resolve(c.map(items[i]));
      } catch (err) {
        c.reject(err as Error);
      }
    }
  }

  fail(error: MemcacheError): void {
    this.#state = 'done';
    if (this.#waiting === 0) return;
    for (const c of this.#callers) if (c.waiting) this.#fail(c, error);
  }

  expire(now: number, server: string): MemcacheError | undefined {
    if (this.#deadline > now) return undefined;
    let timedOut: MemcacheError | undefined;
    let next = Number.POSITIVE_INFINITY;
    for (const c of this.#callers) {
      if (!c.waiting) continue;
      if (c.deadline <= now) {
        const error = timeoutError('get', c.timeoutMs, server);
        this.#fail(c, error);
        if (this.#state === 'written') timedOut ??= error;
      } else if (c.deadline < next) {
        next = c.deadline;
      }
    }
    this.#deadline = next;
    return timedOut;
  }

  #fail(c: Caller, error: MemcacheError): void {
    if (!c.waiting) return;
    this.#settled(c, error);
    c.reject(error);
  }

  #settled(c: Caller, error: MemcacheError | undefined): void {
    c.waiting = false;
    this.#waiting--;
    if (c.onAbort !== undefined) c.signal!.removeEventListener('abort', c.onAbort);
    this.#release();
    if (c.started >= 0 && commandChannel.hasSubscribers) {
      const base = { command: 'get', server: this.#server, keys: 1, durationMs: performance.now() - c.started };
      commandChannel.publish(
        (error === undefined
          ? { type: 'end', ...base }
          : { type: 'error', ...base, code: error.code, error }) satisfies CommandEvent,
      );
    }
  }
}
