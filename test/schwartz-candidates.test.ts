/**
 * The worker keeps a search's unclaimed candidates for its next grabs: one job at a time costs one queue read per
 * batch, not per job; and a stale candidate is never claimed early (a job another worker failed with a retry delay
 * waits for its `run_after`, which TheSchwartz's own claim does not check).
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SchwartzClient, SchwartzWorker } from '../src/schwartz/index.ts';
import { openDatabase, type SqlDatabase, type SqlExecutor } from '../src/sql/index.ts';
import { createTestDatabase } from './helpers/sql-databases.ts';

/** Wraps a database, counting the job searches (SELECTs on the job table with LIMIT). */
function counting(db: SqlDatabase): { db: SqlDatabase; searches: () => number } {
  let n = 0;
  const count = (sql: string) => {
    if (/^\s*SELECT/i.test(sql) && /\bLIMIT\b/i.test(sql) && /\bjob\b/.test(sql)) n++;
  };
  const wrap = (e: SqlExecutor): SqlExecutor => ({
    dialect: e.dialect,
    query: (sql, params) => {
      count(sql);
      return e.query(sql, params);
    },
    run: (sql, params) => e.run(sql, params),
  });
  const wrapped: SqlDatabase = {
    ...wrap(db),
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    close: () => db.close(),
  };
  return { db: wrapped, searches: () => n };
}

describe('candidate reuse', () => {
  it('one job at a time reads the queue once per batch of candidates', async () => {
    const td = await createTestDatabase('sqlite', 'cand');
    const raw = await openDatabase(td.location);
    const { db, searches } = counting(raw);
    const client = new SchwartzClient({ databases: [{ dsn: td.location, database: db }] });
    try {
      await client.ensureSchema();
      await client.insertJobs(Array.from({ length: 40 }, (_, i) => ({ funcname: 'Cand::Job', arg: `j${i}` })));
      const done: string[] = [];
      const worker = new SchwartzWorker(client, { concurrency: 1 });
      worker.canDo('Cand::Job', (job) => {
        done.push(job.arg!.toString());
      });
      assert.equal(await worker.workUntilDone(), 40);
      assert.equal(new Set(done).size, 40);
      // One search found all 40; the last one found nothing. (One per job without reuse: 41.)
      assert.ok(searches() <= 3, `${searches()} searches for 40 jobs`);
    } finally {
      await client.close();
      await raw.close();
      await td.drop();
    }
  });

  it('a stale candidate whose job was failed with a retry delay is not claimed before its run_after', async () => {
    const td = await createTestDatabase('sqlite', 'stale');
    const a = new SchwartzClient({ databases: [{ dsn: td.location }] });
    try {
      await a.ensureSchema();
      const [first, second] = await a.insertJobs([
        { funcname: 'Stale::Job', arg: 'one' },
        { funcname: 'Stale::Job', arg: 'two' },
      ]);
      const ran: string[] = [];
      // Worker A takes one job, keeping the other as a candidate.
      const workerA = new SchwartzWorker(a, { concurrency: 1 });
      workerA.canDo('Stale::Job', (job) => {
        ran.push(`A:${job.arg}`);
      });
      assert.equal(await workerA.workOnce(), true);
      const left = ran[0] === 'A:one' ? second! : first!;
      // Another worker grabs the left job and fails it with a retry in an hour: grabbed_until is 0 again.
      const workerB = new SchwartzWorker(a, { concurrency: 1 });
      workerB.canDo('Stale::Job', (job) => job.failed('later'), { maxRetries: 1, retryDelay: 3600 });
      assert.equal(await workerB.grabAndWorkOn(left), true);
      assert.equal(await left.failures(), 1);
      // A's cached candidate still reads grabbed_until = 0; the claim must see run_after is in the future.
      assert.equal(await workerA.workOnce(), false);
      assert.equal(ran.length, 1);
      assert.equal(await left.isPending(), true);
    } finally {
      await a.close();
      await td.drop();
    }
  });
});
