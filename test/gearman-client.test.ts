/**
 * The Node client and worker (`sharenothing/gearman`) against our job server and against the real gearmand 1.1.20,
 * the same cases on both: foreground jobs with their updates, background jobs, priorities, epoch jobs, status by
 * handle and by unique id, coalescing, exceptions on and off, failures, timeouts and abort.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  GearmanClient,
  type GearmanClientOptions,
  GearmanError,
  GearmanWorker,
  type GearmanWorkerOptions,
  type JobUpdate,
} from '../src/gearman/index.ts';
import {
  adminStatus,
  gearmandAvailable,
  type JobServerPeer,
  type PeerKind,
  startPeer,
  until,
  workersReady,
} from './helpers/gearman-peers.ts';
import { inCI } from './helpers/gearman-real.ts';

/** A promise with its resolve function, to hold a handler until the test lets it go. */
function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

async function rejectsWith(promise: PromiseLike<unknown>, code: string): Promise<GearmanError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof GearmanError, `expected a GearmanError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, got a result`);
}

async function collect(job: AsyncIterable<JobUpdate>): Promise<JobUpdate[]> {
  const out: JobUpdate[] = [];
  for await (const u of job) out.push(u);
  return out;
}

for (const kind of ['ours', 'gearmand'] as PeerKind[]) {
  describe(`gearman client and worker against ${kind}`, {
    skip: kind === 'gearmand' && !gearmandAvailable() && !inCI() ? 'gearmand not installed' : false,
  }, () => {
    let peer: JobServerPeer;
    let servers: string[];
    const clients: GearmanClient[] = [];
    const workers: GearmanWorker[] = [];
    const client = (options: GearmanClientOptions = {}) => {
      const c = new GearmanClient({ servers, submitTimeout: 3000, ...options });
      clients.push(c);
      return c;
    };
    const worker = (options: GearmanWorkerOptions = {}) => {
      const w = new GearmanWorker({ servers, ...options });
      workers.push(w);
      return w;
    };
    before(async () => {
      peer = await startPeer(kind);
      servers = [`127.0.0.1:${peer.port}`];
    });
    after(async () => {
      for (const w of workers) w.destroy();
      for (const c of clients) c.destroy();
      await peer.stop();
    });

    it('runs a foreground job: data, warning and status updates in order, then the result', async () => {
      const w = worker();
      w.register('fg_updates', async (job) => {
        assert.equal(job.functionName, 'fg_updates');
        assert.equal(job.unique, 'fg-1');
        job.sendData('part1');
        job.sendWarning('careful');
        job.sendStatus(1, 3);
        job.sendData(Buffer.from([0, 1, 0]));
        job.sendStatus(3, 3);
        return Buffer.concat([Buffer.from(job.payload).reverse(), Buffer.from('\0end')]);
      });
      await workersReady(peer.port, 'fg_updates');
      const c = client();
      const job = c.submitJob('fg_updates', 'hello', { unique: 'fg-1' });
      const updates = await collect(job);
      assert.deepEqual(updates, [
        { type: 'data', data: Buffer.from('part1') },
        { type: 'warning', data: Buffer.from('careful') },
        { type: 'status', numerator: 1, denominator: 3 },
        { type: 'data', data: Buffer.from([0, 1, 0]) },
        { type: 'status', numerator: 3, denominator: 3 },
        { type: 'complete', data: Buffer.from('olleh\0end') },
      ]);
      assert.deepEqual(await job, Buffer.from('olleh\0end'));
      assert.equal(job.functionName, 'fg_updates');
      assert.equal(job.unique, 'fg-1');
      assert.deepEqual(await job.catch(() => undefined).finally(() => {}), Buffer.from('olleh\0end'));
      assert.match(job.handle!, /^H:test:\d+$/);
      assert.equal(job.server, servers[0]);
      assert.ok(job.settled);
      // Awaiting without iterating: just the result.
      assert.equal((await c.submitJob('fg_updates', 'abc', { unique: 'fg-1' })).toString(), 'cba\0end');
    });

    it('carries large binary payloads both ways, and lets the caller stop iterating early', async () => {
      const w = worker();
      w.register('big', (job) => {
        job.sendData(job.payload.subarray(0, 70_000));
        job.sendStatus(1, 2);
        return Buffer.concat([job.payload, job.payload]);
      });
      await workersReady(peer.port, 'big');
      const c = client();
      const payload = Buffer.alloc(600_000);
      for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
      const job = c.submitJob('big', payload);
      for await (const u of job) {
        assert.equal(u.type, 'data');
        assert.deepEqual(u.type === 'data' && u.data, payload.subarray(0, 70_000));
        break; // the rest of the updates are not wanted
      }
      assert.deepEqual(await job, Buffer.concat([payload, payload]));
      assert.equal(await job.created, job.handle);
      // A job that fails before JOB_CREATED rejects `created` too.
      const aborted = c.submitJob('big', 'x', { signal: AbortSignal.abort() });
      await rejectsWith(aborted.created, 'GEARMAN_ERR_ABORTED');
      assert.throws(() => {
        aborted[Symbol.asyncIterator]();
        aborted[Symbol.asyncIterator]();
      }, /iterated only once/);
    });

    it('runs a background job and reports its status by handle and by unique id', async () => {
      const c = client();
      const bg = await c.submitBackground('bg_status', 'payload', { unique: 'bg-status-1' });
      assert.match(bg.handle, /^H:test:\d+$/);
      assert.equal(bg.server, servers[0]);
      assert.equal(bg.unique, 'bg-status-1');
      assert.deepEqual(await c.getStatus(bg), {
        handle: bg.handle,
        server: servers[0],
        known: true,
        running: false,
        numerator: 0,
        denominator: 0,
      });
      const running = gate();
      const release = gate();
      const w = worker();
      w.register('bg_status', async (job) => {
        assert.equal(job.payload.toString(), 'payload');
        job.sendStatus(3, 7);
        running.open();
        await release.promise;
      });
      await running.promise;
      await until(async () => (await c.getStatus(bg.handle)).numerator === 3, 'status 3/7');
      assert.deepEqual(await c.getStatus(bg.handle), { ...(await c.getStatus(bg)), running: true, denominator: 7 });
      const byUnique = await c.getStatusUnique('bg-status-1');
      assert.deepEqual(byUnique, {
        unique: 'bg-status-1',
        server: servers[0],
        known: true,
        running: true,
        numerator: 3,
        denominator: 7,
        waitingClients: 0,
      });
      release.open();
      await until(async () => !(await c.getStatus(bg)).known, 'job done');
      assert.equal((await c.getStatusUnique('bg-status-1')).known, false);
      // A background job without a unique id gets a UUID (persistent queues key on it).
      const anonymous = await c.submitBackground('bg_status', 'x');
      assert.match(anonymous.unique, /^[0-9a-f-]{36}$/);
    });

    it('coalesces one unique id: submitters in one client and in another all get every update and the result', async () => {
      const started = gate();
      const release = gate();
      let runs = 0;
      const w = worker();
      w.register('coalesce', async (job) => {
        runs++;
        started.open();
        await release.promise;
        job.sendData('shared');
        job.sendStatus(1, 1);
        return `result:${job.payload}`;
      });
      await workersReady(peer.port, 'coalesce');
      const a = client();
      const b = client();
      const first = a.submitJob('coalesce', 'one', { unique: 'same-unique' });
      const firstUpdates = collect(first);
      await started.promise;
      // Joined while the job runs: locally (same client) and on the server (another client).
      const second = a.submitJob('coalesce', 'two', { unique: 'same-unique', priority: 'high' });
      const third = b.submitJob('coalesce', 'three', { unique: 'same-unique' });
      const secondUpdates = collect(second);
      const thirdUpdates = collect(third);
      await Promise.all([second.created, third.created]);
      assert.equal(second.handle, first.handle);
      assert.equal(third.handle, first.handle);
      release.open();
      const expected = [
        { type: 'data', data: Buffer.from('shared') },
        { type: 'status', numerator: 1, denominator: 1 },
        { type: 'complete', data: Buffer.from('result:one') },
      ];
      assert.deepEqual(await firstUpdates, expected);
      assert.deepEqual(await secondUpdates, expected);
      assert.deepEqual(await thirdUpdates, expected);
      assert.equal(runs, 1);
    });

    it('takes jobs by priority: high, then normal, then low', async () => {
      const c = client();
      await c.submitBackground('prio', 'low-1', { priority: 'low' });
      await c.submitBackground('prio', 'normal-1');
      await c.submitBackground('prio', 'high-1', { priority: 'high' });
      await c.submitBackground('prio', 'low-2', { priority: 'low' });
      await c.submitBackground('prio', 'high-2', { priority: 'high' });
      const order: string[] = [];
      const done = gate();
      const w = worker({ concurrency: 1 });
      w.register('prio', (job) => {
        order.push(job.payload.toString());
        if (order.length === 5) done.open();
      });
      await done.promise;
      assert.deepEqual(order, ['high-1', 'high-2', 'normal-1', 'low-1', 'low-2']);
      // Foreground priorities use the same queues.
      const fgOrder: string[] = [];
      const hold = gate();
      const w2 = worker({ concurrency: 1 });
      w2.register('prio_fg', async (job) => {
        fgOrder.push(job.payload.toString());
        if (job.payload.toString() === 'first') await hold.promise;
      });
      const first = c.submitJob('prio_fg', 'first');
      await until(async () => (await adminStatus(peer.port)).get('prio_fg')?.running === 1, 'first running');
      const jobs = [
        c.submitJob('prio_fg', 'low', { priority: 'low' }),
        c.submitJob('prio_fg', 'normal'),
        c.submitJob('prio_fg', 'high', { priority: 'high' }),
      ];
      await Promise.all(jobs.map((j) => j.created));
      hold.open();
      await Promise.all([first, ...jobs]);
      assert.deepEqual(fgOrder, ['first', 'high', 'normal', 'low']);
    });

    it('holds an epoch job (runAt) until its time', async () => {
      const c = client();
      const runAt = Date.now() + 300;
      const due = Math.ceil(runAt / 1000) * 1000;
      const bg = await c.submitBackground('epoch', 'later', { runAt: new Date(runAt), unique: 'epoch-1' });
      assert.equal((await c.getStatus(bg)).known, true);
      const ran = gate<number>();
      // gearmand wakes no sleeping worker when an epoch job falls due: the worker's poll finds it.
      const w = worker({ pollInterval: 200 });
      w.register('epoch', () => ran.open(Date.now()));
      const at = await ran.promise;
      assert.ok(at >= due - 20, `ran ${due - at} ms early`);
      assert.throws(
        () => c.submitBackground('epoch', 'x', { runAt: Date.now(), priority: 'high' }),
        (err: GearmanError) => err.code === 'GEARMAN_ERR_INVALID_ARGUMENT',
      );
    });

    it('reports a thrown error as WORK_EXCEPTION, or WORK_FAIL to clients without exceptions; the job is gone', async () => {
      const w = worker();
      w.register('throws', () => {
        throw new Error('kaboom: bad input');
      });
      w.register('fails', () => {
        throw new GearmanError('GEARMAN_ERR_WORK_FAIL');
      });
      await workersReady(peer.port, 'fails');
      const withExceptions = client();
      const err = await rejectsWith(withExceptions.submitJob('throws', 'x'), 'GEARMAN_ERR_WORK_EXCEPTION');
      assert.equal(err.data?.toString(), 'kaboom: bad input');
      assert.match(err.message, /kaboom: bad input/);
      assert.match(err.handle!, /^H:test:\d+$/);
      // Nothing stuck: the server forgot the job, and nothing runs.
      assert.equal((await withExceptions.getStatus({ handle: err.handle!, server: servers[0]! })).known, false);
      assert.equal((await adminStatus(peer.port)).get('throws')?.running, 0);
      const withoutExceptions = client({ exceptions: false });
      await rejectsWith(withoutExceptions.submitJob('throws', 'x'), 'GEARMAN_ERR_WORK_FAIL');
      await rejectsWith(withExceptions.submitJob('fails', 'x'), 'GEARMAN_ERR_WORK_FAIL');
      // A worker told not to send exceptions fails the job instead.
      const quiet = worker({ exceptions: false });
      quiet.register('throws_quietly', async () => {
        throw new Error('not sent');
      });
      await rejectsWith(withExceptions.submitJob('throws_quietly'), 'GEARMAN_ERR_WORK_FAIL');
      // The iterator throws the same error after the updates.
      w.register('throws_late', (job) => {
        job.sendData('before');
        throw new Error('late');
      });
      const job = withExceptions.submitJob('throws_late');
      const seen: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const u of job) seen.push(u.type);
        })(),
        (e: GearmanError) => e.code === 'GEARMAN_ERR_WORK_EXCEPTION',
      );
      assert.deepEqual(seen, ['data']);
      await rejectsWith(job, 'GEARMAN_ERR_WORK_EXCEPTION');
    });

    it('times out waiting for a result (the job stays queued) and aborts on a signal', async () => {
      const c = client();
      const job = c.submitJob('nobody_works', 'x', { resultTimeout: 150 });
      const err = await rejectsWith(job, 'GEARMAN_ERR_TIMEOUT');
      assert.match(err.message, /no result within 150 ms/);
      assert.equal(err.handle, job.handle);
      assert.ok(job.handle);
      const controller = new AbortController();
      const aborted = c.submitJob('nobody_works', 'y', { signal: controller.signal });
      await aborted.created;
      controller.abort(new Error('user gave up'));
      const abortErr = await rejectsWith(aborted, 'GEARMAN_ERR_ABORTED');
      assert.equal((abortErr.cause as Error).message, 'user gave up');
      // Already aborted: fails at once, nothing sent.
      await rejectsWith(c.submitJob('nobody_works', 'z', { signal: AbortSignal.abort() }), 'GEARMAN_ERR_ABORTED');
      await rejectsWith(
        c.submitBackground('nobody_works', 'z', { signal: AbortSignal.abort() }),
        'GEARMAN_ERR_ABORTED',
      );
      await rejectsWith(c.getStatus(job.handle!, { signal: AbortSignal.abort() }), 'GEARMAN_ERR_ABORTED');
      // The client still works afterwards: the late answers were matched and dropped.
      const w = worker();
      w.register('after_abort', () => 'fine');
      assert.equal((await c.submitJob('after_abort')).toString(), 'fine');
    });

    it('close() waits for foreground jobs in flight; later calls fail with GEARMAN_ERR_CLOSED', async () => {
      const release = gate();
      const w = worker();
      w.register('slow_close', async () => {
        await release.promise;
        return 'late';
      });
      await workersReady(peer.port, 'slow_close');
      const c = new GearmanClient({ servers });
      const job = c.submitJob('slow_close');
      await job.created;
      let closed = false;
      const closing = c.close().then(() => {
        closed = true;
      });
      await rejectsWith(c.submitJob('slow_close'), 'GEARMAN_ERR_CLOSED');
      await sleep(30);
      assert.equal(closed, false);
      release.open();
      assert.equal((await job).toString(), 'late');
      await closing;
    });
  });
}
