import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { closeServer, listenTcp, trackConnections } from './reuse-port.ts';

describe('listenTcp', () => {
  it('resolves with the bound address for port 0', async () => {
    const server = createServer();
    const address = await listenTcp(server, { host: '127.0.0.1', port: 0 });
    try {
      assert.equal(address.address, '127.0.0.1');
      assert.ok(address.port > 0);
      assert.equal(server.listenerCount('error'), 0);
      assert.equal(server.listenerCount('listening'), 0);
    } finally {
      server.close();
    }
  });

  it('rejects with EADDRINUSE and leaves no listeners behind', async () => {
    const first = createServer();
    const { port } = await listenTcp(first, { host: '127.0.0.1', port: 0 });
    const second = createServer();
    try {
      await assert.rejects(listenTcp(second, { host: '127.0.0.1', port }), { code: 'EADDRINUSE' });
      assert.equal(second.listenerCount('error'), 0);
      assert.equal(second.listenerCount('listening'), 0);
    } finally {
      first.close();
    }
  });

  it('lets two servers bind one port with reusePort', async () => {
    const a = createServer();
    const b = createServer();
    const { port } = await listenTcp(a, { host: '127.0.0.1', port: 0, reusePort: true, backlog: 16 });
    try {
      const address = await listenTcp(b, { host: '127.0.0.1', port, reusePort: true });
      assert.equal(address.port, port);
    } finally {
      a.close();
      b.close();
    }
  });

  it('rejects synchronous listen errors such as a bad port', async () => {
    await assert.rejects(listenTcp(createServer(), { port: 70000 }), { code: 'ERR_SOCKET_BAD_PORT' });
  });
});

describe('closeServer', () => {
  async function serverWithClient(): Promise<{
    server: ReturnType<typeof createServer>;
    connections: Set<Socket>;
    client: Socket;
  }> {
    const server = createServer();
    const connections = trackConnections(server);
    const { port } = await listenTcp(server, { host: '127.0.0.1', port: 0 });
    // allowHalfOpen: the client never answers the server's FIN, so only destroy() can close it.
    const client = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    client.on('error', () => {});
    await Promise.all([once(client, 'connect'), once(server, 'connection')]);
    return { server, connections, client };
  }

  it('ends idle connections and resolves when they have closed', async () => {
    const server = createServer();
    const connections = trackConnections(server);
    const { port } = await listenTcp(server, { host: '127.0.0.1', port: 0 });
    const client = connect({ host: '127.0.0.1', port });
    await Promise.all([once(client, 'connect'), once(server, 'connection')]);
    const started = Date.now();
    await closeServer(server, { connections, deadlineMs: 5000 });
    assert.ok(Date.now() - started < 1000);
    assert.equal(connections.size, 0);
    assert.equal(server.listening, false);
  });

  it('destroys a connection that never ends once the deadline passes', async () => {
    const { server, connections, client } = await serverWithClient();
    const drained: Socket[] = [];
    const started = Date.now();
    await closeServer(server, { connections, deadlineMs: 50, onDrain: (socket) => drained.push(socket) });
    assert.ok(Date.now() - started >= 45);
    assert.equal(drained.length, 1);
    assert.equal(connections.size, 0);
    client.destroy();
  });

  it('destroys a connection whose onDrain hook throws, without waiting for the deadline', async () => {
    const { server, connections, client } = await serverWithClient();
    const started = Date.now();
    await closeServer(server, {
      connections,
      deadlineMs: 5000,
      onDrain: () => {
        throw new Error('hook broke');
      },
    });
    assert.ok(Date.now() - started < 1000);
    client.destroy();
  });

  it('resolves for a server that is not listening', async () => {
    await closeServer(createServer(), { connections: new Set(), deadlineMs: 10 });
  });
});
