/**
 * The memcached-compatible server: `sharenothing/memcached/server`.
 *
 * @module
 * @example
 * import { MemcachedServer } from 'sharenothing/memcached/server';
 * const server = new MemcachedServer({ port: 11211, listen: ['127.0.0.1'], threads: 2, maxBytes: 256 * 1024 * 1024 });
 * await server.listen();
 * process.on('SIGTERM', () => server.close());
 */

export type { GlobalItemStats, SlabClassStats, StoreConfig } from '../store/item-store.ts';
export { MemcachedServer, type MemcachedServerOptions } from './server.ts';
export { MEMCACHED_VERSION } from './serving-thread.ts';
export {
  defaultSettings,
  type MemcachedSettings,
  parseMemcachedArgs,
  SettingsError,
} from './settings.ts';
