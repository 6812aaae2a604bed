import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger, silentLogger } from './logger.ts';

function capture(): { stream: Writable; lines: () => Array<Record<string, unknown>>; raw: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      text += String(chunk);
      callback();
    },
  });
  return {
    stream,
    raw: () => text,
    lines: () =>
      text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

describe('logger', () => {
  it('writes one pino-compatible JSON object per line, level/time/name/msg first', () => {
    const out = capture();
    const logger = createLogger({ level: 'info', stream: out.stream, name: 'memcached', base: { pid: 1 } });
    const before = Date.now();
    logger.info('listening', { port: 11211 });
    const raw = out.raw();
    assert.match(raw, /^\{"level":30,"time":\d+,"name":"memcached","msg":"listening","pid":1,"port":11211\}\n$/);
    const [line] = out.lines();
    assert.ok((line!.time as number) >= before);
  });

  it('uses the numeric levels trace 10 … error 50 and drops lines below the threshold', () => {
    const out = capture();
    const logger = createLogger({ level: 'trace', stream: out.stream });
    logger.trace('t');
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    assert.deepEqual(
      out.lines().map((l) => [l.level, l.msg]),
      [
        [10, 't'],
        [20, 'd'],
        [30, 'i'],
        [40, 'w'],
        [50, 'e'],
      ],
    );

    const filtered = capture();
    const warnOnly = createLogger({ level: 'warn', stream: filtered.stream });
    warnOnly.info('dropped');
    warnOnly.debug('dropped');
    warnOnly.warn('kept');
    assert.deepEqual(
      filtered.lines().map((l) => l.msg),
      ['kept'],
    );
    assert.equal(warnOnly.isLevelEnabled('error'), true);
    assert.equal(warnOnly.isLevelEnabled('info'), false);
  });

  it('changes level at runtime and rejects unknown levels', () => {
    const out = capture();
    const logger = createLogger({ level: 'error', stream: out.stream });
    logger.info('dropped');
    logger.level = 'debug';
    assert.equal(logger.level, 'debug');
    logger.info('kept');
    assert.deepEqual(
      out.lines().map((l) => l.msg),
      ['kept'],
    );
    assert.throws(() => {
      logger.level = 'verbose' as never;
    }, TypeError);
    assert.throws(() => createLogger({ level: 'loud' as never }), TypeError);
  });

  it('child loggers add their bindings to every line and keep their own level', () => {
    const out = capture();
    const root = createLogger({ level: 'info', stream: out.stream, name: 'gearmand' });
    const conn = root.child({ conn: 7 });
    const job = conn.child({ job: 'H:1' });
    job.info('assigned', { fn: 'resize' });
    conn.level = 'error';
    conn.info('dropped');
    root.info('root still logs');
    assert.deepEqual(out.lines()[0], {
      level: 30,
      time: out.lines()[0]!.time,
      name: 'gearmand',
      msg: 'assigned',
      conn: 7,
      job: 'H:1',
      fn: 'resize',
    });
    assert.deepEqual(
      out.lines().map((l) => l.msg),
      ['assigned', 'root still logs'],
    );
  });

  it('serializes errors as {type, message, code, stack}, including nested ones and causes', () => {
    const out = capture();
    const logger = createLogger({ stream: out.stream });
    const cause = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const err = new TypeError('dial failed', { cause });
    logger.error('failed', { err, nested: { inner: new RangeError('r') } });
    const line = out.lines()[0]!;
    const e = line.err as Record<string, unknown>;
    assert.equal(e.type, 'TypeError');
    assert.equal(e.message, 'dial failed');
    assert.match(e.stack as string, /^TypeError: dial failed\n/);
    assert.deepEqual(
      { type: (e.cause as Record<string, unknown>).type, code: (e.cause as Record<string, unknown>).code },
      { type: 'Error', code: 'ECONNREFUSED' },
    );
    assert.equal(((line.nested as Record<string, unknown>).inner as Record<string, unknown>).type, 'RangeError');
  });

  it('never throws: circular fields, bigints, and a stream that errors or is destroyed', () => {
    const out = capture();
    const logger = createLogger({ stream: out.stream });
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    logger.info('circular', { circular });
    logger.info('big', { n: 2n ** 70n });
    const [first, second] = out.lines();
    assert.equal(first!.msg, 'circular');
    assert.equal(typeof first!.logError, 'string');
    assert.equal(second!.n, '1180591620717411303424');

    const failing = new Writable({
      write(_chunk, _encoding, callback) {
        callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      },
    });
    const broken = createLogger({ stream: failing });
    assert.doesNotThrow(() => {
      broken.info('first write fails asynchronously');
      broken.info('queued behind it');
    });
    const destroyed = new Writable({ write: (_c, _e, cb) => cb() });
    destroyed.destroy();
    assert.doesNotThrow(() => createLogger({ stream: destroyed }).error('into the void'));
  });

  it('silentLogger discards everything', () => {
    assert.equal(silentLogger.isLevelEnabled('error'), false);
    assert.equal(silentLogger.level, 'silent');
    assert.equal(silentLogger.child({ a: 1 }), silentLogger);
    assert.doesNotThrow(() => silentLogger.error('nothing', { err: new Error('x') }));
  });
});
