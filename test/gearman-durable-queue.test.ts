/**
 * Durable background queues (`-q libsqlite3 | MySQL | Postgres`) on every engine: JOB_CREATED only once the job is
 * committed, replay at start-up (unique ids kept), delete on completion, group commit, a database that fails
 * mid-run, and gearmand's own tables: what the real gearmand 1.1.20 stored we replay, and the other way round.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { GearmanServerOptions } from '../src/gearman/server/server.ts';
import { SqlQueueStore } from '../src/gearman/server/sql-queue-store.ts';
import { openDatabase, type SqlDatabase } from '../src/sql/index.ts';
import { eventually, type OurGearman, RawGearman, REQUEST, RESPONSE, startOurGearman } from './helpers/gearman-raw.ts';
import { GEARMAND_BIN, requireTool, startRealGearmand } from './helpers/gearman-real.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

interface Row extends Record<string, unknown> {
  unique_key: string;
  function_name: string;
  priority: number;
  data: Buffer;
  when_to_run: number;
}

/** Server options and the equivalent gearmand flags for a test database. */
function queueConfig(td: TestDatabase, table: string): { options: GearmanServerOptions; flags: string[] } {
  if (td.dialect === 'sqlite') {
    return {
      options: { queueType: 'libsqlite3', queue: { libsqlite3Db: td.name, libsqlite3Table: table } },
      flags: ['--queue-type=libsqlite3', `--libsqlite3-db=${td.name}`, `--libsqlite3-table=${table}`],
    };
  }
  const url = new URL(td.location);
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  if (td.dialect === 'mysql') {
    const port = Number(url.port || 3306);
    return {
      options: {
        queueType: 'MySQL',
        queue: {
          mysqlHost: url.hostname,
          mysqlPort: port,
          mysqlUser: user,
          mysqlPassword: password,
          mysqlDb: td.name,
          mysqlTable: table,
        },
      },
      flags: [
        '--queue-type=MySQL',
        `--mysql-host=${url.hostname}`,
        `--mysql-port=${port}`,
        `--mysql-user=${user}`,
        ...(password ? [`--mysql-password=${password}`] : []),
        `--mysql-db=${td.name}`,
        `--mysql-table=${table}`,
      ],
    };
  }
  const conninfo = [
    `host=${url.hostname}`,
    `port=${url.port || 5432}`,
    `user=${user}`,
    ...(password ? [`password=${password}`] : []),
    `dbname=${td.name}`,
  ].join(' ');
  return {
    options: { queueType: 'Postgres', queue: { libpqConninfo: conninfo, libpqTable: table } },
    flags: ['--queue-type=Postgres', `--libpq-conninfo=${conninfo}`, `--libpq-table=${table}`],
  };
}

function storeOf(g: OurGearman): SqlQueueStore {
  const store = g.server.router.store;
  assert.ok(store instanceof SqlQueueStore);
  return store;
}

async function rows(db: SqlDatabase, table: string): Promise<Row[]> {
  const list = await db.query<Row>(`SELECT unique_key, function_name, priority, data, when_to_run FROM ${table}`);
  return list.sort((a, b) => a.unique_key.localeCompare(b.unique_key));
}

/** Grabs every job for `fn` with GRAB_JOB_UNIQ, completing each; returns [unique, payload] in grab order. */
async function drainJobs(port: number, fn: string): Promise<[string, string][]> {
  const w = await RawGearman.connect(port);
  w.send(REQUEST.CAN_DO, [fn]);
  const out: [string, string][] = [];
  for (;;) {
    w.send(REQUEST.GRAB_JOB_UNIQ);
    const reply = await w.next();
    assert.equal(reply.kind, 'packet');
    if (reply.kind !== 'packet' || reply.type === RESPONSE.NO_JOB) break;
    assert.equal(reply.type, RESPONSE.JOB_ASSIGN_UNIQ);
    const [handle, , unique, data] = reply.args;
    out.push([unique!, data!]);
    w.send(REQUEST.WORK_COMPLETE, [handle!, 'ok']);
  }
  await w.sync();
  w.close();
  return out;
}

for (const [dialect, skip] of allDialects()) {
  describe(`durable queue on ${dialect}`, { skip }, () => {
    let td: TestDatabase;
    let db: SqlDatabase;

    before(async () => {
      td = await createTestDatabase(dialect, 'gq');
      db = await openDatabase(td.location);
    });

    after(async () => {
      await db?.close();
      await td?.drop();
    });

    it('answers JOB_CREATED only after the row is committed, replays after a restart, deletes on completion', async () => {
      const { options } = queueConfig(td, 'q1');
      let g = await startOurGearman(options);
      const c = await RawGearman.connect(g.port);
      const seen: Row[][] = [];
      const submitAndLook = async (type: number, args: (string | Buffer)[]): Promise<string> => {
        c.send(type, args);
        const [handle] = await c.expect(RESPONSE.JOB_CREATED);
        // Read with another connection the moment JOB_CREATED arrives: the row must already be there.
        seen.push(await rows(db, 'q1'));
        return handle!;
      };
      const bytes = Buffer.from([0, 1, 0xff, 0x27, 0x5c]);
      await submitAndLook(REQUEST.SUBMIT_JOB_BG, ['fq', 'u-normal', bytes]);
      await submitAndLook(REQUEST.SUBMIT_JOB_HIGH_BG, ['fq', 'u-high', 'h']);
      await submitAndLook(REQUEST.SUBMIT_JOB_LOW_BG, ['fq', 'u-low', 'l']);
      await submitAndLook(REQUEST.SUBMIT_JOB_EPOCH, ['fq', 'u-epoch', '1000', 'e']);
      // gearmand would store these under ('', fq) and ('-', fq), each overwriting the last; every one survives here.
      await submitAndLook(REQUEST.SUBMIT_JOB_BG, ['fq', '', 'anon-1']);
      await submitAndLook(REQUEST.SUBMIT_JOB_BG, ['fq', '', 'anon-2']);
      const p1 = await submitAndLook(REQUEST.SUBMIT_JOB_BG, ['fq', '-', 'payload-1']);
      const p1again = await submitAndLook(REQUEST.SUBMIT_JOB_BG, ['fq', '-', 'payload-1']);
      assert.equal(p1again, p1, 'same payload coalesces');
      await submitAndLook(REQUEST.SUBMIT_JOB_BG, ['fq', '-', 'payload-2']);
      // A foreground job is not stored.
      c.send(REQUEST.SUBMIT_JOB, ['fq', 'fg', 'x']);
      await c.expect(RESPONSE.JOB_CREATED);
      assert.deepEqual(
        seen.map((s) => s.length),
        [1, 2, 3, 4, 5, 6, 7, 7, 8],
      );
      const stored = await rows(db, 'q1');
      assert.equal(stored.length, 8);
      const byUnique = new Map(stored.map((r) => [r.unique_key, r]));
      assert.deepEqual(byUnique.get('u-normal')?.data, bytes);
      assert.equal(byUnique.get('u-normal')?.priority, 1);
      assert.equal(byUnique.get('u-high')?.priority, 0);
      assert.equal(byUnique.get('u-low')?.priority, 2);
      assert.equal(Number(byUnique.get('u-epoch')?.when_to_run), 1000);
      assert.equal(stored.filter((r) => r.unique_key.startsWith('sharenothing:anon:')).length, 2);
      assert.equal(stored.filter((r) => r.unique_key.startsWith('sharenothing:payload:')).length, 2);
      c.close();
      await g.close();

      g = await startOurGearman(options);
      try {
        const status = await (await RawGearman.connect(g.port)).list('status');
        assert.deepEqual(status, ['fq\t8\t0\t0']);
        const done = await drainJobs(g.port, 'fq');
        // High first, then normal in stored order, then low; the epoch job (1970) is due.
        assert.deepEqual(done[0], ['u-high', 'h']);
        assert.deepEqual(done.at(-1), ['u-low', 'l']);
        assert.deepEqual(done.map(([u, d]) => `${u}:${d}`).sort(), [
          '-:payload-1',
          '-:payload-2',
          ':anon-1',
          ':anon-2',
          'u-epoch:e',
          'u-high:h',
          'u-low:l',
          `u-normal:${bytes.toString('latin1')}`,
        ]);
        await eventually(() => storeOf(g).stats.dones >= 8, 'deletes committed');
        assert.deepEqual(await rows(db, 'q1'), []);
      } finally {
        await g.close();
      }
    });

    it('group-commits concurrent submissions, and a later batch keeps the order of its operations', async () => {
      const { options } = queueConfig(td, 'q2');
      const g = await startOurGearman(options);
      try {
        const clients = await Promise.all(Array.from({ length: 20 }, () => RawGearman.connect(g.port)));
        const handles = await Promise.all(
          clients.map(async (c, i) => {
            const mine: string[] = [];
            for (let j = 0; j < 15; j++) {
              c.send(REQUEST.SUBMIT_JOB_BG, ['fg2', `c${i}-${j}`, `p${i}-${j}`]);
            }
            for (let j = 0; j < 15; j++) mine.push((await c.expect(RESPONSE.JOB_CREATED))[0]!);
            return mine;
          }),
        );
        assert.equal(handles.flat().length, 300);
        const store = storeOf(g);
        assert.equal(store.stats.adds, 300);
        assert.ok(store.stats.commits < 100, `300 jobs in ${store.stats.commits} commits`);
        assert.equal((await rows(db, 'q2')).length, 300);
        for (const c of clients) c.close();

        // Completing a job and submitting its unique id again in one batch: the new job must stay stored.
        const w = await RawGearman.connect(g.port);
        w.send(REQUEST.CAN_DO, ['again']);
        const c = await RawGearman.connect(g.port);
        c.send(REQUEST.SUBMIT_JOB_BG, ['again', 'same', 'first']);
        await c.expect(RESPONSE.JOB_CREATED);
        w.send(REQUEST.GRAB_JOB);
        const [handle] = await w.expect(RESPONSE.JOB_ASSIGN);
        w.send(REQUEST.WORK_COMPLETE, [handle!, '']);
        await w.sync();
        c.send(REQUEST.SUBMIT_JOB_BG, ['again', 'same', 'second']);
        await c.expect(RESPONSE.JOB_CREATED);
        await eventually(() => store.stats.dones >= 1, 'delete committed');
        const again = (await rows(db, 'q2')).filter((r) => r.function_name === 'again');
        assert.deepEqual(
          again.map((r) => r.data.toString()),
          ['second'],
        );
        w.close();
        c.close();
      } finally {
        await g.close();
      }
    });

    it('a background submit that joins a running foreground job is stored (gearmand would keep it in memory only)', async () => {
      const { options } = queueConfig(td, 'q7');
      const g = await startOurGearman(options);
      try {
        const client = await RawGearman.connect(g.port);
        const w = await RawGearman.connect(g.port);
        w.send(REQUEST.CAN_DO, ['f7']);
        client.send(REQUEST.SUBMIT_JOB, ['f7', 'joined', 'payload']);
        const [handle] = await client.expect(RESPONSE.JOB_CREATED);
        w.send(REQUEST.GRAB_JOB);
        await w.expect(RESPONSE.JOB_ASSIGN);
        assert.deepEqual(await rows(db, 'q7'), []);
        const bg = await RawGearman.connect(g.port);
        bg.send(REQUEST.SUBMIT_JOB_BG, ['f7', 'joined', 'payload']);
        assert.deepEqual(await bg.expect(RESPONSE.JOB_CREATED), [handle]);
        assert.deepEqual(
          (await rows(db, 'q7')).map((r) => [r.unique_key, r.function_name]),
          [['joined', 'f7']],
        );
        w.send(REQUEST.WORK_COMPLETE, [handle!, 'done']);
        assert.deepEqual(await client.expect(RESPONSE.WORK_COMPLETE), [handle, 'done']);
        await eventually(() => storeOf(g).stats.dones >= 1, 'delete committed');
        assert.deepEqual(await rows(db, 'q7'), []);
        for (const c of [client, w, bg]) c.close();
      } finally {
        await g.close();
      }
    });

    it('answers QUEUE_ERROR while the table is gone, keeps serving, and recovers', async () => {
      const { options } = queueConfig(td, 'q3');
      const g = await startOurGearman(options);
      try {
        await db.run('DROP TABLE q3');
        const c = await RawGearman.connect(g.port);
        c.send(REQUEST.SUBMIT_JOB_BG, ['f3', 'lost', 'x']);
        const [code] = await c.expect(RESPONSE.ERROR);
        assert.equal(code, 'QUEUE_ERROR');
        // Foreground work is unaffected.
        const w = await RawGearman.connect(g.port);
        w.send(REQUEST.CAN_DO, ['f3']);
        c.send(REQUEST.SUBMIT_JOB, ['f3', 'fg', 'y']);
        await c.expect(RESPONSE.JOB_CREATED);
        w.send(REQUEST.GRAB_JOB);
        const [handle] = await w.expect(RESPONSE.JOB_ASSIGN);
        w.send(REQUEST.WORK_COMPLETE, [handle!, 'done']);
        assert.deepEqual(await c.expect(RESPONSE.WORK_COMPLETE), [handle, 'done']);
        // Nothing of the refused job is left behind.
        assert.deepEqual(await c.list('status'), ['f3\t0\t0\t1']);
        await db.run(
          'CREATE TABLE q3 (unique_key VARCHAR(64), function_name VARCHAR(255), priority INT, data ' +
            `${dialect === 'postgres' ? 'BYTEA' : dialect === 'mysql' ? 'LONGBLOB' : 'BLOB'}, when_to_run BIGINT, UNIQUE (unique_key, function_name))`,
        );
        c.send(REQUEST.SUBMIT_JOB_BG, ['f3', 'kept', 'z']);
        await c.expect(RESPONSE.JOB_CREATED);
        assert.equal((await rows(db, 'q3')).length, 1);
        c.close();
        w.close();
      } finally {
        await g.close();
      }
    });

    // (SQLite columns take any length and size, so there is no such row there.)
    if (dialect !== 'sqlite')
      it('a row the table cannot hold fails alone, not the rest of its group commit', async () => {
        const { options } = queueConfig(td, 'q6');
        const g = await startOurGearman(options);
        try {
          const clients = await Promise.all(Array.from({ length: 5 }, () => RawGearman.connect(g.port)));
          // MySQL (strict mode) refuses a 300-byte function name in VARCHAR(255); PostgreSQL an epoch past INTEGER.
          const bad =
            dialect === 'mysql'
              ? [REQUEST.SUBMIT_JOB_BG, ['f'.repeat(300), 'bad', 'x']]
              : [REQUEST.SUBMIT_JOB_EPOCH, ['f6', 'bad', String(2 ** 33), 'x']];
          clients.forEach((c, i) => {
            if (i === 2) c.send(bad[0] as number, bad[1] as string[]);
            else c.send(REQUEST.SUBMIT_JOB_BG, ['f6', `good${i}`, 'y']);
          });
          const replies = await Promise.all(clients.map((c) => c.next()));
          const kinds = replies.map((r) => (r.kind === 'packet' ? r.name : r.line));
          assert.deepEqual(kinds, ['JOB_CREATED', 'JOB_CREATED', 'ERROR', 'JOB_CREATED', 'JOB_CREATED']);
          assert.deepEqual((await rows(db, 'q6')).map((r) => r.unique_key).sort(), [
            'good0',
            'good1',
            'good3',
            'good4',
          ]);
          for (const c of clients) c.close();
        } finally {
          await g.close();
        }
      });

    it("replays the real gearmand's table, and gearmand replays ours", async (t) => {
      if (!requireTool(t, GEARMAND_BIN, 'gearman-job-server')) return;
      const { options, flags } = queueConfig(td, 'q4');
      const real = await startRealGearmand(flags);
      try {
        const c = await RawGearman.connect(real.port);
        for (const [u, d] of [
          ['r1', 'from gearmand 1'],
          ['r2', 'from gearmand 2'],
        ]) {
          c.send(REQUEST.SUBMIT_JOB_BG, ['f4', u!, d!]);
          await c.expect(RESPONSE.JOB_CREATED);
        }
        c.close();
      } finally {
        await real.stop();
      }
      const ours = await startOurGearman(options);
      try {
        assert.deepEqual((await drainJobs(ours.port, 'f4')).sort(), [
          ['r1', 'from gearmand 1'],
          ['r2', 'from gearmand 2'],
        ]);
        await eventually(() => storeOf(ours).stats.dones >= 2, 'deletes committed');
        const c = await RawGearman.connect(ours.port);
        c.send(REQUEST.SUBMIT_JOB_HIGH_BG, ['f4', 'o1', 'from us']);
        await c.expect(RESPONSE.JOB_CREATED);
        c.close();
      } finally {
        await ours.close();
      }
      const again = await startRealGearmand(flags);
      try {
        assert.deepEqual(await drainJobs(again.port, 'f4'), [['o1', 'from us']]);
      } finally {
        await again.stop();
      }
    });

    it('refuses to start when the database cannot be opened', async () => {
      const { options } = queueConfig(td, 'q5');
      const broken: GearmanServerOptions =
        dialect === 'sqlite'
          ? { ...options, queue: { libsqlite3Db: '/nonexistent-dir/sub/q.db' } }
          : dialect === 'mysql'
            ? { ...options, queue: { ...options.queue, mysqlPort: 1 } }
            : { ...options, queue: { libpqConninfo: 'host=127.0.0.1 port=1 user=x dbname=y' } };
      await assert.rejects(startOurGearman(broken));
    });
  });
}
