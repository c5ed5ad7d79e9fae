import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { closeAgents, rawRequest, send } from '../helpers/http-client.js';

/*
 * Bad input against the real process: every case gets a 4xx or a closed socket, never a crash, never
 * a request smuggled past the gate, and a normal client is served right after each one.
 */
describe('bad input', () => {
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  before(async () => {
    zimbra = await startFakeZimbra();
    gk = await startGatekeeper(testConfig(zimbra.url, { proxy: { maxLoginBodyBytes: 4096 } }));
  });
  after(async () => {
    await closeAgents();
    assert.equal(gk.proc.exitCode, null, 'the gatekeeper never crashed');
    await gk.stop();
    await zimbra.close();
  });
  const stillServing = async (): Promise<void> => {
    assert.equal((await send('127.0.0.40', gk.url('web', '/healthy'))).status, 200);
  };

  const RAW: Array<[string, string, RegExp]> = [
    ['garbage request line', 'HELLO WORLD\r\n\r\n', /^(HTTP\/1\.1 400|)/],
    ['invalid method characters', 'G@T / HTTP/1.1\r\nHost: x\r\n\r\n', /^(HTTP\/1\.1 400|)/],
    ['oversized headers (64 KiB)', `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(65536)}\r\n\r\n`, /^(HTTP\/1\.1 431|HTTP\/1\.1 400|)/],
    ['smuggling: Content-Length and Transfer-Encoding together', 'POST /service/soap HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', /^(HTTP\/1\.1 400|)/],
    ['smuggling: two Content-Length values', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc', /^(HTTP\/1\.1 400|)/],
    ['obfuscated Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n', /^(HTTP\/1\.1 400|HTTP\/1\.1 501|)/],
    ['invalid UTF-8 and NUL in the target', 'GET /service/%ff%fe%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', /^HTTP\/1\.1 400/],
    ['absolute-form target to another host', 'GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n', /^HTTP\/1\.1 400/],
    ['absurdly long URL (100 KiB)', `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, /^(HTTP\/1\.1 431|HTTP\/1\.1 414|HTTP\/1\.1 400|)/],
  ];
  for (const [desc, data, want] of RAW) {
    it(`${desc}: 4xx or closed, nothing smuggled, still serving`, async () => {
      const res = await rawRequest('127.0.0.41', gk.ports.web!, data, 2000);
      assert.match(res, want);
      assert.doesNotMatch(res, /HTTP\/1\.1 2\d\d/, 'no request went through');
      assert.equal(zimbra.reached('/smuggled').length, 0);
      await stillServing();
    });
  }

  it('hundreds of idle half-open requests (slowloris) do not stop normal clients', async () => {
    const sockets = await Promise.all(Array.from({ length: 300 }, () => rawRequest('127.0.0.42', gk.ports.web!, 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ', 300)));
    assert.equal(sockets.length, 300);
    await stillServing();
  });

  const json = { 'content-type': 'application/json' };
  it('login bodies: huge (past the cap) is 413 and never reaches Zimbra', async () => {
    const before = zimbra.reached('/service/soap').length;
    const body = JSON.stringify({ Header: { pad: 'p'.repeat(20_000) }, Body: { AuthRequest: { account: { _content: 'big@example.com' }, password: 'x' } } });
    const r = await send('127.0.0.43', gk.url('web', '/service/soap/AuthRequest'), { method: 'POST', headers: json, body });
    assert.equal(r.status, 413);
    assert.equal(zimbra.reached('/service/soap').length, before);
  });
  it('login bodies: truncated JSON, malformed XML and an unclosed DTD are classified safely', async () => {
    for (const body of ['{"Body":{"AuthRequest":{"account":', '<soap:Envelope><soap:Body><AuthRequest><account>x</account><password>', '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><AuthRequest/>']) {
      const r = await send('127.0.0.44', gk.url('web', '/service/soap'), { method: 'POST', headers: json, body });
      assert.equal(r.status, 400, 'a body that cannot be read as Zimbra reads it is refused');
    }
    await stillServing();
  });
  it('login bodies: a SOAP batch of 10 AuthRequests (more than maxretry) is refused with 400 before reaching Zimbra', async () => {
    const one = '<AuthRequest xmlns="urn:zimbraAccount"><account by="name">batch@example.com</account><password>x</password></AuthRequest>';
    const body = `<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><BatchRequest xmlns="urn:zimbra">${one.repeat(10)}</BatchRequest></soap:Body></soap:Envelope>`;
    const before = zimbra.reached('/service/soap').length;
    const r = await send('127.0.0.45', gk.url('web', '/service/soap'), { method: 'POST', headers: { 'content-type': 'application/soap+xml' }, body });
    assert.equal(r.status, 400);
    assert.equal(r.headers['x-gatekeeper'], 'too-many-logins');
    assert.equal(zimbra.reached('/service/soap').length, before);
  });
});
