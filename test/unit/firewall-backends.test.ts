import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import type { CommandRunner } from '../../src/firewall/backend.js';
import { DryRunBackend } from '../../src/firewall/dry-run-backend.js';
import { FirewallSync } from '../../src/firewall/firewall-sync.js';
import { FirewalldBackend, IpsetBackend } from '../../src/firewall/ipset-backend.js';
import { NftablesBackend, parseNftSetJson } from '../../src/firewall/nftables-backend.js';
import { parseCidr } from '../../src/net/ip.js';
import { createLogger } from '../../src/obs/logger.js';
import { Metrics } from '../../src/obs/metrics.js';
import type { Ban } from '../../src/store/ban.js';

const fw = { ...loadConfig({ file: '/dev/null', env: {} }).config.firewall, ports: [25, 465, 993] };

/** Records every command instead of running it (golden output for backends whose daemons cannot run here). */
class RecordingRunner implements CommandRunner {
  calls: Array<{ command: string; args: string[]; stdin?: string | undefined }> = [];
  constructor(private readonly answers: Record<string, string> = {}, private readonly fail: RegExp | null = null) {}
  async run(command: string, args: readonly string[], stdin?: string): Promise<string> {
    this.calls.push({ command, args: [...args], stdin });
    const line = `${command} ${args.join(' ')}`;
    if (this.fail?.test(line)) throw new Error(`${line}: failed`);
    return this.answers[line] ?? '';
  }
}

const entry = (t: string, s = 3600) => ({ cidr: parseCidr(t)!, timeoutSeconds: s });

describe('nftables backend (command generation)', () => {
  it('init script: own table, interval+timeout sets, input and forward rules on the ports', () => {
    const b = new NftablesBackend(fw, new RecordingRunner());
    assert.equal(
      b.initScript(),
      [
        'add table inet zimbra_gatekeeper',
        'add set inet zimbra_gatekeeper ban4 { type ipv4_addr; flags interval, timeout; }',
        'add set inet zimbra_gatekeeper ban6 { type ipv6_addr; flags interval, timeout; }',
        'add chain inet zimbra_gatekeeper input { type filter hook input priority -10; policy accept; }',
        'add chain inet zimbra_gatekeeper forward { type filter hook forward priority -10; policy accept; }',
        'flush chain inet zimbra_gatekeeper input',
        'flush chain inet zimbra_gatekeeper forward',
        'add rule inet zimbra_gatekeeper input ip saddr @ban4 tcp dport { 25, 465, 993 } reject with tcp reset',
        'add rule inet zimbra_gatekeeper input ip6 saddr @ban6 tcp dport { 25, 465, 993 } reject with tcp reset',
        'add rule inet zimbra_gatekeeper forward ip saddr @ban4 tcp dport { 25, 465, 993 } reject with tcp reset',
        'add rule inet zimbra_gatekeeper forward ip6 saddr @ban6 tcp dport { 25, 465, 993 } reject with tcp reset',
        '',
      ].join('\n'),
    );
    assert.match(new NftablesBackend({ ...fw, action: 'drop' }, new RecordingRunner()).initScript(), /tcp dport \{ 25, 465, 993 \} drop/);
  });
  it('adds a whole batch in one nft call, skipping an address a banned network covers', async () => {
    const listing = JSON.stringify({ nftables: [{ set: { elem: [{ elem: { val: { prefix: { addr: '198.51.100.0', len: 24 } }, timeout: 86400, expires: 86000 } }] } }] });
    const r = new RecordingRunner({ 'nft -j list set inet zimbra_gatekeeper ban4': listing, 'nft -j list set inet zimbra_gatekeeper ban6': '{"nftables":[]}' });
    await new NftablesBackend(fw, r).add([entry('203.0.113.7'), entry('198.51.100.9'), entry('2001:db8::/64', 60)]);
    const writes = r.calls.filter((c) => c.args[0] === '-f');
    assert.equal(writes.length, 1);
    assert.equal(writes[0]!.stdin, 'add element inet zimbra_gatekeeper ban4 { 203.0.113.7 timeout 3600s }\nadd element inet zimbra_gatekeeper ban6 { 2001:db8::/64 timeout 60s }\n');
  });
  it('reads nft -j set listings (addresses, prefixes, expiries)', () => {
    const json = '{"nftables": [{"metainfo": {}}, {"set": {"elem": [{"elem": {"val": "1.2.3.4", "timeout": 300, "expires": 299}}, {"elem": {"val": {"prefix": {"addr": "10.0.0.0", "len": 8}}, "timeout": 50, "expires": 49}}]}}]}';
    assert.deepEqual(parseNftSetJson(json), [['1.2.3.4', 299], ['10.0.0.0/8', 49]]);
  });
});

describe('ipset backend (command generation)', () => {
  it('creates hash:net sets with timeouts and one rule per family and chain', async () => {
    const r = new RecordingRunner({}, /-C /);
    await new IpsetBackend(fw, r).init();
    assert.deepEqual(r.calls.map((c) => `${c.command} ${c.args.join(' ')}`), [
      'ipset create zimbra_gatekeeper4 hash:net family inet timeout 0 maxelem 1048576 -exist',
      'ipset create zimbra_gatekeeper6 hash:net family inet6 timeout 0 maxelem 1048576 -exist',
      'iptables -w -C INPUT -p tcp -m multiport --dports 25,465,993 -m set --match-set zimbra_gatekeeper4 src -j REJECT --reject-with tcp-reset',
      'iptables -w -I INPUT -p tcp -m multiport --dports 25,465,993 -m set --match-set zimbra_gatekeeper4 src -j REJECT --reject-with tcp-reset',
      'iptables -w -C FORWARD -p tcp -m multiport --dports 25,465,993 -m set --match-set zimbra_gatekeeper4 src -j REJECT --reject-with tcp-reset',
      'iptables -w -I FORWARD -p tcp -m multiport --dports 25,465,993 -m set --match-set zimbra_gatekeeper4 src -j REJECT --reject-with tcp-reset',
      'ip6tables -w -C INPUT -p tcp -m multiport --dports 25,465,993 -m set --match-set zimbra_gatekeeper6 src -j REJECT --reject-with tcp-reset',
      'ip6tables -w -I INPUT -p tcp -m multiport --dports 25,465,993 -m set --match-set zimbra_gatekeeper6 src -j REJECT --reject-with tcp-reset',
      'ip6tables -w -C FORWARD -p tcp -m multiport --dports 25,465,993 -m set --match-set zimbra_gatekeeper6 src -j REJECT --reject-with tcp-reset',
      'ip6tables -w -I FORWARD -p tcp -m multiport --dports 25,465,993 -m set --match-set zimbra_gatekeeper6 src -j REJECT --reject-with tcp-reset',
    ]);
  });
  it('applies a batch with one `ipset restore -exist`', async () => {
    const r = new RecordingRunner();
    await new IpsetBackend(fw, r).add([entry('203.0.113.7', 86400), entry('2001:db8::/64', 60)]);
    assert.deepEqual(r.calls, [{ command: 'ipset', args: ['restore', '-exist'], stdin: 'add zimbra_gatekeeper4 203.0.113.7 timeout 86400\nadd zimbra_gatekeeper6 2001:db8::/64 timeout 60\n' }]);
  });
});

describe('firewalld backend (command generation; firewalld cannot run here)', () => {
  it('declares the ipsets to firewalld and adds one rich rule per port and family', () => {
    const cmds = new FirewalldBackend(fw, new RecordingRunner()).initCommands().map((c) => c.join(' '));
    assert.deepEqual(cmds, [
      '--permanent --new-ipset=zimbra_gatekeeper4 --type=hash:net --option=family=inet --option=timeout=0 --option=maxelem=1048576',
      '--permanent --new-ipset=zimbra_gatekeeper6 --type=hash:net --option=family=inet6 --option=timeout=0 --option=maxelem=1048576',
      '--permanent --add-rich-rule=rule family="ipv4" source ipset="zimbra_gatekeeper4" port port="25" protocol="tcp" reject type="tcp-reset"',
      '--permanent --add-rich-rule=rule family="ipv4" source ipset="zimbra_gatekeeper4" port port="465" protocol="tcp" reject type="tcp-reset"',
      '--permanent --add-rich-rule=rule family="ipv4" source ipset="zimbra_gatekeeper4" port port="993" protocol="tcp" reject type="tcp-reset"',
      '--permanent --add-rich-rule=rule family="ipv6" source ipset="zimbra_gatekeeper6" port port="25" protocol="tcp" reject type="tcp-reset"',
      '--permanent --add-rich-rule=rule family="ipv6" source ipset="zimbra_gatekeeper6" port port="465" protocol="tcp" reject type="tcp-reset"',
      '--permanent --add-rich-rule=rule family="ipv6" source ipset="zimbra_gatekeeper6" port port="993" protocol="tcp" reject type="tcp-reset"',
      '--reload',
    ]);
  });
  it('entries go through ipset restore with their timeouts', async () => {
    const r = new RecordingRunner();
    await new FirewalldBackend(fw, r).add([entry('203.0.113.8', 120)]);
    assert.equal(r.calls[0]!.stdin, 'add zimbra_gatekeeper4 203.0.113.8 timeout 120\n');
  });
});

describe('FirewallSync (against the dry-run backend)', () => {
  const log = createLogger('silent');
  const ban = (target: string, seconds: number, tier: 'proxy' | 'firewall' = 'firewall'): Ban => ({ target, reason: 'x', service: 'x', since: Date.now(), until: Date.now() + seconds * 1000, tier, count: 1, source: 'log' });

  it('applies firewall-tier bans only, in one batch, and unbans', async () => {
    const b = new DryRunBackend();
    const s = new FirewallSync(b, { now: Date.now }, new Metrics(false), log);
    await s.start([]);
    s.onEvent({ type: 'ban', ban: ban('203.0.113.1', 600) });
    s.onEvent({ type: 'ban', ban: ban('203.0.113.2', 600) });
    s.onEvent({ type: 'ban', ban: ban('203.0.113.3', 600, 'proxy') });
    s.onEvent({ type: 'ban', ban: { ...ban('203.0.113.4', 600), shadow: true } });
    await s.flush();
    assert.deepEqual([...(await b.list()).keys()].sort(), ['203.0.113.1', '203.0.113.2']);
    s.onEvent({ type: 'unban', target: '203.0.113.1' });
    await s.flush();
    assert.deepEqual([...(await b.list()).keys()], ['203.0.113.2']);
    await s.stop(true);
  });

  it('reconcile adds missing entries, re-asserts short TTLs and removes strays', async () => {
    const b = new DryRunBackend();
    await b.add([entry('203.0.113.9', 3600), entry('203.0.113.10', 5), entry('198.51.100.99', 3600)]);
    const s = new FirewallSync(b, { now: Date.now }, new Metrics(false), log);
    const r = await s.reconcile([ban('203.0.113.9', 3600), ban('203.0.113.10', 3600), ban('203.0.113.11', 3600)]);
    assert.deepEqual(r, { added: 2, removed: 1 });
    const state = await b.list();
    assert.deepEqual([...state.keys()].sort(), ['203.0.113.10', '203.0.113.11', '203.0.113.9']);
    assert.ok(state.get('203.0.113.10')! > 3000);
  });

  it('a failing backend is retried with the work kept', async () => {
    const r = new RecordingRunner({ 'nft -j list set inet zimbra_gatekeeper ban4': '{"nftables":[]}', 'nft -j list set inet zimbra_gatekeeper ban6': '{"nftables":[]}' }, /^nft -f -$/);
    const metrics = new Metrics(false);
    const s = new FirewallSync(new NftablesBackend(fw, r), { now: Date.now }, metrics, log);
    s.onEvent({ type: 'ban', ban: ban('203.0.113.20', 600) });
    await s.flush();
    assert.equal(s.health().ok, false);
    assert.equal(s.health().pending, 1, 'the ban waits for the retry');
    const errs = (await metrics.firewallOps.get()).values.find((v) => v.labels.result === 'error');
    assert.equal(errs?.value, 1);
    await s.stop(true);
  });
});
