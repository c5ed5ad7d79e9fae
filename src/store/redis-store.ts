import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import type { Clock } from '../clock.js';
import type { Ban, BanEvent } from './ban.js';
import { boundedLimiter } from './bounded-memory.js';
import { RateLimiterCounter } from './rate-limiter-counter.js';
import type { CounterSpec, FailureCounter, Store, StoreHealth } from './store.js';

type PendingOp = { type: 'ban'; ban: Ban } | { type: 'unban'; target: string } | { type: 'unban-all' };

interface WireEvent {
  origin: string;
  event: BanEvent;
}

/**
 * Bans, ban history, flags and positions in Redis, shared by every gatekeeper instance.
 *
 * Keys (all under keyPrefix):
 *   ban:<target>      JSON of the Ban, expires with the ban (PX)
 *   bans              sorted set target -> until (ms), the index used for listing
 *   banhist:<target>  number of bans, expires windowSeconds after the last one
 *   flag:<key>        known-good account/IP pairs and similar facts with a TTL
 *   val:<key>         durable values (log positions)
 *   rl:<name>:<key>   failure counters (rate-limiter-flexible)
 *   events            pub/sub channel for ban/unban between instances
 *
 * While Redis is unreachable, ban writes are queued in memory and written on reconnect; counters fall
 * back to an in-memory insurance limiter (not synced back: a documented limit of rate-limiter-flexible).
 */
export class RedisStore implements Store {
  private readonly origin = randomUUID();
  private readonly listeners = new Set<(e: BanEvent) => void>();
  private readonly pending: PendingOp[] = [];
  private readonly channel: string;
  private lastError = '';
  private flushing = false;
  private closed = false;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly subscriber: Redis | Cluster,
    private readonly prefix: string,
    private readonly clock: Clock,
  ) {
    this.channel = `${prefix}events`;
    redis.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    redis.on('ready', () => {
      this.lastError = '';
      void this.flushPending();
    });
    subscriber.on('error', () => undefined);
    subscriber.on('ready', () => {
      // (Re)subscribe once connected (commands are not queued while offline), then ask listeners to
      // reload: events published while we were away are lost.
      void subscriber.subscribe(this.channel).then(
        () => this.emit({ type: 'resync' }),
        () => undefined,
      );
    });
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      let wire: WireEvent;
      try {
        wire = JSON.parse(message) as WireEvent;
      } catch {
        return;
      }
      if (wire.origin !== this.origin) this.emit(wire.event);
    });
  }

  get ready(): boolean {
    return this.redis.status === 'ready';
  }

  counter(spec: CounterSpec): FailureCounter {
    // Bounded (memory.maxCounterKeys): while Redis is down, a flood of distinct keys must not grow it without end.
    const insurance = boundedLimiter(`insurance:${spec.name}`, { keyPrefix: `insurance:${spec.name}`, points: spec.points, duration: spec.durationSeconds });
    return new RateLimiterCounter(
      new RateLimiterRedis({
        storeClient: this.redis,
        keyPrefix: `${this.prefix}rl:${spec.name}`,
        points: spec.points,
        duration: spec.durationSeconds,
        rejectIfRedisNotReady: true,
        insuranceLimiter: insurance,
      }),
    );
  }

  private emit(event: BanEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // one listener's failure must not stop the others
      }
    }
  }

  private async publish(event: BanEvent): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify({ origin: this.origin, event } satisfies WireEvent));
  }

  private async write(op: PendingOp): Promise<void> {
    const p = this.prefix;
    if (op.type === 'ban') {
      const ttl = op.ban.until - this.clock.now();
      if (ttl <= 0) return;
      await this.redis
        .multi()
        .set(`${p}ban:${op.ban.target}`, JSON.stringify(op.ban), 'PX', Math.ceil(ttl))
        .zadd(`${p}bans`, op.ban.until, op.ban.target)
        .exec();
    } else if (op.type === 'unban') {
      await this.redis.multi().del(`${p}ban:${op.target}`).zrem(`${p}bans`, op.target).exec();
    } else {
      const targets = await this.redis.zrange(`${p}bans`, 0, -1);
      const m = this.redis.multi();
      for (const t of targets) m.del(`${p}ban:${t}`);
      m.del(`${p}bans`);
      await m.exec();
    }
    await this.publish(op);
  }

  /** Writes now, or queues the write for when Redis is back. Local listeners hear of it at once. */
  private async apply(op: PendingOp): Promise<void> {
    this.emit(op);
    if (!this.ready) {
      this.queue(op);
      return;
    }
    try {
      await this.write(op);
    } catch (err) {
      this.lastError = (err as Error).message;
      this.queue(op);
    }
  }

  private queue(op: PendingOp): void {
    if (op.type === 'unban-all') this.pending.length = 0;
    this.pending.push(op);
    // Bound the queue: a very long outage keeps the newest 100k operations.
    if (this.pending.length > 100_000) this.pending.splice(0, this.pending.length - 100_000);
  }

  private async flushPending(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length > 0 && this.ready && !this.closed) {
        const op = this.pending[0]!;
        await this.write(op);
        this.pending.shift();
      }
    } catch (err) {
      this.lastError = (err as Error).message;
    } finally {
      this.flushing = false;
    }
  }

  async addBan(ban: Ban): Promise<void> {
    await this.apply({ type: 'ban', ban });
  }

  async removeBan(target: string): Promise<boolean> {
    const existed = this.ready ? (await this.redis.exists(`${this.prefix}ban:${target}`).catch(() => 0)) === 1 : false;
    await this.apply({ type: 'unban', target });
    return existed;
  }

  async removeAllBans(): Promise<number> {
    const n = this.ready ? await this.redis.zcount(`${this.prefix}bans`, this.clock.now(), '+inf').catch(() => 0) : 0;
    await this.apply({ type: 'unban-all' });
    return n;
  }

  async getBan(target: string): Promise<Ban | null> {
    const now = this.clock.now();
    // Not yet flushed (Redis was away): the newest queued operation on this target decides.
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const op = this.pending[i]!;
      if (op.type === 'unban-all' || (op.type === 'unban' && op.target === target)) return null;
      if (op.type === 'ban' && op.ban.target === target) return op.ban.until > now ? op.ban : null;
    }
    return activeBan(await this.redis.get(`${this.prefix}ban:${target}`), now);
  }

  async listBans(): Promise<Ban[]> {
    const now = this.clock.now();
    const p = this.prefix;
    await this.redis.zremrangebyscore(`${p}bans`, '-inf', now);
    const targets = await this.redis.zrangebyscore(`${p}bans`, now, '+inf');
    const out: Ban[] = [];
    for (let i = 0; i < targets.length; i += 500) {
      const chunk = targets.slice(i, i + 500);
      const values = await this.redis.mget(...chunk.map((t) => `${p}ban:${t}`));
      for (const v of values) {
        const ban = activeBan(v, now);
        if (ban) out.push(ban);
      }
    }
    // Bans written here but not yet flushed are active too.
    for (const op of this.pending) if (op.type === 'ban' && op.ban.until > now) out.push(op.ban);
    return out;
  }

  async recordBan(target: string, windowSeconds: number): Promise<number> {
    const key = `${this.prefix}banhist:${target}`;
    const res = await this.redis.multi().incr(key).expire(key, Math.max(1, Math.ceil(windowSeconds))).exec();
    const count = res?.[0]?.[1];
    return typeof count === 'number' ? count : 1;
  }

  subscribe(listener: (event: BanEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async setFlag(key: string, ttlSeconds: number): Promise<void> {
    await this.redis.set(`${this.prefix}flag:${key}`, '1', 'PX', Math.max(1, Math.ceil(ttlSeconds * 1000)));
  }

  async hasFlag(key: string): Promise<boolean> {
    return (await this.redis.exists(`${this.prefix}flag:${key}`)) === 1;
  }

  async getValue(key: string): Promise<string | null> {
    return this.redis.get(`${this.prefix}val:${key}`);
  }

  async setValue(key: string, value: string): Promise<void> {
    await this.redis.set(`${this.prefix}val:${key}`, value);
  }

  health(): StoreHealth {
    const ok = this.ready;
    return {
      backend: 'redis',
      ok,
      detail: ok ? 'connected' : `redis ${this.redis.status}${this.lastError ? `: ${this.lastError}` : ''}`,
      pendingWrites: this.pending.length,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    await Promise.allSettled([this.subscriber.quit(), this.redis.quit()]);
    this.subscriber.disconnect();
    this.redis.disconnect();
  }
}

/** A stored ban that is still active at `now`; a missing, expired, foreign or corrupt value is null. */
function activeBan(raw: string | null, now: number): Ban | null {
  if (!raw) return null;
  try {
    const ban = JSON.parse(raw) as Ban;
    return ban.until > now ? ban : null;
  } catch {
    return null;
  }
}
