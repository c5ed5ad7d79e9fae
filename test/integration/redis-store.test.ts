import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Ban } from '../../src/store/ban.js';
import { connectRedis } from '../../src/store/redis-connect.js';
import { RedisKeys } from '../../src/store/redis-keys.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { which } from '../helpers/binaries.js';
import { startFakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, waitFor } from '../helpers/gatekeeper-process.js';
import { closeAgents, send, soapJsonAuth } from '../helpers/http-client.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

/*
 * The Redis store against one real redis-server: one ban per offence across instances, a hung Redis
 * treated as down, bans re-asserted after the store lost them (what a failover does), unbans respected.
 */
const skip = !which('redis-server') && process.env.CI !== 'true' ? 'redis-server is not installed: apt-get install -y redis-server' : false;
const clock = { now: () => Date.now() };
/** A generous deadline for the tests that run beside others on a loaded machine; the hang test sets 300 ms. */
const OPTS = { connectTimeoutMs: 2000, commandTimeoutMs: 2000 };

function makeBan(target: string, seconds = 600): (count: number) => Ban {
  return (count) => {
    const now = clock.now();
    return { target, reason: 'soap.auth-failed', service: 'soap', since: now, until: now + seconds * 1000 * count, tier: 'proxy', count, source: 'proxy' };
  };
}

describe('Redis store on a real redis-server', { skip, timeout: 60_000 }, () => {
  let server: RedisServer;
  const stores: RedisStore[] = [];
  const open = async (prefix: string, commandTimeoutMs = OPTS.commandTimeoutMs): Promise<RedisStore> => {
    const opts = { ...OPTS, commandTimeoutMs };
    const s = new RedisStore(connectRedis(server.url, opts), connectRedis(server.url, opts), prefix, clock, { commandTimeoutMs });
    stores.push(s);
    await waitFor(() => s.health().ok, 5000, 'redis ready');
    return s;
  };
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    server.resume();
    for (const s of stores) await s.close();
    await server.stop();
  });

  it('makes one ban per offence when two instances cross the limit at the same moment', async () => {
    const a = await open('one:');
    const b = await open('one:');
    for (let round = 0; round < 10; round++) {
      const target = `203.0.113.${round}`;
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).createBan(target, 3600, makeBan(target), false)));
      const created = results.filter((r) => r.created);
      assert.equal(created.length, 1, `round ${round}: exactly one instance made the ban`);
      assert.ok(results.every((r) => r.ban.since === created[0]!.ban.since), 'every caller got the one ban');
      assert.equal(await server.client().get(new RedisKeys('one:').ban(target).hist), '1', 'the history counted the offence once');
    }
    // The next offence after the ban is lifted is the second, from either instance.
    await a.removeBan('203.0.113.0');
    const second = await b.createBan('203.0.113.0', 3600, makeBan('203.0.113.0'), false);
    assert.deepEqual([second.created, second.ban.count], [true, 2]);
  });

  it('re-asserts a ban the store lost (failover) with its original expiry, but not one lifted meanwhile', async () => {
    const a = await open('re:');
    const keys = new RedisKeys('re:');
    const r = server.client();
    const kept = (await a.createBan('198.51.100.1', 3600, makeBan('198.51.100.1'), false)).ban;
    const lifted = (await a.createBan('198.51.100.2', 3600, makeBan('198.51.100.2'), false)).ban;
    // What a replica promoted before it had these writes looks like: the keys are gone. For the second,
    // another instance's unban (whose event this one missed) left its tombstone.
    await r.flushall();
    await r.set(keys.ban('198.51.100.2').tomb, String(clock.now()));
    const listed = await a.listBans();
    assert.deepEqual(listed.map((x) => x.target), ['198.51.100.1']);
    const raw = await r.get(keys.ban('198.51.100.1').ban);
    assert.deepEqual(JSON.parse(raw!), kept, 'the same ban, written again');
    const pttl = await r.pttl(keys.ban('198.51.100.1').ban);
    assert.ok(Math.abs(clock.now() + pttl - kept.until) < 2000, `original expiry kept (pttl ${pttl})`);
    assert.equal(await r.get(keys.ban('198.51.100.1').hist), '1', 'its history is back too');
    assert.equal(await r.get(keys.ban(lifted.target).ban), null, 'an unbanned target is not re-asserted');
    assert.equal(a.health().reasserted, 1);
  });

  it('moves bans of the layout before sharding (one `bans` index) into the shards at start', async () => {
    const r = server.client();
    const legacy = makeBan('192.0.2.77')(1);
    await r.set('old:ban:192.0.2.77', JSON.stringify(legacy), 'PX', 600_000);
    await r.zadd('old:bans', legacy.until, '192.0.2.77');
    const a = await open('old:');
    await waitFor(() => r.exists('old:bans').then((n) => n === 0), 5000, 'the old index dropped');
    assert.deepEqual(JSON.parse((await r.get(new RedisKeys('old:').ban('192.0.2.77').ban))!), legacy);
    assert.deepEqual((await a.listBans()).map((b) => b.target), ['192.0.2.77']);
  });

  it('treats a hung Redis (SIGSTOP) as down: degraded health with the reason, commands fail fast, recovers on SIGCONT', async () => {
    const a = await open('hang:', 300);
    server.pause();
    try {
      const t0 = Date.now();
      await assert.rejects(a.getValue('x'), /timed out/i, 'a command meets its deadline');
      assert.ok(Date.now() - t0 < 2000, `the deadline held (${Date.now() - t0} ms)`);
      await waitFor(() => !a.health().ok, 5000, 'health degraded');
      assert.match(a.health().detail, /no answer within 300 ms/);
      const t1 = Date.now();
      await assert.rejects(a.getValue('x'));
      assert.ok(Date.now() - t1 < 100, `once detected, commands fail at once (${Date.now() - t1} ms)`);
      // A ban decided meanwhile is kept and written when Redis answers again.
      const made = await a.createBan('192.0.2.9', 3600, makeBan('192.0.2.9'), false);
      assert.equal(made.created, true);
      assert.equal(a.health().pendingWrites, 1);
    } finally {
      server.resume();
    }
    await waitFor(() => a.health().ok, 10_000, 'healthy again after SIGCONT');
    assert.ok(await server.client().get(new RedisKeys('hang:').ban('192.0.2.9').ban), 'the ban made while Redis hung is in Redis');
    assert.equal(await server.client().get(new RedisKeys('hang:').ban('192.0.2.9').hist), '1', 'and counted in its history');
  });
});

describe('a gatekeeper in front of a hung Redis', { skip, timeout: 60_000 }, () => {
  it('answers logins within a few command deadlines, says why /healthz is degraded, and counts in Redis again after SIGCONT', async (t) => {
    const server = await startRedis();
    const zimbra = await startFakeZimbra();
    const gk = await startGatekeeper(testConfig(zimbra.url, { redis: { url: server.url, commandTimeout: '300ms' } }));
    t.after(async () => {
      server.resume();
      await gk.stop();
      await closeAgents();
      await zimbra.close();
      await server.stop();
    });
    const login = async (ip: string): Promise<number> => {
      const t0 = Date.now();
      await send(ip, gk.url('web', '/service/soap/AuthRequest'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: soapJsonAuth('victim@example.com', 'wrong') });
      return Date.now() - t0;
    };
    const health = async (): Promise<{ status: string; store: { detail: string } }> => JSON.parse((await send('127.0.0.1', gk.url('api', '/healthz'))).body) as { status: string; store: { detail: string } };
    server.pause();
    const first = await login('127.0.40.1');
    assert.ok(first < 3000, `the first login after the hang answered in ${first} ms (it waited 12 s without deadlines)`);
    const h = await waitFor(async () => {
      const x = await health();
      return x.status === 'degraded' ? x : null;
    }, 5000, '/healthz degraded');
    assert.match(h.store.detail, /no answer within 300 ms/);
    const later = await login('127.0.40.1');
    t.diagnostic(`first login after the hang: ${first} ms; once detected: ${later} ms`);
    assert.ok(later < 500, `once detected, a login answers in ${later} ms`);
    await login('127.0.40.1');
    server.resume();
    await waitFor(async () => (await health()).status === 'ok', 15_000, 'healthy after SIGCONT');
    // The ban made in memory while Redis hung is in Redis now.
    await waitFor(() => server.client().get(new RedisKeys('gk:').ban('127.0.40.1').ban), 5000, 'the ban written back');
  });
});
