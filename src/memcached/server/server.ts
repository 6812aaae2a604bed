/**
 * The memcached-compatible server: one shared store, `-t` serving threads on one port.
 *
 * @module
 */

import type { AddressInfo } from 'node:net';
import type { Logger } from '../../net/logger.ts';
import { silentLogger } from '../../net/logger.ts';
import { ThreadGroup } from '../../net/thread-group.ts';
import { createStoreShared, type ItemStore, type StoreConfig } from '../store/item-store.ts';
import { createThreadStatsBuffer } from '../store/thread-stats.ts';
import { CONN, ServingThread, type ServingThreadInit } from './serving-thread.ts';
import { defaultSettings, type MemcachedSettings, SLAB_PAGE_SIZE, validateSettings } from './settings.ts';

/** Options of {@link MemcachedServer}: any memcached setting, plus a logger. */
export type MemcachedServerOptions = Partial<MemcachedSettings> & { logger?: Logger };

/** Converts settings into the storage engine's configuration. */
export function storeConfigFrom(s: MemcachedSettings): StoreConfig {
  return {
    maxBytes: s.maxBytes,
    itemSizeMax: s.itemSizeMax,
    chunkSize: s.chunkSize,
    growthFactor: s.growthFactor,
    pageSize: SLAB_PAGE_SIZE,
    slabChunkMax: s.slabChunkMax,
    evictions: s.evictions,
    useCas: s.useCas,
    threads: s.threads,
  };
}

/**
 * A memcached 1.6-compatible server (text, meta and binary protocols).
 *
 * @example
 * const server = new MemcachedServer({ port: 0, listen: ['127.0.0.1'], threads: 1 });
 * const { port } = await server.listen();
 * // …
 * await server.close();
 */
export class MemcachedServer {
  readonly settings: MemcachedSettings;
  readonly #logger: Logger;
  #main: ServingThread | undefined;
  #group: ThreadGroup | undefined;
  #reclaimer: NodeJS.Timeout | undefined;
  #address: AddressInfo | undefined;
  #closing: Promise<void> | undefined;
  /** Called when a client sends `shutdown` (with `-A`); defaults to {@link close}. */
  onShutdown: (graceful: boolean) => void;

  constructor(options: MemcachedServerOptions = {}) {
    const { logger, ...rest } = options;
    this.settings = { ...defaultSettings(), ...rest };
    validateSettings(this.settings);
    this.#logger = logger ?? silentLogger;
    this.onShutdown = () => {
      void this.close();
    };
  }

  /** The bound address (after {@link listen}). */
  get address(): AddressInfo | undefined {
    return this.#address;
  }

  /** The main thread's view of the store (for tests and the admin listener). */
  get store(): ItemStore | undefined {
    return this.#main?.store;
  }

  /** A `stats` group of the running server as a name → value map (empty before {@link listen}). */
  stats(group = ''): Map<string, string> {
    return new Map(this.#main?.statsGroup(group, undefined) ?? []);
  }

  /** Binds the port from every serving thread and starts the background reclaimer. */
  async listen(): Promise<AddressInfo> {
    const s = this.settings;
    const shared = createStoreShared(storeConfigFrom(s));
    const threadStats = createThreadStatsBuffer(s.threads);
    const connCounters = new SharedArrayBuffer(4 * 8);
    Atomics.store(new Int32Array(connCounters), CONN.VERBOSITY, s.verbose);
    const init: ServingThreadInit = { settings: s, shared, threadStats, connCounters, index: 0, port: s.port };
    const main = new ServingThread(init);
    main.onShutdown = (graceful) => this.onShutdown(graceful);
    this.#main = main;
    const address = await main.listen();
    this.#address = address;
    if (s.threads > 1) {
      try {
        this.#group = await ThreadGroup.start({
          entry: new URL('./worker.ts', import.meta.url),
          count: s.threads - 1,
          // Serving threads allocate little on the JS heap (see src/cli/main.ts): a small young generation saves RSS.
          workerOptions: { resourceLimits: { maxYoungGenerationSizeMb: 3 } },
          logger: this.#logger,
          workerDataFor: ({ index }) => ({ ...init, index: index + 1, port: address.port }) satisfies ServingThreadInit,
          onMessage: (message) => {
            const m = message as { type?: string; graceful?: boolean };
            if (m.type === 'shutdown') this.onShutdown(m.graceful === true);
          },
        });
      } catch (err) {
        await main.close(0);
        throw err;
      }
    }
    // memcached's LRU crawler: reclaim expired items in small slices so no request waits long on the lock.
    this.#reclaimer = setInterval(() => {
      const store = main.store;
      store.tick();
      store.lock();
      try {
        store.reclaim(2000);
      } finally {
        store.unlock();
      }
    }, 1000);
    this.#reclaimer.unref();
    this.#logger.info('memcached listening', { address: address.address, port: address.port, threads: s.threads });
    return address;
  }

  /** Stops accepting, finishes parsed commands, closes connections (destroying any left after the deadline). */
  close(deadlineMs = 5000): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#reclaimer) clearInterval(this.#reclaimer);
      await Promise.all([this.#main?.close(deadlineMs), this.#group?.close(deadlineMs)]);
    })();
    return this.#closing;
  }
}
