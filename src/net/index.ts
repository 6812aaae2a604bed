/**
 * What every sharenothing daemon shares: NDJSON logging, a Prometheus registry and its opt-in admin listener,
 * graceful shutdown on signals, `SO_REUSEPORT` listening with drain-then-destroy closing, and groups of worker
 * threads serving one port. Node built-ins only.
 *
 * @example
 * import { createLogger, installShutdownHandlers, MetricsRegistry, startAdminServer, ThreadGroup } from 'sharenothing/net';
 *
 * const logger = createLogger({ level: 'info', name: 'memcached' });
 * const registry = new MetricsRegistry();
 * const admin = await startAdminServer({ host: '127.0.0.1', port: 9150, registry, logger });
 * const group = await ThreadGroup.start({
 *   entry: new URL('./memcached-worker.ts', import.meta.url),
 *   count: 4,
 *   workerDataFor: ({ address }) => ({ port: address?.port ?? 11211 }),
 *   logger,
 * });
 * installShutdownHandlers({
 *   close: async (deadlineMs) => {
 *     await group.close(deadlineMs);
 *     await admin.close();
 *   },
 *   logger,
 * });
 *
 * @module
 */

export { type AdminServer, type AdminServerOptions, startAdminServer } from './admin-server.ts';
export { NET_ERROR_CODES, NetError, type NetErrorCode } from './errors.ts';
export {
  createLogger,
  LOG_LEVELS,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  type LogMethod,
  type SerializedError,
  serializeError,
  silentLogger,
} from './logger.ts';
export {
  type AnyMetric,
  Counter,
  type CounterChild,
  Gauge,
  type GaugeChild,
  type GaugeCollect,
  Histogram,
  type HistogramChild,
  type Labels,
  MetricsRegistry,
  PROMETHEUS_CONTENT_TYPE,
} from './metrics.ts';
export { switchUser } from './privileges.ts';
export {
  type CloseServerOptions,
  closeServer,
  type ListenTcpOptions,
  listenTcp,
  trackConnections,
} from './reuse-port.ts';
export { installShutdownHandlers, type ShutdownOptions } from './shutdown.ts';
export {
  type CloseWorkerMessage,
  onWorkerClose,
  onWorkerMessage,
  type ThreadAddress,
  ThreadGroup,
  type ThreadGroupOptions,
  type WorkerSpawn,
  type WorkerToParentMessage,
  workerFailed,
  workerReady,
} from './thread-group.ts';
