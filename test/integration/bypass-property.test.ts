import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_USERS, startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { rawRequest } from '../helpers/http-client.js';

/*
 * Property (issue 16): whatever the spelling of a login request (path, encoding, escapes, duplicates,
 * batches, upgrade, header case, method), one address gets at most jail.maxretry wrong passwords
 * evaluated by the stand-in Zimbra, or its requests are refused with a 4xx. Each generated variant is
 * sent 5 times from an address of its own; the stand-in reads requests as Zimbra's source does and
 * records every credential check.
 */

const MAXRETRY = 3;
const V = 'user@example.com';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

const SOAP_PATHS = ['/service/soap', '//service/soap', '/service/./soap', '/service/%73oap', '/service/soap;jsessionid=1', '/service/soap/AuthRequest', '/service/soap#frag', '/service/soap/?x=1#y', '/service/x/../soap', '/service/admin/soap'];
const jsonBodies = (pw: string): string[] => [
  `{"Body":{"AuthRequest":{"_jsns":"urn:zimbraAccount","account":{"by":"name","_content":"${V}"},"password":"${pw}"}}}`,
  `{"Body":{"Auth\\u0052equest":{"account":{"_content":"${V}"},"password":{"_content":"${pw}"}}}}`,
  `{"Body":{"\\x41uthRequest":{"account":{"_content":"${V}"},"password":"${pw}"}}}`,
  `{'Body':{'AuthRequest':{'account':{'_content':'${V}'},'password':'${pw}'}}}`,
  `{"Body":{"AuthRequest":{"account":{"_content":"${V}"},"password":"${pw}"}},"Body":{}}`,
  `  {"Body":{"AuthRequest":{"account":"${V}","password":"${pw}"}}}`,
  `\ufeff{"Body":{"AuthRequest":{"account":"${V}","password":"${pw}"}}}`,
  `{"Body":{"AuthRequest":{"account":"${V}","password":"${pw}"}}} garbage`,
  `{Body:{AuthRequest:{account:"${V}",password:"${pw}"}}}`,
  `{"Body":{"ChangePasswordRequest":{"account":{"by":"name","_content":"${V}"},"oldPassword":"${pw}","password":"n","dryRun":1}}}`,
  `{"Body":{"BatchRequest":{"AuthRequest":[{"account":"${V}","password":"${pw}a","requestId":"1"},{"account":"${V}","password":"${pw}b","requestId":"2"}]}}}`,
];
const auth = (pw: string, p = ''): string => `<${p}AuthRequest xmlns${p ? `:${p.slice(0, -1)}` : ''}="urn:zimbraAccount"><${p}account by="name">${V}</${p}account><${p}password>${pw}</${p}password></${p}AuthRequest>`;
const env = (inner: string, extra = ''): string => `<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">${extra}<soap:Body>${inner}</soap:Body></soap:Envelope>`;
const xmlBodies = (pw: string): Array<string | Buffer> => [
  env(auth(pw)),
  env(auth(pw, 'z:')),
  Buffer.from(`<?xml version="1.0" encoding="UTF-16"?>${env(auth(pw))}`, 'utf16le'),
  `<?xml version="1.0" encoding="ISO-8859-1"?>${env(auth(pw))}`,
  env(`<!-- c -->${auth(pw)}`),
  `<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>${auth(pw)}</soap:Body><soap:Body/></soap:Envelope>`,
  env(`<AuthRequest xmlns="urn:zimbraAccount"><account by="name">${V}</account><password><![CDATA[${pw}]]></password></AuthRequest>`),
  env(`<BatchRequest xmlns="urn:zimbra" onerror="continue">${auth(`${pw}1`)}${auth(`${pw}2`)}</BatchRequest>`),
  ` ${env(auth(pw))}`,
];
const BASIC_PATHS = [`/dav/${V}/`, `/home/${V}/inbox`, `/user/${V}/inbox`, `/principals/users/${V}/`, '/Microsoft-Server-ActiveSync', '/ews/Exchange.asmx', '/autodiscover/autodiscover.xml', '/downloads/x', '/service/dav/home/x#y', '/', '/js/x.js', '/service/soap'];
const FORM_PATHS = ['/', '/#x', '/zimbra/', '/public/login.jsp', '/h/', '/x;y', '/?a=b'];
const formParams = (pw: string): string[] => [
  `loginOp=login&username=${encodeURIComponent(V)}&password=${pw}`,
  `login%4Fp=login&user%6eame=${encodeURIComponent(V)}&pass%77ord=${pw}`,
  `login%u004Fp=login&username=${encodeURIComponent(V)}&password=${pw}`,
  `loginOp=login&username=&username=${encodeURIComponent(V)}&password=${pw}`,
];

type Variant = { head: string; body: Buffer };

const variant = fc.oneof(
  fc.record({ path: fc.constantFrom(...SOAP_PATHS), body: fc.nat(10), ct: fc.constantFrom('application/json', 'Application/JSON', 'text/plain', '') }).map(
    ({ path, body, ct }) => (pw: string): Variant => ({ head: `POST ${path} HTTP/1.1${ct ? `\r\nContent-Type: ${ct}` : ''}`, body: Buffer.from(jsonBodies(pw)[body]!) }),
  ),
  fc.record({ path: fc.constantFrom(...SOAP_PATHS), body: fc.nat(8) }).map(({ path, body }) => (pw: string): Variant => {
    const b = xmlBodies(pw)[body]!;
    return { head: `POST ${path} HTTP/1.1\r\ncontent-type: application/soap+xml`, body: Buffer.isBuffer(b) ? b : Buffer.from(b) };
  }),
  fc.record({ path: fc.constantFrom(...BASIC_PATHS), method: fc.constantFrom('GET', 'HEAD', 'POST', 'PROPFIND', 'OPTIONS', 'REPORT'), scheme: fc.constantFrom('Basic', 'basic', 'BASIC'), upgrade: fc.boolean() }).map(
    ({ path, method, scheme, upgrade }) => (pw: string): Variant => ({
      head: `${method} ${path} HTTP/1.1\r\nAuthorization: ${scheme} ${b64(`${V}:${pw}`)}${upgrade ? '\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' : ''}`,
      body: Buffer.alloc(0),
    }),
  ),
  fc.record({ path: fc.constantFrom(...FORM_PATHS), enc: fc.nat(3), where: fc.constantFrom('body', 'query'), ct: fc.constantFrom('application/x-www-form-urlencoded', 'Application/X-WWW-Form-Urlencoded; charset=UTF-8') }).map(
    ({ path, enc, where, ct }) => (pw: string): Variant => {
      const params = formParams(pw)[enc]!;
      if (where === 'query') return { head: `POST ${path.split('#')[0]}${path.includes('?') ? '&' : '?'}${params} HTTP/1.1`, body: Buffer.alloc(0) };
      return { head: `POST ${path} HTTP/1.1\r\ncontent-type: ${ct}`, body: Buffer.from(params) };
    },
  ),
  fc.record({ method: fc.constantFrom('GET', 'POST'), path: fc.constantFrom('/', '/?x=1', '/zimbra/') }).map(({ method, path }) => (pw: string): Variant => ({
    head: `${method} ${path}${path.includes('?') ? '&' : '?'}totpcode=${pw.replace(/\D/g, '').padStart(6, '0').slice(-6)} HTTP/1.1\r\ncookie: ZM_AUTH_TOKEN=0_4a4f18e6bf626bdeb86ad966b4579a2995479def_69643d33363a2fa`,
    body: Buffer.alloc(0),
  })),
);

describe('property: evaluated <= maxretry, or refused with 4xx (issue 16)', () => {
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  before(async () => {
    zimbra = await startFakeZimbra({ users: { ...DEFAULT_USERS } });
    gk = await startGatekeeper(testConfig(zimbra.url, { zimbra: { web: zimbra.url, admin: zimbra.url, defaultDomain: 'example.com' }, account: { enabled: false }, admin: { allow: ['127.0.0.0/8'] } }));
  });
  after(async () => {
    await gk.stop();
    await zimbra.close();
  });

  it('generated request variants, 5 wrong passwords each from an address of its own', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(variant, async (make) => {
        n++;
        const ip = `127.0.${4 + (n >> 8)}.${(n & 255) || 1}`;
        const replies: string[] = [];
        for (let i = 0; i < 5; i++) {
          const v = make(`wrong${n}x${i}`);
          const bytes = Buffer.concat([Buffer.from(`${v.head}\r\nHost: mail.example.com\r\nContent-Length: ${v.body.length}\r\n${v.head.includes('Connection: Upgrade') ? '' : 'Connection: close\r\n'}\r\n`), v.body]);
          replies.push(await rawRequest(ip, gk.ports.web!, bytes, 1500).catch(() => ''));
        }
        const wrong = zimbra.checksFrom(ip).filter((c) => !c.ok).length;
        assert.ok(wrong <= MAXRETRY, `${wrong} wrong passwords evaluated for ${JSON.stringify(make('PW').head)}; replies: ${replies.map((r) => r.slice(0, 12)).join(' | ')}`);
      }),
      { numRuns: 120 },
    );
  });
});
