import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findRule } from '../../src/detect/http-rules.js';
import { normalizeRequestPath } from '../../src/detect/request-path.js';

describe('normalizeRequestPath (detection cannot be dodged by path tricks)', () => {
  for (const { desc, input, want } of [
    { desc: 'plain', input: '/service/soap/AuthRequest', want: '/service/soap/AuthRequest' },
    { desc: 'query removed', input: '/service/soap?x=1', want: '/service/soap' },
    { desc: 'double slashes', input: '//service//soap/', want: '/service/soap/' },
    { desc: 'dot segments', input: '/service/./x/../soap', want: '/service/soap' },
    { desc: 'percent-encoding', input: '/service/%73oap', want: '/service/soap' },
    { desc: 'encoded slash', input: '/service%2Fsoap', want: '/service/soap' },
    { desc: 'Jetty path parameters', input: '/service/soap;jsessionid=1/AuthRequest', want: '/service/soap/AuthRequest' },
    { desc: 'root', input: '/', want: '/' },
    { desc: 'bad encoding', input: '/service/%E0%A4%A', want: null },
    { desc: 'NUL', input: '/service/%00soap', want: null },
    { desc: 'absolute-form is not origin-form', input: 'http://evil/service/soap', want: null },
  ]) {
    it(desc, () => assert.equal(normalizeRequestPath(input), want));
  }
  it('the normalised paths still find the rule', () => {
    assert.equal(findRule('POST', normalizeRequestPath('//service/%73oap;x=1/')!)?.service, 'soap');
    assert.equal(findRule('PROPFIND', normalizeRequestPath('/DAV/user@example.com/')!)?.service, 'dav');
    assert.equal(findRule('POST', normalizeRequestPath('/Microsoft-Server-ActiveSync?Cmd=Sync')!)?.service, 'activesync');
    assert.equal(findRule('GET', '/service/soap'), undefined);
  });
});
