import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addParams, queryOf } from '../../src/detect/form-params.js';

describe('request parameters read as Jetty reads them', () => {
  const p = (s: string): Record<string, string[]> => Object.fromEntries(addParams(new Map(), s));
  it('plain pairs and + as space', () => assert.deepEqual(p('a=1&b=x+y'), { a: ['1'], b: ['x y'] }));
  it('%XX as UTF-8', () => assert.deepEqual(p('n%C3%A4me=%C3%A9'), { 'näme': ['é'] }));
  it("Jetty's %uXXXX (URLSearchParams does not decode it)", () => assert.deepEqual(p('login%u004Fp=login'), { loginOp: ['login'] }));
  it('repeated names keep every value in order', () => assert.deepEqual(p('u=&u=x'), { u: ['', 'x'] }));
  it('a name without =', () => assert.deepEqual(p('flag&a=1'), { flag: [''], a: ['1'] }));
  it('a bad escape is kept as written', () => assert.deepEqual(p('a=%zz'), { a: ['%zz'] }));
  it('the query ends at #', () => assert.equal(queryOf('/?a=1#b=2'), 'a=1'));
});
