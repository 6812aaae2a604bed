/**
 * Wake-ups through our gearman server on every engine: a worker polling once a minute starts a new job at once when
 * the inserting client notifies (`schwartz-wake:<funcname>`), for inserts, batches, `replaceWith` and an explicit
 * `notify()` after the caller's own transaction; a burst of inserts shares submissions and wake-ups; jobs for
 * later send nothing; a notification that cannot be sent never fails the insert; a GearmanClient or GearmanWorker
 * of the application's is used and left open; a `wake()` during a search makes the worker search again.
 */

import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GearmanClient, GearmanWorker } from '../src/gearman/index.ts';
import { GearmanServer } from '../src/gearman/server/index.ts';
import {
  isSchwartzError,
  SchwartzClient,
  type SchwartzNotifyOptions,
  type SchwartzWakeEvent,
  SchwartzWorker,
  WAKE_CHANNEL,
} from '../src/schwartz/index.ts';
import { newQueue, type TestQueue } from './helpers/schwartz-perl.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

/** Resolves once `check` is true (polling), or fails after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

/** Wake events of the functions whose names start with `prefix` (the channel is process-wide). */
function listen(prefix: string): { events: SchwartzWakeEvent[]; stop(): void } {
  const events: SchwartzWakeEvent[] = [];
  const fn = (m: unknown) => {
    const e = m as SchwartzWakeEvent;
    if (e.funcname.startsWith(prefix)) events.push(e);
  };
  diagnostics.subscribe(WAKE_CHANNEL, fn);
  return { events, stop: () => diagnostics.unsubscribe(WAKE_CHANNEL, fn) };
}

/** A port nothing listens on: a server's, after it closed. */
async function deadPort(): Promise<number> {
  const s = new GearmanServer({ port: 0, listen: ['127.0.0.1'] });
  const { port } = await s.listen();
  await s.close();
  return port;
}

/** Well under the 60 s poll interval, generous for a loaded machine. */
const PROMPT_MS = 3000;

describe('TheSchwartz wake-ups through gearman', { concurrency: 3 }, () => {
  let server: GearmanServer;
  let servers: string[];

  before(async () => {
    server = new GearmanServer({ port: 0, listen: ['127.0.0.1'] });
    const { port } = await server.listen();
    servers = [`127.0.0.1:${port}`];
  });
  after(async () => {
    await server?.close();
  });

  for (const [dialect, skip] of allDialects()) {
    describe(dialect, { skip, concurrency: 1 }, () => {
      let td: TestDatabase;
      const queues: TestQueue[] = [];
      const clients: SchwartzClient[] = [];
      /** Function names unique to this engine: the gearman server is shared. */
      const fn = (name: string) => `${dialect}::${name}`;
      const queue = async () => {
        const q = await newQueue(td);
        queues.push(q);
        return q;
      };
      /** A second client on the queue's tables (the "web server"), notifying through `notify`. */
      const notifying = (q: TestQueue, notify: SchwartzNotifyOptions = { gearman: servers }) => {
        const c = new SchwartzClient({ databases: [{ dsn: td.location, prefix: q.prefix }], connections: 2, notify });
        clients.push(c);
        return c;
      };

      before(async () => {
        td = await createTestDatabase(dialect, 'schwartzwake');
      });
      after(async () => {
        for (const c of clients) await c.close();
        for (const q of queues) await q.close();
        await td?.drop();
      });

      it('a worker polling once a minute starts a new job at once when the insert notifies', async () => {
        const q = await queue();
        const heard = listen(fn('Wake'));
        try {
          const client = notifying(q);
          const ran = new Map<string, number>();
          const w = new SchwartzWorker(q.client, { pollInterval: 60_000, wakeOn: { gearman: servers } });
          w.canDo(fn('Wake'), (job) => void ran.set(job.arg!.toString(), performance.now()));
          const stop = new AbortController();
          const working = w.work({ signal: stop.signal });
          await sleep(50); // the first search found nothing: the worker waits
          const latencies: number[] = [];
          for (const arg of ['one', 'two', 'three']) {
            const t = performance.now();
            assert.ok(await client.insert(fn('Wake'), arg));
            await until(() => ran.has(arg), PROMPT_MS);
            latencies.push((ran.get(arg) as number) - t);
          }
          // A job for later sends no wake-up (workers could not run it yet).
          await client.insert(fn('Wake'), 'later', { runAfter: Math.floor(Date.now() / 1000) + 3600 });
          stop.abort();
          await working;
          const sent = heard.events.filter((e) => e.type === 'sent');
          assert.equal(sent.length, 3);
          assert.ok(sent.every((e) => e.type === 'sent' && e.server === servers[0]));
          assert.ok(heard.events.some((e) => e.type === 'received' && e.funcname === fn('Wake')));
          assert.ok(!ran.has('later'));
          // Typically a few ms; the bound only has to tell a wake-up from the 60 s poll.
          assert.ok(
            latencies.every((ms) => ms < PROMPT_MS),
            latencies.join(', '),
          );
        } finally {
          heard.stop();
        }
      });

      it('a burst of inserts shares wake-ups, and every job runs', async () => {
        const q = await queue();
        const heard = listen(fn('Burst'));
        try {
          const client = notifying(q);
          let ran = 0;
          const w = new SchwartzWorker(q.client, {
            concurrency: 4,
            pollInterval: 60_000,
            wakeOn: { gearman: servers },
          });
          w.canDo(fn('Burst'), () => void ran++);
          const stop = new AbortController();
          const working = w.work({ signal: stop.signal });
          await sleep(50);
          await Promise.all(Array.from({ length: 40 }, (_, i) => client.insert(fn('Burst'), String(i))));
          await client.insertJobs(Array.from({ length: 10 }, () => ({ funcname: fn('Burst') })));
          await until(() => ran === 50, PROMPT_MS * 2);
          stop.abort();
          await working;
          // At most one submission in flight per function, one more queued behind it: inserts that commit
          // together (SQLite's, in one turn of the event loop) share one; pooled engines' commits spread out.
          const sent = heard.events.filter((e) => e.type === 'sent').length;
          const received = heard.events.filter((e) => e.type === 'received').length;
          assert.ok(sent >= 2 && sent <= 41, `${sent} submissions for 41 inserts`);
          if (dialect === 'sqlite') assert.ok(sent <= 6, `${sent} submissions for 41 inserts`);
          assert.ok(received >= 1 && received <= sent, `${received} wake-ups run for ${sent} submitted`);
        } finally {
          heard.stop();
        }
      });

      it("replaceWith wakes the new jobs' workers; notify() after the caller's own transaction", async () => {
        const q = await queue();
        const parentClient = notifying(q);
        const ran: string[] = [];
        const children = new SchwartzWorker(q.client, { pollInterval: 60_000, wakeOn: { gearman: servers } });
        children.canDo(fn('Child'), (job) => void ran.push(job.arg!.toString()));
        const stop = new AbortController();
        const working = children.work({ signal: stop.signal });
        await sleep(50);

        const parents = new SchwartzWorker(parentClient);
        parents.canDo(fn('Parent'), (job) => job.replaceWith([{ funcname: fn('Child'), arg: 'replaced' }]));
        await parentClient.insert(fn('Parent'));
        assert.equal(await parents.workUntilDone(), 1);
        await until(() => ran.includes('replaced'), PROMPT_MS);

        await q.raw.transaction(async (tx) => {
          await parentClient.insertWith(tx, fn('Child'), 'in my transaction');
        });
        assert.equal(await parentClient.notify(fn('Child')), true);
        await until(() => ran.includes('in my transaction'), PROMPT_MS);
        stop.abort();
        await working;
        assert.equal(await q.client.notify(fn('Child')), false, 'a client without notify sends nothing');
      });

      it('a notification that cannot be sent never fails the insert', async () => {
        const q = await queue();
        const heard = listen(fn('Unheard'));
        try {
          const client = notifying(q, { gearman: [`127.0.0.1:${await deadPort()}`], submitTimeout: 500 });
          const handle = await client.insert(fn('Unheard'), 'x');
          assert.ok(handle);
          assert.equal(await client.notify(fn('Unheard')), false);
          await until(() => heard.events.filter((e) => e.type === 'error').length >= 2);
          const error = heard.events.find((e) => e.type === 'error');
          assert.ok(error?.type === 'error' && error.error instanceof Error);
          assert.equal((await q.client.listJobs({ funcname: fn('Unheard') })).length, 1);
          await client.close();
          assert.equal(await client.notify(fn('Unheard')), false, 'closed: nothing sent');
        } finally {
          heard.stop();
        }
      });

      it("uses the application's GearmanClient and GearmanWorker and leaves them open", async () => {
        const q = await queue();
        const gclient = new GearmanClient({ servers });
        const gworker = new GearmanWorker({ servers });
        try {
          const client = notifying(q, { gearman: gclient, functionPrefix: 'my-wake:' });
          const ran: string[] = [];
          const w = new SchwartzWorker(q.client, {
            pollInterval: 60_000,
            wakeOn: { gearman: gworker, functionPrefix: 'my-wake:' },
          });
          w.canDo(fn('Own'), (job) => void ran.push(job.arg!.toString()));
          const stop = new AbortController();
          const working = w.work({ signal: stop.signal });
          await sleep(50);
          // A function added while work() runs is listened for too.
          w.canDo(fn('Added'), (job) => void ran.push(job.arg!.toString()));
          await sleep(50);
          await client.insert(fn('Own'), 'own');
          await until(() => ran.includes('own'), PROMPT_MS);
          await client.insert(fn('Added'), 'added');
          await until(() => ran.includes('added'), PROMPT_MS);
          stop.abort();
          await working;
          assert.deepEqual(gworker.functions, [], 'unregistered when work() ended');
          await client.close();
          // Both still usable.
          await gclient.submitBackground('my-wake:noop', '');
          gworker.register('still-open', () => {});
        } finally {
          await gclient.close();
          await gworker.close();
        }
      });

      it('a wake() that comes during a search makes work() search again instead of waiting', async () => {
        const q = await queue();
        let searches = 0;
        const w = new SchwartzWorker(q.client, {
          pollInterval: 60_000,
          canGrab: () => {
            // The first search is woken while it runs; the second is not.
            if (++searches === 1) w.wake();
            return true;
          },
        });
        w.canDo(fn('Latch'), () => {});
        const stop = new AbortController();
        const working = w.work({ signal: stop.signal });
        await until(() => searches >= 2);
        await sleep(100);
        stop.abort();
        await working;
        assert.equal(searches, 2);
      });
    });
  }

  it('checks notify and wakeOn options', () => {
    const bad = (fn: () => unknown) => assert.throws(fn, (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'));
    const databases = [{ dsn: 'sqlite::memory:' }];
    bad(() => new SchwartzClient({ databases, notify: null as never }));
    bad(() => new SchwartzClient({ databases, notify: { gearman: [] } }));
    bad(() => new SchwartzClient({ databases, notify: { gearman: ['no such:host:99999'] } }));
    bad(() => new SchwartzClient({ databases, notify: { gearman: {} as never } }));
    bad(() => new SchwartzClient({ databases, notify: { gearman: servers, functionPrefix: 1 as never } }));
    bad(() => new SchwartzClient({ databases, notify: { gearman: servers, submitTimeout: 0 } }));
    const client = new SchwartzClient({ databases });
    bad(() => new SchwartzWorker(client, { wakeOn: null as never }));
    bad(() => new SchwartzWorker(client, { wakeOn: { gearman: [] } }));
    bad(() => new SchwartzWorker(client, { wakeOn: { gearman: ['127.0.0.1:0'] } }));
    bad(() => new SchwartzWorker(client, { wakeOn: { gearman: 'host' as never } }));
  });

  it('a funcname gearman refuses goes without wake-ups, and work() still runs', async () => {
    const heard = listen('é');
    const client = new SchwartzClient({ databases: [{ dsn: 'sqlite::memory:' }] });
    try {
      const w = new SchwartzWorker(client, { pollInterval: 60_000, wakeOn: { gearman: servers } });
      // 255 characters, 510 bytes: with the prefix past gearman's 512-byte function names.
      w.canDo('é'.repeat(255), () => {});
      const stop = new AbortController();
      const working = w.work({ signal: stop.signal });
      await until(() => heard.events.some((e) => e.type === 'error'));
      stop.abort();
      await working;
    } finally {
      heard.stop();
      await client.close();
    }
  });
});
