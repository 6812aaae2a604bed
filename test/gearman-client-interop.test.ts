/**
 * Interop proof for the Node client and worker: real clients and workers from Debian's packages on the other side,
 * the real gearmand 1.1.20 in the middle (so only our half is under test).
 *
 * - php-gearman (libgearman): GearmanClient → our worker, and our client → GearmanWorker;
 * - Perl Gearman::Client / Gearman::Worker (libgearman-client-perl) both ways, and the same placement of unique ids
 *   across several servers as Perl's client;
 * - the `gearman` CLI (gearman-tools) as a worker for our client and as a client of our worker.
 *
 * A missing package skips its test visibly; with `CI=true` it fails instead.
 */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GearmanClient, GearmanError, GearmanWorker, type JobUpdate } from '../src/gearman/index.ts';
import {
  adminUniqueJobs,
  type JobServerPeer,
  present,
  run,
  start,
  startPeer,
  stopAll,
  until,
  workersReady,
} from './helpers/gearman-peers.ts';
import { GEARMAN_BIN, GEARMAND_BIN, requirePackage, requireTool } from './helpers/gearman-real.ts';

async function collect(job: AsyncIterable<JobUpdate>): Promise<string[]> {
  const out: string[] = [];
  for await (const u of job)
    out.push(u.type === 'status' ? `status:${u.numerator}/${u.denominator}` : `${u.type}:${u.data}`);
  return out;
}

async function failure(job: PromiseLike<unknown>): Promise<GearmanError> {
  return job.then(
    () => assert.fail('expected the job to fail'),
    (err: unknown) => err as GearmanError,
  );
}

const PHP_WORKER = `<?php
$w = new GearmanWorker();
$w->addServer('127.0.0.1', (int)$argv[1]);
$w->addFunction('php_reverse', function (GearmanJob $job) {
  $job->sendStatus(1, 2);
  $job->sendData('partial:' . $job->unique());
  $job->sendWarning('careful');
  return strrev($job->workload());
});
$w->addFunction('php_fail', function (GearmanJob $job) {
  $job->sendFail();
  return null;
});
$w->addFunction('php_exception', function (GearmanJob $job) {
  $job->sendException('php says no');
  return null;
});
while ($w->work()) {}
`;

const PHP_CLIENT = `<?php
$c = new GearmanClient();
$c->addServer('127.0.0.1', (int)$argv[1]);
$c->setTimeout(8000);
$r = $c->doNormal('node_reverse', 'hello', 'php-1');
while ($c->returnCode() == GEARMAN_WORK_DATA || $c->returnCode() == GEARMAN_WORK_STATUS) {
  $r = $c->doNormal('node_reverse', 'hello', 'php-1');
}
echo "doNormal:", $r, ":", $c->returnCode(), "\\n";
$c->setDataCallback(function ($t) { echo "data:", $t->data(), "\\n"; });
$c->setStatusCallback(function ($t) { echo "status:", $t->taskNumerator(), "/", $t->taskDenominator(), "\\n"; });
$c->setCompleteCallback(function ($t) { echo "complete:", $t->unique(), ":", $t->data(), "\\n"; });
$c->setFailCallback(function ($t) { echo "fail:", $t->functionName(), "\\n"; });
$c->setExceptionCallback(function ($t) { echo "exception:", $t->functionName(), ":", $t->data(), "\\n"; });
$c->addTaskHigh('node_reverse', 'task', null, 'php-2');
$c->addTask('node_throw', 'x', null, 'php-3');
if (!$c->runTasks()) { echo "runTasks:", $c->error(), "\\n"; }
$h = $c->doBackground('node_reverse', 'background', 'php-bg');
echo "doBackground:", $h, "\\n";
`;

const PERL_WORKER = `use strict; use warnings;
use Gearman::Worker;
$| = 1;
my $w = Gearman::Worker->new(job_servers => ["127.0.0.1:$ARGV[0]"]);
$w->register_function(perl_reverse => sub {
  my $job = shift;
  $w->send_work_data($job, "chunk");
  $job->set_status(2, 3);
  return scalar reverse $job->arg;
});
$w->register_function(perl_undef => sub { return undef });
$w->work(stop_if => sub { 0 });
`;

const PERL_CLIENT = `use strict; use warnings;
use Gearman::Client;
$| = 1;
my $c = Gearman::Client->new(job_servers => ["127.0.0.1:$ARGV[0]"]);
my $r = $c->do_task(node_reverse => "perl says hi", {
  uniq => "p-1",
  on_status => sub { print "status:$_[0]/$_[1]\\n" },
  on_data => sub { print "data:\${$_[0]}\\n" },
  timeout => 8,
});
print "result:", (defined $r ? $$r : "undef"), "\\n";
my $h = $c->dispatch_background(node_reverse => "perl-bg", { uniq => "perl-bg" });
print "handle:$h\\n";
my $f = $c->do_task(node_fail => "x", { timeout => 8, on_fail => sub { print "fail\\n" } });
`;

/** Perl's placement: dispatch background jobs with the unique ids given after the ports. */
const PERL_PLACEMENT = `use strict; use warnings;
use Gearman::Client;
my @ports = split /,/, shift @ARGV;
my $c = Gearman::Client->new(job_servers => [map { "127.0.0.1:$_" } @ports]);
for my $u (@ARGV) { my $h = $c->dispatch_background(placed => "x", { uniq => $u }); print "$u $h\\n"; }
`;

describe('gearman interop: our client and worker with real peers (through gearmand)', () => {
  let peer: JobServerPeer | undefined;
  let servers: string[];
  let dir: string;
  const clients: GearmanClient[] = [];
  const workers: GearmanWorker[] = [];
  const background: string[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sharenothing-gearman-client-'));
    for (const [name, text] of Object.entries({
      'worker.php': PHP_WORKER,
      'client.php': PHP_CLIENT,
      'worker.pl': PERL_WORKER,
      'client.pl': PERL_CLIENT,
      'placement.pl': PERL_PLACEMENT,
    })) {
      writeFileSync(join(dir, name), text);
    }
  });
  after(async () => {
    for (const w of workers) w.destroy();
    for (const c of clients) c.destroy();
    await stopAll();
    await peer?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  /** gearmand, our client and our worker (`node_reverse`, `node_throw`), started once. */
  const setup = async (t: Parameters<typeof requireTool>[0]): Promise<boolean> => {
    if (!requireTool(t, GEARMAND_BIN, 'gearmand (gearman-job-server)')) return false;
    if (peer === undefined) {
      peer = await startPeer('gearmand');
      servers = [`127.0.0.1:${peer.port}`];
      const worker = new GearmanWorker({ servers, concurrency: 2 });
      workers.push(worker);
      worker.register('node_reverse', (job) => {
        if (job.unique.endsWith('bg')) background.push(job.payload.toString());
        job.sendStatus(1, 2);
        job.sendData(`partial:${job.unique}`);
        return Buffer.from(job.payload).reverse();
      });
      worker.register('node_throw', () => {
        throw new Error('node says no');
      });
      // For Perl's client: gearmand turns WORK_EXCEPTION into a WORK_FAIL whose handle ends in a NUL for clients
      // without the exceptions option, and Gearman::Client dies on that ("unknown handle").
      worker.register('node_fail', () => {
        throw new GearmanError('GEARMAN_ERR_WORK_FAIL');
      });
      clients.push(new GearmanClient({ servers }));
      await workersReady(peer.port, 'node_throw');
    }
    return true;
  };

  it('php-gearman GearmanClient → our worker', async (t) => {
    if (
      !present(
        () => requireTool(t, '/usr/bin/php', 'php'),
        () => requirePackage(t, 'php-gearman'),
      )
    )
      return;
    if (!(await setup(t))) return;
    const r = await run('php', [join(dir, 'client.php'), String(peer!.port)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const out = r.stdout.split('\n');
    // libgearman's do*() returns the WORK_DATA and the result joined.
    assert.ok(out.includes('doNormal:partial:php-1olleh:0'), r.stdout);
    assert.ok(out.includes('data:partial:php-2'), r.stdout);
    assert.ok(out.includes('status:1/2'), r.stdout);
    assert.ok(out.includes('complete:php-2:ksat'), r.stdout);
    // libgearman clients ask for exceptions: our worker's message arrives.
    assert.ok(out.includes('exception:node_throw:node says no'), r.stdout);
    assert.match(r.stdout, /^doBackground:H:test:\d+$/m);
    await until(() => background.includes('background'), 'background job run by our worker');
  });

  it('our client → php-gearman GearmanWorker', async (t) => {
    if (
      !present(
        () => requireTool(t, '/usr/bin/php', 'php'),
        () => requirePackage(t, 'php-gearman'),
      )
    )
      return;
    if (!(await setup(t))) return;
    const worker = start('php', [join(dir, 'worker.php'), String(peer!.port)]);
    await workersReady(peer!.port, 'php_exception', 1, worker.output());
    const client = clients[0]!;
    assert.deepEqual(await collect(client.submitJob('php_reverse', 'hello', { unique: 'node-1' })), [
      'status:1/2',
      'data:partial:node-1',
      'warning:careful',
      'complete:olleh',
    ]);
    assert.equal((await failure(client.submitJob('php_fail', 'x'))).code, 'GEARMAN_ERR_WORK_FAIL');
    const err = await failure(client.submitJob('php_exception', 'x'));
    assert.equal(err.code, 'GEARMAN_ERR_WORK_EXCEPTION');
    assert.equal(err.data?.toString(), 'php says no');
    const bg = await client.submitBackground('php_reverse', 'in the background');
    await until(async () => !(await client.getStatus(bg)).known, 'background job done');
  });

  it('Perl Gearman::Client → our worker', async (t) => {
    if (!requirePackage(t, 'libgearman-client-perl')) return;
    if (!(await setup(t))) return;
    const r = await run('perl', [join(dir, 'client.pl'), String(peer!.port)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const out = r.stdout.split('\n');
    assert.ok(out.includes('status:1/2'), r.stdout);
    assert.ok(out.includes('data:partial:p-1'), r.stdout);
    assert.ok(out.includes('result:ih syas lrep'), r.stdout);
    assert.ok(out.includes('fail'), r.stdout);
    assert.match(r.stdout, /^handle:127\.0\.0\.1:\d+\/\/H:test:\d+$/m);
    await until(() => background.includes('perl-bg'), 'background job run by our worker');
  });

  it('our client → Perl Gearman::Worker', async (t) => {
    if (!requirePackage(t, 'libgearman-client-perl')) return;
    if (!(await setup(t))) return;
    const worker = start('perl', [join(dir, 'worker.pl'), String(peer!.port)]);
    await workersReady(peer!.port, 'perl_undef', 1, worker.output());
    const client = clients[0]!;
    assert.deepEqual(await collect(client.submitJob('perl_reverse', 'abc')), [
      'data:chunk',
      'status:2/3',
      'complete:cba',
    ]);
    // A handler returning undef: Gearman::Worker sends WORK_FAIL.
    assert.equal((await failure(client.submitJob('perl_undef', 'x'))).code, 'GEARMAN_ERR_WORK_FAIL');
    const bg = await client.submitBackground('perl_reverse', 'in the background', { priority: 'high' });
    await until(async () => !(await client.getStatus(bg)).known, 'background job done');
  });

  it('the gearman CLI: as a worker for our client, and as a client of our worker', async (t) => {
    if (!requireTool(t, GEARMAN_BIN, 'gearman (gearman-tools)')) return;
    if (!(await setup(t))) return;
    const port = String(peer!.port);
    start(GEARMAN_BIN, ['-p', port, '-w', '-f', 'cli_rev', '--', 'rev']);
    await workersReady(peer!.port, 'cli_rev');
    const client = clients[0]!;
    assert.equal((await client.submitJob('cli_rev', 'hello\n')).toString(), 'olleh\n');
    assert.equal((await client.submitJob('cli_rev', 'low\n', { priority: 'low' })).toString(), 'wol\n');
    const fg = await run(GEARMAN_BIN, ['-p', port, '-f', 'node_reverse', '-u', 'cli-1'], 'cli');
    // The CLI prints the data and the result as they come, and the status as "50% Complete".
    assert.match(fg.stdout, /^partial:cli-1ilc/, fg.stderr);
    assert.match(fg.stdout, /50% Complete/);
    const bg = await run(GEARMAN_BIN, ['-p', port, '-b', '-f', 'node_reverse', '-u', 'cli-bg'], 'from the cli');
    assert.equal(bg.code, 0, bg.stderr);
    await until(() => background.includes('from the cli'), 'background job run by our worker');
  });

  it("places unique ids on the same servers as Perl's Gearman::Client", async (t) => {
    if (!requirePackage(t, 'libgearman-client-perl')) return;
    const peers = [await startPeer('ours'), await startPeer('ours'), await startPeer('ours')];
    try {
      const ports = peers.map((p) => p.port);
      const uniques = Array.from({ length: 12 }, (_, i) => `perl-placed-${i}`);
      const r = await run('perl', [join(dir, 'placement.pl'), ports.join(','), ...uniques]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const perlPlaced = new Map<string, number>();
      for (const [i, p] of peers.entries()) for (const u of await adminUniqueJobs(p.port)) perlPlaced.set(u, i);
      assert.equal(perlPlaced.size, uniques.length, r.stdout);
      const ours = new GearmanClient({ servers: ports.map((p) => `127.0.0.1:${p}`) });
      try {
        for (const u of uniques) {
          const bg = await ours.submitBackground('placed', 'x', { unique: u });
          assert.equal(bg.server, `127.0.0.1:${ports[perlPlaced.get(u)!]}`, u);
        }
      } finally {
        ours.destroy();
      }
    } finally {
      await Promise.all(peers.map((p) => p.stop()));
    }
  });
});
