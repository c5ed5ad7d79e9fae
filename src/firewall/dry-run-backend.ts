import type { Cidr } from '../net/ip.js';
import type { FirewallBackend, FirewallEntry, FirewallState } from './backend.js';

/** Keeps the would-be kernel state in memory (contract tests, and a safe default to try things with). */
export class DryRunBackend implements FirewallBackend {
  readonly name = 'dry-run';
  readonly entries = new Map<string, number>();
  batches = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async init(): Promise<void> {}

  async add(entries: readonly FirewallEntry[]): Promise<void> {
    this.batches++;
    for (const e of entries) this.entries.set(e.cidr.text, this.now() + e.timeoutSeconds * 1000);
  }

  async remove(cidrs: readonly Cidr[]): Promise<void> {
    this.batches++;
    for (const c of cidrs) this.entries.delete(c.text);
  }

  async flush(): Promise<void> {
    this.entries.clear();
  }

  async list(): Promise<FirewallState> {
    const now = this.now();
    const s: FirewallState = new Map();
    for (const [k, until] of this.entries) if (until > now) s.set(k, Math.round((until - now) / 1000));
    return s;
  }

  async destroy(): Promise<void> {
    this.entries.clear();
  }
}
