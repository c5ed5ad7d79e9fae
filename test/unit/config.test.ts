import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseDurationSeconds } from '../../src/config/duration.js';
import { envNameOf, loadConfig, maskedConfig } from '../../src/config/load.js';
import { isGatekeeperError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'gk-config-'));
let n = 0;
function file(yaml: string): string {
  const p = join(dir, `c${n++}.yml`);
  writeFileSync(p, yaml);
  return p;
}
function problems(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    loadConfig({ file: file(yaml), env });
  } catch (err) {
    assert.ok(isGatekeeperError(err, 'GK_ERR_CONFIG_INVALID'), String(err));
    return [...err.details];
  }
  assert.fail('expected the config to be rejected');
}

describe('durations', () => {
  for (const [desc, input, want] of [
    ['seconds as a number', 90, 90],
    ['seconds as text', '90', 90],
    ['seconds with unit', '90s', 90],
    ['minutes', '30m', 1800],
    ['hours', '24h', 86400],
    ['days', '7d', 604800],
    ['weeks', '2w', 1209600],
    ['milliseconds', '250ms', 0.25],
    ['garbage', '30 minutes', null],
    ['negative', -5, null],
    ['empty', '', null],
  ] as const) {
    it(desc, () => assert.equal(parseDurationSeconds(input), want));
  }
});

describe('loadConfig', () => {
  it('gives the fail2ban-for-Zimbra defaults for an empty file', () => {
    const { config } = loadConfig({ file: file(''), env: {} });
    assert.equal(config.jail.maxretry, 3);
    assert.equal(config.jail.findtime, 1800);
    assert.equal(config.jail.bantime, 86400);
    assert.deepEqual(config.jail.bantimeIncrement, { enabled: true, factor: 2, maxtime: 30 * 86400 });
    assert.deepEqual(config.jail.ignoreip, ['127.0.0.0/8', '::1']);
    assert.equal(config.account.maxretry, 8);
    assert.deepEqual(config.admin.allow, []);
    assert.equal(config.firewall.backend, 'none');
    assert.equal(config.mode, 'enforce');
    assert.equal(config.redis, undefined);
    assert.deepEqual(config.listen.api, { host: '127.0.0.1', port: 9180, proxyProtocol: false });
  });

  it('is frozen', () => {
    const { config } = loadConfig({ file: file(''), env: {} });
    assert.throws(() => {
      (config.jail as { maxretry: number }).maxretry = 99;
    });
  });

  it('reads durations in any form', () => {
    const { config } = loadConfig({ file: file('jail: { findtime: 10m, bantime: 3600 }'), env: {} });
    assert.equal(config.jail.findtime, 600);
    assert.equal(config.jail.bantime, 3600);
  });

  it('names key, value and why for each problem', () => {
    const p = problems('jail: { maxretry: -1, findtime: soon }\nfirewall: { backend: pf }\n');
    assert.ok(p.includes('jail.maxretry: -1 is not a positive integer'), p.join('\n'));
    assert.ok(p.some((x) => x.startsWith('jail.findtime: "soon" is not a duration')), p.join('\n'));
    assert.ok(p.some((x) => x.startsWith('firewall.backend: "pf" is not one of none, nftables, ipset, firewalld')), p.join('\n'));
  });

  it('rejects unknown keys, at any depth', () => {
    const p = problems('jial: {}\njail: { maxretries: 3 }\n');
    assert.ok(p.includes('jial: unknown key'), p.join('\n'));
    assert.ok(p.includes('jail.maxretries: unknown key'), p.join('\n'));
  });

  it('rejects bad networks', () => {
    const p = problems('trustedProxies: [10.0.0.300/8]\nadmin: { allow: ["192.168.0.0/33"] }\n');
    assert.ok(p.some((x) => x.startsWith('trustedProxies.0: "10.0.0.300/8" is not an IP address or CIDR')), p.join('\n'));
    assert.ok(p.some((x) => x.startsWith('admin.allow.0: "192.168.0.0/33" is not an IP address or CIDR')), p.join('\n'));
  });

  it('applies GK_* environment overrides over the file', () => {
    const env = { GK_JAIL_MAXRETRY: '5', GK_REDIS_URL: 'redis://127.0.0.1:6390/1', GK_JAIL_BANTIME_INCREMENT_MAXTIME: '7d', GK_ADMIN_ALLOW: '10.0.0.0/8, 192.168.1.0/24', GK_ZIMBRA_TLS_VERIFY: 'true' };
    const { config } = loadConfig({ file: file('jail: { maxretry: 3 }'), env });
    assert.equal(config.jail.maxretry, 5);
    assert.equal(config.redis?.url, 'redis://127.0.0.1:6390/1');
    assert.equal(config.redis?.keyPrefix, 'gk:');
    assert.equal(config.jail.bantimeIncrement.maxtime, 7 * 86400);
    assert.deepEqual(config.admin.allow, ['10.0.0.0/8', '192.168.1.0/24']);
    assert.equal(config.zimbra.tlsVerify, true);
  });

  it('treats an empty variable as unset (compose passes ${VAR:-} through as "")', () => {
    const { config } = loadConfig({ file: file(''), env: { GK_API_TOKEN: '', GK_ADMIN_ALLOW: '' } });
    assert.equal(config.api.token, undefined);
    assert.deepEqual(config.admin.allow, []);
  });

  it('keeps the default listeners when only one is set from the environment', () => {
    const { config } = loadConfig({ file: file(''), env: { GK_LISTEN_WEB_PORT: '8081' } });
    assert.equal(config.listen.web?.port, 8081);
    assert.equal(config.listen.admin?.port, 7071);
    assert.equal(config.listen.api?.port, 9180);
  });

  it('names the variable an invalid value came from, and refuses unknown GK_ variables', () => {
    const p = problems('', { GK_JAIL_MAXRETRY: 'lots', GK_JAIL_MAXRETYR: '3' });
    assert.ok(p.includes('jail.maxretry: "lots" (from GK_JAIL_MAXRETRY) is not a positive integer'), p.join('\n'));
    assert.ok(p.some((x) => x.startsWith('GK_JAIL_MAXRETYR: unknown environment variable')), p.join('\n'));
  });

  it('requires an API token when the API listens beyond loopback', () => {
    const p = problems('listen: { api: { host: 0.0.0.0, port: 9180 } }');
    assert.ok(p.some((x) => x.startsWith('api.token: (missing) is required')), p.join('\n'));
  });

  it('warns loudly about an empty admin allowlist', () => {
    const { warnings } = loadConfig({ file: file(''), env: {} });
    assert.ok(warnings.some((w) => w.includes('admin.allow is empty')));
  });

  it('reports a missing explicit file and bad YAML as GK_ERR_CONFIG_FILE', () => {
    assert.throws(() => loadConfig({ file: join(dir, 'nope.yml'), env: {} }), (e) => isGatekeeperError(e, 'GK_ERR_CONFIG_FILE'));
    assert.throws(() => loadConfig({ file: file('jail: [unclosed'), env: {} }), (e) => isGatekeeperError(e, 'GK_ERR_CONFIG_FILE'));
  });

  it('masks secrets when printing', () => {
    const { config } = loadConfig({ file: file('redis: { url: "redis://:s3cret@127.0.0.1:6379/0" }\napi: { token: "0123456789abcdef0123" }'), env: {} });
    const text = JSON.stringify(maskedConfig(config));
    assert.ok(!text.includes('s3cret'));
    assert.ok(!text.includes('0123456789abcdef0123'));
  });

  it('derives environment names from config paths', () => {
    assert.equal(envNameOf(['jail', 'bantimeIncrement', 'maxtime']), 'GK_JAIL_BANTIME_INCREMENT_MAXTIME');
    assert.equal(envNameOf(['api', 'token']), 'GK_API_TOKEN');
    assert.equal(envNameOf(['jail', 'ipv6Prefix']), 'GK_JAIL_IPV6_PREFIX');
  });
});
