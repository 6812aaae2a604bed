/**
 * memcached's meta text commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`), byte for byte as memcached 1.6.18 answers
 * them (`proto_text.c`), quirks included:
 *
 * - Flags are single letters, checked before anything runs; a repeated flag (or a byte ≥ 127) is
 *   `CLIENT_ERROR duplicate flag`, an unknown one `CLIENT_ERROR invalid flag`, and `md`/`ma` report every flag error
 *   as `CLIENT_ERROR invalid or duplicate flag`. When several flags are bad in other ways, the last one's message wins.
 * - Return flags come back in request order; `O` and `k` are echoed, `b` keys are decoded (memcached's lenient
 *   base64 decoder) and echoed re-encoded with a trailing ` b`. `mg k` and `me` encode the key when the *item* was
 *   stored with `ms … b`, whatever the request said.
 * - `q` hides only the nominal reply: `EN` for mg, `HD` for ms/md/ma (but not the `HD` of an `ma N` that created
 *   the item); `NS`/`EX`/`NF` and errors are always sent.
 * - Errors found while the reply is being built (`O` longer than 32 bytes) replace the reply, but whatever the
 *   flags before it did (`T`, `N`, the increment of `ma`) stays done.
 * - Newer-than-1.6.18 features are refused as 1.6.18 refuses them: `E` and `x` are invalid flags; ms `s` and `N`
 *   are accepted and ignored.
 *
 * @module
 */

import type { Connection } from '../server/connection.ts';
import { DeltaResult, ItemFlag, type ItemStore, StoreOp, StoreResult } from '../store/item-store.ts';
import { TS } from '../store/thread-stats.ts';
import { KEY_MAX_LENGTH, writeUint } from './limits.ts';
import type { ReplyBuffer } from './reply-buffer.ts';
import { parseCas, parseI32, parseU32, parseU64, type Tokens } from './tokenize.ts';

/** memcached's `MFLAG_MAX_OPT_LENGTH`: more tokens than this (terminal token included) is refused. */
const MAX_OPT_TOKENS = 20;
/** memcached's `MFLAG_MAX_OPAQUE_LENGTH`: the whole `O…` token, the `O` included. */
const MAX_OPAQUE_LENGTH = 32;
/** memcached's `sizeof(item)` on 64-bit, for the `size=` and `cls=` of `me`. */
const MEMCACHED_ITEM_HEADER = 48;

const BAD_FORMAT = 'CLIENT_ERROR bad command line format';
const CR = 13;
const LF = 10;

// Flag letters (first byte of a flag token).
const F = {
  b: 0x62, // base64 key
  c: 0x63, // return cas
  f: 0x66, // return client flags
  h: 0x68, // return hit-before
  k: 0x6b, // return key
  l: 0x6c, // return seconds since last access
  q: 0x71, // quiet
  s: 0x73, // return size
  t: 0x74, // return TTL
  u: 0x75, // no LRU bump
  v: 0x76, // return value
  C: 0x43, // compare cas
  D: 0x44, // ma delta
  F: 0x46, // ms client flags
  I: 0x49, // invalidate (stale)
  J: 0x4a, // ma initial value
  L: 0x4c, // ignored
  M: 0x4d, // mode switch
  N: 0x4e, // vivify on miss
  O: 0x4f, // opaque
  P: 0x50, // ignored
  R: 0x52, // win recache when TTL is below
  T: 0x54, // update TTL
} as const;

/** The parsed flags of one meta command (memcached's `struct _meta_flags`), plus the key after `b` decoding. */
class MetaFlags {
  noUpdate = false;
  vivify = false;
  value = false;
  setStale = false;
  noReply = false;
  hasCas = false;
  newTtl = false;
  keyBinary = false;
  /** `M` mode byte, 0 when none. */
  mode = 0;
  /** `T`, already a server-relative time. */
  exptime = 0;
  /** `N`, already a server-relative time. */
  autovivExptime = 0;
  /** `R`, already a server-relative time. */
  recacheTime = 0;
  clientFlags = 0;
  casId = 0;
  delta = 1n;
  initial = 0n;
  /** The key: `key[kOff, kOff + nkey)`, the request line itself or the decoded `b` key. */
  key: Uint8Array = EMPTY;
  kOff = 0;
  nkey = 0;

  reset(buf: Buffer, t: Tokens): void {
    this.noUpdate = false;
    this.vivify = false;
    this.value = false;
    this.setStale = false;
    this.noReply = false;
    this.hasCas = false;
    this.newTtl = false;
    this.keyBinary = false;
    this.mode = 0;
    this.exptime = 0;
    this.autovivExptime = 0;
    this.recacheTime = 0;
    this.clientFlags = 0;
    this.casId = 0;
    this.delta = 1n;
    this.initial = 0n;
    this.key = buf;
    this.kOff = t.start[1]!;
    this.nkey = t.len(1);
  }
}

const EMPTY = new Uint8Array(0);
// Scratch state: commands run synchronously, one at a time per thread.
const flags = new MetaFlags();
const seen = new Uint8Array(128);
/** Decoded `b` keys (never decoded in place: an `ms` may be parsed again once its data has arrived). */
const keyScratch = Buffer.alloc(256);
/** An item's key, to base64-encode it. */
const itemKeyScratch = Buffer.alloc(256);

/** Base64 alphabet → value; `=` decodes as 0; -1 for every other byte (skipped, as memcached's decoder does). */
const B64 = new Int8Array(256).fill(-1);
{
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < 64; i++) B64[alphabet.charCodeAt(i)] = i;
  B64[0x3d] = 0;
}

/**
 * memcached's lenient base64 decoding: bytes outside the alphabet are skipped, the rest (`=` included) must come
 * in whole quads, and decoding stops after the first quad holding padding. Returns the decoded length, 0 on failure.
 */
export function decodeBase64Key(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let count = 0;
  for (let i = start; i < end; i++) if (B64[src[i]!]! >= 0) count++;
  if (count === 0 || count % 4 !== 0) return 0;
  let o = 0;
  let n = 0;
  let pad = 0;
  let acc = 0;
  for (let i = start; i < end; i++) {
    const v = B64[src[i]!]!;
    if (v < 0) continue;
    if (src[i] === 0x3d) pad++;
    acc = (acc << 6) | v;
    if (++n < 4) continue;
    out[o++] = (acc >>> 16) & 0xff;
    out[o++] = (acc >>> 8) & 0xff;
    out[o++] = acc & 0xff;
    n = 0;
    acc = 0;
    if (pad > 0) {
      if (pad > 2) return 0;
      o -= pad;
      break;
    }
  }
  return o;
}

/**
 * memcached's `_meta_flag_preparse` over tokens `[first, count - 1)`. Fills {@link flags}; returns the error line,
 * or undefined. Like memcached it stops at once on a duplicate or unknown flag, and otherwise goes on parsing after
 * a bad value, the last bad value naming the error (an `F` without a number keeps the previous message).
 */
function parseFlags(store: ItemStore, buf: Buffer, t: Tokens, first: number): string | undefined {
  const of = flags;
  of.reset(buf, t);
  seen.fill(0);
  let error: string | undefined;
  let message = BAD_FORMAT;
  const last = t.count - 1;
  for (let i = first; i < last; i++) {
    const s = t.start[i]!;
    const e = t.end[i]!;
    const o = buf[s]!;
    if (o >= 127 || seen[o] !== 0) return 'CLIENT_ERROR duplicate flag';
    seen[o] = 1;
    switch (o) {
      case F.b: {
        const n = decodeBase64Key(buf, t.start[1]!, t.end[1]!, keyScratch);
        if (n === 0) error = message = 'CLIENT_ERROR error decoding key';
        of.key = keyScratch;
        of.kOff = 0;
        of.nkey = n;
        of.keyBinary = true;
        break;
      }
      case F.N:
      case F.T:
      case F.R: {
        const v = parseI32(buf, s + 1, e);
        if (v === undefined) {
          error = message = 'CLIENT_ERROR bad token in command line format';
          if (o === F.N) of.vivify = true;
          break;
        }
        // memcached maps a negative TTL to "already expired" (realtime() of an old absolute time): so does ours.
        const rel = store.realtime(v);
        if (o === F.N) {
          of.vivify = true;
          of.autovivExptime = rel;
        } else if (o === F.T) {
          of.exptime = rel;
          of.newTtl = true;
        } else {
          of.recacheTime = rel;
        }
        break;
      }
      case F.v:
        of.value = true;
        break;
      case F.u:
        of.noUpdate = true;
        break;
      case F.q:
        of.noReply = true;
        break;
      case F.F: {
        const v = parseU32(buf, s + 1, e);
        if (v === undefined) error = message;
        else of.clientFlags = v;
        break;
      }
      case F.C: {
        const v = parseCas(buf, s + 1, e);
        if (v === undefined) error = message = 'CLIENT_ERROR bad token in command line format';
        else {
          of.casId = v;
          of.hasCas = true;
        }
        break;
      }
      case F.M:
        if (e - s !== 2) error = message = 'CLIENT_ERROR incorrect length for M token';
        else of.mode = buf[s + 1]!;
        break;
      case F.J: {
        const v = parseU64(buf, s + 1, e);
        if (v === undefined) error = message = 'CLIENT_ERROR invalid numeric initial value';
        else of.initial = v;
        break;
      }
      case F.D: {
        const v = parseU64(buf, s + 1, e);
        if (v === undefined) error = message = 'CLIENT_ERROR invalid numeric delta value';
        else of.delta = v;
        break;
      }
      case F.I:
        of.setStale = true;
        break;
      // Known flags with nothing to prepare (`s` is a return flag of mg only; ms accepts and ignores it).
      case F.O:
      case F.P:
      case F.L:
      case F.k:
      case F.s:
      case F.t:
      case F.c:
      case F.f:
      case F.l:
      case F.h:
        break;
      default:
        return 'CLIENT_ERROR invalid flag';
    }
  }
  return error;
}

/** Appends ` <letter>`. */
function flagChar(reply: ReplyBuffer, letter: number): void {
  const at = reply.reserve(2);
  reply.buf[at] = 0x20;
  reply.buf[at + 1] = letter;
}

/** Appends the opaque token (`O` included) after a space. */
function echoToken(reply: ReplyBuffer, buf: Buffer, s: number, e: number): void {
  const at = reply.reserve(1 + e - s);
  reply.buf[at] = 0x20;
  buf.copy(reply.buf, at + 1, s, e);
}

/** Appends ` k<key>`, or ` k<base64 key> b` for a binary key. */
function echoKey(reply: ReplyBuffer, key: Uint8Array, off: number, n: number, binary: boolean): void {
  flagChar(reply, F.k);
  if (!binary) {
    reply.bytes(key, off, off + n);
    return;
  }
  reply.ascii(Buffer.from(key.buffer, key.byteOffset + off, n).toString('base64'));
  reply.ascii(' b');
}

/** Appends ` k…` with an item's own key (base64 when the item was stored with `b`). */
function echoItemKey(reply: ReplyBuffer, store: ItemStore, ref: number): void {
  const n = store.copyKey(ref, itemKeyScratch, 0);
  echoKey(reply, itemKeyScratch, 0, n, (store.itemFlags(ref) & ItemFlag.KEY_BINARY) !== 0);
}

/** Appends a TTL as memcached prints it: -1 for never, else the unsigned seconds left (wrapping if past). */
function writeTtl(reply: ReplyBuffer, exptime: number, now: number): void {
  if (exptime === 0) reply.ascii('-1');
  else writeUint(reply, (exptime - now) >>> 0);
}

/** Writes an error line that replaces whatever this command had written from `mark` on. */
function fail(conn: Connection, mark: number, message: string): void {
  conn.reply.truncate(mark);
  conn.reply.line(message);
}

/**
 * Runs one meta command line `buf[lineStart, lineEnd)` (already tokenized into `conn.tokens`); returns bytes
 * consumed (see `consumeText`): the line, the line and the data of an `ms`, or `-(line + data)` while an `ms`'s data
 * has not all arrived (nothing has been done then, so the call can simply be repeated).
 */
export function consumeMeta(
  conn: Connection,
  buf: Buffer,
  lineStart: number,
  lineEnd: number,
  next: number,
  end: number,
): number {
  void lineEnd;
  const t = conn.tokens;
  const lineLen = next - lineStart;
  switch (buf[t.start[0]! + 1]) {
    case 0x67: // mg
      metaGet(conn, buf, t);
      return lineLen;
    case 0x73: // ms
      return metaSet(conn, buf, t, lineStart, next, end);
    case 0x64: // md
      metaDelete(conn, buf, t);
      return lineLen;
    case 0x61: // ma
      metaArithmetic(conn, buf, t);
      return lineLen;
    case 0x6e: // mn (memcached flushes its output here; ours leaves once the input chunk is processed anyway)
      conn.reply.line('MN');
      return lineLen;
    case 0x65: // me
      metaDebug(conn, buf, t);
      return lineLen;
    default:
      conn.reply.line('ERROR');
      return lineLen;
  }
}

/** Common prologue of mg/ms/md/ma: token count, key length, option count. Returns false after an error line. */
function checkLine(conn: Connection, t: Tokens, tooManyMessage: string): boolean {
  if (t.count < 3) {
    conn.reply.line('ERROR');
    return false;
  }
  if (t.len(1) > KEY_MAX_LENGTH) {
    conn.reply.line(BAD_FORMAT);
    return false;
  }
  if (t.count > MAX_OPT_TOKENS) {
    conn.reply.line(tooManyMessage);
    return false;
  }
  return true;
}

/** `mg <key> <flags>*` */
function metaGet(conn: Connection, buf: Buffer, t: Tokens): void {
  if (!checkLine(conn, t, 'CLIENT_ERROR options flags are too long')) return;
  const store = conn.store;
  const error = parseFlags(store, buf, t, 2);
  if (error !== undefined) {
    conn.reply.line(error);
    return;
  }
  const of = flags;
  const stats = conn.stats;
  const reply = conn.reply;
  const mark = reply.length;
  const last = t.count - 1;
  store.lock();
  try {
    let ref = store.find(of.key, of.kOff, of.nkey, false);
    let created = false;
    if (ref === 0 && of.vivify) {
      // An empty placeholder that only this request "wins"; memcached links it with exptime 0, then `N` sets it.
      const fresh = store.alloc(of.key, of.kOff, of.nkey, 0, 0, 0);
      if (fresh > 0) {
        store.link(fresh);
        ref = fresh;
        created = true;
      }
    }
    if (ref !== 0) {
      let ttlSet = false;
      const now = store.now;
      if (of.value) {
        reply.ascii('VA ');
        writeUint(reply, store.valueLength(ref));
      } else {
        reply.ascii('HD');
      }
      let won = false;
      for (let i = 2; i < last; i++) {
        const s = t.start[i]!;
        switch (buf[s]) {
          case F.T:
            ttlSet = true;
            store.setExptime(ref, of.exptime);
            break;
          case F.N:
            if (created) {
              store.setExptime(ref, of.autovivExptime);
              won = true;
            }
            break;
          case F.R: {
            const exp = store.exptime(ref);
            if ((store.itemFlags(ref) & ItemFlag.TOKEN_SENT) === 0 && !created && exp !== 0 && exp < of.recacheTime) {
              won = true;
            }
            break;
          }
          case F.s:
            flagChar(reply, F.s);
            writeUint(reply, store.valueLength(ref));
            break;
          case F.t:
            flagChar(reply, F.t);
            writeTtl(reply, store.exptime(ref), now);
            break;
          case F.c:
            flagChar(reply, F.c);
            writeUint(reply, store.cas(ref));
            break;
          case F.f:
            flagChar(reply, F.f);
            writeUint(reply, store.flags(ref));
            break;
          case F.l:
            flagChar(reply, F.l);
            writeUint(reply, (now - store.accessTime(ref)) >>> 0);
            break;
          case F.h:
            flagChar(reply, F.h);
            reply.ascii(store.itemFlags(ref) & ItemFlag.FETCHED ? '1' : '0');
            break;
          case F.O:
            if (t.end[i]! - s > MAX_OPAQUE_LENGTH) {
              fail(conn, mark, 'CLIENT_ERROR opaque token too long');
              return;
            }
            echoToken(reply, buf, s, t.end[i]!);
            break;
          case F.k:
            echoItemKey(reply, store, ref);
            break;
        }
      }
      // Z before W: a client never sees both for one fetch.
      const itFlags = store.itemFlags(ref);
      if (itFlags & ItemFlag.TOKEN_SENT) flagChar(reply, 0x5a);
      if (itFlags & ItemFlag.STALE) {
        flagChar(reply, 0x58);
        if ((itFlags & ItemFlag.TOKEN_SENT) === 0) won = true;
      }
      if (won) {
        flagChar(reply, 0x57);
        store.addItemFlags(ref, ItemFlag.TOKEN_SENT);
      }
      reply.crlf();
      if (of.value) {
        const at = reply.reserve(store.valueLength(ref) + 2);
        const after = store.copyValue(ref, reply.buf, at);
        reply.buf[after] = CR;
        reply.buf[after + 1] = LF;
      }
      // The bump comes last so that `h` and `l` report the state before this fetch.
      if (!of.noUpdate) store.bump(ref);
      if (ttlSet) {
        stats[TS.cmd_touch]!++;
        stats[TS.touch_hits]!++;
        store.countTouchHit(ref);
      } else {
        stats[TS.cmd_get]!++;
        stats[TS.get_hits]!++;
        store.countGetHit(ref);
      }
      return;
    }
    // A miss counts as a get even with `T` (memcached only notices the touch while building a hit's reply).
    stats[TS.cmd_get]!++;
    stats[TS.get_misses]!++;
  } finally {
    store.unlock();
  }
  reply.ascii('EN');
  if (!echoOpaqueAndKey(conn, buf, t, mark)) return;
  if (of.noReply) reply.truncate(mark);
  else reply.crlf();
}

/**
 * Appends the ` O…` and ` k…` return flags of a reply without an item (the key as requested). Returns false after
 * replacing the reply with the opaque-too-long error.
 */
function echoOpaqueAndKey(conn: Connection, buf: Buffer, t: Tokens, mark: number): boolean {
  const of = flags;
  const reply = conn.reply;
  const last = t.count - 1;
  for (let i = 2; i < last; i++) {
    const s = t.start[i]!;
    const c = buf[s];
    if (c === F.O) {
      if (t.end[i]! - s > MAX_OPAQUE_LENGTH) {
        fail(conn, mark, 'CLIENT_ERROR opaque token too long');
        return false;
      }
      echoToken(reply, buf, s, t.end[i]!);
    } else if (c === F.k) {
      echoKey(reply, of.key, of.kOff, of.nkey, of.keyBinary);
    }
  }
  return true;
}

/** `ms <key> <datalen> <flags>*\r\n<data>\r\n` */
function metaSet(conn: Connection, buf: Buffer, t: Tokens, lineStart: number, next: number, end: number): number {
  const lineLen = next - lineStart;
  const reply = conn.reply;
  if (t.count < 3) {
    reply.line('ERROR');
    return lineLen;
  }
  // Errors up to the data length leave the data to be read as commands, as memcached does.
  if (t.len(1) > KEY_MAX_LENGTH || t.count === 3) {
    reply.line(BAD_FORMAT);
    return lineLen;
  }
  if (t.count > MAX_OPT_TOKENS) {
    reply.line('CLIENT_ERROR options flags too long');
    return lineLen;
  }
  const vlen = parseI32(buf, t.start[2]!, t.end[2]!);
  if (vlen === undefined || vlen < 0 || vlen > 0x7fffffff - 2) {
    reply.line(BAD_FORMAT);
    return lineLen;
  }
  const store = conn.store;
  const last = t.count - 1;
  // From here on an error swallows the data.
  let error = parseFlags(store, buf, t, 3);
  const of = flags;
  if (error === undefined) {
    let opaqueTooLong = false;
    for (let i = 3; i < last; i++) {
      if (buf[t.start[i]!] === F.O && t.len(i) > MAX_OPAQUE_LENGTH) opaqueTooLong = true;
    }
    // An invalid mode is reported in preference to a long opaque.
    if (storeOpFor(of.mode) === 0) error = 'CLIENT_ERROR invalid mode for ms M token';
    else if (opaqueTooLong) error = 'CLIENT_ERROR opaque token too long';
  }
  if (error !== undefined) {
    conn.swallow = vlen + 2;
    reply.line(error);
    return lineLen;
  }
  // memcached allocates the item before reading the data: a value that can never fit is refused (and the old value
  // dropped, "to avoid stale data persisting") before any data is read.
  if (!store.fits(of.nkey, vlen + (of.clientFlags !== 0 ? 4 : 0))) {
    conn.stats[TS.store_too_large]!++;
    store.lock();
    try {
      dropKey(store, of.key, of.kOff, of.nkey);
    } finally {
      store.unlock();
    }
    conn.swallow = vlen + 2;
    reply.line('SERVER_ERROR object too large for cache');
    return lineLen;
  }
  const total = lineLen + vlen + 2;
  if (end - lineStart < total) return -total;
  conn.stats[TS.cmd_set]!++;
  if (buf[next + vlen] !== CR || buf[next + vlen + 1] !== LF) {
    reply.line('CLIENT_ERROR bad data chunk');
    return total;
  }
  let op = storeOpFor(of.mode) as StoreOp;
  // A cas upgrades set and replace to a cas store; add ignores it; append/prepend compare it themselves.
  if (of.hasCas && (op === StoreOp.SET || op === StoreOp.REPLACE)) op = StoreOp.CAS;
  let result: StoreResult;
  let cas = 0;
  store.lock();
  try {
    result = store.store(
      op,
      of.key,
      of.kOff,
      of.nkey,
      of.clientFlags,
      of.exptime,
      buf,
      next,
      vlen,
      of.hasCas ? of.casId : 0,
      of.setStale && op === StoreOp.CAS,
    );
    if (result === StoreResult.STORED) {
      cas = store.lastCas;
      // Append/prepend build a fresh item that memcached does not mark binary.
      if (of.keyBinary && op !== StoreOp.APPEND && op !== StoreOp.PREPEND) {
        const ref = store.find(of.key, of.kOff, of.nkey, false);
        if (ref !== 0) store.addItemFlags(ref, ItemFlag.KEY_BINARY);
      }
    } else if (op === StoreOp.APPEND || op === StoreOp.PREPEND) {
      // memcached allocates the combined item inside the store: a failure there is a plain NOT_STORED.
      if (result !== StoreResult.EXISTS) result = StoreResult.NOT_STORED;
    } else if (result === StoreResult.TOO_LARGE || result === StoreResult.NO_MEMORY) {
      dropKey(store, of.key, of.kOff, of.nkey);
    }
  } finally {
    store.unlock();
  }
  const mark = reply.length;
  switch (result) {
    case StoreResult.STORED:
      reply.ascii('HD');
      break;
    case StoreResult.EXISTS:
      reply.ascii('EX');
      break;
    case StoreResult.NOT_FOUND:
      reply.ascii('NF');
      break;
    case StoreResult.NOT_STORED:
      reply.ascii('NS');
      break;
    case StoreResult.TOO_LARGE:
      conn.stats[TS.store_too_large]!++;
      reply.line('SERVER_ERROR object too large for cache');
      return total;
    default:
      conn.stats[TS.store_no_memory]!++;
      reply.line('SERVER_ERROR out of memory storing object');
      return total;
  }
  for (let i = 3; i < last; i++) {
    const s = t.start[i]!;
    switch (buf[s]) {
      case F.O:
        echoToken(reply, buf, s, t.end[i]!);
        break;
      case F.k:
        echoKey(reply, of.key, of.kOff, of.nkey, of.keyBinary);
        break;
      case F.c:
        // The cas of the stored item; 0 when nothing was stored.
        flagChar(reply, F.c);
        writeUint(reply, cas);
        break;
    }
  }
  if (result === StoreResult.STORED && of.noReply) reply.truncate(mark);
  else reply.crlf();
  return total;
}

/** The store operation of an ms `M` mode byte (0 = none: set), or 0 for an invalid one. */
function storeOpFor(mode: number): StoreOp | 0 {
  switch (mode) {
    case 0:
    case 0x53: // S
      return StoreOp.SET;
    case 0x45: // E
      return StoreOp.ADD;
    case 0x41: // A
      return StoreOp.APPEND;
    case 0x50: // P
      return StoreOp.PREPEND;
    case 0x52: // R
      return StoreOp.REPLACE;
    default:
      return 0;
  }
}

/** Unlinks the live item of a key, if any (after a refused store). The caller holds the store lock. */
function dropKey(store: ItemStore, key: Uint8Array, off: number, n: number): void {
  const ref = store.find(key, off, n, false);
  if (ref !== 0) store.unlink(ref);
}

/** `md <key> <flags>*` */
function metaDelete(conn: Connection, buf: Buffer, t: Tokens): void {
  if (!checkLine(conn, t, 'CLIENT_ERROR options flags too long')) return;
  const store = conn.store;
  if (parseFlags(store, buf, t, 2) !== undefined) {
    conn.reply.line('CLIENT_ERROR invalid or duplicate flag');
    return;
  }
  const of = flags;
  const reply = conn.reply;
  // The return flags are written before the lookup (leaving room for the status code), so a long opaque is an error
  // without side effects.
  const mark = reply.length;
  reply.ascii('  ');
  if (!echoOpaqueAndKey(conn, buf, t, mark)) return;
  let code: string;
  store.lock();
  try {
    const ref = store.find(of.key, of.kOff, of.nkey, false);
    if (ref === 0) {
      conn.stats[TS.delete_misses]!++;
      code = 'NF';
    } else if (of.hasCas && store.cas(ref) !== of.casId) {
      conn.stats[TS.delete_misses]!++;
      code = 'EX';
    } else if (of.setStale) {
      // Invalidate instead of deleting: stale, a new cas, and the next fetcher may win the token again.
      if (of.newTtl) store.setExptime(ref, of.exptime);
      store.addItemFlags(ref, ItemFlag.STALE);
      store.clearItemFlags(ref, ItemFlag.TOKEN_SENT);
      store.setCas(ref, store.nextCas());
      code = 'HD';
    } else {
      store.delete(of.key, of.kOff, of.nkey);
      code = 'HD';
    }
  } finally {
    store.unlock();
  }
  if (code === 'HD' && of.noReply) {
    reply.truncate(mark);
    return;
  }
  reply.buf.write(code, mark, 'latin1');
  reply.crlf();
}

/** `ma <key> <flags>*` */
function metaArithmetic(conn: Connection, buf: Buffer, t: Tokens): void {
  if (!checkLine(conn, t, 'CLIENT_ERROR options flags too long')) return;
  const store = conn.store;
  if (parseFlags(store, buf, t, 2) !== undefined) {
    conn.reply.line('CLIENT_ERROR invalid or duplicate flag');
    return;
  }
  const of = flags;
  const reply = conn.reply;
  let incr: boolean;
  switch (of.mode) {
    case 0:
    case 0x49: // I
    case 0x2b: // +
      incr = true;
      break;
    case 0x44: // D
    case 0x2d: // -
      incr = false;
      break;
    default:
      reply.line('CLIENT_ERROR invalid mode for ma M token');
      return;
  }
  const stats = conn.stats;
  const mark = reply.length;
  const last = t.count - 1;
  store.lock();
  try {
    const before = store.find(of.key, of.kOff, of.nkey, false);
    const oldLength = before === 0 ? 0 : store.valueLength(before);
    const r = store.delta(of.key, of.kOff, of.nkey, incr, of.delta, of.hasCas ? of.casId : 0);
    let ref = 0;
    let created = false;
    let value = 0n;
    switch (r) {
      case DeltaResult.OK:
        stats[incr ? TS.incr_hits : TS.decr_hits]!++;
        value = store.lastDelta;
        ref = store.find(of.key, of.kOff, of.nkey, false);
        break;
      case DeltaResult.NON_NUMERIC:
        reply.line('CLIENT_ERROR cannot increment or decrement non-numeric value');
        return;
      case DeltaResult.NO_MEMORY:
        reply.line('SERVER_ERROR out of memory');
        return;
      case DeltaResult.EXISTS:
        reply.ascii('EX');
        break;
      default:
        if (!of.vivify) {
          stats[incr ? TS.incr_misses : TS.decr_misses]!++;
          reply.ascii('NF');
          break;
        }
        if (store.createNumber(of.key, of.kOff, of.nkey, of.initial, 0) !== StoreResult.STORED) {
          reply.line('SERVER_ERROR Out of memory allocating new item');
          return;
        }
        value = of.initial;
        ref = store.find(of.key, of.kOff, of.nkey, false);
        created = ref !== 0;
    }
    if (ref === 0) {
      if (!echoOpaqueAndKey(conn, buf, t, mark)) return;
      reply.crlf();
      return;
    }
    const digits = value.toString();
    // A result longer than the old value lands in a new item, but memcached goes on with the old one: `T` then
    // changes the TTL of the replaced item only, and `t` reports that.
    const replaced = !created && digits.length > oldLength;
    let exptime = store.exptime(ref);
    if (of.value) {
      reply.ascii('VA ');
      writeUint(reply, digits.length);
    } else {
      reply.ascii('HD');
    }
    for (let i = 2; i < last; i++) {
      const s = t.start[i]!;
      switch (buf[s]) {
        case F.c:
          flagChar(reply, F.c);
          writeUint(reply, store.cas(ref));
          break;
        case F.t:
          flagChar(reply, F.t);
          writeTtl(reply, exptime, store.now);
          break;
        case F.T:
          exptime = of.exptime;
          if (!replaced) store.setExptime(ref, exptime);
          break;
        case F.N:
          if (created) {
            exptime = of.autovivExptime;
            store.setExptime(ref, exptime);
          }
          break;
        case F.O:
          if (t.end[i]! - s > MAX_OPAQUE_LENGTH) {
            fail(conn, mark, 'CLIENT_ERROR opaque token too long');
            return;
          }
          echoToken(reply, buf, s, t.end[i]!);
          break;
        case F.k:
          echoKey(reply, of.key, of.kOff, of.nkey, of.keyBinary);
          break;
      }
    }
    if (of.value) {
      reply.crlf();
      reply.ascii(digits);
    }
    // Quiet hides the nominal reply of an update, not the one of a vivified item (as memcached 1.6.18).
    if (of.noReply && !created) reply.truncate(mark);
    else reply.crlf();
  } finally {
    store.unlock();
  }
}

/** `me <key> [b]`: memcached's debug line about one item, with memcached's own size and class arithmetic. */
function metaDebug(conn: Connection, buf: Buffer, t: Tokens): void {
  const reply = conn.reply;
  if (t.count < 3 || t.len(1) > KEY_MAX_LENGTH) {
    reply.line(BAD_FORMAT);
    return;
  }
  let key: Uint8Array = buf;
  let kOff = t.start[1]!;
  let nkey = t.len(1);
  if (t.count >= 4 && t.len(2) === 1 && buf[t.start[2]!] === F.b) {
    nkey = decodeBase64Key(buf, kOff, t.end[1]!, keyScratch);
    if (nkey === 0) {
      reply.line(BAD_FORMAT);
      return;
    }
    key = keyScratch;
    kOff = 0;
  }
  const store = conn.store;
  store.lock();
  try {
    const ref = store.find(key, kOff, nkey, false);
    if (ref === 0) {
      reply.line('EN');
    } else {
      const now = store.now;
      const n = store.copyKey(ref, itemKeyScratch, 0);
      reply.ascii('ME ');
      if (store.itemFlags(ref) & ItemFlag.KEY_BINARY) reply.ascii(itemKeyScratch.toString('base64', 0, n));
      else reply.bytes(itemKeyScratch, 0, n);
      const exp = store.exptime(ref);
      const size = memcachedItemSize(store, ref);
      // memcached prints `current_time - exptime` as a signed int: minus the seconds left.
      reply.line(
        ` exp=${exp === 0 ? -1 : (now - exp) | 0} la=${(now - store.accessTime(ref)) >>> 0} cas=${store.cas(ref)} fetch=${
          store.itemFlags(ref) & ItemFlag.FETCHED ? 'yes' : 'no'
        } cls=${store.classFor(size) || store.largestClass} size=${size}`,
      );
    }
  } finally {
    store.unlock();
  }
  // memcached counts `me` (only) as a meta command; both columns name that counter.
  conn.stats[TS.meta_cmds]!++;
  conn.stats[TS.cmd_meta]!++;
}

/**
 * memcached's `ITEM_ntotal`: its 48-byte header, the key and a NUL, 4 bytes of client flags when they are not 0,
 * the value with its CRLF, and the cas unless `-C`. (Our items are laid out differently; `me` reports memcached's
 * numbers so that its output can be compared.)
 */
function memcachedItemSize(store: ItemStore, ref: number): number {
  return (
    MEMCACHED_ITEM_HEADER +
    store.keyLength(ref) +
    1 +
    (store.flags(ref) !== 0 ? 4 : 0) +
    store.valueLength(ref) +
    2 +
    (store.config.useCas ? 8 : 0)
  );
}
