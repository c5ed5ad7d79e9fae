import type { Config } from '../config/schema.js';
import { cidrCovers, parseCidr, type Cidr } from '../net/ip.js';
import type { CommandRunner, FirewallBackend, FirewallEntry, FirewallState } from './backend.js';

/*
 * nftables: a table of our own (`inet <firewall.table>`), one set per family with `flags interval,
 * timeout` (the kernel expires bans itself; CIDR bans match), and one rule per family and hook
 * (input for host services, forward for published container ports) that rejects or drops traffic
 * from the sets to firewall.ports. Changes go through `nft -f -` in one atomic transaction per batch.
 */
export class NftablesBackend implements FirewallBackend {
  readonly name = 'nftables';
  private readonly table: string;

  constructor(private readonly cfg: Config['firewall'], private readonly runner: CommandRunner, private readonly nft = 'nft') {
    this.table = `inet ${cfg.table}`;
  }

  /** reject: the client sees a TCP reset at once (port-scoped bans); drop: it waits for a timeout. */
  private verdict(): string {
    return this.cfg.action === 'drop' ? 'drop' : 'reject with tcp reset';
  }

  /** The script init() feeds to nft (exported for golden tests). */
  initScript(): string {
    const ports = [...new Set(this.cfg.ports)].sort((a, b) => a - b).join(', ');
    const t = this.table;
    const lines = [
      `add table ${t}`,
      `add set ${t} ban4 { type ipv4_addr; flags interval, timeout; }`,
      `add set ${t} ban6 { type ipv6_addr; flags interval, timeout; }`,
      `add chain ${t} input { type filter hook input priority -10; policy accept; }`,
      `add chain ${t} forward { type filter hook forward priority -10; policy accept; }`,
      `flush chain ${t} input`,
      `flush chain ${t} forward`,
    ];
    for (const chain of ['input', 'forward']) {
      lines.push(`add rule ${t} ${chain} ip saddr @ban4 tcp dport { ${ports} } ${this.verdict()}`);
      lines.push(`add rule ${t} ${chain} ip6 saddr @ban6 tcp dport { ${ports} } ${this.verdict()}`);
    }
    return `${lines.join('\n')}\n`;
  }

  async init(): Promise<void> {
    await this.runner.run(this.nft, ['-f', '-'], this.initScript());
  }

  private setOf(c: Cidr): string {
    return c.family === 4 ? 'ban4' : 'ban6';
  }

  /** A script that replaces `entries` (delete if present, then add), given what the kernel holds. */
  addScript(entries: readonly FirewallEntry[], present: ReadonlySet<string>): string {
    const lines: string[] = [];
    for (const e of entries) {
      const set = this.setOf(e.cidr);
      if (present.has(e.cidr.text)) lines.push(`delete element ${this.table} ${set} { ${e.cidr.text} }`);
      lines.push(`add element ${this.table} ${set} { ${e.cidr.text} timeout ${Math.max(1, Math.ceil(e.timeoutSeconds))}s }`);
    }
    return lines.length ? `${lines.join('\n')}\n` : '';
  }

  async add(entries: readonly FirewallEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const present = await this.list();
    // An interval set refuses overlapping elements: an address inside a banned network is already
    // covered (skip it); a network replaces the addresses it contains.
    const ranges = [...present.keys()].map((t) => parseCidr(t)!).filter((c) => c.prefix < (c.family === 4 ? 32 : 128));
    const out: FirewallEntry[] = [];
    const drop = new Set<string>();
    for (const e of entries) {
      const covering = ranges.find((r) => r.text !== e.cidr.text && cidrCovers(r, e.cidr));
      if (covering && (present.get(covering.text) ?? 0) >= e.timeoutSeconds) continue;
      if (e.cidr.prefix < (e.cidr.family === 4 ? 32 : 128)) {
        for (const t of present.keys()) {
          const c = parseCidr(t)!;
          if (c.text !== e.cidr.text && cidrCovers(e.cidr, c)) drop.add(t);
        }
      }
      out.push(e);
    }
    let script = '';
    for (const t of drop) script += `delete element ${this.table} ${this.setOf(parseCidr(t)!)} { ${t} }\n`;
    script += this.addScript(dedupe(out), new Set([...present.keys()].filter((k) => !drop.has(k))));
    if (script) await this.runner.run(this.nft, ['-f', '-'], script);
  }

  async remove(cidrs: readonly Cidr[]): Promise<void> {
    if (cidrs.length === 0) return;
    const present = await this.list();
    const lines = cidrs.filter((c) => present.has(c.text)).map((c) => `delete element ${this.table} ${this.setOf(c)} { ${c.text} }`);
    if (lines.length) await this.runner.run(this.nft, ['-f', '-'], `${lines.join('\n')}\n`);
  }

  async flush(): Promise<void> {
    await this.runner.run(this.nft, ['-f', '-'], `flush set ${this.table} ban4\nflush set ${this.table} ban6\n`);
  }

  async list(): Promise<FirewallState> {
    const state: FirewallState = new Map();
    for (const set of ['ban4', 'ban6']) {
      const out = await this.runner.run(this.nft, ['-j', 'list', 'set', 'inet', this.cfg.table, set]);
      for (const [text, left] of parseNftSetJson(out)) state.set(text, left);
    }
    return state;
  }

  async destroy(): Promise<void> {
    await this.runner.run(this.nft, ['delete', 'table', 'inet', this.cfg.table]).catch(() => undefined);
  }
}

function dedupe(entries: readonly FirewallEntry[]): FirewallEntry[] {
  const m = new Map<string, FirewallEntry>();
  for (const e of entries) {
    const prev = m.get(e.cidr.text);
    if (!prev || prev.timeoutSeconds < e.timeoutSeconds) m.set(e.cidr.text, e);
  }
  return [...m.values()];
}

/** Elements of `nft -j list set ...` as canonical CIDR text → seconds left. */
export function parseNftSetJson(json: string): Array<[string, number]> {
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, unknown>> };
  const out: Array<[string, number]> = [];
  for (const item of doc.nftables ?? []) {
    const set = item.set as { elem?: unknown[] } | undefined;
    for (const el of set?.elem ?? []) {
      let val: unknown = el;
      let left = Number.POSITIVE_INFINITY;
      if (el && typeof el === 'object' && 'elem' in (el as object)) {
        const inner = (el as { elem: { val: unknown; expires?: number; timeout?: number } }).elem;
        val = inner.val;
        left = inner.expires ?? inner.timeout ?? left;
      }
      let text: string | null = null;
      if (typeof val === 'string') text = val;
      else if (val && typeof val === 'object' && 'prefix' in (val as object)) {
        const p = (val as { prefix: { addr: string; len: number } }).prefix;
        text = `${p.addr}/${p.len}`;
      }
      const c = text ? parseCidr(text) : null;
      if (c) out.push([c.text, left]);
    }
  }
  return out;
}
