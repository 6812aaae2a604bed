/**
 * The binary protocol over real sockets: every opcode and its quiet form, error statuses and bodies, connection
 * closing rules, SASL, chunking, and a differential run against the real memcached 1.6.18.
 *
 * Differential masks (the only bytes allowed to differ): the cas field of every response header (bytes 16–23), and
 * the values of Stat packets of the groups whose numbers legitimately differ (the whole of `stats`, `items`,
 * `slabs`, `settings`: for those only the framing is compared — each packet is a well-formed Stat reply and the
 * sequence ends with the empty packet). The version string is compared as is: ours reports 1.6.18.
 *
 * @module
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  decodeResponse,
  encodeRequest,
  HEADER_LENGTH,
  Opcode,
  type RequestFields,
  type Response,
  Status,
} from '../src/memcached/protocol/binary.ts';
import {
  exchange,
  MEMCACHED_BIN,
  type OurMemcached,
  type RealMemcached,
  requireTool,
  startOurServer,
  startRealMemcached,
} from './helpers/memcached-real.ts';

const req = (fields: RequestFields) => encodeRequest(fields);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const setExtras = (flags: number, exptime: number) => Buffer.concat([u32(flags), u32(exptime)]);
const incrExtras = (delta: bigint, initial: bigint, exptime: number) => {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(delta, 0);
  b.writeBigUInt64BE(initial, 8);
  b.writeUInt32BE(exptime, 16);
  return b;
};
const set = (key: string, value: string | Buffer, opaque = 0, flags = 0, cas = 0n, opcode: number = Opcode.SET) =>
  req({ opcode, key, extras: setExtras(flags, 0), value, opaque, cas });
const get = (key: string, opaque = 0, opcode: number = Opcode.GET) => req({ opcode, key, opaque });
const noop = (opaque = 0) => req({ opcode: Opcode.NOOP, opaque });
/** A request header with every field given, for malformed frames. */
const rawHeader = (opcode: number, keylen: number, extlen: number, bodylen: number, opaque = 0) => {
  const h = Buffer.alloc(HEADER_LENGTH);
  h[0] = 0x80;
  h[1] = opcode;
  h.writeUInt16BE(keylen, 2);
  h[4] = extlen;
  h.writeUInt32BE(bodylen, 8);
  h.writeUInt32BE(opaque, 12);
  return h;
};

/** Decodes every complete response in `buf` (and asserts nothing is left over). */
function decodeAll(buf: Buffer): Response[] {
  const out: Response[] = [];
  let pos = 0;
  for (;;) {
    const r = decodeResponse(buf, pos);
    if (r === undefined) break;
    out.push(r);
    pos += HEADER_LENGTH + buf.readUInt32BE(pos + 8);
  }
  assert.equal(pos, buf.length, `${buf.length - pos} trailing bytes`);
  return out;
}

/** A raw binary connection that waits for a given number of responses (no timing guesses). */
class RawClient {
  readonly socket: Socket;
  #buf = Buffer.alloc(0);
  #closed = false;
  #waiters: Array<() => void> = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(...requests: Buffer[]): void {
    this.socket.write(Buffer.concat(requests));
  }

  #take(): Response | undefined {
    const r = decodeResponse(this.#buf);
    if (r === undefined) return undefined;
    const n = HEADER_LENGTH + this.#buf.readUInt32BE(8);
    // Copy so that the views survive later concatenations.
    const copy = Buffer.from(this.#buf.subarray(0, n));
    this.#buf = this.#buf.subarray(n);
    return decodeResponse(copy);
  }

  /** Resolves with the next `n` responses; rejects on close or after 3 s. */
  async read(n: number): Promise<Response[]> {
    const out: Response[] = [];
    const deadline = Date.now() + 3000;
    while (out.length < n) {
      const r = this.#take();
      if (r !== undefined) {
        out.push(r);
        continue;
      }
      if (this.#closed) throw new Error(`closed after ${out.length} of ${n} responses`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${out.length} of ${n} responses`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return out;
  }

  async one(...requests: Buffer[]): Promise<Response> {
    this.send(...requests);
    const [r] = await this.read(1);
    return r!;
  }

  /** Resolves once the server closed the connection; rejects after 3 s. */
  async waitClosed(): Promise<void> {
    const deadline = Date.now() + 3000;
    while (!this.#closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('the server did not close the connection');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** True when nothing is pending and the connection is open after `ms`. */
  async idle(ms = 50): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return !this.#closed && this.#buf.length === 0;
  }

  close(): void {
    this.socket.destroy();
  }
}

const brief = (r: Response) => ({
  opcode: r.opcode,
  status: r.status,
  opaque: r.opaque,
  extras: r.extras.toString('hex'),
  key: r.key.toString('latin1'),
  value: r.value.toString('latin1'),
});

describe('binary protocol', () => {
  let ours: OurMemcached;
  let c: RawClient;
  before(async () => {
    ours = await startOurServer({ threads: 1 });
    c = await RawClient.open(ours.port);
  });
  after(async () => {
    c.close();
    await ours.close();
  });

  it('set/get/getk carry flags and cas; misses carry "Not found" or the key', async () => {
    const s = await c.one(set('b:k1', 'hello', 1, 0xdeadbeef));
    assert.deepEqual(brief(s), { opcode: Opcode.SET, status: 0, opaque: 1, extras: '', key: '', value: '' });
    assert.ok(s.cas > 0n);
    const g = await c.one(get('b:k1', 2));
    assert.deepEqual(brief(g), { opcode: 0, status: 0, opaque: 2, extras: 'deadbeef', key: '', value: 'hello' });
    assert.equal(g.cas, s.cas);
    const gk = await c.one(get('b:k1', 3, Opcode.GETK));
    assert.deepEqual(brief(gk), {
      opcode: Opcode.GETK,
      status: 0,
      opaque: 3,
      extras: 'deadbeef',
      key: 'b:k1',
      value: 'hello',
    });
    assert.deepEqual(brief(await c.one(get('b:none', 4))), {
      opcode: 0,
      status: Status.KEY_ENOENT,
      opaque: 4,
      extras: '',
      key: '',
      value: 'Not found',
    });
    assert.deepEqual(brief(await c.one(get('b:none', 5, Opcode.GETK))), {
      opcode: Opcode.GETK,
      status: Status.KEY_ENOENT,
      opaque: 5,
      extras: '',
      key: 'b:none',
      value: '',
    });
  });

  it('pipelined GetQ/GetKQ send hits only, and Noop ends the batch', async () => {
    c.send(set('b:q1', 'one'), set('b:q2', 'two', 0, 0, 0n, Opcode.SETQ));
    await c.read(1);
    c.send(
      get('b:q1', 1, Opcode.GETQ),
      get('b:qx', 2, Opcode.GETQ),
      get('b:q2', 3, Opcode.GETKQ),
      get('b:qy', 4, Opcode.GETKQ),
      noop(5),
    );
    const rs = (await c.read(3)).map((r) => [r.opcode, r.opaque, r.key.toString(), r.value.toString()]);
    assert.deepEqual(rs, [
      [Opcode.GETQ, 1, '', 'one'],
      [Opcode.GETKQ, 3, 'b:q2', 'two'],
      [Opcode.NOOP, 5, '', ''],
    ]);
  });

  it('add/replace/append/prepend/cas statuses and error bodies', async () => {
    c.send(
      set('b:s', 'v', 1),
      set('b:s', 'x', 2, 0, 0n, Opcode.ADD),
      set('b:s', 'x', 3, 0, 0n, Opcode.ADDQ),
      set('b:nope', 'x', 4, 0, 0n, Opcode.REPLACE),
      req({ opcode: Opcode.APPEND, key: 'b:nope', value: 'x', opaque: 5 }),
      req({ opcode: Opcode.PREPEND, key: 'b:s', value: '<', opaque: 6 }),
      req({ opcode: Opcode.APPENDQ, key: 'b:s', value: '>', opaque: 7 }),
      set('b:s', 'x', 8, 0, 12345n),
      set('b:nope', 'x', 9, 0, 12345n),
      set('b:s', 'x', 10, 0, 12345n, Opcode.ADD),
      get('b:s', 11),
    );
    const rs = await c.read(10);
    assert.deepEqual(
      rs.map((r) => [r.opaque, r.status, r.value.toString()]),
      [
        [1, 0, ''],
        [2, Status.KEY_EEXISTS, 'Data exists for key.'],
        [3, Status.KEY_EEXISTS, 'Data exists for key.'],
        [4, Status.KEY_ENOENT, 'Not found'],
        [5, Status.NOT_STORED, 'Not stored.'],
        [6, 0, ''],
        [8, Status.KEY_EEXISTS, 'Data exists for key.'],
        [9, Status.KEY_ENOENT, 'Not found'],
        [10, Status.KEY_EEXISTS, 'Data exists for key.'],
        [11, 0, '<v>'],
      ],
    );
    // A set with the current cas succeeds and returns a new one.
    const cas = rs[9]!.cas;
    const ok = await c.one(set('b:s', 'new', 12, 0, cas));
    assert.equal(ok.status, 0);
    assert.notEqual(ok.cas, cas);
  });

  it('delete: cas mismatch, quiet success, miss', async () => {
    const s = await c.one(set('b:d', 'v', 1));
    c.send(
      req({ opcode: Opcode.DELETE, key: 'b:d', cas: s.cas + 1n, opaque: 2 }),
      req({ opcode: Opcode.DELETEQ, key: 'b:d', opaque: 3 }),
      req({ opcode: Opcode.DELETEQ, key: 'b:d', opaque: 4 }),
      req({ opcode: Opcode.DELETE, key: 'b:d', opaque: 5 }),
    );
    assert.deepEqual(
      (await c.read(3)).map((r) => [r.opaque, r.status, r.cas]),
      [
        [2, Status.KEY_EEXISTS, 0n],
        [4, Status.KEY_ENOENT, 0n],
        [5, Status.KEY_ENOENT, 0n],
      ],
    );
    await c.one(set('b:d', 'v'));
    const del = await c.one(req({ opcode: Opcode.DELETE, key: 'b:d', opaque: 6 }));
    assert.deepEqual([del.status, del.cas, del.value.length], [0, 0n, 0]);
  });

  it('incr/decr: create with initial, no-create exptime, wrap at 2^64, floor at 0, non-numeric', async () => {
    const inc = (key: string, delta: bigint, initial: bigint, exptime: number, opaque: number, op: number) =>
      req({ opcode: op, key, extras: incrExtras(delta, initial, exptime), opaque });
    c.send(
      inc('b:n', 1n, 10n, 0, 1, Opcode.INCREMENT),
      inc('b:n', 1n, 10n, 0, 2, Opcode.INCREMENT),
      inc('b:n', 2n ** 64n - 1n, 0n, 0, 3, Opcode.INCREMENT),
      inc('b:n', 100n, 0n, 0, 4, Opcode.DECREMENT),
      inc('b:n', 7n, 0n, 0, 5, Opcode.INCREMENTQ),
      inc('b:m', 1n, 5n, 0xffffffff, 6, Opcode.DECREMENT),
      inc('b:m', 1n, 5n, 0xffffffff, 7, Opcode.DECREMENTQ),
      set('b:t', 'abc', 8, 0, 0n, Opcode.SETQ),
      inc('b:t', 1n, 0n, 0, 9, Opcode.INCREMENT),
      get('b:n', 10),
    );
    const rs = await c.read(7);
    const value = (r: Response) => (r.status === 0 ? r.value.readBigUInt64BE() : r.value.toString());
    assert.deepEqual(
      rs.map((r) => [r.opaque, r.status, value(r)]),
      [
        [1, 0, 10n],
        [2, 0, 11n],
        [3, 0, 10n],
        [4, 0, 0n],
        [6, Status.KEY_ENOENT, 'Not found'],
        [7, Status.KEY_ENOENT, 'Not found'],
        [9, Status.DELTA_BADVAL, 'Non-numeric server-side value for incr or decr'],
      ],
    );
    assert.ok(rs[0]!.cas > 0n);
    const g = await c.read(1);
    assert.equal(g[0]!.value.toString(), '7 ');
    // The request cas must match.
    const miss = await c.one(inc('b:n', 1n, 0n, 0, 11, Opcode.INCREMENT).fill(0xff, 16, 24));
    assert.equal(miss.status, Status.KEY_EEXISTS);
    const stats = ours.server.stats();
    assert.equal(stats.get('incr_hits'), '3');
    assert.equal(stats.get('decr_misses'), '2');
  });

  it('Touch replies with the flags extras only; GAT/GATK/GATQ/GATKQ return values', async () => {
    await c.one(set('b:g', 'val', 1, 0x01020304));
    c.send(
      req({ opcode: Opcode.TOUCH, key: 'b:g', extras: u32(100), opaque: 2 }),
      req({ opcode: Opcode.GAT, key: 'b:g', extras: u32(0xffffffff), opaque: 3 }),
      req({ opcode: Opcode.GATK, key: 'b:g', extras: u32(100), opaque: 4 }),
      req({ opcode: Opcode.GATQ, key: 'b:g', extras: u32(100), opaque: 5 }),
      req({ opcode: Opcode.GATKQ, key: 'b:g', extras: u32(100), opaque: 6 }),
      req({ opcode: Opcode.GATQ, key: 'b:gx', extras: u32(100), opaque: 7 }),
      req({ opcode: Opcode.GATKQ, key: 'b:gx', extras: u32(100), opaque: 8 }),
      req({ opcode: Opcode.TOUCH, key: 'b:gx', extras: u32(100), opaque: 9 }),
      req({ opcode: Opcode.GATK, key: 'b:gx', extras: u32(100), opaque: 10 }),
    );
    assert.deepEqual((await c.read(7)).map(brief), [
      { opcode: Opcode.TOUCH, status: 0, opaque: 2, extras: '01020304', key: '', value: '' },
      { opcode: Opcode.GAT, status: 0, opaque: 3, extras: '01020304', key: '', value: 'val' },
      { opcode: Opcode.GATK, status: 0, opaque: 4, extras: '01020304', key: 'b:g', value: 'val' },
      { opcode: Opcode.GATQ, status: 0, opaque: 5, extras: '01020304', key: '', value: 'val' },
      { opcode: Opcode.GATKQ, status: 0, opaque: 6, extras: '01020304', key: 'b:g', value: 'val' },
      { opcode: Opcode.TOUCH, status: 1, opaque: 9, extras: '', key: '', value: 'Not found' },
      { opcode: Opcode.GATK, status: 1, opaque: 10, extras: '', key: 'b:gx', value: '' },
    ]);
    // 0xffffffff is an absolute time far away, not "expired": the item is still there.
    assert.equal((await c.one(get('b:g', 11))).status, 0);
  });

  it('Version, Noop, Stat groups terminated by the empty packet, unknown group', async () => {
    const v = await c.one(req({ opcode: Opcode.VERSION, opaque: 1 }));
    assert.match(v.value.toString(), /^\d+\.\d+\.\d+/);
    c.send(req({ opcode: Opcode.STAT, opaque: 2 }), noop(3));
    const rs: Response[] = [];
    while (rs.at(-1)?.opcode !== Opcode.NOOP) rs.push(...(await c.read(1)));
    const stats = rs.slice(0, -2);
    assert.ok(stats.length > 20);
    for (const r of stats) {
      assert.deepEqual([r.opcode, r.status, r.opaque, r.cas], [Opcode.STAT, 0, 2, 0n]);
      assert.ok(r.key.length > 0);
    }
    const names = stats.map((r) => r.key.toString());
    assert.ok(names.includes('pid') && names.includes('curr_items') && names.includes('cmd_get'));
    assert.deepEqual(brief(rs.at(-2)!), { opcode: Opcode.STAT, status: 0, opaque: 2, extras: '', key: '', value: '' });
    const bogus = await c.one(req({ opcode: Opcode.STAT, key: 'bogus', opaque: 4 }));
    assert.deepEqual([bogus.status, bogus.value.toString()], [Status.KEY_ENOENT, 'Not found']);
    c.send(req({ opcode: Opcode.STAT, key: 'detail dump', opaque: 5 }));
    assert.deepEqual(
      (await c.read(2)).map((r) => [r.key.toString(), r.value.toString()]),
      [
        ['detailed', 'END\r\n'],
        ['', ''],
      ],
    );
    c.send(req({ opcode: Opcode.STAT, key: 'settings', opaque: 6 }), noop(7));
    const settings: Response[] = [];
    while (settings.at(-1)?.opcode !== Opcode.NOOP) settings.push(...(await c.read(1)));
    assert.ok(settings.some((r) => r.key.toString() === 'item_size_max'));
  });

  it('Stat reset zeroes the counters', async () => {
    await c.one(get('b:reset', 1));
    assert.notEqual(ours.server.stats().get('cmd_get'), '0');
    c.send(req({ opcode: Opcode.STAT, key: 'reset', opaque: 2 }));
    const [r] = await c.read(1);
    assert.deepEqual(brief(r!), { opcode: Opcode.STAT, status: 0, opaque: 2, extras: '', key: '', value: '' });
    assert.equal(ours.server.stats().get('cmd_get'), '0');
  });

  it('Flush and FlushQ (with a delay) empty the cache', async () => {
    await c.one(set('b:f', 'v'));
    const f = await c.one(req({ opcode: Opcode.FLUSH, opaque: 1 }));
    assert.deepEqual([f.status, f.value.length], [0, 0]);
    assert.equal((await c.one(get('b:f'))).status, Status.KEY_ENOENT);
    await c.one(set('b:f', 'v'));
    c.send(req({ opcode: Opcode.FLUSHQ, extras: u32(0) }), get('b:f', 2));
    assert.equal((await c.read(1))[0]!.status, Status.KEY_ENOENT);
    // A delay in the future leaves items alone for now.
    await c.one(set('b:f', 'v'));
    c.send(req({ opcode: Opcode.FLUSHQ, extras: u32(1000) }), get('b:f', 3));
    assert.deepEqual(
      (await c.read(1)).map((r) => [r.opaque, r.status]),
      [[3, 0]],
    );
    await c.one(req({ opcode: Opcode.FLUSH }));
  });

  it('a value over the item size limit answers "Too large." and the connection goes on', async () => {
    const value = Buffer.alloc(2 * 1024 * 1024, 0x61);
    await c.one(set('b:big', 'small'));
    c.send(set('b:big', value, 1), noop(2));
    assert.deepEqual(
      (await c.read(2)).map((r) => [r.opaque, r.status, r.value.toString()]),
      [
        [1, Status.E2BIG, 'Too large.'],
        [2, 0, ''],
      ],
    );
    // memcached drops the old value of a Set that failed this way.
    assert.equal((await c.one(get('b:big', 3))).status, Status.KEY_ENOENT);
    const a = await c.one(req({ opcode: Opcode.APPEND, key: 'b:big', value, opaque: 4 }));
    assert.deepEqual([a.status, a.value.toString()], [Status.E2BIG, 'Too large.']);
    assert.equal((await c.one(noop(5))).opaque, 5);
  });

  it('an unknown opcode answers 0x81 and keeps the connection', async () => {
    const client = await RawClient.open(ours.port);
    client.send(req({ opcode: 0x30, opaque: 1 }), req({ opcode: 0x50, value: 'abc', opaque: 2 }), noop(3));
    assert.deepEqual(
      (await client.read(3)).map((r) => [r.opcode, r.opaque, r.status, r.value.toString()]),
      [
        [0x30, 1, Status.UNKNOWN_COMMAND, 'Unknown command'],
        [0x50, 2, Status.UNKNOWN_COMMAND, 'Unknown command'],
        [Opcode.NOOP, 3, 0, ''],
      ],
    );
    assert.ok(await client.idle());
    client.close();
  });

  for (const [name, bytes, status] of [
    ['Get with extras', req({ opcode: Opcode.GET, key: 'k', extras: u32(0) }), Status.EINVAL],
    ['a key of 251 bytes', get('k'.repeat(251)), Status.EINVAL],
    ['Set without extras', req({ opcode: Opcode.SET, key: 'k', value: 'v' }), Status.EINVAL],
    ['Append with extras', req({ opcode: Opcode.APPEND, key: 'k', extras: u32(0), value: 'v' }), Status.EINVAL],
    ['Increment with 8 bytes of extras', req({ opcode: Opcode.INCREMENT, key: 'k', extras: u32(0) }), Status.EINVAL],
    ['Noop with a body', req({ opcode: Opcode.NOOP, value: 'x' }), Status.EINVAL],
    ['Version with a key', req({ opcode: Opcode.VERSION, key: 'x' }), Status.EINVAL],
    ['Flush with 8 bytes of extras', req({ opcode: Opcode.FLUSH, extras: Buffer.alloc(8) }), Status.EINVAL],
    ['Touch without extras', req({ opcode: Opcode.TOUCH, key: 'k' }), Status.EINVAL],
    ['keylen beyond bodylen', Buffer.concat([rawHeader(Opcode.GET, 3, 0, 2), Buffer.from('abc')]), 0x81],
  ] as const) {
    it(`${name} answers 0x${status.toString(16).padStart(4, '0')} and closes the connection`, async () => {
      const client = await RawClient.open(ours.port);
      client.send(bytes, noop(9));
      const [r] = await client.read(1);
      assert.deepEqual(
        [r!.status, r!.value.toString()],
        [status, status === 0x81 ? 'Unknown command' : 'Invalid arguments'],
      );
      await client.waitClosed();
    });
  }

  it('Quit answers then closes; QuitQ closes silently', async () => {
    const a = await RawClient.open(ours.port);
    a.send(req({ opcode: Opcode.QUIT, opaque: 1 }), noop(2));
    assert.deepEqual(
      (await a.read(1)).map((r) => [r.opcode, r.opaque]),
      [[Opcode.QUIT, 1]],
    );
    await a.waitClosed();
    const b = await RawClient.open(ours.port);
    b.send(req({ opcode: Opcode.QUITQ }), noop(2));
    await b.waitClosed();
  });

  it('a bad magic byte closes the connection', async () => {
    const client = await RawClient.open(ours.port);
    client.send(noop(1), Buffer.alloc(24, 0x81));
    await client.waitClosed();
  });

  it('SASL opcodes answer 0x81 when SASL is off', async () => {
    c.send(
      req({ opcode: Opcode.SASL_LIST_MECHS, opaque: 1 }),
      req({ opcode: Opcode.SASL_AUTH, key: 'PLAIN', value: '\0u\0p', opaque: 2 }),
      noop(3),
    );
    assert.deepEqual(
      (await c.read(3)).map((r) => [r.opaque, r.status]),
      [
        [1, 0x81],
        [2, 0x81],
        [3, 0],
      ],
    );
  });

  describe('chunking', () => {
    const pipeline = () => [
      set('b:c1', 'v'.repeat(300), 1, 7),
      get('b:c1', 2, Opcode.GETKQ),
      get('b:cx', 3, Opcode.GETKQ),
      req({ opcode: Opcode.INCREMENT, key: 'b:c2', extras: incrExtras(1n, 5n, 0), opaque: 4 }),
      req({ opcode: Opcode.APPENDQ, key: 'b:c1', value: 'tail', opaque: 5 }),
      req({ opcode: Opcode.GAT, key: 'b:c1', extras: u32(0), opaque: 6 }),
      req({ opcode: Opcode.DELETEQ, key: 'b:c2', opaque: 7 }),
      req({ opcode: 0x50, value: 'junk', opaque: 8 }),
      req({ opcode: Opcode.VERSION, opaque: 9 }),
      noop(10),
    ];
    /** Runs the pipeline on a fresh cache and returns its responses with the cas fields zeroed. */
    const run = async (pieces: Buffer[]) => {
      const client = await RawClient.open(ours.port);
      await client.one(req({ opcode: Opcode.FLUSH }));
      for (const p of pieces) {
        await new Promise<void>((r) => client.socket.write(p, () => r()));
        await new Promise<void>((r) => setImmediate(r));
      }
      const rs = await client.read(7);
      client.close();
      return rs.map((r) => ({ ...brief(r), cas: r.cas === 0n ? 0 : 1 }));
    };

    it('gives the same replies in one write, byte by byte and at random split points', async () => {
      const data = Buffer.concat(pipeline());
      const whole = await run([data]);
      assert.equal(whole.length, 7);
      const bytes: Buffer[] = [];
      for (let i = 0; i < data.length; i++) bytes.push(data.subarray(i, i + 1));
      assert.deepEqual(await run(bytes), whole, 'byte by byte');
      let seed = 12345;
      const rnd = () => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed / 0x100000000;
      };
      for (let round = 0; round < 10; round++) {
        const pieces: Buffer[] = [];
        let at = 0;
        while (at < data.length) {
          const n = 1 + Math.floor(rnd() * 80);
          pieces.push(data.subarray(at, at + n));
          at += n;
        }
        assert.deepEqual(await run(pieces), whole, `random split round ${round}`);
      }
    });
  });
});

describe('binary SASL', () => {
  let ours: OurMemcached;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mc-sasl-'));
    const file = join(dir, 'pwdb');
    writeFileSync(file, 'alice:wonderland\nbob:builder\n');
    ours = await startOurServer({ threads: 1, sasl: true, saslPasswordFile: file });
  });
  after(async () => {
    await ours.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const auth = (data: string, opaque = 0, mech = 'PLAIN', opcode: number = Opcode.SASL_AUTH) =>
    req({ opcode, key: mech, value: Buffer.from(data, 'latin1'), opaque });

  it('lists PLAIN and answers Version before authentication', async () => {
    const c = await RawClient.open(ours.port);
    c.send(req({ opcode: Opcode.SASL_LIST_MECHS, opaque: 1 }), req({ opcode: Opcode.VERSION, opaque: 2 }));
    const [list, version] = await c.read(2);
    assert.deepEqual([list!.status, list!.value.toString()], [0, 'PLAIN']);
    assert.equal(version!.status, 0);
    assert.ok(await c.idle());
    c.close();
  });

  it('refuses any other command before authentication and closes', async () => {
    const c = await RawClient.open(ours.port);
    c.send(get('k', 1), noop(2));
    const [r] = await c.read(1);
    assert.deepEqual([r!.opcode, r!.status, r!.value.toString()], [0, Status.AUTH_ERROR, 'Auth failure.']);
    await c.waitClosed();
  });

  it('authenticates with PLAIN (memjs flow), keeps the connection on failures', async () => {
    const c = await RawClient.open(ours.port);
    c.send(
      req({ opcode: Opcode.SASL_LIST_MECHS, opaque: 1 }),
      auth('\0alice\0wrong', 2),
      auth('\0alice\0wonderland', 3, 'CRAM-MD5'),
      auth('\0alice\0wonderland\0', 4),
      auth('bob\0alice\0wonderland', 5),
      auth('\0alice\0wonderland', 6, 'M'.repeat(33)),
      auth('\0alice\0wonderland', 7),
      set('k', 'v', 8),
      get('k', 9),
    );
    assert.deepEqual(
      (await c.read(9)).map((r) => [r.opaque, r.status, r.value.toString('latin1')]),
      [
        [1, 0, 'PLAIN'],
        [2, Status.AUTH_ERROR, 'Auth failure.'],
        [3, Status.AUTH_ERROR, 'Auth failure.'],
        [4, Status.AUTH_ERROR, 'Auth failure.'],
        [5, Status.AUTH_ERROR, 'Auth failure.'],
        [6, Status.EINVAL, 'Invalid arguments'],
        [7, 0, 'Authenticated'],
        [8, 0, ''],
        [9, 0, 'v'],
      ],
    );
    const stats = ours.server.stats();
    assert.equal(stats.get('auth_cmds'), '5');
    assert.equal(stats.get('auth_errors'), '4');
    c.close();
  });

  it('authenticates in two steps: Auth with no data continues (0x21), Step carries the credentials', async () => {
    const c = await RawClient.open(ours.port);
    c.send(
      auth('\0bob\0builder', 1, 'PLAIN', Opcode.SASL_STEP),
      auth('', 2),
      auth('alice\0alice\0wonderland', 3, 'PLAIN', Opcode.SASL_STEP),
      get('k2', 4),
    );
    assert.deepEqual(
      (await c.read(4)).map((r) => [r.opcode, r.opaque, r.status, r.value.toString()]),
      [
        [Opcode.SASL_STEP, 1, Status.AUTH_ERROR, 'Auth failure.'],
        [Opcode.SASL_AUTH, 2, Status.AUTH_CONTINUE, ''],
        [Opcode.SASL_STEP, 3, 0, 'Authenticated'],
        [Opcode.GET, 4, Status.KEY_ENOENT, 'Not found'],
      ],
    );
    c.close();
  });

  it('a new SASL exchange drops the authentication (memcached resets it)', async () => {
    const c = await RawClient.open(ours.port);
    c.send(auth('\0bob\0builder', 1), req({ opcode: Opcode.SASL_LIST_MECHS, opaque: 2 }), get('k', 3));
    assert.deepEqual(
      (await c.read(3)).map((r) => [r.opaque, r.status]),
      [
        [1, 0],
        [2, 0],
        [3, Status.AUTH_ERROR],
      ],
    );
    await c.waitClosed();
  });
});

// ---- differential ------------------------------------------------------------------------------------------------

/** One differential case: request bytes (sent in one write) on a fresh connection. */
interface Case {
  name: string;
  send: (k: string) => Buffer[];
  /** Only check the Stat framing (values differ legitimately). */
  statValues?: 'framing';
}

const cases: Case[] = [
  {
    name: 'storage statuses and bodies',
    send: (k) => [
      set(`${k}1`, 'v1', 1, 0xab),
      set(`${k}1`, 'v', 2, 0, 0n, Opcode.ADD),
      set(`${k}x`, 'v', 3, 0, 0n, Opcode.REPLACE),
      req({ opcode: Opcode.APPEND, key: `${k}x`, value: 'v', opaque: 4 }),
      set(`${k}1`, 'v', 5, 0, 12345n),
      set(`${k}x`, 'v', 6, 0, 12345n),
      req({ opcode: Opcode.DELETE, key: `${k}1`, cas: 12345n, opaque: 7 }),
      req({ opcode: Opcode.DELETEQ, key: `${k}x`, opaque: 15 }),
      set(`${k}1`, 'v', 16, 0, 0n, Opcode.ADDQ),
      req({ opcode: Opcode.PREPEND, key: `${k}1`, value: 'pre', opaque: 17 }),
      req({ opcode: Opcode.APPENDQ, key: `${k}1`, value: 'post', opaque: 18 }),
      get(`${k}1`, 19, Opcode.GETKQ),
      set(`${k}1`, 'v', 20, 0, 999n, Opcode.ADD),
      set(`${k}1`, 'v', 21, 0, 999n, Opcode.REPLACEQ),
      req({ opcode: Opcode.DELETE, key: `${k}1`, opaque: 22 }),
      noop(23),
    ],
  },
  {
    name: 'gets, quiet gets, touch and gat',
    send: (k) => [
      set(`${k}g`, 'val', 1, 0x01020304),
      get(`${k}g`, 2),
      get(`${k}g`, 3, Opcode.GETK),
      get(`${k}x`, 4, Opcode.GETK),
      get(`${k}x`, 5, Opcode.GETQ),
      get(`${k}x`, 6, Opcode.GETKQ),
      get(`${k}g`, 7, Opcode.GETQ),
      req({ opcode: Opcode.TOUCH, key: `${k}x`, extras: u32(0), opaque: 8 }),
      req({ opcode: Opcode.GAT, key: `${k}x`, extras: u32(0), opaque: 9 }),
      req({ opcode: Opcode.GATK, key: `${k}x`, extras: u32(0), opaque: 10 }),
      req({ opcode: Opcode.GATQ, key: `${k}x`, extras: u32(0), opaque: 11 }),
      req({ opcode: Opcode.GATKQ, key: `${k}x`, extras: u32(0), opaque: 12 }),
      req({ opcode: Opcode.TOUCH, key: `${k}g`, extras: u32(100), opaque: 13 }),
      req({ opcode: Opcode.GAT, key: `${k}g`, extras: u32(100), opaque: 14 }),
      req({ opcode: Opcode.GATK, key: `${k}g`, extras: u32(100), opaque: 15 }),
      req({ opcode: Opcode.GATKQ, key: `${k}g`, extras: u32(100), opaque: 16 }),
      noop(17),
    ],
  },
  {
    name: 'incr/decr',
    send: (k) => [
      req({ opcode: Opcode.INCREMENT, key: `${k}n`, extras: incrExtras(10n, 5n, 0), opaque: 1 }),
      req({ opcode: Opcode.INCREMENT, key: `${k}n`, extras: incrExtras(1n, 5n, 0), opaque: 2 }),
      req({ opcode: Opcode.INCREMENT, key: `${k}m`, extras: incrExtras(1n, 5n, 0xffffffff), opaque: 3 }),
      req({ opcode: Opcode.DECREMENT, key: `${k}n`, extras: incrExtras(100n, 5n, 0), opaque: 4 }),
      req({ opcode: Opcode.INCREMENT, key: `${k}n`, extras: incrExtras(2n ** 64n - 1n, 0n, 0), opaque: 5 }),
      req({ opcode: Opcode.INCREMENTQ, key: `${k}n`, extras: incrExtras(1n, 0n, 0), opaque: 6 }),
      set(`${k}t`, 'text', 7, 0, 0n, Opcode.SETQ),
      req({ opcode: Opcode.DECREMENT, key: `${k}t`, extras: incrExtras(1n, 0n, 0), opaque: 8 }),
      req({ opcode: Opcode.DECREMENTQ, key: `${k}m`, extras: incrExtras(1n, 0n, 0xffffffff), opaque: 9 }),
      req({ opcode: Opcode.INCREMENT, key: `${k}n`, extras: incrExtras(1n, 0n, 0), cas: 99n, opaque: 10 }),
      get(`${k}n`, 11),
    ],
  },
  {
    name: 'too large value, then the connection goes on',
    send: (k) => [
      set(`${k}big`, Buffer.alloc(2 * 1024 * 1024, 0x62), 1),
      req({ opcode: Opcode.APPEND, key: `${k}big`, value: Buffer.alloc(2 * 1024 * 1024), opaque: 2 }),
      noop(3),
    ],
  },
  {
    name: 'unknown opcodes: with a value (swallowed), with a key (bodylen more swallowed)',
    send: (k) => [
      req({ opcode: 0x30, opaque: 1 }),
      req({ opcode: 0x50, value: 'abc', opaque: 2 }),
      req({ opcode: 0x50, key: `${k}abc`, opaque: 3 }),
      Buffer.alloc(k.length + 3),
      noop(4),
    ],
  },
  {
    name: 'SASL opcodes with SASL off',
    send: () => [
      req({ opcode: Opcode.SASL_LIST_MECHS, opaque: 1 }),
      req({ opcode: Opcode.SASL_AUTH, key: 'PLAIN', value: '\0a\0b', opaque: 2 }),
      req({ opcode: Opcode.SASL_STEP, key: 'PLAIN', value: '\0a\0b', opaque: 3 }),
      noop(4),
    ],
  },
  {
    name: 'a Stat or Touch whose bodylen claims more leaves those bytes to the next request',
    send: (k) => [
      set(`${k}t`, 'v', 1),
      Buffer.concat([rawHeader(Opcode.TOUCH, k.length + 1, 4, k.length + 1 + 4 + 24, 2), u32(0), Buffer.from(`${k}t`)]),
      noop(3),
      Buffer.concat([rawHeader(Opcode.STAT, 5, 0, 5 + 24, 4), Buffer.from('reset')]),
      noop(5),
    ],
  },
  {
    name: 'Stat groups with exact replies',
    send: () => [
      req({ opcode: Opcode.STAT, key: 'detail dump', opaque: 1 }),
      req({ opcode: Opcode.STAT, key: 'detail on', opaque: 2 }),
      req({ opcode: Opcode.STAT, key: 'detail off', opaque: 3 }),
      req({ opcode: Opcode.STAT, key: 'detail x', opaque: 4 }),
      req({ opcode: Opcode.STAT, key: 'bogus', opaque: 5 }),
      req({ opcode: Opcode.STAT, key: 'conns', opaque: 6 }),
      req({ opcode: Opcode.STAT, key: 'resetx', opaque: 7 }),
      noop(8),
    ],
  },
  {
    name: 'Stat groups with differing values (framing only)',
    statValues: 'framing',
    send: () => [
      req({ opcode: Opcode.STAT, opaque: 1 }),
      req({ opcode: Opcode.STAT, key: 'items', opaque: 2 }),
      req({ opcode: Opcode.STAT, key: 'slabs', opaque: 3 }),
      req({ opcode: Opcode.STAT, key: 'settingsX', opaque: 4 }),
      noop(5),
    ],
  },
  { name: 'Version and Noop', send: () => [req({ opcode: Opcode.VERSION, opaque: 1 }), noop(2)] },
  { name: 'Quit', send: () => [req({ opcode: Opcode.QUIT, opaque: 1 }), noop(2)] },
  { name: 'QuitQ', send: () => [req({ opcode: Opcode.QUITQ, opaque: 1 }), noop(2)] },
  { name: 'bad magic after a Noop', send: () => [noop(1), Buffer.alloc(24)] },
  { name: 'Get with extras', send: (k) => [req({ opcode: Opcode.GET, key: k, extras: u32(0), opaque: 1 }), noop(2)] },
  { name: 'key of 251 bytes', send: () => [get('k'.repeat(251), 1), noop(2)] },
  {
    name: 'keylen beyond bodylen',
    send: () => [Buffer.concat([rawHeader(Opcode.GET, 3, 0, 2, 1), Buffer.from('abc')]), noop(2)],
  },
  { name: 'Append with extras', send: (k) => [req({ opcode: Opcode.APPEND, key: k, extras: u32(0), value: 'v' })] },
  { name: 'Set without extras', send: (k) => [req({ opcode: Opcode.SET, key: k, value: 'v', opaque: 1 })] },
  { name: 'Increment without extras', send: (k) => [req({ opcode: Opcode.INCREMENT, key: k, opaque: 1 })] },
  { name: 'Version with a body', send: () => [req({ opcode: Opcode.VERSION, value: 'x', opaque: 1 })] },
  { name: 'Flush with a key', send: () => [req({ opcode: Opcode.FLUSH, key: 'x', opaque: 1 })] },
  { name: 'Stat with extras', send: () => [req({ opcode: Opcode.STAT, extras: u32(0), opaque: 1 })] },
  { name: 'SASL list with a body', send: () => [req({ opcode: Opcode.SASL_LIST_MECHS, value: 'x', opaque: 1 })] },
  { name: 'SASL step without a key', send: () => [req({ opcode: Opcode.SASL_STEP, opaque: 1 })] },
  {
    name: 'Touch with 8 bytes of extras',
    send: (k) => [req({ opcode: Opcode.TOUCH, key: k, extras: Buffer.alloc(8) })],
  },
  {
    name: 'Flush and FlushQ',
    send: (k) => [
      set(`${k}f`, 'v', 1),
      req({ opcode: Opcode.FLUSHQ, opaque: 2 }),
      get(`${k}f`, 3),
      set(`${k}f`, 'v', 4),
      req({ opcode: Opcode.FLUSH, extras: u32(0), opaque: 5 }),
      get(`${k}f`, 6),
    ],
  },
];

/**
 * Replaces each response's cas by "had one or not" and, for framing-only cases, each run of non-empty Stat packets
 * by one marker (which stats exist and their values differ legitimately).
 */
function normalize(reply: Buffer, framingOnly: boolean): string[] {
  const out: string[] = [];
  for (const r of decodeAll(reply)) {
    const cas = r.cas === 0n ? 'cas=0' : 'cas>0';
    if (framingOnly && r.opcode === Opcode.STAT && r.status === 0 && r.key.length > 0) {
      const marker = `STATS opaque=${r.opaque} ${cas}`;
      if (out.at(-1) !== marker) out.push(marker);
      continue;
    }
    out.push(JSON.stringify({ ...brief(r), cas }));
  }
  return out;
}

describe('binary differential against memcached 1.6.18', () => {
  let real: RealMemcached | undefined;
  let ours: OurMemcached | undefined;
  before(async () => {
    try {
      real = await startRealMemcached(['-m', '64', '-I', '1m']);
    } catch {
      real = undefined;
    }
    ours = await startOurServer(['-m', '64', '-I', '1m']);
  });
  after(async () => {
    await real?.stop();
    await ours?.close();
  });

  for (const [i, c] of cases.entries()) {
    it(c.name, async (t) => {
      if (!requireTool(t, MEMCACHED_BIN)) return;
      assert.ok(real && ours, 'both servers started');
      const k = `bd${i}:`;
      const data = Buffer.concat(c.send(k));
      const [theirs, mine] = await Promise.all([
        exchange(real.port, data, { quietMs: 150 }),
        exchange(ours.port, data, { quietMs: 150 }),
      ]);
      const framing = c.statValues === 'framing';
      assert.deepEqual(normalize(mine.reply, framing), normalize(theirs.reply, framing));
      assert.equal(mine.closed, theirs.closed, 'connection closed');
    });
  }
});
