import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { UpstreamPoolStats } from '../proxy/upstream-pool.js';
import { TallyHistogram } from './tally-histogram.js';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/**
 * Every Prometheus metric, in one place. Labels never carry an address or a user name.
 */
export class Metrics {
  readonly registry = new Registry();

  /** Per listener, answered requests by status class not yet added to `requests` (see requestTally). */
  private readonly requestTallies = new Map<string, Float64Array>();
  readonly requests = new Counter({
    name: 'gatekeeper_requests_total',
    help: 'Requests answered, by listener and status class',
    labelNames: ['listener', 'status_class'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [listener, tally] of this.requestTallies) {
        for (let i = 0; i < tally.length; i++) {
          if (tally[i] === 0) continue;
          this.requests.inc({ listener, status_class: STATUS_CLASSES[i]! }, tally[i]);
          tally[i] = 0;
        }
      }
    },
  });
  readonly logins = new Counter({
    name: 'gatekeeper_logins_total',
    help: 'Login outcomes seen, by service, rule and outcome',
    labelNames: ['service', 'rule', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly rejections = new Counter({
    name: 'gatekeeper_rejections_total',
    help: 'Requests refused before reaching Zimbra, by listener and reason (banned, admin-allowlist, account-shield, limited, too-many-logins, unreadable-login, bad-login-name, too-large, bad-request, client-connections, client-upstream-limit)',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly workerRestarts = new Counter({
    name: 'gatekeeper_worker_restarts_total',
    help: 'Worker processes restarted by the primary after they ended unexpectedly (proxy.workers > 1)',
    registers: [this.registry],
  });
  readonly loginQueue = new Counter({
    name: 'gatekeeper_login_queue_total',
    help: 'Logins that waited for an in-flight login of their address to settle (queued), and those whose wait ran out (timeout)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  private readonly trackedSources = new Map<string, () => number>();
  readonly trackedKeys = new Gauge({
    name: 'gatekeeper_tracked_keys',
    help: 'Entries held in memory per bounded per-key structure (counters, flags, bans, ban cache, page throttle, activity, per-client connection slots), by kind; each has a ceiling (memory.*)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [kind, size] of this.trackedSources) this.trackedKeys.set({ kind }, size());
    },
  });

  /** Reports `size()` as gatekeeper_tracked_keys{kind} at every scrape. */
  trackKeys(kind: string, size: () => number): void {
    this.trackedSources.set(kind, size);
  }

  readonly shadowed = new Counter({
    name: 'gatekeeper_shadow_would_block_total',
    help: 'Requests that would have been refused, in shadow mode',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly bans = new Counter({
    name: 'gatekeeper_bans_total',
    help: 'Bans made, by source (proxy, log, manual) and tier (proxy, firewall)',
    labelNames: ['source', 'tier'] as const,
    registers: [this.registry],
  });
  readonly activeBans = new Gauge({
    name: 'gatekeeper_active_bans',
    help: 'Active bans in this instance\'s cache, by tier',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly protectedSkips = new Counter({
    name: 'gatekeeper_protected_ban_skipped_total',
    help: 'Bans not made because the address is ignored, allowlisted, a trusted proxy or an upstream',
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'gatekeeper_upstream_errors_total',
    help: 'Upstream (Zimbra) errors, by listener and kind (refused, timeout, reset, other)',
    labelNames: ['listener', 'kind'] as const,
    registers: [this.registry],
  });
  /** Per listener, the forwarder's connection pool, read when Prometheus collects. */
  private readonly upstreamPools = new Map<string, () => UpstreamPoolStats>();
  private readonly retriesCounted = new Map<string, number>();
  readonly upstreamConnections = new Gauge({
    name: 'gatekeeper_upstream_connections',
    help: 'Open connections to the upstream (Zimbra), by listener and state (busy, idle); at most proxy.maxSockets per listener',
    labelNames: ['listener', 'state'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [listener, stats] of this.upstreamPools) {
        const s = stats();
        this.upstreamConnections.set({ listener, state: 'busy' }, s.busy);
        this.upstreamConnections.set({ listener, state: 'idle' }, s.idle);
      }
    },
  });
  readonly upstreamQueued = new Gauge({
    name: 'gatekeeper_upstream_queued_requests',
    help: 'Requests waiting for an upstream connection (all proxy.maxSockets busy), by listener',
    labelNames: ['listener'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [listener, stats] of this.upstreamPools) this.upstreamQueued.set({ listener }, stats().queued);
    },
  });
  readonly upstreamRetries = new Counter({
    name: 'gatekeeper_upstream_retries_total',
    help: 'GET, HEAD or OPTIONS requests sent again on a new connection because Zimbra closed a kept-alive one before answering',
    labelNames: ['listener'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [listener, stats] of this.upstreamPools) {
        const retried = stats().retried;
        this.upstreamRetries.inc({ listener }, retried - (this.retriesCounted.get(listener) ?? 0));
        this.retriesCounted.set(listener, retried);
      }
    },
  });

  /** Registers a listener's forwarder pool for the upstream gauges. */
  watchUpstream(listener: string, stats: () => UpstreamPoolStats): void {
    this.upstreamPools.set(listener, stats);
  }

  /** Observed on every forwarded request: a TallyHistogram (prom-client's resolves labels per call). */
  readonly upstreamLatency = new TallyHistogram(
    'gatekeeper_upstream_response_seconds',
    'Time from forwarding a request to the upstream response headers',
    'listener',
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    this.registry,
  );
  readonly storeErrors = new Counter({
    name: 'gatekeeper_store_errors_total',
    help: 'Failed store operations (the request path falls back to memory)',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly storeLatency = new Histogram({
    name: 'gatekeeper_store_operation_seconds',
    help: 'Time of store (Redis or memory) operations on the login path, by operation',
    labelNames: ['op'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly notifications = new Counter({
    name: 'gatekeeper_notifications_total',
    help: 'Webhook notifications, by result (sent, retried, dropped)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'gatekeeper_config_reloads_total',
    help: 'Configuration reloads (SIGHUP or gatekeeper reload), by result (ok, error)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly storeUp = new Gauge({
    name: 'gatekeeper_store_up',
    help: '1 when the ban store (Redis) is reachable, 0 otherwise',
    registers: [this.registry],
  });

  readonly logLines = new Counter({
    name: 'gatekeeper_log_lines_total',
    help: 'Log lines read, by log type and result (matched, unmatched, skipped, oversize)',
    labelNames: ['type', 'result'] as const,
    registers: [this.registry],
  });
  readonly logMatches = new Counter({
    name: 'gatekeeper_log_matches_total',
    help: 'Log lines matched, by rule and whether they were counted (false: counted by the proxy, duplicate, or no address)',
    labelNames: ['rule', 'counted'] as const,
    registers: [this.registry],
  });
  readonly logErrors = new Counter({
    name: 'gatekeeper_log_errors_total',
    help: 'Errors reading log files, by log type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  readonly firewallOps = new Counter({
    name: 'gatekeeper_firewall_operations_total',
    help: 'Kernel firewall operations, by op (add, remove, flush, reconcile, batch) and result (ok, error)',
    labelNames: ['op', 'result'] as const,
    registers: [this.registry],
  });
  readonly firewallBatches = new Counter({
    name: 'gatekeeper_firewall_batches_total',
    help: 'Batches applied to the kernel firewall (each one command or transaction)',
    registers: [this.registry],
  });
  readonly firewallLatency = new Histogram({
    name: 'gatekeeper_firewall_ban_latency_seconds',
    help: 'Time from a ban being made to its address being in the kernel set',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  /**
   * Answered requests of one listener, counted on every response: `tally[statusCode / 100 - 1] += 1`.
   * Plain numbers on the request path (prom-client's inc() resolves its label set per call); they are
   * added to gatekeeper_requests_total whenever the registry is read.
   */
  requestTally(listener: string): Float64Array {
    let tally = this.requestTallies.get(listener);
    if (!tally) {
      tally = new Float64Array(STATUS_CLASSES.length);
      this.requestTallies.set(listener, tally);
    }
    return tally;
  }

  private sources: Array<() => Promise<MetricObjectWithValues<MetricValue<string>>[][]>> = [];

  /** Metrics of other processes (the workers) to aggregate with these on /metrics. */
  addSource(source: () => Promise<MetricObjectWithValues<MetricValue<string>>[][]>): void {
    this.sources.push(source);
  }

  /** The Prometheus text of this process, summed with its sources' (counters and histograms add up). */
  async text(): Promise<string> {
    if (this.sources.length === 0) return this.registry.metrics();
    const all = [await this.registry.getMetricsAsJSON(), ...(await Promise.all(this.sources.map((s) => s()))).flat()];
    return AggregatorRegistry.aggregate(all).metrics();
  }

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'gatekeeper_process_' });
  }
}
