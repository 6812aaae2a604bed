/**
 * `sharenothing schwartz`: schema, insert, list, inspect, retry, stats and `work --until-done` in-process on every
 * engine; `work` as a daemon with Prometheus metrics and a graceful SIGTERM in a child process (SQLite).
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runSchwartz } from '../src/cli/schwartz.ts';
import { GearmanServer } from '../src/gearman/server/server.ts';
import { runCli } from './helpers/cli-process.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

const dir = mkdtempSync(join(tmpdir(), 'sharenothing-schwartz-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HANDLERS = join(dir, 'handlers.mjs');
writeFileSync(
  HANDLERS,
  `export default {
  'Cli::Ok': async () => {},
  'Cli::Fail': { handler: () => { throw new Error('broken on purpose'); }, maxRetries: 0, keepExitStatusFor: 600 },
  'Cli::Slow': async (job) => { await new Promise((r) => setTimeout(r, 300)); },
};
`,
);

/** Runs the command in-process; returns exit code and output. */
async function cli(args: string[]): Promise<{ code: number | undefined; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runSchwartz(
    args,
    {
      write: (s) => {
        out += s;
      },
    },
    {
      write: (s) => {
        err += s;
      },
    },
  );
  return { code, out, err };
}

describe('sharenothing schwartz: usage', () => {
  it('prints usage, and refuses a missing database, an unknown command and bad numbers', async () => {
    assert.equal((await cli(['--help'])).code, 0);
    assert.match((await cli(['--help'])).out, /work --handlers MODULE/);
    assert.equal((await cli([])).code, 64);
    assert.match((await cli(['stats'])).err, /at least one --database is required/);
    const db = ['--database', join(dir, 'usage.sqlite')];
    assert.equal((await cli(['frobnicate', ...db])).code, 64);
    assert.match((await cli(['insert', 'F', '--priority', 'x', ...db])).err, /--priority: 'x' is not a number/);
    assert.match((await cli(['list', ...db])).err, /list needs at least one function name/);
    assert.match((await cli(['inspect', ...db])).err, /inspect needs a job handle/);
    assert.match((await cli(['work', ...db])).err, /work needs --handlers MODULE/);
    assert.equal((await cli(['--bogus'])).code, 64);
    const bad = join(dir, 'bad.mjs');
    writeFileSync(bad, 'export default { F: 42 };\n');
    assert.match((await cli(['work', '--handlers', bad, ...db])).err, /handler for F is not a function/);
  });
});

for (const [dialect, skip] of allDialects()) {
  describe(`sharenothing schwartz on ${dialect}`, { skip }, () => {
    let td: TestDatabase;
    let db: string[];

    before(async () => {
      td = await createTestDatabase(dialect, 'scli');
      db = ['--database', td.location, '--prefix', 'cli_'];
    });
    after(() => td?.drop());

    it('creates the schema, inserts, lists, works, inspects, retries and summarises', async () => {
      assert.equal((await cli(['schema', ...db])).code, 0);
      const ok = await cli(['insert', 'Cli::Ok', 'payload', '--uniqkey', 'u1', ...db]);
      assert.equal(ok.code, 0, ok.err);
      const okHandle = ok.out.trim();
      assert.match(okHandle, /^[0-9a-f]{32}-\d+$/);
      assert.equal((await cli(['insert', 'Cli::Ok', 'again', '--uniqkey', 'u1', ...db])).code, 1);
      const failHandle = (await cli(['insert', 'Cli::Fail', ...db])).out.trim();
      const later = (await cli(['insert', 'Cli::Ok', '--run-after', '3600', '--priority', '5', ...db])).out.trim();

      const listed = await cli(['list', 'Cli::Ok', 'Cli::Fail', '--json', ...db]);
      const jobs = JSON.parse(listed.out) as { handle: string; funcname: string; priority: number | null }[];
      assert.deepEqual(jobs.map((j) => j.handle).sort(), [okHandle, failHandle, later].sort());
      assert.match((await cli(['list', 'Cli::Ok', ...db])).out, /^handle\tfuncname/);

      const summary = JSON.parse((await cli(['stats', '--json', ...db])).out) as {
        funcname: string;
        ready: number;
        waiting: number;
      }[];
      const ok1 = summary.find((r) => r.funcname === 'Cli::Ok');
      assert.equal(ok1?.ready, 1);
      assert.equal(ok1?.waiting, 1);

      const worked = await cli(['work', '--handlers', HANDLERS, '--until-done', ...db]);
      assert.equal(worked.code, 0, worked.err);
      assert.match(worked.out, /worked 2 job\(s\)/);

      const failed = JSON.parse((await cli(['inspect', failHandle, '--json', ...db])).out);
      assert.equal(failed.pending, false);
      assert.equal(failed.exitStatus, 1);
      assert.deepEqual(failed.failureLog, ['broken on purpose']);
      assert.match((await cli(['inspect', later, ...db])).out, /pending {6}yes/);
      assert.equal((await cli(['inspect', okHandle, ...db])).code, 1, 'completed without a kept exit status');

      const stats = await cli(['stats', ...db]);
      assert.match(stats.out, /Cli::Fail\t0\t0\t0\t1/);

      assert.equal((await cli(['retry', later, ...db])).out.trim(), `${later}: retried`);
      assert.equal((await cli(['retry', okHandle, ...db])).code, 1);
      assert.match((await cli(['work', '--handlers', HANDLERS, '--until-done', ...db])).out, /worked 1 job/);
      assert.equal((await cli(['inspect', 'nonsense', ...db])).code, 1);
    });
  });
}

describe('sharenothing schwartz work (daemon)', () => {
  it('serves schwartz_* metrics and finishes a running job on SIGTERM', async () => {
    const file = join(dir, 'daemon.sqlite');
    const db = ['--database', file];
    assert.equal((await cli(['schema', ...db])).code, 0);
    const adminPort = 20000 + Math.floor(Math.random() * 12000);
    const worker = runCli(
      ['schwartz', 'work', '--handlers', HANDLERS, '--poll-interval', '50', '--admin', `127.0.0.1:${adminPort}`, ...db],
      { untilStdout: /working on/ },
    );
    const { child, exited } = worker;
    try {
      await worker.ready;
      assert.match(worker.out(), /working on Cli::Ok, Cli::Fail, Cli::Slow \(metrics on/, worker.err());
      await cli(['insert', 'Cli::Ok', ...db]);
      await cli(['insert', 'Cli::Fail', ...db]);
      let metrics = '';
      for (let i = 0; i < 200; i++) {
        metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
        if (/schwartz_jobs_total\{funcname="Cli::Fail",outcome="failed"\} 1/.test(metrics)) break;
        await sleep(25);
      }
      assert.match(metrics, /schwartz_jobs_total\{funcname="Cli::Ok",outcome="completed"\} 1/);
      assert.match(metrics, /schwartz_jobs_total\{funcname="Cli::Fail",outcome="failed"\} 1/);
      assert.match(metrics, /schwartz_job_duration_seconds_count\{funcname="Cli::Ok"\} 1/);
      assert.match(worker.err(), /"job error"|broken on purpose/);
      // A slow job is running when SIGTERM arrives: it finishes and its outcome is written before the exit.
      const slow = (await cli(['insert', 'Cli::Slow', ...db])).out.trim();
      for (let i = 0; i < 200; i++) {
        metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
        if (/schwartz_jobs_running\{funcname="Cli::Slow"\} 1/.test(metrics)) break;
        await sleep(10);
      }
      child.kill('SIGTERM');
      assert.equal(await exited, 0, worker.err());
      const inspected = JSON.parse((await cli(['inspect', slow, '--json', ...db])).out);
      assert.equal(inspected.pending, false, 'the running job was completed before the exit');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('sharenothing schwartz work --gearman (daemon)', () => {
  it('wakes on inserts through the job server instead of polling, and runs the schedules of the module', async () => {
    const jobServer = new GearmanServer({ port: 0, listen: ['127.0.0.1'] });
    const { port } = await jobServer.listen();
    const gearman = ['--gearman', `127.0.0.1:${port}`];
    const file = join(dir, 'wake.sqlite');
    const db = ['--database', file];
    const handlers = join(dir, 'scheduled.mjs');
    writeFileSync(
      handlers,
      `export default { 'Cli::Ok': async () => {} };
export const schedules = [{ name: 'tick', funcname: 'Cli::Ok', every: 1000 }];
`,
    );
    assert.equal((await cli(['schema', ...db])).code, 0);
    const adminPort = 20000 + Math.floor(Math.random() * 12000);
    const worker = runCli(
      [
        'schwartz',
        'work',
        '--handlers',
        handlers,
        '--poll-interval',
        '600000',
        '--admin',
        `127.0.0.1:${adminPort}`,
        ...gearman,
        ...db,
      ],
      { untilStdout: /working on/ },
    );
    const { child, exited } = worker;
    const metrics = () => fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text());
    try {
      await worker.ready;
      assert.match(worker.out(), /working on Cli::Ok/, worker.err());
      // Wait until the worker's wake-up function is registered, then insert with notification.
      for (let i = 0; i < 200; i++) {
        if (
          [...jobServer.router.functionsInListingOrder()].some(
            (f) => f.name.startsWith('schwartz-wake:') && f.workers.length > 0,
          )
        )
          break;
        await sleep(25);
      }
      const inserted = await cli(['insert', 'Cli::Ok', 'now', ...gearman, ...db]);
      assert.equal(inserted.code, 0, inserted.err);
      const handle = inserted.out.trim();
      let pending = true;
      for (let i = 0; i < 200 && pending; i++) {
        pending = JSON.parse((await cli(['inspect', handle, '--json', ...db])).out).pending;
        if (pending) await sleep(25);
      }
      assert.equal(pending, false, 'worked long before the 10-minute poll');
      let text = '';
      for (let i = 0; i < 200; i++) {
        text = await metrics();
        if (
          /schwartz_schedule_total\{schedule="tick",result="queued"\} [1-9]/.test(text) &&
          /schwartz_jobs_total\{funcname="Cli::Ok",outcome="completed"\} [2-9]/.test(text)
        )
          break;
        await sleep(50);
      }
      assert.match(text, /schwartz_schedule_total\{schedule="tick",result="queued"\} [1-9]/);
      assert.match(text, /schwartz_jobs_total\{funcname="Cli::Ok",outcome="completed"\} [2-9]/, 'a scheduled job ran');
      assert.match(text, /schwartz_wakeups_total\{funcname="Cli::Ok",event="received"\} [1-9]/);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, worker.err());
    } finally {
      child.kill('SIGKILL');
      await jobServer.close();
    }
  });
});
