import type { Cluster, Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import type { Ban, BanEvent } from './ban.js';
import { BAN_SHARDS, type BanKeys, type RedisKeys } from './redis-keys.js';

type PendingOp = { type: 'ban'; ban: Ban; windowSeconds: number } | { type: 'unban'; target: string; at: number } | { type: 'unban-all'; at: number };

/** The scripts of redis-scripts.ts, defined on the client (and its pipelines) by defineCommand. */
export interface Scripted {
  gkCreateBan(...args: Array<string | number>): Promise<[string, string]>;
  gkAssertBan(...args: Array<string | number>): Promise<string>;
  gkRemoveBan(...args: Array<string | number>): Promise<number>;
  gkRecordBan(...args: Array<string | number>): Promise<number>;
}

/** What the ban half needs from the Redis store it belongs to. */
export interface BanLink {
  readonly redis: Redis | Cluster;
  readonly scripted: Scripted;
  readonly keys: RedisKeys;
  readonly clock: Clock;
  readonly ackTimeoutMs: number;
  /** Connected and answering. */
  ready(): boolean;
  closed(): boolean;
  /** Replicas a ban write waits for (0: no WAIT). */
  replicas(): number;
  /** Tells this instance's listeners. */
  emit(event: BanEvent): void;
  /** Tells the other instances (best effort). */
  publish(event: BanEvent): void;
  noteError(message: string): void;
}

/** Bounds of this instance's memory of bans and histories (re-assertion after a failover, counts while Redis is away). */
const MAX_KNOWN = 200_000;
/** An unban's tombstone outlives any ban that could be re-asserted over it (bans are capped at maxtime). */
const TOMBSTONE_MS = 400 * 86400_000;
/** A ban this close to its end is not re-asserted (clock differences between instances). */
const REASSERT_MARGIN_MS = 2000;
const PENDING_MAX = 100_000;

/**
 * The ban half of the Redis store (see RedisStore): decide-and-write in one script, WAIT for a
 * replica, queue while Redis is away, re-assert what the store lost, list the 16 shards.
 */
export class RedisBans {
  private readonly pending: PendingOp[] = [];
  /** Active bans this instance made or heard of: re-asserted when the store lost them. */
  private readonly known = new Map<string, { ban: Ban; windowSeconds: number }>();
  /** This instance's last known ban count per target, for bans decided while Redis is away. */
  private readonly localHist = new Map<string, { count: number; expiresAt: number }>();
  /** Why the last ban write failed ('' once a write succeeds). */
  private writeProblem = '';
  /** A ban write no replica acknowledged ('' once a later WAIT covers it). */
  private ackProblem = '';
  /** The longest history window createBan was given (every instance has the same config): used for bans heard of. */
  private historyWindowSeconds = 0;
  private flushing = false;
  private migrated = false;
  /** Bans written again after the store had lost them, since start. */
  reasserted = 0;

  constructor(private readonly l: BanLink) {}

  get pendingWrites(): number {
    return this.pending.length;
  }

  /** What is wrong with ban writes now (empty: nothing). */
  problems(): string[] {
    return [
      ...(this.pending.length > 0 ? [`${this.pending.length} ban write(s) waiting for redis`] : []),
      ...(this.writeProblem ? [this.writeProblem] : []),
      ...(this.ackProblem ? [this.ackProblem] : []),
    ];
  }

  get unacknowledged(): boolean {
    return this.ackProblem !== '';
  }

  /** Once connected: the old layout moved (first time), queued writes flushed. */
  async onReady(): Promise<void> {
    if (!this.migrated) {
      this.migrated = true;
      await this.migrateLegacy().catch(() => undefined);
    }
    await this.flushPending();
  }

  /** Another instance's event: keep the memory of active bans in step. */
  heard(e: BanEvent): void {
    if (e.type === 'ban') this.remember(e.ban, 0);
    else if (e.type === 'unban') this.known.delete(e.target);
    else if (e.type === 'unban-all') this.known.clear();
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
    this.localHist.set(target, { count, expiresAt: this.l.clock.now() + windowSeconds * 1000 });
  }

  private localCount(target: string): number {
    const h = this.localHist.get(target);
    return h && h.expiresAt > this.l.clock.now() ? h.count : 0;
  }

  private noteWriteError(err: unknown): void {
    this.l.noteError((err as Error).message);
    this.writeProblem = `ban write failed: ${(err as Error).message}`;
  }

  /** Checks WAIT's answer: fewer replicas than asked (or no answer) means the write could vanish in a failover. */
  private noteAck(reply: [Error | null, unknown] | undefined, target: string): void {
    if (!reply || reply[0] || typeof reply[1] !== 'number' || reply[1] < 1) {
      this.ackProblem = `ban of ${target} not acknowledged by a replica within ${this.l.ackTimeoutMs} ms (WAIT); re-asserted if a failover loses it`;
    } else {
      this.ackProblem = '';
    }
  }

  /** WAIT on each connection again: once a replica has every earlier write, the unacknowledged ban is safe. */
  async confirmAck(nodes: Array<Redis>): Promise<void> {
    if (this.l.replicas() === 0) {
      this.ackProblem = '';
      return;
    }
    const acked = await Promise.all(nodes.map((n) => n.wait(1, this.l.ackTimeoutMs)));
    if (acked.every((n) => n >= 1)) this.ackProblem = '';
  }

  async createBan(target: string, windowSeconds: number, make: (count: number) => Ban, replace: boolean): Promise<{ ban: Ban; created: boolean }> {
    this.historyWindowSeconds = Math.max(this.historyWindowSeconds, windowSeconds);
    const k = this.l.keys.ban(target);
    const histTtl = Math.max(1, Math.ceil(windowSeconds));
    if (this.l.ready()) {
      const local = this.localCount(target);
      let expected = local > 0 ? String(local) : '';
      try {
        for (let attempt = 0; attempt < 8; attempt++) {
          const now = this.l.clock.now();
          const count = (Number(expected) || 0) + 1;
          const ban = make(count);
          const ttl = Math.max(1, Math.ceil(ban.until - now));
          const p = this.l.redis.pipeline() as unknown as Scripted & { wait(n: number, ms: number): unknown; exec(): Promise<Array<[Error | null, unknown]> | null> };
          void p.gkCreateBan(k.ban, k.hist, k.index, k.tomb, expected, JSON.stringify(ban), ttl, target, ban.until, count, histTtl, replace ? '1' : '0');
          const waitFor = this.l.replicas() > 0;
          if (waitFor) p.wait(1, this.l.ackTimeoutMs);
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
          this.l.emit({ type: 'ban', ban });
          this.l.publish({ type: 'ban', ban });
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
    this.l.emit({ type: 'ban', ban });
    return { ban, created: true };
  }

  /** Writes a ban decided earlier with its original expiry (see ASSERT_BAN). */
  private async assertBan(ban: Ban, windowSeconds: number, unbanAllAt: number): Promise<string> {
    const ttl = Math.ceil(ban.until - this.l.clock.now());
    if (ttl <= 0) return 'expired';
    const k: BanKeys = this.l.keys.ban(ban.target);
    // A ban heard of (not made here) keeps its history for the window this instance uses, or at least as long as the ban.
    const window = Math.max(windowSeconds || this.historyWindowSeconds, ttl / 1000);
    return this.l.scripted.gkAssertBan(k.ban, k.hist, k.index, k.tomb, JSON.stringify(ban), ttl, ban.target, ban.until, ban.count, Math.max(1, Math.ceil(window)), ban.since, unbanAllAt);
  }

  private async unbanAllAt(): Promise<number> {
    return Number(await this.l.redis.get(this.l.keys.unbanAll)) || 0;
  }

  private async write(op: PendingOp): Promise<void> {
    if (op.type === 'ban') {
      const r = await this.assertBan(op.ban, op.windowSeconds, await this.unbanAllAt());
      if (r === 'unbanned') this.known.delete(op.ban.target);
      if (r === 'ok') this.l.publish(op);
      return;
    }
    if (op.type === 'unban') await this.removeNow(op.target, op.at);
    else await this.removeAllNow(op.at);
    this.l.publish(op.type === 'unban' ? { type: 'unban', target: op.target } : { type: 'unban-all' });
  }

  private queue(op: PendingOp): void {
    if (op.type === 'unban-all') this.pending.length = 0;
    this.pending.push(op);
    // Bound the queue: a very long outage keeps the newest operations.
    if (this.pending.length > PENDING_MAX) this.pending.splice(0, this.pending.length - PENDING_MAX);
  }

  async flushPending(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length > 0 && this.l.ready() && !this.l.closed()) {
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
  async migrateLegacy(): Promise<void> {
    const idx = this.l.keys.legacyIndex;
    if ((await this.l.redis.type(idx)) !== 'zset') return;
    const now = this.l.clock.now();
    for (const t of await this.l.redis.zrangebyscore(idx, now, '+inf')) {
      const ban = activeBan(await this.l.redis.get(this.l.keys.legacyBan(t)), now);
      if (ban) await this.assertBan(ban, 0, 0);
    }
    await this.l.redis.del(idx);
  }

  async addBan(ban: Ban): Promise<void> {
    this.remember(ban, 0);
    this.l.emit({ type: 'ban', ban });
    const op: PendingOp = { type: 'ban', ban, windowSeconds: 0 };
    if (!this.l.ready()) return this.queue(op);
    try {
      const k = this.l.keys.ban(ban.target);
      const ttl = Math.ceil(ban.until - this.l.clock.now());
      if (ttl <= 0) return;
      await this.l.redis.multi().set(k.ban, JSON.stringify(ban), 'PX', ttl).zadd(k.index, ban.until, ban.target).del(k.tomb).exec();
      this.l.publish(op);
    } catch (err) {
      this.noteWriteError(err);
      this.queue(op);
    }
  }

  private async removeNow(target: string, at: number): Promise<boolean> {
    const k = this.l.keys.ban(target);
    return (await this.l.scripted.gkRemoveBan(k.ban, k.index, k.tomb, target, at, TOMBSTONE_MS)) === 1;
  }

  private async removeAllNow(at: number): Promise<number> {
    await this.l.redis.set(this.l.keys.unbanAll, String(at));
    const now = this.l.clock.now();
    const counts = await Promise.all(
      Array.from({ length: BAN_SHARDS }, async (_, shard) => {
        const index = this.l.keys.shardIndex(shard);
        const targets = await this.l.redis.zrangebyscore(index, now, '+inf');
        const m = this.l.redis.multi();
        for (const t of targets) m.del(this.l.keys.banKeyInShard(shard, t));
        m.del(index);
        await m.exec();
        return targets.length;
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  async removeBan(target: string): Promise<boolean> {
    this.known.delete(target);
    this.l.emit({ type: 'unban', target });
    const at = this.l.clock.now();
    if (this.l.ready()) {
      try {
        const had = await this.removeNow(target, at);
        this.l.publish({ type: 'unban', target });
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
    this.l.emit({ type: 'unban-all' });
    const at = this.l.clock.now();
    if (this.l.ready()) {
      try {
        const n = await this.removeAllNow(at);
        this.l.publish({ type: 'unban-all' });
        return n;
      } catch (err) {
        this.noteWriteError(err);
      }
    }
    this.queue({ type: 'unban-all', at });
    return 0;
  }

  async getBan(target: string): Promise<Ban | null> {
    const now = this.l.clock.now();
    // Not yet flushed (Redis was away): the newest queued operation on this target decides.
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const op = this.pending[i]!;
      if (op.type === 'unban-all' || (op.type === 'unban' && op.target === target)) return null;
      if (op.type === 'ban' && op.ban.target === target) return op.ban.until > now ? op.ban : null;
    }
    return activeBan(await this.l.redis.get(this.l.keys.ban(target).ban), now);
  }

  /**
   * Active bans: every shard's index, read and pruned. A ban this instance made or holds that the store
   * lacks (lost in a failover) is written again here with its original expiry, unless it was lifted.
   */
  async listBans(): Promise<Ban[]> {
    const now = this.l.clock.now();
    const unbanAllAt = await this.unbanAllAt();
    const shards = await Promise.all(
      Array.from({ length: BAN_SHARDS }, async (_, shard) => {
        const index = this.l.keys.shardIndex(shard);
        await this.l.redis.zremrangebyscore(index, '-inf', now);
        const targets = await this.l.redis.zrangebyscore(index, now, '+inf');
        const out: Ban[] = [];
        for (let i = 0; i < targets.length; i += 500) {
          const chunk = targets.slice(i, i + 500);
          const values = await this.l.redis.mget(...chunk.map((t) => this.l.keys.banKeyInShard(shard, t)));
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
        this.l.publish({ type: 'ban', ban });
      }
      out.push(ban);
    }
    return out;
  }

  async recordBan(target: string, windowSeconds: number): Promise<number> {
    const count = await this.l.scripted.gkRecordBan(this.l.keys.ban(target).hist, Math.max(1, Math.ceil(windowSeconds)));
    this.rememberCount(target, count, windowSeconds);
    return count;
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
