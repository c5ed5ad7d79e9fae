import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';

/*
 * Memory bounded by design for the in-process per-key structures an attacker can grow by sending
 * distinct keys (account names, addresses): a ceiling in entries and, when it is reached, a policy
 * that keeps the protection working. rate-limiter-flexible's own memory storage keeps every key
 * until its window ends, with a timer each: 2 million distinct account names in an account-name
 * flood cost about 630 MB and killed the process (issue 17).
 */

/** How many entries from the oldest end are looked at to choose one to forget (O(1) per insert). */
const SAMPLE = 8;

interface CounterRecord {
  value: number;
  /** ms since the epoch; null: never expires. */
  expiresAt: number | null;
}

/**
 * A drop-in for rate-limiter-flexible's MemoryStorage (incrby/set/get/delete, `_storage` for its
 * dump) with at most `maxKeys` keys and no timer per key. Full: among the oldest few keys, an
 * expired one is forgotten, else the one with the fewest points, and the others move to the young
 * end. A key a real attack is counting up (several failures) survives a flood of one-failure keys;
 * what is forgotten is a key that had one failure, which costs at most one extra attempt.
 */
export class BoundedMemoryStorage {
  readonly _storage = new Map<string, CounterRecord>();
  /** Keys forgotten because the ceiling was reached (a counter). */
  evicted = 0;

  constructor(private readonly maxKeys: number) {}

  private live(record: CounterRecord, now: number): boolean {
    return record.expiresAt === null || record.expiresAt > now;
  }

  incrby(key: string, value: number, durationSec: number): RateLimiterRes {
    const record = this._storage.get(key);
    if (record) {
      const now = Date.now();
      if (this.live(record, now)) {
        record.value += value;
        return new RateLimiterRes(0, record.expiresAt === null ? -1 : record.expiresAt - now, record.value, false);
      }
    }
    return this.set(key, value, durationSec);
  }

  set(key: string, value: number, durationSec: number): RateLimiterRes {
    const now = Date.now();
    const durationMs = durationSec * 1000;
    // Re-inserted at the young end: Map order is the order of (re)start.
    if (!this._storage.delete(key)) this.makeRoom(now);
    this._storage.set(key, { value, expiresAt: durationMs > 0 ? now + durationMs : null });
    return new RateLimiterRes(0, durationMs === 0 ? -1 : durationMs, value, true);
  }

  get(key: string): RateLimiterRes | null {
    const record = this._storage.get(key);
    if (!record) return null;
    const now = Date.now();
    if (!this.live(record, now)) {
      this._storage.delete(key);
      return null;
    }
    return new RateLimiterRes(0, record.expiresAt === null ? -1 : record.expiresAt - now, record.value, false);
  }

  delete(key: string): boolean {
    return this._storage.delete(key);
  }

  get size(): number {
    return this._storage.size;
  }

  /** Before a new key: drops an expired oldest key, and when full forgets one (see the class doc). */
  private makeRoom(now: number): void {
    const storage = this._storage;
    const oldest = storage.entries().next();
    if (!oldest.done && !this.live(oldest.value[1], now)) storage.delete(oldest.value[0]);
    if (storage.size < this.maxKeys) return;
    const sample: Array<[string, CounterRecord]> = [];
    for (const entry of storage) {
      sample.push(entry);
      if (sample.length === SAMPLE) break;
    }
    let victim = 0;
    for (let i = 0; i < sample.length; i++) {
      if (!this.live(sample[i]![1], now)) { victim = i; break; }
      if (sample[i]![1].value < sample[victim]![1].value) victim = i;
    }
    for (let i = 0; i < sample.length; i++) {
      const [k, r] = sample[i]!;
      storage.delete(k);
      if (i !== victim) storage.set(k, r); // survivors move to the young end
    }
    this.evicted++;
  }
}

/** RateLimiterMemory on a BoundedMemoryStorage: usable wherever rate-limiter-flexible takes a memory limiter (also as an insurance limiter). */
export class BoundedRateLimiterMemory extends RateLimiterMemory {
  readonly storage: BoundedMemoryStorage;

  constructor(opts: ConstructorParameters<typeof RateLimiterMemory>[0], maxKeys: number) {
    super(opts);
    this.storage = new BoundedMemoryStorage(maxKeys);
    (this as unknown as { _memoryStorage: BoundedMemoryStorage })._memoryStorage = this.storage;
  }
}

/**
 * The ceiling every in-memory failure counter gets (memory.maxCounterKeys), set once at startup,
 * and the counters made, by kind, for gatekeeper_tracked_keys. A store makes a new counter when
 * the policy is reconfigured; the newest of a kind replaces the one before.
 */
export const counterLimits = { maxKeys: 250_000 };
const counters = new Map<string, BoundedMemoryStorage>();

/** A bounded in-memory limiter, listed under `kind` (e.g. `counter:ip`, `insurance:account`). */
export function boundedLimiter(kind: string, opts: ConstructorParameters<typeof RateLimiterMemory>[0]): BoundedRateLimiterMemory {
  const limiter = new BoundedRateLimiterMemory(opts, counterLimits.maxKeys);
  counters.set(kind, limiter.storage);
  return limiter;
}

/** Keys held by each bounded counter, by kind. */
export function trackedCounterKeys(): Array<{ kind: string; size: number; evicted: number }> {
  return [...counters].map(([kind, s]) => ({ kind, size: s.size, evicted: s.evicted }));
}

/**
 * A Map with a ceiling whose entries carry an expiry: when full, among the oldest few entries an
 * expired one goes, else the one expiring soonest. For flags (known-good pairs), ban histories and
 * in-memory bans.
 */
export class ExpiringMap<V> {
  private readonly map = new Map<string, { value: V; expiresAt: number }>();
  evicted = 0;

  constructor(public maxEntries: number) {}

  get(key: string, now: number): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= now) {
      this.map.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: V, expiresAt: number, now: number): void {
    if (!this.map.delete(key) && this.map.size >= this.maxEntries) this.evict(now);
    this.map.set(key, { value, expiresAt });
  }

  delete(key: string): boolean {
    return this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }

  /** Live entries (expired ones are dropped on the way). */
  *entries(now: number): IterableIterator<[string, V]> {
    for (const [k, e] of this.map) {
      if (e.expiresAt <= now) this.map.delete(k);
      else yield [k, e.value];
    }
  }

  sweep(now: number): void {
    for (const [k, e] of this.map) if (e.expiresAt <= now) this.map.delete(k);
  }

  get size(): number {
    return this.map.size;
  }

  private evict(now: number): void {
    let victim: string | undefined;
    let soonest = Infinity;
    let n = 0;
    for (const [k, e] of this.map) {
      if (e.expiresAt <= now) { victim = k; break; }
      if (e.expiresAt < soonest) { soonest = e.expiresAt; victim = k; }
      if (++n === SAMPLE) break;
    }
    if (victim !== undefined) this.map.delete(victim);
    this.evicted++;
  }
}
