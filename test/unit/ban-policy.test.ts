import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { decideBan } from '../../src/policy/ban-policy.js';

const base = loadConfig({ file: '/dev/null', env: {} }).config;
const fw = { ...base.firewall, backend: 'nftables' as const };

describe('decideBan', () => {
  for (const { desc, count, source, firewall, want } of [
    { desc: 'first proxy ban: bantime, proxy tier', count: 1, source: 'proxy' as const, firewall: fw, want: { seconds: 86400, tier: 'proxy' } },
    { desc: 'second proxy ban: doubled, escalated (escalateAfter 2)', count: 2, source: 'proxy' as const, firewall: fw, want: { seconds: 172800, tier: 'firewall' } },
    { desc: 'fourth ban: 8x', count: 4, source: 'proxy' as const, firewall: fw, want: { seconds: 8 * 86400, tier: 'firewall' } },
    { desc: 'capped at maxtime', count: 10, source: 'proxy' as const, firewall: fw, want: { seconds: 30 * 86400, tier: 'firewall' } },
    { desc: 'log bans go to the firewall at once', count: 1, source: 'log' as const, firewall: fw, want: { seconds: 86400, tier: 'firewall' } },
    { desc: 'no firewall backend: always proxy tier', count: 5, source: 'log' as const, firewall: base.firewall, want: { seconds: 16 * 86400, tier: 'proxy' } },
  ]) {
    it(desc, () => assert.deepEqual(decideBan(count, source, base.jail, firewall), want));
  }
  it('increment off: always bantime', () => {
    const jail = { ...base.jail, bantimeIncrement: { ...base.jail.bantimeIncrement, enabled: false } };
    assert.equal(decideBan(5, 'proxy', jail, fw).seconds, 86400);
  });
  it('a requested duration (manual ban) wins', () => {
    assert.equal(decideBan(3, 'manual', base.jail, fw, 600).seconds, 600);
  });
});
