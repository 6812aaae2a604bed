/**
 * Cron expressions (the five fields of crontab(5), Vixie cron's dialect) and the times they name, in UTC or in an
 * IANA time zone, with no dependency.
 *
 * ```
 *  ┌──────── minute        0-59
 *  │ ┌────── hour          0-23
 *  │ │ ┌──── day of month  1-31
 *  │ │ │ ┌── month         1-12 or jan-dec
 *  │ │ │ │ ┌ day of week   0-7 or sun-sat (0 and 7 are Sunday)
 *  * * * * *        each field: *  a  a-b  * /n  a-b/n  a/n (a to the end, step n), lists a,b,c
 *                   (`* /n` is written without the space; a comment cannot hold it)
 * ```
 *
 * As in Vixie cron, when both day fields are restricted (neither starts with `*`) a day matches if *either* does:
 * `0 0 1,15 * 1` is the 1st, the 15th and every Monday. `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
 * `@midnight` and `@hourly` stand for their usual expressions.
 *
 * Times are searched as wall-clock minutes ("fake UTC": the wall clock's fields read as if they were UTC, so months
 * and days step with plain `Date.UTC` arithmetic) and then mapped to instants in the time zone. Across a daylight
 * saving change a wall time that does not exist (the hour skipped in spring) has no occurrence, and one that exists
 * twice (the hour repeated in autumn) has one, at its first instant.
 *
 * @module
 */

import { invalidArgument } from './errors.ts';

const MINUTE = 60_000;
const DAY = 86_400_000;
/** How far `next`/`previous` search before deciding that an expression never matches (`0 0 30 2 *`). */
const HORIZON = 8 * 366 * DAY;

const MONTH_NAMES = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

const MACROS: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

interface FieldSpec {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  /** Names for the values from `min` on (`jan` is 1, `sun` is 0). */
  readonly names?: readonly string[];
}

const FIELDS: readonly FieldSpec[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTH_NAMES },
  // 7 is Sunday too; folded onto 0 after parsing.
  { name: 'day of week', min: 0, max: 7, names: DAY_NAMES },
];

/** One field's value, a number or a name. */
function fieldValue(text: string, spec: FieldSpec, expr: string): number {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n >= spec.min && n <= spec.max) return n;
  } else if (spec.names !== undefined) {
    const i = spec.names.indexOf(text.toLowerCase());
    if (i >= 0) return i + (spec.name === 'month' ? 1 : 0);
  }
  throw invalidArgument(`cron "${expr}": ${spec.name} "${text}" is not ${spec.min}-${spec.max}`);
}

/** Parses one field into the set of its values (`set[v]` true when `v` matches). */
function parseField(text: string, spec: FieldSpec, expr: string): boolean[] {
  const set = new Array<boolean>(spec.max + 1).fill(false);
  for (const part of text.split(',')) {
    const m = /^([^/]+)(?:\/(\d+))?$/.exec(part);
    if (m === null) throw invalidArgument(`cron "${expr}": bad ${spec.name} "${part}"`);
    const range = m[1] as string;
    const step = m[2] === undefined ? 1 : Number(m[2]);
    if (step < 1) throw invalidArgument(`cron "${expr}": ${spec.name} step must be 1 or more`);
    let from: number;
    let to: number;
    if (range === '*') {
      from = spec.min;
      to = spec.max;
    } else {
      const dash = range.indexOf('-');
      if (dash > 0) {
        from = fieldValue(range.slice(0, dash), spec, expr);
        to = fieldValue(range.slice(dash + 1), spec, expr);
        if (from > to) throw invalidArgument(`cron "${expr}": ${spec.name} range "${range}" runs backwards`);
      } else {
        from = fieldValue(range, spec, expr);
        // `a/n` is "from a to the end, every n" (cronie, fcron); plain `a` is just a.
        to = m[2] === undefined ? from : spec.max;
      }
    }
    for (let v = from; v <= to; v += step) set[v] = true;
  }
  return set;
}

/** Options of {@link CronExpression}. */
export interface CronOptions {
  /** IANA time zone the fields are read in (default `UTC`), e.g. `Europe/Berlin`. */
  timezone?: string;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** A formatter giving a zone's wall-clock fields; throws `SCHWARTZ_ERR_INVALID_ARGUMENT` for an unknown zone. */
function zoneFormatter(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone: timezone,
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
    } catch {
      throw invalidArgument(`unknown time zone "${timezone}"`);
    }
    formatters.set(timezone, f);
  }
  return f;
}

/**
 * A parsed cron expression in a time zone: {@link next} and {@link previous} occurrence.
 *
 * @example
 * const weekdays = new CronExpression('30 8 * * mon-fri', { timezone: 'Europe/Berlin' });
 * weekdays.next(new Date('2024-03-29T12:00:00Z')); // 2024-04-01T06:30:00.000Z (Monday 08:30 CEST)
 */
export class CronExpression {
  /** The expression as given. */
  readonly source: string;
  /** The time zone the fields are read in. */
  readonly timezone: string;
  readonly #minute: boolean[];
  readonly #hour: boolean[];
  readonly #dom: boolean[];
  readonly #month: boolean[];
  readonly #dow: boolean[];
  /** Vixie cron's rule: both day fields restricted means "either matches". */
  readonly #eitherDay: boolean;
  readonly #zone: Intl.DateTimeFormat | undefined;

  /** Throws `SCHWARTZ_ERR_INVALID_ARGUMENT` for a malformed expression or an unknown time zone. */
  constructor(expression: string, options: CronOptions = {}) {
    if (typeof expression !== 'string') throw invalidArgument('a cron expression must be a string');
    this.source = expression;
    const text = expression.trim();
    const fields = (MACROS[text.toLowerCase()] ?? text).split(/\s+/);
    if (fields.length !== 5) {
      throw invalidArgument(`cron "${expression}": expected 5 fields (minute hour day-of-month month day-of-week)`);
    }
    const [minute, hour, dom, month, dow] = fields.map((f, i) => parseField(f, FIELDS[i] as FieldSpec, expression)) as [
      boolean[],
      boolean[],
      boolean[],
      boolean[],
      boolean[],
    ];
    if (dow[7]) dow[0] = true;
    this.#minute = minute;
    this.#hour = hour;
    this.#dom = dom;
    this.#month = month;
    this.#dow = dow.slice(0, 7);
    this.#eitherDay = !(fields[2] as string).startsWith('*') && !(fields[4] as string).startsWith('*');
    this.timezone = options.timezone ?? 'UTC';
    if (typeof this.timezone !== 'string') throw invalidArgument('timezone must be a string');
    const zone = zoneFormatter(this.timezone);
    // A zone that is UTC all year (UTC, Etc/UTC, Etc/Zulu) needs no conversion.
    this.#zone = zone.resolvedOptions().timeZone.replace(/^Etc\//, '') === 'UTC' ? undefined : zone;
  }

  /** The first occurrence strictly after `after`, or `undefined` when there is none within eight years. */
  next(after: Date | number): Date | undefined {
    const t = instant(after);
    if (this.#zone === undefined) {
      const w = this.#nextWall(t);
      return w === undefined ? undefined : new Date(w);
    }
    let w = this.#wallOf(t);
    const end = t + HORIZON;
    while (w <= end) {
      const candidate = this.#nextWall(w);
      if (candidate === undefined) return undefined;
      const first = this.#instantsOf(candidate)[0];
      if (first !== undefined && first > t) return new Date(first);
      w = candidate; // in the skipped hour, or an earlier instant of a repeated one
    }
    return undefined;
  }

  /** The latest occurrence at or before `atOrBefore`, or `undefined` when there is none within eight years. */
  previous(atOrBefore: Date | number): Date | undefined {
    const t = instant(atOrBefore);
    if (this.#zone === undefined) {
      const w = this.#previousWall(t);
      return w === undefined ? undefined : new Date(w);
    }
    let w = this.#wallOf(t);
    const end = t - HORIZON;
    while (w >= end) {
      const candidate = this.#previousWall(w);
      if (candidate === undefined) return undefined;
      const first = this.#instantsOf(candidate)[0];
      if (first !== undefined && first <= t) return new Date(first);
      w = candidate - MINUTE;
    }
    return undefined;
  }

  /** True when the wall-clock minute of `d` (read as UTC fields) matches every field. */
  #dayMatches(d: Date): boolean {
    const dom = this.#dom[d.getUTCDate()] as boolean;
    const dow = this.#dow[d.getUTCDay()] as boolean;
    return this.#eitherDay ? dom || dow : dom && dow;
  }

  /** The first matching wall minute after the wall minute holding `w`. */
  #nextWall(w: number): number | undefined {
    const end = w + HORIZON;
    let t = Math.floor(w / MINUTE) * MINUTE + MINUTE;
    while (t <= end) {
      const d = new Date(t);
      const y = d.getUTCFullYear();
      const mo = d.getUTCMonth();
      const day = d.getUTCDate();
      const h = d.getUTCHours();
      if (!this.#month[mo + 1]) t = Date.UTC(y, mo + 1, 1);
      else if (!this.#dayMatches(d)) t = Date.UTC(y, mo, day + 1);
      else if (!this.#hour[h]) t = Date.UTC(y, mo, day, h + 1);
      else {
        const m = this.#minute.indexOf(true, d.getUTCMinutes());
        if (m >= 0) return Date.UTC(y, mo, day, h, m);
        t = Date.UTC(y, mo, day, h + 1);
      }
    }
    return undefined;
  }

  /** The last matching wall minute at or before the wall minute holding `w`. */
  #previousWall(w: number): number | undefined {
    const end = w - HORIZON;
    let t = Math.floor(w / MINUTE) * MINUTE;
    while (t >= end) {
      const d = new Date(t);
      const y = d.getUTCFullYear();
      const mo = d.getUTCMonth();
      const day = d.getUTCDate();
      const h = d.getUTCHours();
      if (!this.#month[mo + 1]) t = Date.UTC(y, mo, 1) - MINUTE;
      else if (!this.#dayMatches(d)) t = Date.UTC(y, mo, day) - MINUTE;
      else if (!this.#hour[h]) t = Date.UTC(y, mo, day, h) - MINUTE;
      else {
        const m = this.#minute.lastIndexOf(true, d.getUTCMinutes());
        if (m >= 0) return Date.UTC(y, mo, day, h, m);
        t = Date.UTC(y, mo, day, h) - MINUTE;
      }
    }
    return undefined;
  }

  /** The zone's wall clock at instant `t`, as fake-UTC milliseconds (seconds kept, milliseconds dropped). */
  #wallOf(t: number): number {
    const parts: Record<string, number> = {};
    for (const p of (this.#zone as Intl.DateTimeFormat).formatToParts(t)) {
      if (p.type !== 'literal') parts[p.type] = Number(p.value);
    }
    const { year, month, day, hour, minute, second } = parts as Record<string, number>;
    return Date.UTC(year as number, (month as number) - 1, day, hour, minute, second);
  }

  /** UTC offset (ms) of the zone at instant `t`. */
  #offsetAt(t: number): number {
    const s = Math.floor(t / 1000) * 1000;
    return this.#wallOf(s) - s;
  }

  /**
   * The instants whose wall clock reads `wall`, earliest first: none in a skipped hour, two in a repeated one. The
   * offsets a day either side bracket any change (zones change at most once a day).
   */
  #instantsOf(wall: number): number[] {
    const out = new Set<number>();
    for (const offset of [this.#offsetAt(wall - DAY), this.#offsetAt(wall + DAY)]) {
      const t = wall - offset;
      if (this.#offsetAt(t) === offset) out.add(t);
    }
    return [...out].sort((a, b) => a - b);
  }
}

function instant(value: Date | number): number {
  const t = value instanceof Date ? value.getTime() : value;
  if (typeof t !== 'number' || !Number.isFinite(t)) throw invalidArgument('a time must be a Date or milliseconds');
  return t;
}
