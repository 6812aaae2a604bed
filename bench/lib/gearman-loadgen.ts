// One load-generator process of bench/gearman.ts (spawned with an IPC channel; not meant to be run by hand).
// Speaks the raw gearman binary protocol through the pure codec: each `setup` message connects this process's
// share of clients/workers, `go` starts the load at an agreed wall-clock time, and one `result` reports what was
// counted in the window plus this process's own CPU time over it. Tasks run one after another until `exit`.
import net from 'node:net';
import {
  encodePacket,
  PacketParser,
  REQUEST,
  RESPONSE,
  splitArguments,
} from '../../src/gearman/protocol/packet-codec.ts';
import {
  type ChildMessage,
  FUNCTION_NAME,
  Histogram,
  nowMs,
  type ParentMessage,
  SLOT_MS,
  type Task,
  type TaskResult,
  type Window,
} from './gearman-common.ts';

const HOST = '127.0.0.1';
const GRAB = encodePacket(REQUEST.GRAB_JOB_UNIQ, [], 'REQ');
const PRE_SLEEP = encodePacket(REQUEST.PRE_SLEEP, [], 'REQ');
const CAN_DO = encodePacket(REQUEST.CAN_DO, [FUNCTION_NAME], 'REQ');

function send(msg: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      resolve();
      return;
    }
    process.send(msg, undefined, {}, () => resolve());
  });
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function payloadOf(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = 97 + (i % 26);
  return b;
}

/** One gearman connection: a socket and a parser; frames go to `onPacket`. */
class Conn {
  readonly sock: net.Socket;
  private readonly parser = new PacketParser();
  private readonly task: Runner;
  dead = false;

  constructor(port: number, task: Runner, onPacket: (type: number, data: Buffer) => void) {
    this.task = task;
    this.sock = net.connect({ host: HOST, port });
    this.sock.setNoDelay(true);
    this.sock.on('data', (chunk: Buffer) => {
      this.parser.push(chunk);
      for (let f = this.parser.next(); f; f = this.parser.next()) {
        if (f.kind === 'packet') {
          if (f.type === RESPONSE.ERROR) {
            const [code, text] = splitArguments(f.data, 2).args;
            this.task.error(`ERROR ${code?.toString('latin1')} ${text?.toString('latin1')}`);
          } else onPacket(f.type, f.data);
        } else {
          this.task.error(f.kind === 'error' ? `unparsable stream from server: ${f.reason}` : 'unexpected text line');
          this.sock.destroy();
          return;
        }
      }
    });
    this.sock.on('error', (err) => {
      if (!this.task.stopped) this.task.error(`socket: ${err.message}`);
    });
    this.sock.on('close', () => {
      this.dead = true;
      if (!this.task.stopped) this.task.error('connection closed by the server');
      this.task.connectionClosed();
    });
  }

  connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.sock.readyState === 'open') resolve();
      this.sock.once('connect', () => resolve());
      this.sock.once('error', reject);
    });
  }

  write(buf: Buffer): void {
    if (!this.dead) this.sock.write(buf);
  }
}

/** The counting common to all tasks: the window, CPU, errors. */
abstract class Runner {
  stopped = false;
  measuring = false;
  ops = 0;
  totalOps = 0;
  errors = 0;
  firstError: string | undefined;
  counters: Record<string, number> = {};
  protected conns: Conn[] = [];
  protected window: Window | undefined;
  private cpu0: NodeJS.CpuUsage | undefined;
  private cpu: NodeJS.CpuUsage = { user: 0, system: 0 };
  private t0 = 0;
  private readonly timeline: number[] = [];
  private windowMs = 0;
  private timers: NodeJS.Timeout[] = [];
  private finished = false;
  protected hist: Histogram | undefined;
  lastAt: number | undefined;

  protected readonly deadlineAt: number;

  constructor(deadlineAt: number) {
    this.deadlineAt = deadlineAt;
  }

  abstract setup(): Promise<{ coordPort?: number }>;
  /** Starts the load (at window.startAt). */
  protected abstract start(): void;

  /** One completion inside the window (also counted in its 100 ms slot of the timeline). */
  countOp(): void {
    this.ops++;
    const slot = Math.floor((performance.now() - this.t0) / SLOT_MS);
    this.timeline[slot] = (this.timeline[slot] ?? 0) + 1;
  }

  error(msg: string): void {
    this.errors++;
    this.firstError ??= msg;
  }

  count(name: string, n = 1): void {
    this.counters[name] = (this.counters[name] ?? 0) + n;
  }

  /** A connection closed; tasks that end on their own (preload, drain) check whether anything is left. */
  connectionClosed(): void {}

  protected connect(port: number, onPacket: (conn: Conn, type: number, data: Buffer) => void): Conn {
    const conn: Conn = new Conn(port, this, (type, data) => onPacket(conn, type, data));
    this.conns.push(conn);
    return conn;
  }

  /** Windowed tasks: load at startAt, count from startAt + warm-up for durationMs, then stop and report. */
  go(window: Window): void {
    this.window = window;
    const at = (t: number, fn: () => void) => this.timers.push(setTimeout(fn, Math.max(0, t - Date.now())));
    if (this.selfTimed()) {
      at(window.startAt, () => this.beginWindow());
      at(window.startAt, () => this.start());
    } else {
      at(window.startAt, () => this.start());
      at(window.startAt + window.warmupMs, () => this.beginWindow());
      at(window.startAt + window.warmupMs + window.durationMs, () => this.endWindow());
    }
    at(this.deadlineAt, () => {
      this.error('deadline passed before the task finished');
      this.endWindow();
    });
  }

  /** Tasks that end by themselves (drain, preload) rather than at the end of the window. */
  protected selfTimed(): boolean {
    return false;
  }

  protected beginWindow(): void {
    if (this.finished) return;
    this.cpu0 = process.cpuUsage();
    this.t0 = performance.now();
    this.measuring = true;
  }

  protected endWindow(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.measuring) {
      this.cpu = process.cpuUsage(this.cpu0);
      this.windowMs = performance.now() - this.t0;
    }
    this.measuring = false;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    const result: TaskResult = {
      ops: this.ops,
      windowMs: this.windowMs,
      totalOps: this.totalOps,
      cpuUserUs: this.cpu.user,
      cpuSysUs: this.cpu.system,
      errors: this.errors,
      counters: this.counters,
      timeline: Array.from(this.timeline, (n) => n ?? 0),
      ...(this.firstError !== undefined ? { firstError: this.firstError } : {}),
      ...(this.hist ? { latency: this.hist.toPairs() } : {}),
      ...(this.lastAt !== undefined ? { lastAt: this.lastAt } : {}),
    };
    void send({ type: 'result', result }).then(() => this.destroy());
  }

  destroy(): void {
    for (const c of this.conns) c.sock.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** Echo worker: GRAB_JOB_UNIQ → JOB_ASSIGN_UNIQ → WORK_COMPLETE(echo) + GRAB; NO_JOB → PRE_SLEEP; NOOP → GRAB. */
function workerPacket(run: Runner, conn: Conn, type: number, data: Buffer, onJob?: () => void): void {
  switch (type) {
    case RESPONSE.JOB_ASSIGN_UNIQ: {
      run.count('jobs assigned');
      if (run.stopped) return;
      const [handle, , , payload] = splitArguments(data, 4).args;
      conn.write(Buffer.concat([encodePacket(REQUEST.WORK_COMPLETE, [handle!, payload!], 'REQ'), GRAB]));
      onJob?.();
      return;
    }
    case RESPONSE.NO_JOB:
      run.count('NO_JOB');
      conn.write(PRE_SLEEP);
      return;
    case RESPONSE.NOOP:
      run.count('NOOP');
      conn.write(GRAB);
      return;
    default:
      run.error(`worker got unexpected packet type ${type}`);
  }
}

interface FgClient {
  conn: Conn;
  index: number;
  seq: number;
  /** performance.now() of the outstanding SUBMIT_JOB. */
  t0: number;
}

class FgRunner extends Runner {
  private readonly payload: Buffer;
  private clients: FgClient[] = [];

  private readonly task: Extract<Task, { kind: 'fg' }>;

  constructor(task: Extract<Task, { kind: 'fg' }>, deadlineAt: number) {
    super(deadlineAt);
    this.task = task;
    this.payload = payloadOf(task.payload);
    this.hist = new Histogram();
  }

  async setup() {
    for (let i = 0; i < this.task.workers; i++) {
      const w = this.connect(this.task.port, (conn, type, data) => workerPacket(this, conn, type, data));
      w.write(Buffer.concat([CAN_DO, GRAB]));
    }
    for (let i = 0; i < this.task.clients; i++) {
      const client: FgClient = { conn: undefined as unknown as Conn, index: i, seq: 0, t0: 0 };
      client.conn = this.connect(this.task.port, (_conn, type) => this.clientPacket(client, type));
      this.clients.push(client);
    }
    await Promise.all(this.conns.map((c) => c.connected()));
    return {};
  }

  private submit(client: FgClient): void {
    const unique = `${this.task.tag}-${client.index}-${client.seq++}`;
    client.t0 = performance.now();
    client.conn.write(encodePacket(REQUEST.SUBMIT_JOB, [FUNCTION_NAME, unique, this.payload], 'REQ'));
  }

  protected start(): void {
    for (const c of this.clients) this.submit(c);
  }

  private clientPacket(client: FgClient, type: number): void {
    switch (type) {
      case RESPONSE.JOB_CREATED:
        return;
      case RESPONSE.WORK_COMPLETE: {
        const us = (performance.now() - client.t0) * 1000;
        this.totalOps++;
        if (this.measuring) {
          this.countOp();
          this.hist!.record(us);
        }
        if (!this.stopped) this.submit(client);
        return;
      }
      case RESPONSE.WORK_FAIL:
      case RESPONSE.WORK_EXCEPTION:
        this.error(`client got ${type === RESPONSE.WORK_FAIL ? 'WORK_FAIL' : 'WORK_EXCEPTION'}`);
        if (!this.stopped) this.submit(client);
        return;
      default:
        this.count(`client packet ${type}`);
    }
  }
}

class BgRunner extends Runner {
  private readonly payload: Buffer;
  private clients: { conn: Conn; outstanding: number; seq: number; index: number }[] = [];
  private remaining: number;
  private goneAt: number | undefined;

  private readonly task: Extract<Task, { kind: 'bg' }>;

  constructor(task: Extract<Task, { kind: 'bg' }>, deadlineAt: number) {
    super(deadlineAt);
    this.task = task;
    this.payload = payloadOf(task.payload);
    this.remaining = task.total ?? Number.POSITIVE_INFINITY;
  }

  protected override selfTimed(): boolean {
    return this.task.total !== undefined;
  }

  async setup() {
    for (let i = 0; i < this.task.clients; i++) {
      const client = { conn: undefined as unknown as Conn, outstanding: 0, seq: 0, index: i };
      client.conn = this.connect(this.task.port, (_conn, type, data) => this.clientPacket(client, type, data));
      this.clients.push(client);
    }
    await Promise.all(this.conns.map((c) => c.connected()));
    return {};
  }

  private refill(client: { conn: Conn; outstanding: number; seq: number; index: number }): void {
    if (this.stopped) return;
    const n = Math.min(this.task.depth - client.outstanding, this.remaining);
    if (n <= 0) return;
    this.remaining -= n;
    client.outstanding += n;
    const packets: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const unique = `${this.task.tag}-${client.index}-${client.seq++}`;
      packets.push(encodePacket(REQUEST.SUBMIT_JOB_BG, [FUNCTION_NAME, unique, this.payload], 'REQ'));
    }
    client.conn.write(packets.length === 1 ? packets[0]! : Buffer.concat(packets));
  }

  protected start(): void {
    for (const c of this.clients) this.refill(c);
  }

  private clientPacket(
    client: { conn: Conn; outstanding: number; seq: number; index: number },
    type: number,
    _data: Buffer,
  ): void {
    if (type !== RESPONSE.JOB_CREATED) {
      this.error(`bg client got unexpected packet type ${type}`);
      return;
    }
    client.outstanding--;
    this.totalOps++;
    if (this.measuring) this.countOp();
    if (this.task.total !== undefined && this.totalOps >= this.task.total) {
      this.lastAt = nowMs();
      this.endWindow();
      return;
    }
    // Refill once per read, not per packet: the rest of this chunk's JOB_CREATEDs are parsed first.
    if (client.outstanding === this.task.depth - 1) queueMicrotask(() => this.refill(client));
  }

  override connectionClosed(): void {
    if (this.stopped || this.task.total === undefined) return;
    if (this.conns.every((c) => c.dead)) {
      this.goneAt = nowMs();
      this.lastAt = this.goneAt;
      this.endWindow();
    }
  }
}

class DrainRunner extends Runner {
  private done = 0;

  private readonly task: Extract<Task, { kind: 'drain' }>;

  constructor(task: Extract<Task, { kind: 'drain' }>, deadlineAt: number) {
    super(deadlineAt);
    this.task = task;
  }

  protected override selfTimed(): boolean {
    return true;
  }

  async setup() {
    for (let i = 0; i < this.task.workers; i++) {
      const w = this.connect(this.task.port, (conn, type, data) => this.packet(conn, type, data));
      w.write(CAN_DO);
    }
    await Promise.all(this.conns.map((c) => c.connected()));
    return {};
  }

  protected start(): void {
    for (const c of this.conns) c.write(GRAB);
  }

  private packet(conn: Conn, type: number, data: Buffer): void {
    switch (type) {
      case RESPONSE.JOB_ASSIGN_UNIQ: {
        if (this.stopped) return;
        const [handle] = splitArguments(data, 4).args;
        conn.write(Buffer.concat([encodePacket(REQUEST.WORK_COMPLETE, [handle!, ''], 'REQ'), GRAB]));
        this.totalOps++;
        this.countOp();
        this.lastAt = nowMs();
        return;
      }
      case RESPONSE.NO_JOB:
        // Nobody submits during a drain: NO_JOB means the queue is empty (every earlier WORK_COMPLETE of this
        // connection was processed before it, in order).
        this.count('NO_JOB');
        this.workerDone();
        return;
      case RESPONSE.NOOP:
        this.count('NOOP');
        return;
      default:
        this.error(`drain worker got unexpected packet type ${type}`);
    }
  }

  private workerDone(): void {
    this.done++;
    if (this.done === this.task.workers) this.endWindow();
  }

  override connectionClosed(): void {
    if (!this.stopped && this.conns.every((c) => c.dead)) this.endWindow();
  }
}

class CoalesceRunner extends Runner {
  private readonly payload: Buffer;
  private clients: { conn: Conn; round: number }[] = [];
  /** round → clients of this process that got JOB_CREATED for it. */
  private readonly localAttached = new Map<number, number>();
  /** (worker process) round → processes whose clients are all attached. */
  private readonly procsAttached = new Map<number, number>();
  /** (worker process) highest round whose job every client is attached to. */
  private barrier = -1;
  private held: { conn: Conn; round: number; handle: Buffer; payload: Buffer } | undefined;
  private coordServer: net.Server | undefined;
  private coordSock: net.Socket | undefined;
  private coordIn: net.Socket[] = [];

  private readonly task: Extract<Task, { kind: 'coalesce' }>;

  constructor(task: Extract<Task, { kind: 'coalesce' }>, deadlineAt: number) {
    super(deadlineAt);
    this.task = task;
    this.payload = payloadOf(task.payload);
  }

  async setup() {
    let coordPort: number | undefined;
    if (this.task.worker) {
      this.coordServer = net.createServer((sock) => {
        sock.setNoDelay(true);
        this.coordIn.push(sock);
        let pending: Buffer = Buffer.alloc(0);
        sock.on('data', (chunk: Buffer) => {
          pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
          let at = 0;
          for (; at + 4 <= pending.length; at += 4) this.processAttached(pending.readUInt32BE(at));
          pending = pending.subarray(at);
        });
        sock.on('error', () => {});
      });
      await new Promise<void>((resolve) => this.coordServer!.listen(0, HOST, resolve));
      coordPort = (this.coordServer.address() as net.AddressInfo).port;
      const w = this.connect(this.task.port, (conn, type, data) => this.workerPacket(conn, type, data));
      w.write(Buffer.concat([CAN_DO, GRAB]));
    } else {
      const port = this.task.coordPort;
      if (port === undefined) throw new Error('coalesce: no coordination port');
      this.coordSock = net.connect({ host: HOST, port });
      this.coordSock.setNoDelay(true);
      this.coordSock.on('error', (err) => this.error(`coordination socket: ${err.message}`));
      await new Promise<void>((resolve, reject) => {
        this.coordSock!.once('connect', resolve);
        this.coordSock!.once('error', reject);
      });
    }
    for (let i = 0; i < this.task.clients; i++) {
      const client = { conn: undefined as unknown as Conn, round: 0 };
      client.conn = this.connect(this.task.port, (_conn, type) => this.clientPacket(client, type));
      this.clients.push(client);
    }
    await Promise.all(this.conns.map((c) => c.connected()));
    return coordPort === undefined ? {} : { coordPort };
  }

  private submit(client: { conn: Conn; round: number }): void {
    client.conn.write(encodePacket(REQUEST.SUBMIT_JOB, [FUNCTION_NAME, `co-${client.round}`, this.payload], 'REQ'));
  }

  protected start(): void {
    for (const c of this.clients) this.submit(c);
  }

  private clientPacket(client: { conn: Conn; round: number }, type: number): void {
    switch (type) {
      case RESPONSE.JOB_CREATED: {
        const n = (this.localAttached.get(client.round) ?? 0) + 1;
        if (n < this.clients.length) {
          this.localAttached.set(client.round, n);
          return;
        }
        this.localAttached.delete(client.round);
        if (this.task.worker) this.processAttached(client.round);
        else {
          const b = Buffer.allocUnsafe(4);
          b.writeUInt32BE(client.round);
          this.coordSock!.write(b);
        }
        return;
      }
      case RESPONSE.WORK_COMPLETE:
        this.totalOps++;
        if (this.measuring) this.countOp();
        client.round++;
        if (!this.stopped) this.submit(client);
        return;
      case RESPONSE.WORK_FAIL:
      case RESPONSE.WORK_EXCEPTION:
        this.error(`coalescing client got packet type ${type}`);
        return;
      default:
        this.count(`client packet ${type}`);
    }
  }

  /** Worker process: one more process has all its clients attached to `round`'s job. */
  private processAttached(round: number): void {
    const n = (this.procsAttached.get(round) ?? 0) + 1;
    if (n < this.task.processes) {
      this.procsAttached.set(round, n);
      return;
    }
    this.procsAttached.delete(round);
    if (round > this.barrier) this.barrier = round;
    this.tryComplete();
  }

  private tryComplete(): void {
    const held = this.held;
    if (!held || held.round > this.barrier || this.stopped) return;
    this.held = undefined;
    this.count('jobs executed');
    held.conn.write(Buffer.concat([encodePacket(REQUEST.WORK_COMPLETE, [held.handle, held.payload], 'REQ'), GRAB]));
  }

  private workerPacket(conn: Conn, type: number, data: Buffer): void {
    if (type !== RESPONSE.JOB_ASSIGN_UNIQ) {
      workerPacket(this, conn, type, data);
      return;
    }
    const [handle, , unique, payload] = splitArguments(data, 4).args;
    const m = /^co-(\d+)$/.exec(unique!.toString('latin1'));
    if (!m) {
      this.error(`coalescing worker got unique ${JSON.stringify(unique!.toString('latin1'))}`);
      return;
    }
    // Copy: the parser's buffers are views that the next chunk may reuse.
    this.held = { conn, round: Number(m[1]), handle: Buffer.from(handle!), payload: Buffer.from(payload!) };
    this.tryComplete();
  }

  override destroy(): void {
    super.destroy();
    this.coordSock?.destroy();
    for (const s of this.coordIn) s.destroy();
    this.coordServer?.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------

let current: Runner | undefined;

function makeRunner(task: Task, deadlineAt: number): Runner {
  switch (task.kind) {
    case 'fg':
      return new FgRunner(task, deadlineAt);
    case 'bg':
      return new BgRunner(task, deadlineAt);
    case 'drain':
      return new DrainRunner(task, deadlineAt);
    case 'coalesce':
      return new CoalesceRunner(task, deadlineAt);
  }
}

async function fatal(message: string): Promise<never> {
  await send({ type: 'fatal', message });
  process.exit(1);
}

process.on('message', (msg: ParentMessage) => {
  switch (msg.type) {
    case 'setup': {
      current?.destroy();
      const runner = makeRunner(msg.task, msg.deadlineAt);
      current = runner;
      const timer = setTimeout(
        () => void fatal('setup: could not connect within the deadline'),
        Math.max(1000, msg.deadlineAt - Date.now()),
      );
      runner.setup().then(
        (info) => {
          clearTimeout(timer);
          void send({ type: 'ready', ...info });
        },
        (err: unknown) => void fatal(`setup: ${errorText(err)}`),
      );
      return;
    }
    case 'go':
      if (!current) {
        void fatal('go before setup');
        return;
      }
      current.go(msg.window);
      return;
    case 'exit':
      current?.destroy();
      process.exit(0);
  }
});
// The orchestrator went away (killed, crashed): never linger.
process.on('disconnect', () => process.exit(0));
process.on('uncaughtException', (err) => void fatal(`uncaught: ${err.stack ?? err.message}`));
