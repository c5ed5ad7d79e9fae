import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import { startFakeZimbra } from '../helpers/fake-zimbra.js';
import { runCli, startGatekeeper, testConfig, waitFor } from '../helpers/gatekeeper-process.js';
import { closeAgents, send, soapJsonAuth } from '../helpers/http-client.js';

const json = { 'content-type': 'application/json' };

describe('operating the gatekeeper', () => {
  it('reloads on SIGHUP and `gatekeeper reload` without dropping connections or bans; a bad config is refused and the old one kept', async () => {
    const zimbra = await startFakeZimbra();
    const gk = await startGatekeeper(testConfig(zimbra.url));
    try {
      assert.equal((await send('127.0.0.3', gk.url('admin', '/a'))).status, 403, '127.0.0.3 is not in admin.allow');
      assert.equal((await runCli(['ban', '127.0.0.66', '--api', gk.url('api', '')])).code, 0);
      // A keep-alive connection opened before the reload must survive it.
      const before = await send('127.0.0.2', gk.url('admin', '/keepalive'));
      assert.equal(before.status, 200);

      const cfg = YAML.parse(readFileSync(gk.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
      cfg.admin!.allow = ['127.0.0.2/32', '127.0.0.3/32'];
      writeFileSync(gk.configFile, YAML.stringify(cfg));
      gk.proc.kill('SIGHUP');
      await waitFor(async () => (await send('127.0.0.3', gk.url('admin', '/b'))).status === 200, 5000, 'admin.allow reloaded');
      assert.equal((await send('127.0.0.2', gk.url('admin', '/keepalive2'))).status, 200);
      assert.equal((await send('127.0.0.66', gk.url('web', '/'))).status, 429, 'bans survive the reload');

      cfg.jail = { maxretry: -5 };
      writeFileSync(gk.configFile, YAML.stringify(cfg));
      const bad = await runCli(['reload', '--api', gk.url('api', '')]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /jail\.maxretry: -5 is not a positive integer/);
      assert.equal((await send('127.0.0.3', gk.url('admin', '/c'))).status, 200, 'the old config keeps running');

      cfg.jail = { ignoreip: [] };
      cfg.listen!.web = { host: '127.0.0.1', port: 1 };
      writeFileSync(gk.configFile, YAML.stringify(cfg));
      const ok = await runCli(['reload', '--json', '--api', gk.url('api', '')]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual((JSON.parse(ok.stdout) as { restartNeeded: string[] }).restartNeeded, ['listen']);
      assert.equal(gk.proc.exitCode, null);
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
    }
  });

  it('posts bans to the webhook, retrying with backoff, without holding up the request path', async () => {
    const received: Array<Record<string, unknown>> = [];
    let calls = 0;
    const hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        calls++;
        if (calls === 1) {
          res.writeHead(503).end(); // first attempt fails: must be retried
          return;
        }
        received.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const zimbra = await startFakeZimbra();
    const gk = await startGatekeeper(testConfig(zimbra.url, { notify: { webhook: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`, retries: 3 } }));
    try {
      for (let i = 0; i < 3; i++) await send('127.0.0.21', gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('hooked@example.com', 'wrong') });
      await waitFor(() => received.length === 1, 8000, 'webhook delivery after a retry');
      assert.equal(calls, 2);
      const n = received[0]!;
      assert.equal(n.event, 'ban');
      assert.equal(n.ip, '127.0.0.21');
      assert.equal(n.rule, 'soap.auth-failed');
      assert.ok(Date.parse(String(n.until)) > Date.now());
      const metrics = (await send('127.0.0.1', gk.url('api', '/metrics'))).body;
      assert.match(metrics, /gatekeeper_notifications_total\{result="retried"\} 1/);
      assert.match(metrics, /gatekeeper_notifications_total\{result="sent"\} 1/);
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
      hook.close();
    }
  });

  it('exposes Prometheus metrics with no address or user name in any label, and redacts secrets in its logs', async () => {
    const zimbra = await startFakeZimbra();
    const gk = await startGatekeeper(testConfig(zimbra.url));
    try {
      await send('127.0.0.22', gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('secret-user@example.com', 'Pa55word!') });
      await send('127.0.0.3', gk.url('admin', '/'));
      const m = (await send('127.0.0.1', gk.url('api', '/metrics'))).body;
      for (const name of ['gatekeeper_requests_total', 'gatekeeper_logins_total', 'gatekeeper_rejections_total', 'gatekeeper_upstream_response_seconds', 'gatekeeper_store_operation_seconds', 'gatekeeper_store_up', 'gatekeeper_active_bans']) {
        assert.ok(m.includes(name), `${name} missing`);
      }
      assert.match(m, /gatekeeper_logins_total\{service="soap",rule="soap.auth-failed",outcome="failure"\} 1/);
      assert.match(m, /gatekeeper_rejections_total\{listener="admin",reason="admin-allowlist"\} 1/);
      const labels = m.split('\n').filter((l) => !l.startsWith('#') && l.includes('{'));
      for (const l of labels) {
        assert.doesNotMatch(l, /127\.0\.0\.|secret-user/, `a label carries an address or user: ${l}`);
      }
      const logText = JSON.stringify(gk.logs);
      assert.ok(!logText.includes('Pa55word!'), 'no password in the logs');
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
    }
  });
  // The status page is tested in status-page.test.ts.
});
