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
import { Activity } from './obs/activity.js';
import { Notifier } from './obs/notifier.js';
import type { Config } from './config/schema.js';
import { CidrSet, normalizeIp } from './net/ip.js';
import type { Logger } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import { LogDetector } from './detect/log-detector.js';
import { LogWatcher } from './logs/log-watcher.js';
import { ExecFileRunner, type FirewallBackend } from './firewall/backend.js';
import { FirewallSync } from './firewall/firewall-sync.js';
import { NftablesBackend } from './firewall/nftables-backend.js';
import { FirewalldBackend, IpsetBackend } from './firewall/ipset-backend.js';
import { Enforcer } from './policy/enforcer.js';
import { Forwarder } from './proxy/forwarder.js';
import { Gate, type ListenerName } from './proxy/gate.js';
import { banFront, closeServer, createServer, listen, proxyProtocolFront } from './proxy/listener.js';
import { PageThrottle } from './proxy/page-throttle.js';
import { bannedPage, rawPage, sendPage } from './proxy/pages.js';
import { MemoryStore } from './store/memory-store.js';
import { connectRedis } from './store/redis-connect.js';
import { RedisStore } from './store/redis-store.js';
import type { Store } from './store/store.js';

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

export interface RunningGatekeeper {
  readonly ports: Readonly<Partial<Record<ListenerName | 'api', number>>>;
  readonly enforcer: Enforcer;
  readonly store: Store;
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
const RESTART_KEYS = ['zimbra', 'listen', 'redis', 'firewall', 'logs', 'api', 'proxy', 'jail.ipv6Prefix', 'zimbraProxies'] as const;

function addressSets(config: Config, upstreams: readonly string[]): { trusted: CidrSet; ignored: CidrSet; protected: CidrSet } {
  const trusted = new CidrSet(config.trustedProxies);
  const ignored = new CidrSet([...config.jail.ignoreip, ...config.trustedProxies, ...upstreams]);
  const ownHosts = (['web', 'admin', 'api'] as const)
    .map((n) => normalizeIp(config.listen[n]?.host))
    .filter((h): h is string => !!h && h !== '0.0.0.0' && h !== '::');
  return { trusted, ignored, protected: new CidrSet([...ignored.entries, ...config.admin.allow, ...ownHosts]) };
}

interface UpstreamHealth {
  ok: boolean;
  detail: string;
  checkedAt: string | null;
}

const RESYNC_EVERY_MS = 30_000;
const PROBE_EVERY_MS = 15_000;

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

async function createStore(config: Config, clock: Clock, log: Logger): Promise<Store> {
  if (!config.redis) return new MemoryStore(clock);
  const { url, keyPrefix, connectTimeout } = config.redis;
  const client = connectRedis(url, connectTimeout * 1000);
  const subscriber = connectRedis(url, connectTimeout * 1000);
  let warned = false;
  client.on('error', (err: Error) => {
    if (!warned) log.error({ err: err.message, code: 'GK_ERR_STORE' }, 'redis unreachable: serving from memory, will reconnect');
    warned = true;
  });
  client.on('ready', () => {
    if (warned) log.info('redis reachable again');
    warned = false;
  });
  const store = new RedisStore(client, subscriber, keyPrefix, clock);
  // Wait (up to connectTimeout) for Redis before serving, so the first counts land in Redis and not
  // in the insurance limiter; if it is down, start anyway and serve from memory.
  const deadline = Date.now() + connectTimeout * 1000;
  while (!store.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (!store.ready) log.error({ code: 'GK_ERR_STORE', url: maskRedisUrl(url) }, 'redis not reachable at startup: serving with in-memory counting until it is');
  return store;
}

export async function startGatekeeper(loaded: LoadedConfig, log: Logger, clock: Clock = systemClock): Promise<RunningGatekeeper> {
  let { config } = loaded;
  for (const w of loaded.warnings) log.warn({ warning: w }, `config: ${w}`);
  const metrics = new Metrics();
  const store = await createStore(config, clock, log);

  const upstreams = await upstreamAddresses(config, log);
  const sets = addressSets(config, upstreams);
  let trusted = sets.trusted; // replaced on reload; the fronts read it per connection
  const activity = new Activity(clock);
  let notifier = config.notify.webhook ? new Notifier(config.notify.webhook, config.notify.timeout * 1000, config.notify.retries, metrics, log) : undefined;
  const enforcer = new Enforcer(config, store, { ignored: sets.ignored, protected: sets.protected }, clock, log, metrics, activity, notifier);

  const backend = createFirewall(config);
  const firewall = backend ? new FirewallSync(backend, clock, metrics, log) : null;
  store.subscribe((e) => {
    if (e.type === 'ban') enforcer.cache.set(e.ban);
    else if (e.type === 'unban') enforcer.cache.delete(e.target);
    else if (e.type === 'unban-all') enforcer.cache.clear();
    else void enforcer.resync().catch(() => undefined);
    firewall?.onEvent(e);
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
  const ports: Partial<Record<ListenerName | 'api', number>> = {};
  const upstreamHealth: Partial<Record<ListenerName, UpstreamHealth>> = {};
  const probeAgent = new Agent({ connect: { rejectUnauthorized: config.zimbra.tlsVerify, timeout: 5000 } });

  for (const name of ['web', 'admin'] as const) {
    const l = config.listen[name];
    if (!l) continue;
    const target = config.zimbra[name];
    const latency = metrics.upstreamLatency.series(name);
    const forwarder = new Forwarder({
      target,
      tlsVerify: config.zimbra.tlsVerify,
      maxSockets: config.proxy.maxSockets,
      upstreamTimeoutMs: config.proxy.upstreamTimeout * 1000,
      onResponse: (elapsedMs) => latency.observe(elapsedMs / 1000),
      onError: (req, kind, err) => {
        metrics.upstreamErrors.inc({ listener: name, kind });
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
    const gate = new Gate({ name, config, enforcer, forwarder, trusted, allow, log, metrics, tls: !!l.tls, port: () => port });
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
    if (l.proxyProtocol) {
      if (trusted.size === 0) log.error({ listener: name }, 'proxyProtocol is on but trustedProxies is empty: every connection will be refused');
      front = proxyProtocolFront(server, () => trusted, config.proxy.headersTimeout * 1000, (peer) => {
        metrics.rejections.inc({ listener: name, reason: 'bad-request' });
        log.info({ listener: name, peer }, 'PROXY protocol: connection refused (untrusted peer or missing/malformed header)');
      });
    } else {
      const pages = new PageThrottle(config.proxy.banPageInterval * 1000);
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
    upstreamHealth[name] = { ok: false, detail: 'not checked yet', checkedAt: null };
  }

  // Each forwarded request holds a client and an upstream socket, and every listener has its own
  // pool of proxy.maxSockets: past the open-files limit, accept() fails.
  const files = openFilesLimit();
  const sockets = 2 * config.proxy.maxSockets * forwarders.length;
  if (files !== null && files < sockets) {
    log.warn({ openFilesLimit: files, maxSockets: config.proxy.maxSockets, listeners: forwarders.length }, `the open files limit (${files}) is below 2 x proxy.maxSockets per listener (${sockets}): raise it (ulimit -n, or ulimits.nofile in compose)`);
  }

  const probe = async (): Promise<void> => {
    await Promise.all(
      (['web', 'admin'] as const)
        .filter((n) => upstreamHealth[n])
        .map(async (n) => {
          try {
            const r = await request(config.zimbra[n], { method: 'GET', dispatcher: probeAgent, headersTimeout: 5000, bodyTimeout: 5000 });
            await r.body.dump();
            upstreamHealth[n] = { ok: true, detail: `HTTP ${r.statusCode}`, checkedAt: new Date(clock.now()).toISOString() };
          } catch (err) {
            upstreamHealth[n] = { ok: false, detail: (err as Error).message, checkedAt: new Date(clock.now()).toISOString() };
          }
        }),
    );
  };
  void probe();
  const probeTimer = setInterval(() => void probe(), PROBE_EVERY_MS);
  probeTimer.unref();

  const health = (): HealthReport => {
    const s = store.health();
    metrics.storeUp.set(s.ok ? 1 : 0);
    return {
      status: s.ok && (!firewall || firewall.health().ok) ? 'ok' : 'degraded',
      mode: config.mode,
      store: s,
      upstreams: upstreamHealth,
      firewall: firewall ? firewall.health() : { backend: 'none' },
      activeBans: enforcer.cache.size,
      ...(watcher ? { logs: watcher.health() } : {}),
    };
  };

  let watcher: LogWatcher | null = null;
  if (config.logs.length > 0) {
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
      gate.reconfigure({ config: next, trusted: nextSets.trusted, allow: name === 'admin' ? new CidrSet(next.admin.allow) : null });
    }
    log.level = next.log.level;
    if (get(config, 'notify') !== get(next, 'notify')) {
      notifier?.close();
      notifier = next.notify.webhook ? new Notifier(next.notify.webhook, next.notify.timeout * 1000, next.notify.retries, metrics, log) : undefined;
      enforcer.setNotifier(notifier);
    }
    config = next;
    metrics.reloads.inc({ result: 'ok' });
    log.info({ restartNeeded }, restartNeeded.length ? 'config reloaded; some changes need a restart' : 'config reloaded');
    return { ok: true, restartNeeded: [...restartNeeded] };
  };
  const reloadOnce = (): Promise<ReloadResult> => {
    reloading ??= reload().finally(() => {
      reloading = null;
    });
    return reloading;
  };

  const apiCfg = config.listen.api;
  if (apiCfg) {
    const server = createServer(apiCfg, config.proxy, createControlApi({ enforcer, metrics, token: config.api.token, health, activity, reload: reloadOnce, now: () => clock.now() }));
    const started = await listen(server, apiCfg, 'api');
    ports.api = started.port;
    servers.push({ server });
    log.info({ listener: 'api', host: started.host, port: started.port }, 'listening');
  }

  return {
    ports,
    enforcer,
    store,
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
      await store.close();
    },
  };
}
