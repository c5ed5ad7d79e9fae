import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import type { HistoryEvent, HistoryLimits, HistoryQuery, HistoryStore } from './history.js';

/** Events kept per target at most (a repeat offender's whole story, bounded). */
const MAX_PER_TARGET = 1000;

/**
 * History in Redis: sorted sets scored by time, one for all events (`<prefix>history`) and one per
 * target (`<prefix>history:t:<target>`, unban-all under `*`), trimmed by age (`history.keep`) and size
 * on every append; per-target sets expire when their target has been quiet for `history.keep`.
 * Members are the events as JSON with a random id, so two identical events stay two.
 */
export class RedisHistory implements HistoryStore {
  constructor(
    private readonly client: Redis | Cluster,
    private readonly prefix: string,
    private readonly clock: Clock,
    private readonly limits: HistoryLimits,
  ) {
    this.client.on('error', () => undefined); // the ban store reports Redis being down
  }

  private targetKey(target: string): string {
    return `${this.prefix}history:t:${target}`;
  }

  async append(event: HistoryEvent): Promise<void> {
    const member = JSON.stringify({ id: randomBytes(6).toString('hex'), ...event });
    const all = `${this.prefix}history`;
    const one = this.targetKey(event.target);
    const keepMs = this.limits.keepSeconds * 1000;
    const cutoff = this.clock.now() - keepMs;
    // Separate commands, not MULTI: with Redis Cluster the two keys may live in different slots.
    await Promise.all([
      this.client.zadd(all, event.at, member),
      this.client.zadd(one, event.at, member),
    ]);
    await Promise.all([
      this.client.zremrangebyscore(all, '-inf', `(${cutoff}`),
      this.client.zremrangebyrank(all, 0, -(this.limits.maxEvents + 1)),
      this.client.zremrangebyscore(one, '-inf', `(${cutoff}`),
      this.client.zremrangebyrank(one, 0, -(MAX_PER_TARGET + 1)),
      this.client.pexpire(one, keepMs),
    ]);
  }

  private async read(key: string, q: HistoryQuery): Promise<HistoryEvent[]> {
    const cutoff = Math.max(q.since ?? -Infinity, this.clock.now() - this.limits.keepSeconds * 1000);
    const raw = await this.client.zrevrangebyscore(key, '+inf', String(cutoff), 'LIMIT', 0, q.limit);
    const out: HistoryEvent[] = [];
    for (const r of raw) {
      try {
        const { id: _id, ...e } = JSON.parse(r) as HistoryEvent & { id: string };
        out.push(e);
      } catch {
        // not written by this code: skipped
      }
    }
    return out;
  }

  async list(q: HistoryQuery): Promise<HistoryEvent[]> {
    if (q.target === undefined) return this.read(`${this.prefix}history`, q);
    const [own, all] = await Promise.all([this.read(this.targetKey(q.target), q), q.target === '*' ? [] : this.read(this.targetKey('*'), q)]);
    return [...own, ...all].sort((a, b) => b.at - a.at).slice(0, q.limit);
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
