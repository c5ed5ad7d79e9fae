import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { which } from '../helpers/binaries.js';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { runCli, startGatekeeper, testConfig, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { send } from '../helpers/http-client.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

/*
 * Real nftables, inside a private network namespace: this file re-runs itself under `unshare -n`
 * (as root), so the test, the gatekeeper, Redis and the TCP listeners share a loopback of their own
 * and the host's ruleset is never touched.
 */
const SELF = fileURLToPath(import.meta.url);
const IN_NETNS = process.env.TEST_IN_NETNS === '1';
const missing = ['nft', 'unshare', 'ip', 'redis-server'].filter((b) => !which(b));
const notRoot = process.getuid?.() !== 0;
const skipReason = missing.length ? `missing ${missing.join(', ')}: apt-get install -y nftables util-linux iproute2 redis-server` : notRoot ? 'needs root for a network namespace' : false;

if (!IN_NETNS) {
  describe('kernel firewall (nftables in a private network namespace)', () => {
    it('runs the firewall suite inside `unshare -n`', (t) => {
      if (skipReason) {
        if (process.env.CI === 'true') throw new Error(`CI=true and ${skipReason}`);
        process.stderr.write(`\n*** SKIPPED firewall tests: ${skipReason} ***\n`);
        t.skip(skipReason);
        return;
      }
      const r = spawnSync('unshare', ['-n', process.execPath, '--test', '--test-reporter=spec', SELF], {
        // NODE_TEST_CONTEXT would make the inner runner talk the outer runner's private protocol.
        env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')), TEST_IN_NETNS: '1' },
        encoding: 'utf8',
        timeout: 300_000,
      });
      process.stdout.write(r.stdout.split('\n').map((l) => `    ${l}`).join('\n'));
      if (r.status !== 0) process.stderr.write(r.stderr);
      assert.equal(r.status, 0, 'the firewall suite inside the namespace failed (output above)');
    });
  });
} else {
  const TABLE = 'gk_test';
  const PORT = 2525;
  const nftJson = (set: string): string[] => {
    const out = execFileSync('nft', ['-j', 'list', 'set', 'inet', TABLE, set], { encoding: 'utf8' });
    const doc = JSON.parse(out) as { nftables: Array<{ set?: { elem?: Array<{ elem: { val: string | { prefix: { addr: string; len: number } } } }> } }> };
    const elems = doc.nftables.find((x) => x.set)?.set?.elem ?? [];
    return elems.map((e) => (typeof e.elem.val === 'string' ? e.elem.val : `${e.elem.val.prefix.addr}/${e.elem.val.prefix.len}`));
  };
  /** Resolves true when a TCP connection from `from` to `to`:PORT is accepted, false when refused or timed out. */
  const canConnect = (from: string, to: string, port = PORT): Promise<boolean> =>
    new Promise((resolve) => {
      const s = net.connect({ host: to, port, localAddress: from, timeout: 2000 });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.once('timeout', () => {
        s.destroy();
        resolve(false);
      });
    });

  describe('nftables backend, for real', () => {
    let redis: RedisServer;
    let zimbra: FakeZimbra;
    let gk: GatekeeperProcess;
    let listener: net.Server;
    let cfg: Record<string, unknown>;
    const dir = mkdtempSync(join(tmpdir(), 'gk-fw-'));
    const syslog = join(dir, 'zimbra.log');

    before(async () => {
      execFileSync('ip', ['link', 'set', 'lo', 'up']);
      for (const a of ['fd00::7', 'fd01::8', 'fd02::9']) execFileSync('ip', ['-6', 'addr', 'add', `${a}/128`, 'dev', 'lo', 'nodad']);
      listener = net.createServer((s) => {
        s.on('error', () => s.destroy());
        s.end('220 stand-in SMTP\r\n');
      });
      await new Promise<void>((r) => listener.listen({ host: '::', port: PORT, ipv6Only: false }, r));
      redis = await startRedis();
      zimbra = await startFakeZimbra();
      writeFileSync(syslog, '');
      cfg = testConfig(zimbra.url, {
        redis: { url: redis.url },
        firewall: { backend: 'nftables', table: TABLE, ports: [PORT, 8080], action: 'reject' },
        logs: [{ path: syslog, type: 'syslog' }],
        jail: { ignoreip: [], ipv6Prefix: 64 },
      });
      gk = await startGatekeeper(cfg);
    });
    after(async () => {
      await gk.stop();
      await zimbra.close();
      await redis.stop();
      listener.close();
    });

    it('creates its own table with timeout+interval sets and the rule for firewall.ports', () => {
      const rules = execFileSync('nft', ['list', 'table', 'inet', TABLE], { encoding: 'utf8' });
      assert.match(rules, /set ban4 \{\s+type ipv4_addr\s+flags interval,timeout/);
      assert.match(rules, /ip saddr @ban4 tcp dport \{ 2525, 8080 \} reject with tcp reset/);
      assert.match(rules, /hook forward/);
    });

    it('a manual ban drops 127.0.0.7 in the kernel while 127.0.0.8 still connects; unban restores it', async () => {
      assert.equal(await canConnect('127.0.0.7', '127.0.0.1'), true, 'before the ban');
      const r = await runCli(['ban', '127.0.0.7', '--for', '1h', '--api', gk.url('api', '')]);
      assert.equal(r.code, 0, r.stderr);
      await waitFor(() => nftJson('ban4').includes('127.0.0.7'), 3000, '127.0.0.7 in the nft set');
      assert.equal(await canConnect('127.0.0.7', '127.0.0.1'), false, 'banned source refused by the kernel');
      assert.equal(await canConnect('127.0.0.8', '127.0.0.1'), true, 'another source still connects');
      assert.equal((await runCli(['unban', '127.0.0.7', '--api', gk.url('api', '')])).code, 0);
      await waitFor(() => !nftJson('ban4').includes('127.0.0.7'), 3000, '127.0.0.7 gone from the set');
      assert.equal(await canConnect('127.0.0.7', '127.0.0.1'), true, 'reachable again after unban');
    });

    it('an SMTP attacker found in the logs is dropped by the kernel at once', async () => {
      for (let i = 0; i < 3; i++) {
        appendFileSync(syslog, `Mar 10 13:33:3${i} mx postfix/submission/smtpd[1]: warning: unknown[127.0.0.9]: SASL LOGIN authentication failed: authentication failure\n`);
      }
      await waitFor(() => nftJson('ban4').includes('127.0.0.9'), 5000, 'log-detected attacker in the nft set');
      assert.equal(await canConnect('127.0.0.9', '127.0.0.1'), false);
      const list = JSON.parse((await runCli(['list', '--json', '--api', gk.url('api', '')])).stdout) as { bans: Array<{ ip: string; tier: string; reason: string }> };
      assert.ok(list.bans.some((b) => b.ip === '127.0.0.9' && b.tier === 'firewall' && b.reason === 'smtp.sasl-failed'));
    });

    it('bans a CIDR (interval set) and IPv6 clients per /64', async () => {
      assert.equal((await runCli(['ban', '127.0.5.0/24', '--api', gk.url('api', '')])).code, 0);
      await waitFor(() => nftJson('ban4').includes('127.0.5.0/24'), 3000, 'CIDR in the set');
      assert.equal(await canConnect('127.0.5.9', '127.0.0.1'), false, 'an address inside the banned network');
      assert.equal(await canConnect('127.0.6.9', '127.0.0.1'), true, 'an address outside it');

      assert.equal(await canConnect('fd00::7', 'fd02::9'), true, 'IPv6 before the ban');
      assert.equal((await runCli(['ban', 'fd00::7', '--api', gk.url('api', '')])).code, 0);
      await waitFor(() => nftJson('ban6').includes('fd00::/64'), 3000, 'the /64 in ban6');
      assert.equal(await canConnect('fd00::7', 'fd02::9'), false, 'IPv6 source refused');
      assert.equal(await canConnect('fd01::8', 'fd02::9'), true, 'another /64 still connects');
    });

    it('applies 5,000 bans in a few batches', async () => {
      const before = Number(/gatekeeper_firewall_batches_total (\d+)/.exec((await send('127.0.0.1', gk.url('api', '/metrics'))).body)?.[1] ?? 0);
      const ips = Array.from({ length: 5000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      const t0 = Date.now();
      const r = await send('127.0.0.1', gk.url('api', '/api/bans'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ips, duration: '2h' }) });
      assert.equal(r.status, 201, r.body);
      await waitFor(() => nftJson('ban4').filter((e) => e.startsWith('10.')).length === 5000, 20_000, '5000 elements in the set');
      const elapsed = Date.now() - t0;
      const after = Number(/gatekeeper_firewall_batches_total (\d+)/.exec((await send('127.0.0.1', gk.url('api', '/metrics'))).body)?.[1] ?? 0);
      process.stdout.write(`# 5000 bans in the kernel set after ${elapsed} ms, in ${after - before} batch(es)\n`);
      assert.ok(after - before <= 10, `${after - before} batches`);
    });

    it('reconciles on restart: nothing lost, nothing doubled, strays removed, the table kept while stopped', async () => {
      const beforeCount = nftJson('ban4').length;
      await gk.stop();
      assert.equal(nftJson('ban4').length, beforeCount, 'bans keep holding while the gatekeeper is stopped');
      execFileSync('nft', ['delete', 'element', 'inet', TABLE, 'ban4', '{ 127.0.0.9 }']);
      execFileSync('nft', ['add', 'element', 'inet', TABLE, 'ban4', '{ 127.0.9.9 timeout 1h }']);
      gk = await startGatekeeper(cfg);
      await waitFor(() => nftJson('ban4').includes('127.0.0.9') && !nftJson('ban4').includes('127.0.9.9'), 5000, 'reconciled');
      assert.equal(nftJson('ban4').length, beforeCount);
      assert.equal(await canConnect('127.0.0.9', '127.0.0.1'), false);
    });

    it('a firewall command that fails is logged, retried, counted, and the proxy keeps serving', async () => {
      // Break the kernel side: delete our table behind the gatekeeper's back, then ban.
      execFileSync('nft', ['delete', 'table', 'inet', TABLE]);
      assert.equal((await runCli(['ban', '127.0.0.33', '--api', gk.url('api', '')])).code, 0);
      await waitFor(async () => /gatekeeper_firewall_operations_total\{op="batch",result="error"\} [1-9]/.test((await send('127.0.0.1', gk.url('api', '/metrics'))).body), 5000, 'error metric');
      const health = JSON.parse((await send('127.0.0.1', gk.url('api', '/healthz'))).body) as { status: string; firewall: { ok: boolean } };
      assert.equal(health.firewall.ok, false);
      assert.equal(health.status, 'degraded');
      assert.equal((await send('127.0.0.34', gk.url('web', '/still-serving'))).status, 200, 'the proxy is unaffected');
      assert.equal((await send('127.0.0.33', gk.url('web', '/'))).status, 429, 'the ban holds in the proxy meanwhile');
      assert.ok(gk.logs.some((l) => l.code === 'GK_ERR_FIREWALL'), 'logged with its error code');
      // A restart re-creates the table and reconciles: the ban reaches the kernel.
      await gk.stop();
      gk = await startGatekeeper(cfg);
      await waitFor(() => nftJson('ban4').includes('127.0.0.33'), 5000, 'ban applied after recovery');
    });

    it('unban --all empties the sets', async () => {
      assert.equal((await runCli(['unban', '--all', '--api', gk.url('api', '')])).code, 0);
      await waitFor(() => nftJson('ban4').length === 0 && nftJson('ban6').length === 0, 5000, 'sets empty');
      assert.equal(await canConnect('127.0.0.9', '127.0.0.1'), true);
    });
  });

  describe('ipset backend (ipset + iptables), for real', () => {
    const members = (): string[] =>
      ['gk_ipset4', 'gk_ipset6'].flatMap((set) =>
        execFileSync('ipset', ['save', set], { encoding: 'utf8' })
          .split('\n')
          .filter((l) => l.startsWith('add '))
          .map((l) => l.split(' ')[2]!),
      );
    it('bans, bans a network, unbans, and cleans up when keepOnShutdown is false', async (t) => {
      if (!which('ipset') || !which('iptables')) {
        if (process.env.CI === 'true') throw new Error('CI=true and ipset/iptables missing: apt-get install -y ipset iptables');
        t.skip('ipset/iptables not installed: apt-get install -y ipset iptables');
        return;
      }
      const zimbra = await startFakeZimbra();
      const listener = net.createServer((s) => {
        s.on('error', () => s.destroy());
        s.end('220\r\n');
      });
      await new Promise<void>((r) => listener.listen({ host: '::', port: PORT + 1, ipv6Only: false }, r));
      const gk = await startGatekeeper(testConfig(zimbra.url, { firewall: { backend: 'ipset', table: 'gk_ipset', ports: [PORT + 1], keepOnShutdown: false }, jail: { ignoreip: [] } }));
      const connect = (from: string): Promise<boolean> => canConnect(from, '127.0.0.1', PORT + 1);
      try {
        assert.match(execFileSync('iptables', ['-S', 'INPUT'], { encoding: 'utf8' }), /--match-set gk_ipset4 src -j REJECT --reject-with tcp-reset/);
        assert.equal((await runCli(['ban', '127.0.0.17', '--api', gk.url('api', '')])).code, 0);
        await waitFor(() => members().includes('127.0.0.17'), 3000, 'in the ipset');
        assert.equal(await connect('127.0.0.17'), false);
        assert.equal(await connect('127.0.0.18'), true);
        assert.equal((await runCli(['ban', '127.0.7.0/24', '--api', gk.url('api', '')])).code, 0);
        await waitFor(() => members().includes('127.0.7.0/24'), 3000, 'network in the ipset');
        assert.equal(await connect('127.0.7.1'), false);
        assert.equal((await runCli(['unban', '127.0.0.17', '--api', gk.url('api', '')])).code, 0);
        await waitFor(() => !members().includes('127.0.0.17'), 3000, 'removed');
        assert.equal(await connect('127.0.0.17'), true);
      } finally {
        await gk.stop();
        await zimbra.close();
        listener.close();
      }
      assert.doesNotMatch(execFileSync('iptables', ['-S', 'INPUT'], { encoding: 'utf8' }), /gk_ipset4/, 'rules removed at shutdown');
      assert.throws(() => execFileSync('ipset', ['list', 'gk_ipset4'], { stdio: 'ignore' }), 'set destroyed at shutdown');
    });
  });
}
