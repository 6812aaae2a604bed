/**
 * The gearmand-compatible job server: one job router, one listener per `-L` address, in one thread.
 *
 * @module
 */

import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../../net/logger.ts';
import { silentLogger } from '../../net/logger.ts';
import { closeServer, listenTcp } from '../../net/reuse-port.ts';
import type { AdminHost } from './admin-commands.ts';
import { type ConnectionHost, GearmanConnection } from './connection.ts';
import { JobRouter } from './job-router.ts';
import type { BuiltinQueueStore, QueueStore } from './queue-store.ts';
import {
  defaultGearmanSettings,
  type GearmanSettings,
  type QueueOptions,
  validateGearmanSettings,
} from './settings.ts';
import { queueStoreFor } from './sql-queue-store.ts';

/** The version we report (`version`, `gearadmin --server-version`): gearmand's, which tools compare against. */
export const GEARMAND_VERSION = '1.1.20';

/** Options of {@link GearmanServer}: any setting, plus a logger and a persistent queue. */
export type GearmanServerOptions = Partial<Omit<GearmanSettings, 'queue'>> & {
  /** Durable queue options (gearmand's `--libsqlite3-*`, `--mysql-*`, `--libpq-*`), used with `queueType`. */
  queue?: Partial<QueueOptions>;
  logger?: Logger;
  /** Persistent queue (default: the one `queueType` names; {@link BuiltinQueueStore} for `builtin`). */
  queueStore?: QueueStore;
};

/** The persistent queue could not be opened or replayed at `listen()` (gearmand refuses to start then too). */
export class QueueOpenError extends Error {
  override name = 'QueueOpenError';
  readonly code = 'GEARMAN_ERR_QUEUE_OPEN';
}

/**
 * A gearmand 1.1-compatible job server (binary protocol and admin text protocol on one port).
 *
 * @example
 * const server = new GearmanServer({ port: 0, listen: ['127.0.0.1'] });
 * const { port } = await server.listen();
 * // … clients and workers connect to port …
 * await server.close();
 */
export class GearmanServer implements ConnectionHost, AdminHost {
  readonly settings: GearmanSettings;
  readonly router: JobRouter;
  readonly log: Logger;
  readonly connections = new Set<GearmanConnection>();
  readonly version = GEARMAND_VERSION;
  readonly pid = process.pid;
  /**
   * Called when the server should stop: the admin `shutdown` (with `--enable-shutdown`), or `shutdown graceful`
   * once the last job is gone. Defaults to {@link close}.
   */
  onShutdown: () => void;
  readonly #store: QueueStore;
  readonly #servers: Server[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #bySocket = new WeakMap<Socket, GearmanConnection>();
  #address: AddressInfo | undefined;
  #closing: Promise<void> | undefined;
  #draining = false;

  constructor(options: GearmanServerOptions = {}) {
    const { logger, queueStore, queue, ...rest } = options;
    const defaults = defaultGearmanSettings();
    this.settings = { ...defaults, ...rest, queue: { ...defaults.queue, ...queue } };
    validateGearmanSettings(this.settings);
    this.log = logger ?? silentLogger;
    this.#store = queueStore ?? queueStoreFor(this.settings);
    this.router = new JobRouter({
      handlePrefix: this.settings.jobHandlePrefix,
      jobRetries: this.settings.jobRetries,
      workerWakeup: this.settings.workerWakeup,
      roundRobin: this.settings.roundRobin,
      hashtableBuckets: this.settings.hashtableBuckets,
      memoryLimit: this.settings.maxJobMemory,
      store: this.#store,
      logger: this.log,
    });
    this.onShutdown = () => {
      void this.close();
    };
  }

  /** The first bound address (after {@link listen}). */
  get address(): AddressInfo | undefined {
    return this.#address;
  }

  /** True while a listener accepts connections (false after `shutdown graceful` or {@link close}). */
  get listening(): boolean {
    return this.#servers.some((server) => server.listening);
  }

  /** `--exceptions`: connections start with exceptions on. */
  get exceptions(): boolean {
    return this.settings.exceptions;
  }

  /** Largest packet a connection accepts. */
  get maxPacketSize(): number {
    return this.settings.maxPacketSize;
  }

  /** Unsent output after which a connection is closed as not reading. */
  get maxOutputBuffer(): number {
    return this.settings.maxOutputBuffer;
  }

  /** The `--verbose` level, for the admin `verbose` command. */
  get verboseName(): string {
    return this.settings.verbose;
  }

  /** `--enable-shutdown`. */
  get shutdownEnabled(): boolean {
    return this.settings.enableShutdown;
  }

  /** Replays the persistent queue, then binds every `-L` address (all interfaces by default). */
  async listen(): Promise<AddressInfo> {
    try {
      await this.#store.replay((job) => this.router.replay(job));
    } catch (err) {
      await Promise.resolve()
        .then(() => this.#store.close())
        .catch(() => {});
      throw new QueueOpenError(`cannot open the ${this.#store.name} queue: ${(err as Error).message}`, { cause: err });
    }
    const s = this.settings;
    const hosts = s.listen.length > 0 ? s.listen : [undefined];
    let port = s.port;
    try {
      for (const host of hosts) {
        const server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
        const address = await listenTcp(server, { host, port, backlog: s.backlog });
        this.#servers.push(server);
        // With -p 0 every address gets the port the first one got.
        port = address.port;
        this.#address ??= address;
      }
    } catch (err) {
      await this.close(0);
      throw err;
    }
    this.log.info('gearmand listening', { address: this.#address!.address, port: this.#address!.port });
    return this.#address!;
  }

  #accept(socket: Socket): void {
    if (this.#closing !== undefined) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    if (this.settings.keepalive) {
      socket.setKeepAlive(true, this.settings.keepaliveIdle > 0 ? this.settings.keepaliveIdle * 1000 : 0);
    }
    const conn = new GearmanConnection(socket, this);
    this.#bySocket.set(socket, conn);
    this.log.debug('accepted connection', { conn: conn.peer.id, host: conn.peer.host });
  }

  /**
   * The admin `shutdown`: stop now; `shutdown graceful`: stop accepting connections and stop once no job is left
   * (Danga Gearman::Server and gearmand before 1.1.15). Runs after the `OK` is written.
   */
  shutdown(graceful: boolean): void {
    setImmediate(() => {
      if (!graceful) {
        this.onShutdown();
        return;
      }
      if (this.#draining) return;
      this.#draining = true;
      this.log.info('graceful shutdown: waiting for jobs', { jobs: this.router.jobCount });
      for (const server of this.#servers) server.close();
      this.router.onIdle = () => this.onShutdown();
      if (this.router.jobCount === 0) this.onShutdown();
    });
  }

  /**
   * Stops accepting and stops handing out jobs; lets the jobs already running finish (their workers report, their
   * waiting clients get the result) and ends each connection once nothing it takes part in is running; destroys what
   * is left after the deadline (running jobs of a destroyed worker stay in the durable queue). Then commits what the
   * persistent queue has pending.
   */
  close(deadlineMs = 5000): Promise<void> {
    this.#closing ??= (async () => {
      this.router.onIdle = () => {};
      this.router.draining = true;
      const idle = new Set<GearmanConnection>();
      const endIdle = () => {
        for (const conn of this.connections) if (!idle.has(conn) && conn.endWhenIdle()) idle.add(conn);
      };
      const poll = setInterval(endIdle, 10);
      await Promise.all(
        this.#servers.map((server) =>
          closeServer(server, {
            connections: this.#sockets,
            deadlineMs,
            onDrain: (socket) => {
              const conn = this.#bySocket.get(socket);
              if (conn?.endWhenIdle()) idle.add(conn);
            },
          }),
        ),
      ).finally(() => clearInterval(poll));
      for (const conn of this.connections) conn.end();
      for (const socket of this.#sockets) socket.destroy();
      await this.#store.close();
      this.log.info('gearmand closed');
    })();
    return this.#closing;
  }
}
