import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '../../src/clock.js';
import { AllowlistFullError, MAX_ALLOW_ENTRIES, MemoryAllowlist, type AllowlistStore } from '../../src/store/allowlist.js';
import { connectRedis } from '../../src/store/redis-connect.js';
import { RedisAllowlist } from '../../src/store/redis-allowlist.js';
import { which } from '../helpers/binaries.js';
import { waitFor } from '../helpers/gatekeeper-process.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

/* One contract for every AllowlistStore: memory and Redis behave the same. */
function contract(name: string, make: () => Promise<{ a: AllowlistStore; b: AllowlistStore; clock: { t: number } & Clock; cleanup: () => Promise<void> }>): void {
  describe(`AllowlistStore contract: ${name}`, () => {
    let a: AllowlistStore;
    let b: AllowlistStore;
    let clock: { t: number } & Clock;
    let cleanup: () => Promise<void>;
    before(async () => {
      ({ a, b, clock, cleanup } = await make());
    });
    after(async () => cleanup());

    it('adds, replaces, lists (oldest first) and removes entries, keeping every field', async () => {
      const office = { cidr: '203.0.113.0/24', reason: 'office', since: clock.t, until: null };
      const vpn = { cidr: '2001:db8::/48', reason: 'vpn', since: clock.t + 1, until: clock.t + 60_000 };
      await a.add(office);
      await a.add(vpn);
      assert.deepEqual(await b.list(), [office, vpn]);
      await a.add({ ...office, reason: 'office, new lease' });
      assert.equal((await b.list()).length, 2, 'the same network replaces its entry');
      assert.equal((await b.list())[0]!.reason, 'office, new lease');
      assert.equal(await b.remove('203.0.113.0/24'), true);
      assert.equal(await b.remove('203.0.113.0/24'), false);
      assert.deepEqual((await a.list()).map((e) => e.cidr), ['2001:db8::/48']);
      await a.remove('2001:db8::/48');
    });

    it('drops entries when their time is up', async () => {
      await a.add({ cidr: '198.51.100.7', reason: 'short', since: clock.t, until: clock.t + 1000 });
      assert.equal((await b.list()).length, 1);
      clock.t += 1001;
      assert.deepEqual(await b.list(), []);
    });

    it('tells every subscriber (on every instance) when the list changes', async () => {
      let seen = 0;
      const off = b.subscribe(() => seen++);
      // (Repeated: a Redis subscriber may still be connecting when the first one is published.)
      await waitFor(async () => {
        await a.add({ cidr: '192.0.2.0/28', reason: 'x', since: clock.t, until: null });
        await new Promise((r) => setTimeout(r, 50));
        return seen >= 1;
      }, 5000, 'change seen by the other instance');
      const before = seen;
      await a.remove('192.0.2.0/28');
      await waitFor(() => seen > before, 5000, 'removal seen');
      off();
    });
  });
}

function fakeClock(): { t: number } & Clock {
  const c = { t: Date.parse('2026-11-27T08:00:00Z'), now: () => c.t };
  return c;
}

contract('memory', async () => {
  const clock = fakeClock();
  const m = new MemoryAllowlist(clock);
  return { a: m, b: m, clock, cleanup: () => m.close() };
});

describe('MemoryAllowlist bound', () => {
  it(`refuses a new entry past ${MAX_ALLOW_ENTRIES} (replacing one is still fine)`, async () => {
    const m = new MemoryAllowlist(fakeClock());
    for (let i = 0; i < MAX_ALLOW_ENTRIES; i++) await m.add({ cidr: `10.${i >> 8}.${i & 255}.1`, reason: 'x', since: i, until: null });
    await assert.rejects(m.add({ cidr: '192.0.2.1', reason: 'one too many', since: 0, until: null }), AllowlistFullError);
    await m.add({ cidr: '10.0.0.1', reason: 'replaced', since: 0, until: null });
  });
});

const missing = which('redis-server') ? false : 'redis-server is not installed: apt-get install -y redis-server';
if (missing && process.env.CI === 'true') throw new Error(`CI=true and ${missing}`);
if (missing) process.stderr.write(`\n*** SKIPPED Redis allowlist contract: ${missing} ***\n`);
if (!missing) {
  let server: RedisServer;
  contract('redis (two instances sharing one server)', async () => {
    server = await startRedis();
    const clock = fakeClock();
    const open = (): RedisAllowlist => new RedisAllowlist(connectRedis(server.url, { connectTimeoutMs: 2000, commandTimeoutMs: 2000 }), connectRedis(server.url, { connectTimeoutMs: 2000, commandTimeoutMs: 2000 }), 'gkc:', clock);
    const a = open();
    const b = open();
    await waitFor(async () => (await a.list().then(() => true, () => false)) && (await b.list().then(() => true, () => false)), 5000, 'connected');
    return {
      a,
      b,
      clock,
      cleanup: async () => {
        await a.close();
        await b.close();
        await server.stop();
      },
    };
  });
}
