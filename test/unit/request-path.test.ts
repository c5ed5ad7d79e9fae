import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { soapRuleFor } from '../../src/detect/http-rules.js';
import { normalizeRequestPath, routedPath } from '../../src/detect/request-path.js';

describe('normalizeRequestPath (detection cannot be dodged by path tricks)', () => {
  for (const { desc, input, want } of [
    { desc: 'plain', input: '/service/soap/AuthRequest', want: '/service/soap/AuthRequest' },
    { desc: 'query removed', input: '/service/soap?x=1', want: '/service/soap' },
    { desc: 'fragment removed (Jetty ends the path at #)', input: '/service/soap#x', want: '/service/soap' },
    { desc: 'fragment before a query', input: '/service/soap#x?y', want: '/service/soap' },
    { desc: 'double slashes', input: '//service//soap/', want: '/service/soap/' },
    { desc: 'dot segments', input: '/service/./x/../soap', want: '/service/soap' },
    { desc: 'percent-encoding', input: '/service/%73oap', want: '/service/soap' },
    { desc: 'encoded slash', input: '/service%2Fsoap', want: '/service/soap' },
    { desc: 'Jetty path parameters', input: '/service/soap;jsessionid=1/AuthRequest', want: '/service/soap/AuthRequest' },
    { desc: 'root', input: '/', want: '/' },
    { desc: 'bad encoding', input: '/service/%E0%A4%A', want: null },
    { desc: 'Latin-1 escapes (Jetty falls back to ISO-8859-1)', input: '/home/u/R%E9sum%E9.pdf', want: '/home/u/Résumé.pdf' },
    { desc: 'NUL', input: '/service/%00soap', want: null },
    { desc: 'absolute-form is not origin-form', input: 'http://evil/service/soap', want: null },
  ]) {
    it(desc, () => assert.equal(normalizeRequestPath(input), want));
  }
  it('the normalised paths still find the rule', () => {
    assert.equal(soapRuleFor(normalizeRequestPath('//service/%73oap;x=1/')!)?.service, 'soap');
    assert.equal(soapRuleFor(normalizeRequestPath('/service/soap#x')!)?.service, 'soap');
  });
  for (const [from, to] of [
    ['/dav/u/Calendar', '/service/dav/home/u/Calendar'],
    ['/principals/users/u', '/service/dav/principals/users/u'],
    ['/home/u/inbox', '/service/home/u/inbox'],
    ['/user/u/inbox', '/service/user/u/inbox'],
    ['/zimbra/home/u', '/service/home/u'],
    ['/Microsoft-Server-ActiveSync', '/service/extension/zimbrasync'],
    ['/ews/exchange.ASMX', '/service/extension/zimbraews'],
    ['/service/soap', '/service/soap'],
  ]) {
    it(`Jetty rewrites ${from} to ${to}`, () => assert.equal(routedPath(from!), to));
  }
});
