/**
 * Job life cycle over raw sockets against our server: submission, assignment, results forwarded to every waiting
 * client, coalescing on (function, unique) for queued and running jobs, priorities, status queries, options.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodePacket } from '../src/gearman/protocol/packet-codec.ts';
import {
  type OurGearman,
  RawGearman,
  REQUEST,
  RESPONSE,
  startOurGearman,
  submit,
  worker,
} from './helpers/gearman-raw.ts';

describe('gearman jobs', () => {
  let g: OurGearman;
  const open: RawGearman[] = [];
  const conn = async () => {
    const c = await RawGearman.connect(g.port);
    open.push(c);
    return c;
  };
  const work = async (...fns: string[]) => {
    const w = await worker(g.port, ...fns);
    open.push(w);
    return w;
  };
  before(async () => {
    g = await startOurGearman();
  });
  after(async () => {
    for (const c of open) c.close();
    await g.close();
  });

  it('runs the PROTOCOL example: CAN_DO, GRAB_JOB/NO_JOB, PRE_SLEEP, SUBMIT_JOB, NOOP, JOB_ASSIGN, WORK_COMPLETE', async () => {
    const w = await work('reverse');
    w.send(REQUEST.GRAB_JOB);
    await w.expect(RESPONSE.NO_JOB);
    w.send(REQUEST.PRE_SLEEP);
    await w.sync();
    const c = await conn();
    const handle = await submit(c, REQUEST.SUBMIT_JOB, 'reverse', '', 'test');
    assert.match(handle, /^H:test:\d+$/);
    await w.expect(RESPONSE.NOOP);
    w.send(REQUEST.GRAB_JOB);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN), [handle, 'reverse', 'test']);
    w.send(REQUEST.WORK_COMPLETE, [handle, 'tset']);
    assert.deepEqual(await c.expect(RESPONSE.WORK_COMPLETE), [handle, 'tset']);
    c.send(REQUEST.GET_STATUS, [handle]);
    assert.deepEqual(await c.expect(RESPONSE.STATUS_RES), [handle, '0', '0', '0', '0']);
  });

  it('forwards WORK_DATA, WORK_WARNING and WORK_STATUS in order to every waiting client, binary-safe', async () => {
    const a = await conn();
    const b = await conn();
    const h = await submit(a, REQUEST.SUBMIT_JOB, 'fwd', 'same', 'x');
    assert.equal(await submit(b, REQUEST.SUBMIT_JOB, 'fwd', 'same', 'ignored'), h);
    const w = await work('fwd');
    w.send(REQUEST.GRAB_JOB_UNIQ);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN_UNIQ), [h, 'fwd', 'same', 'x']);
    w.send(REQUEST.WORK_DATA, [h, Buffer.from([0, 1, 0])]);
    w.send(REQUEST.WORK_WARNING, [h, 'careful']);
    w.send(REQUEST.WORK_STATUS, [h, '1', '3']);
    w.send(REQUEST.WORK_COMPLETE, [h, 'done\0with nul']);
    for (const c of [a, b]) {
      assert.deepEqual(await c.expect(RESPONSE.WORK_DATA), [h, '\0\x01\0']);
      assert.deepEqual(await c.expect(RESPONSE.WORK_WARNING), [h, 'careful']);
      assert.deepEqual(await c.expect(RESPONSE.WORK_STATUS), [h, '1', '3']);
      assert.deepEqual(await c.expect(RESPONSE.WORK_COMPLETE), [h, 'done\0with nul']);
    }
  });

  it('coalesces onto a running job: a late client gets the rest of the one execution', async () => {
    const a = await conn();
    const h = await submit(a, REQUEST.SUBMIT_JOB, 'run', 'u1', 'first');
    const w = await work('run');
    w.send(REQUEST.GRAB_JOB);
    await w.expect(RESPONSE.JOB_ASSIGN);
    w.send(REQUEST.WORK_DATA, [h, 'early']);
    await a.expect(RESPONSE.WORK_DATA);
    const late = await conn();
    assert.equal(await submit(late, REQUEST.SUBMIT_JOB_HIGH, 'run', 'u1', 'second'), h);
    late.send(REQUEST.GET_STATUS_UNIQUE, ['u1']);
    assert.deepEqual(await late.expect(RESPONSE.STATUS_RES_UNIQUE), ['u1', '1', '1', '0', '0', '2']);
    w.send(REQUEST.WORK_COMPLETE, [h, 'result']);
    assert.deepEqual(await a.expect(RESPONSE.WORK_COMPLETE), [h, 'result']);
    assert.deepEqual(await late.expect(RESPONSE.WORK_COMPLETE), [h, 'result']);
    await late.expectNothing(30);
  });

  it('a connection submitting the same unique twice gets every result twice (gearmand)', async () => {
    const c = await conn();
    const h = await submit(c, REQUEST.SUBMIT_JOB, 'twice', 'k', 'x');
    assert.equal(await submit(c, REQUEST.SUBMIT_JOB, 'twice', 'k', 'x'), h);
    const w = await work('twice');
    w.send(REQUEST.GRAB_JOB);
    await w.expect(RESPONSE.JOB_ASSIGN);
    w.send(REQUEST.WORK_FAIL, [h]);
    assert.deepEqual(await c.expect(RESPONSE.WORK_FAIL), [h]);
    assert.deepEqual(await c.expect(RESPONSE.WORK_FAIL), [h]);
  });

  it('keys unique "-" by payload, never coalesces an empty unique, and separates functions', async () => {
    const c = await conn();
    const d1 = await submit(c, REQUEST.SUBMIT_JOB_BG, 'dash', '-', 'payload');
    assert.equal(await submit(c, REQUEST.SUBMIT_JOB_BG, 'dash', '-', 'payload'), d1);
    assert.notEqual(await submit(c, REQUEST.SUBMIT_JOB_BG, 'dash', '-', 'other'), d1);
    const e1 = await submit(c, REQUEST.SUBMIT_JOB_BG, 'dash', '', 'payload');
    assert.notEqual(await submit(c, REQUEST.SUBMIT_JOB_BG, 'dash', '', 'payload'), e1);
    const f1 = await submit(c, REQUEST.SUBMIT_JOB_BG, 'dash', 'same', 'x');
    assert.notEqual(await submit(c, REQUEST.SUBMIT_JOB_BG, 'dash2', 'same', 'x'), f1);
    const w = await work('dash');
    w.send(REQUEST.GRAB_JOB_UNIQ);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN_UNIQ), [d1, 'dash', '-', 'payload']);
  });

  it('a foreground submit coalesced onto a background job gets the result; the first payload wins', async () => {
    const c = await conn();
    const h = await submit(c, REQUEST.SUBMIT_JOB_BG, 'mixed', 'bgfg', 'bg-payload');
    const fg = await conn();
    assert.equal(await submit(fg, REQUEST.SUBMIT_JOB, 'mixed', 'bgfg', 'fg-payload'), h);
    const w = await work('mixed');
    w.send(REQUEST.GRAB_JOB);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN), [h, 'mixed', 'bg-payload']);
    w.send(REQUEST.WORK_COMPLETE, [h, 'ok']);
    assert.deepEqual(await fg.expect(RESPONSE.WORK_COMPLETE), [h, 'ok']);
    await c.expectNothing(30);
  });

  it('assigns HIGH before NORMAL before LOW, FIFO within each (background and foreground)', async () => {
    const c = await conn();
    const order: string[] = [];
    const jobs: Array<[number, string]> = [
      [REQUEST.SUBMIT_JOB_LOW_BG, 'L1'],
      [REQUEST.SUBMIT_JOB_BG, 'N1'],
      [REQUEST.SUBMIT_JOB_HIGH_BG, 'H1'],
      [REQUEST.SUBMIT_JOB_LOW, 'L2'],
      [REQUEST.SUBMIT_JOB, 'N2'],
      [REQUEST.SUBMIT_JOB_HIGH, 'H2'],
    ];
    for (const [type, name] of jobs) await submit(c, type, 'prio', name, name);
    const w = await work('prio');
    for (let i = 0; i < jobs.length; i++) {
      w.send(REQUEST.GRAB_JOB);
      const [handle, , data] = await w.expect(RESPONSE.JOB_ASSIGN);
      order.push(data!);
      w.send(REQUEST.WORK_COMPLETE, [handle!, '']);
    }
    assert.deepEqual(order, ['H1', 'H2', 'N1', 'N2', 'L1', 'L2']);
    const p = await conn();
    assert.deepEqual(await p.list('prioritystatus').then((l) => l.filter((x) => x.startsWith('prio\t'))), [
      'prio\t0\t0\t0\t1',
    ]);
  });

  it('applies priority per function: a worker takes from its most recently registered function first', async () => {
    const c = await conn();
    await submit(c, REQUEST.SUBMIT_JOB_HIGH_BG, 'pf-a', 'a-high', 'a');
    await submit(c, REQUEST.SUBMIT_JOB_LOW_BG, 'pf-b', 'b-low', 'b');
    const w = await work('pf-a', 'pf-b');
    w.send(REQUEST.GRAB_JOB);
    assert.equal((await w.expect(RESPONSE.JOB_ASSIGN))[1], 'pf-b');
  });

  it('SUBMIT_REDUCE_JOB keeps the reducer for GRAB_JOB_ALL; other jobs come as JOB_ASSIGN_UNIQ', async () => {
    const c = await conn();
    const r = await submit(c, REQUEST.SUBMIT_REDUCE_JOB_BACKGROUND, 'mr', 'ru', 'reducer\0aggregator\0data');
    const plain = await submit(c, REQUEST.SUBMIT_JOB_BG, 'mr', 'pu', 'plain');
    c.send(REQUEST.SUBMIT_REDUCE_JOB, ['mr', 'fu', 'red', 'agg', 'fgdata']);
    const fg = (await c.expect(RESPONSE.JOB_CREATED))[0]!;
    const w = await work('mr');
    w.send(REQUEST.GRAB_JOB_ALL);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN_ALL), [r, 'mr', 'ru', 'reducer', 'data']);
    w.send(REQUEST.GRAB_JOB_ALL);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN_UNIQ), [plain, 'mr', 'pu', 'plain']);
    w.send(REQUEST.GRAB_JOB);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN), [fg, 'mr', 'fgdata']);
  });

  it('SUBMIT_JOB_EPOCH: a past time runs now, a future time waits and does not hide LOW jobs', async () => {
    const c = await conn();
    const future = Math.floor(Date.now() / 1000) + 3600;
    await submit(c, REQUEST.SUBMIT_JOB_EPOCH, 'ep', 'later', `${future}\0later`);
    const now = await submit(c, REQUEST.SUBMIT_JOB_EPOCH, 'ep', 'past', '1000\0past');
    const low = await submit(c, REQUEST.SUBMIT_JOB_LOW_BG, 'ep', 'low', 'low');
    const w = await work('ep');
    w.send(REQUEST.GRAB_JOB);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN), [now, 'ep', 'past']);
    w.send(REQUEST.GRAB_JOB);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN), [low, 'ep', 'low']);
    w.send(REQUEST.GRAB_JOB);
    await w.expect(RESPONSE.NO_JOB);
    assert.ok((await c.list('status')).includes('ep\t3\t2\t1'));
    c.send(REQUEST.SUBMIT_JOB_EPOCH, ['ep', 'x', '99999999999999999999999', 'd']);
    assert.deepEqual(await c.expect(RESPONSE.ERROR), ['INVALID_ARGUMENT', 'Invalid epoch time']);
  });

  it('wakes sleeping workers when an epoch job falls due', async () => {
    const w = await work('due');
    w.send(REQUEST.PRE_SLEEP);
    await w.sync();
    const c = await conn();
    // At least 1.2 s away, so the first grab below certainly finds it not due yet.
    const due = Math.ceil((Date.now() + 1200) / 1000);
    const h = await submit(c, REQUEST.SUBMIT_JOB_EPOCH, 'due', 'soon', `${due}\0soon`);
    // gearmand NOOPs at submission (the worker finds nothing runnable yet) …
    await w.expect(RESPONSE.NOOP);
    w.send(REQUEST.GRAB_JOB);
    await w.expect(RESPONSE.NO_JOB);
    w.send(REQUEST.PRE_SLEEP);
    // … and we NOOP again when the job becomes runnable.
    await w.expect(RESPONSE.NOOP, 4000);
    w.send(REQUEST.GRAB_JOB);
    assert.deepEqual(await w.expect(RESPONSE.JOB_ASSIGN), [h, 'due', 'soon']);
  });

  it('GET_STATUS and GET_STATUS_UNIQUE report known, running, progress and waiting clients', async () => {
    const c = await conn();
    const h = await submit(c, REQUEST.SUBMIT_JOB, 'st', 'st-u', 'x');
    c.send(REQUEST.GET_STATUS, [h]);
    assert.deepEqual(await c.expect(RESPONSE.STATUS_RES), [h, '1', '0', '0', '0']);
    const w = await work('st');
    w.send(REQUEST.GRAB_JOB);
    await w.expect(RESPONSE.JOB_ASSIGN);
    w.send(REQUEST.WORK_STATUS, [h, '7', '-1']);
    assert.deepEqual(await c.expect(RESPONSE.WORK_STATUS), [h, '7', '-1']);
    const other = await conn();
    other.send(REQUEST.GET_STATUS, [h]);
    assert.deepEqual(await other.expect(RESPONSE.STATUS_RES), [h, '1', '1', '7', '4294967295']);
    other.send(REQUEST.GET_STATUS_UNIQUE, ['st-u']);
    assert.deepEqual(await other.expect(RESPONSE.STATUS_RES_UNIQUE), ['st-u', '1', '1', '7', '4294967295', '1']);
    other.send(REQUEST.GET_STATUS_UNIQUE, ['nope']);
    assert.deepEqual(await other.expect(RESPONSE.STATUS_RES_UNIQUE), ['nope', '0', '0', '0', '0', '0']);
    other.send(REQUEST.GET_STATUS, ['H:test:999999']);
    assert.deepEqual(await other.expect(RESPONSE.STATUS_RES), ['H:test:999999', '0', '0', '0', '0']);
  });

  it('forwards WORK_EXCEPTION only to clients that asked; others get WORK_FAIL with a NUL-terminated handle', async () => {
    const plain = await conn();
    const asked = await conn();
    asked.send(REQUEST.OPTION_REQ, ['exceptions']);
    assert.deepEqual(await asked.expect(RESPONSE.OPTION_RES), ['exceptions']);
    const h = await submit(plain, REQUEST.SUBMIT_JOB, 'exc', 'e1', 'x');
    await submit(asked, REQUEST.SUBMIT_JOB, 'exc', 'e1', 'x');
    const w = await work('exc');
    w.send(REQUEST.GRAB_JOB);
    await w.expect(RESPONSE.JOB_ASSIGN);
    w.send(REQUEST.WORK_EXCEPTION, [h, 'boom']);
    assert.deepEqual(await asked.expect(RESPONSE.WORK_EXCEPTION), [h, 'boom']);
    const fail = await plain.next();
    assert.ok(fail.kind === 'packet' && fail.type === RESPONSE.WORK_FAIL);
    assert.equal(fail.data.toString('latin1'), `${h}\0`);
    plain.send(REQUEST.OPTION_REQ, ['frobnicate']);
    assert.deepEqual(await plain.expect(RESPONSE.ERROR), ['UNKNOWN_OPTION', 'Server does not recognize given option']);
  });

  it('--exceptions makes exceptions the default for every connection', async () => {
    const g2 = await startOurGearman({ exceptions: true });
    try {
      const c = await RawGearman.connect(g2.port);
      const w = await worker(g2.port, 'x');
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'x', '', 'x');
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.JOB_ASSIGN);
      w.send(REQUEST.WORK_EXCEPTION, [h, 'e']);
      assert.deepEqual(await c.expect(RESPONSE.WORK_EXCEPTION), [h, 'e']);
      c.close();
      w.close();
    } finally {
      await g2.close();
    }
  });

  it("answers WORK_* for a job the connection does not hold with gearmand's JOB_NOT_FOUND texts", async () => {
    const c = await conn();
    const h = await submit(c, REQUEST.SUBMIT_JOB_BG, 'nf', '', 'x');
    const stranger = await conn();
    const cases: Array<[number, string[], string]> = [
      [REQUEST.WORK_DATA, [h, 'd'], 'Job does not exist on server'],
      [REQUEST.WORK_WARNING, [h, 'd'], 'Job does not exist on server'],
      [REQUEST.WORK_STATUS, [h, '1', '2'], 'Job given in work result not found'],
      [REQUEST.WORK_COMPLETE, [h, 'r'], 'Job given in work result not found'],
      [REQUEST.WORK_FAIL, [h], 'Job given in work result not found'],
      [REQUEST.WORK_EXCEPTION, [h, 'e'], 'An exception was received for a job that does not exist'],
    ];
    for (const [type, args, text] of cases) {
      stranger.send(type, args);
      assert.deepEqual(await stranger.expect(RESPONSE.ERROR), ['JOB_NOT_FOUND', text]);
    }
    stranger.send(REQUEST.WORK_FAIL, ['H'.repeat(64)]);
    assert.deepEqual(await stranger.expect(RESPONSE.ERROR), [
      'ARGUMENT_TOO_LARGE',
      'Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf',
    ]);
  });

  it('echoes, refuses response types and unused types, and a unique of 65 bytes', async () => {
    const c = await conn();
    c.send(REQUEST.ECHO_REQ, [Buffer.from([0, 255, 0])]);
    const echo = await c.next();
    assert.ok(echo.kind === 'packet' && echo.type === RESPONSE.ECHO_RES);
    assert.deepEqual([...echo.data], [0, 255, 0]);
    for (const type of [5, RESPONSE.NOOP, RESPONSE.JOB_CREATED, REQUEST.ALL_YOURS, REQUEST.SUBMIT_JOB_SCHED, 42]) {
      c.send(type, []);
      assert.deepEqual(await c.expect(RESPONSE.ERROR), ['INVALID_COMMAND', 'Command not expected']);
    }
    c.write(Buffer.concat([Buffer.from('\0RES'), Buffer.from([0, 0, 0, 16, 0, 0, 0, 0])]));
    assert.deepEqual(await c.expect(RESPONSE.ERROR), ['INVALID_MAGIC', 'Request magic expected']);
    c.send(REQUEST.SUBMIT_JOB, ['f', 'u'.repeat(65), 'x']);
    assert.deepEqual(await c.expect(RESPONSE.ERROR), ['ARGUMENT_TOO_LARGE', 'Unique value too large']);
    assert.match(await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', 'u'.repeat(64), 'x'), /^H:test:/);
    c.send(REQUEST.SUBMIT_REDUCE_JOB, ['f', 'u', 'r'.repeat(65), 'a', 'x']);
    assert.deepEqual(await c.expect(RESPONSE.ERROR), ['ARGUMENT_TOO_LARGE', 'Unique value too large']);
    c.send(REQUEST.SUBMIT_JOB, ['no-separators']);
    assert.deepEqual(await c.expect(RESPONSE.ERROR), ['INVALID_PACKET', 'Missing arguments']);
    c.send(REQUEST.ECHO_REQ, ['still here']);
    assert.deepEqual(await c.expect(RESPONSE.ECHO_RES), ['still here']);
  });

  it('answers a pipelined burst in order: hundreds of packets and large replies in one write', async () => {
    const c = await conn();
    const small = Array.from({ length: 600 }, (_, i) => encodePacket(REQUEST.ECHO_REQ, [`m${i}`], 'REQ'));
    const big = Array.from({ length: 3 }, (_, i) => encodePacket(REQUEST.ECHO_REQ, [String(i).repeat(30_000)], 'REQ'));
    c.write(Buffer.concat([...small, ...big]));
    for (let i = 0; i < 600; i++) assert.deepEqual(await c.expect(RESPONSE.ECHO_RES), [`m${i}`]);
    for (let i = 0; i < 3; i++) assert.deepEqual(await c.expect(RESPONSE.ECHO_RES), [String(i).repeat(30_000)]);
  });

  it('SET_CLIENT_ID shows in `workers` (127 bytes at most)', async () => {
    const w = await work('idfn');
    w.send(REQUEST.SET_CLIENT_ID, ['x'.repeat(200)]);
    const lines = await w.list('workers');
    assert.ok(
      lines.some((l) => l.endsWith(` ${'x'.repeat(127)} : idfn`)),
      lines.join('\n'),
    );
  });
});
