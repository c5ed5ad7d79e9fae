import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { environmentVariables } from '../../src/config/load.js';
import { httpRuleIds } from '../../src/detect/http-rules.js';
import { logRuleIds } from '../../src/detect/log-rules.js';
import { ERROR_CODES } from '../../src/errors.js';
import { Metrics } from '../../src/obs/metrics.js';

// The README is the user's reference: every error code, config key, rule id and metric must be in it.
const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

describe('README documents', () => {
  it('every error code', () => {
    for (const code of Object.keys(ERROR_CODES)) assert.ok(readme.includes(`\`${code}\``), `${code} is not in the README`);
  });
  it('every config key', () => {
    for (const { key } of environmentVariables()) {
      const listenerKey = key.replace(/^listen\.(web|admin|api)\./, 'listen.*.');
      const documented = readme.includes(`\`${key}\``) || readme.includes(`\`${listenerKey}\``) || (listenerKey.startsWith('listen.*.tls') && readme.includes('`listen.*.tls`'));
      assert.ok(documented, `${key} is not in the README`);
    }
  });
  it('every in-line rule id', () => {
    for (const id of logRuleIds()) assert.ok(readme.includes(`\`${id}\``), `log rule ${id} is not in the README`);
    for (const id of httpRuleIds()) assert.ok(readme.includes(`\`${id}\``), `${id} is not in the README`);
  });
  it('every metric', async () => {
    const m = new Metrics(false);
    for (const metric of (await m.registry.getMetricsAsJSON())) assert.ok(readme.includes(`\`${metric.name}\``), `${metric.name} is not in the README`);
  });
});
