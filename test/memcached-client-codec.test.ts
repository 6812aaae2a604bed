/**
 * The client's pure layers: text/meta request encoders, the resumable reply parsers (every fixture as one chunk,
 * byte by byte, and at random split points), serializers and compression, and the error table ↔ docs.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { deflateSync } from 'node:zlib';
import { BinaryReplyParser } from '../src/memcached/client/binary-codec.ts';
import { MemcacheClient, parseServer } from '../src/memcached/client/client.ts';
import { composite, textCommands } from '../src/memcached/client/commands.ts';
import { MEMCACHE_ERROR_CODES, MemcacheError } from '../src/memcached/client/errors.ts';
import { LocalCache } from '../src/memcached/client/local-cache.ts';
import {
  autoSerializer,
  bufferSerializer,
  compress,
  decompress,
  jsonSerializer,
  resolveCompression,
  stringSerializer,
  ValueFlag,
} from '../src/memcached/client/serializer.ts';
import {
  encodeArithmetic,
  encodeDelete,
  encodeFlushAll,
  encodeKey,
  encodeMetaGet,
  encodeMetaSet,
  encodeRetrieval,
  encodeStorage,
  encodeTouch,
  MAX_REQUEST_LINE,
  type TextReply,
  TextReplyParser,
} from '../src/memcached/client/text-codec.ts';
import { encodeRequest, Opcode } from '../src/memcached/protocol/binary.ts';

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The ways to cut a stream into chunks: whole, byte by byte, and 20 random splits. */
function splits(data: Buffer, seed: number): Buffer[][] {
  const out: Buffer[][] = [[data]];
  const bytes: Buffer[] = [];
  for (let i = 0; i < data.length; i++) bytes.push(data.subarray(i, i + 1));
  out.push(bytes);
  const rand = prng(seed);
  for (let n = 0; n < 20; n++) {
    const chunks: Buffer[] = [];
    let at = 0;
    while (at < data.length) {
      const size = 1 + Math.floor(rand() * Math.min(data.length, 40));
      chunks.push(data.subarray(at, at + size));
      at += size;
    }
    out.push(chunks);
  }
  return out;
}

function parseText(chunks: Buffer[]): TextReply[] {
  const parser = new TextReplyParser();
  const replies: TextReply[] = [];
  for (const c of chunks) parser.push(c, (r) => replies.push(r));
  assert.ok(parser.idle, 'parser left a partial reply');
  return replies;
}

/** Replies with their Buffers (values, keys) as strings, for deepEqual. */
function plain(replies: readonly TextReply[]): unknown[] {
  return replies.map((r) => {
    if (!('value' in r) || !Buffer.isBuffer(r.value)) return r as unknown;
    return r.type === 'value'
      ? { ...r, key: r.key.toString('latin1'), value: r.value.toString('latin1') }
      : { ...r, value: r.value.toString('latin1') };
  });
}

const TEXT_FIXTURES: [string, string, unknown[]][] = [
  [
    'get hit and END',
    'VALUE foo 5 3\r\nbar\r\nEND\r\n',
    [{ type: 'value', key: 'foo', flags: 5, value: 'bar' }, { type: 'end' }],
  ],
  [
    'gets with cas, binary data holding CRLF',
    'VALUE k 0 6 12345678901234567890\r\na\r\nb\r\n\r\nEND\r\n',
    [{ type: 'value', key: 'k', flags: 0, cas: 12345678901234567890n, value: 'a\r\nb\r\n' }, { type: 'end' }],
  ],
  ['empty value', 'VALUE e 0 0\r\n\r\nEND\r\n', [{ type: 'value', key: 'e', flags: 0, value: '' }, { type: 'end' }]],
  [
    'status words',
    'STORED\r\nNOT_STORED\r\nEXISTS\r\nNOT_FOUND\r\nDELETED\r\nTOUCHED\r\nOK\r\nRESET\r\n',
    ['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND', 'DELETED', 'TOUCHED', 'OK', 'RESET'].map((status) => ({
      type: 'status',
      status,
    })),
  ],
  [
    'incr results',
    '0\r\n18446744073709551615\r\n',
    [
      { type: 'number', value: 0n },
      { type: 'number', value: 18446744073709551615n },
    ],
  ],
  [
    'stats',
    'STAT pid 42\r\nSTAT version 1.6.18\r\nSTAT weird value with spaces\r\nEND\r\n',
    [
      { type: 'stat', name: 'pid', value: '42' },
      { type: 'stat', name: 'version', value: '1.6.18' },
      { type: 'stat', name: 'weird', value: 'value with spaces' },
      { type: 'end' },
    ],
  ],
  ['version', 'VERSION 1.6.18\r\n', [{ type: 'version', version: '1.6.18' }]],
  [
    'errors',
    'ERROR\r\nCLIENT_ERROR bad data chunk\r\nSERVER_ERROR out of memory storing object\r\n',
    [
      { type: 'error', kind: 'ERROR', message: '' },
      { type: 'error', kind: 'CLIENT_ERROR', message: 'bad data chunk' },
      { type: 'error', kind: 'SERVER_ERROR', message: 'out of memory storing object' },
    ],
  ],
  [
    'meta replies',
    'HD\r\nHD c77 t-1\r\nEN\r\nNS\r\nEX\r\nNF\r\nMN\r\nVA 2 f3 c9 t100 W\r\nhi\r\nVA 0 Z X s0 kfoo Oab h1 l5 b\r\n\r\n',
    [
      { type: 'meta', code: 'HD', flags: {} },
      { type: 'meta', code: 'HD', flags: { cas: 77n, ttl: -1 } },
      { type: 'meta', code: 'EN', flags: {} },
      { type: 'meta', code: 'NS', flags: {} },
      { type: 'meta', code: 'EX', flags: {} },
      { type: 'meta', code: 'NF', flags: {} },
      { type: 'meta', code: 'MN', flags: {} },
      { type: 'meta', code: 'VA', flags: { flags: 3, cas: 9n, ttl: 100, win: true }, value: 'hi' },
      {
        type: 'meta',
        code: 'VA',
        flags: {
          alreadyWon: true,
          stale: true,
          size: 0,
          key: 'foo',
          opaque: 'ab',
          hit: true,
          lastAccess: 5,
          base64: true,
        },
        value: '',
      },
    ],
  ],
];

describe('text reply parser', () => {
  for (const [name, wire, expected] of TEXT_FIXTURES) {
    it(`${name}: whole, byte by byte, random splits`, () => {
      const data = Buffer.from(wire, 'latin1');
      for (const chunks of splits(data, name.length)) assert.deepEqual(plain(parseText(chunks)), expected);
    });
  }

  it('all fixtures back to back, at random splits', () => {
    const data = Buffer.from(TEXT_FIXTURES.map((f) => f[1]).join(''), 'latin1');
    const expected = TEXT_FIXTURES.flatMap((f) => f[2]);
    for (const chunks of splits(data, 7)) assert.deepEqual(plain(parseText(chunks)), expected);
  });

  it('a value inside one chunk is a view of it; a split value is joined once', () => {
    const data = Buffer.from('VALUE k 0 4\r\nabcd\r\n', 'latin1');
    const [whole] = parseText([data]) as unknown as [{ value: Buffer }];
    assert.equal(whole.value.buffer, data.buffer);
    const [split] = parseText([data.subarray(0, 15), data.subarray(15)]) as unknown as [{ value: Buffer }];
    assert.equal(split.value.toString(), 'abcd');
  });

  for (const [name, wire] of [
    ['an unknown line', 'HTTP/1.1 400 Bad Request\r\n'],
    ['a value without CRLF after it', 'VALUE k 0 2\r\nabXY'],
    ['a bad VALUE line', 'VALUE k x 2\r\n'],
    ['END with trailing junk', 'END now\r\n'],
    ['an endless line', 'x'.repeat(10000)],
  ] as const) {
    it(`rejects ${name} with MEMCACHED_ERR_PROTOCOL`, () => {
      assert.throws(
        () => parseText([Buffer.from(wire, 'latin1')]),
        (err: unknown) => err instanceof MemcacheError && err.code === 'MEMCACHED_ERR_PROTOCOL',
      );
    });
  }
});

describe('binary reply parser', () => {
  it('frames responses across any split', () => {
    const frames = [
      // A response header is a request header with magic 0x81.
      encodeRequest({ opcode: Opcode.GETKQ, key: 'k1', extras: Buffer.from([0, 0, 0, 7]), value: 'v1' }),
      encodeRequest({ opcode: Opcode.NOOP }),
      encodeRequest({ opcode: Opcode.VERSION, value: '1.6.18' }),
    ].map((f) => {
      f[0] = 0x81;
      return f;
    });
    const data = Buffer.concat(frames);
    for (const chunks of splits(data, 3)) {
      const parser = new BinaryReplyParser();
      const got: { opcode: number; key: string; value: string }[] = [];
      for (const c of chunks) {
        parser.push(c, (r) => {
          const resp = r as { opcode: number; key: Buffer; value: Buffer };
          got.push({ opcode: resp.opcode, key: resp.key.toString(), value: resp.value.toString() });
        });
      }
      assert.deepEqual(got, [
        { opcode: Opcode.GETKQ, key: 'k1', value: 'v1' },
        { opcode: Opcode.NOOP, key: '', value: '' },
        { opcode: Opcode.VERSION, key: '', value: '1.6.18' },
      ]);
    }
  });

  it('rejects a bad magic byte', () => {
    assert.throws(
      () => new BinaryReplyParser().push(Buffer.alloc(24, 0x45), () => {}),
      (err: unknown) => err instanceof MemcacheError && err.code === 'MEMCACHED_ERR_PROTOCOL',
    );
  });
});

describe('text request encoders', () => {
  it('encode keys with the prefix and validate them', () => {
    assert.equal(encodeKey('k', Buffer.from('p:')).toString(), 'p:k');
    assert.equal(encodeKey('ü').length, 2);
    for (const bad of ['', 'a b', 'a\nb', 'a\x7fb', 'x'.repeat(251)]) {
      assert.throws(
        () => encodeKey(bad),
        (err: unknown) => (err as MemcacheError).code === 'MEMCACHED_ERR_BAD_KEY',
      );
    }
    assert.throws(() => encodeKey('x'.repeat(249), Buffer.from('pp')), /251 bytes/);
  });

  it('encode every command', () => {
    const k = Buffer.from('key');
    assert.equal(encodeStorage('set', k, Buffer.from('v'), 3, 60).toString(), 'set key 3 60 1\r\nv\r\n');
    assert.equal(encodeStorage('cas', k, Buffer.from('v'), 0, 0, 99n).toString(), 'cas key 0 0 1 99\r\nv\r\n');
    assert.equal(
      encodeStorage('add', k, Buffer.from(''), 0, 0, undefined, true).toString(),
      'add key 0 0 0 noreply\r\n\r\n',
    );
    assert.equal(encodeDelete(k).toString(), 'delete key\r\n');
    assert.equal(encodeArithmetic('incr', k, 5n).toString(), 'incr key 5\r\n');
    assert.equal(encodeTouch(k, 10).toString(), 'touch key 10\r\n');
    assert.equal(encodeFlushAll().toString(), 'flush_all\r\n');
    assert.equal(encodeFlushAll(5, true).toString(), 'flush_all 5 noreply\r\n');
    assert.equal(encodeMetaGet(k, ['v', 'N30']).toString(), 'mg key v N30\r\n');
    assert.equal(encodeMetaSet(k, Buffer.from('ab'), ['T5', 'F1']).toString(), 'ms key 2 T5 F1\r\nab\r\n');
    assert.equal(encodeRetrieval('gat', [k, k], 7).data.toString(), 'gat 7 key key\r\n');
    assert.throws(() => encodeMetaGet(k, ['v x']), /invalid meta flag/);
    assert.throws(() => encodeStorage('set', k, Buffer.from('v'), -1, 0), /flags/);
    assert.throws(() => encodeTouch(k, 1.5), /ttl/);
  });

  it('splits long multi-key lines below 2048 bytes', () => {
    const keys = Array.from({ length: 40 }, (_, i) => Buffer.from(`${'k'.repeat(200)}${i}`));
    const { data, commands } = encodeRetrieval('gats', keys, 0);
    const lines = data.toString().split('\r\n').filter(Boolean);
    assert.equal(lines.length, commands);
    assert.ok(commands > 1);
    for (const line of lines) assert.ok(line.length <= MAX_REQUEST_LINE);
    assert.equal(lines.flatMap((l) => l.split(' ').slice(2)).length, 40);
  });

  it('a composite request hands each reply to its part', () => {
    const k = Buffer.from('a');
    const req = composite('set', [
      textCommands.store('set', k, Buffer.from('1'), 0, 0),
      textCommands.store('add', k, Buffer.from('1'), 0, 0),
      textCommands.store('set', k, Buffer.from('1'), 0, 0),
    ]);
    assert.equal(req.feed({ type: 'status', status: 'STORED' }), false);
    assert.equal(req.feed({ type: 'status', status: 'NOT_STORED' }), false);
    assert.equal(req.feed({ type: 'error', kind: 'SERVER_ERROR', message: 'object too large for cache' }), true);
    const out = req.result('s:1');
    assert.deepEqual(out.slice(0, 2), [
      { ok: true, value: 'stored' },
      { ok: true, value: 'not_stored' },
    ]);
    assert.equal(out[2]!.ok, false);
    assert.equal(!out[2]!.ok && out[2]!.error.code, 'MEMCACHED_ERR_VALUE_TOO_LARGE');
    assert.throws(
      () => textCommands.delete(k).feed({ type: 'end' }),
      (err: unknown) => (err as MemcacheError).code === 'MEMCACHED_ERR_PROTOCOL',
    );
  });
});

describe('serializers and compression', () => {
  it('auto: php-memcached types round trip', () => {
    const cases: [unknown, number][] = [
      ['text ü', 0],
      [42, 1],
      [-7, 1],
      [2n ** 70n, 1],
      [1.5, 2],
      [true, 3],
      [false, 3],
      [{ a: [1, null] }, 6],
      [null, 6],
      [Buffer.from([0, 255]), ValueFlag.BINARY],
    ];
    for (const [value, flags] of cases) {
      const s = autoSerializer.serialize(value);
      assert.equal(s.flags, flags, String(value));
      assert.deepEqual(autoSerializer.deserialize(s.data, s.flags), value);
    }
    assert.throws(() => autoSerializer.serialize(undefined), /undefined/);
    assert.throws(() => autoSerializer.deserialize(Buffer.from('a:0:{}'), 4), /PHP-only/);
  });

  it('json, string and buffer serializers', () => {
    assert.deepEqual(jsonSerializer.deserialize(jsonSerializer.serialize({ x: 1 }).data, 6), { x: 1 });
    assert.equal(stringSerializer.deserialize(stringSerializer.serialize('s').data, 0), 's');
    assert.throws(() => stringSerializer.serialize(1), /strings/);
    assert.deepEqual(bufferSerializer.deserialize(bufferSerializer.serialize('b').data, 0), Buffer.from('b'));
    assert.throws(() => jsonSerializer.deserialize(Buffer.from('{'), 6), /JSON/);
  });

  it('compresses as php-memcached does (u32le length + zlib, flags 0x30) and back', () => {
    const settings = resolveCompression({ threshold: 100 })!;
    const data = Buffer.from('abc'.repeat(1000));
    const c = compress({ data, flags: 6 }, settings);
    assert.equal(c.flags, 6 | 0x30);
    assert.equal(c.data.readUInt32LE(0), data.length);
    assert.deepEqual(c.data.subarray(4), deflateSync(data));
    assert.deepEqual(decompress(c.data, c.flags), { data, flags: 6 });
    // Small or incompressible values stay as they are.
    assert.equal(compress({ data: Buffer.from('abc'), flags: 0 }, settings).flags, 0);
    assert.throws(() => decompress(Buffer.from([1, 0, 0, 0, 9]), 0x50), /fastlz/);
    assert.throws(() => decompress(Buffer.from([9, 0, 0, 0, 1, 2]), 0x30), /decompress/);
  });
});

describe('local LRU', () => {
  it('evicts the least recently used entry and expires entries', () => {
    const lru = new LocalCache(2, 1000);
    const e = (s: string) => ({ data: Buffer.from(s), flags: 0 });
    lru.set('a', e('1'), 0);
    lru.set('b', e('2'), 0);
    assert.ok(lru.get('a', 1));
    lru.set('c', e('3'), 1);
    assert.equal(lru.get('b', 2), undefined);
    assert.ok(lru.get('a', 2));
    assert.equal(lru.get('c', 1001), undefined);
  });
});

describe('error codes', () => {
  it('every code is documented in docs/errors.md', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    // Rows as cells (the formatter pads the table).
    const rows = new Map(
      doc
        .split('\n')
        .filter((line) => line.startsWith('| `MEMCACHED_ERR_') && !line.startsWith('| `MEMCACHED_ERR_BAD_FLAG`'))
        .map((line) => line.split('|').map((cell) => cell.trim()))
        .map((cells) => [cells[1]!.replaceAll('`', ''), { meaning: cells[2]!, fix: cells[3]! }]),
    );
    assert.deepEqual([...rows.keys()], Object.keys(MEMCACHE_ERROR_CODES));
    for (const [code, info] of Object.entries(MEMCACHE_ERROR_CODES)) {
      assert.ok(rows.get(code)!.meaning.startsWith(info.meaning), `${code}: meaning out of date`);
      assert.equal(rows.get(code)!.fix, info.fix, `${code}: fix out of date`);
    }
    const err = new MemcacheError('MEMCACHED_ERR_TIMEOUT', undefined, { server: 'h:1' });
    assert.equal(err.message, 'operation timed out (h:1)');
    assert.equal(err.server, 'h:1');
    assert.ok(new MemcacheError('MEMCACHED_ERR_SERVER_DEAD').failoverSafe);
    assert.ok(!new MemcacheError('MEMCACHED_ERR_TIMEOUT').failoverSafe);
  });
});

describe('client options', () => {
  it('parses server specs as the other clients write them', () => {
    assert.deepEqual(parseServer('cache-a'), { host: 'cache-a', port: 11211, weight: 1 });
    assert.deepEqual(parseServer('10.0.0.1:11212'), { host: '10.0.0.1', port: 11212, weight: 1 });
    assert.deepEqual(parseServer('10.0.0.1:11212:3'), { host: '10.0.0.1', port: 11212, weight: 3 });
    assert.deepEqual(parseServer('[::1]:11213'), { host: '::1', port: 11213, weight: 1 });
    assert.deepEqual(parseServer({ host: 'h', weight: 2 }), { host: 'h', port: 11211, weight: 2 });
    for (const bad of ['', 'h:0', 'h:99999', 'a b:1', { host: '' }]) {
      assert.throws(
        () => parseServer(bad),
        (err: unknown) => (err as MemcacheError).code === 'MEMCACHED_ERR_INVALID_OPTION',
      );
    }
  });

  it('refuses invalid options up front', () => {
    const invalidOption = (err: unknown) => (err as MemcacheError).code === 'MEMCACHED_ERR_INVALID_OPTION';
    assert.throws(() => new MemcacheClient({ servers: 'h' as unknown as string[] }), invalidOption);
    assert.throws(() => new MemcacheClient({ servers: ['h'], timeout: -1 }), invalidOption);
    assert.throws(() => new MemcacheClient({ servers: ['h'], serializer: 'xml' as 'json' }), invalidOption);
    assert.throws(() => new MemcacheClient({ servers: ['h'], compression: { level: 11 } }), invalidOption);
    assert.throws(() => new MemcacheClient({ servers: ['h'], protocol: 'udp' as 'text' }), invalidOption);
    assert.throws(() => new MemcacheClient({ servers: ['h'], distribution: 'random' as 'ketama' }), invalidOption);
    assert.throws(
      () => new MemcacheClient({ servers: ['h'], prefix: 'has space' }),
      (err: unknown) => {
        return (err as MemcacheError).code === 'MEMCACHED_ERR_BAD_KEY';
      },
    );
    const c = new MemcacheClient({ servers: ['a:1', 'b:2:2'], distribution: 'crc32' });
    assert.deepEqual(c.servers, ['a:1', 'b:2']);
    assert.ok(c.servers.includes(c.serverFor('some-key')!));
    c.destroy();
  });
});
