#!/usr/bin/env node
// Kernel firewall speed, in a private network namespace (re-runs itself under `unshare -n`, as root):
//  1. bans applied per second: the gatekeeper's batched `nft -f -` transaction vs fail2ban's way,
//     one `nft add element` command per banned address (its nftables action), side by side;
//  2. failure-to-kernel latency: postfix SASL failures appended to a watched log until the
//     address is in the kernel set (p50/p99), through the real `gatekeeper run` process.
// Usage: npm run bench:firewall [-- --bans 5000 --rounds 30]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const { values } = parseArgs({ options: { bans: { type: 'string', default: '5000' }, rounds: { type: 'string', default: '30' } } });
if (process.env.BENCH_IN_NETNS !== '1') {
  const r = spawnSync('unshare', ['-n', process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, BENCH_IN_NETNS: '1' } });
  process.exit(r.status ?? 1);
}
execFileSync('ip', ['link', 'set', 'lo', 'up']);
const N = Number(values.bans);
const ROUNDS = Number(values.rounds);
const { NftablesBackend } = await import('../dist/src/firewall/nftables-backend.js');
const { ExecFileRunner } = await import('../dist/src/firewall/backend.js');
const { parseCidr } = await import('../dist/src/net/ip.js');
const { loadConfig } = await import('../dist/src/config/load.js');
const base = loadConfig({ file: '/dev/null', env: {} }).config.firewall;
const ips = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}.${(i >> 8) & 255}.${i & 255}`);

// 1. Throughput.
const gk = new NftablesBackend({ ...base, table: 'bench_gk' }, new ExecFileRunner());
await gk.init();
let t0 = process.hrtime.bigint();
await gk.add(ips('10.1', N).map((ip) => ({ cidr: parseCidr(ip), timeoutSeconds: 3600 })));
const gkSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
const inKernel = (await gk.list()).size;
await gk.destroy(); // the comparison starts from an empty ruleset too

execFileSync('nft', ['-f', '-'], { input: 'add table inet f2b\nadd set inet f2b addr-set-zimbra { type ipv4_addr; }\n' });
const F2B_N = Math.min(N, 1000);
t0 = process.hrtime.bigint();
for (const ip of ips('10.2', F2B_N)) execFileSync('nft', ['add', 'element', 'inet', 'f2b', 'addr-set-zimbra', `{ ${ip} }`]);
const f2bSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

console.log(`# bans applied to the kernel (nftables ${execFileSync('nft', ['--version'], { encoding: 'utf8' }).trim()})`);
console.log('| approach | bans | seconds | bans/s |');
console.log('| --- | ---: | ---: | ---: |');
console.log(`| gatekeeper: one nft -f transaction per batch | ${N} (${inKernel} in the set) | ${gkSeconds.toFixed(3)} | ${Math.round(N / gkSeconds).toLocaleString('en')} |`);
console.log(`| fail2ban style: one nft command per ban | ${F2B_N} | ${f2bSeconds.toFixed(3)} | ${Math.round(F2B_N / f2bSeconds).toLocaleString('en')} |`);
console.log(`ratio: ${((N / gkSeconds) / (F2B_N / f2bSeconds)).toFixed(1)}x the bans per second\n`);
execFileSync('nft', ['delete', 'table', 'inet', 'f2b']);

// 2. Latency, through the real process: log line -> detection -> ban -> kernel set.
const dir = mkdtempSync(join(tmpdir(), 'gk-fwbench-'));
const log = join(dir, 'zimbra.log');
writeFileSync(log, '');
const cfg = join(dir, 'gk.yml');
writeFileSync(cfg, `zimbra: { web: "http://127.0.0.1:9", admin: "http://127.0.0.1:9" }
listen: { api: { host: 127.0.0.1, port: 0 } }
jail: { ignoreip: [] }
firewall: { backend: nftables, table: bench_lat, ports: [25] }
logs: [{ path: ${JSON.stringify(log)}, type: syslog }]
log: { level: warn }
`);
const proc = spawn(process.execPath, ['dist/src/cli/main.js', 'run', '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((r) => setTimeout(r, 1500));
const members = () => {
  try {
    return execFileSync('nft', ['-j', 'list', 'set', 'inet', 'bench_lat', 'ban4'], { encoding: 'utf8' });
  } catch {
    return '';
  }
};
const lat = [];
for (let i = 0; i < ROUNDS; i++) {
  const ip = `127.0.3.${i + 1}`;
  const start = process.hrtime.bigint();
  for (let k = 0; k < 3; k++) appendFileSync(log, `Mar 10 13:33:3${k} mx postfix/submission/smtpd[1]: warning: unknown[${ip}]: SASL LOGIN authentication failed: authentication failure\n`);
  const deadline = Date.now() + 10_000;
  while (!members().includes(`"${ip}"`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  lat.push(Number(process.hrtime.bigint() - start) / 1e6);
}
proc.kill('SIGTERM');
await new Promise((r) => proc.once('exit', r));
execFileSync('nft', ['delete', 'table', 'inet', 'bench_lat']);
lat.sort((a, b) => a - b);
const pct = (p) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))];
console.log(`# failure-to-kernel latency, ${ROUNDS} attackers (3rd postfix SASL failure appended -> address in the nft set; files watched with fs.watch, polled every 250 ms as a fallback)`);
console.log(`p50 ${pct(50).toFixed(0)} ms, p99 ${pct(99).toFixed(0)} ms, min ${lat[0].toFixed(0)} ms, max ${lat[lat.length - 1].toFixed(0)} ms`);
