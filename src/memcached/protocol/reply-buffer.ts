/**
 * An output buffer that collects every reply produced while one input chunk is processed, so that a batch of
 * pipelined replies leaves in a single `socket.write`.
 *
 * @module
 */

const INITIAL = 16 * 1024;

/** A growable byte buffer with cheap ASCII appends. */
export class ReplyBuffer {
  /** Backing store; valid bytes are `[0, length)`. */
  buf: Buffer = Buffer.allocUnsafe(INITIAL);
  /** Number of valid bytes. */
  length = 0;

  /** Makes room for `n` more bytes and returns the offset to write them at. */
  reserve(n: number): number {
    const need = this.length + n;
    if (need > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    const at = this.length;
    this.length = need;
    return at;
  }

  /** Appends an ASCII/latin1 string. */
  ascii(s: string): void {
    const at = this.reserve(s.length);
    this.buf.write(s, at, s.length, 'latin1');
  }

  /** Appends an ASCII string followed by CRLF. */
  line(s: string): void {
    const at = this.reserve(s.length + 2);
    this.buf.write(s, at, s.length, 'latin1');
    this.buf[at + s.length] = 13;
    this.buf[at + s.length + 1] = 10;
  }

  /** Appends bytes. */
  bytes(src: Uint8Array, start = 0, end = src.length): void {
    const at = this.reserve(end - start);
    this.buf.set(src.subarray(start, end), at);
  }

  /** Appends CRLF. */
  crlf(): void {
    const at = this.reserve(2);
    this.buf[at] = 13;
    this.buf[at + 1] = 10;
  }

  /**
   * Hands the collected bytes out (for one `socket.write`) and starts over. `reuse` keeps the backing store when
   * the caller knows the bytes were already copied away (the write completed synchronously).
   */
  take(): Buffer {
    const out = this.buf.subarray(0, this.length);
    this.length = 0;
    return out;
  }

  /** After {@link take}: the taken bytes are still referenced by a pending write, so use fresh memory. */
  detach(): void {
    this.buf = Buffer.allocUnsafe(INITIAL);
  }

  /** Drops everything not yet taken from `at` on (memcached resets a response when an error replaces it). */
  truncate(at: number): void {
    this.length = at;
  }
}
