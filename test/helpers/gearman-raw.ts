/**
 * Test helpers for the gearman server: our server in-process on a free loopback port, and a raw protocol
 * connection that sends packets or admin lines and reads back frames.
 *
 * @module
 */

import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  encodePacket,
  type Frame,
  PACKET_NAME,
  PacketParser,
  REQUEST,
  RESPONSE,
} from '../../src/gearman/protocol/packet-codec.ts';
import { GearmanServer, type GearmanServerOptions } from '../../src/gearman/server/server.ts';
import { parseGearmandArgs } from '../../src/gearman/server/settings.ts';

export { REQUEST, RESPONSE };

/** Our server, started in-process on 127.0.0.1 with a free port. */
export interface OurGearman {
  readonly server: GearmanServer;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Starts our server. `options` is gearmand's command line (parsed as the CLI does, so a differential test gives
 * both servers the same flags) or server options. The handle prefix defaults to `H:test`.
 */
export async function startOurGearman(options: readonly string[] | GearmanServerOptions = {}): Promise<OurGearman> {
  const base = Array.isArray(options)
    ? parseGearmandArgs(['--job-handle-prefix', 'H:test', ...options]).settings
    : { jobHandlePrefix: 'H:test', ...(options as GearmanServerOptions) };
  const server = new GearmanServer({ ...base, port: 0, listen: ['127.0.0.1'] });
  const { port } = await server.listen();
  let closing: Promise<void> | undefined;
  return {
    server,
    port,
    close: () => {
      closing ??= server.close(1000);
      return closing;
    },
  };
}

/** A decoded response: a packet (type name and arguments as latin1 strings) or one admin text line. */
export type Reply =
  | { kind: 'packet'; type: number; name: string; data: Buffer; args: string[] }
  | { kind: 'text'; line: string };

/** How many arguments each response type is split into for {@link Reply.args}. */
const RESPONSE_ARGS: Record<number, number> = {
  [RESPONSE.JOB_CREATED]: 1,
  [RESPONSE.JOB_ASSIGN]: 3,
  [RESPONSE.JOB_ASSIGN_UNIQ]: 4,
  [RESPONSE.JOB_ASSIGN_ALL]: 5,
  [RESPONSE.WORK_STATUS]: 3,
  [RESPONSE.WORK_COMPLETE]: 2,
  [RESPONSE.WORK_FAIL]: 1,
  [RESPONSE.WORK_DATA]: 2,
  [RESPONSE.WORK_WARNING]: 2,
  [RESPONSE.WORK_EXCEPTION]: 2,
  [RESPONSE.ECHO_RES]: 1,
  [RESPONSE.ERROR]: 2,
  [RESPONSE.STATUS_RES]: 5,
  [RESPONSE.STATUS_RES_UNIQUE]: 6,
  [RESPONSE.OPTION_RES]: 1,
};

function splitAll(data: Buffer, count: number): string[] {
  if (count === 0) return [];
  const out: string[] = [];
  let at = 0;
  for (let i = 0; i < count - 1; i++) {
    const nul = data.indexOf(0, at);
    if (nul < 0) break;
    out.push(data.toString('latin1', at, nul));
    at = nul + 1;
  }
  out.push(data.toString('latin1', at));
  return out;
}

/** A raw connection to a gearman server. */
export class RawGearman {
  readonly socket: Socket;
  readonly #parser = new PacketParser({ maxLineLength: 1 << 30 });
  readonly #replies: Reply[] = [];
  #waiters: Array<() => void> = [];
  #closed = false;
  /** Every byte received. */
  received: Buffer[] = [];

  constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.received.push(chunk);
      this.#parser.push(chunk);
      for (let frame = this.#parser.next(); frame; frame = this.#parser.next()) this.#frame(frame);
      this.#wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
  }

  /** Connects to 127.0.0.1:`port`. */
  static connect(port: number): Promise<RawGearman> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => resolve(new RawGearman(socket)));
      socket.once('error', reject);
    });
  }

  /** True once the server closed the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  #frame(frame: Frame): void {
    if (frame.kind === 'packet') {
      const name = PACKET_NAME[frame.type] ?? String(frame.type);
      const data = Buffer.from(frame.data);
      this.#replies.push({
        kind: 'packet',
        type: frame.type,
        name,
        data,
        args: splitAll(data, RESPONSE_ARGS[frame.type] ?? 0),
      });
    } else if (frame.kind === 'text') {
      this.#replies.push({ kind: 'text', line: frame.line.toString('latin1') });
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Sends a request packet (`args` joined by NULs). */
  send(type: number, args: ReadonlyArray<string | Buffer> = []): this {
    this.socket.write(encodePacket(type, args, 'REQ'));
    return this;
  }

  /** Sends raw bytes. */
  write(bytes: Buffer | string): this {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
    return this;
  }

  /** Next reply, waiting up to `timeoutMs`. */
  async next(timeoutMs = 2000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    while (this.#replies.length === 0) {
      if (this.#closed) throw new Error('connection closed while waiting for a reply');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.#replies.shift()!;
  }

  /** Next reply, which must be a packet of `type`; returns its arguments. */
  async expect(type: number, timeoutMs = 2000): Promise<string[]> {
    const reply = await this.next(timeoutMs);
    if (reply.kind !== 'packet' || reply.type !== type) {
      throw new Error(`expected ${PACKET_NAME[type]}, got ${describe(reply)}`);
    }
    return reply.args;
  }

  /** Sends an admin line and returns the reply: one line, or (for lists) the lines before `.`. */
  async admin(line: string, list = false): Promise<string[] | string> {
    this.write(`${line}\r\n`);
    if (!list) {
      const reply = await this.next();
      if (reply.kind !== 'text') throw new Error(`expected a text line, got ${describe(reply)}`);
      return reply.line;
    }
    const lines: string[] = [];
    for (;;) {
      const reply = await this.next();
      if (reply.kind !== 'text') throw new Error(`expected a text line, got ${describe(reply)}`);
      if (reply.line === '.') return lines;
      lines.push(reply.line);
    }
  }

  /** An admin list reply (`status`, `workers`, `show jobs`, …). */
  async list(line: string): Promise<string[]> {
    return (await this.admin(line, true)) as string[];
  }

  /** The replies received so far (consumed). */
  pending(): Reply[] {
    return this.#replies.splice(0);
  }

  /** Waits until nothing arrives for `quietMs`; returns whatever replies came (and consumes them). */
  async drain(quietMs = 50): Promise<Reply[]> {
    let seen = -1;
    while (seen !== this.received.length) {
      seen = this.received.length;
      await sleep(quietMs);
    }
    return this.#replies.splice(0);
  }

  /** Asserts that no reply arrives within `ms`. */
  async expectNothing(ms = 100): Promise<void> {
    await sleep(ms);
    if (this.#replies.length > 0) throw new Error(`unexpected reply ${describe(this.#replies[0]!)}`);
  }

  /** Waits until the server closes the connection. */
  async waitClosed(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await sleep(10);
    }
  }

  /** Round trip: an ECHO_REQ answered means every earlier packet of this connection was handled. */
  async sync(): Promise<void> {
    const token = `sync-${Math.random()}`;
    this.send(REQUEST.ECHO_REQ, [token]);
    const skipped: Reply[] = [];
    for (;;) {
      const reply = await this.next();
      if (reply.kind === 'packet' && reply.type === RESPONSE.ECHO_RES && reply.args[0] === token) break;
      skipped.push(reply);
    }
    this.#replies.unshift(...skipped);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Closes `conn` and waits until the server has handled the close (its jobs requeued, its submissions detached). */
export async function closeAndWait(server: GearmanServer, conn: RawGearman): Promise<void> {
  const port = conn.socket.localPort;
  conn.close();
  await eventually(() => ![...server.connections].some((c) => c.socket.remotePort === port), 'server saw the close');
}

/** Polls `check` until it holds (or throws after `timeoutMs`). */
export async function eventually(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(2);
  }
}

/** `JOB_CREATED H:test:1` style description of a reply (for messages). */
export function describe(reply: Reply): string {
  if (reply.kind === 'text') return `text ${JSON.stringify(reply.line)}`;
  return `${reply.name} ${JSON.stringify(reply.args)}`;
}

/** Submits a job and returns its handle. */
export async function submit(
  conn: RawGearman,
  type: number,
  fn: string,
  unique: string,
  data: string | Buffer,
): Promise<string> {
  conn.send(type, [fn, unique, data]);
  const [handle] = await conn.expect(RESPONSE.JOB_CREATED);
  return handle!;
}

/** A worker connection that can do `functions`. */
export async function worker(port: number, ...functions: string[]): Promise<RawGearman> {
  const w = await RawGearman.connect(port);
  for (const fn of functions) w.send(REQUEST.CAN_DO, [fn]);
  await w.sync();
  return w;
}
