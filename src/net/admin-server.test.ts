import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type AdminServer, startAdminServer } from './admin-server.ts';
import { MetricsRegistry } from './metrics.ts';

describe('admin server', () => {
  const registry = new MetricsRegistry();
  registry.counter('requests_total', 'Requests.').inc(3);
  let healthy = true;
  let admin: AdminServer;
  let base: string;

  before(async () => {
    admin = await startAdminServer({ host: '127.0.0.1', port: 0, registry, health: () => healthy });
    base = `http://127.0.0.1:${admin.address.port}`;
  });
  after(() => admin.close());

  it('listens on the port the OS picked for port 0', () => {
    assert.equal(admin.address.host, '127.0.0.1');
    assert.ok(admin.address.port > 0);
  });

  it('serves GET /metrics as text/plain; version=0.0.4', async () => {
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(
      await res.text(),
      '# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total 3\n',
    );
  });

  it('answers /healthz with 200 ok while healthy and 503 otherwise', async () => {
    const ok = await fetch(`${base}/healthz`);
    assert.deepEqual([ok.status, await ok.text()], [200, 'ok']);
    healthy = false;
    const bad = await fetch(`${base}/healthz?verbose=1`);
    assert.deepEqual([bad.status, await bad.text()], [503, 'unhealthy']);
    healthy = true;
  });

  it('answers 404 for unknown paths and 405 for methods other than GET/HEAD', async () => {
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    await post.body?.cancel();
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
  });

  it('turns a throwing collector into a 500 for that scrape', async () => {
    const failing = new MetricsRegistry();
    failing.addCollector(() => {
      throw new Error('collector broke');
    });
    const other = await startAdminServer({ host: '127.0.0.1', port: 0, registry: failing });
    try {
      const res = await fetch(`http://127.0.0.1:${other.address.port}/metrics`);
      assert.equal(res.status, 500);
      await res.body?.cancel();
    } finally {
      await other.close();
    }
  });
});
