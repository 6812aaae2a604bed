// Client throughput: our MemcacheClient against memjs and the `memcached` npm package (3rd-Eden), all three talking
// to the same server in the same run.
//
//   npx node bench/memcached-client.ts [--server memcached|ours] [--seconds 5] [--warmup 1] [--rounds 3]
//        [--case get,set,multiget] [--client ours,memjs,memcached] [--concurrency 50] [--multi-concurrency 10]
//        [--keys 10000] [--value-size 100] [--multi-keys 100] [--port 21411] [--json FILE]
//        [--cpu-prof ours[,memjs,...]] [--cpu-prof-dir DIR] [--prof-top 15] [--ours-options JSON]
//
// Cases: `get` and `set` with --concurrency loops each awaiting one operation at a time; `multiget` with
// --multi-concurrency loops each awaiting one --multi-keys multi-get at a time (memjs has no multi-get: it does
// the usual substitute, --multi-keys single gets in parallel under one Promise.all). 100-byte values over 10,000
// preloaded keys. Every (case, client, round) runs in a fresh child process (bench/lib/memcached-client-worker.ts):
// one client's GC and event loop never affect another's. Rounds alternate the client order; medians are reported.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  fmtInt,
  fmtRatio,
  installCleanup,
  keyDigits,
  loadItems,
  log,
  median,
  nodeBinary,
  pushTables,
  REPO_ROOT,
  type RunningServer,
  readStats,
  SERVER_NAMES,
  type ServerName,
  serverArgv,
  spawnTracked,
  startServer,
  stopServer,
  table,
} from './lib/harness.ts';
import {
  CASE_NAMES,
  type CaseName,
  CLIENT_NAMES,
  type ClientName,
  errorText,
  type WorkerResult,
} from './lib/memcached-client-worker.ts';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib', 'memcached-client-worker.ts');

const CLIENT_LABEL: Record<ClientName, string> = { ours: 'ours', memjs: 'memjs', memcached: 'memcached (npm)' };
/** Required ratio ours / max(memjs, memcached) per case (from the issue). */
const TARGET: Record<CaseName, number> = { get: 2, set: 2, multiget: 5 };

const { values: args } = parseArgs({
  options: {
    server: { type: 'string', default: 'memcached' },
    port: { type: 'string' },
    seconds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    case: { type: 'string', multiple: true },
    client: { type: 'string', multiple: true },
    concurrency: { type: 'string', default: '50' },
    'multi-concurrency': { type: 'string', default: '10' },
    keys: { type: 'string', default: '10000' },
    'value-size': { type: 'string', default: '100' },
    'multi-keys': { type: 'string', default: '100' },
    json: { type: 'string' },
    'cpu-prof': { type: 'string', multiple: true },
    'cpu-prof-dir': { type: 'string' },
    'prof-top': { type: 'string', default: '15' },
    'ours-options': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (args.help) {
  process.stdout.write(
    'usage: npx node bench/memcached-client.ts [--server memcached|ours] [--seconds 5] [--warmup 1] [--rounds 3]\n' +
      '         [--case get,set,multiget] [--client ours,memjs,memcached] [--concurrency 50] [--multi-concurrency 10]\n' +
      '         [--keys 10000] [--value-size 100] [--multi-keys 100] [--port 21411] [--json FILE]\n' +
      '         [--cpu-prof ours[,memjs,memcached]] [--cpu-prof-dir DIR] [--prof-top 15]\n' +
      '         [--ours-options JSON]  (extra MemcacheClient options, e.g. \'{"connectionsPerServer":2}\')\n' +
      'env: OURS_CMD, MEMCACHED_CMD (server command prefixes, as for the other benchmarks)\n',
  );
  process.exit(0);
}

function list<T extends string>(flag: string, given: string[] | undefined, known: readonly T[]): T[] {
  const wanted = (given ?? []).flatMap((c) => c.split(',')).filter(Boolean);
  const unknown = wanted.filter((w) => !known.includes(w as T));
  if (unknown.length > 0) {
    process.stderr.write(`unknown --${flag}: ${unknown.join(', ')}; known: ${known.join(', ')}\n`);
    process.exit(2);
  }
  return wanted.length > 0 ? known.filter((k) => wanted.includes(k)) : [...known];
}

const serverName = args.server as ServerName;
if (!SERVER_NAMES.includes(serverName)) {
  process.stderr.write(`--server must be one of: ${SERVER_NAMES.join(', ')}\n`);
  process.exit(2);
}
const seconds = Number(args.seconds);
const warmup = Number(args.warmup);
const rounds = Number(args.rounds);
const concurrency = Number(args.concurrency);
const multiConcurrency = Number(args['multi-concurrency']);
const keyCount = Number(args.keys);
const valueSize = Number(args['value-size']);
const multiKeys = Number(args['multi-keys']);
const profTop = Number(args['prof-top']);
for (const [k, v] of [
  ['seconds', seconds],
  ['rounds', rounds],
  ['concurrency', concurrency],
  ['multi-concurrency', multiConcurrency],
  ['keys', keyCount],
  ['value-size', valueSize],
  ['multi-keys', multiKeys],
] as const) {
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`--${k} must be a positive integer\n`);
    process.exit(2);
  }
}
if (!(warmup >= 0)) {
  process.stderr.write('--warmup must be >= 0\n');
  process.exit(2);
}
if (multiKeys > keyCount) {
  process.stderr.write('--multi-keys must not exceed --keys\n');
  process.exit(2);
}
const cases = list('case', args.case, CASE_NAMES);
const clients = list('client', args.client, CLIENT_NAMES);
const profiled = args['cpu-prof'] ? list('cpu-prof', args['cpu-prof'], CLIENT_NAMES) : [];
const profDir =
  profiled.length > 0
    ? path.resolve(args['cpu-prof-dir'] ?? path.join(os.tmpdir(), `memcached-client-prof-${process.pid}`))
    : undefined;
if (args['ours-options']) {
  try {
    const o: unknown = JSON.parse(args['ours-options']);
    if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error('not an object');
  } catch (err) {
    process.stderr.write(`--ours-options must be a JSON object of MemcacheClient options: ${errorText(err)}\n`);
    process.exit(2);
  }
}
const port = { port: Number(args.port ?? 21411), exact: args.port !== undefined };

const caseTitle = (c: CaseName) =>
  c === 'get'
    ? `get (c=${concurrency})`
    : c === 'set'
      ? `set (c=${concurrency})`
      : `multiget-${multiKeys} (c=${multiConcurrency})`;

// ---------------------------------------------------------------------------------------------------------------

interface Run extends Partial<WorkerResult> {
  client: ClientName;
  case: CaseName;
  round: number;
  ok: boolean;
  failure?: string;
}

async function runWorker(srv: RunningServer, c: CaseName, client: ClientName, round: number): Promise<Run> {
  const argv = [nodeBinary()];
  if (profDir && profiled.includes(client)) {
    argv.push('--cpu-prof', `--cpu-prof-dir=${path.join(profDir, `${c}-${client}-r${round}`)}`);
  }
  argv.push(
    WORKER,
    '--client',
    client,
    '--case',
    c,
    '--port',
    String(srv.port),
    '--server-pid',
    String(srv.pid),
    '--seconds',
    String(seconds),
    '--warmup',
    String(warmup),
    '--concurrency',
    String(c === 'multiget' ? multiConcurrency : concurrency),
    '--keys',
    String(keyCount),
    '--value-size',
    String(valueSize),
    '--multi-keys',
    String(multiKeys),
  );
  if (client === 'ours' && args['ours-options']) argv.push('--ours-options', args['ours-options']);
  const proc = spawnTracked(argv, { keepOutput: true });
  await proc.done;
  const line = proc.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (proc.exitCode !== 0 || !line) {
    return { client, case: c, round, ok: false, failure: `worker ${proc.describeExit()}` };
  }
  const res = JSON.parse(line.slice('RESULT '.length)) as WorkerResult;
  // Anything else the client printed (memjs logs its errors with console.log).
  const noise = proc.stdout
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('RESULT '))
    .slice(0, 3);
  if (noise.length > 0) log(`    ${client} printed: ${noise.join(' | ').slice(0, 300)}`);
  const ok = res.errors === 0 && res.misses === 0 && res.ops > 0;
  return { ...res, round, ok, failure: ok ? undefined : (res.firstError ?? `${res.misses} misses, ${res.ops} ops`) };
}

interface Summary {
  opsPerSec: number;
  keysPerSec: number;
  clientCpu: number;
  clientElu: number;
  serverCpu: number;
  otherCpu: number;
  errors: number;
  misses: number;
  failed: boolean;
  rounds: Run[];
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);

function summarize(runs: Run[]): Summary {
  const good = runs.filter((r) => r.opsPerSec !== undefined);
  return {
    opsPerSec: median(good.map((r) => r.opsPerSec!)),
    keysPerSec: median(good.map((r) => r.keysPerSec!)),
    clientCpu: mean(good.map((r) => r.clientCpu!)),
    clientElu: mean(good.map((r) => r.clientElu!)),
    serverCpu: mean(good.map((r) => r.serverCpu!)),
    otherCpu: Math.max(0, ...good.map((r) => r.otherCpu!)),
    errors: good.reduce((a, r) => a + r.errors!, 0),
    misses: good.reduce((a, r) => a + r.misses!, 0),
    failed: runs.length < rounds || runs.some((r) => !r.ok),
    rounds: runs,
  };
}

const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : 'n/a');

// ---------------------------------------------------------------------------------------------------------------
// --cpu-prof: top self-time functions of the V8 CPU profiles the profiled workers wrote.

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

function profileTop(dirs: string[], top: number): string | undefined {
  const self = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let files = 0;
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.cpuprofile'));
    } catch {
      continue;
    }
    for (const name of names) {
      const prof = JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as CpuProfile;
      files++;
      const label = new Map<number, string>();
      for (const n of prof.nodes) {
        const f = n.callFrame;
        let url = f.url.startsWith('file://') ? fileURLToPath(f.url) : f.url;
        if (url.startsWith(REPO_ROOT)) url = path.relative(REPO_ROOT, url);
        label.set(
          n.id,
          url
            ? `${f.functionName || '(anonymous)'}  ${url}:${f.lineNumber + 1}`
            : f.functionName || '(anonymous native)',
        );
      }
      // A sample's time is the gap to the next sample (as DevTools counts it).
      for (let i = 0; i < prof.samples.length; i++) {
        const dt = (prof.timeDeltas[i + 1] ?? 0) / 1000;
        const key = label.get(prof.samples[i]!) ?? '?';
        total += dt;
        if (key === '(idle)') idle += dt;
        self.set(key, (self.get(key) ?? 0) + dt);
      }
    }
  }
  if (files === 0) return undefined;
  const busy = total - idle;
  const rows = [...self]
    .filter(([k]) => k !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, ms]) => [`${((100 * ms) / busy).toFixed(1)}%`, fmtInt(ms), k]);
  return (
    `${files} profile(s), ${fmtInt(total)} ms sampled (whole worker lives: start-up, warm-up and window), ` +
    `${((100 * idle) / total).toFixed(0)}% idle; share of the busy time:\n` +
    table(['self', 'self ms', 'function  location'], rows)
  );
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  installCleanup();
  const started = new Date();
  const perRun = warmup + seconds + 0.5;
  log(
    `${cases.length} case(s) × ${clients.length} client(s) × ${rounds} round(s) × ~${perRun}s ≈ ` +
      `${Math.ceil((cases.length * clients.length * rounds * perRun) / 60)} min`,
  );
  if (profDir) log(`CPU profiles of ${profiled.join(', ')} go to ${profDir} (profiling slows those clients down)`);
  const results: Partial<Record<CaseName, Partial<Record<ClientName, Summary>>>> = {};
  let srv: RunningServer | undefined;
  let serverCmd = serverArgv(serverName, port.port, 256).join(' ');
  try {
    srv = await startServer(serverName, port, 256);
    serverCmd = srv.argv.join(' ');
    const digits = keyDigits(keyCount);
    const load = await loadItems(srv.port, { count: keyCount, valueSize, digits, keyPrefix: 'key:' });
    if (load.connectionError || load.errors)
      throw new Error(`preload failed: ${load.connectionError ?? load.firstError}`);
    const st = await readStats(srv.port);
    log(`preloaded ${fmtInt(load.sent)} items of ${valueSize} bytes (curr_items ${st.curr_items})`);

    for (const c of cases) {
      log(`case ${caseTitle(c)}`);
      const runs = Object.fromEntries(clients.map((cl) => [cl, [] as Run[]])) as Record<ClientName, Run[]>;
      for (let r = 1; r <= rounds; r++) {
        const order = r % 2 === 1 ? clients : [...clients].reverse();
        for (const client of order) {
          if (srv.proc.exited) throw new Error(`${serverName} died: ${srv.proc.describeExit()}`);
          let run: Run;
          try {
            run = await runWorker(srv, c, client, r);
          } catch (err) {
            run = { client, case: c, round: r, ok: false, failure: errorText(err) };
          }
          runs[client].push(run);
          const keysNote = c === 'multiget' ? ` (${fmtInt(run.keysPerSec ?? Number.NaN)} keys/s)` : '';
          log(
            `  round ${r} ${client.padEnd(9)} ${fmtInt(run.opsPerSec ?? Number.NaN).padStart(8)} ops/s${keysNote}  ` +
              `client cpu ${pct(run.clientCpu ?? Number.NaN)} (event loop ${pct(run.clientElu ?? Number.NaN)})  ` +
              `server cpu ${pct(run.serverCpu ?? Number.NaN)}  other cpu ${pct(run.otherCpu ?? Number.NaN)}` +
              `${run.ok ? '' : `  FAILED: ${run.failure}`}`,
          );
        }
      }
      results[c] = Object.fromEntries(clients.map((cl) => [cl, summarize(runs[cl])]));
    }
  } finally {
    await stopServer(srv);
  }

  // ---- report --------------------------------------------------------------------------------------------------
  const competitors = clients.filter((c) => c !== 'ours');
  const comparisons: {
    case: CaseName;
    metric: string;
    ours: number;
    best: number;
    bestClient?: ClientName;
    ratio: number;
    target: number;
    met: boolean;
  }[] = [];
  const header = ['case', ...clients.map((c) => CLIENT_LABEL[c])];
  const compare = clients.includes('ours') && competitors.length > 0;
  if (compare) header.push('ratio vs better', 'target', 'met?');
  const rows: string[][] = [];
  for (const c of cases) {
    const sums = results[c]!;
    const metrics: [string, keyof Summary & ('opsPerSec' | 'keysPerSec')][] =
      c === 'multiget'
        ? [
            ['multi-gets/s', 'opsPerSec'],
            ['keys/s', 'keysPerSec'],
          ]
        : [['ops/s', 'opsPerSec']];
    for (const [metric, field] of metrics) {
      const row = [
        `${caseTitle(c)} ${metric}`,
        ...clients.map((cl) => `${fmtInt(sums[cl]![field])}${sums[cl]!.failed ? '!' : ''}`),
      ];
      if (compare) {
        let best = Number.NaN;
        let bestClient: ClientName | undefined;
        for (const cl of competitors) {
          const v = sums[cl]![field];
          if (Number.isFinite(v) && !(v <= best)) {
            best = v;
            bestClient = cl;
          }
        }
        const ours = sums.ours![field];
        const ratio = ours / best;
        const met = Number.isFinite(ratio) && ratio >= TARGET[c];
        comparisons.push({ case: c, metric, ours, best, bestClient, ratio, target: TARGET[c], met });
        row.push(
          `${fmtRatio(ratio)}${bestClient ? ` (${bestClient})` : ''}`,
          `≥ ${TARGET[c]}x`,
          Number.isFinite(ratio) ? (met ? 'yes' : 'NO') : 'n/a',
        );
      }
      rows.push(row);
    }
  }

  const detailHeader = [
    'case',
    'client',
    'ops/s (rounds)',
    'median ops/s',
    'client cpu',
    'event loop',
    'server cpu',
    'other cpu',
    'errors',
    'misses',
  ];
  const detailRows: string[][] = [];
  for (const c of cases) {
    for (const cl of clients) {
      const s = results[c]![cl]!;
      detailRows.push([
        caseTitle(c),
        CLIENT_LABEL[cl] + (s.failed ? '!' : ''),
        s.rounds.map((r) => (r.opsPerSec === undefined ? 'fail' : fmtInt(r.opsPerSec))).join(' / '),
        fmtInt(s.opsPerSec),
        pct(s.clientCpu),
        pct(s.clientElu),
        pct(s.serverCpu),
        pct(s.otherCpu),
        fmtInt(s.errors),
        fmtInt(s.misses),
      ]);
    }
  }

  const out: string[] = [''];
  out.push(
    `server: ${serverCmd}; ${fmtInt(keyCount)} preloaded keys, ${valueSize}-byte values; get/set: ${concurrency} ` +
      `loops, multiget: ${multiConcurrency} loops of ${multiKeys}-key multi-gets (memjs: ${multiKeys} parallel ` +
      `gets per multi-get); every client in its own process; ${rounds} × ${seconds}s rounds after a ${warmup}s ` +
      'warm-up, client order alternated; medians. keys/s = keys returned per second.' +
      (args['ours-options'] ? ` ours with options ${args['ours-options']}.` : ''),
  );
  out.push(
    'ratio = ours / the better of memjs and memcached (npm). client cpu = the client process CPU time / wall time ' +
      '(100% = one core); event loop = its event-loop utilization; server cpu likewise; other cpu = CPU used by ' +
      'processes outside the benchmark (noise). "!" = errors, misses or a failed round.',
  );
  pushTables(out, [
    [header, rows],
    [detailHeader, detailRows],
  ]);
  for (const c of cases) {
    for (const cl of clients) {
      const bad = results[c]![cl]!.rounds.find((r) => !r.ok);
      if (bad) out.push(`${caseTitle(c)} ${cl}: round ${bad.round}: ${bad.failure}`);
    }
  }
  const maxOther = Math.max(0, ...cases.flatMap((c) => clients.map((cl) => results[c]![cl]!.otherCpu)));
  if (maxOther > 0.2) {
    out.push(
      `WARNING: other processes used up to ${pct(maxOther)} CPU during a round; the numbers are noisy — ` +
        'rerun on a quiet machine.',
    );
  }
  const profiles: Record<string, string> = {};
  if (profDir) {
    for (const c of cases) {
      for (const cl of profiled) {
        if (!clients.includes(cl)) continue;
        const dirs = Array.from({ length: rounds }, (_, i) => path.join(profDir, `${c}-${cl}-r${i + 1}`));
        const text = profileTop(dirs, profTop);
        if (text === undefined) continue;
        profiles[`${c}/${cl}`] = text;
        out.push('', `CPU profile, ${caseTitle(c)}, ${CLIENT_LABEL[cl]}: ${text}`);
      }
    }
    out.push('', `profiles: ${profDir}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);

  const json = {
    benchmark: 'memcached-client',
    started: started.toISOString(),
    host: { cpus: os.cpus().length, kernel: os.release(), node: process.version },
    server: serverCmd,
    settings: {
      seconds,
      warmup,
      rounds,
      concurrency,
      multiConcurrency,
      keys: keyCount,
      valueSize,
      multiKeys,
      cases,
      clients,
      cpuProf: profiled,
      oursOptions: args['ours-options'] ? JSON.parse(args['ours-options']) : {},
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
  process.exitCode = cases.some((c) => clients.some((cl) => results[c]![cl]!.failed)) ? 1 : 0;
}

await main();
