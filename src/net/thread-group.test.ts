import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, it } from 'node:test';
import { NetError } from './errors.ts';
import type { EchoWorkerData } from './fixtures/echo-worker.ts';
import { createLogger } from './logger.ts';
import { ThreadGroup, type WorkerSpawn } from './thread-group.ts';

const entry = new URL('./fixtures/echo-worker.ts', import.meta.url);

/** Sends one line on a new connection and resolves with the first reply line (or '' if the peer closes). */
function request(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${line}\n`));
    socket.on('data', (chunk: string) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl !== -1) {
        socket.destroy();
        resolve(text.slice(0, nl));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(''));
  });
}

/** A logger whose lines can be awaited by message. */
function watchedLogger(): { logger: ReturnType<typeof createLogger>; waitFor: (msg: string) => Promise<void> } {
  const waiters: Array<{ msg: string; resolve: () => void }> = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) {
        if (line === '') continue;
        const { msg } = JSON.parse(line) as { msg: string };
        for (const w of waiters.filter((w) => w.msg === msg)) w.resolve();
      }
      callback();
    },
  });
  return {
    logger: createLogger({ level: 'debug', stream }),
    waitFor: (msg) => new Promise((resolve) => waiters.push({ msg, resolve })),
  };
}

describe('ThreadGroup', () => {
  let group: ThreadGroup | undefined;
  afterEach(async () => {
    await group?.close(500);
    group = undefined;
  });

  it('runs two .ts workers on one port with reusePort and both serve connections', async () => {
    const messages: unknown[] = [];
    group = await ThreadGroup.start({
      entry,
      count: 2,
      workerDataFor: ({ address }): EchoWorkerData => ({ port: address?.port ?? 0 }),
      onMessage: (message) => messages.push(message),
    });
    assert.equal(group.size, 2);
    const port = group.address!.port;
    assert.ok(port > 0);
    assert.equal(group.address!.host, '127.0.0.1');

    const threadIds = new Set(group.threadIds.map(String));
    const served = new Set<string>();
    // The kernel hashes each new connection's 4-tuple to one of the sockets: a few tries reach both.
    for (let i = 0; i < 200 && served.size < 2; i++) {
      const reply = await request(port, 'hi');
      const [id, text] = reply.split(' ');
      assert.equal(text, 'hi');
      served.add(id!);
    }
    assert.deepEqual([...served].sort(), [...threadIds].sort());

    group.broadcast({ type: 'ping' });
    for (let i = 0; i < 50 && messages.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(messages.length, 2);
  });

  it('close() asks every worker to close and resolves once all have exited', async () => {
    const g = await ThreadGroup.start({
      entry,
      count: 2,
      workerDataFor: ({ address }) => ({ port: address?.port ?? 0 }),
    });
    const port = g.address!.port;
    await g.close(500);
    assert.equal(g.size, 0);
    assert.deepEqual(g.threadIds, [undefined, undefined]);
    assert.equal(await request(port, 'hi').catch((err: NodeJS.ErrnoException) => err.code), 'ECONNREFUSED');
    assert.equal(g.close(), g.close(), 'close is idempotent');
  });

  it('rejects start() when a worker throws before ready', async () => {
    await assert.rejects(
      ThreadGroup.start({ entry, count: 2, workerData: { port: 0, fail: 'throw' } satisfies EchoWorkerData }),
      (err: unknown) => {
        assert.ok(err instanceof NetError);
        assert.equal(err.code, 'NET_ERR_WORKER_START');
        assert.match(err.message, /worker 0 failed to start: boom before ready/);
        return true;
      },
    );
  });

  it('rejects start() when a worker reports an error, terminating the workers already running', async () => {
    let port = 0;
    const data = ({ index, address }: WorkerSpawn): EchoWorkerData => {
      if (index === 0) return { port: 0 };
      port = address!.port;
      return { port, fail: 'report' };
    };
    await assert.rejects(ThreadGroup.start({ entry, count: 3, workerDataFor: data }), {
      code: 'NET_ERR_WORKER_START',
      message: /failed to start: cannot open store/,
    });
    // Worker 0 was listening; it is gone by the time start() rejects.
    assert.ok(port > 0);
    assert.equal(await request(port, 'hi').catch((err: NodeJS.ErrnoException) => err.code), 'ECONNREFUSED');
  });

  it('rejects start() when a worker never posts ready within readyTimeoutMs', async () => {
    await assert.rejects(
      ThreadGroup.start({ entry, count: 1, readyTimeoutMs: 100, workerData: { port: 0, fail: 'hang' } }),
      { code: 'NET_ERR_WORKER_READY_TIMEOUT' },
    );
  });

  it('rejects start() when the worker cannot be created', async () => {
    await assert.rejects(ThreadGroup.start({ entry, count: 1, workerData: { notCloneable: () => {} } }), {
      code: 'NET_ERR_WORKER_START',
      message: /could not be cloned/,
    });
  });

  it('rejects start() for a count that is not a positive integer', async () => {
    await assert.rejects(ThreadGroup.start({ entry, count: 0 }), { code: 'NET_ERR_INVALID_OPTION' });
  });

  it('logs a worker that crashes after ready and restarts it on the same port, within the restart budget', async () => {
    const { logger, waitFor } = watchedLogger();
    const limits: number[] = [];
    group = await ThreadGroup.start({
      entry,
      count: 1,
      logger,
      maxRestarts: 1,
      workerDataFor: ({ address }) => ({ port: address?.port ?? 0 }),
      onRestartLimit: (index) => limits.push(index),
    });
    const port = group.address!.port;
    const firstId = group.threadIds[0];

    const died = waitFor('worker thread died');
    const restarted = waitFor('worker thread restarted');
    assert.equal(await request(port, 'crash'), '');
    await died;
    await restarted;
    assert.equal(group.restarts, 1);
    assert.equal(group.size, 1);
    assert.notEqual(group.threadIds[0], firstId);
    assert.match(await request(port, 'again'), / again$/);

    const limited = waitFor('worker restart limit reached, not restarting');
    await request(port, 'crash');
    await limited;
    assert.deepEqual(limits, [0]);
    assert.equal(group.size, 0);
  });
});
