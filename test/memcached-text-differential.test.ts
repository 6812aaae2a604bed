/**
 * Differential proof of the text protocol: every transcript goes to the real memcached 1.6.18 and to ours, and the
 * replies must be byte-identical once the legitimately different fields are masked. Each transcript is also sent
 * to a second instance of ours one byte per write, and must give the same reply: chunk boundaries must not matter.
 *
 * Masks (the only fields allowed to differ):
 * - the cas unique of `VALUE <key> <flags> <bytes> <cas>` lines (`gets`, `gats`): each distinct value becomes
 *   `<cas#n>` in order of first appearance within the reply, so "same cas / new cas" is still compared;
 * - the version string of `VERSION <version>`.
 *
 * Both servers run with the same `-m 64 -I 1m`. Transcripts use keys under their own prefix and run concurrently;
 * those that touch global state (`flush_all`, `stats reset`, `stats detail on`, `cache_memlimit`) run one at a time.
 *
 * @module
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type ExchangeResult,
  exchange,
  MEMCACHED_BIN,
  type OurMemcached,
  type RealMemcached,
  requireTool,
  startOurServer,
  startRealMemcached,
  toolAvailable,
} from './helpers/memcached-real.ts';

const FLAGS = ['-m', '64', '-I', '1m'];

/** One differential case. */
interface Transcript {
  /** The behaviour it pins (the test title). */
  name: string;
  /** The request bytes, given this transcript's key prefix and the cas uniques looked up after `setup`. */
  send: (k: string, cas: Record<string, string>) => Array<string | Buffer>;
  /** Sent first on its own connection, reply not compared. */
  setup?: (k: string) => string;
  /** Keys whose current cas unique `send` needs (looked up with `gets` on each server after `setup`). */
  casOf?: (k: string) => string[];
  /**
   * What one-byte-per-write delivery must give: the same reply (default), or a closed connection (a non-get line
   * over 2048 bytes is only accepted when its newline arrives in the same read, in memcached too).
   */
  bytewise?: 'same' | 'closes';
}

const big = (n: number, c = 'x') => c.repeat(n);
/** `<cmd> <key> <flags> <exptime> <bytes>[ extra]\r\n<value>\r\n` */
const store = (cmd: string, key: string, value: string, flags = 0, exptime = 0, extra = '') =>
  `${cmd} ${key} ${flags} ${exptime} ${Buffer.byteLength(value, 'latin1')}${extra}\r\n${value}\r\n`;
const set = (key: string, value: string, flags = 0, exptime = 0, extra = '') =>
  store('set', key, value, flags, exptime, extra);
/** A key of exactly `n` bytes under prefix `k`. */
const keyOf = (k: string, n: number) => `${k}_`.padEnd(n, 'q');
/** The largest value memcached -I 1m stores under a key of `nkey` bytes with flags 0 (measured on 1.6.18). */
const maxValue = (nkey: number) => 1048517 - nkey;

const transcripts: Transcript[] = [
  // 1.1 framing, tokens, keys
  {
    name: 'a bare \\n ends a command line like \\r\\n',
    send: (k) => [`set ${k} 0 0 1\nx\r\n`, `get ${k}\n`, 'version\n'],
  },
  {
    name: 'runs of spaces collapse; leading and trailing spaces are ignored',
    send: (k) => [`  set   ${k}  3  0  1  \r\nx\r\n`, `   get    ${k}   \r\n`, `gets  ${k}\r\n`],
  },
  {
    name: 'tabs are not separators: get\\tkey is unknown, a tab inside a key is part of it',
    send: (k) => [`get\t${k}\r\n`, set(`${k}\tb`, 'x'), `get ${k}\tb\r\n`, `get ${k}\r\n`, `set ${k} 0\t0 1\r\nx\r\n`],
  },
  {
    name: 'command names are case-sensitive (GET, Set, VERSION → ERROR)',
    send: (k) => [`GET ${k}\r\n`, `Set ${k} 0 0 1\r\nx\r\n`, `get ${k}\r\n`, 'VERSION\r\n', 'Quit\r\n'],
  },
  {
    name: 'empty and blank lines answer ERROR',
    send: () => ['\r\n', '\n', '   \r\n', ' \n'],
  },
  {
    name: 'unknown commands answer ERROR and the connection stays usable',
    send: (k) => ['foo\r\n', 'foo bar baz\r\n', 'versionx\r\n', 'g\r\n', 'ge k\r\n', `get ${k}\r\n`],
  },
  {
    name: 'a storage line with extra tokens answers ERROR, then ERROR for its data line',
    send: (k) => [`set ${k} 0 0 1 noreply extra\r\nx\r\n`, `set ${k} 0 0\r\n`, `get ${k}\r\n`],
  },
  {
    name: 'a line of 3000 bytes without newline closes the connection',
    send: () => [big(3000, 'z')],
  },
  {
    name: 'earlier replies are sent before a too-long line closes the connection',
    send: (k) => [set(k, 'v'), `get ${k}\r\n`, big(2100, 'z')],
  },
  {
    name: 'a get/gets line longer than 2048 bytes is served (multi-get is unbounded)',
    send: (k) => {
      const keys = Array.from({ length: 230 }, (_, i) => `${k}_${i}`);
      return [
        set(`${k}_7`, 'seven'),
        set(`${k}_229`, 'last'),
        `get ${keys.join(' ')}\r\n`,
        `gets ${keys.join(' ')}\r\n`,
      ];
    },
  },
  {
    name: 'a non-get line over 2048 bytes is parsed when its newline is in the same read (trickled: closed)',
    send: (k) => [`delete ${k} ${big(2500, ' ')}\r\n`, `touch ${keyOf(k, 2500)} 0\r\n`],
    bytewise: 'closes',
  },
  {
    name: 'values are 8-bit clean (\\r\\nEND\\r\\n, NUL, 0xff inside a value)',
    send: (k) => [set(k, '\r\nEND\r\n\x00\xff\x80VALUE x 0 1\r\n'), `get ${k}\r\n`, set(`${k}e`, ''), `get ${k}e\r\n`],
  },
  {
    name: 'an HTTP request on the cache port closes the connection',
    send: () => ['GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'],
  },
  {
    name: 'a 250-byte key works with every command',
    send: (k) => {
      const key = keyOf(k, 250);
      return [
        set(key, '5', 1),
        `get ${key}\r\n`,
        `incr ${key} 2\r\n`,
        `touch ${key} 100\r\n`,
        `gat 0 ${key}\r\n`,
        store('append', key, '0'),
        `get ${key}\r\n`,
        `delete ${key}\r\n`,
      ];
    },
  },
  // A get/gets/gat with a too-long key makes memcached 1.6.18 drop every reply still unsent on the connection
  // (`conn_release_items` in process_get_command), so which earlier pipelined replies survive depends on how the
  // bytes were read. That is timing, not protocol: those commands come first in their transcripts here.
  {
    name: 'a 251-byte key: storage → CLIENT_ERROR bad command line format, then ERROR for the data line',
    send: (k) => {
      const key = keyOf(k, 251);
      return [set(key, 'x'), store('add', key, 'x'), store('cas', key, 'x', 0, 0, ' 1'), `delete ${key}\r\n`];
    },
  },
  {
    name: 'a 251-byte key in delete/incr/decr/touch → CLIENT_ERROR bad command line format',
    send: (k) => {
      const key = keyOf(k, 251);
      return [`delete ${key}\r\n`, `incr ${key} 1\r\n`, `decr ${key} 1\r\n`, `touch ${key} 1\r\n`, 'version\r\n'];
    },
  },
  ...(['get', 'gets', 'gat 0', 'gats 0'] as const).map(
    (cmd): Transcript => ({
      name: `a 251-byte key in ${cmd.split(' ')[0]} → CLIENT_ERROR bad command line format`,
      setup: (k) => set(k, 'v'),
      send: (k) => [`${cmd} ${keyOf(k, 251)}\r\n`, `${cmd} ${k}\r\n`],
    }),
  ),
  {
    name: 'a multi-get with a valid key before a 251-byte key answers only the client error',
    setup: (k) => set(k, 'v'),
    send: (k) => [`get ${k} ${keyOf(k, 251)} ${k}\r\n`, `get ${k}\r\n`],
  },
  // 1.2 storage commands
  {
    name: 'set stores and overwrites; get returns flags, length and data',
    send: (k) => [set(k, 'one', 7), `get ${k}\r\n`, set(k, 'second', 4294967295), `get ${k}\r\n`],
  },
  {
    name: 'add stores only a missing key (NOT_STORED when present)',
    send: (k) => [store('add', k, 'a'), store('add', k, 'b'), `get ${k}\r\n`],
  },
  {
    name: 'replace stores only an existing key (NOT_STORED when missing)',
    send: (k) => [store('replace', k, 'a'), `get ${k}\r\n`, set(k, 'x'), store('replace', k, 'b', 3), `get ${k}\r\n`],
  },
  {
    name: 'append/prepend need an existing item and keep its flags and exptime',
    send: (k) => [
      store('append', k, 'a'),
      store('prepend', k, 'a'),
      set(k, 'mid', 42),
      store('append', k, '>>', 9, 1000),
      store('prepend', k, '<<', 9, -1),
      `get ${k}\r\n`,
    ],
  },
  {
    name: 'cas: NOT_FOUND when missing, EXISTS on mismatch, STORED with the current unique',
    setup: (k) => set(`${k}c`, 'orig'),
    casOf: (k) => [`${k}c`],
    send: (k, cas) => [
      store('cas', k, 'x', 0, 0, ' 1'),
      store('cas', `${k}c`, 'bad', 0, 0, ` ${BigInt(cas[`${k}c`]!) + 1000000n}`),
      store('cas', `${k}c`, 'good', 5, 0, ` ${cas[`${k}c`]}`),
      store('cas', `${k}c`, 'again', 5, 0, ` ${cas[`${k}c`]}`),
      `gets ${k}c\r\n`,
    ],
  },
  {
    name: 'cas: bad or missing unique → CLIENT_ERROR / ERROR',
    send: (k) => [
      store('cas', k, 'x', 0, 0, ' abc'),
      store('cas', k, 'x', 0, 0, ' -1'),
      `cas ${k} 0 0 1\r\nx\r\n`,
      store('cas', k, 'x', 0, 0, ' 18446744073709551616'),
    ],
  },
  {
    name: 'every store gives a new cas unique; touch and gat keep it',
    send: (k) => [
      set(k, '1'),
      `gets ${k}\r\n`,
      `gets ${k}\r\n`,
      `touch ${k} 1000\r\n`,
      `gats 0 ${k}\r\n`,
      `gat 100 ${k}\r\n`,
      `gets ${k}\r\n`,
      store('append', k, '0'),
      `gets ${k}\r\n`,
      `incr ${k} 1\r\n`,
      `gets ${k}\r\n`,
      set(k, 'x'),
      `gets ${k} ${k}\r\n`,
    ],
  },
  {
    name: 'flags: 4294967295 is accepted; 4294967296, -1, abc → CLIENT_ERROR then ERROR for the data line',
    send: (k) => [
      set(k, 'x', 4294967295),
      `get ${k}\r\n`,
      `set ${k} 4294967296 0 1\r\nx\r\n`,
      `set ${k} -1 0 1\r\nx\r\n`,
      `set ${k} abc 0 1\r\nx\r\n`,
      `set ${k} 1x 0 1\r\nx\r\n`,
      `get ${k}\r\n`,
    ],
  },
  {
    name: 'exptime: non-numeric → CLIENT_ERROR bad command line format',
    send: (k) => [`set ${k} 0 abc 1\r\nx\r\n`, `set ${k} 0 1.5 1\r\nx\r\n`, `get ${k}\r\n`],
  },
  {
    name: 'bytes: -1, abc, 4294967295, 2147483647 → CLIENT_ERROR bad command line format',
    send: (k) => [
      `set ${k} 0 0 -1\r\n`,
      `set ${k} 0 0 abc\r\nx\r\n`,
      `set ${k} 0 0 4294967295\r\n`,
      `set ${k} 0 0 2147483647\r\n`,
      `get ${k}\r\n`,
    ],
  },
  {
    name: 'data longer than declared → CLIENT_ERROR bad data chunk, the rest is parsed as a command',
    send: (k) => [`set ${k} 0 0 1\r\nxyz\r\n`, `get ${k}\r\n`, `set ${k} 0 0 2\r\nab\n\r\n`],
  },
  {
    name: 'data shorter than declared swallows the next line into the data → bad data chunk',
    send: (k) => [`set ${k} 0 0 5\r\nab\r\n`, `get ${k}\r\n`, `get ${k}\r\n`],
  },
  {
    name: 'the largest value that fits -I 1m is stored, one byte more is refused',
    send: (k) => [set(k, big(maxValue(k.length))), `get ${k}\r\n`, set(`${k}b`, big(maxValue(k.length + 1) + 1))],
  },
  {
    name: 'too large set: SERVER_ERROR object too large for cache, data swallowed, the existing item deleted',
    send: (k) => [set(k, 'old'), set(k, big(1048577)), `get ${k}\r\n`, set(k, 'new'), `get ${k}\r\n`],
  },
  {
    name: 'too large add/replace/append/prepend/cas: refused and swallowed, the existing item kept',
    send: (k) => [
      set(k, 'old'),
      store('add', k, big(1048577)),
      store('replace', k, big(1048577)),
      store('append', k, big(1048577)),
      store('prepend', k, big(1048577)),
      store('cas', k, big(1048577), 0, 0, ' 1'),
      `get ${k}\r\n`,
    ],
  },
  {
    name: 'too large set with noreply: the data is still swallowed',
    send: (k) => [set(k, 'old'), set(k, big(1048577), 0, 0, ' noreply'), `get ${k}\r\n`],
  },
  // noreply
  {
    name: 'noreply hides the replies of storage commands, success and failure',
    send: (k) => [
      set(k, 'a', 0, 0, ' noreply'),
      store('add', k, 'b', 0, 0, ' noreply'),
      store('replace', `${k}m`, 'c', 0, 0, ' noreply'),
      store('append', k, 'd', 0, 0, ' noreply'),
      store('prepend', k, 'e', 0, 0, ' noreply'),
      store('append', `${k}m`, 'f', 0, 0, ' noreply'),
      store('cas', k, 'g', 0, 0, ' 1 noreply'),
      store('cas', `${k}m`, 'h', 0, 0, ' 1 noreply'),
      `get ${k} ${k}m\r\n`,
    ],
  },
  {
    name: 'noreply hides delete, incr/decr, touch replies (hits and misses)',
    send: (k) => [
      set(k, '10'),
      `incr ${k} 5 noreply\r\n`,
      `decr ${k} 2 noreply\r\n`,
      `incr ${k}m 1 noreply\r\n`,
      `touch ${k} 100 noreply\r\n`,
      `touch ${k}m 100 noreply\r\n`,
      `get ${k}\r\n`,
      `delete ${k} noreply\r\n`,
      `delete ${k} noreply\r\n`,
      `get ${k}\r\n`,
    ],
  },
  {
    name: 'noreply with bad arguments: what memcached still answers',
    send: (k) => [
      `set ${k} abc 0 1 noreply\r\nx\r\n`,
      `set ${k} 0 0 1 noreply\r\nxyz\r\n`,
      set(k, 'abc'),
      `incr ${k} 1 noreply\r\n`,
      `incr ${k} abc noreply\r\n`,
      `touch ${k} abc noreply\r\n`,
      `verbosity abc noreply\r\n`,
      `get ${k}\r\n`,
    ],
  },
  // 1.3 retrieval
  {
    name: 'get: misses are omitted, duplicates repeated, order kept',
    send: (k) => [
      set(`${k}1`, 'one', 1),
      set(`${k}2`, 'two', 2),
      `get ${k}2 ${k}x ${k}1 ${k}2 ${k}y\r\n`,
      `get ${k}x\r\n`,
    ],
  },
  {
    name: 'get/gets with no key → ERROR',
    send: () => ['get\r\n', 'gets\r\n', 'get \r\n', 'gets   \r\n', 'bget\r\n'],
  },
  {
    name: 'gets prints the cas unique; several keys',
    send: (k) => [set(`${k}1`, 'one'), set(`${k}2`, 'two', 3), `gets ${k}1 ${k}2 ${k}3\r\n`],
  },
  {
    name: 'gat/gats fetch and touch; gats prints the cas; misses omitted',
    send: (k) => [
      set(k, 'v', 9),
      `gat 100 ${k} ${k}m ${k}\r\n`,
      `gats 0 ${k}\r\n`,
      `gat -1 ${k}\r\n`,
      `get ${k}\r\n`,
      `gats 100 ${k}\r\n`,
    ],
  },
  {
    name: 'gat/gats: bad exptime → CLIENT_ERROR invalid exptime argument; exptime but no key → END; nothing → ERROR',
    send: (k) => [
      `gat abc ${k}\r\n`,
      `gats 1x ${k}\r\n`,
      'gat 10\r\n',
      'gats 10\r\n',
      'gat abc\r\n',
      'gat\r\n',
      'gats\r\n',
    ],
  },
  {
    name: 'touch → TOUCHED / NOT_FOUND; bad exptime → CLIENT_ERROR invalid exptime argument',
    send: (k) => [
      set(k, 'v'),
      `touch ${k} 100\r\n`,
      `touch ${k}m 100\r\n`,
      `touch ${k} abc\r\n`,
      `touch ${k}\r\n`,
      `touch ${k} 1 2 3\r\n`,
      `touch ${k} -1\r\n`,
      `get ${k}\r\n`,
    ],
  },
  // 1.4 delete, incr/decr
  {
    name: 'delete → DELETED, then NOT_FOUND',
    send: (k) => [set(k, 'v'), `delete ${k}\r\n`, `delete ${k}\r\n`, `get ${k}\r\n`],
  },
  {
    name: 'delete <key> 0 is accepted; delete <key> 10 → CLIENT_ERROR … Usage: delete <key> [noreply]',
    send: (k) => [
      set(k, 'v'),
      `delete ${k} 10\r\n`,
      `delete ${k} 0\r\n`,
      `delete ${k} 0\r\n`,
      set(k, 'v'),
      `delete ${k} 0 noreply\r\n`,
      `delete ${k} 1 noreply\r\n`,
      `delete ${k} noreply 0\r\n`,
      `get ${k}\r\n`,
    ],
  },
  {
    name: 'delete alone or with too many tokens → ERROR',
    send: () => ['delete\r\n', 'delete a b c d\r\n', 'delete a b c d e\r\n'],
  },
  {
    name: 'incr/decr return the new value; a missing key → NOT_FOUND',
    send: (k) => [
      set(k, '5', 3),
      `incr ${k} 10\r\n`,
      `decr ${k} 3\r\n`,
      `incr ${k} 0\r\n`,
      `get ${k}\r\n`,
      `incr ${k}m 1\r\n`,
      `decr ${k}m 1\r\n`,
    ],
  },
  {
    name: 'incr wraps modulo 2^64; decr clamps at 0',
    send: (k) => [
      set(k, '18446744073709551615'),
      `incr ${k} 2\r\n`,
      `get ${k}\r\n`,
      set(`${k}d`, '3'),
      `decr ${k}d 10\r\n`,
      `get ${k}d\r\n`,
      `incr ${k}d 18446744073709551615\r\n`,
      `incr ${k}d 1\r\n`,
    ],
  },
  {
    name: 'a shorter incr/decr result is padded with spaces in place ("10" decr 1 → "9 ")',
    send: (k) => [set(k, '10'), `decr ${k} 1\r\n`, `get ${k}\r\n`, `incr ${k} 1\r\n`, `get ${k}\r\n`],
  },
  {
    name: 'a longer incr result grows the value ("99" incr 1 → "100"); flags and exptime kept',
    send: (k) => [set(k, '99', 77, 1000), `incr ${k} 1\r\n`, `get ${k}\r\n`, `incr ${k} 99900\r\n`, `get ${k}\r\n`],
  },
  {
    name: 'non-numeric values (12a, empty, 21 digits, -1) → CLIENT_ERROR cannot increment or decrement',
    send: (k) => [
      set(`${k}a`, '12a'),
      `incr ${k}a 1\r\n`,
      set(`${k}b`, ''),
      `incr ${k}b 1\r\n`,
      set(`${k}c`, '123456789012345678901'),
      `decr ${k}c 1\r\n`,
      set(`${k}d`, '-1'),
      `incr ${k}d 1\r\n`,
      set(`${k}e`, '18446744073709551616'),
      `incr ${k}e 1\r\n`,
    ],
  },
  {
    name: 'values with leading or trailing spaces are numeric',
    send: (k) => [
      set(`${k}a`, '  5'),
      `incr ${k}a 1\r\n`,
      `get ${k}a\r\n`,
      set(`${k}b`, '7 '),
      `incr ${k}b 1\r\n`,
      `get ${k}b\r\n`,
      set(`${k}c`, '00012'),
      `incr ${k}c 1\r\n`,
      `get ${k}c\r\n`,
    ],
  },
  {
    name: 'bad deltas (-1, abc, 2^64, 1.5) → CLIENT_ERROR invalid numeric delta argument; no delta → ERROR',
    send: (k) => [
      set(k, '1'),
      `incr ${k} -1\r\n`,
      `incr ${k} abc\r\n`,
      `decr ${k} 18446744073709551616\r\n`,
      `incr ${k} 1.5\r\n`,
      `incr ${k}\r\n`,
      'incr\r\n',
      `incr ${k} 1 noreply extra\r\n`,
      `get ${k}\r\n`,
    ],
  },
  // 1.5 expiration
  {
    name: 'negative exptime stores an already expired item; add then succeeds',
    send: (k) => [set(k, 'v', 0, -1), `get ${k}\r\n`, store('add', k, 'w'), `get ${k}\r\n`],
  },
  {
    name: 'an absolute exptime in the past is already expired; 30 days is still relative',
    send: (k) => [set(k, 'v', 0, 1000000000), `get ${k}\r\n`, set(`${k}r`, 'r', 0, 2592000), `get ${k}r\r\n`],
  },
  // 1.6 other commands
  {
    name: 'version answers VERSION <version>',
    send: () => ['version\r\n', 'version extra\r\n'],
  },
  {
    name: 'verbosity: OK, noreply silent, no argument → ERROR, non-numeric → CLIENT_ERROR',
    send: () => ['verbosity 1\r\n', 'verbosity 0 noreply\r\n', 'verbosity\r\n', 'verbosity abc\r\n', 'verbosity 0\r\n'],
  },
  {
    name: 'stats detail with a bad or missing sub-argument → CLIENT_ERROR usage',
    send: () => ['stats detail x\r\n', 'stats detail\r\n', 'stats detail on off\r\n'],
  },
  {
    name: 'unknown stats groups and stats noreply → ERROR',
    send: () => ['stats foo\r\n', 'stats noreply\r\n', 'STATS\r\n'],
  },
  {
    name: 'stats sizes is disabled without -o track_sizes',
    send: () => ['stats sizes\r\n'],
  },
  {
    name: 'stats cachedump argument errors',
    send: () => [
      'stats cachedump\r\n',
      'stats cachedump 1\r\n',
      'stats cachedump 100 0\r\n',
      'stats cachedump x 0\r\n',
    ],
  },
  {
    name: 'shutdown is refused without -A',
    send: () => ['shutdown\r\n', 'shutdown graceful\r\n'],
  },
  {
    name: 'quit closes after answering the commands before it; later commands are ignored',
    send: (k) => [set(k, 'v'), `get ${k}\r\n`, 'quit\r\n', `get ${k}\r\n`],
  },
];

/** Transcripts touching global state: run one at a time, after the concurrent ones. */
const serialTranscripts: Transcript[] = [
  {
    name: 'flush_all → OK: items stored before are gone, items stored after are kept',
    send: (k) => [set(k, 'v'), 'flush_all\r\n', `get ${k}\r\n`, set(k, 'w'), `get ${k}\r\n`],
  },
  {
    name: 'flush_all forms: 0, -1, noreply, 0 noreply → OK or silent; abc → CLIENT_ERROR; too many tokens → ERROR',
    send: () => [
      'flush_all 0\r\n',
      'flush_all -1\r\n',
      'flush_all noreply\r\n',
      'flush_all 0 noreply\r\n',
      'flush_all abc\r\n',
      'flush_all 1x\r\n',
      'flush_all 0 noreply extra\r\n',
      'flush_all 0 0\r\n',
    ],
  },
  {
    name: 'flush_all with a delay keeps items until then',
    send: (k) => [set(k, 'v'), 'flush_all 100\r\n', `get ${k}\r\n`, 'flush_all\r\n', `get ${k}\r\n`],
  },
  {
    name: 'stats detail on / off / dump',
    send: () => ['stats detail off\r\n', 'stats detail on\r\n', 'stats detail off\r\n', 'stats detail dump\r\n'],
  },
  {
    name: 'stats reset → RESET',
    send: () => ['stats reset\r\n', 'stats reset\r\n'],
  },
  {
    name: 'cache_memlimit: OK, too small, bad argument',
    send: () => ['cache_memlimit 64\r\n', 'cache_memlimit 7\r\n', 'cache_memlimit abc\r\n', 'cache_memlimit\r\n'],
  },
];

/**
 * Applies the masks (see the module comment) to a reply. Walks it line by line so value data is never mistaken
 * for a reply line.
 */
function maskReply(reply: Buffer): string {
  const s = reply.toString('latin1');
  const cas = new Map<string, string>();
  let out = '';
  let at = 0;
  while (at < s.length) {
    const nl = s.indexOf('\n', at);
    if (nl < 0) {
      out += s.slice(at);
      break;
    }
    const line = s.slice(at, nl + 1);
    at = nl + 1;
    const value = /^VALUE (\S+) (\d+) (\d+)(?: (\d+))?\r\n$/.exec(line);
    if (value) {
      const [, key, flags, bytes, unique] = value;
      let masked = `VALUE ${key} ${flags} ${bytes}`;
      if (unique !== undefined) {
        if (!cas.has(unique)) cas.set(unique, `<cas#${cas.size + 1}>`);
        masked += ` ${cas.get(unique)}`;
      }
      out += `${masked}\r\n${s.slice(at, at + Number(bytes) + 2)}`;
      at += Number(bytes) + 2;
    } else if (line.startsWith('VERSION ')) {
      out += 'VERSION <version>\r\n';
    } else {
      out += line;
    }
  }
  return out;
}

/** A readable, diffable form: runs of one character longer than 32 become `⟨c×n⟩`, control bytes are escaped. */
function show(masked: string, closed: boolean): string {
  const compact = masked
    .replace(/(.)\1{32,}/gs, (run, c: string) => `⟨${JSON.stringify(c)}×${run.length}⟩`)
    .replace(/\r\n/g, '⏎\n')
    .replace(/[\x00-\x09\x0b-\x1f\x7f-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return `${compact}${closed ? '⟨closed by server⟩' : ''}`;
}

/**
 * One byte per write, except inside runs of one repeated byte longer than 64 (the bodies of big values), whose
 * interior goes in 4 KiB writes so a 1 MiB transcript stays fast; every line and every run edge is still split.
 */
function bytewisePieces(data: Buffer): Buffer[] {
  const pieces: Buffer[] = [];
  let i = 0;
  while (i < data.length) {
    let j = i + 1;
    while (j < data.length && data[j] === data[i]) j++;
    if (j - i > 64) {
      for (let p = i; p < i + 32; p++) pieces.push(data.subarray(p, p + 1));
      for (let p = i + 32; p < j - 32; p += 4096) pieces.push(data.subarray(p, Math.min(p + 4096, j - 32)));
      for (let p = j - 32; p < j; p++) pieces.push(data.subarray(p, p + 1));
    } else {
      for (let p = i; p < j; p++) pieces.push(data.subarray(p, p + 1));
    }
    i = j;
  }
  return pieces;
}

/** Replies end with this line: the setup and cas look-ups wait for it rather than for a quiet period. */
const endsWith = (line: string) => (reply: Buffer) => reply.toString('latin1').endsWith(line);

async function casUnique(port: number, key: string): Promise<string> {
  const { reply } = await exchange(port, `gets ${key}\r\n`, { until: endsWith('END\r\n') });
  const m = /^VALUE \S+ \d+ \d+ (\d+)\r\n/.exec(reply.toString('latin1'));
  assert.ok(m, `gets ${key} found no item: ${reply.toString('latin1')}`);
  return m[1]!;
}

/**
 * Plays a transcript on one server. With `expect` (the real server's masked reply), collecting waits until as many
 * masked bytes arrived, or the connection closed if it is expected to, before looking for the quiet period that
 * catches any excess (see `ExchangeOptions.complete`); a missing reply then shows as a diff after `timeoutMs`.
 */
async function play(
  port: number,
  tr: Transcript,
  k: string,
  bytewise: boolean,
  expect?: { masked: string; closed: boolean },
): Promise<ExchangeResult> {
  if (tr.setup) {
    const setup = `${tr.setup(k)}version\r\n`;
    await exchange(port, setup, { until: (r) => /VERSION [^\r\n]+\r\n$/.test(r.toString('latin1')) });
  }
  const cas: Record<string, string> = {};
  for (const key of tr.casOf?.(k) ?? []) cas[key] = await casUnique(port, key);
  const data = Buffer.concat(tr.send(k, cas).map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
  const complete =
    expect === undefined
      ? undefined
      : expect.closed
        ? () => false
        : (reply: Buffer) => maskReply(reply).length >= expect.masked.length;
  return exchange(port, bytewise ? bytewisePieces(data) : data, { complete, timeoutMs: 20000 });
}

let real: RealMemcached | undefined;
let ours: OurMemcached | undefined;
let oursBytewise: OurMemcached | undefined;

before(async () => {
  ours = await startOurServer(FLAGS);
  oursBytewise = await startOurServer(FLAGS);
  // A missing memcached is reported (skip locally, failure in CI) by each test through requireTool.
  if (toolAvailable(MEMCACHED_BIN)) real = await startRealMemcached(FLAGS);
});

after(async () => {
  await Promise.all([real?.stop(), ours?.close(), oursBytewise?.close()]);
});

function defineCase(tr: Transcript, index: number): void {
  it(tr.name, async (t) => {
    if (!requireTool(t, MEMCACHED_BIN)) return;
    const k = `k${String(index).padStart(3, '0')}`;
    const theirs = await play(real!.port, tr, k, false);
    const masked = maskReply(theirs.reply);
    const [mine, mineBytewise] = await Promise.all([
      play(ours!.port, tr, k, false, { masked, closed: theirs.closed }),
      play(oursBytewise!.port, tr, k, true, { masked, closed: tr.bytewise === 'closes' || theirs.closed }),
    ]);
    const expected = show(maskReply(theirs.reply), theirs.closed);
    assert.equal(show(maskReply(mine.reply), mine.closed), expected, 'ours differs from memcached 1.6.18');
    assert.equal(maskReply(mine.reply), masked);
    if (tr.bytewise === 'closes') {
      assert.equal(mineBytewise.closed, true, 'a trickled non-get line over 2048 bytes must close the connection');
    } else {
      assert.equal(show(maskReply(mineBytewise.reply), mineBytewise.closed), expected, 'one byte per write differs');
    }
  });
}

describe('memcached text protocol: byte-identical to memcached 1.6.18 (one write and one byte per write)', {
  concurrency: true,
}, () => {
  for (const [i, tr] of transcripts.entries()) defineCase(tr, i);
});

describe('memcached text protocol, global state: byte-identical to memcached 1.6.18', () => {
  for (const [i, tr] of serialTranscripts.entries()) defineCase(tr, 500 + i);
});
