/**
 * The TheSchwartz worker: finds jobs for its functions in the client's databases, grabs them, runs their handlers
 * and writes their outcomes, as `$client->can_do($class); $client->work` does, so Perl and Node workers can serve
 * one queue side by side.
 *
 * Finding and grabbing, as TheSchwartz 1.12 does it:
 *
 * ```
 *  for each live database, shuffled:
 *    SELECT … FROM job WHERE funcid IN (abilities) AND run_after <= NOW AND grabbed_until <= NOW [AND priority >= floor]
 *      ORDER BY jobid | priority DESC, jobid  LIMIT batchSize
 *    shuffle the candidates; for each: UPDATE job SET grabbed_until = NOW + grabFor
 *                                        WHERE jobid = ? AND grabbed_until = <as read>    0 rows: lost the race
 *    the first database that yields a job ends the search (a failing one is marked dead and skipped)
 *  fairness: a function just worked is left out of the next search, until a search finds nothing
 * ```
 *
 * One difference in cost, not in behaviour: TheSchwartz reads `batchSize` candidates to claim one and drops the
 * rest. Here the unclaimed candidates of a search are kept for up to {@link CANDIDATES_TTL_MS} and claimed first by
 * the next grabs (each claim re-checks `grabbed_until` and `run_after` in its UPDATE, so a stale candidate only
 * costs a 0-row UPDATE). A worker doing one job at a time then reads the queue once per ~50 jobs, not once per job.
 *
 * Beyond TheSchwartz: `concurrency` jobs at once (each grabbed on its own), a per-function `concurrency` limit,
 * per-function and worker-wide rate limits (token buckets: a function without a token sits out searches, the others
 * go on), lease renewal while a handler runs, a `canGrab` hook (pauses), `wake()` (a push notification ends the poll
 * wait; `wakeOn` listens for them on gearman), and `close()` that grabs nothing new and lets running jobs finish.
 * Every limit is per worker process.
 *
 * @module
 */

import { performance } from 'node:perf_hooks';
import { type ClientInternals, clientInternals, likePrefix, type SchwartzClient } from './client.ts';
import { shuffle } from './database-set.ts';
import { asError, publishJobEvent, type SchwartzOutcome } from './diagnostics.ts';
import { invalidArgument, SchwartzError } from './errors.ts';
import { GearmanWakeUpListener, type SchwartzWakeOnOptions } from './gearman-wake-up.ts';
import { Job, type JobHandle, type JobSettings, jobControl } from './job.ts';
import { claimJob, type JobQuery, moveLease, selectJob, selectJobs } from './job-store.ts';
import { type RateLimit, TokenBucket } from './token-bucket.ts';

/** What a job's function does with it. Resolving without an outcome completes the job; throwing fails it. */
export type JobHandler = (job: Job) => unknown;

/** Per-function settings: TheSchwartz::Worker's class methods, plus two of ours. */
export interface AbilityOptions {
  /** Retries after the first failure (`max_retries`, 0), or a function of the job. */
  maxRetries?: number | ((job: Job) => number);
  /** Seconds before retry number `failures` (`retry_delay`, 0), or a function of it (backoff). */
  retryDelay?: number | ((failures: number) => number);
  /** The lease, in whole seconds (`grab_for`, 3600); 2 or more, since `grabbed_until` counts whole seconds. */
  grabFor?: number;
  /** Seconds to keep exit statuses (`keep_exit_status_for`, 0: none kept). */
  keepExitStatusFor?: number;
  /** At most this many jobs of this function at once in this worker (default: the worker's `concurrency`). */
  concurrency?: number;
  /** Extend the lease while the handler runs, half-way through `grabFor` (default true). */
  renewLease?: boolean;
  /**
   * At most `jobs` of this function started per `perMs` ms by this worker (a token bucket holding up to `burst`,
   * default `jobs`). Without a token the function sits out searches; the others keep working.
   */
  rateLimit?: RateLimit;
}

/** Options of {@link SchwartzWorker}. */
export interface SchwartzWorkerOptions {
  /** Jobs run at once (default 1, as a Perl worker). */
  concurrency?: number;
  /** How long `work()` waits after a search found nothing (ms, default 5000, Perl's `work($delay = 5)`). */
  pollInterval?: number;
  /**
   * Asked before each search for each function; `false` leaves the function out of that search. The hook for pauses
   * and limits of your own (rate limits are built in: `rateLimit`); when a function may run again, call
   * `worker.wake()`.
   */
  canGrab?: (funcname: string) => boolean;
  /** Never drop a function just worked from the next search (TheSchwartz `strict_remove_ability`). */
  strictRemoveAbility?: boolean;
  /** At most `jobs` jobs of all functions together started per `perMs` ms by this worker (a token bucket). */
  rateLimit?: RateLimit;
  /**
   * Listen for wake-ups on gearman while `work()` runs (`schwartz-wake:<funcname>` for each function; clients
   * send them with their `notify` option), so a new job starts at once rather than at the next poll.
   */
  wakeOn?: SchwartzWakeOnOptions;
}

interface Ability {
  readonly name: string;
  readonly handler: JobHandler;
  readonly settings: JobSettings;
  readonly concurrency: number;
  readonly renewLease: boolean;
  readonly bucket: TokenBucket | undefined;
}

type WorkerState = 'open' | 'closing' | 'destroyed';

function count(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw invalidArgument(`${name} must be an integer of ${min} or more`);
  }
  return value;
}

function seconds(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw invalidArgument(`${name} must be a number of seconds, 0 or more`);
  }
  return value;
}

/**
 * The candidates in priority order, shuffled only among equal priorities. TheSchwartz shuffles the whole batch, so
 * with `prioritize` a lower priority can win within one batch (its own test sets the batch size to 1); here the
 * order the SELECT gave (engine's NULL placement included) is kept between priorities.
 */
function shuffleWithinPriority<T extends { priority: number | null }>(rows: T[]): T[] {
  const out: T[] = [];
  let group: T[] = [];
  for (const row of rows) {
    if (group.length > 0 && (group[0] as T).priority !== row.priority) {
      out.push(...shuffle(group));
      group = [];
    }
    group.push(row);
  }
  out.push(...shuffle(group));
  return out;
}

/** The failure message for what a handler threw (Perl records `$@`). */
function failureMessage(err: unknown): string {
  if (err instanceof Error) return err.message === '' ? err.name : err.message;
  return String(err);
}

/**
 * Runs jobs from the client's databases.
 *
 * @example
 * const worker = new SchwartzWorker(client, { concurrency: 4 });
 * worker.canDo('MyApp::Resize', async (job) => {
 *   await resize(JSON.parse(job.arg!.toString()), { signal: job.signal });
 * }, { maxRetries: 3, retryDelay: (n) => 60 * 2 ** n });
 * const stop = new AbortController();
 * process.once('SIGTERM', () => stop.abort());
 * await worker.work({ signal: stop.signal }); // returns once running jobs have finished
 */
/** How long the unclaimed candidates of a search are tried before the queue is read again. */
const CANDIDATES_TTL_MS = 1000;

type CandidateRow = Awaited<ReturnType<typeof selectJobs>>[number];

interface Candidates {
  db: ClientInternals['set']['all'][number];
  rows: CandidateRow[];
  /** Database "now" minus local "now" at the search (unix seconds). */
  clockOffset: number;
  /** `performance.now()` after which the candidates are dropped. */
  expires: number;
}

function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}

export class SchwartzWorker {
  readonly #client: SchwartzClient;
  readonly #internals: ClientInternals;
  readonly #concurrency: number;
  readonly #pollInterval: number;
  readonly #canGrab: ((funcname: string) => boolean) | undefined;
  readonly #strictRemoveAbility: boolean;
  readonly #bucket: TokenBucket | undefined;
  readonly #wakeUps: GearmanWakeUpListener | undefined;
  readonly #abilities = new Map<string, Ability>();
  #current: string[] = [];
  readonly #running = new Set<Job>();
  readonly #runningByName = new Map<string, number>();
  readonly #waiters = new Set<() => void>();
  #state: WorkerState = 'open';
  #looping = false;
  /** `wake()` was called since the current search began: search again rather than wait. */
  #woken = false;
  /** Ms until a function the last search skipped for want of a token may run (undefined: none skipped). */
  #tokenWait: number | undefined;
  /** What the last search found and did not claim (see the module comment). */
  #candidates: Candidates | undefined;
  readonly #activities = new Set<Promise<unknown>>();

  constructor(client: SchwartzClient, options: SchwartzWorkerOptions = {}) {
    this.#client = client;
    this.#internals = clientInternals(client);
    this.#concurrency = options.concurrency === undefined ? 1 : count('concurrency', options.concurrency, 1);
    this.#pollInterval = options.pollInterval === undefined ? 5000 : seconds('pollInterval', options.pollInterval);
    this.#canGrab = options.canGrab;
    this.#strictRemoveAbility = options.strictRemoveAbility === true;
    this.#bucket = options.rateLimit === undefined ? undefined : new TokenBucket(options.rateLimit);
    this.#wakeUps =
      options.wakeOn === undefined ? undefined : new GearmanWakeUpListener(options.wakeOn, () => this.wake());
  }

  /** The functions this worker runs. */
  get abilities(): string[] {
    return [...this.#abilities.keys()];
  }

  /** Jobs running now. */
  get running(): number {
    return this.#running.size;
  }

  /** Runs `handler` for jobs of `funcname` (Perl: `$client->can_do('MyApp::Worker')`). */
  canDo(funcname: string, handler: JobHandler, options: AbilityOptions = {}): this {
    if (typeof funcname !== 'string' || funcname === '') throw invalidArgument('funcname must be a non-empty string');
    if (typeof handler !== 'function') throw invalidArgument('handler must be a function');
    if (this.#abilities.has(funcname)) throw invalidArgument(`"${funcname}" has a handler already`);
    const { maxRetries = 0, retryDelay = 0 } = options;
    if (typeof maxRetries !== 'function') count('maxRetries', maxRetries, 0);
    if (typeof retryDelay !== 'function') seconds('retryDelay', retryDelay);
    this.#abilities.set(funcname, {
      name: funcname,
      handler,
      settings: {
        maxRetries,
        retryDelay,
        grabFor: options.grabFor === undefined ? 3600 : count('grabFor', options.grabFor, 1),
        keepExitStatusFor:
          options.keepExitStatusFor === undefined ? 0 : count('keepExitStatusFor', options.keepExitStatusFor, 0),
      },
      concurrency: options.concurrency === undefined ? Infinity : count('concurrency', options.concurrency, 1),
      renewLease: options.renewLease !== false,
      bucket: options.rateLimit === undefined ? undefined : new TokenBucket(options.rateLimit),
    });
    this.#current.push(funcname);
    if (this.#looping) this.#wakeUps?.add(funcname);
    return this;
  }

  /**
   * Ends `work()`'s wait at once: new jobs may be there (a push from gearman, a pause lifted). A wake-up that comes
   * while a search is running makes `work()` search again when it finds nothing.
   */
  wake(): void {
    this.#woken = true;
    this.#notify();
  }

  /**
   * Works until `signal` aborts or {@link close} is called, then waits for the running jobs and resolves. A search
   * that finds nothing waits `pollInterval` ms (or until {@link wake}); a database that fails is skipped for the
   * client's `retrySeconds`, and the loop goes on.
   */
  work(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#track(async () => {
      if (this.#looping) throw invalidArgument('work() is running already');
      this.#looping = true;
      // Not awaited: the first search need not wait for the job servers (wake-ups are an optimisation).
      void this.#wakeUps?.start(this.#abilities.keys());
      try {
        await this.#workLoop(options.signal);
      } finally {
        this.#looping = false;
        await this.#wakeUps?.stop();
      }
    });
  }

  async #workLoop(signal: AbortSignal | undefined): Promise<void> {
    const stop = () => this.#state !== 'open' || signal?.aborted === true;
    while (!stop()) {
      const free = this.#concurrency - this.#running.size;
      if (free <= 0) {
        await this.#waitForChange(undefined, signal);
        continue;
      }
      this.#woken = false;
      const jobs = await this.#find(free);
      for (const job of jobs) void this.#launch(job);
      if (jobs.length === 0 && !stop() && !this.#woken) await this.#waitForChange(this.#idleWait(), signal);
    }
    await this.#drain();
  }

  /** How long to wait after a search found nothing: `pollInterval`, or less when a token is due sooner. */
  #idleWait(): number {
    return this.#tokenWait === undefined ? this.#pollInterval : Math.min(this.#pollInterval, this.#tokenWait);
  }

  /** Finds one job and works it (Perl `work_once`). Resolves to false when no job was found. */
  workOnce(): Promise<boolean> {
    return this.#track(async () => {
      const [job] = await this.#find(1);
      if (job === undefined) return false;
      await this.#launch(job);
      return true;
    });
  }

  /**
   * Works until a search finds nothing and nothing is running (Perl `work_until_done`), `concurrency` jobs at once.
   * A function held back by its rate limit is waited for, not given up on. Resolves to the number of jobs worked.
   */
  workUntilDone(): Promise<number> {
    return this.#track(() => this.#untilDone());
  }

  async #untilDone(): Promise<number> {
    let worked = 0;
    while (this.#state === 'open') {
      const free = this.#concurrency - this.#running.size;
      if (free > 0) {
        const jobs = await this.#find(free);
        for (const job of jobs) void this.#launch(job);
        worked += jobs.length;
        if (jobs.length > 0) continue;
        if (this.#running.size === 0 && this.#tokenWait === undefined) break;
        await this.#waitForChange(this.#tokenWait); // a job ends, or a rate-limited function gets a token
        continue;
      }
      await this.#waitForChange();
    }
    await this.#drain();
    return worked;
  }

  /**
   * Grabs the job `handle` names and works it (Perl `grab_and_work_on`): only when no other worker holds it (its
   * `run_after` is not looked at). Resolves to false when it is gone or held.
   */
  grabAndWorkOn(handle: string | JobHandle): Promise<boolean> {
    return this.#track(() => this.#grabAndWorkOn(handle));
  }

  async #grabAndWorkOn(handle: string | JobHandle): Promise<boolean> {
    const h = typeof handle === 'string' ? this.#client.handle(handle) : handle;
    const db = this.#internals.set.get(h.database);
    const sql = await db.open();
    const row = await selectJob(sql, db, h.jobid);
    if (row === undefined) return false;
    const funcname = await db.funcname(row.funcid);
    const ability = funcname === undefined ? undefined : this.#abilities.get(funcname);
    if (ability === undefined) throw invalidArgument(`this worker has no handler for "${funcname}"`);
    const now = await db.now(sql);
    if (now < row.grabbed_until) return false;
    const lease = now + ability.settings.grabFor;
    if (!(await moveLease(sql, db.tables, row.jobid, row.grabbed_until, lease))) return false;
    await this.#launch(this.#newJob(db, row, ability, lease));
    return true;
  }

  /**
   * Grabs a job of `funcname` whose `coalesce` is `value` (Perl `find_job_with_coalescing_value`), for the caller
   * to finish with an outcome; its lease is not renewed. `funcname` must be one of this worker's functions.
   */
  findJobWithCoalescingValue(funcname: string, value: string): Promise<Job | undefined> {
    return this.#findCoalesced(funcname, { op: '=', value });
  }

  /** Like {@link findJobWithCoalescingValue}, for a `coalesce` starting with `prefix` (Perl `…_prefix`). */
  findJobWithCoalescingPrefix(funcname: string, prefix: string): Promise<Job | undefined> {
    return this.#findCoalesced(funcname, { op: 'LIKE', value: likePrefix(prefix) });
  }

  #findCoalesced(funcname: string, coalesce: NonNullable<JobQuery['coalesce']>): Promise<Job | undefined> {
    return this.#track(async () => {
      const ability = this.#abilities.get(funcname);
      if (ability === undefined) throw invalidArgument(`this worker has no handler for "${funcname}"`);
      const [job] = await this.#grab([ability], 1, coalesce);
      return job;
    });
  }

  /**
   * Grabs nothing new, waits for searches in progress, the running jobs (their outcomes written) and `work()` to end,
   * then resolves. (Called from inside a handler it would wait for that handler: don't.)
   */
  async close(): Promise<void> {
    if (this.#state === 'open') this.#state = 'closing';
    this.#notify();
    await Promise.allSettled([...this.#activities]);
    await this.#drain();
  }

  /**
   * Stops now: aborts running jobs' signals (`SCHWARTZ_ERR_DESTROYED`) and writes no outcome for them; they run
   * again when their leases end.
   */
  destroy(): void {
    this.#state = 'destroyed';
    const reason = new SchwartzError('SCHWARTZ_ERR_DESTROYED');
    for (const job of this.#running) jobControl().abort(job, reason);
    this.#notify();
  }

  /** Runs a public operation if the worker is open, so that `close()` can wait for it. */
  #track<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#state !== 'open') return Promise.reject(new SchwartzError('SCHWARTZ_ERR_CLOSED'));
    const p = fn();
    this.#activities.add(p);
    const done = () => this.#activities.delete(p);
    p.then(done, done);
    return p;
  }

  /** Up to `max` jobs for the current abilities, with TheSchwartz's fairness (`work_once`). */
  async #find(max: number): Promise<Job[]> {
    let jobs = await this.#grab(this.#eligible(this.#current), max);
    if (jobs.length === 0 && !this.#strictRemoveAbility && this.#current.length < this.#abilities.size) {
      this.#current = [...this.#abilities.keys()];
      jobs = await this.#grab(this.#eligible(this.#current), max);
    }
    if (!this.#strictRemoveAbility) for (const job of jobs) this.#removeAbility(job.funcname);
    return jobs;
  }

  /**
   * The abilities among `names` that may be grabbed now (room under their limit, a token, `canGrab`). Notes in
   * `#tokenWait` when the first one held back for want of a token gets one.
   */
  #eligible(names: readonly string[]): Ability[] {
    const out: Ability[] = [];
    const now = performance.now();
    let wait: number | undefined;
    const heldBack = (bucket: TokenBucket) => {
      const ms = bucket.msUntilToken(now);
      wait = wait === undefined ? ms : Math.min(wait, ms);
    };
    if (this.#bucket !== undefined && !this.#bucket.allows(now)) {
      heldBack(this.#bucket);
      this.#tokenWait = wait;
      return out;
    }
    for (const name of names) {
      const ability = this.#abilities.get(name);
      if (ability === undefined || !this.#hasRoom(ability, 0)) continue;
      if (ability.bucket !== undefined && !ability.bucket.allows(now)) {
        heldBack(ability.bucket);
        continue;
      }
      if (this.#canGrab !== undefined && !this.#canGrab(name)) continue;
      out.push(ability);
    }
    this.#tokenWait = wait;
    return out;
  }

  #hasRoom(ability: Ability, extra: number): boolean {
    return (this.#runningByName.get(ability.name) ?? 0) + extra < ability.concurrency;
  }

  /** TheSchwartz `temporarily_remove_ability`: the next search leaves `name` out; none left means all again. */
  #removeAbility(name: string): void {
    this.#current = this.#current.filter((n) => n !== name);
    if (this.#current.length === 0) this.#current = [...this.#abilities.keys()];
  }

  /** TheSchwartz `find_job_for_workers` + `_grab_a_job`, claiming up to `max` jobs from the first fruitful database. */
  async #grab(abilities: readonly Ability[], max: number, coalesce?: JobQuery['coalesce']): Promise<Job[]> {
    if (abilities.length === 0) return [];
    const { set, prioritize, floor, batchSize } = this.#internals;
    const limited = coalesce === undefined;
    if (limited) {
      const cached = await this.#claimCached(abilities, max);
      if (cached.length > 0) return cached;
    }
    for (const db of set.shuffledLive()) {
      let sql: Awaited<ReturnType<typeof db.open>>;
      let now: number;
      let rows: Awaited<ReturnType<typeof selectJobs>>;
      const byFuncid = new Map<number, Ability>();
      try {
        sql = await db.open();
        for (const a of abilities) byFuncid.set((await db.funcid(a.name)) as number, a);
        now = await db.now(sql);
        rows = await selectJobs(sql, db, {
          funcids: [...byFuncid.keys()],
          runAfter: now,
          grabbedUntil: now,
          ...(coalesce !== undefined && { coalesce }),
          ...(floor !== undefined && { floor }),
          prioritize,
          limit: batchSize,
        });
      } catch (err) {
        set.markDead(db, err, 'find');
        continue;
      }
      // Shuffled, so workers polling together do not all race for the first row.
      const ordered = prioritize ? shuffleWithinPriority(rows) : shuffle(rows);
      const { jobs, rest } = await this.#claim(db, sql, ordered, byFuncid, now, max, limited);
      if (limited) {
        this.#candidates =
          rest.length > 0
            ? { db, rows: rest, clockOffset: now - unixNow(), expires: performance.now() + CANDIDATES_TTL_MS }
            : undefined;
      }
      if (jobs.length > 0) return jobs;
    }
    return [];
  }

  /** Claims up to `max` of the last search's unclaimed candidates that belong to `abilities`. */
  async #claimCached(abilities: readonly Ability[], max: number): Promise<Job[]> {
    const c = this.#candidates;
    if (c === undefined) return [];
    if (performance.now() > c.expires || c.db.isDead()) {
      this.#candidates = undefined;
      return [];
    }
    const byFuncid = new Map<number, Ability>();
    for (const a of abilities) {
      const funcid = c.db.cachedFuncid(a.name);
      if (funcid !== undefined) byFuncid.set(funcid, a);
    }
    const wanted = c.rows.filter((r) => byFuncid.has(r.funcid));
    if (wanted.length === 0) return [];
    let sql: Awaited<ReturnType<typeof c.db.open>>;
    try {
      sql = await c.db.open();
    } catch {
      this.#candidates = undefined;
      return [];
    }
    // The search's "now" moved on by the local clock (the server's on MySQL, read at the search).
    const now = unixNow() + c.clockOffset;
    const { jobs, rest, failed } = await this.#claim(c.db, sql, wanted, byFuncid, now, max, true);
    const remaining = new Set(rest);
    c.rows = failed ? [] : c.rows.filter((r) => !byFuncid.has(r.funcid) || remaining.has(r));
    if (c.rows.length === 0 && this.#candidates === c) this.#candidates = undefined;
    return jobs;
  }

  /**
   * Claims candidates in order until `max` are won. Returns the jobs won and the candidates not tried (a claim that
   * lost its race is dropped); `failed` when the database failed (it is marked dead).
   */
  async #claim(
    db: ClientInternals['set']['all'][number],
    sql: Awaited<ReturnType<ClientInternals['set']['all'][number]['open']>>,
    rows: readonly CandidateRow[],
    byFuncid: ReadonlyMap<number, Ability>,
    now: number,
    max: number,
    limited: boolean,
  ): Promise<{ jobs: Job[]; rest: CandidateRow[]; failed: boolean }> {
    const jobs: Job[] = [];
    const taken = new Map<string, number>();
    // Candidates passed over (a function at its limit or without a token) stay for later grabs.
    const skipped: CandidateRow[] = [];
    let i = 0;
    for (; i < rows.length; i++) {
      if (jobs.length >= max) break;
      const row = rows[i]!;
      const ability = byFuncid.get(row.funcid);
      if (ability === undefined) continue;
      if (limited) {
        // Tokens are taken as jobs are won (below), so the buckets already count this search's jobs.
        if (this.#bucket !== undefined && !this.#bucket.allows()) break;
        if (
          !this.#hasRoom(ability, taken.get(ability.name) ?? 0) ||
          (ability.bucket !== undefined && !ability.bucket.allows())
        ) {
          skipped.push(row);
          continue;
        }
      }
      const lease = now + ability.settings.grabFor;
      let won: boolean;
      try {
        won = await claimJob(sql, db.tables, row.jobid, row.grabbed_until, lease, now);
      } catch (err) {
        this.#internals.set.markDead(db, err, 'grab');
        return { jobs, rest: [], failed: true };
      }
      if (!won) continue; // another worker got it between our SELECT and UPDATE
      taken.set(ability.name, (taken.get(ability.name) ?? 0) + 1);
      if (limited) {
        this.#bucket?.take();
        ability.bucket?.take();
      }
      jobs.push(this.#newJob(db, row, ability, lease));
    }
    return { jobs, rest: [...skipped, ...rows.slice(i)], failed: false };
  }

  #newJob(
    db: ClientInternals['set']['all'][number],
    row: Awaited<ReturnType<typeof selectJobs>>[number],
    ability: Ability,
    lease: number,
  ): Job {
    return new Job({
      db,
      resolver: this.#internals.set,
      row,
      funcname: ability.name,
      lease,
      settings: ability.settings,
      housekeeping: this.#internals.housekeeping,
      onInserted: this.#internals.notifyInserted,
    });
  }

  /** Runs a grabbed job, tracked as running until its outcome is written. */
  async #launch(job: Job): Promise<SchwartzOutcome> {
    const ability = this.#abilities.get(job.funcname) as Ability;
    this.#running.add(job);
    this.#runningByName.set(ability.name, (this.#runningByName.get(ability.name) ?? 0) + 1);
    try {
      return await this.#run(job, ability);
    } finally {
      this.#running.delete(job);
      this.#runningByName.set(ability.name, (this.#runningByName.get(ability.name) ?? 1) - 1);
      this.#notify();
    }
  }

  /** TheSchwartz `work_safely`, with a resolved handler meaning "completed". */
  async #run(job: Job, ability: Ability): Promise<SchwartzOutcome> {
    const control = jobControl();
    const started = performance.now();
    const event = { funcname: job.funcname, handle: job.handle.toString(), database: job.handle.database };
    publishJobEvent({ type: 'start', ...event });
    if (ability.renewLease) control.startLeaseRenewal(job);
    let threw = false;
    let thrown: unknown;
    try {
      await ability.handler(job);
    } catch (err) {
      threw = true;
      thrown = err;
    }
    try {
      if (threw) publishJobEvent({ type: 'error', ...event, stage: 'handler', error: asError(thrown) });
      // A handler that tried an outcome whose write failed (even if it caught that error) is not "completed".
      const mayWrite = this.#state !== 'destroyed' && !job.finished && !job.leaseLost && !control.writeFailed(job);
      if (mayWrite && !threw) await job.completed();
      // After a failed outcome write the handler's error is most likely that write's: leave the job to its lease.
      else if (mayWrite) await job.failed(failureMessage(thrown));
    } catch (err) {
      // A lost lease was published by the job itself.
      if (!(err instanceof SchwartzError && err.code === 'SCHWARTZ_ERR_LEASE_LOST')) {
        publishJobEvent({ type: 'error', ...event, stage: 'outcome', error: asError(err) });
      }
    } finally {
      control.stopLeaseRenewal(job);
    }
    const outcome = job.outcome ?? 'none';
    publishJobEvent({ type: 'end', ...event, outcome, durationMs: performance.now() - started });
    return outcome;
  }

  #notify(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  /** Resolves at the next job end, `wake()`, `close()`, abort of `signal`, or after `ms`. */
  #waitForChange(ms?: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#waiters.delete(done);
        resolve();
      };
      if (signal?.aborted) return resolve();
      if (ms !== undefined) timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.#waiters.add(done);
    });
  }

  async #drain(): Promise<void> {
    while (this.#running.size > 0 && this.#state !== 'destroyed') await this.#waitForChange();
  }
}
