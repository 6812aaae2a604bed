/**
 * Cron expressions for recurring jobs: the five fields with ranges, steps, lists and names, Vixie cron's day rule,
 * the `@` macros, next and previous occurrences in UTC and across daylight saving changes in a time zone, and
 * refusals of what is malformed. Also the token bucket behind the worker's rate limits.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CronExpression, isSchwartzError } from '../src/schwartz/index.ts';
import { TokenBucket } from '../src/schwartz/token-bucket.ts';

const iso = (d: Date | undefined) => d?.toISOString();

/** The first `n` occurrences after `from`. */
function series(expr: string, from: string, n: number, timezone?: string): string[] {
  const cron = new CronExpression(expr, timezone === undefined ? {} : { timezone });
  const out: string[] = [];
  let t: Date | undefined = new Date(from);
  for (let i = 0; i < n; i++) {
    t = cron.next(t as Date);
    out.push(iso(t) as string);
  }
  return out;
}

describe('cron expressions', () => {
  it('steps, ranges and lists', () => {
    assert.deepEqual(series('*/15 * * * *', '2024-01-01T10:07:00Z', 3), [
      '2024-01-01T10:15:00.000Z',
      '2024-01-01T10:30:00.000Z',
      '2024-01-01T10:45:00.000Z',
    ]);
    assert.deepEqual(series('5,10-12 9-17/4 * * *', '2024-01-01T09:11:30Z', 5), [
      '2024-01-01T09:12:00.000Z',
      '2024-01-01T13:05:00.000Z',
      '2024-01-01T13:10:00.000Z',
      '2024-01-01T13:11:00.000Z',
      '2024-01-01T13:12:00.000Z',
    ]);
    // `a/n`: from a to the end of the range, every n.
    assert.deepEqual(series('50/5 * * * *', '2024-01-01T00:00:00Z', 3), [
      '2024-01-01T00:50:00.000Z',
      '2024-01-01T00:55:00.000Z',
      '2024-01-01T01:50:00.000Z',
    ]);
  });

  it('is strictly after: a matching instant gives the following one', () => {
    assert.deepEqual(series('0 * * * *', '2024-01-01T10:00:00Z', 1), ['2024-01-01T11:00:00.000Z']);
    assert.deepEqual(series('0 * * * *', '2024-01-01T09:59:59.999Z', 1), ['2024-01-01T10:00:00.000Z']);
  });

  it('month and day names, Sunday as 0 and 7, year and month ends', () => {
    assert.deepEqual(series('0 12 * feb,Dec SUN', '2024-01-01T00:00:00Z', 2), [
      '2024-02-04T12:00:00.000Z',
      '2024-02-11T12:00:00.000Z',
    ]);
    assert.equal(
      iso(new CronExpression('0 0 * * 7').next(new Date('2024-01-01T00:00:00Z'))),
      '2024-01-07T00:00:00.000Z',
    );
    assert.deepEqual(series('59 23 31 * *', '2024-01-31T23:59:00Z', 2), [
      '2024-03-31T23:59:00.000Z',
      '2024-05-31T23:59:00.000Z',
    ]);
    assert.deepEqual(series('0 0 29 2 *', '2024-03-01T00:00:00Z', 1), ['2028-02-29T00:00:00.000Z']);
    assert.deepEqual(series('0 0 1 1 *', '2024-12-31T23:59:59Z', 1), ['2025-01-01T00:00:00.000Z']);
  });

  it("both day fields restricted: either matches (Vixie cron); one a '*': the other decides", () => {
    // The 13th, and every Friday.
    assert.deepEqual(series('0 0 13 * fri', '2024-09-01T00:00:00Z', 4), [
      '2024-09-06T00:00:00.000Z',
      '2024-09-13T00:00:00.000Z',
      '2024-09-20T00:00:00.000Z',
      '2024-09-27T00:00:00.000Z',
    ]);
    assert.deepEqual(series('0 0 * * fri', '2024-09-01T00:00:00Z', 2), [
      '2024-09-06T00:00:00.000Z',
      '2024-09-13T00:00:00.000Z',
    ]);
    // `*/2` starts with `*`: unrestricted by Vixie's rule, so both fields must match.
    assert.deepEqual(series('0 0 */2 * mon', '2024-09-01T00:00:00Z', 2), [
      '2024-09-09T00:00:00.000Z',
      '2024-09-23T00:00:00.000Z',
    ]);
  });

  it('macros', () => {
    const at = '2024-05-15T10:30:00Z';
    assert.equal(iso(new CronExpression('@hourly').next(new Date(at))), '2024-05-15T11:00:00.000Z');
    assert.equal(iso(new CronExpression('@daily').next(new Date(at))), '2024-05-16T00:00:00.000Z');
    assert.equal(iso(new CronExpression('@midnight').next(new Date(at))), '2024-05-16T00:00:00.000Z');
    assert.equal(iso(new CronExpression('@weekly').next(new Date(at))), '2024-05-19T00:00:00.000Z');
    assert.equal(iso(new CronExpression('@monthly').next(new Date(at))), '2024-06-01T00:00:00.000Z');
    assert.equal(iso(new CronExpression(' @Yearly ').next(new Date(at))), '2025-01-01T00:00:00.000Z');
    assert.equal(iso(new CronExpression('@annually').next(new Date(at))), '2025-01-01T00:00:00.000Z');
  });

  it('previous: the latest occurrence at or before a time', () => {
    const every5 = new CronExpression('*/5 * * * *');
    assert.equal(iso(every5.previous(new Date('2024-01-01T10:07:30Z'))), '2024-01-01T10:05:00.000Z');
    assert.equal(iso(every5.previous(new Date('2024-01-01T10:05:00Z'))), '2024-01-01T10:05:00.000Z');
    assert.equal(iso(every5.previous(new Date('2024-01-01T00:02:00Z'))), '2024-01-01T00:00:00.000Z');
    assert.equal(iso(new CronExpression('0 0 29 2 *').previous(Date.parse('2025-01-01'))), '2024-02-29T00:00:00.000Z');
    assert.equal(
      iso(new CronExpression('30 8 * 3 mon').previous(Date.parse('2024-05-01'))),
      '2024-03-25T08:30:00.000Z',
    );
    assert.equal(
      iso(new CronExpression('0 22 * * *').previous(Date.parse('2024-03-01T21:00:00Z'))),
      '2024-02-29T22:00:00.000Z',
    );
  });

  it('never: undefined after eight years of searching', () => {
    const never = new CronExpression('0 0 30 2 *');
    assert.equal(never.next(0), undefined);
    assert.equal(never.previous(Date.parse('2024-01-01')), undefined);
    assert.equal(new CronExpression('0 0 31 2 *', { timezone: 'Europe/Berlin' }).next(0), undefined);
    assert.equal(new CronExpression('0 0 31 2 *', { timezone: 'Europe/Berlin' }).previous(0), undefined);
  });

  it('reads the fields in a time zone, across daylight saving changes', () => {
    const tz = 'Europe/Berlin';
    // Monday 08:30 CEST is 06:30 UTC.
    assert.deepEqual(series('30 8 * * mon-fri', '2024-03-29T12:00:00Z', 1, tz), ['2024-04-01T06:30:00.000Z']);
    // Spring forward (2024-03-31 02:00 CET → 03:00 CEST): 02:30 does not exist that day.
    assert.deepEqual(series('30 2 * * *', '2024-03-30T12:00:00Z', 1, tz), ['2024-04-01T00:30:00.000Z']);
    assert.deepEqual(series('30 1,3 * * *', '2024-03-30T23:00:00Z', 2, tz), [
      '2024-03-31T00:30:00.000Z',
      '2024-03-31T01:30:00.000Z',
    ]);
    // Fall back (2024-10-27 03:00 CEST → 02:00 CET): 02:30 happens twice and runs once, at its first instant.
    assert.deepEqual(series('30 2 * * *', '2024-10-26T12:00:00Z', 2, tz), [
      '2024-10-27T00:30:00.000Z',
      '2024-10-28T01:30:00.000Z',
    ]);
    assert.deepEqual(series('*/30 * * * *', '2024-10-27T00:15:00Z', 3, tz), [
      '2024-10-27T00:30:00.000Z',
      '2024-10-27T02:00:00.000Z',
      '2024-10-27T02:30:00.000Z',
    ]);
    const cron = new CronExpression('30 2 * * *', { timezone: tz });
    assert.equal(iso(cron.previous(Date.parse('2024-03-31T12:00:00Z'))), '2024-03-30T01:30:00.000Z');
    assert.equal(iso(cron.previous(Date.parse('2024-10-27T01:45:00Z'))), '2024-10-27T00:30:00.000Z');
    // A zone with a fractional offset and no DST.
    assert.deepEqual(series('0 9 * * *', '2024-06-01T00:00:00Z', 1, 'Asia/Kathmandu'), ['2024-06-01T03:15:00.000Z']);
    assert.equal(new CronExpression('0 0 * * *', { timezone: 'Etc/UTC' }).timezone, 'Etc/UTC');
    assert.deepEqual(series('0 0 * * *', '2024-06-01T00:00:00Z', 1, 'Etc/UTC'), ['2024-06-02T00:00:00.000Z']);
  });

  it('refuses malformed expressions and unknown zones', () => {
    const bad = (expr: string, options?: { timezone?: string }) =>
      assert.throws(
        () => new CronExpression(expr, options),
        (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'),
        expr,
      );
    for (const expr of [
      '',
      '* * * *',
      '* * * * * *',
      '60 * * * *',
      '* 24 * * *',
      '* * 0 * *',
      '* * 32 * *',
      '* * * 13 *',
      '* * * * 8',
      '*/0 * * * *',
      '5-1 * * * *',
      '* * * foo *',
      '* * * * funday',
      'a * * * *',
      '1,,2 * * * *',
      '-1 * * * *',
      '@often',
    ]) {
      bad(expr);
    }
    bad('* * * * *', { timezone: 'Mars/Olympus' });
    bad(42 as unknown as string);
    bad('* * * * *', { timezone: 7 as unknown as string });
    assert.throws(
      () => new CronExpression('* * * * *').next(Number.NaN),
      (e) => isSchwartzError(e),
    );
  });
});

describe('token bucket', () => {
  it('starts full, refills at the rate, holds at most burst', () => {
    const b = new TokenBucket({ jobs: 2, perMs: 100, burst: 3 });
    const t = 1e9; // far ahead of creation: refilled to burst
    assert.equal(b.available(t), 3);
    b.take(t);
    b.take(t);
    b.take(t);
    assert.equal(b.allows(t), false);
    assert.equal(b.msUntilToken(t), 50);
    assert.equal(b.allows(t + 49), false);
    assert.equal(b.allows(t + 50), true);
    assert.equal(b.msUntilToken(t + 50), 0);
    assert.equal(b.available(t + 10_000), 3);
    b.take(t + 10_000);
    b.take(t + 10_000);
    b.take(t + 10_000);
    b.take(t + 10_000); // overdrawn by a concurrent grab: paid back before the next token
    assert.equal(b.msUntilToken(t + 10_000), 100);
  });

  it('refuses bad limits', () => {
    for (const limit of [
      { jobs: 0, perMs: 1 },
      { jobs: 1.5, perMs: 1 },
      { jobs: 1, perMs: 0 },
      { jobs: 1, perMs: Number.POSITIVE_INFINITY },
      { jobs: 1, perMs: 1, burst: 0 },
      null,
    ]) {
      assert.throws(
        () => new TokenBucket(limit as never),
        (e) => isSchwartzError(e, 'SCHWARTZ_ERR_INVALID_ARGUMENT'),
      );
    }
  });
});
