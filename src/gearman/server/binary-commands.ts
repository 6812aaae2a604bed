/**
 * The binary requests: one decoded packet in, the replies out, with gearmand 1.1.20's answers (error codes and
 * texts from `libgearman-server/server.cc`).
 *
 * @module
 */

import {
  ARGUMENT_COUNT,
  encodePacket,
  type Magic,
  REQUEST,
  RESPONSE,
  splitArguments,
} from '../protocol/packet-codec.ts';
import { type Job, type JobRouter, MAX_UNIQUE_SIZE, type Peer, type SubmitResult } from './job-router.ts';
import { type JobPriority, PRIORITY } from './queue-store.ts';

/** What a request handler needs from its connection. */
export interface CommandContext {
  readonly router: JobRouter;
  readonly peer: Peer;
  /**
   * The reply depends on an asynchronous step (a durable store's `add`): the connection handles nothing more until
   * the promise settles, so replies stay in request order.
   */
  wait(promise: Promise<void>): void;
}

/** gearmand's job handle buffer (`GEARMAND_JOB_HANDLE_SIZE`): handles are at most 63 bytes. */
const JOB_HANDLE_SIZE = 64;
/** gearmand's OPTION_REQ buffer (`GEARMAND_OPTION_SIZE`). */
const OPTION_SIZE = 64;
/** gearmand keeps at most 127 bytes of a client id (`GEARMAND_SERVER_CON_ID_SIZE` - 1). */
const CLIENT_ID_MAX = 127;
/** CAN_DO_TIMEOUT's number may have at most 20 characters (`GEARMAN_MAXIMUM_INTEGER_DISPLAY_LENGTH`). */
const MAX_INTEGER_LENGTH = 20;

const NO_JOB_PACKET = encodePacket(RESPONSE.NO_JOB);

function errorPacket(code: string, text: string): Buffer {
  return encodePacket(RESPONSE.ERROR, [code, text]);
}

const ERR = {
  invalidMagic: errorPacket('INVALID_MAGIC', 'Request magic expected'),
  notExpected: errorPacket('INVALID_COMMAND', 'Command not expected'),
  uniqueTooLarge: errorPacket('ARGUMENT_TOO_LARGE', 'Unique value too large'),
  unknownOption: errorPacket('UNKNOWN_OPTION', 'Server does not recognize given option'),
  noSuchJobData: errorPacket('JOB_NOT_FOUND', 'Job does not exist on server'),
  noSuchJobResult: errorPacket('JOB_NOT_FOUND', 'Job given in work result not found'),
  noSuchJobException: errorPacket('JOB_NOT_FOUND', 'An exception was received for a job that does not exist'),
  handleTooLarge: errorPacket(
    'ARGUMENT_TOO_LARGE',
    'Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf',
  ),
  // Not gearmand's: it looks for the missing NULs in the next packet and desynchronises the stream.
  missingArguments: errorPacket('INVALID_PACKET', 'Missing arguments'),
  // Not gearmand's: it sends nothing at all (and the client waits forever).
  badEpoch: errorPacket('INVALID_ARGUMENT', 'Invalid epoch time'),
} as const;

/** SUBMIT_* types: priority and whether the submitter waits for the result. */
const SUBMIT: Readonly<Record<number, { priority: JobPriority; background: boolean }>> = {
  [REQUEST.SUBMIT_JOB]: { priority: PRIORITY.NORMAL, background: false },
  [REQUEST.SUBMIT_JOB_BG]: { priority: PRIORITY.NORMAL, background: true },
  [REQUEST.SUBMIT_JOB_HIGH]: { priority: PRIORITY.HIGH, background: false },
  [REQUEST.SUBMIT_JOB_HIGH_BG]: { priority: PRIORITY.HIGH, background: true },
  [REQUEST.SUBMIT_JOB_LOW]: { priority: PRIORITY.LOW, background: false },
  [REQUEST.SUBMIT_JOB_LOW_BG]: { priority: PRIORITY.LOW, background: true },
  [REQUEST.SUBMIT_JOB_EPOCH]: { priority: PRIORITY.NORMAL, background: true },
  [REQUEST.SUBMIT_REDUCE_JOB]: { priority: PRIORITY.NORMAL, background: false },
  [REQUEST.SUBMIT_REDUCE_JOB_BACKGROUND]: { priority: PRIORITY.NORMAL, background: true },
};

/** The bytes up to the first NUL (gearmand copies some arguments with `%.*s`, which stops there). */
function cString(arg: Buffer): Buffer {
  const nul = arg.indexOf(0);
  return nul < 0 ? arg : arg.subarray(0, nul);
}

/**
 * C's `strtoll`/`atoi` prefix parse: optional blanks and sign, then digits; anything else ends the number (no digits
 * is 0). Returns undefined on 64-bit overflow, where `strtoll` sets ERANGE.
 */
export function parseCInteger(text: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d*)/.exec(text)!;
  if (m[2] === '') return 0;
  const value = BigInt(m[1] === '-' ? `-${m[2]}` : m[2]!);
  if (value > 0x7fffffffffffffffn || value < -0x8000000000000000n) return undefined;
  return Number(value);
}

/** A WORK_STATUS number as gearmand stores it: `(uint32_t)atoi(...)`. */
function statusNumber(arg: Buffer): number {
  const value = parseCInteger(cString(arg).toString('latin1'));
  if (value === undefined) return 0xffffffff;
  return Number(BigInt.asUintN(32, BigInt(value)));
}

/** Handles one binary packet from a client or worker. */
export function handlePacket(ctx: CommandContext, magic: Magic, type: number, data: Buffer): void {
  const { peer, router } = ctx;
  if (magic === 'RES') {
    peer.send(ERR.invalidMagic);
    return;
  }
  const { args, missing } = splitArguments(data, ARGUMENT_COUNT[type] ?? 0);
  switch (type) {
    case REQUEST.ECHO_REQ:
      peer.send(encodePacket(RESPONSE.ECHO_RES, [data]));
      return;

    case REQUEST.SUBMIT_JOB:
    case REQUEST.SUBMIT_JOB_BG:
    case REQUEST.SUBMIT_JOB_HIGH:
    case REQUEST.SUBMIT_JOB_HIGH_BG:
    case REQUEST.SUBMIT_JOB_LOW:
    case REQUEST.SUBMIT_JOB_LOW_BG:
    case REQUEST.SUBMIT_JOB_EPOCH:
    case REQUEST.SUBMIT_REDUCE_JOB:
    case REQUEST.SUBMIT_REDUCE_JOB_BACKGROUND:
      submit(ctx, type, args, missing);
      return;

    case REQUEST.GET_STATUS: {
      // gearmand copies the handle with `%.*s` (up to a NUL). A handle too long for gearmand's buffer (which it
      // answers with nothing at all) cannot name a job: it is simply unknown here.
      const handle = cString(args[0]!).toString('latin1');
      const job = router.statusByHandle(handle);
      peer.send(
        job === undefined
          ? encodePacket(RESPONSE.STATUS_RES, [handle, '0', '0', '0', '0'])
          : encodePacket(RESPONSE.STATUS_RES, [
              handle,
              '1',
              job.worker === undefined ? '0' : '1',
              String(job.numerator),
              String(job.denominator),
            ]),
      );
      return;
    }

    case REQUEST.GET_STATUS_UNIQUE: {
      const unique = cString(args[0]!).toString('latin1');
      const job = router.statusByUnique(unique);
      peer.send(
        job === undefined
          ? encodePacket(RESPONSE.STATUS_RES_UNIQUE, [unique, '0', '0', '0', '0', '0'])
          : encodePacket(RESPONSE.STATUS_RES_UNIQUE, [
              unique,
              '1',
              job.worker === undefined ? '0' : '1',
              String(job.numerator),
              String(job.denominator),
              String(job.listeners.length),
            ]),
      );
      return;
    }

    case REQUEST.OPTION_REQ: {
      const option = cString(data).toString('latin1');
      if (option.length >= OPTION_SIZE || option.toLowerCase() !== 'exceptions') {
        peer.send(ERR.unknownOption);
        return;
      }
      peer.exceptions = true;
      peer.send(encodePacket(RESPONSE.OPTION_RES, [data]));
      return;
    }

    case REQUEST.CAN_DO:
      router.canDo(peer, data.toString('latin1'));
      return;

    case REQUEST.CAN_DO_TIMEOUT: {
      // gearmand ignores (silently) a timeout it cannot parse; it has no reply to send either way.
      const text = args[1]!.toString('latin1');
      if (text.length > MAX_INTEGER_LENGTH) return;
      const timeout = parseCInteger(text);
      if (timeout === undefined || timeout >= 2 ** 63 - 1 || timeout <= -(2 ** 63)) return;
      router.canDo(peer, args[0]!.toString('latin1'), timeout);
      return;
    }

    case REQUEST.CANT_DO:
      router.cantDo(peer, data.toString('latin1'));
      return;

    case REQUEST.RESET_ABILITIES:
      router.resetAbilities(peer);
      return;

    case REQUEST.PRE_SLEEP:
      router.preSleep(peer);
      return;

    case REQUEST.GRAB_JOB:
    case REQUEST.GRAB_JOB_UNIQ:
    case REQUEST.GRAB_JOB_ALL:
      peer.send(assignment(type, router.grab(peer)));
      return;

    case REQUEST.WORK_DATA:
    case REQUEST.WORK_WARNING: {
      const job = router.runningJob(peer, args[0]!.toString('latin1'));
      if (job === undefined) {
        peer.send(ERR.noSuchJobData);
        return;
      }
      router.forward(job, missing > 0 ? encodePacket(type, args) : withMagic(type, data));
      return;
    }

    case REQUEST.WORK_STATUS: {
      const job = router.runningJob(peer, args[0]!.toString('latin1'));
      if (job === undefined) {
        peer.send(ERR.noSuchJobResult);
        return;
      }
      job.numerator = statusNumber(args[1]!);
      job.denominator = statusNumber(args[2]!);
      // Perl Gearman::Worker 2.004.015 sends `handle\0numerator` only: forward three well-formed arguments.
      router.forward(job, missing > 0 ? encodePacket(RESPONSE.WORK_STATUS, args) : withMagic(type, data));
      return;
    }

    case REQUEST.WORK_COMPLETE: {
      const job = router.runningJob(peer, args[0]!.toString('latin1'));
      if (job === undefined) {
        peer.send(ERR.noSuchJobResult);
        return;
      }
      router.forward(job, missing > 0 ? encodePacket(RESPONSE.WORK_COMPLETE, args) : withMagic(type, data));
      router.finish(job, 'completed');
      return;
    }

    case REQUEST.WORK_EXCEPTION: {
      const job = router.runningJob(peer, args[0]!.toString('latin1'));
      if (job === undefined) {
        peer.send(ERR.noSuchJobException);
        return;
      }
      // Clients that did not ask for exceptions get WORK_FAIL with the handle as gearmand sends it: NUL-terminated.
      const fail = encodePacket(RESPONSE.WORK_FAIL, [args[0]!, '']);
      router.forwardException(
        job,
        missing > 0 ? encodePacket(RESPONSE.WORK_EXCEPTION, args) : withMagic(type, data),
        fail,
      );
      router.finish(job, 'exceptions');
      return;
    }

    case REQUEST.WORK_FAIL: {
      const handle = cString(data);
      if (handle.length >= JOB_HANDLE_SIZE) {
        peer.send(ERR.handleTooLarge);
        return;
      }
      const job = router.runningJob(peer, handle.toString('latin1'));
      if (job === undefined) {
        peer.send(ERR.noSuchJobResult);
        return;
      }
      router.forward(job, withMagic(type, data));
      router.finish(job, 'failed');
      return;
    }

    case REQUEST.SET_CLIENT_ID: {
      const id = cString(data);
      peer.clientId = id.subarray(0, CLIENT_ID_MAX).toString('latin1');
      return;
    }

    default:
      // UNUSED, ALL_YOURS, SUBMIT_JOB_SCHED and every response type sent as a request.
      peer.send(ERR.notExpected);
  }
}

function submit(ctx: CommandContext, type: number, args: Buffer[], missing: number): void {
  const { peer, router } = ctx;
  if (missing > 0) {
    peer.send(ERR.missingArguments);
    return;
  }
  const kind = SUBMIT[type]!;
  const reduce = type === REQUEST.SUBMIT_REDUCE_JOB || type === REQUEST.SUBMIT_REDUCE_JOB_BACKGROUND;
  const unique = args[1]!;
  // gearmand checks the reducer's length for reduce jobs (a slip for the unique's); we check both.
  if (unique.length > MAX_UNIQUE_SIZE || (reduce && args[2]!.length > MAX_UNIQUE_SIZE)) {
    peer.send(ERR.uniqueTooLarge);
    return;
  }
  let whenToRun = 0;
  if (type === REQUEST.SUBMIT_JOB_EPOCH) {
    const when = parseCInteger(args[2]!.toString('latin1'));
    if (when === undefined) {
      peer.send(ERR.badEpoch);
      return;
    }
    whenToRun = when;
  }
  // REDUCE: func, unique, reducer, aggregator (unused by gearmand), data. EPOCH: func, unique, epoch, data.
  const data = args[args.length - 1]!;
  const result = router.submit(peer, {
    functionName: args[0]!.toString('latin1'),
    unique: unique.toString('latin1'),
    data,
    priority: kind.priority,
    background: kind.background,
    whenToRun,
    reducer: reduce ? args[2]!.toString('latin1') : '',
  });
  if (result instanceof Promise) {
    ctx.wait(result.then((r) => peer.send(submitReply(r))));
  } else {
    peer.send(submitReply(result));
  }
}

function submitReply(result: SubmitResult): Buffer {
  return result.ok ? encodePacket(RESPONSE.JOB_CREATED, [result.handle]) : errorPacket(result.code, result.text);
}

/** JOB_ASSIGN for GRAB_JOB, JOB_ASSIGN_UNIQ for GRAB_JOB_UNIQ, and for GRAB_JOB_ALL unless the job has a reducer. */
function assignment(type: number, job: Job | undefined): Buffer {
  if (job === undefined) return NO_JOB_PACKET;
  if (type === REQUEST.GRAB_JOB) return encodePacket(RESPONSE.JOB_ASSIGN, [job.handle, job.fn.name, job.data]);
  if (type === REQUEST.GRAB_JOB_ALL && job.reducer !== '') {
    return encodePacket(RESPONSE.JOB_ASSIGN_ALL, [job.handle, job.fn.name, job.unique, job.reducer, job.data]);
  }
  return encodePacket(RESPONSE.JOB_ASSIGN_UNIQ, [job.handle, job.fn.name, job.unique, job.data]);
}

/** The worker's packet re-sent to clients: same type and data, response magic (one copy of the data). */
function withMagic(type: number, data: Buffer): Buffer {
  return encodePacket(type, [data]);
}
