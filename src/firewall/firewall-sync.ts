import type { Clock } from '../clock.js';
import { parseCidr, type Cidr } from '../net/ip.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { Ban, BanEvent } from '../store/ban.js';
import type { FirewallBackend, FirewallEntry } from './backend.js';

export interface FirewallHealth {
  readonly backend: string;
  readonly ok: boolean;
  readonly pending: number;
  readonly lastError: string | null;
}

/** The kernel may hold an entry this much shorter than the ban before it is re-asserted. */
const TTL_SLACK_SECONDS = 60;

/**
 * Keeps the kernel firewall in step with the firewall-tier bans of the store: ban and unban events
 * (from this and every other instance) are queued and applied in batches; on start and periodically
 * the kernel is reconciled with the store (missing entries added, short TTLs re-asserted, stray ones
 * removed), so a restart loses nothing and adds nothing twice. A failing command is logged, counted
 * and retried with backoff; the proxy is never held up by it.
 */
export class FirewallSync {
  private readonly adds = new Map<string, { entry: FirewallEntry; since: number }>();
  private readonly removes = new Map<string, Cidr>();
  private flushAll = false;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private failures = 0;
  private lastError: string | null = null;
  private stopped = false;

  constructor(
    private readonly backend: FirewallBackend,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly batchDelayMs = 25,
  ) {}

  health(): FirewallHealth {
    return { backend: this.backend.name, ok: this.lastError === null, pending: this.adds.size + this.removes.size, lastError: this.lastError };
  }

  private entryOf(ban: Ban): FirewallEntry | null {
    const cidr = parseCidr(ban.target);
    const seconds = (ban.until - this.clock.now()) / 1000;
    return cidr && seconds > 0 ? { cidr, timeoutSeconds: seconds } : null;
  }

  private wanted(ban: Ban): boolean {
    return ban.tier === 'firewall' && !ban.shadow;
  }

  onEvent(e: BanEvent): void {
    if (e.type === 'ban') {
      if (!this.wanted(e.ban)) return;
      const entry = this.entryOf(e.ban);
      if (!entry) return;
      this.removes.delete(entry.cidr.text);
      this.adds.set(entry.cidr.text, { entry, since: e.ban.since });
    } else if (e.type === 'unban') {
      const cidr = parseCidr(e.target);
      if (!cidr) return;
      this.adds.delete(cidr.text);
      this.removes.set(cidr.text, cidr);
    } else if (e.type === 'unban-all') {
      this.adds.clear();
      this.removes.clear();
      this.flushAll = true;
    } else {
      return;
    }
    this.schedule(this.batchDelayMs);
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, delayMs);
  }

  /** Applies everything queued, in as few backend calls as possible. */
  async flush(): Promise<void> {
    if (this.running) {
      await this.running;
      if (this.adds.size === 0 && this.removes.size === 0 && !this.flushAll) return;
    }
    this.running = this.apply().finally(() => {
      this.running = null;
    });
    await this.running;
  }

  private async apply(): Promise<void> {
    const flushAll = this.flushAll;
    const adds = [...this.adds.values()];
    const removes = [...this.removes.values()];
    this.flushAll = false;
    this.adds.clear();
    this.removes.clear();
    try {
      if (flushAll) {
        await this.backend.flush();
        this.metrics.firewallOps.inc({ op: 'flush', result: 'ok' });
      }
      if (removes.length) {
        await this.backend.remove(removes);
        this.metrics.firewallOps.inc({ op: 'remove', result: 'ok' }, removes.length);
      }
      if (adds.length) {
        const now = this.clock.now();
        // Time passed since the entries were queued comes off their timeouts.
        await this.backend.add(adds.map((a) => a.entry));
        this.metrics.firewallOps.inc({ op: 'add', result: 'ok' }, adds.length);
        for (const a of adds) this.metrics.firewallLatency.observe(Math.max(0, (now - a.since) / 1000));
      }
      if (flushAll || removes.length || adds.length) this.metrics.firewallBatches.inc();
      this.failures = 0;
      this.lastError = null;
    } catch (err) {
      this.failures++;
      this.lastError = (err as Error).message;
      this.metrics.firewallOps.inc({ op: 'batch', result: 'error' });
      this.log.error({ code: 'GK_ERR_FIREWALL', err: this.lastError, backend: this.backend.name, retryInMs: this.backoffMs() }, 'firewall update failed: bans still hold in the proxy, retrying');
      // Put the work back (newer events win) and retry later.
      if (flushAll) this.flushAll = true;
      for (const r of removes) if (!this.adds.has(r.text)) this.removes.set(r.text, r);
      for (const a of adds) if (!this.adds.has(a.entry.cidr.text) && !this.removes.has(a.entry.cidr.text)) this.adds.set(a.entry.cidr.text, a);
      this.schedule(this.backoffMs());
    }
  }

  private backoffMs(): number {
    return Math.min(30_000, 500 * 2 ** Math.min(this.failures, 6));
  }

  /**
   * Makes the kernel hold exactly the active firewall bans: adds the missing ones, re-asserts
   * TTLs that fell short (a mass expiry must not silently drop enforcement), removes strays.
   */
  async reconcile(bans: readonly Ban[]): Promise<{ added: number; removed: number }> {
    const desired = new Map<string, FirewallEntry>();
    for (const b of bans) {
      if (!this.wanted(b)) continue;
      const e = this.entryOf(b);
      if (e) desired.set(e.cidr.text, e);
    }
    let actual;
    try {
      actual = await this.backend.list();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.metrics.firewallOps.inc({ op: 'reconcile', result: 'error' });
      this.log.error({ code: 'GK_ERR_FIREWALL', err: this.lastError }, 'firewall reconcile failed: will retry');
      return { added: 0, removed: 0 };
    }
    const since = this.clock.now();
    let added = 0;
    let removed = 0;
    for (const [text, e] of desired) {
      const left = actual.get(text);
      if (left === undefined || left < e.timeoutSeconds - TTL_SLACK_SECONDS) {
        this.removes.delete(text);
        this.adds.set(text, { entry: e, since });
        added++;
      }
    }
    for (const text of actual.keys()) {
      if (!desired.has(text)) {
        this.removes.set(text, parseCidr(text)!);
        removed++;
      }
    }
    await this.flush();
    this.metrics.firewallOps.inc({ op: 'reconcile', result: this.lastError ? 'error' : 'ok' });
    return { added, removed };
  }

  async start(bans: readonly Ban[]): Promise<void> {
    try {
      await this.backend.init();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.error({ code: 'GK_ERR_FIREWALL', err: this.lastError, backend: this.backend.name }, 'firewall setup failed: bans hold in the proxy only until it works');
      return;
    }
    const r = await this.reconcile(bans);
    this.log.info({ backend: this.backend.name, ...r }, 'firewall reconciled with the active bans');
  }

  async stop(keep: boolean): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.flush().catch(() => undefined);
    if (!keep) await this.backend.destroy().catch(() => undefined);
  }
}
