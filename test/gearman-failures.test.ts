/**
 * What happens when things go wrong: workers that die or time out, -j, clients that leave, full queues, cancelled
 * jobs, broken packets, clients that do not read. gearmand 1.1.20 is the reference (see CHECKLIST.md §1.5).
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodePacket } from '../src/gearman/protocol/packet-codec.ts';
import {
  closeAndWait,
  type OurGearman,
  RawGearman,
  REQUEST,
  RESPONSE,
  startOurGearman,
  submit,
  worker,
} from './helpers/gearman-raw.ts';

async function withServer(
  options: Parameters<typeof startOurGearman>[0],
  body: (g: OurGearman, open: (c: RawGearman) => RawGearman) => Promise<void>,
): Promise<void> {
  const g = await startOurGearman(options);
  const conns: RawGearman[] = [];
  try {
    await body(g, (c) => {
      conns.push(c);
      return c;
    });
  } finally {
    for (const c of conns) c.close();
    await g.close();
  }
}

describe('gearman failure semantics', () => {
  it('requeues the jobs of a worker that disconnects (last assigned first, at the tail); clients stay attached', () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      const fg = await submit(c, REQUEST.SUBMIT_JOB, 'f', 'a', '1');
      const bg = await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', 'b', '2');
      const later = await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', 'c', '3');
      const w1 = open(await worker(g.port, 'f'));
      w1.send(REQUEST.GRAB_JOB);
      await w1.expect(RESPONSE.JOB_ASSIGN);
      w1.send(REQUEST.GRAB_JOB);
      await w1.expect(RESPONSE.JOB_ASSIGN);
      w1.send(REQUEST.WORK_STATUS, [fg, '1', '2']);
      await c.expect(RESPONSE.WORK_STATUS);
      await closeAndWait(g.server, w1);
      c.send(REQUEST.GET_STATUS, [fg]);
      assert.deepEqual(await c.expect(RESPONSE.STATUS_RES), [fg, '1', '0', '0', '0']);
      c.send(REQUEST.GET_STATUS, [bg]);
      assert.deepEqual(await c.expect(RESPONSE.STATUS_RES), [bg, '1', '0', '0', '0']);
      assert.deepEqual(
        await c.list('show jobs').then((l) => l.sort()),
        [`${fg}\t1\t0\t0`, `${bg}\t1\t0\t1`, `${later}\t0\t0\t1`].sort(),
      );
      const w2 = open(await worker(g.port, 'f'));
      const order: string[] = [];
      for (let i = 0; i < 3; i++) {
        w2.send(REQUEST.GRAB_JOB);
        order.push((await w2.expect(RESPONSE.JOB_ASSIGN))[0]!);
      }
      assert.deepEqual(order, [later, bg, fg]);
      w2.send(REQUEST.WORK_COMPLETE, [fg, 'second time']);
      assert.deepEqual(await c.expect(RESPONSE.WORK_COMPLETE), [fg, 'second time']);
    }));

  it('-j 2 drops a job after its second attempt with WORK_FAIL to the waiting client', () =>
    withServer(['-j', '2'], async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'crash', '', 'x');
      for (let attempt = 1; attempt <= 2; attempt++) {
        const w = await worker(g.port, 'crash');
        w.send(REQUEST.GRAB_JOB);
        assert.equal((await w.expect(RESPONSE.JOB_ASSIGN))[0], h);
        await closeAndWait(g.server, w);
      }
      assert.deepEqual(await c.expect(RESPONSE.WORK_FAIL), [h]);
      assert.deepEqual(await c.list('status'), ['crash\t0\t0\t0']);
    }));

  it('discards a queued foreground job whose clients all left; the worker never sees it', () =>
    withServer({}, async (g, open) => {
      const c = await RawGearman.connect(g.port);
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'gone', 'g1', 'x');
      await submit(c, REQUEST.SUBMIT_JOB, 'gone', 'g2', 'y');
      await closeAndWait(g.server, c);
      const admin = open(await RawGearman.connect(g.port));
      assert.ok((await admin.list('show jobs')).includes(`${h}\t0\t1\t0`));
      assert.deepEqual(await admin.list('status'), ['gone\t2\t0\t0']);
      const w = open(await worker(g.port, 'gone'));
      w.send(REQUEST.PRE_SLEEP);
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.NO_JOB);
      assert.deepEqual(await admin.list('status'), ['gone\t0\t0\t1']);
    }));

  it('revives an abandoned job when a client submits it again (gearmand would leave that client waiting)', () =>
    withServer({}, async (g, open) => {
      const c = await RawGearman.connect(g.port);
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'again', 'k', 'x');
      await closeAndWait(g.server, c);
      const c2 = open(await RawGearman.connect(g.port));
      assert.equal(await submit(c2, REQUEST.SUBMIT_JOB, 'again', 'k', 'x'), h);
      const w = open(await worker(g.port, 'again'));
      w.send(REQUEST.GRAB_JOB);
      assert.equal((await w.expect(RESPONSE.JOB_ASSIGN))[0], h);
      w.send(REQUEST.WORK_COMPLETE, [h, 'r']);
      assert.deepEqual(await c2.expect(RESPONSE.WORK_COMPLETE), [h, 'r']);
    }));

  it('keeps a background job when a foreground client that coalesced onto it leaves', () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      const h = await submit(c, REQUEST.SUBMIT_JOB_BG, 'keep', 'k', 'x');
      const fg = await RawGearman.connect(g.port);
      await submit(fg, REQUEST.SUBMIT_JOB, 'keep', 'k', 'x');
      await closeAndWait(g.server, fg);
      const w = open(await worker(g.port, 'keep'));
      w.send(REQUEST.GRAB_JOB);
      assert.equal((await w.expect(RESPONSE.JOB_ASSIGN))[0], h);
    }));

  it('a running foreground job whose client left still completes (result dropped)', () =>
    withServer({}, async (g, open) => {
      const c = await RawGearman.connect(g.port);
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'rl', '', 'x');
      const w = open(await worker(g.port, 'rl'));
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.JOB_ASSIGN);
      await closeAndWait(g.server, c);
      w.send(REQUEST.WORK_COMPLETE, [h, 'r']);
      await w.sync();
      assert.deepEqual(await w.list('status'), ['rl\t0\t0\t1']);
    }));

  it('CAN_DO_TIMEOUT requeues a job after the timeout (at least 1 s); the late result gets JOB_NOT_FOUND', () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'slow', '', 'x');
      const w = open(await RawGearman.connect(g.port));
      w.send(REQUEST.CAN_DO_TIMEOUT, ['slow', '10']);
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.JOB_ASSIGN);
      await sleep(500);
      assert.deepEqual(await w.list('status'), ['slow\t1\t1\t1']);
      await sleep(650);
      assert.deepEqual(await w.list('status'), ['slow\t1\t0\t1']);
      assert.deepEqual(await w.list('show jobs'), [`${h}\t1\t0\t0`]);
      w.send(REQUEST.WORK_COMPLETE, [h, 'late']);
      assert.deepEqual(await w.expect(RESPONSE.ERROR), ['JOB_NOT_FOUND', 'Job given in work result not found']);
      await c.expectNothing(20);
      const w2 = open(await worker(g.port, 'slow'));
      w2.send(REQUEST.GRAB_JOB);
      await w2.expect(RESPONSE.JOB_ASSIGN);
      w2.send(REQUEST.WORK_COMPLETE, [h, 'ok']);
      assert.deepEqual(await c.expect(RESPONSE.WORK_COMPLETE), [h, 'ok']);
    }));

  it('CAN_DO_TIMEOUT with a garbage timeout registers the function without a timer; an oversized one is ignored', () =>
    withServer({}, async (g, open) => {
      const w = open(await RawGearman.connect(g.port));
      w.send(REQUEST.CAN_DO_TIMEOUT, ['t1', 'abc']);
      w.send(REQUEST.CAN_DO_TIMEOUT, ['t2', '123456789012345678901']);
      w.send(REQUEST.CAN_DO_TIMEOUT, ['t3', '99999999999999999999']);
      assert.deepEqual(await w.list('workers'), [
        `${g.server.router.peers.values().next().value!.fd} 127.0.0.1 - : t1`,
      ]);
    }));

  it('PRE_SLEEP stops the timeout of the jobs the worker holds (gearmand)', () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      await submit(c, REQUEST.SUBMIT_JOB, 'ps', '', 'x');
      const w = open(await RawGearman.connect(g.port));
      w.send(REQUEST.CAN_DO_TIMEOUT, ['ps', '1000']);
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.JOB_ASSIGN);
      w.send(REQUEST.PRE_SLEEP);
      await sleep(1150);
      assert.deepEqual(await w.list('status'), ['ps\t1\t1\t1']);
    }));

  it('CANT_DO and RESET_ABILITIES requeue the jobs running through the dropped abilities', () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      const h1 = await submit(c, REQUEST.SUBMIT_JOB_BG, 'a', '', 'x');
      const h2 = await submit(c, REQUEST.SUBMIT_JOB_BG, 'b', '', 'y');
      const w = open(await worker(g.port, 'a', 'b', 'a'));
      w.send(REQUEST.GRAB_JOB);
      assert.equal((await w.expect(RESPONSE.JOB_ASSIGN))[0], h1);
      w.send(REQUEST.GRAB_JOB);
      assert.equal((await w.expect(RESPONSE.JOB_ASSIGN))[0], h2);
      assert.deepEqual((await w.list('status')).sort(), ['a\t1\t1\t2', 'b\t1\t1\t1']);
      w.send(REQUEST.CANT_DO, ['a']);
      assert.deepEqual((await w.list('status')).sort(), ['a\t1\t0\t0', 'b\t1\t1\t1']);
      w.send(REQUEST.RESET_ABILITIES);
      assert.deepEqual((await w.list('status')).sort(), ['a\t1\t0\t0', 'b\t1\t0\t0']);
      assert.deepEqual((await w.list('show jobs')).sort(), [`${h1}\t1\t0\t1`, `${h2}\t1\t0\t1`].sort());
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.NO_JOB);
    }));

  it('maxqueue refuses a new job with QUEUE_ERROR; coalescing and other priorities still work', () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      await submit(c, REQUEST.SUBMIT_JOB_BG, 'mq', 'first', 'x');
      assert.equal(await c.admin('maxqueue mq 1'), 'OK');
      c.send(REQUEST.SUBMIT_JOB_BG, ['mq', 'second', 'x']);
      assert.deepEqual(await c.expect(RESPONSE.ERROR), ['QUEUE_ERROR', 'Job queue is full']);
      await submit(c, REQUEST.SUBMIT_JOB, 'mq', 'first', 'x');
      assert.equal(await c.admin('maxqueue mq 0 2 0'), 'OK');
      await submit(c, REQUEST.SUBMIT_JOB_HIGH_BG, 'mq', 'h1', 'x');
      await submit(c, REQUEST.SUBMIT_JOB_HIGH_BG, 'mq', 'h2', 'x');
      c.send(REQUEST.SUBMIT_JOB_BG, ['mq', 'n', 'x']);
      assert.deepEqual(await c.expect(RESPONSE.ERROR), ['QUEUE_ERROR', 'Job queue is full']);
      await submit(c, REQUEST.SUBMIT_JOB_LOW_BG, 'mq', 'l', 'x');
      assert.equal(await c.admin('maxqueue mq -5'), 'OK');
      await submit(c, REQUEST.SUBMIT_JOB_BG, 'mq', 'n', 'x');
      assert.equal(await c.admin('maxqueue nosuchfn 1'), 'OK');
      assert.ok(!(await c.list('status')).some((l) => l.startsWith('nosuchfn')));
    }));

  it('cancel job: waiting clients get WORK_FAIL, the job leaves the queue when reached', () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'cx', 'u', 'x');
      const admin = open(await RawGearman.connect(g.port));
      assert.equal(await admin.admin(`cancel job ${h}`), 'OK');
      assert.deepEqual(await c.expect(RESPONSE.WORK_FAIL), [h]);
      assert.deepEqual(await admin.list('show jobs'), [`${h}\t0\t1\t0`]);
      assert.equal(await admin.admin('cancel job H:test:424242'), 'ERR UNKNOWN_JOB');
      const w = open(await worker(g.port, 'cx'));
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.NO_JOB);
      assert.deepEqual(await admin.list('show jobs'), []);
    }));

  it('a bad magic or packet type closes only that connection, without a reply', async () => {
    const g = await startOurGearman();
    try {
      const other = await RawGearman.connect(g.port);
      for (const bytes of [
        Buffer.from('\0REX\0\0\0\x09\0\0\0\0', 'latin1'),
        Buffer.from('\0REQ\0\0\0\0\0\0\0\0', 'latin1'),
        Buffer.from('\0REQ\0\0\0\x2b\0\0\0\0', 'latin1'),
        Buffer.from('\0RES\0\0\0\xff\0\0\0\0', 'latin1'),
      ]) {
        const c = await RawGearman.connect(g.port);
        c.send(REQUEST.ECHO_REQ, ['before']);
        c.write(bytes);
        c.send(REQUEST.ECHO_REQ, ['after']);
        await c.waitClosed();
        assert.deepEqual(await c.drain(10), [
          {
            kind: 'packet',
            type: RESPONSE.ECHO_RES,
            name: 'ECHO_RES',
            data: Buffer.from('before'),
            args: ['before'],
          },
        ]);
      }
      other.send(REQUEST.ECHO_REQ, ['alive']);
      assert.deepEqual(await other.expect(RESPONSE.ECHO_RES), ['alive']);
      other.close();
    } finally {
      await g.close();
    }
  });

  it('refuses a packet above the size limit with ERROR DATA_TOO_LARGE and closes', () =>
    withServer({ maxPacketSize: 4096 }, async (g) => {
      const c = await RawGearman.connect(g.port);
      c.write(Buffer.from('\0REQ\0\0\0\x10\0\0\x20\0', 'latin1'));
      assert.deepEqual(await c.expect(RESPONSE.ERROR), ['DATA_TOO_LARGE', 'Packet exceeds the maximum size']);
      await c.waitClosed();
    }));

  it("Perl Gearman::Worker's two-argument WORK_STATUS does not desynchronise the stream", () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'perl', '', 'x');
      const w = open(await worker(g.port, 'perl'));
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.JOB_ASSIGN);
      w.send(REQUEST.WORK_STATUS, [h, '3']);
      w.send(REQUEST.WORK_DATA, [h, 'after']);
      w.send(REQUEST.WORK_COMPLETE, [h, 'done']);
      const status = await c.next();
      assert.ok(status.kind === 'packet' && status.type === RESPONSE.WORK_STATUS);
      assert.equal(status.data.toString('latin1'), `${h}\x003\0`);
      assert.deepEqual(await c.expect(RESPONSE.WORK_DATA), [h, 'after']);
      assert.deepEqual(await c.expect(RESPONSE.WORK_COMPLETE), [h, 'done']);
      c.send(REQUEST.GET_STATUS, [h]);
      assert.deepEqual(await c.expect(RESPONSE.STATUS_RES), [h, '0', '0', '0', '0']);
    }));

  it('an idle connection holding half a packet does not hold up anyone', () =>
    withServer({}, async (g, open) => {
      const idle = open(await RawGearman.connect(g.port));
      idle.write(encodePacket(REQUEST.SUBMIT_JOB, ['f', '', 'x'.repeat(1000)], 'REQ').subarray(0, 500));
      const c = open(await RawGearman.connect(g.port));
      const w = open(await worker(g.port, 'f'));
      const h = await submit(c, REQUEST.SUBMIT_JOB, 'f', '', 'quick');
      w.send(REQUEST.GRAB_JOB);
      assert.equal((await w.expect(RESPONSE.JOB_ASSIGN))[0], h);
      idle.write(encodePacket(REQUEST.SUBMIT_JOB, ['f', '', 'x'.repeat(1000)], 'REQ').subarray(500));
      assert.match((await idle.expect(RESPONSE.JOB_CREATED))[0]!, /^H:test:/);
    }));

  it('stops reading from a client that does not read its replies, and catches up once it does', () =>
    withServer({}, async (g, open) => {
      const c = open(await RawGearman.connect(g.port));
      const payload = 'e'.repeat(64 * 1024);
      const count = 400; // 25 MiB of echoes
      const packet = encodePacket(REQUEST.ECHO_REQ, [payload], 'REQ');
      c.socket.pause();
      for (let i = 0; i < count; i++) c.socket.write(packet);
      await sleep(300);
      const [serverSide] = [...g.server.connections];
      assert.ok(serverSide !== undefined);
      // The server holds at most about one socket buffer plus one batch, not the 25 MiB asked for.
      assert.ok(
        serverSide.socket.writableLength < 4 * 1024 * 1024,
        `server buffered ${serverSide.socket.writableLength}`,
      );
      assert.ok(c.socket.writableLength > 0, 'the client could write everything: the server did not push back');
      c.socket.resume();
      for (let i = 0; i < count; i++) await c.expect(RESPONSE.ECHO_RES, 5000);
    }));

  it('closes a client whose forwarded output piles up past maxOutputBuffer; the worker and others go on', () =>
    withServer({ maxOutputBuffer: 2 * 1024 * 1024 }, async (g, open) => {
      const slow = open(await RawGearman.connect(g.port));
      const fast = open(await RawGearman.connect(g.port));
      const h = await submit(slow, REQUEST.SUBMIT_JOB, 'stream', 'one', 'x');
      await submit(fast, REQUEST.SUBMIT_JOB, 'stream', 'one', 'x');
      slow.socket.pause();
      const w = open(await worker(g.port, 'stream'));
      w.send(REQUEST.GRAB_JOB);
      await w.expect(RESPONSE.JOB_ASSIGN);
      const chunk = 'd'.repeat(256 * 1024);
      for (let i = 0; i < 40; i++) {
        w.send(REQUEST.WORK_DATA, [h, chunk]);
        await fast.expect(RESPONSE.WORK_DATA, 5000);
      }
      w.send(REQUEST.WORK_COMPLETE, [h, 'end']);
      assert.deepEqual(await fast.expect(RESPONSE.WORK_COMPLETE), [h, 'end']);
      slow.socket.resume();
      await slow.waitClosed(5000);
      w.send(REQUEST.ECHO_REQ, ['ok']);
      assert.deepEqual(await w.expect(RESPONSE.ECHO_RES), ['ok']);
    }));
});
