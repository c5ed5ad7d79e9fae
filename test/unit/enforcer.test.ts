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

describe('Enforcer: logins of one address in flight (an office behind NAT)', () => {
  const outcome = (failures: number, successAccounts: string[] = []) => ({ failures, successes: successAccounts.length, successAccounts, ruleId: 'soap.auth-failed', service: 'soap' });

  it('a login that finds the budget held by logins in flight waits for one to settle, FIFO, and is served', async () => {
    const e = make(new MemoryStore(clock));
    const held = await Promise.all([0, 1, 2].map((i) => e.admitLogin('198.51.100.20', [`u${i}@example.com`], 1)));
    assert.ok(held.every((a) => a.allowed));
    const order: number[] = [];
    const waiting = [3, 4].map((i) => e.admitLogin('198.51.100.20', [`u${i}@example.com`], 1).then((a) => (order.push(i), a)));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, [], 'nobody passed while every slot was held');
    for (const a of held) if (a.allowed) await e.settleLogin(a.ticket, outcome(0, [a.ticket.accounts[0]!]));
    const served = await Promise.all(waiting);
    assert.ok(served.every((a) => a.allowed));
    assert.deepEqual(order, [3, 4]);
  });

  it('reservations of logins still in flight are not failures: a typo among them bans nobody', async () => {
    const e = make(new MemoryStore(clock));
    const held = await Promise.all([0, 1, 2].map((i) => e.admitLogin('198.51.100.21', [`u${i}@example.com`], 1)));
    const typo = held[0]!;
    if (typo.allowed) await e.settleLogin(typo.ticket, outcome(1));
    assert.equal(e.bannedNow('198.51.100.21'), undefined, 'one failure and two logins in flight is no ban');
    assert.equal(await e.failuresOf('198.51.100.21'), 3, 'the counter holds 1 failure and 2 reservations');
  });

  it('once failures have used the budget, the waiting logins are refused, not served', async () => {
    const e = make(new MemoryStore(clock));
    const held = await Promise.all([0, 1, 2].map(() => e.admitLogin('198.51.100.22', ['victim@example.com'], 1)));
    const waiting = e.admitLogin('198.51.100.22', ['victim@example.com'], 1);
    for (const a of held) if (a.allowed) await e.settleLogin(a.ticket, outcome(1));
    const late = await waiting;
    assert.equal(late.allowed, false);
    assert.equal(!late.allowed && late.reason, 'banned');
  });

  it('a request with more attempts than maxretry never waits', async () => {
    const e = make(new MemoryStore(clock));
    const held = await e.admitLogin('198.51.100.23', ['a@example.com'], 1);
    assert.ok(held.allowed);
    const big = await e.admitLogin('198.51.100.23', ['a@example.com'], config.jail.maxretry + 1);
    assert.equal(!big.allowed && big.reason, 'limited');
  });

  it('a success is credited only to the accounts the gate names: an attacker\'s own success does not clear a victim', async () => {
    const e = make(new MemoryStore(clock));
    const first = await e.admitLogin('198.51.100.24', ['victim@example.com'], 1);
    if (first.allowed) await e.settleLogin(first.ticket, outcome(1));
    const batch = await e.admitLogin('198.51.100.24', ['own@example.com', 'victim@example.com'], 2);
    if (batch.allowed) await e.settleLogin(batch.ticket, { failures: 1, successes: 1, successAccounts: [], ruleId: 'soap.auth-failed', service: 'soap' });
    assert.equal(await e.failuresOf('198.51.100.24'), 2, 'both failures stand');
  });

  it('a failure of a batch naming two accounts is booked on no account, so an own login cannot wash it', async () => {
    const e = make(new MemoryStore(clock));
    const batch = await e.admitLogin('198.51.100.25', ['own@example.com', 'victim@example.com'], 2);
    if (batch.allowed) await e.settleLogin(batch.ticket, { failures: 1, failedAccounts: [], successes: 1, successAccounts: [], ruleId: 'soap.auth-failed', service: 'soap' });
    const own = await e.admitLogin('198.51.100.25', ['own@example.com'], 1);
    if (own.allowed) await e.settleLogin(own.ticket, outcome(0, ['own@example.com']));
    assert.equal(await e.failuresOf('198.51.100.25'), 1, 'the victim\'s failure stands after the own login');
  });
});

describe('Enforcer: bounded known-good cache', () => {
  it('keeps at most memory.maxKnownGood pairs, forgetting the oldest; the store still knows them', async () => {
    const small = loadConfig({ file: '/dev/null', env: { GK_JAIL_IGNOREIP: '[]', GK_MEMORY_MAX_KNOWN_GOOD: '100' } }).config;
    const store = new MemoryStore(clock);
    const e = new Enforcer(small, store, sets, clock, createLogger('silent'), new Metrics(false));
    for (let i = 0; i < 1000; i++) {
      const a = await e.admitLogin(`198.51.100.${i % 250}`, [`u${i}@example.com`], 1);
      if (a.allowed) await e.settleLogin(a.ticket, { failures: 0, successes: 1, successAccounts: [`u${i}@example.com`], ruleId: 'soap.auth-ok', service: 'soap' });
    }
    assert.equal(e.trackedSizes.knownGood, 100);
    // The first pair was forgotten here, but the store knows it: no reservation is taken.
    const again = await e.admitLogin('198.51.100.0', ['u0@example.com'], 1);
    assert.ok(again.allowed && again.ticket.knownGood);
  });
});
