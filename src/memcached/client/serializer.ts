/**
 * Values ↔ bytes, with memcached's 32-bit client flags recording the format, and transparent compression.
 *
 * The flag layout is php-memcached's (3.x), so PHP and Node applications can share keys:
 *
 * ```
 *  31            16 15         8 7   6   5   4 3       0
 * +----------------+------------+---+---+---+---+---------+
 * |   user flags   |  internal  | B |FLZ|ZLB| C |  type   |
 * +----------------+------------+---+---+---+---+---------+
 *   type: 0 string, 1 integer, 2 double, 3 boolean, 4 PHP serialize(), 5 igbinary, 6 JSON, 7 msgpack
 *   C (0x10) compressed, ZLB (0x20) zlib, FLZ (0x40) fastlz; B (0x100): ours, "a Buffer, not text"
 * ```
 *
 * A compressed payload is php-memcached's too: the uncompressed length as a little-endian u32, then zlib's
 * `compress()` output (`zlib.deflateSync`). PHP reads a Buffer (type 0 with bit 0x100, an internal bit php-memcached
 * does not use) as a string; this client reads types 4, 5 and 7 and fastlz only as errors (no PHP unserializer here).
 *
 * @module
 */

import { deflateSync, inflateSync } from 'node:zlib';
import { MemcacheError } from './errors.ts';

/** The low four bits of the flags: the value's type (php-memcached's `MEMC_VAL_IS_*`). */
export const ValueType = {
  STRING: 0, // MEMC_VAL_IS_STRING
  LONG: 1, // MEMC_VAL_IS_LONG: decimal text
  DOUBLE: 2, // MEMC_VAL_IS_DOUBLE: decimal text
  BOOL: 3, // MEMC_VAL_IS_BOOL: "1" or ""
  SERIALIZED: 4, // MEMC_VAL_IS_SERIALIZED: PHP serialize()
  IGBINARY: 5, // MEMC_VAL_IS_IGBINARY
  JSON: 6, // MEMC_VAL_IS_JSON
  MSGPACK: 7, // MEMC_VAL_IS_MSGPACK
} as const;
/** One of {@link ValueType}. */
export type ValueType = (typeof ValueType)[keyof typeof ValueType];

/** Flag bits beyond the type. */
export const ValueFlag = {
  TYPE_MASK: 0xf, // MEMC_MASK_TYPE
  COMPRESSED: 0x10, // MEMC_VAL_COMPRESSED << 4
  ZLIB: 0x20, // MEMC_VAL_COMPRESSION_ZLIB << 4
  FASTLZ: 0x40, // MEMC_VAL_COMPRESSION_FASTLZ << 4
  BINARY: 0x100, // ours: type STRING holding bytes, returned as a Buffer
} as const;

/** Bytes and flags of a serialized value. */
export interface SerializedValue {
  readonly data: Buffer;
  readonly flags: number;
}

/**
 * Turns values into bytes and flags and back. A custom serializer may use any flag bits except 0x70 (compression),
 * which the client sets and clears around it.
 */
export interface Serializer {
  serialize(value: unknown): SerializedValue;
  deserialize(data: Buffer, flags: number): unknown;
}

/** The built-in serializers by name. */
export type SerializerName = 'auto' | 'json' | 'string' | 'buffer';

function serializationError(message: string, cause?: unknown): MemcacheError {
  return new MemcacheError('MEMCACHED_ERR_SERIALIZATION', message, cause === undefined ? undefined : { cause });
}

function asBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function parseJson(data: Buffer): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw serializationError('stored value is not valid JSON', err);
  }
}

/**
 * The default: php-memcached's types. Strings (type 0), Buffers (type 0 + 0x100), safe integers and bigints
 * (1), other numbers (2), booleans (3), anything else as JSON (6); read back as the same JavaScript types
 * (integers beyond 2^53 as bigint).
 */
export const autoSerializer: Serializer = {
  serialize(value) {
    switch (typeof value) {
      case 'string':
        return { data: Buffer.from(value, 'utf8'), flags: ValueType.STRING };
      case 'number':
        return {
          data: Buffer.from(String(value), 'latin1'),
          flags: Number.isSafeInteger(value) ? ValueType.LONG : ValueType.DOUBLE,
        };
      case 'bigint':
        return { data: Buffer.from(value.toString(), 'latin1'), flags: ValueType.LONG };
      case 'boolean':
        return { data: Buffer.from(value ? '1' : '', 'latin1'), flags: ValueType.BOOL };
      case 'undefined':
      case 'function':
      case 'symbol':
        throw serializationError(`cannot store a value of type ${typeof value}`);
      default:
        if (value instanceof Uint8Array) return { data: asBuffer(value), flags: ValueType.STRING | ValueFlag.BINARY };
        return jsonSerializer.serialize(value);
    }
  },
  deserialize(data, flags) {
    switch (flags & ValueFlag.TYPE_MASK) {
      case ValueType.STRING:
        return flags & ValueFlag.BINARY ? data : data.toString('utf8');
      case ValueType.LONG: {
        const text = data.toString('latin1').trim();
        if (!/^-?[0-9]+$/.test(text)) throw serializationError('stored integer is not decimal');
        const n = Number(text);
        return Number.isSafeInteger(n) ? n : BigInt(text);
      }
      case ValueType.DOUBLE: {
        const n = Number(data.toString('latin1'));
        if (Number.isNaN(n) && data.toString('latin1') !== 'NaN')
          throw serializationError('stored double is not a number');
        return n;
      }
      case ValueType.BOOL:
        return data.length > 0 && !(data.length === 1 && data[0] === 0x30);
      case ValueType.JSON:
        return parseJson(data);
      default:
        throw serializationError(`stored value has type ${flags & ValueFlag.TYPE_MASK} (PHP-only format)`);
    }
  },
};

/** Everything as JSON (type 6). */
export const jsonSerializer: Serializer = {
  serialize(value) {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw serializationError('value cannot be serialized as JSON', err);
    }
    if (text === undefined) throw serializationError(`cannot store a value of type ${typeof value} as JSON`);
    return { data: Buffer.from(text, 'utf8'), flags: ValueType.JSON };
  },
  deserialize: (data) => parseJson(data),
};

/** Strings in and out (UTF-8, type 0); Buffers are stored as they are. */
export const stringSerializer: Serializer = {
  serialize(value) {
    if (value instanceof Uint8Array) return { data: asBuffer(value), flags: ValueType.STRING };
    if (typeof value !== 'string')
      throw serializationError(`the string serializer stores strings, not ${typeof value}`);
    return { data: Buffer.from(value, 'utf8'), flags: ValueType.STRING };
  },
  deserialize: (data) => data.toString('utf8'),
};

/** Buffers in and out (strings are stored as UTF-8); type 0. */
export const bufferSerializer: Serializer = {
  serialize(value) {
    if (value instanceof Uint8Array) return { data: asBuffer(value), flags: ValueType.STRING };
    if (typeof value === 'string') return { data: Buffer.from(value, 'utf8'), flags: ValueType.STRING };
    throw serializationError(`the buffer serializer stores Buffers and strings, not ${typeof value}`);
  },
  deserialize: (data) => data,
};

/** Resolves the `serializer` option. */
export function resolveSerializer(option: SerializerName | Serializer | undefined): Serializer {
  if (option === undefined || option === 'auto') return autoSerializer;
  if (option === 'json') return jsonSerializer;
  if (option === 'string') return stringSerializer;
  if (option === 'buffer') return bufferSerializer;
  if (
    typeof option === 'object' &&
    typeof option.serialize === 'function' &&
    typeof option.deserialize === 'function'
  ) {
    return option;
  }
  throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', `unknown serializer ${String(option)}`);
}

/** The `compression` option. */
export interface CompressionOptions {
  /** Values at least this large (serialized, in bytes) are compressed. Default 16384 (php-memcached: 2000). */
  threshold?: number;
  /** zlib level, 1–9 (default 6, zlib's). */
  level?: number;
  /**
   * The compressed form is kept only when it is this many times smaller (php-memcached's `compression_factor`,
   * default 1.3); otherwise the value is stored as it was.
   */
  factor?: number;
}

/** Compression settings after defaults. */
export interface Compression {
  readonly threshold: number;
  readonly level: number;
  readonly factor: number;
}

/** Resolves the `compression` option (`false`/undefined: off). */
export function resolveCompression(option: boolean | CompressionOptions | undefined): Compression | undefined {
  if (option === undefined || option === false) return undefined;
  const o = option === true ? {} : option;
  const threshold = o.threshold ?? 16384;
  const level = o.level ?? 6;
  const factor = o.factor ?? 1.3;
  if (!(threshold >= 0) || !Number.isInteger(level) || level < 1 || level > 9 || !(factor >= 1)) {
    throw new MemcacheError('MEMCACHED_ERR_INVALID_OPTION', 'invalid compression options');
  }
  return { threshold, level, factor };
}

/** Compresses `value` when the settings say so (php-memcached's payload layout, see the module comment). */
export function compress(value: SerializedValue, settings: Compression | undefined): SerializedValue {
  if (settings === undefined || value.data.length === 0 || value.data.length < settings.threshold) return value;
  if (value.flags & (ValueFlag.COMPRESSED | ValueFlag.ZLIB | ValueFlag.FASTLZ)) {
    throw serializationError('custom serializers must leave flag bits 0x70 to compression');
  }
  const deflated = deflateSync(value.data, { level: settings.level });
  if (value.data.length <= deflated.length * settings.factor) return value;
  const data = Buffer.allocUnsafe(4 + deflated.length);
  data.writeUInt32LE(value.data.length, 0);
  deflated.copy(data, 4);
  return { data, flags: value.flags | ValueFlag.COMPRESSED | ValueFlag.ZLIB };
}

/** Undoes {@link compress}: the raw bytes and the flags without the compression bits. */
export function decompress(data: Buffer, flags: number): SerializedValue {
  if ((flags & ValueFlag.COMPRESSED) === 0) return { data, flags };
  if (flags & ValueFlag.FASTLZ) throw serializationError('value is fastlz-compressed (not supported)');
  if (data.length < 4) throw serializationError('compressed value too short');
  const size = data.readUInt32LE(0);
  let out: Buffer;
  try {
    out = inflateSync(data.subarray(4), { maxOutputLength: Math.max(size, 1) });
  } catch (err) {
    throw serializationError('could not decompress the value', err);
  }
  if (out.length !== size) throw serializationError('decompressed size does not match');
  return { data: out, flags: flags & ~(ValueFlag.COMPRESSED | ValueFlag.ZLIB | ValueFlag.FASTLZ) };
}
