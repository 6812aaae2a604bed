/**
 * An `express-session` store on memcached, without importing `express-session`: it implements the store
 * interface the middleware calls (`get`/`set`/`destroy`/`touch`, node-style callbacks, an `EventEmitter`) and, when
 * given the `session` module, borrows the base `Store`'s `regenerate`/`load`/`createSession` (which need its
 * `Session` and `Cookie` classes).
 *
 * @module
 */

import { EventEmitter } from 'node:events';
import type { MemcacheClient } from './client.ts';

/** A session as `express-session` hands it over: JSON-serializable, with an optional cookie. */
export interface SessionData {
  cookie?: { maxAge?: number | null; expires?: Date | string | null; originalMaxAge?: number | null };
  [field: string]: unknown;
}

/** Node-style callback. */
export type SessionCallback<T = void> = (err?: Error | null, value?: T) => void;

/** Options of {@link MemcacheSessionStore}. */
export interface MemcacheSessionStoreOptions {
  /** The client to store sessions with (its `prefix` applies too). */
  client: MemcacheClient;
  /** Key prefix of sessions (default `'sess:'`). */
  prefix?: string;
  /** TTL in seconds when the session's cookie has no expiry (default 86400). */
  ttl?: number;
  /** The `express-session` module (or anything with a `Store` class): its base methods are borrowed. */
  session?: { Store: { prototype: object } };
}

const BORROWED = ['regenerate', 'load', 'createSession'] as const;

/**
 * Sessions in memcached, for `express-session`.
 *
 * @example
 * import session from 'express-session';
 * import { MemcacheClient, MemcacheSessionStore } from 'sharenothing/memcached';
 *
 * const client = new MemcacheClient({ servers: ['127.0.0.1:11211'] });
 * app.use(session({ secret, resave: false, saveUninitialized: false,
 *   store: new MemcacheSessionStore({ client, session }) }));
 */
export class MemcacheSessionStore extends EventEmitter {
  readonly #client: MemcacheClient;
  readonly #prefix: string;
  readonly #ttl: number;

  constructor(options: MemcacheSessionStoreOptions) {
    super();
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'sess:';
    this.#ttl = options.ttl ?? 86400;
    const base = options.session?.Store.prototype as Record<string, unknown> | undefined;
    if (base !== undefined) {
      const self = this as unknown as Record<string, unknown>;
      for (const name of BORROWED)
        if (typeof base[name] === 'function' && self[name] === undefined) self[name] = base[name];
    }
  }

  #key(sid: string): string {
    return `${this.#prefix}${sid}`;
  }

  /** Seconds the session lives: its cookie's expiry, else the default TTL. */
  #ttlOf(session: SessionData | undefined): number {
    const cookie = session?.cookie;
    if (cookie?.expires) {
      const ms = new Date(cookie.expires).getTime() - Date.now();
      if (Number.isFinite(ms)) return Math.max(1, Math.ceil(ms / 1000));
    }
    if (typeof cookie?.maxAge === 'number') return Math.max(1, Math.ceil(cookie.maxAge / 1000));
    return this.#ttl;
  }

  #settle<T>(promise: Promise<T>, callback: SessionCallback<T> | undefined): Promise<T> {
    if (callback !== undefined) {
      promise.then(
        (value) => callback(null, value),
        (err: Error) => callback(err),
      );
    }
    return promise;
  }

  /** Reads a session; calls back with `null` when there is none. */
  get(sid: string, callback?: SessionCallback<SessionData | null>): Promise<SessionData | null> {
    const read = async (): Promise<SessionData | null> => {
      const raw = await this.#client.get<unknown>(this.#key(sid));
      if (raw === undefined || raw === null) return null;
      if (typeof raw === 'string') return JSON.parse(raw) as SessionData;
      if (Buffer.isBuffer(raw)) return JSON.parse(raw.toString('utf8')) as SessionData;
      return raw as SessionData;
    };
    return this.#settle(read(), callback);
  }

  /** Writes a session (as JSON text, whatever the client's serializer), expiring with its cookie. */
  set(sid: string, session: SessionData, callback?: SessionCallback): Promise<void> {
    const write = async () => {
      await this.#client.set(this.#key(sid), JSON.stringify(session), { ttl: this.#ttlOf(session) });
    };
    return this.#settle(write(), callback);
  }

  /** Deletes a session. */
  destroy(sid: string, callback?: SessionCallback): Promise<void> {
    const remove = async () => {
      await this.#client.delete(this.#key(sid));
    };
    return this.#settle(remove(), callback);
  }

  /** Extends a session's life without rewriting it (`rolling` sessions). */
  touch(sid: string, session: SessionData, callback?: SessionCallback): Promise<void> {
    const extend = async () => {
      await this.#client.touch(this.#key(sid), this.#ttlOf(session));
    };
    return this.#settle(extend(), callback);
  }
}
