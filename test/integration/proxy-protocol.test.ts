import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { rawRequest } from '../helpers/http-client.js';
import { requireBinary } from '../helpers/binaries.js';
import { selfSignedCertificate } from '../helpers/certificate.js';

/*
 * PROXY protocol headers that carry no client address (v1 UNKNOWN, v2 LOCAL: a proxy's own health
 * checks) are served as the proxy itself, and nothing a client wrote about its address is believed.
 */

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** A v2 LOCAL header (command 0, family UNSPEC, no address). */
const V2_LOCAL = Buffer.concat([SIG, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
/** A v2 PROXY header with family UNSPEC (an address the proxy cannot express). */
const V2_UNSPEC = Buffer.concat([SIG, Buffer.from([0x21, 0x00, 0x00, 0x00])]);

const spoofing = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.66\r\nX-Real-IP: 198.51.100.66\r\nForwarded: for=198.51.100.66\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n`;

describe('PROXY protocol without a client address (v1 UNKNOWN, v2 LOCAL)', { timeout: 60_000 }, () => {
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  before(async () => {
    zimbra = await startFakeZimbra();
    const cfg = testConfig(zimbra.url, { trustedProxies: ['127.0.0.9/32'] }) as { listen: { web: Record<string, unknown> } };
    cfg.listen.web.proxyProtocol = true;
    gk = await startGatekeeper(cfg);
  });
  after(async () => {
    await gk.stop();
    await zimbra.close();
  });

  for (const { name, header } of [
    { name: 'v1 UNKNOWN', header: Buffer.from('PROXY UNKNOWN\r\n') },
    { name: 'v1 UNKNOWN with addresses after it', header: Buffer.from('PROXY UNKNOWN 198.51.100.66 127.0.0.1 1 2\r\n') },
    { name: 'v2 LOCAL', header: V2_LOCAL },
    { name: 'v2 PROXY of family UNSPEC', header: V2_UNSPEC },
  ]) {
    it(`${name}: served as the proxy itself, the client's X-Forwarded-For is not believed`, async () => {
      const path = `/pp-${name.replace(/\W+/g, '-')}`;
      const res = await rawRequest('127.0.0.9', gk.ports.web!, Buffer.concat([header, Buffer.from(spoofing(path))]));
      assert.match(res, /^HTTP\/1\.1 200/);
      const got = zimbra.reached(path).at(-1)!;
      assert.equal(got.headers['x-forwarded-for'], '127.0.0.9', 'the proxy, not the address the client wrote');
      assert.equal(got.headers['x-real-ip'], '127.0.0.9');
      assert.equal(got.headers.forwarded, undefined);
      assert.equal(got.headers['x-forwarded-proto'], 'http', 'the scheme is the listener\'s, not the client\'s');
    });
  }

  it('a header with a client address still names the client (and its X-Forwarded-For is still read behind it)', async () => {
    const res = await rawRequest('127.0.0.9', gk.ports.web!, `PROXY TCP4 198.51.100.77 127.0.0.1 40000 443\r\n${spoofing('/pp-tcp4')}`);
    assert.match(res, /^HTTP\/1\.1 200/);
    assert.equal(zimbra.reached('/pp-tcp4').at(-1)?.headers['x-forwarded-for'], '198.51.100.77');
  });
});

describe('PROXY protocol in front of an HTTPS listener', { timeout: 60_000 }, () => {
  it('the client address of the PROXY header reaches Zimbra through TLS too; LOCAL is the proxy itself', async (t) => {
    if (!requireBinary(t, 'openssl', 'openssl')) return;
    const cert = selfSignedCertificate();
    const zimbra = await startFakeZimbra();
    const cfg = testConfig(zimbra.url, { trustedProxies: ['127.0.0.9/32'] }) as { listen: { web: Record<string, unknown> } };
    cfg.listen.web.proxyProtocol = true;
    cfg.listen.web.tls = { cert: cert.certFile, key: cert.keyFile };
    const gk = await startGatekeeper(cfg);
    const tlsRequest = (header: Buffer, path: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const raw = net.connect({ host: '127.0.0.1', port: gk.ports.web!, localAddress: '127.0.0.9' }, () => {
          raw.write(header);
          const s = tls.connect({ socket: raw, rejectUnauthorized: false }, () => s.write(spoofing(path)));
          let out = '';
          s.on('data', (d: Buffer) => (out += d.toString('latin1')));
          s.on('close', () => resolve(out));
          s.on('error', reject);
        });
        raw.on('error', reject);
        raw.setTimeout(5000, () => reject(new Error(`no answer through TLS within 5 s for ${path}`)));
      });
    try {
      assert.match(await tlsRequest(Buffer.from('PROXY TCP4 198.51.100.78 127.0.0.1 40000 443\r\n'), '/tls-tcp4'), /^HTTP\/1\.1 200/);
      assert.equal(zimbra.reached('/tls-tcp4').at(-1)?.headers['x-forwarded-for'], '198.51.100.78');
      assert.match(await tlsRequest(V2_LOCAL, '/tls-local'), /^HTTP\/1\.1 200/);
      assert.equal(zimbra.reached('/tls-local').at(-1)?.headers['x-forwarded-for'], '127.0.0.9');
    } finally {
      await gk.stop();
      await zimbra.close();
    }
  });
});
