/**
 * Persistent queues: where background jobs survive a restart (gearmand's `-q/--queue-type`).
 *
 * The job server calls the store at three points, as gearmand's queue plugins are called:
 *
 * ```
 *  SUBMIT_JOB_BG / _HIGH_BG / _LOW_BG / _EPOCH / REDUCE_BACKGROUND
 *        └─► add(job) ──(resolved)──► JOB_CREATED, job becomes runnable
 *  WORK_COMPLETE / WORK_FAIL / WORK_EXCEPTION / `cancel job` / retries exhausted
 *        └─► done(job)              (the same StoredJob object add() or replay() saw)
 *  listen()  (before the port is bound)
 *        └─► replay(add) ──► every stored job is queued again, unique ids kept
 * ```
 *
 * Only background jobs are stored: foreground jobs have a client that resubmits them elsewhere if this server dies.
 * gearmand keys its table by (unique, function), so background jobs without a unique id (or with the payload-keyed
 * `-`) overwrite each other there and only the last survives a restart (gearmand issue #87). The SQL stores here give
 * such jobs a generated key instead (see `sql-queue-store.ts`), so every acknowledged job survives.
 *
 * @module
 */

/** Job priority (gearmand's `gearman_job_priority_t`): 0 high, 1 normal, 2 low. */
export type JobPriority = 0 | 1 | 2;

/** Priority values by name. */
export const PRIORITY = {
  HIGH: 0,
  NORMAL: 1,
  LOW: 2,
} as const;

/** What a store keeps of a background job (gearmand's queue columns). */
export interface StoredJob {
  /** Unique id as sent by the client (latin1 string, one char per byte). */
  unique: string;
  /** Function name (latin1 string). */
  functionName: string;
  /** Workload. */
  data: Buffer;
  priority: JobPriority;
  /** Unix time (seconds) before which the job must not run; 0 = now (SUBMIT_JOB_EPOCH). */
  whenToRun: number;
  /** The store's own key for the row, when it is not `unique` (set by the store in `add`/`replay`). */
  key?: string;
}

/**
 * A persistent queue. Methods may return a promise: the server then answers JOB_CREATED only once `add` resolved
 * (and answers `ERROR QUEUE_ERROR` if it rejected), and keeps the submitting connection's later packets waiting so
 * replies stay in order.
 */
export interface QueueStore {
  /** Name shown in logs (`builtin`, `libsqlite3`, …). */
  readonly name: string;
  /** True when jobs survive a restart (false for the in-memory store). */
  readonly durable: boolean;
  /** Stores a background job before it is acknowledged. */
  add(job: StoredJob): void | Promise<void>;
  /** Forgets a stored job (finished, failed, cancelled or dropped after its retries): the object `add`/`replay` had. */
  done(job: StoredJob): void | Promise<void>;
  /** Calls `add` for every stored job; runs once, before the server accepts connections. */
  replay(add: (job: StoredJob) => void): void | Promise<void>;
  /** Releases the store's resources (called by `GearmanServer.close()`). */
  close(): void | Promise<void>;
}

/**
 * gearmand's `builtin` queue: jobs live in memory only, so nothing survives a restart. Every call is a no-op; the
 * server's own job tables are the queue.
 */
export class BuiltinQueueStore implements QueueStore {
  readonly name = 'builtin';
  readonly durable = false;

  add(_job: StoredJob): void {}

  done(_job: StoredJob): void {}

  replay(_add: (job: StoredJob) => void): void {}

  close(): void {}
}

/** Queue types gearmand knows (`-q` matches them case-insensitively); redis and libmemcached are not served here. */
export const QUEUE_TYPES = ['builtin', 'libsqlite3', 'MySQL', 'Postgres', 'redis', 'libmemcached'] as const;
