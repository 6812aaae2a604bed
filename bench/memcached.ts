// Throughput: libmemcached's memcaslap (memaslap) against ours and against real memcached, same run, same flags.
//
//   npx node bench/memcached.ts [--seconds 10] [--rounds 3] [--warmup 1] [--case NAME ...] [--only ours|memcached]
//                               [--concurrency 50] [--threads 2] [--json FILE]
//
// Cases: text-100, text-1k, multiget-10, binary-100 (all get:set 9:1, 64-byte keys, 50 connections).
// Each case starts both servers fresh, warms each up, then alternates them round by round and reports the median.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  BackgroundCpu,
  choosePort,
  fmtInt,
  fmtRatio,
  installCleanup,
  log,
  median,
  type PortChoice,
  pushTables,
  type RunningServer,
  readCpuSeconds,
  SERVER_NAMES,
  type ServerName,
  serverArgv,
  spawnTracked,
  startServer,
  stopServer,
} from './lib/harness.ts';

interface CaseDef {
  name: string;
  title: string;
  valueSize: number;
  extra: string[];
}

const CASES: CaseDef[] = [
  { name: 'text-100', title: 'text get:set 9:1, 100 B', valueSize: 100, extra: [] },
  { name: 'text-1k', title: 'text get:set 9:1, 1 KB', valueSize: 1024, extra: [] },
  { name: 'multiget-10', title: 'text 10-key multi-get (-d 10), 100 B', valueSize: 100, extra: ['-d', '10'] },
  { name: 'binary-100', title: 'binary get:set 9:1, 100 B', valueSize: 100, extra: ['-B'] },
];

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    case: { type: 'string', multiple: true },
    only: { type: 'string' },
    concurrency: { type: 'string', default: '50' },
    threads: { type: 'string', default: '2' },
    'key-size': { type: 'string', default: '64' },
    retries: { type: 'string', default: '0' },
    'max-other': { type: 'string', default: '25' },
    'ours-port': { type: 'string' },
    'memcached-port': { type: 'string' },
    memaslap: { type: 'string', default: process.env.MEMASLAP ?? 'memcaslap' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (args.help) {
  process.stdout.write(
    `usage: npx node bench/memcached.ts [--seconds 10] [--rounds 3] [--warmup 1] [--case ${CASES.map((c) => c.name).join('|')}]...\n` +
      '         [--only ours|memcached] [--concurrency 50] [--threads 2] [--key-size 64] [--json FILE]\n' +
      '         [--retries 0] [--max-other 25]  (repeat a round up to N times while other processes use > P% CPU)\n' +
      'env: OURS_CMD, MEMCACHED_CMD (command prefixes), OURS_PORT, MEMCACHED_PORT, MEMASLAP\n',
  );
  process.exit(0);
}

const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const warmup = Number(args.warmup);
const concurrency = Number(args.concurrency);
const threads = Number(args.threads);
const keySize = Number(args['key-size']);
const retries = Number(args.retries);
const maxOther = Number(args['max-other']) / 100;
const wanted = (args.case ?? []).flatMap((c) => c.split(',')).filter(Boolean);
const unknown = wanted.filter((w) => !CASES.some((c) => c.name === w));
if (unknown.length > 0) {
  process.stderr.write(`unknown case(s): ${unknown.join(', ')}; known: ${CASES.map((c) => c.name).join(', ')}\n`);
  process.exit(2);
}
const cases = wanted.length > 0 ? CASES.filter((c) => wanted.includes(c.name)) : CASES;
if (args.only && !SERVER_NAMES.includes(args.only as ServerName)) {
  process.stderr.write(`--only must be one of: ${SERVER_NAMES.join(', ')}\n`);
  process.exit(2);
}
const servers: ServerName[] = args.only ? [args.only as ServerName] : [...SERVER_NAMES];
const ports: Record<ServerName, PortChoice> = {
  ours: choosePort('ours', args['ours-port']),
  memcached: choosePort('memcached', args['memcached-port']),
};
for (const [k, v] of [
  ['seconds', seconds],
  ['rounds', rounds],
  ['concurrency', concurrency],
  ['threads', threads],
] as const) {
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`--${k} must be a positive integer\n`);
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// memaslap output parsing

interface LatencyBlock {
  events: number;
  minUs: number;
  maxUs: number;
  avgUs: number;
  geoUs: number;
  stdUs: number;
  /** dist[i] = number of requests with latency in (2^(i-1), 2^i] µs (memaslap's ms_local_log2). */
  dist: number[];
}

interface MemaslapResult {
  ok: boolean;
  error?: string;
  runTime: number;
  ops: number;
  tps: number;
  cmdGet: number;
  cmdSet: number;
  getMisses: number;
  readBytes: number;
  latency: Partial<Record<'get' | 'set' | 'total', LatencyBlock>>;
}

function parseMemaslap(raw: string): MemaslapResult {
  // Strip the screen-clear escape memaslap prints with -S.
  const text = raw.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  const res: MemaslapResult = {
    ok: false,
    runTime: Number.NaN,
    ops: Number.NaN,
    tps: Number.NaN,
    cmdGet: Number.NaN,
    cmdSet: Number.NaN,
    getMisses: Number.NaN,
    readBytes: Number.NaN,
    latency: {},
  };
  const summary = /Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)/.exec(text);
  if (summary) {
    res.ok = true;
    res.runTime = Number(summary[1]);
    res.ops = Number(summary[2]);
    res.tps = Number(summary[3]);
  }
  const num = (re: RegExp) => {
    const m = re.exec(text);
    return m ? Number(m[1]) : Number.NaN;
  };
  res.cmdGet = num(/^cmd_get: (\d+)/m);
  res.cmdSet = num(/^cmd_set: (\d+)/m);
  res.getMisses = num(/^get_misses: (\d+)/m);
  res.readBytes = num(/^read_bytes: (\d+)/m);
  if (res.ok && res.readBytes === 0) {
    // memaslap does not complain when the server never answers (e.g. an unsupported protocol); it just idles.
    res.ok = false;
    res.error = 'the server sent no bytes back (protocol not supported?)';
  }
  const blockRe = /^(Get|Set|Total) Statistics \((\d+) events\)\n([\s\S]*?)(?=\n\n)/gm;
  for (let m = blockRe.exec(text); m; m = blockRe.exec(text)) {
    const body = m[3]!;
    const field = (name: string) => {
      const f = new RegExp(`^\\s*${name}:\\s+([\\d.]+)`, 'm').exec(body);
      return f ? Number(f[1]) : Number.NaN;
    };
    const dist: number[] = [];
    for (const row of body.matchAll(/^\s+(\d+):((?:\s+\d+)+)\s*$/gm)) {
      const base = Number(row[1]);
      row[2]!
        .trim()
        .split(/\s+/)
        .forEach((v, i) => {
          dist[base + i] = Number(v);
        });
    }
    for (let i = 0; i < dist.length; i++) dist[i] ??= 0;
    const key = m[1]!.toLowerCase() as 'get' | 'set' | 'total';
    res.latency[key] = {
      events: Number(m[2]),
      minUs: field('Min'),
      maxUs: field('Max'),
      avgUs: field('Avg'),
      geoUs: field('Geo'),
      stdUs: field('Std'),
      dist,
    };
  }
  return res;
}

interface PercentileEstimate {
  /** log-linear interpolation inside the bucket (an estimate, not a measurement). */
  estUs: number;
  loUs: number;
  hiUs: number;
}

/** Percentile from memaslap's log2 histogram: the bucket (2^(i-1), 2^i] µs holding it, plus an interpolation. */
function log2Percentile(dist: readonly number[], q: number): PercentileEstimate | undefined {
  const total = dist.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const target = q * total;
  let cum = 0;
  for (let i = 0; i < dist.length; i++) {
    const n = dist[i]!;
    if (n > 0 && cum + n >= target) {
      const hi = 2 ** i;
      const lo = i === 0 ? 0 : 2 ** (i - 1);
      const frac = (target - cum) / n;
      const est = lo === 0 ? hi * frac : lo * (hi / lo) ** frac;
      return { estUs: est, loUs: lo, hiUs: hi };
    }
    cum += n;
  }
  return undefined;
}

function mergeDists(dists: readonly (readonly number[])[]): number[] {
  const out: number[] = [];
  for (const d of dists) {
    for (let i = 0; i < d.length; i++) out[i] = (out[i] ?? 0) + (d[i] ?? 0);
  }
  for (let i = 0; i < out.length; i++) out[i] ??= 0;
  return out;
}

function fmtPct(p: PercentileEstimate | undefined): string {
  if (!p) return 'n/a';
  return `~${Math.round(p.estUs)} (${p.loUs}-${p.hiUs}]`;
}

// ---------------------------------------------------------------------------------------------------------------

interface RoundResult {
  round: number;
  tps: number;
  ops: number;
  runTime: number;
  getMisses: number;
  avgUs: number;
  maxUs: number;
  /** CPU seconds used by the server process during the run / wall seconds (1.0 = one full core). */
  serverCpu: number;
  /** CPU (in cores) used during the round by processes other than this benchmark's (other sessions, services). */
  otherCpu: number;
  /** runs of this round (> 1 when it was repeated because other processes disturbed it; the calmest is kept). */
  attempts: number;
  error?: string;
}

interface ServerCaseResult {
  cmd: string;
  rounds: RoundResult[];
  medianTps: number;
  medianAvgUs: number;
  medianServerCpu: number;
  p50?: PercentileEstimate;
  p99?: PercentileEstimate;
  p999?: PercentileEstimate;
  mergedDist: number[];
  failed: boolean;
}

interface CaseResult {
  name: string;
  title: string;
  memaslapArgs: string[];
  results: Partial<Record<ServerName, ServerCaseResult>>;
  ratio: number;
  p99Ratio: number;
}

let tmpDir = '';

function writeConfig(valueSize: number): string {
  const file = path.join(tmpDir, `memaslap-${valueSize}.cfg`);
  // cmd 0 = set, 1 = get; proportions 0.1 / 0.9. Fixed key and value sizes.
  writeFileSync(file, `key\n${keySize} ${keySize} 1\nvalue\n${valueSize} ${valueSize} 1\ncmd\n0 0.1\n1 0.9\n`);
  return file;
}

function memaslapArgs(c: CaseDef, cfg: string, secs: number): string[] {
  return [
    '-F',
    cfg,
    '-t',
    `${secs}s`,
    '-T',
    String(threads),
    '-c',
    String(concurrency),
    '-S',
    `${secs}s`, // needed for any latency numbers: memaslap only times requests when -S is set
    ...c.extra,
  ];
}

async function runMemaslap(port: number, margs: string[], secs: number) {
  const argv = [args.memaslap!, '-s', `127.0.0.1:${port}`, ...margs];
  const proc = spawnTracked(argv, { keepOutput: true });
  const timer = setTimeout(() => void proc.stop(1000), (secs + 20) * 1000);
  await proc.done;
  clearTimeout(timer);
  const parsed = parseMemaslap(proc.stdout);
  if (!parsed.ok && !parsed.error) {
    parsed.error = proc.spawnError
      ? `cannot run ${args.memaslap}: ${proc.spawnError.message}`
      : `memaslap produced no summary (code ${proc.exitCode}, signal ${proc.exitSignal}): ${proc.stderrTail.trim().slice(-300)}`;
  }
  return parsed;
}

async function runCase(c: CaseDef): Promise<CaseResult> {
  const cfg = writeConfig(c.valueSize);
  const margs = memaslapArgs(c, cfg, seconds);
  log(`case ${c.name}: ${c.title} — memcaslap ${margs.join(' ')}`);
  const running: Partial<Record<ServerName, RunningServer>> = {};
  const perServer: Partial<Record<ServerName, { rounds: RoundResult[]; dists: number[][]; failed: boolean }>> = {};
  try {
    for (const s of servers) {
      perServer[s] = { rounds: [], dists: [], failed: false };
      try {
        running[s] = await startServer(s, ports[s], 1024);
      } catch (err) {
        log(`${s}: ${(err as Error).message}`);
        perServer[s]!.failed = true;
      }
    }
    if (warmup > 0) {
      for (const s of servers) {
        const srv = running[s];
        if (!srv) continue;
        const w = await runMemaslap(srv.port, memaslapArgs(c, cfg, warmup), warmup);
        log(`  warmup ${s}: ${w.ok ? `${fmtInt(w.tps)} ops/s` : w.error}`);
      }
    }
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? servers : [...servers].reverse();
      for (const s of order) {
        const srv = running[s];
        const acc = perServer[s]!;
        if (!srv || acc.failed) continue;
        if (srv.proc.exited) {
          log(`  ${s} died: ${srv.proc.describeExit()}`);
          acc.failed = true;
          continue;
        }
        let rr: RoundResult | undefined;
        let dist: number[] | undefined;
        let attempts = 0;
        for (let attempt = 0; attempt <= retries; attempt++) {
          attempts++;
          const cpu0 = readCpuSeconds(srv.pid);
          const bg = new BackgroundCpu(Object.values(running).map((x) => x.pid));
          const t0 = performance.now();
          const m = await runMemaslap(srv.port, margs, seconds);
          const wall = (performance.now() - t0) / 1000;
          const cpu = (readCpuSeconds(srv.pid) - cpu0) / wall;
          const otherCpu = bg.otherCores();
          const total = m.latency.total;
          const attemptResult: RoundResult = {
            round: r + 1,
            tps: m.ok ? m.tps : 0,
            ops: m.ops,
            runTime: m.runTime,
            getMisses: m.getMisses,
            avgUs: total?.avgUs ?? Number.NaN,
            maxUs: total?.maxUs ?? Number.NaN,
            serverCpu: cpu,
            otherCpu,
            attempts: 1,
            ...(m.error ? { error: m.error } : {}),
          };
          log(
            `  round ${r + 1} ${s.padEnd(9)} ${m.ok ? `${fmtInt(m.tps).padStart(9)} ops/s  avg ${total?.avgUs ?? '?'} µs  server cpu ${(cpu * 100).toFixed(0)}%  other cpu ${(otherCpu * 100).toFixed(0)}%  misses ${m.getMisses}` : `FAILED: ${attemptResult.error}`}`,
          );
          // Keep the attempt disturbed least by other work on the machine.
          if (!rr || otherCpu < rr.otherCpu) {
            rr = attemptResult;
            dist = total?.dist;
          }
          if (!m.ok || otherCpu <= maxOther || srv.proc.exited) break;
          if (attempt < retries)
            log(`    other processes used ${(otherCpu * 100).toFixed(0)}% CPU: repeating the round`);
        }
        if (!rr) continue;
        rr.attempts = attempts;
        acc.rounds.push(rr);
        if (dist) acc.dists.push(dist);
        if (srv.proc.exited) {
          rr.error = `${rr.error ? `${rr.error}; ` : ''}server ${srv.proc.describeExit()}`;
          acc.failed = true;
        }
      }
    }
  } finally {
    for (const s of servers) await stopServer(running[s]);
  }

  const results: Partial<Record<ServerName, ServerCaseResult>> = {};
  for (const s of servers) {
    const acc = perServer[s]!;
    const merged = mergeDists(acc.dists);
    const okRounds = acc.rounds.filter((r) => !r.error);
    results[s] = {
      cmd: running[s]?.argv.join(' ') ?? serverArgv(s, ports[s].port, 1024).join(' '),
      rounds: acc.rounds,
      medianTps: acc.failed && okRounds.length === 0 ? 0 : median(acc.rounds.map((r) => r.tps)),
      medianAvgUs: median(okRounds.map((r) => r.avgUs)),
      medianServerCpu: median(okRounds.map((r) => r.serverCpu)),
      p50: log2Percentile(merged, 0.5),
      p99: log2Percentile(merged, 0.99),
      p999: log2Percentile(merged, 0.999),
      mergedDist: merged,
      failed: acc.failed || okRounds.length < acc.rounds.length,
    };
  }
  const ours = results.ours;
  const mc = results.memcached;
  return {
    name: c.name,
    title: c.title,
    memaslapArgs: margs.map((a) => (a === cfg ? `<cfg: key ${keySize}, value ${c.valueSize}, set 0.1 get 0.9>` : a)),
    results,
    ratio: ours && mc ? ours.medianTps / mc.medianTps : Number.NaN,
    p99Ratio: ours?.p99 && mc?.p99 ? ours.p99.estUs / mc.p99.estUs : Number.NaN,
  };
}

async function main(): Promise<void> {
  installCleanup();
  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'bench-memcached-'));
  process.on('exit', () => rmSync(tmpDir, { recursive: true, force: true }));
  const results: CaseResult[] = [];
  const started = new Date();
  try {
    for (const c of cases) results.push(await runCase(c));
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
  }

  const header = ['case'];
  for (const s of servers) header.push(`${s} ops/s`);
  if (servers.length === 2) header.push('ratio');
  for (const s of servers) header.push(`${s} avg µs`);
  for (const s of servers) header.push(`${s} p99 µs`);
  if (servers.length === 2) header.push('p99 ratio');
  for (const s of servers) header.push(`${s} cpu`);
  header.push('other cpu');
  const rows = results.map((r) => {
    const row = [r.name];
    for (const s of servers)
      row.push(
        r.results[s]?.failed ? `${fmtInt(r.results[s]!.medianTps)}!` : fmtInt(r.results[s]?.medianTps ?? Number.NaN),
      );
    if (servers.length === 2) row.push(fmtRatio(r.ratio));
    for (const s of servers) row.push(fmtInt(r.results[s]?.medianAvgUs ?? Number.NaN));
    for (const s of servers) row.push(fmtPct(r.results[s]?.p99));
    if (servers.length === 2) row.push(fmtRatio(r.p99Ratio));
    for (const s of servers) {
      const cpu = r.results[s]?.medianServerCpu ?? Number.NaN;
      row.push(Number.isFinite(cpu) ? `${Math.round(cpu * 100)}%` : 'n/a');
    }
    const other = Math.max(...servers.flatMap((s) => (r.results[s]?.rounds ?? []).map((x) => x.otherCpu)));
    row.push(Number.isFinite(other) ? `${Math.round(other * 100)}%` : 'n/a');
    return row;
  });

  const out: string[] = [];
  out.push('');
  out.push(
    `memcaslap, ${concurrency} connections, ${threads} threads, ${keySize}-byte keys, get:set 9:1; ` +
      `median of ${rounds} × ${seconds}s rounds per server (after a ${warmup}s warm-up), servers alternated.`,
  );
  out.push(
    'ops/s = memaslap TPS (in multiget-10 every key counts as one get). avg = memaslap mean latency (median of rounds).',
  );
  out.push(
    'p99 = from memaslap\'s log2 latency histogram (merged over rounds): "~estimate (bucket-lo-bucket-hi]" µs — ' +
      'memaslap has no real percentiles, so this is only good to a factor of 2; use bench/memcached-latency.ts for p99.',
  );
  out.push(
    'cpu = server CPU time / wall time during the rounds (100% = one core); other cpu = the most CPU any round saw ' +
      'used by processes outside this benchmark (other work on the machine: noise). "!" = some round failed.',
  );
  pushTables(out, [[header, rows]]);
  out.push('');
  for (const r of results) {
    for (const s of servers) {
      const res = r.results[s];
      if (!res) continue;
      const per = res.rounds
        .map((x) =>
          x.error
            ? `ERR(${x.error.slice(0, 80)})`
            : `${fmtInt(x.tps)} (other cpu ${Math.round(x.otherCpu * 100)}%${x.attempts > 1 ? `, ${x.attempts} tries` : ''})`,
        )
        .join(', ');
      out.push(`${r.name} ${s}: rounds ${per}; p50 ${fmtPct(res.p50)} p99.9 ${fmtPct(res.p999)}`);
    }
  }
  const worstOther = Math.max(
    ...results.flatMap((r) => servers.flatMap((s) => (r.results[s]?.rounds ?? []).map((x) => x.otherCpu))),
  );
  if (worstOther > maxOther) {
    out.push(
      `WARNING: other processes used up to ${Math.round(worstOther * 100)}% CPU during a round; ` +
        'the numbers are noisy — rerun on a quiet machine, or with --retries 2 to repeat disturbed rounds.',
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);

  const json = {
    benchmark: 'memcached-throughput',
    started: started.toISOString(),
    host: { cpus: os.cpus().length, kernel: os.release(), node: process.version },
    settings: { seconds, rounds, warmup, concurrency, threads, keySize, retries, maxOther, memaslap: args.memaslap },
    servers: Object.fromEntries(servers.map((s) => [s, serverArgv(s, ports[s].port, 1024).join(' ')])),
    cases: results,
  };
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify(json, null, 2)}\n`);
    log(`wrote ${args.json}`);
  } else {
    process.stdout.write(`\nJSON: ${JSON.stringify(json)}\n`);
  }
  const anyFailed = results.some((r) => servers.some((s) => r.results[s]?.failed));
  process.exitCode = anyFailed ? 1 : 0;
}

await main();
