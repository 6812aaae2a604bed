// Shared by bench/gearman.ts (the orchestrator) and bench/lib/gearman-loadgen.ts (the load-generator processes):
// the IPC messages between them, a latency histogram that merges across processes, and the admin `status` query.
import { textRequest } from './harness.ts';

/** The function name every scenario submits to and every worker registers. */
export const FUNCTION_NAME = 'bench';

/** When a task's load starts and which part of it is measured (epoch milliseconds, shared by all processes). */
export interface Window {
  startAt: number;
  /** Load runs but is not counted for this long after startAt. */
  warmupMs: number;
  /** Counted window after the warm-up; the load stops at its end. */
  durationMs: number;
}

/**
 * What one load-generator process runs. Connection counts are this process's share. Every task connects in the
 * setup phase (reported by `ready`), starts its load at `go`, and reports one `result`.
 */
export type Task =
  | {
      /** Foreground round trips: clients (one SUBMIT_JOB outstanding each) and echo workers. */
      kind: 'fg';
      port: number;
      clients: number;
      workers: number;
      payload: number;
      /** Makes unique ids distinct across processes. */
      tag: string;
    }
  | {
      /** SUBMIT_JOB_BG with unique ids, `depth` outstanding per connection; `total` (preload) stops after that many. */
      kind: 'bg';
      port: number;
      clients: number;
      depth: number;
      payload: number;
      tag: string;
      total?: number;
    }
  | {
      /** Workers that grab until NO_JOB (the queue is empty), completing every job. */
      kind: 'drain';
      port: number;
      workers: number;
    }
  | {
      /**
       * Coalescing rounds: every client submits SUBMIT_JOB on unique `co-<round>`; the one worker (in the process
       * with `worker: true`, which also hosts the coordination listener) completes the round's job once every
       * process reported all its clients attached (JOB_CREATED), so all `processes` × clients share one job.
       */
      kind: 'coalesce';
      port: number;
      clients: number;
      worker: boolean;
      processes: number;
      payload: number;
      /** Port of the coordination listener (for the processes without the worker). */
      coordPort?: number;
    };

export type ParentMessage =
  | { type: 'setup'; task: Task; deadlineAt: number }
  | { type: 'go'; window: Window }
  | { type: 'exit' };

export interface TaskResult {
  /** Completions counted in the window (jobs done, JOB_CREATED, results delivered; drain: all jobs done). */
  ops: number;
  /** Length of the counted window as this process measured it (timers fire late on a busy loop). */
  windowMs: number;
  /** Completions over the whole task (warm-up and after the window included). */
  totalOps: number;
  /** CPU time of this process during the window, microseconds. */
  cpuUserUs: number;
  cpuSysUs: number;
  errors: number;
  firstError?: string;
  /** Latency histogram (fg) in the window, as sparse [bucket, count] pairs. */
  latency?: [number, number][];
  /** Drain: epoch ms of the last completion. */
  lastAt?: number;
  /** Other counters (NO_JOB, NOOP, jobs executed by the coalescing worker, …), whole task. */
  counters: Record<string, number>;
  /** Completions in the window per {@link SLOT_MS} slot (to see stalls, e.g. GC pauses). */
  timeline: number[];
}

/** Width of a timeline slot. */
export const SLOT_MS = 100;

export type ChildMessage =
  | { type: 'ready'; coordPort?: number }
  | { type: 'result'; result: TaskResult }
  | { type: 'fatal'; message: string };

/** Wall-clock epoch milliseconds with sub-millisecond resolution (comparable across processes). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

// ---------------------------------------------------------------------------------------------------------------
// Log-linear latency histogram in microseconds: exact below 128 µs, then 64 buckets per power of two (±0.8%).

const LINEAR = 128;
const SUB = 64;

export function bucketOf(us: number): number {
  const v = Math.max(0, Math.min(2 ** 31 - 1, Math.floor(us)));
  if (v < LINEAR) return v;
  const e = 31 - Math.clz32(v); // >= 7
  const shift = e - 6;
  return LINEAR + (e - 7) * SUB + ((v >>> shift) - SUB);
}

/** Middle of a bucket, in µs. */
export function bucketValue(bucket: number): number {
  if (bucket < LINEAR) return bucket;
  const e = Math.floor((bucket - LINEAR) / SUB) + 7;
  const sub = (bucket - LINEAR) % SUB;
  const shift = e - 6;
  return (SUB + sub) * 2 ** shift + 2 ** shift / 2;
}

export class Histogram {
  readonly counts = new Map<number, number>();
  total = 0;
  max = 0;

  record(us: number): void {
    const b = bucketOf(us);
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1);
    this.total++;
    if (us > this.max) this.max = us;
  }

  merge(pairs: readonly [number, number][]): void {
    for (const [b, n] of pairs) {
      this.counts.set(b, (this.counts.get(b) ?? 0) + n);
      this.total += n;
      const v = bucketValue(b);
      if (v > this.max) this.max = v;
    }
  }

  toPairs(): [number, number][] {
    return [...this.counts];
  }

  /** q in [0, 1]; NaN when empty. */
  percentile(q: number): number {
    if (this.total === 0) return Number.NaN;
    const target = Math.max(1, Math.ceil(q * this.total));
    let cum = 0;
    for (const b of [...this.counts.keys()].sort((a, c) => a - c)) {
      cum += this.counts.get(b)!;
      if (cum >= target) return bucketValue(b);
    }
    return this.max;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Admin protocol

export interface FunctionStatus {
  total: number;
  running: number;
  workers: number;
}

/** `status` on the job port: function → queued (total), running, available workers. */
export async function adminStatus(port: number, timeoutMs = 10_000): Promise<Map<string, FunctionStatus>> {
  const reply = await textRequest(port, 'status\n', /(^|\n)\.\r?\n$/, timeoutMs);
  const out = new Map<string, FunctionStatus>();
  for (const line of reply.split('\n')) {
    const f = line.split('\t');
    if (f.length < 4) continue;
    out.set(f[0]!, { total: Number(f[1]), running: Number(f[2]), workers: Number(f[3]) });
  }
  return out;
}
