import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { which } from '../helpers/binaries.js';
import { selfSignedCertificate } from '../helpers/certificate.js';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { closeAgents, send, soapJsonAuth } from '../helpers/http-client.js';
import { banKey, startRedis, type RedisServer } from '../helpers/redis-server.js';

/*
 * A Redis that wants credentials (an ACL user; the password from GK_REDIS_PASSWORD) and one that
 * speaks only TLS (rediss://, the CA from redis.tlsCa): counting and bans work, and a wrong password
 * or an untrusted certificate shows as a degraded /healthz with the reason.
 */
const missing = ['redis-server', 'openssl'].filter((b) => !which(b));
const skip = missing.length > 0 && process.env.CI !== 'true' ? `${missing.join(', ')} not installed: apt-get install -y redis-server openssl` : false;
if (skip) process.stderr.write(`\n*** SKIPPED Redis ACL/TLS tests: ${skip} ***\n`);

const json = { 'content-type': 'application/json' };
const PASSWORD = 'gk-acl-password-1';

async function health(gk: GatekeeperProcess): Promise<{ status: string; store: { ok: boolean; detail: string } }> {
  return JSON.parse((await send('127.0.0.1', gk.url('api', '/healthz'))).body) as { status: string; store: { ok: boolean; detail: string } };
}

async function banThrough(gk: GatekeeperProcess, ip: string): Promise<void> {
  for (let i = 0; i < 3; i++) await send(ip, gk.url('web', '/service/soap/AuthRequest'), { method: 'POST', headers: json, body: soapJsonAuth('victim@example.com', `guess${i}`) });
}

describe('Redis with an ACL user and with TLS', { skip, timeout: 120_000 }, () => {
  let zimbra: FakeZimbra;
  const cleanup: Array<() => Promise<unknown>> = [];
  before(async () => {
    zimbra = await startFakeZimbra();
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c();
    await closeAgents();
    await zimbra.close();
  });

  it('an ACL user with the password from GK_REDIS_PASSWORD counts and bans; a wrong password is degraded with the reason', async () => {
    const redis: RedisServer = await startRedis('redis-server', { args: ['--user', 'default', 'off', '--user', 'gk', 'on', `>${PASSWORD}`, '~*', '&*', '+@all'] });
    cleanup.push(() => redis.stop());
    const r = new Redis({ port: redis.port, host: '127.0.0.1', username: 'gk', password: PASSWORD });
    cleanup.push(async () => r.disconnect());
    const config = testConfig(zimbra.url, { redis: { url: redis.url, username: 'gk' } });
    const gk = await startGatekeeper(config, { GK_REDIS_PASSWORD: PASSWORD });
    cleanup.push(() => gk.stop());
    assert.equal((await health(gk)).status, 'ok');
    await banThrough(gk, '127.0.30.1');
    const raw = await waitFor(() => r.get(banKey('127.0.30.1')), 5000, 'the ban in the password-protected Redis');
    assert.equal((JSON.parse(raw) as { reason: string }).reason, 'soap.auth-failed');
    assert.ok(!gk.logs.some((l) => JSON.stringify(l).includes(PASSWORD)), 'the password is never logged');

    const wrong = await startGatekeeper(config, { GK_REDIS_PASSWORD: 'not-the-password' });
    cleanup.push(() => wrong.stop());
    const h = await waitFor(async () => {
      const x = await health(wrong);
      return x.status === 'degraded' ? x : null;
    }, 10_000, 'degraded health');
    assert.match(h.store.detail, /WRONGPASS|invalid username-password/i);
  });

  it('rediss:// with the CA in redis.tlsCa counts and bans; without the CA the certificate is refused and health says why', async () => {
    const cert = selfSignedCertificate();
    const redis = await startRedis('redis-server', {
      tlsPort: true,
      args: ['--tls-cert-file', cert.certFile, '--tls-key-file', cert.keyFile, '--tls-ca-cert-file', cert.certFile, '--tls-auth-clients', 'no'],
    });
    cleanup.push(() => redis.stop());
    const url = `rediss://127.0.0.1:${redis.port}/0`;
    const r = new Redis(url, { tls: { ca: cert.cert } });
    r.on('error', () => undefined);
    cleanup.push(async () => r.disconnect());
    const gk = await startGatekeeper(testConfig(zimbra.url, { redis: { url, tlsCa: cert.certFile } }));
    cleanup.push(() => gk.stop());
    assert.equal((await health(gk)).status, 'ok');
    await banThrough(gk, '127.0.30.2');
    await waitFor(() => r.get(banKey('127.0.30.2')), 5000, 'the ban in Redis over TLS');

    const untrusting = await startGatekeeper(testConfig(zimbra.url, { redis: { url, connectTimeout: '1s' } }));
    cleanup.push(() => untrusting.stop());
    const h = await waitFor(async () => {
      const x = await health(untrusting);
      return x.status === 'degraded' ? x : null;
    }, 10_000, 'degraded health');
    assert.match(h.store.detail, /self[- ]signed certificate/i);
  });
});
