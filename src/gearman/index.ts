/**
 * gearman for Node: `sharenothing/gearman`, the client and the worker. Client-side code only — the job server lives
 * in `sharenothing/gearman/server`, so importing this never loads it.
 *
 * Both work against gearmand 1.1 and this project's server, over several job servers at once: the client places jobs
 * by unique id (as Perl's `Gearman::Client` does) and fails over when a server is down; the worker takes jobs from
 * every server, runs up to `concurrency` at once with pipelined grabs, and registers again after a reconnect.
 *
 * @module
 * @example
 * import { GearmanClient, GearmanWorker } from 'sharenothing/gearman';
 *
 * const worker = new GearmanWorker({ servers: ['127.0.0.1:4730'], concurrency: 4 });
 * worker.register('reverse', (job) => {
 *   job.sendStatus(1, 2);
 *   return Buffer.from(job.payload).reverse();
 * });
 *
 * const client = new GearmanClient({ servers: ['127.0.0.1:4730'] });
 * const job = client.submitJob('reverse', 'hello', { unique: 'reverse:hello' });
 * for await (const update of job) console.log(update.type); // status, complete
 * console.log((await job).toString()); // olleh
 * const bg = await client.submitBackground('reverse', 'later', { priority: 'low' });
 * console.log(await client.getStatus(bg)); // { known: …, running: …, numerator: …, … }
 * await client.close();
 * await worker.close();
 */

export { MAX_FUNCTION_NAME, MAX_UNIQUE, type Payload } from './client/arguments.ts';
export {
  type BackgroundJob,
  type CallOptions,
  GearmanClient,
  type GearmanClientOptions,
  type JobPriority,
  type JobStatus,
  type StatusOptions,
  type SubmitBackgroundOptions,
  type SubmitJobOptions,
  type UniqueJobStatus,
} from './client/client.ts';
export {
  JOB_CHANNEL,
  type JobEvent,
  SERVER_CHANNEL,
  type ServerEvent,
  WORK_CHANNEL,
  type WorkEvent,
} from './client/diagnostics.ts';
export {
  GEARMAN_ERROR_CODES,
  GearmanError,
  type GearmanErrorCode,
  type GearmanErrorInfo,
  type GearmanErrorOptions,
  isGearmanError,
} from './client/errors.ts';
export { ForegroundJob, type JobUpdate } from './client/foreground-job.ts';
export {
  GEARMAN_DEFAULT_PORT,
  parseServer,
  type ServerAddress,
  type ServerSpec,
  uniqueHash,
} from './client/server-list.ts';
export {
  GearmanWorker,
  type GearmanWorkerOptions,
  type JobHandler,
  type RegisterOptions,
  type WorkerJob,
} from './client/worker.ts';
