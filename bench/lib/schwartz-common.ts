// What bench/schwartz.ts and its child processes (bench/lib/schwartz-node.ts for ours, bench/lib/schwartz-bench.pl
// for Perl TheSchwartz) agree on: the child's configuration (argv[2], JSON) and its line protocol on stdout.
//
//   child  -> {"type":"ready"}                           connected and warmed up (insert: one warm-up job inserted)
//   parent -> "go\n" on stdin                            all children start together
//   child  -> {"type":"done","count":N,"ms":M,"cpuMs":C} finished (work: its worker found nothing more to do)
//   child  -> {"type":"error","message":"…"}             and exits 1

/** The one function every benchmark job belongs to (in Perl the worker class). */
export const FUNCNAME = 'Bench::Job';

export type ChildMode = 'insert' | 'insert-batch' | 'work';

/** A child's task, passed as JSON in argv[2]. */
export interface ChildConfig {
  mode: ChildMode;
  /** DBI DSN, the same string for both sides (our client parses DBI DSNs). */
  dsn: string;
  user?: string;
  password?: string;
  /** Table prefix of this measurement's fresh tables. */
  prefix: string;
  funcname: string;
  /** insert modes: jobs to insert (after one untimed warm-up job). */
  jobs: number;
  /** insert-batch: jobs per insertJobs / insert_jobs call. */
  batch: number;
  /** ours, work: SchwartzWorker concurrency. */
  concurrency: number;
  /** Bytes of each job's argument. */
  payload: number;
  /** Perl: driver_cache_expiration (0 = TheSchwartz's default, a new connection for every operation). */
  driverCache: number;
  /** The child gives up (reports an error and exits) after this long. */
  deadlineMs: number;
}

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'done'; count: number; ms: number; cpuMs: number }
  | { type: 'error'; message: string };

/** Job `i`'s argument: `job-<i>-` padded with `x` to `size` bytes (the Perl side builds the same bytes). */
export function jobArg(i: number | string, size: number): string {
  const head = `job-${i}-`;
  return head + 'x'.repeat(Math.max(0, size - head.length));
}
