import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

// The k6 scripts cannot run here (no k6): check that they parse as ES modules, import only k6's
// modules, and carry the thresholds their README promises.
const dir = new URL('../../../load/', import.meta.url);
const scripts = readdirSync(dir).filter((f) => f.endsWith('.js'));

describe('k6 scripts in load/', () => {
  it('exist', () => assert.deepEqual(scripts.sort(), ['bruteforce.js', 'flood.js', 'webmail.js']));
  for (const f of scripts) {
    const path = new URL(f, dir).pathname;
    const text = readFileSync(path, 'utf8');
    it(`${f} parses as an ES module`, () => {
      const r = spawnSync(process.execPath, ['--check', '--input-type=module'], { input: text, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    });
    it(`${f} imports only k6 modules and exports options with thresholds`, () => {
      const imports = [...text.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
      assert.ok(imports.length > 0);
      for (const i of imports) assert.match(i!, /^k6(\/|$)/, `${f} imports ${i}`);
      assert.match(text, /export const options = \{/);
      assert.match(text, /thresholds: \{/);
    });
  }
  it('bruteforce.js proves bans engage (answers before ban <= MAXRETRY, none after)', () => {
    const t = readFileSync(new URL('bruteforce.js', dir), 'utf8');
    assert.match(t, /answers_from_zimbra_before_ban: \[`max<=\$\{MAXRETRY\}`\]/);
    assert.match(t, /answered_after_ban: \['rate==0'\]/);
    assert.match(t, /localIPs:/);
  });
});
