import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { Metrics } from '../../src/obs/metrics.js';
import { TallyHistogram } from '../../src/obs/tally-histogram.js';

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

describe('TallyHistogram', () => {
  it('exposes exactly what a prom-client Histogram exposes for the same observations', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const tally = new TallyHistogram('x_seconds', 'Some latency', 'listener', BUCKETS, ours);
    const reference = new Histogram({ name: 'x_seconds', help: 'Some latency', labelNames: ['listener'], buckets: BUCKETS, registers: [theirs] });
    // Bucket edges (le is inclusive), values past the last bound, zero, and a second series.
    const samples: Array<[string, number]> = [['web', 0.005], ['web', 0.0051], ['web', 0], ['web', 31], ['web', 2.5], ['admin', 0.3], ['web', 0.01], ['admin', 100]];
    for (const [l, v] of samples) {
      tally.series(l).observe(v);
      reference.observe({ listener: l }, v);
    }
    const sortLines = (text: string): string[] => text.split('\n').sort();
    assert.deepEqual(sortLines(await ours.metrics()), sortLines(await theirs.metrics()));
    // The JSON form too (prom-client adds `exemplar: null` to its buckets; exemplars are not used here).
    const withoutExemplars = (json: unknown): unknown => JSON.parse(JSON.stringify(json, (k, v: unknown) => (k === 'exemplar' ? undefined : v)));
    assert.deepEqual(withoutExemplars(await ours.getMetricsAsJSON()), withoutExemplars(await theirs.getMetricsAsJSON()));
  });

  it('has no series before the first observation, like a labelled prom-client histogram', async () => {
    const registry = new Registry();
    new TallyHistogram('y_seconds', 'Y', 'listener', BUCKETS, registry);
    assert.equal(await registry.metrics(), '# HELP y_seconds Y\n# TYPE y_seconds histogram\n');
  });

  it('ignores values that are not finite numbers instead of corrupting the sum', async () => {
    const registry = new Registry();
    const h = new TallyHistogram('z_seconds', 'Z', 'listener', BUCKETS, registry);
    h.series('web').observe(Number.NaN);
    h.series('web').observe(0.2);
    const text = await registry.metrics();
    assert.match(text, /z_seconds_count\{listener="web"\} 1\n/);
    assert.match(text, /z_seconds_sum\{listener="web"\} 0.2\n/);
  });

  it('refuses buckets that do not increase', () => {
    assert.throws(() => new TallyHistogram('w_seconds', 'W', 'listener', [1, 0.5], new Registry()), /buckets must increase/);
  });
});

describe('Metrics.requestTally', () => {
  it('adds tallied requests to gatekeeper_requests_total on each read, once', async () => {
    const m = new Metrics(false);
    const web = m.requestTally('web');
    assert.equal(m.requestTally('web'), web, 'one tally per listener');
    web[1] += 3; // 2xx
    web[3] += 1; // 4xx
    m.requestTally('admin')[4] += 2; // 5xx
    const first = await m.registry.metrics();
    assert.match(first, /gatekeeper_requests_total\{listener="web",status_class="2xx"\} 3\n/);
    assert.match(first, /gatekeeper_requests_total\{listener="web",status_class="4xx"\} 1\n/);
    assert.match(first, /gatekeeper_requests_total\{listener="admin",status_class="5xx"\} 2\n/);
    web[1] += 1;
    const second = await m.registry.metrics();
    assert.match(second, /gatekeeper_requests_total\{listener="web",status_class="2xx"\} 4\n/, 'counted since the last read, not twice');
    assert.match(second, /gatekeeper_requests_total\{listener="web",status_class="4xx"\} 1\n/);
  });
});
