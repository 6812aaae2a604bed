/**
 * memcached binary protocol codec: opcodes, status codes, and pure header/packet encoders and decoders over
 * `Buffer`s (no sockets, no store). Shared by the server (`binary.ts`) and the client's binary mode.
 *
 * @module
 */

/** Size of a request or response header. */
export const HEADER_LENGTH = 24;
/** First byte of every request. */
export const REQUEST_MAGIC = 0x80;
/** First byte of every response. */
export const RESPONSE_MAGIC = 0x81;
/** memcached's `MAX_SASL_MECH_LEN`. */
export const MAX_SASL_MECH_LEN = 32;
/** Incr/decr with this exptime do not create a missing counter. */
export const NO_CREATE = 0xffffffff;

/** Request opcodes (memcached's `protocol_binary_command`). */
export const Opcode = {
  GET: 0x00, // Get
  SET: 0x01, // Set
  ADD: 0x02, // Add
  REPLACE: 0x03, // Replace
  DELETE: 0x04, // Delete
  INCREMENT: 0x05, // Increment
  DECREMENT: 0x06, // Decrement
  QUIT: 0x07, // Quit
  FLUSH: 0x08, // Flush
  GETQ: 0x09, // GetQ
  NOOP: 0x0a, // No-op
  VERSION: 0x0b, // Version
  GETK: 0x0c, // GetK
  GETKQ: 0x0d, // GetKQ
  APPEND: 0x0e, // Append
  PREPEND: 0x0f, // Prepend
  STAT: 0x10, // Stat
  SETQ: 0x11, // SetQ
  ADDQ: 0x12, // AddQ
  REPLACEQ: 0x13, // ReplaceQ
  DELETEQ: 0x14, // DeleteQ
  INCREMENTQ: 0x15, // IncrementQ
  DECREMENTQ: 0x16, // DecrementQ
  QUITQ: 0x17, // QuitQ
  FLUSHQ: 0x18, // FlushQ
  APPENDQ: 0x19, // AppendQ
  PREPENDQ: 0x1a, // PrependQ
  TOUCH: 0x1c, // Touch
  GAT: 0x1d, // Get and touch
  GATQ: 0x1e, // Get and touch, quiet
  SASL_LIST_MECHS: 0x20, // SASL list mechanisms
  SASL_AUTH: 0x21, // SASL auth
  SASL_STEP: 0x22, // SASL step
  GATK: 0x23, // Get and touch, with key
  GATKQ: 0x24, // Get and touch, with key, quiet
} as const;
/** One of {@link Opcode}. */
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** Response status codes (memcached's `protocol_binary_response_status`). */
export const Status = {
  SUCCESS: 0x0000, // No error
  KEY_ENOENT: 0x0001, // Key not found
  KEY_EEXISTS: 0x0002, // Key exists
  E2BIG: 0x0003, // Value too large
  EINVAL: 0x0004, // Invalid arguments
  NOT_STORED: 0x0005, // Item not stored
  DELTA_BADVAL: 0x0006, // Incr/Decr on non-numeric value
  AUTH_ERROR: 0x0020, // Authentication error
  AUTH_CONTINUE: 0x0021, // Authentication continue
  UNKNOWN_COMMAND: 0x0081, // Unknown command
  ENOMEM: 0x0082, // Out of memory
} as const;
/** One of {@link Status}. */
export type Status = (typeof Status)[keyof typeof Status];

/** The body memcached sends with each error status (`write_bin_error` without an explicit string). */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  [Status.KEY_ENOENT]: 'Not found',
  [Status.KEY_EEXISTS]: 'Data exists for key.',
  [Status.E2BIG]: 'Too large.',
  [Status.EINVAL]: 'Invalid arguments',
  [Status.NOT_STORED]: 'Not stored.',
  [Status.DELTA_BADVAL]: 'Non-numeric server-side value for incr or decr',
  [Status.AUTH_ERROR]: 'Auth failure.',
  [Status.UNKNOWN_COMMAND]: 'Unknown command',
  [Status.ENOMEM]: 'Out of memory',
};

/** A decoded request header. `cas` is a number: store cas values stay below 2^53, so a larger one never matches. */
export interface RequestHeader {
  magic: number;
  opcode: number;
  keyLength: number;
  extrasLength: number;
  dataType: number;
  vbucket: number;
  bodyLength: number;
  opaque: number;
  cas: number;
}

/** Reads a u32 big-endian without bounds checks. */
export function u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/** Writes a u32 big-endian without bounds checks. */
export function putU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

/**
 * Decodes the 24-byte request header at `pos` (which must be in `buf`) into `into` (reused to avoid an allocation
 * per request) and returns it.
 */
export function parseRequestHeader(
  buf: Uint8Array,
  pos: number,
  into: RequestHeader = {
    magic: 0,
    opcode: 0,
    keyLength: 0,
    extrasLength: 0,
    dataType: 0,
    vbucket: 0,
    bodyLength: 0,
    opaque: 0,
    cas: 0,
  },
): RequestHeader {
  into.magic = buf[pos]!;
  into.opcode = buf[pos + 1]!;
  into.keyLength = (buf[pos + 2]! << 8) | buf[pos + 3]!;
  into.extrasLength = buf[pos + 4]!;
  into.dataType = buf[pos + 5]!;
  into.vbucket = (buf[pos + 6]! << 8) | buf[pos + 7]!;
  into.bodyLength = u32(buf, pos + 8);
  into.opaque = u32(buf, pos + 12);
  into.cas = u32(buf, pos + 16) * 0x100000000 + u32(buf, pos + 20);
  return into;
}

/**
 * Writes a 24-byte response header at `at` and returns the offset just past it. `cas` must be an integer below
 * 2^53 (memcached's cas counter never gets near).
 */
export function writeResponseHeader(
  out: Uint8Array,
  at: number,
  opcode: number,
  status: number,
  keyLength: number,
  extrasLength: number,
  bodyLength: number,
  opaque: number,
  cas: number,
): number {
  out[at] = RESPONSE_MAGIC;
  out[at + 1] = opcode;
  out[at + 2] = keyLength >>> 8;
  out[at + 3] = keyLength & 0xff;
  out[at + 4] = extrasLength;
  out[at + 5] = 0; // datatype: raw bytes
  out[at + 6] = status >>> 8;
  out[at + 7] = status & 0xff;
  putU32(out, at + 8, bodyLength);
  putU32(out, at + 12, opaque);
  putU32(out, at + 16, Math.floor(cas / 0x100000000));
  putU32(out, at + 20, cas >>> 0);
  return at + HEADER_LENGTH;
}

/** A request to encode with {@link encodeRequest}. */
export interface RequestFields {
  opcode: number;
  key?: Uint8Array | string;
  extras?: Uint8Array;
  value?: Uint8Array | string;
  opaque?: number;
  cas?: bigint;
  vbucket?: number;
}

/** Encodes a whole request (for clients and tests; the server never builds requests). */
export function encodeRequest(req: RequestFields): Buffer {
  const key = typeof req.key === 'string' ? Buffer.from(req.key, 'latin1') : (req.key ?? Buffer.alloc(0));
  const extras = req.extras ?? Buffer.alloc(0);
  const value = typeof req.value === 'string' ? Buffer.from(req.value, 'latin1') : (req.value ?? Buffer.alloc(0));
  const out = Buffer.alloc(HEADER_LENGTH + extras.length + key.length + value.length);
  out[0] = REQUEST_MAGIC;
  out[1] = req.opcode;
  out.writeUInt16BE(key.length, 2);
  out[4] = extras.length;
  out.writeUInt16BE(req.vbucket ?? 0, 6);
  out.writeUInt32BE(extras.length + key.length + value.length, 8);
  out.writeUInt32BE(req.opaque ?? 0, 12);
  out.writeBigUInt64BE(req.cas ?? 0n, 16);
  out.set(extras, HEADER_LENGTH);
  out.set(key, HEADER_LENGTH + extras.length);
  out.set(value, HEADER_LENGTH + extras.length + key.length);
  return out;
}

/** A decoded response (views into the buffer it was decoded from). */
export interface Response {
  opcode: number;
  status: number;
  opaque: number;
  cas: bigint;
  extras: Buffer;
  key: Buffer;
  value: Buffer;
}

/**
 * Decodes the complete response at `pos`, or returns undefined when `buf` does not hold all of it yet. The length
 * of the response is `24 + bodylen` (`buf.readUInt32BE(pos + 8)`).
 */
export function decodeResponse(buf: Buffer, pos = 0): Response | undefined {
  if (buf.length - pos < HEADER_LENGTH) return undefined;
  const keyLength = buf.readUInt16BE(pos + 2);
  const extrasLength = buf[pos + 4]!;
  const bodyLength = buf.readUInt32BE(pos + 8);
  if (buf.length - pos < HEADER_LENGTH + bodyLength) return undefined;
  const e = pos + HEADER_LENGTH;
  const k = e + extrasLength;
  const v = k + keyLength;
  return {
    opcode: buf[pos + 1]!,
    status: buf.readUInt16BE(pos + 6),
    opaque: buf.readUInt32BE(pos + 12),
    cas: buf.readBigUInt64BE(pos + 16),
    extras: buf.subarray(e, k),
    key: buf.subarray(k, v),
    value: buf.subarray(v, e + bodyLength),
  };
}
