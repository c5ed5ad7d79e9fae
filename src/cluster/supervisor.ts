import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { LoadedConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../obs/logger.js';

/*
 * proxy.workers > 1: one primary and N worker processes (node:cluster; the primary owns the listening
 * sockets and hands connections to the workers in turn).
 *  - Workers serve the web and admin listeners: the per-request path, counting and banning in the shared
 *    store (Redis is required: counters, bans and logins in flight are exact across processes there),
 *    each with its own ban cache fed by the store's events (a ban made in one worker reaches the others
 *    through Redis pub/sub within milliseconds).
 *  - The primary runs everything that must run once: the control API and status page, the firewall,
 *    log watching, upstream probes, ban notifications (from the store's events); it restarts a crashed
 *    worker (backoff from 1 s), forwards a reload, and shuts the workers down gracefully first.
 *  - /metrics on the primary sums its own metrics and every worker's (prom-client's aggregator);
 *    the workers send their failed-login activity to the primary for the status page.
 */

type ToWorker = { gk: 'metrics'; id: number } | { gk: 'reload' } | { gk: 'shutdown' };
type ToPrimary =
  | { gk: 'ready'; ports: Record<string, number> }
  | { gk: 'metrics'; id: number; data: MetricObjectWithValues<MetricValue<string>>[] }
  | { gk: 'activity'; items: Array<[service: string, ip: string, account: string | null, n: number]> };

/**
 * Serves until SIGTERM or SIGINT, then runs `shutdown` once and resolves with the exit code (0, or 1
 * when the shutdown failed); SIGHUP calls `reload`. For the single process and for the primary.
 */
export function serveUntilSignal(log: Logger, reload: () => void, shutdown: (signal: string) => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      shutdown(signal).then(
        () => resolve(0),
        (err: Error) => {
          log.error({ err: err.message }, 'error during shutdown');
          resolve(1);
        },
      );
    };
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reloading the configuration');
      reload();
    });
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

export function workerCount(config: Config): number {
  return config.proxy.workers === 'auto' ? availableParallelism() : config.proxy.workers;
}

const RESTART_MIN_MS = 1000;
const RESTART_MAX_MS = 30_000;
const SHUTDOWN_GRACE_MS = 15_000;
const ACTIVITY_FLUSH_MS = 1000;
const ACTIVITY_MAX_BATCH = 10_000;

/** The primary: forks the workers, runs the control parts, supervises. Resolves with the exit code. */
export async function runPrimary(loaded: LoadedConfig, log: Logger): Promise<number> {
  const n = workerCount(loaded.config);
  const { startGatekeeper } = await import('../main.js');
  let stopping = false;
  let metricsSeq = 0;
  const pendingMetrics = new Map<number, { want: number; got: MetricObjectWithValues<MetricValue<string>>[][]; done: (v: MetricObjectWithValues<MetricValue<string>>[][]) => void }>();
  const broadcast = (m: ToWorker): void => {
    for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected()) w.send(m);
  };
  const workerMetrics = (): Promise<MetricObjectWithValues<MetricValue<string>>[][]> =>
    new Promise((resolve) => {
      const id = ++metricsSeq;
      const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w?.isConnected());
      if (live.length === 0) return resolve([]);
      const entry = { want: live.length, got: [] as MetricObjectWithValues<MetricValue<string>>[][], done: resolve };
      pendingMetrics.set(id, entry);
      // A worker that does not answer in time (busy, dying) is left out of this scrape.
      setTimeout(() => {
        if (pendingMetrics.delete(id)) resolve(entry.got);
      }, 2000).unref();
      for (const w of live) w.send({ gk: 'metrics', id } satisfies ToWorker);
    });

  const gk = await startGatekeeper(loaded, log.child({ process: 'primary' }), undefined, { role: 'primary', workerMetrics, onReload: () => broadcast({ gk: 'reload' }) });
  const restarts = gk.metrics.workerRestarts;

  let readyCount = 0;
  let allReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (allReady = r));
  let ports: Record<string, number> = {};
  const backoff = new Map<number, number>(); // slot -> next delay
  const slots = new Map<number, number>(); // worker id -> slot

  const fork = (slot: number): void => {
    const w = cluster.fork({ GATEKEEPER_WORKER_SLOT: String(slot) });
    slots.set(w.id, slot);
    w.on('message', (m: ToPrimary) => {
      if (m.gk === 'ready') {
        ports = m.ports;
        backoff.delete(slot);
        if (++readyCount === n) allReady();
      } else if (m.gk === 'metrics') {
        const p = pendingMetrics.get(m.id);
        if (!p) return;
        p.got.push(m.data);
        if (p.got.length >= p.want) {
          pendingMetrics.delete(m.id);
          p.done(p.got);
        }
      } else if (m.gk === 'activity') {
        for (const [service, ip, account, count] of m.items) gk.activity.recordFailure(service, ip, account ?? undefined, count);
      }
    });
  };
  cluster.on('exit', (w, code, signal) => {
    const slot = slots.get(w.id);
    slots.delete(w.id);
    if (stopping || slot === undefined) return;
    const delay = backoff.get(slot) ?? RESTART_MIN_MS;
    backoff.set(slot, Math.min(delay * 2, RESTART_MAX_MS));
    restarts.inc();
    log.error({ worker: slot, code, signal, restartInMs: delay }, 'worker process ended unexpectedly: restarting it');
    setTimeout(() => {
      if (!stopping) fork(slot);
    }, delay).unref();
  });
  cluster.setupPrimary({ silent: false });
  for (let slot = 0; slot < n; slot++) fork(slot);
  await ready;
  for (const name of ['web', 'admin'] as const) {
    if (ports[name] !== undefined) log.info({ listener: name, port: ports[name], workers: n }, 'listening');
  }
  log.info({ config: loaded.file ?? '(defaults and environment)', mode: loaded.config.mode, store: 'redis', workers: n }, 'gatekeeper running');

  return serveUntilSignal(log, () => void gk.reload(), async (signal) => {
    stopping = true;
    log.info({ signal, workers: Object.keys(cluster.workers ?? {}).length }, 'shutting down: workers first (no new connections, requests in flight finish), then the primary');
    const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    const gone = Promise.all(live.map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r())))));
    broadcast({ gk: 'shutdown' });
    const force = setTimeout(() => {
      for (const w of live) if (!w.isDead()) w.process.kill('SIGKILL');
    }, SHUTDOWN_GRACE_MS);
    await gone;
    clearTimeout(force);
    await gk.close();
  });
}

/** A worker: serves the listeners until the primary says shutdown (or the primary goes away). */
export async function runWorker(loaded: LoadedConfig, log: Logger): Promise<number> {
  const slot = Number(process.env.GATEKEEPER_WORKER_SLOT ?? cluster.worker?.id ?? 0);
  const wlog = log.child({ worker: slot });
  const { startGatekeeper } = await import('../main.js');
  const gk = await startGatekeeper(loaded, wlog, undefined, { role: 'worker' });
  // Failed logins go to the primary's status page in batches (bounded: a flood is summarised, not queued).
  let batch: Array<[string, string, string | null, number]> = [];
  const record = gk.activity.recordFailure.bind(gk.activity);
  gk.activity.recordFailure = (service, ip, account, n = 1) => {
    record(service, ip, account, n);
    if (batch.length < ACTIVITY_MAX_BATCH) batch.push([service, ip, account ?? null, n]);
  };
  const flush = setInterval(() => {
    if (batch.length === 0 || !process.connected) return;
    process.send?.({ gk: 'activity', items: batch } satisfies ToPrimary);
    batch = [];
  }, ACTIVITY_FLUSH_MS);
  flush.unref();
  process.send?.({ gk: 'ready', ports: gk.ports as Record<string, number> } satisfies ToPrimary);
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      clearInterval(flush);
      wlog.info({ why }, 'worker shutting down');
      gk.close().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('message', (m: ToWorker) => {
      if (m.gk === 'metrics') void gk.metrics.registry.getMetricsAsJSON().then((data) => process.send?.({ gk: 'metrics', id: m.id, data } satisfies ToPrimary));
      else if (m.gk === 'reload') void gk.reload();
      else if (m.gk === 'shutdown') stop('primary asked');
    });
    // The primary is gone (killed): nobody supervises this worker any more.
    process.once('disconnect', () => stop('primary gone'));
    // Signals go to the whole process group: the primary coordinates the shutdown.
    process.on('SIGTERM', () => undefined);
    process.on('SIGINT', () => undefined);
    process.on('SIGHUP', () => undefined);
  });
}
