/**
 * memcached's meta text commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`).
 *
 * @module
 */

import type { Connection } from '../server/connection.ts';

/** Runs one meta command line `buf[lineStart, lineEnd)`; returns bytes consumed (see `consumeText`). */
export function consumeMeta(
  conn: Connection,
  buf: Buffer,
  lineStart: number,
  lineEnd: number,
  next: number,
  end: number,
): number {
  void buf;
  void lineEnd;
  void end;
  conn.reply.line('ERROR');
  return next - lineStart;
}
