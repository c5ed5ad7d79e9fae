import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalAccount, hasUnsafeCharacters } from '../../src/detect/account-name.js';

describe('canonicalAccount: every spelling of one account is one name', () => {
  for (const { desc, raw, domain, want } of [
    { desc: 'lower case', raw: 'Info@Example.COM', domain: undefined, want: 'info@example.com' },
    { desc: 'trailing dot of the domain', raw: 'info@example.com.', domain: undefined, want: 'info@example.com' },
    { desc: 'surrounding blanks', raw: '  info@example.com ', domain: undefined, want: 'info@example.com' },
    { desc: 'a bare name gets the default domain', raw: 'INFO', domain: 'Example.com', want: 'info@example.com' },
    { desc: 'a bare name without a default domain stays bare', raw: 'info', domain: undefined, want: 'info' },
    { desc: 'empty', raw: '   ', domain: 'example.com', want: undefined },
    { desc: 'only dots', raw: '..', domain: undefined, want: undefined },
  ]) {
    it(desc, () => assert.equal(canonicalAccount(raw, domain), want));
  }
  it('long names are cut (bounded keys)', () => assert.equal(canonicalAccount('a'.repeat(1000))!.length, 256));
});

describe('hasUnsafeCharacters: names that would forge log lines', () => {
  for (const c of ['\n', '\r', '\t', '\u0000', '\u007f', '\u0085', '\u2028', '\u2029']) {
    it(`U+${c.charCodeAt(0).toString(16).padStart(4, '0')}`, () => assert.equal(hasUnsafeCharacters(`a${c}b`), true));
  }
  it('ordinary names, IDN and accents are fine', () => assert.equal(hasUnsafeCharacters('josé@bücher.example'), false));
});
