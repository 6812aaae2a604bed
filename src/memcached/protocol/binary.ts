/**
 * memcached's binary protocol (deprecated upstream since 1.6.0, still used by memjs, libmemcached and memcaslap -B).
 *
 * Replies follow memcached 1.6.18's `proto_bin.c` byte for byte, including its quirks:
 *
 * - a request is dispatched once its header, extras and key are in; only storage and SASL requests also wait for
 *   (and consume) the rest of the body. A Stat or Touch whose bodylen claims more bytes leaves them to be parsed as
 *   the next request, and an unknown opcode swallows `bodylen` bytes *after* its key;
 * - validation failures answer 0x0004 and close; keylen/extlen beyond bodylen answer 0x0081 and close;
 * - quiet variants suppress successes (and GetQ/GATQ misses) but never errors;
 * - add/replace/set with a cas are cas operations; add on an existing key answers 0x0002;
 * - Touch replies carry the item's flags as extras; GetK/GATK misses carry the key as key and body;
 * - with SASL on, only SASL and Version run before authentication, anything else answers 0x0020 and closes, and
 *   every SASL request starts by dropping the authentication (memcached's `init_sasl_conn`).
 *
 * Layout of a request (all integers big-endian):
 *
 * ```
 *  0      1      2      3      4      5      6      7
 * +------+------+------+------+------+------+------+------+
 * |magic |opcode|   keylen    |extlen|dtype | vbucket/stat|
 * +------+------+------+------+------+------+------+------+
 * |         bodylen           |          opaque           |
 * +------+------+------+------+------+------+------+------+
 * |                          cas                          |
 * +------+------+------+------+------+------+------+------+
 * | extras (extlen) | key (keylen) | value (bodylen - extlen - keylen) |
 * ```
 *
 * @module
 */

import type { Connection } from '../server/connection.ts';
import { DeltaResult, type ItemStore, StoreOp, StoreResult } from '../store/item-store.ts';
import { TS } from '../store/thread-stats.ts';
import {
  HEADER_LENGTH,
  MAX_SASL_MECH_LEN,
  NO_CREATE,
  Opcode,
  parseRequestHeader,
  putU32,
  REQUEST_MAGIC,
  type RequestHeader,
  STATUS_TEXT,
  Status,
  u32,
  writeResponseHeader,
} from './binary-codec.ts';
import { KEY_MAX_LENGTH } from './limits.ts';

export * from './binary-codec.ts';

// ---- dispatch tables ---------------------------------------------------------------------------------------------

/** Quiet opcode → its loud form; other opcodes map to themselves. */
const BASE = new Uint8Array(256).map((_, i) => i);
/** 1 for the quiet opcodes. */
const QUIET = new Uint8Array(256);
for (const [q, base] of [
  [Opcode.SETQ, Opcode.SET],
  [Opcode.ADDQ, Opcode.ADD],
  [Opcode.REPLACEQ, Opcode.REPLACE],
  [Opcode.DELETEQ, Opcode.DELETE],
  [Opcode.INCREMENTQ, Opcode.INCREMENT],
  [Opcode.DECREMENTQ, Opcode.DECREMENT],
  [Opcode.QUITQ, Opcode.QUIT],
  [Opcode.FLUSHQ, Opcode.FLUSH],
  [Opcode.APPENDQ, Opcode.APPEND],
  [Opcode.PREPENDQ, Opcode.PREPEND],
  [Opcode.GETQ, Opcode.GET],
  [Opcode.GETKQ, Opcode.GETK],
  [Opcode.GATQ, Opcode.GAT],
  [Opcode.GATKQ, Opcode.GATK],
] as const) {
  BASE[q] = base;
  QUIET[q] = 1;
}

/** Opcodes whose value is read (and consumed) with the request: the body must be complete before they run. */
const READS_VALUE = new Uint8Array(256);
for (const op of [
  Opcode.SET,
  Opcode.ADD,
  Opcode.REPLACE,
  Opcode.APPEND,
  Opcode.PREPEND,
  Opcode.SETQ,
  Opcode.ADDQ,
  Opcode.REPLACEQ,
  Opcode.APPENDQ,
  Opcode.PREPENDQ,
  Opcode.SASL_AUTH,
  Opcode.SASL_STEP,
]) {
  READS_VALUE[op] = 1;
}

/** Error bodies, encoded once. */
const STATUS_BYTES = new Map<number, Buffer>(
  Object.entries(STATUS_TEXT).map(([status, text]) => [Number(status), Buffer.from(text, 'latin1')]),
);
const OOM_ITEM = Buffer.from('Out of memory allocating item', 'latin1');
const OOM_INCR = Buffer.from('Out of memory incrementing value', 'latin1');
const OOM_NEW_ITEM = Buffer.from('Out of memory allocating new item', 'latin1');
const AUTHENTICATED = Buffer.from('Authenticated', 'latin1');
const MECHANISMS = Buffer.from('PLAIN', 'latin1');
const DETAIL_DUMP_KEY = Buffer.from('detailed', 'latin1');
const DETAIL_DUMP_EMPTY = Buffer.from('END\r\n', 'latin1');

/** The request being dispatched (one at a time per thread, so one scratch header suffices). */
const req: RequestHeader = parseRequestHeader(new Uint8Array(HEADER_LENGTH), 0);

// ---- replies -----------------------------------------------------------------------------------------------------

/** Appends a response with an optional body and no extras or key. */
function writeSimple(conn: Connection, status: number, body: Uint8Array | undefined, cas: number): void {
  const n = body === undefined ? 0 : body.length;
  const reply = conn.reply;
  const at = reply.reserve(HEADER_LENGTH + n);
  writeResponseHeader(reply.buf, at, req.opcode, status, 0, 0, n, req.opaque, cas);
  if (n > 0) reply.buf.set(body!, at + HEADER_LENGTH);
}

/** Appends the Version reply. */
function writeVersion(conn: Connection, version: string): void {
  const reply = conn.reply;
  const at = reply.reserve(HEADER_LENGTH + version.length);
  const p = writeResponseHeader(reply.buf, at, req.opcode, Status.SUCCESS, 0, 0, version.length, req.opaque, 0);
  reply.buf.write(version, p, 'latin1');
}

/** memcached's `write_bin_error`: errors are sent even for quiet requests. `swallow` bytes of body are skipped. */
function writeError(conn: Connection, status: number, text?: Buffer, swallow = 0): void {
  writeSimple(conn, status, text ?? STATUS_BYTES.get(status), 0);
  if (swallow > 0) conn.swallow = swallow;
}

/** memcached's `handle_binary_protocol_error`: 0x0004 and close. */
function protocolError(conn: Connection): void {
  writeError(conn, Status.EINVAL);
  conn.closeAfterWrite();
}

/** Appends a Get/GetK/GAT/GATK/Touch hit: flags extras, then the key and/or value. */
function writeItem(conn: Connection, store: ItemStore, ref: number, withKey: boolean, withValue: boolean): void {
  const nkey = withKey ? store.keyLength(ref) : 0;
  const nbytes = withValue ? store.valueLength(ref) : 0;
  const body = 4 + nkey + nbytes;
  const reply = conn.reply;
  const at = reply.reserve(HEADER_LENGTH + body);
  const out = reply.buf;
  let p = writeResponseHeader(out, at, req.opcode, Status.SUCCESS, nkey, 4, body, req.opaque, store.cas(ref));
  putU32(out, p, store.flags(ref));
  p += 4;
  if (withKey) p = store.copyKey(ref, out, p);
  if (withValue) store.copyValue(ref, out, p);
}

/** Appends one Stat packet (an empty key and value terminate the sequence). */
function writeStat(conn: Connection, key: string, value: string): void {
  const reply = conn.reply;
  const body = key.length + value.length;
  const at = reply.reserve(HEADER_LENGTH + body);
  const out = reply.buf;
  const p = writeResponseHeader(out, at, Opcode.STAT, Status.SUCCESS, key.length, 0, body, req.opaque, 0);
  out.write(key, p, 'latin1');
  out.write(value, p + key.length, 'latin1');
}

// ---- entry point -------------------------------------------------------------------------------------------------

/**
 * Consumes one binary request at `pos`. Returns the bytes consumed, 0 when the 24-byte header is not all there,
 * or `-n` when the request needs `n` bytes from `pos` before it can run.
 */
export function consumeBinary(conn: Connection, buf: Buffer, pos: number, end: number): number {
  const avail = end - pos;
  if (avail < HEADER_LENGTH) return 0;
  if (buf[pos] !== REQUEST_MAGIC) {
    // memcached closes without a word. (It also drops the replies it had not yet flushed, those since the last
    // error, Noop or read; we send every reply produced before the bad byte.)
    conn.destroy();
    return avail;
  }
  parseRequestHeader(buf, pos, req);
  const keylen = req.keyLength;
  const extlen = req.extrasLength;
  const bodylen = req.bodyLength;
  const keyExt = keylen + extlen;
  // memcached dispatches once extras and key are in; requests that carry a value wait for the whole body, unless the
  // value is too large to be stored (then it is answered at once and swallowed).
  let need = HEADER_LENGTH + keyExt;
  if (READS_VALUE[req.opcode] === 1 && keyExt <= bodylen && conn.store.fits(keylen, bodylen - keyExt)) {
    need = HEADER_LENGTH + bodylen;
  }
  if (avail < need) return -need;
  const keyOff = pos + HEADER_LENGTH + extlen;

  if (keyExt > bodylen) {
    writeError(conn, Status.UNKNOWN_COMMAND);
    conn.closeAfterWrite();
    return need;
  }
  const opcode = req.opcode;
  if (
    !conn.authenticated &&
    opcode !== Opcode.SASL_LIST_MECHS &&
    opcode !== Opcode.SASL_AUTH &&
    opcode !== Opcode.SASL_STEP &&
    opcode !== Opcode.VERSION
  ) {
    writeError(conn, Status.AUTH_ERROR);
    conn.closeAfterWrite();
    return need;
  }
  if (keylen > KEY_MAX_LENGTH) {
    protocolError(conn);
    return need;
  }
  const quiet = QUIET[opcode] === 1;
  switch (BASE[opcode]) {
    case Opcode.GET:
    case Opcode.GETK:
      if (extlen === 0 && bodylen === keylen && keylen > 0) getOrTouch(conn, buf, keyOff, quiet, 0);
      else protocolError(conn);
      break;
    case Opcode.SET:
    case Opcode.ADD:
    case Opcode.REPLACE:
      if (extlen === 8 && keylen !== 0 && bodylen >= keylen + 8) update(conn, buf, pos, keyOff, quiet);
      else protocolError(conn);
      break;
    case Opcode.APPEND:
    case Opcode.PREPEND:
      if (keylen > 0 && extlen === 0) appendPrepend(conn, buf, keyOff, quiet);
      else protocolError(conn);
      break;
    case Opcode.DELETE:
      if (keylen > 0 && extlen === 0 && bodylen === keylen) remove(conn, buf, keyOff, quiet);
      else protocolError(conn);
      break;
    case Opcode.INCREMENT:
    case Opcode.DECREMENT:
      if (keylen > 0 && extlen === 20 && bodylen === keyExt) arithmetic(conn, buf, pos, keyOff, quiet);
      else protocolError(conn);
      break;
    case Opcode.TOUCH:
    case Opcode.GAT:
    case Opcode.GATK:
      if (extlen === 4 && keylen !== 0) getOrTouch(conn, buf, keyOff, quiet, u32(buf, pos + HEADER_LENGTH));
      else protocolError(conn);
      break;
    case Opcode.NOOP:
      // memcached flushes its pipeline here; replies leave at the end of the chunk anyway.
      if (keyExt === 0 && bodylen === 0) writeSimple(conn, Status.SUCCESS, undefined, 0);
      else protocolError(conn);
      break;
    case Opcode.VERSION:
      if (keyExt === 0 && bodylen === 0) writeVersion(conn, conn.host.version);
      else protocolError(conn);
      break;
    case Opcode.QUIT:
      if (keyExt === 0 && bodylen === 0) {
        if (!quiet) writeSimple(conn, Status.SUCCESS, undefined, 0);
        conn.closeAfterWrite();
      } else {
        protocolError(conn);
      }
      break;
    case Opcode.FLUSH:
      if (keylen === 0 && bodylen === extlen && (extlen === 0 || extlen === 4)) {
        flush(conn, extlen === 4 ? u32(buf, pos + HEADER_LENGTH) : 0, quiet);
      } else {
        protocolError(conn);
      }
      break;
    case Opcode.STAT:
      if (extlen === 0) stat(conn, buf, keyOff, keylen);
      else protocolError(conn);
      break;
    case Opcode.SASL_LIST_MECHS:
      if (keyExt === 0 && bodylen === 0) listMechanisms(conn);
      else protocolError(conn);
      break;
    case Opcode.SASL_AUTH:
    case Opcode.SASL_STEP:
      if (extlen === 0 && keylen !== 0) return saslAuth(conn, buf, keyOff, need);
      protocolError(conn);
      break;
    default:
      // Quirk: the key and extras were consumed, yet `bodylen` more bytes are skipped.
      writeError(conn, Status.UNKNOWN_COMMAND, undefined, bodylen);
  }
  return need;
}

// ---- commands ----------------------------------------------------------------------------------------------------

/** Get/GetK/GAT/GATK/Touch and their quiet forms (`process_bin_get_or_touch`). */
function getOrTouch(conn: Connection, buf: Buffer, keyOff: number, quiet: boolean, exptime: number): void {
  const base = BASE[req.opcode]!;
  const touch = base === Opcode.TOUCH || base === Opcode.GAT || base === Opcode.GATK;
  const withKey = base === Opcode.GETK || base === Opcode.GATK;
  const nkey = req.keyLength;
  const store = conn.store;
  const stats = conn.stats;
  store.lock();
  try {
    // The binary exptime is unsigned: 0xffffffff is far in the future, not "already expired".
    const ref = touch ? store.touch(buf, keyOff, nkey, store.realtime(exptime)) : store.find(buf, keyOff, nkey, true);
    if (ref !== 0) {
      if (!touch) {
        stats[TS.cmd_get]!++;
        stats[TS.get_hits]!++;
        store.countGetHit(ref);
      }
      writeItem(conn, store, ref, withKey, base !== Opcode.TOUCH);
      return;
    }
  } finally {
    store.unlock();
  }
  if (!touch) {
    stats[TS.cmd_get]!++;
    stats[TS.get_misses]!++;
  }
  if (quiet) return;
  if (withKey) {
    // A GetK miss names the key, both as key and as body.
    const reply = conn.reply;
    const at = reply.reserve(HEADER_LENGTH + nkey);
    const p = writeResponseHeader(reply.buf, at, req.opcode, Status.KEY_ENOENT, nkey, 0, nkey, req.opaque, 0);
    buf.copy(reply.buf, p, keyOff, keyOff + nkey);
  } else {
    writeError(conn, Status.KEY_ENOENT);
  }
}

/** Set/Add/Replace and their quiet forms (`process_bin_update` + `complete_update_bin`). */
function update(conn: Connection, buf: Buffer, pos: number, keyOff: number, quiet: boolean): void {
  const nkey = req.keyLength;
  const vlen = req.bodyLength - nkey - 8;
  const base = BASE[req.opcode]!;
  const store = conn.store;
  if (!store.fits(nkey, vlen)) {
    writeError(conn, Status.E2BIG, undefined, vlen);
    if (base === Opcode.SET) {
      store.discardStale(buf, keyOff, nkey);
    }
    return;
  }
  const flags = u32(buf, pos + HEADER_LENGTH);
  const exptime = u32(buf, pos + HEADER_LENGTH + 4);
  let op: StoreOp = base === Opcode.ADD ? StoreOp.ADD : base === Opcode.REPLACE ? StoreOp.REPLACE : StoreOp.SET;
  // Any of the three with a cas is a cas operation.
  if (req.cas !== 0) op = StoreOp.CAS;
  conn.stats[TS.cmd_set]!++;
  let result: StoreResult;
  store.lock();
  try {
    result = store.store(op, buf, keyOff, nkey, flags, store.realtime(exptime), buf, keyOff + nkey, vlen, req.cas);
  } finally {
    store.unlock();
  }
  switch (result) {
    case StoreResult.STORED:
      if (!quiet) writeSimple(conn, Status.SUCCESS, undefined, store.lastCas);
      break;
    case StoreResult.EXISTS:
      writeError(conn, Status.KEY_EEXISTS);
      break;
    case StoreResult.NOT_FOUND:
      writeError(conn, Status.KEY_ENOENT);
      break;
    case StoreResult.NO_MEMORY:
      // memcached allocates before reading the value, so this is its allocation failure.
      writeError(conn, Status.ENOMEM, OOM_ITEM);
      break;
    default:
      writeError(
        conn,
        op === StoreOp.ADD ? Status.KEY_EEXISTS : op === StoreOp.REPLACE ? Status.KEY_ENOENT : Status.NOT_STORED,
      );
  }
}

/** Append/Prepend and their quiet forms: no extras, the request cas must match when given. */
function appendPrepend(conn: Connection, buf: Buffer, keyOff: number, quiet: boolean): void {
  const nkey = req.keyLength;
  const vlen = req.bodyLength - nkey;
  const store = conn.store;
  if (!store.fits(nkey, vlen)) {
    writeError(conn, Status.E2BIG, undefined, vlen);
    return;
  }
  const op = BASE[req.opcode] === Opcode.APPEND ? StoreOp.APPEND : StoreOp.PREPEND;
  conn.stats[TS.cmd_set]!++;
  let result: StoreResult;
  store.lock();
  try {
    result = store.store(op, buf, keyOff, nkey, 0, 0, buf, keyOff + nkey, vlen, req.cas);
  } finally {
    store.unlock();
  }
  if (result === StoreResult.STORED) {
    if (!quiet) writeSimple(conn, Status.SUCCESS, undefined, store.lastCas);
  } else if (result === StoreResult.EXISTS) {
    writeError(conn, Status.KEY_EEXISTS);
  } else if (result === StoreResult.NOT_FOUND) {
    writeError(conn, Status.KEY_ENOENT);
  } else {
    writeError(conn, Status.NOT_STORED);
  }
}

/** Delete/DeleteQ: the request cas must match when given; a success carries cas 0. */
function remove(conn: Connection, buf: Buffer, keyOff: number, quiet: boolean): void {
  const store = conn.store;
  let r: StoreResult;
  store.lock();
  try {
    r = store.delete(buf, keyOff, req.keyLength, req.cas);
  } finally {
    store.unlock();
  }
  if (r === StoreResult.STORED) {
    if (!quiet) writeSimple(conn, Status.SUCCESS, undefined, 0);
  } else {
    writeError(conn, r === StoreResult.EXISTS ? Status.KEY_EEXISTS : Status.KEY_ENOENT);
  }
}

/** Appends a successful incr/decr reply: the new value as a u64 body. */
function writeCounter(conn: Connection, value: bigint, cas: number): void {
  const reply = conn.reply;
  const at = reply.reserve(HEADER_LENGTH + 8);
  const p = writeResponseHeader(reply.buf, at, req.opcode, Status.SUCCESS, 0, 0, 8, req.opaque, cas);
  reply.buf.writeBigUInt64BE(value, p);
}

/**
 * Increment/Decrement and their quiet forms (`complete_incr_bin`). Extras: delta u64, initial u64, exptime u32. A
 * miss creates the counter with `initial` (flags 0) unless exptime is 0xffffffff.
 */
function arithmetic(conn: Connection, buf: Buffer, pos: number, keyOff: number, quiet: boolean): void {
  const incr = BASE[req.opcode] === Opcode.INCREMENT;
  const e = pos + HEADER_LENGTH;
  const delta = buf.readBigUInt64BE(e);
  const exptime = u32(buf, e + 16);
  const nkey = req.keyLength;
  const store = conn.store;
  let r: DeltaResult;
  let created: StoreResult | undefined;
  let initial = 0n;
  store.lock();
  try {
    r = store.delta(buf, keyOff, nkey, incr, delta, req.cas);
    if (r === DeltaResult.NOT_FOUND && exptime !== NO_CREATE) {
      initial = buf.readBigUInt64BE(e + 8);
      created = store.createNumber(buf, keyOff, nkey, initial, store.realtime(exptime));
    }
  } finally {
    store.unlock();
  }
  switch (r) {
    case DeltaResult.OK:
      conn.stats[incr ? TS.incr_hits : TS.decr_hits]!++;
      if (!quiet) writeCounter(conn, store.lastDelta, store.lastCas);
      break;
    case DeltaResult.NON_NUMERIC:
      writeError(conn, Status.DELTA_BADVAL);
      break;
    case DeltaResult.EXISTS:
      writeError(conn, Status.KEY_EEXISTS);
      break;
    case DeltaResult.NO_MEMORY:
      writeError(conn, Status.ENOMEM, OOM_INCR);
      break;
    default:
      if (created === undefined) {
        conn.stats[incr ? TS.incr_misses : TS.decr_misses]!++;
        writeError(conn, Status.KEY_ENOENT);
      } else if (created === StoreResult.STORED) {
        if (!quiet) writeCounter(conn, initial, store.lastCas);
      } else if (created === StoreResult.NOT_STORED) {
        writeError(conn, Status.NOT_STORED);
      } else {
        writeError(conn, Status.ENOMEM, OOM_NEW_ITEM);
      }
  }
}

/** Flush/FlushQ with an optional delay (a protocol exptime, unsigned). Refused with `-F` as an auth failure. */
function flush(conn: Connection, delay: number, quiet: boolean): void {
  if (!conn.host.settings.flushEnabled) {
    writeError(conn, Status.AUTH_ERROR);
    return;
  }
  const store = conn.store;
  store.lock();
  try {
    store.flushAll(delay);
  } finally {
    store.unlock();
  }
  conn.stats[TS.cmd_flush]!++;
  if (!quiet) writeSimple(conn, Status.SUCCESS, undefined, 0);
}

/** Whether `buf[off, off + len)` starts with the ASCII `prefix`. */
function startsWith(buf: Buffer, off: number, len: number, prefix: string): boolean {
  if (len < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[off + i] !== prefix.charCodeAt(i)) return false;
  return true;
}

/** The groups memcached's `get_stats` knows (exact names). */
const ENGINE_GROUPS = new Set(['items', 'slabs', 'sizes', 'sizes_enable', 'sizes_disable']);

/**
 * Stat: one packet per stat, then an empty one. memcached matches `reset`, `settings` and `detail` as prefixes and
 * the engine groups exactly; `conns` is text-only.
 */
function stat(conn: Connection, buf: Buffer, keyOff: number, nkey: number): void {
  let rows: Array<[string, string]> | undefined;
  if (nkey === 0) {
    rows = conn.host.statsGroup('', conn);
  } else if (startsWith(buf, keyOff, nkey, 'reset')) {
    conn.host.resetStats();
    rows = [];
  } else if (startsWith(buf, keyOff, nkey, 'settings')) {
    rows = conn.host.statsGroup('settings', conn);
  } else if (startsWith(buf, keyOff, nkey, 'detail')) {
    const sub = keyOff + 6;
    const left = nkey - 6;
    if (startsWith(buf, sub, left, ' dump')) {
      // No per-prefix stats are kept: the dump is memcached's empty one.
      const reply = conn.reply;
      const body = DETAIL_DUMP_KEY.length + DETAIL_DUMP_EMPTY.length;
      const at = reply.reserve(HEADER_LENGTH + body);
      const p = writeResponseHeader(reply.buf, at, Opcode.STAT, 0, DETAIL_DUMP_KEY.length, 0, body, req.opaque, 0);
      reply.buf.set(DETAIL_DUMP_KEY, p);
      reply.buf.set(DETAIL_DUMP_EMPTY, p + DETAIL_DUMP_KEY.length);
      rows = [];
    } else if (startsWith(buf, sub, left, ' on') || startsWith(buf, sub, left, ' off')) {
      rows = [];
    }
  } else {
    const group = buf.toString('latin1', keyOff, keyOff + nkey);
    if (ENGINE_GROUPS.has(group)) rows = conn.host.statsGroup(group, conn);
  }
  if (rows === undefined) {
    writeError(conn, Status.KEY_ENOENT);
    return;
  }
  for (const [name, value] of rows) writeStat(conn, name, value);
  writeStat(conn, '', '');
}

// ---- SASL --------------------------------------------------------------------------------------------------------

/** Where a connection's SASL exchange stands (memcached's `sasl_started` plus the PLAIN mechanism's own state). */
type SaslState = 'idle' | 'continue' | 'done';
const saslStates = new WeakMap<Connection, SaslState>();

/** SASL list mechanisms: `PLAIN` (0x0081 when SASL is off). Drops the authentication, as memcached does. */
function listMechanisms(conn: Connection): void {
  if (!conn.host.settings.sasl) {
    writeError(conn, Status.UNKNOWN_COMMAND);
    return;
  }
  conn.authenticated = false;
  writeSimple(conn, Status.SUCCESS, MECHANISMS, 0);
}

/**
 * SASL auth/step with the PLAIN mechanism (`authzid \0 authcid \0 password`). Auth with no data asks to continue
 * (0x0021, empty body) and the following step carries the credentials. Returns the bytes consumed.
 */
function saslAuth(conn: Connection, buf: Buffer, keyOff: number, need: number): number {
  const nkey = req.keyLength;
  const vlen = req.bodyLength - nkey;
  // The data is in unless it is too large to be held (then it is swallowed after the reply).
  const skip = need === HEADER_LENGTH + req.bodyLength ? 0 : vlen;
  if (!conn.host.settings.sasl) {
    writeError(conn, Status.UNKNOWN_COMMAND, undefined, skip);
    return need;
  }
  if (nkey > MAX_SASL_MECH_LEN) {
    writeError(conn, Status.EINVAL, undefined, skip);
    return need;
  }
  if (skip > 0) {
    writeError(conn, Status.ENOMEM, undefined, skip);
    return need;
  }
  conn.authenticated = false;
  const data = keyOff + nkey;
  const state = saslStates.get(conn) ?? 'idle';
  let result: 'ok' | 'continue' | 'fail' = 'fail';
  if (req.opcode === Opcode.SASL_AUTH) {
    const mech = buf.toString('latin1', keyOff, keyOff + nkey);
    if (mech.toUpperCase() === 'PLAIN') result = vlen === 0 ? 'continue' : checkPlain(conn, buf, data, data + vlen);
    saslStates.set(conn, result === 'continue' ? 'continue' : result === 'ok' ? 'done' : 'idle');
  } else if (state === 'continue') {
    result = checkPlain(conn, buf, data, data + vlen);
    saslStates.set(conn, result === 'ok' ? 'done' : 'idle');
  }
  if (result === 'continue') {
    writeSimple(conn, Status.AUTH_CONTINUE, undefined, 0);
    return need;
  }
  conn.stats[TS.auth_cmds]!++;
  if (result === 'ok') {
    conn.authenticated = true;
    writeSimple(conn, Status.SUCCESS, AUTHENTICATED, 0);
  } else {
    conn.stats[TS.auth_errors]!++;
    writeError(conn, Status.AUTH_ERROR);
  }
  return need;
}

/** Checks a PLAIN response `buf[start, end)` as Cyrus SASL does: exactly two NULs, authzid empty or the user. */
function checkPlain(conn: Connection, buf: Buffer, start: number, end: number): 'ok' | 'fail' {
  const nul1 = buf.indexOf(0, start);
  if (nul1 < 0 || nul1 >= end) return 'fail';
  const nul2 = buf.indexOf(0, nul1 + 1);
  if (nul2 < 0 || nul2 >= end) return 'fail';
  const nul3 = buf.indexOf(0, nul2 + 1);
  if (nul3 >= 0 && nul3 < end) return 'fail';
  const user = buf.toString('utf8', nul1 + 1, nul2);
  const password = buf.toString('utf8', nul2 + 1, end);
  if (nul1 > start && buf.toString('utf8', start, nul1) !== user) return 'fail';
  return conn.host.checkPassword(user, password) ? 'ok' : 'fail';
}
