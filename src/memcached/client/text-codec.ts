/**
 * The client side of memcached's text and meta protocols as pure functions over `Buffer`s: request encoders and a
 * resumable reply parser. No sockets, no timers.
 *
 * The reply parser is context-free: every text or meta reply says by itself how many data bytes follow it (`VALUE …
 * <bytes>`, `VA <size> …`), so it needs no knowledge of the requests. It is a state machine over the chunks the
 * socket delivers:
 *
 * ```
 *            line complete: VALUE/VA header           have === need (data + CRLF)
 *   ┌──────┐ ─────────────────────────────────────▶ ┌──────┐ ──────────────────────┐
 *   │ line │                                         │ data │                       │
 *   └──────┘ ◀───────────────────────────────────────┴──────┘ ◀─────────────────────┘
 *      │ any other line: one reply                     chunk ends early: keep views, wait
 * ```
 *
 * A line split across chunks is kept as views and joined once; a value split across chunks is kept as views and
 * joined once (`Buffer.concat`) when its last byte arrives; a value inside one chunk is a `subarray` of it.
 *
 * `VALUE` and `END` lines — nearly every line of a multi-get — are read as bytes where they lie: the key becomes a
 * `subarray` view (never a string), the numbers are read digit by digit, and a value that follows inside the same
 * chunk is emitted at once without a state change. Every other line (and any `VALUE` line the byte reader does not
 * find well-formed) goes through the general path, which turns it into a latin1 string and splits it.
 *
 * Keys are handed to the encoders as *wire keys*: latin1 strings with one char per byte on the wire ({@link
 * wireKey}), so that a multi-key line is one string concatenation and one `Buffer.from`, and a reply's key bytes
 * can be compared with the key asked for without decoding them.
 *
 * @module
 */

import { MemcacheError } from './errors.ts';

/** memcached's `KEY_MAX_LENGTH`. */
export const KEY_MAX_BYTES = 250;
/**
 * A reply line longer than this (without its newline) is not memcached talking: the connection is closed with
 * `MEMCACHED_ERR_PROTOCOL` instead of buffering without bound. The longest real lines are `VALUE`/`VA` headers
 * (≈ 300 bytes) and `STAT` lines.
 */
export const MAX_REPLY_LINE = 8192;
/**
 * Multi-key commands are split into lines of at most this many bytes. memcached lets only `get`/`gets` lines grow
 * past 2048 bytes (`try_read_command_ascii`); `gat`/`gats` lines longer than that are refused, so every line stays
 * below it.
 */
export const MAX_REQUEST_LINE = 2000;
/** Expiration times above this many seconds are absolute Unix times (memcached's `REALTIME_MAXDELTA`). */
export const REALTIME_MAXDELTA = 60 * 60 * 24 * 30;

const CR = 13;
const LF = 10;

// ---- keys --------------------------------------------------------------------------------------------------------

function badKey(reason: string): MemcacheError {
  return new MemcacheError('MEMCACHED_ERR_BAD_KEY', `invalid key: ${reason}`);
}

/**
 * Encodes `prefix + key` as the bytes sent on the wire (strings as UTF-8) and validates them as memcached's text
 * protocol requires: 1 to 250 bytes, none of them a space or a control character (0x00–0x20, 0x7f).
 *
 * @throws MemcacheError `MEMCACHED_ERR_BAD_KEY`
 */
export function encodeKey(key: string | Uint8Array, prefix?: Uint8Array): Buffer {
  if (typeof key !== 'string' && !(key instanceof Uint8Array)) throw badKey('keys are strings or Buffers');
  const body = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key);
  if (body.length === 0) throw badKey('empty');
  const out = prefix === undefined || prefix.length === 0 ? body : Buffer.concat([prefix, body]);
  if (out.length > KEY_MAX_BYTES) throw badKey(`${out.length} bytes (at most ${KEY_MAX_BYTES} with the prefix)`);
  for (let i = 0; i < out.length; i++) {
    const c = out[i]!;
    if (c <= 0x20 || c === 0x7f) throw badKey(`byte 0x${c.toString(16).padStart(2, '0')} at ${i}`);
  }
  return out;
}

/**
 * The wire bytes of `prefix + key` as a latin1 string (one char per byte), validated as {@link encodeKey} does and
 * with the same errors. `prefix` is the latin1 form of the (already validated) prefix bytes. Keys of printable
 * ASCII — nearly all keys — are checked char by char without encoding them; any other key goes through
 * {@link encodeKey}.
 *
 * @throws MemcacheError `MEMCACHED_ERR_BAD_KEY`
 */
export function wireKey(key: string, prefix = ''): string {
  const n = key.length;
  if (n === 0) throw badKey('empty');
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return encodeKey(key, Buffer.from(prefix, 'latin1')).toString('latin1');
  }
  const size = prefix.length + n;
  if (size > KEY_MAX_BYTES) throw badKey(`${size} bytes (at most ${KEY_MAX_BYTES} with the prefix)`);
  return prefix.length === 0 ? key : prefix + key;
}

/** True when `bytes` are the wire key `key` (a latin1 string, see {@link wireKey}). */
export function isWireKey(key: string, bytes: Uint8Array): boolean {
  const n = bytes.length;
  if (key.length !== n) return false;
  for (let i = 0; i < n; i++) if (key.charCodeAt(i) !== bytes[i]) return false;
  return true;
}

function checkExptime(exptime: number): string {
  if (!Number.isInteger(exptime) || exptime < -1 || exptime > 0xffffffff) {
    throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', `invalid ttl ${exptime}: an integer number of seconds`);
  }
  return String(exptime);
}

function checkFlags(flags: number): string {
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) {
    throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', `invalid flags ${flags}: a 32-bit unsigned integer`);
  }
  return String(flags);
}

function checkU64(n: bigint, what: string): string {
  if (n < 0n || n > 0xffffffffffffffffn) {
    throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', `invalid ${what} ${n}: a 64-bit unsigned integer`);
  }
  return n.toString();
}

/** `<ascii head><key><ascii tail>\r\n` in one buffer. */
function line(head: string, key: Uint8Array, tail: string): Buffer {
  const out = Buffer.allocUnsafe(head.length + key.length + tail.length + 2);
  let at = out.write(head, 0, 'latin1');
  out.set(key, at);
  at += key.length;
  at += out.write(tail, at, 'latin1');
  out[at] = CR;
  out[at + 1] = LF;
  return out;
}

/** `<line>\r\n<value>\r\n` in one buffer. */
function lineWithData(head: string, key: Uint8Array, tail: string, value: Uint8Array): Buffer {
  const size = head.length + key.length + tail.length + 2 + value.length + 2;
  const out = Buffer.allocUnsafe(size);
  let at = out.write(head, 0, 'latin1');
  out.set(key, at);
  at += key.length;
  at += out.write(tail, at, 'latin1');
  out[at++] = CR;
  out[at++] = LF;
  out.set(value, at);
  at += value.length;
  out[at] = CR;
  out[at + 1] = LF;
  return out;
}

// ---- text requests -----------------------------------------------------------------------------------------------

/** The retrieval commands. */
export type RetrievalCommand = 'get' | 'gets' | 'gat' | 'gats';
/** The storage commands (`cas` takes a cas unique). */
export type StorageCommand = 'set' | 'add' | 'replace' | 'append' | 'prepend' | 'cas';

/** Requests holding several commands, and how many reply groups (`END`s) they produce. */
export interface EncodedLines {
  readonly data: Buffer;
  /** Number of commands (each ends with `END` or an error line). */
  readonly commands: number;
}

/**
 * `get|gets <key>*` or `gat|gats <exptime> <key>*`, split into as many lines as {@link MAX_REQUEST_LINE} needs
 * (each line is answered by its own `VALUE`s and `END`). Keys are wire keys (latin1 strings, see {@link wireKey})
 * or their bytes.
 */
export function encodeRetrieval(
  command: RetrievalCommand,
  keys: readonly (string | Uint8Array)[],
  exptime = 0,
): EncodedLines {
  if (keys.length === 0) throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', 'no keys');
  const head = command === 'gat' || command === 'gats' ? `${command} ${checkExptime(exptime)}` : command;
  // One string for all the lines (latin1: one char per byte), encoded once.
  let text = head;
  let size = head.length;
  let commands = 1;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const key = typeof k === 'string' ? k : Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('latin1');
    if (size > head.length && size + 1 + key.length > MAX_REQUEST_LINE) {
      text += `\r\n${head}`;
      size = head.length;
      commands++;
    }
    text += ` ${key}`;
    size += 1 + key.length;
  }
  return { data: Buffer.from(`${text}\r\n`, 'latin1'), commands };
}

/** `<command> <key> <flags> <exptime> <bytes> [<cas>] [noreply]\r\n<value>\r\n`. */
export function encodeStorage(
  command: StorageCommand,
  key: Uint8Array,
  value: Uint8Array,
  flags: number,
  exptime: number,
  cas?: bigint,
  noreply = false,
): Buffer {
  let tail = ` ${checkFlags(flags)} ${checkExptime(exptime)} ${value.length}`;
  if (command === 'cas') {
    if (cas === undefined) throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', 'cas needs a cas unique');
    tail += ` ${checkU64(cas, 'cas')}`;
  }
  if (noreply) tail += ' noreply';
  return lineWithData(`${command} `, key, tail, value);
}

/** `delete <key> [noreply]`. */
export function encodeDelete(key: Uint8Array, noreply = false): Buffer {
  return line('delete ', key, noreply ? ' noreply' : '');
}

/** `incr|decr <key> <delta> [noreply]`. */
export function encodeArithmetic(command: 'incr' | 'decr', key: Uint8Array, delta: bigint, noreply = false): Buffer {
  return line(`${command} `, key, ` ${checkU64(delta, 'delta')}${noreply ? ' noreply' : ''}`);
}

/** `touch <key> <exptime> [noreply]`. */
export function encodeTouch(key: Uint8Array, exptime: number, noreply = false): Buffer {
  return line('touch ', key, ` ${checkExptime(exptime)}${noreply ? ' noreply' : ''}`);
}

/** `flush_all [delay] [noreply]`. */
export function encodeFlushAll(delay = 0, noreply = false): Buffer {
  const d = delay > 0 ? ` ${checkExptime(delay)}` : '';
  return Buffer.from(`flush_all${d}${noreply ? ' noreply' : ''}\r\n`, 'latin1');
}

/** `stats [group]` (`items`, `slabs`, `settings`, …). */
export function encodeStats(group?: string): Buffer {
  if (group !== undefined && !/^[a-z_ ]*$/.test(group)) {
    throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', `invalid stats group ${JSON.stringify(group)}`);
  }
  return Buffer.from(group ? `stats ${group}\r\n` : 'stats\r\n', 'latin1');
}

/** `version`. */
export function encodeVersion(): Buffer {
  return Buffer.from('version\r\n', 'latin1');
}

// ---- meta requests -----------------------------------------------------------------------------------------------

/**
 * Meta request flags, as tokens: `'v'`, `'t'`, `'T30'`, `'N30'`, `'R30'`, `'C123'`, `'q'`, … (memcached's
 * `protocol.txt`). They are checked to be single tokens; their meaning is the server's business.
 */
export type MetaFlagTokens = readonly string[];

function metaTail(flags: MetaFlagTokens): string {
  let tail = '';
  for (const f of flags) {
    if (!/^[A-Za-z][\x21-\x7e]*$/.test(f)) {
      throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', `invalid meta flag ${JSON.stringify(f)}`);
    }
    tail += ` ${f}`;
  }
  return tail;
}

/** `mg <key> <flags>*`. */
export function encodeMetaGet(key: Uint8Array, flags: MetaFlagTokens): Buffer {
  return line('mg ', key, metaTail(flags));
}

/** `ms <key> <datalen> <flags>*\r\n<value>\r\n`. */
export function encodeMetaSet(key: Uint8Array, value: Uint8Array, flags: MetaFlagTokens): Buffer {
  return lineWithData('ms ', key, ` ${value.length}${metaTail(flags)}`, value);
}

/** `md <key> <flags>*`. */
export function encodeMetaDelete(key: Uint8Array, flags: MetaFlagTokens): Buffer {
  return line('md ', key, metaTail(flags));
}

/** `ma <key> <flags>*`. */
export function encodeMetaArithmetic(key: Uint8Array, flags: MetaFlagTokens): Buffer {
  return line('ma ', key, metaTail(flags));
}

/** `mn`: answered by `MN` once every earlier request on the connection has been answered. */
export function encodeMetaNoop(): Buffer {
  return Buffer.from('mn\r\n', 'latin1');
}

// ---- replies -----------------------------------------------------------------------------------------------------

/** Status words of the text protocol. */
export type TextStatus = 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND' | 'DELETED' | 'TOUCHED' | 'OK' | 'RESET';
/** Meta return codes. */
export type MetaCode = 'HD' | 'VA' | 'EN' | 'NS' | 'EX' | 'NF' | 'MN';

/** The return flags of a meta reply (only the ones the server sent are set). */
export interface MetaReturnFlags {
  /** `c`: cas unique. */
  cas?: bigint;
  /** `f`: client flags. */
  flags?: number;
  /** `t`: remaining TTL in seconds, -1 for none. */
  ttl?: number;
  /** `s`: value size. */
  size?: number;
  /** `k`: the key (latin1). */
  key?: string;
  /** `O`: the opaque token. */
  opaque?: string;
  /** `h`: fetched before. */
  hit?: boolean;
  /** `l`: seconds since last access. */
  lastAccess?: number;
  /** `b`: the key is base64. */
  base64?: boolean;
  /** `W`: this client won the right to recache. */
  win?: boolean;
  /** `X`: the item is stale. */
  stale?: boolean;
  /** `Z`: another client already won the right to recache. */
  alreadyWon?: boolean;
}

/** One reply of the text or meta protocol. */
export type TextReply =
  | {
      readonly type: 'value';
      /** The key's bytes as the server sent them (a view of the chunk). */
      readonly key: Buffer;
      readonly flags: number;
      readonly cas?: bigint;
      readonly value: Buffer;
    }
  | { readonly type: 'end' }
  | { readonly type: 'stat'; readonly name: string; readonly value: string }
  | { readonly type: 'status'; readonly status: TextStatus }
  | { readonly type: 'number'; readonly value: bigint }
  | { readonly type: 'version'; readonly version: string }
  | { readonly type: 'meta'; readonly code: MetaCode; readonly flags: MetaReturnFlags; readonly value?: Buffer }
  | { readonly type: 'error'; readonly kind: 'ERROR' | 'CLIENT_ERROR' | 'SERVER_ERROR'; readonly message: string };

/** A value header whose data has not all arrived yet. */
type ValueHead =
  | { readonly type: 'value'; readonly key: Buffer; readonly flags: number; readonly cas?: bigint }
  | { readonly type: 'meta'; readonly flags: MetaReturnFlags };

/** Where the parser stopped. */
type ParserState =
  | { readonly kind: 'line'; parts: Buffer[]; have: number }
  | { readonly kind: 'data'; readonly head: ValueHead; readonly need: number; parts: Buffer[]; have: number };

const STATUSES: ReadonlySet<string> = new Set<TextStatus>([
  'STORED',
  'NOT_STORED',
  'EXISTS',
  'NOT_FOUND',
  'DELETED',
  'TOUCHED',
  'OK',
  'RESET',
]);
const META_CODES: ReadonlySet<string> = new Set<MetaCode>(['HD', 'VA', 'EN', 'NS', 'EX', 'NF', 'MN']);

const EMPTY = Buffer.alloc(0);
/** Every `END` is this one (frozen) object: replies are only read. */
const END: TextReply = Object.freeze({ type: 'end' });

function garbage(what: string, line?: string): MemcacheError {
  const shown = line === undefined ? '' : `: ${JSON.stringify(line.length > 60 ? `${line.slice(0, 60)}…` : line)}`;
  return new MemcacheError('MEMCACHED_ERR_PROTOCOL', `unexpected reply (${what})${shown}`);
}

/** Parses a non-negative decimal that fits a double exactly; -1 when it is not one. */
function parseSafeUint(s: string | undefined): number {
  if (s === undefined || s.length === 0 || s.length > 15) return -1;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

function parseU64(s: string | undefined): bigint | undefined {
  if (s === undefined || !/^[0-9]{1,20}$/.test(s)) return undefined;
  const n = BigInt(s);
  return n > 0xffffffffffffffffn ? undefined : n;
}

function parseMetaFlags(tokens: readonly string[], from: number, text: string): MetaReturnFlags {
  const out: MetaReturnFlags = {};
  for (let i = from; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.length === 0) continue;
    const rest = t.slice(1);
    switch (t[0]) {
      case 'c': {
        const cas = parseU64(rest);
        if (cas === undefined) throw garbage('bad meta cas', text);
        out.cas = cas;
        break;
      }
      case 'f': {
        const f = parseSafeUint(rest);
        if (f < 0 || f > 0xffffffff) throw garbage('bad meta flags', text);
        out.flags = f;
        break;
      }
      case 't':
        out.ttl = rest === '-1' ? -1 : parseSafeUint(rest);
        if (Number.isNaN(out.ttl) || (out.ttl < 0 && rest !== '-1')) throw garbage('bad meta ttl', text);
        break;
      case 's':
        out.size = parseSafeUint(rest);
        break;
      case 'k':
        out.key = rest;
        break;
      case 'O':
        out.opaque = rest;
        break;
      case 'h':
        out.hit = rest === '1';
        break;
      case 'l':
        out.lastAccess = parseSafeUint(rest);
        break;
      case 'b':
        out.base64 = true;
        break;
      case 'W':
        out.win = true;
        break;
      case 'X':
        out.stale = true;
        break;
      case 'Z':
        out.alreadyWon = true;
        break;
      default:
        // A flag from a newer server: ignore it, as memcached's own clients do.
        break;
    }
  }
  return out;
}

/**
 * The resumable reply parser of the text and meta protocols.
 *
 * @example
 * const parser = new TextReplyParser();
 * socket.on('data', (chunk) => parser.push(chunk, (reply) => dispatch(reply)));
 */
export class TextReplyParser {
  #state: ParserState = { kind: 'line', parts: [], have: 0 };
  // The last VALUE line read by #valueLine (scratch, to allocate nothing for a line that is all bytes).
  #key: Buffer = EMPTY;
  #flags = 0;
  #bytes = 0;
  #cas: bigint | undefined;

  /** True when the parser is between replies (nothing partial buffered). */
  get idle(): boolean {
    return this.#state.kind === 'line' && this.#state.have === 0;
  }

  /**
   * Consumes one chunk, calling `emit` for every reply it completes, in order.
   *
   * @throws MemcacheError `MEMCACHED_ERR_PROTOCOL` for bytes that are not a reply; the parser is then unusable (the
   *   connection must be closed: the stream position is lost).
   */
  push(chunk: Buffer, emit: (reply: TextReply) => void): void {
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      const state = this.#state;
      if (state.kind === 'data') {
        const take = Math.min(state.need - state.have, len - pos);
        const piece = chunk.subarray(pos, pos + take);
        pos += take;
        if (state.have === 0 && take === state.need) {
          this.#finishValue(state.head, piece, emit);
          continue;
        }
        state.parts.push(piece);
        state.have += take;
        if (state.have === state.need) this.#finishValue(state.head, Buffer.concat(state.parts, state.need), emit);
        continue;
      }
      const nl = chunk.indexOf(LF, pos);
      if (nl < 0) {
        state.parts.push(chunk.subarray(pos));
        state.have += len - pos;
        if (state.have > MAX_REPLY_LINE) throw garbage(`a line longer than ${MAX_REPLY_LINE} bytes`);
        return;
      }
      // The line is buf[start, end) without its CRLF: in the chunk, or joined from the pieces of earlier chunks.
      let buf: Buffer;
      let start: number;
      let end: number;
      if (state.have === 0) {
        buf = chunk;
        start = pos;
        end = nl;
      } else {
        state.parts.push(chunk.subarray(pos, nl));
        buf = Buffer.concat(state.parts, state.have + nl - pos);
        start = 0;
        end = buf.length;
        state.parts = [];
        state.have = 0;
      }
      pos = nl + 1;
      if (end - start > MAX_REPLY_LINE) throw garbage(`a line longer than ${MAX_REPLY_LINE} bytes`);
      if (end > start && buf[end - 1] === CR) end--;
      const first = buf[start];
      if (first === 0x56 && this.#valueLine(buf, start, end)) {
        // VALUE: its data, when all of it is in this chunk, is emitted at once (no state change).
        const need = this.#bytes + 2;
        if (len - pos >= need) {
          const n = pos + need - 2;
          if (chunk[n] !== CR || chunk[n + 1] !== LF) throw garbage('value not followed by CRLF');
          const value = chunk.subarray(pos, n);
          pos += need;
          const cas = this.#cas;
          emit(
            cas === undefined
              ? { type: 'value', key: this.#key, flags: this.#flags, value }
              : { type: 'value', key: this.#key, flags: this.#flags, cas, value },
          );
        } else {
          const head: ValueHead =
            this.#cas === undefined
              ? { type: 'value', key: this.#key, flags: this.#flags }
              : { type: 'value', key: this.#key, flags: this.#flags, cas: this.#cas };
          this.#expect(head, this.#bytes);
        }
        this.#key = EMPTY;
        continue;
      }
      if (first === 0x45 && end - start === 3 && buf[start + 1] === 0x4e && buf[start + 2] === 0x44) {
        emit(END);
        continue;
      }
      this.#line(buf.toString('latin1', start, end), emit);
    }
  }

  /**
   * Reads `VALUE <key> <flags> <bytes> [<cas>]` from `buf[start, end)` into the scratch fields, as bytes. False when
   * the line is not exactly that (single spaces, decimal numbers in range): the general path then reads it, and
   * rejects it with the precise error.
   */
  #valueLine(buf: Buffer, start: number, end: number): boolean {
    // "VALUE "
    if (
      end - start < 11 ||
      buf[start + 1] !== 0x41 ||
      buf[start + 2] !== 0x4c ||
      buf[start + 3] !== 0x55 ||
      buf[start + 4] !== 0x45 ||
      buf[start + 5] !== 0x20
    ) {
      return false;
    }
    const keyStart = start + 6;
    let at = keyStart;
    while (at < end && buf[at] !== 0x20) at++;
    if (at === keyStart || at === end) return false;
    const keyEnd = at;
    // flags: at most 15 digits (parseSafeUint), at most 2^32 - 1
    let flags = 0;
    let digits = 0;
    for (at++; at < end; at++) {
      const d = buf[at]! - 48;
      if (d < 0 || d > 9) break;
      flags = flags * 10 + d;
      digits++;
    }
    if (digits === 0 || digits > 15 || flags > 0xffffffff || at === end || buf[at] !== 0x20) return false;
    let bytes = 0;
    digits = 0;
    for (at++; at < end; at++) {
      const d = buf[at]! - 48;
      if (d < 0 || d > 9) break;
      bytes = bytes * 10 + d;
      digits++;
    }
    if (digits === 0 || digits > 15) return false;
    let cas: bigint | undefined;
    if (at < end) {
      // " <cas unique>": 1 to 20 digits, at most 2^64 - 1 (gets, gats)
      if (buf[at] !== 0x20) return false;
      const casStart = at + 1;
      for (at = casStart; at < end; at++) {
        const d = buf[at]! - 48;
        if (d < 0 || d > 9) return false;
      }
      if (end === casStart || end - casStart > 20) return false;
      cas = BigInt(buf.toString('latin1', casStart, end));
      if (cas > 0xffffffffffffffffn) return false;
    }
    this.#key = buf.subarray(keyStart, keyEnd);
    this.#flags = flags;
    this.#bytes = bytes;
    this.#cas = cas;
    return true;
  }

  #finishValue(head: ValueHead, data: Buffer, emit: (reply: TextReply) => void): void {
    const n = data.length - 2;
    if (data[n] !== CR || data[n + 1] !== LF) throw garbage('value not followed by CRLF');
    this.#state = { kind: 'line', parts: [], have: 0 };
    const value = data.subarray(0, n);
    if (head.type === 'value') {
      emit(
        head.cas === undefined
          ? { type: 'value', key: head.key, flags: head.flags, value }
          : { type: 'value', key: head.key, flags: head.flags, cas: head.cas, value },
      );
    } else {
      emit({ type: 'meta', code: 'VA', flags: head.flags, value });
    }
  }

  #expect(head: ValueHead, bytes: number): void {
    this.#state = { kind: 'data', head, need: bytes + 2, parts: [], have: 0 };
  }

  #line(text: string, emit: (reply: TextReply) => void): void {
    const sp = text.indexOf(' ');
    const word = sp < 0 ? text : text.slice(0, sp);
    switch (word) {
      case 'VALUE': {
        // VALUE <key> <flags> <bytes> [<cas unique>]
        const t = text.split(' ');
        const flags = parseSafeUint(t[2]);
        const bytes = parseSafeUint(t[3]);
        if (t.length < 4 || t.length > 5 || !t[1] || flags < 0 || flags > 0xffffffff || bytes < 0) {
          throw garbage('bad VALUE line', text);
        }
        let cas: bigint | undefined;
        if (t.length === 5) {
          cas = parseU64(t[4]);
          if (cas === undefined) throw garbage('bad VALUE cas', text);
        }
        const key = Buffer.from(t[1], 'latin1');
        this.#expect(cas === undefined ? { type: 'value', key, flags } : { type: 'value', key, flags, cas }, bytes);
        return;
      }
      case 'VA': {
        // VA <size> <flags>*
        const t = text.split(' ');
        const bytes = parseSafeUint(t[1]);
        if (bytes < 0) throw garbage('bad VA line', text);
        this.#expect({ type: 'meta', flags: parseMetaFlags(t, 2, text) }, bytes);
        return;
      }
      case 'END':
        if (sp >= 0) break;
        emit(END);
        return;
      case 'STAT': {
        // STAT <name> <value…>
        if (sp < 0) break;
        const sp2 = text.indexOf(' ', sp + 1);
        emit(
          sp2 < 0
            ? { type: 'stat', name: text.slice(sp + 1), value: '' }
            : { type: 'stat', name: text.slice(sp + 1, sp2), value: text.slice(sp2 + 1) },
        );
        return;
      }
      case 'VERSION':
        emit({ type: 'version', version: sp < 0 ? '' : text.slice(sp + 1) });
        return;
      case 'ERROR':
        emit({ type: 'error', kind: 'ERROR', message: sp < 0 ? '' : text.slice(sp + 1) });
        return;
      case 'CLIENT_ERROR':
      case 'SERVER_ERROR':
        emit({ type: 'error', kind: word, message: sp < 0 ? '' : text.slice(sp + 1) });
        return;
      default:
        if (sp < 0 && STATUSES.has(word)) {
          emit({ type: 'status', status: word as TextStatus });
          return;
        }
        if (META_CODES.has(word)) {
          emit({ type: 'meta', code: word as MetaCode, flags: parseMetaFlags(text.split(' '), 1, text) });
          return;
        }
        if (sp < 0) {
          const n = parseU64(word);
          if (n !== undefined) {
            emit({ type: 'number', value: n });
            return;
          }
        }
    }
    throw garbage('not a memcached reply', text);
  }
}
