/**
 * Listening and closing for TCP servers: `listen()` as a promise (with `SO_REUSEPORT` so several worker threads
 * can bind one port and let the kernel spread connections), and a close with a drain phase and a hard deadline.
 *
 * ```
 *  closeServer(server, { connections, deadlineMs })
 *    ├─ server.close()            stop accepting; resolves once every connection has closed
 *    ├─ onDrain(socket) each      protocol decides: end now if idle, or after the in-flight reply
 *    └─ after deadlineMs          socket.destroy() whatever is still open
 * ```
 *
 * @module
 */

import type { AddressInfo, Server, Socket } from 'node:net';

/** Options of {@link listenTcp}. */
export interface ListenTcpOptions {
  /** Address to bind (default: Node's default, all interfaces). */
  host?: string;
  /** Port; 0 picks a free one. */
  port: number;
  /**
   * Set `SO_REUSEPORT` so other sockets (other worker threads, other processes) can bind the same port and the
   * kernel balances new connections across them. Linux, FreeBSD 12+, DragonFlyBSD and a few others only; Node
   * rejects the listen elsewhere.
   */
  reusePort?: boolean;
  /** Pending-connection queue length (Node's default is 511). */
  backlog?: number;
}

/**
 * Binds `server` and resolves with its address, or rejects with the listen error (`EADDRINUSE`, `EACCES`),
 * leaving no listener of its own behind on the server either way.
 *
 * @example
 * const address = await listenTcp(server, { host: '127.0.0.1', port: 11211, reusePort: true });
 */
export function listenTcp(server: Server, options: ListenTcpOptions): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    try {
      server.listen({
        port: options.port,
        host: options.host,
        backlog: options.backlog,
        reusePort: options.reusePort === true ? true : undefined,
      });
    } catch (err) {
      // Invalid options throw synchronously (ERR_SOCKET_BAD_PORT, ERR_SERVER_ALREADY_LISTEN).
      server.off('error', onError);
      server.off('listening', onListening);
      reject(err);
    }
  });
}

/**
 * Keeps `connections` in step with the sockets `server` accepts: added on `'connection'`, removed on `'close'`.
 * Pass the set to {@link closeServer}.
 */
export function trackConnections(server: Server, connections: Set<Socket> = new Set()): Set<Socket> {
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  return connections;
}

/** Options of {@link closeServer}. */
export interface CloseServerOptions {
  /** The open connections (see {@link trackConnections}). */
  connections: Set<Socket>;
  /** After this many milliseconds, connections still open are destroyed. */
  deadlineMs: number;
  /**
   * Asks one connection to finish: end it now if idle, or mark it to end after the reply in flight.
   * Default: `socket.end()`.
   */
  onDrain?: (socket: Socket) => void;
}

/**
 * Stops accepting, asks every connection to finish, destroys what is left at the deadline, and resolves once the
 * server and every connection have closed. Never rejects; a server that was not listening is only drained.
 */
export function closeServer(server: Server, options: CloseServerOptions): Promise<void> {
  const { connections, deadlineMs } = options;
  const onDrain = options.onDrain ?? ((socket: Socket) => socket.end());
  const serverClosed = new Promise<void>((resolve) => {
    // The callback runs once the listening handle and every connection the server accepted are closed; the
    // ERR_SERVER_NOT_RUNNING it gets when the server was never listening is not a failure of the close.
    server.close(() => resolve());
  });
  for (const socket of connections) {
    try {
      onDrain(socket);
    } catch {
      // A hook that throws must not stop the others draining; destroy() without the error, since the socket may
      // have no 'error' listener and the failure is the hook's, not the peer's.
      socket.destroy();
    }
  }
  const socketsClosed = Promise.all(
    [...connections].map((socket) =>
      socket.closed ? undefined : new Promise<void>((resolve) => socket.once('close', () => resolve())),
    ),
  );
  const timer = setTimeout(() => {
    for (const socket of connections) socket.destroy();
  }, deadlineMs);
  return Promise.all([serverClosed, socketsClosed]).then(() => clearTimeout(timer));
}
