import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import { requireBinary } from '../helpers/binaries.js';
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

  it('status page renders bans and the 24-hour chart in real headless Chromium, and unbans with a token', async (t) => {
    const chromium = requireBinary(t, 'chromium', 'chromium');
    if (!chromium) return;
    const { chromium: pw } = await import('playwright-core');
    const zimbra = await startFakeZimbra();
    const token = 'status-page-token-0123456789';
    const gk = await startGatekeeper(testConfig(zimbra.url, { api: { token } }));
    const shot = join(mkdtempSync(join(tmpdir(), 'gk-shot-')), 'status.png');
    const browser = await pw.launch({
      executablePath: chromium,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      for (let i = 0; i < 3; i++) await send('127.0.0.23', gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('target@example.com', 'wrong') });
      await send('127.0.0.24', gk.url('web', '/dav/x/'), { method: 'PROPFIND', headers: { authorization: `Basic ${Buffer.from('dav@example.com:bad').toString('base64')}` } });
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      await page.goto(gk.url('api', '/'));
      await page.waitForSelector('body[data-loaded="error"]');
      assert.match(await page.textContent('#error') ?? '', /401/, 'without the token the API refuses');
      await page.fill('#token', token);
      await page.click('#save');
      await page.waitForSelector('body[data-loaded="1"]');
      await page.waitForSelector('#bans button[data-ip="127.0.0.23"]');
      assert.ok((await page.locator('#chart rect.bar').count()) >= 1, 'the chart has bars');
      assert.match((await page.textContent('#legend')) ?? '', /soap/);
      assert.match((await page.textContent('#topips')) ?? '', /127\.0\.0\.23/);
      assert.match((await page.textContent('#topaccounts')) ?? '', /target@example\.com/);
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(statSync(shot).size > 10_000, 'a real screenshot was written');
      process.stdout.write(`# status page screenshot: ${shot}\n`);
      await page.click('#bans button[data-ip="127.0.0.23"]');
      await waitFor(async () => (await send('127.0.0.23', gk.url('web', '/x'))).status === 200, 5000, 'unbanned from the page');
    } finally {
      await browser.close();
      await closeAgents();
      await gk.stop();
      await zimbra.close();
    }
  });
});
