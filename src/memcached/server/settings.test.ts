import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultSettings, parseMemcachedArgs, parseSize, SettingsError } from './settings.ts';

describe('memcached flags', () => {
  it('defaults to memcached 1.6 values', () => {
    const s = parseMemcachedArgs([]);
    assert.deepEqual(s, defaultSettings());
    assert.equal(s.port, 11211);
    assert.equal(s.maxBytes, 64 * 1024 * 1024);
    assert.equal(s.itemSizeMax, 1024 * 1024);
    assert.equal(s.threads, 4);
    assert.deepEqual(s.listen, []);
  });

  it('parses the design doc command line', () => {
    const s = parseMemcachedArgs('-p 11311 -U 0 -l 127.0.0.1 -m 128 -c 512 -t 2 -I 2m -f 1.5 -n 32 -v'.split(' '));
    assert.equal(s.port, 11311);
    assert.deepEqual(s.listen, ['127.0.0.1']);
    assert.equal(s.maxBytes, 128 * 1024 * 1024);
    assert.equal(s.maxConns, 512);
    assert.equal(s.threads, 2);
    assert.equal(s.itemSizeMax, 2 * 1024 * 1024);
    assert.equal(s.growthFactor, 1.5);
    assert.equal(s.chunkSize, 32);
    assert.equal(s.verbose, 1);
  });

  it('accepts attached values, long forms and -vv', () => {
    const s = parseMemcachedArgs([
      '-p11400',
      '--memory-limit=32',
      '--threads',
      '3',
      '-vv',
      '-M',
      '-C',
      '-S',
      '-F',
      '-A',
    ]);
    assert.equal(s.port, 11400);
    assert.equal(s.maxBytes, 32 * 1024 * 1024);
    assert.equal(s.threads, 3);
    assert.equal(s.verbose, 2);
    assert.equal(s.evictions, false);
    assert.equal(s.useCas, false);
    assert.equal(s.sasl, true);
    assert.equal(s.flushEnabled, false);
    assert.equal(s.shutdownEnabled, true);
  });

  it('takes -o extended options and -B', () => {
    const s = parseMemcachedArgs(['-o', 'track_sizes,idle_timeout=30,modern,slab_chunk_max=256', '-B', 'binary']);
    assert.equal(s.trackSizes, true);
    assert.equal(s.idleTimeout, 30);
    assert.equal(s.slabChunkMax, 256 * 1024);
    assert.equal(s.bindingProtocol, 'binary');
  });

  it('refuses unsupported and unknown flags with a reason', () => {
    assert.throws(() => parseMemcachedArgs(['-d']), /daemon mode/);
    assert.throws(() => parseMemcachedArgs(['-s', '/tmp/x']), /UNIX domain sockets/);
    assert.throws(() => parseMemcachedArgs(['-U', '11211']), /UDP/);
    assert.throws(() => parseMemcachedArgs(['-q']), /unknown option -q/);
    assert.throws(() => parseMemcachedArgs(['-o', 'ext_path=/x']), /not supported/);
    assert.throws(() => parseMemcachedArgs(['-B', 'udp']), /binding protocol/);
    assert.throws(() => parseMemcachedArgs(['-p']), SettingsError);
  });

  it('makes -S binary-only, as memcached does', () => {
    assert.equal(parseMemcachedArgs(['-S']).bindingProtocol, 'binary');
    assert.throws(() => parseMemcachedArgs(['-S', '-B', 'auto']), /ASCII protocol while using SASL/);
    assert.throws(() => parseMemcachedArgs(['-B', 'ascii', '-S']), /ASCII protocol while using SASL/);
  });

  it('enforces memcached start-up checks on sizes', () => {
    assert.throws(() => parseMemcachedArgs(['-I', '512']), /less than 1024/);
    assert.throws(() => parseMemcachedArgs(['-m', '1', '-I', '1m']), /1\/2 of memory/);
    assert.throws(() => parseMemcachedArgs(['-f', '1']), /greater than 1/);
  });

  it('parses sizes with k/m/g suffixes', () => {
    assert.equal(parseSize('2k', '-I'), 2048);
    assert.equal(parseSize('1g', '-I'), 1024 ** 3);
    assert.throws(() => parseSize('x', '-I'), SettingsError);
  });
});
