import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import type { Clock } from '../clock.js';
import type { Ban, BanEvent } from './ban.js';
import { RateLimiterCounter } from './rate-limiter-counter.js';
import type { RedisKind } from './redis-connect.js';
import { BAN_SHARDS, RedisKeys, type BanKeys } from './redis-keys.js';
import { ASSERT_BAN, CREATE_BAN, RECORD_BAN, REMOVE_BAN } from './redis-scripts.js';
import type { CounterSpec, FailureCounter, Store, StoreHealth } from './store.js';

type PendingOp = { type: 'ban'; ban: Ban; windowSeconds: number } | { type: 'unban'; target: string; at: number } | { type: 'unban-all'; at: number };

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

/** The scripts of redis-scripts.ts, defined on the client (and its pipelines) by defineCommand. */
interface Scripted {
  gkCreateBan(...args: Array<string | number>): Promise<[string, string]>;
  gkAssertBan(...args: Array<string | number>): Promise<string>;
  gkRemoveBan(...args: Array<string | number>): Promise<number>;
  gkRecordBan(...args: Array<string | number>): Promise<number>;
}

/** Bounds of this instance's memory of bans and histories (re-assertion after a failover, counts while Redis is away). */
const MAX_KNOWN = 200_000;
/** An unban's tombstone outlives any ban that could be re-asserted over it (bans are capped at maxtime). */
const TOMBSTONE_MS = 400 * 86400_000;
/** A ban this close to its end is not re-asserted (clock differences between instances). */
const REASSERT_MARGIN_MS = 2000;
const PENDING_MAX = 100_000;

/**
 * Bans, ban history, flags and positions in Redis (single, Sentinel or Cluster), shared by every
 * gatekeeper instance. Key layout: redis-keys.ts.
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
  private readonly pending: PendingOp[] = [];
  private readonly keys: RedisKeys;
  /** Active bans this instance made or heard of: re-asserted when the store lost them. */
  private readonly known = new Map<string, { ban: Ban; windowSeconds: number }>();
  /** This instance's last known ban count per target, for bans decided while Redis is away. */
  private readonly localHist = new Map<string, { count: number; expiresAt: number }>();
  private readonly kind: RedisKind;
  private readonly commandTimeoutMs: number;
  private readonly ackTimeoutMs: number;
  private readonly watchdog: NodeJS.Timeout;
  private lastError = '';
  /** Why the last ban write failed ('' once a write succeeds). */
  private writeProblem = '';
  /** A ban write no replica acknowledged ('' once a later WAIT covers it). */
  private ackProblem = '';
  private hung = false;
  private replicaReadings: number[] = [];
  private reasserted = 0;
  /** The longest history window createBan was given (every instance has the same config): used for bans heard of. */
  private historyWindowSeconds = 0;
  private flushing = false;
  private closed = false;
  private migrated = false;
  private topologyTimer: NodeJS.Timeout | null = null;
  /** Told the store's problems ('' when healthy) once a second by the watchdog (the caller logs changes). */
  onProblem: ((problem: string) => void) | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly subscriber: Redis | Cluster,
    private readonly prefix: string,
    private readonly clock: Clock,
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
      const e = wire.event;
      if (e.type === 'ban') this.remember(e.ban, 0);
      else if (e.type === 'unban') this.known.delete(e.target);
      else if (e.type === 'unban-all') this.known.clear();
      this.emit(e);
    });
    const every = Math.max(1000, this.commandTimeoutMs);
    this.watchdog = setInterval(() => void this.ping(), every);
    this.watchdog.unref();
  }

  get ready(): boolean {
    return this.redis.status === 'ready' && !this.hung;
  }

  private get scripted(): Scripted {
    return this.redis as unknown as Scripted;
  }

  counter(spec: CounterSpec): FailureCounter {
    const insurance = new RateLimiterMemory({ keyPrefix: `insurance:${spec.name}`, points: spec.points, duration: spec.durationSeconds });
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
    if (!this.migrated) {
      this.migrated = true;
      await this.migrateLegacy().catch(() => undefined);
    }
    await this.flushPending();
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
      if (this.pending.length > 0) await this.flushPending();
      await this.refreshReplicas();
      if (this.ackProblem) await this.confirmAck(targets);
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

  private remember(ban: Ban, windowSeconds: number): void {
    const prev = this.known.get(ban.target);
    this.known.delete(ban.target);
    if (this.known.size >= MAX_KNOWN) this.known.delete(this.known.keys().next().value!);
    this.known.set(ban.target, { ban, windowSeconds: Math.max(windowSeconds, prev?.windowSeconds ?? 0) });
    if (windowSeconds > 0) this.rememberCount(ban.target, ban.count, windowSeconds);
  }

  private rememberCount(target: string, count: number, windowSeconds: number): void {
    this.localHist.delete(target);
    if (this.localHist.size >= MAX_KNOWN) this.localHist.delete(this.localHist.keys().next().value!);
    this.localHist.set(target, { count, expiresAt: this.clock.now() + windowSeconds * 1000 });
  }

  private localCount(target: string): number {
    const h = this.localHist.get(target);
    return h && h.expiresAt > this.clock.now() ? h.count : 0;
  }

  private noteWriteError(err: unknown): void {
    this.lastError = (err as Error).message;
    this.writeProblem = `ban write failed: ${(err as Error).message}`;
  }

  /** Checks WAIT's answer: fewer replicas than asked (or no answer) means the write could vanish in a failover. */
  private noteAck(reply: [Error | null, unknown] | undefined, target: string): void {
    if (!reply || reply[0] || typeof reply[1] !== 'number' || reply[1] < 1) {
      this.ackProblem = `ban of ${target} not acknowledged by a replica within ${this.ackTimeoutMs} ms (WAIT); re-asserted if a failover loses it`;
    } else {
      this.ackProblem = '';
    }
  }

  /** WAIT on each connection again: once a replica has every earlier write, the unacknowledged ban is safe. */
  private async confirmAck(nodes: Array<Redis>): Promise<void> {
    if (this.replicas === 0) {
      this.ackProblem = '';
      return;
    }
    const acked = await Promise.all(nodes.map((n) => n.wait(1, this.ackTimeoutMs)));
    if (acked.every((n) => n >= 1)) this.ackProblem = '';
  }

  async createBan(target: string, windowSeconds: number, make: (count: number) => Ban, replace: boolean): Promise<{ ban: Ban; created: boolean }> {
    this.historyWindowSeconds = Math.max(this.historyWindowSeconds, windowSeconds);
    const k = this.keys.ban(target);
    const histTtl = Math.max(1, Math.ceil(windowSeconds));
    if (this.ready) {
      const local = this.localCount(target);
      let expected = local > 0 ? String(local) : '';
      try {
        for (let attempt = 0; attempt < 8; attempt++) {
          const now = this.clock.now();
          const count = (Number(expected) || 0) + 1;
          const ban = make(count);
          const ttl = Math.max(1, Math.ceil(ban.until - now));
          const p = this.redis.pipeline() as unknown as Scripted & { wait(n: number, ms: number): unknown; exec(): Promise<Array<[Error | null, unknown]> | null> };
          void p.gkCreateBan(k.ban, k.hist, k.index, k.tomb, expected, JSON.stringify(ban), ttl, target, ban.until, count, histTtl, replace ? '1' : '0');
          const waitFor = this.replicas > 0;
          if (waitFor) p.wait(1, this.ackTimeoutMs);
          const res = (await p.exec()) ?? [];
          const [err, reply] = res[0] ?? [new Error('no reply'), null];
          if (err) throw err;
          const [status, value] = reply as [string, string];
          if (status === 'exists') {
            const cur = activeBan(value, now);
            if (!cur) continue;
            this.remember(cur, windowSeconds);
            return { ban: cur, created: false };
          }
          if (status === 'retry') {
            expected = value;
            continue;
          }
          this.writeProblem = '';
          if (waitFor) this.noteAck(res[1], target);
          this.remember(ban, windowSeconds);
          this.emit({ type: 'ban', ban });
          this.publish({ type: 'ban', ban });
          return { ban, created: true };
        }
        throw new Error('ban decision did not settle after 8 attempts');
      } catch (err) {
        this.noteWriteError(err);
      }
    }
    // Redis away: decide from this instance's memory of the target's bans, write when it is back.
    const ban = make(this.localCount(target) + 1);
    this.remember(ban, windowSeconds);
    this.queue({ type: 'ban', ban, windowSeconds });
    this.emit({ type: 'ban', ban });
    return { ban, created: true };
  }

  /** Writes a ban decided earlier with its original expiry (see ASSERT_BAN). */
  private async assertBan(ban: Ban, windowSeconds: number, unbanAllAt: number): Promise<string> {
    const ttl = Math.ceil(ban.until - this.clock.now());
    if (ttl <= 0) return 'expired';
    const k: BanKeys = this.keys.ban(ban.target);
    // A ban heard of (not made here) keeps its history for the window this instance uses, or at least as long as the ban.
    const window = Math.max(windowSeconds || this.historyWindowSeconds, ttl / 1000);
    return this.scripted.gkAssertBan(k.ban, k.hist, k.index, k.tomb, JSON.stringify(ban), ttl, ban.target, ban.until, ban.count, Math.max(1, Math.ceil(window)), ban.since, unbanAllAt);
  }

  private async unbanAllAt(): Promise<number> {
    return Number(await this.redis.get(this.keys.unbanAll)) || 0;
  }

  private async write(op: PendingOp): Promise<void> {
    if (op.type === 'ban') {
      const r = await this.assertBan(op.ban, op.windowSeconds, await this.unbanAllAt());
      if (r === 'unbanned') this.known.delete(op.ban.target);
      if (r === 'ok') this.publish(op);
      return;
    }
    if (op.type === 'unban') await this.removeNow(op.target, op.at);
    else await this.removeAllNow(op.at);
    this.publish(op.type === 'unban' ? { type: 'unban', target: op.target } : { type: 'unban-all' });
  }

  private queue(op: PendingOp): void {
    if (op.type === 'unban-all') this.pending.length = 0;
    this.pending.push(op);
    // Bound the queue: a very long outage keeps the newest operations.
    if (this.pending.length > PENDING_MAX) this.pending.splice(0, this.pending.length - PENDING_MAX);
  }

  private async flushPending(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length > 0 && this.ready && !this.closed) {
        await this.write(this.pending[0]!);
        this.pending.shift();
        if (this.pending.length === 0) this.writeProblem = '';
      }
    } catch (err) {
      this.noteWriteError(err);
    } finally {
      this.flushing = false;
    }
  }

  /** Bans of the layout before sharding: written into the shards once, then the old index is dropped. */
  private async migrateLegacy(): Promise<void> {
    const idx = this.keys.legacyIndex;
    if ((await this.redis.type(idx)) !== 'zset') return;
    const now = this.clock.now();
    for (const t of await this.redis.zrangebyscore(idx, now, '+inf')) {
      const ban = activeBan(await this.redis.get(this.keys.legacyBan(t)), now);
      if (ban) await this.assertBan(ban, 0, 0);
    }
    await this.redis.del(idx);
  }

  async addBan(ban: Ban): Promise<void> {
    this.remember(ban, 0);
    this.emit({ type: 'ban', ban });
    const op: PendingOp = { type: 'ban', ban, windowSeconds: 0 };
    if (!this.ready) return this.queue(op);
    try {
      const k = this.keys.ban(ban.target);
      const ttl = Math.ceil(ban.until - this.clock.now());
      if (ttl <= 0) return;
      await this.redis.multi().set(k.ban, JSON.stringify(ban), 'PX', ttl).zadd(k.index, ban.until, ban.target).del(k.tomb).exec();
      this.publish(op);
    } catch (err) {
      this.noteWriteError(err);
      this.queue(op);
    }
  }

  private async removeNow(target: string, at: number): Promise<boolean> {
    const k = this.keys.ban(target);
    return (await this.scripted.gkRemoveBan(k.ban, k.index, k.tomb, target, at, TOMBSTONE_MS)) === 1;
  }

  private async removeAllNow(at: number): Promise<number> {
    await this.redis.set(this.keys.unbanAll, String(at));
    const now = this.clock.now();
    const counts = await Promise.all(
      Array.from({ length: BAN_SHARDS }, async (_, shard) => {
        const index = this.keys.shardIndex(shard);
        const targets = await this.redis.zrangebyscore(index, now, '+inf');
        const m = this.redis.multi();
        for (const t of targets) m.del(this.keys.banKeyInShard(shard, t));
        m.del(index);
        await m.exec();
        return targets.length;
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  async removeBan(target: string): Promise<boolean> {
    this.known.delete(target);
    this.emit({ type: 'unban', target });
    const at = this.clock.now();
    if (this.ready) {
      try {
        const had = await this.removeNow(target, at);
        this.publish({ type: 'unban', target });
        return had;
      } catch (err) {
        this.noteWriteError(err);
      }
    }
    this.queue({ type: 'unban', target, at });
    return false;
  }

  async removeAllBans(): Promise<number> {
    this.known.clear();
    this.emit({ type: 'unban-all' });
    const at = this.clock.now();
    if (this.ready) {
      try {
        const n = await this.removeAllNow(at);
        this.publish({ type: 'unban-all' });
        return n;
      } catch (err) {
        this.noteWriteError(err);
      }
    }
    this.queue({ type: 'unban-all', at });
    return 0;
  }

  async getBan(target: string): Promise<Ban | null> {
    const now = this.clock.now();
    // Not yet flushed (Redis was away): the newest queued operation on this target decides.
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const op = this.pending[i]!;
      if (op.type === 'unban-all' || (op.type === 'unban' && op.target === target)) return null;
      if (op.type === 'ban' && op.ban.target === target) return op.ban.until > now ? op.ban : null;
    }
    return activeBan(await this.redis.get(this.keys.ban(target).ban), now);
  }

  /**
   * Active bans: every shard's index, read and pruned. A ban this instance made or holds that the store
   * lacks (lost in a failover) is written again here with its original expiry, unless it was lifted.
   */
  async listBans(): Promise<Ban[]> {
    const now = this.clock.now();
    void this.refreshReplicas().catch(() => undefined);
    const unbanAllAt = await this.unbanAllAt();
    const shards = await Promise.all(
      Array.from({ length: BAN_SHARDS }, async (_, shard) => {
        const index = this.keys.shardIndex(shard);
        await this.redis.zremrangebyscore(index, '-inf', now);
        const targets = await this.redis.zrangebyscore(index, now, '+inf');
        const out: Ban[] = [];
        for (let i = 0; i < targets.length; i += 500) {
          const chunk = targets.slice(i, i + 500);
          const values = await this.redis.mget(...chunk.map((t) => this.keys.banKeyInShard(shard, t)));
          for (const v of values) {
            const ban = activeBan(v, now);
            if (ban) out.push(ban);
          }
        }
        return out;
      }),
    );
    const out = shards.flat();
    const listed = new Set(out.map((b) => b.target));
    for (const b of out) if (!this.known.has(b.target)) this.remember(b, 0);
    const queued = new Set<string>();
    for (const op of this.pending) {
      if (op.type === 'ban' && op.ban.until > now) {
        out.push(op.ban);
        queued.add(op.ban.target);
      }
    }
    for (const [target, { ban, windowSeconds }] of this.known) {
      if (ban.until <= now) {
        this.known.delete(target);
        continue;
      }
      if (listed.has(target) || queued.has(target) || ban.until - now < REASSERT_MARGIN_MS) continue;
      let r = 'error';
      try {
        r = await this.assertBan(ban, windowSeconds, unbanAllAt);
      } catch (err) {
        this.noteWriteError(err);
      }
      if (r === 'unbanned') {
        this.known.delete(target);
        continue;
      }
      if (r === 'ok') {
        this.reasserted++;
        this.publish({ type: 'ban', ban });
      }
      out.push(ban);
    }
    return out;
  }

  async recordBan(target: string, windowSeconds: number): Promise<number> {
    const count = await this.scripted.gkRecordBan(this.keys.ban(target).hist, Math.max(1, Math.ceil(windowSeconds)));
    this.rememberCount(target, count, windowSeconds);
    return count;
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
    if (this.pending.length > 0) problems.push(`${this.pending.length} ban write(s) waiting for redis`);
    if (this.writeProblem) problems.push(this.writeProblem);
    if (this.ackProblem) problems.push(this.ackProblem);
    const ok = problems.length === 0;
    return {
      backend: 'redis',
      ok,
      detail: ok ? `connected (${this.kind})` : problems.join('; '),
      pendingWrites: this.pending.length,
      replicas: this.replicas,
      reasserted: this.reasserted,
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
