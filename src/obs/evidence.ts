import type { Clock } from '../clock.js';
import { ipFamily, networkOf } from '../net/ip.js';
import { MAX_EVIDENCE, type FailureEvidence } from '../store/history.js';
import { Activity } from './activity.js';

/** Addresses whose recent failures are kept: bounds memory under a botnet (the oldest is dropped). */
const MAX_KEYS = 10_000;

/**
 * The Activity the enforcer already reports every failed login to, also keeping the last few
 * failures per client key (the address, or its /ipv6Prefix network) as evidence for the next ban
 * of that key (`gatekeeper why`). This instance's view; the ban's copy is shared through the history.
 */
export class EvidenceActivity extends Activity {
  private readonly recent = new Map<string, FailureEvidence[]>();

  constructor(private readonly evidenceClock: Clock, private readonly ipv6Prefix: number, maxKeysPerHour?: number) {
    super(evidenceClock, maxKeysPerHour);
  }

  keyOf(ip: string): string {
    return ipFamily(ip) === 4 || this.ipv6Prefix === 128 ? ip : networkOf(ip, this.ipv6Prefix).text;
  }

  override recordFailure(service: string, ip: string, account: string | undefined, n = 1): void {
    super.recordFailure(service, ip, account, n);
    const key = this.keyOf(ip);
    let list = this.recent.get(key);
    if (!list) {
      if (this.recent.size >= MAX_KEYS) this.recent.delete(this.recent.keys().next().value!);
      list = [];
      this.recent.set(key, list);
    }
    list.push({ at: this.evidenceClock.now(), service, ...(account ? { account: account.slice(0, 256) } : {}), failures: n });
    if (list.length > MAX_EVIDENCE) list.shift();
  }

  /** The failures kept for a ban key, oldest first. */
  evidenceOf(key: string): FailureEvidence[] {
    return [...(this.recent.get(key) ?? [])];
  }
}
