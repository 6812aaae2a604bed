/**
 * Checking and encoding what callers pass to the client and the worker: payloads, function names, unique ids,
 * times. Every refusal is a `GEARMAN_ERR_INVALID_ARGUMENT`.
 *
 * @module
 */

import { GearmanError } from './errors.ts';

/** A payload or result: bytes, or a string sent as UTF-8. */
export type Payload = Buffer | Uint8Array | string;

/** gearmand's `GEARMAN_FUNCTION_MAX_SIZE`. */
export const MAX_FUNCTION_NAME = 512;
/** gearmand's `GEARMAN_MAX_UNIQUE_SIZE`. */
export const MAX_UNIQUE = 64;

const EMPTY = Buffer.alloc(0);

/** A `GEARMAN_ERR_INVALID_ARGUMENT` with `message`. */
export function invalid(message: string): GearmanError {
  return new GearmanError('GEARMAN_ERR_INVALID_ARGUMENT', message);
}

/** A time option in ms: `fallback` when undefined, else a finite non-negative number. */
export function millis(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0) || value === Number.POSITIVE_INFINITY) {
    throw invalid(`${name} must be a non-negative number, got ${String(value)}`);
  }
  return value;
}

/** The bytes of a payload (no copy for a `Buffer`); `undefined` and `null` are empty. */
export function toBuffer(payload: Payload | undefined | null, what = 'a payload'): Buffer {
  if (payload === undefined || payload === null) return EMPTY;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (Buffer.isBuffer(payload)) return payload;
  if (payload instanceof Uint8Array) return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  throw invalid(`${what} must be a Buffer, a Uint8Array or a string`);
}

/** A function name as bytes: non-empty, no NUL, at most 512 bytes. */
export function functionNameBytes(name: string): Buffer {
  if (typeof name !== 'string' || name === '') throw invalid('the function name must be a non-empty string');
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.includes(0)) throw invalid('the function name must not contain NUL');
  if (bytes.length > MAX_FUNCTION_NAME) throw invalid(`the function name is longer than ${MAX_FUNCTION_NAME} bytes`);
  return bytes;
}

/** A unique id as bytes: no NUL, at most 64 bytes. */
export function uniqueBytes(unique: string): Buffer {
  if (typeof unique !== 'string') throw invalid('unique must be a string');
  const bytes = Buffer.from(unique, 'utf8');
  if (bytes.includes(0)) throw invalid('unique must not contain NUL');
  if (bytes.length > MAX_UNIQUE) throw invalid(`unique is longer than ${MAX_UNIQUE} bytes`);
  return bytes;
}
