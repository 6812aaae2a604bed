/**
 * Differential proof: the same packet transcripts go to the real gearmand 1.1.20 and to our server (same flags,
 * same `--job-handle-prefix H:test`, so handles match), and every byte that comes back must be equal, after masking
 * only what legitimately differs:
 *
 * - `getpid` → `OK <pid>`; `version` → `OK <version>` (`1.1.20+ds` vs `1.1.20`);
 * - `workers`: the file descriptor column, and the line order (gearmand lists connections per I/O thread).
 *
 * Everything else is compared as is: handles, error codes and texts, admin replies with their `\r\n`/`\n` endings,
 * and the order of `status`, `prioritystatus`, `show jobs` and `show unique jobs` (gearmand's hash order).
 *
 * After each step every open connection does an ECHO round trip, so each step's replies are complete and attributed
 * to the step deterministically. Transcripts avoid the spots where we deliberately differ (see job-router.ts).
 */

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodePacket, PACKET_NAME, REQUEST as Q, RESPONSE } from '../src/gearman/protocol/packet-codec.ts';
import { startOurGearman } from './helpers/gearman-raw.ts';
import { GEARMAND_BIN, requireTool, startRealGearmand } from './helpers/gearman-real.ts';

type Step =
  | { op: 'send'; c: string; bytes: Buffer }
  | { op: 'close'; c: string }
  | { op: 'wait'; ms: number }
  | { op: 'closes'; c: string; bytes: Buffer };

/** A request packet on connection `c`. */
const P = (c: string, type: number, ...args: string[]): Step => ({
  op: 'send',
  c,
  bytes: encodePacket(type, args, 'REQ'),
});
/** An admin line (give the line ending). */
const T = (c: string, line: string): Step => ({ op: 'send', c, bytes: Buffer.from(line, 'latin1') });
/** Raw bytes. */
const R = (c: string, bytes: Buffer): Step => ({ op: 'send', c, bytes });
const CLOSE = (c: string): Step => ({ op: 'close', c });
const WAIT = (ms: number): Step => ({ op: 'wait', ms });
/** Raw bytes after which the server must close the connection. */
const KILLS = (c: string, bytes: Buffer): Step => ({ op: 'closes', c, bytes });

interface Conn {
  name: string;
  socket: Socket;
  data: Buffer;
  read: number;
  closed: boolean;
}

function open(port: number, name: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const conn: Conn = { name, socket, data: Buffer.alloc(0), read: 0, closed: false };
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      conn.data = Buffer.concat([conn.data, d]);
    });
    socket.on('close', () => {
      conn.closed = true;
    });
    socket.on('error', () => {});
    socket.once('connect', () => resolve(conn));
    socket.once('error', reject);
  });
}

let syncCounter = 0;

/** ECHO round trip; returns the bytes received since the last sync (the echo itself removed). */
async function sync(conn: Conn): Promise<Buffer> {
  const token = `\0sync-${++syncCounter}`;
  const marker = encodePacket(RESPONSE.ECHO_RES, [token]);
  conn.socket.write(encodePacket(Q.ECHO_REQ, [token], 'REQ'));
  const deadline = Date.now() + 3000;
  for (;;) {
    const at = conn.data.indexOf(marker, conn.read);
    if (at >= 0) {
      const out = conn.data.subarray(conn.read, at);
      conn.read = at + marker.length;
      return out;
    }
    if (conn.closed) throw new Error(`[${conn.name}] closed while syncing`);
    if (Date.now() > deadline) throw new Error(`[${conn.name}] no echo; got ${render(conn.data.subarray(conn.read))}`);
    await sleep(2);
  }
}

/**
 * How many connections the server lists in `workers`, asked on `conn`. The reply is cut out of the stream, and
 * packets that arrive before it (results of the close being watched) stay in the transcript.
 */
async function connectionCount(conn: Conn): Promise<number> {
  conn.socket.write('workers\n');
  const deadline = Date.now() + 3000;
  for (;;) {
    // Skip whole packets to where the text reply starts.
    let at = conn.read;
    while (at + 12 <= conn.data.length && conn.data[at] === 0) at += 12 + conn.data.readUInt32BE(at + 8);
    if (at < conn.data.length && conn.data[at] !== 0) {
      const text = conn.data.toString('latin1', at);
      const end = text.startsWith('.\n') ? 0 : text.indexOf('\n.\n') + 1;
      if (end > 0 || text.startsWith('.\n')) {
        const length = end + 2;
        conn.data = Buffer.concat([conn.data.subarray(0, at), conn.data.subarray(at + length)]);
        return text.slice(0, end).split('\n').length - 1;
      }
    }
    if (Date.now() > deadline) throw new Error(`[${conn.name}] no workers reply`);
    await sleep(2);
  }
}

/** Readable form of a reply stream: one entry per packet, one per run of admin text. */
function render(buf: Buffer): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < buf.length) {
    if (buf[at] === 0) {
      if (buf.length - at < 12) {
        out.push(`PARTIAL ${JSON.stringify(buf.toString('latin1', at))}`);
        break;
      }
      const magic = buf.toString('latin1', at + 1, at + 4);
      const type = buf.readUInt32BE(at + 4);
      const size = buf.readUInt32BE(at + 8);
      const data = buf.toString('latin1', at + 12, at + 12 + size);
      out.push(`${magic} ${PACKET_NAME[type] ?? type} ${JSON.stringify(data)}`);
      at += 12 + size;
      continue;
    }
    // Text: whole lines until a line that starts with \0 (a packet).
    let end = at;
    while (end < buf.length && buf[end] !== 0) {
      const nl = buf.indexOf(10, end);
      end = nl < 0 ? buf.length : nl + 1;
    }
    out.push(`TEXT ${mask(buf.toString('latin1', at, end))}`);
    at = end;
  }
  return out;
}

/** The masks: pid, version, `workers` fds and line order. */
function mask(text: string): string {
  let t = text.replace(/^OK \d+$/gm, 'OK <pid>').replace(/^OK 1\.1\.20(\+ds)?$/gm, 'OK <version>');
  const lines = t.split('\n');
  if (lines.length > 2 && lines.slice(0, -2).every((l) => /^\d+ \S+ \S* :/.test(l))) {
    const body = lines
      .slice(0, -2)
      .map((l) => l.replace(/^\d+ /, '<fd> '))
      .sort();
    t = [...body, ...lines.slice(-2)].join('\n');
  }
  return JSON.stringify(t);
}

/** Runs a script against a server; returns the transcript (one line per reply, with step and connection). */
async function play(port: number, steps: readonly Step[]): Promise<string[]> {
  const conns = new Map<string, Conn>();
  const transcript: string[] = [];
  const get = async (name: string) => {
    let c = conns.get(name);
    if (c === undefined) {
      c = await open(port, name);
      conns.set(name, c);
    }
    return c;
  };
  try {
    for (const [i, step] of steps.entries()) {
      let actor: string | undefined;
      if (step.op === 'send') {
        (await get(step.c)).socket.write(step.bytes);
        actor = step.c;
      } else if (step.op === 'close') {
        const closing = conns.get(step.c)!;
        conns.delete(step.c);
        // Another connection watches the server see the close (one is opened if there is none, on both servers).
        const witness = conns.values().next().value ?? (await get('~'));
        const before = await connectionCount(witness);
        closing.socket.destroy();
        // Wait until the server has seen the close (gearmand handles it on another thread).
        while ((await connectionCount(witness)) !== before - 1) await sleep(5);
      } else if (step.op === 'wait') {
        await sleep(step.ms);
      } else {
        const c = await get(step.c);
        c.socket.write(step.bytes);
        const deadline = Date.now() + 3000;
        while (!c.closed && Date.now() < deadline) await sleep(5);
        const rest = render(c.data.subarray(c.read));
        transcript.push(
          ...rest.map((r) => `${i} [${c.name}] ${r}`),
          `${i} [${c.name}] ${c.closed ? 'CLOSED' : 'OPEN'}`,
        );
        conns.delete(step.c);
        c.socket.destroy();
      }
      const order = [...conns.values()].sort((a, b) => (a.name === actor ? -1 : b.name === actor ? 1 : 0));
      for (const c of order) {
        for (const r of render(await sync(c))) transcript.push(`${i} [${c.name}] ${r}`);
      }
    }
  } finally {
    for (const c of conns.values()) c.socket.destroy();
  }
  return transcript;
}

async function compare(steps: readonly Step[], flags: readonly string[] = []): Promise<void> {
  const [real, ours] = await Promise.all([startRealGearmand(flags), startOurGearman(flags)]);
  try {
    const [expected, actual] = await Promise.all([play(real.port, steps), play(ours.port, steps)]);
    assert.deepEqual(actual, expected);
  } finally {
    await Promise.all([real.stop(), ours.close()]);
  }
}

const future = () => String(Math.floor(Date.now() / 1000) + 3600);

const SCRIPTS: Record<string, { steps: () => Step[]; flags?: string[] }> = {
  'PROTOCOL example: worker sleeps, client submits, NOOP, assign, complete, status': {
    steps: () => [
      P('w', Q.CAN_DO, 'reverse'),
      P('w', Q.GRAB_JOB),
      P('w', Q.PRE_SLEEP),
      P('c', Q.SUBMIT_JOB, 'reverse', '', 'test'),
      P('w', Q.GRAB_JOB),
      P('w', Q.WORK_COMPLETE, 'H:test:1', 'tset'),
      P('c', Q.GET_STATUS, 'H:test:1'),
      P('w', Q.GRAB_JOB_UNIQ),
    ],
  },
  'coalescing: three submissions (one background, one with exceptions) share one execution': {
    steps: () => [
      P('c', Q.SUBMIT_JOB, 'g', 'u1', 'd1'),
      P('c', Q.SUBMIT_JOB, 'g', 'u1', 'd2'),
      P('c', Q.SUBMIT_JOB_BG, 'g', 'u1', 'd3'),
      P('c2', Q.OPTION_REQ, 'exceptions'),
      P('c2', Q.SUBMIT_JOB_HIGH, 'g', 'u1', 'd4'),
      P('w', Q.CAN_DO, 'g'),
      P('w', Q.GRAB_JOB_UNIQ),
      P('w', Q.WORK_STATUS, 'H:test:1', '1', '2'),
      P('w', Q.WORK_DATA, 'H:test:1', 'part\0with nul'),
      P('w', Q.WORK_WARNING, 'H:test:1', 'warn'),
      P('c3', Q.SUBMIT_JOB_LOW, 'g', 'u1', 'late'),
      P('w', Q.GET_STATUS_UNIQUE, 'u1'),
      P('w', Q.GET_STATUS, 'H:test:1'),
      P('w', Q.WORK_EXCEPTION, 'H:test:1', 'boom'),
      T('w', 'status\n'),
      P('w', Q.GET_STATUS_UNIQUE, 'u1'),
    ],
  },
  'unique ids: "-" keys by payload, empty never coalesces, functions are separate; show (unique) jobs order': {
    steps: () => [
      P('c', Q.SUBMIT_JOB_BG, 'f', '-', 'same'),
      P('c', Q.SUBMIT_JOB_BG, 'f', '-', 'same'),
      P('c', Q.SUBMIT_JOB_BG, 'f', '-', ''),
      P('c', Q.SUBMIT_JOB_BG, 'f', '-', ''),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', 'x'),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', 'x'),
      P('c', Q.SUBMIT_JOB_BG, 'f', 'k', 'x'),
      P('c', Q.SUBMIT_JOB_BG, 'f2', 'k', 'x'),
      P('c', Q.SUBMIT_JOB, 'f', 'k', 'fg onto bg'),
      P('c', Q.SUBMIT_JOB, 'f3', 'fg', 'x'),
      P('c', Q.SUBMIT_JOB_BG, 'f3', 'fg', 'bg onto fg'),
      ...Array.from({ length: 12 }, (_, i) => P('c', Q.SUBMIT_JOB_BG, `fn${i}`, `u${i * 7}`, 'x')),
      T('c', 'show jobs\r\n'),
      T('c', 'show unique jobs\r\n'),
      T('c', 'status\r\n'),
      T('c', 'prioritystatus\r\n'),
      P('c', Q.GET_STATUS_UNIQUE, '-'),
      P('c', Q.GET_STATUS_UNIQUE, 'k'),
      P('c', Q.GET_STATUS_UNIQUE, ''),
      P('w', Q.CAN_DO, 'f'),
      ...Array.from({ length: 6 }, () => P('w', Q.GRAB_JOB_UNIQ)),
    ],
  },
  'priorities: HIGH, NORMAL, LOW, FIFO within each; per-function order for a multi-function worker': {
    steps: () => [
      P('c', Q.SUBMIT_JOB_LOW_BG, 'p', 'l1', 'L1'),
      P('c', Q.SUBMIT_JOB_BG, 'p', 'n1', 'N1'),
      P('c', Q.SUBMIT_JOB_HIGH_BG, 'p', 'h1', 'H1'),
      P('c', Q.SUBMIT_JOB_LOW, 'p', 'l2', 'L2'),
      P('c', Q.SUBMIT_JOB, 'p', 'n2', 'N2'),
      P('c', Q.SUBMIT_JOB_HIGH, 'p', 'h2', 'H2'),
      P('c', Q.SUBMIT_JOB_HIGH_BG, 'q', 'qh', 'QH'),
      T('c', 'prioritystatus\n'),
      P('w', Q.CAN_DO, 'q'),
      P('w', Q.CAN_DO, 'p'),
      ...Array.from({ length: 8 }, () => P('w', Q.GRAB_JOB)),
      T('c', 'status\n'),
      T('c', 'prioritystatus\n'),
    ],
  },
  'reduce and epoch jobs: GRAB_JOB_ALL returns the reducer, past epochs run, future ones wait': {
    steps: () => [
      P('c', Q.SUBMIT_REDUCE_JOB, 'r', 'u', 'red', 'agg', 'data'),
      P('c', Q.SUBMIT_REDUCE_JOB_BACKGROUND, 'r', 'u2', 'red2', 'agg', 'data2'),
      P('c', Q.SUBMIT_REDUCE_JOB, 'r', '', 'red3', 'agg3', 'data3'),
      P('c', Q.SUBMIT_JOB_EPOCH, 'r', 'ep', future(), 'later'),
      P('c', Q.SUBMIT_JOB_EPOCH, 'r', 'ep2', '0', 'now'),
      P('c', Q.SUBMIT_JOB_EPOCH, 'r', 'ep3', '12345', 'past'),
      P('c', Q.SUBMIT_JOB_EPOCH, 'r', 'ep4', 'garbage', 'zero'),
      P('c', Q.SUBMIT_JOB_BG, 'r', 'plain', 'plain'),
      T('c', 'show jobs\n'),
      P('w', Q.CAN_DO, 'r'),
      ...Array.from({ length: 9 }, () => P('w', Q.GRAB_JOB_ALL)),
      T('c', 'status\n'),
    ],
  },
  'errors: magic, unexpected types, unknown handles, oversize unique and handle, options, echo': {
    steps: () => [
      P('a', Q.ECHO_REQ, 'hello\0world'),
      R('a', Buffer.from('\0RES\0\0\0\x10\0\0\0\x01x', 'latin1')),
      P('a', 5),
      P('a', 6),
      P('a', 8, 'H:x:1'),
      P('a', Q.ALL_YOURS),
      P('a', Q.SUBMIT_JOB_SCHED, 'f', 'u', '1', '2', '3', '4', '5', 'data'),
      P('a', 42, 'u', '0', '0', '0', '0', '0'),
      P('a', Q.OPTION_REQ, 'foo'),
      P('a', Q.OPTION_REQ, 'EXCEPTIONS'),
      P('a', Q.GET_STATUS, 'H:nope:1'),
      P('a', Q.GET_STATUS_UNIQUE, 'nope'),
      P('a', Q.WORK_FAIL, 'H:x:1'),
      P('a', Q.WORK_COMPLETE, 'H:x:1', 'r'),
      P('a', Q.WORK_DATA, 'H:x:1', 'r'),
      P('a', Q.WORK_WARNING, 'H:x:1', 'r'),
      P('a', Q.WORK_EXCEPTION, 'H:x:1', 'r'),
      P('a', Q.WORK_STATUS, 'H:x:1', '1', '2'),
      P('a', Q.WORK_FAIL, 'x'.repeat(70)),
      P('a', Q.SUBMIT_JOB, 'f', 'u'.repeat(65), 'd'),
      P('a', Q.SUBMIT_JOB_BG, 'f', 'u'.repeat(63), 'd'),
      P('a', Q.GET_STATUS_UNIQUE, 'u'.repeat(63)),
      P('a', Q.SUBMIT_REDUCE_JOB, 'f', 'u', 'r'.repeat(65), 'agg', 'd'),
      P('a', Q.SET_CLIENT_ID, 'x'.repeat(200)),
      P('a', Q.CAN_DO, 'f'),
      P('a', Q.CAN_DO, 'f'),
      P('a', Q.CAN_DO_TIMEOUT, 'g', '5000'),
      T('a', 'workers\n'),
      T('a', 'status\n'),
      P('a', Q.GRAB_JOB),
      P('a', Q.WORK_FAIL, 'H:test:1'),
      P('a', Q.RESET_ABILITIES),
      T('a', 'status\n'),
      P('a', Q.GRAB_JOB),
    ],
  },
  'admin commands, arguments and line endings': {
    steps: () => [
      T('a', 'foo\r\n'),
      T('a', '\r\n'),
      T('a', '\n'),
      T('a', ' status\n'),
      T('a', 'status \n'),
      T('a', 'show jobs \n'),
      T('a', 'show\n'),
      T('a', 'show foo\n'),
      T('a', 'show unique\n'),
      T('a', 'cancel\n'),
      T('a', 'cancel job\n'),
      T('a', 'cancel foo bar\n'),
      T('a', 'cancel job H:x:1\n'),
      T('a', 'create function abcd\r\n'),
      T('a', 'create   function   spaced\r\n'),
      T('a', 'CREATE FUNCTION Mixed\r\n'),
      T('a', 'create\n'),
      T('a', 'create function\n'),
      T('a', 'status\r\n'),
      T('a', 'STATUS\n'),
      T('a', 'maxqueue\n'),
      T('a', 'maxqueue abcd\n'),
      T('a', 'maxqueue abcd 10 20 30\n'),
      T('a', 'drop function nosuch\n'),
      T('a', 'drop function ABCD\n'),
      T('a', 'drop\n'),
      T('a', 'drop function\n'),
      T('a', 'verbose\n'),
      T('a', 'version\n'),
      T('a', 'getpid\n'),
      T('a', 'shutdown\n'),
      T('a', 'shutdown graceful\n'),
      T('a', 'prioritystatus\n'),
      T('a', 'workers\n'),
      P('w', Q.CAN_DO, 'Mixed'),
      P('w', Q.SET_CLIENT_ID, 'my-worker'),
      T('a', 'workers\n'),
      T('a', 'drop function mixed\n'),
      P('a', Q.ECHO_REQ, 'binary after text'),
      T('a', 'status\nversion\n'),
    ],
  },
  'worker death requeues its jobs (last assigned first); -j 2 fails the job on the second death': {
    flags: ['-j', '2'],
    steps: () => [
      P('c', Q.SUBMIT_JOB, 'f', 'a', '1'),
      P('c', Q.SUBMIT_JOB_BG, 'f', 'b', '2'),
      P('c', Q.SUBMIT_JOB_BG, 'f', 'c', '3'),
      P('w1', Q.CAN_DO, 'f'),
      P('w1', Q.GRAB_JOB),
      P('w1', Q.GRAB_JOB),
      P('w1', Q.WORK_STATUS, 'H:test:1', '5', '10'),
      P('c', Q.GET_STATUS, 'H:test:1'),
      CLOSE('w1'),
      T('c', 'show jobs\n'),
      P('c', Q.GET_STATUS, 'H:test:1'),
      P('c', Q.GET_STATUS, 'H:test:2'),
      P('w2', Q.CAN_DO, 'f'),
      P('w2', Q.GRAB_JOB),
      P('w2', Q.GRAB_JOB),
      P('w2', Q.GRAB_JOB),
      P('w2', Q.WORK_COMPLETE, 'H:test:3', 'done'),
      CLOSE('w2'),
      T('c', 'show jobs\n'),
      T('c', 'status\n'),
    ],
  },
  'abandoned foreground jobs are discarded when they reach a worker': {
    steps: () => [
      P('c', Q.SUBMIT_JOB, 'f', 'a', '1'),
      P('c', Q.SUBMIT_JOB, 'f', 'b', '2'),
      P('c', Q.SUBMIT_JOB_LOW, 'f', 'c', '3'),
      CLOSE('c'),
      P('a', Q.SUBMIT_JOB_BG, 'f', 'd', '4'),
      T('a', 'show jobs\n'),
      T('a', 'status\n'),
      P('w', Q.CAN_DO, 'f'),
      P('w', Q.PRE_SLEEP),
      T('a', 'show jobs\n'),
      P('w', Q.GRAB_JOB),
      P('w', Q.GRAB_JOB),
      T('a', 'status\n'),
    ],
  },
  'a running job whose client left completes unheard; CANT_DO requeues': {
    steps: () => [
      P('c', Q.SUBMIT_JOB, 'f', '', 'x'),
      P('c', Q.SUBMIT_JOB, 'g', '', 'y'),
      P('w', Q.CAN_DO, 'f'),
      P('w', Q.CAN_DO, 'g'),
      P('w', Q.GRAB_JOB),
      P('w', Q.GRAB_JOB),
      CLOSE('c'),
      T('w', 'show jobs\n'),
      P('w', Q.WORK_COMPLETE, 'H:test:2', 'nobody listens'),
      P('w', Q.CANT_DO, 'f'),
      T('w', 'show jobs\n'),
      T('w', 'status\n'),
    ],
  },
  'maxqueue: one size for all priorities, or three; coalescing is not limited': {
    steps: () => [
      P('c', Q.SUBMIT_JOB_BG, 'f', 'a', '1'),
      T('c', 'maxqueue f 1\n'),
      P('c', Q.SUBMIT_JOB_BG, 'f', 'b', '1'),
      P('c', Q.SUBMIT_JOB_HIGH_BG, 'f', 'b', '1'),
      P('c', Q.SUBMIT_JOB, 'f', 'a', '1'),
      T('c', 'maxqueue f 0 2 0\n'),
      P('c', Q.SUBMIT_JOB_HIGH_BG, 'f', 'h1', '1'),
      P('c', Q.SUBMIT_JOB_HIGH_BG, 'f', 'h2', '1'),
      P('c', Q.SUBMIT_JOB_BG, 'f', 'n', '1'),
      P('c', Q.SUBMIT_JOB_LOW, 'f', 'l', '1'),
      T('c', 'maxqueue f 3 4\n'),
      P('c', Q.SUBMIT_JOB_HIGH_BG, 'f', 'h3', '1'),
      P('c', Q.SUBMIT_JOB_BG, 'f', 'n3', '1'),
      P('c', Q.SUBMIT_JOB_LOW_BG, 'f', 'l3', '1'),
      T('c', 'maxqueue f -1\n'),
      P('c', Q.SUBMIT_JOB_BG, 'f', 'n4', '1'),
      T('c', 'maxqueue nosuch 1\n'),
      T('c', 'status\n'),
      T('c', 'cancel job H:test:1\n'),
      T('c', 'show jobs\n'),
    ],
  },
  'cancel job: clients get WORK_FAIL; the job is dropped when reached': {
    steps: () => [
      P('c', Q.SUBMIT_JOB, 'f', 'a', '1'),
      P('c', Q.SUBMIT_JOB_BG, 'f', 'b', '2'),
      T('a', 'cancel job H:test:1\n'),
      T('a', 'cancel job H:test:2\n'),
      T('a', 'show jobs\n'),
      P('w', Q.CAN_DO, 'f'),
      P('w', Q.GRAB_JOB),
      T('a', 'show jobs\n'),
      T('a', 'status\n'),
    ],
  },
  'CAN_DO_TIMEOUT requeues the job after at least one second': {
    steps: () => [
      P('c', Q.SUBMIT_JOB, 'slow', '', 'x'),
      P('w', Q.CAN_DO_TIMEOUT, 'slow', '10'),
      P('w', Q.GRAB_JOB),
      T('c', 'status\n'),
      WAIT(1300),
      T('c', 'status\n'),
      T('c', 'show jobs\n'),
      P('w', Q.WORK_COMPLETE, 'H:test:1', 'late'),
      P('w', Q.GRAB_JOB),
      P('w', Q.WORK_COMPLETE, 'H:test:1', 'in time'),
    ],
  },
  'wake-up: every sleeping worker gets one NOOP per grab cycle': {
    steps: () => [
      P('w1', Q.CAN_DO, 'f'),
      P('w1', Q.PRE_SLEEP),
      P('w2', Q.CAN_DO, 'f'),
      P('w2', Q.PRE_SLEEP),
      P('w3', Q.CAN_DO, 'other'),
      P('w3', Q.PRE_SLEEP),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', '1'),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', '2'),
      P('w1', Q.GRAB_JOB),
      P('w1', Q.GRAB_JOB),
      P('w1', Q.GRAB_JOB),
      P('w1', Q.PRE_SLEEP),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', '3'),
      P('w2', Q.PRE_SLEEP),
      P('w2', Q.GRAB_JOB),
    ],
  },
  '-w 1 wakes one sleeping worker per job, in rotation': {
    flags: ['-w', '1'],
    steps: () => [
      P('w1', Q.CAN_DO, 'f'),
      P('w1', Q.PRE_SLEEP),
      P('w2', Q.CAN_DO, 'f'),
      P('w2', Q.PRE_SLEEP),
      P('w3', Q.CAN_DO, 'f'),
      P('w3', Q.PRE_SLEEP),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', '1'),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', '2'),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', '3'),
      P('c', Q.SUBMIT_JOB_BG, 'f', '', '4'),
    ],
  },
  '-R rotates a worker over its functions': {
    flags: ['-R'],
    steps: () => [
      P('c', Q.SUBMIT_JOB_BG, 'a', '', 'a1'),
      P('c', Q.SUBMIT_JOB_BG, 'a', '', 'a2'),
      P('c', Q.SUBMIT_JOB_BG, 'b', '', 'b1'),
      P('c', Q.SUBMIT_JOB_BG, 'b', '', 'b2'),
      P('c', Q.SUBMIT_JOB_BG, 'c', '', 'c1'),
      P('w', Q.CAN_DO, 'a'),
      P('w', Q.CAN_DO, 'b'),
      P('w', Q.CAN_DO, 'c'),
      ...Array.from({ length: 6 }, () => P('w', Q.GRAB_JOB)),
      T('c', 'workers\n'),
    ],
  },
  '--exceptions: WORK_EXCEPTION goes to every client': {
    flags: ['--exceptions'],
    steps: () => [
      P('c', Q.SUBMIT_JOB, 'f', '', 'x'),
      P('w', Q.CAN_DO, 'f'),
      P('w', Q.GRAB_JOB),
      P('w', Q.WORK_EXCEPTION, 'H:test:1', 'oops'),
    ],
  },
  'a bad magic or packet type closes only that connection': {
    steps: () => [
      P('a', Q.ECHO_REQ, 'alive'),
      KILLS('x', Buffer.from('\0REX\0\0\0\x10\0\0\0\0', 'latin1')),
      KILLS('y', Buffer.from('\0REQ\0\0\0\0\0\0\0\0', 'latin1')),
      KILLS('z', Buffer.from('\0RES\0\0\0\x2b\0\0\0\0', 'latin1')),
      P('a', Q.ECHO_REQ, 'still alive'),
    ],
  },
};

describe('gearman differential: ours vs gearmand 1.1.20', () => {
  for (const [name, script] of Object.entries(SCRIPTS)) {
    it(name, async (t) => {
      if (!requireTool(t, GEARMAND_BIN, 'gearmand (gearman-job-server)')) return;
      await compare(script.steps(), script.flags);
    });
  }
});
