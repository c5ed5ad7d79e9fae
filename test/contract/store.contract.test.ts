import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '../../src/clock.js';
import type { Ban, BanEvent } from '../../src/store/ban.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { connectRedis } from '../../src/store/redis-connect.js';
import { RedisKeys } from '../../src/store/redis-keys.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';
import { which } from '../helpers/binaries.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { waitFor } from '../helpers/gatekeeper-process.js';

const OPTS = { connectTimeoutMs: 2000, commandTimeoutMs: 1000 };

/*
 * One contract for every Store: the memory store and the Redis store must behave the same.
 */
function ban(target: string, clock: Clock, seconds = 60, extra: Partial<Ban> = {}): Ban {
  const now = clock.now();
  return { target, reason: 'soap.auth-failed', service: 'soap', since: now, until: now + seconds * 1000, tier: 'proxy', count: 1, source: 'proxy', ...extra };
}

function contract(name: string, make: () => Promise<{ store: Store; clock: Clock; cleanup: () => Promise<void> }>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    let clock: Clock;
    let cleanup: () => Promise<void>;
    before(async () => {
      ({ store, clock, cleanup } = await make());
    });
    after(async () => {
      await cleanup();
    });

    it('adds, lists and removes bans', async () => {
      await store.addBan(ban('203.0.113.1', clock));
      await store.addBan(ban('2001:db8::/64', clock));
      const targets = (await store.listBans()).map((b) => b.target).sort();
      assert.deepEqual(targets, ['2001:db8::/64', '203.0.113.1']);
      assert.equal((await store.getBan('203.0.113.1'))?.target, '203.0.113.1');
      assert.equal(await store.getBan('203.0.113.2'), null);
      assert.equal(await store.removeBan('203.0.113.1'), true);
      assert.equal(await store.removeBan('203.0.113.1'), false);
      assert.deepEqual((await store.listBans()).map((b) => b.target), ['2001:db8::/64']);
      assert.equal(await store.getBan('203.0.113.1'), null, 'a removed ban is gone');
      assert.equal(await store.removeAllBans(), 1);
      assert.deepEqual(await store.listBans(), []);
    });

    it('keeps every field of a ban', async () => {
      const b = ban('198.51.100.9', clock, 60, { tier: 'firewall', count: 3, source: 'log', note: '3 failures' });
      await store.addBan(b);
      const got = (await store.listBans()).find((x) => x.target === '198.51.100.9');
      assert.deepEqual(got, b);
      await store.removeAllBans();
    });

    it('does not list expired bans', async () => {
      await store.addBan(ban('203.0.113.2', clock, 0.05));
      await new Promise((r) => setTimeout(r, 120));
      assert.ok(!(await store.listBans()).some((b) => b.target === '203.0.113.2'));
    });

    it('counts a target\'s bans for repeat-offender escalation', async () => {
      assert.equal(await store.recordBan('203.0.113.3', 3600), 1);
      assert.equal(await store.recordBan('203.0.113.3', 3600), 2);
      assert.equal(await store.recordBan('203.0.113.4', 3600), 1);
    });

    it('decides a ban once: an active ban wins over a second one, counted once; a manual ban replaces it', async () => {
      const make = (count: number): Ban => ban('203.0.113.20', clock, 60, { count });
      const first = await store.createBan('203.0.113.20', 3600, make, false);
      assert.deepEqual([first.created, first.ban.count], [true, 1]);
      const second = await store.createBan('203.0.113.20', 3600, make, false);
      assert.deepEqual([second.created, second.ban.since, second.ban.count], [false, first.ban.since, 1]);
      const manual = await store.createBan('203.0.113.20', 3600, make, true);
      assert.deepEqual([manual.created, manual.ban.count], [true, 2]);
      assert.equal((await store.getBan('203.0.113.20'))?.count, 2);
      await store.removeBan('203.0.113.20');
      const again = await store.createBan('203.0.113.20', 3600, make, false);
      assert.deepEqual([again.created, again.ban.count], [true, 3], 'a new offence after an unban counts as the third ban');
      await store.removeAllBans();
    });

    it('tells subscribers of its own bans and unbans', async () => {
      const seen: BanEvent[] = [];
      const off = store.subscribe((e) => seen.push(e));
      await store.addBan(ban('203.0.113.5', clock));
      await store.removeBan('203.0.113.5');
      off();
      assert.deepEqual(seen.map((e) => e.type), ['ban', 'unban']);
    });

    it('keeps flags for their TTL', async () => {
      await store.setFlag('good:a@x|203.0.113.6', 0.1);
      assert.equal(await store.hasFlag('good:a@x|203.0.113.6'), true);
      assert.equal(await store.hasFlag('good:b@x|203.0.113.6'), false);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(await store.hasFlag('good:a@x|203.0.113.6'), false);
    });

    it('stores values', async () => {
      await store.setValue('pos:/var/log/zimbra.log', '{"ino":1,"pos":42}');
      assert.equal(await store.getValue('pos:/var/log/zimbra.log'), '{"ino":1,"pos":42}');
      assert.equal(await store.getValue('pos:nothing'), null);
    });

    it('counts failures, refuses past the limit without keeping the refused points, and refunds', async () => {
      const c = store.counter({ name: `t${Date.now()}`, points: 3, durationSeconds: 60 });
      assert.equal((await c.consume('k', 1)).allowed, true);
      assert.equal((await c.consume('k', 2)).allowed, true);
      const refused = await c.consume('k', 1);
      assert.equal(refused.allowed, false);
      assert.equal(await c.get('k'), 3);
      await c.reward('k', 2);
      assert.equal(await c.get('k'), 1);
      assert.equal((await c.add('k', 5)).consumed, 6);
      await c.delete('k');
      assert.equal(await c.get('k'), 0);
    });

    it('reports health', () => {
      assert.equal(store.health().ok, true);
    });
  });
}

contract('memory', async () => {
  const store = new MemoryStore({ now: () => Date.now() });
  return { store, clock: { now: () => Date.now() }, cleanup: () => store.close() };
});

describe('redis', { skip: !which('redis-server') && process.env.CI !== 'true' ? 'redis-server is not installed: apt-get install -y redis-server' : false }, () => {
  let server: RedisServer;
  const clock = { now: () => Date.now() };
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await server.stop();
  });
  contract('redis', async () => {
    const prefix = `gk${Math.random().toString(36).slice(2, 8)}:`;
    const store = new RedisStore(connectRedis(server.url, OPTS), connectRedis(server.url, OPTS), prefix, clock);
    await waitFor(() => store.health().ok, 5000, 'redis ready');
    return { store, clock, cleanup: () => store.close() };
  });

  it('delivers bans to a second instance over pub/sub, and queues writes while Redis is down', async () => {
    const prefix = 'gkps:';
    const a = new RedisStore(connectRedis(server.url, OPTS), connectRedis(server.url, OPTS), prefix, clock);
    const b = new RedisStore(connectRedis(server.url, OPTS), connectRedis(server.url, OPTS), prefix, clock);
    try {
      await waitFor(() => a.health().ok && b.health().ok, 5000, 'redis ready');
      await new Promise((r) => setTimeout(r, 100)); // subscriptions settle
      const seen: BanEvent[] = [];
      b.subscribe((e) => seen.push(e));
      await a.addBan(ban('203.0.113.50', clock));
      await waitFor(() => seen.find((e) => e.type === 'ban'), 2000, 'ban event on instance b');

      await server.kill();
      await waitFor(() => !a.health().ok, 5000, 'a notices redis is down');
      await a.addBan(ban('203.0.113.51', clock, 600));
      assert.equal(a.health().pendingWrites, 1);
      await server.start();
      await waitFor(() => a.health().ok && a.health().pendingWrites === 0, 10_000, 'pending ban written after reconnect');
      const raw = await server.client().get(new RedisKeys(prefix).ban('203.0.113.51').ban);
      assert.ok(raw, 'the ban made while Redis was down is in Redis now');
    } finally {
      await a.close();
      await b.close();
    }
  });
});
