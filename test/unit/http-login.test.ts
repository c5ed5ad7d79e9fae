import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { describe, it } from 'node:test';
import { classifyHead, classifyResponse, classifyWithBody, type Classification, type LoginRequest } from '../../src/detect/http-login.js';
import { httpRuleIds } from '../../src/detect/http-rules.js';
import { normalizeRequestPath } from '../../src/detect/request-path.js';

/** Classifies a request the way the gate does: head first, then the body when asked for. */
export function classify(method: string, url: string, headers: IncomingHttpHeaders = {}, body: string | Buffer | null = null, defaultDomain?: string): Classification {
  const path = normalizeRequestPath(url)!;
  const f = { method, url, path, headers, defaultDomain };
  const head = classifyHead(f);
  if (head.kind !== 'body') return head;
  return classifyWithBody(f, body === null ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body));
}

const SOAP = '/service/soap/AuthRequest';
const ADMIN = '/service/admin/soap/AuthRequest';
const FORM = { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '1' };
const soapRule = SOAP;
const adminRule = ADMIN;
const formRule = '/';

/** The login a request is, or null when it is provably none (a refusal fails the assertion). */
function login(path: string, body: string, url = path, headers: IncomingHttpHeaders = {}): LoginRequest | null {
  const c = classify('POST', url, path === '/' ? { ...FORM, ...headers } : headers, body);
  assert.notEqual(c.kind, 'refuse', `refused: ${c.kind === 'refuse' ? c.why : ''}`);
  return c.kind === 'login' ? c.login : null;
}
const attempts = (c: Classification): number | null => (c.kind === 'login' ? c.login.attempts : c.kind === 'refuse' ? -c.count : null);

// Verbatim from ../shared/zimbra/samples/soap-webmail.txt (8.8.15 JSON fault, served with HTTP 500).
const JSON_FAULT = '{"Header":{"context":{"change":{"token":32934},"_jsns":"urn:zimbra"}},"Body":{"Fault":{"Code":{"Value":"soap:Sender"},"Reason":{"Text":"authentication failed for [asd]"},"Detail":{"Error":{"Code":"account.AUTH_FAILED","Trace":"qtp366590980-155736:1618483353424:124048f45be83bed","_jsns":"urn:zimbra"}}}},"_jsns":"urn:zimbraSoap"}';
// Verbatim from ../shared/zimbra/samples/admin-console.txt (SOAP 1.2 admin fault, HTTP 500).
const XML_FAULT = `<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">
  <soap:Header>
    <context xmlns="urn:zimbra"/>
  </soap:Header>
  <soap:Body>
    <soap:Fault>
      <soap:Code>
        <soap:Value>soap:Sender</soap:Value>
      </soap:Code>
      <soap:Reason>
        <soap:Text>authentication failed for [admin]</soap:Text>
      </soap:Reason>
      <soap:Detail>
        <Error xmlns="urn:zimbra">
          <Code>account.AUTH_FAILED</Code>
          <Trace>btpool0-14://mail.webruimte.eu:7071/service/admin/soap:1336654190637:40a62659afaeacf2</Trace>
        </Error>
      </soap:Detail>
    </soap:Fault>
  </soap:Body>
</soap:Envelope>`;
const XML_ADMIN_OK = `<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header><context xmlns="urn:zimbra"><change token="9836"/></context></soap:Header>
<soap:Body><AuthResponse xmlns="urn:zimbraAdmin"><authToken>0_1c1c96a3c39aa</authToken><lifetime>43200000</lifetime><a n="zimbraIsDomainAdminAccount">false</a></AuthResponse></soap:Body></soap:Envelope>`;
const SOAP11_FAULT = '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>authentication failed for [x]</faultstring><detail><Error xmlns="urn:zimbra"><Code>account.AUTH_FAILED</Code></Error></detail></soap:Fault></soap:Body></soap:Envelope>';

describe('SOAP AuthRequest: request side', () => {
  it('JSON with password as an object (Ajax client)', () => {
    const l = login(soapRule, '{"Body":{"AuthRequest":{"_jsns":"urn:zimbraAccount","account":{"by":"name","_content":"Info@Example.com"},"password":{"_content":"x"}}}}');
    assert.deepEqual(l && { accounts: l.accounts, attempts: l.attempts }, { accounts: ['info@example.com'], attempts: 1 });
  });
  it('JSON with password as a string (Modern UI)', () => {
    const l = login(soapRule, '{"Body":{"AuthRequest":{"_jsns":"urn:zimbraAccount","account":{"by":"name","_content":"u@x"},"password":"x","csrfTokenSecured":true}}}');
    assert.equal(l?.attempts, 1);
  });
  it('JSON with unicode escapes in the element name', () => {
    const l = login(soapRule, '{"Body":{"Auth\\u0052equest":{"account":{"_content":"u@x"},"password":"x"}}}');
    assert.equal(l?.attempts, 1);
  });
  it('XML with a namespace prefix and a character reference in the name', () => {
    const l = login(soapRule, '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><z:AuthRequest xmlns:z="urn:zimbraAccount"><z:account by="name">&#105;nfo@x.it</z:account><z:password>p</z:password></z:AuthRequest></s:Body></s:Envelope>');
    assert.deepEqual(l?.accounts, ['info@x.it']);
  });
  it('admin AuthRequest with name/password attributes', () => {
    const l = login(adminRule, '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><AuthRequest xmlns="urn:zimbraAdmin" name="admin@x" password="p"/></soap:Body></soap:Envelope>');
    assert.deepEqual(l?.accounts, ['admin@x']);
  });
  it('several AuthRequests in one BatchRequest count as several attempts', () => {
    const one = '<AuthRequest xmlns="urn:zimbraAccount"><account by="name">a@x</account><password>1</password></AuthRequest>';
    const l = login(soapRule, `<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><BatchRequest xmlns="urn:zimbra">${one.repeat(5)}</BatchRequest></soap:Body></soap:Envelope>`);
    assert.equal(l?.attempts, 5);
  });
  it('a token-only AuthRequest (session refresh) is not a password guess', () => {
    assert.equal(login(soapRule, '{"Body":{"AuthRequest":{"authToken":[{"_content":"0_abc"}]}}}'), null);
  });
  it('an AuthRequest in the Header is not executed, so not an attempt', () => {
    assert.equal(login(soapRule, '{"Header":{"AuthRequest":{"account":"a","password":"b"}},"Body":{"NoOpRequest":{}}}'), null);
  });
  it('a body we cannot parse but that names AuthRequest is refused and counted as one attempt', () => {
    const c = classify('POST', SOAP, {}, '<soap:Envelope><soap:Body><AuthRequest><account>a</account><password>p</pass');
    assert.equal(c.kind, 'refuse');
    assert.equal(attempts(c), -1);
  });
  it('a DTD is never expanded; the request is refused and counted', () => {
    const c = classify('POST', SOAP, {}, '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Envelope><Body><AuthRequest><account>&a;</account><password>p</password></AuthRequest></Body></Envelope>');
    assert.equal(attempts(c), -1);
  });
  it('other SOAP calls are not logins', () => {
    assert.equal(login(soapRule, '{"Body":{"SearchRequest":{"query":"in:inbox"}}}'), null);
  });
});

describe('SOAP AuthRequest: response side', () => {
  const one = login(soapRule, '{"Body":{"AuthRequest":{"account":{"_content":"u@x"},"password":"x"}}}')!;
  it('JSON fault account.AUTH_FAILED under HTTP 500 is a failure (real 8.8.15 body)', () => {
    assert.deepEqual(classifyResponse(one, 500, {}, Buffer.from(JSON_FAULT)), { failures: 1, failedAccounts: ['u@x'], successes: 0, successAccounts: [], ruleId: 'soap.auth-failed' });
  });
  it('XML SOAP 1.2 fault is a failure (real admin body)', () => {
    const adminLogin = login(adminRule, '<Envelope><Body><AuthRequest name="admin" password="p"/></Body></Envelope>')!;
    assert.deepEqual(classifyResponse(adminLogin, 500, {}, Buffer.from(XML_FAULT)), { failures: 1, failedAccounts: ['admin'], successes: 0, successAccounts: [], ruleId: 'admin.auth-failed' });
  });
  it('SOAP 1.1 fault (detail in lower case) is a failure', () => {
    assert.equal(classifyResponse(one, 500, {}, Buffer.from(SOAP11_FAULT)).failures, 1);
  });
  it('admin PERM_DENIED (unknown admin on 8.8.15.p30+/9.0.0.p23+/10.x) is a failure', () => {
    const adminLogin = login(adminRule, '{"Body":{"AuthRequest":{"_jsns":"urn:zimbraAdmin","name":"nobody","password":"p"}}}')!;
    const body = JSON_FAULT.replace('account.AUTH_FAILED', 'service.PERM_DENIED');
    assert.deepEqual(classifyResponse(adminLogin, 500, {}, Buffer.from(body)), { failures: 1, failedAccounts: ['nobody'], successes: 0, successAccounts: [], ruleId: 'admin.perm-denied' });
  });
  it('PERM_DENIED on the webmail SOAP endpoint is not a login failure', () => {
    assert.equal(classifyResponse(one, 500, {}, Buffer.from(JSON_FAULT.replace('account.AUTH_FAILED', 'service.PERM_DENIED'))).failures, 0);
  });
  it('two-factor failure has its own rule id', () => {
    assert.equal(classifyResponse(one, 500, {}, Buffer.from(JSON_FAULT.replace('account.AUTH_FAILED', 'account.TWO_FACTOR_AUTH_FAILED'))).ruleId, 'soap.2fa-failed');
  });
  it('a fault inside a BatchResponse under HTTP 200 is a failure', () => {
    const body = '{"Body":{"BatchResponse":{"Fault":[{"Detail":{"Error":{"Code":"account.AUTH_FAILED"}}}],"_jsns":"urn:zimbra"}}}';
    assert.equal(classifyResponse(one, 200, {}, Buffer.from(body)).failures, 1);
  });
  it('AuthResponse with a token is a success (real admin body)', () => {
    const adminLogin = login(adminRule, '<Envelope><Body><AuthRequest name="admin@x.it" password="p"/></Body></Envelope>')!;
    assert.deepEqual(classifyResponse(adminLogin, 200, {}, Buffer.from(XML_ADMIN_OK)), { failures: 0, failedAccounts: [], successes: 1, successAccounts: ['admin@x.it'], ruleId: 'admin.auth-ok' });
  });
  it('twoFactorAuthRequired: the password was right, neither failure nor success', () => {
    const body = '{"Body":{"AuthResponse":{"authToken":[{"_content":"0_x"}],"twoFactorAuthRequired":{"_content":true}}}}';
    assert.deepEqual(classifyResponse(one, 200, {}, Buffer.from(body)), { failures: 0, failedAccounts: [], successes: 0, successAccounts: [], ruleId: 'soap.auth-failed' });
  });
  it('the change-password fault means the password was right: not a failure', () => {
    assert.equal(classifyResponse(one, 500, {}, Buffer.from(JSON_FAULT.replace('account.AUTH_FAILED', 'account.CHANGE_PASSWORD'))).failures, 0);
  });
  it('a 503 from Zimbra\'s own filter (no body) is neither', () => {
    assert.equal(classifyResponse(one, 503, {}, Buffer.alloc(0)).failures, 0);
  });
});

describe('web form login', () => {
  it('POST / with loginOp=login and credentials is an attempt', () => {
    const l = login(formRule, 'loginOp=login&username=Info%40example.com&password=x&login_csrf=1');
    assert.deepEqual(l?.accounts, ['info@example.com']);
  });
  it('credentials in the query string count too (login.jsp reads parameters)', () => {
    assert.equal(attempts(classify('POST', '/?loginOp=login&username=a&password=b')), 1);
  });
  it('loginOp=logout is not an attempt', () => {
    assert.equal(login(formRule, 'loginOp=logout'), null);
  });
  const l = login(formRule, 'loginOp=login&username=u&password=x')!;
  it('200 without ZM_AUTH_TOKEN is a failure', () => {
    assert.equal(classifyResponse(l, 200, { 'set-cookie': ['ZM_LOGIN_CSRF=1; Path=/', 'ZM_TEST=true'] }, Buffer.from('<div id="errorMessageDiv">')).failures, 1);
  });
  it('an emptied ZM_AUTH_TOKEN is not a success', () => {
    assert.equal(classifyResponse(l, 200, { 'set-cookie': ['ZM_AUTH_TOKEN=; Max-Age=0'] }, null).failures, 1);
  });
  it('ZM_AUTH_TOKEN with a redirect is a success', () => {
    assert.equal(classifyResponse(l, 302, { 'set-cookie': ['ZM_AUTH_TOKEN=0_abc; Path=/; HttpOnly'] }, Buffer.alloc(0)).successes, 1);
  });
  it('ZM_AUTH_TOKEN with the TOTP form is the 2FA step: neither', () => {
    const r = classifyResponse(l, 200, { 'set-cookie': ['ZM_AUTH_TOKEN=0_2fa; Path=/'] }, Buffer.from('<input id="totpcode" name="totpcode" type="text"/>'));
    assert.deepEqual([r.failures, r.successes], [0, 0]);
  });
  it('a wrong second factor is form.2fa-failed', () => {
    const step2 = login(formRule, 'loginOp=login&totpcode=000000')!;
    assert.equal(classifyResponse(step2, 200, {}, Buffer.from('<input name="totpcode">')).ruleId, 'form.2fa-failed');
  });
});

describe('Basic-auth endpoints', () => {
  const c = classify('PROPFIND', '/dav/u/', { authorization: `Basic ${Buffer.from('User@X:pw').toString('base64')}` });
  const withCreds = (c as Extract<Classification, { kind: 'login' }>).login;
  it('a request without credentials is not an attempt (the normal first leg of DAV)', () => {
    assert.equal(classify('PROPFIND', '/dav/u/').kind, 'none');
  });
  it('a Bearer token is not Basic credentials', () => {
    assert.equal(classify('PROPFIND', '/dav/u/', { authorization: 'Bearer abc' }).kind, 'none');
  });
  it('the account is the Basic user, lower-cased', () => assert.deepEqual(withCreds.accounts, ['user@x']));
  it('401 to a request with credentials is a failure', () => {
    assert.deepEqual(classifyResponse(withCreds, 401, { 'www-authenticate': 'BASIC realm="Zimbra"' }, null), { failures: 1, failedAccounts: ['user@x'], successes: 0, successAccounts: [], ruleId: 'dav.auth-failed' });
  });
  it('207 Multi-Status is a success', () => assert.equal(classifyResponse(withCreds, 207, {}, null).successes, 1));
  it('403 is neither', () => assert.deepEqual([classifyResponse(withCreds, 403, {}, null).failures, classifyResponse(withCreds, 403, {}, null).successes], [0, 0]));
  for (const [path, service] of [['/service/home/u/inbox?auth=ba', 'rest'], ['/home/u/calendar', 'rest'], ['/user/u/calendar', 'rest'], ['/principals/users/u/', 'dav'], ['/Microsoft-Server-ActiveSync', 'activesync'], ['/ews/Exchange.asmx', 'ews'], ['/autodiscover/autodiscover.xml', 'autodiscover'], ['/zimbra/downloads/index.html', 'downloads'], ['/downloads/index.html', 'downloads'], ['/service/dav/home/u/', 'dav'], ['/anything/else', 'basic']]) {
    it(`${path} is the ${service} rule`, () => {
      const l = classify('HEAD', path, { authorization: basicOf('u', 'p') });
      assert.equal(l.kind === 'login' && l.login.rule.service, service);
    });
  }
});

const basicOf = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

describe('preauth', () => {
  it('400 is a failure, the account comes from the query', () => {
    const c = classify('GET', '/service/preauth?account=U@x&by=name&timestamp=1&expires=0&preauth=abc');
    const l = (c as Extract<Classification, { kind: 'login' }>).login;
    assert.deepEqual(l.accounts, ['u@x']);
    assert.equal(classifyResponse(l, 400, {}, null).ruleId, 'preauth.failed');
  });
});

describe('rule table', () => {
  it('every rule id follows <service>.<condition>', () => {
    for (const id of httpRuleIds()) assert.match(id, /^[a-z0-9]+(?:-[a-z0-9]+)*\.[a-z0-9]+(?:-[a-z0-9]+)*$/);
  });
});

describe('fail closed and credit with certainty', () => {
  const one = login(SOAP, '{"Body":{"AuthRequest":{"account":{"_content":"u@x"},"password":"x"}}}')!;
  it('a SOAP answer that could not be read whole counts every attempt as a failure', () => {
    const batch = login(SOAP, '{"Body":{"BatchRequest":{"AuthRequest":[{"account":"u@x","password":"1"},{"account":"u@x","password":"2"}]}}}')!;
    assert.equal(classifyResponse(batch, 200, {}, null).failures, 2);
    assert.equal(classifyResponse(one, 500, {}, Buffer.from('<html>not soap')).failures, 1);
  });
  it('a 503 from Zimbra\'s own login filter with no body is neither', () => assert.equal(classifyResponse(one, 503, {}, null).failures, 0));
  it('every fault of a batch counts, not one', () => {
    const batch = login(SOAP, '{"Body":{"BatchRequest":{"AuthRequest":[{"account":"u@x","password":"1"},{"account":"u@x","password":"2"}]}}}')!;
    const body = '{"Body":{"BatchResponse":{"Fault":[{"Detail":{"Error":{"Code":"account.AUTH_FAILED"}}},{"Detail":{"Error":{"Code":"account.AUTH_FAILED"}}}]}}}';
    assert.equal(classifyResponse(batch, 200, {}, Buffer.from(body)).failures, 2);
  });
  it('faults of a batch map to their attempts through unique requestIds', () => {
    const batch = login(SOAP, '{"Body":{"BatchRequest":{"AuthRequest":[{"account":"own@x","password":"right","requestId":"a"},{"account":"victim@x","password":"guess","requestId":"b"}]}}}')!;
    const body = '{"Body":{"BatchResponse":{"AuthResponse":[{"authToken":[{"_content":"0_x"}],"requestId":"a"}],"Fault":[{"Detail":{"Error":{"Code":"account.AUTH_FAILED"}},"requestId":"b"}]}}}';
    assert.deepEqual(classifyResponse(batch, 200, {}, Buffer.from(body)).failedAccounts, ['victim@x']);
  });
  it('repeated requestIds map nothing (an attacker chooses them)', () => {
    const batch = login(SOAP, '{"Body":{"BatchRequest":{"AuthRequest":[{"account":"own@x","password":"right","requestId":"a"},{"account":"victim@x","password":"guess","requestId":"a"}]}}}')!;
    const body = '{"Body":{"BatchResponse":{"AuthResponse":[{"authToken":[{"_content":"0_x"}],"requestId":"a"}],"Fault":[{"Detail":{"Error":{"Code":"account.AUTH_FAILED"}},"requestId":"a"}]}}}';
    assert.deepEqual(classifyResponse(batch, 200, {}, Buffer.from(body)).failedAccounts, []);
  });
  it('a batch naming two accounts is never credited (own-account wash)', () => {
    const wash = login(SOAP, '{"Body":{"BatchRequest":{"AuthRequest":[{"account":"own@x","password":"right"},{"account":"victim@x","password":"guess"}]}}}')!;
    const body = '{"Body":{"BatchResponse":{"AuthResponse":[{"authToken":[{"_content":"0_x"}]}],"Fault":[{"Detail":{"Error":{"Code":"account.AUTH_FAILED"}}}]}}}';
    const r = classifyResponse(wash, 200, {}, Buffer.from(body));
    assert.deepEqual([r.failures, r.successAccounts], [1, []]);
  });
  it('Basic with an auth-token cookie is never credited (Zimbra authenticates by the cookie)', () => {
    const c = classify('GET', '/home/victim@x/inbox', { authorization: basicOf('victim@x', 'guess'), cookie: 'ZM_AUTH_TOKEN=0_own' });
    assert.equal(c.kind === 'login' && classifyResponse(c.login, 200, {}, null).successAccounts.length, 0);
  });
  it('Basic on a path that checks nothing is never credited', () => {
    const c = classify('GET', '/robots.txt', { authorization: basicOf('victim@x', 'guess') });
    assert.equal(c.kind === 'login' && classifyResponse(c.login, 200, {}, null).successAccounts.length, 0);
  });
  it('a bare name is never credited (Zimbra completes it with the virtual host\'s domain)', () => {
    const c = classify('PROPFIND', '/dav/u/', { authorization: basicOf('u', 'pw') }, null, 'example.com');
    assert.deepEqual(c.kind === 'login' && [c.login.accounts, classifyResponse(c.login, 207, {}, null).successAccounts], [['u@example.com'], []]);
  });
  it('an AuthRequest carrying an auth token or a virtualHost is never credited', () => {
    for (const extra of ['"authToken":[{"_content":"0_own"}]', '"virtualHost":"mail.other.test"']) {
      const l = login(SOAP, `{"Body":{"AuthRequest":{"account":{"by":"name","_content":"v@x"},"password":"g",${extra}}}}`)!;
      assert.deepEqual(classifyResponse(l, 200, {}, Buffer.from('{"Body":{"AuthResponse":{"authToken":[{"_content":"0_x"}]}}}')).successAccounts, []);
    }
  });
  it('a password given as an XML attribute beside an empty element is a credential (Zimbra reads the attribute first)', () => {
    assert.equal(attempts(classify('POST', SOAP, {}, '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><AuthRequest xmlns="urn:zimbraAccount" password="g"><account>v@x</account><password/></AuthRequest></soap:Body></soap:Envelope>')), 1);
  });
  it('a password in JSON _attrs is a credential (JSONElement.getAttribute falls back to _attrs)', () => {
    assert.equal(attempts(classify('POST', SOAP, {}, '{"Body":{"AuthRequest":{"account":{"_content":"v@x"},"_attrs":{"password":"g"}}}}')), 1);
  });
  it('two different accounts in one request (attribute and element) are refused', () => {
    const c = classify('POST', SOAP, {}, '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><ChangePasswordRequest xmlns="urn:zimbraAccount" account="v@x"><account>own@x</account><oldPassword>g</oldPassword><password>n</password></ChangePasswordRequest></soap:Body></soap:Envelope>');
    assert.equal(c.kind, 'refuse');
  });
  it('a form failure is a failure whatever the status (a redirect after a failed login)', () => {
    const l = login('/', 'loginOp=login&username=u@x&password=g')!;
    assert.equal(classifyResponse(l, 302, { location: '/elsewhere' }, Buffer.alloc(0)).failures, 1);
  });
  it('the username in the query and the password in the body is one login (Jetty merges them)', () => {
    assert.equal(attempts(classify('POST', '/?username=v@x', FORM, 'loginOp=login&password=g')), 1);
  });
  it('Basic successes from servlets that serve anonymous requests are not credited', () => {
    for (const path of ['/.well-known/caldav', '/autodiscover/autodiscover.xml', '/home/anyone/public/x.ics']) {
      const c = classify('GET', path, { authorization: basicOf('v@x', 'g') });
      assert.deepEqual(c.kind === 'login' && classifyResponse(c.login, 200, {}, null).successAccounts, [], path);
    }
  });
  it('a non-login SOAP body in ISO-8859-1 is read, not refused', () => {
    assert.equal(classify('POST', SOAP, {}, Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header><context xmlns="urn:zimbra"><authToken>0_x</authToken></context></soap:Header><soap:Body><NoOpRequest xmlns="urn:zimbraMail"/></soap:Body></soap:Envelope>', 'latin1')).kind, 'none');
  });
  it('a plain success is credited to its one account', () => {
    const c = classify('PROPFIND', '/dav/u@x/', { authorization: basicOf('U@X', 'pw') });
    assert.deepEqual(c.kind === 'login' && classifyResponse(c.login, 207, {}, null).successAccounts, ['u@x']);
  });
  it('Basic on a SOAP login counts both: adding a header does not turn the guess into a Basic one', () => {
    const c = classify('POST', SOAP, { authorization: basicOf('a@x', 'b') }, '{"Body":{"AuthRequest":{"account":"v@x","password":"g"}}}');
    assert.equal(attempts(c), 2);
    assert.equal(c.kind === 'login' && classifyResponse(c.login, 500, {}, Buffer.from(JSON_FAULT)).failures, 1);
  });
  it('a login name with a line break is refused and counted', () => {
    const c = classify('POST', SOAP, {}, JSON.stringify({ Body: { AuthRequest: { account: 'a]\n2026-01-01 INFO [ip=1.2.3.4;] x', password: 'p' } } }));
    assert.equal(c.kind === 'refuse' && c.reason, 'bad-login-name');
    assert.equal(attempts(c), -1);
  });
  it('ChangePasswordRequest is a login attempt (needsAuth=false, checks oldPassword)', () => {
    assert.equal(attempts(classify('POST', SOAP, {}, '{"Body":{"ChangePasswordRequest":{"account":{"by":"name","_content":"v@x"},"oldPassword":"g","password":"n"}}}')), 1);
  });
  it('the TOTP step needs no POST and no loginOp', () => assert.equal(attempts(classify('GET', '/?totpcode=123456')), 1));
  it('a form body in an unknown charset is refused', () => {
    assert.equal(classify('POST', '/', { 'content-type': 'application/x-www-form-urlencoded; charset=utf-16', 'content-length': '9' }, 'loginOp=login').kind, 'refuse');
  });
  it('canonical names with the default domain', () => {
    const c = classify('POST', SOAP, {}, '{"Body":{"AuthRequest":{"account":"INFO.","password":"g"}}}', 'example.com');
    assert.deepEqual(c.kind === 'login' && c.login.accounts, ['info@example.com']);
  });
});
