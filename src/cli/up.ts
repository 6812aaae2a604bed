/**
 * `sharenothing up`: the whole stack on one machine (so far: two cache nodes and a job server), on loopback, with
 * embedded defaults. What must survive a restart (the job server's background queue) lives in a data directory,
 * `./.sharenothing` unless `--data-dir` says otherwise.
 *
 * @module
 */

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { GearmanServer } from '../gearman/server/server.ts';
import { MemcachedServer } from '../memcached/server/server.ts';
import { createLogger } from '../net/logger.ts';
import { installShutdownHandlers } from '../net/shutdown.ts';

/** Default ports of the local stack's two cache nodes. */
export const UP_CACHE_PORTS = [11211, 11212] as const;
/** Default port of the local stack's job server (gearmand's). */
export const UP_GEARMAN_PORT = 4730;

/** Starts the local stack and prints every address; runs until SIGINT/SIGTERM. */
export async function runUp(args: string[]): Promise<number | undefined> {
  const host = '127.0.0.1';
  let basePort: number | undefined;
  let dataDir = resolve('.sharenothing');
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port-base') basePort = Number(args[++i]);
    else if (args[i] === '--data-dir' && args[i + 1] !== undefined) dataDir = resolve(args[++i]!);
    else {
      process.stderr.write(`sharenothing up: unknown option ${args[i]}\n`);
      return 64;
    }
  }
  try {
    mkdirSync(dataDir, { recursive: true });
  } catch (err) {
    process.stderr.write(`sharenothing up: cannot create the data directory ${dataDir}: ${(err as Error).message}\n`);
    return 73;
  }
  const logger = createLogger({ name: 'up', level: 'info', stream: process.stderr });
  const ports = basePort === undefined ? [...UP_CACHE_PORTS] : [basePort, basePort + 1];
  const caches: MemcachedServer[] = [];
  for (const port of ports) {
    const server = new MemcachedServer({ port, listen: [host], threads: 1, maxBytes: 64 * 1024 * 1024, logger });
    try {
      await server.listen();
    } catch (err) {
      process.stderr.write(`sharenothing up: cannot listen on ${host}:${port}: ${(err as Error).message}\n`);
      await Promise.all(caches.map((c) => c.close(0)));
      return 71;
    }
    caches.push(server);
  }
  const gearmanPort = basePort === undefined ? UP_GEARMAN_PORT : basePort + 2;
  const jobs = new GearmanServer({
    port: gearmanPort,
    listen: [host],
    logger,
    // Background jobs survive a restart of the stack.
    queueType: 'libsqlite3',
    queue: { libsqlite3Db: join(dataDir, 'gearman-queue.sqlite') },
  });
  try {
    await jobs.listen();
  } catch (err) {
    process.stderr.write(`sharenothing up: cannot listen on ${host}:${gearmanPort}: ${(err as Error).message}\n`);
    await Promise.all(caches.map((c) => c.close(0)));
    return 71;
  }
  process.stdout.write('sharenothing is up:\n');
  for (const c of caches) process.stdout.write(`  memcached  ${host}:${c.address!.port}\n`);
  process.stdout.write(`  gearmand   ${host}:${jobs.address!.port}   (background jobs in ${dataDir})\n`);
  process.stdout.write('Ctrl-C stops it.\n');
  installShutdownHandlers({
    close: async (deadlineMs) => {
      await Promise.all([...caches.map((c) => c.close(deadlineMs)), jobs.close(deadlineMs)]);
    },
    logger,
  });
  return undefined;
}
