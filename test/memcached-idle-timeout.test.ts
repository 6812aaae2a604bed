import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { MemcachedServer } from '../src/memcached/server/server.ts';

describe('-o idle_timeout', () => {
  const server = new MemcachedServer({ port: 0, listen: ['127.0.0.1'], threads: 1, idleTimeout: 1 });
  let port = 0;
  before(async () => {
    port = (await server.listen()).port;
  });
  after(() => server.close(1000));

  it('closes a connection idle for longer than the timeout and counts it in idle_kicks', async () => {
    const socket = connect(port, '127.0.0.1');
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      socket.on('close', () => resolve());
      socket.on('error', reject);
    });
    const idleFor = Date.now() - started;
    assert.ok(idleFor >= 900 && idleFor < 3500, `closed after ${idleFor} ms`);
    assert.equal(server.stats().get('idle_kicks'), '1');
  });
});
