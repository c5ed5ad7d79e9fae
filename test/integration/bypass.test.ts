import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_USERS, startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { basic, closeAgents, formLogin, rawRequest, send, soapJsonAuth, type Reply } from '../helpers/http-client.js';

/*
 * The headline promise, tried as an attacker would (issue 16): one address gets at most jail.maxretry
 * wrong passwords EVALUATED by Zimbra, whatever the spelling of the request, or the request is refused
 * with a 4xx before it reaches Zimbra. The stand-in records every credential check it evaluates, per
 * client address (test/helpers/fake-zimbra.ts handles requests as Zimbra's source does).
 */

const MAXRETRY = 3;
const json = { 'content-type': 'application/json' };
const form = { 'content-type': 'application/x-www-form-urlencoded' };
const xmlCt = { 'content-type': 'application/soap+xml; charset=utf-8' };

type Attack = (ip: string, i: number, url: (p: string) => string, port: number, VICTIM: string) => Promise<Reply | string>;

/** The stand-in's token for an account of the attacker's own (test/helpers/fake-zimbra.ts TOKEN). */
const OWN_TOKEN = '0_4a4f18e6bf626bdeb86ad966b4579a2995479def_69643d33363a';
const envelope = (inner: string): string => `<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>${inner}</soap:Body></soap:Envelope>`;
const xmlAuth = (account: string, password: string): string => `<AuthRequest xmlns="urn:zimbraAccount"><account by="name">${account}</account><password>${password}</password></AuthRequest>`;
const post = (ip: string, url: string, headers: Record<string, string>, body: string, method: 'POST' | 'GET' | 'HEAD' | 'PROPFIND' = 'POST'): Promise<Reply> =>
  send(ip, url, { method, headers, body: method === 'POST' || method === 'PROPFIND' ? body : undefined });

/** Raw bytes, for what an HTTP client library will not send (fragments, odd encodings, upgrades). */
const raw = (ip: string, port: number, head: string, body: Buffer | string = ''): Promise<string> => {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return rawRequest(ip, port, Buffer.concat([Buffer.from(`${head}\r\nhost: mail.example.com\r\ncontent-length: ${b.length}\r\nconnection: close\r\n\r\n`), b]));
};

const CLASSES: Array<[string, Attack]> = [
  ['"#" in a SOAP target', (ip, i, _u, port, VICTIM) => raw(ip, port, 'POST /service/soap#x HTTP/1.1\r\ncontent-type: application/json', soapJsonAuth(VICTIM, `wrong${i}`))],
  ['"#" in the form target', (ip, i, _u, port, VICTIM) => raw(ip, port, 'POST /#x HTTP/1.1\r\ncontent-type: application/x-www-form-urlencoded', formLogin(VICTIM, `wrong${i}`))],
  ['"#" in a DAV target', (ip, i, _u, port, VICTIM) => raw(ip, port, `PROPFIND /dav/${VICTIM}/#x HTTP/1.1\r\nauthorization: ${basic(VICTIM, `wrong${i}`)}`)],
  ['"#" in the ActiveSync target', (ip, i, _u, port, VICTIM) => raw(ip, port, `POST /Microsoft-Server-ActiveSync#x HTTP/1.1\r\nauthorization: ${basic(VICTIM, `wrong${i}`)}`)],
  ['websocket upgrade carrying Basic credentials', (ip, i, _u, port, VICTIM) => raw(ip, port, `GET /dav/${VICTIM}/ HTTP/1.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: ${basic(VICTIM, `wrong${i}`)}`)],
  ['JSON with an escape JSON.parse refuses (\\x41uthRequest)', (ip, i, u, _port, VICTIM) => post(ip, u('/service/soap'), json, `{"Body":{"\\x41uthRequest":{"account":{"by":"name","_content":"${VICTIM}"},"password":"wrong${i}"}}}`)],
  ['JSON with duplicate keys', (ip, i, u, _port, VICTIM) => post(ip, u('/service/soap'), json, `{"Body":{"AuthRequest":{"account":{"by":"name","_content":"${VICTIM}"},"password":"wrong${i}"}},"Body":{}}`)],
  ['XML with a second Body', (ip, i, u, _port, VICTIM) => post(ip, u('/service/soap'), xmlCt, `<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>${xmlAuth(VICTIM, `wrong${i}`)}</soap:Body><soap:Body/></soap:Envelope>`)],
  ['UTF-16 XML', (ip, i, _u, port, VICTIM) => raw(ip, port, 'POST /service/soap HTTP/1.1\r\ncontent-type: application/soap+xml', Buffer.from(`<?xml version="1.0" encoding="UTF-16"?>${envelope(xmlAuth(VICTIM, `wrong${i}`))}`, 'utf16le'))],
  ['a body over maxLoginBodyBytes with an escaped AuthRequest', (ip, i, u, _port, VICTIM) => post(ip, u('/service/soap'), json, `{"Header":{"pad":"${'x'.repeat(70_000)}"},"Body":{"Auth\\u0052equest":{"account":{"by":"name","_content":"${VICTIM}"},"password":"wrong${i}"}}}`)],
  ['Basic on /user/…', (ip, i, u, _port, VICTIM) => post(ip, u(`/user/${VICTIM}/inbox`), { authorization: basic(VICTIM, `wrong${i}`) }, '', 'GET')],
  ['Basic on /service/user/…', (ip, i, u, _port, VICTIM) => post(ip, u(`/service/user/${VICTIM}/inbox`), { authorization: basic(VICTIM, `wrong${i}`) }, '', 'GET')],
  ['Basic on /principals/…', (ip, i, u, _port, VICTIM) => post(ip, u(`/principals/users/${VICTIM}/`), { authorization: basic(VICTIM, `wrong${i}`) }, '', 'PROPFIND')],
  ['Basic on /service/extension/zimbrasync', (ip, i, u, _port, VICTIM) => post(ip, u('/service/extension/zimbrasync'), { authorization: basic(VICTIM, `wrong${i}`) }, '')],
  ['Basic on /service/extension/zimbraews', (ip, i, u, _port, VICTIM) => post(ip, u('/service/extension/zimbraews'), { authorization: basic(VICTIM, `wrong${i}`) }, '')],
  ['Basic on /downloads/…', (ip, i, u, _port, VICTIM) => post(ip, u('/downloads/index.html'), { authorization: basic(VICTIM, `wrong${i}`) }, '', 'GET')],
  ['HEAD with Basic', (ip, i, u, _port, VICTIM) => post(ip, u(`/home/${VICTIM}/inbox`), { authorization: basic(VICTIM, `wrong${i}`) }, '', 'HEAD')],
  ['lower-case basic scheme', (ip, i, u, _port, VICTIM) => post(ip, u(`/dav/${VICTIM}/`), { authorization: basic(VICTIM, `wrong${i}`).replace('Basic', 'basic') }, '', 'PROPFIND')],
  ['ChangePasswordRequest with a wrong old password', (ip, i, u, _port, VICTIM) => post(ip, u('/service/soap'), json, JSON.stringify({ Body: { ChangePasswordRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: VICTIM }, oldPassword: `wrong${i}`, password: 'new-password', dryRun: '1' } } }))],
  ['TOTP step by GET with the pending cookie', (ip, i, u) => post(ip, u(`/?totpcode=${String(i).padStart(6, '0')}`), { cookie: 'ZM_AUTH_TOKEN=0_4a4f18e6bf626bdeb86ad966b4579a2995479def_69643d33363a2fa' }, '', 'GET')],
  ['own-account wash: [own valid account, victim + guess] in one batch', (ip, i, u, _port, VICTIM) =>
    post(ip, u('/service/soap'), xmlCt, envelope(`<BatchRequest xmlns="urn:zimbra" onerror="continue">${xmlAuth('own@example.com', 'own-password')}${xmlAuth(VICTIM, `wrong${i}`)}</BatchRequest>`))],
  ['loginOp in the query, the credentials in a 70 KB form body', (ip, i, u, _port, VICTIM) => post(ip, u('/?login%4Fp=login'), form, `username=${encodeURIComponent(VICTIM)}&password=wrong${i}&pad=${'x'.repeat(70_000)}`)],
  // From an independent attack on the first version of this change (each cited to Zimbra's source in the stand-in):
  ['wash by a redirect: Basic on /.well-known/caldav (DavWellKnownServlet reads no credential) between guesses', (ip, i, u, _port, VICTIM) =>
    i % 2 === 0 ? post(ip, u('/.well-known/caldav'), { authorization: basic(VICTIM, 'anything') }, '', 'GET') : post(ip, u(`/dav/${VICTIM}/`), { authorization: basic(VICTIM, `wrong${i}`) }, '', 'PROPFIND')],
  ['wash by AutoDiscover GET (answered without auth) between guesses', (ip, i, u, _port, VICTIM) =>
    i % 2 === 0 ? post(ip, u('/autodiscover/autodiscover.xml'), { authorization: basic(VICTIM, 'anything') }, '', 'GET') : post(ip, u(`/dav/${VICTIM}/`), { authorization: basic(VICTIM, `wrong${i}`) }, '', 'PROPFIND')],
  ['a failed form login redirected by a ZM_LAST_SERVER cookie', (ip, i, u, _port, VICTIM) => post(ip, u('/'), { ...form, cookie: 'ZM_LAST_SERVER=elsewhere.example' }, formLogin(VICTIM, `wrong${i}`))],
  ['the username in the query, loginOp and the password in the body', (ip, i, u, _port, VICTIM) => post(ip, u(`/?username=${encodeURIComponent(VICTIM)}`), form, `loginOp=login&password=wrong${i}`)],
  ['XML password as an attribute beside an empty element', (ip, i, u, _port, VICTIM) =>
    post(ip, u('/service/soap'), xmlCt, envelope(`<AuthRequest xmlns="urn:zimbraAccount" password="wrong${i}"><account by="name">${VICTIM}</account><password/></AuthRequest>`))],
  ['the attribute password in a batch padded to an answer over 256 KiB', (ip, i, u, _port, VICTIM) =>
    post(ip, u('/service/soap'), xmlCt, envelope(`<BatchRequest xmlns="urn:zimbra" onerror="continue"><AuthRequest xmlns="urn:zimbraAccount" password="wrong${i}"><account by="name">${VICTIM}</account><password/></AuthRequest>${'<NoSuchRequest xmlns="urn:zimbraMail"/>'.repeat(1200)}</BatchRequest>`))],
  ['a JSON password in _attrs', (ip, i, u, _port, VICTIM) => post(ip, u('/service/soap'), json, JSON.stringify({ Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: VICTIM }, _attrs: { password: `wrong${i}` } } } }))],
  ['wash by an own auth token: AuthRequest naming the victim with the attacker\'s token, between guesses', (ip, i, u, _port, VICTIM) =>
    post(ip, u('/service/soap'), json, JSON.stringify({ Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: VICTIM }, password: i % 2 === 0 ? 'x' : `wrong${i}`, ...(i % 2 === 0 ? { authToken: [{ _content: OWN_TOKEN }] } : {}) } } }))],
  ['ChangePasswordRequest naming the victim in the attribute and an own (known) account in the element, own logins between', (ip, i, u, _port, VICTIM) =>
    i % 3 === 0
      ? post(ip, u('/service/soap'), json, soapJsonAuth('own@example.com', 'own-password'))
      : post(ip, u('/service/soap'), xmlCt, envelope(`<ChangePasswordRequest xmlns="urn:zimbraAccount" account="${VICTIM}"><account by="name">own@example.com</account><oldPassword>wrong${i}</oldPassword><password>n</password></ChangePasswordRequest>`))],
  ['wash by a virtual host: the attacker\'s own bare name on another domain, between guesses', (ip, i, u, _port, VICTIM) =>
    i % 2 === 0
      ? post(ip, u('/service/soap'), json, JSON.stringify({ Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: VICTIM.split('@')[0] }, password: 'own-password', virtualHost: { _content: 'mail.other.test' } } } }))
      : post(ip, u('/service/soap'), json, soapJsonAuth(VICTIM, `wrong${i}`))],
  ['the form login with parameters Jetty decodes from %u', (ip, i, u, _port, VICTIM) => post(ip, u('/'), form, `login%u004Fp=login&username=${encodeURIComponent(VICTIM)}&password=wrong${i}`)],
];

describe('in-line detection cannot be dodged (issue 16)', () => {
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  let n = 20;
  const nextIp = (): string => `127.0.2.${n++}`;

  before(async () => {
    const victims: Record<string, { password: string }> = {};
    for (let k = 0; k < CLASSES.length; k++) {
      victims[`victim${k}@example.com`] = { password: 'right-password' };
      // The attacker's own account on another domain under the same bare name (the virtual-host wash).
      victims[`victim${k}@other.test`] = { password: 'own-password' };
    }
    zimbra = await startFakeZimbra({ authDelayMs: 20, users: { ...DEFAULT_USERS, ...victims, 'own@example.com': { password: 'own-password' } } });
    gk = await startGatekeeper(testConfig(zimbra.url, { zimbra: { web: zimbra.url, admin: zimbra.url, defaultDomain: 'example.com' }, account: { maxretry: 8 } }));
  });
  after(async () => {
    await closeAgents();
    await gk.stop();
    await zimbra.close();
  });

  const wrongChecks = (ip: string): number => zimbra.checksFrom(ip).filter((c) => !c.ok).length;

  for (const [k, [desc, attack]] of CLASSES.entries()) {
    const victim = `victim${k}@example.com`;
    it(`${desc}: at most ${MAXRETRY} wrong passwords evaluated, sequential and 20 at once; the right one still works from a fresh address`, async () => {
      const url = (p: string): string => gk.url('web', p);
      const port = gk.ports.web!;
      const seq = nextIp();
      for (let i = 0; i < 8; i++) await attack(seq, i, url, port, victim).catch(() => undefined);
      const burst = nextIp();
      await Promise.all(Array.from({ length: 20 }, (_, i) => attack(burst, i, url, port, victim).catch(() => undefined)));
      process.stdout.write(`# evaluated: ${desc}: sequential ${wrongChecks(seq)} of 8, 20 at once ${wrongChecks(burst)} of 20\n`);
      assert.ok(wrongChecks(seq) <= MAXRETRY, `sequential: ${wrongChecks(seq)} wrong passwords evaluated for ${seq}`);
      assert.ok(wrongChecks(burst) <= MAXRETRY, `20 at once: ${wrongChecks(burst)} wrong passwords evaluated for ${burst}`);
      const fresh = nextIp();
      const ok = await send(fresh, url('/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth(victim, 'right-password') });
      assert.equal(ok.status, 200, 'the right password from a fresh address logs in');
    });
  }

  it('one account under several spellings is one account-shield counter', async () => {
    const spellings = ['twofa', 'twofa@example.com', 'TWOFA@EXAMPLE.COM', 'twofa@example.com.', ' twofa@Example.com '];
    for (let i = 0; i < 15; i++) {
      await send(nextIp(), gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth(spellings[i % spellings.length]!, `wrong${i}`) });
    }
    const evaluated = zimbra.checks.filter((c) => c.kind === 'soap' && c.account.replace(/\.$/, '').trim().replace(/@example\.com$/, '') === 'twofa' && !c.ok).length;
    assert.ok(evaluated <= 8, `${evaluated} wrong passwords evaluated for one account under 5 spellings (account.maxretry 8)`);
  });

  it('a device that logged in is not counted when its long poll is dropped; an unknown one is (fail closed)', async () => {
    const phone = nextIp();
    const auth = { authorization: basic('user@example.com', 'right-password') };
    assert.equal((await send(phone, gk.url('web', '/dav/user@example.com/'), { method: 'PROPFIND', headers: auth })).status, 207);
    const drop = async (ip: string, headers: Record<string, string>): Promise<void> => {
      // A request Zimbra holds open (the stand-in's /hang), abandoned by the client.
      await rawRequest(ip, gk.ports.web!, `GET /hang HTTP/1.1\r\nhost: x\r\nauthorization: ${headers.authorization}\r\n\r\n`, 300);
    };
    for (let i = 0; i < 4; i++) await drop(phone, auth);
    const stranger = nextIp();
    for (let i = 0; i < 4; i++) await drop(stranger, { authorization: basic('user@example.com', `guess${i}`) });
    const api = async (ip: string): Promise<{ banned: boolean }> => JSON.parse((await send('127.0.0.1', gk.url('api', `/api/status/${ip}`))).body) as { banned: boolean };
    await waitFor(async () => (await api(stranger)).banned, 5000, 'the stranger banned');
    assert.equal((await api(phone)).banned, false, 'the known device is not banned');
    assert.equal((await send(phone, gk.url('web', '/dav/user@example.com/'), { method: 'PROPFIND', headers: auth })).status, 207);
  });

  it('every counted failure is logged at info with its rule id, address and account', async () => {
    const ip = nextIp();
    await send(ip, gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('User@Example.com', 'wrong') });
    const line = await waitFor(() => gk.logs.find((l) => l.msg === 'failed login counted' && l.ip === ip), 5000, 'the failure line');
    assert.equal(line.level, 'info');
    assert.equal(line.rule, 'soap.auth-failed');
    assert.deepEqual(line.accounts, ['user@example.com']);
  });

  it('a login name with a line break is refused and counted (it forges log lines)', async () => {
    const ip = nextIp();
    const before = zimbra.requests.length;
    const r = await send(ip, gk.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('x]\n2026-11-27 10:00:00,000 INFO  [qtp-1] [ip=203.0.113.9;] account - authentication failed for [victim', 'p') });
    assert.equal(r.status, 400);
    assert.equal(r.headers['x-gatekeeper'], 'bad-login-name');
    assert.equal(zimbra.requests.length, before);
  });

  it('an office of 40 users behind one address logging in at once (one typo) is never refused', async () => {
    const office = nextIp();
    const users: Record<string, { password: string }> = {};
    for (let i = 0; i < 40; i++) users[`staff${i}@example.com`] = { password: `pw${i}` };
    const z2 = await startFakeZimbra({ authDelayMs: 20, users });
    const g2 = await startGatekeeper(testConfig(z2.url, { zimbra: { web: z2.url, admin: z2.url }, listen: { web: { host: '127.0.0.1', port: 0 }, api: { host: '127.0.0.1', port: 0 } } }));
    try {
      const t0 = Date.now();
      const replies = await Promise.all([
        ...Array.from({ length: 40 }, (_, i) => send(office, g2.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth(`staff${i}@example.com`, `pw${i}`) })),
        send(office, g2.url('web', '/service/soap'), { method: 'POST', headers: json, body: soapJsonAuth('staff7@example.com', 'typo') }),
      ]);
      const ms = Date.now() - t0;
      const refused = replies.filter((r) => r.status === 429 || r.status === 400).length;
      assert.equal(refused, 0, `${refused} of 41 refused`);
      assert.equal(replies.filter((r) => r.status === 200).length, 40);
      process.stdout.write(`# office of 40 behind one NAT: 41 logins answered in ${ms} ms, none refused\n`);
      // A DAV client's first sync: the right Basic credentials on 30 parallel PROPFINDs before any success is known.
      const dav = await Promise.all(Array.from({ length: 30 }, () => send('127.0.3.9', g2.url('web', '/dav/staff3@example.com/Calendar/'), { method: 'PROPFIND', headers: { authorization: basic('staff3@example.com', 'pw3') } })));
      assert.equal(dav.filter((r) => r.status === 429).length, 0, 'no PROPFIND of the first sync refused');
      assert.equal(dav.filter((r) => r.status === 207).length, 30);
    } finally {
      await g2.stop();
      await z2.close();
    }
  });
});

// Keep `connect` referenced for raw upgrade tests that may grow here.
void connect;
