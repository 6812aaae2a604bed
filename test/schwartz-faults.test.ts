/**
 * Databases that fail: an unreachable database is marked dead and inserts fail over to the next one (a duplicate
 * does not count as a failure); a worker whose database goes away mid-run (connections cut by a proxy on MySQL and
 * PostgreSQL, the job table gone on SQLite) keeps running, publishes what happened and resumes when the database
 * is back; a job whose outcome could not be written is run again once its lease ends. Nothing acknowledged is lost.
 */

import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DATABASE_CHANNEL,
  databaseHash,
  isSchwartzError,
  JOB_CHANNEL,
  SchwartzClient,
  type SchwartzDatabaseEvent,
  type SchwartzJobEvent,
  SchwartzWorker,
} from '../src/schwartz/index.ts';
import { newQueue, type TestQueue } from './helpers/schwartz-perl.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

/** A TCP proxy in front of a database server whose connections the test can cut and restore. */
class CuttableProxy {
  readonly #host: string;
  readonly #port: number;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  port = 0;

  constructor(host: string, port: number) {
    this.#host = host;
    this.#port = port;
  }

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.#port, this.#host);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => {
          this.#sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /** Refuses new connections and resets the open ones. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise((resolve) => server.close(resolve));
  }
}

function listen<T>(channel: string): { events: T[]; stop(): void } {
  const events: T[] = [];
  const fn = (m: unknown) => events.push(m as T);
  diagnostics.subscribe(channel, fn);
  return { events, stop: () => diagnostics.unsubscribe(channel, fn) };
}

async function until(check: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** A location on the same engine that cannot be reached. */
function unreachable(td: TestDatabase): string {
  if (td.dialect === 'sqlite') return 'dbi:SQLite:dbname=/nonexistent-dir/for/schwartz.db';
  return td.dialect === 'mysql' ? 'mysql://root@127.0.0.1:1/nowhere' : 'postgres://postgres@127.0.0.1:1/nowhere';
}

describe('TheSchwartz with failing databases', { concurrency: 3 }, () => {
  for (const [dialect, skip] of allDialects()) {
    describe(dialect, { skip, concurrency: 1 }, () => {
      let td: TestDatabase;
      const queues: TestQueue[] = [];
      const clients: SchwartzClient[] = [];

      before(async () => {
        td = await createTestDatabase(dialect, 'schwartzfault');
      });
      after(async () => {
        for (const c of clients) await c.close();
        for (const q of queues) await q.close();
        await td?.drop();
      });

      it('fails inserts over to the next database and skips the dead one for retrySeconds', async () => {
        const q = await newQueue(td);
        queues.push(q);
        const bad = unreachable(td);
        const client = new SchwartzClient({
          databases: [{ dsn: bad }, { dsn: td.location, prefix: q.prefix }],
          connectTimeout: 2000,
        });
        clients.push(client);
        const events = listen<SchwartzDatabaseEvent>(DATABASE_CHANNEL);
        const handles = [];
        for (let i = 0; i < 10; i++) handles.push(await client.insert('Failover', String(i)));
        events.stop();
        const good = databaseHash(td.location);
        assert.ok(handles.every((h) => h?.database === good));
        const dead = events.events.filter((e) => e.type === 'dead' && e.database === databaseHash(bad));
        assert.ok(dead.length <= 1, `marked dead ${dead.length} times`);
        const rows = await q.raw.query(`SELECT jobid FROM ${q.table('job')}`);
        assert.equal(rows.length, 10);
        // A handle of the dead database reports the driver's error.
        await assert.rejects(client.lookupJob(`${databaseHash(bad)}-1`));
      });

      it('reports NO_DATABASES when every database failed, and tries again after retrySeconds', async () => {
        const client = new SchwartzClient({
          databases: [{ dsn: unreachable(td) }],
          retrySeconds: 0.2,
          connectTimeout: 2000,
        });
        clients.push(client);
        const first = await client.insert('Nowhere', 'x').catch((e: unknown) => e);
        assert.ok(isSchwartzError(first, 'SCHWARTZ_ERR_NO_DATABASES'));
        assert.ok((first as Error).cause instanceof Error);
        // Marked dead: refused at once, without a cause.
        const second = await client.insert('Nowhere', 'x').catch((e: unknown) => e);
        assert.ok(isSchwartzError(second, 'SCHWARTZ_ERR_NO_DATABASES'));
        assert.equal((second as Error).cause, undefined);
        await sleep(250);
        const third = await client.insert('Nowhere', 'x').catch((e: unknown) => e);
        assert.ok((third as Error).cause instanceof Error, 'tried again');
      });

      it('survives its database going away, and resumes when it is back', async () => {
        const proxy =
          dialect === 'sqlite' ? undefined : new CuttableProxy('127.0.0.1', Number(new URL(td.location).port));
        await proxy?.start();
        let location = td.location;
        if (proxy) {
          const url = new URL(td.location);
          url.port = String(proxy.port);
          location = url.toString();
        }
        const q = await newQueue(td, { database: { dsn: location }, retrySeconds: 0.2, connectTimeout: 1000 });
        queues.push(q);
        const job = q.table('job');
        const worked: string[] = [];
        const w = new SchwartzWorker(q.client, { pollInterval: 30 });
        w.canDo('Outage', (j) => void worked.push(j.arg!.toString()));
        const events = listen<SchwartzDatabaseEvent>(DATABASE_CHANNEL);
        const stop = new AbortController();
        const working = w.work({ signal: stop.signal });
        try {
          await q.client.insert('Outage', 'before');
          await until(() => worked.length === 1);

          // The database goes away.
          if (proxy) await proxy.cut();
          else await q.raw.run(`ALTER TABLE ${job} RENAME TO ${job}_away`);
          await until(() => events.events.some((e) => e.type === 'dead' && e.operation === 'find'));
          // Queued meanwhile by another process that still reaches it.
          const table = proxy ? job : `${job}_away`;
          const [{ funcid }] = (await q.raw.query(`SELECT funcid FROM ${q.table('funcmap')}`)) as [{ funcid: number }];
          await q.raw.run(
            `INSERT INTO ${table} (funcid, arg, insert_time, run_after, grabbed_until) VALUES (?, ?, 0, 0, 0)`,
            [funcid, Buffer.from('during')],
          );
          await sleep(300);
          assert.deepEqual(worked, ['before']);

          // Back.
          if (proxy) await proxy.start();
          else await q.raw.run(`ALTER TABLE ${job}_away RENAME TO ${job}`);
          await until(() => worked.length === 2);
          assert.deepEqual(worked, ['before', 'during']);
          await q.client.insert('Outage', 'after');
          await until(() => worked.length === 3);
          assert.ok(events.events.some((e) => e.type === 'alive'));
        } finally {
          events.stop();
          stop.abort();
          await working;
          await proxy?.cut();
        }
      });

      it('runs a job again when its outcome could not be written (nothing acknowledged is lost)', async () => {
        const q = await newQueue(td, { retrySeconds: 0.2 });
        queues.push(q);
        const job = q.table('job');
        const h = await q.client.insert('Unlucky', 'x');
        const runs: number[] = [];
        const jobEvents = listen<SchwartzJobEvent>(JOB_CHANNEL);
        const w = new SchwartzWorker(q.client);
        w.canDo('Unlucky', async () => {
          runs.push(runs.length + 1);
          // The database fails while the job runs: its completion cannot be written.
          if (runs.length === 1) await q.raw.run(`ALTER TABLE ${job} RENAME TO ${job}_gone`);
        });
        assert.equal(await w.workOnce(), true);
        const end = jobEvents.events.find((e) => e.type === 'end' && e.handle === String(h));
        assert.equal(end?.type === 'end' && end.outcome, 'none');
        assert.ok(jobEvents.events.some((e) => e.type === 'error' && e.stage === 'outcome' && e.handle === String(h)));
        jobEvents.stop();

        await q.raw.run(`ALTER TABLE ${job}_gone RENAME TO ${job}`);
        // Still there, still held: the lease has to end first (here, as if an hour had passed).
        const [row] = await q.raw.query<{ grabbed_until: number }>(`SELECT grabbed_until FROM ${job} WHERE jobid = ?`, [
          h!.jobid,
        ]);
        assert.ok(Number(row?.grabbed_until) > Date.now() / 1000);
        await q.raw.run(`UPDATE ${job} SET grabbed_until = 0 WHERE jobid = ?`, [h!.jobid]);
        await sleep(250); // the dead mark ends
        assert.equal(await w.workUntilDone(), 1);
        assert.deepEqual(runs, [1, 2]);
        assert.equal(await h!.isPending(), false);
      });
    });
  }
});
