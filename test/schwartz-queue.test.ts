/**
 * TheSchwartz 1.12's semantics on every engine: the schema, inserts (uniqkey, transactions, byte-exact args),
 * handles, listing, every outcome (completed, retries with backoff, permanent failure, declined, replace_with, the
 * did-something guard), fairness, priorities and floor, coalescing grabs, exit-status and error purges — and what
 * we add: concurrency, per-function limits, lease renewal and loss, graceful close, wake-ups and the `canGrab` hook.
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ensureSchema,
  INSERT_CHANNEL,
  isSchwartzError,
  JOB_CHANNEL,
  type Job,
  SCHWARTZ_ERROR_CODES,
  SchwartzClient,
  type SchwartzInsertEvent,
  type SchwartzJobEvent,
  SchwartzWorker,
  schemaStatements,
  schwartzTables,
} from '../src/schwartz/index.ts';
import { openDatabase } from '../src/sql/index.ts';
import { freshPrefix, newQueue, type TestQueue } from './helpers/schwartz-perl.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

const now = () => Math.floor(Date.now() / 1000);

/** Collects the events published on `channel` until `stop()`. */
function listen<T>(channel: string): { events: T[]; stop(): void } {
  const events: T[] = [];
  const fn = (m: unknown) => events.push(m as T);
  diagnostics.subscribe(channel, fn);
  return { events, stop: () => diagnostics.unsubscribe(channel, fn) };
}

/** Resolves once `check` is true (polling), or fails after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

/** A promise with its resolve function. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

describe('TheSchwartz queue', { concurrency: 3 }, () => {
  for (const [dialect, skip] of allDialects()) {
    describe(dialect, { skip, concurrency: dialect === 'sqlite' ? 1 : 3 }, () => {
      let td: TestDatabase;
      const queues: TestQueue[] = [];
      const queue = async (options: Parameters<typeof newQueue>[1] = {}) => {
        const q = await newQueue(td, options);
        queues.push(q);
        return q;
      };
      const jobRows = (q: TestQueue) => q.raw.query(`SELECT * FROM ${q.table('job')} ORDER BY jobid`);

      before(async () => {
        td = await createTestDatabase(dialect, 'schwartz');
      });
      after(async () => {
        for (const q of queues) await q.close();
        await td?.drop();
      });

      it('creates TheSchwartz tables with the prefix, idempotently, with the columns Perl reads', async () => {
        const q = await queue();
        await q.client.ensureSchema();
        await ensureSchema(q.raw, q.prefix);
        await q.raw.query(
          `SELECT jobid, funcid, arg, uniqkey, insert_time, run_after, grabbed_until, priority, ${dialect === 'mysql' ? '`coalesce`' : '"coalesce"'} FROM ${q.table('job')}`,
        );
        await q.raw.query(`SELECT funcid, funcname FROM ${q.table('funcmap')}`);
        await q.raw.query(`SELECT error_time, jobid, message, funcid FROM ${q.table('error')}`);
        await q.raw.query(`SELECT jobid, funcid, status, completion_time, delete_after FROM ${q.table('exitstatus')}`);
        await q.raw.query(`SELECT jobid, notekey, value FROM ${q.table('note')}`);
        assert.ok(schemaStatements(dialect, 'x_').every((s) => /\bx_(job|funcmap|note|error|exitstatus)\b/.test(s)));
        assert.throws(
          () => schwartzTables('bad-prefix'),
          (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'),
        );
      });

      it('inserts, hands out TheSchwartz handles and looks jobs up', async () => {
        const q = await queue();
        const hash = createHash('md5').update(`${td.location}|`).digest('hex');
        assert.deepEqual(q.client.databaseHashes, [hash]);
        const before = now();
        const h = await q.client.insert('MyApp::Resize', 'photo 42', { uniqkey: 'p42', priority: 7, coalesce: 'u1' });
        assert.ok(h);
        assert.match(String(h), new RegExp(`^${hash}-\\d+$`));
        assert.equal(JSON.stringify({ h }), `{"h":"${h}"}`);
        const job = await q.client.lookupJob(String(h));
        assert.ok(job);
        assert.equal(job.funcname, 'MyApp::Resize');
        assert.deepEqual(job.arg, Buffer.from('photo 42'));
        assert.equal(job.uniqkey, 'p42');
        assert.equal(job.priority, 7);
        assert.equal(job.coalesce, 'u1');
        assert.equal(job.grabbedUntil, 0);
        assert.ok(job.runAfter >= before && job.runAfter <= now());
        assert.ok(job.insertTime !== undefined && job.insertTime >= before);
        assert.equal(await h.isPending(), true);
        assert.equal(String(q.client.handle(String(h))), String(h));
        // One funcmap row per function, created on demand.
        await q.client.insert('MyApp::Resize', 'again');
        const maps = await q.raw.query(`SELECT * FROM ${q.table('funcmap')}`);
        assert.equal(maps.length, 1);
        // A later run_after, as unix seconds or a Date.
        const later = await q.client.insert('MyApp::Later', undefined, { runAfter: new Date((now() + 500) * 1000) });
        assert.equal((await q.client.lookupJob(later!))?.runAfter, now() + 500);
        assert.equal((await q.client.lookupJob(later!))?.arg, undefined);
        await assert.rejects(q.client.lookupJob('nope'), (e) => isSchwartzError(e, 'SCHWARTZ_ERR_BAD_HANDLE'));
        await assert.rejects(q.client.lookupJob(`${'0'.repeat(32)}-1`), (e) =>
          isSchwartzError(e, 'SCHWARTZ_ERR_UNKNOWN_DATABASE'),
        );
      });

      it('passes arguments byte-exact: Buffers untouched, strings as UTF-8', async () => {
        const q = await queue();
        const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const text = 'naïve — 日本語 ✓';
        await q.client.insert('Args', bytes);
        await q.client.insert('Args', text);
        await q.client.insert('Args', new Uint8Array([0, 255, 0]));
        await q.client.insert('Args', Buffer.alloc(0));
        const seen: (Buffer | undefined)[] = [];
        const w = new SchwartzWorker(q.client);
        w.canDo('Args', (job) => {
          seen.push(job.arg);
        });
        assert.equal(await w.workUntilDone(), 4);
        const sorted = seen.map((b) => b?.toString('hex')).sort();
        assert.deepEqual(sorted, ['', '00ff00', bytes.toString('hex'), Buffer.from(text).toString('hex')].sort());
      });

      it('refuses a duplicate uniqkey per function and accepts it again once the job is gone', async () => {
        const q = await queue();
        const inserts = listen<SchwartzInsertEvent>(INSERT_CHANNEL);
        const h = await q.client.insert('U', 'a', { uniqkey: 'k' });
        assert.ok(h);
        assert.equal(await q.client.insert('U', 'b', { uniqkey: 'k' }), undefined);
        assert.ok(await q.client.insert('Other', 'c', { uniqkey: 'k' }));
        assert.ok(await q.client.insert('U', 'd'));
        assert.ok(await q.client.insert('U', 'e'));
        inserts.stop();
        assert.deepEqual(
          inserts.events.filter((e) => e.funcname === 'U' && e.database === h!.database).map((e) => e.type),
          ['inserted', 'duplicate', 'inserted', 'inserted'],
        );
        const w = new SchwartzWorker(q.client);
        w.canDo('U', () => {});
        await w.workUntilDone();
        assert.ok(await q.client.insert('U', 'f', { uniqkey: 'k' }));
        // The duplicate did not mark the database dead.
        assert.ok(await q.client.insert('U', 'g'));
      });

      it('inserts several jobs in one transaction, skipping duplicates', async () => {
        const q = await queue();
        await q.client.insert('Many', 'x', { uniqkey: 'dup' });
        const handles = await q.client.insertJobs([
          { funcname: 'Many', arg: '1' },
          { funcname: 'Many', arg: '2', uniqkey: 'dup' },
          { funcname: 'Many2', arg: '3', priority: 3 },
        ]);
        assert.equal(handles.length, 3);
        assert.ok(handles[0] && handles[2]);
        assert.equal(handles[1], undefined);
        assert.deepEqual(await q.client.insertJobs([]), []);
        assert.equal((await jobRows(q)).length, 3);
      });

      it("inserts inside the caller's transaction: committed with it, gone with its rollback", async () => {
        const q = await queue();
        const app = await openDatabase(td.location, { connections: 2 });
        try {
          const committed = await app.transaction((tx) => q.client.insertWith(tx, 'InTx', 'yes'));
          assert.ok(committed);
          await assert.rejects(
            app.transaction(async (tx) => {
              await q.client.insertWith(tx, 'RolledBack', 'no', { database: td.location });
              throw new Error('rollback');
            }),
            /rollback/,
          );
          const rows = await jobRows(q);
          assert.equal(rows.length, 1);
          // The rolled-back funcmap row was not cached: the name gets a real row now.
          const h = await q.client.insert('RolledBack', 'later');
          const job = await q.client.lookupJob(h!);
          assert.equal(job?.funcname, 'RolledBack');
          const [tx] = await Promise.all([
            app.transaction((t) =>
              q.client.insertJobsWith(t, [{ funcname: 'InTx', arg: 'a' }], { database: h!.database }),
            ),
          ]);
          assert.equal(tx.length, 1);
          await assert.rejects(
            app.transaction((t) => q.client.insertWith(t, 'X', 'y', { database: 'dbi:nope:x' })),
            (e) => isSchwartzError(e, 'SCHWARTZ_ERR_UNKNOWN_DATABASE'),
          );
        } finally {
          await app.close();
        }
      });

      it('refuses invalid jobs before touching a database', async () => {
        const q = await queue();
        const bad = async (p: Promise<unknown>) =>
          assert.rejects(p, (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'));
        await bad(q.client.insert('', 'x'));
        await bad(q.client.insert('F', 'x', { uniqkey: 'u'.repeat(256) }));
        await bad(q.client.insert('F', 'x', { coalesce: 'c'.repeat(256) }));
        await bad(q.client.insert('F', 'x', { priority: 1.5 }));
        await bad(q.client.insert('F', 'x', { priority: dialect === 'postgres' ? 40_000 : 70_000 }));
        await bad(q.client.insert('F', 'x', { runAfter: -5 }));
        await bad(q.client.insert('F', 42 as unknown as string));
        assert.throws(
          () => new SchwartzClient({ databases: [{ dsn: td.location }], floor: 3 }),
          (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'),
        );
        assert.throws(
          () => new SchwartzClient({ databases: [] }),
          (e) => isSchwartzError(e),
        );
        assert.throws(
          () => new SchwartzClient({ databases: [{ dsn: td.location }, { dsn: td.location }] }),
          (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'),
        );
        // Nothing was marked dead.
        assert.ok(await q.client.insert('F', 'fine'));
      });

      it('lists jobs by function, time, jobid, coalesce value or prefix, and limit', async () => {
        const q = await queue({ prioritize: true });
        const t = now();
        const a = await q.client.insert('L::A', '1', { coalesce: 'user_1', priority: 1 });
        await q.client.insert('L::A', '2', { coalesce: 'userX1', priority: 9 });
        await q.client.insert('L::B', '3', { runAfter: t + 1000, priority: 5 });
        assert.deepEqual(
          (await q.client.listJobs({ funcname: ['L::A', 'L::B'] })).map((j) => j.arg?.toString()),
          ['2', '3', '1'],
        );
        assert.deepEqual(
          (await q.client.listJobs({ funcname: ['L::A', 'L::B'], runAfter: t + 10 })).map((j) => j.arg?.toString()),
          ['2', '1'],
        );
        assert.equal((await q.client.listJobs({ funcname: 'L::A', jobid: a!.jobid }))[0]?.arg?.toString(), '1');
        assert.deepEqual(
          (await q.client.listJobs({ funcname: 'L::A', coalesce: 'user_1' })).map((j) => j.arg?.toString()),
          ['1'],
        );
        // `_` is a literal in the prefix, not LIKE's any-character.
        assert.deepEqual(
          (await q.client.listJobs({ funcname: 'L::A', coalescePrefix: 'user_' })).map((j) => j.arg?.toString()),
          ['1'],
        );
        assert.equal((await q.client.listJobs({ funcname: 'L::A', limit: 1 })).length, 1);
        assert.deepEqual(await q.client.listJobs({ funcname: 'Never::Inserted' }), []);
        const listed = await q.client.listJobs({ funcname: 'L::B' });
        assert.equal(listed[0]?.funcname, 'L::B');
        assert.equal(String(listed[0]?.handle).split('-')[0], q.client.databaseHashes[0]);
      });

      it('completes: keeps exit status 0 when asked, deletes the job', async () => {
        const q = await queue();
        const kept = await q.client.insert('Done::Kept', 'a');
        const unkept = await q.client.insert('Done::Plain', 'b');
        const w = new SchwartzWorker(q.client);
        w.canDo('Done::Kept', (job) => job.completed(), { keepExitStatusFor: 600 });
        w.canDo('Done::Plain', () => {}); // resolving without an outcome completes
        assert.equal(await w.workUntilDone(), 2);
        assert.equal(await kept!.isPending(), false);
        assert.equal(await kept!.exitStatus(), 0);
        assert.equal(await unkept!.exitStatus(), undefined);
        const [status] = await q.raw.query<{ completion_time: number; delete_after: number }>(
          `SELECT * FROM ${q.table('exitstatus')}`,
        );
        assert.equal(Number(status?.delete_after) - Number(status?.completion_time), 600);
        assert.equal((await jobRows(q)).length, 0);
      });

      it('fails with retries: max_retries + 1 runs, failure log, final exit status', async () => {
        const q = await queue();
        const h = await q.client.insert('Flaky', 'x');
        const thrower = await q.client.insert('Thrower', 'y');
        const runs: number[] = [];
        const w = new SchwartzWorker(q.client);
        w.canDo(
          'Flaky',
          async (job) => {
            runs.push(await job.failures());
            await job.failed(`attempt ${runs.length}`, 5);
          },
          { maxRetries: 2, keepExitStatusFor: 600 },
        );
        w.canDo(
          'Thrower',
          () => {
            throw new Error('boom');
          },
          { keepExitStatusFor: 600 },
        );
        assert.equal(await w.workUntilDone(), 4);
        assert.deepEqual(runs, [0, 1, 2]);
        assert.deepEqual(await h!.failureLog(), ['attempt 1', 'attempt 2', 'attempt 3']);
        assert.equal(await h!.failures(), 3);
        assert.equal(await h!.exitStatus(), 5);
        assert.equal(await h!.isPending(), false);
        assert.deepEqual(await thrower!.failureLog(), ['boom']);
        assert.equal(await thrower!.exitStatus(), 1);
      });

      it('retries after retryDelay(failures) seconds, releasing the job', async () => {
        const q = await queue();
        const h = await q.client.insert('Backoff', 'x');
        const w = new SchwartzWorker(q.client);
        const seen: number[] = [];
        w.canDo(
          'Backoff',
          () => {
            throw new Error('later');
          },
          {
            maxRetries: 5,
            retryDelay: (failures) => {
              seen.push(failures);
              return 100 * failures;
            },
          },
        );
        const t = now();
        assert.equal(await w.workUntilDone(), 1);
        assert.deepEqual(seen, [1]);
        const job = await q.client.lookupJob(h!);
        assert.ok(job);
        assert.equal(job.grabbedUntil, 0);
        assert.ok(job.runAfter >= t + 100 && job.runAfter <= now() + 100, String(job.runAfter - t));
        assert.equal(await w.workOnce(), false);
      });

      it('fails permanently whatever max_retries says', async () => {
        const q = await queue();
        const h = await q.client.insert('Perm', 'x');
        const w = new SchwartzWorker(q.client);
        w.canDo('Perm', (job) => job.permanentFailure('no way', 7), { maxRetries: 5, keepExitStatusFor: 60 });
        assert.equal(await w.workUntilDone(), 1);
        assert.equal(await h!.exitStatus(), 7);
        assert.deepEqual(await h!.failureLog(), ['no way']);
        assert.equal(await h!.isPending(), false);
      });

      it('declines: with a time the job is released to it, without one it waits out its lease', async () => {
        const q = await queue();
        const later = await q.client.insert('Decline::Later', 'a');
        const lease = await q.client.insert('Decline::Lease', 'b');
        const w = new SchwartzWorker(q.client);
        const t = now();
        w.canDo('Decline::Later', (job) => job.declined(t + 300));
        w.canDo('Decline::Lease', (job) => job.declined(), { grabFor: 120 });
        assert.equal(await w.workUntilDone(), 2);
        const a = await q.client.lookupJob(later!);
        assert.equal(a?.runAfter, t + 300);
        assert.equal(a?.grabbedUntil, 0);
        const b = await q.client.lookupJob(lease!);
        assert.ok(b && b.grabbedUntil >= t + 120);
        assert.equal(await w.workOnce(), false);
      });

      it('replaces a job with new ones atomically, in its database', async () => {
        const q = await queue();
        const parent = await q.client.insert('Parent', 'p');
        await q.client.insert('Child', 'existing', { uniqkey: 'taken', runAfter: now() + 1000 });
        let children: unknown;
        const ran: string[] = [];
        const w = new SchwartzWorker(q.client);
        w.canDo(
          'Parent',
          async (job) => {
            children = await job.replaceWith([
              { funcname: 'Child', arg: 'c1' },
              { funcname: 'Child', arg: 'c2', uniqkey: 'taken' },
              { funcname: 'Grandchild', arg: 'g' },
            ]);
          },
          { keepExitStatusFor: 60 },
        );
        w.canDo('Child', (job) => {
          ran.push(job.arg!.toString());
        });
        w.canDo('Grandchild', (job) => {
          ran.push(job.arg!.toString());
        });
        assert.equal(await w.workUntilDone(), 3);
        assert.ok(Array.isArray(children));
        const handles = children as (unknown | undefined)[];
        assert.equal(handles.length, 3);
        assert.equal(handles[1], undefined);
        assert.equal(String(handles[0]).split('-')[0], parent!.database);
        assert.deepEqual(ran.sort(), ['c1', 'g']);
        assert.equal(await parent!.exitStatus(), 0);
      });

      it('writes nothing when the lease is gone: replace_with rolls back, outcomes reject', async () => {
        const q = await queue();
        await q.client.insert('Stolen', 's');
        const errors: unknown[] = [];
        const w = new SchwartzWorker(q.client);
        w.canDo('Stolen', async (job) => {
          // Another worker took it over.
          await q.raw.run(`UPDATE ${q.table('job')} SET grabbed_until = ? WHERE jobid = ?`, [now() + 999, job.jobid]);
          try {
            await job.replaceWith([{ funcname: 'Orphan', arg: 'x' }]);
          } catch (err) {
            errors.push(err);
          }
          assert.equal(job.leaseLost, true);
          assert.equal(job.signal.aborted, true);
          assert.equal(await job.completed(), false);
        });
        assert.equal(await w.workUntilDone(), 1);
        assert.equal(errors.length, 1);
        assert.ok(isSchwartzError(errors[0], 'SCHWARTZ_ERR_LEASE_LOST'));
        const rows = await jobRows(q);
        assert.equal(rows.length, 1, 'the replacement was rolled back and the job kept');
      });

      it('takes one outcome per job (did_something): later calls write nothing', async () => {
        const q = await queue();
        const h = await q.client.insert('Once', 'x');
        const results: boolean[] = [];
        const w = new SchwartzWorker(q.client);
        w.canDo(
          'Once',
          async (job) => {
            results.push(await job.completed());
            results.push(await job.failed('late'));
            results.push(await job.declined(now() + 10));
            results.push((await job.replaceWith([{ funcname: 'Once', arg: 'again' }])) !== false);
            throw new Error('after the outcome');
          },
          { keepExitStatusFor: 60 },
        );
        assert.equal(await w.workUntilDone(), 1);
        assert.deepEqual(results, [true, false, false, false]);
        assert.deepEqual(await h!.failureLog(), []);
        assert.equal(await h!.exitStatus(), 0);
        assert.equal((await jobRows(q)).length, 0);
      });

      it('spreads work across functions (a function just worked sits out the next search)', async () => {
        const q = await queue();
        for (const f of ['F::A', 'F::B', 'F::C']) {
          await q.client.insertJobs([1, 2, 3].map((n) => ({ funcname: f, arg: String(n) })));
        }
        const order: string[] = [];
        const w = new SchwartzWorker(q.client);
        for (const f of ['F::A', 'F::B', 'F::C']) w.canDo(f, (job) => void order.push(job.funcname));
        assert.equal(await w.workUntilDone(), 9);
        assert.equal(new Set(order.slice(0, 3)).size, 3, order.join());
        assert.equal(new Set(order.slice(3, 6)).size, 3, order.join());
      });

      it('works higher priorities first with prioritize, and only those at or above floor', async () => {
        const q = await queue({ prioritize: true, floor: 2 });
        for (const p of [1, 9, 5, 3, 5]) await q.client.insert('Prio', String(p), { priority: p });
        await q.client.insert('Prio', 'none');
        const order: string[] = [];
        const w = new SchwartzWorker(q.client);
        w.canDo('Prio', (job) => void order.push(job.arg!.toString()));
        assert.equal(await w.workUntilDone(), 4);
        assert.deepEqual(order, ['9', '5', '5', '3']);
        assert.equal((await jobRows(q)).length, 2);
        // Without a floor, equal priorities go by jobid when the batch is one row (TheSchwartz's own test).
        const q2 = await queue({ prioritize: true, batchSize: 1 });
        for (const p of [4, 4, 8]) await q2.client.insert('Prio', `${p}`, { priority: p });
        const ids: string[] = [];
        const w2 = new SchwartzWorker(q2.client);
        w2.canDo('Prio', (job) => void ids.push(`${job.priority}:${job.jobid}`));
        await w2.workUntilDone();
        assert.deepEqual(
          ids.map((s) => s.split(':')[0]),
          ['8', '4', '4'],
        );
        assert.ok(Number(ids[1]?.split(':')[1]) < Number(ids[2]?.split(':')[1]));
      });

      it('grabs by coalesce value or prefix (find_job_with_coalescing_*)', async () => {
        const q = await queue();
        await q.client.insert('Co', 'a1', { coalesce: 'a.example_1' });
        await q.client.insert('Co', 'a2', { coalesce: 'a.example_1' });
        await q.client.insert('Co', 'b', { coalesce: 'a.exampleX1' });
        const w = new SchwartzWorker(q.client);
        w.canDo('Co', () => {});
        const first = await w.findJobWithCoalescingValue('Co', 'a.example_1');
        assert.ok(first);
        assert.equal(first.coalesce, 'a.example_1');
        assert.ok(first.grabbedUntil > now());
        const second = await w.findJobWithCoalescingPrefix('Co', 'a.example_');
        assert.ok(second);
        assert.notEqual(String(second.jobid), String(first.jobid));
        assert.equal(second.coalesce, 'a.example_1');
        assert.equal(await w.findJobWithCoalescingPrefix('Co', 'a.example_'), undefined);
        assert.ok(await first.completed());
        assert.ok(await second.completed());
        assert.deepEqual(
          (await jobRows(q)).map((r) => String(r.coalesce)),
          ['a.exampleX1'],
        );
        await assert.rejects(w.findJobWithCoalescingValue('Unknown', 'x'), (e) => isSchwartzError(e));
      });

      it('grabs and works a given job only when nobody holds it (grab_and_work_on)', async () => {
        const q = await queue();
        const free = await q.client.insert('Given', 'free', { runAfter: now() + 1000 });
        const held = await q.client.insert('Given', 'held');
        await q.raw.run(`UPDATE ${q.table('job')} SET grabbed_until = ? WHERE jobid = ?`, [now() + 600, held!.jobid]);
        const worked: string[] = [];
        const w = new SchwartzWorker(q.client);
        w.canDo('Given', (job) => void worked.push(job.arg!.toString()));
        assert.equal(await w.grabAndWorkOn(held!), false);
        assert.equal(await w.grabAndWorkOn(String(free)), true);
        assert.equal(await w.grabAndWorkOn(free!), false);
        assert.deepEqual(worked, ['free']);
      });

      it('runs concurrency jobs at once, each grabbed on its own, within per-function limits', async () => {
        const q = await queue();
        await q.client.insertJobs(Array.from({ length: 6 }, (_, i) => ({ funcname: 'Par', arg: String(i) })));
        await q.client.insertJobs(Array.from({ length: 3 }, (_, i) => ({ funcname: 'Solo', arg: String(i) })));
        let running = 0;
        let maxPar = 0;
        let solo = 0;
        let maxSolo = 0;
        const leases = new Set<string>();
        const w = new SchwartzWorker(q.client, { concurrency: 3 });
        w.canDo('Par', async (job) => {
          running++;
          maxPar = Math.max(maxPar, running);
          leases.add(String(job.jobid));
          await sleep(30);
          running--;
        });
        w.canDo(
          'Solo',
          async () => {
            solo++;
            maxSolo = Math.max(maxSolo, solo);
            await sleep(30);
            solo--;
          },
          { concurrency: 1 },
        );
        assert.equal(await w.workUntilDone(), 9);
        assert.ok(maxPar <= 3 && maxPar >= 2, String(maxPar));
        assert.equal(maxSolo, 1);
        assert.equal(leases.size, 6);
        assert.equal((await jobRows(q)).length, 0);
      });

      it('renews the lease of a long job so no other worker takes it', async () => {
        const q = await queue();
        const h = await q.client.insert('Long', 'x');
        const other = new SchwartzWorker(q.client);
        other.canDo('Long', () => assert.fail('grabbed twice'));
        const w = new SchwartzWorker(q.client);
        let first = 0;
        let renewed = 0;
        w.canDo(
          'Long',
          async (job) => {
            first = job.grabbedUntil;
            await until(async () => ((await q.client.lookupJob(h!))?.grabbedUntil ?? 0) > first, 4000);
            renewed = job.grabbedUntil;
            assert.equal(await other.workOnce(), false);
          },
          { grabFor: 2 },
        );
        assert.equal(await w.workUntilDone(), 1);
        assert.ok(renewed > first, `${renewed} > ${first}`);
        assert.equal(await h!.isPending(), false);
      });

      it('aborts the job when a renewal finds the lease lost, and writes no outcome', async () => {
        const q = await queue();
        const h = await q.client.insert('Lost', 'x');
        const events = listen<SchwartzJobEvent>(JOB_CHANNEL);
        const w = new SchwartzWorker(q.client);
        let reason: unknown;
        w.canDo(
          'Lost',
          async (job) => {
            await q.raw.run(`UPDATE ${q.table('job')} SET grabbed_until = ? WHERE jobid = ?`, [
              now() + 1000,
              job.jobid,
            ]);
            await new Promise((resolve) => job.signal.addEventListener('abort', resolve, { once: true }));
            reason = job.signal.reason;
            throw reason;
          },
          { grabFor: 2 },
        );
        assert.equal(await w.workUntilDone(), 1);
        events.stop();
        assert.ok(isSchwartzError(reason, 'SCHWARTZ_ERR_LEASE_LOST'));
        assert.equal(await h!.failures(), 0);
        assert.equal(await h!.isPending(), true);
        const end = events.events.find((e) => e.type === 'end' && e.funcname === 'Lost' && e.handle === String(h));
        assert.equal(end?.type === 'end' && end.outcome, 'none');
        assert.ok(
          events.events.some(
            (e) => e.type === 'error' && e.stage === 'lease' && e.funcname === 'Lost' && e.handle === String(h),
          ),
        );
      });

      it('closes gracefully: grabs nothing new, lets running jobs finish and write their outcomes', async () => {
        const q = await queue();
        await q.client.insertJobs(['a', 'b', 'c'].map((arg) => ({ funcname: 'Slow', arg })));
        const release = gate();
        let started = 0;
        const w = new SchwartzWorker(q.client, { concurrency: 2, pollInterval: 20 });
        w.canDo('Slow', async () => {
          started++;
          await release.promise;
        });
        const working = w.work();
        await until(() => started === 2);
        let closed = false;
        const closing = w.close().then(() => {
          closed = true;
        });
        await sleep(50);
        assert.equal(closed, false);
        release.open();
        await closing;
        await working;
        assert.equal(started, 2);
        assert.equal((await jobRows(q)).length, 1);
        await assert.rejects(w.workOnce(), (e) => isSchwartzError(e, 'SCHWARTZ_ERR_CLOSED'));
      });

      it('destroy() aborts running jobs and leaves them to their lease', async () => {
        const q = await queue();
        const h = await q.client.insert('Doomed', 'x');
        const w = new SchwartzWorker(q.client);
        let reason: unknown;
        let started = false;
        w.canDo('Doomed', async (job) => {
          started = true;
          await new Promise((resolve) => job.signal.addEventListener('abort', resolve, { once: true }));
          reason = job.signal.reason;
        });
        const working = w.workOnce();
        await until(() => started);
        w.destroy();
        await working;
        assert.ok(isSchwartzError(reason, 'SCHWARTZ_ERR_DESTROYED'));
        const job = await q.client.lookupJob(h!);
        assert.ok(job && job.grabbedUntil > now());
      });

      it('work() polls, wakes up at once on wake(), and stops on abort', async () => {
        const q = await queue();
        const worked: string[] = [];
        const w = new SchwartzWorker(q.client, { pollInterval: 60_000 });
        w.canDo('Pushed', (job) => void worked.push(job.arg!.toString()));
        const stop = new AbortController();
        const working = w.work({ signal: stop.signal });
        await sleep(30);
        await assert.rejects(w.work(), (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'));
        await q.client.insert('Pushed', 'now');
        w.wake();
        await until(() => worked.length === 1);
        stop.abort();
        await working;
        assert.deepEqual(worked, ['now']);
      });

      it('asks canGrab before each search (the rate-limit hook)', async () => {
        const q = await queue();
        await q.client.insert('Paused', 'p');
        await q.client.insert('Open', 'o');
        let paused = true;
        const asked = new Set<string>();
        const w = new SchwartzWorker(q.client, {
          canGrab: (f) => {
            asked.add(f);
            return !(paused && f === 'Paused');
          },
        });
        const worked: string[] = [];
        w.canDo('Paused', (job) => void worked.push(job.funcname));
        w.canDo('Open', (job) => void worked.push(job.funcname));
        assert.equal(await w.workUntilDone(), 1);
        assert.deepEqual(worked, ['Open']);
        assert.deepEqual([...asked].sort(), ['Open', 'Paused']);
        paused = false;
        assert.equal(await w.workUntilDone(), 1);
        assert.deepEqual(worked, ['Open', 'Paused']);
      });

      it('purges expired exit statuses and week-old failures lazily', async () => {
        const q = await queue({ exitStatusPurgeProbability: 1, errorMaxAge: 100 });
        const t = now();
        await q.raw.run(
          `INSERT INTO ${q.table('exitstatus')} (jobid, funcid, status, completion_time, delete_after) VALUES (?, ?, ?, ?, ?)`,
          [999_999, 1, 0, t - 50, t - 10],
        );
        await q.raw.run(`INSERT INTO ${q.table('error')} (error_time, jobid, message, funcid) VALUES (?, ?, ?, ?)`, [
          t - 1000,
          999_998,
          'old',
          1,
        ]);
        const ok = await q.client.insert('Purge::Ok', 'x');
        const bad = await q.client.insert('Purge::Bad', 'y');
        const w = new SchwartzWorker(q.client);
        w.canDo('Purge::Ok', () => {}, { keepExitStatusFor: 60 });
        w.canDo(
          'Purge::Bad',
          () => {
            throw new Error('fresh');
          },
          { keepExitStatusFor: 60 },
        );
        assert.equal(await w.workUntilDone(), 2);
        const statuses = await q.raw.query<{ jobid: number }>(
          `SELECT jobid FROM ${q.table('exitstatus')} ORDER BY jobid`,
        );
        assert.deepEqual(
          statuses.map((r) => Number(r.jobid)),
          [Number(ok!.jobid), Number(bad!.jobid)].sort((a, b) => a - b),
        );
        const errors = await q.raw.query<{ message: string }>(`SELECT message FROM ${q.table('error')}`);
        assert.deepEqual(
          errors.map((r) => r.message),
          ['fresh'],
        );
      });

      it('publishes job events without arguments', async () => {
        const q = await queue();
        await q.client.insert('Evt', 'secret-arg');
        const events = listen<SchwartzJobEvent>(JOB_CHANNEL);
        const w = new SchwartzWorker(q.client);
        w.canDo('Evt', () => {});
        await w.workUntilDone();
        events.stop();
        const mine = events.events.filter((e) => e.funcname === 'Evt' && e.database === q.client.databaseHashes[0]);
        assert.deepEqual(
          mine.map((e) => e.type),
          ['start', 'end'],
        );
        assert.equal(mine[1]?.type === 'end' && mine[1].outcome, 'completed');
        assert.ok(!JSON.stringify(mine).includes('secret-arg'));
      });

      it('keeps tables of different prefixes apart', async () => {
        const a = await queue({ prefix: freshPrefix() });
        const b = await queue({ prefix: freshPrefix() });
        await a.client.insert('Same', 'in a');
        const w = new SchwartzWorker(b.client);
        w.canDo('Same', () => assert.fail('wrong prefix'));
        assert.equal(await w.workUntilDone(), 0);
      });
    });
  }
});

describe('TheSchwartz error codes', () => {
  it('every code is documented in docs/errors.md', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const rows = new Map(
      doc
        .split('\n')
        .filter((line) => line.startsWith('| `SCHWARTZ_ERR_'))
        .map((line) => line.split('|').map((cell) => cell.trim()))
        .map((cells) => [cells[1]!.replaceAll('`', ''), { meaning: cells[2]!, fix: cells[3]! }]),
    );
    assert.deepEqual([...rows.keys()], Object.keys(SCHWARTZ_ERROR_CODES));
    for (const [code, info] of Object.entries(SCHWARTZ_ERROR_CODES)) {
      assert.ok(rows.get(code)!.meaning.startsWith(info.meaning), `${code}: meaning out of date`);
      assert.equal(rows.get(code)!.fix, info.fix, `${code}: fix out of date`);
    }
  });

  it("prints each engine's DDL with the prefix on tables (and on PostgreSQL's index names)", () => {
    const mysql = schemaStatements('mysql', 'p_');
    assert.equal(mysql.length, 5);
    assert.ok(mysql.every((s) => s.includes('ENGINE=InnoDB')));
    assert.match(mysql[1]!, /CREATE TABLE IF NOT EXISTS p_job \(/);
    assert.match(mysql[1]!, /UNIQUE\(funcid, uniqkey\)/);
    const pg = schemaStatements('postgres', 'p_');
    assert.ok(pg.includes('CREATE UNIQUE INDEX IF NOT EXISTS p_job_funcid_uniqkey ON p_job (funcid, uniqkey)'));
    assert.ok(pg.some((s) => /p_error_time ON p_error \(error_time\)/.test(s)));
    const sqlite = schemaStatements('sqlite');
    assert.match(sqlite[1]!, /jobid +INTEGER PRIMARY KEY AUTOINCREMENT/);
    assert.ok(sqlite.every((s) => !/\bp_/.test(s)));
  });

  it('checks worker and ability options', () => {
    const client = new SchwartzClient({ databases: [{ dsn: 'sqlite::memory:' }] });
    const bad = (fn: () => unknown) => assert.throws(fn, (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'));
    bad(() => new SchwartzWorker(client, { concurrency: 0 }));
    bad(() => new SchwartzWorker(client, { pollInterval: -1 }));
    const w = new SchwartzWorker(client);
    bad(() => w.canDo('', () => {}));
    bad(() => w.canDo('F', 'nope' as unknown as () => void));
    bad(() => w.canDo('F', () => {}, { grabFor: 0 }));
    bad(() => w.canDo('F', () => {}, { maxRetries: -1 }));
    bad(() => w.canDo('F', () => {}, { retryDelay: -1 }));
    w.canDo('F', () => {});
    bad(() => w.canDo('F', () => {}));
    assert.deepEqual(w.abilities, ['F']);
    bad(() => new SchwartzClient({ databases: [{ dsn: 'gopher://x' }] }));
    const _: Job | undefined = undefined;
    void _;
  });
});
