/**
 * The Node worker (`sharenothing/gearman`) against our job server and the real gearmand 1.1.20: concurrency with
 * pipelined grabs, registering again after the server restarts, graceful close, run-time limits, and a worker
 * process killed in the middle of a job (the job completes on another worker; the client still gets the result).
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GearmanClient, GearmanError, GearmanWorker, type GearmanWorkerOptions } from '../src/gearman/index.ts';
import {
  adminStatus,
  gearmandAvailable,
  type JobServerPeer,
  kill,
  type PeerKind,
  start,
  startPeer,
  until,
  workersReady,
} from './helpers/gearman-peers.ts';
import { RawGearman } from './helpers/gearman-raw.ts';
import { inCI } from './helpers/gearman-real.ts';

function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const INDEX = new URL('../src/gearman/index.ts', import.meta.url).href;

/** Our worker in a child process: `fn` starts, prints `started <handle>`, and never finishes. */
function childWorker(port: number, fn: string) {
  const code = `
    import { GearmanWorker } from ${JSON.stringify(INDEX)};
    const worker = new GearmanWorker({ servers: ['127.0.0.1:${port}'], clientId: 'doomed' });
    worker.register(${JSON.stringify(fn)}, (job) => {
      console.log('started ' + job.handle);
      return new Promise(() => {});
    });`;
  return start(process.execPath, ['--input-type=module', '-e', code]);
}

for (const kind of ['ours', 'gearmand'] as PeerKind[]) {
  const skip = kind === 'gearmand' && !gearmandAvailable() && !inCI() ? 'gearmand not installed' : false;
  describe(`gearman worker against ${kind}`, { skip }, () => {
    let peer: JobServerPeer;
    let servers: string[];
    let client: GearmanClient;
    const workers: GearmanWorker[] = [];
    const worker = (options: GearmanWorkerOptions = {}) => {
      const w = new GearmanWorker({ servers, reconnectDelay: 20, ...options });
      workers.push(w);
      return w;
    };
    before(async () => {
      peer = await startPeer(kind);
      servers = [`127.0.0.1:${peer.port}`];
      client = new GearmanClient({ servers, submitTimeout: 3000, retryTimeout: 0 });
    });
    after(async () => {
      for (const w of workers) w.destroy();
      client.destroy();
      await peer.stop();
    });

    it('waits for any thenable a handler returns, not only native promises', async () => {
      const w = worker();
      // Another promise library's object (typed as a Promise, as such libraries declare it).
      const thenable = (value: string) =>
        ({
          // biome-ignore lint/suspicious/noThenProperty: a thenable is exactly what this test needs
          then(resolve: (v: string) => void) {
            setTimeout(() => resolve(value), 10);
          },
        }) as unknown as Promise<string>;
      w.register('thenable', (job) => thenable(`later:${job.payload.toString()}`));
      const result = await client.submitJob('thenable', 'x', { resultTimeout: 5000 });
      assert.equal(result.toString(), 'later:x');
    });

    it('runs `concurrency` jobs at once over one connection, never more', async () => {
      let running = 0;
      let most = 0;
      const allThree = gate();
      const release = gate();
      const w = worker({ concurrency: 3 });
      w.register('concurrent', async (job) => {
        running++;
        most = Math.max(most, running);
        if (running === 3) allThree.open();
        await release.promise;
        running--;
        return job.payload;
      });
      await workersReady(peer.port, 'concurrent');
      const jobs = ['a', 'b', 'c', 'd', 'e', 'f'].map((p) => client.submitJob('concurrent', p));
      await allThree.promise;
      assert.equal(w.running, 3);
      // The other three wait on the server, not in the worker.
      await until(async () => (await adminStatus(peer.port)).get('concurrent')?.total === 6, 'six jobs known');
      assert.equal((await adminStatus(peer.port)).get('concurrent')?.running, 3);
      release.open();
      assert.deepEqual(
        (await Promise.all(jobs)).map((b) => b.toString()),
        ['a', 'b', 'c', 'd', 'e', 'f'],
      );
      assert.equal(most, 3);
    });

    it('registers again after the server restarts on the same port, and gets the next job', async () => {
      const running = gate();
      let lost: unknown;
      const w = worker({ clientId: 'phoenix' });
      w.register('after_restart', async (job) => {
        if (job.payload.toString() !== 'hang') return `again:${job.payload}`;
        running.open();
        await new Promise((resolve) => job.signal.addEventListener('abort', resolve));
        lost = job.signal.reason;
        return 'dropped';
      });
      await workersReady(peer.port, 'after_restart');
      const c = new GearmanClient({ servers, retryTimeout: 0 });
      const hung = c.submitJob('after_restart', 'hang');
      await running.promise;
      await peer.restart();
      // The job's connection is gone: its client hears so, its handler is told to stop.
      assert.equal(
        await hung.then(
          () => undefined,
          (e: unknown) => (e as GearmanError).code,
        ),
        'GEARMAN_ERR_CONNECTION',
      );
      await until(() => lost !== undefined, 'signal aborted');
      assert.equal((lost as GearmanError).code, 'GEARMAN_ERR_CONNECTION');
      await workersReady(peer.port, 'after_restart');
      const admin = await RawGearman.connect(peer.port);
      assert.ok((await admin.list('workers')).some((line) => /^\d+ 127\.0\.0\.1 phoenix : after_restart$/.test(line)));
      admin.close();
      assert.equal((await c.submitJob('after_restart', 'x')).toString(), 'again:x');
      await c.close();
    });

    it('close(deadline) gives up on a job that does not finish: the server requeues it', async () => {
      const started = gate();
      let reason: unknown;
      const stuck = worker();
      stuck.register('stuck', async (job) => {
        started.open();
        job.signal.addEventListener('abort', () => {
          reason = job.signal.reason;
        });
        return new Promise(() => {});
      });
      await workersReady(peer.port, 'stuck');
      const job = client.submitJob('stuck', 'x');
      await started.promise;
      await stuck.close(50);
      assert.equal((reason as GearmanError).code, 'GEARMAN_ERR_CLOSED');
      const next = worker();
      next.register('stuck', () => 'finished elsewhere');
      assert.equal((await job).toString(), 'finished elsewhere');
    });

    it('unregister() stops taking jobs of a function (CANT_DO)', async () => {
      const w = worker();
      let ran = false;
      w.register('unregistered', () => {
        ran = true;
      });
      w.register('kept', (job) => {
        job.sendStatus(Number.NaN, 1);
      });
      await workersReady(peer.port, 'unregistered');
      assert.equal(w.unregister('unregistered'), true);
      assert.equal(w.unregister('unregistered'), false);
      assert.deepEqual(w.functions, ['kept']);
      await until(async () => (await adminStatus(peer.port)).get('unregistered')?.workers === 0, 'CANT_DO seen');
      const bg = await client.submitBackground('unregistered', 'x');
      // A bad status is the handler's error: the job fails with it.
      const err = await client.submitJob('kept').then(
        () => undefined,
        (e: unknown) => e as GearmanError,
      );
      assert.match(err!.message, /finite numbers/);
      assert.equal((await client.getStatus(bg)).running, false);
      assert.equal(ran, false);
    });

    it('close() stops grabbing, lets the running job finish and report, then disconnects', async () => {
      const started = gate();
      const release = gate();
      const w = worker({ concurrency: 2 });
      let runs = 0;
      w.register('graceful', async (job) => {
        runs++;
        started.open();
        await release.promise;
        return `done:${job.payload}`;
      });
      await workersReady(peer.port, 'graceful');
      const first = client.submitJob('graceful', 'one');
      await started.promise;
      let closed = false;
      const closing = w.close().then(() => {
        closed = true;
      });
      const second = client.submitJob('graceful', 'two');
      await second.created;
      await sleep(50);
      assert.equal(closed, false);
      release.open();
      assert.equal((await first).toString(), 'done:one');
      await closing;
      assert.equal(runs, 1);
      assert.equal(second.settled, false);
      await until(async () => (await adminStatus(peer.port)).get('graceful')?.workers === 0, 'worker gone');
      assert.throws(
        () => w.register('graceful', () => {}),
        (err: GearmanError) => err.code === 'GEARMAN_ERR_CLOSED',
      );
      // Another worker picks the queued job up.
      const next = worker();
      next.register('graceful', (job) => `next:${job.payload}`);
      assert.equal((await second).toString(), 'next:two');
    });

    it('fails a job past its timeout (the server cannot be relied on to) and aborts its signal', async () => {
      let abortReason: unknown;
      const w = worker({ concurrency: 2 });
      w.register(
        'limited',
        async (job) => {
          if (job.payload.toString() === 'fast') return 'in time';
          await new Promise((resolve) => job.signal.addEventListener('abort', resolve));
          abortReason = job.signal.reason;
          return 'too late';
        },
        { timeout: 200 },
      );
      await workersReady(peer.port, 'limited');
      const slow = client.submitJob('limited', 'slow');
      // Another job on the same connection makes the worker sleep (PRE_SLEEP) while the slow one runs: gearmand
      // then forgets the slow job's CAN_DO_TIMEOUT.
      assert.equal((await client.submitJob('limited', 'fast')).toString(), 'in time');
      const err = await slow.then(
        () => assert.fail('the slow job completed'),
        (e: unknown) => e as GearmanError,
      );
      assert.equal(err.code, 'GEARMAN_ERR_WORK_EXCEPTION');
      assert.equal(err.data?.toString(), 'job ran longer than 200 ms');
      await until(() => abortReason !== undefined, 'signal aborted');
      assert.ok(abortReason instanceof GearmanError);
      assert.equal(abortReason.code, 'GEARMAN_ERR_TIMEOUT');
      assert.equal((await adminStatus(peer.port)).get('limited')?.running, 0);
    });

    it('a worker process killed mid-job: the foreground job completes on another worker', async () => {
      const doomed = childWorker(peer.port, 'killed_fg');
      await workersReady(peer.port, 'killed_fg', 1, doomed.output());
      const job = client.submitJob('killed_fg', 'payload', { unique: 'killed-fg' });
      await doomed.waitFor(/started H:test:\d+/);
      const survivor = worker();
      survivor.register('killed_fg', (j) => `survived:${j.payload}`);
      await workersReady(peer.port, 'killed_fg', 2);
      await kill(doomed.child);
      assert.equal((await job).toString(), 'survived:payload');
    });

    it('a worker process killed mid-job: the background job completes on another worker', async () => {
      const doomed = childWorker(peer.port, 'killed_bg');
      await workersReady(peer.port, 'killed_bg', 1, doomed.output());
      const bg = await client.submitBackground('killed_bg', 'payload');
      await doomed.waitFor(/started H:test:\d+/);
      assert.equal((await client.getStatus(bg)).running, true);
      const done = gate<string>();
      const survivor = worker();
      survivor.register('killed_bg', (j) => done.open(`${j.handle} ${j.payload}`));
      await kill(doomed.child);
      assert.equal(await done.promise, `${bg.handle} payload`);
      await until(async () => !(await client.getStatus(bg)).known, 'job finished');
    });
  });
}
