/**
 * The client's binary protocol: what a connection speaks when SASL is on (memcached accepts only binary commands
 * from a SASL-authenticated connection) or when `protocol: 'binary'` is asked for.
 *
 * Frames are encoded and decoded by the pure codec shared with the server (`../protocol/binary-codec.ts`:
 * `encodeRequest`, `decodeResponse`; no server code); this module adds the resumable framing over socket chunks,
 * the request collectors and SASL PLAIN. The client loads it with `import()` only when a binary connection is
 * configured, so text-protocol users never load it.
 *
 * Each command maps onto its binary opcode; multi-gets are `GETKQ`/`GATKQ` per key then one `NOOP` (misses are
 * silent, the `NOOP` reply ends the batch), buffered writes are `SETQ`/`DELETEQ` then `NOOP`. There are no meta
 * commands in the binary protocol: `getOrSet` locks with `add` (no stale serving), `getItem` has no TTL, and `incr`/`decr`
 * with `initial` use the binary counter's own initial value.
 *
 * @module
 */

import {
  decodeResponse,
  encodeRequest,
  HEADER_LENGTH,
  Opcode,
  RESPONSE_MAGIC,
  type Response,
  Status,
} from '../protocol/binary-codec.ts';
import {
  type CommandCodec,
  KeyedItems,
  type QuietWrite,
  type RawItem,
  type ReplyParser,
  type StoreOutcome,
  unexpectedReply,
  type WireRequest,
} from './commands.ts';
import { MemcacheError, type MemcacheErrorCode } from './errors.ts';
import { REALTIME_MAXDELTA, type RetrievalCommand, type StorageCommand } from './text-codec.ts';

/** A binary body larger than this is not memcached talking (its largest item is 1 GiB with `-I`, values are ≤ 1 MiB by default). */
const MAX_BODY = 1024 * 1024 * 1024;
/** Incr/decr with this exptime fail on a missing counter instead of creating it. */
const NO_CREATE = 0xffffffff;

/**
 * Resumable framing of binary responses: a 24-byte header says how long the body is. A frame inside one chunk is a
 * view of it; a frame split across chunks is joined once, when its last byte arrives.
 */
export class BinaryReplyParser implements ReplyParser {
  #parts: Buffer[] = [];
  #have = 0;
  /** Size of the frame being collected, 0 until its header is in. */
  #total = 0;

  push(chunk: Buffer, emit: (reply: unknown) => void): void {
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      if (this.#have === 0 && len - pos >= HEADER_LENGTH) {
        const total = frameSize(chunk, pos);
        if (len - pos >= total) {
          emit(decodeResponse(chunk.subarray(pos, pos + total))!);
          pos += total;
          continue;
        }
      }
      const want = (this.#total > 0 ? this.#total : HEADER_LENGTH) - this.#have;
      const take = Math.min(want, len - pos);
      this.#parts.push(chunk.subarray(pos, pos + take));
      this.#have += take;
      pos += take;
      if (this.#total === 0 && this.#have === HEADER_LENGTH) {
        const header = Buffer.concat(this.#parts, HEADER_LENGTH);
        this.#parts = [header];
        this.#total = frameSize(header, 0);
      }
      if (this.#total > 0 && this.#have === this.#total) {
        const frame = Buffer.concat(this.#parts, this.#total);
        this.#parts = [];
        this.#have = 0;
        this.#total = 0;
        emit(decodeResponse(frame)!);
      }
    }
  }
}

function frameSize(buf: Buffer, at: number): number {
  if (buf[at] !== RESPONSE_MAGIC) {
    throw new MemcacheError('MEMCACHED_ERR_PROTOCOL', `bad binary response magic 0x${buf[at]!.toString(16)}`);
  }
  const body = buf.readUInt32BE(at + 8);
  if (body > MAX_BODY) throw new MemcacheError('MEMCACHED_ERR_PROTOCOL', `binary body of ${body} bytes`);
  return HEADER_LENGTH + body;
}

const STATUS_CODES: Readonly<Record<number, MemcacheErrorCode>> = {
  [Status.E2BIG]: 'MEMCACHED_ERR_VALUE_TOO_LARGE',
  [Status.EINVAL]: 'MEMCACHED_ERR_CLIENT_ERROR',
  [Status.DELTA_BADVAL]: 'MEMCACHED_ERR_NOT_NUMERIC',
  [Status.AUTH_ERROR]: 'MEMCACHED_ERR_AUTH',
  [Status.AUTH_CONTINUE]: 'MEMCACHED_ERR_AUTH',
  [Status.UNKNOWN_COMMAND]: 'MEMCACHED_ERR_UNKNOWN_COMMAND',
  [Status.ENOMEM]: 'MEMCACHED_ERR_SERVER_ERROR',
};

/** The error a binary status stands for. */
function statusError(r: Response, command: string, server: string): MemcacheError {
  const text = r.value.length > 0 ? r.value.toString('latin1') : `status 0x${r.status.toString(16).padStart(4, '0')}`;
  return new MemcacheError(
    STATUS_CODES[r.status] ?? 'MEMCACHED_ERR_SERVER_ERROR',
    `${command}: server replied "${text}"`,
    {
      server,
    },
  );
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** A binary exptime is unsigned: -1 ("expired at once" in text) becomes an absolute time in 1970, just as expired. */
function exptimeOf(exptime: number): number {
  return exptime < 0 ? REALTIME_MAXDELTA + 1 : exptime;
}

/** What a response means: `{ value }`, or undefined when its status is an error. */
type Mapped<T> = { readonly value: T } | undefined;

/** A binary request answered by exactly one response. */
class SingleResponse<T> implements WireRequest<T> {
  readonly command: string;
  readonly keys: number;
  readonly data: Buffer;
  readonly expectsReply = true;
  readonly #map: (r: Response) => Mapped<T>;
  #reply: Response | undefined;

  constructor(command: string, keys: number, data: Buffer, map: (r: Response) => Mapped<T>) {
    this.command = command;
    this.keys = keys;
    this.data = data;
    this.#map = map;
  }

  feed(reply: unknown): boolean {
    this.#reply = reply as Response;
    return true;
  }

  result(server: string): T {
    const r = this.#reply!;
    const out = this.#map(r);
    if (out === undefined) throw statusError(r, this.command, server);
    return out.value;
  }
}

const DONE: Mapped<undefined> = { value: undefined };
const TRUE: Mapped<boolean> = { value: true };
const FALSE: Mapped<boolean> = { value: false };

/** `GETKQ`/`GATKQ` per key, then `NOOP`. */
class BinaryRetrieval implements WireRequest<(RawItem | undefined)[]> {
  readonly command: string;
  readonly keys: number;
  readonly data: Buffer;
  readonly expectsReply = true;
  readonly #items: KeyedItems;
  readonly #withCas: boolean;
  #error: Response | undefined;

  constructor(command: RetrievalCommand, keys: readonly string[], exptime: number) {
    this.command = command;
    this.keys = keys.length;
    this.#withCas = command === 'gets' || command === 'gats';
    this.#items = new KeyedItems(keys);
    const touch = command === 'gat' || command === 'gats';
    const extras = touch ? u32(exptimeOf(exptime)) : undefined;
    const frames = keys.map((k) => {
      const key = Buffer.from(k, 'latin1');
      return encodeRequest(
        extras === undefined ? { opcode: Opcode.GETKQ, key } : { opcode: Opcode.GATKQ, key, extras },
      );
    });
    frames.push(encodeRequest({ opcode: Opcode.NOOP }));
    this.data = Buffer.concat(frames);
  }

  feed(reply: unknown): boolean {
    const r = reply as Response;
    if (r.opcode === Opcode.NOOP) return true;
    if (r.status === Status.SUCCESS) {
      if (r.extras.length < 4) throw unexpectedReply(this.command, 'a value without flags');
      const flags = r.extras.readUInt32BE(0);
      const key = r.key;
      this.#items.place(
        this.#withCas ? { key, flags, cas: r.cas, value: r.value } : { key, flags, value: r.value },
        this.command,
      );
    } else if (r.status !== Status.KEY_ENOENT) {
      this.#error ??= r;
    }
    return false;
  }

  result(server: string): (RawItem | undefined)[] {
    if (this.#error !== undefined) throw statusError(this.#error, this.command, server);
    return this.#items.items;
  }
}

/** `STAT` answers one response per statistic, then one with an empty key. */
class BinaryStats implements WireRequest<Record<string, string>> {
  readonly command = 'stats';
  readonly keys = 0;
  readonly data: Buffer;
  readonly expectsReply = true;
  readonly #stats: Record<string, string> = {};
  #error: Response | undefined;

  constructor(group?: string) {
    this.data = encodeRequest(group ? { opcode: Opcode.STAT, key: group } : { opcode: Opcode.STAT });
  }

  feed(reply: unknown): boolean {
    const r = reply as Response;
    if (r.opcode !== Opcode.STAT) throw unexpectedReply(this.command, `opcode 0x${r.opcode.toString(16)}`);
    if (r.status !== Status.SUCCESS) {
      this.#error = r;
      return true;
    }
    if (r.key.length === 0) return true;
    this.#stats[r.key.toString('latin1')] = r.value.toString('latin1');
    return false;
  }

  result(server: string): Record<string, string> {
    if (this.#error !== undefined) throw statusError(this.#error, this.command, server);
    return this.#stats;
  }
}

/** `SETQ`/`DELETEQ` then `NOOP`: anything before the `NOOP` reply is an error of one of the writes. */
class BinaryQuietBatch implements WireRequest<MemcacheError[]> {
  readonly command = 'batch';
  readonly keys: number;
  readonly data: Buffer;
  readonly expectsReply = true;
  readonly #errors: Response[] = [];

  constructor(writes: readonly QuietWrite[]) {
    const frames = writes.map((w) =>
      w.op === 'set'
        ? encodeRequest({
            opcode: Opcode.SETQ,
            key: w.key,
            value: w.value,
            extras: Buffer.concat([u32(w.flags), u32(exptimeOf(w.exptime))]),
          })
        : encodeRequest({ opcode: Opcode.DELETEQ, key: w.key }),
    );
    frames.push(encodeRequest({ opcode: Opcode.NOOP }));
    this.keys = writes.length;
    this.data = Buffer.concat(frames);
  }

  feed(reply: unknown): boolean {
    const r = reply as Response;
    if (r.opcode === Opcode.NOOP) return true;
    // A quiet delete of a missing key still answers "not found": not an error for a cache.
    if (r.status !== Status.SUCCESS && r.status !== Status.KEY_ENOENT) this.#errors.push(r);
    return false;
  }

  result(server: string): MemcacheError[] {
    return this.#errors.map((r) => statusError(r, 'buffered write', server));
  }
}

const STORE_OPCODES: Readonly<Record<StorageCommand, number>> = {
  set: Opcode.SET,
  add: Opcode.ADD,
  replace: Opcode.REPLACE,
  append: Opcode.APPEND,
  prepend: Opcode.PREPEND,
  cas: Opcode.SET,
};

function storeOutcome(command: StorageCommand, r: Response): StoreOutcome | undefined {
  switch (r.status) {
    case Status.SUCCESS:
      return 'stored';
    case Status.NOT_STORED:
      return 'not_stored';
    case Status.KEY_EEXISTS:
      return command === 'cas' ? 'exists' : 'not_stored';
    case Status.KEY_ENOENT:
      return command === 'cas' ? 'not_found' : 'not_stored';
    default:
      return undefined;
  }
}

/** Credentials for SASL PLAIN. */
export interface SaslCredentials {
  readonly username: string;
  readonly password: string;
}

/** The binary protocol's {@link CommandCodec}, authenticating each new connection with SASL PLAIN when given credentials. */
export function createBinaryCommands(sasl?: SaslCredentials): CommandCodec {
  return {
    protocol: 'binary',
    meta: false,
    createParser: () => new BinaryReplyParser(),
    handshake() {
      if (sasl === undefined) return undefined;
      const value = Buffer.concat([
        Buffer.from([0]),
        Buffer.from(sasl.username, 'utf8'),
        Buffer.from([0]),
        Buffer.from(sasl.password, 'utf8'),
      ]);
      return new SingleResponse<void>(
        'sasl_auth',
        0,
        encodeRequest({ opcode: Opcode.SASL_AUTH, key: 'PLAIN', value }),
        (r) => (r.status === Status.SUCCESS ? DONE : undefined),
      );
    },
    retrieve: (command, keys, exptime = 0) => new BinaryRetrieval(command, keys, exptime),
    store(command, key, value, flags, exptime, cas) {
      const opcode = STORE_OPCODES[command];
      const extras =
        command === 'append' || command === 'prepend'
          ? undefined
          : Buffer.concat([u32(flags), u32(exptimeOf(exptime))]);
      return new SingleResponse(
        command,
        1,
        encodeRequest({ opcode, key, value, extras, cas: command === 'cas' ? cas : undefined }),
        (r) => {
          const outcome = storeOutcome(command, r);
          return outcome === undefined ? undefined : { value: outcome };
        },
      );
    },
    delete: (key) =>
      new SingleResponse('delete', 1, encodeRequest({ opcode: Opcode.DELETE, key }), (r) =>
        r.status === Status.SUCCESS ? TRUE : r.status === Status.KEY_ENOENT ? FALSE : undefined,
      ),
    arithmetic(command, key, delta, create) {
      const extras = Buffer.alloc(20);
      extras.writeBigUInt64BE(delta, 0);
      extras.writeBigUInt64BE(create?.initial ?? 0n, 8);
      extras.writeUInt32BE(create === undefined ? NO_CREATE : exptimeOf(create.exptime), 16);
      const opcode = command === 'incr' ? Opcode.INCREMENT : Opcode.DECREMENT;
      return new SingleResponse<bigint | undefined>(command, 1, encodeRequest({ opcode, key, extras }), (r) => {
        if (r.status === Status.SUCCESS && r.value.length === 8) return { value: r.value.readBigUInt64BE(0) };
        if (r.status === Status.KEY_ENOENT) return { value: undefined };
        return undefined;
      });
    },
    touch: (key, exptime) =>
      new SingleResponse(
        'touch',
        1,
        encodeRequest({ opcode: Opcode.TOUCH, key, extras: u32(exptimeOf(exptime)) }),
        (r) => (r.status === Status.SUCCESS ? TRUE : r.status === Status.KEY_ENOENT ? FALSE : undefined),
      ),
    flushAll: (delay) =>
      new SingleResponse<void>(
        'flush_all',
        0,
        encodeRequest(delay > 0 ? { opcode: Opcode.FLUSH, extras: u32(delay) } : { opcode: Opcode.FLUSH }),
        (r) => (r.status === Status.SUCCESS ? DONE : undefined),
      ),
    stats: (group) => new BinaryStats(group),
    version: () =>
      new SingleResponse('version', 0, encodeRequest({ opcode: Opcode.VERSION }), (r) =>
        r.status === Status.SUCCESS ? { value: r.value.toString('latin1') } : undefined,
      ),
    quietBatch: (writes) => new BinaryQuietBatch(writes),
  };
}
