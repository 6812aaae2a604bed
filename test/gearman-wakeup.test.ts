/**
 * Sleeping workers: PRE_SLEEP, NOOP wake-ups (all sleepers by default, `-w N` of them in rotation, at most one NOOP
 * until the next grab), and `-R` round-robin over a worker's functions.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type OurGearman,
  RawGearman,
  REQUEST,
  RESPONSE,
  startOurGearman,
  submit,
  worker,
} from './helpers/gearman-raw.ts';

async function sleeper(g: OurGearman, fn: string): Promise<RawGearman> {
  const w = await worker(g.port, fn);
  w.send(REQUEST.PRE_SLEEP);
  await w.sync();
  return w;
}

describe('gearman worker wake-up', () => {
  it('NOOPs every sleeping worker of the function once per grab cycle', async () => {
    const g = await startOurGearman();
    const conns: RawGearman[] = [];
    try {
      const a = await sleeper(g, 'f');
      const b = await sleeper(g, 'f');
      const other = await sleeper(g, 'other');
      conns.push(a, b, other);
      const c = await RawGearman.connect(g.port);
      conns.push(c);
      await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', '', '1');
      await a.expect(RESPONSE.NOOP);
      await b.expect(RESPONSE.NOOP);
      await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', '', '2');
      await a.expectNothing(30);
      await b.expectNothing(0);
      await other.expectNothing(0);
      // Two jobs, two grabs: each worker gets one.
      a.send(REQUEST.GRAB_JOB);
      b.send(REQUEST.GRAB_JOB);
      await a.expect(RESPONSE.JOB_ASSIGN);
      await b.expect(RESPONSE.JOB_ASSIGN);
      a.send(REQUEST.GRAB_JOB);
      await a.expect(RESPONSE.NO_JOB);
      a.send(REQUEST.PRE_SLEEP);
      await a.sync();
      await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', '', '3');
      await a.expect(RESPONSE.NOOP);
      // b never slept again: it is not woken.
      await b.expectNothing(30);
    } finally {
      for (const c of conns) c.close();
      await g.close();
    }
  });

  it('PRE_SLEEP with a job already runnable gets a NOOP at once', async () => {
    const g = await startOurGearman();
    try {
      const c = await RawGearman.connect(g.port);
      await submit(c, REQUEST.SUBMIT_JOB_BG, 'ready', '', 'x');
      const w = await worker(g.port, 'ready');
      w.send(REQUEST.PRE_SLEEP);
      await w.expect(RESPONSE.NOOP);
      c.close();
      w.close();
    } finally {
      await g.close();
    }
  });

  it('-w 1 wakes one sleeping worker per job, in rotation', async () => {
    const g = await startOurGearman(['-w', '1']);
    const conns: RawGearman[] = [];
    try {
      const ws = [await sleeper(g, 'f'), await sleeper(g, 'f'), await sleeper(g, 'f')];
      conns.push(...ws);
      const c = await RawGearman.connect(g.port);
      conns.push(c);
      const woken: number[] = [];
      for (let i = 0; i < 3; i++) {
        await submit(c, REQUEST.SUBMIT_JOB_BG, 'f', `j${i}`, 'x');
        for (const [n, w] of ws.entries()) {
          // The submission was handled (JOB_CREATED came): a NOOP for w precedes the reply to its ECHO.
          await w.sync();
          const replies = w.pending();
          if (replies.some((r) => r.kind === 'packet' && r.type === RESPONSE.NOOP)) woken.push(n);
        }
      }
      assert.deepEqual(woken, [0, 1, 2]);
    } finally {
      for (const c of conns) c.close();
      await g.close();
    }
  });

  it('without -R a worker drains its most recently registered function first; with -R it alternates', async () => {
    for (const [flags, expected] of [
      [[], ['b', 'b', 'a', 'a']],
      [['-R'], ['b', 'a', 'b', 'a']],
    ] as const) {
      const g = await startOurGearman([...flags]);
      try {
        const c = await RawGearman.connect(g.port);
        for (const fn of ['a', 'a', 'b', 'b']) await submit(c, REQUEST.SUBMIT_JOB_BG, fn, '', fn);
        const w = await worker(g.port, 'a', 'b');
        const got: string[] = [];
        for (let i = 0; i < 4; i++) {
          w.send(REQUEST.GRAB_JOB);
          const [handle, fn] = await w.expect(RESPONSE.JOB_ASSIGN);
          got.push(fn!);
          w.send(REQUEST.WORK_COMPLETE, [handle!, '']);
        }
        assert.deepEqual(got, expected, `flags ${flags.join(' ')}`);
        c.close();
        w.close();
      } finally {
        await g.close();
      }
    }
  });
});
