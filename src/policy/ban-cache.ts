import { cidrContains, ipFamily, networkOf, parseCidr, type Cidr } from '../net/ip.js';
import type { Ban } from '../store/ban.js';

/**
 * Every instance's in-process copy of the active bans, so checking a request costs no Redis round trip.
 * Fed by the store's events and a periodic full reload. Single addresses and IPv6 networks of the
 * configured client prefix are found with one map lookup; other networks (manual CIDR bans) are
 * scanned, and there are few of those.
 */
export class BanCache {
  private readonly exact = new Map<string, Ban>();
  private ranges: Array<{ cidr: Cidr; ban: Ban }> = [];
  private readonly keyCache = new Map<string, string>();
  /**
   * Ceiling on single-address bans held (memory.maxBans, set at startup). Full: among the oldest
   * few, an expired ban goes, else the one ending soonest (the store and the firewall tier keep
   * theirs). Network bans (manual CIDRs) are never dropped.
   */
  maxEntries = 1_000_000;
  /** Bans dropped because the ceiling was reached (a counter). */
  evicted = 0;

  constructor(private readonly ipv6Prefix: number) {}

  /** The key an address is counted and banned under: itself for IPv4, its /ipv6Prefix network for IPv6. */
  clientKey(ip: string): string {
    if (ipFamily(ip) === 4 || this.ipv6Prefix === 128) return ip;
    let key = this.keyCache.get(ip);
    if (key === undefined) {
      key = networkOf(ip, this.ipv6Prefix).text;
      if (this.keyCache.size > 50_000) this.keyCache.clear();
      this.keyCache.set(ip, key);
    }
    return key;
  }

  private isExactKey(c: Cidr): boolean {
    return c.family === 4 ? c.prefix === 32 : c.prefix === 128 || c.prefix === this.ipv6Prefix;
  }

  set(ban: Ban): void {
    const c = parseCidr(ban.target);
    if (!c) return;
    this.delete(c.text);
    if (this.isExactKey(c)) {
      if (this.exact.size >= this.maxEntries) this.evictOne();
      this.exact.set(c.text, ban);
    } else this.ranges.push({ cidr: c, ban });
  }

  private evictOne(): void {
    const now = Date.now();
    let victim: string | undefined;
    let soonest = Infinity;
    let n = 0;
    for (const [k, b] of this.exact) {
      if (b.until <= now) { victim = k; break; }
      if (b.until < soonest) { soonest = b.until; victim = k; }
      if (++n === 8) break;
    }
    if (victim !== undefined) this.exact.delete(victim);
    this.evicted++;
  }

  delete(target: string): void {
    const c = parseCidr(target);
    const key = c ? c.text : target;
    this.exact.delete(key);
    if (this.ranges.length > 0) this.ranges = this.ranges.filter((r) => r.cidr.text !== key);
  }

  clear(): void {
    this.exact.clear();
    this.ranges = [];
  }

  replaceAll(bans: Iterable<Ban>): void {
    this.clear();
    for (const b of bans) this.set(b);
  }

  /** The active ban covering `ip` (normalised), if any. */
  lookup(ip: string, now: number): Ban | undefined {
    if (this.exact.size > 0) {
      let ban = this.exact.get(ip);
      if (!ban && ipFamily(ip) === 6) ban = this.exact.get(this.clientKey(ip));
      if (ban) {
        if (ban.until > now) return ban;
        this.exact.delete(ban.target);
      }
    }
    for (const r of this.ranges) {
      if (r.ban.until > now && cidrContains(r.cidr, ip)) return r.ban;
    }
    return undefined;
  }

  /** The ban stored under exactly this target. */
  get(target: string, now: number): Ban | undefined {
    const c = parseCidr(target);
    const key = c ? c.text : target;
    const ban = this.exact.get(key) ?? this.ranges.find((r) => r.cidr.text === key)?.ban;
    return ban && ban.until > now ? ban : undefined;
  }

  list(now: number): Ban[] {
    const out: Ban[] = [];
    for (const b of this.exact.values()) if (b.until > now) out.push(b);
    for (const r of this.ranges) if (r.ban.until > now) out.push(r.ban);
    return out.sort((a, b) => a.since - b.since);
  }

  get size(): number {
    return this.exact.size + this.ranges.length;
  }
}
