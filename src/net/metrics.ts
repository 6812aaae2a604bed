/**
 * A minimal Prometheus registry rendering the text exposition format 0.0.4.
 *
 * ```
 * # HELP memcached_commands_total Commands processed.
 * # TYPE memcached_commands_total counter
 * memcached_commands_total{cmd="get"} 12
 * ```
 *
 * Series are kept in a `Map` keyed by the label values in declaration order; `metric.labels({...})` returns a
 * handle bound to one series so hot paths skip the lookup.
 *
 * @module
 */

import { NetError } from './errors.ts';

/** Label values by label name. Numbers are converted with `String()`. */
export type Labels = Record<string, string | number>;

/** `Content-Type` of {@link MetricsRegistry.render}'s output. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Formats a sample value: `+Inf`, `-Inf`, `NaN` or the shortest round-tripping decimal. */
function formatValue(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

/** Escapes a label value: backslash, double quote and line feed (exposition format spec). */
function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\\' ? '\\\\' : c === '"' ? '\\"' : '\\n'));
}

/** Escapes HELP text: backslash and line feed only. */
function escapeHelp(help: string): string {
  return help.replace(/[\\\n]/g, (c) => (c === '\\' ? '\\\\' : '\\n'));
}

interface Series<V> {
  /** `{a="1",b="2"}` or `''`, rendered once. */
  labelText: string;
  value: V;
}

/** What every metric kind shares: name, help, label validation and the series map. */
abstract class Metric<V> {
  /** The metric name. */
  readonly name: string;
  /** The HELP text. */
  readonly help: string;
  /** Label names, in the order they are rendered. */
  readonly labelNames: readonly string[];
  /** @internal */
  protected readonly series = new Map<string, Series<V>>();

  constructor(name: string, help: string, labelNames: readonly string[], reserved: readonly string[]) {
    if (!METRIC_NAME.test(name)) throw new NetError('NET_ERR_INVALID_METRIC', `invalid metric name: ${name}`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__') || reserved.includes(label)) {
        throw new NetError('NET_ERR_INVALID_METRIC', `invalid label name for ${name}: ${label}`);
      }
    }
    if (new Set(labelNames).size !== labelNames.length) {
      throw new NetError('NET_ERR_INVALID_METRIC', `duplicate label name for ${name}`);
    }
    this.name = name;
    this.help = help;
    this.labelNames = [...labelNames];
  }

  /** The `# TYPE` of the metric. */
  abstract get type(): 'counter' | 'gauge' | 'histogram';

  /** @internal */
  protected abstract initial(): V;

  /** Drops every series (a labelless metric starts again from zero). */
  reset(): void {
    this.series.clear();
  }

  /** @internal The map key of a label set: the values in declaration order. */
  protected keyFor(labels: Labels | undefined): string {
    const names = this.labelNames;
    if (labels !== undefined) {
      for (const key in labels) {
        if (!names.includes(key)) {
          throw new NetError('NET_ERR_INVALID_METRIC', `unknown label for ${this.name}: ${key}`);
        }
      }
    }
    if (names.length === 0) return '';
    let key = '';
    for (let i = 0; i < names.length; i++) {
      const value = labels?.[names[i]!];
      // \u0001 separates values; a value containing it could only collide with another such value.
      key += `${i === 0 ? '' : '\u0001'}${value === undefined ? '' : String(value)}`;
    }
    return key;
  }

  /** @internal The series of a label set, created on first use. */
  protected seriesFor(labels: Labels | undefined): Series<V> {
    const key = this.keyFor(labels);
    let series = this.series.get(key);
    if (series === undefined) {
      let labelText = '';
      if (this.labelNames.length > 0) {
        const parts: string[] = [];
        for (const name of this.labelNames) {
          const value = labels?.[name];
          parts.push(`${name}="${escapeLabelValue(value === undefined ? '' : String(value))}"`);
        }
        labelText = `{${parts.join(',')}}`;
      }
      series = { labelText, value: this.initial() };
      this.series.set(key, series);
    }
    return series;
  }

  /** Removes one series, so a label set that no longer exists (a closed listener) stops being rendered. */
  remove(labels?: Labels): void {
    this.series.delete(this.keyFor(labels));
  }

  /** @internal Renders the sample lines (without HELP/TYPE). */
  protected abstract renderSamples(out: string[]): void;

  /** Renders HELP, TYPE and every sample of this metric, each line ending in `\n`. */
  render(): string {
    const out: string[] = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    // A labelless metric always has its one series, so a counter nobody incremented still renders `0`.
    if (this.labelNames.length === 0) this.seriesFor(undefined);
    this.renderSamples(out);
    return `${out.join('\n')}\n`;
  }
}

/** A handle on one counter series. */
export interface CounterChild {
  /** Adds `value` (default 1, must not be negative). */
  inc(value?: number): void;
}

/** A monotonically increasing count. */
export class Counter extends Metric<number> {
  /** @param labelNames label names in rendering order */
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    super(name, help, labelNames, []);
  }

  /** Always `counter`. */
  get type(): 'counter' {
    return 'counter';
  }

  /** @internal */
  protected initial(): number {
    return 0;
  }

  /**
   * Adds to a series: `inc()`, `inc(5)`, `inc({ cmd: 'get' })`, `inc({ cmd: 'get' }, 5)`.
   *
   * @throws {RangeError} when the value is negative: counters only go up
   */
  inc(labelsOrValue?: Labels | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.#add(this.seriesFor(undefined), labelsOrValue);
    else this.#add(this.seriesFor(labelsOrValue), value ?? 1);
  }

  /** Returns a handle bound to one label set. */
  labels(labels: Labels): CounterChild {
    const series = this.seriesFor(labels);
    return { inc: (value = 1) => this.#add(series, value) };
  }

  /** The current value of a series (0 when it does not exist). */
  get(labels?: Labels): number {
    return this.series.get(this.keyFor(labels))?.value ?? 0;
  }

  #add(series: Series<number>, value: number): void {
    if (!(value >= 0)) throw new RangeError(`counter ${this.name} cannot be increased by ${value}`);
    series.value += value;
  }

  /** @internal */
  protected renderSamples(out: string[]): void {
    for (const s of this.series.values()) out.push(`${this.name}${s.labelText} ${formatValue(s.value)}`);
  }
}

/** A handle on one gauge series. */
export interface GaugeChild {
  /** Sets the value. */
  set(value: number): void;
  /** Adds `value` (default 1). */
  inc(value?: number): void;
  /** Subtracts `value` (default 1). */
  dec(value?: number): void;
}

/** Called at scrape time, before rendering, to set the gauge's current values. */
export type GaugeCollect = (gauge: Gauge) => void;

/** A value that goes up and down. */
export class Gauge extends Metric<number> {
  #collect: GaugeCollect | undefined;

  /**
   * @param labelNames label names in rendering order
   * @param collect called before every render to set current values (e.g. connection counts, memory)
   */
  constructor(name: string, help: string, labelNames: readonly string[] = [], collect?: GaugeCollect) {
    super(name, help, labelNames, []);
    this.#collect = collect;
  }

  /** Always `gauge`. */
  get type(): 'gauge' {
    return 'gauge';
  }

  /** @internal */
  protected initial(): number {
    return 0;
  }

  /** Sets a series: `set(3)` or `set({ state: 'idle' }, 3)`. */
  set(labelsOrValue: Labels | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.seriesFor(undefined).value = labelsOrValue;
    else this.seriesFor(labelsOrValue).value = value ?? 0;
  }

  /** Adds to a series: `inc()`, `inc(2)`, `inc({ state: 'idle' }, 2)`. */
  inc(labelsOrValue?: Labels | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.seriesFor(undefined).value += labelsOrValue;
    else this.seriesFor(labelsOrValue).value += value ?? 1;
  }

  /** Subtracts from a series: `dec()`, `dec(2)`, `dec({ state: 'idle' }, 2)`. */
  dec(labelsOrValue?: Labels | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.seriesFor(undefined).value -= labelsOrValue;
    else this.seriesFor(labelsOrValue).value -= value ?? 1;
  }

  /** Returns a handle bound to one label set. */
  labels(labels: Labels): GaugeChild {
    const series = this.seriesFor(labels);
    return {
      set: (value) => {
        series.value = value;
      },
      inc: (value = 1) => {
        series.value += value;
      },
      dec: (value = 1) => {
        series.value -= value;
      },
    };
  }

  /** The current value of a series (0 when it does not exist). */
  get(labels?: Labels): number {
    return this.series.get(this.keyFor(labels))?.value ?? 0;
  }

  /** Runs the collect callback, then renders. */
  override render(): string {
    this.#collect?.(this);
    return super.render();
  }

  /** @internal */
  protected renderSamples(out: string[]): void {
    for (const s of this.series.values()) out.push(`${this.name}${s.labelText} ${formatValue(s.value)}`);
  }
}

interface HistogramValue {
  /** Per-bucket (not cumulative) counts; the last slot is the +Inf overflow. */
  counts: number[];
  sum: number;
  count: number;
}

/** A handle on one histogram series. */
export interface HistogramChild {
  /** Records one observation. */
  observe(value: number): void;
}

/** Observations counted into cumulative buckets, with their sum and count. */
export class Histogram extends Metric<HistogramValue> {
  /** Upper bounds, ascending, without `+Inf` (always added when rendering). */
  readonly buckets: readonly number[];
  readonly #leText: readonly string[];

  /**
   * @param buckets finite upper bounds, strictly ascending (`+Inf` is implied)
   * @param labelNames label names in rendering order (`le` is reserved)
   */
  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []) {
    super(name, help, labelNames, ['le']);
    const bounds = buckets.filter((b) => b !== Number.POSITIVE_INFINITY);
    for (let i = 0; i < bounds.length; i++) {
      if (!Number.isFinite(bounds[i]) || (i > 0 && bounds[i]! <= bounds[i - 1]!)) {
        throw new NetError('NET_ERR_INVALID_METRIC', `buckets of ${name} must be finite and strictly ascending`);
      }
    }
    this.buckets = bounds;
    this.#leText = [...bounds.map(formatValue), '+Inf'];
  }

  /** Always `histogram`. */
  get type(): 'histogram' {
    return 'histogram';
  }

  /** @internal */
  protected initial(): HistogramValue {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  /** Records an observation: `observe(0.3)` or `observe({ cmd: 'get' }, 0.3)`. */
  observe(labelsOrValue: Labels | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.#record(this.seriesFor(undefined).value, labelsOrValue);
    else this.#record(this.seriesFor(labelsOrValue).value, value ?? 0);
  }

  /** Returns a handle bound to one label set. */
  labels(labels: Labels): HistogramChild {
    const series = this.seriesFor(labels);
    return { observe: (value) => this.#record(series.value, value) };
  }

  #record(h: HistogramValue, value: number): void {
    const buckets = this.buckets;
    let i = 0;
    // `le` means less than or equal: a value on a bound falls into that bound's bucket.
    while (i < buckets.length && value > buckets[i]!) i++;
    h.counts[i]!++;
    h.sum += value;
    h.count++;
  }

  /** @internal */
  protected renderSamples(out: string[]): void {
    for (const s of this.series.values()) {
      // `{a="1"}` → `{a="1",le="0.5"}`; `''` → `{le="0.5"}`.
      const open = s.labelText === '' ? '{' : `${s.labelText.slice(0, -1)},`;
      let cumulative = 0;
      for (let i = 0; i < this.#leText.length; i++) {
        cumulative += s.value.counts[i]!;
        out.push(`${this.name}_bucket${open}le="${this.#leText[i]}"} ${cumulative}`);
      }
      out.push(`${this.name}_sum${s.labelText} ${formatValue(s.value.sum)}`);
      out.push(`${this.name}_count${s.labelText} ${s.value.count}`);
    }
  }
}

/** Any metric the registry holds. */
export type AnyMetric = Counter | Gauge | Histogram;

/**
 * Holds metrics and renders them for a scrape, in registration order, followed by raw collector sections.
 *
 * @example
 * const registry = new MetricsRegistry();
 * const commands = registry.counter('memcached_commands_total', 'Commands processed.', ['cmd']);
 * commands.inc({ cmd: 'get' });
 * registry.gauge('memcached_curr_connections', 'Open connections.', [], (g) => g.set(server.connections));
 * registry.render();
 */
export class MetricsRegistry {
  #metrics = new Map<string, AnyMetric>();
  #collectors: Array<() => string> = [];

  /** Registers a counter. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames));
  }

  /** Registers a gauge; `collect` (optional) sets its values at scrape time. */
  gauge(name: string, help: string, labelNames: readonly string[] = [], collect?: GaugeCollect): Gauge {
    return this.#add(new Gauge(name, help, labelNames, collect));
  }

  /** Registers a histogram with the given bucket upper bounds. */
  histogram(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []): Histogram {
    return this.#add(new Histogram(name, help, buckets, labelNames));
  }

  /**
   * Adds a function returning raw exposition text (complete HELP/TYPE/sample lines), rendered after the metrics.
   * Use it to bridge stats that already exist elsewhere (a worker thread's snapshot, a store's counters).
   */
  addCollector(collector: () => string): void {
    this.#collectors.push(collector);
  }

  /** The registered metric called `name`, if any. */
  get(name: string): AnyMetric | undefined {
    return this.#metrics.get(name);
  }

  /** Renders every metric and collector section in the text exposition format 0.0.4. */
  render(): string {
    let text = '';
    for (const metric of this.#metrics.values()) text += metric.render();
    for (const collector of this.#collectors) {
      const section = collector();
      if (section === '') continue;
      text += section.endsWith('\n') ? section : `${section}\n`;
    }
    return text;
  }

  #add<M extends AnyMetric>(metric: M): M {
    if (this.#metrics.has(metric.name)) {
      throw new NetError('NET_ERR_INVALID_METRIC', `metric already registered: ${metric.name}`);
    }
    this.#metrics.set(metric.name, metric);
    return metric;
  }
}
