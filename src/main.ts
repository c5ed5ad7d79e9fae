import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { Agent, request } from 'undici';
import { createControlApi, type HealthReport } from './api/control-api.js';
import { systemClock, type Clock } from './clock.js';
import { loadConfig, maskRedisUrl, type LoadedConfig } from './config/load.js';
import { isGatekeeperError } from './errors.js';
import { EvidenceActivity } from './obs/evidence.js';
import type { Activity } from './obs/activity.js';
import { Notifier } from './obs/notifier.js';
import type { Config } from './config/schema.js';
import { CidrSet, normalizeIp } from './net/ip.js';
import type { Logger } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { LogDetector } from './detect/log-detector.js';
import { LogWatcher } from './logs/log-watcher.js';
import { ExecFileRunner, type FirewallBackend } from './firewall/backend.js';
import { FirewallSync } from './firewall/firewall-sync.js';
import { NftablesBackend } from './firewall/nftables-backend.js';
import { FirewalldBackend, IpsetBackend } from './firewall/ipset-backend.js';
import { Enforcer } from './policy/enforcer.js';
import { Forwarder } from './proxy/forwarder.js';
import { Gate, type ListenerName } from './proxy/gate.js';
import { ClientSlots } from './proxy/client-slots.js';
import { banFront, closeServer, createServer, listen, proxyProtocolFront, type ConnectionCap } from './proxy/listener.js';
import { PageThrottle } from './proxy/page-throttle.js';
import { bannedPage, rawPage, sendPage } from './proxy/pages.js';
import { counterLimits, trackedCounterKeys } from './store/bounded-memory.js';
import { MemoryStore } from './store/memory-store.js';
import { connectRedis, redisKind, type RedisConnectOptions } from './store/redis-connect.js';
import { RedisStore } from './store/redis-store.js';
import type { Store } from './store/store.js';
import { MemoryAllowlist, type AllowlistStore } from './store/allowlist.js';
import { RedisAllowlist, waitReady } from './store/redis-allowlist.js';
import { MemoryHistory, type HistoryStore } from './store/history.js';
import { RedisHistory } from './store/redis-history.js';

/*
 * Composition root: the only file that picks concrete implementations (memory or Redis store,
 * firewall backend) and wires the listeners.
 */

export interface ReloadResult {
  readonly ok: boolean;
  readonly error?: string;
  /** Keys that changed but only take effect after a restart. */
  readonly restartNeeded: string[];
}

/**
 * What one process runs (proxy.workers, src/cluster/): `all` (a single process), a `worker` (the
 * web/admin listeners and the per-request path), or the `primary` of the workers (the control API,
 * the firewall, log watching, upstream probes and notifications: one set of timers, not N).
 */
export type Role = 'all' | 'primary' | 'worker';

export interface StartOptions {
  readonly role?: Role;
  /** primary: the metrics of the workers, to add to its own on /metrics. */
  readonly workerMetrics?: () => Promise<MetricObjectWithValues<MetricValue<string>>[][]>;
  /** primary: called after a reload was applied here (the workers reload too). */
  readonly onReload?: () => void;
}

export interface RunningGatekeeper {
  readonly ports: Readonly<Partial<Record<ListenerName | 'api', number>>>;
  readonly enforcer: Enforcer;
  readonly store: Store;
  readonly metrics: Metrics;
  readonly activity: Activity;
  /** Re-reads the config file: applies what can change live, reports what needs a restart. */
  reload(): Promise<ReloadResult>;
  close(): Promise<void>;
}

/** The soft limit on open files (Linux /proc), or null when it cannot be read or is unlimited. */
function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Keys a reload cannot apply to a running process (sockets, connections, kernel objects). */
const RESTART_KEYS = ['zimbra', 'listen', 'redis', 'firewall', 'logs', 'api', 'proxy', 'memory', 'jail.ipv6Prefix', 'zimbraProxies', 'history'] as const;

function addressSets(config: Config, upstreams: readonly string[]): { trusted: CidrSet; ignored: CidrSet; protected: CidrSet } {
  const trusted = new CidrSet(config.trustedProxies);
  const ignored = new CidrSet([...config.jail.ignoreip, ...config.trustedProxies, ...upstreams]);
  const ownHosts = (['web', 'admin', 'api'] as const)
    .map((n) => normalizeIp(config.listen[n]?.host))
    .filter((h): h is string => !!h && h !== '0.0.0.0' && h !== '::');
  return { trusted, ignored, protected: new CidrSet([...ignored.entries, ...config.admin.allow, ...ownHosts]) };
}

/** What /healthz and `gatekeeper status` say about one Zimbra upstream (from the probe). */
interface UpstreamHealth {
  /** Answered with a status below 500 (a 502/503 from zimbra-proxy means mailboxd is down). */
  ok: boolean;
  url: string;
  /** `HTTP 200`, or why there was no answer. */
  detail: string;
  /** Status code of the last answer, null when there was none. */
  lastStatus: number | null;
  latencyMs: number | null;
  checkedAt: string | null;
  /** The last time it answered well. */
  lastOkAt: string | null;
}

const RESYNC_EVERY_MS = 30_000;
const PROBE_EVERY_MS = 15_000;
/** An upstream error seen by a request probes at once, at most this often. */
const PROBE_ON_ERROR_MIN_MS = 1_000;

async function upstreamAddresses(config: Config, log: Logger): Promise<string[]> {
  const out: string[] = [];
  for (const url of [config.zimbra.web, config.zimbra.admin]) {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    const direct = normalizeIp(host);
    if (direct) {
      out.push(direct);
      continue;
    }
    try {
      for (const a of await lookup(host, { all: true })) {
        const ip = normalizeIp(a.address);
        if (ip) out.push(ip);
      }
    } catch (err) {
      log.warn({ host, err: (err as Error).message }, 'cannot resolve upstream host: it is not protected from bans until it resolves');
    }
  }
  return out;
}

function createFirewall(config: Config): FirewallBackend | null {
  const runner = new ExecFileRunner();
  switch (config.firewall.backend) {
    case 'nftables':
      return new NftablesBackend(config.firewall, runner);
    case 'ipset':
      return new IpsetBackend(config.firewall, runner);
    case 'firewalld':
      return new FirewalldBackend(config.firewall, runner);
    default:
      return null;
  }
}

/** How every Redis connection of this process is opened (the store's, the history's, the allowlist's). */
function redisOptions(r: NonNullable<Config['redis']>): RedisConnectOptions {
  return {
    connectTimeoutMs: r.connectTimeout * 1000,
    commandTimeoutMs: r.commandTimeout * 1000,
    username: r.username,
    password: r.password,
    tlsCa: r.tlsCa !== undefined ? readFileSync(r.tlsCa, 'utf8') : undefined,
  };
}

async function createStore(config: Config, clock: Clock, log: Logger): Promise<Store> {
  if (!config.redis) return new MemoryStore(clock, 60_000, { maxFlags: config.memory.maxFlags, maxBans: config.memory.maxBans });
  const { url, keyPrefix, connectTimeout, replicaAckTimeout } = config.redis;
  const kind = redisKind(url);
  const options = redisOptions(config.redis);
  const client = connectRedis(url, options);
  const subscriber = connectRedis(url, options);
  let warned = false;
  client.on('error', (err: Error) => {
    if (!warned) log.error({ err: err.message, code: 'GK_ERR_STORE' }, 'redis unreachable: serving from memory, will reconnect');
    warned = true;
  });
  client.on('ready', () => {
    if (warned) log.info('redis reachable again');
    warned = false;
  });
  const store = new RedisStore(client, subscriber, keyPrefix, clock, { kind, commandTimeoutMs: options.commandTimeoutMs, replicaAckTimeoutMs: replicaAckTimeout * 1000 });
  // Wait (up to connectTimeout) for Redis before serving, so the first counts land in Redis and not
  // in the insurance limiter; if it is down, start anyway and serve from memory.
  const deadline = Date.now() + connectTimeout * 1000;
  while (!store.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (!store.ready) log.error({ code: 'GK_ERR_STORE', url: maskRedisUrl(url) }, 'redis not reachable at startup: serving with in-memory counting until it is');
  let lastProblem = '';
  store.onProblem = (problem) => {
    // One line per change of state, not one per failed write.
    if (problem === lastProblem) return;
    lastProblem = problem;
    if (problem) log.error({ code: 'GK_ERR_STORE', problem }, 'redis store degraded');
    else log.info('redis store healthy again');
  };
  return store;
}

export async function startGatekeeper(loaded: LoadedConfig, log: Logger, clock: Clock = systemClock, options: StartOptions = {}): Promise<RunningGatekeeper> {
  let { config } = loaded;
  const role = options.role ?? 'all';
  const proxying = role !== 'primary';
  const controlling = role !== 'worker';
  if (role !== 'worker') for (const w of loaded.warnings) log.warn({ warning: w }, `config: ${w}`);
  const metrics = new Metrics();
  if (options.workerMetrics) metrics.addSource(options.workerMetrics);
  counterLimits.maxKeys = config.memory.maxCounterKeys; // before the store makes its counters
  const store = await createStore(config, clock, log);

  const upstreams = await upstreamAddresses(config, log);
  const sets = addressSets(config, upstreams);
  let trusted = sets.trusted; // replaced on reload; the fronts read it per connection
  // The Activity the enforcer reports failures to, keeping the last few per address as ban evidence.
  const activity = new EvidenceActivity(clock, config.jail.ipv6Prefix, config.memory.maxActivityKeys);
  let notifier = controlling && config.notify.webhook ? new Notifier(config.notify.webhook, config.notify.timeout * 1000, config.notify.retries, metrics, log) : undefined;
  // The primary notifies of every ban it hears of (the workers make them); a single process, of its own.
  const enforcer = new Enforcer(config, store, { ignored: sets.ignored, protected: sets.protected }, clock, log, metrics, activity, role === 'all' ? notifier : undefined);
  enforcer.cache.maxEntries = config.memory.maxBans;

  // Bans and unbans with their evidence (`gatekeeper history`, `gatekeeper why`), shared like the bans.
  const historyLimits = { keepSeconds: config.history.keep, maxEvents: config.history.maxEvents };
  let history: HistoryStore = new MemoryHistory(clock, historyLimits);
  if (config.redis) {
    const historyClient = connectRedis(config.redis.url, redisOptions(config.redis));
    history = new RedisHistory(historyClient, config.redis.keyPrefix, clock, historyLimits);
    // Redis answered the store: give these connections the same chance (they fail fast while connecting).
    if (store.health().ok) await waitReady(historyClient, config.redis.connectTimeout * 1000);
  }
  enforcer.setHistory(history, (key) => activity.evidenceOf(key));

  // The runtime allowlist (`gatekeeper allow`): shared through the store, applied live on every instance.
  let allowlist: AllowlistStore = new MemoryAllowlist(clock);
  if (config.redis) {
    const { url, keyPrefix, connectTimeout } = config.redis;
    const shared = new RedisAllowlist(connectRedis(url, redisOptions(config.redis)), connectRedis(url, redisOptions(config.redis)), keyPrefix, clock);
    if (store.health().ok) await shared.ready(connectTimeout * 1000);
    allowlist = shared;
  }
  let allowExpiry: NodeJS.Timeout | undefined;
  const allowChanged = async (): Promise<void> => {
    let entries;
    try {
      entries = await allowlist.list();
    } catch (err) {
      log.warn({ err: (err as Error).message, code: 'GK_ERR_STORE' }, 'could not read the runtime allowlist: keeping the last one');
      return;
    }
    enforcer.setRuntimeAllow(entries.map((e) => e.cidr));
    // Read again when the next entry expires (timers are capped: Node's overflow past 24.8 days).
    clearTimeout(allowExpiry);
    const next = Math.min(...entries.map((e) => e.until ?? Infinity));
    if (Number.isFinite(next)) {
      allowExpiry = setTimeout(() => void allowChanged(), Math.min(Math.max(0, next - clock.now()) + 10, 3_600_000));
      allowExpiry.unref();
    }
  };
  allowlist.subscribe(() => void allowChanged());
  await allowChanged();

  const backend = controlling ? createFirewall(config) : null;
  const firewall = backend ? new FirewallSync(backend, clock, metrics, log) : null;
  store.subscribe((e) => {
    if (e.type === 'ban') enforcer.cache.set(e.ban);
    else if (e.type === 'unban') enforcer.cache.delete(e.target);
    else if (e.type === 'unban-all') enforcer.cache.clear();
    else void enforcer.resync().catch(() => undefined);
    firewall?.onEvent(e);
    if (role === 'primary' && e.type === 'ban') notifier?.notifyBan(e.ban);
  });
  await enforcer.resync().catch((err: Error) => log.warn({ err: err.message }, 'could not load bans from the store yet'));
  await firewall?.start(enforcer.cache.list(clock.now()));
  let reconcileCountdown = 0;
  const resyncTimer = setInterval(() => {
    void enforcer.resync().then(
      () => {
        // Every 5 minutes: re-assert the kernel state from the store (missed events, mass expiry).
        if (firewall && ++reconcileCountdown >= 10) {
          reconcileCountdown = 0;
          void firewall.reconcile(enforcer.cache.list(clock.now()));
        }
      },
      () => undefined,
    );
    const now = clock.now();
    const bans = enforcer.cache.list(now);
    metrics.activeBans.set({ tier: 'proxy' }, bans.filter((b) => b.tier === 'proxy').length);
    metrics.activeBans.set({ tier: 'firewall' }, bans.filter((b) => b.tier === 'firewall').length);
  }, RESYNC_EVERY_MS);
  resyncTimer.unref();

  const servers: Array<{ server: http.Server; front?: net.Server }> = [];
  const upgraded = new Set<Duplex>();
  const gates: Array<{ name: ListenerName; gate: Gate }> = [];
  const forwarders: Forwarder[] = [];
  const connectionCaps: Array<{ name: ListenerName; cap: ConnectionCap; forwarder: Forwarder }> = [];
  const pageThrottles: PageThrottle[] = [];
  // Every bounded per-key structure, as gatekeeper_tracked_keys{kind}.
  metrics.trackKeys('ban-cache', () => enforcer.cache.size);
  metrics.trackKeys('known-good', () => enforcer.trackedSizes.knownGood);
  metrics.trackKeys('login-waiters', () => enforcer.trackedSizes.waiting);
  metrics.trackKeys('activity', () => activity.size);
  metrics.trackKeys('page-throttle', () => pageThrottles.reduce((n, p) => n + p.size, 0));
  metrics.trackKeys('client-connections', () => connectionCaps.reduce((n, c) => n + c.cap.slots.size, 0));
  metrics.trackKeys('client-upstream', () => connectionCaps.reduce((n, c) => n + c.forwarder.clientsHolding, 0));
  if (store instanceof MemoryStore) for (const { kind } of store.trackedKeys()) metrics.trackKeys(kind, () => store.trackedKeys().find((t) => t.kind === kind)!.size);
  for (const { kind } of trackedCounterKeys()) metrics.trackKeys(kind, () => trackedCounterKeys().find((t) => t.kind === kind)?.size ?? 0);
  const ports: Partial<Record<ListenerName | 'api', number>> = {};
  const upstreamHealth: Partial<Record<ListenerName, UpstreamHealth>> = {};
  const probeAgent = new Agent({ connect: { rejectUnauthorized: config.zimbra.tlsVerify, timeout: 5000 } });
  let lastProbe = 0;
  let probing = false;
  // Declared before the listeners: a request that finds an upstream down re-checks it at once.
  const probeSoon = (): void => {
    if (probing || clock.now() - lastProbe < PROBE_ON_ERROR_MIN_MS) return;
    probing = true;
    void probe().finally(() => {
      probing = false;
    });
  };

  for (const name of ['web', 'admin'] as const) {
    const l = config.listen[name];
    if (!l || !proxying) continue;
    const target = config.zimbra[name];
    const latency = metrics.upstreamLatency.series(name);
    const forwarder = new Forwarder({
      target,
      tlsVerify: config.zimbra.tlsVerify,
      maxSockets: config.proxy.maxSockets,
      upstreamTimeoutMs: config.proxy.upstreamTimeout * 1000,
      bufferBodyBytes: config.proxy.bufferBodyBytes,
      maxUpstreamPerClient: config.proxy.maxUpstreamPerClient,
      // Keyed like the counters; a trusted proxy's own requests (no X-Forwarded-For) are not capped.
      clientKeyOf: (ip) => (trusted.has(ip) ? null : enforcer.cache.clientKey(ip)),
      refuseClient: (req, res) => {
        metrics.rejections.inc({ listener: name, reason: 'client-upstream-limit' });
        sendPage(req, res, { status: 429, title: 'Too many requests in progress', message: 'Too many requests from your address are in progress at once. Try again shortly.', retryAfterSeconds: 5, reason: 'client-upstream-limit' });
      },
      onResponse: (elapsedMs) => {
        latency.observe(elapsedMs / 1000);
        // Zimbra answers again while it is reported down: re-check now rather than at the next round.
        if (upstreamHealth[name]?.checkedAt && !upstreamHealth[name].ok) probeSoon();
      },
      onError: (req, kind, err) => {
        metrics.upstreamErrors.inc({ listener: name, kind });
        probeSoon();
        log.warn({ listener: name, kind, err: err.message, url: req.url?.slice(0, 200) }, 'upstream error');
      },
      sendError: (req, res, kind) =>
        sendPage(
          req,
          res,
          kind === 'timeout'
            ? { status: 504, title: 'Gateway timeout', message: 'The mail server did not answer in time.', reason: 'upstream-timeout' }
            : { status: 502, title: 'Bad gateway', message: 'The mail server is not reachable right now.', reason: 'upstream-error' },
        ),
    });
    forwarders.push(forwarder);
    metrics.watchUpstream(name, () => forwarder.stats());
    let port = 0;
    const allow = name === 'admin' ? new CidrSet(config.admin.allow) : null;
    const gate = new Gate({ name, config, enforcer, forwarder, trusted, allow, adminAllow: new CidrSet(config.admin.allow), log, metrics, tls: !!l.tls, port: () => port });
    gates.push({ name, gate });
    const server = createServer(l, config.proxy, gate.handle);
    server.on('upgrade', (req, socket, head) => {
      // Upgraded connections leave the HTTP server's books: track them to close them on shutdown.
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
      gate.upgrade(req, socket, head);
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      metrics.rejections.inc({ listener: name, reason: 'bad-request' });
      if (socket.writable && err.code !== 'ECONNRESET') {
        const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      } else {
        socket.destroy();
      }
    });
    let front: net.Server | undefined;
    const connectionsRefused = metrics.rejections.labels({ listener: name, reason: 'client-connections' });
    const cap: ConnectionCap = {
      slots: new ClientSlots(config.proxy.maxClientConnections),
      // A trusted proxy carries many clients: it is not capped (behind PROXY protocol, its clients are).
      keyOf: (peer) => (trusted.has(peer) ? null : enforcer.cache.clientKey(peer)),
      onRefused: () => connectionsRefused.inc(),
    };
    connectionCaps.push({ name, cap, forwarder });
    if (l.proxyProtocol) {
      if (trusted.size === 0) log.error({ listener: name }, 'proxyProtocol is on but trustedProxies is empty: every connection will be refused');
      front = proxyProtocolFront(server, () => trusted, config.proxy.headersTimeout * 1000, (peer) => {
        metrics.rejections.inc({ listener: name, reason: 'bad-request' });
        log.info({ listener: name, peer }, 'PROXY protocol: connection refused (untrusted peer or missing/malformed header)');
      }, cap);
    } else {
      const pages = new PageThrottle(config.proxy.banPageInterval * 1000, config.memory.maxPageThrottleKeys);
      pageThrottles.push(pages);
      const refused = metrics.rejections.labels({ listener: name, reason: 'banned' });
      front = banFront(
        server,
        !!l.tls,
        (peer) => {
          // A trusted proxy carries many clients: its connections are judged request by request.
          if (config.mode === 'shadow' || trusted.has(peer)) return null;
          const ban = enforcer.bannedNow(peer);
          if (!ban || ban.shadow) return null;
          const now = clock.now();
          // Keyed like the counters: an IPv6 client rotating addresses inside its /64 is one client.
          if (!pages.take(enforcer.cache.clientKey(peer), now)) return 'reset';
          const page = bannedPage(ban.until, now);
          return (json: boolean) => rawPage(page, json);
        },
        () => refused.inc(),
        cap,
      );
    }
    const started = await listen(front ?? server, l, name);
    // The HTTP server never listens itself behind a front: start its timeout checks (headersTimeout,
    // requestTimeout), which Node starts on 'listening'.
    if (front) server.emit('listening');
    port = started.port;
    ports[name] = started.port;
    servers.push(front ? { server, front } : { server });
    if (name === 'admin' && config.admin.allow.length === 0) {
      log.error({ listener: 'admin', port: started.port }, 'admin.allow is EMPTY: the admin listener refuses every client (fail closed)');
    }
    log.info({ listener: name, host: started.host, port: started.port, upstream: target, tls: !!l.tls }, 'listening');
    upstreamHealth[name] = { ok: false, url: target, detail: 'not checked yet', lastStatus: null, latencyMs: null, checkedAt: null, lastOkAt: null };
  }

  // Each forwarded request holds a client and an upstream socket, and every listener has its own
  // pool of proxy.maxSockets: past the open-files limit, accept() fails.
  const files = openFilesLimit();
  const sockets = 2 * config.proxy.maxSockets * forwarders.length;
  if (files !== null && files < sockets) {
    log.warn({ openFilesLimit: files, maxSockets: config.proxy.maxSockets, listeners: forwarders.length }, `the open files limit (${files}) is below 2 x proxy.maxSockets per listener (${sockets}): raise it (ulimit -n, or ulimits.nofile in compose)`);
  }

  for (const name of ['web', 'admin'] as const) {
    if (!proxying && config.listen[name]) upstreamHealth[name] = { ok: false, url: config.zimbra[name], detail: 'not checked yet', lastStatus: null, latencyMs: null, checkedAt: null, lastOkAt: null };
  }
  // A declaration (hoisted): probeSoon may call it from a request served before this line runs.
  async function probe(): Promise<void> {
    lastProbe = clock.now();
    await Promise.all(
      (['web', 'admin'] as const)
        .filter((n) => upstreamHealth[n])
        .map(async (n) => {
          const prev = upstreamHealth[n]!;
          const t0 = performance.now();
          try {
            const r = await request(config.zimbra[n], { method: 'GET', dispatcher: probeAgent, headersTimeout: 5000, bodyTimeout: 5000 });
            await r.body.dump();
            const at = new Date(clock.now()).toISOString();
            const ok = r.statusCode < 500;
            upstreamHealth[n] = { ...prev, ok, detail: `HTTP ${r.statusCode}`, lastStatus: r.statusCode, latencyMs: Math.round(performance.now() - t0), checkedAt: at, lastOkAt: ok ? at : prev.lastOkAt };
          } catch (err) {
            upstreamHealth[n] = { ...prev, ok: false, detail: (err as Error).message || String((err as NodeJS.ErrnoException).code), lastStatus: null, latencyMs: null, checkedAt: new Date(clock.now()).toISOString() };
          }
        }),
    );
  }
  if (controlling) void probe();
  const probeTimer = setInterval(() => void probe(), PROBE_EVERY_MS);
  probeTimer.unref();
  if (!controlling) clearInterval(probeTimer);

  const health = (): HealthReport => {
    const s = store.health();
    metrics.storeUp.set(s.ok ? 1 : 0);
    const fw = firewall?.health();
    const reasons: string[] = [];
    if (!s.ok) reasons.push(`store ${s.backend}: ${s.detail}`);
    for (const [n, u] of Object.entries(upstreamHealth)) {
      if (!u.ok && u.checkedAt) reasons.push(`zimbra ${n} (${u.url}): ${u.detail}`);
    }
    if (fw && !fw.ok) reasons.push(`firewall ${fw.backend}: ${fw.lastError ?? 'error'}`);
    return {
      status: reasons.length === 0 ? 'ok' : 'degraded',
      reasons,
      mode: config.mode,
      store: s,
      upstreams: upstreamHealth,
      firewall: fw ?? { backend: 'none' },
      activeBans: enforcer.cache.size,
      ...(watcher ? { logs: watcher.health() } : {}),
    };
  };

  let watcher: LogWatcher | null = null;
  if (config.logs.length > 0 && controlling) {
    const detector = new LogDetector({
      zimbraProxies: new CidrSet(config.zimbraProxies),
      forwarders: new CidrSet([...config.zimbraProxies, ...config.trustedProxies]),
      configuredTypes: new Set(config.logs.map((l) => l.type)),
    });
    watcher = new LogWatcher(config.logs, detector, enforcer, store, metrics, log);
    await watcher.start();
  }

  let reloading: Promise<ReloadResult> | null = null;
  const reload = async (): Promise<ReloadResult> => {
    let next: Config;
    try {
      const again = loadConfig({ file: loaded.file ?? undefined });
      next = again.config;
      for (const w of again.warnings) log.warn({ warning: w }, `config: ${w}`);
    } catch (err) {
      metrics.reloads.inc({ result: 'error' });
      const detail = isGatekeeperError(err) ? [err.message, ...err.details].join('; ') : (err as Error).message;
      log.error({ err: detail }, 'reload refused: the running config is kept');
      return { ok: false, error: detail, restartNeeded: [] };
    }
    const get = (c: Config, key: string): string => JSON.stringify(key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[k], c));
    const restartNeeded = RESTART_KEYS.filter((k) => get(config, k) !== get(next, k));
    const nextSets = addressSets(next, upstreams);
    enforcer.reconfigure(next, { ignored: nextSets.ignored, protected: nextSets.protected });
    trusted = nextSets.trusted;
    for (const { name, gate } of gates) {
      gate.reconfigure({ config: next, trusted: nextSets.trusted, allow: name === 'admin' ? new CidrSet(next.admin.allow) : null, adminAllow: new CidrSet(next.admin.allow) });
    }
    log.level = next.log.level;
    if (get(config, 'notify') !== get(next, 'notify')) {
      notifier?.close();
      notifier = next.notify.webhook ? new Notifier(next.notify.webhook, next.notify.timeout * 1000, next.notify.retries, metrics, log) : undefined;
      enforcer.setNotifier(role === 'all' ? notifier : undefined);
    }
    config = next;
    metrics.reloads.inc({ result: 'ok' });
    options.onReload?.();
    log.info({ restartNeeded }, restartNeeded.length ? 'config reloaded; some changes need a restart' : 'config reloaded');
    return { ok: true, restartNeeded: [...restartNeeded] };
  };
  const reloadOnce = (): Promise<ReloadResult> => {
    reloading ??= reload().finally(() => {
      reloading = null;
    });
    return reloading;
  };

  const apiCfg = controlling ? config.listen.api : undefined;
  if (apiCfg) {
    const server = createServer(apiCfg, config.proxy, createControlApi({ enforcer, metrics, token: config.api.token, health, activity, reload: reloadOnce, now: () => clock.now(), allow: { allowlist, allowChanged }, history: { history, evidence: (key) => activity.evidenceOf(key) } }));
    const started = await listen(server, apiCfg, 'api');
    ports.api = started.port;
    servers.push({ server });
    log.info({ listener: 'api', host: started.host, port: started.port }, 'listening');
  }

  return {
    ports,
    enforcer,
    store,
    metrics,
    activity,
    reload: reloadOnce,
    async close(): Promise<void> {
      notifier?.close();
      clearInterval(resyncTimer);
      await watcher?.stop();
      await firewall?.stop(config.firewall.keepOnShutdown);
      clearInterval(probeTimer);
      const websockets = setTimeout(() => {
        for (const s of upgraded) s.destroy();
      }, 2_000);
      await Promise.all(servers.map((s) => closeServer(s.server, 10_000, s.front)));
      clearTimeout(websockets);
      for (const s of upgraded) s.destroy();
      for (const f of forwarders) f.close();
      await probeAgent.close().catch(() => undefined);
      clearTimeout(allowExpiry);
      await allowlist.close();
      await history.close();
      await store.close();
    },
  };
}
