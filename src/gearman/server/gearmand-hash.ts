/**
 * gearmand's hash (`_server_job_hash` / `_server_function_hash`, Bob Jenkins' one-at-a-time over *signed* chars).
 *
 * gearmand lists functions (`status`, `prioritystatus`) and jobs (`show jobs`, `show unique jobs`) by walking its
 * hash tables bucket by bucket, each bucket newest first. We keep our tables in `Map`s but sort the listings the same
 * way, so the admin replies come out in gearmand's order, byte for byte.
 *
 * @module
 */

/** Number of buckets of gearmand's function table (`GEARMAND_DEFAULT_HASH_SIZE`). */
export const FUNCTION_BUCKETS = 991;

/** Default number of buckets of gearmand's job tables (`--hashtable-buckets`). */
export const DEFAULT_JOB_BUCKETS = 991;

/** The hash of a latin1 string (one char per byte), as gearmand computes it over the same bytes. */
export function gearmandHash(bytes: string | Uint8Array): number {
  let value = 0;
  const n = bytes.length;
  for (let i = 0; i < n; i++) {
    const byte = typeof bytes === 'string' ? bytes.charCodeAt(i) & 0xff : bytes[i]!;
    // `(int32_t)*ptr` with a signed `char`: bytes >= 0x80 count as negative.
    value = (value + ((byte << 24) >> 24)) | 0;
    value = (value + (value << 10)) | 0;
    value ^= value >> 6;
  }
  value = (value + (value << 3)) | 0;
  value ^= value >> 11;
  value = (value + (value << 15)) | 0;
  return value === 0 ? 1 : value >>> 0;
}
