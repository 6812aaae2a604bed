// Job-server throughput and latency: our gearmand-compatible server against the real gearmand, same run, same
// load generator (Node processes speaking the raw binary protocol, bench/lib/gearman-loadgen.ts).
//
//   npx node bench/gearman.ts [--seconds 10] [--warmup 1] [--runs 3] [--only fg,bg,drain,coalesce,durable]
//                             [--server ours|gearmand] [--procs 2] [--json FILE] …   (--help for all)
//
// Every measurement starts a fresh server (so queued jobs of one never weigh on the next) and fresh generator
// processes; servers alternate run by run; medians over the runs are reported with the ratio ours/gearmand.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  adminStatus,
  type ChildMessage,
  FUNCTION_NAME,
  Histogram,
  type ParentMessage,
  SLOT_MS,
  type Task,
  type TaskResult,
} from './lib/gearman-common.ts';
import {
  BackgroundCpu,
  fmtInt,
  fmtMiB,
  fmtRatio,
  HOST,
  installCleanup,
  intArg,
  log,
  median,
  nodeBinary,
  type PortChoice,
  pushTables,
  REPO_ROOT,
  type RunningServer,
  readCpuSeconds,
  readMem,
  readThreadCount,
  sleep,
  spawnTracked,
  startListening,
  stopServer,
  type TrackedChild,
  usage,
} from './lib/harness.ts';

const GEARMAND_BIN = process.env.GEARMAND_BIN ?? '/usr/sbin/gearmand';
const LOADGEN = path.join(REPO_ROOT, 'bench', 'lib', 'gearman-loadgen.ts');

type ServerName = 'ours' | 'gearmand';
const SERVER_NAMES: readonly ServerName[] = ['ours', 'gearmand'];
type ScenarioName = 'fg' | 'bg' | 'drain' | 'coalesce' | 'durable';
const SCENARIO_NAMES: readonly ScenarioName[] = ['fg', 'bg', 'drain', 'coalesce', 'durable'];

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '1' },
    runs: { type: 'string', default: '3' },
    only: { type: 'string', multiple: true },
    server: { type: 'string' },
    procs: { type: 'string', default: '2' },
    payload: { type: 'string', default: '32' },
    'fg-clients': { type: 'string', default: '50' },
    'fg-workers': { type: 'string', default: '10' },
    'bg-clients': { type: 'string', default: '20' },
    'bg-depth': { type: 'string', default: '50' },
    'drain-jobs': { type: 'string' },
    'drain-workers': { type: 'string', default: '10' },
    'coalesce-clients': { type: 'string', default: '50' },
    'durable-clients': { type: 'string', default: '50' },
    'ours-port': { type: 'string' },
    'gearmand-port': { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (args.help) {
  process.stdout.write(
    'usage: npx node bench/gearman.ts [--seconds 10] [--warmup 1] [--runs 3] [--only fg,bg,drain,coalesce,durable]\n' +
      '         [--server ours|gearmand] [--procs 2] [--payload 32] [--fg-clients 50] [--fg-workers 10]\n' +
      '         [--bg-clients 20] [--bg-depth 50] [--drain-jobs 20000*seconds] [--drain-workers 10]\n' +
      '         [--coalesce-clients 50] [--durable-clients 50] [--ours-port 24730] [--gearmand-port 24731]\n' +
      '         [--json FILE]\n' +
      'env: GEARMAN_OURS_CMD, GEARMAND_CMD (command prefixes; the script appends --port … --listen 127.0.0.1 …),\n' +
      '     GEARMAND_BIN (default /usr/sbin/gearmand)\n',
  );
  process.exit(0);
}

const seconds = Number(args.seconds);
if (!(seconds > 0)) usage('--seconds must be > 0');
const warmup = Number(args.warmup);
if (!(warmup >= 0)) usage('--warmup must be >= 0');
const runs = intArg('runs', args.runs);
const procs = intArg('procs', args.procs);
const payloadSize = intArg('payload', args.payload, 0);
const fgClients = intArg('fg-clients', args['fg-clients']);
const fgWorkers = intArg('fg-workers', args['fg-workers']);
const bgClients = intArg('bg-clients', args['bg-clients']);
const bgDepth = intArg('bg-depth', args['bg-depth']);
const drainJobs = intArg('drain-jobs', args['drain-jobs'] ?? String(Math.round(20_000 * seconds)));
const drainWorkers = intArg('drain-workers', args['drain-workers']);
const coalesceClients = intArg('coalesce-clients', args['coalesce-clients']);
const durableClients = intArg('durable-clients', args['durable-clients']);
const wanted = (args.only ?? []).flatMap((s) => s.split(',')).filter(Boolean);
for (const w of wanted) {
  if (!SCENARIO_NAMES.includes(w as ScenarioName)) usage(`unknown scenario ${w}; known: ${SCENARIO_NAMES.join(', ')}`);
}
const scenarios = wanted.length > 0 ? SCENARIO_NAMES.filter((s) => wanted.includes(s)) : [...SCENARIO_NAMES];
if (args.server && !SERVER_NAMES.includes(args.server as ServerName)) usage('--server must be ours or gearmand');
const servers: ServerName[] = args.server ? [args.server as ServerName] : [...SERVER_NAMES];
const ports: Record<ServerName, PortChoice> = {
  ours: portChoice(args['ours-port'] ?? process.env.OURS_PORT, 24730),
  gearmand: portChoice(args['gearmand-port'] ?? process.env.GEARMAND_PORT, 24731),
};

function portChoice(given: string | undefined, dflt: number): PortChoice {
  if (given === undefined) return { port: dflt, exact: false };
  return { port: intArg('port', given), exact: true };
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

interface ScenarioDef {
  name: ScenarioName;
  title: string;
  metric: string;
  /** ours/gearmand throughput ratio the project issue asks for. */
  target: number;
}

const SCENARIOS: Record<ScenarioName, ScenarioDef> = {
  fg: {
    name: 'fg',
    title: `fg: ${fgClients} clients, ${fgWorkers} workers`,
    metric: 'jobs/s',
    target: 1.5,
  },
  bg: {
    name: 'bg',
    title: `bg submit: ${bgClients} clients × ${bgDepth} deep, no workers`,
    metric: 'JOB_CREATED/s',
    target: 1.5,
  },
  drain: {
    name: 'drain',
    title: `drain: ${fmtInt(drainJobs)} queued jobs, ${drainWorkers} workers`,
    metric: 'jobs/s',
    target: 1.5,
  },
  coalesce: {
    name: 'coalesce',
    title: `coalescing: ${coalesceClients} clients on one unique, 1 worker`,
    metric: 'results/s',
    target: 1.5,
  },
  durable: {
    name: 'durable',
    title: `durable bg submit (libsqlite3): ${durableClients} clients × 1`,
    metric: 'JOB_CREATED/s',
    target: 20,
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Servers

let tmpDir = '';

function splitCommand(cmd: string): string[] {
  return cmd.split(/\s+/).filter((s) => s.length > 0);
}

function serverPrefix(name: ServerName): string[] {
  if (name === 'ours') {
    const env = process.env.GEARMAN_OURS_CMD;
    if (env?.trim()) return splitCommand(env);
    // As the `sharenothing` bin runs it (its shebang sets the small young generation, see src/cli/main.ts).
    return [nodeBinary(), '--max-semi-space-size=1', 'src/cli/main.ts', 'gearmand'];
  }
  const env = process.env.GEARMAND_CMD;
  return env?.trim() ? splitCommand(env) : [GEARMAND_BIN];
}

/** Same flags for both (gearmand's spelling, which ours accepts); no -t: each server's default thread count. */
function serverArgv(name: ServerName, port: number, extra: string[]): string[] {
  return [
    ...serverPrefix(name),
    '--port',
    String(port),
    '--listen',
    HOST,
    '--log-file',
    'stderr',
    '--pid-file',
    path.join(tmpDir, `${name}-${port}.pid`),
    ...extra,
  ];
}

function gearmandInfo(): { version: string; defaultThreads: string } {
  const run = (flag: string) => {
    try {
      return execFileSync(GEARMAND_BIN, [flag], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      return String((err as { stdout?: string }).stdout ?? '');
    }
  };
  const version = run('--version').trim() || 'unknown';
  const m = /--threads \] arg \(=(\d+)\)/.exec(run('--help'));
  return { version, defaultThreads: m ? m[1]! : 'unknown' };
}

// ---------------------------------------------------------------------------------------------------------------
// Load-generator processes

class Generator {
  readonly proc: TrackedChild;
  private readonly inbox: ChildMessage[] = [];
  private waiter: ((msg: ChildMessage | Error) => void) | undefined;
  private failure: Error | undefined;
  readonly index: number;

  constructor(index: number) {
    this.index = index;
    const flags = splitCommand(process.env.GEARMAN_LOADGEN_NODE_FLAGS ?? '');
    this.proc = spawnTracked([nodeBinary(), ...flags, LOADGEN], { ipc: true });
    this.proc.child.on('message', (msg: ChildMessage) => this.deliver(msg));
    void this.proc.done.then(() => {
      this.failure ??= new Error(`load generator ${index} ${this.proc.describeExit()}`);
      this.deliver(this.failure);
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  private deliver(msg: ChildMessage | Error): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(msg);
    } else if (!(msg instanceof Error)) this.inbox.push(msg);
  }

  send(msg: ParentMessage): void {
    if (!this.proc.exited && this.proc.child.connected) this.proc.child.send(msg);
  }

  /** The next message of the given type; rejects on a `fatal` message, the process's exit, or the timeout. */
  next<T extends ChildMessage['type']>(type: T, timeoutMs: number): Promise<Extract<ChildMessage, { type: T }>> {
    return new Promise((resolve, reject) => {
      const handle = (msg: ChildMessage | Error) => {
        clearTimeout(timer);
        if (msg instanceof Error) reject(msg);
        else if (msg.type === 'fatal') reject(new Error(`load generator ${this.index}: ${msg.message}`));
        else if (msg.type !== type)
          reject(new Error(`load generator ${this.index}: expected ${type}, got ${msg.type}`));
        else resolve(msg as Extract<ChildMessage, { type: T }>);
      };
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`load generator ${this.index}: no ${type} within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      const queued = this.inbox.shift();
      if (queued) handle(queued);
      else if (this.failure) handle(this.failure);
      else this.waiter = handle;
    });
  }

  async stop(): Promise<void> {
    this.send({ type: 'exit' });
    await Promise.race([this.proc.done, sleep(1000)]);
    await this.proc.stop(1000);
  }
}

/** n split into `parts` near-equal counts. */
function split(n: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(n / parts) + (i < n % parts ? 1 : 0));
}

interface PhaseResult {
  results: TaskResult[];
  /** epoch ms the load started. */
  startAt: number;
  /** server CPU over the counted window, in cores. */
  serverCpu: number;
  /** CPU of processes outside the benchmark over the window, in cores. */
  otherCpu: number;
  /** load generators' CPU over the window, in cores (sum over processes). */
  genCpu: number;
  serverThreads: number;
  /** server RSS at the end of the window, KiB. */
  serverRssKb: number;
  /** the window as the parent timed it, seconds. */
  windowSec: number;
}

/**
 * One phase: set up every generator's task (the first one first: the coalescing worker's process tells the others
 * where to report), start them all at the same instant, collect the results. `selfTimed` tasks (preload, drain) end
 * on their own; the others run warm-up + duration.
 */
async function runPhase(
  srv: RunningServer,
  gens: Generator[],
  tasks: (Task | undefined)[],
  opts: { warmupMs: number; durationMs: number; selfTimed: boolean; deadlineMs: number },
): Promise<PhaseResult> {
  const active = gens.filter((_, i) => tasks[i] !== undefined);
  const deadlineAt = Date.now() + opts.deadlineMs;
  const setupTimeout = 30_000;
  let coordPort: number | undefined;
  for (const [k, g] of active.entries()) {
    let task = tasks[g.index]!;
    if (task.kind === 'coalesce' && coordPort !== undefined) task = { ...task, coordPort };
    g.send({ type: 'setup', task, deadlineAt });
    if (k === 0) {
      const ready = await g.next('ready', setupTimeout);
      coordPort = ready.coordPort;
    }
  }
  await Promise.all(active.slice(1).map((g) => g.next('ready', setupTimeout)));

  const startAt = Date.now() + 300;
  const window = { startAt, warmupMs: opts.selfTimed ? 0 : opts.warmupMs, durationMs: opts.durationMs };
  for (const g of active) g.send({ type: 'go', window });
  const resultsP = Promise.all(active.map((g) => g.next('result', deadlineAt - Date.now() + 10_000)));

  let cpu0 = Number.NaN;
  let t0 = 0;
  let bg: BackgroundCpu | undefined;
  let threads = Number.NaN;
  const begin = () => {
    cpu0 = readCpuSeconds(srv.pid);
    t0 = performance.now();
    bg = new BackgroundCpu([srv.pid, ...active.map((g) => g.pid)]);
  };
  let cpu1 = Number.NaN;
  let t1 = 0;
  let other = Number.NaN;
  let rssKb = Number.NaN;
  const end = () => {
    cpu1 = readCpuSeconds(srv.pid);
    t1 = performance.now();
    other = bg?.otherCores() ?? Number.NaN;
    rssKb = readMem(srv.pid)?.rssKb ?? Number.NaN;
  };
  const timers = [
    setTimeout(begin, startAt + window.warmupMs - Date.now()),
    setTimeout(
      () => {
        threads = readThreadCount(srv.pid);
      },
      startAt + window.warmupMs + 200 - Date.now(),
    ),
  ];
  if (!opts.selfTimed) timers.push(setTimeout(end, startAt + window.warmupMs + window.durationMs - Date.now()));
  let msgs: Extract<ChildMessage, { type: 'result' }>[];
  try {
    msgs = await resultsP;
  } finally {
    for (const t of timers) clearTimeout(t);
  }
  if (opts.selfTimed || t1 === 0) end();
  const results = msgs.map((m) => m.result);
  const windowSec = (t1 - t0) / 1000;
  const genCpu = results.reduce((a, r) => a + (r.windowMs > 0 ? (r.cpuUserUs + r.cpuSysUs) / 1000 / r.windowMs : 0), 0);
  return {
    results,
    startAt,
    serverCpu: (cpu1 - cpu0) / windowSec,
    otherCpu: other,
    genCpu,
    serverThreads: threads,
    serverRssKb: rssKb,
    windowSec,
  };
}

/**
 * The slowest 100 ms slot of the window (all processes' completions summed per slot) as a fraction of the median
 * slot: ~1 = steady, near 0 = a stall (a GC pause, a blocked event loop). Slots past `fullSlots` (the partial last
 * one) are ignored.
 */
function timelineStats(results: readonly TaskResult[], fullSlots: number): { slowest: number; stalls: number[] } {
  const sum: number[] = [];
  for (const r of results) {
    for (let i = 0; i < r.timeline.length; i++) sum[i] = (sum[i] ?? 0) + r.timeline[i]!;
  }
  const slots = Array.from({ length: Math.min(fullSlots, sum.length) }, (_, i) => sum[i] ?? 0);
  const med = median(slots);
  if (slots.length < 3 || !(med > 0)) return { slowest: Number.NaN, stalls: [] };
  const stalls: number[] = [];
  slots.forEach((n, i) => {
    if (n < med * 0.1) stalls.push(i * SLOT_MS);
  });
  return { slowest: Math.min(...slots) / med, stalls };
}

/** Sum of per-process rates (each over the window it measured itself). */
function windowRate(results: readonly TaskResult[]): number {
  return results.reduce((a, r) => a + (r.windowMs > 0 ? (r.ops * 1000) / r.windowMs : 0), 0);
}

function sumCounters(results: readonly TaskResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.counters)) out[k] = (out[k] ?? 0) + v;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// One measurement: fresh server, fresh generators, one scenario, one server

interface Measurement {
  scenario: ScenarioName;
  server: ServerName;
  run: number;
  /** the scenario could not run on this server for a reason that is not a failure (e.g. no SQLite queue yet). */
  na?: string;
  failure?: string;
  rate: number;
  p50Us?: number;
  p99Us?: number;
  maxUs?: number;
  serverCpu: number;
  genCpu: number;
  otherCpu: number;
  serverThreads: number;
  serverRssKb: number;
  /** slowest 100 ms slot / median slot (see slowestSlot). */
  slowestSlot: number;
  /** offsets (ms into the window) of 100 ms slots with < 10% of the median slot's completions. */
  stallsMs: number[];
  errors: number;
  firstError?: string;
  counters: Record<string, number>;
  /** consistency checks that did not hold (server state after the load). */
  problems: string[];
  /** scenario-specific figures (preload rate, coalescing factor, rows in the SQLite file). */
  info: Record<string, number | string>;
}

async function measure(scn: ScenarioName, name: ServerName, run: number): Promise<Measurement> {
  const m: Measurement = {
    scenario: scn,
    server: name,
    run,
    rate: Number.NaN,
    serverCpu: Number.NaN,
    genCpu: Number.NaN,
    otherCpu: Number.NaN,
    serverThreads: Number.NaN,
    serverRssKb: Number.NaN,
    slowestSlot: Number.NaN,
    stallsMs: [],
    errors: 0,
    counters: {},
    problems: [],
    info: {},
  };
  const extra: string[] = [];
  let dbFile: string | undefined;
  if (scn === 'durable') {
    dbFile = path.join(tmpDir, `${name}-r${run}.sqlite`);
    extra.push('-q', 'libsqlite3', '--libsqlite3-db', dbFile);
  }
  let srv: RunningServer | undefined;
  const gens: Generator[] = [];
  try {
    try {
      srv = await startListening(name, ports[name], (port) => serverArgv(name, port, extra), 30_000);
    } catch (err) {
      const msg = (err as Error).message;
      if (scn === 'durable') {
        m.na = `${name} did not start with -q libsqlite3: ${msg.split('\n').slice(0, 3).join(' ')}`;
      } else m.failure = `server did not start: ${msg}`;
      return m;
    }
    for (let i = 0; i < procs; i++) gens.push(new Generator(i));
    const windowed = { warmupMs: warmup * 1000, durationMs: seconds * 1000, selfTimed: false };
    const deadlineMs = (warmup + seconds) * 1000 + 30_000;
    let phase: PhaseResult;
    switch (scn) {
      case 'fg': {
        const c = split(fgClients, procs);
        const w = split(fgWorkers, procs);
        phase = await runPhase(
          srv,
          gens,
          gens.map((g) => ({
            kind: 'fg',
            port: srv!.port,
            clients: c[g.index]!,
            workers: w[g.index]!,
            payload: payloadSize,
            tag: `f${g.index}`,
          })),
          { ...windowed, deadlineMs },
        );
        const hist = new Histogram();
        for (const r of phase.results) if (r.latency) hist.merge(r.latency);
        m.p50Us = hist.percentile(0.5);
        m.p99Us = hist.percentile(0.99);
        m.maxUs = hist.max;
        m.rate = windowRate(phase.results);
        break;
      }
      case 'bg':
      case 'durable': {
        const clients = scn === 'bg' ? bgClients : durableClients;
        const depth = scn === 'bg' ? bgDepth : 1;
        const c = split(clients, procs);
        phase = await runPhase(
          srv,
          gens,
          gens.map((g) =>
            c[g.index]! > 0
              ? { kind: 'bg', port: srv!.port, clients: c[g.index]!, depth, payload: payloadSize, tag: `b${g.index}` }
              : undefined,
          ),
          { ...windowed, deadlineMs },
        );
        m.rate = windowRate(phase.results);
        const created = phase.results.reduce((a, r) => a + r.totalOps, 0);
        m.info.created = created;
        const st = (await adminStatus(srv.port)).get(FUNCTION_NAME);
        m.info.queued = st?.total ?? 0;
        // Submits still in flight when the generators stopped may have been queued without our seeing JOB_CREATED.
        if ((st?.total ?? 0) < created) {
          m.problems.push(`status says ${st?.total ?? 0} queued, but ${created} JOB_CREATED were received`);
        }
        break;
      }
      case 'drain': {
        const per = split(drainJobs, procs);
        const c = split(Math.min(bgClients, drainJobs), procs);
        const preloadDeadline = 60_000 + drainJobs; // 1 ms per job on top: generous
        const pre = await runPhase(
          srv,
          gens,
          gens.map((g) =>
            per[g.index]! > 0 && c[g.index]! > 0
              ? {
                  kind: 'bg',
                  port: srv!.port,
                  clients: c[g.index]!,
                  depth: bgDepth,
                  payload: payloadSize,
                  tag: `p${g.index}`,
                  total: per[g.index]!,
                }
              : undefined,
          ),
          { warmupMs: 0, durationMs: 0, selfTimed: true, deadlineMs: preloadDeadline },
        );
        const preErrors = pre.results.reduce((a, r) => a + r.errors, 0);
        if (preErrors > 0) {
          m.errors += preErrors;
          m.firstError ??= pre.results.find((r) => r.firstError)?.firstError;
        }
        const preloaded = pre.results.reduce((a, r) => a + r.totalOps, 0);
        const preSec = (Math.max(...pre.results.map((r) => r.lastAt ?? 0)) - pre.startAt) / 1000;
        m.info.preloaded = preloaded;
        m.info['preload JOB_CREATED/s'] = Math.round(preloaded / preSec);
        const before = (await adminStatus(srv.port)).get(FUNCTION_NAME)?.total ?? 0;
        if (before !== drainJobs) m.problems.push(`after the preload status says ${before} queued, not ${drainJobs}`);
        const w = split(drainWorkers, procs);
        phase = await runPhase(
          srv,
          gens,
          gens.map((g) => (w[g.index]! > 0 ? { kind: 'drain', port: srv!.port, workers: w[g.index]! } : undefined)),
          { warmupMs: 0, durationMs: 0, selfTimed: true, deadlineMs: 60_000 + drainJobs },
        );
        const done = phase.results.reduce((a, r) => a + r.totalOps, 0);
        const lastAt = Math.max(...phase.results.map((r) => r.lastAt ?? 0));
        const sec = (lastAt - phase.startAt) / 1000;
        m.rate = done / sec;
        m.info.drained = done;
        m.info['drain seconds'] = Number(sec.toFixed(2));
        const after = (await adminStatus(srv.port)).get(FUNCTION_NAME)?.total ?? 0;
        if (after !== 0) m.problems.push(`after the drain status still says ${after} queued`);
        if (done !== before) m.problems.push(`workers completed ${done} jobs, ${before} were queued`);
        break;
      }
      case 'coalesce': {
        const c = split(coalesceClients, procs);
        const processes = c.filter((n) => n > 0).length;
        phase = await runPhase(
          srv,
          gens,
          gens.map((g) =>
            c[g.index]! > 0
              ? {
                  kind: 'coalesce',
                  port: srv!.port,
                  clients: c[g.index]!,
                  worker: g.index === 0,
                  processes,
                  payload: payloadSize,
                }
              : undefined,
          ),
          { ...windowed, deadlineMs },
        );
        m.rate = windowRate(phase.results);
        const counters = sumCounters(phase.results);
        const results = phase.results.reduce((a, r) => a + r.totalOps, 0);
        const executed = counters['jobs executed'] ?? 0;
        m.info['results per executed job'] = executed > 0 ? Number((results / executed).toFixed(2)) : 'n/a';
        m.info['rounds/s'] = Math.round(m.rate / coalesceClients);
        if (executed > 0 && results / executed < coalesceClients * 0.9) {
          m.problems.push(
            `only ${(results / executed).toFixed(1)} results per executed job (expected ${coalesceClients}): the ` +
              'server did not coalesce all submissions',
          );
        }
        break;
      }
    }
    m.serverCpu = phase.serverCpu;
    m.genCpu = phase.genCpu;
    m.otherCpu = phase.otherCpu;
    m.serverThreads = phase.serverThreads;
    m.serverRssKb = phase.serverRssKb;
    // drain: every slot but the last, partial one; windowed: the slots that fit in the window.
    const fullSlots =
      scn === 'drain'
        ? Math.max(0, Math.max(...phase.results.map((r) => r.timeline.length)) - 1)
        : Math.floor((seconds * 1000) / SLOT_MS);
    const tl = timelineStats(phase.results, fullSlots);
    m.slowestSlot = tl.slowest;
    m.stallsMs = tl.stalls;
    m.errors += phase.results.reduce((a, r) => a + r.errors, 0);
    m.firstError ??= phase.results.find((r) => r.firstError)?.firstError;
    m.counters = sumCounters(phase.results);
    if (srv.proc.exited) m.failure = `server died: ${srv.proc.describeExit()}`;
  } catch (err) {
    m.failure = (err as Error).message;
    if (srv?.proc.exited) m.failure += `; server ${srv.proc.describeExit()}`;
  } finally {
    await Promise.all(gens.map((g) => g.stop()));
    // Durable queue: kill -9, so only what the server wrote before acknowledging can be in the file.
    if (dbFile && srv && !srv.proc.exited) {
      try {
        process.kill(srv.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await stopServer(srv);
  }
  if (dbFile) {
    if (!m.na && !m.failure) {
      const rows = await countRows(dbFile);
      m.info['rows after kill -9'] = rows;
      const created = Number(m.info.created);
      if (typeof rows === 'number' && rows < created) {
        m.problems.push(
          `${created - rows} acknowledged (JOB_CREATED) jobs are missing from the SQLite file after kill -9`,
        );
      }
    }
    for (const suffix of ['', '-journal', '-wal', '-shm']) rmSync(dbFile + suffix, { force: true });
  }
  return m;
}

/** Rows over all tables of an SQLite file (the durable queue after the server stopped), or a note why not. */
async function countRows(file: string): Promise<number | string> {
  try {
    const { DatabaseSync } = await import('node:sqlite');
    // Not read-only: after kill -9 a hot journal may have to be rolled back first (as any next opener would).
    const db = new DatabaseSync(file);
    try {
      let rows = 0;
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
      for (const t of tables) {
        const r = db.prepare(`SELECT count(*) AS n FROM "${t.name.replaceAll('"', '""')}"`).get() as { n: number };
        rows += Number(r.n);
      }
      return rows;
    } finally {
      db.close();
    }
  } catch (err) {
    return `unreadable: ${(err as Error).message}`;
  }
}

// ---------------------------------------------------------------------------------------------------------------

interface Summary {
  rate: number;
  p50Us: number;
  p99Us: number;
  serverCpu: number;
  genCpu: number;
  otherCpu: number;
  serverThreads: number;
  serverRssKb: number;
  slowestSlot: number;
  errors: number;
  na?: string;
  failed: boolean;
  runs: Measurement[];
}

function summarize(ms: Measurement[]): Summary {
  const ok = ms.filter((m) => !m.failure && !m.na);
  return {
    rate: median(ok.map((m) => m.rate)),
    p50Us: median(ok.filter((m) => m.p50Us !== undefined).map((m) => m.p50Us!)),
    p99Us: median(ok.filter((m) => m.p99Us !== undefined).map((m) => m.p99Us!)),
    serverCpu: median(ok.map((m) => m.serverCpu)),
    genCpu: median(ok.map((m) => m.genCpu)),
    otherCpu: Math.max(0, ...ok.map((m) => m.otherCpu).filter(Number.isFinite)),
    serverThreads: Math.max(0, ...ok.map((m) => m.serverThreads).filter(Number.isFinite)),
    serverRssKb: Math.max(0, ...ok.map((m) => m.serverRssKb).filter(Number.isFinite)),
    slowestSlot: Math.min(...ok.map((m) => m.slowestSlot).filter(Number.isFinite)),
    errors: ms.reduce((a, m) => a + m.errors, 0),
    ...(ms.length > 0 && ms.every((m) => m.na) ? { na: ms[0]!.na } : {}),
    failed: ms.some((m) => m.failure !== undefined || m.errors > 0 || m.problems.length > 0),
    runs: ms,
  };
}

const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : 'n/a');
const us = (x: number) => (Number.isFinite(x) ? fmtInt(x) : 'n/a');

function describeRun(m: Measurement): string {
  if (m.na) return `n/a (${m.na})`;
  if (m.failure) return `FAILED: ${m.failure}`;
  const lat = m.p50Us !== undefined ? `  p50 ${us(m.p50Us)} µs  p99 ${us(m.p99Us!)} µs` : '';
  const info = Object.entries(m.info)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? fmtInt(v) : v}`)
    .join(', ');
  return (
    `${fmtInt(m.rate).padStart(8)} /s${lat}  server cpu ${pct(m.serverCpu)}  generator cpu ${pct(m.genCpu)}  ` +
    `other cpu ${pct(m.otherCpu)}  RSS ${fmtMiB(m.serverRssKb)}  slowest 100ms ${pct(m.slowestSlot)}` +
    `${
      m.stallsMs.length
        ? ` (stalled slots at ${m.stallsMs
            .slice(0, 8)
            .map((t) => `${(t / 1000).toFixed(1)}s`)
            .join(' ')}${m.stallsMs.length > 8 ? ' …' : ''})`
        : ''
    }${m.errors ? `  errors ${m.errors} (${m.firstError})` : ''}` +
    `${info ? `  [${info}]` : ''}${m.problems.length ? `  PROBLEMS: ${m.problems.join('; ')}` : ''}`
  );
}

async function main(): Promise<void> {
  installCleanup();
  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'gearman-bench-'));
  process.on('exit', () => rmSync(tmpDir, { recursive: true, force: true }));
  const started = new Date();
  const gm = gearmandInfo();
  const load = os.loadavg();
  log(
    `load average ${load.map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} cores` +
      (load[0]! > 0.5 ? ' — WARNING: the machine is busy, numbers will be noisy' : ''),
  );
  log(`${gm.version}; its default -t (I/O threads) is ${gm.defaultThreads}; ours runs job routing in one thread`);
  const perMeasure = warmup + seconds + 2;
  log(
    `${scenarios.length} scenario(s) × ${servers.length} server(s) × ${runs} run(s) × ~${perMeasure}s ` +
      `(+ drain preload) ≈ ${Math.ceil((scenarios.length * servers.length * runs * perMeasure) / 60)} min`,
  );

  const all: Measurement[] = [];
  const results: Partial<Record<ScenarioName, Partial<Record<ServerName, Summary>>>> = {};
  for (const scn of scenarios) {
    log(`scenario ${SCENARIOS[scn].title}`);
    const per: Record<ServerName, Measurement[]> = { ours: [], gearmand: [] };
    for (let r = 1; r <= runs; r++) {
      const order = r % 2 === 1 ? servers : [...servers].reverse();
      for (const s of order) {
        // A server that could not run the scenario at all (no SQLite queue) is not retried every run.
        if (per[s].some((m) => m.na)) continue;
        const m = await measure(scn, s, r);
        per[s].push(m);
        all.push(m);
        log(`  run ${r} ${s.padEnd(8)} ${describeRun(m)}`);
        if (Object.keys(m.counters).length > 0) {
          log(
            `           counters: ${Object.entries(m.counters)
              .map(([k, v]) => `${k} ${fmtInt(v)}`)
              .join(', ')}`,
          );
        }
      }
    }
    results[scn] = Object.fromEntries(servers.map((s) => [s, summarize(per[s])]));
  }

  // ---- report --------------------------------------------------------------------------------------------------
  const both = servers.length === 2;
  const header = ['scenario', 'metric', ...servers];
  if (both) header.push('ratio', 'target', 'met?');
  const rows: string[][] = [];
  const comparisons: { scenario: ScenarioName; metric: string; ratio: number; target: string; met: boolean | null }[] =
    [];
  const cell = (s: Summary | undefined, v: number | undefined) =>
    !s ? 'n/a' : s.na ? 'n/a' : `${fmtInt(v ?? Number.NaN)}${s.failed ? '!' : ''}`;
  for (const scn of scenarios) {
    const def = SCENARIOS[scn];
    const sums = results[scn]!;
    const lines: [string, (s: Summary) => number, 'higher' | 'lower'][] = [[def.metric, (s) => s.rate, 'higher']];
    if (scn === 'fg') lines.push(['p50 µs', (s) => s.p50Us, 'lower'], ['p99 µs', (s) => s.p99Us, 'lower']);
    for (const [metric, get, better] of lines) {
      const row = [
        metric === def.metric ? def.title : '',
        metric,
        ...servers.map((s) => cell(sums[s], sums[s] && get(sums[s]))),
      ];
      if (both) {
        const o = sums.ours!;
        const g = sums.gearmand!;
        const ratio = o.na || g.na ? Number.NaN : get(o) / get(g);
        const target = better === 'higher' ? def.target : 1;
        const met = Number.isFinite(ratio) ? (better === 'higher' ? ratio >= target : ratio <= target) : null;
        const targetText = better === 'higher' ? `≥ ${target}x` : `≤ ${target.toFixed(2)}x`;
        comparisons.push({ scenario: scn, metric, ratio, target: targetText, met });
        row.push(fmtRatio(ratio), targetText, met === null ? 'n/a' : met ? 'yes' : 'NO');
      }
      rows.push(row);
    }
  }

  const detailHeader = [
    'scenario',
    'server',
    'rate (runs)',
    'median',
    'server cpu',
    'generator cpu',
    'gen/server',
    'other cpu',
    'threads',
    'max RSS',
    'slowest 100ms',
    'errors',
  ];
  const detailRows: string[][] = [];
  for (const scn of scenarios) {
    for (const s of servers) {
      const sum = results[scn]![s]!;
      detailRows.push([
        scn,
        s + (sum.failed ? '!' : ''),
        sum.na ? 'n/a' : sum.runs.map((m) => (m.failure ? 'fail' : fmtInt(m.rate))).join(' / '),
        sum.na ? 'n/a' : fmtInt(sum.rate),
        pct(sum.serverCpu),
        pct(sum.genCpu),
        fmtRatio(sum.genCpu / sum.serverCpu),
        pct(sum.otherCpu),
        sum.serverThreads > 0 ? String(sum.serverThreads) : 'n/a',
        sum.serverRssKb > 0 ? fmtMiB(sum.serverRssKb) : 'n/a',
        pct(sum.slowestSlot),
        fmtInt(sum.errors),
      ]);
    }
  }

  const out: string[] = [''];
  out.push(
    `ours: ${serverArgv('ours', ports.ours.port, []).join(' ')}\n` +
      `gearmand: ${serverArgv('gearmand', ports.gearmand.port, []).join(' ')}  (${gm.version}, default -t ${gm.defaultThreads})\n` +
      `durable: both with -q libsqlite3 --libsqlite3-db <fresh file in ${os.tmpdir()}>\n` +
      `load: ${procs} Node generator process(es), raw binary protocol, ${payloadSize}-byte payloads; ` +
      `${runs} run(s) of ${seconds}s after ${warmup}s warm-up (drain: until the queue is empty), fresh server per ` +
      'run, servers alternated; medians.',
  );
  out.push(
    'server cpu / generator cpu = CPU time over the counted window / wall time (100% = one core; generator = sum ' +
      "over its processes); other cpu = processes outside the benchmark (noise); threads = the server process's " +
      "threads; max RSS = the server's resident memory at the end of a window; slowest 100ms = the fewest " +
      'completions in a 100 ms slot of a window, as % of the median slot (lowest over the runs; near 0% = a ' +
      'stall). ratio = ours / gearmand (for ' +
      'latency lower is better). "!" = errors, a failed run or a failed consistency check.',
  );
  pushTables(out, [
    [header, rows],
    [detailHeader, detailRows],
  ]);
  for (const m of all) {
    if (m.failure || m.problems.length > 0 || m.errors > 0 || m.na) {
      out.push(`${m.scenario} ${m.server} run ${m.run}: ${describeRun(m)}`);
    }
  }
  const maxOther = Math.max(0, ...all.map((m) => m.otherCpu).filter(Number.isFinite));
  if (maxOther > 0.2 || load[0]! > 0.5) {
    out.push(
      `WARNING: other processes used up to ${pct(maxOther)} CPU during a window (load average at start ` +
        `${load[0]!.toFixed(2)}); the numbers are noisy — rerun on a quiet machine.`,
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);

  const json = {
    benchmark: 'gearman',
    started: started.toISOString(),
    host: { cpus: os.cpus().length, kernel: os.release(), node: process.version, loadavg: load },
    gearmand: gm,
    commands: {
      ours: serverArgv('ours', ports.ours.port, []).join(' '),
      gearmand: serverArgv('gearmand', ports.gearmand.port, []).join(' '),
    },
    settings: {
      seconds,
      warmup,
      runs,
      procs,
      payloadSize,
      fgClients,
      fgWorkers,
      bgClients,
      bgDepth,
      drainJobs,
      drainWorkers,
      coalesceClients,
      durableClients,
      scenarios,
      servers,
    },
    comparisons,
    results,
  };
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify(json, null, 2)}\n`);
    log(`wrote ${args.json}`);
  } else {
    process.stdout.write(`\nJSON: ${JSON.stringify(json)}\n`);
  }
  process.exitCode = all.some((m) => m.failure || m.errors > 0 || m.problems.length > 0) ? 1 : 0;
}

await main();
