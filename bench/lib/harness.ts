// Shared plumbing for the benchmarks: starting/stopping the servers (memcached's, or any command line through
// startListening), finding their real pids, reading RSS/CPU from /proc, child processes with an IPC channel, a tiny
// text-protocol client for `stats`, and a fast pipelined memcached loader.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HOST = '127.0.0.1';

export type ServerName = 'ours' | 'memcached';
export const SERVER_NAMES: readonly ServerName[] = ['ours', 'memcached'];

export function log(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

export function fmtRatio(n: number): string {
  return Number.isFinite(n) ? `${n.toFixed(2)}x` : 'n/a';
}

export function fmtMiB(kb: number): string {
  return Number.isFinite(kb) ? `${(kb / 1024).toFixed(1)} MiB` : 'n/a';
}

export function pad(s: string, width: number, right = false): string {
  return right ? s.padStart(width) : s.padEnd(width);
}

/** Render rows as an aligned plain-text table (first column left-aligned, the rest right-aligned). */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i]!, i > 0)).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

/**
 * Appends each `[header, rows]` table as aligned text, then each again as markdown (for docs/benchmarks.md),
 * separated by blank lines.
 */
export function pushTables(out: string[], tables: ReadonlyArray<[string[], string[][]]>): void {
  for (const [header, rows] of tables) out.push('', table(header, rows));
  for (const [header, rows] of tables) out.push('', markdownTable(header, rows));
}

/** Prints `msg` and exits with status 2 (a bad command line). */
export function usage(msg: string): never {
  process.stderr.write(`${msg}\n`);
  process.exit(2);
}

/** `value` as an integer ≥ `min`, or {@link usage} naming `--name`. */
export function intArg(name: string, value: string | undefined, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`);
  return n;
}

/** The node binary to run our server with: the pinned one from node_modules, else whatever runs this script. */
export function nodeBinary(): string {
  const pinned = path.join(REPO_ROOT, 'node_modules', '.bin', 'node');
  return existsSync(pinned) ? pinned : process.execPath;
}

function splitCommand(cmd: string): string[] {
  return cmd.split(/\s+/).filter((s) => s.length > 0);
}

/**
 * Command prefix for each server; the standard flags (`-p PORT -U 0 -l 127.0.0.1 -t 2 -m MEM`) are appended.
 * OURS_CMD / MEMCACHED_CMD override the prefixes, e.g. `OURS_CMD='memcached -u root'` to benchmark memcached
 * against itself while ours isn't ready.
 */
export function serverPrefix(name: ServerName): string[] {
  if (name === 'ours') {
    const env = process.env.OURS_CMD;
    if (env?.trim()) return splitCommand(env);
    // As the `sharenothing` bin runs it (its shebang sets the small young generation, see src/cli/main.ts).
    return [nodeBinary(), '--max-semi-space-size=1', 'src/cli/main.ts', 'memcached'];
  }
  const env = process.env.MEMCACHED_CMD;
  if (env?.trim()) return splitCommand(env);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  return isRoot ? ['memcached', '-u', 'root'] : ['memcached'];
}

export function serverArgv(name: ServerName, port: number, memMb: number, threads = 2): string[] {
  return [...serverPrefix(name), '-p', String(port), '-U', '0', '-l', HOST, '-t', String(threads), '-m', String(memMb)];
}

/** Port from --NAME-port or OURS_PORT/MEMCACHED_PORT (exact), else a default that may move up if it is taken. */
export function choosePort(name: ServerName, flag: string | undefined): PortChoice {
  const env = name === 'ours' ? process.env.OURS_PORT : process.env.MEMCACHED_PORT;
  const given = flag ?? env;
  if (given) return { port: Number(given), exact: true };
  return { port: name === 'ours' ? 21211 : 21212, exact: false };
}

export interface PortChoice {
  port: number;
  /** false: if the port is busy, the next free one (stepping by 2, below 32768) is used instead. */
  exact: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Child process bookkeeping: every child gets its own process group and is killed (group-wide) on exit/Ctrl-C.

const children = new Set<ChildProcess>();
let cleanupInstalled = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

export function killAllChildrenSync(): void {
  for (const child of children) killGroup(child, 'SIGKILL');
  children.clear();
}

export function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', killAllChildrenSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      log(`${sig}: stopping servers`);
      killAllChildrenSync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
  process.on('uncaughtException', (err) => {
    log(`uncaught exception: ${err.stack ?? err}`);
    killAllChildrenSync();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log(`unhandled rejection: ${err instanceof Error ? err.stack : String(err)}`);
    killAllChildrenSync();
    process.exit(1);
  });
}

/**
 * Spawn a tracked child in its own process group. Output is kept (tail only) rather than inherited. `ipc: true`
 * opens Node's IPC channel (`child.send` / `process.send`), for Node children only.
 */
export function spawnTracked(
  argv: string[],
  opts: { cwd?: string; keepOutput?: boolean; ipc?: boolean } = {},
): TrackedChild {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('empty command');
  const child = spawn(cmd, args, {
    cwd: opts.cwd ?? REPO_ROOT,
    detached: true,
    stdio: opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const tracked = new TrackedChild(child, opts.keepOutput ?? false);
  child.on('exit', () => children.delete(child));
  return tracked;
}

export class TrackedChild {
  readonly child: ChildProcess;
  stdout = '';
  stderrTail = '';
  exited = false;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  spawnError: Error | undefined;
  readonly done: Promise<void>;

  constructor(child: ChildProcess, keepOutput: boolean) {
    this.child = child;
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      if (keepOutput) this.stdout += d;
      else this.stderrTail = (this.stderrTail + d).slice(-4000);
    });
    child.stderr?.on('data', (d: string) => {
      this.stderrTail = (this.stderrTail + d).slice(-4000);
    });
    this.done = new Promise((resolve) => {
      child.on('error', (err) => {
        this.spawnError = err;
        this.exited = true;
        resolve();
      });
      child.on('close', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  describeExit(): string {
    if (this.spawnError) return `failed to spawn: ${this.spawnError.message}`;
    return `exited (code ${this.exitCode}, signal ${this.exitSignal})${this.stderrTail ? `; output tail:\n${this.stderrTail.trim()}` : ''}`;
  }

  /** SIGTERM the group, then SIGKILL after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.exited) return;
    killGroup(this.child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(this.child, 'SIGKILL'), graceMs);
    await this.done;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// /proc helpers

/** Find the pid owning the TCP socket listening on HOST:port (robust against wrappers like npx or sh -c). */
export function findListeningPid(port: number): number | undefined {
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const local = f[1]!;
      const state = f[3];
      if (state !== '0A') continue; // LISTEN
      const portHex = local.slice(local.lastIndexOf(':') + 1);
      if (Number.parseInt(portHex, 16) === port) inodes.add(f[9]!);
    }
  }
  if (inodes.size === 0) return undefined;
  const targets = new Set([...inodes].map((i) => `socket:[${i}]`));
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (targets.has(readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry);
      } catch {
        // fd closed meanwhile
      }
    }
  }
  return undefined;
}

export interface MemInfo {
  rssKb: number;
  hwmKb: number;
}

export function readMem(pid: number): MemInfo | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    if (!rss) return undefined;
    return { rssKb: Number(rss[1]), hwmKb: hwm ? Number(hwm[1]) : Number.NaN };
  } catch {
    return undefined;
  }
}

/** Number of threads of a process (`Threads:` in /proc/<pid>/status), or NaN. */
export function readThreadCount(pid: number): number {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** pids of the process and all its descendants (children found via /proc/<pid>/stat's ppid). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Memory of the server: VmRSS/VmHWM summed over the process and any child processes it forked. */
export function readMemTree(pid: number): (MemInfo & { processes: number }) | undefined {
  const root = readMem(pid);
  if (!root) return undefined;
  const pids = processTree(pid);
  let rssKb = root.rssKb;
  let hwmKb = root.hwmKb;
  for (const p of pids.slice(1)) {
    const m = readMem(p);
    if (!m) continue;
    rssKb += m.rssKb;
    hwmKb += m.hwmKb;
  }
  return { rssKb, hwmKb, processes: pids.length };
}

let clkTck = 0;
function clockTicks(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU seconds (user+system) consumed so far by pid, or NaN. */
export function readCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised comm: state(3) ... utime(14) stime(15).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / clockTicks();
  } catch {
    return Number.NaN;
  }
}

/** user+system CPU seconds of the whole machine (all cores) so far, from /proc/stat. */
export function readMachineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: count user+nice+system only; irq/softirq time (the loopback
    // network stack) is not charged to any process, so it can't be told apart from other sessions' work.
    return (f[0]! + f[1]! + f[2]!) / clockTicks();
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds of this process's children that have exited and been reaped (e.g. finished memcaslap runs). */
export function readReapedChildrenCpuSeconds(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[13]) + Number(rest[14])) / clockTicks();
  } catch {
    return Number.NaN;
  }
}

/**
 * Measures CPU used during an interval by everything *except* the benchmark's own processes (server, this script,
 * reaped load generators): other sessions' work, other services. Non-zero means the numbers are noisier.
 */
export class BackgroundCpu {
  private readonly busy0 = readMachineBusySeconds();
  private readonly kids0 = readReapedChildrenCpuSeconds();
  private readonly self0 = process.cpuUsage();
  private readonly t0 = performance.now();
  private readonly pidCpu0: Map<number, number>;
  private readonly pids: number[];

  constructor(pids: number[]) {
    this.pids = pids;
    this.pidCpu0 = new Map(pids.map((p) => [p, readCpuSeconds(p)]));
  }

  /** Other CPU use in cores (1.0 = one full core) since construction. */
  otherCores(): number {
    const wall = (performance.now() - this.t0) / 1000;
    const self = process.cpuUsage(this.self0);
    let ours = (self.user + self.system) / 1e6 + (readReapedChildrenCpuSeconds() - this.kids0);
    for (const p of this.pids) ours += readCpuSeconds(p) - this.pidCpu0.get(p)!;
    return Math.max(0, (readMachineBusySeconds() - this.busy0 - ours) / wall);
  }
}

export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Servers

export interface RunningServer {
  name: string;
  port: number;
  argv: string[];
  /** pid of the process that actually listens on the port (the server, not a wrapper). */
  pid: number;
  proc: TrackedChild;
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

async function pickPort(name: string, choice: PortChoice): Promise<number> {
  let port = choice.port;
  for (let tries = 0; tries < 100 && port < 32768; tries++, port += 2) {
    if (!(await tryConnect(port))) {
      if (port !== choice.port) log(`${name}: port ${choice.port} is taken, using ${port}`);
      return port;
    }
    if (choice.exact) break;
  }
  throw new Error(`port ${choice.port} (for ${name}) is already in use; pick another with --${name}-port`);
}

export async function startServer(name: ServerName, portChoice: PortChoice, memMb: number, timeoutMs = 30_000) {
  return startListening(name, portChoice, (port) => serverArgv(name, port, memMb), timeoutMs);
}

/**
 * Start any server: pick a free port (see {@link PortChoice}), spawn `argvFor(port)`, wait until it accepts TCP
 * connections on HOST:port. Throws (with the output tail) when the process exits first, e.g. on a refused flag.
 */
export async function startListening(
  name: string,
  portChoice: PortChoice,
  argvFor: (port: number) => string[],
  timeoutMs = 30_000,
): Promise<RunningServer> {
  const port = await pickPort(name, portChoice);
  const argv = argvFor(port);
  log(`starting ${name}: ${argv.join(' ')}`);
  const proc = spawnTracked(argv);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exited) throw new Error(`${name} ${proc.describeExit()}`);
    if (await tryConnect(port)) break;
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`${name} did not accept connections on ${HOST}:${port} within ${timeoutMs} ms`);
    }
    await sleep(50);
  }
  const pid = findListeningPid(port) ?? proc.pid;
  if (pid === undefined) throw new Error(`${name}: cannot determine pid`);
  const server: RunningServer = { name, port, argv, pid, proc };
  log(`${name} is up on ${HOST}:${port} (pid ${pid}${pid !== proc.pid ? `, spawned wrapper pid ${proc.pid}` : ''})`);
  return server;
}

export async function stopServer(server: RunningServer | undefined): Promise<void> {
  if (!server) return;
  await server.proc.stop();
  // If the listener was a grandchild outside the group (unusual), make sure it is gone too.
  if (server.pid !== server.proc.pid && pidAlive(server.pid)) {
    try {
      process.kill(server.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Minimal text-protocol request/response (for `stats`, `get`, liveness checks).

export function textRequest(port: number, request: string, until: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port });
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`timeout waiting for reply to ${JSON.stringify(request.slice(0, 40))}`));
    }, timeoutMs);
    sock.setEncoding('latin1');
    sock.once('connect', () => sock.write(request));
    sock.on('data', (d: string) => {
      buf += d;
      if (until.test(buf)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf);
      }
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`connection closed before a full reply (got ${JSON.stringify(buf.slice(0, 80))})`));
    });
  });
}

export async function readStats(port: number, timeoutMs = 10_000): Promise<Record<string, string>> {
  const reply = await textRequest(port, 'stats\r\n', /(^|\r\n)(END|ERROR[^\r\n]*)\r\n$/, timeoutMs);
  const out: Record<string, string> = {};
  for (const line of reply.split('\r\n')) {
    const m = /^STAT (\S+) (.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Pipelined loader: `set KEY 0 0 N noreply` in batches, each batch followed by `get <sentinel>` (a key that never
// exists) whose `END` acknowledges the batch. Any other reply line (e.g. an error a server sends despite noreply) is
// counted as an error. A few batches in flight per connection.

export interface LoadOptions {
  count: number;
  valueSize: number;
  connections?: number;
  batch?: number;
  window?: number;
  keyPrefix?: string;
  /** First key index (keys are `${keyPrefix}${index padded to digits}`). */
  start?: number;
  digits?: number;
}

export interface LoadResult {
  /** items written (all as `set ... noreply`). */
  sent: number;
  /** batches acknowledged (their sentinel `get` answered END). */
  batchesAcked: number;
  errors: number;
  firstError?: string;
  seconds: number;
  /** set when a connection failed (e.g. the server crashed). */
  connectionError?: string;
}

export function keyDigits(count: number): number {
  return Math.max(6, String(Math.max(0, count - 1)).length);
}

export function makeKey(prefix: string, index: number, digits: number): string {
  return `${prefix}${String(index).padStart(digits, '0')}`;
}

/** Value bytes for item `index`: the index in decimal, then a repeating filler. Never contains CR/LF. */
export function fillValue(buf: Buffer, offset: number, size: number, index: number, filler: Buffer): void {
  filler.copy(buf, offset, 0, size);
  const tag = `${index}:`;
  if (tag.length <= size) buf.write(tag, offset, 'latin1');
}

export function makeFiller(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = 97 + (i % 26);
  return b;
}

const SYNC = 'get __bench_sync_never_set__\r\n';

export async function loadItems(port: number, opts: LoadOptions): Promise<LoadResult> {
  const connections = opts.connections ?? 4;
  const batch = opts.batch ?? 500;
  const window = opts.window ?? 4;
  const prefix = opts.keyPrefix ?? 'key:';
  const start = opts.start ?? 0;
  const digits = opts.digits ?? keyDigits(start + opts.count);
  const end = start + opts.count;
  const filler = makeFiller(opts.valueSize);
  const t0 = performance.now();
  const result: LoadResult = { sent: 0, batchesAcked: 0, errors: 0, seconds: 0 };
  let next = start;

  const buildBatch = (from: number, to: number): Buffer => {
    const headerMax = 4 + prefix.length + digits + 16 + 20;
    const buf = Buffer.allocUnsafe((to - from) * (headerMax + opts.valueSize + 2) + SYNC.length);
    let off = 0;
    for (let i = from; i < to; i++) {
      const key = makeKey(prefix, i, digits);
      off += buf.write(`set ${key} 0 0 ${opts.valueSize} noreply\r\n`, off, 'latin1');
      fillValue(buf, off, opts.valueSize, i, filler);
      off += opts.valueSize;
      buf[off++] = 13;
      buf[off++] = 10;
    }
    off += buf.write(SYNC, off, 'latin1');
    return buf.subarray(0, off);
  };

  const runConnection = () =>
    new Promise<void>((resolve) => {
      const sock = net.connect({ host: HOST, port });
      sock.setNoDelay(true);
      let inflight = 0;
      let pending = '';
      let finished = false;
      const finish = (err?: string) => {
        if (finished) return;
        finished = true;
        if (err && !result.connectionError) result.connectionError = err;
        sock.destroy();
        resolve();
      };
      const pump = () => {
        while (inflight < window && next < end) {
          const from = next;
          const to = Math.min(end, from + batch);
          next = to;
          inflight++;
          result.sent += to - from;
          sock.write(buildBatch(from, to));
        }
        if (inflight === 0 && next >= end) finish();
      };
      sock.setEncoding('latin1');
      sock.once('connect', pump);
      sock.on('data', (d: string) => {
        pending += d;
        let idx = pending.indexOf('\r\n');
        while (idx >= 0) {
          const line = pending.slice(0, idx);
          pending = pending.slice(idx + 2);
          if (line === 'END') {
            result.batchesAcked++;
            inflight--;
          } else {
            result.errors++;
            result.firstError ??= line;
          }
          idx = pending.indexOf('\r\n');
        }
        pump();
      });
      sock.on('error', (err) => finish(err.message));
      sock.on('close', () => finish(inflight > 0 || next < end ? 'connection closed by server' : undefined));
    });

  await Promise.all(Array.from({ length: connections }, runConnection));
  result.seconds = (performance.now() - t0) / 1000;
  return result;
}
