import type { Clock } from '../clock.js';

/** A runtime allowlist entry (`gatekeeper allow add`): never counted, never banned. Times in ms since the epoch. */
export interface AllowEntry {
  /** Canonical network or address (`203.0.113.0/24`, `2001:db8::/48`, `192.0.2.7`). */
  readonly cidr: string;
  readonly reason: string;
  readonly since: number;
  /** null: until removed. */
  readonly until: number | null;
}

/**
 * The runtime part of the allowlist, shared by every instance through the store (config
 * `jail.ignoreip` stays the static part). Kept apart from the ban Store on purpose: a small
 * interface of its own, with a memory and a Redis implementation and one contract suite.
 */
export interface AllowlistStore {
  /** Adds or replaces the entry for `entry.cidr`. */
  add(entry: AllowEntry): Promise<void>;
  /** True when an entry was removed. */
  remove(cidr: string): Promise<boolean>;
  /** Unexpired entries, oldest first. */
  list(): Promise<AllowEntry[]>;
  /** Called when any instance changed the list. Returns an unsubscribe function. */
  subscribe(listener: () => void): () => void;
  close(): Promise<void>;
}

/** Entries per allowlist: bounds memory and the per-request lookup; past it, `add` is refused. */
export const MAX_ALLOW_ENTRIES = 10_000;

export class AllowlistFullError extends Error {
  constructor() {
    super(`the runtime allowlist holds ${MAX_ALLOW_ENTRIES} entries, its limit: remove some, or use wider networks`);
  }
}

/** For a single instance (no `redis`): entries live in this process. */
export class MemoryAllowlist implements AllowlistStore {
  private readonly entries = new Map<string, AllowEntry>();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly clock: Clock) {}

  private changed(): void {
    for (const l of this.listeners) l();
  }

  async add(entry: AllowEntry): Promise<void> {
    if (!this.entries.has(entry.cidr) && (await this.list()).length >= MAX_ALLOW_ENTRIES) throw new AllowlistFullError();
    this.entries.set(entry.cidr, entry);
    this.changed();
  }

  async remove(cidr: string): Promise<boolean> {
    const had = this.entries.delete(cidr);
    if (had) this.changed();
    return had;
  }

  async list(): Promise<AllowEntry[]> {
    const now = this.clock.now();
    for (const [k, e] of this.entries) if (e.until !== null && e.until <= now) this.entries.delete(k);
    return [...this.entries.values()].sort((a, b) => a.since - b.since);
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
