import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Activity } from '../../src/obs/activity.js';
import { BanCache } from '../../src/policy/ban-cache.js';
import { PageThrottle } from '../../src/proxy/page-throttle.js';
import { ClientSlots } from '../../src/proxy/client-slots.js';
import { boundedLimiter, counterLimits, ExpiringMap, trackedCounterKeys } from '../../src/store/bounded-memory.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { RateLimiterCounter } from '../../src/store/rate-limiter-counter.js';
import type { Ban } from '../../src/store/ban.js';

/*
 * Every per-key structure an attacker can grow by sending distinct keys stays under its ceiling,
 * and when full it forgets what protects least: a key a real attack is counting up survives a flood
 * of one-off keys.
 */

describe('bounded failure counters (memory store, Redis insurance limiter)', () => {
  it('a flood of 100,000 distinct keys keeps at most the ceiling (10,000); a key with several failures survives it', async () => {
    const saved = counterLimits.maxKeys;
    counterLimits.maxKeys = 10_000;
    const counter = new RateLimiterCounter(boundedLimiter('counter:test-flood', { keyPrefix: 'flood', points: 8, duration: 1800 }));
    try {
      await counter.add('victim@example.com', 5); // a distributed guess at one account: 5 failures so far
      for (let i = 0; i < 100_000; i++) {
        await counter.add(`name${i}@example.com`, 1);
        if (i % 10_000 === 0) await counter.add('victim@example.com', 0); // still being counted up
      }
      const tracked = trackedCounterKeys().find((t) => t.kind === 'counter:test-flood')!;
      assert.ok(tracked.size <= counterLimits.maxKeys, `${tracked.size} keys held`);
      assert.equal(await counter.get('victim@example.com'), 5, 'the counted-up key was not forgotten');
    } finally {
      counterLimits.maxKeys = saved;
    }
  });

  it('with a small ceiling: size never passes it, the heavy keys stay, and counting still works', async () => {
    const saved = counterLimits.maxKeys;
    counterLimits.maxKeys = 100;
    try {
      const counter = new RateLimiterCounter(boundedLimiter('counter:test-small', { keyPrefix: 'small', points: 3, duration: 60 }));
      for (const k of ['a', 'b', 'c']) await counter.add(k, 2);
      for (let i = 0; i < 5_000; i++) {
        await counter.add(`k${i}`, 1);
        assert.ok(trackedCounterKeys().find((t) => t.kind === 'counter:test-small')!.size <= 100);
      }
      for (const k of ['a', 'b', 'c']) assert.equal(await counter.get(k), 2, k);
      // The limit still refuses at the 4th point.
      assert.equal((await counter.consume('a', 1)).allowed, true);
      assert.equal((await counter.consume('a', 1)).allowed, false);
      assert.ok(trackedCounterKeys().find((t) => t.kind === 'counter:test-small')!.evicted > 0);
    } finally {
      counterLimits.maxKeys = saved;
    }
  });

  it('the memory store makes its counters bounded and reports every structure it holds', async () => {
    const saved = counterLimits.maxKeys;
    counterLimits.maxKeys = 50;
    const clock = { now: () => Date.now() };
    const store = new MemoryStore(clock, 60_000, { maxFlags: 20, maxBans: 10 });
    try {
      const c = store.counter({ name: 'account-test', points: 8, durationSeconds: 1800 });
      for (let i = 0; i < 1000; i++) await c.add(`n${i}`, 1);
      assert.ok(trackedCounterKeys().find((t) => t.kind === 'counter:account-test')!.size <= 50);
      for (let i = 0; i < 100; i++) await store.setFlag(`good:${i}`, 3600);
      for (let i = 0; i < 100; i++) await store.addBan({ target: `198.51.100.${i}`, until: Date.now() + 60_000 + i * 1000, since: Date.now(), reason: 'test', rule: 'test', service: 'web', tier: 'proxy', source: 'manual', count: 1 } as unknown as Ban);
      const sizes = Object.fromEntries(store.trackedKeys().map((t) => [t.kind, t.size]));
      assert.ok(sizes['store-flags']! <= 20, JSON.stringify(sizes));
      assert.ok(sizes['store-bans']! <= 10, JSON.stringify(sizes));
      assert.equal(await store.hasFlag('good:99'), true, 'the newest flag is kept');
      // Full: the ban ending soonest went, the later ones stay.
      assert.ok(await store.getBan('198.51.100.99'));
      assert.equal(await store.getBan('198.51.100.0'), null);
    } finally {
      counterLimits.maxKeys = saved;
      await store.close();
    }
  });
});

describe('ExpiringMap', () => {
  it('full: an expired entry goes first, else the one expiring soonest among the oldest', () => {
    const m = new ExpiringMap<number>(3);
    m.set('a', 1, 5_000, 0);
    m.set('b', 2, 1_000, 0);
    m.set('c', 3, 9_000, 0);
    m.set('d', 4, 9_000, 0); // full: b (soonest) goes
    assert.equal(m.get('b', 0), undefined);
    assert.equal(m.get('a', 0), 1);
    m.set('e', 5, 9_000, 6_000); // a expired by now: it goes
    assert.equal(m.get('a', 6_000), undefined);
    assert.equal(m.size, 3);
  });
});

describe('ban cache, page throttle, activity, client slots', () => {
  it('the ban cache keeps at most maxEntries single-address bans, dropping the one ending soonest; network bans stay', () => {
    const cache = new BanCache(64);
    cache.maxEntries = 100;
    const now = Date.now();
    const ban = (target: string, until: number): Ban => ({ target, until, since: now, reason: 'test', rule: 'test', service: 'web', tier: 'proxy', source: 'manual', count: 1 }) as unknown as Ban;
    cache.set(ban('203.0.113.0/24', now + 3_600_000));
    cache.set(ban('192.0.2.1', now + 3_600_000)); // a long ban
    for (let i = 0; i < 1000; i++) cache.set(ban(`10.0.${i >> 8}.${i & 255}`, now + 60_000 + i));
    assert.ok(cache.size <= 101, `${cache.size}`);
    assert.ok(cache.lookup('203.0.113.9', now), 'the network ban is kept');
    assert.ok(cache.lookup('192.0.2.1', now), 'the longest ban outlives the short ones');
    assert.ok(cache.evicted > 0);
  });

  it('the page throttle forgets the least recently paged address past its ceiling', () => {
    const t = new PageThrottle(60_000, 10);
    for (let i = 0; i < 1000; i++) t.take(`198.51.100.${i % 256}-${i}`, 0);
    assert.equal(t.size, 10);
  });

  it('activity: a flood of one-off names cannot keep a heavy hitter out of the top list', () => {
    const a = new Activity({ now: () => 1_700_000_000_000 }, 50);
    for (let i = 0; i < 10_000; i++) a.recordFailure('web', `198.51.100.${i % 200}`, `name${i}@example.com`);
    for (let i = 0; i < 20; i++) a.recordFailure('web', '203.0.113.7', 'ceo@example.com');
    assert.ok(a.size <= 100, `${a.size}`);
    const r = a.report(3);
    assert.equal(r.topAccounts[0]!.account, 'ceo@example.com');
    assert.equal(r.topAccounts[0]!.failures, 20);
    assert.equal(r.topAddresses[0]!.ip, '203.0.113.7');
  });

  it('client slots: at most max per key, given back on release, the map empty when nothing is held', () => {
    const s = new ClientSlots(2);
    assert.equal(s.take('a'), true);
    assert.equal(s.take('a'), true);
    assert.equal(s.take('a'), false);
    assert.equal(s.take('a', true), true, 'over its share when allowed');
    assert.equal(s.take('b'), true);
    for (let i = 0; i < 3; i++) s.release('a');
    s.release('b');
    assert.equal(s.size, 0);
  });
});
