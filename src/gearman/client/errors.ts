/**
 * Errors raised by the gearman client and worker, each with a permanent `code`.
 *
 * {@link GEARMAN_ERROR_CODES} is the one place a code is defined: the message, what it means and how to fix it.
 * `docs/errors.md` is the same table in prose, and a test keeps the two in step.
 *
 * @module
 */

/** One row of {@link GEARMAN_ERROR_CODES}. */
export interface GearmanErrorInfo {
  /** The default message. */
  readonly message: string;
  /** What happened. */
  readonly meaning: string;
  /** What to do about it. */
  readonly fix: string;
}

/** Every code the client and the worker can raise. */
export const GEARMAN_ERROR_CODES = {
  GEARMAN_ERR_TIMEOUT: {
    message: 'timed out',
    meaning:
      'no JOB_CREATED within `submitTimeout` ms, no result within `resultTimeout` ms of the submission, or no answer ' +
      'to a status request in time. A job that timed out after JOB_CREATED (`handle` is set) may still run; its ' +
      "result is dropped. In a worker it is the `signal` reason when the function's `timeout` passed",
    fix: 'look for a slow or stuck server or worker, or raise the timeout; use background jobs for long work',
  },
  GEARMAN_ERR_CONNECT: {
    message: 'could not connect',
    meaning:
      'the connection to a job server was refused, failed, or did not complete in `connectTimeout` ms; the request ' +
      'never reached it. The server is skipped for `retryTimeout` ms and submissions go to the next server',
    fix: 'check the address and that the job server is running',
  },
  GEARMAN_ERR_CONNECTION: {
    message: 'connection lost',
    meaning:
      'the connection closed while the request was in flight (server stopped or restarted, network). A foreground ' +
      'job may go on running on the server but its result is lost; a submission not yet answered may or may not ' +
      'have been queued',
    fix: 'resubmit; with the same `unique` the server joins a job that still exists instead of running it twice',
  },
  GEARMAN_ERR_NO_SERVERS: {
    message: 'no job servers available',
    meaning:
      'the client has no servers, or every server is marked dead (a connection failed within the last ' +
      '`retryTimeout` ms)',
    fix: 'configure `servers`; check that at least one job server is up',
  },
  GEARMAN_ERR_QUEUE_FULL: {
    message: 'request queue full',
    meaning: '`maxQueue` requests already wait for an answer from that server, so the request was refused',
    fix: 'slow down or raise `maxQueue`; a slow or stuck server is the usual cause',
  },
  GEARMAN_ERR_WORK_FAIL: {
    message: 'job failed',
    meaning:
      'the job failed: the worker sent WORK_FAIL, or threw while the client had `exceptions` off (the server then ' +
      'turns WORK_EXCEPTION into WORK_FAIL), or the server gave up on it (`--job-retries` reached, `cancel job`)',
    fix: "read the worker's logs; turn `exceptions` on to receive the worker's message",
  },
  GEARMAN_ERR_WORK_EXCEPTION: {
    message: 'job threw',
    meaning:
      'the worker failed the job with WORK_EXCEPTION (clients with `exceptions` on); `data` holds what it sent ' +
      '(our worker sends the error message)',
    fix: "read the message or `data`, then fix the worker or the job's payload",
  },
  GEARMAN_ERR_SERVER_ERROR: {
    message: 'server error',
    meaning:
      'the server answered ERROR; `serverCode` holds its code (`QUEUE_ERROR` when `maxqueue` is reached, ' +
      '`ARGUMENT_TOO_LARGE`, `UNKNOWN_OPTION`, …)',
    fix: "read the message; for `QUEUE_ERROR` raise the function's `maxqueue` or add workers",
  },
  GEARMAN_ERR_PROTOCOL: {
    message: 'protocol error',
    meaning:
      'the server sent bytes that are not a gearman response, or a response nobody asked for; the connection is ' +
      'closed and everything in flight on it fails',
    fix: 'check that the address is a gearman job server (not another service)',
  },
  GEARMAN_ERR_ABORTED: {
    message: 'aborted',
    meaning: "the call's `AbortSignal` fired first; a job already submitted goes on running on the server",
    fix: 'none: this is what was asked for',
  },
  GEARMAN_ERR_CLOSED: {
    message: 'closed',
    meaning: 'the client or worker was closed (`close()`/`destroy()`) before or while the call was made',
    fix: 'do not use a client or worker after closing it',
  },
  GEARMAN_ERR_INVALID_ARGUMENT: {
    message: 'invalid argument',
    meaning:
      'an option or argument is invalid: a server address, a function name that is empty or holds a NUL, a unique ' +
      'id longer than 64 bytes, `runAt` with a priority, …',
    fix: 'correct it; the message says which one',
  },
} as const satisfies Record<string, GearmanErrorInfo>;

/** One of the codes in {@link GEARMAN_ERROR_CODES}. */
export type GearmanErrorCode = keyof typeof GEARMAN_ERROR_CODES;

/** Options of {@link GearmanError}. */
export interface GearmanErrorOptions extends ErrorOptions {
  /** The job server (`host:port`) the error concerns. */
  server?: string | undefined;
  /** The job handle, when the server had given one. */
  handle?: string | undefined;
  /** The code of an ERROR packet (`QUEUE_ERROR`, …), for `GEARMAN_ERR_SERVER_ERROR`. */
  serverCode?: string | undefined;
  /** The WORK_EXCEPTION data, for `GEARMAN_ERR_WORK_EXCEPTION`. */
  data?: Buffer | undefined;
}

/**
 * Base class of every error the gearman client and worker raise; `code` never changes between releases.
 *
 * @example
 * try {
 *   await client.submitJob('resize', image);
 * } catch (err) {
 *   if (err instanceof GearmanError && err.code === 'GEARMAN_ERR_WORK_EXCEPTION') console.error(err.message);
 * }
 */
export class GearmanError extends Error {
  /** The permanent machine-readable code. */
  readonly code: GearmanErrorCode;
  /** The job server (`host:port`) the error concerns, when there is one. */
  readonly server: string | undefined;
  /** The job handle, when the server had given one. */
  readonly handle: string | undefined;
  /** The code of the server's ERROR packet (`GEARMAN_ERR_SERVER_ERROR`). */
  readonly serverCode: string | undefined;
  /** What the worker sent with WORK_EXCEPTION (`GEARMAN_ERR_WORK_EXCEPTION`). */
  readonly data: Buffer | undefined;

  /**
   * @param code one of {@link GEARMAN_ERROR_CODES}
   * @param message overrides the default message for the code
   * @param options `cause`, `server`, `handle`, `serverCode`, `data`
   */
  constructor(code: GearmanErrorCode, message?: string, options?: GearmanErrorOptions) {
    const text = message ?? GEARMAN_ERROR_CODES[code].message;
    super(options?.server === undefined ? text : `${text} (${options.server})`, options);
    this.name = 'GearmanError';
    this.code = code;
    this.server = options?.server;
    this.handle = options?.handle;
    this.serverCode = options?.serverCode;
    this.data = options?.data;
  }
}

/** True when `err` is a {@link GearmanError}, optionally with the given code. */
export function isGearmanError(err: unknown, code?: GearmanErrorCode): err is GearmanError {
  return err instanceof GearmanError && (code === undefined || err.code === code);
}
