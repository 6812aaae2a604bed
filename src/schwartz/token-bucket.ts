/**
 * The token bucket behind the worker's rate limits: `jobs` tokens per `perMs` milliseconds, at most `burst` saved
 * up, one taken per job grabbed. Time is `performance.now()` (monotonic: a clock step does not open the gate).
 *
 * ```
 *  tokens ──▶ min(burst, tokens + elapsed × jobs / perMs)     refilled lazily, on each look
 *  grab   ──▶ only while tokens ≥ 1, then tokens − 1 (each job as it is won, so one search counts its own)
 * ```
 *
 * @module
 */

import { performance } from 'node:perf_hooks';
import { invalidArgument } from './errors.ts';

/** A rate: at most `jobs` per `perMs` milliseconds, with up to `burst` (default `jobs`) at once after a pause. */
export interface RateLimit {
  /** Jobs allowed per window: a positive integer. */
  jobs: number;
  /** The window in milliseconds (`{ jobs: 10, perMs: 1000 }` is 10 a second). */
  perMs: number;
  /** Tokens saved up while idle (default `jobs`): how many may start at once after a quiet spell. */
  burst?: number;
}

/** A token bucket for one {@link RateLimit}; full when made. */
export class TokenBucket {
  readonly #perToken: number;
  readonly #burst: number;
  #tokens: number;
  #at: number;

  constructor(limit: RateLimit, name = 'rateLimit') {
    if (limit === null || typeof limit !== 'object') throw invalidArgument(`${name} must be { jobs, perMs }`);
    const { jobs, perMs, burst = jobs } = limit;
    if (!Number.isInteger(jobs) || jobs < 1) throw invalidArgument(`${name}.jobs must be a positive integer`);
    if (typeof perMs !== 'number' || !(perMs > 0) || !Number.isFinite(perMs)) {
      throw invalidArgument(`${name}.perMs must be a positive number of milliseconds`);
    }
    if (!Number.isInteger(burst) || burst < 1) throw invalidArgument(`${name}.burst must be a positive integer`);
    this.#perToken = perMs / jobs;
    this.#burst = burst;
    this.#tokens = burst;
    this.#at = performance.now();
  }

  /** Tokens available now (fractional; may be negative after concurrent grabs overdrew it). */
  available(now = performance.now()): number {
    if (now > this.#at) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) / this.#perToken);
      this.#at = now;
    }
    return this.#tokens;
  }

  /** True when a job may start now (a whole token is there). */
  allows(now = performance.now()): boolean {
    return this.available(now) >= 1;
  }

  /** Takes one token (a job was grabbed). */
  take(now = performance.now()): void {
    this.available(now);
    this.#tokens -= 1;
  }

  /** Milliseconds until a token is available (0 when one is). */
  msUntilToken(now = performance.now()): number {
    const missing = 1 - this.available(now);
    return missing <= 0 ? 0 : Math.ceil(missing * this.#perToken);
  }
}
