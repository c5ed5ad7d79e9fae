import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import YAML from 'yaml';
import { requireBinary, which } from '../helpers/binaries.js';
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

// Issue 18: three real files mixing genuine failures with forged lines (a login name with a newline lets the
// client write the next physical lines). Only the writers are banned, never the addresses the forged lines name.
const mailboxTorn = (writer: string, victim: string, n: number): string =>
  `2024-03-01 12:00:0${n},000 INFO  [ImapSSLServer-8] [ip=${writer};cid=4${n};] account - authentication failed for x${n}\n` +
  `2024-03-01 12:00:0${n},001 INFO  [ImapSSLServer-9] [ip=${victim};cid=5${n};] account - authentication failed for victim${n}@example.com (no such account)\n`;
const auditTorn = (writer: string, victim: string, n: number): string =>
  `2024-03-01 13:00:0${n},000 INFO  [qtp1-1:https://mail.example.com/service/soap/AuthRequest] [oip=${writer};port=5200;soapId=4${n};] security - Error occurred during authentication: authentication failed for [x${n}\n` +
  `2024-03-01 13:00:0${n},001 WARN  [ImapSSLServer-3] [ip=192.168.20.50;oip=${victim};via=192.168.20.52(nginx/1.20.0);cid=8${n};] security - cmd=Auth; account=v@example.com; protocol=imap; error=authentication failed for [v@example.com], invalid password;]. Reason: account not found.\n`;
const syslogTorn = (victim: string, n: number): string =>
  `Mar 10 14:00:0${n} mx saslauthd[900]: auth_zimbra: x${n}\n` +
  `Mar 10 14:00:0${n} mx postfix/smtpd[1]: warning: unknown[${victim}]: SASL LOGIN authentication failed: authentication failure auth failed: authentication failed for [x${n}\n` +
  `Mar 10 14:00:0${n} mx postfix/smtpd[1]: warning: unknown[${victim}]: SASL LOGIN authentication failed: authentication failure]\n`;
const unknownProxy = (n: number): string =>
  `2024-03-01 10:06:0${n},000 WARN  [ImapSSLServer-3] [ip=127.0.0.60;oip=127.0.0.61;via=127.0.0.60(nginx/1.20.0);ua=Zimbra/10.0.0;cid=19;] security - cmd=Auth; account=info@example.com; protocol=imap; error=authentication failed for [info@example.com], invalid password;\n`;
// More than the 16 KiB after a torn line in which every line is taken as client-written.
const filler = (kind: 'zimbra' | 'syslog'): string =>
  (kind === 'zimbra' ? '2024-03-01 13:30:00,000 INFO  [main] [] misc - nothing to see here, just a line of a busy log file\n' : 'Mar 10 14:30:00 mx postfix/smtpd[5]: connect from unknown[127.0.0.99] and a little more text\n').repeat(200);

describe('forged log lines end to end', { skip }, () => {
  it('mailbox.log, audit.log and zimbra.log mixing genuine failures and forged lines: only the writers are banned', async () => {
    const redis = await startRedis();
    const zimbra = await startFakeZimbra();
    const dir = mkdtempSync(join(tmpdir(), 'gk-forged-'));
    const files = { mailbox: join(dir, 'mailbox.log'), audit: join(dir, 'audit.log'), syslog: join(dir, 'zimbra.log') };
    for (const f of Object.values(files)) writeFileSync(f, '');
    const cfg = testConfig(zimbra.url, {
      redis: { url: redis.url },
      logs: [{ path: files.mailbox, type: 'zimbra-mailbox' }, { path: files.audit, type: 'zimbra-audit' }, { path: files.syslog, type: 'syslog' }],
      zimbraProxies: ['192.168.20.50'],
    });
    const gk = await startGatekeeper(cfg);
    const r = redis.client();
    try {
      // Each injection is followed by more than the quarantine window (inside it, even a torn line of the
      // same writer is not counted: a client could forge a torn line too).
      for (let n = 1; n <= 3; n++) {
        appendFileSync(files.mailbox, mailboxTorn('127.0.0.41', '127.0.0.51', n) + filler('zimbra'));
        appendFileSync(files.audit, auditTorn('127.0.0.43', '127.0.0.52', n) + filler('zimbra') + unknownProxy(n));
        appendFileSync(files.syslog, syslogTorn('127.0.0.53', n) + filler('syslog'));
      }
      // Genuine failures after the forged ones: once these are banned, everything before was read.
      for (let n = 0; n < 3; n++) {
        appendFileSync(files.mailbox, `2024-03-01 14:00:0${n},000 INFO  [Pop3SSLServer-2] [ip=127.0.0.45;] account - authentication failed for nobody${n} (no such account)\n`);
        appendFileSync(files.audit, imapAudit('127.0.0.42'));
        appendFileSync(files.syslog, postfix('127.0.0.44', n));
      }
      for (const ip of ['127.0.0.42', '127.0.0.44', '127.0.0.45']) await waitFor(() => r.get(banKey(ip)), 10_000, `genuine attacker ${ip} banned`);
      // The addresses the forged lines name, and the unconfigured proxy and its oip, are not.
      for (const ip of ['127.0.0.51', '127.0.0.52', '127.0.0.53', '127.0.0.60', '127.0.0.61']) {
        assert.equal(await r.get(banKey(ip)), null, `${ip} is named only by forged lines or is a proxy: never banned`);
        const st = JSON.parse((await runCli(['status', ip, '--json', '--api', gk.url('api', '')])).stdout) as { failures: number };
        assert.equal(st.failures, 0, `${ip} has no failures counted`);
      }
      // The writers of the torn lines (their own, Zimbra-written addresses) are counted and banned.
      for (const ip of ['127.0.0.41', '127.0.0.43']) {
        const raw = await waitFor(() => r.get(banKey(ip)), 5000, `writer ${ip} banned`);
        assert.equal((JSON.parse(raw) as { reason: string }).reason, 'log.injection');
      }
      const metrics = (await send('127.0.0.1', gk.url('api', '/metrics'))).body;
      assert.match(metrics, /gatekeeper_log_lines_total\{type="zimbra-mailbox",result="forged"\} [1-9]/);
      assert.match(metrics, /gatekeeper_log_lines_total\{type="zimbra-audit",result="forged"\} [1-9]/);
      assert.match(metrics, /gatekeeper_log_lines_total\{type="syslog",result="forged"\} [1-9]/);
      assert.match(metrics, /gatekeeper_log_lines_total\{type="zimbra-audit",result="unknown-proxy"\} 3/);
      const health = JSON.parse((await send('127.0.0.1', gk.url('api', '/healthz'))).body) as { logs?: { warning?: string } };
      assert.match(health.logs?.warning ?? '', /GK_ERR_LOG_UNKNOWN_PROXY: 3 lines came through zimbra-proxy 127\.0\.0\.60/);
      await waitFor(() => gk.logs.some((l) => l.code === 'GK_ERR_LOG_UNKNOWN_PROXY' && l.proxy === '127.0.0.60'), 5000, 'the warning in the log');
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
      await redis.stop();
    }
  });
});

const ROOT = new URL('../../../', import.meta.url).pathname;
interface ComposeService {
  environment?: Record<string, string>;
  volumes?: string[];
  command?: string[];
}

/*
 * The firewall agent as docker-compose.yml runs it: its environment (from the same .env values as the
 * gatekeeper), its config file, and its volumes as real read-only bind mounts in a private mount namespace
 * (`unshare -m`, root only), each container path placed under a prefix of the test's own. The firewall
 * itself is left out (backend none: the firewall suite drives nftables); bans are read in Redis.
 */
describe('firewall agent through the compose mount layout', { skip }, () => {
  it('follows a rename rotation of zimbra.log and audit.log through the directory mounts, with zimbraProxies and admin.allow from .env', async (t) => {
    if (!requireBinary(t, 'unshare', 'util-linux') || !requireBinary(t, 'mount', 'mount')) return;
    if (process.getuid?.() !== 0) {
      if (process.env.CI === 'true') throw new Error('CI=true and not root: cannot bind-mount');
      t.skip('needs root for bind mounts');
      return;
    }
    const compose = YAML.parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, ComposeService> };
    const agent = compose.services['firewall-agent']!;
    const redis = await startRedis();
    t.after(() => redis.stop());
    // REDIS_PASSWORD empty: this test's redis-server has none (the compose file requires one: `${VAR:?msg}`).
    const vars: Record<string, string> = { REDIS_PORT: String(redis.port), REDIS_PASSWORD: '', GK_ADMIN_ALLOW: '203.0.113.70/32', GK_ZIMBRA_PROXIES: '192.168.20.50', GK_MODE: 'enforce' };
    const interpolate = (v: string): string => v.replace(/\$\{(\w+)(?::[-?]([^}]*))?\}/g, (_m, name: string, def?: string) => vars[name] ?? def ?? '');
    const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
    for (const [k, v] of Object.entries(agent.environment ?? {})) env[k] = interpolate(v);
    assert.equal(env.GK_ADMIN_ALLOW, '203.0.113.70/32', 'the agent gets the gatekeeper\'s admin.allow');
    assert.equal(env.GK_ZIMBRA_PROXIES, '192.168.20.50', 'the agent gets zimbraProxies from .env');

    const base = mkdtempSync(join(tmpdir(), 'gk-agent-'));
    const host = join(base, 'host');
    const container = join(base, 'container');
    const mounts: Array<{ from: string; to: string }> = [];
    const configTarget = agent.command![agent.command!.indexOf('--config') + 1]!;
    let configSource = '';
    for (const v of agent.volumes ?? []) {
      const [from, to, mode] = v.split(':');
      if (to === configTarget) {
        configSource = join(ROOT, from!);
        continue;
      }
      assert.equal(mode, 'ro', `${v} is mounted read-only`);
      assert.ok(!/\.log$/.test(from!), `${v}: a log DIRECTORY is mounted, not a file`);
      mkdirSync(join(host, from!), { recursive: true });
      mkdirSync(join(container, to!), { recursive: true });
      mounts.push({ from: join(host, from!), to: join(container, to!) });
    }
    const cfg = YAML.parse(readFileSync(configSource, 'utf8')) as { logs: Array<{ path: string; type: string }>; firewall: { backend: string } };
    cfg.firewall.backend = 'none';
    const hostPath = (type: string): string => {
      const inContainer = cfg.logs.find((l) => l.type === type)!.path;
      const m = mounts.find((x) => join(container, inContainer).startsWith(`${x.to}/`))!;
      return join(m.from, join(container, inContainer).slice(m.to.length));
    };
    const syslog = hostPath('syslog');
    const audit = hostPath('zimbra-audit');
    for (const l of cfg.logs) writeFileSync(hostPath(l.type), '');
    cfg.logs = cfg.logs.map((l) => ({ ...l, path: join(container, l.path) }));
    const cfgFile = join(base, 'firewall-agent.yml');
    writeFileSync(cfgFile, YAML.stringify(cfg));

    // sh only places the mounts and execs node; every path is a positional argument, never part of the script.
    const script = 'set -e; while [ "$#" -gt 3 ]; do mount --bind -o ro "$1" "$2"; shift 2; done; exec "$1" "$2" run --config "$3"';
    const args = ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', ...mounts.flatMap((m) => [m.from, m.to]), process.execPath, CLI, cfgFile];
    const proc = spawn('unshare', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => {
      proc.kill('SIGKILL');
    });
    const logs: Array<Record<string, unknown>> = [];
    let stderr = '';
    let buf = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        try {
          logs.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
        } catch {
          // not JSON
        }
        buf = buf.slice(nl + 1);
      }
    });
    await waitFor(() => logs.filter((l) => l.msg === 'following log file').length === cfg.logs.length, 15_000, `the agent following ${cfg.logs.length} files\n${stderr}`);

    const r = redis.client();
    // Addresses in these log lines are documentation addresses (the agent's default jail.ignoreip keeps
    // loopback); nothing is sent to them: the firewall backend is none and the lines are only text.
    // Two failures each, then logrotate's rename, then the third in the new file.
    appendFileSync(syslog, postfix('203.0.113.71', 0) + postfix('203.0.113.71', 1));
    appendFileSync(audit, imapAudit('203.0.113.72').repeat(2) + imapAudit('203.0.113.70').repeat(3));
    renameSync(syslog, `${syslog}.1`);
    writeFileSync(syslog, postfix('203.0.113.71', 2));
    renameSync(audit, `${audit}.1`);
    writeFileSync(audit, imapAudit('203.0.113.72'));
    const smtp = JSON.parse(await waitFor(() => r.get(banKey('203.0.113.71')), 10_000, `SMTP client banned after the rotation of zimbra.log\n${stderr}`)) as { reason: string };
    assert.equal(smtp.reason, 'smtp.sasl-failed');
    // oip believed: zimbraProxies came from GK_ZIMBRA_PROXIES.
    const imap = JSON.parse(await waitFor(() => r.get(banKey('203.0.113.72')), 10_000, 'IMAP client banned after the rotation of audit.log')) as { reason: string };
    assert.equal(imap.reason, 'imap.auth-failed');
    // admin.allow from GK_ADMIN_ALLOW: 3 failures (read before the rotation), never banned.
    assert.equal(await r.get(banKey('203.0.113.70')), null, 'an admin.allow address is never banned');
    assert.equal(await r.get(banKey('192.168.20.50')), null, 'the proxy is never banned');
  });
});

describe('forged lines across a restart', { skip }, () => {
  it('a torn line read before a stop still marks the lines written after it (the quarantine is saved with the position)', async () => {
    const redis = await startRedis();
    const zimbra = await startFakeZimbra();
    const dir = mkdtempSync(join(tmpdir(), 'gk-forged-restart-'));
    const mailbox = join(dir, 'mailbox.log');
    writeFileSync(mailbox, '');
    const cfg = testConfig(zimbra.url, { redis: { url: redis.url }, logs: [{ path: mailbox, type: 'zimbra-mailbox' }] });
    let gk = await startGatekeeper(cfg);
    const r = redis.client();
    try {
      appendFileSync(mailbox, '2024-03-01 12:00:00,000 INFO  [ImapSSLServer-8] [ip=127.0.0.81;cid=40;] account - authentication failed for x\n');
      await waitFor(async () => /gatekeeper_log_matches_total\{rule="log.injection",counted="true"\} 1/.test((await send('127.0.0.1', gk.url('api', '/metrics'))).body), 5000, 'the torn line read');
      await gk.stop();
      // The rest of the client's name, written after the stop: three lines naming 127.0.0.82.
      for (let n = 0; n < 3; n++) appendFileSync(mailbox, `2024-03-01 12:00:00,00${n} INFO  [ImapSSLServer-9] [ip=127.0.0.82;cid=5${n};] account - authentication failed for v${n} (no such account)\n`);
      gk = await startGatekeeper(cfg);
      appendFileSync(mailbox, filler('zimbra'));
      for (let n = 0; n < 3; n++) appendFileSync(mailbox, `2024-03-01 14:00:0${n},000 INFO  [Pop3SSLServer-2] [ip=127.0.0.83;] account - authentication failed for nobody${n} (no such account)\n`);
      await waitFor(() => r.get(banKey('127.0.0.83')), 10_000, 'the genuine attacker after the window banned');
      assert.equal(await r.get(banKey('127.0.0.82')), null, 'lines written by the client are not counted after a restart either');
      const st = JSON.parse((await runCli(['status', '127.0.0.82', '--json', '--api', gk.url('api', '')])).stdout) as { failures: number };
      assert.equal(st.failures, 0);
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
      await redis.stop();
    }
  });
});

const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;
function runCliStdin(args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const proc = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.once('exit', (code) => res({ code, stdout, stderr }));
    proc.stdin.end(input);
  });
}

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
  it('reads standard input with -, prints the lines no rule matched, and its numbers add up', async () => {
    const direct = '2024-03-01 10:00:00,001 WARN  [ImapSSLServer-7] [ip=203.0.113.77;cid=9;] security - cmd=Auth; account=info@example.com; protocol=imap; error=authentication failed for [info@example.com], invalid password;\n';
    const input = direct + 'garbage\n\n' + '2024-03-01 10:00:00,001 INFO  [main] [] misc - startup\n' + unknownProxy(1);
    const res = await runCliStdin(['test-log', '-', '--type', 'zimbra-audit', '--print-missed', '--json'], input);
    assert.equal(res.code, 0, res.stderr);
    const [missed1, missed2, json] = res.stdout.trim().split('\n');
    assert.equal(missed1, 'skipped (unparsed): garbage');
    assert.equal(missed2, 'unmatched: 2024-03-01 10:00:00,001 INFO  [main] [] misc - startup');
    const doc = JSON.parse(json!) as Record<string, number> & { notCounted: Record<string, number>; unknownProxies: Record<string, number> };
    assert.equal(doc.lines, 5);
    assert.equal(doc.lines, doc.matched + doc.unmatched + doc.skipped + doc.forged + doc.empty);
    assert.equal(doc.matched, doc.counted + doc.notCounted.proxy! + doc.notCounted.duplicate! + doc.notCounted.noAddress! + doc.notCounted.info!);
    assert.deepEqual({ matched: doc.matched, counted: doc.counted, noAddress: doc.notCounted.noAddress }, { matched: 2, counted: 1, noAddress: 1 });
    assert.deepEqual(doc.unknownProxies, { '127.0.0.60': 1 });
    assert.deepEqual((doc as unknown as { countedByIp: Record<string, number> }).countedByIp, { '203.0.113.77': 1 }, 'the line through the unconfigured proxy blames nobody');
    assert.match(res.stderr, /warning: GK_ERR_LOG_UNKNOWN_PROXY: 1 lines came through zimbra-proxy 127\.0\.0\.60/);
  });
  it('--print-matched says why each match is or is not counted; the text summary adds up', async () => {
    const fixtures = new URL('../../../test/fixtures/logs/', import.meta.url).pathname;
    // The fixture's first two genuine pairs, without its comment lines (a line between the two lines of a pair
    // would make what follows client-written).
    const pairs = readFileSync(`${fixtures}nginx.log`, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#')).slice(0, 4);
    const nginxFile = join(mkdtempSync(join(tmpdir(), 'gk-tl-')), 'nginx.log');
    writeFileSync(nginxFile, `${pairs.join('\n')}\n`);
    const nginx = JSON.parse((await runCli(['test-log', nginxFile, '--json'])).stdout) as { byRule: Record<string, number>; countedByIp: Record<string, number> };
    assert.deepEqual(nginx.byRule, { 'mailproxy.lookup-error': 2, 'mailproxy.auth-failed': 2 }, 'nginx.log is recognised by its name');
    assert.deepEqual(nginx.countedByIp, { '203.0.113.120': 1, '203.0.113.121': 1 });
    const res = await runCli(['test-log', `${fixtures}mailbox-forged.log`, '--type', 'zimbra-mailbox', '--print-matched', '--print-missed']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^log\.injection 203\.0\.113\.66 counted: /m);
    assert.match(res.stdout, /^forged \(after a torn "account - authentication failed for" line\): .*victim@example\.com/m);
    const total = /lines: +(\d+) = (\d+) matched \+ (\d+) unmatched \+ (\d+) skipped \+ (\d+) forged \+ (\d+) empty/.exec(res.stdout);
    assert.ok(total, res.stdout);
    const [, all, ...parts] = total.map(Number);
    assert.equal(all, parts.reduce((a, b) => a + b, 0));
  });
  it('names the OS reason when a file cannot be read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gk-tl-'));
    const missing = await runCli(['test-log', join(dir, 'nope.log')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /GK_ERR_USAGE: cannot read .*nope\.log: ENOENT: no such file or directory/);
    const isDir = await runCli(['test-log', dir, '--type', 'syslog']);
    assert.match(isDir.stderr, /cannot read .*: EISDIR/);
    if (process.getuid?.() !== 0) {
      const locked = join(dir, 'locked.log');
      writeFileSync(locked, 'x\n');
      chmodSync(locked, 0);
      assert.match((await runCli(['test-log', locked])).stderr, /EACCES: permission denied/);
    }
    const stdinNoType = await runCliStdin(['test-log', '-'], '');
    assert.match(stdinNoType.stderr, /standard input needs --type/);
  });
});
