/**
 * The Node client and worker across several job servers and against broken ones: placement by unique id (Perl
 * `Gearman::Client`'s hash), round robin, failover past a dead server, a server that stops mid-job, servers that
 * never answer, send garbage or close mid-packet; plus the error table, diagnostics and argument checks.
 */

import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  GEARMAN_ERROR_CODES,
  GearmanClient,
  GearmanError,
  GearmanWorker,
  isGearmanError,
  type JobEvent,
  type ServerEvent,
  uniqueHash,
} from '../src/gearman/index.ts';
import { encodePacket, RESPONSE } from '../src/gearman/protocol/packet-codec.ts';
import {
  adminUniqueJobs,
  gearmandAvailable,
  type JobServerPeer,
  startPeer,
  workersReady,
} from './helpers/gearman-peers.ts';
import { inCI } from './helpers/gearman-real.ts';

async function rejectsWith(promise: PromiseLike<unknown>, code: string): Promise<GearmanError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof GearmanError, `expected a GearmanError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, got a result`);
}

/** A port nothing listens on (taken and released). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A fake job server: `onData` decides what each connection gets back. */
async function fakeServer(onData: (socket: Socket, chunk: Buffer) => void): Promise<{ port: number; close(): void }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk) => onData(socket, chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** A request packet type in a chunk that starts with one (enough for the fake servers). */
const typeOf = (chunk: Buffer): number => chunk.readUInt32BE(4);

describe('gearman client over several servers', () => {
  const peers: JobServerPeer[] = [];
  let servers: string[];
  let dead: string;
  const clients: GearmanClient[] = [];
  const workers: GearmanWorker[] = [];
  before(async () => {
    // Two of ours and, when installed, the real gearmand in the middle.
    peers.push(await startPeer('ours'));
    peers.push(await startPeer(gearmandAvailable() || inCI() ? 'gearmand' : 'ours'));
    peers.push(await startPeer('ours'));
    servers = peers.map((p) => `127.0.0.1:${p.port}`);
    dead = `127.0.0.1:${await deadPort()}`;
  });
  after(async () => {
    for (const w of workers) w.destroy();
    for (const c of clients) c.destroy();
    await Promise.all(peers.map((p) => p.stop()));
  });

  it("places jobs by unique id as Perl's Gearman::Client does, and jobs without one round robin", async () => {
    const client = new GearmanClient({ servers });
    clients.push(client);
    for (let i = 0; i < 30; i++) {
      const unique = `placed-${i}`;
      const expected = servers[uniqueHash(Buffer.from(unique)) % servers.length];
      const bg = await client.submitBackground('placed', 'x', { unique });
      assert.equal(bg.server, expected, unique);
    }
    for (const [i, peer] of peers.entries()) {
      const here = (await adminUniqueJobs(peer.port)).filter((u) => u.startsWith('placed-'));
      const want = Array.from({ length: 30 }, (_, k) => `placed-${k}`).filter(
        (u) => uniqueHash(Buffer.from(u)) % servers.length === i,
      );
      assert.deepEqual(here.sort(), want.sort());
      assert.ok(want.length > 0);
    }
    // A worker on every server; foreground jobs without a unique id take turns.
    const worker = new GearmanWorker({ servers, concurrency: 3 });
    workers.push(worker);
    worker.register('where', (job) => job.server);
    for (const peer of peers) await workersReady(peer.port, 'where');
    const seen = await Promise.all([1, 2, 3, 4, 5, 6].map(() => client.submitJob('where')));
    assert.deepEqual(
      seen.map((b) => b.toString()),
      [...servers, ...servers],
    );
  });

  it('fails over past a dead server, marks it dead, and fails fast when every server is down', async () => {
    const list = [servers[0]!, dead, servers[2]!];
    const events: ServerEvent[] = [];
    const onServer = (m: unknown) => {
      const e = m as ServerEvent;
      if (e.server === dead && e.role === 'client') events.push(e);
    };
    diagnostics.subscribe('sharenothing:gearman:server', onServer);
    try {
      const client = new GearmanClient({ servers: list, retryTimeout: 60_000 });
      clients.push(client);
      const worker = new GearmanWorker({ servers: list, reconnectDelay: 50 });
      workers.push(worker);
      worker.register('failover', (job) => `${job.server}:${job.payload}`);
      await workersReady(peers[0]!.port, 'failover');
      await workersReady(peers[2]!.port, 'failover');
      // Unique ids that hash to the dead server go to the next one in the list.
      const toDead = Array.from({ length: 200 }, (_, i) => `fo-${i}`)
        .filter((u) => uniqueHash(Buffer.from(u)) % 3 === 1)
        .slice(0, 4);
      const results = await Promise.all(toDead.map((unique) => client.submitJob('failover', unique, { unique })));
      assert.deepEqual(
        results.map((b) => b.toString()),
        toDead.map((u) => `${list[2]}:${u}`),
      );
      const bg = await client.submitBackground('failover', 'bg', { unique: toDead[0]! });
      assert.equal(bg.server, list[2]);
      // One connection attempt, then the server is skipped.
      assert.deepEqual(
        events.map((e) => e.type),
        ['dead'],
      );
      assert.equal(events[0]!.error instanceof GearmanError && events[0]!.error.code, 'GEARMAN_ERR_CONNECT');
      const nobody = new GearmanClient({ servers: [dead], retryTimeout: 60_000 });
      clients.push(nobody);
      const err = await rejectsWith(nobody.submitJob('failover', 'x'), 'GEARMAN_ERR_NO_SERVERS');
      assert.equal((err.cause as GearmanError).code, 'GEARMAN_ERR_CONNECT');
      await rejectsWith(nobody.submitBackground('failover', 'x'), 'GEARMAN_ERR_NO_SERVERS');
      await rejectsWith(new GearmanClient({ servers: [] }).submitJob('f'), 'GEARMAN_ERR_NO_SERVERS');
    } finally {
      diagnostics.unsubscribe('sharenothing:gearman:server', onServer);
    }
  });

  it('a server that stops mid-job fails the jobs waiting on it with GEARMAN_ERR_CONNECTION; the rest go on', async () => {
    const doomed = await startPeer('ours');
    const list = [`127.0.0.1:${doomed.port}`];
    const client = new GearmanClient({ servers: list, retryTimeout: 0 });
    clients.push(client);
    const job = client.submitJob('never_runs', 'x');
    await job.created;
    await doomed.stop();
    const err = await rejectsWith(job, 'GEARMAN_ERR_CONNECTION');
    assert.equal(err.handle, job.handle);
    await rejectsWith(client.submitJob('never_runs', 'x'), 'GEARMAN_ERR_NO_SERVERS');
  });
});

describe('gearman client against broken servers', () => {
  const fakes: Array<{ close(): void }> = [];
  const clients: GearmanClient[] = [];
  after(() => {
    for (const c of clients) c.destroy();
    for (const f of fakes) f.close();
  });
  const clientOf = async (onData: (socket: Socket, chunk: Buffer) => void, options = {}) => {
    const fake = await fakeServer(onData);
    fakes.push(fake);
    const client = new GearmanClient({ servers: [`127.0.0.1:${fake.port}`], ...options });
    clients.push(client);
    return client;
  };

  it('times out when JOB_CREATED never comes, and bounds what waits (maxQueue)', async () => {
    const client = await clientOf(() => {}, { submitTimeout: 100, maxQueue: 3, exceptions: false });
    const err = await rejectsWith(client.submitJob('f', 'x'), 'GEARMAN_ERR_TIMEOUT');
    assert.match(err.message, /no JOB_CREATED within 100 ms/);
    await rejectsWith(client.submitBackground('f', 'x'), 'GEARMAN_ERR_TIMEOUT');
    await rejectsWith(client.getStatus('H:x:1', { timeout: 50 }), 'GEARMAN_ERR_TIMEOUT');
    // The three timed-out requests still hold their place in the reply order.
    await rejectsWith(client.submitJob('f', 'x'), 'GEARMAN_ERR_QUEUE_FULL');
  });

  it('garbage from the server fails everything in flight with GEARMAN_ERR_PROTOCOL', async () => {
    const client = await clientOf((socket) => socket.write('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const jobs = [client.submitJob('f', 'a'), client.submitJob('f', 'b')];
    const bg = client.submitBackground('f', 'c');
    for (const job of jobs) await rejectsWith(job, 'GEARMAN_ERR_PROTOCOL');
    await rejectsWith(bg, 'GEARMAN_ERR_PROTOCOL');
    // A well-formed but unexpected reply is a protocol error too.
    const wrong = await clientOf((socket) => socket.write(encodePacket(RESPONSE.NO_JOB)), { exceptions: false });
    await rejectsWith(wrong.submitJob('f', 'x'), 'GEARMAN_ERR_PROTOCOL');
    const unasked = await clientOf(
      (socket) => socket.write(encodePacket(RESPONSE.STATUS_RES, ['H:1', '0', '0', '0', '0'])),
      {
        exceptions: false,
      },
    );
    await rejectsWith(unasked.submitJob('f', 'x'), 'GEARMAN_ERR_PROTOCOL');
  });

  it('a server closing mid-packet fails the waiting job with GEARMAN_ERR_CONNECTION, no hang', async () => {
    const client = await clientOf(
      (socket, chunk) => {
        if (typeOf(chunk) !== 7) return; // SUBMIT_JOB
        const complete = encodePacket(RESPONSE.WORK_COMPLETE, ['H:fake:1', 'a result that never ends']);
        socket.write(Buffer.concat([encodePacket(RESPONSE.JOB_CREATED, ['H:fake:1']), complete.subarray(0, 20)]));
        setTimeout(() => socket.destroy(), 20);
      },
      { exceptions: false },
    );
    const job = client.submitJob('f', 'x');
    const err = await rejectsWith(job, 'GEARMAN_ERR_CONNECTION');
    assert.equal(err.handle, 'H:fake:1');
    // Closing inside the JOB_CREATED header.
    const early = await clientOf((socket) => socket.end(encodePacket(RESPONSE.JOB_CREATED, ['H:1']).subarray(0, 6)), {
      exceptions: false,
    });
    await rejectsWith(early.submitJob('f', 'x'), 'GEARMAN_ERR_CONNECTION');
  });

  it('an ERROR answer rejects with GEARMAN_ERR_SERVER_ERROR and its code; the connection stays usable', async () => {
    let n = 0;
    const client = await clientOf(
      (socket) => {
        n++;
        socket.write(
          n === 1
            ? encodePacket(RESPONSE.ERROR, ['QUEUE_ERROR', 'Job queue is full'])
            : encodePacket(RESPONSE.JOB_CREATED, ['H:ok:1']),
        );
      },
      { exceptions: false },
    );
    const err = await rejectsWith(client.submitBackground('f', 'x'), 'GEARMAN_ERR_SERVER_ERROR');
    assert.equal(err.serverCode, 'QUEUE_ERROR');
    assert.match(err.message, /Job queue is full/);
    assert.equal((await client.submitBackground('f', 'y')).handle, 'H:ok:1');
  });

  it('a worker survives ERROR packets, client packets and garbage: it drops the connection and connects again', async () => {
    let connections = 0;
    const fake = await fakeServer((socket, chunk) => {
      if (typeOf(chunk) !== 1) return; // CAN_DO
      connections++;
      if (connections === 1) {
        socket.write(
          Buffer.concat([
            encodePacket(RESPONSE.ERROR, ['JOB_NOT_FOUND', 'Job given in work result not found']),
            encodePacket(RESPONSE.JOB_CREATED, ['H:1']),
          ]),
        );
      } else socket.write('garbage\n');
    });
    fakes.push(fake);
    const worker = new GearmanWorker({ servers: [`127.0.0.1:${fake.port}`], reconnectDelay: 10 });
    const events: string[] = [];
    const onServer = (m: unknown) => {
      const e = m as ServerEvent;
      if (e.role === 'worker' && e.type !== 'connect') events.push(`${e.type}:${(e.error as GearmanError).code}`);
    };
    diagnostics.subscribe('sharenothing:gearman:server', onServer);
    try {
      worker.register('f', () => 'x');
      const deadline = Date.now() + 3000;
      while (connections < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.ok(connections >= 3, `reconnected ${connections} times`);
      assert.deepEqual(events.slice(0, 3), [
        'error:GEARMAN_ERR_SERVER_ERROR',
        'disconnect:GEARMAN_ERR_PROTOCOL',
        'disconnect:GEARMAN_ERR_PROTOCOL',
      ]);
    } finally {
      diagnostics.unsubscribe('sharenothing:gearman:server', onServer);
      worker.destroy();
    }
  });

  it('destroy() fails everything in flight with GEARMAN_ERR_CLOSED; close() of an idle client resolves', async () => {
    const client = await clientOf(() => {}, { exceptions: false });
    const job = client.submitJob('f', 'x');
    const bg = client.submitBackground('f', 'x');
    client.destroy();
    await rejectsWith(job, 'GEARMAN_ERR_CLOSED');
    await rejectsWith(bg, 'GEARMAN_ERR_CLOSED');
    await rejectsWith(client.getStatus('H:1'), 'GEARMAN_ERR_CLOSED');
    await new GearmanClient({ servers: ['127.0.0.1:1'] }).close();
    await new GearmanWorker({ servers: ['127.0.0.1:1'] }).close();
  });
});

describe('gearman client surface', () => {
  it('every error code is documented in docs/errors.md', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    // The client's section only (the server's start-up codes live elsewhere).
    const section = doc.slice(doc.indexOf('## gearman client and worker')).split('\n## ')[0]!;
    const rows = new Map(
      section
        .split('\n')
        .filter((line) => line.startsWith('| `GEARMAN_ERR_'))
        .map((line) => line.split('|').map((cell) => cell.trim()))
        .map((cells) => [cells[1]!.replaceAll('`', ''), { meaning: cells[2]!, fix: cells[3]! }]),
    );
    assert.deepEqual([...rows.keys()], Object.keys(GEARMAN_ERROR_CODES));
    for (const [code, info] of Object.entries(GEARMAN_ERROR_CODES)) {
      assert.ok(rows.get(code)!.meaning.startsWith(info.meaning), `${code}: meaning out of date`);
      assert.equal(rows.get(code)!.fix, info.fix, `${code}: fix out of date`);
    }
    const err = new GearmanError('GEARMAN_ERR_TIMEOUT', undefined, { server: 'h:1', handle: 'H:1' });
    assert.equal(err.message, 'timed out (h:1)');
    assert.equal(err.handle, 'H:1');
  });

  it('refuses invalid arguments with GEARMAN_ERR_INVALID_ARGUMENT', () => {
    const invalid = (fn: () => unknown) =>
      assert.throws(fn, (err: GearmanError) => err.code === 'GEARMAN_ERR_INVALID_ARGUMENT');
    invalid(() => new GearmanClient({ servers: ['host:99999'] }));
    invalid(() => new GearmanClient({ servers: ['a b'] }));
    invalid(() => new GearmanClient({ submitTimeout: -1 }));
    invalid(() => new GearmanWorker({ concurrency: 0 }));
    invalid(() => new GearmanWorker({ servers: [] }));
    const client = new GearmanClient({ servers: ['127.0.0.1:1'] });
    invalid(() => client.submitJob(''));
    invalid(() => client.submitJob('a\0b'));
    invalid(() => client.submitJob('f', 'x', { unique: 'u'.repeat(65) }));
    invalid(() => client.submitJob('f', 'x', { priority: 'urgent' as 'high' }));
    invalid(() => client.submitJob('f', 42 as unknown as string));
    invalid(() => client.getStatus(''));
    invalid(() => client.getStatus('H:1', { server: '127.0.0.1:2' }));
    invalid(() => new GearmanWorker().register('f', 'nope' as unknown as () => void));
    client.destroy();
  });

  it('publishes job diagnostics without payloads', async () => {
    const peer = await startPeer('ours');
    const servers = [`127.0.0.1:${peer.port}`];
    const events: JobEvent[] = [];
    const onJob = (m: unknown) => events.push(m as JobEvent);
    const work: string[] = [];
    const onWork = (m: unknown) => work.push((m as { type: string }).type);
    diagnostics.subscribe('sharenothing:gearman:job', onJob);
    diagnostics.subscribe('sharenothing:gearman:work', onWork);
    const client = new GearmanClient({ servers });
    const worker = new GearmanWorker({ servers });
    try {
      worker.register('diag', () => 'secret result');
      worker.register('diag_fail', () => {
        throw new Error('secret message');
      });
      await client.submitJob('diag', 'secret payload', { unique: 'secret-unique' });
      await client.submitBackground('nobody', 'secret payload');
      await client.submitJob('diag_fail', 'secret payload').catch((err: unknown) => {
        assert.ok(isGearmanError(err, 'GEARMAN_ERR_WORK_EXCEPTION'));
      });
      assert.deepEqual(
        events.map((e) => `${e.type}:${e.background}${e.type === 'error' ? `:${e.code}` : ''}`),
        [
          'submit:false',
          'complete:false',
          'submit:true',
          'created:true',
          'submit:false',
          'error:false:GEARMAN_ERR_WORK_EXCEPTION',
        ],
      );
      assert.deepEqual(work, ['start', 'end', 'start', 'error']);
      // Events carry no payload, result or unique id (the worker's error object is the caller's own).
      for (const e of events) if (e.type === 'error') Object.assign(e, { error: undefined });
      assert.doesNotMatch(JSON.stringify(events), /secret/);
    } finally {
      diagnostics.unsubscribe('sharenothing:gearman:job', onJob);
      diagnostics.unsubscribe('sharenothing:gearman:work', onWork);
      client.destroy();
      worker.destroy();
      await peer.stop();
    }
  });
});
