// Benchmark child for bench/schwartz.ts: our SchwartzClient / SchwartzWorker in one process, the twin of
// bench/lib/schwartz-bench.pl (Perl TheSchwartz). Protocol and configuration: bench/lib/schwartz-common.ts.
//
//   node bench/lib/schwartz-node.ts '<ChildConfig as JSON>'
import { createInterface } from 'node:readline';
import { SchwartzClient, SchwartzWorker } from '../../src/schwartz/index.ts';
import { type ChildConfig, type ChildMessage, jobArg } from './schwartz-common.ts';

const cfg = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;

function send(msg: ChildMessage): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

function fail(err: unknown): never {
  send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exit(1);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
setTimeout(() => fail(new Error(`deadline of ${cfg.deadlineMs} ms passed`)), cfg.deadlineMs).unref();

const lines = createInterface({ input: process.stdin });
const nextLine = new Promise<string>((resolve, reject) => {
  lines.once('line', resolve);
  lines.once('close', () => reject(new Error('parent went away')));
});

const client = new SchwartzClient({
  databases: [
    {
      dsn: cfg.dsn,
      prefix: cfg.prefix,
      ...(cfg.user !== undefined && { user: cfg.user }),
      ...(cfg.password !== undefined && { password: cfg.password }),
    },
  ],
});

let worker: SchwartzWorker | undefined;
if (cfg.mode === 'work') {
  worker = new SchwartzWorker(client, { concurrency: cfg.concurrency });
  // A handler that resolves completes its job (Perl's work() calls $job->completed).
  worker.canDo(cfg.funcname, () => {});
  // Connects and loads the funcmap, as the Perl side's list_jobs does.
  await client.listJobs({ funcname: cfg.funcname, limit: 1 });
} else {
  if ((await client.insert(cfg.funcname, jobArg('warm', cfg.payload))) === undefined) fail('warm-up insert failed');
}
send({ type: 'ready' });
await nextLine;
lines.close();

const cpu0 = process.cpuUsage();
const t0 = performance.now();
let count = 0;
switch (cfg.mode) {
  case 'insert':
    for (let i = 1; i <= cfg.jobs; i++) {
      if ((await client.insert(cfg.funcname, jobArg(i, cfg.payload))) === undefined) fail(`insert ${i} failed`);
      count++;
    }
    break;
  case 'insert-batch':
    for (let i = 0; i < cfg.jobs; i += cfg.batch) {
      const n = Math.min(cfg.batch, cfg.jobs - i);
      const jobs = Array.from({ length: n }, (_, k) => ({
        funcname: cfg.funcname,
        arg: jobArg(i + k + 1, cfg.payload),
      }));
      const handles = await client.insertJobs(jobs);
      if (handles.some((h) => h === undefined)) fail(`insertJobs at ${i} returned a duplicate`);
      count += n;
    }
    break;
  case 'work':
    count = await (worker as SchwartzWorker).workUntilDone();
    break;
  default:
    fail(`unknown mode ${String(cfg.mode)}`);
}
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
send({ type: 'done', count, ms, cpuMs: (cpu.user + cpu.system) / 1000 });
await worker?.close();
await client.close();
process.exit(0);
