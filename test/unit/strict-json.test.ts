import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseStrictJson } from '../../src/detect/strict-json.js';

describe('strict JSON: the subset on which Zimbra\'s lenient reader and JSON.parse agree', () => {
  it('standard JSON is read', () => assert.deepEqual(parseStrictJson('{"a":{"b":[1,{"c":"d"}]}}'), { ok: true, value: { a: { b: [1, { c: 'd' }] } } }));
  it('a duplicate key is refused', () => assert.equal(parseStrictJson('{"Body":{"A":1},"Body":{}}').ok, false));
  it('a duplicate key spelled with an escape is refused', () => assert.equal(parseStrictJson('{"Body":1,"B\\u006fdy":2}').ok, false));
  it('a duplicate inside a nested object is refused', () => assert.equal(parseStrictJson('{"a":[{"x":1,"x":2}]}').ok, false));
  it('the same key in sibling objects is fine', () => assert.equal(parseStrictJson('{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}').ok, true));
  it('keys inside strings do not confuse the scan', () => assert.equal(parseStrictJson('{"a":"\\"a\\":1,","b":"{\\"a\\""}').ok, true));
  for (const bad of ["{'a':1}", '{a:1}', '{"a":"\\x41"}', '{"a":1} x', '\ufeff{"a":1}']) {
    it(`lenient-only syntax is refused: ${JSON.stringify(bad)}`, () => assert.equal(parseStrictJson(bad).ok, false));
  }
});
