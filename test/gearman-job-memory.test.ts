/**
 * Bounded job memory: a flood of background jobs meets `ERROR MEMORY_ALLOCATION_FAILURE` at `--max-job-memory`
 * instead of taking the server past its heap limit; coalescing onto existing jobs and draining go on, and room
 * freed by completed jobs is given to new ones. Also the 64-way job tables and GET_STATUS_UNIQUE across functions.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JOB_OVERHEAD_BYTES } from '../src/gearman/server/job-router.ts';
import { ShardedMap } from '../src/gearman/server/sharded-map.ts';
import { RawGearman, REQUEST, RESPONSE, startOurGearman } from './helpers/gearman-raw.ts';

describe('job memory limit', () => {
  it('refuses new jobs past the limit, keeps coalescing and draining, and accepts again once jobs finish', async () => {
    const payload = Buffer.alloc(1000, 0x61);
    const perJob = JOB_OVERHEAD_BYTES + payload.length;
    const g = await startOurGearman({ maxJobMemory: perJob * 5 });
    try {
      const c = await RawGearman.connect(g.port);
      for (let i = 0; i < 5; i++) {
        c.send(REQUEST.SUBMIT_JOB_BG, ['mem', `u${i}`, payload]);
        await c.expect(RESPONSE.JOB_CREATED);
      }
      c.send(REQUEST.SUBMIT_JOB_BG, ['mem', 'u5', payload]);
      assert.deepEqual(await c.expect(RESPONSE.ERROR), [
        'MEMORY_ALLOCATION_FAILURE',
        'Server is out of memory for jobs',
      ]);
      // Joining an existing job costs nothing and is still answered.
      c.send(REQUEST.SUBMIT_JOB_BG, ['mem', 'u0', payload]);
      await c.expect(RESPONSE.JOB_CREATED);
      assert.equal(g.server.router.counters.refusedForMemory, 1);
      assert.deepEqual(await c.list('status'), ['mem\t5\t0\t0']);
      // A worker finishes one: there is room for one more.
      const w = await RawGearman.connect(g.port);
      w.send(REQUEST.CAN_DO, ['mem']);
      w.send(REQUEST.GRAB_JOB);
      const [handle] = await w.expect(RESPONSE.JOB_ASSIGN);
      w.send(REQUEST.WORK_COMPLETE, [handle!, '']);
      await w.sync();
      c.send(REQUEST.SUBMIT_JOB_BG, ['mem', 'u6', payload]);
      await c.expect(RESPONSE.JOB_CREATED);
      c.send(REQUEST.SUBMIT_JOB, ['mem', 'u7', payload]);
      assert.equal((await c.expect(RESPONSE.ERROR))[0], 'MEMORY_ALLOCATION_FAILURE');
      c.close();
      w.close();
    } finally {
      await g.close();
    }
  });
});

describe('job tables', () => {
  it('ShardedMap keeps size, lookups and deletes across shards', () => {
    const m = new ShardedMap<number>();
    for (let i = 0; i < 5000; i++) m.set(`H:host:${i}`, i);
    m.set('H:host:7', 70);
    assert.equal(m.size, 5000);
    assert.equal(m.get('H:host:7'), 70);
    assert.equal(m.has('H:host:4999'), true);
    assert.equal(m.delete('H:host:4999'), true);
    assert.equal(m.delete('H:host:4999'), false);
    assert.equal(m.size, 4999);
    assert.equal([...m.values()].length, 4999);
    assert.equal(m.get(''), undefined);
  });

  it('GET_STATUS_UNIQUE finds the newest job of a unique id across functions, then the older ones', async () => {
    const g = await startOurGearman();
    try {
      const c = await RawGearman.connect(g.port);
      const handles: string[] = [];
      for (const fn of ['f1', 'f2', 'f3']) {
        c.send(REQUEST.SUBMIT_JOB_BG, [fn, 'shared', fn]);
        handles.push((await c.expect(RESPONSE.JOB_CREATED))[0]!);
      }
      const router = g.server.router;
      assert.equal(router.statusByUnique('shared')?.handle, handles[2]);
      // Finish the middle one, then the newest: the chain stays intact.
      const finish = async (fn: string) => {
        const w = await RawGearman.connect(g.port);
        w.send(REQUEST.CAN_DO, [fn]);
        w.send(REQUEST.GRAB_JOB);
        const [handle] = await w.expect(RESPONSE.JOB_ASSIGN);
        w.send(REQUEST.WORK_COMPLETE, [handle!, '']);
        await w.sync();
        w.close();
      };
      await finish('f2');
      assert.equal(router.statusByUnique('shared')?.handle, handles[2]);
      await finish('f3');
      assert.equal(router.statusByUnique('shared')?.handle, handles[0]);
      await finish('f1');
      assert.equal(router.statusByUnique('shared'), undefined);
      c.close();
    } finally {
      await g.close();
    }
  });
});
