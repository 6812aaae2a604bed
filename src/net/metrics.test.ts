import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NetError } from './errors.ts';
import { MetricsRegistry } from './metrics.ts';

describe('metrics text exposition format 0.0.4', () => {
  it('renders a labelless counter as 0 before any increment, then its total', () => {
    const registry = new MetricsRegistry();
    const c = registry.counter('conn_total', 'Connections accepted.');
    assert.equal(
      registry.render(),
      '# HELP conn_total Connections accepted.\n# TYPE conn_total counter\nconn_total 0\n',
    );
    c.inc();
    c.inc(2.5);
    assert.equal(c.get(), 3.5);
    assert.equal(
      registry.render(),
      '# HELP conn_total Connections accepted.\n# TYPE conn_total counter\nconn_total 3.5\n',
    );
  });

  it('renders labelled series in first-use order, labels in declaration order, values escaped', () => {
    const registry = new MetricsRegistry();
    const c = registry.counter('cmd_total', 'Commands\\by "type"\nper line.', ['cmd', 'status']);
    assert.equal(registry.render(), '# HELP cmd_total Commands\\\\by "type"\\nper line.\n# TYPE cmd_total counter\n');
    c.inc({ status: 'ok', cmd: 'get' });
    c.inc({ cmd: 'get', status: 'ok' }, 2);
    c.labels({ cmd: 'set', status: 'err' }).inc();
    c.inc({ cmd: 'a"b\\c\nd' });
    assert.equal(
      registry.render(),
      [
        '# HELP cmd_total Commands\\\\by "type"\\nper line.',
        '# TYPE cmd_total counter',
        'cmd_total{cmd="get",status="ok"} 3',
        'cmd_total{cmd="set",status="err"} 1',
        'cmd_total{cmd="a\\"b\\\\c\\nd",status=""} 1',
        '',
      ].join('\n'),
    );
    c.remove({ cmd: 'set', status: 'err' });
    assert.doesNotMatch(registry.render(), /cmd="set"/);
  });

  it('gauges set, inc and dec, and a collect callback sets values at scrape time', () => {
    const registry = new MetricsRegistry();
    let open = 4;
    registry.gauge('curr_connections', 'Open connections.', [], (g) => g.set(open));
    const items = registry.gauge('curr_items', 'Items by slab class.', ['class']);
    items.set({ class: 1 }, 10);
    items.inc({ class: 1 });
    items.dec({ class: 1 }, 3);
    items.labels({ class: 2 }).set(-1.5);
    const temp = registry.gauge('temp', 'Odd values.');
    temp.set(Number.NEGATIVE_INFINITY);
    const expected = (n: number): string =>
      [
        '# HELP curr_connections Open connections.',
        '# TYPE curr_connections gauge',
        `curr_connections ${n}`,
        '# HELP curr_items Items by slab class.',
        '# TYPE curr_items gauge',
        'curr_items{class="1"} 8',
        'curr_items{class="2"} -1.5',
        '# HELP temp Odd values.',
        '# TYPE temp gauge',
        'temp -Inf',
        '',
      ].join('\n');
    assert.equal(registry.render(), expected(4));
    open = 9;
    assert.equal(registry.render(), expected(9));
  });

  it('renders histograms as cumulative _bucket{le} lines with +Inf, then _sum and _count', () => {
    const registry = new MetricsRegistry();
    const h = registry.histogram('latency_seconds', 'Command latency.', [0.001, 0.01, 0.1], ['cmd']);
    h.observe({ cmd: 'get' }, 0.0005);
    h.observe({ cmd: 'get' }, 0.01); // on a bound: counted in le="0.01"
    h.labels({ cmd: 'get' }).observe(0.5);
    const bare = registry.histogram('size_bytes', 'Value sizes.', [64, 1024, Number.POSITIVE_INFINITY]);
    bare.observe(100);
    assert.equal(
      registry.render(),
      [
        '# HELP latency_seconds Command latency.',
        '# TYPE latency_seconds histogram',
        'latency_seconds_bucket{cmd="get",le="0.001"} 1',
        'latency_seconds_bucket{cmd="get",le="0.01"} 2',
        'latency_seconds_bucket{cmd="get",le="0.1"} 2',
        'latency_seconds_bucket{cmd="get",le="+Inf"} 3',
        'latency_seconds_sum{cmd="get"} 0.5105',
        'latency_seconds_count{cmd="get"} 3',
        '# HELP size_bytes Value sizes.',
        '# TYPE size_bytes histogram',
        'size_bytes_bucket{le="64"} 0',
        'size_bytes_bucket{le="1024"} 1',
        'size_bytes_bucket{le="+Inf"} 1',
        'size_bytes_sum 100',
        'size_bytes_count 1',
        '',
      ].join('\n'),
    );
  });

  it('appends raw collector sections after the metrics, each ending in a newline', () => {
    const registry = new MetricsRegistry();
    registry.counter('a_total', 'A.');
    registry.addCollector(() => '# TYPE worker_items gauge\nworker_items{thread="1"} 5');
    registry.addCollector(() => '');
    registry.addCollector(() => 'b 1\n');
    assert.equal(
      registry.render(),
      '# HELP a_total A.\n# TYPE a_total counter\na_total 0\n# TYPE worker_items gauge\nworker_items{thread="1"} 5\nb 1\n',
    );
  });

  it('rejects invalid names, unknown labels, reserved le, duplicates, bad buckets and negative increments', () => {
    const registry = new MetricsRegistry();
    const invalid = (fn: () => unknown): void => {
      assert.throws(fn, (err: unknown) => err instanceof NetError && err.code === 'NET_ERR_INVALID_METRIC');
    };
    invalid(() => registry.counter('1bad', 'x'));
    invalid(() => registry.counter('ok_total', 'x', ['bad-label']));
    invalid(() => registry.counter('ok_total', 'x', ['__reserved']));
    invalid(() => registry.counter('ok_total', 'x', ['a', 'a']));
    invalid(() => registry.histogram('h', 'x', [1], ['le']));
    invalid(() => registry.histogram('h', 'x', [2, 1]));
    invalid(() => registry.histogram('h', 'x', [Number.NaN]));
    const c = registry.counter('ok_total', 'x', ['cmd']);
    invalid(() => registry.counter('ok_total', 'again'));
    invalid(() => c.inc({ nope: 1 }));
    assert.throws(() => c.inc({ cmd: 'get' }, -1), RangeError);
    assert.equal(registry.get('ok_total'), c);
  });
});
