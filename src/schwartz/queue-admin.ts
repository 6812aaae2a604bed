/**
 * Operator views of a queue, across every database of a client: what `sharenothing schwartz stats | retry` print
 * and do. Reads and writes TheSchwartz's tables directly, so it sees Perl's jobs as well as ours.
 *
 * @module
 */

import { clientInternals, type SchwartzClient } from './client.ts';
import type { SchwartzDatabase } from './database-set.ts';
import { invalidArgument } from './errors.ts';

/** One function's jobs in one database. */
export interface FunctionSummary {
  /** `md5_hex(dsn|user)` of the database. */
  database: string;
  funcname: string;
  /** Jobs in the table (pending: not completed or finally failed). */
  jobs: number;
  /** Runnable now (not grabbed, `run_after` passed). */
  ready: number;
  /** Held by a worker (`grabbed_until` in the future). */
  running: number;
  /** Waiting for `run_after` (retry delays, scheduled jobs). */
  waiting: number;
  /** Failures recorded in the last hour (`error` rows). */
  recentFailures: number;
}

/** Per database and function: jobs ready, running and waiting, and failures of the last hour. */
export async function queueSummary(client: SchwartzClient): Promise<FunctionSummary[]> {
  const out: FunctionSummary[] = [];
  for (const db of clientInternals(client).set.all) out.push(...(await summaryOf(db)));
  return out;
}

async function summaryOf(db: SchwartzDatabase): Promise<FunctionSummary[]> {
  const sql = await db.open();
  const t = db.tables;
  const now = await db.now(sql);
  const rows = await sql.query<{ funcname: string; jobs: unknown; running: unknown; waiting: unknown }>(
    `SELECT f.funcname AS funcname, COUNT(*) AS jobs,
       SUM(CASE WHEN j.grabbed_until > ? THEN 1 ELSE 0 END) AS running,
       SUM(CASE WHEN j.grabbed_until <= ? AND j.run_after > ? THEN 1 ELSE 0 END) AS waiting
     FROM ${t.job} j JOIN ${t.funcmap} f ON f.funcid = j.funcid GROUP BY f.funcname`,
    [now, now, now],
  );
  const failures = await sql.query<{ funcname: string; n: unknown }>(
    `SELECT f.funcname AS funcname, COUNT(*) AS n FROM ${t.error} e JOIN ${t.funcmap} f ON f.funcid = e.funcid
     WHERE e.error_time > ? GROUP BY f.funcname`,
    [now - 3600],
  );
  const byName = new Map<string, FunctionSummary>();
  for (const r of rows) {
    const jobs = Number(r.jobs);
    const running = Number(r.running ?? 0);
    const waiting = Number(r.waiting ?? 0);
    byName.set(r.funcname, {
      database: db.hash,
      funcname: r.funcname,
      jobs,
      ready: jobs - running - waiting,
      running,
      waiting,
      recentFailures: 0,
    });
  }
  for (const f of failures) {
    const entry = byName.get(f.funcname) ?? {
      database: db.hash,
      funcname: f.funcname,
      jobs: 0,
      ready: 0,
      running: 0,
      waiting: 0,
      recentFailures: 0,
    };
    entry.recentFailures = Number(f.n);
    byName.set(f.funcname, entry);
  }
  return [...byName.values()].sort((a, b) => a.funcname.localeCompare(b.funcname));
}

/** What {@link retryJob} did. */
export type RetryResult = 'retried' | 'not-found' | 'running';

/**
 * Makes a pending job runnable now (`run_after` = now, `grabbed_until` = 0), e.g. one waiting out a retry delay. A
 * job a worker holds is left alone unless `force` (it would run twice).
 */
export async function retryJob(
  client: SchwartzClient,
  handle: string,
  options: { force?: boolean } = {},
): Promise<RetryResult> {
  const h = client.handle(handle);
  const db = clientInternals(client).set.get(h.database);
  const sql = await db.open();
  const now = await db.now(sql);
  const guard = options.force ? '' : ' AND grabbed_until <= ?';
  const params = options.force ? [now, h.jobid] : [now, h.jobid, now];
  const r = await sql.run(
    `UPDATE ${db.tables.job} SET run_after = ?, grabbed_until = 0 WHERE jobid = ?${guard}`,
    params,
  );
  if (r.changes > 0) return 'retried';
  const exists = await sql.query(`SELECT jobid FROM ${db.tables.job} WHERE jobid = ?`, [h.jobid]);
  if (exists.length === 0) return 'not-found';
  if (options.force) throw invalidArgument(`job ${handle} could not be updated`);
  return 'running';
}
