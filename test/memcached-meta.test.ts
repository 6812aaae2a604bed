/**
 * The meta text commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`) against our server: every flag, the stale-while-
 * revalidate and vivify flows, quiet pipelines, base64 keys, every error line, and `ms` data arriving in pieces.
 * Expected replies are memcached 1.6.18's (checked against the real daemon; see
 * `memcached-meta-differential.test.ts` for the side-by-side run).
 *
 * @module
 */

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeBase64Key } from '../src/memcached/protocol/meta.ts';
import { MemcachedServer } from '../src/memcached/server/server.ts';

/**
 * The server clock ticks once a second, so a TTL read back right after it was set can be one lower than set: compare
 * ` t<n>` tokens allowing that one second, everything else exactly.
 */
function assertTtl(actual: string, expected: string): void {
  const want = [...expected.matchAll(/ t(\d+)/g)].map((m) => Number(m[1]));
  let i = 0;
  const normalised = actual.replace(/ t(\d+)/g, (whole, n: string) => {
    const w = want[i++];
    return w !== undefined && (Number(n) === w || Number(n) === w - 1) ? ` t${w}` : whole;
  });
  assert.equal(normalised, expected);
}

/** A raw text-protocol connection that reads replies up to a terminator. */
class RawClient {
  readonly #socket: Socket;
  #buf = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake?.();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.setNoDelay(true);
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Writes bytes (a string is latin1). */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => this.#socket.write(data, () => resolve()));
  }

  /** Writes one byte per write, letting the event loop turn between them. */
  async writeBytewise(data: string): Promise<void> {
    const bytes = Buffer.from(data, 'latin1');
    for (let i = 0; i < bytes.length; i++) {
      await this.write(bytes.subarray(i, i + 1));
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** Resolves with everything up to and including the first occurrence of `terminator` (consumed). */
  async readUntil(terminator: string, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.#buf.indexOf(terminator, 0, 'latin1');
      if (at >= 0) {
        const end = at + terminator.length;
        const out = this.#buf.toString('latin1', 0, end);
        this.#buf = this.#buf.subarray(end);
        return out;
      }
      if (this.#closed) throw new Error(`connection closed; got ${JSON.stringify(this.#buf.toString('latin1'))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(this.#buf.toString('latin1'))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** Sends `commands` followed by `mn`, returns the replies before `MN`. */
  async call(commands: string): Promise<string> {
    await this.write(`${commands}mn\r\n`);
    const out = await this.readUntil('MN\r\n');
    return out.slice(0, -4);
  }

  close(): void {
    this.#socket.destroy();
  }
}

let server: MemcachedServer;
let port: number;
let c: RawClient;
let keyNo = 0;
/** A fresh key for each test, so tests do not see each other's items. */
const fresh = (base = 'k') => `${base}${++keyNo}`;
const b64 = (s: string) => Buffer.from(s, 'latin1').toString('base64');
/** The `c<cas>` token of a reply. */
const casIn = (reply: string) => {
  const m = / c(\d+)/.exec(reply);
  assert.ok(m, `no cas in ${JSON.stringify(reply)}`);
  return Number(m[1]);
};

before(async () => {
  server = new MemcachedServer({ port: 0, listen: ['127.0.0.1'], threads: 1 });
  port = (await server.listen()).port;
  c = await RawClient.open(port);
});

after(async () => {
  c.close();
  await server.close(1000);
});

describe('mn and dispatch', () => {
  it('mn answers MN', async () => {
    assert.equal(await c.call(''), '');
    await c.write('mn\r\n');
    assert.equal(await c.readUntil('\r\n'), 'MN\r\n');
    await c.write('mn extra tokens are ignored\r\n');
    assert.equal(await c.readUntil('\r\n'), 'MN\r\n');
  });

  it('unknown two-letter m commands and commands without a key answer ERROR', async () => {
    assert.equal(await c.call('mx foo\r\nmz\r\nmg\r\nms\r\nmd\r\nma\r\n'), 'ERROR\r\n'.repeat(6));
  });

  it('me without a key is a client error', async () => {
    assert.equal(await c.call('me\r\n'), 'CLIENT_ERROR bad command line format\r\n');
  });
});

describe('mg', () => {
  it('misses with EN, hits with HD (no v) or VA <len> and the value', async () => {
    const k = fresh();
    assert.equal(await c.call(`mg ${k}\r\nmg ${k} v\r\n`), 'EN\r\nEN\r\n');
    assert.equal(await c.call(`ms ${k} 5 F7\r\nhello\r\n`), 'HD\r\n');
    assert.equal(await c.call(`mg ${k}\r\n`), 'HD\r\n');
    assert.equal(await c.call(`mg ${k} v\r\n`), 'VA 5\r\nhello\r\n');
  });

  it('returns flags in request order: s f c t k O', async () => {
    const k = fresh();
    const set = await c.call(`ms ${k} 3 F42 T100 c\r\nabc\r\n`);
    const cas = casIn(set);
    assertTtl(await c.call(`mg ${k} s v f c t k Oq1\r\n`), `VA 3 s3 f42 c${cas} t100 k${k} Oq1\r\nabc\r\n`);
    assertTtl(await c.call(`mg ${k} Oq1 k t c f s\r\n`), `HD Oq1 k${k} t100 c${cas} f42 s3\r\n`);
  });

  it('t is -1 without expiry; h tells whether it was fetched before; l is seconds since last access', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\n`);
    assert.equal(await c.call(`mg ${k} h l t\r\n`), 'HD h0 l0 t-1\r\n');
    assert.equal(await c.call(`mg ${k} h\r\n`), 'HD h1\r\n');
  });

  it('u does not mark the item fetched', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\n`);
    assert.equal(await c.call(`mg ${k} u h\r\nmg ${k} h\r\nmg ${k} h\r\n`), 'HD h0\r\nHD h0\r\nHD h1\r\n');
  });

  it('T touches the item (order matters: t before T shows the old TTL)', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1 T100\r\nx\r\n`);
    assertTtl(await c.call(`mg ${k} t T500\r\n`), 'HD t100\r\n');
    assertTtl(await c.call(`mg ${k} T400 t\r\n`), 'HD t400\r\n');
    assert.equal(await c.call(`mg ${k} T0 t\r\n`), 'HD t-1\r\n');
  });

  it('T with a negative TTL expires the item, and t shows the wrapped unsigned difference', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\n`);
    const now = server.store!.now;
    const reply = await c.call(`mg ${k} T-1 t\r\n`);
    const t = Number(/t(\d+)/.exec(reply)![1]);
    // memcached stores a relative expiry of 1 ("long ago") and prints (1 - now) as a uint32.
    assert.ok(Math.abs(t - ((1 - now) >>> 0)) <= 1, reply);
    assert.equal(await c.call(`mg ${k} v\r\n`), 'EN\r\n');
  });

  it('q hides a miss but not a hit; k and O are echoed on a miss', async () => {
    const k = fresh();
    assert.equal(await c.call(`mg ${k} q v\r\nmg ${k} k Oab\r\n`), `EN k${k} Oab\r\n`);
    await c.call(`ms ${k} 1\r\nx\r\n`);
    assert.equal(await c.call(`mg ${k} q v\r\n`), 'VA 1\r\nx\r\n');
  });

  it('P and L are accepted and ignored; E is not a 1.6.18 flag', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\n`);
    assert.equal(await c.call(`mg ${k} P L\r\n`), 'HD\r\n');
    assert.equal(await c.call(`mg ${k} E1\r\n`), 'CLIENT_ERROR invalid flag\r\n');
  });

  it('N vivifies a miss: the first fetcher wins (W), later ones see Z', async () => {
    const k = fresh();
    assertTtl(await c.call(`mg ${k} N30 s t v\r\n`), 'VA 0 s0 t30 W\r\n\r\n');
    assertTtl(await c.call(`mg ${k} N30 s t v\r\n`), 'VA 0 s0 t30 Z\r\n\r\n');
    // The winner fills it: the token is cleared.
    assert.equal(await c.call(`ms ${k} 3 T60\r\nnew\r\n`), 'HD\r\n');
    assertTtl(await c.call(`mg ${k} N30 v t\r\n`), 'VA 3 t60\r\nnew\r\n');
  });

  it('N with a t before it reports the placeholder TTL at creation (-1), after it the N TTL', async () => {
    assert.equal(await c.call(`mg ${fresh()} t N30\r\n`), 'HD t-1 W\r\n');
    assertTtl(await c.call(`mg ${fresh()} N30 t\r\n`), 'HD t30 W\r\n');
  });

  it('R wins a recache token once when the TTL left is below the threshold', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1 T100\r\nx\r\n`);
    assertTtl(await c.call(`mg ${k} R50 t\r\n`), 'HD t100\r\n');
    assertTtl(await c.call(`mg ${k} R200 t\r\n`), 'HD t100 W\r\n');
    assertTtl(await c.call(`mg ${k} R200 t\r\n`), 'HD t100 Z\r\n');
    assert.equal(await c.call(`mg ${k}\r\n`), 'HD Z\r\n');
    const never = fresh();
    await c.call(`ms ${never} 1\r\nx\r\n`);
    assert.equal(await c.call(`mg ${never} R200\r\n`), 'HD\r\n');
  });

  it('an opaque token longer than 32 bytes is an error, even after T took effect', async () => {
    const k = fresh();
    const long = `O${'x'.repeat(32)}`;
    const ok = `O${'x'.repeat(31)}`;
    await c.call(`ms ${k} 1 T100\r\nx\r\n`);
    assert.equal(await c.call(`mg ${k} ${ok}\r\n`), `HD ${ok}\r\n`);
    assert.equal(await c.call(`mg ${k} T200 ${long}\r\n`), 'CLIENT_ERROR opaque token too long\r\n');
    assertTtl(await c.call(`mg ${k} t\r\n`), 'HD t200\r\n');
    assert.equal(await c.call(`mg ${fresh()} q ${long}\r\n`), 'CLIENT_ERROR opaque token too long\r\n');
  });

  it('counts gets, hits, misses and touches as memcached does', async () => {
    const before = server.stats();
    const n = (m: Map<string, string>, name: string) => Number(m.get(name));
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\nmg ${k} v\r\nmg ${k} T10\r\nmg ${fresh()} v\r\nmg ${fresh()} T10\r\n`);
    const now = server.stats();
    assert.equal(n(now, 'cmd_get') - n(before, 'cmd_get'), 3);
    assert.equal(n(now, 'get_hits') - n(before, 'get_hits'), 1);
    assert.equal(n(now, 'get_misses') - n(before, 'get_misses'), 2);
    assert.equal(n(now, 'cmd_touch') - n(before, 'cmd_touch'), 1);
    assert.equal(n(now, 'touch_hits') - n(before, 'touch_hits'), 1);
    assert.equal(n(now, 'cmd_set') - n(before, 'cmd_set'), 1);
  });
});

describe('ms', () => {
  it('stores with T and F; c returns the new cas; k and O are echoed in order', async () => {
    const k = fresh();
    const reply = await c.call(`ms ${k} 2 T100 F9 Ozz k c\r\nhi\r\n`);
    const cas = casIn(reply);
    assert.equal(reply, `HD Ozz k${k} c${cas}\r\n`);
    assertTtl(await c.call(`mg ${k} f t c v\r\n`), `VA 2 f9 t100 c${cas}\r\nhi\r\n`);
  });

  it('a zero-length value', async () => {
    const k = fresh();
    assert.equal(await c.call(`ms ${k} 0\r\n\r\nmg ${k} s v\r\n`), 'HD\r\nVA 0 s0\r\n\r\n');
  });

  it('modes: E add, A append, P prepend, R replace, S set', async () => {
    const k = fresh();
    assert.equal(await c.call(`ms ${k} 1 MR\r\nx\r\n`), 'NS\r\n');
    assert.equal(await c.call(`ms ${k} 1 MA\r\nx\r\n`), 'NS\r\n');
    assert.equal(await c.call(`ms ${k} 1 ME\r\nb\r\n`), 'HD\r\n');
    assert.equal(await c.call(`ms ${k} 1 ME\r\nz\r\n`), 'NS\r\n');
    assert.equal(await c.call(`ms ${k} 1 MA\r\nc\r\nms ${k} 1 MP\r\na\r\n`), 'HD\r\nHD\r\n');
    assert.equal(await c.call(`mg ${k} v\r\n`), 'VA 3\r\nabc\r\n');
    assert.equal(await c.call(`ms ${k} 1 MR\r\nr\r\nmg ${k} v\r\n`), 'HD\r\nVA 1\r\nr\r\n');
    assert.equal(await c.call(`ms ${k} 1 MS\r\ns\r\nmg ${k} v\r\n`), 'HD\r\nVA 1\r\ns\r\n');
  });

  it('an invalid mode is refused and its data swallowed', async () => {
    const k = fresh();
    assert.equal(await c.call(`ms ${k} 2 MX\r\nhi\r\n`), 'CLIENT_ERROR invalid mode for ms M token\r\n');
    assert.equal(await c.call(`ms ${k} 2 Ms\r\nhi\r\n`), 'CLIENT_ERROR invalid mode for ms M token\r\n');
    assert.equal(await c.call(`ms ${k} 2 MEE\r\nhi\r\n`), 'CLIENT_ERROR incorrect length for M token\r\n');
  });

  it('C compares the cas: EX on mismatch, NF when missing; C0 never matches', async () => {
    const k = fresh();
    assert.equal(await c.call(`ms ${k} 1 C5\r\nx\r\n`), 'NF\r\n');
    const cas = casIn(await c.call(`ms ${k} 1 c\r\nx\r\n`));
    assert.equal(await c.call(`ms ${k} 1 C${cas + 1000}\r\ny\r\n`), 'EX\r\n');
    assert.equal(await c.call(`ms ${k} 1 C0\r\ny\r\n`), 'EX\r\n');
    const next = casIn(await c.call(`ms ${k} 1 C${cas} c\r\ny\r\n`));
    assert.notEqual(next, cas);
    // Replace with a cas is a cas store; add ignores the cas; append compares it.
    assert.equal(await c.call(`ms ${k} 1 MR C${cas}\r\nz\r\n`), 'EX\r\n');
    assert.equal(await c.call(`ms ${k} 1 MA C${cas}\r\nz\r\n`), 'EX\r\n');
    assert.equal(await c.call(`ms ${k} 1 MA C${next}\r\nz\r\n`), 'HD\r\n');
    assert.equal(await c.call(`ms ${fresh()} 1 ME C99\r\nz\r\n`), 'HD\r\n');
  });

  it('c is 0 when nothing was stored', async () => {
    const k = fresh();
    assert.equal(await c.call(`ms ${k} 2 MA c k\r\nhi\r\n`), `NS c0 k${k}\r\n`);
  });

  it('q hides HD only', async () => {
    const k = fresh();
    assert.equal(
      await c.call(`ms ${k} 1 q\r\nx\r\nms ${k} 1 q ME\r\nx\r\nms ${k} 1 q C1\r\nx\r\nms ${fresh()} 1 q MR\r\nx\r\n`),
      'NS\r\nEX\r\nNS\r\n',
    );
  });

  it('I with a lower cas stores the value but marks it stale', async () => {
    const k = fresh();
    const cas = casIn(await c.call(`ms ${k} 3 T100 c\r\nold\r\n`));
    assert.equal(await c.call(`md ${k} I\r\n`), 'HD\r\n');
    assert.equal(await c.call(`ms ${k} 3 C${cas} I\r\nnew\r\n`), 'HD\r\n');
    // Still stale, TTL kept; the first fetcher after the invalidation already... none yet, so it wins.
    // The server clock ticks once a second, so the TTL read back may already be one lower.
    assert.match(await c.call(`mg ${k} v t\r\n`), /^VA 3 t(100|99) X W\r\nnew\r\n$/);
    // Without I, a lower cas is a mismatch.
    assert.equal(await c.call(`ms ${k} 3 C${cas}\r\nnew\r\n`), 'EX\r\n');
  });

  it('data arriving one byte at a time', async () => {
    const k = fresh();
    await c.writeBytewise(`ms ${k} 11 T0 k c\r\nhello world\r\nmg ${k} v\r\nmn\r\n`);
    const reply = await c.readUntil('MN\r\n');
    assert.equal(reply, `HD k${k} c${casIn(reply)}\r\nVA 11\r\nhello world\r\nMN\r\n`);
  });

  it('a large value split across many packets', async () => {
    const k = fresh();
    const value = 'v'.repeat(300_000);
    const cmd = Buffer.from(`ms ${k} ${value.length}\r\n${value}\r\nmg ${k} s\r\nmn\r\n`, 'latin1');
    for (let at = 0; at < cmd.length; at += 4096) {
      await c.write(cmd.subarray(at, at + 4096));
      await new Promise<void>((r) => setImmediate(r));
    }
    assert.equal(await c.readUntil('MN\r\n'), `HD\r\nHD s${value.length}\r\nMN\r\n`);
  });

  it('a value too large is refused, its data swallowed, and the old value dropped', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\n`);
    const size = 2 * 1024 * 1024;
    await c.write(`ms ${k} ${size} q\r\n`);
    await c.write(Buffer.alloc(size, 0x61));
    assert.equal(await c.call(`\r\nmg ${k} v\r\n`), 'SERVER_ERROR object too large for cache\r\nEN\r\n');
  });

  it('a data block without its CRLF is a bad data chunk (the bytes after it are read as commands)', async () => {
    const k = fresh();
    assert.equal(
      await c.call(`ms ${k} 2 q\r\nabcd\r\nmg ${k} v\r\n`),
      'CLIENT_ERROR bad data chunk\r\nERROR\r\nEN\r\n',
    );
  });

  it('errors before the data length leave the data to be parsed as a command', async () => {
    const k = fresh();
    assert.equal(
      await c.call(`ms ${k}\r\nms ${k} abc\r\nxx\r\nms ${k} -1\r\nxx\r\n`),
      'CLIENT_ERROR bad command line format\r\n' +
        'CLIENT_ERROR bad command line format\r\nERROR\r\n' +
        'CLIENT_ERROR bad command line format\r\nERROR\r\n',
    );
  });

  it('flag errors swallow the data', async () => {
    const k = fresh();
    assert.equal(
      await c.call(
        `ms ${k} 2 T\r\nhi\r\nms ${k} 2 Tx\r\nhi\r\nms ${k} 2 Fx\r\nhi\r\nms ${k} 2 C\r\nhi\r\n` +
          `ms ${k} 2 Z\r\nhi\r\nms ${k} 2 T1 T2\r\nhi\r\nms ${k} 2 O${'o'.repeat(32)}\r\nhi\r\n` +
          `ms ${k} 2 O${'o'.repeat(32)} MZ\r\nhi\r\n`,
      ),
      'CLIENT_ERROR bad token in command line format\r\n'.repeat(2) +
        'CLIENT_ERROR bad command line format\r\n' +
        'CLIENT_ERROR bad token in command line format\r\n' +
        'CLIENT_ERROR invalid flag\r\n' +
        'CLIENT_ERROR duplicate flag\r\n' +
        'CLIENT_ERROR opaque token too long\r\n' +
        'CLIENT_ERROR invalid mode for ms M token\r\n',
    );
  });

  it('s is accepted (and ignored) by 1.6.18', async () => {
    assert.equal(await c.call(`ms ${fresh()} 2 s\r\nhi\r\n`), 'HD\r\n');
  });
});

describe('md', () => {
  it('HD, NF, q hides HD only; k and O echoed', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\n`);
    assert.equal(await c.call(`md ${k} k O9\r\nmd ${k} k O9\r\n`), `HD k${k} O9\r\nNF k${k} O9\r\n`);
    await c.call(`ms ${k} 1\r\nx\r\n`);
    assert.equal(await c.call(`md ${k} q\r\nmd ${k} q\r\nmg ${k}\r\n`), 'NF\r\nEN\r\n');
  });

  it('C: EX on mismatch (C0 included), HD on match', async () => {
    const k = fresh();
    const cas = casIn(await c.call(`ms ${k} 1 c\r\nx\r\n`));
    assert.equal(await c.call(`md ${k} C${cas + 1} q\r\nmd ${k} C0\r\n`), 'EX\r\nEX\r\n');
    assert.equal(await c.call(`md ${k} C${cas}\r\nmg ${k}\r\n`), 'HD\r\nEN\r\n');
  });

  it('I marks stale with a new cas and optional T instead of deleting', async () => {
    const k = fresh();
    const cas = casIn(await c.call(`ms ${k} 1 c T100\r\nx\r\n`));
    assert.equal(await c.call(`md ${k} I T30 q\r\n`), '');
    const reply = await c.call(`mg ${k} c t v\r\n`);
    assert.notEqual(casIn(reply), cas);
    assert.equal(reply, `VA 1 c${casIn(reply)} t30 X W\r\nx\r\n`);
  });

  it('flag errors are all "invalid or duplicate flag"; a long opaque changes nothing', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\n`);
    assert.equal(
      await c.call(`md ${k} x\r\nmd ${k} q q\r\nmd ${k} Cx\r\nmd ${k} O${'o'.repeat(32)}\r\nmg ${k}\r\n`),
      [...Array(3).fill('CLIENT_ERROR invalid or duplicate flag'), 'CLIENT_ERROR opaque token too long', 'HD', ''].join(
        '\r\n',
      ),
    );
  });
});

describe('ma', () => {
  it('increments by 1 by default; D sets the delta; v returns the value; t and c', async () => {
    const k = fresh();
    await c.call(`ms ${k} 2\r\n10\r\n`);
    assert.equal(await c.call(`ma ${k}\r\nma ${k} v\r\nma ${k} D10 v t\r\n`), 'HD\r\nVA 2\r\n12\r\nVA 2 t-1\r\n22\r\n');
    const reply = await c.call(`ma ${k} c\r\n`);
    assert.equal(reply, `HD c${casIn(reply)}\r\n`);
    assert.equal(await c.call(`mg ${k} c v\r\n`), `VA 2 c${casIn(reply)}\r\n23\r\n`);
  });

  it('modes I + (incr), D - (decr, floored at 0); incr wraps at 2^64', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\n5\r\n`);
    assert.equal(
      await c.call(`ma ${k} MI v\r\nma ${k} M+ v\r\nma ${k} MD v\r\nma ${k} M- D100 v\r\n`),
      'VA 1\r\n6\r\nVA 1\r\n7\r\nVA 1\r\n6\r\nVA 1\r\n0\r\n',
    );
    assert.equal(await c.call(`ma ${k} MX\r\n`), 'CLIENT_ERROR invalid mode for ma M token\r\n');
    await c.call(`ms ${k} 20\r\n18446744073709551615\r\n`);
    assert.equal(await c.call(`ma ${k} v\r\n`), `VA 1\r\n0\r\n`);
  });

  it('a miss is NF (q does not hide it); N creates the item from J (default 0), even under q', async () => {
    const k = fresh();
    assert.equal(await c.call(`ma ${k} q\r\nma ${k} J5 v\r\n`), 'NF\r\nNF\r\n');
    assert.equal(await c.call(`ma ${k} q N0 J5 v t\r\n`), 'VA 1 t-1\r\n5\r\n');
    assert.equal(await c.call(`ma ${k} q\r\nmg ${k} v\r\n`), 'VA 1\r\n6\r\n');
    const z = fresh();
    assertTtl(await c.call(`ma ${z} N100 t v\r\n`), 'VA 1 t100\r\n0\r\n');
  });

  it('T sets the TTL; q hides the HD of an update', async () => {
    const k = fresh();
    await c.call(`ms ${k} 2\r\n10\r\n`);
    assertTtl(await c.call(`ma ${k} T100 q\r\nmg ${k} t v\r\n`), 'VA 2 t100\r\n11\r\n');
  });

  it('T is lost when the number grows into a new item (memcached keeps working on the old one)', async () => {
    const k = fresh();
    await c.call(`ms ${k} 2 T1000\r\n99\r\n`);
    assertTtl(await c.call(`ma ${k} T50 t\r\nmg ${k} t v\r\n`), 'HD t50\r\nVA 3 t1000\r\n100\r\n');
  });

  it('C compares the cas (C0 means no compare)', async () => {
    const k = fresh();
    const cas = casIn(await c.call(`ms ${k} 1 c\r\n1\r\n`));
    assert.equal(await c.call(`ma ${k} C${cas + 9} q O1 k\r\n`), `EX O1 k${k}\r\n`);
    assert.equal(await c.call(`ma ${k} C${cas} v\r\nma ${k} C0 v\r\n`), 'VA 1\r\n2\r\nVA 1\r\n3\r\n');
  });

  it('non-numeric values, empty values and bad flags', async () => {
    const k = fresh();
    const e = fresh();
    await c.call(`ms ${k} 3\r\nabc\r\nms ${e} 0\r\n\r\n`);
    assert.equal(
      await c.call(`ma ${k}\r\nma ${e}\r\nma ${k} Dx\r\nma ${k} Jx\r\nma ${k} D-1\r\nma ${k} MDD\r\nma ${k} x\r\n`),
      'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n'.repeat(2) +
        'CLIENT_ERROR invalid or duplicate flag\r\n'.repeat(5),
    );
  });

  it('a long opaque is reported after the increment happened', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\n1\r\n`);
    assert.equal(
      await c.call(`ma ${k} O${'o'.repeat(32)}\r\nmg ${k} v\r\n`),
      'CLIENT_ERROR opaque token too long\r\nVA 1\r\n2\r\n',
    );
  });

  it('counts incr/decr hits and misses', async () => {
    const before = server.stats();
    const n = (m: Map<string, string>, name: string) => Number(m.get(name));
    const k = fresh();
    await c.call(
      `ms ${k} 1\r\n1\r\nma ${k}\r\nma ${k} MD\r\nma ${fresh()}\r\nma ${fresh()} MD\r\nma ${fresh()} N0\r\n`,
    );
    const now = server.stats();
    for (const name of ['incr_hits', 'decr_hits', 'incr_misses', 'decr_misses']) {
      assert.equal(n(now, name) - n(before, name), 1, name);
    }
  });
});

describe('me', () => {
  it('prints memcached’s debug line, or EN', async () => {
    const k = 'me_item';
    await c.call(`ms ${k} 2 F1 T100\r\nhi\r\n`);
    const reply = await c.call(`me ${k}\r\nme nothing_here\r\n`);
    const cas = /cas=(\d+)/.exec(reply)![1];
    // size = 48 (item) + 7 (key) + 1 + 4 (flags) + 2 + 2 (CRLF) + 8 (cas) = 72 → class 1 (96 bytes).
    assert.match(reply, new RegExp(`^ME ${k} exp=-(100|99) la=0 cas=${cas} fetch=no cls=1 size=72\r\nEN\r\n$`));
    await c.call(`mg ${k}\r\n`);
    assert.match(await c.call(`me ${k}\r\n`), /fetch=yes cls=1 size=72\r\n$/);
    await c.call(`ms ${k} 200 T0\r\n${'z'.repeat(200)}\r\n`);
    assert.match(await c.call(`me ${k}\r\n`), / exp=-1 la=0 cas=\d+ fetch=no cls=6 size=266\r\n$/);
  });

  it('counts cmd_meta', async () => {
    const before = Number(server.stats().get('cmd_meta'));
    await c.call('me a\r\nme b\r\nmg c\r\n');
    assert.equal(Number(server.stats().get('cmd_meta')) - before, 2);
  });
});

describe('base64 keys (b)', () => {
  it('decodes the key, echoes it encoded with b; mg k and me show an ms b item encoded whatever the request', async () => {
    const key = 'bin\u0001key';
    const enc = b64(key);
    assert.equal(await c.call(`ms ${enc} 2 b k\r\nhi\r\n`), `HD k${enc} b\r\n`);
    assert.equal(await c.call(`mg ${enc} b k v\r\n`), `VA 2 k${enc} b\r\nhi\r\n`);
    assert.equal(await c.call(`mg ${key} k s\r\n`), `HD k${enc} b s2\r\n`);
    assert.match(await c.call(`me ${enc} b\r\n`), new RegExp(`^ME ${enc} exp=-1 `));
    assert.equal(await c.call(`md ${enc} b k q\r\nmg ${enc} b k\r\n`), `EN k${enc} b\r\n`);
  });

  it('ma and md echo the request key encoded; a vivified mg item is not binary', async () => {
    const enc = b64('vivified');
    assert.equal(await c.call(`mg ${enc} b N30 k\r\n`), 'HD kvivified W\r\n');
    assert.equal(await c.call(`mg vivified k\r\n`), 'HD kvivified Z\r\n');
    const n = b64('counter!');
    assert.equal(await c.call(`ma ${n} b N0 J7 k v\r\n`), `VA 1 k${n} b\r\n7\r\n`);
    assert.equal(await c.call(`md ${n} b k\r\n`), `HD k${n} b\r\n`);
  });

  it('undecodable keys are errors', async () => {
    assert.equal(
      await c.call('mg Zm9v= b\r\nmg Z=== b\r\nms ==== 2 b\r\nhi\r\nmd Zm9v= b\r\nma Zm9v= b\r\nme Zm9v= b\r\n'),
      'CLIENT_ERROR error decoding key\r\n'.repeat(3) +
        'CLIENT_ERROR invalid or duplicate flag\r\n'.repeat(2) +
        'CLIENT_ERROR bad command line format\r\n',
    );
  });

  it('the decoder is memcached’s: junk bytes skipped, stops after the first padded quad', () => {
    const out = Buffer.alloc(64);
    const dec = (s: string) => {
      const src = Buffer.from(s, 'latin1');
      return out.toString('latin1', 0, decodeBase64Key(src, 0, src.length, out));
    };
    assert.equal(dec('Zm9v'), 'foo');
    assert.equal(dec('Zm9vYg=='), 'foob');
    assert.equal(dec('Zm9v$$'), 'foo');
    assert.equal(dec('Zg==Zm9v'), 'f');
    assert.equal(dec('Zm9'), '');
    assert.equal(dec('Z==='), '');
    assert.equal(dec(''), '');
  });
});

describe('errors common to the meta commands', () => {
  it('a key over 250 bytes', async () => {
    const long = 'k'.repeat(251);
    assert.equal(
      await c.call(`mg ${long} v\r\nms ${long} 2\r\nhi\r\nmd ${long}\r\nma ${long}\r\nme ${long}\r\n`),
      'CLIENT_ERROR bad command line format\r\n'.repeat(2) +
        'ERROR\r\n' +
        'CLIENT_ERROR bad command line format\r\n'.repeat(3),
    );
  });

  it('more than 18 flags', async () => {
    const many = 'a b c d e f g h i j k l m n o p q r';
    assert.equal(
      await c.call(`mg x ${many}\r\nms x 1 ${many}\r\nmd x ${many}\r\nma x ${many}\r\n`),
      ['CLIENT_ERROR options flags are too long', ...Array(3).fill('CLIENT_ERROR options flags too long'), ''].join(
        '\r\n',
      ),
    );
  });

  it('unknown, duplicate and out-of-range flags; bad numbers; the last bad number names the error', async () => {
    const k = fresh();
    assert.equal(
      await c.call(
        `mg ${k} z\r\nmg ${k} v v\r\nmg ${k} \x80\r\nmg ${k} T\r\nmg ${k} N\r\nmg ${k} R1x\r\n` +
          `mg ${k} T Fx\r\nmg ${k} Fx\r\nmg ${k} T1 b\r\nmg ${k} T E\r\nmg ${k} MEE\r\nmg ${k} Jx\r\nmg ${k} D-1\r\n`,
      ),
      [
        'CLIENT_ERROR invalid flag',
        'CLIENT_ERROR duplicate flag',
        'CLIENT_ERROR duplicate flag',
        'CLIENT_ERROR bad token in command line format',
        'CLIENT_ERROR bad token in command line format',
        'CLIENT_ERROR bad token in command line format',
        'CLIENT_ERROR bad token in command line format',
        'CLIENT_ERROR bad command line format',
        'CLIENT_ERROR error decoding key',
        'CLIENT_ERROR invalid flag',
        'CLIENT_ERROR incorrect length for M token',
        'CLIENT_ERROR invalid numeric initial value',
        'CLIENT_ERROR invalid numeric delta value',
        '',
      ].join('\r\n'),
    );
  });
});

describe('stale-while-revalidate', () => {
  it('md I → first mg gets X W, later ones X Z; the winner’s ms with the token cas clears it', async () => {
    const k = fresh();
    await c.call(`ms ${k} 3 T300\r\nold\r\n`);
    assert.equal(await c.call(`md ${k} I\r\n`), 'HD\r\n');
    const first = await c.call(`mg ${k} c v\r\n`);
    const token = casIn(first);
    assert.equal(first, `VA 3 c${token} X W\r\nold\r\n`);
    assert.equal(await c.call(`mg ${k} c v\r\n`), `VA 3 c${token} Z X\r\nold\r\n`);
    assert.equal(await c.call(`ms ${k} 3 C${token} T300\r\nnew\r\n`), 'HD\r\n');
    assertTtl(await c.call(`mg ${k} v t\r\n`), 'VA 3 t300\r\nnew\r\n');
  });

  it('a second md I re-arms the token', async () => {
    const k = fresh();
    await c.call(`ms ${k} 1\r\nx\r\nmd ${k} I\r\nmg ${k}\r\n`);
    assert.equal(
      await c.call(`mg ${k}\r\nmd ${k} I\r\nmg ${k}\r\nmg ${k}\r\n`),
      'HD Z X\r\nHD\r\nHD X W\r\nHD Z X\r\n',
    );
  });
});

describe('quiet pipelines', () => {
  it('only misses, failures and errors are answered before MN', async () => {
    const k = fresh();
    const miss = fresh();
    const reply = await c.call(
      `ms ${k} 1 q\r\n1\r\nmg ${k} q v\r\nmg ${miss} q v\r\nma ${k} q\r\nma ${miss} q\r\n` +
        `md ${miss} q\r\nms ${k} 1 q ME\r\nx\r\nmg ${k} q Z\r\nmd ${k} q\r\nmg ${k} q v\r\n`,
    );
    assert.equal(reply, 'VA 1\r\n1\r\nNF\r\nNF\r\nNS\r\nCLIENT_ERROR invalid flag\r\n');
  });
});

describe('with several serving threads (the store lock is real)', () => {
  let threaded: MemcachedServer;
  let clients: RawClient[] = [];

  before(async () => {
    threaded = new MemcachedServer({ port: 0, listen: ['127.0.0.1'], threads: 2 });
    const { port: p } = await threaded.listen();
    clients = await Promise.all([RawClient.open(p), RawClient.open(p), RawClient.open(p)]);
  });

  after(async () => {
    for (const client of clients) client.close();
    await threaded.close(1000);
  });

  it('every command, refused stores included, takes and releases the lock', async () => {
    const big = 2 * 1024 * 1024;
    await Promise.all(
      clients.map(async (client, i) => {
        const k = `mt${i}`;
        await client.write(`ms ${k} 1 T100\r\nx\r\nms ${k} ${big}\r\n`);
        await client.write(Buffer.alloc(big, 0x61));
        await client.write('\r\n');
        const reply = await client.call(
          `mg ${k} v\r\nms ${k} 1\r\n1\r\nma ${k} v\r\nmd ${k} I\r\nmg ${k} v\r\nme ${k}\r\nmg ${k}n N30\r\nmd ${k}\r\n`,
        );
        assert.match(
          reply,
          /^HD\r\nSERVER_ERROR object too large for cache\r\nEN\r\nHD\r\nVA 1\r\n2\r\nHD\r\nVA 1 X W\r\n2\r\nME mt\d exp=-1 la=0 cas=\d+ fetch=yes cls=1 size=63\r\nHD W\r\nHD\r\n$/,
        );
      }),
    );
  });
});
