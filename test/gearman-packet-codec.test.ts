/**
 * The gearman packet codec: every fixture parsed as one chunk, byte by byte, and at random split points (seeded;
 * reproduce with `CODEC_SEED=<seed>`), plus header, argument and admin-line rules.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ARGUMENT_COUNT,
  encodePacket,
  type Frame,
  HEADER_SIZE,
  MAX_PACKET_TYPE,
  PACKET_NAME,
  PACKET_TYPE,
  PacketParser,
  parseHeader,
  REQUEST,
  RESPONSE,
  splitAdminLine,
  splitArguments,
  writeHeader,
} from '../src/gearman/protocol/packet-codec.ts';

const SEED = process.env.CODEC_SEED !== undefined ? Number(process.env.CODEC_SEED) : (Math.random() * 2 ** 32) >>> 0;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** A fixture: the bytes on the wire and the frames they must parse into. */
interface Fixture {
  name: string;
  bytes: Buffer;
  frames: Array<{ kind: 'packet'; magic: 'REQ' | 'RES'; type: number; data: string } | { kind: 'text'; line: string }>;
  /** The frames end with this error. */
  error?: 'bad-magic' | 'bad-type' | 'too-large' | 'line-too-long';
}

// The examples of PROTOCOL's "Binary Protocol Example", byte for byte.
const CAN_DO_REVERSE = hex('00524551 00000001 00000007 72657665727365');
const GRAB_JOB = hex('00524551 00000009 00000000');
const NO_JOB = hex('00524553 0000000a 00000000');
const SUBMIT_REVERSE = hex('00524551 00000007 0000000d 7265766572736500 00 74657374');
const JOB_CREATED = hex('00524553 00000008 00000007 483a6c61703a31');
const JOB_ASSIGN = hex('00524553 0000000b 00000014 483a6c61703a3100 7265766572736500 74657374');
const WORK_COMPLETE = hex('00524551 0000000d 0000000c 483a6c61703a3100 74736574');

const FIXTURES: Fixture[] = [
  {
    name: 'PROTOCOL example (requests)',
    bytes: Buffer.concat([CAN_DO_REVERSE, GRAB_JOB, SUBMIT_REVERSE, WORK_COMPLETE]),
    frames: [
      { kind: 'packet', magic: 'REQ', type: 1, data: 'reverse' },
      { kind: 'packet', magic: 'REQ', type: 9, data: '' },
      { kind: 'packet', magic: 'REQ', type: 7, data: 'reverse\0\0test' },
      { kind: 'packet', magic: 'REQ', type: 13, data: 'H:lap:1\0tset' },
    ],
  },
  {
    name: 'PROTOCOL example (responses)',
    bytes: Buffer.concat([NO_JOB, JOB_CREATED, JOB_ASSIGN]),
    frames: [
      { kind: 'packet', magic: 'RES', type: 10, data: '' },
      { kind: 'packet', magic: 'RES', type: 8, data: 'H:lap:1' },
      { kind: 'packet', magic: 'RES', type: 11, data: 'H:lap:1\0reverse\0test' },
    ],
  },
  {
    name: 'admin lines mixed with packets',
    bytes: Buffer.concat([
      Buffer.from('status\r\n'),
      GRAB_JOB,
      Buffer.from('workers\n'),
      Buffer.from('\r\n'),
      encodePacket(REQUEST.ECHO_REQ, [Buffer.from([0, 1, 2, 0, 10, 13])], 'REQ'),
      Buffer.from('show  jobs\r\n'),
    ]),
    frames: [
      { kind: 'text', line: 'status' },
      { kind: 'packet', magic: 'REQ', type: 9, data: '' },
      { kind: 'text', line: 'workers' },
      { kind: 'text', line: '' },
      { kind: 'packet', magic: 'REQ', type: 16, data: '\0\x01\x02\0\n\r' },
      { kind: 'text', line: 'show  jobs' },
    ],
  },
  {
    name: "Perl Gearman::Worker's short WORK_STATUS does not swallow the next packet",
    bytes: Buffer.concat([
      encodePacket(REQUEST.WORK_STATUS, ['H:x:1', '5'], 'REQ'),
      encodePacket(REQUEST.WORK_DATA, ['H:x:1', 'more'], 'REQ'),
    ]),
    frames: [
      { kind: 'packet', magic: 'REQ', type: 12, data: 'H:x:1\x005' },
      { kind: 'packet', magic: 'REQ', type: 28, data: 'H:x:1\0more' },
    ],
  },
  {
    name: 'payload with NULs, CR and LF is opaque',
    bytes: encodePacket(REQUEST.SUBMIT_JOB, ['f', 'u', Buffer.from('a\0b\r\n\0\0')], 'REQ'),
    frames: [{ kind: 'packet', magic: 'REQ', type: 7, data: 'f\0u\0a\0b\r\n\0\0' }],
  },
  {
    name: 'bad magic stops the stream',
    bytes: Buffer.concat([GRAB_JOB, hex('00514551 00000009 00000000'), GRAB_JOB]),
    frames: [{ kind: 'packet', magic: 'REQ', type: 9, data: '' }],
    error: 'bad-magic',
  },
  {
    name: 'type 0 is refused',
    bytes: hex('00524551 00000000 00000000'),
    frames: [],
    error: 'bad-type',
  },
  {
    name: 'type 43 is refused',
    bytes: Buffer.concat([GRAB_JOB, hex('00524553 0000002b 00000000')]),
    frames: [{ kind: 'packet', magic: 'REQ', type: 9, data: '' }],
    error: 'bad-type',
  },
  {
    name: 'oversize packet is refused from its header',
    bytes: hex('00524551 00000010 00100001'),
    frames: [],
    error: 'too-large',
  },
];

function collect(parser: PacketParser, into: Frame[]): void {
  for (let frame = parser.next(); frame; frame = parser.next()) {
    into.push(frame.kind === 'packet' ? { ...frame, data: Buffer.from(frame.data) } : frame);
    if (frame.kind === 'error') return;
  }
}

function normalise(frames: Frame[]): unknown[] {
  return frames.map((f) =>
    f.kind === 'packet'
      ? { kind: 'packet', magic: f.magic, type: f.type, data: f.data.toString('latin1') }
      : f.kind === 'text'
        ? { kind: 'text', line: f.line.toString('latin1') }
        : { kind: 'error', reason: f.reason },
  );
}

function parsePieces(pieces: Buffer[]): unknown[] {
  const parser = new PacketParser({ maxPacketSize: 1024 * 1024 });
  const frames: Frame[] = [];
  for (const piece of pieces) {
    parser.push(piece);
    collect(parser, frames);
    if (frames.at(-1)?.kind === 'error') break;
  }
  return normalise(frames);
}

function expected(f: Fixture): unknown[] {
  return [...f.frames, ...(f.error ? [{ kind: 'error', reason: f.error }] : [])];
}

describe('gearman packet codec', () => {
  it(`parses every fixture as one chunk, byte by byte and at random splits (CODEC_SEED=${SEED})`, () => {
    const rand = prng(SEED);
    for (const f of FIXTURES) {
      assert.deepEqual(parsePieces([f.bytes]), expected(f), `${f.name}: one chunk`);
      const bytes = [...f.bytes].map((b) => Buffer.from([b]));
      assert.deepEqual(parsePieces(bytes), expected(f), `${f.name}: byte by byte`);
      for (let round = 0; round < 50; round++) {
        const pieces: Buffer[] = [];
        let at = 0;
        while (at < f.bytes.length) {
          const n = 1 + Math.floor(rand() * Math.min(20, f.bytes.length - at));
          pieces.push(f.bytes.subarray(at, at + n));
          at += n;
        }
        assert.deepEqual(parsePieces(pieces), expected(f), `${f.name}: random split ${round}`);
      }
    }
  });

  it('keeps failing after an error and drops what was buffered', () => {
    const parser = new PacketParser();
    parser.push(hex('00000000 00000000 00000000'));
    assert.equal(parser.next()?.kind, 'error');
    parser.push(GRAB_JOB);
    const again = parser.next();
    assert.equal(again?.kind === 'error' && again.reason, 'bad-magic');
    assert.equal(parser.buffered, 0);
  });

  it('refuses an admin line longer than the limit, with or without its newline', () => {
    const parser = new PacketParser({ maxLineLength: 16 });
    parser.push(Buffer.from('status status st'));
    const f = parser.next();
    assert.equal(f?.kind === 'error' && f.reason, 'line-too-long');
    const p2 = new PacketParser({ maxLineLength: 16 });
    p2.push(Buffer.from('workers workers workers\n'));
    const g = p2.next();
    assert.equal(g?.kind === 'error' && g.reason, 'line-too-long');
    const p3 = new PacketParser({ maxLineLength: 16 });
    p3.push(Buffer.from('status\n'));
    assert.equal(p3.next()?.kind, 'text');
  });

  it('joins a large packet once, however many chunks it arrives in', () => {
    const payload = Buffer.alloc(300_000, 7);
    const bytes = encodePacket(REQUEST.SUBMIT_JOB_BG, ['f', '', payload], 'REQ');
    const parser = new PacketParser();
    for (let at = 0; at < bytes.length; at += 1000) {
      parser.push(bytes.subarray(at, at + 1000));
      if (at + 1000 < bytes.length) assert.equal(parser.next(), undefined);
    }
    const frame = parser.next();
    assert.ok(frame?.kind === 'packet');
    assert.equal(frame.data.length, payload.length + 3);
    assert.equal(parser.buffered, 0);
    assert.equal(parser.next(), undefined);
  });

  it('handles a long run of tiny chunks without losing bytes', () => {
    const packets = Array.from({ length: 600 }, (_, i) => encodePacket(REQUEST.ECHO_REQ, [`m${i}`], 'REQ'));
    const bytes = Buffer.concat(packets);
    const parser = new PacketParser();
    const frames: Frame[] = [];
    for (const b of bytes) parser.push(Buffer.from([b]));
    collect(parser, frames);
    assert.equal(frames.length, 600);
    assert.equal(frames[599]!.kind === 'packet' && frames[599]!.data.toString(), 'm599');
  });

  it('encodes headers and arguments (strings as latin1, buffers verbatim)', () => {
    assert.deepEqual(encodePacket(RESPONSE.NO_JOB), NO_JOB);
    assert.deepEqual(encodePacket(RESPONSE.JOB_CREATED, ['H:lap:1']), JOB_CREATED);
    assert.deepEqual(encodePacket(RESPONSE.JOB_ASSIGN, ['H:lap:1', 'reverse', Buffer.from('test')]), JOB_ASSIGN);
    assert.deepEqual(encodePacket(REQUEST.CAN_DO, ['reverse'], 'REQ'), CAN_DO_REVERSE);
    const latin = encodePacket(RESPONSE.ECHO_RES, ['\xff\x00é']);
    assert.deepEqual([...latin.subarray(HEADER_SIZE)], [0xff, 0x00, 0xe9]);
    const header = parseHeader(JOB_ASSIGN);
    assert.deepEqual(header, { magic: 'RES', type: 11, size: 20 });
    assert.equal(parseHeader(hex('00524558 00000001 00000000')).magic, undefined);
    const target = Buffer.alloc(14);
    writeHeader(target, 2, 'REQ', 9, 0);
    assert.deepEqual(target.subarray(2), GRAB_JOB);
  });

  it('splits arguments inside the packet only; the last one takes the rest', () => {
    const s = (data: string, n: number) => {
      const r = splitArguments(Buffer.from(data, 'latin1'), n);
      return { args: r.args.map((a) => a.toString('latin1')), missing: r.missing };
    };
    assert.deepEqual(s('f\0u\0a\0b', 3), { args: ['f', 'u', 'a\0b'], missing: 0 });
    assert.deepEqual(s('H:1\x005', 3), { args: ['H:1', '5', ''], missing: 1 });
    assert.deepEqual(s('', 3), { args: ['', '', ''], missing: 2 });
    assert.deepEqual(s('abc', 1), { args: ['abc'], missing: 0 });
    assert.deepEqual(s('abc', 0), { args: [], missing: 0 });
    assert.deepEqual(s('f\0\0', 3), { args: ['f', '', ''], missing: 0 });
  });

  it('has one name and one argument count per packet type', () => {
    assert.equal(ARGUMENT_COUNT.length, MAX_PACKET_TYPE + 1);
    for (let type = 1; type <= MAX_PACKET_TYPE; type++) {
      const name = PACKET_NAME[type]!;
      assert.equal(PACKET_TYPE[name], type);
    }
    for (const [name, type] of Object.entries(REQUEST)) assert.equal(PACKET_TYPE[name as keyof typeof REQUEST], type);
    for (const [name, type] of Object.entries(RESPONSE)) {
      assert.equal(PACKET_TYPE[name as keyof typeof RESPONSE], type);
    }
    assert.equal(PACKET_NAME[0], undefined);
  });

  it("splits admin lines the way gearmand's text parser does", () => {
    assert.deepEqual(splitAdminLine('status'), ['status']);
    assert.deepEqual(splitAdminLine('show  unique   jobs'), ['show', 'unique', 'jobs']);
    assert.deepEqual(splitAdminLine('status '), ['status', '']);
    assert.deepEqual(splitAdminLine(' status'), ['', 'status']);
    assert.deepEqual(splitAdminLine(''), ['']);
    assert.deepEqual(splitAdminLine('a\tb'), ['a\tb']);
    assert.deepEqual(splitAdminLine(Buffer.from('maxqueue f\xe9 1', 'latin1')), ['maxqueue', 'f\xe9', '1']);
  });
});
