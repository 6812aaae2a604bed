/**
 * A foreground job as the caller sees it ({@link ForegroundJob}): a promise of the result and an async iterator of
 * the job's updates at once, plus the state machine behind it ({@link JobRun}: timeouts, abort, who waits).
 *
 * ```
 *  submitJob() ──▶ JobRun ──created(handle)──▶ update(data|warning|status)* ──▶ complete(data) | fail(error)
 *                    │ submitTimeout before created, resultTimeout before the end, signal: fail(...) and detach
 *                    └ connection never connected: reroute(error) → the client sends it to the next server
 * ```
 *
 * The promise is made only when someone awaits the job, so a job that is only iterated never produces an unhandled
 * rejection. Updates are kept for the iterator from the submission on; awaiting the job before iterating it says
 * "I only want the result", and updates are no longer kept (a job streaming WORK_DATA to a caller that does not
 * read it would otherwise grow without bound).
 *
 * @module
 */

import { GearmanError } from './errors.ts';

/** Something a foreground job reports before it ends, or its end (`complete`, the last update). */
export type JobUpdate =
  | { readonly type: 'data'; readonly data: Buffer }
  | { readonly type: 'warning'; readonly data: Buffer }
  | { readonly type: 'status'; readonly numerator: number; readonly denominator: number }
  | { readonly type: 'complete'; readonly data: Buffer };

/** What a connection calls on whoever waits for a foreground job. */
export interface JobListener {
  /** Still waiting (not settled). */
  readonly open: boolean;
  /** JOB_CREATED arrived. */
  created(handle: string, server: string): void;
  /** WORK_DATA, WORK_WARNING or WORK_STATUS arrived. */
  update(update: JobUpdate): void;
  /** WORK_COMPLETE arrived. */
  complete(data: Buffer): void;
  /** The job failed, or the wait did (connection lost, ERROR). */
  fail(error: GearmanError): void;
  /** The submission never reached the server (it did not connect): send it elsewhere. */
  reroute(error: GearmanError): void;
}

/** How a {@link JobRun} is set up by the client. */
export interface JobRunInit {
  readonly functionName: string;
  readonly unique: string;
  /** ms from now until JOB_CREATED (0: no limit). */
  readonly submitTimeout: number;
  /** ms from now until the result (0: no limit). */
  readonly resultTimeout: number;
  readonly signal: AbortSignal | undefined;
  /** Called when the submission must go to another server. */
  readonly reroute: (run: JobRun, error: GearmanError) => void;
  /** Called once when the job settles (the client's bookkeeping: detach, diagnostics). */
  readonly settled: (run: JobRun, error: GearmanError | undefined) => void;
}

type Outcome = { readonly ok: true; readonly data: Buffer } | { readonly ok: false; readonly error: GearmanError };

interface Pull {
  resolve(result: IteratorResult<JobUpdate>): void;
  reject(error: Error): void;
}

/** The state of one foreground submission (internal; callers hold a {@link ForegroundJob}). */
export class JobRun implements JobListener {
  readonly functionName: string;
  readonly unique: string;
  /** `performance.now()` at submission. */
  readonly startedAt = performance.now();
  handle: string | undefined;
  server: string | undefined;
  readonly #init: JobRunInit;
  #outcome: Outcome | undefined;
  #promise: Promise<Buffer> | undefined;
  #settle: ((outcome: Outcome) => void) | undefined;
  #created: Promise<string> | undefined;
  #settleCreated: ((error: GearmanError | undefined) => void) | undefined;
  /** Updates not yet pulled by the iterator; undefined when nobody will iterate. */
  #updates: JobUpdate[] | undefined = [];
  #iterating = false;
  #pull: Pull | undefined;
  /** The iterator already threw the job's error (it throws once, then ends). */
  #errorThrown = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(init: JobRunInit) {
    this.#init = init;
    this.functionName = init.functionName;
    this.unique = init.unique;
    const signal = init.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.#abort();
        return;
      }
      signal.addEventListener('abort', this.#abort, { once: true });
    }
    this.#arm();
  }

  get open(): boolean {
    return this.#outcome === undefined;
  }

  /** The outcome, once settled. */
  get outcome(): Outcome | undefined {
    return this.#outcome;
  }

  created(handle: string, server: string): void {
    if (!this.open || this.handle !== undefined) return;
    this.handle = handle;
    this.server = server;
    this.#settleCreated?.(undefined);
    this.#arm();
  }

  update(update: JobUpdate): void {
    if (!this.open || this.#updates === undefined) return;
    const pull = this.#pull;
    if (pull !== undefined) {
      this.#pull = undefined;
      pull.resolve({ value: update, done: false });
    } else this.#updates.push(update);
  }

  complete(data: Buffer): void {
    if (!this.open) return;
    this.update({ type: 'complete', data });
    this.#finish({ ok: true, data });
  }

  fail(error: GearmanError): void {
    if (!this.open) return;
    this.#finish({ ok: false, error });
  }

  reroute(error: GearmanError): void {
    if (this.open) this.#init.reroute(this, error);
  }

  /** The result as a promise (made on first use). */
  promise(): Promise<Buffer> {
    if (this.#promise === undefined) {
      const outcome = this.#outcome;
      if (outcome !== undefined)
        this.#promise = outcome.ok ? Promise.resolve(outcome.data) : Promise.reject(outcome.error);
      else {
        this.#promise = new Promise<Buffer>((resolve, reject) => {
          this.#settle = (o) => (o.ok ? resolve(o.data) : reject(o.error));
        });
      }
      // Awaiting without iterating: updates are not wanted.
      if (!this.#iterating) this.#updates = undefined;
    }
    return this.#promise;
  }

  /** Resolves with the handle at JOB_CREATED (made on first use). */
  createdPromise(): Promise<string> {
    if (this.#created === undefined) {
      const outcome = this.#outcome;
      if (this.handle !== undefined) this.#created = Promise.resolve(this.handle);
      else if (outcome !== undefined && !outcome.ok) this.#created = Promise.reject(outcome.error);
      else {
        this.#created = new Promise<string>((resolve, reject) => {
          this.#settleCreated = (error) => (error === undefined ? resolve(this.handle!) : reject(error));
        });
      }
    }
    return this.#created;
  }

  /** The iterator over updates; there is one per job. */
  iterator(): AsyncIterableIterator<JobUpdate> {
    if (this.#iterating) {
      throw new GearmanError('GEARMAN_ERR_INVALID_ARGUMENT', "a job's updates can be iterated only once");
    }
    this.#iterating = true;
    this.#updates ??= [];
    const iterator: AsyncIterableIterator<JobUpdate> = {
      next: () => this.#next(),
      return: (value?: unknown) => {
        this.#updates = undefined;
        return Promise.resolve({ value: value as JobUpdate, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  #next(): Promise<IteratorResult<JobUpdate>> {
    const updates = this.#updates;
    if (updates !== undefined && updates.length > 0) return Promise.resolve({ value: updates.shift()!, done: false });
    const outcome = this.#outcome;
    if (outcome === undefined && updates !== undefined) {
      return new Promise((resolve, reject) => {
        this.#pull = { resolve, reject };
      });
    }
    this.#updates = undefined;
    if (outcome !== undefined && !outcome.ok && !this.#errorThrown) {
      this.#errorThrown = true;
      return Promise.reject(outcome.error);
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  #finish(outcome: Outcome): void {
    this.#outcome = outcome;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#init.signal?.removeEventListener('abort', this.#abort);
    this.#settle?.(outcome);
    if (!outcome.ok) this.#settleCreated?.(outcome.error);
    const pull = this.#pull;
    if (pull !== undefined) {
      this.#pull = undefined;
      if (outcome.ok) pull.resolve({ value: undefined, done: true });
      else {
        this.#errorThrown = true;
        pull.reject(outcome.error);
      }
    }
    this.#init.settled(this, outcome.ok ? undefined : outcome.error);
  }

  /** Arms the timer for the next deadline: JOB_CREATED, then the result. */
  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const { submitTimeout, resultTimeout } = this.#init;
    const elapsed = performance.now() - this.startedAt;
    let wait = Number.POSITIVE_INFINITY;
    if (this.handle === undefined && submitTimeout > 0) wait = submitTimeout - elapsed;
    if (resultTimeout > 0) wait = Math.min(wait, resultTimeout - elapsed);
    if (wait === Number.POSITIVE_INFINITY) return;
    this.#timer = setTimeout(this.#timeout, Math.max(1, Math.ceil(wait)));
  }

  readonly #timeout = (): void => {
    if (!this.open) return;
    const { submitTimeout, resultTimeout } = this.#init;
    const elapsed = performance.now() - this.startedAt;
    if (this.handle === undefined && submitTimeout > 0 && elapsed >= submitTimeout - 1) {
      this.fail(
        new GearmanError('GEARMAN_ERR_TIMEOUT', `no JOB_CREATED within ${submitTimeout} ms`, { server: this.server }),
      );
    } else if (resultTimeout > 0 && elapsed >= resultTimeout - 1) {
      this.fail(
        new GearmanError('GEARMAN_ERR_TIMEOUT', `no result within ${resultTimeout} ms`, {
          server: this.server,
          handle: this.handle,
        }),
      );
    } else this.#arm();
  };

  readonly #abort = (): void => {
    const reason: unknown = this.#init.signal?.reason;
    this.fail(
      new GearmanError('GEARMAN_ERR_ABORTED', undefined, { server: this.server, handle: this.handle, cause: reason }),
    );
  };
}

/**
 * A submitted foreground job: await it for the result (the WORK_COMPLETE data), or iterate it for its updates
 * (WORK_DATA, WORK_WARNING, WORK_STATUS, then `complete`). Both reject/throw the same {@link GearmanError} when the
 * job fails (`GEARMAN_ERR_WORK_FAIL`, `GEARMAN_ERR_WORK_EXCEPTION`, `GEARMAN_ERR_TIMEOUT`, …).
 *
 * Start iterating before awaiting if you want the updates: awaiting first tells the job that only the result is
 * wanted.
 *
 * @example
 * const job = client.submitJob('resize', image, { unique: `resize:${id}` });
 * for await (const u of job) if (u.type === 'status') progress(u.numerator / u.denominator);
 * const thumbnail = await job;
 */
export class ForegroundJob implements PromiseLike<Buffer>, AsyncIterable<JobUpdate> {
  readonly #run: JobRun;

  /** Made by `GearmanClient.submitJob`. */
  constructor(run: JobRun) {
    this.#run = run;
  }

  /** The function the job runs. */
  get functionName(): string {
    return this.#run.functionName;
  }

  /** The unique id sent (empty when none was given). */
  get unique(): string {
    return this.#run.unique;
  }

  /** The job handle, once JOB_CREATED arrived. */
  get handle(): string | undefined {
    return this.#run.handle;
  }

  /** The job server (`host:port`) that holds the job, once JOB_CREATED arrived. */
  get server(): string | undefined {
    return this.#run.server;
  }

  /** True once the job completed or failed. */
  get settled(): boolean {
    return !this.#run.open;
  }

  /** Resolves with the handle when JOB_CREATED arrives (rejects if the job fails before). */
  get created(): Promise<string> {
    return this.#run.createdPromise();
  }

  // biome-ignore lint/suspicious/noThenProperty: a job is awaitable by design (PromiseLike).
  then<A = Buffer, B = never>(
    onfulfilled?: ((value: Buffer) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#run.promise().then(onfulfilled, onrejected);
  }

  /** Like `Promise.prototype.catch`. */
  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<Buffer | B> {
    return this.#run.promise().catch(onrejected);
  }

  /** Like `Promise.prototype.finally`. */
  finally(onfinally?: (() => void) | null): Promise<Buffer> {
    return this.#run.promise().finally(onfinally);
  }

  /** The job's updates, ending with `complete`; throws the job's error if it fails. One iterator per job. */
  [Symbol.asyncIterator](): AsyncIterableIterator<JobUpdate> {
    return this.#run.iterator();
  }
}
