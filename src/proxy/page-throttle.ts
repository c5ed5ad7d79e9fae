/**
 * At most one ban page per address per interval. A banned bot reconnects thousands of times a
 * second; a person needs to read "banned until …" once. The connections in between are reset at
 * accept, which costs no more than accepting them (see `banFront`).
 *
 * Memory is bounded: past `maxEntries` addresses the least recently paged one is forgotten (it may
 * then get one page early, never fewer resets than that).
 */
export class PageThrottle {
  /** address → when it last got a page (ms); Map order is the order of last page. */
  private readonly last = new Map<string, number>();

  constructor(
    private readonly intervalMs: number,
    private readonly maxEntries = 100_000,
  ) {}

  /** True when `address` may be answered with the page now; records the page when so. */
  take(address: string, nowMs: number): boolean {
    if (this.intervalMs <= 0) return true;
    const at = this.last.get(address);
    if (at !== undefined) {
      if (nowMs - at < this.intervalMs) return false;
      this.last.delete(address);
    } else if (this.last.size >= this.maxEntries) {
      const oldest = this.last.keys().next();
      if (!oldest.done) this.last.delete(oldest.value);
    }
    this.last.set(address, nowMs);
    return true;
  }

  get size(): number {
    return this.last.size;
  }
}
