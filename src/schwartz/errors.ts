/**
 * Errors raised by the TheSchwartz client and worker, each with a permanent `code`.
 *
 * {@link SCHWARTZ_ERROR_CODES} is the one place a code is defined: the message, what it means and how to fix it.
 * `docs/errors.md` is the same table in prose, and a test keeps the two in step. Driver errors (a refused statement,
 * a lost connection) are not wrapped when they reach the caller directly; they are the `cause` of these.
 *
 * @module
 */

/** One row of {@link SCHWARTZ_ERROR_CODES}. */
export interface SchwartzErrorInfo {
  /** The default message. */
  readonly message: string;
  /** What happened. */
  readonly meaning: string;
  /** What to do about it. */
  readonly fix: string;
}

/** Every code the client and the worker can raise. */
export const SCHWARTZ_ERROR_CODES = {
  SCHWARTZ_ERR_NO_DATABASES: {
    message: 'no database accepted the job',
    meaning:
      'every configured database failed the insert or is marked dead (it failed within the last `retrySeconds`). ' +
      'The job was not queued; `cause` is the last database error. TheSchwartz returns undef here, the same as for ' +
      "a duplicate `uniqkey`: the client tells the two apart. For a recurring job, its schedule's one database " +
      'failed (the scheduler retries)',
    fix: 'check that the databases are reachable and hold the schema (`client.ensureSchema()`); retry later',
  },
  SCHWARTZ_ERR_UNKNOWN_DATABASE: {
    message: 'unknown database',
    meaning:
      'a job handle (or `insertWith`) names a database this client is not configured with. A handle starts with the ' +
      'MD5 of the DSN string and user as configured, so the same database configured with another DSN spelling or ' +
      'user is a different database to TheSchwartz',
    fix: 'configure the database with exactly the DSN string and user the handle was made with',
  },
  SCHWARTZ_ERR_BAD_HANDLE: {
    message: 'malformed job handle',
    meaning: 'a handle string is not `<32 hex digits>-<jobid>`',
    fix: 'pass the string `JobHandle.toString()` (or Perl `$handle->as_string`) returned',
  },
  SCHWARTZ_ERR_INVALID_ARGUMENT: {
    message: 'invalid argument',
    meaning:
      'an option or job field is invalid: a funcname, `uniqkey` or `coalesce` longer than 255 characters, a ' +
      'priority or time out of its column range, an unknown ability, a table prefix with characters other than ' +
      'letters, digits and `_`, `floor` without `prioritize`. Nothing was written and no database was marked dead',
    fix: 'correct the value; the message says which one',
  },
  SCHWARTZ_ERR_LEASE_LOST: {
    message: 'job lease lost',
    meaning:
      "the job's row no longer carries this worker's `grabbed_until`: the lease (`grabFor`) ran out and another " +
      'worker grabbed the job, or the row was changed or removed by hand. The outcome was not written (the other ' +
      "worker's counts); while the handler runs, its `job.signal` is aborted with this error",
    fix: 'raise `grabFor`, keep lease renewal on, and stop work when `job.signal` aborts',
  },
  SCHWARTZ_ERR_CLOSED: {
    message: 'worker closed',
    meaning:
      'a worker method (`work()`, `workOnce()`, `workUntilDone()`, a grab) was called after `close()` or ' +
      '`destroy()`, or `scheduler.run()` after `scheduler.close()`',
    fix: 'create a new worker (or scheduler)',
  },
  SCHWARTZ_ERR_DESTROYED: {
    message: 'worker destroyed',
    meaning:
      'the `job.signal` reason when `worker.destroy()` stopped a running job: the worker writes no outcome, so the ' +
      'job runs again once its lease ends',
    fix: 'none: this is what was asked for; use `close()` to let running jobs finish',
  },
} as const satisfies Record<string, SchwartzErrorInfo>;

/** One of the codes in {@link SCHWARTZ_ERROR_CODES}. */
export type SchwartzErrorCode = keyof typeof SCHWARTZ_ERROR_CODES;

/**
 * Base class of every error the client and worker raise; `code` never changes between releases.
 *
 * @example
 * try {
 *   await client.insert('MyApp::Resize', arg);
 * } catch (err) {
 *   if (err instanceof SchwartzError && err.code === 'SCHWARTZ_ERR_NO_DATABASES') retryLater();
 * }
 */
export class SchwartzError extends Error {
  /** The permanent machine-readable code. */
  readonly code: SchwartzErrorCode;

  /**
   * @param code one of {@link SCHWARTZ_ERROR_CODES}
   * @param message overrides the default message for the code
   * @param options `cause`
   */
  constructor(code: SchwartzErrorCode, message?: string, options?: ErrorOptions) {
    super(message ?? SCHWARTZ_ERROR_CODES[code].message, options);
    this.name = 'SchwartzError';
    this.code = code;
  }
}

/** True when `err` is a {@link SchwartzError}, optionally with the given code. */
export function isSchwartzError(err: unknown, code?: SchwartzErrorCode): err is SchwartzError {
  return err instanceof SchwartzError && (code === undefined || err.code === code);
}

/** Shorthand for an {@link SchwartzError} with code `SCHWARTZ_ERR_INVALID_ARGUMENT`. */
export function invalidArgument(message: string): SchwartzError {
  return new SchwartzError('SCHWARTZ_ERR_INVALID_ARGUMENT', message);
}
