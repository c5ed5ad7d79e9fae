import type { Clock } from '../clock.js';

const HOUR_MS = 3_600_000;
const HOURS = 24;
/** Entries kept per hour for addresses and accounts by default (memory.maxActivityKeys): bounds memory under a botnet. */
const MAX_KEYS_PER_HOUR = 5_000;

interface Bucket {
  start: number;
  services: Map<string, number>;
  addresses: Map<string, number>;
  accounts: Map<string, number>;
}

export interface ActivityReport {
  readonly hours: Array<{ start: string; failures: Record<string, number> }>;
  readonly topAddresses: Array<{ ip: string; failures: number }>;
  readonly topAccounts: Array<{ account: string; failures: number }>;
}

/**
 * Counts `n` more for `key`. Full: among the oldest few keys the one with the fewest failures is
 * forgotten and the others move to the young end, so a flood of one-off names cannot keep a
 * heavy hitter that appears later out of the top list.
 */
function bump(m: Map<string, number>, key: string, n: number, cap: number): void {
  const v = m.get(key);
  if (v !== undefined) {
    m.set(key, v + n);
    return;
  }
  if (m.size >= cap) {
    const sample: Array<[string, number]> = [];
    for (const e of m) {
      sample.push(e);
      if (sample.length === 8) break;
    }
    let victim = 0;
    for (let i = 1; i < sample.length; i++) if (sample[i]![1] < sample[victim]![1]) victim = i;
    for (let i = 0; i < sample.length; i++) {
      m.delete(sample[i]![0]);
      if (i !== victim) m.set(sample[i]![0], sample[i]![1]);
    }
  }
  m.set(key, n);
}

function top<K extends string>(maps: Array<Map<string, number>>, n: number, name: K): Array<Record<K, string> & { failures: number }> {
  const sum = new Map<string, number>();
  for (const m of maps) for (const [k, v] of m) sum.set(k, (sum.get(k) ?? 0) + v);
  return [...sum.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => ({ [name]: k, failures: v }) as Record<K, string> & { failures: number });
}

/**
 * Failed logins of the last 24 hours, per hour and service, plus the most active addresses and
 * targeted accounts, for the status page and `gatekeeper status`. This instance's view only.
 */
export class Activity {
  private buckets: Bucket[] = [];

  constructor(
    private readonly clock: Clock,
    /** Addresses, and accounts, kept per hour (memory.maxActivityKeys). */
    private readonly maxKeysPerHour = MAX_KEYS_PER_HOUR,
  ) {}

  /** Addresses and accounts held over the 24 hours, for gatekeeper_tracked_keys. */
  get size(): number {
    let n = 0;
    for (const b of this.buckets) n += b.addresses.size + b.accounts.size;
    return n;
  }

  private current(): Bucket {
    const start = Math.floor(this.clock.now() / HOUR_MS) * HOUR_MS;
    let b = this.buckets[this.buckets.length - 1];
    if (!b || b.start !== start) {
      b = { start, services: new Map(), addresses: new Map(), accounts: new Map() };
      this.buckets.push(b);
      this.buckets = this.buckets.filter((x) => x.start > start - HOURS * HOUR_MS);
    }
    return b;
  }

  recordFailure(service: string, ip: string, account: string | undefined, n = 1): void {
    const b = this.current();
    bump(b.services, service, n, 1000);
    bump(b.addresses, ip, n, this.maxKeysPerHour);
    if (account) bump(b.accounts, account, n, this.maxKeysPerHour);
  }

  report(limit = 10): ActivityReport {
    const now = Math.floor(this.clock.now() / HOUR_MS) * HOUR_MS;
    const live = this.buckets.filter((b) => b.start > now - HOURS * HOUR_MS);
    const hours = [];
    for (let i = HOURS - 1; i >= 0; i--) {
      const start = now - i * HOUR_MS;
      const b = live.find((x) => x.start === start);
      hours.push({ start: new Date(start).toISOString(), failures: Object.fromEntries(b?.services ?? []) });
    }
    return {
      hours,
      topAddresses: top(live.map((b) => b.addresses), limit, 'ip'),
      topAccounts: top(live.map((b) => b.accounts), limit, 'account'),
    };
  }
}
