import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { waitFor } from './gatekeeper-process.js';

const run = promisify(execFile);

/*
 * Real Redis Sentinel and Redis Cluster deployments on loopback, with short failover timeouts, for
 * tests that start them once per suite. Every process is killed by stop().
 */

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A free loopback port whose +10000 (the Cluster bus port) is free too, both below the ephemeral range. */
async function freePortPair(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const port = 2000 + Math.floor(Math.random() * 20000);
    if (taken.has(port) || taken.has(port + 10000) || taken.has(port - 10000)) continue;
    if ((await bindable(port)) && (await bindable(port + 10000))) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('no free port pair found');
}

/** A replica syncs at once (Redis 7 waits 5 s for more replicas by default; a replica never synced cannot be promoted). */
const FAST_SYNC = ['--repl-diskless-sync-delay', '0'];

/** True when every replica among `ports` has its link to the master up. */
async function replicasInSync(clients: Redis[], ports: readonly number[]): Promise<boolean> {
  const infos = await Promise.all(ports.map((p) => trackedClient(clients, p).info('replication').catch(() => '')));
  return infos.every((i) => i !== '' && (!i.includes('role:slave') || i.includes('master_link_status:up')));
}

interface Node {
  readonly port: number;
  proc: ChildProcess | null;
  readonly args: string[];
}

function spawnNode(node: Node): void {
  node.proc = spawn('redis-server', node.args, { stdio: 'ignore' });
}

async function ping(port: number): Promise<boolean> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500, commandTimeout: 500 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return (await c.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}

function killNode(node: Node, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  const p = node.proc;
  node.proc = null;
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    p.once('exit', () => r());
    p.kill(signal);
  });
}

/** A client that is closed by the fixture's stop(). */
function trackedClient(clients: Redis[], port: number): Redis {
  const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

export interface SentinelSetup {
  /** redis+sentinel:// URL of the three sentinels, master name `mymaster`. */
  readonly url: string;
  readonly sentinelPorts: readonly number[];
  /** The port of the current master, as the sentinels say. */
  masterPort(): Promise<number>;
  /** A client to the data node on `port`. */
  client(port: number): Redis;
  /** SIGSTOPs / SIGCONTs the data node on `port` (a hung host). */
  pause(port: number): void;
  resume(port: number): void;
  /** The port of the replica, as the sentinels say. */
  replicaPort(): Promise<number>;
  /** SIGKILLs the data node on `port` (a crash); restart() brings it back as it was configured. */
  kill(port: number): Promise<void>;
  restart(port: number): Promise<void>;
  /** `SENTINEL FAILOVER mymaster` (what an admin runs before patching Redis). */
  failover(): Promise<void>;
  /** Waits until the sentinels name a master other than `oldPort`, and it has a replica again. */
  waitForNewMaster(oldPort: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** 1 master + 1 replica + 3 sentinels (quorum 2), down-after 1 s, failover-timeout 3 s. */
export async function startSentinel(): Promise<SentinelSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'gk-sentinel-'));
  const taken = new Set<number>();
  const masterPort = await freePortPair(taken);
  const replicaPort = await freePortPair(taken);
  const base = (port: number): string[] => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${port}.rdb`, ...FAST_SYNC];
  const nodes = new Map<number, Node>();
  nodes.set(masterPort, { port: masterPort, proc: null, args: base(masterPort) });
  nodes.set(replicaPort, { port: replicaPort, proc: null, args: [...base(replicaPort), '--replicaof', '127.0.0.1', String(masterPort)] });
  for (const n of nodes.values()) spawnNode(n);
  await waitFor(async () => (await ping(masterPort)) && (await ping(replicaPort)), 10_000, 'sentinel data nodes up');
  const sentinels: Node[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePortPair(taken);
    const conf = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor mymaster 127.0.0.1 ${masterPort} 2`,
        'sentinel down-after-milliseconds mymaster 1000',
        'sentinel failover-timeout mymaster 3000',
        'sentinel parallel-syncs mymaster 1',
        '',
      ].join('\n'),
    );
    const s: Node = { port, proc: null, args: [conf, '--sentinel'] };
    spawnNode(s);
    sentinels.push(s);
  }
  const clients: Redis[] = [];
  const sentinelClient = (): Redis => trackedClient(clients, sentinels[0]!.port);
  await waitFor(async () => sentinels.every(() => true) && (await Promise.all(sentinels.map((s) => ping(s.port)))).every(Boolean), 10_000, 'sentinels up');
  // Every sentinel knows the replica and the other sentinels before a failover can work.
  await waitFor(
    async () => {
      const infos = await Promise.all(sentinels.map((s) => trackedClient(clients, s.port).call('SENTINEL', 'MASTER', 'mymaster').catch(() => []) as Promise<string[]>));
      return infos.every((info) => {
        const m = new Map<string, string>();
        for (let i = 0; i + 1 < info.length; i += 2) m.set(info[i]!, info[i + 1]!);
        return m.get('num-slaves') === '1' && m.get('num-other-sentinels') === '2';
      });
    },
    20_000,
    'sentinels see the replica and each other',
  );
  await waitFor(() => replicasInSync(clients, [masterPort, replicaPort]), 20_000, 'replica in sync');
  const setup: SentinelSetup = {
    url: `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/mymaster`,
    sentinelPorts: sentinels.map((s) => s.port),
    async masterPort() {
      const [, port] = (await sentinelClient().call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster')) as [string, string];
      return Number(port);
    },
    client: (port) => trackedClient(clients, port),
    pause: (port) => nodes.get(port)!.proc?.kill('SIGSTOP'),
    resume: (port) => nodes.get(port)!.proc?.kill('SIGCONT'),
    async replicaPort() {
      const master = await setup.masterPort();
      return [...nodes.keys()].find((p) => p !== master)!;
    },
    kill: (port) => killNode(nodes.get(port)!),
    async restart(port) {
      const n = nodes.get(port)!;
      // A restarted old master comes back as a replica of the current master (what Sentinel would
      // reconfigure it to anyway), so it cannot serve its stale data as a master.
      const current = await setup.masterPort();
      const args = n.args.filter((a, i, all) => a !== '--replicaof' && all[i - 1] !== '--replicaof' && all[i - 2] !== '--replicaof');
      (n as { args: string[] }).args.splice(0, n.args.length, ...args, ...(current !== port ? ['--replicaof', '127.0.0.1', String(current)] : []));
      spawnNode(n);
      await waitFor(() => ping(port), 10_000, `redis on ${port} back`);
    },
    async failover() {
      await sentinelClient().call('SENTINEL', 'FAILOVER', 'mymaster');
    },
    async waitForNewMaster(oldPort, timeoutMs = 30_000) {
      const port = await waitFor(async () => {
        const p = await setup.masterPort().catch(() => oldPort);
        return p !== oldPort ? p : null;
      }, timeoutMs, 'sentinels promote the replica');
      return port;
    },
    async stop() {
      for (const c of clients.splice(0)) c.disconnect();
      for (const n of nodes.values()) n.proc?.kill('SIGCONT');
      await Promise.all([...sentinels, ...nodes.values()].map((n) => killNode(n)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return setup;
}

export interface ClusterSetup {
  /** redis+cluster:// URL naming every node. */
  readonly url: string;
  readonly ports: readonly number[];
  /** Ports of the current masters. */
  masters(): Promise<number[]>;
  /** The port of the master that serves `key`. */
  masterOf(key: string): Promise<number>;
  client(port: number): Redis;
  kill(port: number): Promise<void>;
  /** Waits until the cluster is `ok` again with `deadPort` no longer a master. */
  waitForFailover(deadPort: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** 3 masters + 3 replicas (`redis-cli --cluster create --cluster-replicas 1`), node timeout 1 s. */
export async function startCluster(): Promise<ClusterSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'gk-cluster-'));
  const taken = new Set<number>();
  const nodes: Node[] = [];
  for (let i = 0; i < 6; i++) {
    const port = await freePortPair(taken);
    nodes.push({
      port,
      proc: null,
      args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '1000', '--dbfilename', `dump-${port}.rdb`, ...FAST_SYNC],
    });
  }
  for (const n of nodes) spawnNode(n);
  await waitFor(async () => (await Promise.all(nodes.map((n) => ping(n.port)))).every(Boolean), 10_000, 'cluster nodes up');
  await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 60_000 });
  const clients: Redis[] = [];
  const alive = (): Node[] => nodes.filter((n) => n.proc !== null);
  const clusterOk = async (): Promise<boolean> => {
    const infos = await Promise.all(alive().map((n) => trackedClient(clients, n.port).cluster('INFO').catch(() => '') as Promise<string>));
    return infos.every((i) => i.includes('cluster_state:ok'));
  };
  await waitFor(clusterOk, 30_000, 'cluster state ok on every node');
  await waitFor(() => replicasInSync(clients, nodes.map((n) => n.port)), 20_000, 'cluster replicas in sync');
  const slots = async (): Promise<Array<[number, number, number]>> => {
    const any = alive()[0]!;
    const raw = (await trackedClient(clients, any.port).cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
    return raw.map(([from, to, [, port]]) => [from, to, port]);
  };
  const setup: ClusterSetup = {
    url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    ports: nodes.map((n) => n.port),
    async masters() {
      return [...new Set((await slots()).map(([, , p]) => p))];
    },
    async masterOf(key) {
      const slot = (await trackedClient(clients, alive()[0]!.port).cluster('KEYSLOT', key)) as number;
      return (await slots()).find(([from, to]) => slot >= from && slot <= to)![2];
    },
    client: (port) => trackedClient(clients, port),
    kill: (port) => killNode(nodes.find((n) => n.port === port)!),
    async waitForFailover(deadPort, timeoutMs = 30_000) {
      await waitFor(async () => !(await setup.masters().catch(() => [deadPort])).includes(deadPort) && (await clusterOk()), timeoutMs, 'cluster failover done');
    },
    async stop() {
      for (const c of clients.splice(0)) c.disconnect();
      await Promise.all(nodes.map((n) => killNode(n)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return setup;
}
