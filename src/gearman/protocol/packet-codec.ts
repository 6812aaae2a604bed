/**
 * The gearman wire format as pure functions over `Buffer`s: packet types, the 12-byte header, argument splitting,
 * packet encoding, a resumable parser that turns a byte stream into frames, and the admin text-line tokenizer.
 *
 * ```
 *  binary packet                                          admin text line (first byte is not \0)
 *  ┌────────┬──────────────┬──────────────┬──────────┐     ┌───────────────────────────┐
 *  │ \0REQ  │ type (u32 BE)│ size (u32 BE)│ data     │     │ status\r\n                │
 *  │ \0RES  │              │              │ a\0b\0c  │     │ show  jobs\n              │
 *  └────────┴──────────────┴──────────────┴──────────┘     └───────────────────────────┘
 *   data = arguments separated by one NUL; the last argument runs to the end of the packet (it may hold NULs).
 * ```
 *
 * Unlike gearmand 1.1.20, which looks for argument NULs past the end of the current packet, everything here is
 * bounded by the packet's size: a packet with too few arguments (Perl `Gearman::Worker`'s two-argument WORK_STATUS)
 * yields empty trailing arguments and a `missing` count, never a desynchronised stream.
 *
 * @module
 */

/**
 * Every packet type of the protocol (PROTOCOL, "Binary Packet"), by name. Direction in the comment: REQ is sent to
 * the server, RES by it; a few types travel both ways.
 */
export const PACKET_TYPE = {
  CAN_DO: 1, // \0REQ  worker: func
  CANT_DO: 2, // \0REQ  worker: func
  RESET_ABILITIES: 3, // \0REQ  worker
  PRE_SLEEP: 4, // \0REQ  worker
  UNUSED: 5, // -      never used
  NOOP: 6, // \0RES  worker: wake up
  SUBMIT_JOB: 7, // \0REQ  client: func, unique, data
  JOB_CREATED: 8, // \0RES  client: handle
  GRAB_JOB: 9, // \0REQ  worker
  NO_JOB: 10, // \0RES  worker
  JOB_ASSIGN: 11, // \0RES  worker: handle, func, data
  WORK_STATUS: 12, // \0REQ worker / \0RES client: handle, numerator, denominator
  WORK_COMPLETE: 13, // \0REQ worker / \0RES client: handle, result
  WORK_FAIL: 14, // \0REQ worker / \0RES client: handle
  GET_STATUS: 15, // \0REQ  client: handle
  ECHO_REQ: 16, // \0REQ  any: data
  ECHO_RES: 17, // \0RES  any: data
  SUBMIT_JOB_BG: 18, // \0REQ  client: func, unique, data
  ERROR: 19, // \0RES  any: code, text
  STATUS_RES: 20, // \0RES  client: handle, known, running, numerator, denominator
  SUBMIT_JOB_HIGH: 21, // \0REQ  client: func, unique, data
  SET_CLIENT_ID: 22, // \0REQ  worker: id
  CAN_DO_TIMEOUT: 23, // \0REQ  worker: func, timeout (ms)
  ALL_YOURS: 24, // \0REQ  worker (not implemented by any server)
  WORK_EXCEPTION: 25, // \0REQ worker / \0RES client: handle, data
  OPTION_REQ: 26, // \0REQ  any: option
  OPTION_RES: 27, // \0RES  any: option
  WORK_DATA: 28, // \0REQ worker / \0RES client: handle, data
  WORK_WARNING: 29, // \0REQ worker / \0RES client: handle, data
  GRAB_JOB_UNIQ: 30, // \0REQ  worker
  JOB_ASSIGN_UNIQ: 31, // \0RES  worker: handle, func, unique, data
  SUBMIT_JOB_HIGH_BG: 32, // \0REQ  client: func, unique, data
  SUBMIT_JOB_LOW: 33, // \0REQ  client: func, unique, data
  SUBMIT_JOB_LOW_BG: 34, // \0REQ  client: func, unique, data
  SUBMIT_JOB_SCHED: 35, // \0REQ  client: func, unique, minute, hour, mday, month, wday, data
  SUBMIT_JOB_EPOCH: 36, // \0REQ  client: func, unique, epoch, data
  SUBMIT_REDUCE_JOB: 37, // \0REQ  client: func, unique, reducer, aggregator, data
  SUBMIT_REDUCE_JOB_BACKGROUND: 38, // \0REQ  client: func, unique, reducer, aggregator, data
  GRAB_JOB_ALL: 39, // \0REQ  worker
  JOB_ASSIGN_ALL: 40, // \0RES  worker: handle, func, unique, reducer, data
  GET_STATUS_UNIQUE: 41, // \0REQ  client: unique
  STATUS_RES_UNIQUE: 42, // \0RES  client: unique, known, running, numerator, denominator, waiting clients
} as const;

/** A packet type name. */
export type PacketTypeName = keyof typeof PACKET_TYPE;

/** Packet types a client or worker sends (magic `\0REQ`). */
export const REQUEST = {
  CAN_DO: 1, // \0REQ 1
  CANT_DO: 2, // \0REQ 2
  RESET_ABILITIES: 3, // \0REQ 3
  PRE_SLEEP: 4, // \0REQ 4
  SUBMIT_JOB: 7, // \0REQ 7
  GRAB_JOB: 9, // \0REQ 9
  WORK_STATUS: 12, // \0REQ 12
  WORK_COMPLETE: 13, // \0REQ 13
  WORK_FAIL: 14, // \0REQ 14
  GET_STATUS: 15, // \0REQ 15
  ECHO_REQ: 16, // \0REQ 16
  SUBMIT_JOB_BG: 18, // \0REQ 18
  SUBMIT_JOB_HIGH: 21, // \0REQ 21
  SET_CLIENT_ID: 22, // \0REQ 22
  CAN_DO_TIMEOUT: 23, // \0REQ 23
  ALL_YOURS: 24, // \0REQ 24
  WORK_EXCEPTION: 25, // \0REQ 25
  OPTION_REQ: 26, // \0REQ 26
  WORK_DATA: 28, // \0REQ 28
  WORK_WARNING: 29, // \0REQ 29
  GRAB_JOB_UNIQ: 30, // \0REQ 30
  SUBMIT_JOB_HIGH_BG: 32, // \0REQ 32
  SUBMIT_JOB_LOW: 33, // \0REQ 33
  SUBMIT_JOB_LOW_BG: 34, // \0REQ 34
  SUBMIT_JOB_SCHED: 35, // \0REQ 35
  SUBMIT_JOB_EPOCH: 36, // \0REQ 36
  SUBMIT_REDUCE_JOB: 37, // \0REQ 37
  SUBMIT_REDUCE_JOB_BACKGROUND: 38, // \0REQ 38
  GRAB_JOB_ALL: 39, // \0REQ 39
  GET_STATUS_UNIQUE: 41, // \0REQ 41
} as const;

/** Packet types the server sends (magic `\0RES`). */
export const RESPONSE = {
  NOOP: 6, // \0RES 6
  JOB_CREATED: 8, // \0RES 8
  NO_JOB: 10, // \0RES 10
  JOB_ASSIGN: 11, // \0RES 11
  WORK_STATUS: 12, // \0RES 12
  WORK_COMPLETE: 13, // \0RES 13
  WORK_FAIL: 14, // \0RES 14
  ECHO_RES: 17, // \0RES 17
  ERROR: 19, // \0RES 19
  STATUS_RES: 20, // \0RES 20
  WORK_EXCEPTION: 25, // \0RES 25
  OPTION_RES: 27, // \0RES 27
  WORK_DATA: 28, // \0RES 28
  WORK_WARNING: 29, // \0RES 29
  JOB_ASSIGN_UNIQ: 31, // \0RES 31
  JOB_ASSIGN_ALL: 40, // \0RES 40
  STATUS_RES_UNIQUE: 42, // \0RES 42
} as const;

/** Highest valid packet type; gearmand closes the connection on type 0 or anything above this. */
export const MAX_PACKET_TYPE = 42;

/** Name of a packet type number (`'GRAB_JOB'` for 9), or undefined for an invalid number. */
export const PACKET_NAME: ReadonlyArray<PacketTypeName | undefined> = (() => {
  const names: Array<PacketTypeName | undefined> = [];
  for (const [name, type] of Object.entries(PACKET_TYPE)) names[type] = name as PacketTypeName;
  return names;
})();

/**
 * How many arguments each packet type carries, the last one included (it runs to the end of the packet).
 * gearmand's `gearman_command_info` table: its `argc`, plus one when the packet has a data part.
 */
export const ARGUMENT_COUNT: ReadonlyArray<number> = [
  0, // 0: TEXT (admin line, not a binary packet)
  1, // CAN_DO
  1, // CANT_DO
  0, // RESET_ABILITIES
  0, // PRE_SLEEP
  0, // UNUSED
  0, // NOOP
  3, // SUBMIT_JOB
  1, // JOB_CREATED
  0, // GRAB_JOB
  0, // NO_JOB
  3, // JOB_ASSIGN
  3, // WORK_STATUS
  2, // WORK_COMPLETE
  1, // WORK_FAIL
  1, // GET_STATUS
  1, // ECHO_REQ
  1, // ECHO_RES
  3, // SUBMIT_JOB_BG
  2, // ERROR
  5, // STATUS_RES
  3, // SUBMIT_JOB_HIGH
  1, // SET_CLIENT_ID
  2, // CAN_DO_TIMEOUT
  0, // ALL_YOURS
  2, // WORK_EXCEPTION
  1, // OPTION_REQ
  1, // OPTION_RES
  2, // WORK_DATA
  2, // WORK_WARNING
  0, // GRAB_JOB_UNIQ
  4, // JOB_ASSIGN_UNIQ
  3, // SUBMIT_JOB_HIGH_BG
  3, // SUBMIT_JOB_LOW
  3, // SUBMIT_JOB_LOW_BG
  8, // SUBMIT_JOB_SCHED
  4, // SUBMIT_JOB_EPOCH
  5, // SUBMIT_REDUCE_JOB
  5, // SUBMIT_REDUCE_JOB_BACKGROUND
  0, // GRAB_JOB_ALL
  5, // JOB_ASSIGN_ALL
  1, // GET_STATUS_UNIQUE
  6, // STATUS_RES_UNIQUE
];

/** Size of the binary header: magic (4), type (4), data size (4). */
export const HEADER_SIZE = 12;

/** The two magic codes. */
export const MAGIC = {
  REQUEST: Buffer.from('\0REQ', 'latin1'),
  RESPONSE: Buffer.from('\0RES', 'latin1'),
} as const;

/** Which magic a header carries. */
export type Magic = 'REQ' | 'RES';

/** A decoded 12-byte header. */
export interface PacketHeader {
  /** `REQ`, `RES`, or undefined when the four bytes are neither. */
  magic: Magic | undefined;
  /** Packet type number (not validated). */
  type: number;
  /** Size of the data part. */
  size: number;
}

/** Reads the 12-byte header at `offset` (the caller checks that 12 bytes are there). */
export function parseHeader(buf: Buffer, offset = 0): PacketHeader {
  let magic: Magic | undefined;
  if (buf[offset] === 0 && buf[offset + 1] === 0x52 && buf[offset + 2] === 0x45) {
    const last = buf[offset + 3];
    if (last === 0x51) magic = 'REQ';
    else if (last === 0x53) magic = 'RES';
  }
  return { magic, type: buf.readUInt32BE(offset + 4), size: buf.readUInt32BE(offset + 8) };
}

/** Writes a 12-byte header into `target` at `offset`. */
export function writeHeader(target: Buffer, offset: number, magic: Magic, type: number, size: number): void {
  (magic === 'REQ' ? MAGIC.REQUEST : MAGIC.RESPONSE).copy(target, offset);
  target.writeUInt32BE(type, offset + 4);
  target.writeUInt32BE(size, offset + 8);
}

/** An argument to encode: bytes, or a string written as latin1 (one byte per char, so binary-safe). */
export type PacketArgument = Buffer | Uint8Array | string;

function argLength(arg: PacketArgument): number {
  return typeof arg === 'string' ? Buffer.byteLength(arg, 'latin1') : arg.length;
}

/**
 * Encodes one packet: header plus the arguments joined by single NULs (the last one unterminated).
 *
 * @example
 * encodePacket(RESPONSE.JOB_CREATED, ['H:lap:1']); // \0RES, 8, 7, "H:lap:1"
 * encodePacket(REQUEST.SUBMIT_JOB, ['reverse', '', 'test'], 'REQ');
 */
export function encodePacket(type: number, args: readonly PacketArgument[] = [], magic: Magic = 'RES'): Buffer {
  let size = args.length > 0 ? args.length - 1 : 0;
  for (const arg of args) size += argLength(arg);
  const out = Buffer.allocUnsafe(HEADER_SIZE + size);
  writeHeader(out, 0, magic, type, size);
  let at = HEADER_SIZE;
  for (let i = 0; i < args.length; i++) {
    if (i > 0) out[at++] = 0;
    const arg = args[i]!;
    if (typeof arg === 'string') at += out.write(arg, at, 'latin1');
    else {
      out.set(arg, at);
      at += arg.length;
    }
  }
  return out;
}

/** Arguments split out of a packet's data. */
export interface SplitArguments {
  /** Exactly `count` arguments (views into the data, no copies). */
  args: Buffer[];
  /** How many NUL separators were missing: those trailing arguments are empty. */
  missing: number;
}

const EMPTY = Buffer.alloc(0);

/**
 * Splits a packet's data into `count` arguments: the first `count - 1` end at a NUL, the last takes the rest of the
 * packet (NULs included). Never looks past `data`: missing separators leave empty trailing arguments.
 */
export function splitArguments(data: Buffer, count: number): SplitArguments {
  const args: Buffer[] = [];
  if (count <= 0) return { args, missing: 0 };
  let at = 0;
  for (let i = 0; i < count - 1; i++) {
    const nul = data.indexOf(0, at);
    if (nul < 0) {
      args.push(data.subarray(at));
      for (let j = i + 1; j < count; j++) args.push(EMPTY);
      return { args, missing: count - 1 - i };
    }
    args.push(data.subarray(at, nul));
    at = nul + 1;
  }
  args.push(data.subarray(at));
  return { args, missing: 0 };
}

/** A frame produced by {@link PacketParser}. */
export type Frame =
  | {
      kind: 'packet';
      magic: Magic;
      type: number;
      /** The data part (a view; copy it to keep it past the next chunk). */
      data: Buffer;
    }
  | {
      kind: 'text';
      /** One admin line without its `\n` and one trailing `\r`. */
      line: Buffer;
    }
  | {
      kind: 'error';
      /**
       * `bad-magic`: not `\0REQ`/`\0RES`; `bad-type`: type 0 or above {@link MAX_PACKET_TYPE}; `too-large`: data
       * size above the limit; `line-too-long`: an admin line without `\n` past the limit. The stream is unusable
       * afterwards (every further call returns the same error).
       */
      reason: 'bad-magic' | 'bad-type' | 'too-large' | 'line-too-long';
      /** The header that was refused (not for `line-too-long`). */
      header?: PacketHeader;
    };

/** Limits of a {@link PacketParser}. */
export interface PacketParserOptions {
  /** Largest accepted data part of a binary packet (default 64 MiB). */
  maxPacketSize?: number;
  /** Longest accepted admin line, `\n` included (default 64 KiB). */
  maxLineLength?: number;
}

/** Where the parser stopped: at a frame boundary, or inside a packet whose header is known. */
type ParserState =
  | { at: 'boundary' }
  | { at: 'data'; magic: Magic; type: number; size: number }
  | { at: 'failed'; frame: Frame & { kind: 'error' } };

/**
 * A resumable stream parser. Feed it chunks with {@link push}; pull frames with {@link next} until it returns
 * undefined ("need more bytes"). Chunks are kept as a list and joined once per completed frame (not per chunk), so a
 * large packet arriving in many pieces costs one copy.
 *
 * @example
 * const parser = new PacketParser();
 * socket.on('data', (chunk) => {
 *   parser.push(chunk);
 *   for (let frame = parser.next(); frame; frame = parser.next()) handle(frame);
 * });
 */
export class PacketParser {
  readonly #maxPacketSize: number;
  readonly #maxLineLength: number;
  #chunks: Buffer[] = [];
  /** Index of the first live chunk in {@link #chunks}. */
  #first = 0;
  /** Bytes held. */
  #length = 0;
  /** Bytes at the front known to contain no `\n` (while a text line is pending). */
  #scanned = 0;
  #state: ParserState = { at: 'boundary' };

  constructor(options: PacketParserOptions = {}) {
    this.#maxPacketSize = options.maxPacketSize ?? 64 * 1024 * 1024;
    this.#maxLineLength = options.maxLineLength ?? 64 * 1024;
  }

  /** Bytes received and not yet returned as frames. */
  get buffered(): number {
    return this.#length;
  }

  /** Adds received bytes. */
  push(chunk: Buffer): void {
    if (chunk.length === 0 || this.#state.at === 'failed') return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Returns the next complete frame, or undefined when more bytes are needed. */
  next(): Frame | undefined {
    const state = this.#state;
    if (state.at === 'failed') return state.frame;
    if (state.at === 'data') {
      if (this.#length < state.size) return undefined;
      this.#state = { at: 'boundary' };
      return { kind: 'packet', magic: state.magic, type: state.type, data: this.#take(state.size) };
    }
    if (this.#length === 0) return undefined;
    if (this.#chunks[this.#first]![0] !== 0) return this.#nextLine();
    if (this.#length < HEADER_SIZE) return undefined;
    const header = parseHeader(this.#take(HEADER_SIZE));
    if (header.magic === undefined) return this.#fail({ kind: 'error', reason: 'bad-magic', header });
    if (header.type === 0 || header.type > MAX_PACKET_TYPE) {
      return this.#fail({ kind: 'error', reason: 'bad-type', header });
    }
    if (header.size > this.#maxPacketSize) return this.#fail({ kind: 'error', reason: 'too-large', header });
    this.#state = { at: 'data', magic: header.magic, type: header.type, size: header.size };
    return this.next();
  }

  #fail(frame: Frame & { kind: 'error' }): Frame {
    this.#state = { at: 'failed', frame };
    this.#chunks = [];
    this.#first = 0;
    this.#length = 0;
    return frame;
  }

  #nextLine(): Frame | undefined {
    // Look for '\n' only in bytes not scanned before: a line trickling in byte by byte stays linear.
    let offset = 0;
    for (let i = this.#first; i < this.#chunks.length; i++) {
      const chunk = this.#chunks[i]!;
      if (offset + chunk.length > this.#scanned) {
        const from = Math.max(0, this.#scanned - offset);
        const nl = chunk.indexOf(10, from);
        if (nl >= 0) {
          const end = offset + nl;
          if (end + 1 > this.#maxLineLength) return this.#fail({ kind: 'error', reason: 'line-too-long' });
          this.#scanned = 0;
          const raw = this.#take(end + 1);
          const stop = end > 0 && raw[end - 1] === 13 ? end - 1 : end;
          return { kind: 'text', line: raw.subarray(0, stop) };
        }
      }
      offset += chunk.length;
    }
    this.#scanned = this.#length;
    if (this.#length >= this.#maxLineLength) return this.#fail({ kind: 'error', reason: 'line-too-long' });
    return undefined;
  }

  /** Removes and returns the first `n` bytes: a view when they lie in one chunk, else one concatenation. */
  #take(n: number): Buffer {
    this.#length -= n;
    if (n === 0) return EMPTY;
    const head = this.#chunks[this.#first]!;
    if (head.length >= n) {
      if (head.length === n) this.#drop(1);
      else this.#chunks[this.#first] = head.subarray(n);
      return head.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[this.#first]!;
      const want = n - filled;
      if (chunk.length <= want) {
        chunk.copy(out, filled);
        filled += chunk.length;
        this.#drop(1);
      } else {
        chunk.copy(out, filled, 0, want);
        filled += want;
        this.#chunks[this.#first] = chunk.subarray(want);
      }
    }
    return out;
  }

  #drop(count: number): void {
    this.#first += count;
    if (this.#first === this.#chunks.length) {
      this.#chunks = [];
      this.#first = 0;
    } else if (this.#first > 1024 && this.#first * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#first);
      this.#first = 0;
    }
  }
}

/**
 * Splits an admin line into arguments the way gearmand 1.1.20 does: at each space, skipping the run of spaces that
 * follows. So a leading space gives an empty first argument and a trailing space an empty last one (`"status "` is
 * `['status', '']`); tabs are not separators. An empty line is one empty argument.
 */
export function splitAdminLine(line: Buffer | string): string[] {
  const text = typeof line === 'string' ? line : line.toString('latin1');
  const args: string[] = [];
  let start = 0;
  for (;;) {
    const space = text.indexOf(' ', start);
    if (space < 0) {
      args.push(text.slice(start));
      return args;
    }
    args.push(text.slice(start, space));
    let next = space + 1;
    while (text.charCodeAt(next) === 32) next++;
    start = next;
  }
}
