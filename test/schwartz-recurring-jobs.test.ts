/**
 * Recurring jobs on every engine: each due time becomes exactly one ordinary TheSchwartz job (uniqkey
 * `cron:<name>:<due>`, run_after the due time) however many schedulers — separate clients, as separate processes
 * would be — tick at once; occurrences are queued ahead, so a job that already ran is never queued again; the
 * catch-up policy; one home database per schedule; retries after a failed insert; `run()` in real time; and a Perl
 * worker running what the scheduler queued.
 */

import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  isSchwartzError,
  SCHEDULE_CHANNEL,
  SchwartzClient,
  type SchwartzScheduleEvent,
  SchwartzScheduler,
  SchwartzWorker,
} from '../src/schwartz/index.ts';
import { requirePackage, requireTool } from './helpers/memcached-real.ts';
import { dbiDatabase, freshPrefix, newQueue, runPerlSchwartz, type TestQueue } from './helpers/schwartz-perl.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

const MIN = 60_000;
/** 2023-01-01 10:00:30 UTC: in the past, so the jobs queued are runnable at once. */
const T0 = Date.UTC(2023, 0, 1, 10, 0, 30);
const sec = (ms: number) => Math.floor(ms / 1000);

const DBD_PACKAGE = { sqlite: 'libdbd-sqlite3-perl', mysql: 'libdbd-mysql-perl', postgres: 'libdbd-pg-perl' } as const;

describe('TheSchwartz recurring jobs', { concurrency: 3 }, () => {
  for (const [dialect, skip] of allDialects()) {
    describe(dialect, { skip, concurrency: 1 }, () => {
      let td: TestDatabase;
      const queues: TestQueue[] = [];
      const clients: SchwartzClient[] = [];
      const queue = async (options: Parameters<typeof newQueue>[1] = {}) => {
        const q = await newQueue(td, options);
        queues.push(q);
        return q;
      };
      /** Another "process": its own client on the same tables. */
      const peer = (q: TestQueue) => {
        const c = new SchwartzClient({ databases: [{ dsn: td.location, prefix: q.prefix }], connections: 2 });
        clients.push(c);
        return c;
      };
      const jobs = (q: TestQueue) =>
        q.raw.query<{ uniqkey: string; run_after: number; arg: Buffer | null; priority: number | null }>(
          `SELECT uniqkey, run_after, arg, priority FROM ${q.table('job')} ORDER BY run_after, jobid`,
        );
      /** Runs what is runnable, recording each job's uniqkey. */
      const drain = async (client: SchwartzClient, funcname: string) => {
        const ran: string[] = [];
        const w = new SchwartzWorker(client);
        w.canDo(funcname, (job) => void ran.push(job.uniqkey as string));
        await w.workUntilDone();
        await w.close();
        return ran;
      };

      before(async () => {
        td = await createTestDatabase(dialect, 'schwartzcron');
      });
      after(async () => {
        for (const c of clients) await c.close();
        for (const q of queues) await q.close();
        await td?.drop();
      });

      it('queues each due time once, ahead of time, however many schedulers tick together', async () => {
        const q = await queue();
        const schedule = { name: 'every-minute', funcname: 'Cron::Tick', cron: '* * * * *' };
        const schedulers = [q.client, peer(q), peer(q)].map((c) => new SchwartzScheduler(c, { schedules: [schedule] }));
        const due1 = T0 + 30_000; // 10:01:00

        const first = (await Promise.all(schedulers.map((s) => s.tick(T0)))).flat();
        assert.deepEqual(first.map((r) => r.outcome).sort(), ['exists', 'exists', 'queued']);
        assert.ok(first.every((r) => r.due.getTime() === due1 && !r.catchUp && r.name === 'every-minute'));
        assert.deepEqual(
          (await jobs(q)).map((j) => [j.uniqkey, j.run_after]),
          [[`cron:every-minute:${sec(due1)}`, sec(due1)]],
        );
        // Known queued: later ticks before it falls due do nothing, not even an insert.
        assert.deepEqual((await Promise.all(schedulers.map((s) => s.tick(T0 + 20_000)))).flat(), []);

        // It runs (its time has come in the real clock long ago) and is deleted; its uniqkey is free again. A
        // scheduler starting now queues only what is still to come, so it is not queued twice.
        assert.deepEqual(await drain(q.client, 'Cron::Tick'), [`cron:every-minute:${sec(due1)}`]);
        const late = new SchwartzScheduler(peer(q), { schedules: [schedule] });
        const started = await late.tick(due1 + 5000);
        assert.deepEqual(
          started.map((r) => [r.outcome, r.due.getTime()]),
          [['queued', due1 + MIN]],
        );
        // The others, when 10:01 falls due, find 10:02 queued already.
        const second = (await Promise.all(schedulers.map((s) => s.tick(due1 + 1)))).flat();
        assert.deepEqual(
          second.map((r) => [r.outcome, r.due.getTime()]),
          [
            ['exists', due1 + MIN],
            ['exists', due1 + MIN],
            ['exists', due1 + MIN],
          ],
        );
        // Three minutes of ticking by all four: one job per minute.
        for (let t = due1 + MIN; t <= due1 + 3 * MIN; t += MIN / 2) {
          await Promise.all([...schedulers, late].map((s) => s.tick(t)));
        }
        const keys = (await jobs(q)).map((j) => j.uniqkey);
        assert.deepEqual(
          keys,
          [1, 2, 3, 4].map((m) => `cron:every-minute:${sec(due1 + m * MIN)}`),
        );
        assert.deepEqual((await drain(q.client, 'Cron::Tick')).sort(), keys);
      });

      it("catches up on the latest missed occurrence with catchUp 'latest', once, and only when nobody ran", async () => {
        const q = await queue();
        const funcname = `Cron::Five::${dialect}`;
        const events: SchwartzScheduleEvent[] = [];
        // The channel is process-wide and the engines run side by side: keep this test's events.
        const listen = (m: unknown) => {
          const e = m as SchwartzScheduleEvent;
          if (e.funcname === funcname) events.push(e);
        };
        diagnostics.subscribe(SCHEDULE_CHANNEL, listen);
        try {
          const latest = { name: 'five', funcname, cron: '*/5 * * * *', catchUp: 'latest' as const };
          const none = { name: 'five-none', funcname, cron: '*/5 * * * *' };
          const t = Date.UTC(2023, 0, 1, 10, 7, 30);
          const a = new SchwartzScheduler(q.client, { schedules: [latest, none] });
          const b = new SchwartzScheduler(peer(q), { schedules: [latest] });
          const ra = await a.tick(t);
          assert.deepEqual(
            ra.map((r) => [r.name, r.outcome, new Date(r.due).toISOString().slice(11, 16), r.catchUp]),
            [
              ['five', 'queued', '10:10', false],
              ['five', 'queued', '10:05', true],
              ['five-none', 'queued', '10:10', false],
            ],
          );
          // Another scheduler starting now finds 10:10 queued: someone is running, no catch-up from it.
          const rb = await b.tick(t + 1000);
          assert.deepEqual(
            rb.map((r) => [r.outcome, r.catchUp]),
            [['exists', false]],
          );
          assert.deepEqual(
            (await jobs(q)).map((j) => j.uniqkey),
            [`cron:five:${sec(t - 150_000)}`, `cron:five:${sec(t + 150_000)}`, `cron:five-none:${sec(t + 150_000)}`],
          );
          assert.deepEqual(
            events.map((e) => [e.type, e.name, e.catchUp]),
            [
              ['queued', 'five', false],
              ['queued', 'five', true],
              ['queued', 'five-none', false],
              ['exists', 'five', false],
            ],
          );
          const queued = events[0] as Extract<SchwartzScheduleEvent, { type: 'queued' }>;
          assert.equal(queued.due, sec(t + 150_000));
          assert.match(queued.handle, /^[0-9a-f]{32}-\d+$/);
        } finally {
          diagnostics.unsubscribe(SCHEDULE_CHANNEL, listen);
        }
      });

      it("builds the jobs' arg, priority and coalesce; every: counts from the epoch", async () => {
        const q = await queue();
        const s = new SchwartzScheduler(q.client, {
          schedules: [
            {
              name: 'sweep',
              funcname: 'Cron::Sweep',
              every: 15_000,
              arg: (due) => JSON.stringify({ due: due.toISOString() }),
              priority: 7,
              coalesce: 'sweeps',
            },
            { name: 'static', funcname: 'Cron::Static', every: 3_600_000, arg: Buffer.from([0, 1, 2]) },
          ],
        });
        assert.equal(s.next('sweep', T0)?.toISOString(), '2023-01-01T10:00:45.000Z');
        assert.equal(s.next('static', T0)?.toISOString(), '2023-01-01T11:00:00.000Z');
        assert.throws(
          () => s.next('nope'),
          (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'),
        );
        const results = await s.tick(new Date(T0));
        assert.deepEqual(
          results.map((r) => r.outcome),
          ['queued', 'queued'],
        );
        const rows = await jobs(q);
        assert.equal(rows[0]?.uniqkey, `cron:sweep:${sec(T0) + 15}`);
        assert.equal(rows[0]?.arg?.toString(), '{"due":"2023-01-01T10:00:45.000Z"}');
        assert.equal(rows[0]?.priority, 7);
        assert.deepEqual(rows[1]?.arg, Buffer.from([0, 1, 2]));
        const listed = await q.client.listJobs({ funcname: 'Cron::Sweep', coalesce: 'sweeps' });
        assert.equal(listed.length, 1);
        assert.equal(String(listed[0]?.handle), String(results[0]?.handle));
      });

      it('sends all of a schedule to one database, the same for every process whatever its database order', async () => {
        const q = await queue();
        const other = freshPrefix();
        // The same physical database under two DSN spellings and prefixes: two TheSchwartz databases.
        const dbs = [
          { dsn: td.location, prefix: q.prefix },
          { ...dbiDatabase(td), prefix: other },
        ];
        const forward = new SchwartzClient({ databases: dbs, connections: 2 });
        const backward = new SchwartzClient({ databases: [...dbs].reverse(), connections: 2 });
        clients.push(forward, backward);
        await forward.ensureSchema();
        const names = Array.from({ length: 8 }, (_, i) => `s${i}`);
        const schedules = names.map((name) => ({ name, funcname: 'Cron::Home', every: 60_000 }));
        const r1 = await new SchwartzScheduler(forward, { schedules }).tick(T0);
        const r2 = await new SchwartzScheduler(backward, { schedules }).tick(T0);
        assert.ok(r1.every((r) => r.outcome === 'queued'));
        assert.ok(r2.every((r) => r.outcome === 'exists'));
        const homes = new Set(r1.map((r) => r.handle?.database));
        assert.equal(homes.size, 2, 'eight names spread over both databases');
        const all = await forward.listJobs({ funcname: 'Cron::Home' });
        assert.equal(all.length, 8);
      });

      it('reports a failed insert (or arg function) and queues the occurrence on a later tick', async () => {
        // No tables under this prefix yet: the insert fails.
        const prefix = freshPrefix();
        const client = new SchwartzClient({ databases: [{ dsn: td.location, prefix }], connections: 2 });
        clients.push(client);
        let argFails = true;
        const s = new SchwartzScheduler(client, {
          schedules: [
            { name: 'r', funcname: 'Cron::Retry', cron: '0 * * * *', catchUp: 'latest' },
            {
              name: 'a',
              funcname: 'Cron::Arg',
              cron: '0 * * * *',
              arg: () => {
                if (argFails) throw new Error('no arg yet');
                return 'ok';
              },
            },
          ],
        });
        const [failed, badArg] = await s.tick(T0);
        assert.equal(failed?.outcome, 'error');
        assert.ok(isSchwartzError(failed?.error, 'SCHWARTZ_ERR_NO_DATABASES'), String(failed?.error));
        assert.ok(failed?.error?.cause);
        assert.equal(badArg?.outcome, 'error');
        assert.equal(badArg?.error?.message, 'no arg yet');
        await client.ensureSchema();
        argFails = false;
        const later = await s.tick(T0 + 1000);
        assert.deepEqual(
          later.map((r) => [r.name, r.outcome, r.catchUp, new Date(r.due).toISOString().slice(11, 16)]),
          [
            ['r', 'queued', false, '11:00'],
            ['r', 'queued', true, '10:00'],
            ['a', 'queued', false, '11:00'],
          ],
        );
      });

      it('run() queues in real time, one job per due time across processes, until closed or aborted', async () => {
        const q = await queue();
        const schedules = [{ name: 'second', funcname: 'Cron::Second', every: 1000 }];
        const a = new SchwartzScheduler(q.client, { schedules });
        const b = new SchwartzScheduler(peer(q), { schedules, retryInterval: 100 });
        const stop = new AbortController();
        const ran: string[] = [];
        const w = new SchwartzWorker(q.client, { pollInterval: 50 });
        w.canDo('Cron::Second', (job) => void ran.push(job.uniqkey as string));
        const working = w.work({ signal: stop.signal });
        const runningA = a.run();
        const runningB = b.run({ signal: stop.signal });
        await assert.rejects(a.run(), (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'));
        const started = Date.now();
        await sleep(2600);
        await a.close();
        stop.abort();
        await Promise.all([runningA, runningB, working]);
        await assert.rejects(a.run(), (e) => isSchwartzError(e, 'SCHWARTZ_ERR_CLOSED'));
        const left = (await jobs(q)).map((j) => j.uniqkey);
        const all = [...ran, ...left];
        assert.equal(new Set(all).size, all.length, `a due time twice: ${all.join(' ')}`);
        assert.ok(ran.length >= 1, 'at least one second fell due and ran');
        assert.ok(all.length <= Math.ceil((Date.now() - started) / 1000) + 2, all.join(' '));
        for (const key of ran) assert.ok(Number(key.split(':')[2]) * 1000 <= Date.now());
      });

      it('refuses bad schedules', () => {
        const client = new SchwartzClient({ databases: [{ dsn: 'sqlite::memory:' }] });
        const bad = (schedules: unknown, extra: object = {}) =>
          assert.throws(
            () => new SchwartzScheduler(client, { schedules: schedules as never, ...extra }),
            (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'),
            JSON.stringify(schedules),
          );
        const ok = { name: 'n', funcname: 'F', cron: '* * * * *' };
        bad(undefined);
        bad([null]);
        bad([{ ...ok, name: '' }]);
        bad([{ ...ok, name: 'has space' }]);
        bad([{ ...ok, name: 'x'.repeat(201) }]);
        bad([ok, ok]);
        bad([{ ...ok, funcname: '' }]);
        bad([{ ...ok, priority: 1.5 }]);
        bad([{ ...ok, cron: undefined }]);
        bad([{ ...ok, every: 1000 }]);
        bad([{ ...ok, cron: '0 0 30 2 *' }]);
        bad([{ ...ok, cron: '* * *' }]);
        bad([{ ...ok, timezone: 'Nowhere/Land' }]);
        bad([{ name: 'e', funcname: 'F', every: 1500 }]);
        bad([{ name: 'e', funcname: 'F', every: 0 }]);
        bad([{ name: 'e', funcname: 'F', every: 60_000, timezone: 'UTC' }]);
        bad([{ ...ok, catchUp: 'all' }]);
        bad([ok], { retryInterval: 0 });
        assert.throws(
          () => new SchwartzScheduler(client, null as never),
          (e) => isSchwartzError(e),
        );
      });

      it('Perl workers run the jobs the scheduler queues', async (t) => {
        if (
          !(
            requireTool(t, '/usr/bin/perl') &&
            requirePackage(t, 'libtheschwartz-perl') &&
            requirePackage(t, DBD_PACKAGE[dialect])
          )
        ) {
          return;
        }
        const dbi = dbiDatabase(td);
        const q = await queue({ database: dbi });
        const s = new SchwartzScheduler(q.client, {
          schedules: [{ name: 'perl', funcname: 'Perl::Complete', cron: '* * * * *', arg: 'from cron' }],
        });
        await s.tick(T0);
        await s.tick(T0 + MIN);
        const [worked] = await runPerlSchwartz({ databases: [{ ...dbi, prefix: q.prefix }] }, [
          { op: 'work', can_do: ['Perl::Complete'] },
        ]);
        assert.deepEqual(
          (worked ?? []).map((r) => [r.uniqkey, Buffer.from(String(r.arg_hex), 'hex').toString()]).sort(),
          [
            [`cron:perl:${sec(T0) + 30}`, 'from cron'],
            [`cron:perl:${sec(T0) + 90}`, 'from cron'],
          ],
        );
        assert.deepEqual(await jobs(q), []);
      });
    });
  }
});
