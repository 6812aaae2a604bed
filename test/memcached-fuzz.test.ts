/**
 * Fuzz proof: random bytes and mutated valid commands (text, meta and binary: flipped bytes, truncations, inserted
 * garbage, huge lengths, mixed protocols) over several concurrent connections for a bounded time. Afterwards the
 * server must still answer on a fresh connection, and values stored before the fuzzing must be intact.
 *
 * The PRNG is seeded; the seed is printed. Reproduce a failure with `FUZZ_SEED=<seed>` (each worker draws from its
 * own stream, so the inputs repeat even if timing makes the runs differ in length).
 *
 * @module
 */

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { exchange, type OurMemcached, startOurServer } from './helpers/memcached-real.ts';

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : (Math.random() * 2 ** 32) >>> 0;
const DURATION_MS = Number(process.env.FUZZ_MS ?? 3000);
const WORKERS = 8;

/** mulberry32: a small, fast, seedable PRNG. */
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

class Fuzzer {
  readonly #rand: () => number;

  constructor(seed: number) {
    this.#rand = prng(seed);
  }

  int(n: number): number {
    return Math.floor(this.#rand() * n);
  }

  chance(p: number): boolean {
    return this.#rand() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  key(): string {
    return this.chance(0.05) ? 'k'.repeat(240 + this.int(20)) : `fz${this.int(50)}`;
  }

  number(): string {
    return this.pick(['0', '1', '-1', '10', '100', '4294967295', '4294967296', '18446744073709551615', 'abc', '']);
  }

  value(): string {
    const n = this.pick([0, 1, 5, 100, 3000, 20000]);
    return this.chance(0.3) ? String(this.int(1000)) : this.bytes(n).toString('latin1');
  }

  /** A valid (or nearly valid) text or meta command. */
  textCommand(): string {
    const k = this.key();
    const v = this.value();
    const n = v.length;
    switch (this.int(24)) {
      case 0:
        return `set ${k} ${this.int(100)} ${this.pick([0, 0, 100, -1])} ${n}\r\n${v}\r\n`;
      case 1:
        return `${this.pick(['add', 'replace', 'append', 'prepend'])} ${k} 0 0 ${n}${this.chance(0.3) ? ' noreply' : ''}\r\n${v}\r\n`;
      case 2:
        return `cas ${k} 0 0 ${n} ${this.int(100)}\r\n${v}\r\n`;
      case 3:
        return `get ${Array.from({ length: 1 + this.int(20) }, () => this.key()).join(' ')}\r\n`;
      case 4:
        return `gets ${k} ${this.key()}\r\n`;
      case 5:
        return `${this.pick(['gat', 'gats'])} ${this.number()} ${k}\r\n`;
      case 6:
        return `touch ${k} ${this.number()}\r\n`;
      case 7:
        return `delete ${k}${this.pick(['', ' 0', ' noreply', ' 10'])}\r\n`;
      case 8:
        return `${this.pick(['incr', 'decr'])} ${k} ${this.number()}\r\n`;
      case 9:
        return this.pick(['version\r\n', 'verbosity 1\r\n', 'verbosity 0\r\n', 'quit\r\n', 'mn\r\n', '\r\n']);
      case 10:
        return `stats${this.pick(['', ' items', ' slabs', ' settings', ' conns', ' sizes', ' detail dump', ' foo', ' reset'])}\r\n`;
      case 11:
        return `stats cachedump ${this.int(45)} ${this.int(5)}\r\n`;
      case 12:
        return 'lru_crawler metadump all\r\n';
      case 13:
        return `mg ${k} ${this.pick(['v', 's', 'f', 't', 'c', 'k', 'h', 'l', 'O123', 'q', 'T10', 'N30', 'R5', 'u', 'b'])} ${this.pick(['v', 'k', 'E5', 'x'])}\r\n`;
      case 14:
        return `ms ${k} ${n} ${this.pick(['', 'T10', 'F5', 'I', 'MA', 'MP', 'ME', 'MR', 'MX', 'C1', 'q', 'c', 'k', 'b'])}\r\n${v}\r\n`;
      case 15:
        return `md ${k} ${this.pick(['', 'q', 'I', 'T30', 'C5', 'k', 'O1'])}\r\n`;
      case 16:
        return `ma ${k} ${this.pick(['', 'N0', 'N0 J5', 'D10', 'MD', 'M+', 'MX', 'v', 't', 'c', 'q'])}\r\n`;
      case 17:
        return `me ${k}\r\n`;
      case 18:
        return `${this.pick(['slabs automove 1', 'slabs reassign 1 2', 'lru_crawler crawl all', 'bget a b', 'shutdown'])}\r\n`;
      case 19:
        // Huge or hostile lengths.
        return `${this.pick(['set', 'append', 'cas'])} ${k} 0 0 ${this.pick(['4294967295', '2147483647', '2000000', '99999999999', '-5'])}${this.pick(['', ' 1'])}\r\n${v}\r\n`;
      case 20:
        return `ms ${k} ${this.pick(['4294967295', '2000000', '-1', 'S100', ''])} T0\r\n${v}\r\n`;
      case 21:
        return `get ${'x'.repeat(this.pick([100, 2100, 9000]))}\r\n`;
      case 22:
        return this.bytes(this.pick([10, 2100, 3000]))
          .toString('latin1')
          .replace(/\n/g, ' ');
      default:
        return `GET / HTTP/1.1\r\nHost: x\r\n\r\n`;
    }
  }

  /** A binary request packet (flush opcodes included: the server runs with -F). */
  binaryPacket(): Buffer {
    const key = Buffer.from(this.key(), 'latin1');
    const value = Buffer.from(this.value(), 'latin1');
    const opcode = this.pick([
      0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
      0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1c, 0x1d, 0x1e, 0x20, 0x21, 0x22, 0x23, 0x24, 0x30, 0x3c, 0xff,
    ]);
    let extras = Buffer.alloc(0);
    let k = key;
    let v = Buffer.alloc(0);
    if ([0x01, 0x02, 0x03, 0x11, 0x12, 0x13].includes(opcode)) {
      extras = Buffer.alloc(8);
      extras.writeUInt32BE(this.int(2 ** 32), 0);
      extras.writeUInt32BE(this.pick([0, 0, 100, 0xffffffff]), 4);
      v = value;
    } else if ([0x05, 0x06, 0x15, 0x16].includes(opcode)) {
      extras = Buffer.alloc(20);
      extras.writeBigUInt64BE(BigInt(this.int(1000)), 0);
      extras.writeBigUInt64BE(BigInt(this.int(1000)), 8);
      extras.writeUInt32BE(this.pick([0, 100, 0xffffffff]), 16);
    } else if ([0x1c, 0x1d, 0x1e, 0x23, 0x24, 0x08, 0x18].includes(opcode)) {
      extras = Buffer.alloc(4);
      extras.writeUInt32BE(this.pick([0, 10, 0xffffffff]), 0);
      if (opcode === 0x08 || opcode === 0x18) k = Buffer.alloc(0);
    } else if ([0x0e, 0x0f, 0x19, 0x1a].includes(opcode)) {
      v = value;
    } else if ([0x07, 0x0a, 0x0b, 0x17, 0x20].includes(opcode)) {
      k = Buffer.alloc(0);
    } else if (opcode === 0x10) {
      k = Buffer.from(this.pick(['', 'settings', 'items', 'slabs', 'detail dump', 'foo']), 'latin1');
    } else if (opcode === 0x21 || opcode === 0x22) {
      k = Buffer.from(this.pick(['PLAIN', 'CRAM-MD5', 'X'.repeat(40)]), 'latin1');
      v = Buffer.from('\0user\0pass', 'latin1');
    }
    const header = Buffer.alloc(24);
    header[0] = 0x80;
    header[1] = opcode;
    header.writeUInt16BE(k.length, 2);
    header[4] = extras.length;
    header.writeUInt32BE(extras.length + k.length + v.length, 8);
    header.writeUInt32BE(this.int(2 ** 32), 12);
    if (this.chance(0.2)) header.writeBigUInt64BE(BigInt(this.int(1000)), 16);
    return Buffer.concat([header, extras, k, v]);
  }

  /** Applies one random mutation. */
  mutate(buf: Buffer, binary: boolean): Buffer {
    if (buf.length === 0) return this.bytes(this.int(50));
    switch (this.int(binary ? 7 : 5)) {
      case 0: {
        const out = Buffer.from(buf);
        for (let i = 0, n = 1 + this.int(4); i < n; i++) {
          const at = this.int(out.length);
          out[at] = out[at]! ^ (1 << this.int(8));
        }
        return out;
      }
      case 1:
        return buf.subarray(0, this.int(buf.length));
      case 2: {
        const at = this.int(buf.length);
        return Buffer.concat([buf.subarray(0, at), this.bytes(1 + this.int(40)), buf.subarray(at)]);
      }
      case 3:
        return Buffer.concat([buf, buf]);
      case 4: {
        const out = Buffer.from(buf);
        out[this.int(out.length)] = this.pick([0x00, 0x0a, 0x0d, 0x20, 0x80, 0xff]);
        return out;
      }
      case 5: {
        // Hostile binary lengths: body, key or extras length out of proportion.
        const out = Buffer.from(buf);
        if (out.length >= 24) {
          const field = this.int(3);
          if (field === 0) out.writeUInt32BE(this.pick([0xffffffff, 0x7fffffff, 2 * 1024 * 1024, out.length]), 8);
          else if (field === 1) out.writeUInt16BE(this.pick([0xffff, 251, 0]), 2);
          else out[4] = this.pick([0xff, 1, 20]);
        }
        return out;
      }
      default:
        return Buffer.from(buf.subarray(0, Math.min(buf.length, 24)));
    }
  }

  /** What one connection sends. */
  payload(): Buffer {
    const kind = this.int(5);
    if (kind === 0) {
      const noise = this.bytes(this.int(600));
      if (this.chance(0.3) && noise.length > 0) noise[0] = 0x80;
      return noise;
    }
    const binary = kind === 1 || kind === 2;
    const parts: Buffer[] = [];
    for (let i = 0, n = 1 + this.int(8); i < n; i++) {
      const cmd = binary ? this.binaryPacket() : Buffer.from(this.textCommand(), 'latin1');
      parts.push(kind === 2 || kind === 4 ? this.mutate(cmd, binary) : cmd);
      // Mixed protocols on one connection.
      if (this.chance(0.05)) parts.push(binary ? Buffer.from(this.textCommand(), 'latin1') : this.binaryPacket());
    }
    return Buffer.concat(parts);
  }
}

/** Sends a payload in random pieces; reads (or deliberately does not read) replies; leaves in a random way. */
async function fuzzConnection(port: number, f: Fuzzer, open: Set<Socket>): Promise<number> {
  const payload = f.payload();
  const socket = connect({ host: '127.0.0.1', port });
  open.add(socket);
  socket.on('error', () => {});
  socket.on('close', () => open.delete(socket));
  if (f.chance(0.2)) socket.pause();
  else socket.on('data', () => {});
  await new Promise<void>((resolve) => {
    socket.once('connect', resolve);
    socket.once('close', resolve);
  });
  let at = 0;
  while (at < payload.length && !socket.destroyed) {
    const n = f.chance(0.5) ? payload.length - at : 1 + f.int(Math.min(64, payload.length - at));
    socket.write(payload.subarray(at, at + n));
    at += n;
    if (f.chance(0.3)) await new Promise<void>((r) => setImmediate(r));
  }
  await sleep(f.int(20));
  const exit = f.int(4);
  if (exit === 0) socket.end();
  else if (exit === 1) socket.destroy();
  else if (exit === 2) socket.resetAndDestroy();
  // exit 3: stays open (half-sent command, maybe) until the fuzzing ends.
  return payload.length;
}

const CANARY_TEXT = {
  key: 'canary:text',
  flags: 12345,
  value: Buffer.alloc(1000, 'fuzz\r\nEND\r\n\x00\xff', 'latin1'),
};

function getBinary(key: string): Buffer {
  const header = Buffer.alloc(24);
  header[0] = 0x80;
  header[1] = 0x00;
  header.writeUInt16BE(key.length, 2);
  header.writeUInt32BE(key.length, 8);
  header.writeUInt32BE(0xabcdef01, 12);
  return Buffer.concat([header, Buffer.from(key, 'latin1')]);
}

describe('memcached fuzzing: random and mutated text/meta/binary input', () => {
  let ours: OurMemcached;

  before(async () => {
    // -M and -F: the fuzzer's own stores can neither evict nor flush the values the test checks afterwards.
    ours = await startOurServer({ evictions: false, flushEnabled: false });
    const { value, flags, key } = CANARY_TEXT;
    const set = Buffer.concat([Buffer.from(`set ${key} ${flags} 0 ${value.length}\r\n`), value, Buffer.from('\r\n')]);
    const r = await exchange(ours.port, set, { until: (b) => b.includes('\r\n') });
    assert.equal(r.reply.toString(), 'STORED\r\n');
  });

  after(() => ours.close());

  it(`keeps serving and keeps stored values intact (seed ${SEED}, ${DURATION_MS} ms, ${WORKERS} workers)`, async (t) => {
    t.diagnostic(`fuzz seed ${SEED}: reproduce with FUZZ_SEED=${SEED}`);
    const open = new Set<Socket>();
    const deadline = Date.now() + DURATION_MS;
    let connections = 0;
    let sent = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        const f = new Fuzzer(SEED + w * 0x9e3779b9);
        while (Date.now() < deadline) {
          sent += await fuzzConnection(ours.port, f, open);
          connections++;
        }
      }),
    );
    t.diagnostic(`fuzz: ${connections} connections, ${sent} bytes, ${open.size} connections left open until the end`);
    for (const s of open) s.destroy();

    const version = await exchange(ours.port, 'version\r\n', { until: (b) => b.includes('\r\n'), timeoutMs: 5000 });
    assert.equal(version.reply.toString(), 'VERSION 1.6.18\r\n', `seed ${SEED}: no version answer`);

    const { key, flags, value } = CANARY_TEXT;
    const expected = Buffer.concat([
      Buffer.from(`VALUE ${key} ${flags} ${value.length}\r\n`),
      value,
      Buffer.from('\r\nEND\r\n'),
    ]);
    const got = await exchange(ours.port, `get ${key}\r\n`, {
      until: (b) => b.length >= expected.length,
      timeoutMs: 5000,
    });
    assert.ok(
      got.reply.equals(expected),
      `seed ${SEED}: canary changed: ${got.reply.toString('latin1').slice(0, 200)}`,
    );

    const bin = await exchange(ours.port, getBinary(key), { until: (b) => b.length >= 24 + 4 + value.length });
    assert.equal(bin.reply[0], 0x81, `seed ${SEED}: binary get answered ${bin.reply.subarray(0, 24).toString('hex')}`);
    assert.equal(bin.reply.readUInt16BE(6), 0, 'binary get status');
    assert.equal(bin.reply.readUInt32BE(24), flags);
    assert.ok(bin.reply.subarray(28).equals(value), `seed ${SEED}: canary changed (binary get)`);

    // Every fuzz connection is gone once the clients are: nothing leaks.
    let curr = '';
    for (let i = 0; i < 40; i++) {
      const stats = await exchange(ours.port, 'stats\r\n', { until: (b) => b.includes('END\r\n') });
      curr = /STAT curr_connections (\d+)/.exec(stats.reply.toString())?.[1] ?? '';
      if (curr === '1') break;
      await sleep(50);
    }
    assert.equal(curr, '1', `seed ${SEED}: connections left open on the server`);
  });
});
