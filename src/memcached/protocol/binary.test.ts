import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Connection } from '../server/connection.ts';
import { createStoreShared, ItemStore } from '../store/item-store.ts';
import { THREAD_STAT_COUNT, TS } from '../store/thread-stats.ts';
import {
  consumeBinary,
  decodeResponse,
  encodeRequest,
  HEADER_LENGTH,
  Opcode,
  parseRequestHeader,
  type Response,
  STATUS_TEXT,
  Status,
  writeResponseHeader,
} from './binary.ts';
import { ReplyBuffer } from './reply-buffer.ts';

/** What the fake connection records besides the replies. */
interface FakeConnection {
  conn: Connection;
  closing(): boolean;
  destroyed(): boolean;
  stats: Float64Array;
}

/** A connection without a socket: a real store, a fake host, flags for close/destroy. */
function fakeConnection(options: { sasl?: boolean; itemSizeMax?: number } = {}): FakeConnection {
  const stats = new Float64Array(THREAD_STAT_COUNT);
  const itemSizeMax = options.itemSizeMax ?? 1024 * 1024;
  const store = new ItemStore(
    createStoreShared({
      maxBytes: 8 * 1024 * 1024,
      itemSizeMax,
      chunkSize: 48,
      growthFactor: 1.25,
      pageSize: 1024 * 1024,
      slabChunkMax: 512 * 1024,
      evictions: true,
      useCas: true,
      threads: 1,
    }),
    stats,
  );
  let closing = false;
  let destroyed = false;
  const fake = {
    store,
    stats,
    reply: new ReplyBuffer(),
    swallow: 0,
    authenticated: !options.sasl,
    host: {
      settings: { sasl: options.sasl === true, flushEnabled: true },
      version: '1.6.18',
      statsGroup: (group: string) => (group === '' ? [['pid', '1']] : group === 'items' ? [] : undefined),
      resetStats: () => {},
      checkPassword: (user: string, password: string) => user === 'user' && password === 'pass',
    },
    closeAfterWrite: () => {
      closing = true;
    },
    destroy: () => {
      destroyed = true;
    },
  };
  return { conn: fake as unknown as Connection, closing: () => closing, destroyed: () => destroyed, stats };
}

/**
 * Feeds `chunks` the way `Connection` does (swallow first, then one request at a time) and checks the framing
 * contract on every call: 0 only without a full header, a negative size only when that many bytes are not there.
 */
function drive(fake: FakeConnection, chunks: readonly Buffer[]): Buffer {
  const { conn } = fake;
  let pending = Buffer.alloc(0);
  const out: Buffer[] = [];
  for (const chunk of chunks) {
    const buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let pos = 0;
    while (pos < buf.length && !fake.closing() && !fake.destroyed()) {
      if (conn.swallow > 0) {
        const n = Math.min(conn.swallow, buf.length - pos);
        conn.swallow -= n;
        pos += n;
        continue;
      }
      const r = consumeBinary(conn, buf, pos, buf.length);
      if (r > 0) {
        assert.ok(r <= buf.length - pos, 'consumed more than was there');
        pos += r;
        continue;
      }
      if (r === 0) assert.ok(buf.length - pos < HEADER_LENGTH, 'returned 0 with a whole header');
      else assert.ok(-r > buf.length - pos, `returned ${r} with ${buf.length - pos} bytes available`);
      break;
    }
    pending = Buffer.from(buf.subarray(pos));
    out.push(Buffer.from(conn.reply.take()));
  }
  return Buffer.concat(out);
}

/** Splits `data` at `n - 1` random points (deterministic PRNG). */
function randomSplits(data: Buffer, seed: number): Buffer[] {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
  const cuts = new Set<number>();
  const n = 1 + Math.floor(next() * 12);
  for (let i = 0; i < n; i++) cuts.add(1 + Math.floor(next() * (data.length - 1)));
  const sorted = [...cuts].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let at = 0;
  for (const c of sorted) {
    pieces.push(data.subarray(at, c));
    at = c;
  }
  pieces.push(data.subarray(at));
  return pieces;
}

function bytewise(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i++) out.push(data.subarray(i, i + 1));
  return out;
}

function decodeAll(buf: Buffer): Response[] {
  const out: Response[] = [];
  let pos = 0;
  for (;;) {
    const r = decodeResponse(buf, pos);
    if (r === undefined) break;
    out.push(r);
    pos += HEADER_LENGTH + buf.readUInt32BE(pos + 8);
  }
  assert.equal(pos, buf.length, 'trailing bytes after the last response');
  return out;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function setExtras(flags: number, exptime: number): Buffer {
  return Buffer.concat([u32(flags), u32(exptime)]);
}

function incrExtras(delta: bigint, initial: bigint, exptime: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(delta, 0);
  b.writeBigUInt64BE(initial, 8);
  b.writeUInt32BE(exptime, 16);
  return b;
}

function text(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

describe('binary header codec', () => {
  it('parses every request header field', () => {
    const req = encodeRequest({
      opcode: Opcode.SET,
      key: 'key',
      extras: setExtras(7, 9),
      value: 'value',
      opaque: 0xdeadbeef,
      cas: 0x0001_0000_0000_0002n,
      vbucket: 0x1234,
    });
    const h = parseRequestHeader(req, 0);
    assert.deepEqual(h, {
      magic: 0x80,
      opcode: 0x01,
      keyLength: 3,
      extrasLength: 8,
      dataType: 0,
      vbucket: 0x1234,
      bodyLength: 16,
      opaque: 0xdeadbeef,
      cas: 2 ** 48 + 2,
    });
  });

  it('parses at an offset into a reused object', () => {
    const req = Buffer.concat([Buffer.alloc(5), encodeRequest({ opcode: Opcode.GETK, key: 'abc', opaque: 1 })]);
    const into = parseRequestHeader(Buffer.alloc(24), 0);
    const h = parseRequestHeader(req, 5, into);
    assert.equal(h, into);
    assert.equal(h.opcode, Opcode.GETK);
    assert.equal(h.keyLength, 3);
    assert.equal(h.bodyLength, 3);
  });

  it('writes a response header byte for byte', () => {
    const out = Buffer.alloc(30, 0xee);
    const end = writeResponseHeader(
      out,
      2,
      Opcode.GETK,
      Status.KEY_ENOENT,
      0x0102,
      4,
      0x01020304,
      0xfffffffe,
      2 ** 40 + 5,
    );
    assert.equal(end, 26);
    assert.equal(
      out.toString('hex'),
      'eeee' + '810c0102' + '04000001' + '01020304' + 'fffffffe' + '0000010000000005' + 'eeeeeeee',
    );
  });

  it('round-trips through decodeResponse and refuses partial responses', () => {
    const out = Buffer.alloc(24 + 4 + 3 + 2);
    const p = writeResponseHeader(out, 0, Opcode.GETK, 0, 3, 4, 9, 42, 77);
    out.writeUInt32BE(5, p);
    out.write('keyva', p + 4, 'latin1');
    const r = decodeResponse(out);
    assert.ok(r);
    assert.equal(r.opcode, Opcode.GETK);
    assert.equal(r.opaque, 42);
    assert.equal(r.cas, 77n);
    assert.equal(r.extras.readUInt32BE(0), 5);
    assert.equal(r.key.toString(), 'key');
    assert.equal(r.value.toString(), 'va');
    assert.equal(decodeResponse(out.subarray(0, 23)), undefined);
    assert.equal(decodeResponse(out.subarray(0, 32)), undefined);
  });

  it('has memcached wire values in its tables', () => {
    assert.equal(Opcode.GATKQ, 0x24);
    assert.equal(Opcode.SASL_STEP, 0x22);
    assert.equal(Opcode.TOUCH, 0x1c);
    assert.equal(Status.UNKNOWN_COMMAND, 0x81);
    assert.equal(STATUS_TEXT[Status.KEY_EEXISTS], 'Data exists for key.');
    assert.equal(STATUS_TEXT[Status.DELTA_BADVAL], 'Non-numeric server-side value for incr or decr');
  });
});

describe('consumeBinary framing', () => {
  it('waits for a header, then for extras and key, then for a value', () => {
    const { conn } = fakeConnection();
    const get = encodeRequest({ opcode: Opcode.GET, key: 'abc' });
    assert.equal(consumeBinary(conn, get, 0, 23), 0);
    assert.equal(consumeBinary(conn, get, 0, 25), -27);
    assert.equal(consumeBinary(conn, get, 0, 27), 27);
    const set = encodeRequest({ opcode: Opcode.SET, key: 'abc', extras: setExtras(0, 0), value: 'hello' });
    assert.equal(consumeBinary(conn, set, 0, 30), -set.length);
    assert.equal(consumeBinary(conn, set, 0, set.length), set.length);
  });

  it('answers a too large value at once and swallows it', () => {
    const fake = fakeConnection({ itemSizeMax: 1024 * 1024 });
    const { conn } = fake;
    const head = encodeRequest({ opcode: Opcode.SET, key: 'big', extras: setExtras(0, 0) });
    head.writeUInt32BE(11 + 2 * 1024 * 1024, 8);
    assert.equal(consumeBinary(conn, head, 0, head.length), head.length);
    assert.equal(conn.swallow, 2 * 1024 * 1024);
    const [r] = decodeAll(Buffer.from(conn.reply.take()));
    assert.equal(r?.status, Status.E2BIG);
    assert.equal(r?.value.toString(), 'Too large.');
  });

  it('leaves bytes a Stat does not use to be parsed as the next request (memcached quirk)', () => {
    const fake = fakeConnection();
    const stat = encodeRequest({ opcode: Opcode.STAT });
    stat.writeUInt32BE(24, 8);
    const noop = encodeRequest({ opcode: Opcode.NOOP, opaque: 5 });
    const rs = decodeAll(drive(fake, [Buffer.concat([stat, noop])]));
    assert.deepEqual(
      rs.map((r) => [r.opcode, r.key.toString(), r.opaque]),
      [
        [Opcode.STAT, 'pid', 0],
        [Opcode.STAT, '', 0],
        [Opcode.NOOP, '', 5],
      ],
    );
  });

  it('swallows bodylen bytes after the key of an unknown opcode (memcached quirk)', () => {
    const fake = fakeConnection();
    const unknown = encodeRequest({ opcode: 0x50, key: 'abc', opaque: 7 });
    const pad = Buffer.alloc(3);
    const noop = encodeRequest({ opcode: Opcode.NOOP, opaque: 8 });
    const rs = decodeAll(drive(fake, [Buffer.concat([unknown, pad, noop])]));
    assert.deepEqual(
      rs.map((r) => [r.opcode, r.status, r.value.toString(), r.opaque]),
      [
        [0x50, Status.UNKNOWN_COMMAND, 'Unknown command', 7],
        [Opcode.NOOP, 0, '', 8],
      ],
    );
    assert.equal(fake.closing(), false);
  });

  it('closes on a bad magic byte without a reply', () => {
    const fake = fakeConnection();
    drive(fake, [Buffer.alloc(24)]);
    assert.equal(fake.destroyed(), true);
  });
});

/** Pipelines that must give the same bytes whatever the chunking. */
const fixtures: Array<{ name: string; requests: Buffer[]; sasl?: boolean }> = [
  {
    name: 'set, get, getk, quiet gets and noop',
    requests: [
      encodeRequest({ opcode: Opcode.SET, key: 'k1', extras: setExtras(0xdeadbeef, 0), value: 'v1', opaque: 1 }),
      encodeRequest({ opcode: Opcode.GET, key: 'k1', opaque: 2 }),
      encodeRequest({ opcode: Opcode.GETK, key: 'k1', opaque: 3 }),
      encodeRequest({ opcode: Opcode.GETQ, key: 'nope', opaque: 4 }),
      encodeRequest({ opcode: Opcode.GETKQ, key: 'k1', opaque: 5 }),
      encodeRequest({ opcode: Opcode.GETKQ, key: 'nope', opaque: 6 }),
      encodeRequest({ opcode: Opcode.NOOP, opaque: 7 }),
    ],
  },
  {
    name: 'incr/decr create, wrap and miss',
    requests: [
      encodeRequest({ opcode: Opcode.INCREMENT, key: 'n', extras: incrExtras(1n, 10n, 0), opaque: 1 }),
      encodeRequest({ opcode: Opcode.INCREMENT, key: 'n', extras: incrExtras(2n ** 64n - 1n, 0n, 0), opaque: 2 }),
      encodeRequest({ opcode: Opcode.DECREMENT, key: 'n', extras: incrExtras(100n, 0n, 0), opaque: 3 }),
      encodeRequest({ opcode: Opcode.INCREMENTQ, key: 'n', extras: incrExtras(5n, 0n, 0), opaque: 4 }),
      encodeRequest({ opcode: Opcode.DECREMENT, key: 'x', extras: incrExtras(1n, 0n, 0xffffffff), opaque: 5 }),
      encodeRequest({ opcode: Opcode.GET, key: 'n', opaque: 6 }),
    ],
  },
  {
    name: 'errors and a too large value between good requests',
    requests: [
      encodeRequest({ opcode: Opcode.ADD, key: 'a', extras: setExtras(0, 0), value: 'x', opaque: 1 }),
      encodeRequest({ opcode: Opcode.ADDQ, key: 'a', extras: setExtras(0, 0), value: 'x', opaque: 2 }),
      encodeRequest({ opcode: Opcode.REPLACEQ, key: 'b', extras: setExtras(0, 0), value: 'x', opaque: 3 }),
      encodeRequest({ opcode: Opcode.SET, key: 'big', extras: setExtras(0, 0), value: Buffer.alloc(2000), opaque: 4 }),
      encodeRequest({ opcode: Opcode.APPENDQ, key: 'b', value: 'x', opaque: 5 }),
      encodeRequest({ opcode: Opcode.DELETEQ, key: 'b', opaque: 6 }),
      encodeRequest({ opcode: 0x30, opaque: 7 }),
      encodeRequest({ opcode: Opcode.TOUCH, key: 'a', extras: u32(100), opaque: 8 }),
      encodeRequest({ opcode: Opcode.GATKQ, key: 'a', extras: u32(100), opaque: 9 }),
      encodeRequest({ opcode: Opcode.VERSION, opaque: 10 }),
      encodeRequest({ opcode: Opcode.STAT, opaque: 11 }),
      encodeRequest({ opcode: Opcode.QUIT, opaque: 12 }),
    ],
  },
  {
    name: 'SASL auth in two steps',
    sasl: true,
    requests: [
      encodeRequest({ opcode: Opcode.SASL_LIST_MECHS, opaque: 1 }),
      encodeRequest({ opcode: Opcode.SASL_AUTH, key: 'PLAIN', opaque: 2 }),
      encodeRequest({ opcode: Opcode.SASL_STEP, key: 'PLAIN', value: text('\0user\0pass'), opaque: 3 }),
      encodeRequest({ opcode: Opcode.GET, key: 'k', opaque: 4 }),
    ],
  },
];

describe('consumeBinary replies do not depend on chunking', () => {
  for (const fixture of fixtures) {
    it(fixture.name, () => {
      const data = Buffer.concat(fixture.requests);
      // A 1 KiB item limit makes the 2000-byte value "too large" while the body is still being received.
      const make = () => fakeConnection({ sasl: fixture.sasl, itemSizeMax: 1024 });
      const whole = drive(make(), [data]);
      assert.ok(whole.length > 0);
      assert.deepEqual(drive(make(), bytewise(data)), whole, 'byte by byte');
      for (let seed = 1; seed <= 50; seed++) {
        assert.deepEqual(drive(make(), randomSplits(data, seed)), whole, `random splits, seed ${seed}`);
      }
    });
  }

  it('gives the expected replies for the pipelines', () => {
    const statuses = fixtures.map((f) =>
      decodeAll(drive(fakeConnection({ sasl: f.sasl, itemSizeMax: 1024 }), [Buffer.concat(f.requests)])).map((r) => [
        r.opaque,
        r.status,
      ]),
    );
    assert.deepEqual(statuses[0], [
      [1, 0],
      [2, 0],
      [3, 0],
      [5, 0],
      [7, 0],
    ]);
    assert.deepEqual(statuses[1], [
      [1, 0],
      [2, 0],
      [3, 0],
      [5, Status.KEY_ENOENT],
      [6, 0],
    ]);
    assert.deepEqual(statuses[2], [
      [1, 0],
      [2, Status.KEY_EEXISTS],
      [3, Status.KEY_ENOENT],
      [4, Status.E2BIG],
      [5, Status.NOT_STORED],
      [6, Status.KEY_ENOENT],
      [7, Status.UNKNOWN_COMMAND],
      [8, 0],
      [9, 0],
      [10, 0],
      [11, 0],
      [11, 0],
      [12, 0],
    ]);
    assert.deepEqual(statuses[3], [
      [1, 0],
      [2, Status.AUTH_CONTINUE],
      [3, 0],
      [4, Status.KEY_ENOENT],
    ]);
  });

  it('counts like memcached', () => {
    const fake = fakeConnection();
    drive(fake, [Buffer.concat(fixtures[0]!.requests)]);
    assert.equal(fake.stats[TS.cmd_get], 5);
    assert.equal(fake.stats[TS.get_hits], 3);
    assert.equal(fake.stats[TS.get_misses], 2);
    assert.equal(fake.stats[TS.cmd_set], 1);
  });
});
