/**
 * Protocol limits and tiny reply helpers shared by the text and meta protocols (a leaf module: it imports nothing
 * that imports it, so the protocol modules can load in any order).
 *
 * @module
 */

import type { ReplyBuffer } from './reply-buffer.ts';

/** memcached's `KEY_MAX_LENGTH`. */
export const KEY_MAX_LENGTH = 250;
/** Appends the decimal digits of a non-negative integer (< 2^53). */
export function writeUint(reply: ReplyBuffer, n: number): void {
  if (n < 10) {
    const at = reply.reserve(1);
    reply.buf[at] = 0x30 + n;
    return;
  }
  reply.ascii(String(n));
}
