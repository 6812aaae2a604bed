/**
 * One client connection: input framing, protocol choice, reply batching and backpressure.
 *
 * The protocol handlers are pure over `Buffer`s: given the bytes from `pos`, they either consume a whole command and
 * return how many bytes it took, or return 0 ("not complete yet"), or a negative number `-n` meaning "a frame of
 * `n` bytes starts at `pos`" so the connection can collect exactly that many bytes without re-concatenating.
 *
 * @module
 */

import type { Socket } from 'node:net';
import type { Logger } from '../../net/logger.ts';
import { consumeBinary } from '../protocol/binary.ts';
import { ReplyBuffer } from '../protocol/reply-buffer.ts';
import { consumeText } from '../protocol/text.ts';
import { Tokens } from '../protocol/tokenize.ts';
import type { ItemStore } from '../store/item-store.ts';
import { TS } from '../store/thread-stats.ts';
import type { MemcachedSettings } from './settings.ts';

/** What a connection needs from the server that owns it. */
export interface ConnectionHost {
  readonly settings: MemcachedSettings;
  readonly store: ItemStore;
  /** Verbosity set by the `verbosity` command. */
  verbosity: number;
  /** Renders a `stats` group as name/value pairs, or undefined for an unknown group. */
  statsGroup(group: string, conn: Connection | undefined): Array<[string, string]> | undefined;
  /** `stats reset`. */
  resetStats(): void;
  /** `shutdown [graceful]` (only when enabled). */
  shutdown(graceful: boolean): void;
  /** SASL PLAIN check. */
  checkPassword(user: string, password: string): boolean;
  /** Every open connection (for `stats conns`). */
  readonly connections: Set<Connection>;
  /** Version string reported by `version`. */
  readonly version: string;
  /** Where `-vv` traces go (gated by {@link verbosity}). */
  readonly log: Logger;
}

/** Protocol the connection speaks (decided by the first byte under `-B auto`). */
export type WireProtocol = 'unknown' | 'ascii' | 'binary';

/** A swallowed value (after `SERVER_ERROR object too large for cache`) or a pending storage frame. */
const NO_FRAME = -1;
/** Replies buffered past this are written before the next command, and processing stops while the socket is full. */
const OUTPUT_HIGH_WATER = 256 * 1024;

/**
 * State and I/O of one client connection. The protocol modules read and write its public fields.
 */
export class Connection {
  readonly socket: Socket;
  readonly host: ConnectionHost;
  readonly store: ItemStore;
  readonly stats: Float64Array;
  readonly reply = new ReplyBuffer();
  readonly tokens = new Tokens();
  protocol: WireProtocol;
  /** Suppress the reply of the command being processed (text `noreply`). */
  noreply = false;
  /** Bytes still to be skipped (a refused value's data). */
  swallow = 0;
  /** Binary protocol: SASL done (or not required). */
  authenticated: boolean;
  /** Close once the pending replies are written. */
  closing = false;
  /** Connection state for `stats conns`. */
  state = 'conn_new_cmd';
  readonly openedAt = Date.now();
  /** Number of this connection in its thread (for traces). */
  readonly id: number;
  lastCommandAt = Date.now();
  /** Input not yet consumed: an incomplete command, or (when {@link #parked}) commands not yet looked at. */
  #pending: Buffer | null = null;
  /** `#pending` holds whole commands whose processing was suspended (-R yield, or output backpressure). */
  #parked = false;
  /** A value frame of known size being collected. */
  #frame: Buffer | null = null;
  #frameFill = NO_FRAME;
  /** The last `socket.write` returned false: produce nothing more until `'drain'`. */
  #writeBlocked = false;
  #destroyed = false;

  constructor(socket: Socket, host: ConnectionHost, stats: Float64Array, id = 0) {
    this.socket = socket;
    this.id = id;
    this.host = host;
    this.store = host.store;
    this.stats = stats;
    const bp = host.settings.bindingProtocol;
    this.protocol = bp === 'auto' ? 'unknown' : bp;
    this.authenticated = !host.settings.sasl;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.#onDrain());
    socket.on('error', () => {
      // ECONNRESET and friends: the 'close' event follows and cleans up.
    });
  }

  /** Ends the connection after the replies produced so far are written. */
  closeAfterWrite(): void {
    this.closing = true;
  }

  /** Drops the connection now (protocol violation). */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.flush();
    this.socket.end();
    this.socket.destroySoon?.();
  }

  #onData(chunk: Buffer): void {
    if (this.#destroyed) return;
    this.stats[TS.bytes_read]! += chunk.length;
    this.lastCommandAt = Date.now();
    this.store.tick();
    let buf = chunk;
    // A frame of known size being collected: copy into it, no concatenation.
    if (this.#frame !== null) {
      const frame = this.#frame;
      const n = Math.min(frame.length - this.#frameFill, chunk.length);
      chunk.copy(frame, this.#frameFill, 0, n);
      this.#frameFill += n;
      if (this.#frameFill < frame.length) return;
      this.#frame = null;
      this.#frameFill = NO_FRAME;
      buf = n < chunk.length ? Buffer.concat([frame, chunk.subarray(n)]) : frame;
    } else if (this.#pending !== null) {
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = null;
      this.#parked = false;
    }
    this.#process(buf);
    this.flush();
    this.#updateReading();
  }

  /**
   * Consumes commands from `buf`. Stops early, parking the rest, after `-R` commands (memcached's `conn_yields`)
   * or when the replies produced so far could not all be written (backpressure: nothing more is produced for a
   * client that does not read, so its output stays bounded by {@link OUTPUT_HIGH_WATER} plus one command's reply).
   */
  #process(buf: Buffer): void {
    let pos = 0;
    const end = buf.length;
    let budget = this.host.settings.reqsPerEvent;
    while (pos < end && !this.#destroyed && !this.closing) {
      if (budget-- <= 0) {
        this.stats[TS.conn_yields]!++;
        this.#park(buf, pos);
        setImmediate(() => this.#continue());
        return;
      }
      if (this.reply.length >= OUTPUT_HIGH_WATER) {
        this.flush();
        if (this.#writeBlocked) {
          this.#park(buf, pos);
          return;
        }
      }
      if (this.swallow > 0) {
        const n = Math.min(this.swallow, end - pos);
        this.swallow -= n;
        pos += n;
        continue;
      }
      if (this.protocol === 'unknown') this.protocol = buf[pos] === 0x80 ? 'binary' : 'ascii';
      if (this.host.verbosity >= 2) this.#trace(buf, pos, end);
      const r = this.protocol === 'binary' ? consumeBinary(this, buf, pos, end) : consumeText(this, buf, pos, end);
      if (r > 0) {
        pos += r;
        continue;
      }
      if (r < 0 && -r > end - pos) {
        // Collect exactly one frame of -r bytes.
        const frame = Buffer.allocUnsafe(-r);
        buf.copy(frame, 0, pos, end);
        this.#frame = frame;
        this.#frameFill = end - pos;
        return;
      }
      // Incomplete line or header: keep the tail for the next chunk.
      this.#pending = Buffer.from(buf.subarray(pos, end));
      return;
    }
  }

  /** memcached's `-vv`: one debug line per command received (the text line, or the binary opcode). */
  #trace(buf: Buffer, pos: number, end: number): void {
    if (this.protocol === 'binary') {
      if (end - pos >= 2) this.host.log.debug('command', { conn: this.id, opcode: buf[pos + 1] });
      return;
    }
    const nl = buf.indexOf(10, pos);
    if (nl < 0 || nl >= end) return;
    this.host.log.debug('command', {
      conn: this.id,
      line: buf.toString('latin1', pos, Math.min(nl, pos + 200)).trimEnd(),
    });
  }

  #park(buf: Buffer, pos: number): void {
    this.#pending = Buffer.from(buf.subarray(pos));
    this.#parked = true;
  }

  /** Resumes parked input once the event loop turned (-R) or the socket drained. */
  #continue(): void {
    if (this.#destroyed || this.#writeBlocked) return;
    if (this.#parked) {
      const parked = this.#pending!;
      this.#pending = null;
      this.#parked = false;
      this.store.tick();
      this.#process(parked);
      this.flush();
    }
    this.#updateReading();
  }

  /** Reads from the socket only while there is nothing parked and the client keeps up with its replies. */
  #updateReading(): void {
    if (this.#destroyed) return;
    if (this.#writeBlocked || this.#parked) this.socket.pause();
    else this.socket.resume();
  }

  /** Writes the replies collected so far in one `socket.write`. */
  flush(): void {
    if (this.reply.length > 0 && !this.socket.destroyed) {
      const out = this.reply.take();
      this.stats[TS.bytes_written]! += out.length;
      const ok = this.socket.write(out);
      // The write completed synchronously when nothing is queued: the buffer may be reused.
      if (this.socket.writableLength !== 0) this.reply.detach();
      if (!ok) this.#writeBlocked = true;
    }
    if (this.closing && !this.#destroyed) {
      this.#destroyed = true;
      this.socket.end();
    }
  }

  #onDrain(): void {
    this.#writeBlocked = false;
    this.#continue();
  }
}
