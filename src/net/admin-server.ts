/**
 * The opt-in admin listener every daemon can start: `GET /metrics` for Prometheus and `GET /healthz` for load
 * balancers and orchestrators. It is a separate port from the protocol port and should bind to a private address.
 *
 * @module
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from './logger.ts';
import { silentLogger } from './logger.ts';
import { type MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from './metrics.ts';
import { listenTcp, trackConnections } from './reuse-port.ts';

/** Options of {@link startAdminServer}. */
export interface AdminServerOptions {
  /** Address to bind (default `127.0.0.1`: metrics are not for the world). */
  host?: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** What `/metrics` renders. */
  registry: MetricsRegistry;
  /** Receives `listening` (info), request failures (warn/error) and requests (trace). */
  logger?: Logger;
  /** `/healthz` answers 200 while this returns true, 503 otherwise (default: always healthy). */
  health?: () => boolean | Promise<boolean>;
}

/** A running admin listener. */
export interface AdminServer {
  /** The bound address (with the real port when 0 was asked for). */
  address: { host: string; port: number };
  /** Stops listening and closes every connection, including idle keep-alive ones. */
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/**
 * Starts the admin HTTP listener.
 *
 * | request          | reply                                              |
 * |------------------|----------------------------------------------------|
 * | `GET /metrics`   | 200, `text/plain; version=0.0.4`, registry text    |
 * | `GET /healthz`   | 200 `ok`, or 503 `unhealthy` when `health()` fails |
 * | other methods    | 405 with `Allow: GET, HEAD` (HEAD is GET sans body)|
 * | other paths      | 404                                                |
 *
 * @example
 * const admin = await startAdminServer({ host: '127.0.0.1', port: 9150, registry, logger });
 * logger.info('admin listening', admin.address);
 * await admin.close();
 */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { registry, health } = options;
  const logger = options.logger ?? silentLogger;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    if (path !== '/metrics' && path !== '/healthz') return send(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
    }
    if (path === '/metrics') return send(res, 200, registry.render(), { 'content-type': PROMETHEUS_CONTENT_TYPE });
    let healthy = true;
    try {
      healthy = health === undefined ? true : (await health()) === true;
    } catch (err) {
      logger.warn('health check failed', { err });
      healthy = false;
    }
    send(res, healthy ? 200 : 503, healthy ? 'ok' : 'unhealthy');
  };

  const server = createServer((req, res) => {
    logger.trace('admin request', { method: req.method, url: req.url });
    handle(req, res).catch((err: unknown) => {
      // A collector that throws turns into a 500 for this scrape, not a crash of the daemon.
      logger.error('admin request failed', { err, url: req.url });
      if (!res.headersSent) send(res, 500, 'internal server error\n');
      else res.destroy();
    });
  });
  const connections: Set<Socket> = trackConnections(server);
  const address = await listenTcp(server, { host: options.host ?? '127.0.0.1', port: options.port });
  const bound = { host: address.address, port: address.port };
  logger.info('admin listening', bound);

  let closing: Promise<void> | undefined;
  return {
    address: bound,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Scrapers keep connections alive between scrapes; an admin port has nothing worth draining.
        server.closeAllConnections();
        for (const socket of connections) socket.destroy();
      });
      return closing;
    },
  };
}
