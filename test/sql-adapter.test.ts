import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  insertIgnoringDuplicates,
  isConnectionError,
  isUniqueViolation,
  keyMatch,
  numberPlaceholders,
  openDatabase,
  parseConnectionString,
  redact,
  replaceRows,
  type SqlDatabase,
  SqlUrlError,
} from '../src/sql/index.ts';
import { allDialects, createTestDatabase, type TestDatabase } from './helpers/sql-databases.ts';

describe('connection strings', () => {
  const cases: [string, object][] = [
    ['sqlite:/var/lib/q.db', { dialect: 'sqlite', file: '/var/lib/q.db' }],
    ['sqlite:///abs/q.db', { dialect: 'sqlite', file: '/abs/q.db' }],
    ['sqlite::memory:', { dialect: 'sqlite', file: ':memory:' }],
    ['/plain/file.db', { dialect: 'sqlite', file: '/plain/file.db' }],
    ['rel.db', { dialect: 'sqlite', file: 'rel.db' }],
    ['dbi:SQLite:dbname=/tmp/x.db', { dialect: 'sqlite', file: '/tmp/x.db' }],
    ['dbi:SQLite:/tmp/y.db', { dialect: 'sqlite', file: '/tmp/y.db' }],
    [
      'mysql://u:p%40ss@127.0.0.1:3307/jobs',
      { dialect: 'mysql', host: '127.0.0.1', port: 3307, user: 'u', password: 'p@ss', database: 'jobs' },
    ],
    ['mariadb://db.local/x', { dialect: 'mysql', host: 'db.local', database: 'x' }],
    [
      'postgresql://postgres@127.0.0.1:5432/test',
      { dialect: 'postgres', host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' },
    ],
    [
      'dbi:mysql:database=schwartz;host=10.0.0.1;port=3306',
      { dialect: 'mysql', database: 'schwartz', host: '10.0.0.1', port: 3306 },
    ],
    ['dbi:mysql:mogilefs', { dialect: 'mysql', database: 'mogilefs' }],
    [
      'dbi:mysql:database=m;mysql_socket=/run/mysqld.sock',
      { dialect: 'mysql', database: 'm', socketPath: '/run/mysqld.sock' },
    ],
    ['dbi:Pg:dbname=q;host=/run/postgresql', { dialect: 'postgres', database: 'q', socketPath: '/run/postgresql' }],
    [
      "host=127.0.0.1 port=5433 user=gearman password='a b\\'c' dbname=gq",
      { dialect: 'postgres', host: '127.0.0.1', port: 5433, user: 'gearman', password: "a b'c", database: 'gq' },
    ],
  ];
  for (const [input, expected] of cases) {
    it(input, () => assert.deepEqual(parseConnectionString(input), expected));
  }

  it('credentials given apart override the string', () => {
    assert.deepEqual(parseConnectionString('dbi:Pg:dbname=x', { user: 'me', password: 'pw' }), {
      dialect: 'postgres',
      database: 'x',
      user: 'me',
      password: 'pw',
    });
  });

  it('refuses what it cannot place', () => {
    for (const bad of [
      '',
      'redis://x',
      'dbi:Oracle:x',
      'dbi:mysql:port=99999',
      'host=x junk',
      'dbi:SQLite:',
      'sqlite:',
    ]) {
      assert.throws(() => parseConnectionString(bad), SqlUrlError, bad);
    }
  });

  it('redacts passwords', () => {
    assert.equal(redact('mysql://u:secret@h/db'), 'mysql://u:***@h/db');
    assert.equal(redact('dbi:mysql:database=x;password=secret;host=h'), 'dbi:mysql:database=x;password=***;host=h');
    assert.equal(redact("host=h password='x y'"), 'host=h password=***');
  });
});

describe('dialect helpers', () => {
  it('numbers placeholders outside quotes and comments', () => {
    assert.equal(numberPlaceholders('SELECT ?, \'?\', "?" -- ?\n, ?'), 'SELECT $1, \'?\', "?" -- ?\n, $2');
  });

  it('builds replace / insert-ignore / key-match statements per engine', () => {
    assert.equal(
      replaceRows('sqlite', 't', ['a', 'b'], ['a'], 2),
      'INSERT OR REPLACE INTO "t" ("a", "b") VALUES (?, ?), (?, ?)',
    );
    assert.equal(replaceRows('mysql', 't', ['a', 'b'], ['a'], 1), 'REPLACE INTO `t` (`a`, `b`) VALUES (?, ?)');
    assert.equal(
      replaceRows('postgres', 't', ['a', 'b'], ['a'], 1),
      'INSERT INTO "t" ("a", "b") VALUES (?, ?) ON CONFLICT ("a") DO UPDATE SET "b" = EXCLUDED."b"',
    );
    assert.equal(insertIgnoringDuplicates('mysql', 't', ['a'], 1), 'INSERT IGNORE INTO `t` (`a`) VALUES (?)');
    assert.equal(insertIgnoringDuplicates('sqlite', 't', ['a'], 1), 'INSERT OR IGNORE INTO "t" ("a") VALUES (?)');
    assert.equal(
      insertIgnoringDuplicates('postgres', 't', ['a'], 1),
      'INSERT INTO "t" ("a") VALUES (?) ON CONFLICT DO NOTHING',
    );
    assert.equal(keyMatch('sqlite', ['a', 'b'], 2), '("a" = ? AND "b" = ?) OR ("a" = ? AND "b" = ?)');
  });

  it('classifies errors', () => {
    assert.equal(isConnectionError({ code: 'ECONNREFUSED' }), true);
    assert.equal(isConnectionError({ code: '57P01' }), true);
    assert.equal(isConnectionError(new Error('Connection terminated unexpectedly')), true);
    assert.equal(isConnectionError(new Error('syntax error')), false);
    assert.equal(isConnectionError(null), false);
    assert.equal(isUniqueViolation(null), false);
    assert.equal(isUniqueViolation({ code: 'ER_DUP_ENTRY' }), true);
  });
});

for (const [dialect, skip] of allDialects()) {
  describe(`${dialect} adapter`, { skip }, () => {
    let td: TestDatabase;
    let db: SqlDatabase;

    before(async () => {
      td = await createTestDatabase(dialect, 'sql');
      db = await openDatabase(td.location);
      const blob = dialect === 'mysql' ? 'LONGBLOB' : dialect === 'postgres' ? 'BYTEA' : 'BLOB';
      await db.run(`CREATE TABLE kv (k VARCHAR(64) NOT NULL, n BIGINT, v ${blob}, PRIMARY KEY (k))`);
    });

    after(async () => {
      await db?.close();
      await td?.drop();
    });

    it('round-trips text, integers and bytes exactly', async () => {
      const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x27, 0x5c, 0x00]);
      await db.run('INSERT INTO kv (k, n, v) VALUES (?, ?, ?)', ['a', 9007199254740993n, bytes]);
      await db.run('INSERT INTO kv (k, n, v) VALUES (?, ?, ?)', ["b'?", 42, new Uint8Array([7])]);
      const rows = await db.query<{ k: string; n: number | bigint; v: Buffer }>('SELECT k, n, v FROM kv ORDER BY k');
      assert.equal(rows.length, 2);
      assert.equal(rows[0]?.k, 'a');
      assert.equal(rows[0]?.n, 9007199254740993n);
      assert.ok(Buffer.isBuffer(rows[0]?.v));
      assert.deepEqual(rows[0]?.v, bytes);
      assert.equal(rows[1]?.k, "b'?");
      assert.equal(rows[1]?.n, 42);
      assert.deepEqual(rows[1]?.v, Buffer.from([7]));
    });

    it('replaces and ignores duplicates with one statement per engine', async () => {
      await db.run(replaceRows(dialect, 'kv', ['k', 'n', 'v'], ['k'], 2), ['r1', 1, null, 'r2', 2, null]);
      await db.run(replaceRows(dialect, 'kv', ['k', 'n', 'v'], ['k'], 1), ['r1', 10, null]);
      const ignored = await db.run(insertIgnoringDuplicates(dialect, 'kv', ['k', 'n'], 2), ['r2', 99, 'r3', 3]);
      assert.equal(ignored.changes, 1);
      const rows = await db.query<{ k: string; n: number }>(
        `SELECT k, n FROM kv WHERE ${keyMatch(dialect, ['k'], 3)} ORDER BY k`,
        ['r1', 'r2', 'r3'],
      );
      assert.deepEqual(
        rows.map((r) => [r.k, r.n]),
        [
          ['r1', 10],
          ['r2', 2],
          ['r3', 3],
        ],
      );
    });

    it('reports a duplicate key as a unique violation', async () => {
      await assert.rejects(db.run('INSERT INTO kv (k) VALUES (?)', ['a']), (err) => isUniqueViolation(err));
    });

    it('commits a transaction and rolls one back when it throws', async () => {
      const n = await db.transaction(async (tx) => {
        await tx.run('INSERT INTO kv (k, n) VALUES (?, ?)', ['t1', 1]);
        return (await tx.query<{ c: number }>('SELECT COUNT(*) AS c FROM kv WHERE k = ?', ['t1']))[0]?.c;
      });
      assert.equal(Number(n), 1);
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.run('INSERT INTO kv (k, n) VALUES (?, ?)', ['t2', 2]);
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.deepEqual(await db.query('SELECT k FROM kv WHERE k = ?', ['t2']), []);
      const changed = await db.run('UPDATE kv SET n = n + 1 WHERE k IN (?, ?)', ['t1', 'a']);
      assert.equal(changed.changes, 2);
    });

    it('keeps statements outside a running transaction out of it', async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const tx = db.transaction(async (t) => {
        await t.run('INSERT INTO kv (k) VALUES (?)', ['inside']);
        await gate;
        throw new Error('rollback');
      });
      const outside = db.run('INSERT INTO kv (k) VALUES (?)', ['outside']);
      setTimeout(release, 20);
      await assert.rejects(tx, /rollback/);
      await outside;
      const rows = await db.query<{ k: string }>('SELECT k FROM kv WHERE k IN (?, ?) ORDER BY k', [
        'inside',
        'outside',
      ]);
      assert.deepEqual(
        rows.map((r) => r.k),
        ['outside'],
      );
    });

    if (dialect === 'sqlite') {
      it('reports an insert id', async () => {
        await db.run('CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT)');
        const r = await db.run('INSERT INTO seq (x) VALUES (?)', ['a']);
        assert.equal(r.lastInsertId, 1);
        assert.equal((await db.run('INSERT INTO seq (x) VALUES (?)', [true])).lastInsertId, 2);
      });
    }
    if (dialect === 'mysql') {
      it('reports an insert id', async () => {
        await db.run('CREATE TABLE seq (id INT AUTO_INCREMENT PRIMARY KEY, x TEXT)');
        assert.equal((await db.run('INSERT INTO seq (x) VALUES (?)', ['a'])).lastInsertId, 1);
      });
    }
  });
}

describe('sqlite: one connection per file per process', () => {
  it('two opens of one file share it: a transaction across an await does not lock out the other', async () => {
    const td = await createTestDatabase('sqlite', 'shared');
    const a = await openDatabase(td.location, { synchronous: 'normal', busyTimeout: 1000 });
    const b = await openDatabase(td.name);
    try {
      await a.run('CREATE TABLE t (k TEXT)');
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const tx = a.transaction(async (t) => {
        await t.run('INSERT INTO t VALUES (?)', ['from a']);
        await gate;
      });
      const write = b.run('INSERT INTO t VALUES (?)', ['from b']);
      setTimeout(release, 20);
      await tx;
      await write;
      assert.deepEqual(
        (await b.query<{ k: string }>('SELECT k FROM t ORDER BY rowid')).map((r) => r.k),
        ['from a', 'from b'],
      );
      // The stricter settings of the second opener apply to the shared connection.
      assert.deepEqual(await a.query('PRAGMA synchronous'), [{ synchronous: 2 }]);
      assert.deepEqual(await a.query('PRAGMA busy_timeout'), [{ timeout: 5000 }]);
      await a.close();
      await a.close();
      assert.equal((await b.query('SELECT k FROM t')).length, 2, 'closing one sharer keeps the other open');
    } finally {
      await b.close();
      await td.drop();
    }
  });
});

describe('unreachable servers', () => {
  it('mysql: the first statement fails with a connection error', async () => {
    const db = await openDatabase('mysql://root@127.0.0.1:1/x', { connectTimeout: 2000 });
    await assert.rejects(db.query('SELECT 1'), (err) => isConnectionError(err));
    await db.close();
  });
  it('postgres: the first statement fails with a connection error', async () => {
    const db = await openDatabase('postgres://postgres@127.0.0.1:1/x', { connectTimeout: 2000 });
    await assert.rejects(db.query('SELECT 1'), (err) => isConnectionError(err));
    await db.close();
  });
});
