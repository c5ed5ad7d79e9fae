import type { Ban, BanEvent } from './ban.js';

/** Active bans, shared by every gatekeeper that uses the same store. */
export interface BanStore {
  addBan(ban: Ban): Promise<void>;
  /** True when a ban was removed. */
  removeBan(target: string): Promise<boolean>;
  /** Returns how many bans were removed. */
  removeAllBans(): Promise<number>;
  /** Active (unexpired) bans. */
  listBans(): Promise<Ban[]>;
  /** The active ban stored under exactly `target`, if any (one read; no event needed). */
  getBan(target: string): Promise<Ban | null>;
  /**
   * Counts one more ban of `target` in its history (kept for `windowSeconds` after the last ban)
   * and returns the number of bans including this one. Drives bantimeIncrement and escalation.
   */
  recordBan(target: string, windowSeconds: number): Promise<number>;
  /**
   * Decides and stores one ban of `target`, atomically across every instance sharing the store: the
   * history is counted once and `make(count)` builds the ban for that count (count includes this ban).
   * Unless `replace` (a manual ban), an active ban stored already wins: nothing is counted and that ban
   * comes back with `created: false` (another instance banned the same offence first).
   */
  createBan(target: string, windowSeconds: number, make: (count: number) => Ban, replace: boolean): Promise<{ ban: Ban; created: boolean }>;
  /** Ban/unban events from this and every other instance. Returns an unsubscribe function. */
  subscribe(listener: (event: BanEvent) => void): () => void;
}

/** Small facts with a lifetime (known-good account/IP pairs) and durable values (log positions). */
export interface StateStore {
  setFlag(key: string, ttlSeconds: number): Promise<void>;
  hasFlag(key: string): Promise<boolean>;
  getValue(key: string): Promise<string | null>;
  setValue(key: string, value: string): Promise<void>;
}

/** Outcome of counting: "limited" is a value, never an exception. */
export interface CountResult {
  /** False when the count went past the limit (nothing was added then: see FailureCounter.consume). */
  readonly allowed: boolean;
  /** Points in the current window after this call. */
  readonly consumed: number;
  /** Milliseconds until the window resets. */
  readonly msBeforeReset: number;
}

/** A failure counter: `points` per `durationSeconds` window, per key. */
export interface FailureCounter {
  /** Adds `points`; when that would pass the limit nothing is kept and `allowed` is false. */
  consume(key: string, points: number): Promise<CountResult>;
  /** Adds `points` even past the limit (a failure that already happened must be counted). */
  add(key: string, points: number): Promise<CountResult>;
  reward(key: string, points: number): Promise<void>;
  get(key: string): Promise<number>;
  delete(key: string): Promise<void>;
}

export interface StoreHealth {
  readonly backend: 'memory' | 'redis';
  readonly ok: boolean;
  readonly detail: string;
  /** Bans made while the backend was unreachable, waiting to be written. */
  readonly pendingWrites: number;
  /** Replicas a ban write waits for (Redis WAIT); 0 when the master has none. */
  readonly replicas?: number;
  /** Bans this instance wrote again after the store had lost them (failover), since start. */
  readonly reasserted?: number;
}

export interface CounterSpec {
  readonly name: string;
  readonly points: number;
  readonly durationSeconds: number;
}

/** What the composition root hands to the policy layer. */
export interface Store extends BanStore, StateStore {
  counter(spec: CounterSpec): FailureCounter;
  health(): StoreHealth;
  close(): Promise<void>;
}
