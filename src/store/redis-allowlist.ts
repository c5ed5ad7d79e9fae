import type { Cluster, Redis } from 'ioredis';
import type { Clock } from '../clock.js';
import { AllowlistFullError, MAX_ALLOW_ENTRIES, type AllowEntry, type AllowlistStore } from './allowlist.js';

/** Resolves once `client` is connected, or after `timeoutMs` (then callers fall back or retry later). */
export function waitReady(client: Redis | Cluster, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      client.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    timer.unref();
    client.once('ready', done);
  });
}

/**
 * The runtime allowlist in Redis: one hash `<prefix>allow` (field: the network, value: the entry as
 * JSON) and a pub/sub channel `<prefix>allow:changed` that tells every instance to re-read it.
 * Expired entries are skipped on read and deleted then. Uses connections of its own (a subscriber
 * cannot send commands), so the ban store is untouched.
 */
export class RedisAllowlist implements AllowlistStore {
  private readonly key: string;
  private readonly channel: string;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly client: Redis | Cluster,
    private readonly subscriber: Redis | Cluster,
    prefix: string,
    private readonly clock: Clock,
  ) {
    this.key = `${prefix}allow`;
    this.channel = `${prefix}allow:changed`;
    // The ban store reports Redis being down; these connections only must not crash the process.
    this.client.on('error', () => undefined);
    this.subscriber.on('error', () => undefined);
    // Commands fail while disconnected (no offline queue): subscribe once connected, and again after
    // each reconnect; then have the listeners re-read, since changes may have been missed meanwhile.
    const subscribe = (): void => {
      this.subscriber.subscribe(this.channel).then(
        () => this.changed(),
        () => undefined,
      );
    };
    this.subscriber.on('ready', subscribe);
    if (this.subscriber.status === 'ready') subscribe();
    this.subscriber.on('message', (channel: string) => {
      if (channel === this.channel) this.changed();
    });
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  async add(entry: AllowEntry): Promise<void> {
    if ((await this.client.hexists(this.key, entry.cidr)) === 0 && (await this.client.hlen(this.key)) >= MAX_ALLOW_ENTRIES) {
      await this.list(); // drops expired entries
      if ((await this.client.hlen(this.key)) >= MAX_ALLOW_ENTRIES) throw new AllowlistFullError();
    }
    await this.client.hset(this.key, entry.cidr, JSON.stringify(entry));
    await this.client.publish(this.channel, entry.cidr);
  }

  async remove(cidr: string): Promise<boolean> {
    const n = await this.client.hdel(this.key, cidr);
    if (n > 0) await this.client.publish(this.channel, cidr);
    return n > 0;
  }

  async list(): Promise<AllowEntry[]> {
    const all = await this.client.hgetall(this.key);
    const now = this.clock.now();
    const out: AllowEntry[] = [];
    const expired: string[] = [];
    for (const [cidr, raw] of Object.entries(all)) {
      try {
        const e = JSON.parse(raw) as AllowEntry;
        if (e.until !== null && e.until <= now) expired.push(cidr);
        else out.push(e);
      } catch {
        expired.push(cidr); // unreadable: not an entry this code wrote
      }
    }
    if (expired.length) await this.client.hdel(this.key, ...expired);
    return out.sort((a, b) => a.since - b.since);
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Connected (or `timeoutMs` passed): read the list only then, commands fail fast while connecting. */
  async ready(timeoutMs: number): Promise<void> {
    await Promise.all([waitReady(this.client, timeoutMs), waitReady(this.subscriber, timeoutMs)]);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.subscriber.disconnect();
    this.client.disconnect();
  }
}
