import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

export interface GatekeeperProcess {
  readonly proc: ChildProcess;
  readonly ports: Record<string, number>;
  readonly configFile: string;
  /** Every JSON log line so far. */
  readonly logs: Array<Record<string, unknown>>;
  url(listener: 'web' | 'admin' | 'api', path?: string): string;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
}

/** Writes `config` to a temp YAML file and runs the real CLI (`gatekeeper run`) on it. */
export async function startGatekeeper(config: Record<string, unknown>, env: Record<string, string> = {}): Promise<GatekeeperProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'gk-test-'));
  const configFile = join(dir, 'gatekeeper.yml');
  writeFileSync(configFile, YAML.stringify(config));
  const proc = spawn(process.execPath, [CLI, 'run', '--config', configFile], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const ports: Record<string, number> = {};
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  let buf = '';
  const ready = new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`gatekeeper did not start in 15s\n${stderr}\n${JSON.stringify(logs)}`)), 15_000);
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === 'listening') ports[String(entry.listener)] = Number(entry.port);
          if (entry.msg === 'gatekeeper running') {
            clearTimeout(timer);
            resolveReady();
          }
        } catch {
          // not JSON: ignore
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gatekeeper exited with ${code} before it was ready\n${stderr}`));
    });
  });
  await ready;
  return {
    proc,
    ports,
    configFile,
    logs,
    url: (listener, path = '/') => `http://127.0.0.1:${ports[listener]}${path}`,
    stop: () =>
      new Promise((r) => {
        if (proc.exitCode !== null) {
          r(proc.exitCode);
          return;
        }
        proc.once('exit', (code) => {
          rmSync(dir, { recursive: true, force: true });
          r(code);
        });
        proc.kill('SIGTERM');
      }),
  };
}

/** Runs the CLI to completion: exit code, stdout, stderr. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((r) => {
    const proc = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.once('exit', (code) => r({ code, stdout, stderr }));
  });
}

/** A gatekeeper config for tests: loopback clients count (ignoreip cleared), ephemeral ports. */
export function testConfig(upstream: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    zimbra: { web: upstream, admin: upstream, tlsVerify: false },
    listen: { web: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, api: { host: '127.0.0.1', port: 0 } },
    jail: { ignoreip: [] },
    admin: { allow: ['127.0.0.2/32'] },
    log: { level: 'info' },
    ...extra,
  };
}

export async function waitFor<T>(fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
