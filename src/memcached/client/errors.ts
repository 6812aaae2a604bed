/**
 * Errors raised by the memcached client, each with a permanent `code`.
 *
 * {@link MEMCACHE_ERROR_CODES} is the one place a code is defined: the message, what it means and how to fix it.
 * `docs/errors.md` is the same table in prose, and a test keeps the two in step.
 *
 * @module
 */

/** One row of {@link MEMCACHE_ERROR_CODES}. */
export interface MemcacheErrorInfo {
  /** The default message. */
  readonly message: string;
  /** What happened. */
  readonly meaning: string;
  /** What to do about it. */
  readonly fix: string;
  /**
   * True when the request never reached the server, so `failover` sends it to the next server on the ring whatever
   * the command was.
   */
  readonly failover?: boolean;
}

/** Every code the client can raise. */
export const MEMCACHE_ERROR_CODES = {
  MEMCACHED_ERR_TIMEOUT: {
    message: 'operation timed out',
    meaning:
      'the server did not answer within `timeout` ms (the time spent waiting for a connection counts). A request ' +
      'that was already written also closes its connection, because the position in the reply stream is lost',
    fix: 'look for an overloaded or stuck server, a network problem, or raise `timeout`',
  },
  MEMCACHED_ERR_CONNECT_TIMEOUT: {
    message: 'connect timed out',
    meaning:
      'the TCP connection (plus the TLS handshake and SASL authentication) did not complete in `connectTimeout` ms',
    fix: 'check that the server is up and reachable (firewalls silently drop packets); raise `connectTimeout`',
    failover: true,
  },
  MEMCACHED_ERR_CONNECT: {
    message: 'could not connect',
    meaning: 'the connection failed at once: refused, unreachable, or the host name did not resolve (see `cause`)',
    fix: 'check the server address and that memcached is running',
    failover: true,
  },
  MEMCACHED_ERR_CONNECTION_CLOSED: {
    message: 'connection closed',
    meaning:
      'the connection was closed or reset while the request was in flight (server killed or restarted, another ' +
      "request's timeout, `destroy()`); the command may or may not have run",
    fix: 'retry if the command is idempotent; look at why the server went away',
  },
  MEMCACHED_ERR_SERVER_DEAD: {
    message: 'server marked dead',
    meaning:
      'the server failed `failureLimit` times in a row and is skipped for `retryTimeout` ms; requests for it fail ' +
      'at once instead of waiting',
    fix: 'repair the server, or turn on `failover` so its keys go to the next server on the ring meanwhile',
    failover: true,
  },
  MEMCACHED_ERR_NO_SERVERS: {
    message: 'no servers available',
    meaning: 'the client has no servers, or (with `failover`) every server is marked dead',
    fix: 'configure `servers`; check that at least one server is up',
  },
  MEMCACHED_ERR_QUEUE_FULL: {
    message: 'request queue full',
    meaning: 'the server already has `maxQueue` requests queued or in flight, so the request was refused',
    fix: 'slow down, or raise `maxQueue` / `connectionsPerServer`; a slow server is the usual cause',
  },
  MEMCACHED_ERR_ABORTED: {
    message: 'operation aborted',
    meaning: "the request's `AbortSignal` fired before the reply arrived",
    fix: 'none: this is what was asked for (the reply, if one comes, is read and dropped)',
  },
  MEMCACHED_ERR_SERVER_ERROR: {
    message: 'server error',
    meaning: 'the server answered `SERVER_ERROR …` (out of memory, …) or an equivalent binary status',
    fix: 'read the message; usually the server is out of memory or misconfigured',
  },
  MEMCACHED_ERR_CLIENT_ERROR: {
    message: 'client error',
    meaning: 'the server answered `CLIENT_ERROR …`: it found the request malformed',
    fix: 'report a bug with the message: the client validates what it sends',
  },
  MEMCACHED_ERR_UNKNOWN_COMMAND: {
    message: 'unknown command',
    meaning: 'the server answered `ERROR` (or binary 0x0081): it does not know the command',
    fix: 'use memcached 1.6 or later for meta commands (`getOrSet`, `getItem`, `incr` with `initial`)',
  },
  MEMCACHED_ERR_PROTOCOL: {
    message: 'protocol error',
    meaning: 'the server sent bytes that are not a memcached reply, or a reply the request did not expect',
    fix: 'check that the address is a memcached server (not another service) and that TLS settings match',
  },
  MEMCACHED_ERR_BAD_KEY: {
    message: 'invalid key',
    meaning: 'the key (prefix included) is empty, longer than 250 bytes, or holds a space or a control character',
    fix: 'hash long keys (e.g. sha1 of the key), and keep spaces and control characters out of keys',
  },
  MEMCACHED_ERR_VALUE_TOO_LARGE: {
    message: 'value too large',
    meaning: 'the value is larger than `maxValueSize` or than the server item size limit (memcached `-I`)',
    fix: 'store less, turn on `compression`, or raise the limits on both sides',
  },
  MEMCACHED_ERR_AUTH: {
    message: 'authentication failed',
    meaning: 'SASL authentication was refused, or the server demands authentication the client was not given',
    fix: 'check `sasl.username`/`sasl.password` and the server’s SASL configuration',
    failover: true,
  },
  MEMCACHED_ERR_NOT_NUMERIC: {
    message: 'value is not numeric',
    meaning: 'incr/decr on a value that is not a decimal 64-bit unsigned integer',
    fix: 'store counters as decimal strings or numbers (`set(key, 0)`), not JSON objects',
  },
  MEMCACHED_ERR_CLOSED: {
    message: 'client closed',
    meaning: 'the client was closed (`close()`/`destroy()`) before or while the request was made',
    fix: 'do not use a client after closing it',
  },
  MEMCACHED_ERR_SERIALIZATION: {
    message: 'could not serialize or deserialize the value',
    meaning:
      'the serializer threw, the stored flags name a format this client cannot read (e.g. fastlz compression), ' +
      'or decompression failed',
    fix: 'use the same serializer and compression settings in every client that shares the keys',
  },
  MEMCACHED_ERR_INVALID_OPTION: {
    message: 'invalid option',
    meaning: 'an option or argument given to the client is invalid (a server address, a TTL, a delta, …)',
    fix: 'correct the option; the message says which one',
  },
} as const satisfies Record<string, MemcacheErrorInfo>;

/** One of the codes in {@link MEMCACHE_ERROR_CODES}. */
export type MemcacheErrorCode = keyof typeof MEMCACHE_ERROR_CODES;

/** Options of {@link MemcacheError}. */
export interface MemcacheErrorOptions extends ErrorOptions {
  /** The server (`host:port`) the error concerns. */
  server?: string;
}

/**
 * Base class of every error the client raises; `code` never changes between releases.
 *
 * @example
 * try {
 *   await client.get('k');
 * } catch (err) {
 *   if (err instanceof MemcacheError && err.code === 'MEMCACHED_ERR_TIMEOUT') retryLater();
 * }
 */
export class MemcacheError extends Error {
  /** The permanent machine-readable code. */
  readonly code: MemcacheErrorCode;
  /** The server (`host:port`) the error concerns, when there is one. */
  readonly server: string | undefined;

  /**
   * @param code one of {@link MEMCACHE_ERROR_CODES}
   * @param message overrides the default message for the code
   * @param options `cause` and `server`
   */
  constructor(code: MemcacheErrorCode, message?: string, options?: MemcacheErrorOptions) {
    const text = message ?? MEMCACHE_ERROR_CODES[code].message;
    super(options?.server === undefined ? text : `${text} (${options.server})`, options);
    this.name = 'MemcacheError';
    this.code = code;
    this.server = options?.server;
  }

  /** True when the request never reached the server, so `failover` may send it to another one. */
  get failoverSafe(): boolean {
    return (MEMCACHE_ERROR_CODES[this.code] as MemcacheErrorInfo).failover === true;
  }
}

/** True when `err` is a {@link MemcacheError}, optionally with the given code. */
export function isMemcacheError(err: unknown, code?: MemcacheErrorCode): err is MemcacheError {
  return err instanceof MemcacheError && (code === undefined || err.code === code);
}
