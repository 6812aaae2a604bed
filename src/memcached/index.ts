/**
 * memcached for Node: `sharenothing/memcached`. Client-side code only — the server lives in
 * `sharenothing/memcached/server`, so importing this never loads it.
 *
 * @module
 * @example
 * import { MemcacheClient } from 'sharenothing/memcached';
 *
 * const cache = new MemcacheClient({ servers: ['10.0.0.1:11211', '10.0.0.2:11211:2'], prefix: 'app:' });
 * await cache.set('user:42', { name: 'Ada' }, { ttl: 300 });
 * const user = await cache.get<{ name: string }>('user:42'); // undefined on a miss
 * const hits = await cache.getMulti(['user:1', 'user:2']); // one round trip per server
 * const page = await cache.getOrSet('page:/', () => render('/'), { ttl: 60, staleTtl: 30 });
 * await cache.close();
 */

export {
  type CallOptions,
  type CasValue,
  type CounterOptions,
  type DeleteOptions,
  type FetchHandle,
  type GetMultiOptions,
  type GetOptions,
  type GetOrSetOptions,
  type ItemInfo,
  MemcacheClient,
  type MemcacheClientOptions,
  MemcacheNamespace,
  parseServer,
  type ServerSpec,
  type SetOptions,
} from './client/client.ts';
export {
  COMMAND_CHANNEL,
  type CommandEvent,
  SERVER_CHANNEL,
  type ServerEvent,
} from './client/diagnostics.ts';
export {
  isMemcacheError,
  MEMCACHE_ERROR_CODES,
  MemcacheError,
  type MemcacheErrorCode,
  type MemcacheErrorInfo,
} from './client/errors.ts';
export {
  createDistribution,
  type Distribution,
  type DistributionMode,
  type DistributionServer,
  type ModuloHash,
} from './client/hash-ring.ts';
export {
  autoSerializer,
  bufferSerializer,
  type CompressionOptions,
  jsonSerializer,
  type SerializedValue,
  type Serializer,
  type SerializerName,
  stringSerializer,
  ValueFlag,
  ValueType,
} from './client/serializer.ts';
export {
  MemcacheSessionStore,
  type MemcacheSessionStoreOptions,
  type SessionCallback,
  type SessionData,
} from './client/session-store.ts';
export { KEY_MAX_LENGTH } from './protocol/limits.ts';
