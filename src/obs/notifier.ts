import type { Ban } from '../store/ban.js';
import { request } from 'undici';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export interface Notification {
  readonly event: 'ban' | 'escalation';
  readonly ip: string;
  readonly rule: string;
  readonly service: string;
  readonly tier: string;
  readonly count: number;
  readonly until: string;
  readonly shadow: boolean;
  readonly at: string;
}

const MAX_QUEUE = 1000;

/**
 * Posts ban and escalation events to `notify.webhook` as JSON, from a queue of its own: never on the
 * request path, retried with exponential backoff, dropped (and counted) when the queue is full or
 * the retries are spent.
 */
export class Notifier {
  private readonly queue: Array<{ n: Notification; tries: number }> = [];
  private busy = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
    private readonly retries: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly baseDelayMs = 1000,
  ) {}

  /** The webhook document of a ban (or, for a proxy ban that goes to the kernel, an escalation). */
  notifyBan(ban: Ban): void {
    this.notify({
      event: ban.tier === 'firewall' && ban.source === 'proxy' ? 'escalation' : 'ban',
      ip: ban.target,
      rule: ban.reason,
      service: ban.service,
      tier: ban.tier,
      count: ban.count,
      until: new Date(ban.until).toISOString(),
      shadow: ban.shadow ?? false,
      at: new Date(ban.since).toISOString(),
    });
  }

  notify(n: Notification): void {
    if (this.closed) return;
    if (this.queue.length >= MAX_QUEUE) {
      this.metrics.notifications.inc({ result: 'dropped' });
      return;
    }
    this.queue.push({ n, tries: 0 });
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.busy || this.timer) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const item = this.queue[0]!;
        try {
          const res = await request(this.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'user-agent': 'zimbra-gatekeeper' },
            body: JSON.stringify(item.n),
            headersTimeout: this.timeoutMs,
            bodyTimeout: this.timeoutMs,
          });
          await res.body.dump();
          if (res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode}`);
          this.queue.shift();
          this.metrics.notifications.inc({ result: 'sent' });
        } catch (err) {
          item.tries++;
          if (item.tries > this.retries) {
            this.queue.shift();
            this.metrics.notifications.inc({ result: 'dropped' });
            this.log.warn({ err: (err as Error).message, ip: item.n.ip }, 'webhook notification dropped after retries');
            continue;
          }
          this.metrics.notifications.inc({ result: 'retried' });
          const delay = this.baseDelayMs * 2 ** (item.tries - 1);
          this.timer = setTimeout(() => {
            this.timer = null;
            void this.drain();
          }, delay);
          this.timer.unref();
          return;
        }
      }
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
