/**
 * `node:diagnostics_channel` events of the memcached client. Publishing is guarded by `hasSubscribers`, so it costs
 * nothing when nobody listens. Messages never carry keys, values or credentials.
 *
 * @example
 * import diagnostics from 'node:diagnostics_channel';
 * diagnostics.subscribe('sharenothing:memcached:command', (m) => {
 *   const e = m as CommandEvent;
 *   if (e.type !== 'start') histogram.observe({ command: e.command, server: e.server }, e.durationMs);
 * });
 *
 * @module
 */

import diagnostics from 'node:diagnostics_channel';

/** Name of the per-command channel. */
export const COMMAND_CHANNEL = 'sharenothing:memcached:command';
/** Name of the per-server channel (connections, dead/alive marks). */
export const SERVER_CHANNEL = 'sharenothing:memcached:server';

/** One wire request to one server: `start` when it is queued, then `end` or `error`. */
export type CommandEvent =
  | { readonly type: 'start'; readonly command: string; readonly server: string; readonly keys: number }
  | {
      readonly type: 'end';
      readonly command: string;
      readonly server: string;
      readonly keys: number;
      readonly durationMs: number;
    }
  | {
      readonly type: 'error';
      readonly command: string;
      readonly server: string;
      readonly keys: number;
      readonly durationMs: number;
      /** A `MEMCACHED_ERR_*` code. */
      readonly code: string;
      readonly error: Error;
    };

/** A change in a server's state. */
export interface ServerEvent {
  readonly type: 'connect' | 'disconnect' | 'dead' | 'alive';
  readonly server: string;
  /** What caused a `disconnect` or `dead`. */
  readonly error?: Error;
}

/** The channel {@link CommandEvent}s are published on. */
export const commandChannel = diagnostics.channel(COMMAND_CHANNEL);
/** The channel {@link ServerEvent}s are published on. */
export const serverChannel = diagnostics.channel(SERVER_CHANNEL);

/** Publishes a server event when someone listens. */
export function publishServerEvent(event: ServerEvent): void {
  if (serverChannel.hasSubscribers) serverChannel.publish(event);
}
