/**
 * A tiny structured logger writing NDJSON lines that pino tooling (`pino-pretty`, log shippers) reads as is.
 *
 * ```
 * {"level":30,"time":1718000000000,"name":"memcached","msg":"listening","port":11211}
 * ```
 *
 * Only daemons log; libraries publish `node:diagnostics_channel` events instead (see STYLE.md).
 *
 * @module
 */

import type { Writable } from 'node:stream';

/** pino's numeric level values; `silent` disables every method. */
export const LOG_LEVELS = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  silent: Number.POSITIVE_INFINITY,
} as const;

/** A level name accepted by {@link createLogger} and `logger.level`. */
export type LogLevel = keyof typeof LOG_LEVELS;

/** One log method: a message and optional fields merged into the line. */
export type LogMethod = (msg: string, fields?: Record<string, unknown>) => void;

/** The logger interface every daemon part takes. */
export interface Logger {
  /** Something failed and needs attention. */
  error: LogMethod;
  /** Something unexpected that the process handled. */
  warn: LogMethod;
  /** Lifecycle: listening, closing, configuration. */
  info: LogMethod;
  /** Per-connection detail. */
  debug: LogMethod;
  /** Per-command detail; never keys or values at levels above this. */
  trace: LogMethod;
  /** Returns a logger whose every line also carries `fields`; it starts at this logger's level. */
  child(fields: Record<string, unknown>): Logger;
  /** The current threshold; lines below it are dropped before any formatting. */
  level: LogLevel;
  /** Whether a line at `level` would be written; guard expensive field construction with it. */
  isLevelEnabled(level: LogLevel): boolean;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Threshold (default `info`). */
  level?: LogLevel;
  /** Destination (default `process.stdout`). */
  stream?: Writable;
  /** Written as `name` on every line. */
  name?: string;
  /** Fields written on every line. */
  base?: Record<string, unknown>;
}

/** The shape an `Error` takes in a line. */
export interface SerializedError {
  type: string;
  message: string;
  code?: unknown;
  stack?: string;
  cause?: unknown;
}

/** Converts an `Error` (and its `cause` chain) into plain JSON fields. */
export function serializeError(err: Error, depth = 0): SerializedError {
  const out: SerializedError = { type: err.name || err.constructor?.name || 'Error', message: err.message };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (err.stack !== undefined) out.stack = err.stack;
  // Bounded: a cause cycle must not recurse forever.
  if (err.cause !== undefined && depth < 4) {
    out.cause = err.cause instanceof Error ? serializeError(err.cause, depth + 1) : err.cause;
  }
  return out;
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return serializeError(value);
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** Serializes `fields` to `,"a":1,"b":2` (no braces) so lines are built by concatenation. */
function fieldsChunk(fields: Record<string, unknown> | undefined): string {
  if (fields === undefined) return '';
  let json: string;
  try {
    json = JSON.stringify(fields, replacer);
  } catch (err) {
    // Circular structures and throwing getters must not take the process down with them.
    return `,"logError":${JSON.stringify(String((err as Error).message))}`;
  }
  return json.length > 2 ? `,${json.slice(1, -1)}` : '';
}

// A stream that has failed (EPIPE when the reader of stdout went away) is never written again.
const brokenStreams = new WeakSet<Writable>();
const guardedStreams = new WeakSet<Writable>();

function guard(stream: Writable): void {
  if (guardedStreams.has(stream)) return;
  guardedStreams.add(stream);
  // Without a listener an async EPIPE would become an uncaught exception.
  stream.on('error', () => brokenStreams.add(stream));
}

function checkLevel(level: string): LogLevel {
  if (!Object.hasOwn(LOG_LEVELS, level)) throw new TypeError(`unknown log level: ${level}`);
  return level as LogLevel;
}

class NdjsonLogger implements Logger {
  #stream: Writable;
  #prefixName: string;
  #bindings: string;
  #level: LogLevel;
  #threshold: number;

  constructor(stream: Writable, prefixName: string, bindings: string, level: LogLevel) {
    this.#stream = stream;
    this.#prefixName = prefixName;
    this.#bindings = bindings;
    this.#level = level;
    this.#threshold = LOG_LEVELS[level];
  }

  get level(): LogLevel {
    return this.#level;
  }

  set level(level: LogLevel) {
    this.#level = checkLevel(level);
    this.#threshold = LOG_LEVELS[level];
  }

  isLevelEnabled(level: LogLevel): boolean {
    return LOG_LEVELS[level] >= this.#threshold;
  }

  child(fields: Record<string, unknown>): Logger {
    return new NdjsonLogger(this.#stream, this.#prefixName, this.#bindings + fieldsChunk(fields), this.#level);
  }

  error(msg: string, fields?: Record<string, unknown>): void {
    if (this.#threshold <= 50) this.#write(50, msg, fields);
  }

  warn(msg: string, fields?: Record<string, unknown>): void {
    if (this.#threshold <= 40) this.#write(40, msg, fields);
  }

  info(msg: string, fields?: Record<string, unknown>): void {
    if (this.#threshold <= 30) this.#write(30, msg, fields);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    if (this.#threshold <= 20) this.#write(20, msg, fields);
  }

  trace(msg: string, fields?: Record<string, unknown>): void {
    if (this.#threshold <= 10) this.#write(10, msg, fields);
  }

  #write(level: number, msg: string, fields: Record<string, unknown> | undefined): void {
    const stream = this.#stream;
    if (brokenStreams.has(stream) || stream.destroyed || stream.writableEnded) return;
    const line = `{"level":${level},"time":${Date.now()}${this.#prefixName},"msg":${JSON.stringify(String(msg))}${this.#bindings}${fieldsChunk(fields)}}\n`;
    try {
      stream.write(line);
    } catch {
      // A synchronous write failure (closed fd) is as final as an async one.
      brokenStreams.add(stream);
    }
  }
}

/**
 * Creates a logger writing one JSON object per line.
 *
 * @example
 * const logger = createLogger({ level: 'info', name: 'memcached' });
 * logger.info('listening', { port: 11211 });
 * logger.child({ conn: 7 }).debug('closed', { err });
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stdout;
  guard(stream);
  const prefixName = options.name === undefined ? '' : `,"name":${JSON.stringify(options.name)}`;
  return new NdjsonLogger(stream, prefixName, fieldsChunk(options.base), checkLevel(options.level ?? 'info'));
}

function noop(): void {}

/** A logger that discards everything; the default wherever a logger is optional. */
export const silentLogger: Logger = Object.freeze({
  error: noop,
  warn: noop,
  info: noop,
  debug: noop,
  trace: noop,
  child: () => silentLogger,
  get level(): LogLevel {
    return 'silent';
  },
  set level(_level: LogLevel) {},
  isLevelEnabled: () => false,
});
