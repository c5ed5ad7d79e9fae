import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { runCli, startGatekeeper, testConfig, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { closeAgents, rawRequest, send } from '../helpers/http-client.js';
import { freePort } from '../helpers/redis-server.js';
import { requireBinary } from '../helpers/binaries.js';
import { selfSignedCertificate } from '../helpers/certificate.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('the gatekeeper process in front of a stand-in Zimbra', () => {
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  before(async () => {
    zimbra = await startFakeZimbra();
    gk = await startGatekeeper(testConfig(zimbra.url, { trustedProxies: ['127.0.0.9/32'] }));
  });
  after(async () => {
    await closeAgents();
    const code = await gk.stop();
    assert.equal(code, 0, 'clean shutdown exits 0');
    await zimbra.close();
  });

  it('forwards a GET with X-Forwarded-For overwritten by the client address', async () => {
    const r = await send('127.0.0.3', gk.url('web', '/zimbra/h/search?x=1'), { headers: { 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6', forwarded: 'for=6.6.6.6' } });
    assert.equal(r.status, 200);
    const got = zimbra.requests.at(-1)!;
    assert.equal(got.url, '/zimbra/h/search?x=1');
    assert.equal(got.headers['x-forwarded-for'], '127.0.0.3', 'spoofed X-Forwarded-For from an untrusted client is replaced');
    assert.equal(got.headers['x-real-ip'], '127.0.0.3');
    assert.equal(got.headers.forwarded, undefined);
    assert.equal(got.headers['x-forwarded-proto'], 'http');
    assert.equal(got.headers['x-forwarded-port'], String(gk.ports.web));
  });

  it('believes X-Forwarded-For from a trusted proxy (right-most untrusted entry)', async () => {
    await send('127.0.0.9', gk.url('web', '/trusted'), { headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.23', 'x-forwarded-proto': 'https', 'x-forwarded-port': '443' } });
    const got = zimbra.reached('/trusted').at(-1)!;
    assert.equal(got.headers['x-forwarded-for'], '198.51.100.23');
    assert.equal(got.headers['x-forwarded-proto'], 'https', 'the edge proxy\'s scheme is kept');
    assert.equal(got.headers['x-forwarded-port'], '443');
  });

  it('answers 400 and forwards nothing when a trusted proxy sends a malformed client address', async () => {
    const before = zimbra.requests.length;
    const r = await send('127.0.0.9', gk.url('web', '/bad-xff'), { headers: { 'x-forwarded-for': 'not-an-ip' } });
    assert.equal(r.status, 400);
    assert.equal(zimbra.requests.length, before);
  });

  it('strips hop-by-hop headers so the upstream connection stays pooled', async () => {
    const res = await rawRequest('127.0.0.3', gk.ports.web!, 'GET /hop HTTP/1.1\r\nHost: x\r\nConnection: close, x-secret-hop\r\nX-Secret-Hop: 1\r\nProxy-Authorization: Basic eA==\r\n\r\n');
    assert.match(res, /^HTTP\/1\.1 200/);
    assert.match(res, /\r\nconnection: close\r\n/i, 'the client\'s own Connection: close is honoured');
    const got = zimbra.reached('/hop').at(-1)!;
    assert.equal(got.headers['x-secret-hop'], undefined);
    assert.equal(got.headers['proxy-authorization'], undefined);
    assert.notEqual(got.headers.connection, 'close', 'a client\'s Connection: close is not forwarded');
  });

  it('admin listener: an allowlisted client gets through', async () => {
    const r = await send('127.0.0.2', gk.url('admin', '/zimbraAdmin/'));
    assert.equal(r.status, 200);
    assert.equal(zimbra.reached('/zimbraAdmin/').length, 1);
  });

  it('admin listener: a client outside admin.allow gets 403 and nothing reaches Zimbra', async () => {
    const before = zimbra.requests.length;
    const r = await send('127.0.0.3', gk.url('admin', '/zimbraAdmin/'), { headers: { accept: 'text/html' } });
    assert.equal(r.status, 403);
    assert.match(r.body, /not reachable from your network/);
    assert.equal(zimbra.requests.length, before);
  });

  it('a banned address gets 429 with Retry-After and nothing reaches Zimbra; unban restores it', async () => {
    const ban = await runCli(['ban', '127.0.0.4', '--for', '10m', '--reason', 'test', '--api', gk.url('api', '')]);
    assert.equal(ban.code, 0, ban.stderr);
    const before = zimbra.requests.length;
    const html = await send('127.0.0.4', gk.url('web', '/'), { headers: { accept: 'text/html' } });
    assert.equal(html.status, 429);
    assert.ok(Number(html.headers['retry-after']) > 500 && Number(html.headers['retry-after']) <= 600);
    assert.match(html.body, /blocked because of repeated failed logins/);
    assert.match(html.body, /Until: <time/);
    // One page per proxy.banPageInterval (60s by default): its next connections are reset at accept.
    await assert.rejects(send('127.0.0.4', gk.url('web', '/again')), (err: NodeJS.ErrnoException) => /ECONNRESET|other side closed|socket/i.test(`${err.code} ${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`));
    assert.equal(zimbra.requests.length, before, 'nothing reached Zimbra');
    const other = await send('127.0.0.5', gk.url('web', '/other'));
    assert.equal(other.status, 200, 'another address is not affected');

    const list = await runCli(['list', '--json', '--api', gk.url('api', '')]);
    const bans = (JSON.parse(list.stdout) as { bans: Array<{ ip: string; tier: string }> }).bans;
    assert.ok(bans.some((b) => b.ip === '127.0.0.4' && b.tier === 'proxy'));

    const unban = await runCli(['unban', '127.0.0.4', '--api', gk.url('api', '')]);
    assert.equal(unban.code, 0);
    assert.equal((await send('127.0.0.4', gk.url('web', '/after-unban'))).status, 200);
  });

  it('the ban page is JSON when the client asked for JSON', async () => {
    assert.equal((await runCli(['ban', '127.0.0.6', '--for', '10m', '--api', gk.url('api', '')])).code, 0);
    const before = zimbra.requests.length;
    const json = await send('127.0.0.6', gk.url('web', '/service/soap'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(json.status, 429);
    const doc = JSON.parse(json.body) as { reason: string; until: string };
    assert.equal(doc.reason, 'banned');
    assert.ok(Date.parse(doc.until) > Date.now());
    assert.equal(zimbra.requests.length, before, 'nothing reached Zimbra');
    assert.equal((await runCli(['unban', '127.0.0.6', '--api', gk.url('api', '')])).code, 0);
  });

  it('refuses to ban a protected address (the upstream) with exit 2', async () => {
    const r = await runCli(['ban', '127.0.0.1', '--api', gk.url('api', '')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /GK_ERR_PROTECTED_ADDRESS/);
    const bulk = await send('127.0.0.1', gk.url('api', '/api/bans'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ips: ['203.0.113.50'], duration: 'soon' }) });
    assert.equal(bulk.status, 400, 'a bulk ban with an invalid duration is refused, as a single one is');
    const bad = await runCli(['ban', '300.1.1.1', '--api', gk.url('api', '')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /GK_ERR_BAD_ADDRESS/);
  });

  it('answers malformed requests with 400 and keeps serving', async () => {
    const r = await send('127.0.0.3', gk.url('web', '/service/%E0%A4%A'));
    assert.equal(r.status, 400);
    assert.equal((await send('127.0.0.3', gk.url('web', '/still-alive'))).status, 200);
  });

  it('reports health with the store and upstream state', async () => {
    const r = await send('127.0.0.1', gk.url('api', '/healthz'));
    assert.equal(r.status, 200);
    const h = JSON.parse(r.body) as { status: string; store: { backend: string } };
    assert.equal(h.store.backend, 'memory');
  });
});

describe('upstream failures', () => {
  it('answers 502 when Zimbra is down, lives on, and recovers when it is back', async () => {
    const port = await freePort();
    const gk = await startGatekeeper(testConfig(`http://127.0.0.1:${port}`));
    try {
      const r = await send('127.0.0.3', gk.url('web', '/'), { headers: { accept: 'text/html' } });
      assert.equal(r.status, 502);
      assert.match(r.body, /not reachable/);
      assert.equal(gk.proc.exitCode, null, 'the process is still running');
      const zimbra = await startFakeZimbra({ port });
      try {
        assert.equal((await send('127.0.0.3', gk.url('web', '/back'))).status, 200);
      } finally {
        await zimbra.close();
      }
    } finally {
      await closeAgents();
      await gk.stop();
    }
  });
});

describe('upstream timeout', () => {
  it('answers 504 when Zimbra does not answer within proxy.upstreamTimeout, and keeps serving', async () => {
    const zimbra = await startFakeZimbra();
    const gk = await startGatekeeper(testConfig(zimbra.url, { proxy: { upstreamTimeout: '1s' } }));
    try {
      const t0 = Date.now();
      const r = await send('127.0.0.3', gk.url('web', '/hang'), { headers: { accept: 'application/json' } });
      assert.equal(r.status, 504);
      assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'upstream-timeout');
      assert.ok(Date.now() - t0 < 5000);
      assert.equal((await send('127.0.0.3', gk.url('web', '/fine'))).status, 200);
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
    }
  });
});

describe('startup errors', () => {
  it('a bad config exits 2 naming the key, the value and why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gk-bad-'));
    const file = join(dir, 'bad.yml');
    writeFileSync(file, 'jail:\n  maxretry: -1\n');
    const r = await runCli(['run', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /jail\.maxretry: -1 is not a positive integer/);
    const c = await runCli(['check-config', '--config', file]);
    assert.equal(c.code, 2);
  });
  it('check-config prints the effective config with secrets masked', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gk-ok-'));
    const file = join(dir, 'ok.yml');
    writeFileSync(file, 'api: { token: "0123456789abcdef-secret" }\njail: { maxretry: 4 }\n');
    const r = await runCli(['check-config', '--config', file], { GK_JAIL_FINDTIME: '10m' });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { config: { jail: { maxretry: number; findtime: number }; api: { token: string } } };
    assert.equal(doc.config.jail.maxretry, 4);
    assert.equal(doc.config.jail.findtime, 600);
    assert.equal(doc.config.api.token, '***');
  });
  it('status exits 3 when the gatekeeper cannot be reached', async () => {
    const port = await freePort();
    const r = await runCli(['status', '--api', `http://127.0.0.1:${port}`]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /GK_ERR_API_UNREACHABLE/);
  });
});

describe('PROXY protocol listener', () => {
  it('takes the client address from a trusted proxy\'s v1/v2 header and refuses everyone else', async () => {
    const zimbra = await startFakeZimbra();
    const cfg = testConfig(zimbra.url, { trustedProxies: ['127.0.0.9/32'] }) as { listen: { web: Record<string, unknown> } };
    cfg.listen.web.proxyProtocol = true;
    const gk = await startGatekeeper(cfg);
    try {
      const v1 = await rawRequest('127.0.0.9', gk.ports.web!, 'PROXY TCP4 198.51.100.77 127.0.0.1 40000 443\r\nGET /pp1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.match(v1, /^HTTP\/1\.1 200/);
      assert.equal(zimbra.reached('/pp1').at(-1)?.headers['x-forwarded-for'], '198.51.100.77');

      const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 198, 51, 100, 78, 127, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb]);
      const v2 = await rawRequest('127.0.0.9', gk.ports.web!, Buffer.concat([sig, Buffer.from('GET /pp2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]));
      assert.match(v2, /^HTTP\/1\.1 200/);
      assert.equal(zimbra.reached('/pp2').at(-1)?.headers['x-forwarded-for'], '198.51.100.78');

      const before = zimbra.requests.length;
      const spoof = await rawRequest('127.0.0.3', gk.ports.web!, 'PROXY TCP4 6.6.6.6 127.0.0.1 40000 443\r\nGET /spoof HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(spoof, '', 'an untrusted peer is disconnected');
      const missing = await rawRequest('127.0.0.9', gk.ports.web!, 'GET /noheader HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(missing, '', 'a trusted peer without the header is disconnected');
      assert.equal(zimbra.requests.length, before);
    } finally {
      await gk.stop();
      await zimbra.close();
    }
  });
});

describe('TLS, websockets and slow clients', () => {
  it('serves HTTPS with its own certificate in front of an HTTPS Zimbra with a self-signed one', async (t) => {
    if (!requireBinary(t, 'openssl', 'openssl')) return;
    const cert = selfSignedCertificate();
    const zimbra = await startFakeZimbra({ tls: { cert: cert.cert, key: cert.key } });
    const cfg = testConfig(zimbra.url) as { listen: { web: Record<string, unknown> } };
    cfg.listen.web.tls = { cert: cert.certFile, key: cert.keyFile };
    const gk = await startGatekeeper(cfg);
    try {
      const r = await send('127.0.0.3', `https://127.0.0.1:${gk.ports.web}/secure`);
      assert.equal(r.status, 200);
      const got = zimbra.reached('/secure').at(-1)!;
      assert.equal(got.headers['x-forwarded-proto'], 'https');
      assert.equal(got.headers['x-forwarded-for'], '127.0.0.3');
      // A banned address gets no TLS handshake at all: its connection is reset at accept.
      assert.equal((await runCli(['ban', '127.0.0.4', '--api', gk.url('api', '')])).code, 0);
      const before = zimbra.requests.length;
      await assert.rejects(send('127.0.0.4', `https://127.0.0.1:${gk.ports.web}/secure`), (err: NodeJS.ErrnoException) => /ECONNRESET|socket|TLS|closed/i.test(`${err.code} ${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`));
      assert.equal(zimbra.requests.length, before, 'nothing reached Zimbra');
    } finally {
      await closeAgents();
      await gk.stop();
      await zimbra.close();
    }
  });

  it('with zimbra.tlsVerify: true, an untrusted Zimbra certificate gets no request (502); a trusted one is served', async (t) => {
    if (!requireBinary(t, 'openssl', 'openssl')) return;
    const cert = selfSignedCertificate();
    const zimbra = await startFakeZimbra({ tls: { cert: cert.cert, key: cert.key } });
    const verifying = { zimbra: { web: zimbra.url, admin: zimbra.url, tlsVerify: true } };
    const untrusting = await startGatekeeper(testConfig(zimbra.url, verifying));
    const trusting = await startGatekeeper(testConfig(zimbra.url, verifying), { NODE_EXTRA_CA_CERTS: cert.certFile });
    try {
      const refused = await send('127.0.0.3', untrusting.url('web', '/verify-refused'));
      assert.equal(refused.status, 502);
      assert.equal(zimbra.reached('/verify-refused').length, 0, 'no request went to a Zimbra whose certificate failed');
      const served = await send('127.0.0.3', trusting.url('web', '/verify-trusted'));
      assert.equal(served.status, 200);
      assert.equal(zimbra.reached('/verify-trusted').length, 1);
    } finally {
      await closeAgents();
      await untrusting.stop();
      await trusting.stop();
      await zimbra.close();
    }
  });

  it('passes websocket upgrades through, and refuses them from banned addresses', async () => {
    const zimbra = await startFakeZimbra();
    const gk = await startGatekeeper(testConfig(zimbra.url));
    try {
      const ok = await rawRequest('127.0.0.3', gk.ports.web!, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nping', 1000);
      assert.match(ok, /^HTTP\/1\.1 101/);
      assert.match(ok, /echo:ping/);
      assert.equal(zimbra.reached('/ws').at(-1)?.headers['x-forwarded-for'], '127.0.0.3');
      assert.equal((await runCli(['ban', '127.0.0.4', '--api', gk.url('api', '')])).code, 0);
      const before = zimbra.requests.length;
      const banned = await rawRequest('127.0.0.4', gk.ports.web!, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 1000);
      // The status line, not the body: the ban page carries a timestamp that can contain "101".
      assert.match(banned, /^HTTP\/1\.1 429 /);
      assert.doesNotMatch(banned, /^HTTP\/1\.1 101/);
      assert.equal(zimbra.requests.length, before);
    } finally {
      await gk.stop();
      await zimbra.close();
    }
  });

  it('closes a connection whose headers do not arrive within proxy.headersTimeout (slowloris)', async () => {
    const zimbra = await startFakeZimbra();
    const gk = await startGatekeeper(testConfig(zimbra.url, { proxy: { headersTimeout: '1s' } }));
    try {
      const t0 = Date.now();
      const r = await rawRequest('127.0.0.3', gk.ports.web!, 'GET /slow HTTP/1.1\r\nHost: x\r\nX-A: ', 6000);
      const elapsed = Date.now() - t0;
      assert.match(r, /^HTTP\/1\.1 408/);
      assert.ok(elapsed < 4000, `closed after ${elapsed} ms`);
      assert.equal(zimbra.reached('/slow').length, 0);
    } finally {
      await gk.stop();
      await zimbra.close();
    }
  });
});
