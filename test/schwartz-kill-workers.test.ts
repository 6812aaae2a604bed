/**
 * Workers killed mid-job lose nothing: a queue of jobs (10,000 on SQLite; fewer on MariaDB and PostgreSQL, see
 * JOBS) is worked by 4 worker processes (Node, `SchwartzWorker`, `grabFor` 3 s) while the test SIGKILLs the oldest
 * one every second and starts a replacement, until the table is empty.
 *
 * Every handler appends `start <jobid> <pid>` to its process's log before it does anything, then completes the job
 * itself and appends `completed <jobid> <pid>` once the completion is committed (`lost …` if its lease was gone).
 * From the logs and the tables:
 *
 * - every job was completed exactly once: the job table is empty and each job has one exit status (0);
 * - every job ran, and no job ran that was not queued;
 * - a job ran more than once only because a process died holding it: every run that did not reach `completed` is in
 *   a killed process's log (at most `concurrency` of them per killed process: the jobs it held when it died), and at
 *   most one run of a job reached `completed`;
 * - processes that were not killed finished every job they started and exited 0 on SIGTERM.
 *
 * A run may also end in `lost` when a live process's lease ran out (a stall of more than 2 s on a loaded machine):
 * TheSchwartz is at-least-once and that is allowed, but counted. SQLite runs in WAL mode with a 30 s busy timeout,
 * one connection per process (`node:sqlite` is synchronous; separate processes wait for the file lock in turn).
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SchwartzClient } from '../src/schwartz/index.ts';
import { openDatabase, type SqlDatabase, type SqlDialect } from '../src/sql/index.ts';
import { allDialects, createTestDatabase } from './helpers/sql-databases.ts';

/** Jobs per engine: SQLite gets the full 10,000; MariaDB and PostgreSQL 2,000 each, so that all three together stay
 * under a minute on a busy 2-core machine (they take 30 s, 16 s and 12 s for 10k/3k/3k with both cores loaded). */
const JOBS: Record<SqlDialect, number> = { sqlite: 10_000, mysql: 2_000, postgres: 2_000 };
const WORKERS = 4;
/** Jobs each worker process runs at once: what a killed process can hold. */
const CONCURRENCY = 2;
const GRAB_FOR = 3;
const KILL_EVERY_MS = 1000;
/** A process is only killed once it has been up this long (started, connected, working). */
const MIN_AGE_MS = 700;
/** A guard against a hang, not a speed target: the SQLite run takes 10–20 s on a busy 2-core machine. */
const DEADLINE_MS = 120_000;
const FUNCNAME = 'Kill::Job';

const ENTRY_SCHWARTZ = new URL('../src/schwartz/index.ts', import.meta.url).href;
const ENTRY_SQL = new URL('../src/sql/index.ts', import.meta.url).href;

/**
 * The worker process. argv: location, dialect, prefix, log file. Prints `ready` once its worker runs; SIGTERM stops
 * it gracefully (running jobs finish, outcomes written) and it exits 0.
 */
const WORKER_SCRIPT = `
import { openSync, writeSync } from 'node:fs';
import { SchwartzClient, SchwartzWorker } from ${JSON.stringify(ENTRY_SCHWARTZ)};
import { openDatabase } from ${JSON.stringify(ENTRY_SQL)};
const [location, dialect, prefix, logFile] = process.argv.slice(1);
const log = openSync(logFile, 'a');
// One write(2) per line on an O_APPEND descriptor: a kill leaves whole lines.
const note = (what, job) => writeSync(log, what + ' ' + job.jobid + ' ' + process.pid + '\\n');
const database = dialect === 'sqlite' ? await openDatabase(location, { busyTimeout: 30000 }) : undefined;
const client = new SchwartzClient({
  databases: [{ dsn: location, prefix, ...(database && { database }) }],
  connections: 4,
  retrySeconds: 1,
});
const worker = new SchwartzWorker(client, { concurrency: ${CONCURRENCY}, pollInterval: 100 });
worker.canDo(${JSON.stringify(FUNCNAME)}, async (job) => {
  note('start', job);
  try {
    await job.completed();
    note('completed', job);
  } catch (err) {
    if (err?.code !== 'SCHWARTZ_ERR_LEASE_LOST') throw err;
    note('lost', job);
  }
}, { grabFor: ${GRAB_FOR}, keepExitStatusFor: 3600 });
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
const working = worker.work({ signal: stop.signal });
process.stdout.write('ready\\n');
await working;
await client.close();
await database?.close();
process.exit(0);
`;

interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  log: string;
  readyAt: number | undefined;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: string;
}

const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) child.kill('SIGKILL');
});

function startWorker(location: string, dialect: SqlDialect, prefix: string, log: string): WorkerProcess {
  const child = spawn(process.execPath, ['--input-type=module', '-e', WORKER_SCRIPT, location, dialect, prefix, log], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const w: WorkerProcess = {
    child,
    pid: child.pid as number,
    log,
    readyAt: undefined,
    stderr: '',
    exit: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        children.delete(child);
        resolve({ code, signal });
      });
    }),
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    if (w.readyAt === undefined && d.includes('ready')) w.readyAt = Date.now();
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    w.stderr = (w.stderr + d).slice(-4000);
  });
  return w;
}

async function count(db: SqlDatabase, table: string): Promise<number> {
  const [row] = await db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`);
  return Number(row?.n);
}

/** One run of a job, as its process's log tells it. */
interface Run {
  pid: number;
  end: 'completed' | 'lost' | undefined;
}

/** The runs of every job, from all logs in `dir`: `start`, then `completed` or `lost` (or nothing: killed). */
function readRuns(dir: string): Map<string, Run[]> {
  const runs = new Map<string, Run[]>();
  for (const file of readdirSync(dir)) {
    if (!file.endsWith('.log')) continue;
    const open = new Map<string, Run>();
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      const m = /^(start|completed|lost) (\d+) (\d+)$/.exec(line);
      if (m === null) continue;
      const [, what, jobid, pid] = m as unknown as [string, string, string, string];
      if (what === 'start') {
        const run: Run = { pid: Number(pid), end: undefined };
        open.set(jobid, run);
        const list = runs.get(jobid) ?? [];
        list.push(run);
        runs.set(jobid, list);
      } else {
        const run = open.get(jobid);
        assert.ok(run, `${file}: ${what} ${jobid} without a start`);
        run.end = what as Run['end'];
        open.delete(jobid);
      }
    }
  }
  return runs;
}

describe('TheSchwartz workers killed with SIGKILL every second', { concurrency: 1 }, () => {
  for (const [dialect, skip] of allDialects()) {
    it(`${dialect}: every job completes exactly once; only killed processes left runs unfinished`, {
      skip,
    }, async (t) => {
      const started = Date.now();
      const jobs = JOBS[dialect];
      const td = await createTestDatabase(dialect, 'schwartzkill');
      const dir = mkdtempSync(join(tmpdir(), 'sharenothing-schwartz-kill-'));
      const prefix = 'k_';
      const live = new Set<WorkerProcess>();
      let raw: SqlDatabase | undefined;
      try {
        // Queue the jobs.
        const client = new SchwartzClient({ databases: [{ dsn: td.location, prefix }], connections: 2 });
        const queued = new Set<string>();
        try {
          await client.ensureSchema();
          for (let i = 0; i < jobs; i += 1000) {
            const batch = Array.from({ length: Math.min(1000, jobs - i) }, (_, k) => ({
              funcname: FUNCNAME,
              arg: String(i + k),
            }));
            for (const h of await client.insertJobs(batch)) queued.add(String(h?.jobid));
          }
        } finally {
          await client.close();
        }
        assert.equal(queued.size, jobs);
        raw = await openDatabase(td.location, { connections: 1, busyTimeout: 30_000 });
        const insertedAt = Date.now();

        // Work them with 4 processes, killing the oldest working one every second.
        let spawned = 0;
        const spawnOne = () => {
          const w = startWorker(td.location, dialect, prefix, join(dir, `worker-${++spawned}.log`));
          live.add(w);
          return w;
        };
        for (let i = 0; i < WORKERS; i++) spawnOne();
        const killed: WorkerProcess[] = [];
        const deadline = Date.now() + DEADLINE_MS;
        let nextKill = Date.now() + KILL_EVERY_MS;
        let left = jobs;
        while (left > 0) {
          for (const w of live) {
            if (w.child.exitCode !== null || w.child.signalCode !== null) {
              assert.fail(`worker ${w.pid} exited on its own (${w.child.exitCode ?? w.child.signalCode}): ${w.stderr}`);
            }
          }
          assert.ok(Date.now() < deadline, `${left} of ${jobs} jobs still queued after ${DEADLINE_MS} ms`);
          if (Date.now() >= nextKill) {
            nextKill = Date.now() + KILL_EVERY_MS;
            const victim = [...live].find((w) => w.readyAt !== undefined && Date.now() - w.readyAt >= MIN_AGE_MS);
            if (victim !== undefined) {
              victim.child.kill('SIGKILL');
              live.delete(victim);
              killed.push(victim);
              spawnOne();
            }
          }
          await sleep(100);
          left = await count(raw, `${prefix}job`);
        }
        const workedMs = Date.now() - insertedAt;

        // Stop the survivors gracefully (a replacement started just now first has to be up: until it prints
        // `ready`, SIGTERM would kill it before its handler is installed); the killed ones died of SIGKILL.
        for (const w of live) {
          for (let i = 0; w.readyAt === undefined && w.child.exitCode === null && i < 300; i++) await sleep(50);
          w.child.kill('SIGTERM');
        }
        for (const w of live) {
          const timeout = new AbortController();
          const exit = await Promise.race([
            w.exit,
            sleep(15_000, undefined, { signal: timeout.signal }).catch(() => undefined),
          ]);
          timeout.abort();
          assert.ok(exit, `worker ${w.pid} did not stop within 15 s of SIGTERM`);
          assert.deepEqual(exit, { code: 0, signal: null }, `worker ${w.pid}: ${w.stderr}`);
        }
        for (const w of killed) assert.deepEqual(await w.exit, { code: null, signal: 'SIGKILL' });
        live.clear();

        // The database: nothing left, one exit status 0 per job.
        assert.equal(await count(raw, `${prefix}job`), 0);
        const statuses = await raw.query<{ jobid: number | bigint; status: number }>(
          `SELECT jobid, status FROM ${prefix}exitstatus`,
        );
        assert.equal(statuses.length, jobs, 'one exit status per job');
        assert.deepEqual(new Set(statuses.map((s) => String(s.jobid))), queued);
        assert.ok(
          statuses.every((s) => Number(s.status) === 0),
          'every exit status is 0',
        );
        assert.equal(await count(raw, `${prefix}error`), 0, 'no failures recorded');

        // The logs.
        const runs = readRuns(dir);
        assert.deepEqual(new Set(runs.keys()), queued, 'every queued job ran, and nothing else');
        const killedPids = new Set(killed.map((w) => w.pid));
        const unfinishedByPid = new Map<number, number>();
        let duplicates = 0;
        let extraRuns = 0;
        let lost = 0;
        let diedAfterCommit = 0;
        for (const [jobid, list] of runs) {
          const completed = list.filter((r) => r.end === 'completed');
          assert.ok(completed.length <= 1, `job ${jobid} completed ${completed.length} times`);
          for (const r of list) {
            if (r.end === 'lost') lost++;
            if (r.end !== undefined) continue;
            assert.ok(killedPids.has(r.pid), `job ${jobid}: a run in ${r.pid}, which was not killed, never ended`);
            unfinishedByPid.set(r.pid, (unfinishedByPid.get(r.pid) ?? 0) + 1);
          }
          // No `completed` line: the process died between the commit and the log line; it must have been killed.
          if (completed.length === 0) {
            diedAfterCommit++;
            assert.ok(
              list.some((r) => r.end === undefined && killedPids.has(r.pid)),
              `job ${jobid} never logged completed, and no killed process held it`,
            );
          }
          if (list.length > 1) {
            duplicates++;
            extraRuns += list.length - 1;
          }
        }
        for (const [pid, n] of unfinishedByPid) {
          assert.ok(n <= CONCURRENCY, `killed process ${pid} left ${n} runs unfinished; it can hold ${CONCURRENCY}`);
        }
        // A duplicate needs a run that did not complete: a killed process's or a lost lease's.
        assert.ok(extraRuns <= unfinishedByPid.size * CONCURRENCY + lost);
        assert.ok(killed.length >= 1, 'no process was killed: the jobs were done within a second');

        t.diagnostic(
          `${dialect}: ${jobs} jobs worked in ${(workedMs / 1000).toFixed(1)} s (${Math.round(jobs / (workedMs / 1000))}/s) ` +
            `by ${spawned} processes, ${killed.length} killed with SIGKILL; ${duplicates} job(s) ran more than once ` +
            `(${extraRuns} extra run(s)), all held by killed processes; ${diedAfterCommit} completed just before a ` +
            `kill (no log line); ${lost} lease(s) lost by live processes; ${((Date.now() - started) / 1000).toFixed(1)} s in all`,
        );
      } finally {
        for (const w of live) w.child.kill('SIGKILL');
        await Promise.all([...live].map((w) => w.exit));
        await raw?.close();
        await td.drop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
