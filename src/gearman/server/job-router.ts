/**
 * The job server's state and rules (gearmand's "processing thread"): functions with three FIFO queues each, jobs
 * indexed by handle and by (function, unique) for coalescing, workers' abilities, wake-ups, retries and timeouts.
 * No sockets here: connections are {@link Peer}s that the router sends packets to.
 *
 * ```
 *  FunctionQueue "resize"                      Peer (one per connection)
 *   ├─ queues[HIGH]   ◄─► job ◄─► job           ├─ abilities  most recent first ──► Ability ──► running jobs
 *   ├─ queues[NORMAL] ◄─► job                   └─ listens    Listener ──► Job (a foreground submission)
 *   ├─ queues[LOW]
 *   └─ workers  ring of Abilities, a rotating start for -w wake-ups
 *
 *  Job: queued (in one queue) ─► running (held by an Ability) ─► complete / fail / exception ─► freed
 *              ▲                        │ worker gone, CAN_DO_TIMEOUT, CANT_DO
 *              └──── requeued at the tail (retries++) ─┘   (-j N: dropped with WORK_FAIL at the Nth)
 * ```
 *
 * gearmand 1.1.20 is the reference (`libgearman-server/job.cc`, `server.cc`, `worker.cc`, `client.cc`); where it
 * loses or hangs jobs we deliberately do better, and say so at the spot:
 * - a foreground client leaving a job it shares with a background submission does not discard the job;
 * - a client coalescing onto an abandoned (or cancelled) queued job revives it instead of waiting forever;
 * - an epoch job that is not due yet never hides runnable jobs of lower priority, and its due time wakes workers;
 * - CAN_DO_TIMEOUT timers are per job (gearmand keeps one per connection, bound to the first job it timed).
 *
 * @module
 */

import { createHash } from 'node:crypto';
import type { Logger } from '../../net/logger.ts';
import { silentLogger } from '../../net/logger.ts';
import { encodePacket, RESPONSE } from '../protocol/packet-codec.ts';
import { DEFAULT_JOB_BUCKETS, FUNCTION_BUCKETS, gearmandHash } from './gearmand-hash.ts';
import { BuiltinQueueStore, type JobPriority, type QueueStore, type StoredJob } from './queue-store.ts';
import { ShardedMap } from './sharded-map.ts';

const NOOP_PACKET = encodePacket(RESPONSE.NOOP);
/** Longest timer Node accepts; later due times are reached in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Longest unique id gearmand accepts (`GEARMAN_UNIQUE_SIZE`). */
export const MAX_UNIQUE_SIZE = 64;

/** One connection as the router sees it (gearmand's `gearman_server_con_st`). */
export class Peer {
  /** Connection number (creation order). */
  readonly id: number;
  /** Remote IP shown by `workers`. */
  readonly host: string;
  /** File descriptor shown by `workers` (the socket's, or the connection number where there is none). */
  readonly fd: number;
  /** SET_CLIENT_ID (`-` until set). */
  clientId = '-';
  /** OPTION_REQ `exceptions` (or `--exceptions`): WORK_EXCEPTION is forwarded instead of WORK_FAIL. */
  exceptions: boolean;
  /** Sent PRE_SLEEP and nothing was runnable: NOOP it when a job arrives. */
  sleeping = false;
  /** A NOOP was sent since the last GRAB_JOB (at most one until the worker grabs again). */
  noopSent = false;
  /** Registered abilities, most recent first (gearmand's order for `workers` and for grabbing). */
  readonly abilities: Ability[] = [];
  /** Foreground submissions waiting for results. */
  readonly listens = new Set<Listener>();
  /** Gone: nothing is sent to it any more. */
  closed = false;
  readonly #send: (packet: Buffer) => void;

  constructor(id: number, host: string, fd: number, exceptions: boolean, send: (packet: Buffer) => void) {
    this.id = id;
    this.host = host;
    this.fd = fd;
    this.exceptions = exceptions;
    this.#send = send;
  }

  /** Queues a packet to this connection (dropped once it is closed). */
  send(packet: Buffer): void {
    if (!this.closed) this.#send(packet);
  }
}

/** A foreground submission attached to a job (gearmand's `gearman_server_client_st`). */
export interface Listener {
  readonly peer: Peer;
  readonly job: Job;
}

/** A worker connection's registration for one function (gearmand's `gearman_server_worker_st`). */
export class Ability {
  readonly peer: Peer;
  readonly fn: FunctionQueue;
  /** CAN_DO_TIMEOUT in ms (0 = none). */
  readonly timeoutMs: number;
  /** Jobs this worker runs through this ability, oldest assignment first. */
  readonly jobs: Job[] = [];

  constructor(peer: Peer, fn: FunctionQueue, timeoutMs: number) {
    this.peer = peer;
    this.fn = fn;
    this.timeoutMs = timeoutMs;
  }
}

/** A job: queued, or running on a worker. */
export class Job {
  readonly handle: string;
  readonly fn: FunctionQueue;
  /** Unique id as sent (latin1); `-` for payload-keyed jobs; empty when none. */
  readonly unique: string;
  /** Key in the coalescing index, or undefined when the job never coalesces (empty unique). */
  readonly indexKey: string | undefined;
  /** gearmand's `unique_key` (bucket order of `show unique jobs`). */
  readonly uniqueHash: number;
  readonly handleHash: number;
  readonly data: Buffer;
  readonly priority: JobPriority;
  /** SUBMIT_JOB_EPOCH time in unix seconds (0 = runnable now). */
  readonly whenToRun: number;
  /** SUBMIT_REDUCE_JOB's reducer, returned by GRAB_JOB_ALL (empty for other jobs). */
  readonly reducer: string;
  /** Creation order (newest-first listings). */
  readonly seq: number;
  /** Some submission was a background one: the job never counts as abandoned. */
  background: boolean;
  /** In the persistent queue (gearmand's `job_queued`, the 4th column of `show jobs`). */
  persisted = false;
  /** Abandoned or cancelled: discarded when it reaches a worker (gearmand's `ignore_job`). */
  ignore = false;
  /** Times the job was requeued (`show jobs` 2nd column; `-j` limit). */
  retries = 0;
  numerator = 0;
  denominator = 0;
  /** Waiting foreground submissions. */
  readonly listeners: Listener[] = [];
  /** The ability running it, or undefined while queued. */
  worker: Ability | undefined;
  /** While the persistent store's `add` is in progress: settles with the submitter's reply. */
  acknowledged: Promise<SubmitResult> | undefined;
  /** What the persistent store holds for this job (the same object is handed to `done`). */
  stored: StoredJob | undefined;
  /** Other jobs with the same unique id (other functions), for GET_STATUS_UNIQUE. */
  olderSameUnique: Job | undefined;
  newerSameUnique: Job | undefined;
  /** Queue links (intrusive list of its function's queue for its priority). */
  prev: Job | undefined;
  next: Job | undefined;
  inQueue = false;
  /** CAN_DO_TIMEOUT of the current run. */
  timeoutTimer: NodeJS.Timeout | undefined;
  /** Wakes workers when an epoch job becomes due. */
  dueTimer: NodeJS.Timeout | undefined;

  constructor(init: {
    handle: string;
    fn: FunctionQueue;
    unique: string;
    indexKey: string | undefined;
    uniqueHash: number;
    data: Buffer;
    priority: JobPriority;
    whenToRun: number;
    reducer: string;
    seq: number;
    background: boolean;
  }) {
    this.handle = init.handle;
    this.handleHash = gearmandHash(init.handle);
    this.fn = init.fn;
    this.unique = init.unique;
    this.indexKey = init.indexKey;
    this.uniqueHash = init.uniqueHash;
    this.data = init.data;
    this.priority = init.priority;
    this.whenToRun = init.whenToRun;
    this.reducer = init.reducer;
    this.seq = init.seq;
    this.background = init.background;
  }

  /** Whether the job may run at `nowSeconds` (gearmand: `when == 0 || when <= now`). */
  runnableAt(nowSeconds: number): boolean {
    return this.whenToRun === 0 || this.whenToRun <= nowSeconds;
  }
}

/** A FIFO of jobs linked through the jobs themselves (O(1) append and removal anywhere). */
export class JobList {
  head: Job | undefined;
  tail: Job | undefined;
  length = 0;

  /** Appends at the tail. */
  push(job: Job): void {
    job.prev = this.tail;
    job.next = undefined;
    if (this.tail) this.tail.next = job;
    else this.head = job;
    this.tail = job;
    job.inQueue = true;
    this.length++;
  }

  /** Unlinks a job from anywhere in the list. */
  remove(job: Job): void {
    if (job.prev) job.prev.next = job.next;
    else this.head = job.next;
    if (job.next) job.next.prev = job.prev;
    else this.tail = job.prev;
    job.prev = job.next = undefined;
    job.inQueue = false;
    this.length--;
  }
}

/** One function: its queues, its workers, its counters (gearmand's `gearman_server_function_st`). */
export class FunctionQueue {
  readonly name: string;
  readonly seq: number;
  /** gearmand's bucket (listing order). */
  readonly bucket: number;
  /** Queued jobs by priority: HIGH, NORMAL, LOW. */
  readonly queues: [JobList, JobList, JobList] = [new JobList(), new JobList(), new JobList()];
  /** Queued + running (`status` TOTAL; what `maxqueue` limits). */
  total = 0;
  running = 0;
  /** Worker ring (one entry per CAN_DO, duplicates included, as gearmand counts them). */
  readonly workers: Ability[] = [];
  /** Where the next wake-up round starts (gearmand rotates its ring head). */
  wakeStart = 0;
  /** `maxqueue` per priority (0 = unlimited). */
  maxQueue: [number, number, number] = [0, 0, 0];

  constructor(name: string, seq: number) {
    this.name = name;
    this.seq = seq;
    this.bucket = gearmandHash(name) % FUNCTION_BUCKETS;
  }

  /** Queued jobs (gearmand's `job_count`). */
  get queued(): number {
    return this.queues[0].length + this.queues[1].length + this.queues[2].length;
  }
}

/** Options of {@link JobRouter}. */
export interface JobRouterOptions {
  /** Job handles are `<prefix>:<n>` (gearmand: `H:<hostname>`). */
  handlePrefix: string;
  /** `-j`: a job requeued this many times is dropped with WORK_FAIL (0 = retry forever). */
  jobRetries?: number;
  /** `-w`: workers NOOPed per new job (0 = every sleeping worker). */
  workerWakeup?: number;
  /** `-R`: rotate a worker's functions after each grab. */
  roundRobin?: boolean;
  /** `--hashtable-buckets`: only changes the order of `show jobs` / `show unique jobs`, as in gearmand. */
  hashtableBuckets?: number;
  /** Persistent queue (default: in memory). */
  store?: QueueStore;
  /**
   * Estimated bytes the jobs may hold (payloads plus {@link JOB_OVERHEAD_BYTES} each) before new jobs are refused
   * with `ERROR MEMORY_ALLOCATION_FAILURE` (0 = no limit). A flood then meets a protocol error instead of taking the
   * process, and every queued job with it, past its heap limit.
   */
  memoryLimit?: number;
  logger?: Logger;
  /** Clock in unix seconds (tests). */
  nowSeconds?: () => number;
}

/** What one job costs besides its payload (the Job object, its strings and its index entries; measured ~1 KB). */
export const JOB_OVERHEAD_BYTES = 1024;

/** A submission (any SUBMIT_* packet), decoded. */
export interface SubmitRequest {
  functionName: string;
  unique: string;
  data: Buffer;
  priority: JobPriority;
  background: boolean;
  /** SUBMIT_JOB_EPOCH time (0 = now). */
  whenToRun: number;
  /** SUBMIT_REDUCE_JOB's reducer ('' otherwise). */
  reducer: string;
}

/** What a submission got: a handle, or an ERROR packet's code and text. */
export type SubmitResult = { ok: true; handle: string } | { ok: false; code: string; text: string };

/** Counters for metrics. */
export interface RouterCounters {
  submitted: number;
  coalesced: number;
  /** Submissions refused because the job memory limit was reached. */
  refusedForMemory: number;
  completed: number;
  failed: number;
  exceptions: number;
  requeued: number;
  timedOut: number;
  dropped: number;
}

/** The job server's tables and rules; see the module comment. */
export class JobRouter {
  readonly handlePrefix: string;
  readonly jobRetries: number;
  readonly workerWakeup: number;
  readonly roundRobin: boolean;
  readonly hashtableBuckets: number;
  readonly store: QueueStore;
  /** See {@link JobRouterOptions.memoryLimit}. */
  memoryLimit: number;
  /** Closing gracefully: workers get NO_JOB, so only the jobs already running finish. */
  draining = false;
  readonly counters: RouterCounters = {
    submitted: 0,
    coalesced: 0,
    refusedForMemory: 0,
    completed: 0,
    failed: 0,
    exceptions: 0,
    requeued: 0,
    timedOut: 0,
    dropped: 0,
  };
  /** Called whenever the last job is gone (graceful shutdown waits for it). */
  onIdle: () => void = () => {};
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #functions = new Map<string, FunctionQueue>();
  readonly #jobs = new ShardedMap<Job>();
  /** Estimated bytes held by jobs (see {@link JobRouterOptions.memoryLimit}). */
  #memoryUsed = 0;
  #memoryWarned = false;
  readonly #index = new ShardedMap<Job>();
  /**
   * The newest job of each unique id across functions (GET_STATUS_UNIQUE); older ones with the same id hang off it
   * through `Job.olderSameUnique` / `newerSameUnique`, so no array per job.
   */
  readonly #byUnique = new ShardedMap<Job>();
  readonly #peers = new Set<Peer>();
  #handleCount = 1;
  #seq = 0;
  #peerSeq = 0;

  constructor(options: JobRouterOptions) {
    this.handlePrefix = options.handlePrefix;
    this.jobRetries = options.jobRetries ?? 0;
    this.workerWakeup = options.workerWakeup ?? 0;
    this.roundRobin = options.roundRobin ?? false;
    this.hashtableBuckets = options.hashtableBuckets ?? DEFAULT_JOB_BUCKETS;
    this.store = options.store ?? new BuiltinQueueStore();
    this.memoryLimit = options.memoryLimit ?? 0;
    this.#log = options.logger ?? silentLogger;
    this.#now = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  }

  /** Number of jobs (queued and running). */
  get jobCount(): number {
    return this.#jobs.size;
  }

  /** Connected peers, oldest first. */
  get peers(): ReadonlySet<Peer> {
    return this.#peers;
  }

  /** Every function, in creation order. */
  get functions(): ReadonlyMap<string, FunctionQueue> {
    return this.#functions;
  }

  // ── connections ────────────────────────────────────────────────────────────────────────────────────────────

  /** Registers a connection. */
  connect(host: string, fd: number | undefined, exceptions: boolean, send: (packet: Buffer) => void): Peer {
    const id = ++this.#peerSeq;
    const peer = new Peer(id, host, fd ?? id, exceptions, send);
    this.#peers.add(peer);
    return peer;
  }

  /**
   * A connection is gone: its running jobs are requeued (last assigned first, to the tail of their queues), then
   * its foreground submissions are detached (a job nobody waits for any more is abandoned).
   */
  disconnect(peer: Peer): void {
    if (peer.closed) return;
    peer.closed = true;
    while (peer.abilities.length > 0) this.#removeAbility(peer.abilities[0]!);
    for (const listener of [...peer.listens]) this.#detach(listener);
    this.#peers.delete(peer);
  }

  // ── functions ──────────────────────────────────────────────────────────────────────────────────────────────

  /** The function of that name, created on demand (as SUBMIT, CAN_DO and `create function` do). */
  functionNamed(name: string): FunctionQueue {
    let fn = this.#functions.get(name);
    if (fn === undefined) {
      fn = new FunctionQueue(name, ++this.#seq);
      this.#functions.set(name, fn);
    }
    return fn;
  }

  /**
   * `drop function`: removes a function nobody works on and nothing waits in. gearmand 1.1.20 frees a function with
   * queued jobs, leaving them dangling; we refuse instead.
   */
  dropFunction(fn: FunctionQueue): 'dropped' | 'busy' | 'queued' {
    if (fn.workers.length > 0 || fn.running > 0) return 'busy';
    if (fn.total > 0) return 'queued';
    this.#functions.delete(fn.name);
    return 'dropped';
  }

  /** Functions in gearmand's listing order (hash bucket, then newest first). */
  functionsInListingOrder(): FunctionQueue[] {
    return [...this.#functions.values()].sort((a, b) => a.bucket - b.bucket || b.seq - a.seq);
  }

  /** Jobs in gearmand's `show jobs` order (handle hash bucket, then newest first). */
  jobsInHandleOrder(): Job[] {
    const n = this.hashtableBuckets;
    return [...this.#jobs.values()].sort((a, b) => (a.handleHash % n) - (b.handleHash % n) || b.seq - a.seq);
  }

  /** Jobs in gearmand's `show unique jobs` order (unique hash bucket, then newest first). */
  jobsInUniqueOrder(): Job[] {
    const n = this.hashtableBuckets;
    return [...this.#jobs.values()].sort((a, b) => (a.uniqueHash % n) - (b.uniqueHash % n) || b.seq - a.seq);
  }

  // ── clients ────────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * A SUBMIT_*: coalesces onto the queued or running job with the same (function, unique) — `-` keys by payload,
   * empty never coalesces — or creates a job (subject to `maxqueue`). A foreground submission attaches `peer` as a
   * listener. Resolves asynchronously only when a durable store's `add` does.
   */
  submit(peer: Peer | undefined, req: SubmitRequest): SubmitResult | Promise<SubmitResult> {
    return this.#submit(peer, req, undefined);
  }

  /** A job read back from the persistent store at start-up: queued again (already persisted, not stored again). */
  replay(stored: StoredJob): void {
    this.#submit(
      undefined,
      {
        functionName: stored.functionName,
        unique: stored.unique,
        data: stored.data,
        priority: stored.priority,
        background: true,
        whenToRun: stored.whenToRun,
        reducer: '',
      },
      stored,
    );
  }

  #submit(
    peer: Peer | undefined,
    req: SubmitRequest,
    replayed: StoredJob | undefined,
  ): SubmitResult | Promise<SubmitResult> {
    const fn = this.functionNamed(req.functionName);
    let indexKey: string | undefined;
    let uniqueHash = 0;
    if (req.unique === '-') {
      if (req.data.length > 0) {
        // Payload-keyed: a digest stands for the payload in the key; a hit is confirmed byte for byte below.
        indexKey = `${fn.name}\0-\0${createHash('sha256').update(req.data).digest('base64')}`;
        uniqueHash = gearmandHash(req.data);
      }
    } else if (req.unique !== '') {
      indexKey = `${fn.name}\0${req.unique}`;
      uniqueHash = gearmandHash(req.unique);
    }
    let existing = indexKey === undefined ? undefined : this.#index.get(indexKey);
    if (existing !== undefined && req.unique === '-' && !existing.data.equals(req.data)) existing = undefined;
    if (existing !== undefined) {
      // Two stored rows for one job (payload-keyed uniques are stored under distinct keys): keep one.
      if (replayed !== undefined) this.#forget(replayed, existing.handle);
      this.counters.coalesced++;
      if (req.background) existing.background = true;
      else if (peer !== undefined) this.#attach(peer, existing);
      // A background submitter is told JOB_CREATED only once the job it joined is committed.
      if (req.background && existing.acknowledged !== undefined) return existing.acknowledged;
      // Joining a foreground job: gearmand stores nothing, so a restart loses a job it acknowledged. A durable
      // store keeps it from now on.
      if (req.background && replayed === undefined && !existing.persisted && this.store.durable) {
        return this.#persistJoined(existing);
      }
      return { ok: true, handle: existing.handle };
    }
    const limit = fn.maxQueue[req.priority];
    // Replayed jobs were acknowledged before the restart: `maxqueue` does not drop them.
    if (replayed === undefined && limit > 0 && fn.total >= limit) {
      return { ok: false, code: 'QUEUE_ERROR', text: 'Job queue is full' };
    }
    const cost = JOB_OVERHEAD_BYTES + req.data.length;
    if (replayed === undefined && this.memoryLimit > 0 && this.#memoryUsed + cost > this.memoryLimit) {
      this.counters.refusedForMemory++;
      if (!this.#memoryWarned) {
        this.#memoryWarned = true;
        this.#log.warn('job memory limit reached: refusing new jobs', {
          jobs: this.#jobs.size,
          bytes: this.#memoryUsed,
          limit: this.memoryLimit,
        });
      }
      return { ok: false, code: 'MEMORY_ALLOCATION_FAILURE', text: 'Server is out of memory for jobs' };
    }
    const job = new Job({
      handle: `${this.handlePrefix}:${this.#handleCount++}`,
      fn,
      unique: req.unique,
      indexKey,
      uniqueHash,
      // The packet's bytes may share a larger socket chunk: keep a copy of exactly the payload.
      data: Buffer.from(req.data),
      priority: req.priority,
      whenToRun: req.whenToRun,
      reducer: req.reducer,
      seq: ++this.#seq,
      background: req.background,
    });
    this.counters.submitted++;
    this.#register(job);
    if (!req.background && peer !== undefined) this.#attach(peer, job);
    if (!req.background) {
      this.#enqueue(job);
      return { ok: true, handle: job.handle };
    }
    job.persisted = true;
    if (replayed !== undefined) {
      job.stored = replayed;
      this.#enqueue(job);
      return { ok: true, handle: job.handle };
    }
    let added: void | Promise<void>;
    try {
      job.stored = storedJob(job);
      added = this.store.add(job.stored);
    } catch (err) {
      return this.#persistFailed(job, err);
    }
    if (added === undefined) {
      this.#enqueue(job);
      return { ok: true, handle: job.handle };
    }
    job.acknowledged = added.then(
      (): SubmitResult => {
        job.acknowledged = undefined;
        if (!this.#jobs.has(job.handle)) return { ok: false, code: 'QUEUE_ERROR', text: 'Job was cancelled' };
        this.#enqueue(job);
        return { ok: true, handle: job.handle };
      },
      (err: unknown) => {
        job.acknowledged = undefined;
        return this.#persistFailed(job, err);
      },
    );
    return job.acknowledged;
  }

  /** Stores a running or queued foreground job that a background submission joined. */
  #persistJoined(job: Job): SubmitResult | Promise<SubmitResult> {
    job.persisted = true;
    job.stored = storedJob(job);
    const refused = (err: unknown): SubmitResult => {
      // The foreground job goes on; only the background submitter is refused.
      this.#log.error('persistent queue add failed', { err, queue: this.store.name, handle: job.handle });
      job.persisted = false;
      job.stored = undefined;
      return { ok: false, code: 'QUEUE_ERROR', text: err instanceof Error ? err.message : String(err) };
    };
    let added: void | Promise<void>;
    try {
      added = this.store.add(job.stored);
    } catch (err) {
      return refused(err);
    }
    if (added === undefined) return { ok: true, handle: job.handle };
    job.acknowledged = added.then(
      (): SubmitResult => {
        job.acknowledged = undefined;
        // Finished while being stored: its delete was queued after the add, so the row is gone again.
        return { ok: true, handle: job.handle };
      },
      (err: unknown) => {
        job.acknowledged = undefined;
        return refused(err);
      },
    );
    return job.acknowledged;
  }

  #persistFailed(job: Job, err: unknown): SubmitResult {
    this.#log.error('persistent queue add failed', { err, queue: this.store.name, handle: job.handle });
    job.persisted = false;
    this.#failListeners(job);
    this.#free(job);
    return { ok: false, code: 'QUEUE_ERROR', text: err instanceof Error ? err.message : String(err) };
  }

  /** GET_STATUS: the job of that handle, if any. */
  statusByHandle(handle: string): Job | undefined {
    return this.#jobs.get(handle);
  }

  /** GET_STATUS_UNIQUE: the newest job with that unique id (any function); empty uniques never match. */
  statusByUnique(unique: string): Job | undefined {
    return this.#byUnique.get(unique);
  }

  /**
   * `cancel job`: waiting clients get WORK_FAIL and are detached, the job leaves the persistent queue and is
   * discarded when it reaches a worker (a running one finishes unheard).
   */
  cancel(handle: string): boolean {
    const job = this.#jobs.get(handle);
    if (job === undefined) return false;
    this.#failListeners(job);
    for (const listener of [...job.listeners]) this.#unlink(listener);
    this.#storeDone(job);
    job.ignore = true;
    return true;
  }

  // ── workers ────────────────────────────────────────────────────────────────────────────────────────────────

  /** CAN_DO / CAN_DO_TIMEOUT: one more ability (gearmand keeps duplicates, and counts them in `status`). */
  canDo(peer: Peer, functionName: string, timeoutMs = 0): void {
    const fn = this.functionNamed(functionName);
    const ability = new Ability(peer, fn, timeoutMs);
    peer.abilities.unshift(ability);
    // Inserted just before the ring's start, i.e. last in wake-up order (gearmand's circular list).
    if (fn.workers.length === 0) fn.workers.push(ability);
    else {
      fn.workers.splice(fn.wakeStart, 0, ability);
      fn.wakeStart++;
    }
  }

  /** CANT_DO: drops every ability for that function; jobs running through them are requeued. */
  cantDo(peer: Peer, functionName: string): void {
    for (const ability of [...peer.abilities]) {
      if (ability.fn.name === functionName) this.#removeAbility(ability);
    }
  }

  /** RESET_ABILITIES: drops them all (requeueing their running jobs). */
  resetAbilities(peer: Peer): void {
    while (peer.abilities.length > 0) this.#removeAbility(peer.abilities[0]!);
  }

  /**
   * PRE_SLEEP: NOOP at once if a job is runnable for the worker (a race with a submission), else mark it sleeping.
   * Either way the timeouts of the jobs it holds stop (gearmand deletes the connection's timer).
   */
  preSleep(peer: Peer): void {
    if (this.#hasRunnable(peer)) {
      peer.send(NOOP_PACKET);
    } else {
      peer.sleeping = true;
      for (const ability of peer.abilities) for (const job of ability.jobs) clearJobTimeout(job);
    }
  }

  /**
   * GRAB_JOB*: the best runnable job of the worker's first function (most recently registered first; `-R` rotates)
   * that has one, highest priority first, FIFO within a priority. Abandoned jobs met on the way are discarded.
   */
  grab(peer: Peer): Job | undefined {
    peer.sleeping = false;
    peer.noopSent = false;
    if (this.draining) return undefined;
    const now = this.#now();
    for (;;) {
      let found: { ability: Ability; job: Job } | undefined;
      for (const ability of peer.abilities) {
        const job = firstRunnable(ability.fn, now);
        if (job !== undefined) {
          found = { ability, job };
          break;
        }
      }
      if (found === undefined) return undefined;
      const { ability, job } = found;
      if (this.roundRobin) {
        const at = peer.abilities.indexOf(ability);
        peer.abilities.splice(at, 1);
        peer.abilities.push(ability);
      }
      this.#dequeue(job);
      if (job.ignore) {
        this.#free(job);
        continue;
      }
      job.worker = ability;
      ability.jobs.push(job);
      job.fn.running++;
      this.#startTimeout(peer, job);
      return job;
    }
  }

  /**
   * Whether closing `peer` now would cut off a job in progress: it runs one, or waits for the result of one that is
   * running. (A graceful close keeps such connections until then.)
   */
  busy(peer: Peer): boolean {
    for (const ability of peer.abilities) if (ability.jobs.length > 0) return true;
    for (const listener of peer.listens) if (listener.job.worker !== undefined) return true;
    return false;
  }

  /** The job `handle` if `peer` is running it (WORK_* from anyone else gets JOB_NOT_FOUND). */
  runningJob(peer: Peer, handle: string): Job | undefined {
    const job = this.#jobs.get(handle);
    return job?.worker?.peer === peer ? job : undefined;
  }

  /** Sends `packet` to every waiting client of the job (one copy per submission, as gearmand does). */
  forward(job: Job, packet: Buffer): void {
    for (const listener of job.listeners) listener.peer.send(packet);
  }

  /** WORK_EXCEPTION: forwarded to clients that asked for exceptions; the others get `failPacket`. */
  forwardException(job: Job, exceptionPacket: Buffer, failPacket: Buffer): void {
    for (const listener of job.listeners) listener.peer.send(listener.peer.exceptions ? exceptionPacket : failPacket);
  }

  /** WORK_COMPLETE / WORK_FAIL / WORK_EXCEPTION (after forwarding): the job leaves the persistent queue and is freed. */
  finish(job: Job, outcome: 'completed' | 'failed' | 'exceptions'): void {
    this.counters[outcome]++;
    this.#storeDone(job);
    this.#free(job);
  }

  // ── internals ──────────────────────────────────────────────────────────────────────────────────────────────

  #register(job: Job): void {
    this.#jobs.set(job.handle, job);
    this.#memoryUsed += JOB_OVERHEAD_BYTES + job.data.length;
    job.fn.total++;
    if (job.indexKey !== undefined) this.#index.set(job.indexKey, job);
    // gearmand finds a job by unique id in the bucket of that id's hash; payload-keyed ("-") jobs sit in their
    // payload's bucket, so GET_STATUS_UNIQUE never finds them.
    if (job.unique !== '' && job.unique !== '-') {
      const newest = this.#byUnique.get(job.unique);
      if (newest !== undefined) {
        newest.newerSameUnique = job;
        job.olderSameUnique = newest;
      }
      this.#byUnique.set(job.unique, job);
    }
  }

  #attach(peer: Peer, job: Job): void {
    const listener: Listener = { peer, job };
    job.listeners.push(listener);
    peer.listens.add(listener);
    // Someone waits again: an abandoned (or cancelled) job is wanted after all. gearmand keeps it ignored, and the
    // new client would wait forever.
    job.ignore = false;
  }

  /** Removes a listener; a foreground-only job nobody waits for is abandoned (discarded when it reaches a worker). */
  #detach(listener: Listener): void {
    this.#unlink(listener);
    const job = listener.job;
    if (job.listeners.length === 0 && !job.background) job.ignore = true;
  }

  #unlink(listener: Listener): void {
    const list = listener.job.listeners;
    const at = list.indexOf(listener);
    if (at >= 0) list.splice(at, 1);
    listener.peer.listens.delete(listener);
  }

  #failListeners(job: Job): void {
    if (job.listeners.length === 0) return;
    this.forward(job, encodePacket(RESPONSE.WORK_FAIL, [job.handle]));
  }

  #storeDone(job: Job): void {
    if (!job.persisted || job.stored === undefined) return;
    job.persisted = false;
    this.#forget(job.stored, job.handle);
  }

  #forget(stored: StoredJob, handle: string): void {
    try {
      const done = this.store.done(stored);
      if (done !== undefined) {
        done.catch((err: unknown) =>
          this.#log.error('persistent queue done failed', { err, queue: this.store.name, handle }),
        );
      }
    } catch (err) {
      this.#log.error('persistent queue done failed', { err, queue: this.store.name, handle });
    }
  }

  /** gearmand's `gearman_server_job_queue` for a new job: wake sleeping workers, append to its queue. */
  #enqueue(job: Job): void {
    this.#wakeWorkers(job.fn);
    job.fn.queues[job.priority].push(job);
    if (job.whenToRun > 0 && !job.runnableAt(this.#now())) this.#scheduleDue(job);
  }

  #dequeue(job: Job): void {
    job.fn.queues[job.priority].remove(job);
    if (job.dueTimer !== undefined) {
      clearTimeout(job.dueTimer);
      job.dueTimer = undefined;
    }
  }

  /** gearmand only wakes workers when a job is queued; we also wake them when an epoch job falls due. */
  #scheduleDue(job: Job): void {
    const wait = Math.min(MAX_TIMER_MS, job.whenToRun * 1000 - Date.now());
    job.dueTimer = setTimeout(
      () => {
        job.dueTimer = undefined;
        if (!job.inQueue) return;
        if (job.runnableAt(this.#now())) this.#wakeWorkers(job.fn);
        else this.#scheduleDue(job);
      },
      Math.max(0, wait),
    );
    job.dueTimer.unref();
  }

  /** NOOP sleeping workers of the function, starting where the last round stopped; `-w N` caps the count. */
  #wakeWorkers(fn: FunctionQueue): void {
    const ring = fn.workers;
    const n = ring.length;
    if (n === 0) return;
    let at = fn.wakeStart % n;
    let sent = 0;
    let visited = 0;
    do {
      const peer = ring[at]!.peer;
      if (peer.sleeping && !peer.noopSent) {
        peer.send(NOOP_PACKET);
        peer.noopSent = true;
        sent++;
      }
      at = (at + 1) % n;
      visited++;
    } while (visited < n && (this.workerWakeup === 0 || sent < this.workerWakeup));
    fn.wakeStart = at;
  }

  /**
   * A running job goes back to the tail of its queue (worker gone, CANT_DO, timeout), counting a retry; with `-j N`
   * the Nth retry drops it instead: WORK_FAIL to its clients, out of the persistent queue.
   */
  #requeue(job: Job): void {
    job.retries++;
    this.counters.requeued++;
    if (this.jobRetries !== 0 && job.retries >= this.jobRetries) {
      this.#log.info('dropped job due to max retry count', { handle: job.handle, retries: job.retries });
      this.counters.dropped++;
      this.#failListeners(job);
      this.#storeDone(job);
      this.#free(job);
      return;
    }
    this.#release(job);
    job.numerator = 0;
    job.denominator = 0;
    this.#enqueue(job);
  }

  /** Detaches a running job from its worker. */
  #release(job: Job): void {
    const ability = job.worker;
    if (ability === undefined) return;
    clearJobTimeout(job);
    const at = ability.jobs.indexOf(job);
    if (at >= 0) ability.jobs.splice(at, 1);
    job.worker = undefined;
    job.fn.running--;
  }

  #free(job: Job): void {
    if (job.inQueue) this.#dequeue(job);
    this.#release(job);
    if (job.dueTimer !== undefined) clearTimeout(job.dueTimer);
    job.fn.total--;
    for (const listener of [...job.listeners]) this.#unlink(listener);
    this.#jobs.delete(job.handle);
    this.#memoryUsed -= JOB_OVERHEAD_BYTES + job.data.length;
    if (this.#memoryWarned && this.#memoryUsed < this.memoryLimit * 0.9) this.#memoryWarned = false;
    if (job.indexKey !== undefined && this.#index.get(job.indexKey) === job) this.#index.delete(job.indexKey);
    if (this.#byUnique.get(job.unique) === job) {
      if (job.olderSameUnique === undefined) this.#byUnique.delete(job.unique);
      else this.#byUnique.set(job.unique, job.olderSameUnique);
    }
    if (job.olderSameUnique !== undefined) job.olderSameUnique.newerSameUnique = job.newerSameUnique;
    if (job.newerSameUnique !== undefined) job.newerSameUnique.olderSameUnique = job.olderSameUnique;
    job.olderSameUnique = undefined;
    job.newerSameUnique = undefined;
    if (this.#jobs.size === 0) this.onIdle();
  }

  #removeAbility(ability: Ability): void {
    // gearmand requeues first (the ability still in the ring), then unlinks it.
    while (ability.jobs.length > 0) this.#requeue(ability.jobs[ability.jobs.length - 1]!);
    const peer = ability.peer;
    const mine = peer.abilities.indexOf(ability);
    if (mine >= 0) peer.abilities.splice(mine, 1);
    const fn = ability.fn;
    const at = fn.workers.indexOf(ability);
    if (at >= 0) {
      fn.workers.splice(at, 1);
      if (at < fn.wakeStart) fn.wakeStart--;
      if (fn.wakeStart >= fn.workers.length) fn.wakeStart = 0;
    }
  }

  #hasRunnable(peer: Peer): boolean {
    const now = this.#now();
    for (const ability of peer.abilities) {
      for (;;) {
        const job = firstRunnable(ability.fn, now);
        if (job === undefined) break;
        if (!job.ignore) return true;
        // An abandoned job at the head: gearmand discards it here too.
        this.#dequeue(job);
        this.#free(job);
      }
    }
    return false;
  }

  #startTimeout(peer: Peer, job: Job): void {
    const ability = peer.abilities.find((a) => a.fn === job.fn);
    const timeout = ability?.timeoutMs ?? 0;
    if (timeout <= 0) return;
    // gearmand raises timeouts below one second to one second.
    job.timeoutTimer = setTimeout(
      () => {
        job.timeoutTimer = undefined;
        if (job.worker === undefined) return;
        this.#log.warn('worker timeout reached on job, requeueing', { handle: job.handle, unique: job.unique });
        this.counters.timedOut++;
        this.#requeue(job);
      },
      Math.max(1000, timeout),
    );
    job.timeoutTimer.unref();
  }
}

function clearJobTimeout(job: Job): void {
  if (job.timeoutTimer !== undefined) {
    clearTimeout(job.timeoutTimer);
    job.timeoutTimer = undefined;
  }
}

/**
 * The job a worker of `fn` would get: the oldest runnable job of the highest priority that has one. (gearmand
 * 1.1.20 looks only at the first non-empty priority, so a future epoch job there hides LOW jobs.)
 */
function firstRunnable(fn: FunctionQueue, now: number): Job | undefined {
  for (const queue of fn.queues) {
    for (let job = queue.head; job !== undefined; job = job.next) {
      if (job.runnableAt(now)) return job;
    }
  }
  return undefined;
}

function storedJob(job: Job): StoredJob {
  return {
    unique: job.unique,
    functionName: job.fn.name,
    data: job.data,
    priority: job.priority,
    whenToRun: job.whenToRun,
  };
}
