import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { which } from '../helpers/binaries.js';
import { startFakeZimbra } from '../helpers/fake-zimbra.js';
import { runCli, startGatekeeper, testConfig, waitFor } from '../helpers/gatekeeper-process.js';
import { closeAgents, send, soapJsonAuth } from '../helpers/http-client.js';

/*
 * The status page in Debian's chromium (headless, through playwright-core), as an admin uses it:
 * on a desktop and on a 390 px phone. UPDATE_SCREENSHOTS=1 writes the README's screenshots to docs/.
 */
const json = { 'content-type': 'application/json' };
const chromium = which('chromium');
const skip = chromium ? false : 'chromium is not installed: apt-get install -y chromium';
if (skip && process.env.CI === 'true') throw new Error(`CI=true and ${skip}`);
if (skip) process.stderr.write(`\n*** SKIPPED status page tests: ${skip} ***\n`);
const shots = process.env.UPDATE_SCREENSHOTS === '1' ? new URL('../../../docs/', import.meta.url).pathname : mkdtempSync(join(tmpdir(), 'gk-shot-'));

async function launch(): Promise<Browser> {
  const { chromium: pw } = await import('playwright-core');
  return pw.launch({
    executablePath: chromium!,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Every card of the at-a-glance row lies inside the first screen. */
async function cardsAboveFold(page: Page, height: number): Promise<void> {
  for (const id of ['#cstate', '#cbans', '#chour', '#ctop']) {
    const box = await page.locator(id).boundingBox();
    assert.ok(box && box.y + box.height <= height, `${id} is below the fold (${JSON.stringify(box)})`);
  }
}

describe('status page in Chromium', { skip }, () => {
  let browser: Browser;
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await closeAgents();
  });

  it('with an api.token: at a glance, bans with service/rule/reason/since/time left, search and filters, ban form, unban after confirmation, chart with axis and counts, favicon; fits a 390 px phone', async () => {
    const zimbra = await startFakeZimbra();
    const token = 'status-page-token-0123456789';
    const gk = await startGatekeeper(testConfig(zimbra.url, { api: { token } }));
    const api = ['--api', gk.url('api', '')];
    const env = { GK_API_TOKEN: token };
    try {
      for (let i = 0; i < 3; i++) await send('127.0.0.23', gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('target@example.com', 'wrong') });
      await send('127.0.0.24', gk.url('web', '/dav/x/'), { method: 'PROPFIND', headers: { authorization: `Basic ${Buffer.from('dav@example.com:bad').toString('base64')}` } });
      assert.equal((await runCli(['ban', '127.0.0.25', '--reason', 'ticket 42: credential stuffing', ...api], env)).code, 0);
      assert.equal((await runCli(['ban', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1', '--reason', 'a long IPv6 address on a phone', ...api], env)).code, 0);

      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      const missing: string[] = [];
      page.on('response', (r) => {
        if (r.status() === 404) missing.push(r.url());
      });
      await page.goto(gk.url('api', '/'));
      await page.waitForSelector('body[data-loaded="error"]');
      assert.match((await page.textContent('#error')) ?? '', /API token/, 'without the token the API refuses and the page says why');
      await page.fill('#token', token);
      await page.click('#save');
      await page.waitForSelector('body[data-loaded="1"][data-access="write"]');
      await page.waitForSelector('#bans tr[data-ip="127.0.0.23"]');

      // At a glance, above the fold.
      await cardsAboveFold(page, 800);
      assert.equal(await page.textContent('#cstate'), 'ok');
      assert.equal(await page.textContent('#cbans'), '3');
      assert.ok(Number(await page.textContent('#chour')) >= 1, 'failed logins this hour');
      assert.equal(await page.textContent('#ctop'), 'soap');
      assert.equal(await page.textContent('#state'), 'ok');

      // The bans table: service, rule, reason, since (local time, no raw UTC), time left.
      const row = page.locator('#bans tr[data-ip="127.0.0.25"]');
      assert.equal(await row.locator('td[data-label="service"]').textContent(), 'manual');
      assert.equal(await row.locator('td[data-label="reason"]').textContent(), 'ticket 42: credential stuffing');
      assert.doesNotMatch((await row.locator('td[data-label="since"]').textContent()) ?? '', /Z|\.\d{3}/);
      assert.match((await row.locator('td[data-label="time left"]').textContent()) ?? '', /^\d+h \d+m/);
      const auto = page.locator('#bans tr[data-ip="127.0.0.23"]');
      assert.equal(await auto.locator('td[data-label="rule"]').textContent(), 'soap.auth-failed');
      await auto.locator('td[data-label="address"]').click();
      assert.match((await page.locator('#bans tr.detail').textContent()) ?? '', /ban #1 of this address · source proxy/);
      // Evidence on click: who made the ban and the failed logins it was made from.
      await waitFor(async () => /made by proxy; the failed logins counted before the ban:.*soap · target@example\.com · 1 failure/.test((await page.locator('#bans tr.detail').textContent()) ?? ''), 15_000, 'evidence shown');
      assert.equal(await page.locator('#bans tr.detail li').count(), 3);

      // Search and filters.
      await page.fill('#search', 'ticket 42');
      assert.deepEqual(await page.locator('#bans tr.ban').evaluateAll((rows) => rows.map((r) => (r as unknown as { dataset: { ip: string } }).dataset.ip)), ['127.0.0.25']);
      await page.fill('#search', '');
      await page.selectOption('#fservice', 'soap');
      assert.deepEqual(await page.locator('#bans tr.ban').evaluateAll((rows) => rows.map((r) => (r as unknown as { dataset: { ip: string } }).dataset.ip)), ['127.0.0.23']);
      assert.equal(await page.textContent('#bancount'), '1 of 3');
      await page.selectOption('#fservice', '');

      // The chart: bars, a y axis with three ticks, counts over the bars, hour labels.
      assert.ok((await page.locator('#chart rect.bar').count()) >= 1);
      assert.equal(await page.locator('#chart text.ytick').count(), 3);
      const counts = await page.locator('#chart text.count').allTextContents();
      assert.ok(counts.length >= 1 && counts.every((c) => /^\d+$/.test(c)), `counts over the bars: ${counts}`);
      assert.equal(await page.locator('#chart text.xtick').count(), 8);
      assert.match((await page.textContent('#legend')) ?? '', /soap 3/);

      await page.screenshot({ path: join(shots, 'status-page.png') });
      assert.ok(statSync(join(shots, 'status-page.png')).size > 10_000);

      // The ban form: a refused network shows the API's reason; a good one is banned for real.
      await page.fill('#banform input[name=ip]', '10.0.0.0/4');
      await page.click('#banform button[type=submit]');
      await waitFor(async () => /host bits set: the network is 0\.0\.0\.0\/4/.test((await page.textContent('#formmsg')) ?? ''), 15_000, 'form error');
      await page.fill('#banform input[name=ip]', '127.0.7.0/24');
      await page.fill('#banform input[name=duration]', '2h');
      await page.fill('#banform input[name=reason]', 'from the form');
      await page.click('#banform button[type=submit]');
      await page.waitForSelector('#bans tr[data-ip="127.0.7.0/24"]');
      assert.equal((await send('127.0.7.9', gk.url('web', '/x'))).status, 429, 'the form\'s ban holds');

      // Unban asks first: cancel changes nothing, confirm lifts the ban.
      await page.click('#bans button.unban[data-ip="127.0.0.23"]');
      assert.ok(await page.locator('#confirm').evaluate((d) => (d as unknown as { open: boolean }).open));
      assert.equal(await page.textContent('#confirmip'), '127.0.0.23');
      await page.click('#confirm button[value=cancel]');
      assert.equal((JSON.parse((await send('127.0.0.1', gk.url('api', '/api/status/127.0.0.23'), { headers: { authorization: `Bearer ${token}` } })).body) as { banned: boolean }).banned, true, 'cancel keeps the ban');
      await page.click('#bans button.unban[data-ip="127.0.0.23"]');
      await page.click('#confirmyes');
      await waitFor(async () => (await send('127.0.0.23', gk.url('web', '/x'))).status === 200, 15_000, 'unbanned from the page');
      await page.waitForSelector('#bans tr[data-ip="127.0.0.23"]', { state: 'detached' });

      // The allowlist: added from the page (lifting the ban inside it), removed after a confirmation.
      await page.fill('#allowform input[name=cidr]', '127.0.7.0/24');
      await page.fill('#allowform input[name=reason]', 'office');
      await page.click('#allowform button[type=submit]');
      await waitFor(async () => /allowed 127\.0\.7\.0\/24; lifted 1 ban/.test((await page.textContent('#allowmsg')) ?? ''), 15_000, 'allowed from the page');
      await page.waitForSelector('#allow button.disallow[data-cidr="127.0.7.0/24"]');
      assert.equal((await send('127.0.7.10', gk.url('web', '/x'))).status, 200, 'the office is served');
      assert.match((await page.textContent('#allowstatic')) ?? '', /127\.0\.0\.1/);
      await page.click('#allow button.disallow[data-cidr="127.0.7.0/24"]');
      assert.equal(await page.textContent('#confirmip'), '127.0.7.0/24');
      await page.click('#confirmyes');
      await page.waitForSelector('#allow button.disallow[data-cidr="127.0.7.0/24"]', { state: 'detached' });
      assert.match((await runCli(['allow', 'list', ...api], env)).stdout, /no runtime entries/);

      // Favicon: served, no 404 on the page.
      const icon = await send('127.0.0.1', gk.url('api', '/favicon.ico'));
      assert.equal(icon.status, 200);
      assert.equal(icon.headers['content-type'], 'image/svg+xml');
      assert.deepEqual(missing, []);

      // A 390 px phone: no sideways scroll, the glance still on the first screen.
      await page.setViewportSize({ width: 390, height: 844 });
      await page.reload();
      await page.waitForSelector('body[data-loaded="1"]');
      const width = Number(await page.evaluate('document.documentElement.scrollWidth'));
      assert.ok(width <= 390, `the page is ${width} px wide at 390`);
      await cardsAboveFold(page, 844);
      // Readable, not squeezed: every address on one line, every unban button inside the screen.
      for (const cell of await page.locator('#bans td[data-label="address"] span').all()) {
        const box = (await cell.boundingBox())!;
        assert.ok(box.height < 24, `${await cell.textContent()} wraps (${box.height} px high)`);
      }
      for (const b of await page.locator('#bans button.unban').all()) {
        const box = (await b.boundingBox())!;
        assert.ok(box.x >= 0 && box.x + box.width <= 390, 'unban button off screen');
      }
      await page.screenshot({ path: join(shots, 'status-page-phone.png'), fullPage: true });
      process.stdout.write(`# status page screenshots in ${shots}\n`);
      await page.close();
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
    }
  });

  it('without an api.token the page is read-only (the API refuses a browser\'s writes; the CLI still works) and the header shows Zimbra down', async () => {
    const zimbra = await startFakeZimbra();
    const gk = await startGatekeeper(testConfig(zimbra.url));
    const api = ['--api', gk.url('api', '')];
    try {
      assert.equal((await runCli(['ban', '127.0.0.26', ...api])).code, 0);
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(gk.url('api', '/'));
      await page.waitForSelector('body[data-loaded="1"][data-access="read-only"]');
      await page.waitForSelector('#bans tr[data-ip="127.0.0.26"]');
      assert.equal(await page.locator('#bans button.unban').count(), 0, 'no unban buttons');
      assert.ok(await page.locator('#banform').isHidden(), 'no ban form');
      assert.ok(await page.locator('#allowform').isHidden(), 'no allowlist form');
      assert.equal((await runCli(['allow', 'add', '127.0.0.29', ...api])).code, 0);
      await page.reload();
      await page.waitForSelector('#allow tr td[data-label="network"]');
      assert.equal(await page.locator('#allow button.disallow').count(), 0, 'no remove buttons');
      assert.ok(await page.locator('#login').isHidden(), 'no token field that would "unlock" anything');
      assert.ok(await page.locator('#readonly').isVisible());
      // Even a hand-made request from the page (any site could make it) is refused.
      const status = await page.evaluate(async () => (await fetch('/api/bans/127.0.0.26', { method: 'DELETE' })).status);
      assert.equal(status, 403);
      const simple = await page.evaluate(async () => (await fetch('/api/bans', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"ip":"127.0.0.27"}' })).status);
      assert.equal(simple, 403);
      assert.match((await runCli(['list', ...api])).stdout, /127\.0\.0\.26/, 'still banned');

      // Zimbra down: the header goes degraded with the reason.
      await zimbra.close();
      await send('127.0.0.28', gk.url('web', '/x'));
      await waitFor(async () => {
        await page.reload();
        await page.waitForSelector('body[data-loaded="1"]');
        return (await page.textContent('#state')) === 'degraded';
      }, 20_000, 'degraded in the header');
      assert.match((await page.textContent('#reasons')) ?? '', /zimbra web \(http:\/\/127\.0\.0\.1:\d+\)/);
      assert.equal(await page.textContent('#cstate'), 'degraded');
      await page.screenshot({ path: join(shots, 'status-page-degraded.png') });
      await page.close();
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close().catch(() => undefined);
    }
  });
});
