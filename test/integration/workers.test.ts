import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { which } from '../helpers/binaries.js';
import { DEFAULT_USERS, startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { runCli, startGatekeeper, testConfig, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { closeAgents, rawRequest, send, soapJsonAuth } from '../helpers/http-client.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

/*
 * proxy.workers: 2 (issue 22): the listeners served by two worker processes under one primary, counters
 * and bans shared through a real redis-server. Every connection below is a new one, so the primary's
 * round-robin spreads them over both workers.
 */

const skip = !which('redis-server') && process.env.CI !== 'true' ? 'redis-server is not installed: apt-get install -y redis-server' : false;
if (skip) process.stderr.write(`\n*** SKIPPED worker-mode integration tests: ${skip} ***\n`);

const json = { 'content-type': 'application/json' };
/** One wrong SOAP login on a new connection; the status line, or '' for a reset at accept. */
const guess = (gk: GatekeeperProcess, ip: string, account: string, i: number): Promise<string> => {
  const body = soapJsonAuth(account, `wrong${i}`);
  return rawRequest(ip, gk.ports.web!, `POST /service/soap HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`).then((r) => r.slice(0, 12));
};

describe('worker mode: 2 worker processes sharing Redis', { skip }, () => {
  let redis: RedisServer;
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  const users: Record<string, { password: string }> = { ...DEFAULT_USERS };
  for (let i = 0; i < 40; i++) users[`staff${i}@example.com`] = { password: `pw${i}` };

  before(async () => {
    redis = await startRedis();
    zimbra = await startFakeZimbra({ authDelayMs: 20, users });
    gk = await startGatekeeper(testConfig(zimbra.url, { redis: { url: redis.url }, proxy: { workers: 2 } }));
  });
  after(async () => {
    await closeAgents();
    if (gk.proc.exitCode === null) await gk.stop();
    await zimbra.close();
    await redis.stop();
  });

  const pids = (): number[] => readFileSync(`/proc/${gk.proc.pid}/task/${gk.proc.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

  it('runs a primary and two workers, each worker serving the same port', async () => {
    assert.equal(pids().length, 2);
    const workersListening = gk.logs.filter((l) => l.msg === 'listening' && l.worker !== undefined && l.listener === 'web');
    assert.equal(new Set(workersListening.map((l) => l.worker)).size, 2);
    assert.equal(new Set(workersListening.map((l) => l.port)).size, 1);
  });

  it('50 concurrent wrong logins from one address on new connections: exactly 3 reach Zimbra, then every worker refuses it', async () => {
    const ip = '127.0.7.10';
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => guess(gk, ip, 'burst@example.com', i)));
    assert.equal(zimbra.checksFrom(ip).length, 3, `${zimbra.checksFrom(ip).length} reached Zimbra; replies ${replies.join(',')}`);
    // The ban holds in both workers: ten new connections, spread over both, are all refused.
    const after = await Promise.all(Array.from({ length: 10 }, (_, i) => guess(gk, ip, 'burst@example.com', 100 + i)));
    assert.ok(after.every((r) => r === '' || r.startsWith('HTTP/1.1 429')), after.join(','));
    assert.equal(zimbra.checksFrom(ip).length, 3);
  });

  it('a ban made through the primary\'s API holds in every worker within milliseconds', async () => {
    const ip = '127.0.7.11';
    const r = await runCli(['ban', ip, '--api', gk.url('api')]);
    assert.equal(r.code, 0, r.stderr);
    const t0 = Date.now();
    await waitFor(async () => {
      const rs = await Promise.all(Array.from({ length: 6 }, () => rawRequest(ip, gk.ports.web!, 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n').then((x) => x.slice(0, 12))));
      return rs.every((x) => x === '' || x.startsWith('HTTP/1.1 429'));
    }, 3000, 'both workers refusing');
    process.stdout.write(`# ban through the primary refused by both workers after ${Date.now() - t0} ms\n`);
  });

  it('40 users behind one address logging in at once, spread over both workers: none refused', async () => {
    const office = '127.0.7.12';
    const replies = await Promise.all([
      ...Array.from({ length: 40 }, (_, i) => send(office, gk.url('web', '/service/soap'), { method: 'POST', headers: { ...json, connection: 'close' }, body: soapJsonAuth(`staff${i}@example.com`, `pw${i}`) })),
      send(office, gk.url('web', '/service/soap'), { method: 'POST', headers: { ...json, connection: 'close' }, body: soapJsonAuth('staff7@example.com', 'typo') }),
    ]);
    const refused = replies.filter((r) => r.status === 429 || r.status === 400);
    assert.equal(refused.length, 0, `${refused.length} of 41 refused: ${refused.map((r) => r.headers['x-gatekeeper']).join(',')}`);
  });

  it('/metrics on the primary adds up both workers', async () => {
    const text = (await send('127.0.0.1', gk.url('api', '/metrics'))).body;
    const failures = [...text.matchAll(/^gatekeeper_logins_total\{[^}]*outcome="failure"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    assert.ok(failures >= 4, `failures on /metrics: ${failures}`);
    const answered = [...text.matchAll(/^gatekeeper_requests_total\{listener="web",status_class="(\d)xx"\} (\d+)/gm)].reduce((n, m) => n + Number(m[2]), 0);
    assert.ok(answered >= 50, `web requests on /metrics: ${answered}`);
  });

  it('a worker that dies is restarted, and the listeners keep serving meanwhile', async () => {
    const [victim] = pids();
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => gk.logs.some((l) => l.msg === 'worker process ended unexpectedly: restarting it'), 5000, 'the restart');
    await waitFor(() => pids().length === 2 && !pids().includes(victim!), 10_000, 'a new worker');
    const r = await send('127.0.7.13', gk.url('web', '/'), { headers: { connection: 'close' } });
    assert.equal(r.status, 200);
    const text = (await send('127.0.0.1', gk.url('api', '/metrics'))).body;
    assert.match(text, /^gatekeeper_worker_restarts_total 1$/m);
  });

  it('a reload reaches the workers (jail.maxretry 3 -> 5 counts in both)', async () => {
    const cfg = YAML.parse(readFileSync(gk.configFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(gk.configFile, YAML.stringify({ ...cfg, jail: { ignoreip: [], maxretry: 5 } }));
    const r = await runCli(['reload', '--api', gk.url('api')]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => gk.logs.filter((l) => l.msg === 'config reloaded').length >= 3, 5000, 'primary and both workers reloaded');
    const ip = '127.0.7.14';
    for (let i = 0; i < 8; i++) await guess(gk, ip, 'reload@example.com', i);
    assert.equal(zimbra.checksFrom(ip).length, 5);
  });

  it('SIGTERM stops the workers, then the primary, exit code 0', async () => {
    const children = pids();
    const code = await gk.stop();
    assert.equal(code, 0);
    for (const pid of children) assert.throws(() => process.kill(pid, 0), 'worker gone');
  });
});

describe('worker mode without Redis', () => {
  it('is refused at startup with the key, the value and why (exit 2)', async () => {
    const dir = (await import('node:fs')).mkdtempSync(`${(await import('node:os')).tmpdir()}/gk-w-`);
    const file = `${dir}/gk.yml`;
    writeFileSync(file, YAML.stringify({ proxy: { workers: 2 } }));
    const r = await runCli(['check-config', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /proxy\.workers: 2 needs redis/);
  });
});
