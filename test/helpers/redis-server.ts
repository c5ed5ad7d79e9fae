import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisKeys } from '../../src/store/redis-keys.js';

/** The lowest port the kernel hands out to outgoing connections (32768 when unreadable). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 2048 ? low : 32768;
  } catch {
    return 32768;
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A free loopback port for a server that a test starts later (redis-server, nginx, a process given its ports).
 * Picked below the kernel's ephemeral range: a port from listen(0) lies inside it, and between close() and the
 * server's own bind an outgoing connection of a test running in parallel can take it (EADDRINUSE in CI).
 */
export async function freePort(): Promise<number> {
  const top = ephemeralLow() - 1;
  const bottom = Math.max(1025, top - 20000);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = bottom + Math.floor(Math.random() * (top - bottom + 1));
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port found in ${bottom}-${top}`);
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** A client for assertions (what is really in Redis); closed by stop(). */
  client(): Redis;
  /** Stops the process (SIGSTOP: a hung host; connections stay open, nothing answers). */
  pause(): void;
  /** Lets a paused process run again (SIGCONT). */
  resume(): void;
  /** Kills the server (SIGKILL: a crash, not a clean shutdown). */
  kill(): Promise<void>;
  /** Starts it again on the same port (after kill); nothing persisted. */
  start(): Promise<void>;
  /** Kills it and removes its files. */
  stop(): Promise<void>;
}

/** Waits until something accepts TCP connections on the loopback port (a TLS or password-protected Redis). */
function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A real redis-server on a free loopback port, no persistence. `args` are added to its command line;
 * with `tlsPort` the free port is its TLS port (`--tls-port`) and the plain one is off.
 */
export async function startRedis(bin = 'redis-server', opts: { args?: string[]; tlsPort?: boolean } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'gk-redis-'));
  let proc: ChildProcess | null = null;
  const clients: Redis[] = [];

  const start = async (): Promise<void> => {
    const ports = opts.tlsPort ? ['--port', '0', '--tls-port', String(port)] : ['--port', String(port)];
    proc = spawn(bin, [...ports, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...(opts.args ?? [])], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    if (opts.args || opts.tlsPort) {
      while (!(await tcpOpen(port))) {
        if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`redis-server did not start on port ${port}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return;
    }
    for (;;) {
      const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        await probe.ping();
        probe.disconnect();
        return;
      } catch {
        probe.disconnect();
        if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const kill = async (): Promise<void> => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill('SIGKILL');
    });
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    client() {
      const c = new Redis({ port, host: '127.0.0.1' });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    pause() {
      proc?.kill('SIGSTOP');
    },
    resume() {
      proc?.kill('SIGCONT');
    },
    kill,
    start,
    async stop() {
      for (const c of clients.splice(0)) c.disconnect();
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Redis key a ban of `target` is stored under (the sharded layout of src/store/redis-keys.ts). */
export function banKey(target: string, prefix = 'gk:'): string {
  return new RedisKeys(prefix).ban(target).ban;
}
