/**
 * memcached's binary protocol.
 *
 * @module
 */

import type { Connection } from '../server/connection.ts';

/** Consumes one binary request at `pos`; returns bytes consumed, 0 for an incomplete header, -n for a frame size. */
export function consumeBinary(conn: Connection, buf: Buffer, pos: number, end: number): number {
  void buf;
  void pos;
  void end;
  conn.destroy();
  return end - pos;
}
