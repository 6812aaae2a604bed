// One client, one case, one timed run: spawned by bench/memcached-client.ts in a process of its own, so that one
// client's garbage collector and event loop never slow down another's. Prints one `RESULT {json}` line on stdout.
//
//   node bench/lib/memcached-client-worker.ts --client ours|memjs|memcached --case get|set|multiget --port N
//        [--server-pid N] [--seconds 5] [--warmup 1] [--concurrency 50] [--keys 10000] [--value-size 100]
//        [--multi-keys 100] [--ours-options JSON]
//
// `--concurrency` async loops each await one operation at a time (a multi-get counts as one operation) and start
// the next as soon as it resolves. Counts are taken over the `--seconds` after `--warmup`.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { MemcacheClient, type MemcacheClientOptions } from '../../src/memcached/index.ts';
import { BackgroundCpu, HOST, keyDigits, makeKey, readCpuSeconds, sleep } from './harness.ts';

export const CLIENT_NAMES = ['ours', 'memjs', 'memcached'] as const;
export type ClientName = (typeof CLIENT_NAMES)[number];
export const CASE_NAMES = ['get', 'set', 'multiget'] as const;
export type CaseName = (typeof CASE_NAMES)[number];

export interface WorkerResult {
  client: ClientName;
  case: CaseName;
  /** operations completed in the measured window (a multi-get is one operation). */
  ops: number;
  /** keys returned by the operations of the window (gets and multi-gets; 0 for sets). */
  hits: number;
  /** keys asked for but not returned (should be 0: every key is preloaded). */
  misses: number;
  errors: number;
  firstError?: string;
  seconds: number;
  opsPerSec: number;
  keysPerSec: number;
  /** this process's CPU time / wall time in the window (1.0 = one core). */
  clientCpu: number;
  /** event-loop utilization in the window (1.0 = the loop never waited for I/O). */
  clientElu: number;
  /** the server process's CPU in the window (NaN without --server-pid). */
  serverCpu: number;
  /** CPU used meanwhile by processes outside this benchmark (noise). */
  otherCpu: number;
  /** heap used at the end of the window, MiB. */
  heapMiB: number;
}

/** A minimal uniform interface over the three clients. */
interface Driver {
  get(key: string): Promise<boolean>;
  set(key: string, value: string): Promise<void>;
  /** Resolves to the number of keys returned. */
  getMulti(keys: string[]): Promise<number>;
  close(): Promise<void>;
}

// The competitors are CommonJS packages without type declarations (installed in bench/node_modules only), loaded
// through require() and typed here as far as they are used.
const require = createRequire(import.meta.url);

interface MemjsClient {
  get(key: string): Promise<{ value: Buffer | null; flags: Buffer | null }>;
  set(key: string, value: string | Buffer, options: { expires?: number }): Promise<boolean>;
  close(): void;
}
interface MemjsModule {
  Client: { create(servers: string, options?: Record<string, unknown>): MemjsClient };
}

type Callback<T> = (err: unknown, data: T) => void;
interface MemcachedNpmClient {
  get(key: string, cb: Callback<unknown>): void;
  getMulti(keys: string[], cb: Callback<Record<string, unknown> | undefined>): void;
  set(key: string, value: string, lifetime: number, cb: Callback<boolean>): void;
  end(): void;
}
type MemcachedNpmCtor = new (servers: string, options?: Record<string, unknown>) => MemcachedNpmClient;

function ours(server: string, options: Partial<MemcacheClientOptions>): Driver {
  const client = new MemcacheClient({ ...options, servers: [server] });
  return {
    get: async (key) => (await client.get(key)) !== undefined,
    set: async (key, value) => {
      if (!(await client.set(key, value, { ttl: 0 }))) throw new Error('set: not stored');
    },
    getMulti: async (keys) => (await client.getMulti(keys)).size,
    close: () => client.close(),
  };
}

function memjs(server: string): Driver {
  const mod = require('memjs') as MemjsModule;
  // Default options (timeout 0.5 s); memjs logs errors with console.log, which the parent keeps.
  const client = mod.Client.create(server);
  const get = async (key: string) => (await client.get(key)).value !== null;
  return {
    get,
    set: async (key, value) => {
      if (!(await client.set(key, value, { expires: 0 }))) throw new Error('set: not stored');
    },
    // memjs has no multi-get: the usual substitute is one get per key, all in flight at once.
    getMulti: async (keys) => {
      const found = await Promise.all(keys.map(get));
      let n = 0;
      for (const f of found) if (f) n++;
      return n;
    },
    close: async () => client.close(),
  };
}

function memcachedNpm(server: string): Driver {
  const Memcached = require('memcached') as MemcachedNpmCtor;
  // Default options: a pool of up to 10 connections per server.
  const client = new Memcached(server);
  return {
    get: (key) =>
      new Promise((resolve, reject) =>
        client.get(key, (err, data) => (err ? reject(err) : resolve(data !== undefined && data !== false))),
      ),
    set: (key, value) =>
      new Promise((resolve, reject) =>
        client.set(key, value, 0, (err, ok) =>
          err ? reject(err) : ok ? resolve() : reject(new Error('set: not stored')),
        ),
      ),
    getMulti: (keys) =>
      new Promise((resolve, reject) =>
        client.getMulti(keys, (err, data) => (err ? reject(err) : resolve(data ? Object.keys(data).length : 0))),
      ),
    close: async () => client.end(),
  };
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      client: { type: 'string' },
      case: { type: 'string' },
      port: { type: 'string' },
      'server-pid': { type: 'string' },
      seconds: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '50' },
      keys: { type: 'string', default: '10000' },
      'value-size': { type: 'string', default: '100' },
      'multi-keys': { type: 'string', default: '100' },
      'ours-options': { type: 'string', default: '{}' },
    },
  });
  const clientName = args.client as ClientName;
  const caseName = args.case as CaseName;
  if (!CLIENT_NAMES.includes(clientName)) throw new Error(`--client must be one of ${CLIENT_NAMES.join(', ')}`);
  if (!CASE_NAMES.includes(caseName)) throw new Error(`--case must be one of ${CASE_NAMES.join(', ')}`);
  const port = Number(args.port);
  const serverPid = args['server-pid'] ? Number(args['server-pid']) : undefined;
  const seconds = Number(args.seconds);
  const warmup = Number(args.warmup);
  const concurrency = Number(args.concurrency);
  const keyCount = Number(args.keys);
  const valueSize = Number(args['value-size']);
  const multiKeys = Number(args['multi-keys']);

  // Never outlive the parent's schedule, whatever happens (the parent also kills our process group).
  setTimeout(
    () => {
      process.stderr.write('worker: hard deadline reached\n');
      process.exit(3);
    },
    (warmup + seconds + 30) * 1000,
  ).unref();

  // Keys are built once (same strings for every client); the array is doubled so a multi-get is one slice.
  const digits = keyDigits(keyCount);
  const keys = Array.from({ length: keyCount }, (_, i) => makeKey('key:', i, digits));
  const ring = keys.concat(keys);
  const value = 'v'.repeat(valueSize);

  const server = `${HOST}:${port}`;
  const oursOptions = JSON.parse(args['ours-options']!) as Partial<MemcacheClientOptions>;
  const driver =
    clientName === 'ours' ? ours(server, oursOptions) : clientName === 'memjs' ? memjs(server) : memcachedNpm(server);

  // Counters; `measuring` switches on at the end of the warm-up. Operations in flight when the window ends are
  // not counted.
  let measuring = false;
  let stopping = false;
  let ops = 0;
  let hits = 0;
  let misses = 0;
  let errors = 0;
  let firstError: string | undefined;

  const randomKey = () => keys[(Math.random() * keyCount) | 0]!;
  const one: () => Promise<void> =
    caseName === 'get'
      ? async () => {
          const hit = await driver.get(randomKey());
          if (!measuring) return;
          ops++;
          if (hit) hits++;
          else misses++;
        }
      : caseName === 'set'
        ? async () => {
            await driver.set(randomKey(), value);
            if (measuring) ops++;
          }
        : async () => {
            const start = (Math.random() * keyCount) | 0;
            const found = await driver.getMulti(ring.slice(start, start + multiKeys));
            if (!measuring) return;
            ops++;
            hits += found;
            misses += multiKeys - found;
          };

  const loop = async () => {
    while (!stopping) {
      try {
        await one();
      } catch (err) {
        if (measuring) {
          errors++;
          firstError ??= errorText(err);
        }
        // Don't spin on a dead connection.
        await sleep(10);
      }
    }
  };

  // Connect (and check the keys are there) before anything is timed.
  if (!(await driver.get(keys[0]!))) throw new Error(`${keys[0]} is missing on ${server} (was it preloaded?)`);

  const loops = Array.from({ length: concurrency }, loop);
  await sleep(warmup * 1000);

  const srvCpu0 = serverPid === undefined ? Number.NaN : readCpuSeconds(serverPid);
  const bg = new BackgroundCpu(serverPid === undefined ? [] : [serverPid]);
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await sleep(seconds * 1000);
  measuring = false;
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0);
  const serverCpu = serverPid === undefined ? Number.NaN : (readCpuSeconds(serverPid) - srvCpu0) / wall;
  const otherCpu = bg.otherCores();
  const heapMiB = process.memoryUsage().heapUsed / 2 ** 20;

  stopping = true;
  await Promise.all(loops);
  // A ref'd timer keeps the loop alive while the clients close: our client unrefs its idle socket, so without
  // another handle the process would exit before the socket's 'close' event, with close() still pending.
  const keepAlive = setInterval(() => {}, 1000);
  await driver.close();
  clearInterval(keepAlive);

  const result: WorkerResult = {
    client: clientName,
    case: caseName,
    ops,
    hits,
    misses,
    errors,
    firstError,
    seconds: wall,
    opsPerSec: ops / wall,
    keysPerSec: hits / wall,
    clientCpu: (cpu.user + cpu.system) / 1e6 / wall,
    clientElu: elu.utilization,
    serverCpu,
    otherCpu,
    heapMiB,
  };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  // memcached (npm) keeps idle timers and memjs may keep sockets; don't wait for them.
  process.exit(0);
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`worker failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
