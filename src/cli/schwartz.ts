/**
 * `sharenothing schwartz`: operate a TheSchwartz queue (ours and Perl's share the tables) and run workers from a
 * handlers module.
 *
 * @module
 */

import diagnostics from 'node:diagnostics_channel';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startAdminServer } from '../net/admin-server.ts';
import { createLogger } from '../net/logger.ts';
import { MetricsRegistry } from '../net/metrics.ts';
import { installShutdownHandlers } from '../net/shutdown.ts';
import { SchwartzClient } from '../schwartz/client.ts';
import { JOB_CHANNEL, type SchwartzJobEvent } from '../schwartz/diagnostics.ts';
import type { JobRecord } from '../schwartz/job.ts';
import { schwartzMetrics } from '../schwartz/metrics.ts';
import { queueSummary, retryJob } from '../schwartz/queue-admin.ts';
import { type RecurringJob, SchwartzScheduler } from '../schwartz/scheduler.ts';
import { type AbilityOptions, type JobHandler, SchwartzWorker } from '../schwartz/worker.ts';

const USAGE = `usage: sharenothing schwartz <command> --database DSN [--database DSN …] [options]

commands:
  schema                      create TheSchwartz's tables where they are missing
  insert FUNCNAME [ARG]       insert a job (--uniqkey K --run-after SECONDS_FROM_NOW --priority N --coalesce V)
  list FUNCNAME…              pending jobs of these functions (--limit N, default 50 per database)
  inspect HANDLE              one job: its row, failure log and exit status
  retry HANDLE                make a pending job runnable now (--force: even while a worker holds it)
  stats                       jobs ready / running / waiting and failures of the last hour, per function
  work --handlers MODULE      run a worker (--concurrency N --poll-interval MS --admin HOST:PORT --until-done
                              --gearman HOST:PORT: wake up on inserts through a job server instead of polling)

databases (repeatable --database): a Perl DBI DSN (dbi:mysql:database=jobs;host=db1, dbi:Pg:dbname=jobs,
dbi:SQLite:dbname=/path), a URL (mysql://…, postgres://…, sqlite:/path) or a SQLite file; --user, --password and
--prefix apply to each. Add --json to list, inspect and stats for machine-readable output.

A handlers module exports (default or as \`handlers\`) an object from function name to a handler, or to
{ handler, maxRetries, retryDelay, grabFor, keepExitStatusFor, concurrency, rateLimit }:
  export default { 'MyApp::Email': async (job) => send(job.arg) };
It may also export \`schedules\` (recurring jobs the worker queues, exactly once across processes):
  export const schedules = [{ name: 'nightly-report', funcname: 'MyApp::Report', cron: '0 3 * * *' }];
With --gearman, \`insert\` also notifies the job server, so workers started with the same --gearman wake at once.
`;

/** A handlers module's entry: a handler, or one with its ability options. */
export type HandlerEntry = JobHandler | ({ handler: JobHandler } & AbilityOptions);

interface Out {
  write(s: string): void;
}

/** Runs `sharenothing schwartz …`; resolves with the exit code (undefined while a worker keeps running). */
export async function runSchwartz(
  argv: string[],
  out: Out = process.stdout,
  err: Out = process.stderr,
): Promise<number | undefined> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    err.write(`sharenothing schwartz: ${(e as Error).message}\n${USAGE}`);
    return 64;
  }
  const { values: v, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (v.help || command === undefined || command === 'help') {
    out.write(USAGE);
    return command === undefined && !v.help ? 64 : 0;
  }
  const databases = v.database ?? [];
  if (databases.length === 0) {
    err.write('sharenothing schwartz: at least one --database is required\n');
    return 64;
  }
  const gearman = v.gearman ?? [];
  const client = new SchwartzClient({
    ...(gearman.length > 0 && { notify: { gearman } }),
    databases: databases.map((dsn) => ({
      dsn,
      ...(v.user !== undefined && { user: v.user }),
      ...(v.password !== undefined && { password: v.password }),
      ...(v.prefix !== undefined && { prefix: v.prefix }),
    })),
  });
  let keepOpen = false;
  try {
    switch (command) {
      case 'schema':
        await client.ensureSchema();
        out.write(`tables ready in ${databases.length} database(s)\n`);
        return 0;
      case 'insert':
        return await insert(client, rest, v, out, err);
      case 'list':
        return await list(client, rest, v, out, err);
      case 'inspect':
        return await inspect(client, rest, v, out, err);
      case 'retry': {
        const [handle] = rest;
        if (handle === undefined) throw new UsageError('retry needs a job handle');
        const result = await retryJob(client, handle, { force: v.force === true });
        out.write(`${handle}: ${result}\n`);
        return result === 'retried' ? 0 : 1;
      }
      case 'stats':
        return await stats(client, v, out);
      case 'work': {
        const code = await work(client, v, out);
        keepOpen = code === undefined;
        return code;
      }
      default:
        err.write(`sharenothing schwartz: unknown command '${command}'\n${USAGE}`);
        return 64;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`sharenothing schwartz: ${e.message}\n`);
      return 64;
    }
    err.write(`sharenothing schwartz: ${(e as Error).message}\n`);
    return 1;
  } finally {
    if (!keepOpen) await client.close();
  }
}

class UsageError extends Error {}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      database: { type: 'string', multiple: true, short: 'd' },
      user: { type: 'string' },
      password: { type: 'string' },
      prefix: { type: 'string' },
      json: { type: 'boolean' },
      limit: { type: 'string' },
      force: { type: 'boolean' },
      uniqkey: { type: 'string' },
      'run-after': { type: 'string' },
      priority: { type: 'string' },
      coalesce: { type: 'string' },
      handlers: { type: 'string' },
      concurrency: { type: 'string' },
      'poll-interval': { type: 'string' },
      admin: { type: 'string' },
      'until-done': { type: 'boolean' },
      gearman: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

type Values = ReturnType<typeof parse>['values'];

function integer(value: string | undefined, flag: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value) || Number(value) < min)
    throw new UsageError(`${flag}: '${value}' is not a number ≥ ${min}`);
  return Number(value);
}

async function insert(client: SchwartzClient, rest: string[], v: Values, out: Out, err: Out): Promise<number> {
  const [funcname, arg] = rest;
  if (funcname === undefined) throw new UsageError('insert needs a function name');
  const delay = integer(v['run-after'], '--run-after', 0);
  const priority = integer(v.priority, '--priority', 0);
  const handle = await client.insert(funcname, arg === undefined ? undefined : Buffer.from(arg), {
    ...(v.uniqkey !== undefined && { uniqkey: v.uniqkey }),
    ...(delay !== undefined && { runAfter: Math.floor(Date.now() / 1000) + delay }),
    ...(priority !== undefined && { priority }),
    ...(v.coalesce !== undefined && { coalesce: v.coalesce }),
  });
  if (handle === undefined) {
    err.write(`not inserted: a ${funcname} job with uniqkey "${v.uniqkey}" exists\n`);
    return 1;
  }
  out.write(`${handle}\n`);
  return 0;
}

function recordJson(r: JobRecord) {
  return {
    handle: String(r.handle),
    jobid: String(r.jobid),
    funcname: r.funcname,
    uniqkey: r.uniqkey ?? null,
    insertTime: r.insertTime ?? null,
    runAfter: r.runAfter,
    grabbedUntil: r.grabbedUntil,
    priority: r.priority ?? null,
    coalesce: r.coalesce ?? null,
    argBytes: r.arg?.length ?? 0,
  };
}

function time(unix: number | null): string {
  return unix === null || unix === 0 ? '-' : new Date(unix * 1000).toISOString().replace('.000Z', 'Z');
}

async function list(client: SchwartzClient, rest: string[], v: Values, out: Out, _err: Out): Promise<number> {
  if (rest.length === 0) throw new UsageError('list needs at least one function name (see `stats` for all)');
  const limit = integer(v.limit, '--limit', 1);
  const jobs = (await client.listJobs({ funcname: rest, ...(limit !== undefined && { limit }) })).map(recordJson);
  if (v.json) {
    out.write(`${JSON.stringify(jobs)}\n`);
    return 0;
  }
  out.write('handle\tfuncname\trun_after\tgrabbed_until\tpriority\tuniqkey\tcoalesce\n');
  for (const j of jobs) {
    out.write(
      `${j.handle}\t${j.funcname}\t${time(j.runAfter)}\t${time(j.grabbedUntil)}\t${j.priority ?? '-'}\t` +
        `${j.uniqkey ?? '-'}\t${j.coalesce ?? '-'}\n`,
    );
  }
  return 0;
}

async function inspect(client: SchwartzClient, rest: string[], v: Values, out: Out, err: Out): Promise<number> {
  const [text] = rest;
  if (text === undefined) throw new UsageError('inspect needs a job handle');
  const handle = client.handle(text);
  const record = await handle.job();
  const report = {
    handle: text,
    pending: record !== undefined,
    job: record === undefined ? null : recordJson(record),
    exitStatus: (await handle.exitStatus()) ?? null,
    failures: await handle.failures(),
    failureLog: await handle.failureLog(),
  };
  if (v.json) {
    out.write(`${JSON.stringify(report)}\n`);
  } else {
    out.write(`handle       ${report.handle}\n`);
    out.write(`pending      ${report.pending ? 'yes' : 'no'}\n`);
    if (report.job !== null) {
      const j = report.job;
      out.write(`funcname     ${j.funcname}\nuniqkey      ${j.uniqkey ?? '-'}\ninserted     ${time(j.insertTime)}\n`);
      out.write(`run after    ${time(j.runAfter)}\ngrabbed till ${time(j.grabbedUntil)}\n`);
      out.write(
        `priority     ${j.priority ?? '-'}\ncoalesce     ${j.coalesce ?? '-'}\narg          ${j.argBytes} bytes\n`,
      );
    }
    out.write(`exit status  ${report.exitStatus ?? '-'}\nfailures     ${report.failures}\n`);
    for (const message of report.failureLog) out.write(`  - ${message}\n`);
  }
  if (!report.pending && report.exitStatus === null && report.failures === 0) {
    err.write(`${text}: no such job (or completed without a kept exit status)\n`);
    return 1;
  }
  return 0;
}

async function stats(client: SchwartzClient, v: Values, out: Out): Promise<number> {
  const rows = await queueSummary(client);
  if (v.json) {
    out.write(`${JSON.stringify(rows)}\n`);
    return 0;
  }
  out.write('database\tfuncname\tready\trunning\twaiting\tfailures(1h)\n');
  for (const r of rows) {
    out.write(`${r.database}\t${r.funcname}\t${r.ready}\t${r.running}\t${r.waiting}\t${r.recentFailures}\n`);
  }
  return 0;
}

/** What a handlers module gives the worker. */
export interface HandlersModule {
  handlers: Map<string, HandlerEntry>;
  schedules: RecurringJob[];
}

/**
 * Loads the handlers module: `export default { fn: handler | { handler, ...options } }` (or `export const
 * handlers`), and its optional `export const schedules = [...]`.
 */
export async function loadHandlers(path: string): Promise<HandlersModule> {
  const mod = (await import(pathToFileURL(resolve(path)).href)) as {
    default?: unknown;
    handlers?: unknown;
    schedules?: unknown;
  };
  const table = mod.handlers ?? mod.default;
  if (table === null || typeof table !== 'object') {
    throw new UsageError(`${path} exports no handlers object (export default { 'Func::Name': async (job) => … })`);
  }
  const out = new Map<string, HandlerEntry>();
  for (const [name, entry] of Object.entries(table)) {
    const ok =
      typeof entry === 'function' ||
      (entry !== null && typeof entry === 'object' && typeof (entry as { handler?: unknown }).handler === 'function');
    if (!ok) throw new UsageError(`${path}: the handler for ${name} is not a function or { handler }`);
    out.set(name, entry as HandlerEntry);
  }
  if (out.size === 0) throw new UsageError(`${path} exports no handlers`);
  const schedules = mod.schedules ?? [];
  if (!Array.isArray(schedules)) throw new UsageError(`${path}: \`schedules\` must be an array`);
  return { handlers: out, schedules: schedules as RecurringJob[] };
}

async function work(client: SchwartzClient, v: Values, out: Out): Promise<number | undefined> {
  if (v.handlers === undefined) throw new UsageError('work needs --handlers MODULE');
  const { handlers, schedules } = await loadHandlers(v.handlers);
  const concurrency = integer(v.concurrency, '--concurrency', 1);
  const pollInterval = integer(v['poll-interval'], '--poll-interval', 1);
  const gearman = v.gearman ?? [];
  const worker = new SchwartzWorker(client, {
    ...(concurrency !== undefined && { concurrency }),
    ...(pollInterval !== undefined && { pollInterval }),
    ...(gearman.length > 0 && { wakeOn: { gearman } }),
  });
  for (const [name, entry] of handlers) {
    if (typeof entry === 'function') worker.canDo(name, entry);
    else {
      const { handler, ...options } = entry;
      worker.canDo(name, handler, options);
    }
  }
  const logger = createLogger({ name: 'schwartz', level: 'info', stream: process.stderr });
  const onJob = (message: unknown) => {
    const e = message as SchwartzJobEvent;
    if (e.type === 'error') {
      logger.warn('job error', { funcname: e.funcname, handle: e.handle, stage: e.stage, err: e.error.message });
    }
  };
  diagnostics.subscribe(JOB_CHANNEL, onJob);
  if (v['until-done']) {
    try {
      const done = await worker.workUntilDone();
      out.write(`worked ${done} job(s)\n`);
      return 0;
    } finally {
      diagnostics.unsubscribe(JOB_CHANNEL, onJob);
      await worker.close();
    }
  }
  const registry = new MetricsRegistry();
  const stopMetrics = schwartzMetrics(registry);
  let admin: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  if (v.admin !== undefined) {
    const m = /^(.*):(\d+)$/.exec(v.admin);
    if (m === null) throw new UsageError('--admin needs HOST:PORT');
    admin = await startAdminServer({ host: m[1] || '127.0.0.1', port: Number(m[2]), registry, logger });
  }
  const controller = new AbortController();
  const scheduler = schedules.length > 0 ? new SchwartzScheduler(client, { schedules }) : undefined;
  const scheduling = scheduler?.run({ signal: controller.signal }).catch((e: unknown) => {
    logger.error('scheduler stopped', { err: (e as Error).message });
  });
  const running = worker.work({ signal: controller.signal });
  logger.info('worker started', { functions: [...handlers.keys()], concurrency: concurrency ?? 1 });
  out.write(`working on ${[...handlers.keys()].join(', ')}${admin ? ` (metrics on ${v.admin})` : ''}\n`);
  const stop = async () => {
    // Graceful: grab nothing new, let running jobs finish and write their outcomes.
    controller.abort();
    await scheduler?.close();
    await scheduling;
    await worker.close();
    await running.catch(() => {});
    stopMetrics();
    diagnostics.unsubscribe(JOB_CHANNEL, onJob);
    await admin?.close();
    await client.close();
  };
  // Running jobs get a minute to finish (a second signal exits at once; unfinished jobs run again after their lease).
  installShutdownHandlers({ close: () => stop(), logger, deadlineMs: 60_000 });
  running.catch(async (e: unknown) => {
    logger.error('worker stopped', { err: (e as Error).message });
    await stop();
    process.exitCode = 1;
  });
  return undefined;
}
