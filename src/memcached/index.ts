/**
 * memcached for Node: `sharenothing/memcached`. Client-side code only — the server lives in
 * `sharenothing/memcached/server`, so importing this never loads it.
 *
 * @module
 * @example
 * import { KEY_MAX_LENGTH } from 'sharenothing/memcached';
 */

export { KEY_MAX_LENGTH } from './protocol/limits.ts';
