/**
 * One socket to one job server, shared by the client and the worker: connecting (with a deadline), framing with
 * the pure codec (`../protocol/packet-codec.ts`), and batched writes.
 *
 * ```
 *  send() ──encodePacket──▶ [ out … ] ──flush (setImmediate): one socket.write──▶ socket
 *  socket ──data──▶ PacketParser ──\0RES frame──▶ events.packet(type, data)
 *                                 └─anything else─▶ destroy(GEARMAN_ERR_PROTOCOL) ──▶ events.close(error)
 * ```
 *
 * Every packet produced in one event loop turn goes out in one `socket.write` (small packets are joined into one
 * buffer; above 64 KiB the socket is corked instead, so a large payload is not copied a second time). Packets sent
 * before the socket is connected wait in the same buffer. A `write` returning `false` holds further flushes until
 * `drain`. Reconnection policy belongs to the owner: this class connects once and reports the close.
 *
 * @module
 */

import { connect as netConnect, type Socket } from 'node:net';
import { encodePacket, PACKET_NAME, type PacketArgument, PacketParser } from '../protocol/packet-codec.ts';
import { GearmanError } from './errors.ts';

/** What a {@link PacketConnection} reports to its owner. */
export interface PacketConnectionEvents {
  /** The socket is connected; queued packets are being written. */
  connect(): void;
  /** A response packet arrived. `data` is a view into a received chunk: copy what you keep. */
  packet(type: number, data: Buffer): void;
  /**
   * The socket closed (once). `established` tells whether it had connected: if not, nothing sent reached the
   * server (`error` is `GEARMAN_ERR_CONNECT`).
   */
  close(error: GearmanError, established: boolean): void;
}

/** Options of {@link PacketConnection}. */
export interface PacketConnectionOptions {
  readonly host: string;
  readonly port: number;
  /** `host:port`, for errors. */
  readonly name: string;
  readonly connectTimeout: number;
  /** TCP keep-alive initial delay in ms (0: off). */
  readonly keepAlive: number;
  /** Largest response accepted (a larger one is a protocol error). */
  readonly maxPacketSize: number;
  readonly events: PacketConnectionEvents;
}

/** Join packets into one buffer below this size; above it, cork and write them one by one. */
const JOIN_LIMIT = 64 * 1024;

/** One socket to one job server. */
export class PacketConnection {
  readonly #o: PacketConnectionOptions;
  readonly #socket: Socket;
  readonly #parser: PacketParser;
  #out: Buffer[] = [];
  #outBytes = 0;
  #flushScheduled = false;
  #needDrain = false;
  #established = false;
  #closed = false;
  #closeReason: GearmanError | undefined;
  #connectTimer: NodeJS.Timeout | undefined;
  #ended: Promise<void> | undefined;

  /** Opens the socket at once. */
  constructor(options: PacketConnectionOptions) {
    this.#o = options;
    this.#parser = new PacketParser({ maxPacketSize: options.maxPacketSize });
    const socket = netConnect({ host: options.host, port: options.port });
    this.#socket = socket;
    socket.setNoDelay(true);
    if (options.keepAlive > 0) socket.setKeepAlive(true, options.keepAlive);
    this.#connectTimer = setTimeout(() => {
      this.destroy(
        new GearmanError('GEARMAN_ERR_CONNECT', `connect timed out after ${options.connectTimeout} ms`, {
          server: options.name,
        }),
      );
    }, options.connectTimeout);
    socket.once('connect', this.#onConnect);
    socket.on('data', this.#onData);
    socket.on('drain', this.#onDrain);
    socket.on('error', (err) => {
      this.#closeReason ??= this.#established
        ? new GearmanError('GEARMAN_ERR_CONNECTION', `connection lost: ${err.message}`, {
            server: options.name,
            cause: err,
          })
        : new GearmanError('GEARMAN_ERR_CONNECT', `could not connect: ${err.message}`, {
            server: options.name,
            cause: err,
          });
    });
    socket.once('close', this.#onClose);
  }

  /** `host:port`. */
  get name(): string {
    return this.#o.name;
  }

  /** True once connected (and until closed). */
  get established(): boolean {
    return this.#established && !this.#closed;
  }

  /** True once the socket closed (or is being destroyed). */
  get closed(): boolean {
    return this.#closed || this.#socket.destroyed;
  }

  /** Queues one request packet; it is written with everything else sent in this event loop turn. */
  send(type: number, args: readonly PacketArgument[] = []): void {
    if (this.closed) return;
    const packet = encodePacket(type, args, 'REQ');
    this.#out.push(packet);
    this.#outBytes += packet.length;
    if (!this.#flushScheduled && this.#established) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
  }

  /** Keeps the process alive while this socket is open (the default) or not. */
  keepAlive(on: boolean): void {
    if (on) this.#socket.ref();
    else this.#socket.unref();
  }

  /** Writes what is queued, ends the socket and resolves once it closed (destroyed after `graceMs`). */
  end(graceMs = 1000): Promise<void> {
    this.#ended ??= new Promise<void>((resolve) => {
      if (this.#closed) {
        resolve();
        return;
      }
      this.#socket.ref();
      this.#socket.once('close', () => resolve());
      this.#closeReason ??= new GearmanError('GEARMAN_ERR_CLOSED', undefined, { server: this.#o.name });
      if (!this.#established) {
        this.#socket.destroy();
        return;
      }
      this.#flush();
      this.#socket.end();
      setTimeout(() => this.#socket.destroy(), graceMs).unref();
    });
    return this.#ended;
  }

  /** Closes the socket now; the owner's `close` event receives `error`. */
  destroy(error: GearmanError): void {
    if (this.#closed) return;
    this.#closeReason ??= error;
    this.#socket.destroy();
  }

  readonly #onConnect = (): void => {
    clearTimeout(this.#connectTimer);
    if (this.#socket.destroyed) return;
    this.#established = true;
    this.#o.events.connect();
    this.#flush();
  };

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    if (this.#needDrain || !this.#established || this.#closed || this.#out.length === 0) return;
    const out = this.#out;
    const bytes = this.#outBytes;
    this.#out = [];
    this.#outBytes = 0;
    const socket = this.#socket;
    let ok: boolean;
    if (out.length === 1) ok = socket.write(out[0]!);
    else if (bytes <= JOIN_LIMIT) ok = socket.write(Buffer.concat(out, bytes));
    else {
      socket.cork();
      ok = true;
      for (const packet of out) ok = socket.write(packet);
      socket.uncork();
    }
    if (!ok) this.#needDrain = true;
  };

  readonly #onDrain = (): void => {
    this.#needDrain = false;
    this.#flush();
  };

  readonly #onData = (chunk: Buffer): void => {
    if (this.#closed) return;
    this.#parser.push(chunk);
    for (let frame = this.#parser.next(); frame !== undefined; frame = this.#parser.next()) {
      if (frame.kind === 'packet' && frame.magic === 'RES') {
        this.#o.events.packet(frame.type, frame.data);
        if (this.#socket.destroyed) return;
        continue;
      }
      const what =
        frame.kind === 'packet'
          ? `a request packet (${PACKET_NAME[frame.type]})`
          : frame.kind === 'text'
            ? 'a text line'
            : `a bad frame (${frame.reason})`;
      this.destroy(new GearmanError('GEARMAN_ERR_PROTOCOL', `the server sent ${what}`, { server: this.#o.name }));
      return;
    }
  };

  readonly #onClose = (): void => {
    clearTimeout(this.#connectTimer);
    this.#closed = true;
    this.#out = [];
    this.#outBytes = 0;
    const established = this.#established;
    const error =
      this.#closeReason ??
      (established
        ? new GearmanError('GEARMAN_ERR_CONNECTION', 'connection closed by the server', { server: this.#o.name })
        : new GearmanError('GEARMAN_ERR_CONNECT', 'connection closed while connecting', { server: this.#o.name }));
    this.#o.events.close(error, established);
  };
}
