/*
 * Fair shares of what every client draws on: open client connections (the TCP fronts) and upstream
 * connections in use (the forwarder). One address, or one IPv6 /jail.ipv6Prefix network (the key
 * it is counted and banned under), holds at most `max` at a time; past that it is refused, and
 * other addresses are served as before. An entry lives only while its key holds a slot, so the
 * map is bounded by the open connections themselves.
 */
export class ClientSlots {
  private readonly held = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Takes a slot for `key`; false when it already holds `max` (unless `overShare`: then it takes one more anyway). */
  take(key: string, overShare = false): boolean {
    const n = this.held.get(key) ?? 0;
    if (n >= this.max && !overShare) return false;
    this.held.set(key, n + 1);
    return true;
  }

  release(key: string): void {
    const n = this.held.get(key);
    if (n === undefined) return;
    if (n <= 1) this.held.delete(key);
    else this.held.set(key, n - 1);
  }

  /** Slots `key` holds now. */
  holding(key: string): number {
    return this.held.get(key) ?? 0;
  }

  /** Keys holding at least one slot (for gatekeeper_tracked_keys). */
  get size(): number {
    return this.held.size;
  }
}
