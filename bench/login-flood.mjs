#!/usr/bin/env node
// Login-flood benchmark (npm run bench:logins [-- --addresses N --workers 1,2]).
//
// A distributed brute force as bots run it: N source addresses (127.1.0.0/16, loopback only), each
// making 4 wrong SOAP logins, every one on a new connection, against the stand-in Zimbra
// (test/helpers/fake-zimbra.ts, which answers as Zimbra does and records each credential check). Side
// by side in one run:
//   - the gatekeeper (Redis store), once per --workers value: logins judged per second, server CPU µs
//     per login (per worker), Redis commands per login, the most guesses that reached Zimbra from one
//     address, and the p99 of a benign keep-alive client browsing during the flood (beside its quiet p99);
//   - nginx as a plain reverse proxy in front of the same stand-in: the ceiling (nothing is judged, all
//     4 guesses of every address reach Zimbra);
//   - fail2ban (Debian's fail2ban-server, a jail of maxretry 3 reading the audit.log lines the stand-in
//     writes for each failure as Zimbra does) behind that nginx: how many guesses per address got
//     through before its ban landed.
// Servers are pinned to core 0 (gatekeeper workers share it: on this 2-core machine a 2-worker run
// cannot show a speed-up, so CPU per login per worker is the figure that must not grow), the stand-in,
// Redis and the load to core 1.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, chmodSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../dist/test/helpers/redis-server.js';

const { values } = parseArgs({ options: { addresses: { type: 'string', default: '10000' }, workers: { type: 'string', default: '1' }, concurrency: { type: 'string', default: '256' }, 'no-fail2ban': { type: 'boolean', default: false } } });
const N = Number(values.addresses);
const CONC = Number(values.concurrency);
const WORKERS = values.workers.split(',').map(Number);
const dir = mkdtempSync(join(tmpdir(), 'gk-flood-'));
chmodSync(dir, 0o755);
const procs = [];
const have = (b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0;
for (const b of ['nginx', 'redis-server', 'taskset']) if (!have(b)) { console.error(`missing ${b}`); process.exit(2); }
const withF2b = !values['no-fail2ban'] && have('fail2ban-server');
const pin = (core, cmd, args, opts = {}) => { const p = spawn('taskset', ['-c', String(core), cmd, ...args], { stdio: ['ignore', 'pipe', 'inherit'], ...opts }); procs.push(p); return p; };
process.on('exit', () => { for (const p of procs) try { p.kill('SIGTERM'); } catch {} });
process.on('SIGINT', () => process.exit(130));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CLK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
/** CPU (µs) of a process and its descendants (cluster workers). */
function cpu(pid) {
  let t = 0;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    t += (Number(s[11]) + Number(s[12])) * (1e6 / CLK);
    for (const tid of execFileSync('ls', [`/proc/${pid}/task`], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) t += cpu(Number(c));
    }
  } catch {}
  return t;
}

// The stand-in Zimbra, pinned to core 1; it writes an audit.log line per failed check (Zimbra's format).
const auditLog = join(dir, 'audit.log');
writeFileSync(auditLog, '');
const zPort = await freePort();
writeFileSync(join(dir, 'zimbra.mjs'), `import { appendFileSync } from 'node:fs';
import { startFakeZimbra } from ${JSON.stringify(join(process.cwd(), 'dist/test/helpers/fake-zimbra.js'))};
const z = await startFakeZimbra({ port: ${zPort}, users: { 'user@example.com': { password: 'right-password' } } });
const push = z.checks.push.bind(z.checks);
const pad = (n, w = 2) => String(n).padStart(w, '0');
z.checks.push = (...items) => {
  for (const c of items) {
    if (c.ok) continue;
    const d = new Date();
    const ts = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + ',' + pad(d.getMilliseconds(), 3);
    appendFileSync(${JSON.stringify(auditLog)}, ts + ' WARN  [qtp-1] [name=' + c.account + ';oip=' + c.ip + ';ua=bench;] security - cmd=Auth; account=' + c.account + '; protocol=soap; error=authentication failed for [' + c.account + '], invalid password;\\n');
  }
  return push(...items);
};
process.stdout.write('ready\\n');
process.on('message', (m) => { if (m === 'stats') process.send({ checks: z.checks.length, byIp: Object.entries(z.checks.reduce((a, c) => ((a[c.ip] = (a[c.ip] || 0) + 1), a), {})).reduce((m, [, n]) => Math.max(m, n), 0) }); if (m === 'reset') z.checks.length = 0; });
`);
const zp = spawn('taskset', ['-c', '1', process.execPath, join(dir, 'zimbra.mjs')], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
procs.push(zp);
await new Promise((r) => zp.stdout.once('data', r));
const zstats = () => new Promise((r) => { zp.once('message', r); zp.send('stats'); });
const zreset = () => zp.send('reset');

const redisPort = await freePort();
pin(1, 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
await sleep(300);
const redisCommands = () => Number(/total_commands_processed:(\d+)/.exec(execFileSync('redis-cli', ['-p', String(redisPort), 'info', 'stats'], { encoding: 'utf8' }))[1]);
const redisFlush = () => execFileSync('redis-cli', ['-p', String(redisPort), 'flushall']);

const waitHttp = async (port) => { for (let i = 0; i < 200; i++) { try { await fetch(`http://127.0.0.1:${port}/`); return; } catch { await sleep(50); } } throw new Error(`port ${port} did not come up`); };

/** One login on a new connection from `ip`: resolves with the status (0 for a reset). */
function login(port, ip, account, i) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: account }, password: { _content: `guess${i}` } } } });
    const req = http.request({ host: '127.0.0.1', port, path: '/service/soap/AuthRequest', method: 'POST', localAddress: ip, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); res.on('error', () => resolve(0)); });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}
/** A distinct loopback address per attacker: 127.1.0.1 … (254 hosts per /24, then the next /24). */
const ipOf = (n) => `127.${1 + Math.floor(n / (254 * 256))}.${Math.floor(n / 254) % 256}.${(n % 254) + 1}`;

/** Benign keep-alive browsing from 127.0.0.2, every 10 ms; returns a stop() that yields latencies. */
function benign(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4, localAddress: '127.0.0.2' });
  const lat = [];
  let on = true;
  const loop = async () => {
    while (on) {
      const t0 = process.hrtime.bigint();
      await new Promise((r) => http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => { res.resume(); res.on('end', r); }).on('error', r));
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await sleep(10);
    }
  };
  const done = loop();
  return async () => { on = false; await done; agent.destroy(); return lat; };
}
const p99 = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length * 0.99)] ?? 0; };

async function flood(port, pid) {
  zreset();
  const quiet = benign(port);
  await sleep(3000);
  const quietLat = await quiet();
  const during = benign(port);
  const c0 = pid ? cpu(pid) : 0;
  const r0 = redisCommands();
  const t0 = Date.now();
  let next = 0;
  let judged = 0;
  const worker = async () => {
    for (;;) {
      const n = next++;
      if (n >= N) return;
      for (let i = 0; i < 4; i++) { await login(port, ipOf(n), `flood${n}@example.com`, i); judged++; }
    }
  };
  await Promise.all(Array.from({ length: CONC }, worker));
  const secs = (Date.now() - t0) / 1000;
  const lat = await during();
  const logins = N * 4;
  const st = await zstats();
  return { secs, perSec: logins / secs, cpuPerLogin: pid ? (cpu(pid) - c0) / logins : NaN, redisPerLogin: (redisCommands() - r0) / logins, maxPerAddress: st.byIp, reached: st.checks, quietP99: p99(quietLat), floodP99: p99(lat) };
}

const rows = [];
for (const w of WORKERS) {
  redisFlush();
  const port = await freePort();
  const api = await freePort();
  const cfg = join(dir, `gk${w}.yml`);
  writeFileSync(cfg, `zimbra: { web: "http://127.0.0.1:${zPort}", admin: "http://127.0.0.1:${zPort}" }\nlisten: { web: { host: 127.0.0.1, port: ${port} }, api: { host: 127.0.0.1, port: ${api} } }\nredis: { url: "redis://127.0.0.1:${redisPort}/0" }\njail: { ignoreip: ["127.0.0.2"] }\nlog: { level: warn }\n${w > 1 ? `proxy: { workers: ${w} }\n` : ''}`);
  // BENCH_NODE_ARGS: extra node arguments for the gatekeeper (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
  const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const gk = pin(0, process.execPath, [...extra, 'dist/src/cli/main.js', 'run', '--config', cfg], { env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=32' } });
  await waitHttp(port);
  await sleep(1000);
  const r = await flood(port, gk.pid);
  rows.push([`gatekeeper, ${w} worker${w > 1 ? 's' : ''}`, r, w]);
  gk.kill('SIGTERM');
  await new Promise((res) => gk.once('exit', res));
}

// nginx as a plain proxy in front of the same stand-in (the ceiling), with fail2ban reading the audit.log.
const ngx = await freePort();
writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1; pid ${dir}/nginx.pid; error_log stderr error; events { worker_connections 8192; }
http { access_log off; ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${dir}/${t};`).join(' ')}
  upstream z { server 127.0.0.1:${zPort}; keepalive 256; }
  server { listen 127.0.0.1:${ngx}; location / { proxy_pass http://z; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-Forwarded-For $remote_addr; } } }`);
const nginx = pin(0, 'nginx', ['-c', join(dir, 'nginx.conf'), '-g', 'daemon off;']);
await waitHttp(ngx);
let bansFile = null;
if (withF2b) {
  const conf = join(dir, 'f2b');
  execFileSync('mkdir', ['-p', join(conf, 'filter.d'), join(conf, 'action.d'), join(conf, 'jail.d')]);
  bansFile = join(dir, 'bans.txt');
  writeFileSync(bansFile, '');
  writeFileSync(join(conf, 'fail2ban.conf'), `[Definition]\nloglevel = ERROR\nlogtarget = ${join(dir, 'f2b.log')}\nsocket = ${join(dir, 'f2b.sock')}\npidfile = ${join(dir, 'f2b.pid')}\ndbfile = :memory:\n`);
  writeFileSync(join(conf, 'filter.d', 'zimbra-audit.conf'), `[Definition]\nfailregex = \\[[^\\]]*oip=<HOST>;[^\\]]*\\] security - cmd=Auth; account=[^;]*; protocol=\\w+; error=authentication failed\n`);
  writeFileSync(join(conf, 'action.d', 'record.conf'), `[Definition]\nactionstart =\nactionstop =\nactioncheck =\nactionban = printf '%%s %%s\\n' <ip> "$(date +%%s.%%N)" >> ${bansFile}\nactionunban =\n`);
  writeFileSync(join(conf, 'jail.conf'), `[DEFAULT]\nbackend = auto\n[zimbra]\nenabled = true\nfilter = zimbra-audit\naction = record\nlogpath = ${auditLog}\nmaxretry = 3\nfindtime = 1800\nbantime = 86400\nignoreip =\n`);
  const f2bProc = pin(0, 'fail2ban-server', ['-f', '-x', '-c', conf, '-s', join(dir, 'f2b.sock'), '-p', join(dir, 'f2b.pid')]);
  f2bProc.stdout.resume();
  await sleep(2500);
}
writeFileSync(auditLog, '');
const t0 = Date.now() / 1000;
const nr = await flood(ngx, nginx.pid);
rows.push(['nginx as proxy (ceiling; nothing judged)', nr, 1]);
let f2b = null;
if (withF2b) {
  // Wait until fail2ban has read everything (the ban file stops growing), at most 60 s.
  let last = -1;
  for (let i = 0; i < 120; i++) { const n = readFileSync(bansFile, 'utf8').split('\n').filter(Boolean).length; if (n === last && n > 0) break; last = n; await sleep(500); }
  const bans = new Map(readFileSync(bansFile, 'utf8').split('\n').filter(Boolean).map((l) => { const [ip, t] = l.split(' '); return [ip, Number(t)]; }));
  // Every guess reached Zimbra (nothing blocks in front of it): those written before the ban landed got through.
  const lines = readFileSync(auditLog, 'utf8').split('\n').filter(Boolean);
  const perIp = new Map();
  for (const l of lines) { const ip = /oip=([^;]+);/.exec(l)[1]; perIp.set(ip, (perIp.get(ip) ?? 0) + 1); }
  const banned = [...perIp.keys()].filter((ip) => bans.has(ip)).length;
  f2b = { addresses: perIp.size, banned, guessesPerAddress: lines.length / Math.max(1, perIp.size), latencySec: [...bans.values()].length ? ([...bans.values()].reduce((a, b) => a + b, 0) / bans.size) - t0 : NaN };
}

console.log(`# login flood: ${N} addresses x 4 wrong SOAP logins, each on a new connection, ${CONC} addresses at a time; ${new Date().toISOString()}`);
console.log('| contender | logins judged/s | server CPU µs/login, all processes (÷ workers) | Redis commands/login | most guesses reaching Zimbra from one address | benign p99 quiet → during flood (ms) |');
console.log('| --- | ---: | ---: | ---: | ---: | --- |');
for (const [name, r, w] of rows) console.log(`| ${name} | ${r.perSec.toFixed(0)} | ${(r.cpuPerLogin).toFixed(0)} (${(r.cpuPerLogin / w).toFixed(0)}) | ${r.redisPerLogin.toFixed(1)} | ${r.maxPerAddress} | ${r.quietP99.toFixed(1)} → ${r.floodP99.toFixed(1)} |`);
const ceil = rows.at(-1)[1].perSec;
for (const [name, r] of rows.slice(0, -1)) console.log(`${name}: ${((r.perSec / ceil) * 100).toFixed(0)}% of nginx-as-proxy's rate`);
if (f2b) console.log(`fail2ban behind nginx: ${f2b.banned} of ${f2b.addresses} addresses banned; every guess reached Zimbra before its ban landed: ${f2b.guessesPerAddress.toFixed(2)} per address (maxretry 3), the gatekeeper lets through at most 3`);
else console.log('fail2ban: not run (fail2ban-server missing or --no-fail2ban)');
process.exit(0);
