// Memory: resident set size of ours vs real memcached holding the same items.
//
//   npx node bench/memcached-memory.ts [--items 1000000] [--value-size 100] [--settle 2] [--only ours|memcached]
//                                      [--json FILE]
//     Starts each server with -m 1024, loads --items items (keys key:000000.., 100-byte values) with a pipelined
//     `set ... noreply` loader, checks `stats` curr_items, and prints VmRSS/VmHWM of each server process and the ratio.
//
//   npx node bench/memcached-memory.ts --flood [--items 2000000] [--value-size 1024] [--mem 64] ...
//     Starts each server with -m 64 and writes --items distinct items as fast as it can, sampling RSS every second;
//     prints max RSS, final curr_items, evictions, whether old items were evicted and whether the server stayed up.
//
// The servers run one after the other (not side by side), so one's memory can't push the other around.
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import {
  choosePort,
  fmtInt,
  fmtMiB,
  fmtRatio,
  installCleanup,
  keyDigits,
  type LoadResult,
  loadItems,
  log,
  makeKey,
  markdownTable,
  type PortChoice,
  pidAlive,
  type RunningServer,
  readMemTree,
  readStats,
  SERVER_NAMES,
  type ServerName,
  serverArgv,
  sleep,
  startServer,
  stopServer,
  table,
  textRequest,
} from './lib/harness.ts';

const { values: args } = parseArgs({
  options: {
    flood: { type: 'boolean', default: false },
    items: { type: 'string' },
    'value-size': { type: 'string' },
    mem: { type: 'string' },
    connections: { type: 'string', default: '4' },
    batch: { type: 'string', default: '500' },
    settle: { type: 'string', default: '2' },
    only: { type: 'string' },
    'ours-port': { type: 'string' },
    'memcached-port': { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (args.help) {
  process.stdout.write(
    'usage: npx node bench/memcached-memory.ts [--items 1000000] [--value-size 100] [--settle 2] [--json FILE]\n' +
      '       npx node bench/memcached-memory.ts --flood [--items 2000000] [--value-size 1024] [--mem 64]\n' +
      '       common: [--only ours|memcached] [--connections 4] [--batch 500] [--ours-port N] [--memcached-port N]\n' +
      'env: OURS_CMD, MEMCACHED_CMD (command prefixes), OURS_PORT, MEMCACHED_PORT\n',
  );
  process.exit(0);
}

const flood = args.flood ?? false;
const items = Number(args.items ?? (flood ? 2_000_000 : 1_000_000));
const valueSize = Number(args['value-size'] ?? (flood ? 1024 : 100));
const memMb = Number(args.mem ?? (flood ? 64 : 1024));
const connections = Number(args.connections);
const batch = Number(args.batch);
const settle = Number(args.settle);
if (args.only && !SERVER_NAMES.includes(args.only as ServerName)) {
  process.stderr.write(`--only must be one of: ${SERVER_NAMES.join(', ')}\n`);
  process.exit(2);
}
const servers: ServerName[] = args.only ? [args.only as ServerName] : [...SERVER_NAMES];
const ports: Record<ServerName, PortChoice> = {
  ours: choosePort('ours', args['ours-port']),
  memcached: choosePort('memcached', args['memcached-port']),
};
const digits = keyDigits(items);

interface MemoryResult {
  cmd: string;
  pid: number;
  /** processes measured (the listening server plus any children it forked; worker threads are in-process). */
  processes: number;
  baselineRssKb: number;
  rssKb: number;
  hwmKb: number;
  loadSeconds: number;
  itemsPerSec: number;
  currItems: number;
  bytes: number;
  evictions: number;
  /** `stats` total_items: sets that were stored (NaN if the server doesn't report it). */
  totalItems: number;
  spotCheck: string;
  /** error lines the server sent while loading (sets are noreply, so only errors a server sends anyway). */
  loadErrors: number;
  firstLoadError?: string;
  /** flood mode only */
  maxRssKb?: number;
  rssSamplesKb?: number[];
  oldestKeyPresent?: boolean;
  newestKeyPresent?: boolean;
  stayedUp: boolean;
  error?: string;
}

/** `get` a key and report whether it is there and its value has the expected length and tag. */
async function probe(port: number, index: number): Promise<boolean | undefined> {
  const key = makeKey('key:', index, digits);
  try {
    const reply = await textRequest(port, `get ${key}\r\n`, /(^|\r\n)END\r\n$|^(SERVER_|CLIENT_)?ERROR[^\r\n]*\r\n$/);
    const m = /^VALUE (\S+) \d+ (\d+)\r\n/.exec(reply);
    if (!m) return reply === 'END\r\n' ? false : undefined;
    const data = reply.slice(m[0].length, m[0].length + Number(m[2]));
    return Number(m[2]) === valueSize && data.startsWith(`${index}:`);
  } catch {
    return undefined;
  }
}

async function measure(name: ServerName): Promise<MemoryResult> {
  let srv: RunningServer | undefined;
  const res: MemoryResult = {
    cmd: serverArgv(name, ports[name].port, memMb).join(' '),
    pid: 0,
    processes: 0,
    baselineRssKb: Number.NaN,
    rssKb: Number.NaN,
    hwmKb: Number.NaN,
    loadSeconds: Number.NaN,
    itemsPerSec: Number.NaN,
    currItems: Number.NaN,
    bytes: Number.NaN,
    evictions: Number.NaN,
    totalItems: Number.NaN,
    spotCheck: '',
    loadErrors: 0,
    stayedUp: false,
  };
  try {
    srv = await startServer(name, ports[name], memMb);
    res.pid = srv.pid;
    res.cmd = srv.argv.join(' ');
    await sleep(500);
    res.baselineRssKb = readMemTree(srv.pid)?.rssKb ?? Number.NaN;
    const samples: number[] = [];
    let maxRss = res.baselineRssKb;
    const pid = srv.pid;
    const sampler = setInterval(() => {
      const m = readMemTree(pid);
      if (!m) return;
      samples.push(m.rssKb);
      maxRss = Math.max(maxRss, m.rssKb);
    }, 1000);
    log(
      `${name}: loading ${fmtInt(items)} items of ${valueSize} bytes (${connections} connections, batches of ${batch})`,
    );
    let load: LoadResult;
    try {
      load = await loadItems(srv.port, { count: items, valueSize, connections, batch, digits });
    } finally {
      clearInterval(sampler);
    }
    res.loadSeconds = load.seconds;
    res.itemsPerSec = load.sent / load.seconds;
    log(
      `${name}: wrote ${fmtInt(load.sent)} items in ${load.seconds.toFixed(1)}s (${fmtInt(res.itemsPerSec)}/s)` +
        `${load.errors ? `, ${load.errors} error replies (first: ${load.firstError})` : ''}` +
        `${load.connectionError ? `, connection error: ${load.connectionError}` : ''}`,
    );
    res.loadErrors = load.errors;
    if (load.firstError) res.firstLoadError = load.firstError;
    if (load.connectionError) res.error = `load: ${load.connectionError}`;
    // Under a flood with a small -m, memcached itself occasionally answers SERVER_ERROR out of memory (its LRU tail
    // is busy); that is reported, not treated as a failure.
    else if (load.errors && !flood) res.error = `load: ${load.errors} error replies, first: ${load.firstError}`;
    if (settle > 0) await sleep(settle * 1000);
    const mem = readMemTree(srv.pid);
    res.processes = mem?.processes ?? 0;
    res.rssKb = mem?.rssKb ?? Number.NaN;
    res.hwmKb = mem?.hwmKb ?? Number.NaN;
    if (mem) {
      samples.push(mem.rssKb);
      maxRss = Math.max(maxRss, mem.rssKb, mem.hwmKb);
    }
    try {
      const st = await readStats(srv.port);
      res.currItems = Number(st.curr_items);
      res.bytes = Number(st.bytes);
      res.evictions = Number(st.evictions);
      // Distinct keys, no expiry: every set was either stored (total_items) or refused (silently, being noreply).
      res.totalItems = Number(st.total_items ?? Number.NaN);
      res.stayedUp = !srv.proc.exited && pidAlive(srv.pid);
    } catch (err) {
      res.stayedUp = false;
      res.error = `${res.error ? `${res.error}; ` : ''}stats failed: ${(err as Error).message}`;
    }
    if (srv.proc.exited) {
      res.stayedUp = false;
      res.error = `${res.error ? `${res.error}; ` : ''}server ${srv.proc.describeExit()}`;
    }
    const first = res.stayedUp ? await probe(srv.port, 0) : undefined;
    const last = res.stayedUp ? await probe(srv.port, items - 1) : undefined;
    res.spotCheck = `first key ${first === undefined ? 'error' : first ? 'present' : 'missing'}, last key ${last === undefined ? 'error' : last ? 'present' : 'missing'}`;
    if (flood) {
      res.maxRssKb = maxRss;
      res.rssSamplesKb = samples;
      res.oldestKeyPresent = first;
      res.newestKeyPresent = last;
    } else if (res.currItems !== items && !res.error) {
      res.error = `curr_items ${res.currItems} != ${items}`;
    } else if (!(first && last) && !res.error) {
      res.error = `spot check failed: ${res.spotCheck}`;
    }
    log(
      `${name}: RSS ${fmtMiB(res.rssKb)} (peak ${fmtMiB(res.hwmKb)}, idle ${fmtMiB(res.baselineRssKb)}), ` +
        `curr_items ${fmtInt(res.currItems)}, evictions ${fmtInt(res.evictions)}, ${res.spotCheck}`,
    );
  } catch (err) {
    res.error = (err as Error).message;
    log(`${name}: ${res.error}`);
  } finally {
    await stopServer(srv);
  }
  return res;
}

async function main(): Promise<void> {
  installCleanup();
  const started = new Date();
  const results: Partial<Record<ServerName, MemoryResult>> = {};
  for (const s of servers) results[s] = await measure(s);
  const ours = results.ours;
  const mc = results.memcached;
  const out: string[] = [''];
  let ratio = Number.NaN;
  let hwmRatio = Number.NaN;
  let maxRatio = Number.NaN;

  if (!flood) {
    ratio = ours && mc ? ours.rssKb / mc.rssKb : Number.NaN;
    hwmRatio = ours && mc ? ours.hwmKb / mc.hwmKb : Number.NaN;
    out.push(
      `${fmtInt(items)} items, ${valueSize}-byte values, keys key:${'0'.repeat(digits)}.., servers started with -m ${memMb}; ` +
        `RSS = VmRSS of the server process ${settle}s after loading; peak = VmHWM; idle = VmRSS before loading.`,
    );
    out.push('');
    const header = ['server', 'RSS', 'peak RSS', 'idle RSS', 'curr_items', 'load time', 'items/s', 'ok'];
    const rows = servers.map((s) => {
      const r = results[s]!;
      return [
        s,
        fmtMiB(r.rssKb),
        fmtMiB(r.hwmKb),
        fmtMiB(r.baselineRssKb),
        fmtInt(r.currItems),
        `${r.loadSeconds.toFixed(1)}s`,
        fmtInt(r.itemsPerSec),
        r.error ? 'NO (below)' : 'yes',
      ];
    });
    out.push(table(header, rows));
    for (const s of servers) {
      const r = results[s]!;
      if (r.error) out.push(`${s}: ${r.error}`);
    }
    out.push('');
    if (ours && mc) {
      out.push(`RSS ratio ours/memcached: ${fmtRatio(ratio)}   (peak ${fmtRatio(hwmRatio)})`);
      out.push('');
      out.push(
        markdownTable(
          ['items', 'ours RSS', 'memcached RSS', 'ratio', 'ours peak', 'memcached peak', 'peak ratio'],
          [
            [
              `${fmtInt(items)} × ${valueSize} B`,
              fmtMiB(ours.rssKb),
              fmtMiB(mc.rssKb),
              fmtRatio(ratio),
              fmtMiB(ours.hwmKb),
              fmtMiB(mc.hwmKb),
              fmtRatio(hwmRatio),
            ],
          ],
        ),
      );
    } else {
      out.push(markdownTable(header, rows));
    }
  } else {
    maxRatio = ours && mc ? (ours.maxRssKb ?? Number.NaN) / (mc.maxRssKb ?? Number.NaN) : Number.NaN;
    out.push(
      `write flood: ${fmtInt(items)} distinct items of ${valueSize} bytes into servers started with -m ${memMb}; ` +
        'RSS sampled every second during the load (max includes VmHWM; idle = before loading). not stored = items − stats total_items: ' +
        'sets the server refused (silently: they are noreply; memcached does this when its LRU tail is busy).',
    );
    out.push('');
    const header = [
      'server',
      'max RSS',
      'final RSS',
      'idle RSS',
      'curr_items',
      'evictions',
      'oldest key',
      'newest key',
      'stayed up',
      'items/s',
      'not stored',
      'set errors',
    ];
    const rows = servers.map((s) => {
      const r = results[s]!;
      const yn = (v: boolean | undefined) => (v === undefined ? 'error' : v ? 'present' : 'evicted');
      return [
        s,
        fmtMiB(r.maxRssKb ?? Number.NaN),
        fmtMiB(r.rssKb),
        fmtMiB(r.baselineRssKb),
        fmtInt(r.currItems),
        fmtInt(r.evictions),
        yn(r.oldestKeyPresent),
        yn(r.newestKeyPresent),
        r.stayedUp ? 'yes' : 'NO',
        fmtInt(r.itemsPerSec),
        fmtInt(items - r.totalItems),
        fmtInt(r.loadErrors),
      ];
    });
    out.push(table(header, rows));
    out.push('');
    if (ours && mc) out.push(`max RSS ratio ours/memcached: ${fmtRatio(maxRatio)}`);
    out.push('');
    out.push(markdownTable(header, rows));
    for (const s of servers) {
      const r = results[s]!;
      if (r.firstLoadError)
        out.push(`${s}: ${fmtInt(r.loadErrors)} error replies while flooding, first: ${r.firstLoadError}`);
      if (r.error) out.push(`${s}: ${r.error}`);
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);

  const json = {
    benchmark: flood ? 'memcached-flood' : 'memcached-memory',
    started: started.toISOString(),
    host: { cpus: os.cpus().length, kernel: os.release(), node: process.version },
    settings: { flood, items, valueSize, memMb, connections, batch, settle },
    results,
    ...(flood ? { maxRssRatio: maxRatio } : { rssRatio: ratio, peakRssRatio: hwmRatio }),
  };
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify(json, null, 2)}\n`);
    log(`wrote ${args.json}`);
  } else {
    process.stdout.write(`\nJSON: ${JSON.stringify(json)}\n`);
  }
  process.exitCode = servers.some((s) => results[s]!.error || !results[s]!.stayedUp) ? 1 : 0;
}

await main();
