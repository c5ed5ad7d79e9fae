import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '../../src/clock.js';
import { MemoryHistory, type HistoryEvent, type HistoryStore } from '../../src/store/history.js';
import { connectRedis } from '../../src/store/redis-connect.js';
import { RedisHistory } from '../../src/store/redis-history.js';
import { which } from '../helpers/binaries.js';
import { waitFor } from '../helpers/gatekeeper-process.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

/* One contract for every HistoryStore: memory and Redis keep, order, filter and forget the same. */
const LIMITS = { keepSeconds: 3600, maxEvents: 5 };

function contract(name: string, make: () => Promise<{ h: HistoryStore; clock: { t: number } & Clock; cleanup: () => Promise<void> }>): void {
  describe(`HistoryStore contract: ${name}`, () => {
    let h: HistoryStore;
    let clock: { t: number } & Clock;
    let cleanup: () => Promise<void>;
    before(async () => {
      ({ h, clock, cleanup } = await make());
    });
    after(async () => cleanup());

    it('keeps every field, lists newest first, filters by target (with unban-all) and by time', async () => {
      const ban: HistoryEvent = {
        at: clock.t,
        action: 'ban',
        target: '203.0.113.5',
        by: 'proxy',
        rule: 'soap.auth-failed',
        service: 'soap',
        tier: 'proxy',
        until: clock.t + 86_400_000,
        count: 1,
        note: '3 failures within 1800s',
        evidence: [{ at: clock.t - 1000, service: 'soap', account: 'a@example.com', failures: 1 }],
      };
      await h.append(ban);
      await h.append({ at: clock.t + 1, action: 'ban', target: '198.51.100.0/24', by: 'manual (cli from 127.0.0.1)', rule: 'manual', service: 'manual', tier: 'firewall', until: clock.t + 1000, count: 1 });
      await h.append({ at: clock.t + 2, action: 'unban-all', target: '*', by: 'manual (cli from 127.0.0.1)', note: '2 ban(s) lifted' });
      await h.append({ at: clock.t + 3, action: 'unban', target: '203.0.113.5', by: 'manual (status page from 127.0.0.1)' });
      const mine = await h.list({ target: '203.0.113.5', limit: 10 });
      assert.deepEqual(mine.map((e) => e.action), ['unban', 'unban-all', 'ban']);
      assert.deepEqual(mine[2], ban);
      assert.equal((await h.list({ limit: 10 })).length, 4);
      assert.deepEqual((await h.list({ limit: 2 })).map((e) => e.at), [clock.t + 3, clock.t + 2]);
      assert.deepEqual((await h.list({ limit: 10, since: clock.t + 2 })).map((e) => e.action), ['unban', 'unban-all']);
    });

    it('forgets events older than keep and beyond maxEvents', async () => {
      for (let i = 0; i < 7; i++) await h.append({ at: clock.t + 10 + i, action: 'unban', target: '192.0.2.1', by: 'x' });
      assert.equal((await h.list({ limit: 100 })).length, LIMITS.maxEvents, 'bounded');
      clock.t += 3601_000 + 100;
      assert.deepEqual(await h.list({ limit: 100 }), [], 'older than keep');
    });
  });
}

function fakeClock(): { t: number } & Clock {
  const c = { t: Date.parse('2026-11-27T08:00:00Z'), now: () => c.t };
  return c;
}

contract('memory', async () => {
  const clock = fakeClock();
  const h = new MemoryHistory(clock, LIMITS);
  return { h, clock, cleanup: () => h.close() };
});

const missing = which('redis-server') ? false : 'redis-server is not installed: apt-get install -y redis-server';
if (missing && process.env.CI === 'true') throw new Error(`CI=true and ${missing}`);
if (missing) process.stderr.write(`\n*** SKIPPED Redis history contract: ${missing} ***\n`);
if (!missing) {
  let server: RedisServer;
  contract('redis', async () => {
    server = await startRedis();
    const clock = fakeClock();
    const h = new RedisHistory(connectRedis(server.url, { connectTimeoutMs: 2000, commandTimeoutMs: 2000 }), 'gkh:', clock, LIMITS);
    await waitFor(async () => h.list({ limit: 1 }).then(() => true, () => false), 5000, 'connected');
    return {
      h,
      clock,
      cleanup: async () => {
        await h.close();
        await server.stop();
      },
    };
  });
}
