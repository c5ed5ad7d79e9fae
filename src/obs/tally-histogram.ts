import type { Metric, Registry } from 'prom-client';

/**
 * A Prometheus histogram with one label, for the request path. prom-client's Histogram resolves,
 * validates and hashes the label set on every observe(), even through a labels() child: in the
 * proxy's CPU profile under keep-alive load that was the largest single cost of ours (about 1.5 µs
 * of ~90 per request). Here a series is resolved once (`series(value)`) and an observation is a
 * bucket search and three additions on plain arrays. Exposition stays prom-client's: this object is
 * registered in the same Registry and returns the shape its own histograms return from get().
 */
export class TallyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly all = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelName: string,
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) throw new Error(`${name}: buckets must increase (${buckets.join(', ')})`);
    }
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series for one label value; keep it and call observe() on it. */
  series(labelValue: string): Series {
    let s = this.all.get(labelValue);
    if (!s) {
      s = new Series(this.buckets);
      this.all.set(labelValue, s);
    }
    return s;
  }

  /** What prom-client's Registry reads (the shape of its own Histogram.get()). */
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> }> {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const [labelValue, s] of this.all) {
      let cumulative = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        cumulative += s.counts[i]!;
        values.push({ labels: { le: this.buckets[i]!, [this.labelName]: labelValue }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { le: '+Inf', [this.labelName]: labelValue }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { [this.labelName]: labelValue }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { [this.labelName]: labelValue }, value: s.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    this.all.clear();
  }
}

export class Series {
  /** Observations per bucket (not cumulative); values above the last bound only count in `count`. */
  readonly counts: Float64Array;
  count = 0;
  sum = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const { bounds } = this;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i] += 1;
        break;
      }
    }
    this.count++;
    this.sum += value;
  }
}
