// Latency percentiles (p50/p99/...) at 50 connections, text protocol, get:set 9:1, 100-byte values — because
// memcaslap only reports min/max/avg/std and a log2 histogram, not percentiles.
//
//   npx node bench/memcached-latency.ts [--seconds 10] [--rounds 3] [--warmup 2] [--rate 20000[,0,...]]
//                                       [--connections 50] [--keys 100000] [--value-size 100]
//                                       [--only ours|memcached] [--json FILE]
//
// Each connection has at most one request in flight and paces itself so that all connections together offer
// --rate requests/s (0 = closed loop, as fast as the generator can go; a comma list runs several load levels). Latency is measured per request from write
// to complete reply, in µs, with performance.now(). The generator's own CPU share and event-loop delay are printed
// so you can tell whether it, rather than the server, is the bottleneck.
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import {
  BackgroundCpu,
  choosePort,
  fmtInt,
  fmtRatio,
  HOST,
  installCleanup,
  keyDigits,
  loadItems,
  log,
  makeKey,
  type PortChoice,
  pushTables,
  type RunningServer,
  readCpuSeconds,
  readStats,
  SERVER_NAMES,
  type ServerName,
  serverArgv,
  sleep,
  startServer,
  stopServer,
} from './lib/harness.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '2' },
    rate: { type: 'string', default: '20000' },
    connections: { type: 'string', default: '50' },
    keys: { type: 'string', default: '100000' },
    'value-size': { type: 'string', default: '100' },
    only: { type: 'string' },
    'ours-port': { type: 'string' },
    'memcached-port': { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (args.help) {
  process.stdout.write(
    'usage: npx node bench/memcached-latency.ts [--seconds 10] [--rounds 3] [--warmup 2] [--rate 20000[,0...]]\n' +
      '         [--connections 50] [--keys 100000] [--value-size 100] [--only ours|memcached] [--json FILE]\n' +
      'env: OURS_CMD, MEMCACHED_CMD (command prefixes), OURS_PORT, MEMCACHED_PORT\n',
  );
  process.exit(0);
}

const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const warmup = Number(args.warmup);
const rates = args.rate!.split(',').map(Number);
if (rates.some((r) => !Number.isFinite(r) || r < 0)) {
  process.stderr.write('--rate must be a comma list of ops/s (0 = closed loop)\n');
  process.exit(2);
}
const connections = Number(args.connections);
const keyCount = Number(args.keys);
const valueSize = Number(args['value-size']);
if (args.only && !SERVER_NAMES.includes(args.only as ServerName)) {
  process.stderr.write(`--only must be one of: ${SERVER_NAMES.join(', ')}\n`);
  process.exit(2);
}
const servers: ServerName[] = args.only ? [args.only as ServerName] : [...SERVER_NAMES];
const ports: Record<ServerName, PortChoice> = {
  ours: choosePort('ours', args['ours-port']),
  memcached: choosePort('memcached', args['memcached-port']),
};
const digits = keyDigits(keyCount);
const setValue = 'v'.repeat(valueSize);

// ---------------------------------------------------------------------------------------------------------------

class Samples {
  data = new Float64Array(1 << 20);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
}

interface Percentiles {
  count: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

function percentiles(s: Samples): Percentiles {
  const sorted = s.sorted();
  const n = sorted.length;
  const at = (q: number) => (n === 0 ? Number.NaN : sorted[Math.min(n - 1, Math.ceil(q * n) - 1)]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  return {
    count: n,
    meanUs: n ? sum / n : Number.NaN,
    p50Us: at(0.5),
    p90Us: at(0.9),
    p99Us: at(0.99),
    p999Us: at(0.999),
    maxUs: n ? sorted[n - 1]! : Number.NaN,
  };
}

interface RunStats {
  completed: number;
  errors: number;
  misses: number;
  firstError?: string;
  wallSeconds: number;
  /** generator CPU seconds / wall seconds (1.0 = one full core). */
  generatorCpu: number;
  /** generator event-loop delay p99 in µs (how late its timers ran; includes libuv's 1 ms timer granularity). */
  generatorLoopDelayP99Us: number;
  serverCpu: number;
  /** CPU (cores) used meanwhile by processes outside this benchmark (other work on the machine = noise). */
  otherCpu: number;
  /** times a connection fell more than one pacing interval behind its schedule (slots skipped). */
  latePacing: number;
}

/** Drive `connections` connections for `secs` seconds; push latencies (µs) into `samples` when given. */
async function drive(srv: RunningServer, rate: number, secs: number, samples: Samples | undefined): Promise<RunStats> {
  const socks: net.Socket[] = await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host: HOST, port: srv.port });
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        }),
    ),
  );
  const stats: RunStats = {
    completed: 0,
    errors: 0,
    misses: 0,
    wallSeconds: 0,
    generatorCpu: 0,
    generatorLoopDelayP99Us: 0,
    serverCpu: 0,
    otherCpu: 0,
    latePacing: 0,
  };
  const intervalMs = rate > 0 ? (1000 * connections) / rate : 0;
  const eld = monitorEventLoopDelay({ resolution: 1 });
  const cpu0 = process.cpuUsage();
  const srvCpu0 = readCpuSeconds(srv.pid);
  const bg = new BackgroundCpu([srv.pid]);
  const t0 = performance.now();
  const stopAt = t0 + secs * 1000;
  eld.enable();

  await new Promise<void>((resolveAll) => {
    let open = socks.length;
    // Safety net: a connection still waiting for a reply 5 s after the end is counted as an error and dropped.
    const guard = setTimeout(
      () => {
        for (const s of socks) {
          if (!s.destroyed) {
            stats.errors++;
            stats.firstError ??= 'no reply within 5 s after the end of the round';
            s.destroy();
          }
        }
      },
      secs * 1000 + 5000,
    );
    const doneOne = () => {
      if (--open === 0) {
        clearTimeout(guard);
        resolveAll();
      }
    };
    for (const sock of socks) {
      sock.setNoDelay(true);
      sock.setEncoding('latin1');
      let resp = '';
      let isGet = true;
      let sentAt = 0;
      let nextDue = t0 + Math.random() * intervalMs;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        sock.destroy();
        doneOne();
      };
      const send = () => {
        const now = performance.now();
        if (now >= stopAt) return finish();
        const key = makeKey('key:', Math.floor(Math.random() * keyCount), digits);
        isGet = Math.random() < 0.9;
        resp = '';
        sentAt = now;
        sock.write(isGet ? `get ${key}\r\n` : `set ${key} 0 0 ${valueSize}\r\n${setValue}\r\n`);
      };
      const schedule = () => {
        if (intervalMs === 0) return send();
        nextDue += intervalMs;
        const now = performance.now();
        if (nextDue < now - intervalMs) {
          // More than one slot behind (slow reply or generator stall): skip the missed slots instead of bursting.
          stats.latePacing++;
          nextDue = now;
        }
        const delay = nextDue - now;
        if (delay <= 0) send();
        else setTimeout(send, delay);
      };
      sock.on('data', (d: string) => {
        resp += d;
        let complete = false;
        let ok = true;
        if (/^(ERROR|SERVER_ERROR|CLIENT_ERROR)/.test(resp)) {
          if (!resp.endsWith('\r\n')) return;
          complete = true;
          ok = false;
        } else if (isGet) {
          if (resp.endsWith('END\r\n')) {
            complete = true;
            if (resp === 'END\r\n') stats.misses++;
          }
        } else if (resp.endsWith('\r\n')) {
          complete = true;
          ok = resp === 'STORED\r\n';
        }
        if (!complete) return;
        const lat = (performance.now() - sentAt) * 1000;
        if (ok) {
          stats.completed++;
          samples?.push(lat);
        } else {
          stats.errors++;
          stats.firstError ??= resp.trim().slice(0, 120);
        }
        schedule();
      });
      sock.on('error', (err) => {
        stats.errors++;
        stats.firstError ??= err.message;
        finish();
      });
      sock.on('close', () => {
        if (!finished && performance.now() < stopAt) {
          stats.errors++;
          stats.firstError ??= 'connection closed by the server';
        }
        finish();
      });
      // Initial send at this connection's random phase.
      const delay = nextDue - performance.now();
      if (delay <= 0) send();
      else setTimeout(send, delay);
    }
  });

  eld.disable();
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  stats.wallSeconds = wall;
  stats.generatorCpu = (cpu.user + cpu.system) / 1e6 / wall;
  stats.generatorLoopDelayP99Us = eld.percentile(99) / 1000;
  stats.serverCpu = (readCpuSeconds(srv.pid) - srvCpu0) / wall;
  stats.otherCpu = bg.otherCores();
  return stats;
}

interface ServerResult {
  cmd: string;
  rounds: (RunStats & { round: number; opsPerSec: number; p99Us: number })[];
  latency: Percentiles;
  opsPerSec: number;
  generatorCpu: number;
  serverCpu: number;
  /** max over rounds */
  otherCpu: number;
  failed: boolean;
}

interface LevelResult {
  /** offered ops/s, 0 = closed loop */
  rate: number;
  results: Partial<Record<ServerName, ServerResult>>;
  p99Ratio: number;
  p50Ratio: number;
}

async function runLevel(
  rate: number,
  running: Partial<Record<ServerName, RunningServer>>,
  failed: Set<ServerName>,
): Promise<LevelResult> {
  const label = rate > 0 ? `${fmtInt(rate)} ops/s` : 'closed loop';
  log(`offered load ${label}`);
  const samples: Partial<Record<ServerName, Samples>> = {};
  const perRound: Partial<Record<ServerName, ServerResult['rounds']>> = {};
  for (const s of servers) {
    samples[s] = new Samples();
    perRound[s] = [];
  }
  if (warmup > 0) {
    for (const s of servers) {
      if (failed.has(s) || !running[s]) continue;
      const w = await drive(running[s]!, rate, warmup, undefined);
      log(`  warmup ${s}: ${fmtInt(w.completed / w.wallSeconds)} ops/s, errors ${w.errors}`);
    }
  }
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? servers : [...servers].reverse();
    for (const s of order) {
      const srv = running[s];
      if (!srv || failed.has(s)) continue;
      const roundSamples = new Samples();
      let st: RunStats;
      try {
        st = await drive(srv, rate, seconds, roundSamples);
      } catch (err) {
        log(`  round ${r + 1} ${s}: ${(err as Error).message}`);
        failed.add(s);
        continue;
      }
      for (let i = 0; i < roundSamples.length; i++) samples[s]!.push(roundSamples.data[i]!);
      const p = percentiles(roundSamples);
      const opsPerSec = st.completed / st.wallSeconds;
      perRound[s]!.push({ ...st, round: r + 1, opsPerSec, p99Us: p.p99Us });
      if (srv.proc.exited) {
        log(`  ${s} died: ${srv.proc.describeExit()}`);
        failed.add(s);
      }
      log(
        `  round ${r + 1} ${s.padEnd(9)} ${fmtInt(opsPerSec).padStart(7)} ops/s  p50 ${fmtInt(p.p50Us)} µs  p99 ${fmtInt(p.p99Us)} µs  ` +
          `errors ${st.errors}  misses ${st.misses}  generator cpu ${(st.generatorCpu * 100).toFixed(0)}%  ` +
          `server cpu ${(st.serverCpu * 100).toFixed(0)}%  other cpu ${(st.otherCpu * 100).toFixed(0)}%`,
      );
      await sleep(200);
    }
  }
  const results: Partial<Record<ServerName, ServerResult>> = {};
  for (const s of servers) {
    const rs = perRound[s] ?? [];
    const wall = rs.reduce((a, x) => a + x.wallSeconds, 0);
    results[s] = {
      cmd: running[s]?.argv.join(' ') ?? serverArgv(s, ports[s].port, 1024).join(' '),
      rounds: rs,
      latency: percentiles(samples[s]!),
      opsPerSec: rs.reduce((a, x) => a + x.completed, 0) / wall,
      generatorCpu: rs.reduce((a, x) => a + x.generatorCpu * x.wallSeconds, 0) / wall,
      serverCpu: rs.reduce((a, x) => a + x.serverCpu * x.wallSeconds, 0) / wall,
      otherCpu: Math.max(...rs.map((x) => x.otherCpu)),
      failed: failed.has(s) || rs.length < rounds || rs.some((x) => x.errors > 0),
    };
  }
  const ours = results.ours;
  const mc = results.memcached;
  return {
    rate,
    results,
    p99Ratio: ours && mc ? ours.latency.p99Us / mc.latency.p99Us : Number.NaN,
    p50Ratio: ours && mc ? ours.latency.p50Us / mc.latency.p50Us : Number.NaN,
  };
}

async function main(): Promise<void> {
  installCleanup();
  const started = new Date();
  const running: Partial<Record<ServerName, RunningServer>> = {};
  const failed = new Set<ServerName>();
  const levels: LevelResult[] = [];
  try {
    for (const s of servers) {
      try {
        const srv = await startServer(s, ports[s], 1024);
        running[s] = srv;
        const load = await loadItems(srv.port, { count: keyCount, valueSize, digits });
        const st = await readStats(srv.port);
        log(`${s}: preloaded ${fmtInt(load.sent)} items in ${load.seconds.toFixed(1)}s (curr_items ${st.curr_items})`);
        if (load.connectionError || load.errors) {
          throw new Error(`preload failed: ${load.connectionError ?? load.firstError}`);
        }
      } catch (err) {
        log(`${s}: ${(err as Error).message}`);
        failed.add(s);
      }
    }
    for (const rate of rates) levels.push(await runLevel(rate, running, failed));
  } finally {
    for (const s of servers) await stopServer(running[s]);
  }

  const header = [
    'load',
    'server',
    'ops/s',
    'p50 µs',
    'p90 µs',
    'p99 µs',
    'p99.9 µs',
    'max µs',
    'mean µs',
    'errors',
    'gen cpu',
    'server cpu',
    'other cpu',
  ];
  if (servers.length === 2) header.push('p99 ratio');
  const rows: string[][] = [];
  for (const lv of levels) {
    for (const s of servers) {
      const r = lv.results[s]!;
      const l = r.latency;
      const row = [
        lv.rate > 0 ? fmtInt(lv.rate) : 'max',
        s + (r.failed ? '!' : ''),
        fmtInt(r.opsPerSec),
        fmtInt(l.p50Us),
        fmtInt(l.p90Us),
        fmtInt(l.p99Us),
        fmtInt(l.p999Us),
        fmtInt(l.maxUs),
        fmtInt(l.meanUs),
        fmtInt(r.rounds.reduce((a, x) => a + x.errors, 0)),
        Number.isFinite(r.generatorCpu) ? `${Math.round(r.generatorCpu * 100)}%` : 'n/a',
        Number.isFinite(r.serverCpu) ? `${Math.round(r.serverCpu * 100)}%` : 'n/a',
        Number.isFinite(r.otherCpu) ? `${Math.round(r.otherCpu * 100)}%` : 'n/a',
      ];
      if (servers.length === 2) row.push(s === 'ours' ? fmtRatio(lv.p99Ratio) : '');
      rows.push(row);
    }
  }
  const out: string[] = [''];
  out.push(
    `text protocol, ${connections} connections (1 request in flight each), get:set 9:1, ${valueSize}-byte values, ` +
      `${fmtInt(keyCount)} preloaded keys; load = offered ops/s (max = closed loop); ` +
      `${rounds} × ${seconds}s rounds per server and load (after ${warmup}s warm-up), servers alternated; ` +
      'percentiles over all rounds.',
  );
  out.push(
    "gen cpu = this load generator's CPU time / wall time (100% = one core; near 100% means the generator is the " +
      'limit, as it is at "max"). server cpu likewise for the server process; other cpu = the most CPU any round ' +
      'saw used by processes outside this benchmark (noise). "!" = errors or a failed round.',
  );
  pushTables(out, [[header, rows]]);
  for (const lv of levels) {
    for (const s of servers) {
      const r = lv.results[s]!;
      if (lv.rate > 0 && r.opsPerSec < lv.rate * 0.95) {
        out.push(`WARNING: ${s} achieved ${fmtInt(r.opsPerSec)} ops/s < 95% of the offered ${fmtInt(lv.rate)} ops/s`);
      }
      const firstErr = r.rounds.find((x) => x.firstError)?.firstError;
      if (firstErr) out.push(`${s}: first error: ${firstErr}`);
    }
  }
  const maxOther = Math.max(...levels.flatMap((lv) => servers.map((s) => lv.results[s]!.otherCpu)));
  if (maxOther > 0.2) {
    out.push(
      `WARNING: other processes used up to ${Math.round(maxOther * 100)}% CPU during a round; ` +
        'the numbers are noisy — rerun on a quiet machine (or with more rounds).',
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);

  const json = {
    benchmark: 'memcached-latency',
    started: started.toISOString(),
    host: { cpus: os.cpus().length, kernel: os.release(), node: process.version },
    settings: { seconds, rounds, warmup, rates, connections, keys: keyCount, valueSize },
    servers: Object.fromEntries(
      servers.map((s) => [s, running[s]?.argv.join(' ') ?? serverArgv(s, ports[s].port, 1024).join(' ')]),
    ),
    levels,
  };
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify(json, null, 2)}\n`);
    log(`wrote ${args.json}`);
  } else {
    process.stdout.write(`\nJSON: ${JSON.stringify(json)}\n`);
  }
  process.exitCode = failed.size > 0 || levels.some((lv) => servers.some((s) => lv.results[s]!.failed)) ? 1 : 0;
}

await main();
