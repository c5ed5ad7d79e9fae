import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import type { Clock } from '../clock.js';
import type { Ban, BanEvent } from './ban.js';
import { boundedLimiter } from './bounded-memory.js';
import { RateLimiterCounter } from './rate-limiter-counter.js';
import { RedisBans, type Scripted } from './redis-bans.js';
import type { RedisKind } from './redis-connect.js';
import { RedisKeys } from './redis-keys.js';
import { ASSERT_BAN, CREATE_BAN, RECORD_BAN, REMOVE_BAN } from './redis-scripts.js';
import type { CounterSpec, FailureCounter, Store, StoreHealth } from './store.js';

interface WireEvent {
  origin: string;
  event: BanEvent;
}

export interface RedisStoreOptions {
  /** Which topology the clients talk to (Cluster pings every master). */
  readonly kind?: RedisKind;
  /** The commands' deadline (ms): the watchdog's PING uses it too. */
  readonly commandTimeoutMs?: number;
  /** How long a ban write waits for a replica's acknowledgement (Redis WAIT), ms. */
  readonly replicaAckTimeoutMs?: number;
}

/**
 * Bans, ban history, flags and positions in Redis (single, Sentinel or Cluster), shared by every
 * gatekeeper instance. Key layout: redis-keys.ts; bans: redis-bans.ts.
 *
 * - One ban per offence: a ban is decided and written by one script (compare-and-set on the target's
 *   history), so two instances crossing the limit at once make one ban, counted once.
 * - No ban lost in a failover: where the master has replicas, each ban write waits for one (WAIT) and
 *   an unacknowledged write degrades health; every ban this instance made or holds is re-asserted (with
 *   its original expiry, unless unbanned since: tombstones) whenever the store's list lacks it, which
 *   the enforcer reads at every reconnect, Cluster topology change and every 30 s.
 * - A hung Redis is a down Redis: every command has a deadline, and a watchdog PING that misses it
 *   drops the connection, so commands fail at once (counting falls back to memory) until Redis answers.
 * - While Redis is unreachable, ban writes are queued in memory and written on reconnect (history
 *   included); counters fall back to an in-memory insurance limiter.
 */
export class RedisStore implements Store {
  private readonly origin = randomUUID();
  private readonly listeners = new Set<(e: BanEvent) => void>();
  private readonly keys: RedisKeys;
  private readonly bans: RedisBans;
  private readonly kind: RedisKind;
  private readonly commandTimeoutMs: number;
  private readonly ackTimeoutMs: number;
  private readonly watchdog: NodeJS.Timeout;
  private lastError = '';
  private hung = false;
  private replicaReadings: number[] = [];
  private closed = false;
  private topologyTimer: NodeJS.Timeout | null = null;
  /** Told the store's problems ('' when healthy) once a second by the watchdog (the caller logs changes). */
  onProblem: ((problem: string) => void) | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly subscriber: Redis | Cluster,
    private readonly prefix: string,
    clock: Clock,
    opts: RedisStoreOptions = {},
  ) {
    this.keys = new RedisKeys(prefix);
    this.kind = opts.kind ?? ('nodes' in redis && typeof redis.nodes === 'function' ? 'cluster' : 'single');
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 1000;
    // WAIT must answer within the command deadline, or the watchdog would take it for a hung Redis.
    this.ackTimeoutMs = Math.min(opts.replicaAckTimeoutMs ?? 500, Math.floor(this.commandTimeoutMs * 0.8));
    redis.defineCommand('gkCreateBan', { numberOfKeys: 4, lua: CREATE_BAN });
    redis.defineCommand('gkAssertBan', { numberOfKeys: 4, lua: ASSERT_BAN });
    redis.defineCommand('gkRemoveBan', { numberOfKeys: 3, lua: REMOVE_BAN });
    redis.defineCommand('gkRecordBan', { numberOfKeys: 1, lua: RECORD_BAN });
    this.bans = new RedisBans({
      redis,
      scripted: redis as unknown as Scripted,
      keys: this.keys,
      clock,
      ackTimeoutMs: this.ackTimeoutMs,
      ready: () => this.ready,
      closed: () => this.closed,
      replicas: () => this.replicas,
      emit: (e) => this.emit(e),
      publish: (e) => this.publish(e),
      noteError: (message) => {
        this.lastError = message;
      },
    });
    redis.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    redis.on('ready', () => {
      this.lastError = '';
      this.hung = false;
      void this.onReady();
    });
    if (this.kind === 'cluster') {
      // A failover moves slots to a promoted replica: read the list again (and re-assert what it lost).
      for (const ev of ['+node', '-node']) redis.on(ev, () => this.topologyChanged());
    }
    subscriber.on('error', () => undefined);
    subscriber.on('ready', () => {
      // (Re)subscribe once connected (commands are not queued while offline), then ask listeners to
      // reload: events published while we were away are lost.
      void subscriber.subscribe(this.keys.channel).then(
        () => this.emit({ type: 'resync' }),
        () => undefined,
      );
    });
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.keys.channel) return;
      let wire: WireEvent;
      try {
        wire = JSON.parse(message) as WireEvent;
      } catch {
        return;
      }
      if (wire.origin === this.origin) return;
      this.bans.heard(wire.event);
      this.emit(wire.event);
    });
    const every = Math.max(1000, this.commandTimeoutMs);
    this.watchdog = setInterval(() => void this.ping(), every);
    this.watchdog.unref();
  }

  get ready(): boolean {
    return this.redis.status === 'ready' && !this.hung;
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

  private async onReady(): Promise<void> {
    await this.refreshReplicas().catch(() => undefined);
    await this.bans.onReady();
    // After a reconnect (a master switch among them) the listeners reload the list, which re-asserts
    // what the new master lacks.
    this.emit({ type: 'resync' });
  }

  private topologyChanged(): void {
    if (this.topologyTimer || this.closed) return;
    this.topologyTimer = setTimeout(() => {
      this.topologyTimer = null;
      this.emit({ type: 'resync' });
    }, 1000);
    this.topologyTimer.unref();
  }

  /**
   * The watchdog: a PING (to every master of a Cluster) that misses the command deadline marks Redis as
   * hung. A single/Sentinel connection is then dropped and reopened, so commands fail at once instead of
   * each waiting out its deadline; it is ready again when Redis answers.
   */
  private async ping(): Promise<void> {
    this.onProblem?.(this.health().ok ? '' : this.health().detail);
    if (this.closed || this.redis.status !== 'ready') return;
    try {
      const targets = this.kind === 'cluster' ? (this.redis as Cluster).nodes('master') : [this.redis as Redis];
      await Promise.all(targets.map((n) => n.ping()));
      this.hung = false;
      // A Cluster client stays ready through a failover (no 'ready' event to flush on): retry here.
      await this.bans.onReady();
      await this.refreshReplicas();
      if (this.bans.unacknowledged) await this.bans.confirmAck(targets);
    } catch (err) {
      const msg = (err as Error).message;
      if (!/timed out/i.test(msg)) return;
      this.hung = true;
      this.lastError = `no answer within ${this.commandTimeoutMs} ms (redis.commandTimeout)`;
      if (this.kind !== 'cluster') this.redis.disconnect(true);
    }
  }

  /** How many replicas a ban write waits for: the master's (every master's, least) connected replicas. */
  private async refreshReplicas(): Promise<void> {
    const nodes = this.kind === 'cluster' ? (this.redis as Cluster).nodes('master') : [this.redis as Redis];
    const counts = await Promise.all(
      nodes.map(async (n) => {
        const role = (await n.role()) as unknown[];
        return role[0] === 'master' && Array.isArray(role[2]) ? role[2].length : 0;
      }),
    );
    // The highest of the last 10 readings (one a second): a replica that vanishes because it is being
    // promoted (a planned failover) must not make the writes just before the switch skip WAIT.
    this.replicaReadings = [...this.replicaReadings.slice(-9), counts.length > 0 ? Math.min(...counts) : 0];
  }

  private get replicas(): number {
    return this.replicaReadings.length > 0 ? Math.max(...this.replicaReadings) : 0;
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

  private publish(event: BanEvent): void {
    // Best effort: an instance that misses an event reloads the list within 30 s.
    this.redis.publish(this.keys.channel, JSON.stringify({ origin: this.origin, event } satisfies WireEvent)).catch(() => undefined);
  }

  createBan(target: string, windowSeconds: number, make: (count: number) => Ban, replace: boolean): Promise<{ ban: Ban; created: boolean }> {
    return this.bans.createBan(target, windowSeconds, make, replace);
  }

  addBan(ban: Ban): Promise<void> {
    return this.bans.addBan(ban);
  }

  removeBan(target: string): Promise<boolean> {
    return this.bans.removeBan(target);
  }

  removeAllBans(): Promise<number> {
    return this.bans.removeAllBans();
  }

  getBan(target: string): Promise<Ban | null> {
    return this.bans.getBan(target);
  }

  async listBans(): Promise<Ban[]> {
    void this.refreshReplicas().catch(() => undefined);
    return this.bans.listBans();
  }

  recordBan(target: string, windowSeconds: number): Promise<number> {
    return this.bans.recordBan(target, windowSeconds);
  }

  subscribe(listener: (event: BanEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async setFlag(key: string, ttlSeconds: number): Promise<void> {
    await this.redis.set(this.keys.flag(key), '1', 'PX', Math.max(1, Math.ceil(ttlSeconds * 1000)));
  }

  async hasFlag(key: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.flag(key))) === 1;
  }

  async getValue(key: string): Promise<string | null> {
    return this.redis.get(this.keys.value(key));
  }

  async setValue(key: string, value: string): Promise<void> {
    await this.redis.set(this.keys.value(key), value);
  }

  health(): StoreHealth {
    const problems: string[] = [];
    if (this.redis.status !== 'ready') problems.push(`redis ${this.redis.status}${this.lastError ? `: ${this.lastError}` : ''}`);
    else if (this.hung) problems.push(`redis hung: ${this.lastError}`);
    problems.push(...this.bans.problems());
    const ok = problems.length === 0;
    return {
      backend: 'redis',
      ok,
      detail: ok ? `connected (${this.kind})` : problems.join('; '),
      pendingWrites: this.bans.pendingWrites,
      replicas: this.replicas,
      reasserted: this.bans.reasserted,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    if (this.topologyTimer) clearTimeout(this.topologyTimer);
    this.listeners.clear();
    await Promise.allSettled([this.subscriber.quit(), this.redis.quit()]);
    this.subscriber.disconnect();
    this.redis.disconnect();
  }
}
