import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createStoreShared,
  DeltaResult,
  ItemFlag,
  ItemStore,
  parseUint64Value,
  type StoreConfig,
  StoreOp,
  StoreResult,
} from './item-store.ts';
import { computeSlabClassSizes } from './slab-classes.ts';
import { createThreadStatsBuffer, sumThreadStats, THREAD_STAT_COUNT, TS, threadStatsRow } from './thread-stats.ts';

const MB = 1024 * 1024;

function makeStore(overrides: Partial<StoreConfig> = {}): ItemStore {
  const config: StoreConfig = {
    maxBytes: 64 * MB,
    itemSizeMax: MB,
    chunkSize: 48,
    growthFactor: 1.25,
    pageSize: MB,
    slabChunkMax: MB / 2,
    evictions: true,
    useCas: true,
    threads: 1,
    ...overrides,
  };
  const stats = createThreadStatsBuffer(config.threads);
  return new ItemStore(createStoreShared(config), threadStatsRow(stats, 0));
}

const k = (s: string) => Buffer.from(s, 'latin1');

function set(
  store: ItemStore,
  key: string,
  value: string | Buffer,
  op: StoreOp = StoreOp.SET,
  flags = 0,
  exptime = 0,
  cas = 0,
) {
  const kb = k(key);
  const vb = typeof value === 'string' ? Buffer.from(value) : value;
  return store.store(op, kb, 0, kb.length, flags, exptime, vb, 0, vb.length, cas);
}

function get(store: ItemStore, key: string): Buffer | undefined {
  const kb = k(key);
  const ref = store.find(kb, 0, kb.length);
  if (ref === 0) return undefined;
  const out = Buffer.alloc(store.valueLength(ref));
  store.copyValue(ref, out, 0);
  return out;
}

describe('slab classes', () => {
  it('match memcached 1.6 with -n 48 -f 1.25 (39 classes, 96 … 524288)', () => {
    const sizes = computeSlabClassSizes({ chunkSize: 48, growthFactor: 1.25, pageSize: MB, slabChunkMax: MB / 2 });
    assert.deepEqual(
      sizes,
      [
        96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944, 1184, 1480, 1856, 2320, 2904, 3632, 4544, 5680, 7104,
        8880, 11104, 13880, 17352, 21696, 27120, 33904, 42384, 52984, 66232, 82792, 103496, 129376, 161720, 202152,
        252696, 315872, 394840, 524288,
      ],
    );
  });
  it('grow with -f 2', () => {
    const sizes = computeSlabClassSizes({ chunkSize: 48, growthFactor: 2, pageSize: MB, slabChunkMax: MB / 2 });
    assert.deepEqual(sizes.slice(0, 4), [96, 192, 384, 768]);
    assert.equal(sizes.at(-1), MB / 2);
  });
});

describe('ItemStore', () => {
  it('stores, finds and replaces values, with a new cas each time', () => {
    const s = makeStore();
    assert.equal(set(s, 'a', 'hello', StoreOp.SET, 7), StoreResult.STORED);
    const cas1 = s.lastCas;
    assert.equal(get(s, 'a')?.toString(), 'hello');
    assert.equal(set(s, 'a', 'world'), StoreResult.STORED);
    assert.ok(s.lastCas > cas1);
    assert.equal(get(s, 'a')?.toString(), 'world');
    assert.equal(s.globalStats().currItems, 1);
  });

  it('implements add/replace/append/prepend/cas semantics', () => {
    const s = makeStore();
    assert.equal(set(s, 'x', '1', StoreOp.REPLACE), StoreResult.NOT_STORED);
    assert.equal(set(s, 'x', '1', StoreOp.APPEND), StoreResult.NOT_STORED);
    assert.equal(set(s, 'x', 'mid', StoreOp.ADD, 3), StoreResult.STORED);
    assert.equal(set(s, 'x', 'no', StoreOp.ADD), StoreResult.NOT_STORED);
    assert.equal(set(s, 'x', '>', StoreOp.APPEND), StoreResult.STORED);
    assert.equal(set(s, 'x', '<', StoreOp.PREPEND), StoreResult.STORED);
    assert.equal(get(s, 'x')?.toString(), '<mid>');
    const ref = s.find(k('x'), 0, 1);
    assert.equal(s.flags(ref), 3, 'append keeps the flags');
    const cas = s.cas(ref);
    assert.equal(set(s, 'x', 'new', StoreOp.CAS, 0, 0, cas + 100), StoreResult.EXISTS);
    assert.equal(set(s, 'x', 'new', StoreOp.CAS, 0, 0, cas), StoreResult.STORED);
    assert.equal(set(s, 'nokey', 'v', StoreOp.CAS, 0, 0, 5), StoreResult.NOT_FOUND);
  });

  it('keeps chained values larger than the largest chunk intact', () => {
    const s = makeStore();
    const big = Buffer.alloc(900 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    assert.equal(set(s, 'big', big), StoreResult.STORED);
    assert.ok(get(s, 'big')?.equals(big));
    assert.equal(set(s, 'big', 'tail', StoreOp.APPEND), StoreResult.STORED);
    assert.ok(get(s, 'big')?.equals(Buffer.concat([big, Buffer.from('tail')])));
    const ref = s.find(k('big'), 0, 3);
    assert.ok(s.itemFlags(ref) & ItemFlag.CHAINED);
  });

  it('refuses items over -I and counts nothing', () => {
    const s = makeStore({ itemSizeMax: 1024 * 1024 });
    assert.equal(set(s, 'huge', Buffer.alloc(1024 * 1024)), StoreResult.TOO_LARGE);
    assert.equal(s.globalStats().currItems, 0);
  });

  it('expires items lazily and counts get_expired', () => {
    const s = makeStore();
    set(s, 'old', 'v', StoreOp.SET, 0, s.realtime(1));
    assert.ok(get(s, 'old'));
    s.now += 2;
    assert.equal(get(s, 'old'), undefined);
    assert.equal(s.stats[TS.get_expired], 1);
    assert.equal(s.globalStats().currItems, 0);
  });

  it('treats negative and past absolute expiry as already expired', () => {
    const s = makeStore();
    set(s, 'neg', 'v', StoreOp.SET, 0, s.realtime(-1));
    assert.equal(get(s, 'neg'), undefined);
    set(s, 'abs', 'v', StoreOp.SET, 0, s.realtime(Math.floor(Date.now() / 1000) - 10_000_000));
    assert.equal(get(s, 'abs'), undefined);
    set(s, 'future', 'v', StoreOp.SET, 0, s.realtime(Math.floor(Date.now() / 1000) + 3600));
    assert.ok(get(s, 'future'));
  });

  it('flush_all hides items stored before it and keeps later ones', () => {
    const s = makeStore();
    set(s, 'before', 'v');
    s.flushAll(0);
    assert.equal(get(s, 'before'), undefined);
    set(s, 'after', 'v');
    assert.ok(get(s, 'after'));
  });

  it('flush_all with a delay takes effect later', () => {
    const s = makeStore();
    set(s, 'a', 'v');
    s.flushAll(10);
    assert.ok(get(s, 'a'));
    s.now += 11;
    assert.equal(get(s, 'a'), undefined);
  });

  it('evicts the least recently used items when memory is full', () => {
    const s = makeStore({ maxBytes: 4 * MB, itemSizeMax: MB });
    const value = Buffer.alloc(1000, 'v');
    for (let i = 0; i < 10_000; i++) assert.equal(set(s, `key:${i}`, value), StoreResult.STORED);
    const g = s.globalStats();
    assert.ok(g.evictions > 0);
    assert.ok(g.pagesUsed <= 4 + s.largestClass);
    assert.ok(get(s, 'key:9999'));
    assert.equal(get(s, 'key:0'), undefined);
  });

  it('returns NO_MEMORY instead of evicting with -M', () => {
    const s = makeStore({ maxBytes: 2 * MB, itemSizeMax: MB, evictions: false });
    const value = Buffer.alloc(1000, 'v');
    let last: StoreResult = StoreResult.STORED;
    for (let i = 0; i < 5000 && last === StoreResult.STORED; i++) last = set(s, `k${i}`, value);
    assert.equal(last, StoreResult.NO_MEMORY);
    assert.ok(get(s, 'k0'), 'nothing was evicted');
  });

  it('reclaims expired items in the background pass', () => {
    const s = makeStore();
    for (let i = 0; i < 100; i++) set(s, `e${i}`, 'v', StoreOp.SET, 0, s.realtime(1));
    s.now += 5;
    assert.equal(s.reclaim(1000), 100);
    assert.equal(s.globalStats().currItems, 0);
  });

  it('incr/decr: wraps at 2^64, clamps at 0, pads shorter results with spaces', () => {
    const s = makeStore();
    set(s, 'n', '10');
    assert.equal(s.delta(k('n'), 0, 1, false, 1n), DeltaResult.OK);
    assert.equal(s.lastDelta, 9n);
    assert.equal(get(s, 'n')?.toString(), '9 ');
    set(s, 'w', '18446744073709551615');
    assert.equal(s.delta(k('w'), 0, 1, true, 2n), DeltaResult.OK);
    assert.equal(s.lastDelta, 1n);
    assert.equal(s.delta(k('w'), 0, 1, false, 100n), DeltaResult.OK);
    assert.equal(s.lastDelta, 0n);
    set(s, 'g', '99');
    assert.equal(s.delta(k('g'), 0, 1, true, 1n), DeltaResult.OK);
    assert.equal(get(s, 'g')?.toString(), '100');
    set(s, 'bad', '12a');
    assert.equal(s.delta(k('bad'), 0, 3, true, 1n), DeltaResult.NON_NUMERIC);
    assert.equal(s.delta(k('none'), 0, 4, true, 1n), DeltaResult.NOT_FOUND);
  });

  it('deletes with and without cas', () => {
    const s = makeStore();
    set(s, 'd', 'v');
    const cas = s.lastCas;
    assert.equal(s.delete(k('d'), 0, 1, cas + 1), StoreResult.EXISTS);
    assert.equal(s.delete(k('d'), 0, 1, cas), StoreResult.STORED);
    assert.equal(s.delete(k('d'), 0, 1), StoreResult.NOT_FOUND);
  });

  it('doubles the index as items grow and keeps every item reachable', () => {
    const s = makeStore({ maxBytes: 256 * MB });
    assert.equal(s.globalStats().hashPowerLevel, 16);
    for (let i = 0; i < 200_000; i++) set(s, `grow:${i}`, 'v');
    const g = s.globalStats();
    assert.equal(g.hashPowerLevel, 18, '200k items > 1.5 × 2^17 buckets');
    assert.equal(g.hashBytes, 4 * 2 ** 18);
    for (let i = 0; i < 200_000; i += 997) assert.ok(get(s, `grow:${i}`), `grow:${i}`);
    assert.equal(s.delete(k('grow:5'), 0, 6), StoreResult.STORED);
    assert.equal(get(s, 'grow:5'), undefined);
  });

  it('gives cas 0 with -C', () => {
    const s = makeStore({ useCas: false });
    set(s, 'c', 'v');
    assert.equal(s.lastCas, 0);
  });

  it('shares one store between two handles on the same buffers', () => {
    const config: StoreConfig = {
      maxBytes: 8 * MB,
      itemSizeMax: MB,
      chunkSize: 48,
      growthFactor: 1.25,
      pageSize: MB,
      slabChunkMax: MB / 2,
      evictions: true,
      useCas: true,
      threads: 2,
    };
    const shared = createStoreShared(config);
    const stats = createThreadStatsBuffer(2);
    const a = new ItemStore(shared, threadStatsRow(stats, 0));
    const b = new ItemStore(shared, threadStatsRow(stats, 1));
    a.lock();
    set(a, 'shared', 'yes');
    a.unlock();
    b.lock();
    assert.equal(get(b, 'shared')?.toString(), 'yes');
    b.unlock();
    b.stats[TS.cmd_get] = 2;
    a.stats[TS.cmd_get] = 3;
    assert.equal(sumThreadStats(stats)[TS.cmd_get], 5);
    assert.equal(stats.byteLength, 2 * THREAD_STAT_COUNT * 8);
  });
});

describe('parseUint64Value (memcached safe_strtoull)', () => {
  const p = (s: string) => {
    const b = Buffer.from(s, 'latin1');
    return parseUint64Value(b, 0, b.length);
  };
  it('accepts leading and trailing white space', () => {
    assert.equal(p('  12 '), 12n);
    assert.equal(p('7'), 7n);
  });
  it('refuses junk, empty, overflow and negative numbers', () => {
    assert.equal(p('12a'), -1n);
    assert.equal(p(''), -1n);
    assert.equal(p('18446744073709551616'), -1n);
    assert.equal(p('-5'), -1n);
    assert.equal(p('18446744073709551615'), 18446744073709551615n);
  });
});
