/**
 * The gearmand-compatible job server: `sharenothing/gearman/server`.
 *
 * @module
 * @example
 * import { GearmanServer } from 'sharenothing/gearman/server';
 * const server = new GearmanServer({ port: 4730, listen: ['127.0.0.1'], jobRetries: 3 });
 * await server.listen();
 * process.on('SIGTERM', () => server.close());
 */

export {
  ARGUMENT_COUNT,
  encodePacket,
  type Frame,
  HEADER_SIZE,
  MAGIC,
  type Magic,
  PACKET_NAME,
  PACKET_TYPE,
  type PacketArgument,
  type PacketHeader,
  PacketParser,
  type PacketParserOptions,
  type PacketTypeName,
  parseHeader,
  REQUEST,
  RESPONSE,
  splitAdminLine,
  splitArguments,
} from '../protocol/packet-codec.ts';
export type { FunctionQueue, Job, JobRouter, Peer, RouterCounters } from './job-router.ts';
export {
  BuiltinQueueStore,
  type JobPriority,
  PRIORITY,
  type QueueStore,
  type StoredJob,
} from './queue-store.ts';
export { GEARMAND_VERSION, GearmanServer, type GearmanServerOptions, QueueOpenError } from './server.ts';
export {
  defaultGearmanSettings,
  type GearmandCommandLine,
  type GearmanSettings,
  GearmanSettingsError,
  parseGearmandArgs,
  type QueueOptions,
  type QueueType,
  VERBOSE_LEVELS,
  type VerboseLevel,
} from './settings.ts';
export {
  createQueueTableSql,
  queueStoreFor,
  SqlQueueStore,
  type SqlQueueStoreOptions,
} from './sql-queue-store.ts';
