import type { Config } from '../config/schema.js';
import type { Cidr } from '../net/ip.js';
import { parseCidr } from '../net/ip.js';
import type { CommandRunner, FirewallBackend, FirewallEntry, FirewallState } from './backend.js';

/*
 * ipset + iptables/ip6tables: two hash:net sets with per-entry timeouts (the kernel expires bans;
 * hash:net takes addresses and networks, overlapping ones too) and one rule per family and chain
 * (INPUT, FORWARD) matching the set on firewall.ports. Entries change through `ipset restore` in one
 * call per batch.
 */
export class IpsetBackend implements FirewallBackend {
  readonly name: string = 'ipset';
  protected readonly set4: string;
  protected readonly set6: string;

  constructor(protected readonly cfg: Config['firewall'], protected readonly runner: CommandRunner) {
    this.set4 = `${cfg.table.slice(0, 24)}4`;
    this.set6 = `${cfg.table.slice(0, 24)}6`;
  }

  protected setOf(c: Cidr): string {
    return c.family === 4 ? this.set4 : this.set6;
  }

  protected ruleArgs(family: 4 | 6, chain: string): string[] {
    const ports = [...new Set(this.cfg.ports)].sort((a, b) => a - b).join(',');
    const target = this.cfg.action === 'drop' ? ['-j', 'DROP'] : ['-j', 'REJECT', '--reject-with', 'tcp-reset'];
    return [chain, '-p', 'tcp', '-m', 'multiport', '--dports', ports, '-m', 'set', '--match-set', family === 4 ? this.set4 : this.set6, 'src', ...target];
  }

  protected async createSets(): Promise<void> {
    await this.runner.run('ipset', ['create', this.set4, 'hash:net', 'family', 'inet', 'timeout', '0', 'maxelem', '1048576', '-exist']);
    await this.runner.run('ipset', ['create', this.set6, 'hash:net', 'family', 'inet6', 'timeout', '0', 'maxelem', '1048576', '-exist']);
  }

  async init(): Promise<void> {
    await this.createSets();
    for (const [bin, family] of [['iptables', 4], ['ip6tables', 6]] as const) {
      for (const chain of ['INPUT', 'FORWARD']) {
        const args = this.ruleArgs(family, chain);
        // -C checks whether the rule is there; insert it first in the chain only when it is not.
        const present = await this.runner.run(bin, ['-w', '-C', ...args]).then(() => true, () => false);
        if (!present) await this.runner.run(bin, ['-w', '-I', ...args]);
      }
    }
  }

  /** The `ipset restore` input for a batch (exported for golden tests). */
  restoreScript(add: readonly FirewallEntry[], del: readonly Cidr[]): string {
    const lines: string[] = [];
    for (const c of del) lines.push(`del ${this.setOf(c)} ${c.text}`);
    for (const e of add) lines.push(`add ${this.setOf(e.cidr)} ${e.cidr.text} timeout ${Math.max(1, Math.min(2147483, Math.ceil(e.timeoutSeconds)))}`);
    return lines.length ? `${lines.join('\n')}\n` : '';
  }

  async add(entries: readonly FirewallEntry[]): Promise<void> {
    // -exist: an existing entry gets the new timeout instead of an error.
    const script = this.restoreScript(entries, []);
    if (script) await this.runner.run('ipset', ['restore', '-exist'], script);
  }

  async remove(cidrs: readonly Cidr[]): Promise<void> {
    const script = this.restoreScript([], cidrs);
    if (script) await this.runner.run('ipset', ['restore', '-exist'], script);
  }

  async flush(): Promise<void> {
    await this.runner.run('ipset', ['flush', this.set4]);
    await this.runner.run('ipset', ['flush', this.set6]);
  }

  async list(): Promise<FirewallState> {
    const state: FirewallState = new Map();
    for (const set of [this.set4, this.set6]) {
      const out = await this.runner.run('ipset', ['save', set]);
      for (const line of out.split('\n')) {
        const m = /^add \S+ (\S+)(?: timeout (\d+))?/.exec(line);
        const c = m ? parseCidr(m[1]!) : null;
        if (c) state.set(c.text, m![2] ? Number(m![2]) : Number.POSITIVE_INFINITY);
      }
    }
    return state;
  }

  async destroy(): Promise<void> {
    for (const [bin, family] of [['iptables', 4], ['ip6tables', 6]] as const) {
      for (const chain of ['INPUT', 'FORWARD']) await this.runner.run(bin, ['-w', '-D', ...this.ruleArgs(family, chain)]).catch(() => undefined);
    }
    await this.runner.run('ipset', ['destroy', this.set4]).catch(() => undefined);
    await this.runner.run('ipset', ['destroy', this.set6]).catch(() => undefined);
  }
}

/*
 * firewalld: the sets are declared to firewalld (so a `firewall-cmd --reload` keeps them) and matched
 * by rich rules per port; entries with timeouts go through `ipset restore` directly, as firewalld
 * cannot set per-entry timeouts itself (fail2ban's firewallcmd-ipset does the same).
 */
export class FirewalldBackend extends IpsetBackend {
  override readonly name = 'firewalld';

  private richRules(family: 4 | 6): string[] {
    const set = family === 4 ? this.set4 : this.set6;
    const verdict = this.cfg.action === 'drop' ? 'drop' : 'reject type="tcp-reset"';
    return [...new Set(this.cfg.ports)].sort((a, b) => a - b).map((p) => `rule family="ipv${family}" source ipset="${set}" port port="${p}" protocol="tcp" ${verdict}`);
  }

  /** The firewall-cmd calls init() makes (exported for golden tests). */
  initCommands(): string[][] {
    const cmds: string[][] = [];
    for (const [set, family] of [[this.set4, 'inet'], [this.set6, 'inet6']] as const) {
      cmds.push(['--permanent', `--new-ipset=${set}`, '--type=hash:net', `--option=family=${family}`, '--option=timeout=0', '--option=maxelem=1048576']);
    }
    for (const f of [4, 6] as const) for (const r of this.richRules(f)) cmds.push(['--permanent', `--add-rich-rule=${r}`]);
    cmds.push(['--reload']);
    return cmds;
  }

  override async init(): Promise<void> {
    const existing = await this.runner.run('firewall-cmd', ['--permanent', '--get-ipsets']);
    for (const args of this.initCommands()) {
      const newSet = args[1]?.startsWith('--new-ipset=') ? args[1].slice(12) : null;
      if (newSet && existing.split(/\s+/).includes(newSet)) continue;
      await this.runner.run('firewall-cmd', args).catch((err: Error) => {
        if (!/ALREADY_ENABLED|NAME_CONFLICT/.test(err.message)) throw err;
      });
    }
  }

  override async destroy(): Promise<void> {
    for (const f of [4, 6] as const) for (const r of this.richRules(f)) await this.runner.run('firewall-cmd', ['--permanent', `--remove-rich-rule=${r}`]).catch(() => undefined);
    for (const set of [this.set4, this.set6]) await this.runner.run('firewall-cmd', ['--permanent', `--delete-ipset=${set}`]).catch(() => undefined);
    await this.runner.run('firewall-cmd', ['--reload']).catch(() => undefined);
  }
}
