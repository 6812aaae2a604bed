/**
 * Interop with the real TheSchwartz 1.12 (Debian's libtheschwartz-perl) on every engine, sharing one queue: Perl
 * workers run jobs our client queued and our worker runs jobs Perl queued — handles, byte-exact arguments (a
 * Storable blob from Perl passes through our worker untouched and thaws in Perl again), retries and failure logs,
 * exit statuses, permanent failures, uniqkey duplicates, priorities and replace_with — on tables our
 * `ensureSchema` created, and on tables made from TheSchwartz's own schema files.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { SchwartzClient, SchwartzWorker } from '../src/schwartz/index.ts';
import { requirePackage, requireTool, type SkippableContext } from './helpers/memcached-real.ts';
import {
  type DbiDatabase,
  dbiDatabase,
  freshPrefix,
  newQueue,
  type PerlClientConfig,
  type PerlCommand,
  type PerlRecord,
  runPerlSchwartz,
  type TestQueue,
} from './helpers/schwartz-perl.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

const DBD_PACKAGE = { sqlite: 'libdbd-sqlite3-perl', mysql: 'libdbd-mysql-perl', postgres: 'libdbd-pg-perl' } as const;

const hex = (b: Buffer | string) => (typeof b === 'string' ? Buffer.from(b) : b).toString('hex');
const byHandle = (records: PerlRecord[] = []) => new Map(records.map((r) => [String(r.handle), r]));

describe('TheSchwartz interop with Perl TheSchwartz 1.12', { concurrency: 3 }, () => {
  for (const [dialect, skip] of allDialects()) {
    describe(dialect, { skip, concurrency: 1 }, () => {
      let td: TestDatabase;
      let dbi: DbiDatabase;
      const queues: TestQueue[] = [];
      const clients: SchwartzClient[] = [];

      /** Skips (or fails in CI) when Perl's TheSchwartz or the DBD driver is missing. */
      const perlReady = (t: SkippableContext) =>
        requireTool(t, '/usr/bin/perl') &&
        requirePackage(t, 'libtheschwartz-perl') &&
        requirePackage(t, DBD_PACKAGE[dialect]);

      /** A queue on fresh tables (created by our ensureSchema), configured with the DBI DSN Perl uses. */
      const queue = async (options: Parameters<typeof newQueue>[1] = {}) => {
        const q = await newQueue(td, { database: dbi, ...options });
        queues.push(q);
        return q;
      };
      const perl = (prefix: string, commands: PerlCommand[], extra: Omit<PerlClientConfig, 'databases'> = {}) =>
        runPerlSchwartz({ databases: [{ ...dbi, prefix }], ...extra }, commands);

      before(async () => {
        td = await createTestDatabase(dialect, 'schwartzperl');
        dbi = dbiDatabase(td);
      });
      after(async () => {
        for (const c of clients) await c.close();
        for (const q of queues) await q.close();
        await td?.drop();
      });

      it('Perl workers run what our client queued: args, retries, exit statuses, priorities, replace_with', async (t) => {
        if (!perlReady(t)) return;
        const q = await queue();
        const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => (i * 7) % 256));
        const text = 'naïve ✓ 日本';
        const done = [await q.client.insert('Perl::Complete', bytes), await q.client.insert('Perl::Complete', text)];
        for (const p of [1, 9, 5, 3]) await q.client.insert('Perl::Complete', `p${p}`, { priority: p });
        const fail = await q.client.insert('Perl::Fail', 'f');
        const backoff = await q.client.insert('Perl::Backoff', 'b');
        const perm = await q.client.insert('Perl::Perm', 'p');
        const died = await q.client.insert('Perl::Die', 'd');
        const noop = await q.client.insert('Perl::Noop', 'n');
        const parent = await q.client.insert('Perl::Replace', 'r');
        const mine = await q.client.insert('Node::Unique', 'u', { uniqkey: 'u-2' });
        assert.ok(mine);

        const [dup, worked] = await perl(
          q.prefix,
          [
            { op: 'insert', jobs: [{ funcname: 'Node::Unique', uniqkey: 'u-2' }] },
            {
              op: 'work',
              can_do: [
                'Perl::Complete',
                'Perl::Fail',
                'Perl::Backoff',
                'Perl::Perm',
                'Perl::Die',
                'Perl::Noop',
                'Perl::Replace',
              ],
            },
          ],
          { prioritize: true, batch_size: 1 },
        );
        assert.deepEqual(dup, [{ handle: null }], 'Perl refuses our uniqkey');
        const records = worked ?? [];
        const complete = records.filter((r) => r.class === 'Perl::Complete');
        // Byte-exact arguments, and our handles are Perl's handles.
        const args = byHandle(complete);
        assert.equal(args.get(String(done[0]))?.arg_hex, hex(bytes));
        assert.equal(args.get(String(done[1]))?.arg_hex, hex(text));
        // prioritize => 1 (batch_size 1, as TheSchwartz's own test): higher first.
        assert.deepEqual(
          complete.filter((r) => r.priority !== null).map((r) => Number(r.priority)),
          [9, 5, 3, 1],
        );
        for (const h of done) assert.equal(await h!.exitStatus(), 0);
        // max_retries 2: three runs, three failures, exit status 1.
        assert.deepEqual(
          records.filter((r) => r.class === 'Perl::Fail').map((r) => r.failures),
          [0, 1, 2],
        );
        assert.deepEqual(await fail!.failureLog(), ['perl failure 1', 'perl failure 2', 'perl failure 3']);
        assert.equal(await fail!.failures(), 3);
        assert.equal(await fail!.exitStatus(), 1);
        assert.equal(await fail!.isPending(), false);
        // retry_delay: released for later, which our worker honours too.
        const later = await q.client.lookupJob(backoff!);
        assert.deepEqual(await backoff!.failureLog(), ['perl backoff']);
        assert.equal(later?.grabbedUntil, 0);
        assert.ok(later && later.runAfter >= Math.floor(Date.now() / 1000) + 95, String(later?.runAfter));
        assert.equal(records.filter((r) => r.class === 'Perl::Backoff').length, 1);
        assert.equal(await perm!.exitStatus(), 9);
        assert.deepEqual(await perm!.failureLog(), ['perl permanent']);
        assert.deepEqual(await died!.failureLog(), ['perl died\n']);
        assert.deepEqual(await noop!.failureLog(), ['Job did not explicitly complete, fail, or get replaced']);
        // replace_with: the children are ours to run, in the parent's database.
        assert.equal(await parent!.exitStatus(), 0);
        const children: string[] = [];
        const w = new SchwartzWorker(q.client);
        w.canDo('Perl::Backoff', () => assert.fail('run before its retry delay'));
        w.canDo('Node::Child', (job) => {
          children.push(job.arg!.toString());
          assert.equal(job.handle.database, parent!.database);
        });
        assert.equal(await w.workUntilDone(), 2);
        assert.deepEqual(children.sort(), ['child-1', 'child-2']);
      });

      it('our worker runs what Perl queued: handles, a Storable blob byte-exact, retries, exit statuses', async (t) => {
        if (!perlReady(t)) return;
        const q = await queue();
        const structure = [1, 'two', { k: 'v' }];
        const raw = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x0a, 0x0d]);
        const [[hashes] = [], inserted] = await perl(q.prefix, [
          { op: 'hash' },
          {
            op: 'insert',
            jobs: [
              { funcname: 'Node::Relay', arg: { ref: structure } },
              { funcname: 'Node::Relay', arg: { hex: hex(raw) } },
              { funcname: 'Node::Flaky', arg: { hex: hex('y') } },
              { funcname: 'Node::Perm', arg: { hex: hex('z') } },
              ...[2, 8, 4].map((p) => ({ funcname: 'Node::Prio', priority: p })),
              { funcname: 'Node::Unique', uniqkey: 'u-1', coalesce: 'grp' },
              { funcname: 'Perl::Complete', arg: { hex: hex('later') } },
            ],
          },
        ]);
        // The same DSN string and user give the same handles.
        assert.deepEqual(hashes, q.client.databaseHashes);
        const handles = (inserted ?? []).map((r) => r.handle as string);
        const [frozen, plain, flaky, perm, , , , unique, later] = handles;
        const record = await q.client.lookupJob(unique!);
        assert.equal(record?.funcname, 'Node::Unique');
        assert.equal(record?.coalesce, 'grp');
        assert.equal(String(record?.handle), unique);
        assert.equal(await q.client.insert('Node::Unique', 'dup', { uniqkey: 'u-1' }), undefined);
        const seenByPerl = await q.client.insert('Perl::Seen', 'from node');

        const client = new SchwartzClient({ databases: [{ ...dbi, prefix: q.prefix }], prioritize: true });
        clients.push(client);
        const received = new Map<string, Buffer>();
        const priorities: number[] = [];
        let n = 0;
        const w = new SchwartzWorker(client);
        w.canDo('Node::Relay', async (job) => {
          received.set(String(job.handle), job.arg!);
          await job.replaceWith([{ funcname: 'Perl::Echo', arg: job.arg }]);
        });
        w.canDo(
          'Node::Flaky',
          () => {
            throw new Error(`node failure ${++n}`);
          },
          { maxRetries: 2, keepExitStatusFor: 3600 },
        );
        w.canDo('Node::Perm', (job) => job.permanentFailure('node permanent', 7), {
          maxRetries: 5,
          keepExitStatusFor: 3600,
        });
        w.canDo('Node::Prio', (job) => void priorities.push(job.priority!));
        w.canDo('Node::Unique', () => {});
        w.canDo(
          'Perl::Complete',
          () => {
            throw new Error('not yet');
          },
          { maxRetries: 1, retryDelay: 100 },
        );
        assert.equal(await w.workUntilDone(), 2 + 3 + 1 + 3 + 1 + 1);
        assert.deepEqual(priorities, [8, 4, 2]);
        const blob = received.get(frozen!)!;
        assert.equal(blob[0], 0x05, 'Storable network-order magic');
        assert.deepEqual(received.get(plain!), raw);

        const [looked, echoed] = await perl(q.prefix, [
          { op: 'lookup', handles: [flaky!, perm!, String(seenByPerl), later!] },
          { op: 'work', can_do: ['Perl::Echo', 'Perl::Complete'] },
        ]);
        // Our retry delay holds Perl workers off too.
        assert.ok(!(echoed ?? []).some((r) => r.class === 'Perl::Complete'));
        assert.deepEqual(byHandle(looked).get(later!)?.failure_log, ['not yet']);
        assert.equal(byHandle(looked).get(later!)?.pending, 1);
        const seen = byHandle(looked);
        assert.deepEqual(seen.get(flaky!)?.failure_log, ['node failure 1', 'node failure 2', 'node failure 3']);
        assert.equal(seen.get(flaky!)?.failures, 3);
        assert.equal(Number(seen.get(flaky!)?.exit_status), 1);
        assert.equal(seen.get(flaky!)?.pending, 0);
        assert.equal(Number(seen.get(perm!)?.exit_status), 7);
        assert.deepEqual(seen.get(perm!)?.failure_log, ['node permanent']);
        assert.equal(seen.get(String(seenByPerl))?.funcname, 'Perl::Seen');
        assert.equal(seen.get(String(seenByPerl))?.arg_hex, hex('from node'));
        assert.equal(seen.get(String(seenByPerl))?.pending, 1);
        // The blob our worker passed on thaws in Perl, and freezes to the same bytes.
        const thawed = (echoed ?? []).find((r) => r.thawed !== undefined);
        assert.deepEqual(thawed?.thawed, structure);
        assert.equal(thawed?.refrozen_hex, hex(blob));
        assert.equal((echoed ?? []).find((r) => r.thawed === undefined)?.arg_hex, hex(raw));
      });

      // Debian's libtheschwartz-perl ships the MySQL and PostgreSQL schema files (not upstream's SQLite one, which
      // only its test-suite has); read from the installed package, never copied into this repository.
      const schemaFile = { mysql: 'schema.sql', postgres: 'schema-postgres.sql', sqlite: undefined }[dialect];
      // (SQLite: nothing to load; every other test here runs Perl on the SQLite tables ensureSchema made.)
      if (schemaFile !== undefined)
        it("works on tables made from TheSchwartz's own schema files", async (t) => {
          if (!perlReady(t)) return;
          const prefix = freshPrefix();
          const sql = readFileSync(`/usr/share/doc/libtheschwartz-perl/${schemaFile}`, 'utf8');
          const q = await queue();
          // As TheSchwartz's t/lib/db-common.pl loads them: split on ';', prefix the tables, InnoDB on MySQL.
          for (let statement of sql.split(/;\s*/)) {
            if (statement.replace(/--.*$/gm, '').trim() === '') continue;
            statement = statement
              .replace(/^\s*create\s+table\s+(\w+)/im, `CREATE TABLE ${prefix}$1`)
              .replace(/^\s*(create.*?index)\s+(\w+)\s+on\s+(\w+)/im, `$1 ${prefix}$2 ON ${prefix}$3`);
            if (dialect === 'mysql') statement += ' ENGINE=INNODB';
            await q.raw.run(statement);
          }
          const client = new SchwartzClient({ databases: [{ ...dbi, prefix }] });
          clients.push(client);
          const ours = await client.insert('Perl::Complete', 'ours', { uniqkey: 'o', priority: 2, coalesce: 'c' });
          const [[done] = [], [theirs] = []] = await perl(prefix, [
            { op: 'work', can_do: ['Perl::Complete'] },
            { op: 'insert', jobs: [{ funcname: 'Node::Spec', arg: { hex: hex('theirs') } }] },
          ]);
          assert.equal(done?.arg_hex, hex('ours'));
          assert.equal(await ours!.exitStatus(), 0);
          const got: string[] = [];
          const w = new SchwartzWorker(client);
          w.canDo(
            'Node::Spec',
            (job) => {
              got.push(job.arg!.toString());
              throw new Error('once');
            },
            { maxRetries: 1, keepExitStatusFor: 60 },
          );
          assert.equal(await w.workUntilDone(), 2);
          assert.deepEqual(got, ['theirs', 'theirs']);
          const [[seen] = []] = await perl(prefix, [{ op: 'lookup', handles: [String(theirs?.handle)] }]);
          assert.deepEqual(seen?.failure_log, ['once', 'once']);
          assert.equal(Number(seen?.exit_status), 1);
        });
    });
  }
});
