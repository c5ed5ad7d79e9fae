import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import YAML from 'yaml';
import { which } from '../helpers/binaries.js';
import { selfSignedCertificate } from '../helpers/certificate.js';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { runCli, startGatekeeper, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
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

const REDIS_PASSWORD = 'test0redis0password0d3adb33f';

type Service = { image?: string; healthcheck?: { test?: string[] }; command?: string[]; environment?: Record<string, string>; volumes?: string[]; network_mode?: string; cap_add?: string[]; user?: string; profiles?: string[] };
const compose = YAML.parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service> };

/** ${VAR:-default}, ${VAR:?error}, ${VAR} and $$ as compose does, from `vars`. */
function interpolate(s: string, vars: Record<string, string>): string {
  return s
    .replace(/\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g, (_, name: string, op: string | undefined, arg: string | undefined) => {
      if (vars[name]) return vars[name]!;
      if (op === '?') throw new Error(`compose would refuse to start: ${name} unset (${arg})`);
      return arg ?? '';
    })
    .replace(/\$\$/g, '$');
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
    for (const k of ['REDIS_PORT', 'EDGE_HTTP_PORT', 'EDGE_HTTPS_PORT', 'EDGE_ADMIN_PORT', 'WEB', 'ADMIN', 'API']) ports[k] = await freePort();
    zimbra = await startFakeZimbra();
    const vars: Record<string, string> = {
      REDIS_PORT: String(ports.REDIS_PORT),
      ZIMBRA_WEB: zimbra.url,
      ZIMBRA_ADMIN: zimbra.url,
      GK_ADMIN_ALLOW: '127.0.0.2/32',
      EDGE_HTTP_PORT: String(ports.EDGE_HTTP_PORT),
      EDGE_HTTPS_PORT: String(ports.EDGE_HTTPS_PORT),
      EDGE_ADMIN_PORT: String(ports.EDGE_ADMIN_PORT),
      REDIS_PASSWORD: REDIS_PASSWORD,
    };

    // redis, with the compose command and environment (the data dir: the test's own, as its cwd).
    const rs = compose.services.redis!;
    const rc = rs.command!.map((a) => interpolate(a, vars));
    assert.deepEqual(rc.slice(0, 2), ['sh', '-c']);
    const renv = Object.fromEntries(Object.entries(rs.environment ?? {}).map(([k, v]) => [k, interpolate(v, vars)]));
    redis = spawn('sh', ['-c', rc[2]!], { stdio: 'ignore', cwd: dir, env: { PATH: process.env.PATH ?? '', ...renv } });
    r = new Redis({ port: ports.REDIS_PORT, host: '127.0.0.1', password: REDIS_PASSWORD, retryStrategy: () => 50 });
    r.on('error', () => undefined);
    await waitFor(async () => (await r.ping().catch(() => '')) === 'PONG', 10_000, 'redis up');

    // gatekeeper, with the compose command, config file and environment.
    const g = compose.services.gatekeeper!;
    const env = Object.fromEntries(Object.entries(g.environment ?? {}).map(([k, v]) => [k, interpolate(v, vars)]));
    const mount = g.volumes!.find((v) => v.endsWith(':/etc/gatekeeper/gatekeeper.yml:ro'))!;
    const cfg = YAML.parse(readFileSync(join(ROOT, mount.split(':')[0]!), 'utf8')) as Record<string, Record<string, unknown>>;
    assert.deepEqual(g.command, ['run', '--config', '/etc/gatekeeper/gatekeeper.yml']);
    cfg.listen = { web: { host: '127.0.0.1', port: ports.WEB }, admin: { host: '127.0.0.1', port: ports.ADMIN }, api: { host: '127.0.0.1', port: ports.API } };
    // Loopback addresses are the test's distinct clients, as they are k6's: the load-test overlay's
    // environment (deploy/compose.load-test.yml) makes the gatekeeper count them.
    const overlay = YAML.parse(readFileSync(join(ROOT, 'deploy/compose.load-test.yml'), 'utf8')) as { services: Record<string, Service> };
    for (const [k, v] of Object.entries(overlay.services.gatekeeper!.environment ?? {})) env[k] = interpolate(v, vars);
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
    await waitFor(async () => (await send('127.0.0.1', `https://127.0.0.1:${ports.EDGE_HTTPS_PORT}/up`).catch(() => null))?.status === 200, 10_000, 'nginx up');
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

  it('Redis requires the password from .env (given on stdin, not on its command line); the healthcheck passes only with it', async () => {
    // A client without the password, speaking RESP by hand.
    const answer = await new Promise<string>((res, rej) => {
      const sock = connect(ports.REDIS_PORT!, '127.0.0.1', () => sock.write('PING\r\n'));
      sock.once('data', (d) => {
        res(d.toString());
        sock.destroy();
      });
      sock.once('error', rej);
    });
    assert.match(answer, /^-NOAUTH/);
    assert.equal(await r.get('gk:ban:none'), null, 'the gatekeeper\'s own URL carries the password');
    assert.doesNotMatch(readFileSync(`/proc/${redis.pid}/cmdline`, 'utf8'), new RegExp(REDIS_PASSWORD), 'not visible in ps');
    assert.equal(readFileSync(`/proc/${redis.pid}/comm`, 'utf8'), 'redis-server\n', 'the shell exec()s redis-server: it is PID 1 in the container and gets the SIGTERM of a stop');
    const hc = compose.services.redis!.healthcheck!.test!;
    assert.equal(hc[0], 'CMD-SHELL');
    const vars = { REDIS_PORT: String(ports.REDIS_PORT) };
    const withAuth = spawnSync('sh', ['-c', interpolate(hc[1]!, vars)], { env: { PATH: process.env.PATH ?? '', REDISCLI_AUTH: REDIS_PASSWORD } });
    assert.equal(withAuth.status, 0);
    const without = spawnSync('sh', ['-c', interpolate(hc[1]!, vars)], { env: { PATH: process.env.PATH ?? '' } });
    assert.notEqual(without.status, 0, 'a NOAUTH answer is not healthy');
  });

  it('pins every image to a version, and .env.example exported in a shell leaves the CLI working', async () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      if (!svc.image || svc.image.startsWith('zimbra-gatekeeper:')) continue;
      assert.match(svc.image, /:\d+\.\d+\.\d+(-[a-z]+)?$/, `${name}: ${svc.image} is not pinned to a version`);
    }
    const env: Record<string, string> = {};
    for (const line of readFileSync(join(ROOT, '.env.example'), 'utf8').split('\n')) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
      if (m) env[m[1]!] = m[2]!;
    }
    const check = await runCli(['check-config', '--config', join(ROOT, 'deploy/gatekeeper.yml')], env);
    assert.equal(check.code, 0, check.stderr);
    assert.doesNotMatch(check.stderr, /unknown environment variable/);
    // The k6 brute-force overlay: its clients are counted, and k6 expects the limit the config has.
    const overlay = YAML.parse(readFileSync(join(ROOT, 'deploy/compose.load-test.yml'), 'utf8')) as { services: Record<string, Service> };
    const loadCheck = await runCli(['check-config', '--config', join(ROOT, 'deploy/gatekeeper.yml')], { ...env, ...overlay.services.gatekeeper!.environment });
    const cfg = (JSON.parse(loadCheck.stdout) as { config: { jail: { ignoreip: string[]; maxretry: number } } }).config;
    assert.deepEqual(cfg.jail.ignoreip, []);
    assert.equal(String(cfg.jail.maxretry), overlay.services.k6!.environment!.MAXRETRY);
  });

  it('HTTPS through nginx reaches Zimbra with the real client address; a client-supplied X-Forwarded-For changes nothing', async () => {
    const res = await send('127.0.0.3', `https://127.0.0.1:${ports.EDGE_HTTPS_PORT}/zimbra/mail`, { headers: { 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['strict-transport-security']), /max-age=/);
    const got = zimbra.reached('/zimbra/mail').at(-1)!;
    assert.equal(got.headers['x-forwarded-for'], '127.0.0.3');
    assert.equal(got.headers['x-forwarded-proto'], 'https');
    assert.equal(got.headers['x-forwarded-port'], String(ports.EDGE_HTTPS_PORT));
  });

  it('plain HTTP redirects to HTTPS', async () => {
    const res = await send('127.0.0.3', `http://127.0.0.1:${ports.EDGE_HTTP_PORT}/x`);
    assert.equal(res.status, 301);
    assert.match(String(res.headers.location), /^https:\/\//);
  });

  it('failed logins through nginx ban the real client, not nginx, even when it forges X-Forwarded-For', async () => {
    const url = `https://127.0.0.1:${ports.EDGE_HTTPS_PORT}/service/soap/AuthRequest`;
    for (let i = 0; i < 3; i++) {
      const res = await send('127.0.0.5', url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': `10.9.9.${i}` }, body: soapJsonAuth('edge@example.com', 'wrong') });
      assert.equal(res.status, 500);
    }
    await waitFor(() => r.get(banKey('127.0.0.5')), 5000, 'the client is banned in Redis');
    assert.equal(await r.get(banKey('127.0.0.1')), null, 'nginx (a trusted proxy) is never banned');
    assert.equal((await send('127.0.0.5', url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 429);
    assert.equal((await send('127.0.0.6', `https://127.0.0.1:${ports.EDGE_HTTPS_PORT}/ok`)).status, 200, 'other clients are unaffected');
  });

  it('the admin console behind nginx answers only admin.allow', async () => {
    const admin = `https://127.0.0.1:${ports.EDGE_ADMIN_PORT}/zimbraAdmin/`;
    assert.equal((await send('127.0.0.2', admin)).status, 200);
    assert.equal((await send('127.0.0.3', admin)).status, 403);
  });
});
