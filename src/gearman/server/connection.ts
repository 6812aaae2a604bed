/**
 * One client or worker connection: framing (binary packets and admin lines on the same socket), output batching,
 * and backpressure.
 *
 * ```
 *  socket 'data' ─► PacketParser ─► frame ─► handlePacket / runAdminCommand ─► router ─► peer.send() on any connection
 *                                                                                         └─► #out, one write per tick
 * ```
 *
 * Backpressure: while a connection's socket does not take more (`write()` returned false) or a durable store is
 * acknowledging its job, the connection handles nothing more of its own input and stops reading, so a client that
 * does not read its replies cannot make the server buffer without bound. Output forwarded from *other* connections
 * (WORK_DATA of a job it waits for) cannot be refused that way without stalling the worker for everyone, so it is
 * bounded instead: a connection whose unsent output passes `maxOutputBuffer` is closed as not reading.
 *
 * @module
 */

import type { Socket } from 'node:net';
import type { Logger } from '../../net/logger.ts';
import { encodePacket, PacketParser, RESPONSE } from '../protocol/packet-codec.ts';
import { type AdminHost, runAdminCommand } from './admin-commands.ts';
import { type CommandContext, handlePacket } from './binary-commands.ts';
import type { JobRouter, Peer } from './job-router.ts';

/** What a connection needs from the server that owns it. */
export interface ConnectionHost extends AdminHost {
  readonly router: JobRouter;
  readonly log: Logger;
  /** `--exceptions`. */
  readonly exceptions: boolean;
  readonly maxPacketSize: number;
  readonly maxOutputBuffer: number;
  /** Open connections (removed on close). */
  readonly connections: Set<GearmanConnection>;
}

/** Frames handled per turn of the event loop before yielding to other connections. */
const FRAMES_PER_TURN = 256;
/** Output collected past this is written before the next frame is handled. */
const OUTPUT_HIGH_WATER = 64 * 1024;
/** Several buffers up to this size in total are joined into one write; larger batches are corked (one writev). */
const JOIN_LIMIT = 16 * 1024;

/** The socket's file descriptor, for `workers` (Node keeps it on the libuv handle). */
function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

function remoteHost(socket: Socket): string {
  const address = socket.remoteAddress ?? '-';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** A gearman connection (client, worker or admin: the same socket may be all three). */
export class GearmanConnection implements CommandContext {
  readonly socket: Socket;
  readonly peer: Peer;
  readonly router: JobRouter;
  readonly #host: ConnectionHost;
  readonly #parser: PacketParser;
  #out: Buffer[] = [];
  #outBytes = 0;
  #flushQueued = false;
  /** Inside {@link #process}: it flushes when done. */
  #processing = false;
  /** The socket refused more (`write()` returned false) until 'drain'. */
  #writeBlocked = false;
  /** An asynchronous reply (durable store) is pending. */
  #waiting = false;
  /** Yielded after {@link FRAMES_PER_TURN} frames; resumes on setImmediate. */
  #yielded = false;
  #ended = false;

  constructor(socket: Socket, host: ConnectionHost) {
    this.socket = socket;
    this.#host = host;
    this.router = host.router;
    this.#parser = new PacketParser({ maxPacketSize: host.maxPacketSize });
    this.peer = host.router.connect(remoteHost(socket), socketFd(socket), host.exceptions, (packet) =>
      this.#queue(packet),
    );
    host.connections.add(this);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#parser.push(chunk);
      this.#process();
    });
    socket.on('drain', () => {
      this.#writeBlocked = false;
      this.#process();
    });
    socket.on('error', () => {
      // ECONNRESET and friends: 'close' follows and cleans up.
    });
    socket.on('close', () => this.#closed());
  }

  /** CommandContext: hold further input until an asynchronous reply is queued. */
  wait(promise: Promise<void>): void {
    this.#waiting = true;
    promise
      .catch((err: unknown) => {
        this.#host.log.error('request failed', { err, conn: this.peer.id });
        this.end();
      })
      .finally(() => {
        this.#waiting = false;
        this.#process();
      });
  }

  /**
   * Graceful close: ends the connection once it neither runs a job nor waits for a running job's result (the
   * server calls it again until then, or destroys it at the deadline). Returns true when it ended.
   */
  endWhenIdle(): boolean {
    if (this.#ended) return true;
    if (this.#waiting || this.router.busy(this.peer)) return false;
    this.end();
    return true;
  }

  /** Writes what is queued, then closes the connection (its jobs are requeued, its submissions detached now). */
  end(): void {
    if (this.#ended) return;
    this.#flush();
    this.#ended = true;
    this.router.disconnect(this.peer);
    this.socket.end();
  }

  #closed(): void {
    this.#ended = true;
    this.router.disconnect(this.peer);
    this.#host.connections.delete(this);
  }

  #queue(packet: Buffer): void {
    if (this.#ended) return;
    this.#out.push(packet);
    this.#outBytes += packet.length;
    if (!this.#processing && !this.#flushQueued) {
      // Packets produced for this connection by others during one tick go out in one write.
      this.#flushQueued = true;
      queueMicrotask(() => {
        this.#flushQueued = false;
        this.#flush();
      });
    }
  }

  #flush(): void {
    if (this.#outBytes === 0 || this.#ended || this.socket.destroyed) return;
    const out = this.#out;
    const total = this.#outBytes;
    this.#out = [];
    this.#outBytes = 0;
    let ok: boolean;
    if (out.length === 1 || total <= JOIN_LIMIT) {
      ok = this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out, total));
    } else {
      this.socket.cork();
      for (const buf of out) this.socket.write(buf);
      this.socket.uncork();
      ok = this.socket.writableLength < this.socket.writableHighWaterMark;
    }
    if (!ok) this.#writeBlocked = true;
    if (this.socket.writableLength > this.#host.maxOutputBuffer) {
      this.#host.log.warn('closing a connection that does not read its output', {
        conn: this.peer.id,
        host: this.peer.host,
        pending: this.socket.writableLength,
      });
      this.#ended = true;
      this.router.disconnect(this.peer);
      this.socket.destroy();
    }
  }

  #process(): void {
    if (this.#processing) return;
    this.#processing = true;
    try {
      let budget = FRAMES_PER_TURN;
      while (!this.#ended && !this.#waiting && !this.#yielded) {
        if (this.#outBytes >= OUTPUT_HIGH_WATER) this.#flush();
        if (this.#writeBlocked) break;
        if (budget-- === 0) {
          this.#yielded = true;
          setImmediate(() => {
            this.#yielded = false;
            this.#process();
          });
          break;
        }
        const frame = this.#parser.next();
        if (frame === undefined) break;
        if (frame.kind === 'packet') {
          handlePacket(this, frame.magic, frame.type, frame.data);
        } else if (frame.kind === 'text') {
          this.#queue(Buffer.from(runAdminCommand(this.#host, frame.line), 'latin1'));
        } else {
          this.#protocolError(frame.reason, frame.header?.size);
        }
      }
    } finally {
      this.#processing = false;
    }
    this.#flush();
    this.#updateReading();
  }

  #protocolError(reason: string, size: number | undefined): void {
    this.#host.log.debug('closing connection on protocol error', { conn: this.peer.id, reason, size });
    if (reason === 'too-large') {
      this.#queue(encodePacket(RESPONSE.ERROR, ['DATA_TOO_LARGE', 'Packet exceeds the maximum size']));
    }
    // gearmand closes without a reply on a bad magic or packet type; what was answered before still goes out.
    this.end();
  }

  /** Reads from the socket only while this connection's input can be handled. */
  #updateReading(): void {
    if (this.#ended) return;
    if (this.#writeBlocked || this.#waiting || this.#yielded) this.socket.pause();
    else this.socket.resume();
  }
}
