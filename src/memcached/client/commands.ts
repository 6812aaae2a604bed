/**
 * Commands as the connection layer sees them: a {@link WireRequest} is the encoded bytes plus a little collector
 * that is fed the replies, in order, until it has all of its own. The connection never looks inside a reply; the
 * protocol ({@link CommandCodec}: text here, binary in `binary-codec.ts`) decides what is a reply of which request.
 *
 * @module
 */

import { MemcacheError } from './errors.ts';
import {
  encodeArithmetic,
  encodeDelete,
  encodeFlushAll,
  encodeMetaArithmetic,
  encodeMetaDelete,
  encodeMetaGet,
  encodeMetaNoop,
  encodeMetaSet,
  encodeRetrieval,
  encodeStats,
  encodeStorage,
  encodeTouch,
  encodeVersion,
  isWireKey,
  type MetaFlagTokens,
  type MetaReturnFlags,
  type RetrievalCommand,
  type StorageCommand,
  type TextReply,
  TextReplyParser,
} from './text-codec.ts';

/** One request on the wire, with the collector of its replies. */
export interface WireRequest<T> {
  /** The command name, for diagnostics and error messages (never a key). */
  readonly command: string;
  /** How many keys the request carries (diagnostics). */
  readonly keys: number;
  /** The encoded request. */
  readonly data: Buffer;
  /** False when the server answers nothing (noreply): the request is done once written. */
  readonly expectsReply: boolean;
  /**
   * Takes the next reply on the connection; returns true once the request has all of its replies.
   *
   * @throws MemcacheError `MEMCACHED_ERR_PROTOCOL` for a reply this request cannot have: the stream is out of step
   *   and the connection must be closed.
   */
  feed(reply: unknown): boolean;
  /**
   * The outcome, once complete (or at once when `expectsReply` is false).
   *
   * @throws MemcacheError what the replies amount to (`NOT_NUMERIC`, `SERVER_ERROR`, …)
   */
  result(server: string): T;
}

/** A reply parser: consumes chunks, emits replies. */
export interface ReplyParser {
  push(chunk: Buffer, emit: (reply: unknown) => void): void;
}

/** An item as read: the key's bytes as the server sent them, flags, cas and the raw value. */
export interface RawItem {
  readonly key: Uint8Array;
  readonly flags: number;
  readonly cas?: bigint;
  readonly value: Buffer;
}

/** What a storage command did. */
export type StoreOutcome = 'stored' | 'not_stored' | 'exists' | 'not_found';

/** What `mg` found. */
export interface MetaGetResult {
  /** False for `EN` (miss). */
  readonly hit: boolean;
  readonly value?: Buffer;
  readonly flags: MetaReturnFlags;
}

/** One write of a quiet batch (buffered writes). */
export type QuietWrite =
  | {
      readonly op: 'set';
      readonly key: Buffer;
      readonly value: Buffer;
      readonly flags: number;
      readonly exptime: number;
    }
  | { readonly op: 'delete'; readonly key: Buffer };

/** Settled outcome of one part of a {@link composite} request. */
export type Settled<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: MemcacheError };

/** Counter options of `incr`/`decr` that create the counter when missing. */
export interface CreateCounter {
  readonly initial: bigint;
  readonly exptime: number;
}

/** The commands of one protocol, as {@link WireRequest}s. */
export interface CommandCodec {
  readonly protocol: 'text' | 'binary';
  /** True when the meta commands (`mg`/`ms`/`ma`/`mn`) are available. */
  readonly meta: boolean;
  createParser(): ReplyParser;
  /** Requests to run on every new connection before anything else (SASL authentication). */
  handshake?(): WireRequest<void> | undefined;
  /**
   * A multi-key retrieval of wire keys (latin1 strings, see `wireKey`). The result is aligned with `keys`: the
   * item of `keys[i]` at index i, undefined for a miss.
   */
  retrieve(command: RetrievalCommand, keys: readonly string[], exptime?: number): WireRequest<(RawItem | undefined)[]>;
  store(
    command: StorageCommand,
    key: Buffer,
    value: Buffer,
    flags: number,
    exptime: number,
    cas?: bigint,
  ): WireRequest<StoreOutcome>;
  delete(key: Buffer): WireRequest<boolean>;
  arithmetic(
    command: 'incr' | 'decr',
    key: Buffer,
    delta: bigint,
    create?: CreateCounter,
  ): WireRequest<bigint | undefined>;
  touch(key: Buffer, exptime: number): WireRequest<boolean>;
  flushAll(delay: number): WireRequest<void>;
  stats(group?: string): WireRequest<Record<string, string>>;
  version(): WireRequest<string>;
  /**
   * The writes without replies, then a barrier (`mn` / binary no-op) whose reply proves every write was read: the
   * request settles with the errors the server reported for them (errors are sent even for quiet writes).
   */
  quietBatch(writes: readonly QuietWrite[]): WireRequest<MemcacheError[]>;
  /** `mg` (text codec only). */
  metaGet?(key: Buffer, flags: MetaFlagTokens): WireRequest<MetaGetResult>;
  /** `ms` (text codec only). */
  metaSet?(key: Buffer, value: Buffer, flags: MetaFlagTokens): WireRequest<StoreOutcome>;
  /** `md` (text codec only): true when deleted (`HD`), false when not found or the cas did not match. */
  metaDelete?(key: Buffer, flags: MetaFlagTokens): WireRequest<boolean>;
}

// ---- shared helpers ----------------------------------------------------------------------------------------------

/** A reply that does not belong to the request it arrived for. */
export function unexpectedReply(command: string, what: string): MemcacheError {
  return new MemcacheError('MEMCACHED_ERR_PROTOCOL', `unexpected reply to ${command}: ${what}`);
}

/** The error a text `ERROR` / `CLIENT_ERROR` / `SERVER_ERROR` line stands for. */
export function errorFromTextReply(
  reply: Extract<TextReply, { type: 'error' }>,
  command: string,
  server: string,
): MemcacheError {
  const said = reply.message ? `${reply.kind} ${reply.message}` : reply.kind;
  const message = `${command}: server replied "${said}"`;
  if (reply.kind === 'ERROR') return new MemcacheError('MEMCACHED_ERR_UNKNOWN_COMMAND', message, { server });
  if (/too large/i.test(reply.message)) return new MemcacheError('MEMCACHED_ERR_VALUE_TOO_LARGE', message, { server });
  if (/non-numeric/i.test(reply.message)) return new MemcacheError('MEMCACHED_ERR_NOT_NUMERIC', message, { server });
  if (reply.kind === 'CLIENT_ERROR') return new MemcacheError('MEMCACHED_ERR_CLIENT_ERROR', message, { server });
  return new MemcacheError('MEMCACHED_ERR_SERVER_ERROR', message, { server });
}

/** Several requests sent as one (one write, one queue slot); each part settles on its own. */
export function composite<T>(command: string, parts: readonly WireRequest<T>[]): WireRequest<Settled<T>[]> {
  const replying = parts.filter((p) => p.expectsReply);
  let at = 0;
  let keys = 0;
  for (const p of parts) keys += p.keys;
  return {
    command,
    keys,
    data: parts.length === 1 ? parts[0]!.data : Buffer.concat(parts.map((p) => p.data)),
    expectsReply: replying.length > 0,
    feed(reply) {
      const part = replying[at];
      if (part === undefined) throw unexpectedReply(command, 'more replies than requests');
      if (part.feed(reply)) at++;
      return at === replying.length;
    },
    result(server) {
      return parts.map((p): Settled<T> => {
        try {
          return { ok: true, value: p.result(server) };
        } catch (error) {
          if (error instanceof MemcacheError) return { ok: false, error };
          throw error;
        }
      });
    },
  };
}

/**
 * The items of a multi-key retrieval, placed at the index of the key they answer. memcached answers the hits in the
 * order the keys were asked for (misses are left out), so a cursor walks the keys and compares bytes: no key is
 * ever decoded, and a duplicate key gets one item per occurrence. A reply out of that order (a proxy might reorder)
 * is placed in the first empty slot of its key.
 */
export class KeyedItems {
  readonly #keys: readonly string[];
  readonly items: (RawItem | undefined)[];
  #cursor = 0;

  /** @param keys the wire keys asked for */
  constructor(keys: readonly string[]) {
    this.#keys = keys;
    this.items = new Array<RawItem | undefined>(keys.length);
  }

  /**
   * Places `item` at the index of its key.
   *
   * @throws MemcacheError `MEMCACHED_ERR_PROTOCOL` for a key that was not asked for (or more often than asked)
   */
  place(item: RawItem, command: string): void {
    const keys = this.#keys;
    const items = this.items;
    for (let i = this.#cursor; i < keys.length; i++) {
      if (isWireKey(keys[i]!, item.key)) {
        items[i] = item;
        this.#cursor = i + 1;
        return;
      }
    }
    for (let i = 0; i < this.#cursor; i++) {
      if (items[i] === undefined && isWireKey(keys[i]!, item.key)) {
        items[i] = item;
        return;
      }
    }
    throw unexpectedReply(command, 'a value for a key that was not asked for');
  }
}

// ---- text protocol -----------------------------------------------------------------------------------------------

type ErrorReply = Extract<TextReply, { type: 'error' }>;

/** A text request answered by exactly one line. */
class SingleLine<T> implements WireRequest<T> {
  readonly command: string;
  readonly keys: number;
  readonly data: Buffer;
  readonly expectsReply = true;
  readonly #accept: (reply: TextReply) => boolean;
  readonly #map: (reply: TextReply) => T;
  #reply: TextReply | undefined;

  constructor(
    command: string,
    keys: number,
    data: Buffer,
    accept: (reply: TextReply) => boolean,
    map: (reply: TextReply) => T,
  ) {
    this.command = command;
    this.keys = keys;
    this.data = data;
    this.#accept = accept;
    this.#map = map;
  }

  feed(reply: unknown): boolean {
    const r = reply as TextReply;
    if (r.type !== 'error' && !this.#accept(r)) throw unexpectedReply(this.command, r.type);
    this.#reply = r;
    return true;
  }

  result(server: string): T {
    const r = this.#reply!;
    if (r.type === 'error') throw errorFromTextReply(r, this.command, server);
    return this.#map(r);
  }
}

/** `get`/`gets`/`gat`/`gats`, possibly several lines: `VALUE`s then `END`, per line. */
class Retrieval implements WireRequest<(RawItem | undefined)[]> {
  readonly command: string;
  readonly keys: number;
  readonly data: Buffer;
  readonly expectsReply = true;
  readonly #items: KeyedItems;
  #pending: number;
  #error: ErrorReply | undefined;

  constructor(command: RetrievalCommand, keys: readonly string[], exptime: number) {
    const encoded = encodeRetrieval(command, keys, exptime);
    this.command = command;
    this.keys = keys.length;
    this.data = encoded.data;
    this.#pending = encoded.commands;
    this.#items = new KeyedItems(keys);
  }

  feed(reply: unknown): boolean {
    const r = reply as TextReply;
    if (r.type === 'value') {
      this.#items.place(r, this.command);
      return false;
    }
    if (r.type === 'end' || r.type === 'error') {
      if (r.type === 'error') this.#error ??= r;
      return --this.#pending === 0;
    }
    throw unexpectedReply(this.command, r.type);
  }

  result(server: string): (RawItem | undefined)[] {
    if (this.#error !== undefined) throw errorFromTextReply(this.#error, this.command, server);
    return this.#items.items;
  }
}

/** `stats`: `STAT` lines then `END`. */
class Stats implements WireRequest<Record<string, string>> {
  readonly command = 'stats';
  readonly keys = 0;
  readonly data: Buffer;
  readonly expectsReply = true;
  readonly #stats: Record<string, string> = {};
  #error: ErrorReply | undefined;

  constructor(group?: string) {
    this.data = encodeStats(group);
  }

  feed(reply: unknown): boolean {
    const r = reply as TextReply;
    if (r.type === 'stat') {
      this.#stats[r.name] = r.value;
      return false;
    }
    if (r.type === 'error') this.#error = r;
    else if (r.type !== 'end') throw unexpectedReply(this.command, r.type);
    return true;
  }

  result(server: string): Record<string, string> {
    if (this.#error !== undefined) throw errorFromTextReply(this.#error, this.command, server);
    return this.#stats;
  }
}

/** Noreply writes then `mn`: every error line before `MN` belongs to one of the writes. */
class TextQuietBatch implements WireRequest<MemcacheError[]> {
  readonly command = 'batch';
  readonly keys: number;
  readonly data: Buffer;
  readonly expectsReply = true;
  readonly #errors: ErrorReply[] = [];

  constructor(writes: readonly QuietWrite[]) {
    const parts = writes.map((w) =>
      w.op === 'set'
        ? encodeStorage('set', w.key, w.value, w.flags, w.exptime, undefined, true)
        : encodeDelete(w.key, true),
    );
    parts.push(encodeMetaNoop());
    this.keys = writes.length;
    this.data = Buffer.concat(parts);
  }

  feed(reply: unknown): boolean {
    const r = reply as TextReply;
    if (r.type === 'error') {
      this.#errors.push(r);
      return false;
    }
    if (r.type === 'meta' && r.code === 'MN') return true;
    throw unexpectedReply(this.command, r.type);
  }

  result(server: string): MemcacheError[] {
    return this.#errors.map((e) => errorFromTextReply(e, 'buffered write', server));
  }
}

const storeOutcome = (r: TextReply): StoreOutcome => {
  switch (r.type === 'status' ? r.status : '') {
    case 'STORED':
      return 'stored';
    case 'NOT_STORED':
      return 'not_stored';
    case 'EXISTS':
      return 'exists';
    default:
      return 'not_found';
  }
};
const isStatus =
  (...statuses: string[]) =>
  (r: TextReply): boolean =>
    r.type === 'status' && statuses.includes(r.status);

const metaStoreOutcome = (r: TextReply): StoreOutcome => {
  const code = r.type === 'meta' ? r.code : '';
  return code === 'HD' ? 'stored' : code === 'NS' ? 'not_stored' : code === 'EX' ? 'exists' : 'not_found';
};

/** The text (and meta) protocol: what memcached and our server speak by default. */
export const textCommands: CommandCodec = {
  protocol: 'text',
  meta: true,
  createParser() {
    const parser = new TextReplyParser();
    return { push: (chunk, emit) => parser.push(chunk, emit) };
  },
  retrieve(command, keys, exptime = 0) {
    return new Retrieval(command, keys, exptime);
  },
  store(command, key, value, flags, exptime, cas) {
    return new SingleLine(
      command,
      1,
      encodeStorage(command, key, value, flags, exptime, cas),
      isStatus('STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND'),
      storeOutcome,
    );
  },
  delete(key) {
    return new SingleLine('delete', 1, encodeDelete(key), isStatus('DELETED', 'NOT_FOUND'), (r) => {
      return r.type === 'status' && r.status === 'DELETED';
    });
  },
  arithmetic(command, key, delta, create) {
    if (create === undefined) {
      return new SingleLine(
        command,
        1,
        encodeArithmetic(command, key, delta),
        (r) => r.type === 'number' || (r.type === 'status' && r.status === 'NOT_FOUND'),
        (r) => (r.type === 'number' ? r.value : undefined),
      );
    }
    // `ma` creates the counter (N: autovivify with this TTL, J: initial value) and returns it (v).
    const flags = [`N${create.exptime}`, `J${create.initial}`, `D${delta}`, 'v'];
    if (command === 'decr') flags.push('MD');
    return new SingleLine(
      command,
      1,
      encodeMetaArithmetic(key, flags),
      (r) => r.type === 'meta' && (r.code === 'VA' || r.code === 'NF' || r.code === 'NS' || r.code === 'EX'),
      (r) => {
        if (r.type === 'meta' && r.code === 'VA' && r.value !== undefined) {
          const text = r.value.toString('latin1');
          if (/^[0-9]+$/.test(text)) return BigInt(text);
        }
        return undefined;
      },
    );
  },
  touch(key, exptime) {
    return new SingleLine('touch', 1, encodeTouch(key, exptime), isStatus('TOUCHED', 'NOT_FOUND'), (r) => {
      return r.type === 'status' && r.status === 'TOUCHED';
    });
  },
  flushAll(delay) {
    return new SingleLine('flush_all', 0, encodeFlushAll(delay), isStatus('OK'), () => undefined);
  },
  stats(group) {
    return new Stats(group);
  },
  version() {
    return new SingleLine(
      'version',
      0,
      encodeVersion(),
      (r) => r.type === 'version',
      (r) => (r.type === 'version' ? r.version : ''),
    );
  },
  quietBatch(writes) {
    return new TextQuietBatch(writes);
  },
  metaGet(key, flags) {
    return new SingleLine(
      'mg',
      1,
      encodeMetaGet(key, flags),
      (r) => r.type === 'meta' && (r.code === 'VA' || r.code === 'HD' || r.code === 'EN'),
      (r): MetaGetResult => {
        if (r.type !== 'meta' || r.code === 'EN') return { hit: false, flags: {} };
        return r.value === undefined ? { hit: true, flags: r.flags } : { hit: true, value: r.value, flags: r.flags };
      },
    );
  },
  metaSet(key, value, flags) {
    return new SingleLine(
      'ms',
      1,
      encodeMetaSet(key, value, flags),
      (r) => r.type === 'meta' && (r.code === 'HD' || r.code === 'NS' || r.code === 'EX' || r.code === 'NF'),
      metaStoreOutcome,
    );
  },
  metaDelete(key, flags) {
    return new SingleLine(
      'md',
      1,
      encodeMetaDelete(key, flags),
      (r) => r.type === 'meta' && (r.code === 'HD' || r.code === 'NF' || r.code === 'EX'),
      (r) => r.type === 'meta' && r.code === 'HD',
    );
  },
};
