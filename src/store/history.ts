import type { Clock } from '../clock.js';

/** One failed login kept as evidence of a ban (what this instance saw before it). Times in ms. */
export interface FailureEvidence {
  readonly at: number;
  readonly service: string;
  readonly account?: string;
  readonly failures: number;
}

/** A ban or unban, as `gatekeeper history` and `gatekeeper why` show it. Times in ms since the epoch. */
export interface HistoryEvent {
  readonly at: number;
  readonly action: 'ban' | 'unban' | 'unban-all' | 'split';
  /** The ban key or network; `*` for unban-all. */
  readonly target: string;
  /** What made it: `proxy` or `log` (a rule crossed its limit), or `manual (...)` with the requester. */
  readonly by: string;
  readonly rule?: string;
  readonly service?: string;
  readonly tier?: 'proxy' | 'firewall';
  readonly until?: number;
  readonly count?: number;
  readonly note?: string;
  readonly shadow?: boolean;
  readonly evidence?: readonly FailureEvidence[];
}

export interface HistoryQuery {
  /** Only this target (and unban-all events); all targets when absent. */
  readonly target?: string | undefined;
  /** Only events at or after this time (ms). */
  readonly since?: number | undefined;
  readonly limit: number;
}

/**
 * Bans and unbans kept for `history.keep` (at most `history.maxEvents`), shared through the store.
 * A small interface of its own next to the ban Store, with a memory and a Redis implementation.
 */
export interface HistoryStore {
  append(event: HistoryEvent): Promise<void>;
  /** Newest first. */
  list(query: HistoryQuery): Promise<HistoryEvent[]>;
  close(): Promise<void>;
}

export interface HistoryLimits {
  readonly keepSeconds: number;
  readonly maxEvents: number;
}

/** Evidence entries kept per event: enough to see the pattern, bounded in size. */
export const MAX_EVIDENCE = 10;

/** For a single instance: the newest `maxEvents` events of the last `keepSeconds`, in this process. */
export class MemoryHistory implements HistoryStore {
  private events: HistoryEvent[] = [];

  constructor(private readonly clock: Clock, private readonly limits: HistoryLimits) {}

  async append(event: HistoryEvent): Promise<void> {
    this.events.push(event);
    const cutoff = this.clock.now() - this.limits.keepSeconds * 1000;
    if (this.events.length > this.limits.maxEvents || (this.events[0] && this.events[0].at < cutoff)) {
      this.events = this.events.filter((e) => e.at >= cutoff).slice(-this.limits.maxEvents);
    }
  }

  async list(q: HistoryQuery): Promise<HistoryEvent[]> {
    const cutoff = Math.max(q.since ?? -Infinity, this.clock.now() - this.limits.keepSeconds * 1000);
    const out: HistoryEvent[] = [];
    for (let i = this.events.length - 1; i >= 0 && out.length < q.limit; i--) {
      const e = this.events[i]!;
      if (e.at < cutoff) break;
      if (q.target === undefined || e.target === q.target || e.target === '*') out.push(e);
    }
    return out;
  }

  async close(): Promise<void> {
    this.events = [];
  }
}
