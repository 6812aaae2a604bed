/**
 * The admin text protocol on the job port, with gearmand 1.1.20's exact replies (line endings included).
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  eventually,
  type OurGearman,
  RawGearman,
  REQUEST,
  RESPONSE,
  startOurGearman,
  submit,
  worker,
} from './helpers/gearman-raw.ts';

/** Sends lines and returns the raw reply bytes once `until` matches. */
async function raw(port: number, text: string, until: RegExp): Promise<string> {
  const c = await RawGearman.connect(port);
  c.write(text);
  const deadline = Date.now() + 2000;
  let got = '';
  while (!until.test(got)) {
    if (Date.now() > deadline) throw new Error(`timeout; got ${JSON.stringify(got)}`);
    await sleep(5);
    got = Buffer.concat(c.received).toString('latin1');
  }
  c.close();
  return got;
}

describe('gearman admin protocol', () => {
  let g: OurGearman;
  before(async () => {
    g = await startOurGearman();
  });
  after(() => g.close());

  it('status, prioritystatus and workers list functions and connections', async () => {
    const c = await RawGearman.connect(g.port);
    await submit(c, REQUEST.SUBMIT_JOB_HIGH_BG, 'adm', '', 'x');
    await submit(c, REQUEST.SUBMIT_JOB_LOW_BG, 'adm', '', 'x');
    await submit(c, REQUEST.SUBMIT_JOB_LOW_BG, 'adm', '', 'x');
    const w = await worker(g.port, 'adm', 'other');
    w.send(REQUEST.SET_CLIENT_ID, ['worker-7']);
    w.send(REQUEST.GRAB_JOB);
    await w.expect(RESPONSE.JOB_ASSIGN);
    const status = await c.list('status');
    assert.ok(status.includes('adm\t3\t1\t1'), status.join('|'));
    assert.ok(status.includes('other\t0\t0\t1'), status.join('|'));
    assert.ok((await c.list('prioritystatus')).includes('adm\t0\t0\t2\t1'));
    const workers = await c.list('WORKERS');
    assert.ok(
      workers.some((l) => /^\d+ 127\.0\.0\.1 worker-7 : other adm$/.test(l)),
      workers.join('|'),
    );
    assert.ok(
      workers.some((l) => /^\d+ 127\.0\.0\.1 - :$/.test(l)),
      workers.join('|'),
    );
    c.close();
    w.close();
  });

  it('answers with gearmand line endings: lists and getpid/version/verbose end in \\n, OK and ERR in \\r\\n', async () => {
    assert.equal(await raw(g.port, 'getpid\n', /\n/), `OK ${process.pid}\n`);
    assert.equal(await raw(g.port, 'version\r\n', /\n/), 'OK 1.1.20\n');
    assert.equal(await raw(g.port, 'verbose\n', /\n/), 'OK ERROR\n');
    assert.equal(await raw(g.port, 'create function made\r\n', /\n/), 'OK\r\n');
    assert.equal(await raw(g.port, 'create function nl\n', /\n/), 'OK\r\n');
    assert.match(await raw(g.port, 'status\n', /\.\n$/), /^(.*\n)*made\t0\t0\t0\n(.*\n)*\.\n$/);
    assert.match(await raw(g.port, 'status\n', /\.\n$/), /\nnl\t0\t0\t0\n|^nl\t0\t0\t0\n/);
    assert.equal(
      await raw(g.port, 'frobnicate now\r\n', /\n/),
      'ERR UNKNOWN_COMMAND Unknown+server+commandfrobnicate\r\n',
    );
    assert.equal(await raw(g.port, '\r\n', /\n/), 'ERR UNKNOWN_COMMAND Unknown+server+command\r\n');
    assert.equal(await raw(g.port, ' status\n', /\n/), 'ERR UNKNOWN_COMMAND Unknown+server+command\r\n');
    assert.equal(await raw(g.port, 'shutdown\n', /\n/), 'ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n');
    assert.equal(
      await raw(g.port, 'maxqueue\n', /\n/),
      'ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n',
    );
    assert.equal(
      await raw(g.port, 'create fn\n', /\n/),
      'ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+create\r\n',
    );
    assert.equal(
      await raw(g.port, 'drop\n', /\n/),
      'ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+drop\r\n',
    );
    assert.equal(await raw(g.port, 'show\n', /\n/), 'ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n');
    assert.equal(await raw(g.port, 'show stuff\n', /\n/), 'ERR UNKNOWN_SHOW_ARGUMENTS\r\n');
    assert.equal(await raw(g.port, 'show jobs \n', /\n/), 'ERR UNKNOWN_SHOW_ARGUMENTS\r\n');
    assert.equal(await raw(g.port, 'cancel job\n', /\n/), 'ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n');
    assert.equal(await raw(g.port, 'cancel this job\n', /\n/), 'ERR UNKNOWN_ERROR\r\n');
  });

  it('show jobs and show unique jobs list every job (retries, ignored, persisted)', async () => {
    const g2 = await startOurGearman();
    try {
      const c = await RawGearman.connect(g2.port);
      const bg = await submit(c, REQUEST.SUBMIT_JOB_BG, 'sj', 'bg-unique', 'x');
      const fg = await submit(c, REQUEST.SUBMIT_JOB, 'sj', 'fg-unique', 'x');
      const none = await submit(c, REQUEST.SUBMIT_JOB_BG, 'sj', '', 'x');
      assert.deepEqual(
        (await c.list('show jobs')).sort(),
        [`${bg}\t0\t0\t1`, `${fg}\t0\t0\t0`, `${none}\t0\t0\t1`].sort(),
      );
      assert.deepEqual((await c.list('SHOW UNIQUE JOBS')).sort(), ['', 'bg-unique', 'fg-unique']);
      c.close();
    } finally {
      await g2.close();
    }
  });

  it('drop function refuses while workers, running or queued jobs remain; matches names case-insensitively', async () => {
    const c = await RawGearman.connect(g.port);
    assert.equal(await c.admin('drop function nothing-here'), 'ERR function not found');
    assert.equal(await c.admin('create function Dropme'), 'OK');
    assert.equal(await c.admin('drop function DROPME'), 'OK');
    assert.ok(!(await c.list('status')).some((l) => l.startsWith('Dropme\t')));
    const w = await worker(g.port, 'busy');
    assert.equal(await c.admin('drop function busy'), 'ERR there are still connected workers or executing clients');
    await submit(c, REQUEST.SUBMIT_JOB_BG, 'queued', '', 'x');
    assert.equal(await c.admin('drop function queued'), 'ERR there are still queued jobs');
    c.close();
    w.close();
  });

  it('mixes admin lines and binary packets on one connection', async () => {
    const c = await RawGearman.connect(g.port);
    c.send(REQUEST.ECHO_REQ, ['one']);
    c.write('version\n');
    c.send(REQUEST.ECHO_REQ, ['two']);
    assert.deepEqual(await c.expect(RESPONSE.ECHO_RES), ['one']);
    assert.deepEqual(await c.next(), { kind: 'text', line: 'OK 1.1.20' });
    assert.deepEqual(await c.expect(RESPONSE.ECHO_RES), ['two']);
    c.close();
  });

  it('closes a connection that sends an endless admin line', async () => {
    const c = await RawGearman.connect(g.port);
    c.write('x'.repeat(70 * 1024));
    await c.waitClosed();
  });

  it('shutdown (with --enable-shutdown) answers OK, then stops the server', async () => {
    const g2 = await startOurGearman({ enableShutdown: true });
    let stopped = false;
    g2.server.onShutdown = () => {
      stopped = true;
    };
    try {
      assert.equal(
        await raw(g2.port, 'shutdown now please\n', /\n/),
        'ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+shutdown\r\n',
      );
      assert.equal(await raw(g2.port, 'shutdown\r\n', /\n/), 'OK\r\n');
      await eventually(() => stopped, 'onShutdown');
    } finally {
      await g2.close();
    }
  });

  it('shutdown graceful stops accepting connections and stops once the last job is done', async () => {
    const g2 = await startOurGearman({ enableShutdown: true });
    let stopped = false;
    g2.server.onShutdown = () => {
      stopped = true;
    };
    try {
      const c = await RawGearman.connect(g2.port);
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'last', '', 'x');
      const w = await worker(g2.port, 'last');
      assert.equal(await c.admin('shutdown graceful'), 'OK');
      await eventually(() => !g2.server.listening, 'listener closed');
      await assert.rejects(RawGearman.connect(g2.port));
      assert.equal(stopped, false);
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.JOB_ASSIGN);
      w.send(REQUEST.WORK_COMPLETE, [h, 'bye']);
      assert.deepEqual(await c.expect(RESPONSE.WORK_COMPLETE), [h, 'bye']);
      await eventually(() => stopped, 'onShutdown after the last job');
      c.close();
      w.close();
    } finally {
      await g2.close();
    }
  });
});
