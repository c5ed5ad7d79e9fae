import { Redis, Cluster, type RedisOptions } from 'ioredis';

export interface RedisConnectOptions {
  /** Per connection attempt, milliseconds. */
  readonly connectTimeoutMs: number;
  /** Deadline of every command, milliseconds: a Redis that does not answer in time is treated as down. */
  readonly commandTimeoutMs: number;
  /** Overrides the URL's user and password (e.g. from GK_REDIS_PASSWORD). */
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** PEM of the CA that signed the Redis server certificate (rediss:// and TLS Sentinel/Cluster). */
  readonly tlsCa?: string | undefined;
}

export type RedisKind = 'single' | 'sentinel' | 'cluster';

/** Which topology a `redis.url` names (see connectRedis). */
export function redisKind(url: string): RedisKind {
  if (/^redis(?:s)?\+sentinel:\/\//.test(url)) return 'sentinel';
  if (/^redis(?:s)?\+cluster:\/\//.test(url)) return 'cluster';
  return 'single';
}

/**
 * Opens an ioredis client from a URL:
 * - `redis://[user:password@]host:port/db`, `rediss://...` (TLS): a single server;
 * - `redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>[/db]`: Sentinel
 *   (`rediss+sentinel://` speaks TLS to the master and replicas; the password is the data nodes');
 * - `redis+cluster://[user:password@]host1:7000,host2:7001`: Cluster (`rediss+cluster://`: TLS).
 * Commands fail fast while disconnected (no offline queue): callers fall back to memory instead of hanging,
 * and every command has a deadline (commandTimeout). Sentinel clients subscribe to +switch-master
 * (failoverDetector) so a planned failover moves them to the new master at once.
 */
export function connectRedis(url: string, opts: RedisConnectOptions): Redis | Cluster {
  const tls = opts.tlsCa !== undefined ? { ca: opts.tlsCa } : undefined;
  const base: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: opts.connectTimeoutMs,
    commandTimeout: opts.commandTimeoutMs,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 3000),
    // A master demoted by a failover answers writes with READONLY until the client moves: reconnect (to
    // the master Sentinel names now) and send the command again, instead of counting on a replica.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
  };
  const m = /^redis(s?)\+(sentinel|cluster):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/]+)(?:\/([^/]+))?(?:\/(\d+))?$/.exec(url);
  if (!m) {
    const u = url.startsWith('rediss://') ? { tls: tls ?? {} } : {};
    return new Redis(url, { ...base, ...u });
  }
  const [, secure, kind, user, password, hosts, name, db] = m;
  const nodes = hosts!.split(',').map((h) => {
    const i = h.lastIndexOf(':');
    return { host: i === -1 ? h : h.slice(0, i), port: i === -1 ? (kind === 'sentinel' ? 26379 : 6379) : Number(h.slice(i + 1)) };
  });
  const auth: RedisOptions = {
    ...(user ? { username: decodeURIComponent(user) } : {}),
    ...(password ? { password: decodeURIComponent(password) } : {}),
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
    ...(secure ? { tls: tls ?? {} } : {}),
  };
  if (kind === 'cluster') {
    return new Cluster(nodes, {
      enableOfflineQueue: false,
      // A failover moves slots: follow MOVED/CLUSTERDOWN for a short while instead of failing at once.
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      maxRedirections: 16,
      slotsRefreshTimeout: opts.commandTimeoutMs,
      redisOptions: { ...base, ...auth },
    });
  }
  return new Redis({
    ...base,
    ...auth,
    sentinels: nodes,
    name: name ?? 'mymaster',
    db: db ? Number(db) : 0,
    failoverDetector: true,
    sentinelCommandTimeout: opts.commandTimeoutMs,
    ...(secure ? { enableTLSForSentinelMode: true } : {}),
  });
}
