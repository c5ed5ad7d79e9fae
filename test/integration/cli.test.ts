import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { which } from '../helpers/binaries.js';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { runCli, startGatekeeper, testConfig, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { closeAgents, send, soapJsonAuth } from '../helpers/http-client.js';
import { startRedis } from '../helpers/redis-server.js';

const json = { 'content-type': 'application/json' };
const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

describe('CLI basics (no gatekeeper needed)', () => {
  it('--version prints the package version', async () => {
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `gatekeeper ${pkg.version}\n`);
  });

  it('help, help COMMAND and COMMAND --help print that command\'s usage; unknown commands exit 2', async () => {
    const all = await runCli(['help']);
    assert.equal(all.code, 0);
    assert.match(all.stdout, /^usage: gatekeeper <command>/);
    assert.match(all.stdout, /exit codes:/);
    const viaHelp = await runCli(['help', 'status']);
    const viaFlag = await runCli(['status', '--help']);
    assert.equal(viaHelp.code, 0);
    assert.equal(viaFlag.code, 0);
    assert.equal(viaHelp.stdout, viaFlag.stdout);
    assert.match(viaFlag.stdout, /^usage: gatekeeper status \[IP\]/);
    assert.doesNotMatch(viaFlag.stdout, /^commands:/m, 'a command\'s help is not the global usage');
    assert.match((await runCli(['unban', '-h'])).stdout, /--split/);
    const unknown = await runCli(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    assert.equal((await runCli(['help', 'frobnicate'])).code, 2);
    assert.equal((await runCli([])).code, 2);
  });

  it('usage errors exit 2 before anything is sent: a bad --for, a bad --tier, an option the command does not take', async () => {
    // Port 9 (discard) on loopback: nothing listens, so reaching the API would exit 3, not 2.
    const api = ['--api', 'http://127.0.0.1:9'];
    const badFor = await runCli(['ban', '127.0.0.77', '--for', 'soon', ...api]);
    assert.equal(badFor.code, 2, badFor.stderr);
    assert.match(badFor.stderr, /GK_ERR_USAGE: --for "soon" is not a duration/);
    assert.equal((await runCli(['list', '--tier', 'kernel', ...api])).code, 2);
    assert.equal((await runCli(['list', '--since', 'yesterday-ish', ...api])).code, 2);
    const stray = await runCli(['list', '--for', '1h', ...api]);
    assert.equal(stray.code, 2);
    assert.match(stray.stderr, /list does not take --for/);
    assert.equal((await runCli(['list', ...api])).code, 3, 'a well-formed command that cannot reach the API exits 3');
  });

  it('completion bash|zsh prints scripts the shells accept, listing every command', async (t) => {
    for (const shell of ['bash', 'zsh'] as const) {
      const r = await runCli(['completion', shell]);
      assert.equal(r.code, 0);
      for (const c of ['status', 'list', 'ban', 'unban', 'reload', 'test-log', 'help', 'completion']) assert.ok(r.stdout.includes(c), `${shell}: ${c}`);
      const bin = which(shell);
      if (!bin) {
        t.diagnostic(`${shell} not installed: syntax not checked`);
        continue;
      }
      const check = spawnSync(bin, ['-n'], { input: r.stdout, encoding: 'utf8' });
      assert.equal(check.status, 0, `${shell} -n: ${check.stderr}`);
    }
    if (which('bash')) {
      // Complete `gatekeeper unban --s` in a real bash with the script loaded.
      const script = (await runCli(['completion', 'bash'])).stdout;
      const r = spawnSync('bash', ['-c', `${script}\nCOMP_WORDS=(gatekeeper unban --s); COMP_CWORD=2; _gatekeeper; echo "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
      assert.equal(r.stdout.trim(), '--split');
    }
    assert.equal((await runCli(['completion', 'fish'])).code, 2);
  });
});

describe('CLI against a running gatekeeper', () => {
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  let api: string[];
  before(async () => {
    zimbra = await startFakeZimbra();
    gk = await startGatekeeper(testConfig(zimbra.url));
    api = ['--api', gk.url('api', '')];
  });
  after(async () => {
    await closeAgents();
    await gk.stop();
    await zimbra.close();
  });

  it('shows --reason in list and status, with local times and the time left', async () => {
    const b = await runCli(['ban', '127.0.0.80', '--for', '2h', '--reason', 'ticket 4711: password spraying', ...api]);
    assert.equal(b.code, 0, b.stderr);
    const list = await runCli(['list', ...api]);
    assert.match(list.stdout, /127\.0\.0\.80 .*ticket 4711: password spraying/);
    assert.match(list.stdout, /REASON/);
    assert.match(list.stdout, /1h 59m|2h 0m/, 'time left');
    assert.doesNotMatch(list.stdout, /\d\.\d{3}Z/, 'no raw UTC with milliseconds');
    const status = await runCli(['status', '127.0.0.80', ...api]);
    assert.match(status.stdout, /reason: +ticket 4711: password spraying/);
  });

  it('filters list by service, rule, tier and since (CLI and API)', async () => {
    for (let i = 0; i < 3; i++) await send('127.0.0.81', gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('f@example.com', 'wrong') });
    await waitFor(async () => (await send('127.0.0.81', gk.url('web', '/x'))).status === 429, 15_000, 'automatic ban');
    assert.equal((await runCli(['ban', '127.0.0.82', ...api])).code, 0);
    const ips = async (args: string[]): Promise<string[]> => {
      const r = await runCli(['list', '--json', ...args, ...api]);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { bans: Array<{ ip: string }> }).bans.map((x) => x.ip).filter((ip) => ip === '127.0.0.81' || ip === '127.0.0.82').sort();
    };
    assert.deepEqual(await ips([]), ['127.0.0.81', '127.0.0.82']);
    assert.deepEqual(await ips(['--service', 'soap']), ['127.0.0.81']);
    assert.deepEqual(await ips(['--rule', 'manual']), ['127.0.0.82']);
    assert.deepEqual(await ips(['--rule', 'soap.auth-failed', '--tier', 'proxy']), ['127.0.0.81']);
    assert.deepEqual(await ips(['--tier', 'firewall']), []);
    assert.deepEqual(await ips(['--since', '1h']), ['127.0.0.81', '127.0.0.82']);
    assert.deepEqual(await ips(['--since', '2099-01-01T00:00:00Z']), []);
    const text = await runCli(['list', '--service', 'nothing-like-this', ...api]);
    assert.equal(text.stdout, 'no active bans match\n');
    const bad = await send('127.0.0.1', gk.url('api', '/api/bans?tier=kernel'));
    assert.equal(bad.status, 400);
    assert.match(bad.body, /GK_ERR_API_REQUEST/);
  });

  it('refuses a CIDR with host bits set (showing the network), and a ban wider than /16 or /32 without --force', async () => {
    const hostBits = await runCli(['ban', '10.0.0.0/4', ...api]);
    assert.equal(hostBits.code, 2);
    assert.match(hostBits.stderr, /10\.0\.0\.0\/4 has host bits set: the network is 0\.0\.0\.0\/4/);
    const hostBits6 = await runCli(['ban', '2001:db8::1/64', ...api]);
    assert.equal(hostBits6.code, 2);
    assert.match(hostBits6.stderr, /the network is 2001:db8::\/64/);
    const wide = await runCli(['ban', '10.0.0.0/8', ...api]);
    assert.equal(wide.code, 2);
    assert.match(wide.stderr, /10\.0\.0\.0\/8 covers 16777216 addresses, wider than \/16: add --force/);
    assert.equal((await runCli(['ban', '2001:db8::/24', ...api])).code, 2);
    assert.equal((await runCli(['ban', '2001:db8::/32', ...api])).code, 0, 'a /32 needs no --force');
    assert.equal((await runCli(['ban', '10.0.0.0/8', '--force', ...api])).code, 0);
    const listed = (await runCli(['list', ...api])).stdout;
    assert.match(listed, /^10\.0\.0\.0\/8 /m);
    assert.doesNotMatch(listed, /0\.0\.0\.0\/4/, 'nothing wider was banned by the refused commands');
    // Bulk bans through the API follow the same rules.
    const bulk = await send('127.0.0.1', gk.url('api', '/api/bans'), { method: 'POST', headers: json, body: JSON.stringify({ ips: ['192.0.2.7/24', '203.0.113.0/24'] }) });
    assert.equal(bulk.status, 201);
    assert.equal((JSON.parse(bulk.body) as { banned: number }).banned, 1);
    assert.equal((await runCli(['unban', '10.0.0.0/8', ...api])).code, 0);
  });

  it('unban of an address inside a banned range names the range and exits 4; --split carves it out', async () => {
    assert.equal((await runCli(['ban', '127.0.5.0/24', '--reason', 'botnet', ...api])).code, 0);
    assert.equal((await send('127.0.5.5', gk.url('web', '/x'))).status, 429);
    const refused = await runCli(['unban', '127.0.5.5', ...api]);
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(refused.stderr, /GK_ERR_RANGE_BANNED: 127\.0\.5\.5 is inside the banned network 127\.0\.5\.0\/24/);
    assert.match(refused.stderr, /--split/);
    // (A second request of a banned client within proxy.banPageInterval is reset, not answered: ask the API.)
    assert.equal((JSON.parse((await send('127.0.0.1', gk.url('api', '/api/status/127.0.5.5'))).body) as { banned: boolean }).banned, true, 'nothing was lifted');
    assert.match((await runCli(['status', '127.0.5.5', ...api])).stdout, /banned: +yes by the network ban of 127\.0\.5\.0\/24/);

    const split = await runCli(['unban', '127.0.5.5', '--split', ...api]);
    assert.equal(split.code, 0, split.stderr);
    assert.match(split.stdout, /lifted the ban of 127\.0\.5\.0\/24 and banned the rest of it again \(8 networks\)/);
    await waitFor(async () => (await send('127.0.5.5', gk.url('web', '/x'))).status === 200, 15_000, '127.0.5.5 served after the split');
    for (const other of ['127.0.5.4', '127.0.5.6', '127.0.5.0', '127.0.5.255', '127.0.5.128']) {
      assert.equal((await send(other, gk.url('web', '/x'))).status, 429, `${other} stays banned`);
    }
    const after = (await runCli(['list', '--json', '--rule', 'manual', ...api])).stdout;
    const targets = (JSON.parse(after) as { bans: Array<{ ip: string; note?: string }> }).bans.filter((b) => b.ip.startsWith('127.0.5.'));
    assert.deepEqual(targets.map((b) => b.ip).sort(), ['127.0.5.0/30', '127.0.5.128/25', '127.0.5.16/28', '127.0.5.32/27', '127.0.5.4', '127.0.5.6/31', '127.0.5.64/26', '127.0.5.8/29']);
    assert.ok(targets.every((b) => b.note?.includes('botnet')), 'the reason is kept');
    // An address banned by itself inside a banned network: unbanned, with a warning that it stays refused.
    assert.equal((await runCli(['ban', '127.0.5.130', ...api])).code, 0);
    const both = await runCli(['unban', '127.0.5.130', ...api]);
    assert.equal(both.code, 0);
    assert.match(both.stdout, /unbanned 127\.0\.5\.130/);
    assert.match(both.stderr, /warning: 127\.0\.5\.130 stays banned by the network ban of 127\.0\.5\.128\/25/);
    const malformed = await send('127.0.0.1', gk.url('api', '/api/bans/%E0%A4%A'), { method: 'DELETE' });
    assert.equal(malformed.status, 400, 'a malformed escape is a bad request');
  });
});

describe('honest health', () => {
  it('/healthz, `gatekeeper status` and the API go degraded with the reason while Zimbra is down, and ok again after', async () => {
    let zimbra = await startFakeZimbra();
    const port = zimbra.port;
    const gk = await startGatekeeper(testConfig(zimbra.url));
    const api = ['--api', gk.url('api', '')];
    type Health = { status: string; reasons: string[]; upstreams: Record<string, { ok: boolean; lastStatus: number | null; latencyMs: number | null; lastOkAt: string | null; detail: string }> };
    const health = async (path = '/healthz'): Promise<{ status: number; h: Health }> => {
      const r = await send('127.0.0.1', gk.url('api', path));
      return { status: r.status, h: JSON.parse(r.body) as Health };
    };
    try {
      const up = await waitFor(async () => {
        const { h } = await health();
        return h.upstreams.web?.ok && h.upstreams.admin?.ok ? h : null;
      }, 10_000, 'first probe');
      assert.equal(up.status, 'ok');
      assert.deepEqual(up.reasons, []);
      assert.equal(up.upstreams.web!.lastStatus, 200);
      assert.ok(up.upstreams.web!.latencyMs! >= 0);
      const okText = await runCli(['status', ...api]);
      assert.match(okText.stdout, /^status: +ok/m);
      assert.match(okText.stdout, /zimbra web +http:\/\/127\.0\.0\.1:\d+: up, HTTP 200 in \d+ ms/);

      await zimbra.close();
      // A request that finds Zimbra down makes the gatekeeper re-check at once (else within 15 s).
      assert.equal((await send('127.0.0.90', gk.url('web', '/x'))).status, 502);
      const down = await waitFor(async () => {
        const { h } = await health();
        return h.status === 'degraded' ? h : null;
      }, 20_000, 'degraded');
      assert.ok(down.reasons.some((r) => r.startsWith(`zimbra web (http://127.0.0.1:${port}):`)), JSON.stringify(down.reasons));
      assert.equal(down.upstreams.web!.ok, false);
      assert.equal(down.upstreams.web!.lastStatus, null);
      assert.ok(down.upstreams.web!.lastOkAt, 'the last good answer is kept');
      assert.equal((await health('/healthz')).status, 200, 'plain /healthz stays 200 (the container is serving)');
      assert.equal((await health('/healthz?strict=1')).status, 503);
      const text = await runCli(['status', ...api]);
      assert.equal(text.code, 0);
      assert.match(text.stdout, /^status: +degraded/m);
      assert.match(text.stdout, /! zimbra web/);
      assert.match(text.stdout, /zimbra web .*: DOWN: .*\(last good answer \d{4}-/);
      const overview = JSON.parse((await send('127.0.0.1', gk.url('api', '/api/status'))).body) as { health: Health };
      assert.equal(overview.health.status, 'degraded');

      zimbra = await startFakeZimbra({ port });
      await waitFor(async () => (await send('127.0.0.91', gk.url('web', '/x'))).status === 200, 20_000, 'served again');
      await waitFor(async () => (await health()).h.status === 'ok', 20_000, 'ok again');
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
    }
  });
});

const noRedis = which('redis-server') ? false : 'redis-server is not installed: apt-get install -y redis-server';
if (noRedis && process.env.CI === 'true') throw new Error(`CI=true and ${noRedis}`);
if (noRedis) process.stderr.write(`\n*** SKIPPED runtime allowlist test: ${noRedis} ***\n`);

describe('runtime allowlist (gatekeeper allow), two instances sharing a real Redis', { skip: noRedis }, () => {
  it('allow add lifts the bans inside, is applied on the other instance at once, never counts or bans, expires, and allow remove counts again', async () => {
    const redis = await startRedis();
    const zimbra = await startFakeZimbra();
    const cfg = testConfig(zimbra.url, { redis: { url: redis.url } });
    const a = await startGatekeeper(cfg);
    const b = await startGatekeeper(cfg);
    const apiA = ['--api', a.url('api', '')];
    const apiB = ['--api', b.url('api', '')];
    const fail = (gk: GatekeeperProcess, ip: string) => send(ip, gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('office@example.com', 'wrong') });
    try {
      assert.equal((await runCli(['ban', '127.0.8.7', ...apiA])).code, 0);
      await waitFor(async () => (await send('127.0.8.7', b.url('web', '/x'))).status === 429, 15_000, 'the ban reached B');

      const add = await runCli(['allow', 'add', '127.0.8.0/24', '--reason', 'office', ...apiA]);
      assert.equal(add.code, 0, add.stderr);
      assert.match(add.stdout, /allowed 127\.0\.8\.0\/24 \(office\); lifted the bans of 127\.0\.8\.7/);
      await waitFor(async () => (await send('127.0.8.7', b.url('web', '/x'))).status === 200, 15_000, 'unbanned on B');

      // On B: five wrong passwords from the office reach Zimbra (its own answers), never a 429.
      for (let i = 0; i < 5; i++) assert.equal((await fail(b, '127.0.8.5')).status, 500, `attempt ${i + 1} answered by Zimbra`);
      const st = JSON.parse((await runCli(['status', '127.0.8.5', '--json', ...apiB])).stdout) as { ignored: boolean; failures: number; banned: boolean };
      assert.deepEqual([st.ignored, st.failures, st.banned], [true, 0, false]);
      const refused = await runCli(['ban', '127.0.8.9', ...apiB]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /GK_ERR_PROTECTED_ADDRESS: 127\.0\.8\.9 overlaps the runtime allowlist/);

      const list = await runCli(['allow', 'list', ...apiB]);
      assert.match(list.stdout, /^127\.0\.8\.0\/24 +until removed .*office$/m);
      assert.match(list.stdout, /static \(config: .*\): 127\.0\.0\.1/, 'the static part is shown too');
      assert.equal((await runCli(['allow', 'add', '127.0.0.0/4', ...apiA])).code, 2, 'host bits refused');
      assert.equal((await runCli(['allow', 'add', '10.0.0.0/8', ...apiA])).code, 2, 'wider than /16 needs --force');
      assert.equal((await runCli(['allow', 'frob', ...apiA])).code, 2);

      // A timed entry stops counting as allowlisted when its time is up.
      // (Asked over HTTP, not through the CLI: spawning it takes seconds on a loaded machine.)
      const ignoredOnB = async (ip: string): Promise<boolean> => (JSON.parse((await send('127.0.0.1', b.url('api', `/api/status/${ip}`))).body) as { ignored: boolean }).ignored;
      assert.equal((await runCli(['allow', 'add', '127.0.9.1', '--for', '8s', ...apiA])).code, 0);
      await waitFor(() => ignoredOnB('127.0.9.1'), 8000, 'allowlisted on B');
      await waitFor(async () => !(await ignoredOnB('127.0.9.1')), 20_000, 'expired on B');

      const rm = await runCli(['allow', 'remove', '127.0.8.0/24', ...apiB]);
      assert.equal(rm.code, 0);
      assert.match(rm.stdout, /removed 127\.0\.8\.0\/24 from the allowlist/);
      await waitFor(async () => !(JSON.parse((await runCli(['status', '127.0.8.5', '--json', ...apiA])).stdout) as { ignored: boolean }).ignored, 15_000, 'removed on A');
      for (let i = 0; i < 3; i++) await fail(a, '127.0.8.5');
      await waitFor(async () => (await send('127.0.8.5', b.url('web', '/x'))).status === 429, 15_000, 'counted and banned again');
    } finally {
      await closeAgents();
      await a.stop();
      await b.stop();
      await zimbra.close();
      await redis.stop();
    }
  });
});

describe('evidence and history (gatekeeper why, gatekeeper history), two instances sharing a real Redis', { skip: noRedis }, () => {
  it('why names the rule, who made the ban and the failed logins it was made from, on the other instance too; history lists bans and unbans with who made them', async () => {
    const redis = await startRedis();
    const zimbra = await startFakeZimbra();
    const cfg = testConfig(zimbra.url, { redis: { url: redis.url } });
    const a = await startGatekeeper(cfg);
    const b = await startGatekeeper(cfg);
    const apiA = ['--api', a.url('api', '')];
    const apiB = ['--api', b.url('api', '')];
    try {
      for (const account of ['alice@example.com', 'bob@example.com', 'carol@example.com']) {
        await send('127.0.0.40', a.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth(account, 'wrong') });
      }
      await waitFor(async () => (await send('127.0.0.40', b.url('web', '/x'))).status === 429, 15_000, 'banned on B');
      type Why = { banned: boolean; madeBy: string; ban: { rule: string }; evidence: Array<{ service: string; account: string; failures: number }>; history: Array<{ action: string }> };
      const w = await waitFor(async () => {
        const r = JSON.parse((await runCli(['why', '127.0.0.40', '--json', ...apiB])).stdout) as Why;
        return r.evidence.length ? r : null;
      }, 15_000, 'evidence shared through Redis');
      assert.equal(w.banned, true);
      assert.equal(w.ban.rule, 'soap.auth-failed');
      assert.equal(w.madeBy, 'proxy');
      assert.deepEqual(w.evidence.map((e) => [e.service, e.account, e.failures]), [['soap', 'alice@example.com', 1], ['soap', 'bob@example.com', 1], ['soap', 'carol@example.com', 1]]);
      const text = await runCli(['why', '127.0.0.40', ...apiB]);
      assert.equal(text.code, 0);
      assert.match(text.stdout, /^rule: +soap\.auth-failed \(soap\), ban #1 of this address: 3 failures within 1800s$/m);
      assert.match(text.stdout, /^made by: +proxy at /m);
      assert.match(text.stdout, /evidence \(the failed logins counted before the ban\):\n.*soap +alice@example\.com +1 failure/);

      assert.equal((await runCli(['unban', '127.0.0.40', ...apiB])).code, 0);
      assert.equal((await runCli(['ban', '127.0.0.41', '--reason', 'ticket 7', ...apiA])).code, 0);
      const h = await waitFor(async () => {
        const r = JSON.parse((await runCli(['history', '127.0.0.40', '--json', ...apiA])).stdout) as { events: Array<{ action: string; by: string }> };
        return r.events.length === 2 ? r : null;
      }, 15_000, 'ban and unban in the history');
      assert.deepEqual(h.events.map((e) => [e.action, e.by]), [['unban', 'manual (cli from 127.0.0.1)'], ['ban', 'proxy']]);
      const all = await runCli(['history', '--since', '1h', ...apiB]);
      assert.match(all.stdout, /127\.0\.0\.41 +ban manual \(manual\), tier proxy, ban #1, until .*, ticket 7; by manual \(cli from 127\.0\.0\.1\)/);
      assert.match(all.stdout, /127\.0\.0\.40 +ban soap\.auth-failed \(soap\).*3 failure\(s\) kept as evidence; by proxy/);
      assert.equal((await runCli(['history', '--limit', 'many', ...apiB])).code, 2);

      // An address inside a banned network: why names the network and the ban's own story.
      assert.equal((await runCli(['ban', '127.0.6.0/24', '--reason', 'botnet', ...apiA])).code, 0);
      const covered = await waitFor(async () => {
        const r = JSON.parse((await runCli(['why', '127.0.6.9', '--json', ...apiB])).stdout) as { coveredBy: string | null; madeBy: string | null };
        return r.madeBy ? r : null;
      }, 15_000, 'covered address explained');
      assert.equal(covered.coveredBy, '127.0.6.0/24');
      assert.equal(covered.madeBy, 'manual (cli from 127.0.0.1)');
    } finally {
      await closeAgents();
      await a.stop();
      await b.stop();
      await zimbra.close();
      await redis.stop();
    }
  });
});
