import { Redis, Cluster, type RedisOptions } from 'ioredis';

/**
 * Opens an ioredis client from a URL:
 * - `redis://[:password@]host:port/db`, `rediss://...` (TLS): a single server;
 * - `redis+sentinel://[:password@]host1:26379,host2:26379/<master-name>[/db]`: Sentinel;
 * - `redis+cluster://[:password@]host1:7000,host2:7001`: Cluster (use a keyPrefix with a hash tag,
 *   e.g. `{gk}:`, so related keys share a slot).
 * Commands fail fast while disconnected (no offline queue): callers fall back to memory instead of hanging.
 */
export function connectRedis(url: string, connectTimeoutMs: number): Redis | Cluster {
  const base: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: connectTimeoutMs,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 3000),
  };
  const m = /^redis\+(sentinel|cluster):\/\/(?:([^:@/]*):([^@/]*)@)?([^/]+)(?:\/([^/]+))?(?:\/(\d+))?$/.exec(url);
  if (!m) return new Redis(url, base);
  const [, kind, , password, hosts, name, db] = m;
  const nodes = hosts!.split(',').map((h) => {
    const i = h.lastIndexOf(':');
    return { host: i === -1 ? h : h.slice(0, i), port: i === -1 ? (kind === 'sentinel' ? 26379 : 6379) : Number(h.slice(i + 1)) };
  });
  if (kind === 'cluster') {
    return new Cluster(nodes, { enableOfflineQueue: false, redisOptions: { ...base, password: password ? decodeURIComponent(password) : undefined } });
  }
  return new Redis({
    ...base,
    sentinels: nodes,
    name: name ?? 'mymaster',
    db: db ? Number(db) : 0,
    password: password ? decodeURIComponent(password) : undefined,
  });
}
