import type { Clock } from '../clock.js';
import type { Ban, BanEvent } from './ban.js';
import { boundedLimiter, ExpiringMap } from './bounded-memory.js';
import { RateLimiterCounter } from './rate-limiter-counter.js';
import type { CounterSpec, FailureCounter, Store, StoreHealth } from './store.js';

/**
 * The embedded store for a single instance (no `redis` in the config). Expiry is checked against the
 * injected clock when entries are read and swept periodically, never with one long setTimeout per
 * entry (Node timers overflow past 24.8 days; ban histories last up to 30 days).
 *
 * Every per-key structure has a ceiling (memory.*): counters keep at most memory.maxCounterKeys
 * keys each (full: the stalest key with the fewest failures is forgotten), flags and ban histories
 * memory.maxFlags, bans memory.maxBans (full: the one expiring soonest goes).
 */
export class MemoryStore implements Store {
  private readonly bans: ExpiringMap<Ban>;
  private readonly history: ExpiringMap<number>;
  private readonly flags: ExpiringMap<true>;
  private readonly values = new Map<string, string>();
  private readonly listeners = new Set<(e: BanEvent) => void>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly clock: Clock, sweepEveryMs = 60_000, limits: { maxFlags?: number; maxBans?: number } = {}) {
    this.bans = new ExpiringMap(limits.maxBans ?? 1_000_000);
    this.history = new ExpiringMap(limits.maxFlags ?? 250_000);
    this.flags = new ExpiringMap(limits.maxFlags ?? 250_000);
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
  }

  counter(spec: CounterSpec): FailureCounter {
    return new RateLimiterCounter(boundedLimiter(`counter:${spec.name}`, { keyPrefix: spec.name, points: spec.points, duration: spec.durationSeconds }));
  }

  /** Entries held per structure, for gatekeeper_tracked_keys. */
  trackedKeys(): Array<{ kind: string; size: number }> {
    return [
      { kind: 'store-bans', size: this.bans.size },
      { kind: 'store-ban-history', size: this.history.size },
      { kind: 'store-flags', size: this.flags.size },
    ];
  }

  private emit(event: BanEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // a listener's failure must not stop the others
      }
    }
  }

  async addBan(ban: Ban): Promise<void> {
    this.bans.set(ban.target, ban, ban.until, this.clock.now());
    this.emit({ type: 'ban', ban });
  }

  async removeBan(target: string): Promise<boolean> {
    const had = this.bans.delete(target);
    this.emit({ type: 'unban', target });
    return had;
  }

  async removeAllBans(): Promise<number> {
    const n = (await this.listBans()).length;
    this.bans.clear();
    this.emit({ type: 'unban-all' });
    return n;
  }

  async listBans(): Promise<Ban[]> {
    const out: Ban[] = [];
    for (const [, ban] of this.bans.entries(this.clock.now())) out.push(ban);
    return out;
  }

  async getBan(target: string): Promise<Ban | null> {
    return this.bans.get(target, this.clock.now()) ?? null;
  }

  async recordBan(target: string, windowSeconds: number): Promise<number> {
    const now = this.clock.now();
    const count = (this.history.get(target, now) ?? 0) + 1;
    this.history.set(target, count, now + windowSeconds * 1000, now);
    return count;
  }

  async createBan(target: string, windowSeconds: number, make: (count: number) => Ban, replace: boolean): Promise<{ ban: Ban; created: boolean }> {
    const current = replace ? null : await this.getBan(target);
    if (current) return { ban: current, created: false };
    const ban = make(await this.recordBan(target, windowSeconds));
    await this.addBan(ban);
    return { ban, created: true };
  }

  subscribe(listener: (event: BanEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async setFlag(key: string, ttlSeconds: number): Promise<void> {
    const now = this.clock.now();
    this.flags.set(key, true, now + ttlSeconds * 1000, now);
  }

  async hasFlag(key: string): Promise<boolean> {
    return this.flags.get(key, this.clock.now()) === true;
  }

  async getValue(key: string): Promise<string | null> {
    return this.values.get(key) ?? null;
  }

  async setValue(key: string, value: string): Promise<void> {
    this.values.set(key, value);
  }

  health(): StoreHealth {
    return { backend: 'memory', ok: true, detail: 'in-memory store (single instance)', pendingWrites: 0 };
  }

  /** Drops expired entries; exposed for tests. */
  sweep(): void {
    const now = this.clock.now();
    this.bans.sweep(now);
    this.history.sweep(now);
    this.flags.sweep(now);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.listeners.clear();
  }
}
