/**
 * The admin text protocol on the job port (`gearadmin`, `nc`): gearmand 1.1.20's commands and its exact replies
 * (`libgearman-server/text.cc`), including which replies end in `\r\n` and which in `\n`.
 *
 * @module
 */

import { splitAdminLine } from '../protocol/packet-codec.ts';
import type { JobRouter } from './job-router.ts';

/** What the admin commands read and control. */
export interface AdminHost {
  readonly router: JobRouter;
  /** `version` reply. */
  readonly version: string;
  /** `verbose` reply: the `--verbose` level name (`ERROR`, `INFO`, …). */
  readonly verboseName: string;
  /** Process id for `getpid`. */
  readonly pid: number;
  /** `shutdown [graceful]` is accepted (removed from gearmand in 1.1.15; opt-in here). */
  readonly shutdownEnabled: boolean;
  /** Stops the server now, or (graceful) stops accepting and exits once no job is left. */
  shutdown(graceful: boolean): void;
}

const OK = 'OK\r\n';
const UNKNOWN_ERROR = 'ERR UNKNOWN_ERROR\r\n';

function invalidArguments(command: string): string {
  return `ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+${command}\r\n`;
}

function unknownCommand(command: string): string {
  return `ERR UNKNOWN_COMMAND Unknown+server+command${command}\r\n`;
}

/** gearmand compares command words with `strcasecmp`. */
function is(arg: string | undefined, word: string): boolean {
  return arg !== undefined && arg.toLowerCase() === word;
}

/** C's `atoi`, enough for `maxqueue` sizes. */
function atoi(text: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(text);
  if (!m) return 0;
  const n = Number(m[1]);
  return Number.isFinite(n) ? Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, n)) : 0;
}

/**
 * Runs one admin line (without its line ending) and returns the reply, a latin1 string (names are bytes). Replies
 * after which the server must act (shutdown) call into `host` before returning.
 */
export function runAdminCommand(host: AdminHost, line: Buffer | string): string {
  const args = splitAdminLine(line);
  const command = args[0]!;
  const router = host.router;
  switch (command.toLowerCase()) {
    case 'workers': {
      let out = '';
      for (const peer of [...router.peers].reverse()) {
        out += `${peer.fd} ${peer.host} ${peer.clientId} :`;
        for (const ability of peer.abilities) out += ` ${ability.fn.name}`;
        out += '\n';
      }
      return `${out}.\n`;
    }
    case 'status': {
      let out = '';
      for (const fn of router.functionsInListingOrder()) {
        out += `${fn.name}\t${fn.total}\t${fn.running}\t${fn.workers.length}\n`;
      }
      return `${out}.\n`;
    }
    case 'prioritystatus': {
      let out = '';
      for (const fn of router.functionsInListingOrder()) {
        const [high, normal, low] = fn.queues;
        out += `${fn.name}\t${high.length}\t${normal.length}\t${low.length}\t${fn.workers.length}\n`;
      }
      return `${out}.\n`;
    }
    case 'getpid':
      return `OK ${host.pid}\n`;
    case 'verbose':
      return `OK ${host.verboseName}\n`;
    case 'version':
      return `OK ${host.version}\n`;
    case 'maxqueue':
      return maxQueue(router, args);
    case 'create':
      if (args.length === 3 && is(args[1], 'function')) {
        // gearmand chops two bytes off the name assuming `\r\n`, so `nc` users lose a character; we do not.
        router.functionNamed(args[2]!);
        return OK;
      }
      return invalidArguments(command);
    case 'drop':
      return args.length === 3 && is(args[1], 'function') ? dropFunction(router, args[2]!) : invalidArguments(command);
    case 'shutdown':
      if (!host.shutdownEnabled) return unknownCommand(command);
      if (args.length === 1) {
        host.shutdown(false);
        return OK;
      }
      if (args.length === 2 && is(args[1], 'graceful')) {
        host.shutdown(true);
        return OK;
      }
      return invalidArguments(command);
    default:
      break;
  }
  // gearmand only takes these paths with enough arguments; with fewer they are unknown commands.
  if (args.length >= 3 && is(command, 'cancel')) {
    if (args.length === 3 && is(args[1], 'job')) return router.cancel(args[2]!) ? OK : 'ERR UNKNOWN_JOB\r\n';
    return UNKNOWN_ERROR;
  }
  if (args.length >= 2 && is(command, 'show')) {
    if (args.length === 3 && is(args[1], 'unique') && is(args[2], 'jobs')) {
      let out = '';
      for (const job of router.jobsInUniqueOrder()) out += `${job.unique}\n`;
      return `${out}.\n`;
    }
    if (args.length === 2 && is(args[1], 'jobs')) {
      let out = '';
      for (const job of router.jobsInHandleOrder()) {
        out += `${job.handle}\t${job.retries}\t${job.ignore ? 1 : 0}\t${job.persisted ? 1 : 0}\n`;
      }
      return `${out}.\n`;
    }
    return 'ERR UNKNOWN_SHOW_ARGUMENTS\r\n';
  }
  return unknownCommand(command);
}

/** `maxqueue FUNC [N | HIGH NORMAL LOW]`: one value for every priority, or one each; missing or <= 0: unlimited. */
function maxQueue(router: JobRouter, args: string[]): string {
  if (args.length === 1) return invalidArguments(args[0]!);
  const sizes: [number, number, number] = [0, 0, 0];
  for (let priority = 0; priority < 3; priority++) {
    const arg = args[priority + 2];
    sizes[priority] = arg === undefined ? 0 : Math.max(0, atoi(arg));
  }
  // gearmand: with at most one size given, that size applies to all three priorities.
  if (args.length <= 3) sizes[1] = sizes[2] = sizes[0];
  // Only an existing function is affected (exact, case-sensitive name).
  const fn = router.functions.get(args[1]!);
  if (fn !== undefined) fn.maxQueue = sizes;
  return OK;
}

function dropFunction(router: JobRouter, name: string): string {
  // gearmand matches the name case-insensitively and drops the first match in its listing order.
  const wanted = name.toLowerCase();
  const fn = router.functionsInListingOrder().find((f) => f.name.toLowerCase() === wanted);
  if (fn === undefined) return 'ERR function not found\r\n';
  switch (router.dropFunction(fn)) {
    case 'dropped':
      return OK;
    case 'busy':
      return 'ERR there are still connected workers or executing clients\r\n';
    default:
      // Not gearmand's (it frees the function and leaves its queued jobs dangling).
      return 'ERR there are still queued jobs\r\n';
  }
}
