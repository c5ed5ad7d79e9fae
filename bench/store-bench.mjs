// Store benchmark: counted logins per second and Redis commands per login with one and two gatekeeper
// instances on plain Redis, Sentinel (1 master + 1 replica + 3 sentinels) and Cluster (3 + 3), side by
// side in one run; then the time from `SENTINEL FAILOVER` (and from a master SIGKILL) to counting again.
// Everything on loopback. Run: npm run bench:store [-- seconds]
import { performance } from 'node:perf_hooks';
import { startFakeZimbra } from '../dist/test/helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, waitFor } from '../dist/test/helpers/gatekeeper-process.js';
import { closeAgents, send, soapJsonAuth } from '../dist/test/helpers/http-client.js';
import { startCluster, startSentinel } from '../dist/test/helpers/redis-ha.js';
import { banKey, startRedis } from '../dist/test/helpers/redis-server.js';

const SECONDS = Number(process.argv[2] ?? 5);
const WORKERS = 16;
const json = { 'content-type': 'application/json' };
let ipSeq = 0;
const nextIp = () => {
  const n = ipSeq++;
  return `127.${10 + Math.floor(n / 65000)}.${Math.floor((n % 65000) / 250)}.${(n % 250) + 1}`;
};

/** Sum of every command's calls on the given data nodes (INFO commandstats). */
async function commandCalls(clients) {
  let total = 0;
  for (const c of clients) {
    const info = await c.info('commandstats');
    for (const m of info.matchAll(/calls=(\d+)/g)) total += Number(m[1]);
  }
  return total;
}

/** Attackers (3 wrong logins each, then the next address) spread over the instances for SECONDS. */
async function load(gks) {
  let logins = 0;
  let errors = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      while (performance.now() < end) {
        const ip = nextIp();
        for (let i = 0; i < 3; i++) {
          const gk = gks[(w + i) % gks.length];
          const r = await send(ip, gk.url('web', '/service/soap/AuthRequest'), { method: 'POST', headers: json, body: soapJsonAuth('victim@example.com', `g${i}`) }).catch(() => ({ status: 0 }));
          if (r.status === 500) logins++;
          else errors++;
        }
      }
    }),
  );
  return { logins, errors };
}

async function measure(name, url, dataClients, zimbra, instances) {
  const config = testConfig(zimbra.url, { redis: { url }, account: { enabled: false }, log: { level: 'info' } });
  const gks = [];
  for (let i = 0; i < instances; i++) gks.push(await startGatekeeper(config));
  try {
    const before = await commandCalls(await dataClients());
    const t0 = performance.now();
    const { logins, errors } = await load(gks);
    const s = (performance.now() - t0) / 1000;
    const after = await commandCalls(await dataClients());
    // INFO itself is counted once per node per reading.
    const row = { store: name, instances, 'counted logins/s': Math.round(logins / s), 'redis commands/login': (after - before) / Math.max(1, logins), 'other answers': errors };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    for (const gk of gks) await gk.stop();
    await closeAgents();
  }
}

/** Time from a failover's start until a fresh attacker is banned in the master that serves after it. */
async function timeToCounting(gks, disrupt, masterClient) {
  const t0 = performance.now();
  await disrupt();
  for (;;) {
    const ip = nextIp();
    for (let i = 0; i < 3; i++) await send(ip, gks[i % gks.length].url('web', '/service/soap/AuthRequest'), { method: 'POST', headers: json, body: soapJsonAuth('victim@example.com', `g${i}`) }).catch(() => undefined);
    const c = await masterClient().catch(() => null);
    if (c && (await c.get(banKey(ip)).catch(() => null))) return Math.round(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const zimbra = await startFakeZimbra();
const rows = [];
const redis = await startRedis();
const sentinel = await startSentinel();
const cluster = await startCluster();
try {
  const single = async () => [redis.client()];
  const sentinelMaster = async () => [sentinel.client(await sentinel.masterPort())];
  const clusterMasters = async () => (await cluster.masters()).map((p) => cluster.client(p));
  for (const instances of [1, 2]) {
    rows.push(await measure('redis', redis.url, single, zimbra, instances));
    rows.push(await measure('sentinel', sentinel.url, sentinelMaster, zimbra, instances));
    rows.push(await measure('cluster', cluster.url, clusterMasters, zimbra, instances));
  }
  console.table(rows);

  const config = testConfig(zimbra.url, { redis: { url: sentinel.url }, account: { enabled: false }, log: { level: 'info' } });
  const gks = [await startGatekeeper(config), await startGatekeeper(config)];
  try {
    // Counting again = a fresh attacker's ban is in the NEW master (the one the sentinels name after the switch).
    const newMaster = (old) => async () => {
      const port = await sentinel.masterPort();
      if (port === old) throw new Error('not switched yet');
      return sentinel.client(port);
    };
    for (let run = 0; run < 3; run++) {
      const old = await sentinel.masterPort();
      // The previous failover is over when the demoted master replicates from the new one.
      await waitFor(async () => /slave0:.*state=online/.test(await sentinel.client(old).info('replication')), 60_000, 'replica online');
      const failover = async () => {
        for (;;) {
          try {
            return await sentinel.failover();
          } catch (err) {
            if (!/INPROG/.test(err.message)) throw err;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      };
      const ms = await timeToCounting(gks, failover, newMaster(old));
      console.log(JSON.stringify({ event: 'SENTINEL FAILOVER', run, msToCountingAgain: ms }));
    }
    const old = await sentinel.masterPort();
    await waitFor(async () => /slave0:.*state=online/.test(await sentinel.client(old).info('replication')), 60_000, 'replica online');
    const ms = await timeToCounting(gks, () => sentinel.kill(old), newMaster(old));
    console.log(JSON.stringify({ event: 'sentinel master SIGKILL', msToCountingAgain: ms }));
  } finally {
    for (const gk of gks) await gk.stop();
  }
} finally {
  await closeAgents();
  await cluster.stop();
  await sentinel.stop();
  await redis.stop();
  await zimbra.close();
}
