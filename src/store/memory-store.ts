import { RateLimiterMemory } from 'rate-limiter-flexible';
import type { Clock } from '../clock.js';
import type { Ban, BanEvent } from './ban.js';
import { RateLimiterCounter } from './rate-limiter-counter.js';
import type { CounterSpec, FailureCounter, Store, StoreHealth } from './store.js';

/**
 * The embedded store for a single instance (no `redis` in the config). Expiry is checked against the
 * injected clock when entries are read and swept periodically, never with one long setTimeout per
 * entry (Node timers overflow past 24.8 days; ban histories last up to 30 days).
 */
export class MemoryStore implements Store {
  private readonly bans = new Map<string, Ban>();
  private readonly history = new Map<string, { count: number; expiresAt: number }>();
  private readonly flags = new Map<string, number>();
  private readonly values = new Map<string, string>();
  private readonly listeners = new Set<(e: BanEvent) => void>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly clock: Clock, sweepEveryMs = 60_000) {
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
  }

  counter(spec: CounterSpec): FailureCounter {
    return new RateLimiterCounter(new RateLimiterMemory({ keyPrefix: spec.name, points: spec.points, duration: spec.durationSeconds }));
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
    this.bans.set(ban.target, ban);
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
    const now = this.clock.now();
    const out: Ban[] = [];
    for (const [target, ban] of this.bans) {
      if (ban.until <= now) this.bans.delete(target);
      else out.push(ban);
    }
    return out;
  }

  async getBan(target: string): Promise<Ban | null> {
    const ban = this.bans.get(target);
    return ban && ban.until > this.clock.now() ? ban : null;
  }

  async recordBan(target: string, windowSeconds: number): Promise<number> {
    const now = this.clock.now();
    const prev = this.history.get(target);
    const count = prev && prev.expiresAt > now ? prev.count + 1 : 1;
    this.history.set(target, { count, expiresAt: now + windowSeconds * 1000 });
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
    this.flags.set(key, this.clock.now() + ttlSeconds * 1000);
  }

  async hasFlag(key: string): Promise<boolean> {
    const exp = this.flags.get(key);
    if (exp === undefined) return false;
    if (exp <= this.clock.now()) {
      this.flags.delete(key);
      return false;
    }
    return true;
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
    for (const [k, b] of this.bans) if (b.until <= now) this.bans.delete(k);
    for (const [k, h] of this.history) if (h.expiresAt <= now) this.history.delete(k);
    for (const [k, e] of this.flags) if (e <= now) this.flags.delete(k);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.listeners.clear();
  }
}
