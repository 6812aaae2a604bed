/**
 * Errors raised by the shared server infrastructure, each with a permanent `code`.
 *
 * The classes are generated from {@link NET_ERROR_CODES} so the table is the one place a code is defined.
 *
 * @module
 */

/** Every code `src/net` can raise, with the default message for it. */
export const NET_ERROR_CODES = {
  /** A worker thread posted `{ type: 'error' }`, threw, or exited before it posted `{ type: 'ready' }`. */
  NET_ERR_WORKER_START: 'worker thread failed to start',
  /** A worker thread did not post `{ type: 'ready' }` within `readyTimeoutMs`. */
  NET_ERR_WORKER_READY_TIMEOUT: 'worker thread did not become ready in time',
  /** `ThreadGroup.start()` was called with an invalid option. */
  NET_ERR_INVALID_OPTION: 'invalid option',
  /** A metric name, label name or label set is invalid, or a metric name is registered twice. */
  NET_ERR_INVALID_METRIC: 'invalid metric',
} as const;

/** One of the codes in {@link NET_ERROR_CODES}. */
export type NetErrorCode = keyof typeof NET_ERROR_CODES;

/** Base class of every error `src/net` raises; `code` never changes between releases. */
export class NetError extends Error {
  /** The permanent machine-readable code. */
  readonly code: NetErrorCode;

  /**
   * @param code one of {@link NET_ERROR_CODES}
   * @param message overrides the default message for the code
   * @param options standard `ErrorOptions` (`cause`)
   */
  constructor(code: NetErrorCode, message?: string, options?: ErrorOptions) {
    super(message ?? NET_ERROR_CODES[code], options);
    this.name = 'NetError';
    this.code = code;
  }
}
