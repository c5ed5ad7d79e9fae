import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

// No k6 binary can run here: the scripts are proven against k6's real API instead. `tsc --checkJs`
// type-checks every script against @types/k6 (load/tsconfig.json), each script takes its options
// from load/plans.js, and the README's table is the one plans.js generates.
const dir = new URL('../../../load/', import.meta.url);
const scripts = readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'plans.js');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

interface Plan {
  load: string;
  proves: string;
  options: { scenarios?: Record<string, unknown>; thresholds?: Record<string, string[]> };
}
const { plans, planTable } = (await import(new URL('plans.js', dir).href)) as { plans: (env: Record<string, string>) => Record<string, Plan>; planTable: () => string };

describe('k6 scripts in load/', () => {
  it('type-check against k6\'s API (@types/k6, tsc --checkJs)', () => {
    const r = spawnSync(process.execPath, [tsc, '-p', new URL('tsconfig.json', dir).pathname], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });
  it('every script has a plan, and every plan a script', () => assert.deepEqual(Object.keys(plans({})).sort(), [...scripts].sort()));
  for (const f of scripts) {
    it(`${f} takes its options from plans.js`, () => {
      const text = readFileSync(new URL(f, dir), 'utf8');
      assert.match(text, /^import \{ plans \} from '\.\/plans\.js';$/m);
      assert.ok(text.includes(`export const options = plans(__ENV)['${f}'].options;`));
      for (const [, mod] of text.matchAll(/^import .* from '([^']+)';$/gm)) assert.match(mod!, /^(?:k6(?:\/|$)|\.\/plans\.js$)/, `${f} imports ${mod}`);
    });
    it(`${f} has scenarios and thresholds`, () => {
      const p = plans({})[f]!;
      assert.ok(Object.keys(p.options.scenarios ?? {}).length > 0);
      assert.ok(Object.keys(p.options.thresholds ?? {}).length > 0);
    });
  }
  it('the brute-force plans prove bans engage (answers before ban <= MAXRETRY, none after)', () => {
    const p = plans({ MAXRETRY: '5' });
    assert.deepEqual(p['bruteforce.js']!.options.thresholds!.answers_from_zimbra_before_ban, ['max<=5']);
    assert.deepEqual(p['bruteforce.js']!.options.thresholds!.answered_after_ban, ['rate==0']);
    assert.deepEqual(p['login-flood.js']!.options.thresholds!.answers_from_zimbra_before_ban, ['max<=5']);
  });
  it('load/README.md shows the table plans.js generates (npm run docs:load)', () => {
    const readme = readFileSync(new URL('README.md', dir), 'utf8');
    assert.ok(readme.includes(planTable()), 'load/README.md is out of date: run npm run docs:load');
  });
});
