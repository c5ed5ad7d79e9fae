import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import YAML from 'yaml';
import { which } from '../helpers/binaries.js';
import { selfSignedCertificate } from '../helpers/certificate.js';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { closeAgents, send, soapJsonAuth } from '../helpers/http-client.js';
import { banKey, freePort } from '../helpers/redis-server.js';

/*
 * Runs what docker-compose.yml describes, without Docker: redis-server with the compose command,
 * the gatekeeper with the compose command, config file and environment, and Debian's nginx with the
 * files from nginx/ (self-signed certificate), in front of the stand-in Zimbra, all on loopback.
 * Deviations, because this machine is shared: ports are free ones passed through the same variables,
 * and the firewall-agent service (root + NET_ADMIN on the host) is not started here (the firewall is
 * tested in a network namespace by firewall.test.ts).
 */
const ROOT = resolve(new URL('../../../', import.meta.url).pathname);
const missing = ['redis-server', 'nginx', 'openssl'].filter((b) => !which(b));
const skip = missing.length ? `missing ${missing.join(', ')}: apt-get install -y redis-server nginx-light openssl` : false;
if (skip && process.env.CI === 'true') throw new Error(`CI=true and ${skip}`);
if (skip) process.stderr.write(`\n*** SKIPPED deployment test: ${skip} ***\n`);

type Service = { command?: string[]; environment?: Record<string, string>; volumes?: string[]; network_mode?: string; cap_add?: string[]; user?: string; profiles?: string[] };
const compose = YAML.parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service> };

/** ${VAR:-default} and ${VAR} as compose does, from `vars`. */
function interpolate(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g, (_, name: string, def: string | undefined) => vars[name] ?? def ?? '');
}

describe('docker-compose.yml, run for real without Docker', { skip }, () => {
  let redis: ChildProcess;
  let nginx: ChildProcess;
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  let r: Redis;
  const ports: Record<string, number> = {};
  const dir = mkdtempSync(join(tmpdir(), 'gk-deploy-'));

  before(async () => {
    for (const k of ['REDIS_PORT', 'GK_EDGE_HTTP_PORT', 'GK_EDGE_HTTPS_PORT', 'GK_EDGE_ADMIN_PORT', 'WEB', 'ADMIN', 'API']) ports[k] = await freePort();
    zimbra = await startFakeZimbra();
    const vars: Record<string, string> = {
      REDIS_PORT: String(ports.REDIS_PORT),
      ZIMBRA_WEB: zimbra.url,
      ZIMBRA_ADMIN: zimbra.url,
      GK_ADMIN_ALLOW: '127.0.0.2/32',
      GK_EDGE_HTTP_PORT: String(ports.GK_EDGE_HTTP_PORT),
      GK_EDGE_HTTPS_PORT: String(ports.GK_EDGE_HTTPS_PORT),
      GK_EDGE_ADMIN_PORT: String(ports.GK_EDGE_ADMIN_PORT),
    };

    // redis, with the compose command (plus a data dir of the test's own).
    const rc = compose.services.redis!.command!.map((a) => interpolate(a, vars));
    assert.equal(rc[0], 'redis-server');
    redis = spawn('redis-server', [...rc.slice(1), '--dir', dir], { stdio: 'ignore' });
    r = new Redis({ port: ports.REDIS_PORT, host: '127.0.0.1', retryStrategy: () => 50 });
    r.on('error', () => undefined);
    await waitFor(async () => (await r.ping().catch(() => '')) === 'PONG', 10_000, 'redis up');

    // gatekeeper, with the compose command, config file and environment.
    const g = compose.services.gatekeeper!;
    const env = Object.fromEntries(Object.entries(g.environment ?? {}).map(([k, v]) => [k, interpolate(v, vars)]));
    const mount = g.volumes!.find((v) => v.endsWith(':/etc/gatekeeper/gatekeeper.yml:ro'))!;
    const cfg = YAML.parse(readFileSync(join(ROOT, mount.split(':')[0]!), 'utf8')) as Record<string, Record<string, unknown>>;
    assert.deepEqual(g.command, ['run', '--config', '/etc/gatekeeper/gatekeeper.yml']);
    cfg.listen = { web: { host: '127.0.0.1', port: ports.WEB }, admin: { host: '127.0.0.1', port: ports.ADMIN }, api: { host: '127.0.0.1', port: ports.API } };
    cfg.jail = { ...cfg.jail, ignoreip: [] }; // loopback addresses are the test's distinct clients
    gk = await startGatekeeper(cfg, env);

    // nginx with nginx/nginx.conf and the rendered template.
    const cert = selfSignedCertificate();
    const n = compose.services.nginx!;
    const nenv: Record<string, string> = Object.fromEntries(Object.entries(n.environment ?? {}).map(([k, v]) => [k, interpolate(v, vars)]));
    nenv.GK_WEB_UPSTREAM = `127.0.0.1:${ports.WEB}`;
    nenv.GK_ADMIN_UPSTREAM = `127.0.0.1:${ports.ADMIN}`;
    nenv.GK_TLS_CERT = cert.certFile;
    nenv.GK_TLS_KEY = cert.keyFile;
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(join(dir, 'nginx.conf'), readFileSync(join(ROOT, 'nginx/nginx.conf')));
    const template = readFileSync(join(ROOT, 'nginx/templates/gatekeeper.conf.template'), 'utf8');
    // envsubst restricted to GK_* (NGINX_ENVSUBST_FILTER), as the image does.
    writeFileSync(join(dir, 'conf.d/gatekeeper.conf'), template.replace(/\$\{(GK_[A-Z0-9_]+)\}/g, (_, k: string) => nenv[k] ?? ''));
    chmodSync(dir, 0o755);
    const t = spawnSync('nginx', ['-t', '-p', dir, '-c', join(dir, 'nginx.conf')], { encoding: 'utf8' });
    assert.equal(t.status, 0, `nginx -t refused the config:\n${t.stderr}`);
    nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore' });
    await waitFor(async () => (await send('127.0.0.1', `https://127.0.0.1:${ports.GK_EDGE_HTTPS_PORT}/up`).catch(() => null))?.status === 200, 10_000, 'nginx up');
  });

  after(async () => {
    await closeAgents();
    nginx?.kill('SIGQUIT');
    await gk?.stop();
    await zimbra?.close();
    r?.disconnect();
    redis?.kill('SIGKILL');
  });

  it('describes the services the deployment needs: host network, persistent non-evicting Redis, NET_ADMIN only for the firewall agent', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.profiles?.includes('load')) continue;
      assert.equal(s.network_mode, 'host', `${name} must use the host network (no userland proxy hiding client addresses)`);
    }
    const rc = compose.services.redis!.command!.join(' ');
    assert.match(rc, /--appendonly yes/);
    assert.match(rc, /--maxmemory-policy noeviction/);
    assert.equal(compose.services.gatekeeper!.user, 'node');
    assert.deepEqual(compose.services['firewall-agent']!.cap_add, ['NET_ADMIN']);
    assert.ok(compose.services['firewall-agent']!.volumes!.some((v) => v.startsWith('/opt/zimbra/log:') && v.endsWith(':ro')));
    assert.ok(compose.services.k6!.profiles!.includes('load'));
  });

  it('HTTPS through nginx reaches Zimbra with the real client address; a client-supplied X-Forwarded-For changes nothing', async () => {
    const res = await send('127.0.0.3', `https://127.0.0.1:${ports.GK_EDGE_HTTPS_PORT}/zimbra/mail`, { headers: { 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['strict-transport-security']), /max-age=/);
    const got = zimbra.reached('/zimbra/mail').at(-1)!;
    assert.equal(got.headers['x-forwarded-for'], '127.0.0.3');
    assert.equal(got.headers['x-forwarded-proto'], 'https');
    assert.equal(got.headers['x-forwarded-port'], String(ports.GK_EDGE_HTTPS_PORT));
  });

  it('plain HTTP redirects to HTTPS', async () => {
    const res = await send('127.0.0.3', `http://127.0.0.1:${ports.GK_EDGE_HTTP_PORT}/x`);
    assert.equal(res.status, 301);
    assert.match(String(res.headers.location), /^https:\/\//);
  });

  it('failed logins through nginx ban the real client, not nginx, even when it forges X-Forwarded-For', async () => {
    const url = `https://127.0.0.1:${ports.GK_EDGE_HTTPS_PORT}/service/soap/AuthRequest`;
    for (let i = 0; i < 3; i++) {
      const res = await send('127.0.0.5', url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': `10.9.9.${i}` }, body: soapJsonAuth('edge@example.com', 'wrong') });
      assert.equal(res.status, 500);
    }
    await waitFor(() => r.get(banKey('127.0.0.5')), 5000, 'the client is banned in Redis');
    assert.equal(await r.get(banKey('127.0.0.1')), null, 'nginx (a trusted proxy) is never banned');
    assert.equal((await send('127.0.0.5', url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 429);
    assert.equal((await send('127.0.0.6', `https://127.0.0.1:${ports.GK_EDGE_HTTPS_PORT}/ok`)).status, 200, 'other clients are unaffected');
  });

  it('the admin console behind nginx answers only admin.allow', async () => {
    const admin = `https://127.0.0.1:${ports.GK_EDGE_ADMIN_PORT}/zimbraAdmin/`;
    assert.equal((await send('127.0.0.2', admin)).status, 200);
    assert.equal((await send('127.0.0.3', admin)).status, 403);
  });
});
