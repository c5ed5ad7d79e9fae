#!/usr/bin/env node
// Proxy benchmark, side by side in one run (npm run bench [-- --quick]):
//   upstream: nginx serving a 2 KB body; contenders: nginx as reverse proxy (keep-alive upstream),
//   bare http-proxy with a keep-alive agent (the floor), and the gatekeeper with Redis, ban checks,
//   detection and counting on. Servers pinned to core 0, load generators to core 1 (taskset).
// Loads: wrk keep-alive at 50 and 200 connections, new connection per request (Connection: close),
// banned-connection refusal rate against a server that destroys connections at accept, benign p99
// during a flood from 10,000 banned addresses, and a 50-request failed-login burst.
// Prints medians (min–max) over the runs and the ratios the targets are about.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, runs: { type: 'string' }, duration: { type: 'string' } } });
const RUNS = Number(values.runs ?? (values.quick ? 1 : 3));
const DUR = values.duration ?? (values.quick ? '3s' : '8s');
const dir = mkdtempSync(join(tmpdir(), 'gk-bench-'));
chmodSync(dir, 0o755);
const procs = [];
const have = (b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0;
for (const b of ['wrk', 'nginx', 'redis-server', 'taskset']) if (!have(b)) { console.error(`missing ${b}: apt-get install -y wrk nginx-light redis-server util-linux`); process.exit(2); }
const pin = (core, cmd, args, opts = {}) => { const p = spawn('taskset', ['-c', String(core), cmd, ...args], { stdio: 'ignore', ...opts }); procs.push(p); return p; };
const freePort = () => new Promise((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
const waitHttp = async (url) => { for (let i = 0; i < 200; i++) { try { await fetch(url); return; } catch { await new Promise((r) => setTimeout(r, 50)); } } throw new Error(`${url} did not come up`); };
const cleanup = () => { for (const p of procs) try { p.kill('SIGKILL'); } catch {} };
process.on('exit', cleanup);

const P = { up: await freePort(), ngx: await freePort(), bare: await freePort(), gk: await freePort(), api: await freePort(), redis: await freePort(), sink: await freePort() };
// nginx: upstream (2 KB) and reverse proxy, one worker each.
const body = 'x'.repeat(2048);
writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1; pid ${dir}/nginx.pid; error_log stderr error; events { worker_connections 8192; }
http { access_log off; client_body_temp_path ${dir}/cbt; proxy_temp_path ${dir}/pt; fastcgi_temp_path ${dir}/ft; uwsgi_temp_path ${dir}/ut; scgi_temp_path ${dir}/st;
  keepalive_requests 100000;
  server { listen 127.0.0.1:${P.up} reuseport; location / { default_type text/plain; return 200 '${body}'; } }
}`);
writeFileSync(join(dir, 'proxy.conf'), `worker_processes 1; pid ${dir}/nginx2.pid; error_log stderr error; events { worker_connections 8192; }
http { access_log off; client_body_temp_path ${dir}/cbt2; proxy_temp_path ${dir}/pt2; fastcgi_temp_path ${dir}/ft2; uwsgi_temp_path ${dir}/ut2; scgi_temp_path ${dir}/st2;
  keepalive_requests 100000;
  upstream up { server 127.0.0.1:${P.up}; keepalive 256; }
  server { listen 127.0.0.1:${P.ngx}; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-Forwarded-For $remote_addr; } }
}`);
pin(0, 'nginx', ['-c', join(dir, 'nginx.conf'), '-g', 'daemon off;']);
pin(0, 'nginx', ['-c', join(dir, 'proxy.conf'), '-g', 'daemon off;']);
writeFileSync(join(dir, 'bare.cjs'), `const http=require('http');const httpProxy=require(${JSON.stringify(join(process.cwd(), 'node_modules/http-proxy'))});
const agent=new http.Agent({keepAlive:true,maxSockets:256});const proxy=httpProxy.createProxyServer({target:'http://127.0.0.1:${P.up}',agent});proxy.on('error',(e,q,s)=>{try{s.writeHead(502);s.end()}catch{}});
http.createServer((q,s)=>{delete q.headers.connection;proxy.web(q,s)}).listen(${P.bare},'127.0.0.1');`);
pin(0, process.execPath, [join(dir, 'bare.cjs')]);
// A server that only destroys connections at accept: the ceiling for refusing banned clients.
writeFileSync(join(dir, 'sink.cjs'), `require('net').createServer((s)=>s.destroy()).listen(${P.sink},'127.0.0.1');`);
pin(0, process.execPath, [join(dir, 'sink.cjs')]);
pin(0, 'redis-server', ['--port', String(P.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
await new Promise((r) => setTimeout(r, 300));
writeFileSync(join(dir, 'gk.yml'), `zimbra: { web: "http://127.0.0.1:${P.up}", admin: "http://127.0.0.1:${P.up}" }
listen: { web: { host: 127.0.0.1, port: ${P.gk} }, api: { host: 127.0.0.1, port: ${P.api} } }
redis: { url: "redis://127.0.0.1:${P.redis}/0" }
jail: { ignoreip: [] }
log: { level: warn }
`);
pin(0, process.execPath, ['dist/src/cli/main.js', 'run', '--config', join(dir, 'gk.yml')]);
for (const port of [P.up, P.ngx, P.bare, P.gk]) await waitHttp(`http://127.0.0.1:${port}/`);

function wrk(url, conns, extra = []) {
  const out = execFileSync('taskset', ['-c', '1', 'wrk', '-t1', `-c${conns}`, `-d${DUR}`, '--latency', ...extra, url], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const p99m = /99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const p99 = Number(p99m[1]) * (p99m[2] === 'us' ? 0.001 : p99m[2] === 's' ? 1000 : 1);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { rps, p99, non2xx };
}
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs, d = 0) => `${med(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
const contenders = { 'nginx proxy': P.ngx, 'bare http-proxy': P.bare, gatekeeper: P.gk };
const results = {};
console.log(`# ${new Date().toISOString()} ${RUNS} run(s) of ${DUR} each; servers on core 0, wrk on core 1; upstream: nginx, 2 KB body`);
for (const [label, args] of [['keep-alive c=50', [50, []]], ['keep-alive c=200', [200, []]], ['new connection per request c=50', [50, ['-H', 'Connection: close']]]]) {
  for (const [name, port] of Object.entries(contenders)) {
    const rs = [];
    const p99 = [];
    for (let i = 0; i < RUNS; i++) {
      const r = wrk(`http://127.0.0.1:${port}/`, args[0], args[1]);
      rs.push(r.rps);
      p99.push(r.p99);
    }
    results[`${label}|${name}`] = { rs, p99 };
  }
}
console.log('\n| load | contender | req/s median (min–max) | p99 ms median (min–max) |');
console.log('| --- | --- | ---: | ---: |');
for (const [k, v] of Object.entries(results)) { const [load, name] = k.split('|'); console.log(`| ${load} | ${name} | ${fmt(v.rs)} | ${fmt(v.p99, 2)} |`); }
console.log('');
for (const load of ['keep-alive c=50', 'keep-alive c=200', 'new connection per request c=50']) {
  const g = med(results[`${load}|gatekeeper`].rs);
  console.log(`${load}: gatekeeper = ${((g / med(results[`${load}|nginx proxy`].rs)) * 100).toFixed(0)}% of nginx proxy (target >= 40%), ${((g / med(results[`${load}|bare http-proxy`].rs)) * 100).toFixed(0)}% of bare http-proxy (target >= 95%)`);
}

// Banned addresses: 10,000 of them, refused. Refusal rate vs a server that destroys at accept.
const api = `http://127.0.0.1:${P.api}`;
const banned = Array.from({ length: 10000 }, (_, i) => `127.${10 + (i >> 16)}.${(i >> 8) & 255}.${(i & 255) || 1}`);
await fetch(`${api}/api/bans`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ips: banned, duration: '1h' }) });
async function floodRate(port, seconds, concurrency = 64) {
  let n = 0;
  let i = 0;
  const end = Date.now() + seconds * 1000;
  const one = () => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: banned[i++ % banned.length] }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    s.on('data', () => {});
    s.on('close', () => { n++; resolve(); });
    s.on('error', () => {});
  });
  await Promise.all(Array.from({ length: concurrency }, async () => { while (Date.now() < end) await one(); }));
  return n / seconds;
}
const fsec = values.quick ? 3 : 6;
const sinkRates = [];
const gkRates = [];
for (let i = 0; i < RUNS; i++) { sinkRates.push(await floodRate(P.sink, fsec)); gkRates.push(await floodRate(P.gk, fsec)); }
console.log(`\nbanned connections handled/s (10,000 banned addresses, Node client on core 1): destroy-at-accept server ${fmt(sinkRates)}, gatekeeper (429 page) ${fmt(gkRates)}: ${((med(gkRates) / med(sinkRates)) * 100).toFixed(0)}% (target >= 90%)`);

// Benign p99 with and without the flood.
const quiet = [];
const flooded = [];
for (let i = 0; i < RUNS; i++) {
  quiet.push(wrk(`http://127.0.0.1:${P.gk}/`, 50).p99);
  const f = floodRate(P.gk, Number(DUR.replace('s', '')) + 1, 32);
  flooded.push(wrk(`http://127.0.0.1:${P.gk}/`, 50).p99);
  await f;
}
console.log(`benign p99 (wrk c=50): ${fmt(quiet, 2)} ms quiet, ${fmt(flooded, 2)} ms during the flood: ${(med(flooded) / med(quiet)).toFixed(2)}x (target <= 2x)`);

// 50 concurrent failed logins from one address: how many got an answer from the upstream (not 429)?
const burst = await Promise.all(Array.from({ length: 50 }, () => new Promise((resolve) => {
  const req = http.request({ host: '127.0.0.1', port: P.gk, method: 'POST', path: '/service/soap/AuthRequest', localAddress: '127.0.0.99', headers: { 'content-type': 'application/json' } }, (res) => { res.resume(); resolve(res.statusCode); });
  req.on('error', () => resolve(0));
  req.end(JSON.stringify({ Body: { AuthRequest: { account: { _content: 'burst@example.com' }, password: 'x' } } }));
})));
console.log(`failed-login burst: 50 concurrent from one address, ${burst.filter((s) => s !== 429).length} reached the upstream, ${burst.filter((s) => s === 429).length} refused (the 2 KB upstream answers 200, so these are reservations at work; target: at most maxretry = 3)`);
cleanup();
process.exit(0);
