/**
 * Worker limits on every engine, all per worker process: a per-function rate limit (token bucket) holds that
 * function back while the others keep working, and wakes `work()` when a token comes rather than at the next poll;
 * `workUntilDone()` waits for tokens; a worker-wide rate limit across functions; `concurrency` across functions.
 * Timing assertions are bounds a token bucket guarantees whatever the machine's load (never more starts than
 * `burst + rate × elapsed`), with lower bounds only where the bucket forces them.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSchwartzError, SchwartzClient, SchwartzWorker } from '../src/schwartz/index.ts';
import { newQueue, type TestQueue } from './helpers/schwartz-perl.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

/** Resolves once `check` is true (polling), or fails after `ms`. */
async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

/** Asserts that the i-th start (0-based, sorted) came no earlier than a bucket of `burst`, `perToken` ms allows. */
function assertPaced(starts: number[], t0: number, burst: number, perToken: number): void {
  const sorted = [...starts].sort((a, b) => a - b);
  sorted.forEach((s, i) => {
    const allowed = burst + Math.floor((s - t0) / perToken);
    assert.ok(i + 1 <= allowed, `start ${i + 1} at +${Math.round(s - t0)} ms: only ${allowed} tokens by then`);
  });
}

describe('TheSchwartz worker limits', { concurrency: 3 }, () => {
  for (const [dialect, skip] of allDialects()) {
    describe(dialect, { skip, concurrency: 1 }, () => {
      let td: TestDatabase;
      const queues: TestQueue[] = [];
      const queue = async () => {
        const q = await newQueue(td);
        queues.push(q);
        return q;
      };

      before(async () => {
        td = await createTestDatabase(dialect, 'schwartzlimits');
      });
      after(async () => {
        for (const q of queues) await q.close();
        await td?.drop();
      });

      it('a rate-limited function sits out searches without a token; the others keep working', async () => {
        const q = await queue();
        await q.client.insertJobs(Array.from({ length: 12 }, (_, i) => ({ funcname: 'Limited', arg: String(i) })));
        await q.client.insertJobs(Array.from({ length: 12 }, (_, i) => ({ funcname: 'Free', arg: String(i) })));
        // A poll interval far beyond the test: only a token coming due can end the worker's waits.
        const w = new SchwartzWorker(q.client, { concurrency: 4, pollInterval: 60_000 });
        const limitedStarts: number[] = [];
        let freeDone = 0;
        let limitedWhenFreeDone = -1;
        const t0 = performance.now();
        w.canDo('Limited', () => void limitedStarts.push(performance.now()), {
          rateLimit: { jobs: 4, perMs: 400 },
        });
        w.canDo('Free', () => {
          if (++freeDone === 12) limitedWhenFreeDone = limitedStarts.length;
        });
        const stop = new AbortController();
        const working = w.work({ signal: stop.signal });
        await until(() => limitedStarts.length === 12 && freeDone === 12);
        stop.abort();
        await working;
        // 4 at once, then one per 100 ms: the last needs 800 ms; the free ones did not wait for them.
        assert.ok(limitedWhenFreeDone < 12, `Free finished after all Limited (${limitedWhenFreeDone})`);
        assertPaced(limitedStarts, t0, 4, 100);
        assert.ok(performance.now() - t0 >= 790);
      });

      it('workUntilDone() waits for tokens rather than giving up on a rate-limited function', async () => {
        const q = await queue();
        await q.client.insertJobs(Array.from({ length: 6 }, () => ({ funcname: 'Paced' })));
        const w = new SchwartzWorker(q.client, { concurrency: 3 });
        const starts: number[] = [];
        const t0 = performance.now();
        w.canDo('Paced', () => void starts.push(performance.now()), { rateLimit: { jobs: 2, perMs: 200, burst: 2 } });
        assert.equal(await w.workUntilDone(), 6);
        assertPaced(starts, t0, 2, 100);
        assert.ok(performance.now() - t0 >= 390, 'four tokens to wait for');
        assert.equal((await q.client.listJobs({ funcname: 'Paced' })).length, 0);
      });

      it('a worker-wide rate limit counts every function together', async () => {
        const q = await queue();
        await q.client.insertJobs(
          Array.from({ length: 10 }, (_, i) => ({ funcname: i % 2 === 0 ? 'Even' : 'Odd', arg: String(i) })),
        );
        const t0 = performance.now();
        const w = new SchwartzWorker(q.client, { concurrency: 4, rateLimit: { jobs: 3, perMs: 300 } });
        const starts: number[] = [];
        w.canDo('Even', () => void starts.push(performance.now()));
        w.canDo('Odd', () => void starts.push(performance.now()));
        assert.equal(await w.workUntilDone(), 10);
        assertPaced(starts, t0, 3, 100);
        assert.ok(performance.now() - t0 >= 690, 'seven tokens to wait for');
      });

      it('concurrency caps the jobs of all functions together', async () => {
        const q = await queue();
        for (const funcname of ['A', 'B', 'C']) {
          await q.client.insertJobs(Array.from({ length: 4 }, () => ({ funcname })));
        }
        const w = new SchwartzWorker(q.client, { concurrency: 2 });
        let running = 0;
        let most = 0;
        const handler = async () => {
          most = Math.max(most, ++running);
          await sleep(20);
          running--;
        };
        for (const name of ['A', 'B', 'C']) w.canDo(name, handler);
        assert.equal(await w.workUntilDone(), 12);
        assert.equal(most, 2);
      });

      it('a rate limit applies to searches only: explicit grabs take no token', async () => {
        const q = await queue();
        await q.client.insert('Capped', 'a', { coalesce: 'k' });
        await q.client.insert('Capped', 'b', { coalesce: 'k' });
        const w = new SchwartzWorker(q.client);
        w.canDo('Capped', () => {}, { rateLimit: { jobs: 1, perMs: 60_000 } });
        assert.equal(await w.workOnce(), true);
        assert.equal(await w.workOnce(), false, 'no token left for a search');
        const job = await w.findJobWithCoalescingValue('Capped', 'k');
        assert.ok(job);
        assert.equal(await job.completed(), true);
      });
    });
  }

  it('checks rate limit options', () => {
    const client = new SchwartzClient({ databases: [{ dsn: 'sqlite::memory:' }] });
    const bad = (fn: () => unknown) => assert.throws(fn, (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'));
    bad(() => new SchwartzWorker(client, { rateLimit: { jobs: 0, perMs: 1000 } }));
    bad(() => new SchwartzWorker(client, { rateLimit: 5 as never }));
    const w = new SchwartzWorker(client);
    bad(() => w.canDo('F', () => {}, { rateLimit: { jobs: 1, perMs: -1 } }));
    bad(() => w.canDo('F', () => {}, { rateLimit: { jobs: 1, perMs: 1, burst: 1.5 } }));
    assert.deepEqual(w.abilities, []);
  });
});
