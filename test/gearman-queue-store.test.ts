/**
 * The persistent-queue interface the durable queues will implement: the server stores background jobs before
 * acknowledging them (asynchronously if the store is), forgets them when they end, and replays them at start-up.
 * Exercised here with a recording in-memory store that can be slow or fail.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { QueueStore, StoredJob } from '../src/gearman/server/queue-store.ts';
import { BuiltinQueueStore } from '../src/gearman/server/queue-store.ts';
import { GearmanServer } from '../src/gearman/server/server.ts';
import {
  closeAndWait,
  eventually,
  RawGearman,
  REQUEST,
  RESPONSE,
  startOurGearman,
  submit,
  worker,
} from './helpers/gearman-raw.ts';

/** A store that records every call; `add` can be delayed or made to fail. */
class RecordingStore implements QueueStore {
  readonly name = 'recording';
  readonly durable = true;
  readonly jobs = new Map<string, StoredJob>();
  readonly calls: string[] = [];
  addDelayMs = 0;
  /** While set, `add` waits for it. */
  hold: Promise<void> | undefined;
  failAdd: 'reject' | 'throw' | undefined;
  failDone = false;
  closed = false;

  add(job: StoredJob): void | Promise<void> {
    this.calls.push(`add ${job.functionName} ${job.unique} ${job.priority} ${job.whenToRun}`);
    if (this.failAdd === 'throw') throw new Error('disk full');
    const store = () => {
      this.jobs.set(`${job.functionName}\0${job.unique}`, job);
    };
    if (this.hold !== undefined) return this.hold.then(store);
    if (this.addDelayMs === 0 && this.failAdd === undefined) return store();
    return sleep(this.addDelayMs).then(() => {
      if (this.failAdd === 'reject') throw new Error('database is locked');
      store();
    });
  }

  done(job: StoredJob): void | Promise<void> {
    this.calls.push(`done ${job.functionName} ${job.unique}`);
    this.jobs.delete(`${job.functionName}\0${job.unique}`);
    if (this.failDone) return Promise.reject(new Error('gone'));
  }

  replay(add: (job: StoredJob) => void): void {
    for (const job of this.jobs.values()) add(job);
  }

  close(): void {
    this.closed = true;
  }
}

async function serve(store: QueueStore, options: { jobRetries?: number } = {}) {
  const server = new GearmanServer({
    port: 0,
    listen: ['127.0.0.1'],
    jobHandlePrefix: 'H:q',
    queueStore: store,
    ...options,
  });
  const { port } = await server.listen();
  return { server, port };
}

describe('gearman persistent queue interface', () => {
  it('stores background jobs (not foreground ones) and forgets them when they end', async () => {
    const store = new RecordingStore();
    const { server, port } = await serve(store);
    try {
      const c = await RawGearman.connect(port);
      await submit(c, REQUEST.SUBMIT_JOB_HIGH_BG, 'f', 'a', 'x');
      await submit(c, REQUEST.SUBMIT_JOB, 'f', 'fg', 'x');
      await submit(c, REQUEST.SUBMIT_JOB_LOW_BG, 'f', 'b', 'x');
      await submit(c, REQUEST.SUBMIT_JOB_EPOCH, 'f', 'c', '12345\0x');
      await submit(c, REQUEST.SUBMIT_REDUCE_JOB_BACKGROUND, 'f', 'd', 'red\0agg\0x');
      const e = await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', 'e', 'x');
      assert.deepEqual(store.calls, ['add f a 0 0', 'add f b 2 0', 'add f c 1 12345', 'add f d 1 0', 'add f e 1 0']);
      const w = await worker(port, 'f');
      const ends: Array<[number, string[]]> = [
        [REQUEST.WORK_COMPLETE, ['r']],
        [REQUEST.WORK_FAIL, []],
        [REQUEST.WORK_EXCEPTION, ['e']],
        [REQUEST.WORK_COMPLETE, ['r']],
      ];
      for (const [type, rest] of ends) {
        w.send(REQUEST.GRAB_JOB);
        const [handle] = await w.expect(RESPONSE.JOB_ASSIGN);
        w.send(type, [handle!, ...rest]);
      }
      await w.sync();
      await c.expect(RESPONSE.WORK_FAIL);
      assert.equal(await c.admin(`cancel job ${e}`), 'OK');
      // HIGH first (a), then NORMAL in order (fg, c, d); e is cancelled; b (LOW) stays; the foreground job was never
      // stored, so it is not forgotten either.
      assert.deepEqual(store.calls.slice(5), ['done f a', 'done f c', 'done f d', 'done f e']);
      assert.deepEqual([...store.jobs.keys()], ['f\0b']);
      c.close();
      w.close();
    } finally {
      await server.close();
    }
    assert.equal(store.closed, true);
  });

  it('acknowledges only after an asynchronous add resolved, keeping replies in order; the job is not runnable before', async () => {
    const store = new RecordingStore();
    const { promise, resolve } = Promise.withResolvers<void>();
    store.hold = promise;
    const { server, port } = await serve(store);
    try {
      const w = await worker(port, 'slow');
      const c = await RawGearman.connect(port);
      c.send(REQUEST.SUBMIT_JOB_BG, ['slow', 'k', 'x']);
      c.send(REQUEST.ECHO_REQ, ['after']);
      await eventually(() => store.calls.length === 1, 'add called');
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.NO_JOB);
      assert.deepEqual(c.pending(), []);
      resolve();
      const [handle] = await c.expect(RESPONSE.JOB_CREATED);
      assert.deepEqual(await c.expect(RESPONSE.ECHO_RES), ['after']);
      w.send(REQUEST.GRAB_JOB);
      assert.equal((await w.expect(RESPONSE.JOB_ASSIGN))[0], handle);
      c.close();
      w.close();
    } finally {
      await server.close();
    }
  });

  it('answers QUEUE_ERROR when the store fails, and the job is gone', async () => {
    const store = new RecordingStore();
    const { server, port } = await serve(store);
    try {
      const c = await RawGearman.connect(port);
      for (const mode of ['reject', 'throw'] as const) {
        store.failAdd = mode;
        store.addDelayMs = mode === 'reject' ? 10 : 0;
        c.send(REQUEST.SUBMIT_JOB_BG, ['f', `u-${mode}`, 'x']);
        const [code, text] = await c.expect(RESPONSE.ERROR);
        assert.equal(code, 'QUEUE_ERROR');
        assert.match(text!, mode === 'reject' ? /database is locked/ : /disk full/);
      }
      assert.deepEqual(await c.list('show jobs'), []);
      assert.deepEqual(await c.list('status'), ['f\t0\t0\t0']);
      store.failAdd = undefined;
      store.addDelayMs = 0;
      store.failDone = true;
      const h = await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', 'ok', 'x');
      assert.equal(await c.admin(`cancel job ${h}`), 'OK');
      c.close();
    } finally {
      await server.close();
    }
  });

  it('a foreground client coalesced onto a job being stored gets its result', async () => {
    const store = new RecordingStore();
    store.addDelayMs = 100;
    const { server, port } = await serve(store);
    try {
      const bg = await RawGearman.connect(port);
      bg.send(REQUEST.SUBMIT_JOB_BG, ['f', 'shared', 'x']);
      await sleep(20);
      const fg = await RawGearman.connect(port);
      const [handle] = await fg.send(REQUEST.SUBMIT_JOB, ['f', 'shared', 'y']).expect(RESPONSE.JOB_CREATED);
      assert.deepEqual(await bg.expect(RESPONSE.JOB_CREATED), [handle]);
      const w = await worker(port, 'f');
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.JOB_ASSIGN);
      w.send(REQUEST.WORK_COMPLETE, [handle!, 'both']);
      assert.deepEqual(await fg.expect(RESPONSE.WORK_COMPLETE), [handle, 'both']);
      bg.close();
      fg.close();
      w.close();
    } finally {
      await server.close();
    }
  });

  it('replays stored jobs at start-up: queued again, marked persisted, unique ids kept', async () => {
    const store = new RecordingStore();
    store.jobs.set('f\0one', { unique: 'one', functionName: 'f', data: Buffer.from('1'), priority: 2, whenToRun: 0 });
    store.jobs.set('f\0two', { unique: 'two', functionName: 'f', data: Buffer.from('2'), priority: 0, whenToRun: 0 });
    const { server, port } = await serve(store, { jobRetries: 1 });
    try {
      assert.deepEqual(store.calls, []);
      const c = await RawGearman.connect(port);
      assert.deepEqual((await c.list('show jobs')).sort(), ['H:q:1\t0\t0\t1', 'H:q:2\t0\t0\t1']);
      const w = await RawGearman.connect(port);
      w.send(REQUEST.CAN_DO, ['f']);
      w.send(REQUEST.GRAB_JOB_UNIQ);
      assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN_UNIQ), ['H:q:2', 'f', 'two', '2']);
      // -j 1: the first worker death drops the job, and the store forgets it.
      await closeAndWait(server, w);
      assert.deepEqual(store.calls, ['done f two']);
      c.close();
    } finally {
      await server.close();
    }
  });

  it('the builtin store keeps nothing and refuses no job; a durable queue type needs its database named', async () => {
    const builtin = new BuiltinQueueStore();
    assert.equal(builtin.durable, false);
    builtin.add({ unique: 'u', functionName: 'f', data: Buffer.alloc(0), priority: 1, whenToRun: 0 });
    builtin.done({ unique: 'u', functionName: 'f', data: Buffer.alloc(0), priority: 1, whenToRun: 0 });
    const replayed: StoredJob[] = [];
    builtin.replay((job) => replayed.push(job));
    builtin.close();
    assert.deepEqual(replayed, []);
    assert.throws(() => new GearmanServer({ queueType: 'MySQL' }), /-q MySQL needs --mysql-db/);
    assert.throws(() => new GearmanServer({ queueType: 'libsqlite3' }), /missing required --libsqlite3-db/);
    const g = await startOurGearman({ keepalive: true, keepaliveIdle: 30 });
    try {
      const c = await RawGearman.connect(g.port);
      c.send(REQUEST.ECHO_REQ, ['ka']);
      assert.deepEqual(await c.expect(RESPONSE.ECHO_RES), ['ka']);
      c.close();
    } finally {
      await g.close();
    }
  });
});
