import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { NeedleScanner, normaliseForScan } from '../../src/proxy/request-body.js';

describe('NeedleScanner: a login element in a large body, in any escape Zimbra or Jetty decodes', () => {
  const SOAP = /(?<![A-Za-z0-9_])(?:AuthRequest|ChangePasswordRequest)(?![A-Za-z0-9_])/;
  for (const raw of ['"AuthRequest"', '"\\x41uthRequest"', '"Auth\\u0052equest"', '"A\\uthRequest"', "'AuthRequest'", 'A\0u\0t\0h\0R\0e\0q\0u\0e\0s\0t', '<z:ChangePasswordRequest ']) {
    it(`finds ${JSON.stringify(raw)}`, () => assert.ok(SOAP.test(normaliseForScan(raw))));
  }
  for (const raw of ['"the Auth request failed"', 'OAuthRequest', 'change password request', 'AuthRequests']) {
    it(`a draft's words are not a login: ${JSON.stringify(raw)}`, () => assert.equal(SOAP.test(normaliseForScan(raw)), false));
  }
  for (const raw of ['login%4Fp=login', 'login%u004Fp=login']) it(`form: ${raw}`, () => assert.ok(/(?:^|&)(?:loginOp|totpcode)=/.test(normaliseForScan(raw))));
  it('found across chunk boundaries', async () => {
    const chunks = ['{"pad":"xxxx","Auth\\u00', '52equest":{}}'].map((s) => Buffer.from(s));
    const scanner = new NeedleScanner(/AuthRequest/, () => new Error('found'));
    const err = await new Promise<Error | null>((resolve) => {
      Readable.from(chunks).pipe(scanner).on('error', resolve).on('finish', () => resolve(null)).resume();
    });
    assert.equal(err?.message, 'found');
  });
  it('a body without one passes whole', async () => {
    const scanner = new NeedleScanner(/AuthRequest/, () => new Error('found'));
    const out: Buffer[] = [];
    await new Promise<void>((resolve, reject) => Readable.from([Buffer.from('{"Body":{"SendMsgRequest":'), Buffer.from('{}}}')]).pipe(scanner).on('data', (c: Buffer) => out.push(c)).on('end', resolve).on('error', reject));
    assert.equal(Buffer.concat(out).toString(), '{"Body":{"SendMsgRequest":{}}}');
  });
});
