/**
 * `node:diagnostics_channel` events of the gearman client and worker. Publishing is guarded by `hasSubscribers`, so
 * it costs nothing when nobody listens. Messages never carry payloads, results or unique ids.
 *
 * @example
 * import diagnostics from 'node:diagnostics_channel';
 * diagnostics.subscribe('sharenothing:gearman:job', (m) => {
 *   const e = m as JobEvent;
 *   if (e.type !== 'submit' && e.type !== 'created') histogram.observe({ fn: e.functionName }, e.durationMs);
 * });
 *
 * @module
 */

import diagnostics from 'node:diagnostics_channel';

/** Name of the client's per-job channel. */
export const JOB_CHANNEL = 'sharenothing:gearman:job';
/** Name of the worker's per-job channel. */
export const WORK_CHANNEL = 'sharenothing:gearman:work';
/** Name of the per-server channel (connections, dead marks), for both the client and the worker. */
export const SERVER_CHANNEL = 'sharenothing:gearman:server';

/**
 * A submission seen by the client: `submit` when it is sent (again after a failover), then `complete` (foreground:
 * WORK_COMPLETE arrived), `created` (background: JOB_CREATED arrived) or `error`.
 */
export type JobEvent =
  | {
      readonly type: 'submit';
      readonly functionName: string;
      readonly server: string;
      readonly background: boolean;
    }
  | {
      readonly type: 'created' | 'complete';
      readonly functionName: string;
      readonly server: string;
      readonly background: boolean;
      readonly handle: string;
      /** Since the submission. */
      readonly durationMs: number;
    }
  | {
      readonly type: 'error';
      readonly functionName: string;
      readonly server: string | undefined;
      readonly background: boolean;
      readonly handle: string | undefined;
      readonly durationMs: number;
      /** A `GEARMAN_ERR_*` code. */
      readonly code: string;
      readonly error: Error;
    };

/** A job run by the worker: `start` when JOB_ASSIGN arrives, then `end` (WORK_COMPLETE sent) or `error`. */
export type WorkEvent =
  | { readonly type: 'start'; readonly functionName: string; readonly server: string; readonly handle: string }
  | {
      readonly type: 'end';
      readonly functionName: string;
      readonly server: string;
      readonly handle: string;
      readonly durationMs: number;
    }
  | {
      readonly type: 'error';
      readonly functionName: string;
      readonly server: string;
      readonly handle: string;
      readonly durationMs: number;
      /**
       * What was sent: `exception` (WORK_EXCEPTION), `fail` (WORK_FAIL), or `dropped` when nothing could be sent
       * (timed out, connection lost, worker destroyed; the server requeues the job).
       */
      readonly outcome: 'exception' | 'fail' | 'dropped';
      readonly error: Error;
    };

/** A change in a server's state. */
export interface ServerEvent {
  readonly type: 'connect' | 'disconnect' | 'dead' | 'error';
  readonly role: 'client' | 'worker';
  readonly server: string;
  /** What caused a `disconnect` or `dead`, or the ERROR packet a worker received (`error`). */
  readonly error?: Error;
}

/** The channel {@link JobEvent}s are published on. */
export const jobChannel = diagnostics.channel(JOB_CHANNEL);
/** The channel {@link WorkEvent}s are published on. */
export const workChannel = diagnostics.channel(WORK_CHANNEL);
/** The channel {@link ServerEvent}s are published on. */
export const serverChannel = diagnostics.channel(SERVER_CHANNEL);

/** Publishes a server event when someone listens. */
export function publishServerEvent(event: ServerEvent): void {
  if (serverChannel.hasSubscribers) serverChannel.publish(event);
}
