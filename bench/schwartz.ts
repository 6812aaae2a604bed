// TheSchwartz queue throughput: our SchwartzClient / SchwartzWorker against the real TheSchwartz 1.12 (Perl,
// Debian's libtheschwartz-perl) on the same database, same tables, same jobs, in one run.
//
//   npx node bench/schwartz.ts [--jobs 3000] [--runs 3] [--only insert,work1,work4] [--engines sqlite,mysql]
//                              [--perl default,cache] [--no-extras] [--json FILE] …   (--help for all)
//
// Every measurement gets fresh tables (a new SQLite file; a new table prefix in a throw-away MariaDB database) made by
// our ensureSchema (TheSchwartz's own DDL), and fresh child processes (bench/lib/schwartz-node.ts for ours,
// bench/lib/schwartz-bench.pl for Perl) that connect and warm up, then start together on "go". Sides alternate run
// by run; medians over the runs are reported with the ratio ours / the better Perl configuration.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { SchwartzClient } from '../src/schwartz/index.ts';
import { openDatabase } from '../src/sql/index.ts';
import {
  findListeningPid,
  fmtInt,
  fmtRatio,
  installCleanup,
  intArg,
  log,
  markdownTable,
  median,
  nodeBinary,
  REPO_ROOT,
  readCpuSeconds,
  readMachineBusySeconds,
  table,
  usage,
} from './lib/harness.ts';
import { type ChildConfig, type ChildMessage, type ChildMode, FUNCNAME, jobArg } from './lib/schwartz-common.ts';

const NODE_CHILD = path.join(REPO_ROOT, 'bench', 'lib', 'schwartz-node.ts');
const PERL_CHILD = path.join(REPO_ROOT, 'bench', 'lib', 'schwartz-bench.pl');

type EngineName = 'sqlite' | 'mysql';
const ENGINE_NAMES: readonly EngineName[] = ['sqlite', 'mysql'];
type CaseName = 'insert' | 'work1' | 'work4';
const CASE_NAMES: readonly CaseName[] = ['insert', 'work1', 'work4'];
type PerlVariant = 'default' | 'cache';
const PERL_VARIANTS: readonly PerlVariant[] = ['default', 'cache'];

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '3000' },
    runs: { type: 'string', default: '3' },
    only: { type: 'string', multiple: true },
    engines: { type: 'string', default: 'sqlite,mysql' },
    perl: { type: 'string', default: 'default,cache' },
    'driver-cache': { type: 'string', default: '300' },
    'no-extras': { type: 'boolean', default: false },
    batch: { type: 'string', default: '1000' },
    payload: { type: 'string', default: '32' },
    concurrency: { type: 'string', default: '8' },
    timeout: { type: 'string' },
    mysql: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (args.help) {
  process.stdout.write(
    'usage: npx node bench/schwartz.ts [--jobs 3000] [--runs 3] [--only insert,work1,work4]\n' +
      '         [--engines sqlite,mysql] [--perl default,cache] [--driver-cache 300] [--no-extras]\n' +
      '         [--batch 1000] [--payload 32] [--concurrency 8] [--timeout SECONDS] [--mysql URL] [--json FILE]\n' +
      '  --perl        which Perl configurations to run: default = TheSchwartz->new as documented (a new DBI\n' +
      '                connection for every search, grab, outcome and insert); cache = driver_cache_expiration\n' +
      '                (--driver-cache seconds), which keeps the connection\n' +
      '  --no-extras   skip the extra measurements (ours batched insertJobs, Perl insert_jobs, ours with\n' +
      '                --concurrency jobs per worker process)\n' +
      '  --mysql       MariaDB/MySQL server (default $SHARENOTHING_BENCH_MYSQL or mysql://root@127.0.0.1:3306);\n' +
      '                a database sn_bench_<random> is created there and dropped at the end\n' +
      '  --timeout     per measurement (default 60 s + 150 ms per job)\n',
  );
  process.exit(0);
}

function listArg<T extends string>(name: string, values: string[], known: readonly T[]): T[] {
  const wanted = values.flatMap((s) => s.split(',')).filter(Boolean);
  for (const w of wanted) if (!known.includes(w as T)) usage(`--${name}: unknown ${w}; known: ${known.join(', ')}`);
  return known.filter((k) => wanted.includes(k));
}

const jobs = intArg('jobs', args.jobs);
const runs = intArg('runs', args.runs);
const batch = intArg('batch', args.batch);
const payload = intArg('payload', args.payload, 8);
const extraConcurrency = intArg('concurrency', args.concurrency);
const driverCache = intArg('driver-cache', args['driver-cache']);
const extras = !args['no-extras'];
const cases = args.only ? listArg('only', args.only, CASE_NAMES) : [...CASE_NAMES];
const engines = listArg('engines', [args.engines ?? ''], ENGINE_NAMES);
const perlVariants = listArg('perl', [args.perl ?? ''], PERL_VARIANTS);
if (cases.length === 0 || engines.length === 0) usage('nothing to run');
const timeoutMs =
  args.timeout !== undefined ? intArg('timeout', args.timeout) * 1000 : 60_000 + 100 * (jobs + (jobs >> 1));
const mysqlServer = args.mysql ?? process.env.SHARENOTHING_BENCH_MYSQL ?? 'mysql://root@127.0.0.1:3306';

// ---------------------------------------------------------------------------------------------------------------
// Cases and sides

interface CaseDef {
  title: string;
  /** Worker processes (work cases) — insert cases always run one process. */
  processes: number;
  /** The ratio ours / the better Perl the project issue asks for. */
  target: number;
}

const CASES: Record<CaseName, CaseDef> = {
  insert: { title: 'insert, one job at a time (1 process)', processes: 1, target: 3 },
  work1: { title: 'work, 1 worker process', processes: 1, target: 3 },
  work4: { title: 'work, 4 worker processes', processes: 4, target: 3 },
};

/** One way of running a case: which implementation, in which mode and configuration. */
interface Side {
  id: string;
  impl: 'ours' | 'perl';
  mode: ChildMode;
  concurrency: number;
  driverCache: number;
  /** Extra information, not part of the comparison. */
  extra: boolean;
}

const PERL_LABEL: Record<PerlVariant, string> = { default: 'perl', cache: 'perl+cache' };

function sidesFor(c: CaseName): Side[] {
  const work = c !== 'insert';
  const mode: ChildMode = work ? 'work' : 'insert';
  const sides: Side[] = [{ id: 'ours', impl: 'ours', mode, concurrency: 1, driverCache: 0, extra: false }];
  for (const v of perlVariants) {
    sides.push({
      id: PERL_LABEL[v],
      impl: 'perl',
      mode,
      concurrency: 1,
      driverCache: v === 'cache' ? driverCache : 0,
      extra: false,
    });
  }
  if (extras && work) {
    sides.push({
      id: `ours c=${extraConcurrency}`,
      impl: 'ours',
      mode,
      concurrency: extraConcurrency,
      driverCache: 0,
      extra: true,
    });
  }
  if (extras && !work) {
    sides.push(
      { id: 'ours insertJobs', impl: 'ours', mode: 'insert-batch', concurrency: 1, driverCache: 0, extra: true },
      { id: 'perl insert_jobs', impl: 'perl', mode: 'insert-batch', concurrency: 1, driverCache: 0, extra: true },
    );
  }
  return sides;
}

// ---------------------------------------------------------------------------------------------------------------
// Engines: where a measurement's fresh tables live

interface Tables {
  dsn: string;
  user?: string;
  password?: string;
  prefix: string;
  /** Rows in the job table now. */
  countJobs(): Promise<number>;
  /** Removes the tables (SQLite: the file). */
  drop(): Promise<void>;
}

interface Engine {
  name: EngineName;
  /** Label for the report: version and settings. */
  describe: string;
  /** pid of the database server process (for its CPU), if there is one and it could be found. */
  serverPid: number | undefined;
  fresh(label: string): Tables;
  close(): Promise<void>;
}

let tmpDir = '';
let measurementSeq = 0;

async function countRows(dsn: string, table: string, auth: { user?: string; password?: string } = {}): Promise<number> {
  const db = await openDatabase(dsn, { connections: 1, ...auth });
  try {
    const [row] = await db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`);
    return Number(row?.n);
  } finally {
    await db.close();
  }
}

async function sqliteEngine(): Promise<Engine> {
  const { DatabaseSync } = await import('node:sqlite');
  const probe = new DatabaseSync(':memory:');
  const version = (probe.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
  probe.close();
  const perl = spawnSync('perl', ['-MDBD::SQLite', '-e', 'print $DBD::SQLite::sqlite_version'], { encoding: 'utf8' });
  return {
    name: 'sqlite',
    describe:
      `SQLite file in ${tmpDir} (WAL, synchronous=FULL on both sides); node:sqlite ${version}, ` +
      `DBD::SQLite's ${perl.stdout.trim() || '?'}`,
    serverPid: undefined,
    fresh(label) {
      const file = path.join(tmpDir, `${label}.db`);
      const dsn = `dbi:SQLite:dbname=${file}`;
      return {
        dsn,
        prefix: '',
        countJobs: () => countRows(dsn, 'job'),
        drop: async () => {
          for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(file + suffix, { force: true });
        },
      };
    },
    close: async () => {},
  };
}

/** Drops a database from a separate process: usable from an 'exit' handler (Ctrl-C, a crash). */
function dropDatabaseSync(server: string, name: string): void {
  const entry = new URL('../src/sql/index.ts', import.meta.url).href;
  const script =
    `import { openDatabase } from ${JSON.stringify(entry)};` +
    `const db = await openDatabase(${JSON.stringify(server)}, { connections: 1 });` +
    `await db.run(${JSON.stringify(`DROP DATABASE IF EXISTS ${name}`)}); await db.close();`;
  spawnSync(nodeBinary(), ['--input-type=module', '-e', script], { stdio: 'ignore', timeout: 15_000 });
}

async function mysqlEngine(): Promise<Engine> {
  const name = `sn_bench_${randomBytes(4).toString('hex')}`;
  const url = new URL(mysqlServer);
  let admin: Awaited<ReturnType<typeof openDatabase>>;
  let version: string;
  try {
    admin = await openDatabase(mysqlServer, { connections: 1, connectTimeout: 5000 });
    const [row] = await admin.query<{ v: string }>('SELECT VERSION() AS v');
    version = String(row?.v);
    await admin.run(`CREATE DATABASE ${name}`);
  } catch (err) {
    throw new Error(
      `MariaDB/MySQL at ${url.host} is not usable (${(err as Error).message}); give --mysql URL, or --engines sqlite`,
    );
  }
  const onExit = () => dropDatabaseSync(mysqlServer, name);
  process.on('exit', onExit);
  const user = decodeURIComponent(url.username) || undefined;
  const password = decodeURIComponent(url.password) || undefined;
  const host = url.hostname;
  const port = Number(url.port || 3306);
  const dsn = `dbi:mysql:database=${name};host=${host};port=${port}`;
  const [flush] = await admin.query<{ v: string }>('SELECT @@innodb_flush_log_at_trx_commit AS v');
  const serverPid = host === '127.0.0.1' || host === 'localhost' ? findListeningPid(port) : undefined;
  return {
    name: 'mysql',
    describe:
      `${version} at ${host}:${port}, database ${name} (InnoDB, innodb_flush_log_at_trx_commit=${flush?.v}); ` +
      'ours through mysql2, Perl through DBD::mysql',
    serverPid,
    fresh(label) {
      const prefix = `${label}_`;
      const auth = { ...(user !== undefined && { user }), ...(password !== undefined && { password }) };
      return {
        dsn,
        ...auth,
        prefix,
        countJobs: () => countRows(dsn, `${prefix}job`, auth),
        drop: async () => {
          for (const t of ['job', 'funcmap', 'error', 'exitstatus', 'note']) {
            await admin.run(`DROP TABLE IF EXISTS ${name}.${prefix}${t}`);
          }
        },
      };
    },
    close: async () => {
      try {
        await admin.run(`DROP DATABASE IF EXISTS ${name}`);
        process.off('exit', onExit);
      } finally {
        await admin.close();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Child processes: each in its own process group, all killed on exit, Ctrl-C or a crash.

const live = new Set<ChildProcess>();

function killChild(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    try {
      child.kill('SIGKILL');
    } catch {
      // gone
    }
  }
}

process.on('exit', () => {
  for (const c of live) killChild(c);
});

class BenchChild {
  readonly proc: ChildProcess;
  readonly label: string;
  readonly exited: Promise<void>;
  #messages: ChildMessage[] = [];
  #waiter: (() => void) | undefined;
  #exit: string | undefined;
  #stderr = '';
  /** performance.now() when `done` arrived. */
  doneAt = 0;

  constructor(argv: string[], label: string) {
    this.label = label;
    const [cmd, ...rest] = argv;
    this.proc = spawn(cmd as string, rest, { cwd: REPO_ROOT, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(this.proc);
    this.proc.stdin?.on('error', () => {}); // EPIPE when the child died first: its exit says why
    this.proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.#stderr = (this.#stderr + d).slice(-4000);
    });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      let msg: ChildMessage;
      try {
        msg = JSON.parse(line) as ChildMessage;
      } catch {
        this.#stderr = `${this.#stderr}${line}\n`.slice(-4000);
        return;
      }
      if (msg.type === 'done') this.doneAt = performance.now();
      this.#messages.push(msg);
      this.#wake();
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('error', (err) => {
        this.#exit = `failed to start: ${err.message}`;
        live.delete(this.proc);
        this.#wake();
        resolve();
      });
      this.proc.on('close', (code, signal) => {
        this.#exit ??= `exited (code ${code}, signal ${signal})`;
        live.delete(this.proc);
        this.#wake();
        resolve();
      });
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** The next message, which must be of `type`; rejects on an error message, the child's exit or the deadline. */
  async next<T extends ChildMessage['type']>(type: T, deadline: number): Promise<Extract<ChildMessage, { type: T }>> {
    for (;;) {
      const msg = this.#messages.shift();
      if (msg !== undefined) {
        if (msg.type === 'error') throw new Error(`${this.label}: ${msg.message}`);
        if (msg.type !== type) throw new Error(`${this.label}: expected ${type}, got ${msg.type}`);
        return msg as Extract<ChildMessage, { type: T }>;
      }
      if (this.#exit !== undefined) {
        throw new Error(`${this.label} ${this.#exit}${this.#stderr ? `: ${this.#stderr.trim().slice(-800)}` : ''}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.label}: no ${type} within the time limit`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  go(): void {
    this.proc.stdin?.write('go\n');
  }

  async kill(): Promise<void> {
    killChild(this.proc);
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 5000))]);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One measurement

interface Measurement {
  engine: EngineName;
  case: CaseName;
  side: string;
  run: number;
  /** jobs per second (inserted or worked). */
  rate: number;
  seconds: number;
  /** CPU of the benchmark processes (ours or Perl) per job, µs. */
  clientCpuUsPerJob: number;
  /** CPU of the database server per job, µs (MariaDB only). */
  dbCpuUsPerJob: number;
  /** CPU of processes outside the benchmark, in cores, over the window. */
  otherCpu: number;
  /** Jobs each process handled (work cases). */
  perProcess: number[];
  failure?: string;
}

async function preinsert(tables: Tables, count: number): Promise<void> {
  const client = new SchwartzClient({
    databases: [
      {
        dsn: tables.dsn,
        prefix: tables.prefix,
        ...(tables.user !== undefined && { user: tables.user }),
        ...(tables.password !== undefined && { password: tables.password }),
      },
    ],
    connections: 1,
  });
  try {
    await client.ensureSchema();
    for (let i = 0; i < count; i += 1000) {
      const n = Math.min(1000, count - i);
      await client.insertJobs(
        Array.from({ length: n }, (_, k) => ({ funcname: FUNCNAME, arg: jobArg(i + k, payload) })),
      );
    }
  } finally {
    await client.close();
  }
}

async function measure(engine: Engine, c: CaseName, side: Side, run: number): Promise<Measurement> {
  const m: Measurement = {
    engine: engine.name,
    case: c,
    side: side.id,
    run,
    rate: Number.NaN,
    seconds: Number.NaN,
    clientCpuUsPerJob: Number.NaN,
    dbCpuUsPerJob: Number.NaN,
    otherCpu: Number.NaN,
    perProcess: [],
  };
  const tables = engine.fresh(`m${++measurementSeq}`);
  const children: BenchChild[] = [];
  try {
    const work = side.mode === 'work';
    await preinsert(tables, work ? jobs : 0);
    const processes = work ? CASES[c].processes : 1;
    const deadline = Date.now() + timeoutMs;
    const config: ChildConfig = {
      mode: side.mode,
      dsn: tables.dsn,
      ...(tables.user !== undefined && { user: tables.user }),
      ...(tables.password !== undefined && { password: tables.password }),
      prefix: tables.prefix,
      funcname: FUNCNAME,
      jobs,
      batch,
      concurrency: side.concurrency,
      payload,
      driverCache: side.driverCache,
      deadlineMs: timeoutMs,
    };
    const argv =
      side.impl === 'ours'
        ? [nodeBinary(), NODE_CHILD, JSON.stringify(config)]
        : ['perl', PERL_CHILD, JSON.stringify(config)];
    for (let i = 0; i < processes; i++) children.push(new BenchChild(argv, `${side.id} process ${i + 1}`));
    await Promise.all(children.map((ch) => ch.next('ready', Math.min(deadline, Date.now() + 60_000))));

    // Other CPU = the machine's busy time less ours: this script, the children (their own count from go to done)
    // and the database server. The children may be gone by the time the last one is done, so /proc can't be asked.
    const busy0 = readMachineBusySeconds();
    const self0 = process.cpuUsage();
    const db0 = engine.serverPid !== undefined ? readCpuSeconds(engine.serverPid) : Number.NaN;
    const t0 = performance.now();
    for (const ch of children) ch.go();
    const dones = await Promise.all(children.map((ch) => ch.next('done', deadline)));
    const t1 = Math.max(...children.map((ch) => ch.doneAt));
    const db1 = engine.serverPid !== undefined ? readCpuSeconds(engine.serverPid) : Number.NaN;
    const self = process.cpuUsage(self0);
    const childCpu = dones.reduce((a, d) => a + d.cpuMs, 0) / 1000;
    const known = childCpu + (self.user + self.system) / 1e6 + (Number.isFinite(db1 - db0) ? db1 - db0 : 0);
    m.otherCpu = Math.max(0, (readMachineBusySeconds() - busy0 - known) / ((t1 - t0) / 1000));

    const done = dones.reduce((a, d) => a + d.count, 0);
    m.seconds = (t1 - t0) / 1000;
    m.rate = jobs / m.seconds;
    m.perProcess = dones.map((d) => d.count);
    m.clientCpuUsPerJob = (dones.reduce((a, d) => a + d.cpuMs, 0) * 1000) / jobs;
    m.dbCpuUsPerJob = ((db1 - db0) * 1e6) / jobs;
    await Promise.all(children.map((ch) => Promise.race([ch.exited, new Promise((r) => setTimeout(r, 5000))])));

    // Consistency: every job inserted (plus the warm-up job) / the queue empty and every job worked exactly once.
    const left = await tables.countJobs();
    if (work) {
      if (left !== 0) m.failure = `${left} job(s) still in the table after the workers finished`;
      else if (done !== jobs) m.failure = `the workers report ${done} jobs worked, ${jobs} were queued`;
    } else if (done !== jobs || left !== jobs + 1) {
      m.failure = `inserted ${done}, the table holds ${left} (expected ${jobs} + 1 warm-up job)`;
    }
  } catch (err) {
    m.failure = (err as Error).message;
  } finally {
    await Promise.all(children.map((ch) => ch.kill()));
    await tables.drop().catch((err: Error) => log(`dropping ${tables.prefix || tables.dsn}: ${err.message}`));
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------------
// Report

interface Summary {
  rate: number;
  clientCpuUsPerJob: number;
  dbCpuUsPerJob: number;
  otherCpu: number;
  failed: boolean;
  runs: Measurement[];
}

function summarize(ms: Measurement[]): Summary {
  const ok = ms.filter((m) => m.failure === undefined);
  return {
    rate: median(ok.map((m) => m.rate)),
    clientCpuUsPerJob: median(ok.map((m) => m.clientCpuUsPerJob)),
    dbCpuUsPerJob: median(ok.map((m) => m.dbCpuUsPerJob)),
    otherCpu: Math.max(0, ...ok.map((m) => m.otherCpu).filter(Number.isFinite)),
    failed: ms.length === 0 || ms.some((m) => m.failure !== undefined),
    runs: ms,
  };
}

const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : 'n/a');
const us = (x: number) => (Number.isFinite(x) ? fmtInt(x) : 'n/a');

function describeRun(m: Measurement): string {
  if (m.failure) return `FAILED: ${m.failure}`;
  return (
    `${fmtInt(m.rate).padStart(7)} jobs/s  ${m.seconds.toFixed(2)} s  client cpu ${us(m.clientCpuUsPerJob)} µs/job` +
    `${Number.isFinite(m.dbCpuUsPerJob) ? `  db cpu ${us(m.dbCpuUsPerJob)} µs/job` : ''}  other cpu ${pct(m.otherCpu)}` +
    `${m.perProcess.length > 1 ? `  per process ${m.perProcess.join('/')}` : ''}`
  );
}

async function main(): Promise<void> {
  installCleanup();
  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'schwartz-bench-'));
  process.on('exit', () => rmSync(tmpDir, { recursive: true, force: true }));
  const started = new Date();
  const load = os.loadavg();
  log(
    `load average ${load.map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} cores` +
      (load[0]! > 0.5 ? ' — WARNING: the machine is busy, numbers will be noisy' : ''),
  );
  const perlVersion = spawnSync('perl', ['-MTheSchwartz', '-e', 'print $TheSchwartz::VERSION'], { encoding: 'utf8' });
  if (perlVersion.status !== 0) {
    throw new Error(`Perl TheSchwartz is not installed (apt-get install libtheschwartz-perl): ${perlVersion.stderr}`);
  }

  const all: Measurement[] = [];
  const results: Partial<Record<EngineName, Partial<Record<CaseName, Record<string, Summary>>>>> = {};
  const engineInfo: Partial<Record<EngineName, string>> = {};
  for (const en of engines) {
    const engine = en === 'sqlite' ? await sqliteEngine() : await mysqlEngine();
    engineInfo[en] = engine.describe;
    log(`engine ${en}: ${engine.describe}`);
    results[en] = {};
    try {
      for (const c of cases) {
        const sides = sidesFor(c);
        log(`${en} / ${CASES[c].title}: ${sides.map((s) => s.id).join(', ')} × ${runs} run(s), ${fmtInt(jobs)} jobs`);
        const per: Record<string, Measurement[]> = Object.fromEntries(sides.map((s) => [s.id, []]));
        for (let r = 1; r <= runs; r++) {
          const order = r % 2 === 1 ? sides : [...sides].reverse();
          for (const s of order) {
            const m = await measure(engine, c, s, r);
            per[s.id]!.push(m);
            all.push(m);
            log(`  run ${r} ${s.id.padEnd(16)} ${describeRun(m)}`);
          }
        }
        results[en]![c] = Object.fromEntries(sides.map((s) => [s.id, summarize(per[s.id]!)]));
      }
    } finally {
      await engine.close();
    }
  }

  // ---- tables --------------------------------------------------------------------------------------------------
  const perlIds = perlVariants.map((v) => PERL_LABEL[v]);
  const header = ['engine', 'case', 'ours', ...perlIds, 'ratio vs better perl', 'target', 'met?'];
  const rows: string[][] = [];
  const comparisons: { engine: EngineName; case: CaseName; ratio: number; versus: string; met: boolean | null }[] = [];
  const cell = (s: Summary | undefined) => (s ? `${fmtInt(s.rate)}${s.failed ? '!' : ''}` : 'n/a');
  for (const en of engines) {
    for (const c of cases) {
      const sums = results[en]![c]!;
      const ours = sums.ours!;
      let best: string | undefined;
      for (const id of perlIds) if (best === undefined || (sums[id]!.rate || 0) > (sums[best]!.rate || 0)) best = id;
      const ratio = best !== undefined ? ours.rate / sums[best]!.rate : Number.NaN;
      const met = Number.isFinite(ratio) ? ratio >= CASES[c].target : null;
      comparisons.push({ engine: en, case: c, ratio, versus: best ?? 'n/a', met });
      rows.push([
        en,
        `${CASES[c].title} jobs/s`,
        cell(ours),
        ...perlIds.map((id) => cell(sums[id])),
        `${fmtRatio(ratio)}${best ? ` (${best})` : ''}`,
        `≥ ${CASES[c].target}x`,
        met === null ? 'n/a' : met ? 'yes' : 'NO',
      ]);
    }
  }

  const extraHeader = ['engine', 'case', 'side', 'jobs/s', 'vs ours'];
  const extraRows: string[][] = [];
  const detailHeader = [
    'engine',
    'case',
    'side',
    'jobs/s (runs)',
    'median',
    'client cpu µs/job',
    'db cpu µs/job',
    'other cpu',
  ];
  const detailRows: string[][] = [];
  for (const en of engines) {
    for (const c of cases) {
      const sums = results[en]![c]!;
      for (const s of sidesFor(c)) {
        const sum = sums[s.id]!;
        if (s.extra) {
          extraRows.push([en, CASES[c].title, s.id, cell(sum), fmtRatio(sum.rate / sums.ours!.rate)]);
        }
        detailRows.push([
          en,
          c,
          s.id + (sum.failed ? '!' : ''),
          sum.runs.map((m) => (m.failure ? 'fail' : fmtInt(m.rate))).join(' / '),
          fmtInt(sum.rate),
          us(sum.clientCpuUsPerJob),
          us(sum.dbCpuUsPerJob),
          pct(sum.otherCpu),
        ]);
      }
    }
  }

  const out: string[] = [''];
  out.push(
    `${fmtInt(jobs)} jobs per measurement (${payload}-byte arguments, one function ${FUNCNAME}), ${runs} run(s), ` +
      "fresh tables (our ensureSchema: TheSchwartz's DDL) and fresh processes per measurement, sides alternated; medians.",
  );
  out.push(
    `ours: SchwartzClient.insert / SchwartzWorker(concurrency 1).workUntilDone per process (node ${process.version}); ` +
      `perl: TheSchwartz ${perlVersion.stdout.trim()} insert / can_do + work_until_done, work() calls $job->completed ` +
      `(perl = TheSchwartz->new defaults: a new DBI connection per operation; perl+cache = driver_cache_expiration ${driverCache}).`,
  );
  for (const en of engines) out.push(`${en}: ${engineInfo[en]}`);
  out.push(
    'work: jobs pre-inserted, then N worker processes start together; the time runs until the last one has found ' +
      'nothing left (the table is checked empty). client cpu = CPU of the ours/Perl processes per job; db cpu = ' +
      'the MariaDB server\'s; other cpu = processes outside the benchmark (noise). "!" = a failed run.',
  );
  out.push('');
  out.push(table(header, rows));
  if (extraRows.length > 0) {
    out.push('', 'extra (not part of the comparison):', table(extraHeader, extraRows));
  }
  out.push('', table(detailHeader, detailRows));
  out.push('', markdownTable(header, rows));
  if (extraRows.length > 0) out.push('', markdownTable(extraHeader, extraRows));
  out.push('', markdownTable(detailHeader, detailRows));
  for (const m of all) if (m.failure) out.push(`${m.engine} ${m.case} ${m.side} run ${m.run}: ${describeRun(m)}`);
  const maxOther = Math.max(0, ...all.map((m) => m.otherCpu).filter(Number.isFinite));
  const loadEnd = os.loadavg();
  out.push(
    `load average at start ${load.map((l) => l.toFixed(2)).join(' ')}, at end ${loadEnd.map((l) => l.toFixed(2)).join(' ')}`,
  );
  if (maxOther > 0.2 || load[0]! > 0.5) {
    out.push(
      `WARNING: other processes used up to ${pct(maxOther)} CPU during a measurement; the numbers are noisy — ` +
        'rerun on a quiet machine.',
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);

  const json = {
    benchmark: 'schwartz',
    started: started.toISOString(),
    host: { cpus: os.cpus().length, kernel: os.release(), node: process.version, loadavg: load, loadavgEnd: loadEnd },
    theschwartz: perlVersion.stdout.trim(),
    engines: engineInfo,
    settings: { jobs, runs, batch, payload, extraConcurrency, driverCache, perlVariants, cases, engines, extras },
    comparisons,
    results,
  };
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify(json, null, 2)}\n`);
    log(`wrote ${args.json}`);
  } else {
    process.stdout.write(`\nJSON: ${JSON.stringify(json)}\n`);
  }
  process.exitCode = all.some((m) => m.failure) ? 1 : 0;
}

await main();
