import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { CidrSet } from '../../src/net/ip.js';
import { createLogger } from '../../src/obs/logger.js';
import { Metrics } from '../../src/obs/metrics.js';
import { Enforcer, type Admission } from '../../src/policy/enforcer.js';
import { MemoryStore } from '../../src/store/memory-store.js';

const config = loadConfig({ file: '/dev/null', env: { GK_JAIL_IGNOREIP: '[]' } }).config;
const clock = { now: () => Date.now() };
const sets = { ignored: new CidrSet([]), protected: new CidrSet([]) };
const make = (store: MemoryStore): Enforcer => new Enforcer(config, store, sets, clock, createLogger('silent'), new Metrics(false));

/** One wrong password, admitted and settled as the gate does it. */
async function fail(e: Enforcer, ip: string): Promise<Admission> {
  const a = await e.admitLogin(ip, ['info@example.com'], 1);
  if (a.allowed) await e.settleLogin(a.ticket, { failures: 1, successes: 0, successAccounts: [], ruleId: 'soap.auth-failed', service: 'soap' });
  return a;
}

describe('Enforcer: a ban resets the counter, but never lets a request slip through the reset', () => {
  it('a request that passed the gate before the ban landed is refused at admission (same instance)', async () => {
    const e = make(new MemoryStore(clock));
    for (let i = 0; i < config.jail.maxretry; i++) assert.equal((await fail(e, '198.51.100.7')).allowed, true);
    assert.ok(e.bannedNow('198.51.100.7'), 'the 3rd failure banned the address');
    // The gate's ban check ran before the ban; the counter has been reset since.
    const late = await e.admitLogin('198.51.100.7', ['info@example.com'], 1);
    assert.equal(late.allowed, false);
    assert.equal(!late.allowed && late.reason, 'banned');
    assert.equal(await e.failuresOf('198.51.100.7'), 0, 'the refused attempt was not counted');
  });

  it('a ban made by another instance is found in the store before its event arrives', async () => {
    const store = new MemoryStore(clock);
    const a = make(store);
    const b = make(store); // not subscribed: it has not heard of a's ban
    for (let i = 0; i < config.jail.maxretry; i++) await fail(a, '198.51.100.8');
    assert.equal(b.bannedNow('198.51.100.8'), undefined);
    const late = await b.admitLogin('198.51.100.8', ['info@example.com'], 1);
    assert.equal(!late.allowed && late.reason, 'banned');
    assert.ok(b.bannedNow('198.51.100.8'), 'and b now knows of the ban');
  });

  it('an address with no ban is admitted after the counter reset as before', async () => {
    const e = make(new MemoryStore(clock));
    assert.equal((await fail(e, '198.51.100.9')).allowed, true);
    const next = await e.admitLogin('198.51.100.9', ['info@example.com'], 1);
    assert.equal(next.allowed, true);
  });
});
