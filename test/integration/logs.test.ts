import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { which } from '../helpers/binaries.js';
import { startFakeZimbra } from '../helpers/fake-zimbra.js';
import { runCli, startGatekeeper, testConfig, waitFor } from '../helpers/gatekeeper-process.js';
import { closeAgents, send } from '../helpers/http-client.js';
import { banKey, startRedis } from '../helpers/redis-server.js';

const skip = !which('redis-server') && process.env.CI !== 'true' ? 'redis-server is not installed: apt-get install -y redis-server' : false;
const postfix = (ip: string, n: number): string => `Mar 10 13:33:${String(30 + n).padStart(2, '0')} mx postfix/submission/smtpd[3937]: warning: unknown[${ip}]: SASL LOGIN authentication failed: authentication failure\n`;
const imapAudit = (ip: string): string =>
  `2024-03-01 10:00:00,001 WARN  [ImapSSLServer-7] [ip=192.168.20.50;oip=${ip};via=192.168.20.52(nginx/1.7.1);ua=Zimbra/10.0.0;cid=9;] security - cmd=Auth; account=info@example.com; protocol=imap; error=authentication failed for [info@example.com], invalid password;\n`;

describe('log-driven detection end to end', { skip }, () => {
  it('failures appended to watched files ban the client in Redis, in `gatekeeper list` and on the proxy; a restart neither loses nor re-counts lines', async () => {
    const redis = await startRedis();
    const zimbra = await startFakeZimbra();
    const dir = mkdtempSync(join(tmpdir(), 'gk-logs-'));
    const syslog = join(dir, 'zimbra.log');
    const audit = join(dir, 'audit.log');
    writeFileSync(syslog, postfix('127.0.0.30', 0).repeat(5)); // history before the first start: not counted
    const cfg = testConfig(zimbra.url, {
      redis: { url: redis.url },
      logs: [{ path: syslog, type: 'syslog' }, { path: audit, type: 'zimbra-audit' }],
      zimbraProxies: ['192.168.20.50'],
    });
    let gk = await startGatekeeper(cfg);
    const r = redis.client();
    try {
      // SMTP AUTH failures from postfix.
      for (let i = 0; i < 3; i++) appendFileSync(syslog, postfix('127.0.0.31', i));
      const raw = await waitFor(() => r.get(banKey('127.0.0.31')), 5000, 'SMTP attacker banned');
      const ban = JSON.parse(raw) as { reason: string; source: string; service: string };
      assert.deepEqual({ reason: ban.reason, source: ban.source, service: ban.service }, { reason: 'smtp.sasl-failed', source: 'log', service: 'smtp' });
      assert.equal(await r.get(banKey('127.0.0.30')), null, 'lines written before the first start are not counted');
      const list = JSON.parse((await runCli(['list', '--json', '--api', gk.url('api', '')])).stdout) as { bans: Array<{ ip: string; reason: string }> };
      assert.ok(list.bans.some((b) => b.ip === '127.0.0.31' && b.reason === 'smtp.sasl-failed'));
      assert.equal((await send('127.0.0.31', gk.url('web', '/'))).status, 429, 'the proxy refuses the SMTP attacker too');

      // IMAP failures behind zimbra-proxy: the client is oip, believed because ip= is a zimbra proxy.
      appendFileSync(audit, imapAudit('127.0.0.32').repeat(2));
      await new Promise((res) => setTimeout(res, 600));
      assert.equal(await r.get(banKey('127.0.0.32')), null, 'two failures: not yet');

      // Restart: the third line is written while the gatekeeper is down.
      await gk.stop();
      appendFileSync(audit, imapAudit('127.0.0.32'));
      gk = await startGatekeeper(cfg);
      await waitFor(() => r.get(banKey('127.0.0.32')), 5000, 'IMAP attacker banned after restart (2 before + 1 while down)');
      const status = JSON.parse((await runCli(['status', '127.0.0.31', '--json', '--api', gk.url('api', '')])).stdout) as { banned: boolean };
      assert.equal(status.banned, true, 'bans survive the restart');
      // Nothing was counted twice: the SMTP attacker's failure counter was reset by its ban and stays 0.
      const again = JSON.parse((await runCli(['status', '127.0.0.32', '--json', '--api', gk.url('api', '')])).stdout) as { failures: number };
      assert.equal(again.failures, 0);
      const metrics = (await send('127.0.0.1', gk.url('api', '/metrics'))).body;
      assert.match(metrics, /gatekeeper_log_matches_total\{rule="imap.auth-failed",counted="true"\} 1/);
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
      await redis.stop();
    }
  });
});

describe('gatekeeper test-log', () => {
  it('reports matches per rule and per address as one JSON document', async () => {
    const fixtures = new URL('../../../test/fixtures/logs/', import.meta.url).pathname;
    const res = await runCli(['test-log', `${fixtures}zimbra.log`, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as { lines: number; failures: number; successes: number; byRule: Record<string, number>; byIp: Record<string, number> };
    assert.equal(doc.byRule['smtp.sasl-failed'], 13);
    assert.equal(doc.byRule['smtp.sasl-ok'], 1);
    assert.equal(doc.byIp['82.221.106.233'], 2);
    assert.equal(doc.byIp['6.6.6.6'], undefined, 'injection lines do not match');
    assert.equal(doc.failures, 13, 'saslauthd lines (no address) are recognised but are not failures to count');
    assert.equal(doc.successes, 1);
  });
  it('uses the config\'s zimbraProxies to believe oip', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gk-tl-'));
    const cfg = join(dir, 'gk.yml');
    writeFileSync(cfg, 'zimbraProxies: [192.168.20.50]\n');
    const log = join(dir, 'audit.log');
    writeFileSync(log, imapAudit('203.0.113.77'));
    const res = await runCli(['test-log', log, '--json', '--config', cfg]);
    const doc = JSON.parse(res.stdout) as { byIp: Record<string, number> };
    assert.deepEqual(doc.byIp, { '203.0.113.77': 1 });
  });
});
