/**
 * Known-answer tests of the client's key distribution. The ketama vectors are libmemcached's own
 * (`test/fixtures/ketama.hpp`, awesomized/libmemcached: 8 weighted servers, MD5 key hash, `memcached_ketama_compat`);
 * the hash vectors are libhashkit's (`test/fixtures/hashes.hpp`); the Cache::Memcached vectors were produced by
 * Cache::Memcached 1.30's own `get_sock` with `sock_to_host` stubbed to mark hosts dead. The 10,000-key comparison
 * with the live clients is `test/memcached-hash-compat.test.ts`.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CRC32_MAX_TRIES,
  crc32,
  crc32Hash,
  createDistribution,
  type DistributionServer,
  KETAMA_POINTS_PER_SERVER,
  ketamaDigestCount,
  ketamaPointName,
  md5,
  md5Hash,
  oneAtATimeHash,
} from './hash-ring.ts';

/** libmemcached's ketama test servers: 10.0.1.1..8 on the default port with these weights. */
const KETAMA_WEIGHTS = [600, 300, 200, 350, 1000, 800, 950, 100];
const ketamaServers: DistributionServer[] = KETAMA_WEIGHTS.map((weight, i) => ({
  host: `10.0.1.${i + 1}`,
  port: 11211,
  weight,
}));

/** [key, MD5 key hash, index of the expected server (10.0.1.n is n - 1)]. */
const KETAMA_CASES: Array<[string, number, number]> = [
  ['SVa_]_V41)', 443691461, 6],
  ['*/Z;?V(.\\8', 1422915503, 0],
  ['30C1*Z*S/_', 1473165754, 1],
  ['ERR:EC58G>', 2148406511, 6],
  ['1I=cTMNTKF', 2882686667, 4],
  [']VG<`I*Z8)', 1103544263, 4],
  ['UUTC`-V159', 3716288206, 4],
  ['@7RU6C6T+Z', 3862737685, 4],
  ['/XLN0@+36;', 1623269830, 0],
  ['4(`X;\\V.^c', 373546328, 0],
  ['726bW=9*a4', 4213440020, 6],
  ['\\`)<B)UE,c', 951096736, 0],
  ['P1[Ma3=K1/', 1989324036, 7],
  ['C89I.-V?cT', 1604239957, 7],
  ['D[HE+cFXDK', 2117036136, 2],
  ['P1L?NAB[)K', 2129972569, 0],
  ['cDT0)Z5P6,', 176485284, 4],
  ['@JW`+[WAO8', 2720940826, 4],
  ['\\39DKW^)N_', 3548879868, 2],
  ['EM75N0+[X1', 1558531507, 3],
  ['`,SS]NBP,b', 1883545960, 0],
  ['XX1a9LT+F?', 653487707, 4],
  ['Zc\\-,F-c6V', 1160802451, 4],
  ['1*RTMC7,03', 1602398012, 7],
  ['*Xc+V0P>32', 536016577, 6],
  ['U))Fb-(`,.', 4128682289, 6],
  ['R-08RNTaRT', 3718170086, 4],
  ['(LHcO203I3', 1007779411, 4],
  ['=256P+;Qc8', 3976201210, 4],
  ['OI5XZ_BBT(', 2155922164, 6],
  ['2TLRL/UL;:', 1086800909, 6],
  ['WHD\\O1`ZRW', 3087923411, 4],
  ['.=54)_c;=T', 2497691631, 0],
  [';G<W-XWZ@b', 2888169733, 4],
  ['(,>E`)FT\\4', 580747448, 1],
  ['HZAU*;P*N]', 2564670474, 6],
  ['NZ@ZE=O84_', 533335275, 6],
  ['6,cEI`F_P>', 3972869246, 5],
  ['c,5AQ/T5)6', 2835605783, 7],
  ['.O,>>BT)RX', 3857978174, 4],
  ['XY\\X::LX50', 1749241099, 5],
  ['+550F^/.01', 3781824099, 5],
  ['<.X9E2S5+9', 3232479481, 6],
  [']\\.UH8_0a1', 2419699252, 3],
  ['8(6=(T0/Z0', 728266737, 6],
  ['8*6a;Sc*X+', 4223431086, 1],
  ['<QW:;3K6;H', 2731158143, 4],
  ['7C@EY@-Y?_', 760770733, 4],
  ['aPb3E1WD4K', 2500489218, 0],
  ['?@12R<=1BH', 1494795329, 7],
  ['QR(a+Q=1FU', 3238535074, 5],
  ['`C9^FV,960', 2628553463, 5],
  ['UNHVP..^8H', 977096483, 3],
  [':Y.2W2[(35', 2777083668, 6],
  ['M/HV^_HZ4O', 3623390946, 6],
  ['ZY16KQ<ICD', 1831153193, 3],
  ['bV2,`a.PY9', 1962228869, 0],
  ['U;9:-+5N]9', 269504649, 0],
  ['1S/:aJ[1(;', 578069729, 1],
  ['Nb-X^]M)I:', 330865696, 5],
  ['2;M;ES>J5/', 2776949824, 6],
  ['[>RZHG97Q9', 71954686, 5],
  ['J3/G[)9<^Z', 2799896459, 6],
  ['N-)88>[O`,', 50404102, 4],
  ['NP:=FR\\OaA', 3837333776, 6],
  ['`@L+W;a,O[', 1512157148, 5],
  ['W2`P:-+1T[', 2945171975, 4],
  ['-6G7K^YDIN', 3168617340, 6],
  ['U>*>9ZI6V5', 668514946, 5],
  ['.I?^6Ic9RK', 938419020, 5],
  ['0OZH^9BKM[', 3682518606, 7],
  ['5?50UGZ:ML', 868610882, 4],
  ['?K2NF@3=IU', 381218851, 0],
  ['YI@G-2X?UB', 3688706179, 4],
  ['7cY</BSaL=', 3976870223, 5],
  ['A(`KF:[RH8', 3292979676, 5],
  [';=ZT\\W^P+H', 1401102653, 3],
  ['b2?WFF56;R', 480494704, 3],
  ['CTR74,J+N.', 137446045, 7],
  ['<b;*R+QDST', 1304985302, 4],
  ['\\R^7=9UCG`', 126218373, 4],
  ['1bQS5]WOXB', 1853470245, 3],
  ['M(@X^b[L:K', 3019630308, 0],
  ['431cBF8,YO', 1679726993, 6],
  ['(bEIQJ:E./', 2922607787, 5],
  ['WS/3H*)7F;', 419488232, 4],
  ['ZJF[Ia6Q)+', 3960568056, 6],
  ['<]*QCK8U,>', 2590140172, 6],
  ['\\[a\\^=V_M0', 689410119, 5],
  ['7;RM+8J9YC', 1530175299, 6],
  ['4*=.SPR[AV', 3928582722, 0],
  ['-2F+^88P4U', 3023552752, 6],
  ['X;-F`(N?9D', 570465234, 6],
  ['R=F_D-K2a]', 1287750228, 6],
  ['X*+2aaC.EG', 3200948713, 4],
  ['[1ZXONX2]a', 4108881567, 3],
  ['FL;\\GWacaV', 458449508, 3],
  ['\\MQ_XNT7L-', 1259349383, 6],
  ['VD6D0]ba_\\', 3842502950, 0],
];

const HASH_INPUT = [
  'apple',
  'beat',
  'carrot',
  'daikon',
  'eggplant',
  'flower',
  'green',
  'hide',
  'ick',
  'jack',
  'kick',
  'lime',
  'mushrooms',
  'nectarine',
  'orange',
  'peach',
  'quant',
  'ripen',
  'strawberry',
  'tang',
  'up',
  'volumne',
  'when',
  'yellow',
  'zip',
  'The quick brown fox jumps over the lazy dog',
];

// biome-ignore format: a table
const ONE_AT_A_TIME_OUTPUT = [
  2297466611, 3902465932, 469785835, 1937308741, 261917617, 3785641677, 1439605128, 1649152283, 1493851484,
  1246520657, 2221159044, 1973511823, 384136800, 214358653, 2379473940, 4269788650, 2864377005, 2638630052,
  427683330, 990491717, 1747111141, 792127364, 2599214128, 2553037199, 2509838425, 1369346549,
];
// biome-ignore format: a table
const MD5_OUTPUT = [
  3195025439, 2556848621, 3724893440, 3332385401, 245758794, 2550894432, 121710495, 3053817768, 1250994555,
  1862072655, 2631955953, 2951528551, 1451250070, 2820856945, 2060845566, 3646985608, 2138080750, 217675895,
  2230934345, 1234361223, 3968582726, 2455685270, 1293568479, 199067604, 2042482093, 2642219166,
];
// biome-ignore format: a table
const CRC_OUTPUT = [
  10542, 22009, 14526, 19510, 19432, 10199, 20634, 9369, 11511, 10362, 7893, 31289, 11313, 9354, 7621, 30628, 15218,
  25967, 2695, 9380, 17300, 28156, 9192, 20484, 16925, 16719,
];

describe('hash functions', () => {
  it('crc32 is the IEEE CRC-32 (check value of "123456789")', () => {
    assert.equal(crc32('123456789'), 0xcbf43926);
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
    assert.equal(crc32(''), 0);
  });

  it('md5 is the MD5 digest', () => {
    assert.equal(md5('').toString('hex'), 'd41d8cd98f00b204e9800998ecf8427e');
    assert.equal(md5(new Uint8Array([0x61])).toString('hex'), '0cc175b9c0f1b6a831c399e269772661');
  });

  it("matches libhashkit's vectors for HASH_DEFAULT, HASH_MD5 and HASH_CRC", () => {
    assert.deepEqual(HASH_INPUT.map(oneAtATimeHash), ONE_AT_A_TIME_OUTPUT);
    assert.deepEqual(HASH_INPUT.map(md5Hash), MD5_OUTPUT);
    assert.deepEqual(HASH_INPUT.map(crc32Hash), CRC_OUTPUT);
  });

  it("matches Cache::Memcached's _hashfunc", () => {
    const perl: Array<[string, number]> = [
      ['foo', 3187],
      ['bar', 30463],
      ['user:42', 25711],
      ['SVa_]_V41)', 14981],
      ['hello world', 3402],
      ['a', 26807],
      ['café', 6317],
    ];
    for (const [key, hv] of perl) assert.equal(crc32Hash(key), hv, key);
  });

  it('one-at-a-time reads bytes >= 0x80 sign-extended, as libhashkit does through a signed char', () => {
    // 0xe9 enters as 0xffffffe9: a different result from the unsigned reading.
    const signed = oneAtATimeHash(new Uint8Array([0xe9]));
    let v = 0xffffffe9;
    v = (v + (v << 10)) >>> 0;
    v = (v ^ (v >>> 6)) >>> 0;
    v = (v + (v << 3)) >>> 0;
    v = (v ^ (v >>> 11)) >>> 0;
    v = (v + (v << 15)) >>> 0;
    assert.equal(signed, v);
    assert.equal(oneAtATimeHash('é'), oneAtATimeHash(new Uint8Array([0xc3, 0xa9])));
  });

  it('hashes a string key as its UTF-8 bytes', () => {
    for (const key of ['plain', 'café', '日本', '']) {
      const bytes = new TextEncoder().encode(key);
      assert.equal(md5Hash(key), md5Hash(bytes));
      assert.equal(crc32Hash(key), crc32Hash(bytes));
      assert.equal(oneAtATimeHash(key), oneAtATimeHash(bytes));
    }
  });
});

describe('ketama (libmemcached weighted, OPT_LIBKETAMA_COMPATIBLE)', () => {
  it('names points host-N on the default port and host:port-N otherwise', () => {
    assert.equal(ketamaPointName('10.0.1.1', 11211, 0), '10.0.1.1-0');
    assert.equal(ketamaPointName('10.0.1.1', 0, 39), '10.0.1.1-39');
    assert.equal(ketamaPointName('cache-a', 11212, 7), 'cache-a:11212-7');
  });

  it('gives 40 digests (160 points) per server of equal weight, computed in C float', () => {
    assert.equal(KETAMA_POINTS_PER_SERVER, 160);
    for (const n of [1, 2, 3, 5, 7, 10]) assert.equal(ketamaDigestCount(1, n, n), 40, `${n} servers`);
    assert.equal(ketamaDigestCount(1, 6, 3), 20);
    assert.equal(ketamaDigestCount(3, 6, 3), 60);
    // 29/60 * 40 * 3 = 58 exactly, but 57.99999 in single precision: libmemcached (and php-memcached) give 57.
    assert.equal(ketamaDigestCount(29, 60, 3), 57);
    assert.equal(ketamaDigestCount(1, 25, 5), 7);
  });

  it("maps libmemcached's 99 ketama test keys to the same servers", () => {
    const ring = createDistribution(ketamaServers, 'ketama');
    for (const [key, hash, server] of KETAMA_CASES) {
      assert.equal(md5Hash(key), hash, `hash of ${key}`);
      assert.equal(ring.serverFor(key), server, key);
      assert.equal(ring.serverFor(Buffer.from(key)), server, key);
    }
  });

  it('wraps a hash past the last point to the first point (VDEAAAAA hashes to 0xfffcd1b5)', () => {
    assert.equal(md5Hash('VDEAAAAA'), 0xfffcd1b5);
    // php-memcached's getServerByKey('VDEAAAAA') over the same servers answers 10.0.1.3.
    assert.equal(createDistribution(ketamaServers, 'ketama').serverFor('VDEAAAAA'), 2);
  });

  it('agrees with php-memcached on a few keys over three unweighted servers', () => {
    const ring = createDistribution(
      [1, 2, 3].map((n) => ({ host: `10.0.1.${n}`, port: 11211 })),
      'ketama',
    );
    assert.deepEqual(
      ['foo', 'bar', 'user:42', 'apple'].map((k) => ring.serverFor(k)),
      [2, 2, 2, 0],
    );
  });

  it('treats weight 0 and a missing weight as 1, and port 0 as 11211', () => {
    const a = createDistribution(
      [
        { host: 'a', port: 11211, weight: 0 },
        { host: 'b', port: 11211 },
      ],
      'ketama',
    );
    const b = createDistribution(
      [
        { host: 'a', port: 0, weight: 1 },
        { host: 'b', port: 11211, weight: 1 },
      ],
      'ketama',
    );
    for (const [key] of KETAMA_CASES) assert.equal(a.serverFor(key), b.serverFor(key));
  });

  it('answers 0 for a single server', () => {
    const ring = createDistribution([{ host: 'only', port: 1 }], 'ketama');
    assert.equal(ring.serverFor('anything'), 0);
    assert.equal(
      ring.serverForWithout('anything', () => false),
      0,
    );
    assert.equal(
      ring.serverForWithout('anything', () => true),
      -1,
    );
  });

  it('rebuilds the continuum without dead servers (auto-eject): with unequal weights, live keys move too', () => {
    const ring = createDistribution(ketamaServers, 'ketama');
    const dead = (i: number) => i === 4; // 10.0.1.5, weight 1000
    // The rebuilt continuum is the one libmemcached builds from the live servers alone (their own weights).
    const live = ketamaServers.filter((_, i) => !dead(i));
    const rebuilt = createDistribution(live, 'ketama');
    const liveIndex = ketamaServers.map((_, i) => i).filter((i) => !dead(i));
    let movedFromLive = 0;
    for (let i = 0; i < 2000; i++) {
      const key = `key:${i}`;
      const chosen = ring.serverForWithout(key, dead);
      assert.notEqual(chosen, 4);
      assert.equal(chosen, liveIndex[rebuilt.serverFor(key)]);
      const primary = ring.serverFor(key);
      if (primary !== 4 && primary !== chosen) movedFromLive++;
    }
    assert.ok(movedFromLive > 0);
  });

  it('with equal weights, ejecting a server moves only its own keys', () => {
    const servers = [1, 2, 3, 4].map((n) => ({ host: `10.0.0.${n}`, port: 11211 }));
    const ring = createDistribution(servers, 'ketama');
    for (let i = 0; i < 2000; i++) {
      const key = `key:${i}`;
      const primary = ring.serverFor(key);
      const chosen = ring.serverForWithout(key, (s) => s === 1);
      if (primary !== 1) assert.equal(chosen, primary);
      else assert.notEqual(chosen, 1);
    }
  });

  it('returns the healthy answer when nothing is dead, and -1 when everything is', () => {
    const ring = createDistribution(ketamaServers, 'ketama');
    for (const [key, , server] of KETAMA_CASES.slice(0, 10)) {
      assert.equal(
        ring.serverForWithout(key, () => false),
        server,
      );
      assert.equal(
        ring.serverForWithout(key, () => true),
        -1,
      );
    }
  });

  it('keeps answering correctly across many different dead sets (continuum cache)', () => {
    const ring = createDistribution(ketamaServers, 'ketama');
    for (let round = 0; round < 3; round++) {
      for (let d = 0; d < 8; d++) {
        for (let e = d + 1; e < 8; e++) {
          const dead = (i: number) => i === d || i === e;
          const chosen = ring.serverForWithout('some-key', dead);
          assert.ok(chosen >= 0 && !dead(chosen));
        }
      }
    }
  });
});

describe('crc32 (Cache::Memcached buckets)', () => {
  const servers: DistributionServer[] = [
    { host: 'a', port: 1, weight: 1 },
    { host: 'b', port: 2, weight: 2 },
    { host: 'c', port: 3, weight: 3 },
    { host: 'd', port: 4, weight: 5 },
  ];
  const keys = ['foo', 'bar', 'user:42', 'SVa_]_V41)', 'hello world', 'a', 'café'];

  it("picks Cache::Memcached's bucket (each server `weight` times)", () => {
    const d = createDistribution(servers, 'crc32');
    assert.deepEqual(
      keys.map((k) => d.serverFor(k)),
      [3, 2, 2, 3, 2, 0, 2],
    );
  });

  it("follows get_sock's rehash when servers are dead", () => {
    const d = createDistribution(servers, 'crc32');
    assert.deepEqual(
      keys.map((k) => d.serverForWithout(k, (i) => i === 3)),
      [2, 2, 2, 2, 2, 0, 2],
    );
    assert.deepEqual(
      keys.map((k) => d.serverForWithout(k, (i) => i === 3 || i === 0)),
      [2, 2, 2, 2, 2, 1, 2],
    );
    assert.deepEqual(
      keys.map((k) => d.serverForWithout(k, () => false)),
      keys.map((k) => d.serverFor(k)),
    );
  });

  it(`gives up after ${CRC32_MAX_TRIES} tries, as get_sock does`, () => {
    const d = createDistribution(
      [
        { host: 'a', port: 1, weight: 1 },
        { host: 'z', port: 9, weight: 30 },
      ],
      'crc32',
    );
    const dead = (i: number) => i === 1;
    // Cache::Memcached 1.30: k0, k4, k5, k10, k12 find no live bucket; k1, k2, k3, k6, k7 reach 'a'.
    for (const n of [0, 4, 5, 10, 12]) assert.equal(d.serverForWithout(`k${n}`, dead), -1, `k${n}`);
    for (const n of [1, 2, 3, 6, 7]) assert.equal(d.serverForWithout(`k${n}`, dead), 0, `k${n}`);
    assert.equal(
      d.serverForWithout('k1', () => true),
      -1,
    );
  });

  it('gives a weight-0 server no bucket and a missing weight one', () => {
    const d = createDistribution(
      [
        { host: 'a', port: 1, weight: 0 },
        { host: 'b', port: 2 },
      ],
      'crc32',
    );
    for (const k of keys) assert.equal(d.serverFor(k), 1);
    assert.throws(() => createDistribution([{ host: 'a', port: 1, weight: 0 }], 'crc32'), RangeError);
  });
});

describe('modulo (libmemcached MODULA)', () => {
  const servers = [1, 2, 3].map((n) => ({ host: `s${n}`, port: 11211, weight: n }));

  it('is hash % servers with the chosen hash, ignoring weights', () => {
    const md5d = createDistribution(servers, 'modulo');
    const crcd = createDistribution(servers, 'modulo', { hash: 'crc32' });
    const oaat = createDistribution(servers, 'modulo', { hash: 'one-at-a-time' });
    HASH_INPUT.forEach((key, i) => {
      assert.equal(md5d.serverFor(key), MD5_OUTPUT[i]! % 3);
      assert.equal(crcd.serverFor(key), CRC_OUTPUT[i]! % 3);
      assert.equal(oaat.serverFor(key), ONE_AT_A_TIME_OUTPUT[i]! % 3);
    });
  });

  it('has no failover: a dead owner gives -1', () => {
    const d = createDistribution(servers, 'modulo');
    for (const key of HASH_INPUT) {
      const owner = d.serverFor(key);
      assert.equal(
        d.serverForWithout(key, (i) => i === owner),
        -1,
      );
      assert.equal(
        d.serverForWithout(key, (i) => i !== owner),
        owner,
      );
    }
  });

  it('answers 0 for a single server', () => {
    assert.equal(createDistribution([{ host: 'x', port: 1 }], 'modulo').serverFor('k'), 0);
  });
});

describe('createDistribution', () => {
  it('reports its mode and size', () => {
    const d = createDistribution(ketamaServers, 'crc32');
    assert.equal(d.mode, 'crc32');
    assert.equal(d.size, 8);
  });

  it('rejects bad arguments', () => {
    assert.throws(() => createDistribution([], 'ketama'), RangeError);
    assert.throws(() => createDistribution([{ host: '', port: 1 }], 'ketama'), TypeError);
    assert.throws(() => createDistribution([{ host: 'a', port: 70000 }], 'ketama'), RangeError);
    assert.throws(() => createDistribution([{ host: 'a', port: 1, weight: -1 }], 'ketama'), RangeError);
    assert.throws(() => createDistribution([{ host: 'a', port: 1, weight: Number.NaN }], 'ketama'), RangeError);
    assert.throws(() => createDistribution([{ host: 'a', port: 1 }], 'nope' as 'ketama'), RangeError);
    assert.throws(() => createDistribution([{ host: 'a', port: 1 }], 'modulo', { hash: 'sha1' as 'md5' }), RangeError);
  });

  it('copies the server list (later edits do not change the distribution)', () => {
    const list = ketamaServers.map((s) => ({ ...s }));
    const d = createDistribution(list, 'ketama');
    list[0]!.host = 'changed';
    list.reverse();
    for (const [key, , server] of KETAMA_CASES) assert.equal(d.serverFor(key), server);
  });
});
