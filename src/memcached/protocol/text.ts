/**
 * memcached's text (ASCII) protocol: classic commands, with meta commands (`mg`, `ms`, …) handed to `meta.ts`.
 *
 * Replies and error strings follow memcached 1.6.18's `proto_text.c` byte for byte, including its quirks: tokens
 * split on spaces only, `noreply` also hides client errors, a refused value is swallowed, a bad data chunk leaves
 * the rest of the data to be parsed as a command.
 *
 * @module
 */

import type { Connection } from '../server/connection.ts';
import { DeltaResult, type ItemStore, StoreOp, StoreResult } from '../store/item-store.ts';
import { TS } from '../store/thread-stats.ts';
import { KEY_MAX_LENGTH } from './limits.ts';
import { consumeMeta } from './meta.ts';
import { parseCas, parseI32, parseU32, parseU64, type Tokens, tokenIs, tokenize } from './tokenize.ts';

/** A line longer than this without a newline closes the connection (unless it is a multi-get). */
const MAX_LINE_WITHOUT_NEWLINE = 2048;
/**
 * memcached lets a multi-get line grow without bound; we stop at 8 MiB (32,000 keys of 250 bytes) so that one
 * client cannot make the server buffer without limit.
 */
const MAX_MULTIGET_LINE = 8 * 1024 * 1024;

const LF = 10;
const CR = 13;

/** Writes a reply line unless `noreply` is in effect (memcached's `out_string`). */
export function outString(conn: Connection, s: string): void {
  if (conn.noreply) return;
  conn.reply.line(s);
}

/** Writes an error line even under `noreply` (memcached's `out_errstring`). */
export function outError(conn: Connection, s: string): void {
  conn.noreply = false;
  conn.reply.line(s);
}

/**
 * Consumes one text command at `pos`. Returns the bytes consumed, 0 when the line is incomplete, or `-n` when a
 * storage command needs `n` bytes (line + data) from `pos` before it can run.
 */
export function consumeText(conn: Connection, buf: Buffer, pos: number, end: number): number {
  const nl = buf.indexOf(LF, pos);
  if (nl < 0 || nl >= end) {
    const waiting = end - pos;
    if (waiting > MAX_LINE_WITHOUT_NEWLINE && (waiting > MAX_MULTIGET_LINE || !isMultiGetPrefix(buf, pos, end))) {
      conn.destroy();
      return end - pos;
    }
    return 0;
  }
  let lineEnd = nl;
  if (nl - pos > 1 && buf[nl - 1] === CR) lineEnd = nl - 1;
  conn.noreply = false;
  const consumed = processCommand(conn, buf, pos, lineEnd, nl + 1, end);
  return consumed;
}

function isMultiGetPrefix(buf: Buffer, pos: number, end: number): boolean {
  let p = pos;
  while (p < end && buf[p] === 0x20) p++;
  if (p - pos > 100) return false;
  return (
    (buf[p] === 0x67 && buf[p + 1] === 0x65 && buf[p + 2] === 0x74 && buf[p + 3] === 0x20) ||
    (buf[p] === 0x67 && buf[p + 1] === 0x65 && buf[p + 2] === 0x74 && buf[p + 3] === 0x73 && buf[p + 4] === 0x20)
  );
}

/**
 * Runs the command on `buf[lineStart, lineEnd)`; `next` is the offset after the newline. Returns bytes consumed
 * from `lineStart` (or a negative frame size for storage commands whose data has not all arrived).
 */
function processCommand(
  conn: Connection,
  buf: Buffer,
  lineStart: number,
  lineEnd: number,
  next: number,
  end: number,
): number {
  const t = conn.tokens;
  const lineLen = next - lineStart;
  // Fast path for get/gets: keys are not limited to 23 tokens.
  const c0 = buf[lineStart];
  if (c0 === 0x67 && buf[lineStart + 1] === 0x65 && buf[lineStart + 2] === 0x74) {
    const c3 = buf[lineStart + 3];
    if (c3 === 0x20) {
      processGet(conn, buf, lineStart + 4, lineEnd, false, false);
      return lineLen;
    }
    if (c3 === 0x73 && buf[lineStart + 4] === 0x20) {
      processGet(conn, buf, lineStart + 5, lineEnd, true, false);
      return lineLen;
    }
  }
  tokenize(buf, lineStart, lineEnd, t);
  const ntokens = t.count;
  if (ntokens < 2 || t.len(0) < 2) {
    outString(conn, 'ERROR');
    return lineLen;
  }
  const s0 = t.start[0]!;
  const e0 = t.end[0]!;
  const first = buf[s0];
  if (first === 0x6d && e0 - s0 === 2) {
    return consumeMeta(conn, buf, lineStart, lineEnd, next, end);
  }
  const is = (name: string) => tokenIs(buf, s0, e0, name);
  if (first === 0x67) {
    if (ntokens < 3) return err(conn, lineLen);
    if (is('get')) processGet(conn, buf, t.start[1]!, lineEnd, false, false);
    else if (is('gets')) processGet(conn, buf, t.start[1]!, lineEnd, true, false);
    else if (is('gat')) processGat(conn, buf, t, lineEnd, false);
    else if (is('gats')) processGat(conn, buf, t, lineEnd, true);
    else outString(conn, 'ERROR');
    return lineLen;
  }
  if (is('set'))
    return (
      wantOr(conn, ntokens, 6, 7, lineLen) ?? processUpdate(conn, buf, t, StoreOp.SET, false, lineStart, next, end)
    );
  if (is('add'))
    return (
      wantOr(conn, ntokens, 6, 7, lineLen) ?? processUpdate(conn, buf, t, StoreOp.ADD, false, lineStart, next, end)
    );
  if (is('replace'))
    return (
      wantOr(conn, ntokens, 6, 7, lineLen) ?? processUpdate(conn, buf, t, StoreOp.REPLACE, false, lineStart, next, end)
    );
  if (is('append'))
    return (
      wantOr(conn, ntokens, 6, 7, lineLen) ?? processUpdate(conn, buf, t, StoreOp.APPEND, false, lineStart, next, end)
    );
  if (is('prepend'))
    return (
      wantOr(conn, ntokens, 6, 7, lineLen) ?? processUpdate(conn, buf, t, StoreOp.PREPEND, false, lineStart, next, end)
    );
  if (is('cas'))
    return wantOr(conn, ntokens, 7, 8, lineLen) ?? processUpdate(conn, buf, t, StoreOp.CAS, true, lineStart, next, end);
  if (is('delete')) {
    if (ntokens < 3 || ntokens > 5) return err(conn, lineLen);
    processDelete(conn, buf, t);
  } else if (is('incr') || is('decr')) {
    if (ntokens !== 4 && ntokens !== 5) return err(conn, lineLen);
    processArithmetic(conn, buf, t, first === 0x69);
  } else if (is('touch')) {
    if (ntokens !== 4 && ntokens !== 5) return err(conn, lineLen);
    processTouch(conn, buf, t);
  } else if (is('stats')) {
    processStats(conn, buf, t);
  } else if (is('flush_all')) {
    if (ntokens < 2 || ntokens > 4) return err(conn, lineLen);
    processFlushAll(conn, buf, t);
  } else if (is('version')) {
    outString(conn, `VERSION ${conn.host.version}`);
  } else if (is('quit')) {
    conn.closeAfterWrite();
  } else if (is('verbosity')) {
    if (ntokens !== 3 && ntokens !== 4) return err(conn, lineLen);
    setNoreplyMaybe(conn, buf, t);
    const level = parseU32(buf, t.start[1]!, t.end[1]!);
    if (level === undefined) outString(conn, 'CLIENT_ERROR bad command line format');
    else {
      conn.host.verbosity = Math.min(level, 2);
      outString(conn, 'OK');
    }
  } else if (is('shutdown')) {
    processShutdown(conn, buf, t);
  } else if (is('cache_memlimit')) {
    if (ntokens !== 3 && ntokens !== 4) return err(conn, lineLen);
    processMemlimit(conn, buf, t);
  } else if (is('slabs')) {
    processSlabs(conn, buf, t);
  } else if (is('lru_crawler')) {
    processLruCrawler(conn, buf, t);
  } else if (is('bget')) {
    if (ntokens < 3) return err(conn, lineLen);
    processGet(conn, buf, t.start[1]!, lineEnd, false, false);
  } else if (
    ntokens >= 2 &&
    t.len(ntokens - 2) >= 5 &&
    tokenIs(buf, t.start[ntokens - 2]!, t.start[ntokens - 2]! + 5, 'HTTP/')
  ) {
    // An HTTP request on the cache port: memcached hangs up.
    conn.destroy();
  } else {
    outString(conn, 'ERROR');
  }
  return lineLen;
}

function err(conn: Connection, consumed: number): number {
  outString(conn, 'ERROR');
  return consumed;
}

/** memcached's `WANT_TOKENS_OR`: returns the consumed count after an ERROR, or undefined to go on. */
function wantOr(conn: Connection, ntokens: number, a: number, b: number, consumed: number): number | undefined {
  if (ntokens !== a && ntokens !== b) return err(conn, consumed);
  return undefined;
}

function setNoreplyMaybe(conn: Connection, buf: Buffer, t: Tokens): boolean {
  const i = t.count - 2;
  if (i >= 0 && tokenIs(buf, t.start[i]!, t.end[i]!, 'noreply')) conn.noreply = true;
  return conn.noreply;
}

/** Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n` for an item. */
function writeValue(conn: Connection, store: ItemStore, ref: number, withCas: boolean): void {
  const reply = conn.reply;
  const nkey = store.keyLength(ref);
  const nbytes = store.valueLength(ref);
  const flags = store.flags(ref);
  const head = withCas ? ` ${flags} ${nbytes} ${store.cas(ref)}\r\n` : ` ${flags} ${nbytes}\r\n`;
  let at = reply.reserve(6 + nkey + head.length + nbytes + 2);
  const out = reply.buf;
  out[at] = 0x56; // V
  out[at + 1] = 0x41;
  out[at + 2] = 0x4c;
  out[at + 3] = 0x55;
  out[at + 4] = 0x45;
  out[at + 5] = 0x20;
  at = store.copyKey(ref, out, at + 6);
  at += out.write(head, at, 'latin1');
  at = store.copyValue(ref, out, at);
  out[at] = CR;
  out[at + 1] = LF;
}

/** get/gets over the keys in `buf[from, lineEnd)` (space separated, any number of them). */
function processGet(
  conn: Connection,
  buf: Buffer,
  from: number,
  lineEnd: number,
  withCas: boolean,
  touch: boolean,
  exptime = 0,
): void {
  const store = conn.store;
  const stats = conn.stats;
  const mark = conn.reply.length;
  let p = from;
  let keys = 0;
  store.lock();
  try {
    while (p < lineEnd) {
      while (p < lineEnd && buf[p] === 0x20) p++;
      if (p >= lineEnd) break;
      let e = p;
      while (e < lineEnd && buf[e] !== 0x20) e++;
      const nkey = e - p;
      if (nkey > KEY_MAX_LENGTH) {
        conn.reply.truncate(mark);
        outString(conn, 'CLIENT_ERROR bad command line format');
        return;
      }
      keys++;
      const ref = touch ? store.touch(buf, p, nkey, exptime) : store.find(buf, p, nkey, true);
      if (ref !== 0) {
        if (!touch) {
          stats[TS.cmd_get]!++;
          stats[TS.get_hits]!++;
          store.countGetHit(ref);
        }
        writeValue(conn, store, ref, withCas);
      } else if (!touch) {
        stats[TS.cmd_get]!++;
        stats[TS.get_misses]!++;
      }
      p = e;
    }
  } finally {
    store.unlock();
  }
  if (keys === 0) {
    // `get ` followed only by spaces: memcached's token count says no key.
    outString(conn, 'ERROR');
    return;
  }
  conn.reply.ascii('END\r\n');
}

function processGat(conn: Connection, buf: Buffer, t: Tokens, lineEnd: number, withCas: boolean): void {
  const exptime = parseI32(buf, t.start[1]!, t.end[1]!);
  if (exptime === undefined) {
    outString(conn, 'CLIENT_ERROR invalid exptime argument');
    return;
  }
  if (t.count < 4) {
    // `gat <exptime>` with no key: memcached runs a get over zero keys.
    conn.reply.ascii('END\r\n');
    return;
  }
  processGet(conn, buf, t.start[2]!, lineEnd, withCas, true, conn.store.realtime(exptime));
}

/**
 * set/add/replace/append/prepend/cas. Validates the line; runs once `<bytes>\r\n` of data are in `buf`.
 */
function processUpdate(
  conn: Connection,
  buf: Buffer,
  t: Tokens,
  op: StoreOp,
  handleCas: boolean,
  lineStart: number,
  next: number,
  end: number,
): number {
  const lineLen = next - lineStart;
  setNoreplyMaybe(conn, buf, t);
  const kStart = t.start[1]!;
  const nkey = t.len(1);
  if (nkey > KEY_MAX_LENGTH) {
    outString(conn, 'CLIENT_ERROR bad command line format');
    return lineLen;
  }
  const flags = parseU32(buf, t.start[2]!, t.end[2]!);
  const exptimeIn = parseI32(buf, t.start[3]!, t.end[3]!);
  const vlen = parseI32(buf, t.start[4]!, t.end[4]!);
  if (flags === undefined || exptimeIn === undefined || vlen === undefined) {
    outString(conn, 'CLIENT_ERROR bad command line format');
    return lineLen;
  }
  let cas = 0;
  if (handleCas) {
    const c = parseCas(buf, t.start[5]!, t.end[5]!);
    if (c === undefined) {
      outString(conn, 'CLIENT_ERROR bad command line format');
      return lineLen;
    }
    cas = c;
  }
  if (vlen < 0 || vlen > 0x7fffffff - 2) {
    outString(conn, 'CLIENT_ERROR bad command line format');
    return lineLen;
  }
  const store = conn.store;
  if (!store.fits(nkey, vlen + (flags !== 0 ? 4 : 0))) {
    conn.stats[TS.store_too_large]!++;
    outString(conn, 'SERVER_ERROR object too large for cache');
    conn.swallow = vlen + 2;
    if (op === StoreOp.SET) {
      store.discardStale(buf, kStart, nkey);
    }
    return lineLen;
  }
  const total = lineLen + vlen + 2;
  if (end - lineStart < total) return -total;
  conn.stats[TS.cmd_set]!++;
  const dataStart = next;
  if (buf[dataStart + vlen] !== CR || buf[dataStart + vlen + 1] !== LF) {
    outString(conn, 'CLIENT_ERROR bad data chunk');
    return total;
  }
  const exptime = store.realtime(exptimeIn);
  store.lock();
  let result: StoreResult;
  try {
    result = store.store(op, buf, kStart, nkey, flags, exptime, buf, dataStart, vlen, cas);
  } finally {
    store.unlock();
  }
  switch (result) {
    case StoreResult.STORED:
      outString(conn, 'STORED');
      break;
    case StoreResult.NOT_STORED:
      outString(conn, 'NOT_STORED');
      break;
    case StoreResult.EXISTS:
      outString(conn, 'EXISTS');
      break;
    case StoreResult.NOT_FOUND:
      outString(conn, 'NOT_FOUND');
      break;
    case StoreResult.TOO_LARGE:
      conn.stats[TS.store_too_large]!++;
      outString(conn, 'SERVER_ERROR object too large for cache');
      break;
    default:
      conn.stats[TS.store_no_memory]!++;
      outString(conn, 'SERVER_ERROR out of memory storing object');
  }
  return total;
}

function processDelete(conn: Connection, buf: Buffer, t: Tokens): void {
  const ntokens = t.count;
  if (ntokens > 3) {
    const holdIsZero = tokenIs(buf, t.start[2]!, t.end[2]!, '0');
    const setsNoreply = setNoreplyMaybe(conn, buf, t);
    const valid = (ntokens === 4 && (holdIsZero || setsNoreply)) || (ntokens === 5 && holdIsZero && setsNoreply);
    if (!valid) {
      outString(conn, 'CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]');
      return;
    }
  }
  const nkey = t.len(1);
  if (nkey > KEY_MAX_LENGTH) {
    outString(conn, 'CLIENT_ERROR bad command line format');
    return;
  }
  const store = conn.store;
  store.lock();
  let r: StoreResult;
  try {
    r = store.delete(buf, t.start[1]!, nkey);
  } finally {
    store.unlock();
  }
  outString(conn, r === StoreResult.STORED ? 'DELETED' : 'NOT_FOUND');
}

function processArithmetic(conn: Connection, buf: Buffer, t: Tokens, incr: boolean): void {
  setNoreplyMaybe(conn, buf, t);
  const nkey = t.len(1);
  if (nkey > KEY_MAX_LENGTH) {
    outString(conn, 'CLIENT_ERROR bad command line format');
    return;
  }
  const delta = parseU64(buf, t.start[2]!, t.end[2]!);
  if (delta === undefined) {
    outString(conn, 'CLIENT_ERROR invalid numeric delta argument');
    return;
  }
  const store = conn.store;
  store.lock();
  let r: DeltaResult;
  try {
    r = store.delta(buf, t.start[1]!, nkey, incr, delta);
  } finally {
    store.unlock();
  }
  switch (r) {
    case DeltaResult.OK:
      conn.stats[incr ? TS.incr_hits : TS.decr_hits]!++;
      outString(conn, store.lastDelta.toString());
      break;
    case DeltaResult.NON_NUMERIC:
      outString(conn, 'CLIENT_ERROR cannot increment or decrement non-numeric value');
      break;
    case DeltaResult.NO_MEMORY:
      outString(conn, 'SERVER_ERROR out of memory');
      break;
    default:
      conn.stats[incr ? TS.incr_misses : TS.decr_misses]!++;
      outString(conn, 'NOT_FOUND');
  }
}

function processTouch(conn: Connection, buf: Buffer, t: Tokens): void {
  setNoreplyMaybe(conn, buf, t);
  const nkey = t.len(1);
  if (nkey > KEY_MAX_LENGTH) {
    outString(conn, 'CLIENT_ERROR bad command line format');
    return;
  }
  const exptime = parseI32(buf, t.start[2]!, t.end[2]!);
  if (exptime === undefined) {
    outString(conn, 'CLIENT_ERROR invalid exptime argument');
    return;
  }
  const store = conn.store;
  store.lock();
  let ref: number;
  try {
    ref = store.touch(buf, t.start[1]!, nkey, store.realtime(exptime));
  } finally {
    store.unlock();
  }
  outString(conn, ref !== 0 ? 'TOUCHED' : 'NOT_FOUND');
}

function processFlushAll(conn: Connection, buf: Buffer, t: Tokens): void {
  setNoreplyMaybe(conn, buf, t);
  conn.stats[TS.cmd_flush]!++;
  if (!conn.host.settings.flushEnabled) {
    outString(conn, 'CLIENT_ERROR flush_all not allowed');
    return;
  }
  let delay = 0;
  if (t.count !== (conn.noreply ? 3 : 2)) {
    const d = parseI32(buf, t.start[1]!, t.end[1]!);
    if (d === undefined) {
      outString(conn, 'CLIENT_ERROR invalid exptime argument');
      return;
    }
    delay = d;
  }
  const store = conn.store;
  store.lock();
  try {
    store.flushAll(delay);
  } finally {
    store.unlock();
  }
  outString(conn, 'OK');
}

function processShutdown(conn: Connection, buf: Buffer, t: Tokens): void {
  if (!conn.host.settings.shutdownEnabled) {
    outString(conn, 'ERROR: shutdown not enabled');
    return;
  }
  if (t.count === 2) {
    conn.closeAfterWrite();
    conn.host.shutdown(false);
  } else if (t.count === 3 && tokenIs(buf, t.start[1]!, t.end[1]!, 'graceful')) {
    conn.closeAfterWrite();
    conn.host.shutdown(true);
  } else {
    outString(conn, 'CLIENT_ERROR invalid shutdown mode');
  }
}

function processMemlimit(conn: Connection, buf: Buffer, t: Tokens): void {
  setNoreplyMaybe(conn, buf, t);
  const mb = parseU32(buf, t.start[1]!, t.end[1]!);
  if (mb === undefined) outString(conn, 'ERROR');
  else if (mb < 8) outString(conn, 'MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m');
  else if (mb > 1000000000) outString(conn, 'MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes');
  else {
    const store = conn.store;
    store.lock();
    try {
      store.setMemoryLimit(mb * 1024 * 1024);
    } finally {
      store.unlock();
    }
    outString(conn, 'OK');
  }
}

function processSlabs(conn: Connection, buf: Buffer, t: Tokens): void {
  if (t.count === 5 && tokenIs(buf, t.start[1]!, t.end[1]!, 'reassign')) {
    // Pages stay with the class that first took them (see docs/architecture.md): reassignment is off, and memcached
    // answers exactly this when it is.
    outString(conn, 'CLIENT_ERROR slab reassignment disabled');
  } else if (t.count >= 4 && tokenIs(buf, t.start[1]!, t.end[1]!, 'automove')) {
    const level = parseU32(buf, t.start[2]!, t.end[2]!);
    if (level === undefined || level > 2) outString(conn, 'ERROR');
    else if (level === 0) outString(conn, 'OK');
    else outString(conn, 'CLIENT_ERROR slab reassignment disabled');
  } else {
    outString(conn, 'ERROR');
  }
}

function processLruCrawler(conn: Connection, buf: Buffer, t: Tokens): void {
  if (t.count === 4 && tokenIs(buf, t.start[1]!, t.end[1]!, 'crawl')) {
    const store = conn.store;
    store.lock();
    try {
      store.reclaim(Number.MAX_SAFE_INTEGER);
    } finally {
      store.unlock();
    }
    outString(conn, 'OK');
  } else if (t.count === 4 && tokenIs(buf, t.start[1]!, t.end[1]!, 'metadump')) {
    processMetadump(conn);
  } else {
    outString(conn, 'ERROR');
  }
}

/** `lru_crawler metadump all`: one line per live item, as memcached prints them. */
function processMetadump(conn: Connection): void {
  if (!conn.host.settings.dumpEnabled) {
    outString(conn, 'ERROR metadump not allowed');
    return;
  }
  const store = conn.store;
  store.lock();
  try {
    for (let cls = 1; cls <= store.largestClass + 1; cls++) {
      store.forEachInClass(cls, 0, (ref) => {
        const exp = store.exptime(ref);
        if (exp !== 0 && exp <= store.now) return;
        const key = encodeURIComponent(
          store.arenaBuffer.toString('latin1', store.keyOffset(ref), store.keyOffset(ref) + store.keyLength(ref)),
        );
        const fetched = store.itemFlags(ref) & 4 ? 'yes' : 'no';
        conn.reply.ascii(
          `key=${key} exp=${exp === 0 ? -1 : store.unixTime(exp)} la=${store.unixTime(store.accessTime(ref))} cas=${store.cas(ref)} fetch=${fetched} cls=${store.classId(ref)} size=${store.itemTotal(ref)}\n`,
        );
      });
    }
  } finally {
    store.unlock();
  }
  conn.reply.ascii('END\r\n');
}

function processStats(conn: Connection, buf: Buffer, t: Tokens): void {
  const ntokens = t.count;
  let group = '';
  if (ntokens > 2) group = buf.toString('latin1', t.start[1]!, t.end[1]!);
  if (group === 'reset') {
    conn.host.resetStats();
    outString(conn, 'RESET');
    return;
  }
  if (group === 'detail') {
    const sub = ntokens < 4 ? '' : buf.toString('latin1', t.start[2]!, t.end[2]!);
    if (sub === 'on' || sub === 'off') outString(conn, 'OK');
    else if (sub === 'dump') conn.reply.ascii('END\r\n');
    else outString(conn, 'CLIENT_ERROR usage: stats detail on|off|dump');
    return;
  }
  if (group === 'cachedump') {
    processCachedump(conn, buf, t);
    return;
  }
  const lines = conn.host.statsGroup(group, conn);
  if (lines === undefined) {
    outString(conn, 'ERROR');
    return;
  }
  const reply = conn.reply;
  for (const [name, value] of lines) reply.ascii(`STAT ${name} ${value}\r\n`);
  reply.ascii('END\r\n');
}

function processCachedump(conn: Connection, buf: Buffer, t: Tokens): void {
  if (!conn.host.settings.dumpEnabled) {
    outString(conn, 'CLIENT_ERROR stats cachedump not allowed');
    return;
  }
  if (t.count < 5) {
    outString(conn, 'CLIENT_ERROR bad command line');
    return;
  }
  const id = parseU32(buf, t.start[2]!, t.end[2]!);
  const limit = parseU32(buf, t.start[3]!, t.end[3]!);
  if (id === undefined || limit === undefined) {
    outString(conn, 'CLIENT_ERROR bad command line format');
    return;
  }
  if (id >= 64) {
    outString(conn, 'CLIENT_ERROR Illegal slab id');
    return;
  }
  const store = conn.store;
  const reply = conn.reply;
  // memcached dumps at most 2 MB.
  let budget = 2 * 1024 * 1024;
  store.lock();
  try {
    const dump = (ref: number) => {
      if (budget <= 0) return;
      const key = store.arenaBuffer.toString(
        'latin1',
        store.keyOffset(ref),
        store.keyOffset(ref) + store.keyLength(ref),
      );
      const exp = store.exptime(ref);
      const line = `ITEM ${key} [${store.valueLength(ref)} b; ${exp === 0 ? 0 : store.unixTime(exp)} s]\r\n`;
      budget -= line.length;
      reply.ascii(line);
    };
    if (id > 0 && id <= store.largestClass) store.forEachInClass(id, limit, dump);
    if (id === store.largestClass) store.forEachInClass(store.largestClass + 1, limit, dump);
  } finally {
    store.unlock();
  }
  reply.ascii('END\r\n');
}
