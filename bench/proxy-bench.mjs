#!/usr/bin/env node
// Proxy benchmark, side by side in one run (npm run bench [-- --quick] [-- --runs N --duration 8s]).
//
// Upstream: nginx answering a 2 KB body (and Zimbra's SOAP auth fault on /service/soap/AuthRequest),
// so the upstream is never the bottleneck. Contenders, each in front of that upstream:
//   nginx as reverse proxy (keep-alive upstream pool): the practical limit;
//   bare http-proxy with a keep-alive agent: the floor the issue names;
//   bare undici proxy (an undici Pool with a raw dispatch handler: the best library-built engine);
//   bare engine (the gatekeeper's own forwarder module, src/proxy/forwarder.ts, with no checks at all);
//   the gatekeeper with Redis, ban checks, admin allowlist, detection and counting on.
// Every server is pinned to core 0, wrk and the Node load clients to core 1 (taskset). Node
// contenders run with the same NODE_OPTIONS as the Docker image. Each contender is warmed up
// (JIT: 12 s once, then 2 s before each load) before it is measured; runs are interleaved (run 1
// of every contender, then run 2, ...) so that drift on a shared machine hits all alike. Medians
// (min–max) and ratios are printed.
//
// Loads: wrk keep-alive at 50 and 200 connections; a new connection per request (Connection:
// close); refusal rate for connections from 10,000 banned addresses against a server that destroys
// connections at accept; benign p99 with and without that flood; 50 concurrent failed logins from
// one address (how many reached the upstream); failure-to-ban latency; an account-name flood (requests/s
// answered and the memory growth beside it). Beside req/s, the CPU time
// each server process used per request (from /proc, nginx with its workers): steadier than req/s on
// a shared machine, and what the checks cost.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { banKey, freePort } from '../dist/test/helpers/redis-server.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, 'logins-only': { type: 'boolean', default: false }, runs: { type: 'string' }, duration: { type: 'string' } } });
const RUNS = Number(values.runs ?? (values.quick ? 1 : 3));
const DUR = values.duration ?? (values.quick ? '3s' : '8s');
const WARM = values.quick ? '1s' : '2s';
// Before the first load, each contender runs long enough for V8 to finish optimising its hot code:
// on one shared core a fresh gatekeeper at c=50 climbed for about 10 s (2-s windows: 7.5k, 9.1k, 11.0k,
// 13.9k ... 16-17k req/s), its bare engine for about 4 s. A proxy lives in that steady state.
const JIT_WARM = values.quick ? '3s' : '12s';
const NODE_OPTIONS = '--max-semi-space-size=32'; // as in the Dockerfile
const dir = mkdtempSync(join(tmpdir(), 'gk-bench-'));
chmodSync(dir, 0o755);
const procs = [];
const have = (b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0;
for (const b of ['wrk', 'nginx', 'redis-server', 'taskset']) if (!have(b)) { console.error(`missing ${b}: apt-get install -y wrk nginx-light redis-server util-linux`); process.exit(2); }
const pin = (core, cmd, args, opts = {}) => {
  const p = spawn('taskset', ['-c', String(core), cmd, ...args], { stdio: ['ignore', 'ignore', 'inherit'], ...opts });
  procs.push(p);
  return p;
};
const waitHttp = async (url) => { for (let i = 0; i < 200; i++) { try { await fetch(url); return; } catch { await new Promise((r) => setTimeout(r, 50)); } } throw new Error(`${url} did not come up`); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// nginx masters are stopped with SIGTERM so that they take their workers with them.
const cleanup = () => { for (const p of procs) try { p.kill(p.nginx ? 'SIGTERM' : 'SIGKILL'); } catch {} };
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

// Ports below the ephemeral range (the tests' helper), distinct from each other.
const taken = new Set();
const newPort = async () => { for (;;) { const p = await freePort(); if (!taken.has(p)) { taken.add(p); return p; } } };
const P = { up: await newPort(), ngx: await newPort(), bare: await newPort(), undici: await newPort(), engine: await newPort(), gk: await newPort(), api: await newPort(), redis: await newPort(), sink: await newPort() };
const body = 'x'.repeat(2048);
// Zimbra's answer to a wrong password in a JSON SOAP AuthRequest (HTTP 500, account.AUTH_FAILED).
const fault = JSON.stringify({ Body: { Fault: { Code: { Value: 'soap:Sender' }, Reason: { Text: 'authentication failed for [bench@example.com]' }, Detail: { Error: { Code: 'account.AUTH_FAILED', _jsns: 'urn:zimbra' } } } }, _jsns: 'urn:zimbraSoap' });
const temp = (n) => ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${dir}/${t}${n};`).join(' ');
writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1; pid ${dir}/nginx.pid; error_log stderr error; events { worker_connections 16384; }
http { access_log off; ${temp(1)} keepalive_requests 1000000;
  server { listen 127.0.0.1:${P.up} reuseport;
    location / { default_type text/plain; return 200 '${body}'; }
    location = /service/soap/AuthRequest { default_type application/json; return 500 '${fault}'; }
  }
}`);
// nginx as the reverse proxy in front of Zimbra: it hands the upstream the same forwarding headers as
// the gatekeeper does and as this project's own edge config does (nginx/templates/gatekeeper.conf.template),
// so both proxies do the same work and the upstream on the same core parses the same requests.
writeFileSync(join(dir, 'proxy.conf'), `worker_processes 1; pid ${dir}/nginx2.pid; error_log stderr error; events { worker_connections 16384; }
http { access_log off; ${temp(2)} keepalive_requests 1000000;
  upstream up { server 127.0.0.1:${P.up}; keepalive 256; }
  server { listen 127.0.0.1:${P.ngx}; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Port $server_port; proxy_set_header Forwarded ""; } }
}`);
const pids = {};
for (const conf of ['nginx.conf', 'proxy.conf']) pin(0, 'nginx', ['-c', join(dir, conf), '-g', 'daemon off;']).nginx = true;
pids['nginx proxy'] = procs.at(-1).pid;
const nm = (m) => JSON.stringify(join(process.cwd(), 'node_modules', m));
writeFileSync(join(dir, 'bare.cjs'), `const http=require('http');const httpProxy=require(${nm('http-proxy')});
const agent=new http.Agent({keepAlive:true,maxSockets:256});const proxy=httpProxy.createProxyServer({target:'http://127.0.0.1:${P.up}',agent});proxy.on('error',(e,q,s)=>{try{s.writeHead(502);s.end()}catch{}});
http.createServer((q,s)=>{delete q.headers.connection;proxy.web(q,s)}).listen(${P.bare},'127.0.0.1');`);
// An undici Pool with the raw dispatch handler the gatekeeper used until 2026-11-26: the reference for
// what a library-built engine reaches. It must also stop an upstream request whose client left (as the forwarder does): without that, a
// request cut off by wrk at the end of a run waited forever for 'drain', held its pooled connection,
// and after a few runs all 256 were held and this contender answered nothing.
writeFileSync(join(dir, 'undici.cjs'), `const http=require('http');const {Pool}=require(${nm('undici')});
const pool=new Pool('http://127.0.0.1:${P.up}',{connections:256,pipelining:1,keepAliveTimeout:15000,bodyTimeout:0});
const HOP=new Set(['connection','keep-alive','proxy-connection','transfer-encoding','te','trailer','upgrade']);
class H{constructor(res){this.res=res;this.done=false;res.on('close',()=>{if(!this.done){this.done=true;this.abort?.(new Error('client gone'))}})}onConnect(a){this.abort=a}
onHeaders(st,raw,resume){if(st<200)return true;const o=[];for(let i=0;i<raw.length;i+=2){const k=raw[i].toString('latin1');if(HOP.has(k.toLowerCase()))continue;o.push(k,raw[i+1].toString('latin1'))}this.res.writeHead(st,o);this.resume=resume;return true}
onData(c){if(this.res.destroyed||this.res.write(c))return true;this.res.once('drain',this.resume);return false}onComplete(){this.done=true;this.res.end()}onError(){if(this.done)return;this.done=true;if(!this.res.headersSent){this.res.writeHead(502);this.res.end()}else this.res.destroy()}}
http.createServer((q,s)=>{const h=q.headers;delete h.connection;pool.dispatch({path:q.url,method:q.method,headers:h,body:null},new H(s))}).listen(${P.undici},'127.0.0.1');`);
const nodeEnv = { env: { ...process.env, NODE_OPTIONS } };
pids['bare http-proxy'] = pin(0, process.execPath, [join(dir, 'bare.cjs')], nodeEnv).pid;
pids['bare undici proxy'] = pin(0, process.execPath, [join(dir, 'undici.cjs')], nodeEnv).pid;
// The gatekeeper's own forwarder (dist/src/proxy/forwarder.js) behind Node's HTTP server, with nothing
// else: the difference to the gatekeeper is what its checks cost.
writeFileSync(join(dir, 'engine.mjs'), `import http from 'node:http';import {Forwarder} from ${JSON.stringify(join(process.cwd(), 'dist/src/proxy/forwarder.js'))};
const fw=new Forwarder({target:'http://127.0.0.1:${P.up}',tlsVerify:true,maxSockets:4096,upstreamTimeoutMs:300000,sendError:(q,s)=>{s.writeHead(502);s.end()}});
http.createServer((q,s)=>fw.web(q,s)).listen(${P.engine},'127.0.0.1');`);
pids['bare engine'] = pin(0, process.execPath, [join(dir, 'engine.mjs')], nodeEnv).pid;
// A server that only destroys connections at accept: the ceiling for refusing banned clients.
writeFileSync(join(dir, 'sink.cjs'), `require('net').createServer((s)=>s.destroy()).listen(${P.sink},'127.0.0.1');`);
pin(0, process.execPath, [join(dir, 'sink.cjs')], nodeEnv);
pin(0, 'redis-server', ['--port', String(P.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
await sleep(300);
writeFileSync(join(dir, 'gk.yml'), `zimbra: { web: "http://127.0.0.1:${P.up}", admin: "http://127.0.0.1:${P.up}" }
listen: { web: { host: 127.0.0.1, port: ${P.gk} }, api: { host: 127.0.0.1, port: ${P.api} } }
redis: { url: "redis://127.0.0.1:${P.redis}/0" }
jail: { ignoreip: [] }
log: { level: warn }
`);
pids.gatekeeper = pin(0, process.execPath, ['dist/src/cli/main.js', 'run', '--config', join(dir, 'gk.yml')], nodeEnv).pid;
for (const port of [P.up, P.ngx, P.bare, P.undici, P.engine, P.gk]) await waitHttp(`http://127.0.0.1:${port}/`);

/** CPU time (user + system, µs) used so far by a process and its children (nginx workers). */
function cpuMicros(pid) {
  let total = 0;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  total += (Number(stat[11]) + Number(stat[12])) * (1e6 / CLK_TCK);
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) total += cpuMicros(Number(child));
  }
  return total;
}
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function wrk(url, conns, extra = [], dur = DUR) {
  const out = execFileSync('taskset', ['-c', '1', 'wrk', '-t1', `-c${conns}`, `-d${dur}`, '--latency', ...extra, url], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const requests = Number(/(\d+) requests in/.exec(out)[1]);
  const p99m = /99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const p99 = Number(p99m[1]) * (p99m[2] === 'us' ? 0.001 : p99m[2] === 's' ? 1000 : 1);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = /Socket errors: (.*)/.exec(out)?.[1] ?? '';
  return { rps, p99, non2xx, errors, requests };
}
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs, d = 0) => `${med(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
const pct = (a, b) => `${((a / b) * 100).toFixed(0)}%`;
const contenders = { 'nginx proxy': P.ngx, 'bare http-proxy': P.bare, 'bare undici proxy': P.undici, 'bare engine': P.engine, gatekeeper: P.gk };
const LOADS = [['keep-alive c=50', 50, []], ['keep-alive c=200', 200, []], ['new connection per request c=50', 50, ['-H', 'Connection: close']]];
console.log(`# ${new Date().toISOString()} ${RUNS} run(s) of ${DUR} each (warm-up ${JIT_WARM} once, then ${WARM} per load); servers on core 0, load on core 1; upstream nginx, 2 KB body; NODE_OPTIONS=${NODE_OPTIONS}`);
if (!values['logins-only']) {
const results = {};
for (const port of Object.values(contenders)) wrk(`http://127.0.0.1:${port}/`, 50, [], JIT_WARM);
for (const [label, conns, extra] of LOADS) {
  for (const port of Object.values(contenders)) wrk(`http://127.0.0.1:${port}/`, conns, extra, WARM);
  for (let i = 0; i < RUNS; i++) {
    for (const [name, port] of Object.entries(contenders)) {
      const c0 = cpuMicros(pids[name]);
      const r = wrk(`http://127.0.0.1:${port}/`, conns, extra);
      const slot = (results[`${label}|${name}`] ??= { rs: [], p99: [], bad: 0, cpu: [] });
      slot.cpu.push((cpuMicros(pids[name]) - c0) / r.requests);
      slot.rs.push(r.rps);
      slot.p99.push(r.p99);
      slot.bad += r.non2xx;
    }
  }
}
console.log('\n| load | contender | req/s median (min–max) | p99 ms median (min–max) | server CPU µs/request | non-2xx |');
console.log('| --- | --- | ---: | ---: | ---: | ---: |');
for (const [k, v] of Object.entries(results)) { const [load, name] = k.split('|'); console.log(`| ${load} | ${name} | ${fmt(v.rs)} | ${fmt(v.p99, 2)} | ${fmt(v.cpu, 1)} | ${v.bad} |`); }
console.log('');
for (const [load] of LOADS) {
  const g = med(results[`${load}|gatekeeper`].rs);
  // Issue 8's throughput targets are for keep-alive traffic; a new connection per request has none.
  const [t40, t95] = load.startsWith('keep-alive') ? [' (target >= 40%)', ' (target >= 95%)'] : [' (no target)', ''];
  console.log(`${load}: gatekeeper = ${pct(g, med(results[`${load}|nginx proxy`].rs))} of nginx proxy${t40}, ${pct(g, med(results[`${load}|bare http-proxy`].rs))} of bare http-proxy${t95}, ${pct(g, med(results[`${load}|bare engine`].rs))} of its own engine without checks; CPU per request ${pct(med(results[`${load}|gatekeeper`].cpu), med(results[`${load}|bare engine`].cpu))} of that engine's`);
  const e = med(results[`${load}|bare engine`].rs);
  console.log(`  bare engine = ${pct(e, med(results[`${load}|nginx proxy`].rs))} of nginx proxy, ${pct(e, med(results[`${load}|bare undici proxy`].rs))} of the bare undici proxy; CPU per request ${pct(med(results[`${load}|bare engine`].cpu), med(results[`${load}|bare undici proxy`].cpu))} of its`);
  // The same ratio round by round: the contenders of one round ran back to back, so each pair shares
  // the machine's state, and the spread shows how much of a difference this machine's noise can make.
  if (RUNS > 1) console.log(`  per round, gatekeeper / nginx proxy: ${results[`${load}|gatekeeper`].rs.map((x, i) => pct(x, results[`${load}|nginx proxy`].rs[i])).join(', ')}`);
}

// Banned addresses: 10,000 of them. Refusal rate against a server that destroys at accept.
const api = `http://127.0.0.1:${P.api}`;
const banned = Array.from({ length: 10000 }, (_, i) => `127.${10 + (i >> 16)}.${(i >> 8) & 255}.${(i & 255) || 1}`);
const bulk = await fetch(`${api}/api/bans`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ips: banned, duration: '1h' }) });
const bulkDoc = await bulk.json();
if (!bulk.ok || bulkDoc.errors?.length) throw new Error(`bulk ban failed: ${bulk.status} ${JSON.stringify(bulkDoc).slice(0, 300)}`);
const probe = await new Promise((resolve) => { const s = net.connect({ host: '127.0.0.1', port: P.gk, localAddress: banned[0] }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')); let out = ''; s.on('data', (c) => (out += c)); s.on('close', () => resolve(out)); s.on('error', () => {}); });
if (!probe.startsWith('HTTP/1.1 429')) throw new Error(`a banned address was not refused: ${probe.slice(0, 80)}`);
async function floodRate(port, seconds, concurrency = 64) {
  let n = 0;
  let pages = 0;
  let i = 0;
  const end = Date.now() + seconds * 1000;
  const one = () => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: banned[i++ % banned.length] }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    s.on('data', (c) => { if (c.toString('latin1', 0, 12) === 'HTTP/1.1 429') pages++; });
    s.on('close', () => { n++; resolve(); });
    s.on('error', () => {});
  });
  await Promise.all(Array.from({ length: concurrency }, async () => { while (Date.now() < end) await one(); }));
  return { rate: n / seconds, pages };
}
const fsec = values.quick ? 3 : 6;
const sinkRates = [];
const gkRates = [];
let pagesSent = 0;
for (let i = 0; i < RUNS; i++) {
  sinkRates.push((await floodRate(P.sink, fsec)).rate);
  const g = await floodRate(P.gk, fsec);
  gkRates.push(g.rate);
  pagesSent += g.pages;
}
console.log(`\nbanned connections handled/s (10,000 banned addresses, Node client on core 1): destroy-at-accept server ${fmt(sinkRates)}, gatekeeper ${fmt(gkRates)}: ${pct(med(gkRates), med(sinkRates))} (target >= 90%); ${pagesSent} ban pages sent in all (one per address per proxy.banPageInterval), the rest reset at accept`);

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
}

// One failed SOAP login, as a client at `from` sends it; resolves with the status code.
const login = (from, agent, account = 'bench@example.com') => new Promise((resolve) => {
  const req = http.request({ host: '127.0.0.1', port: P.gk, method: 'POST', path: '/service/soap/AuthRequest', localAddress: from, agent, headers: { 'content-type': 'application/json' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
  req.on('error', () => resolve(0));
  req.end(JSON.stringify({ Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: account }, password: { _content: 'wrong' } } } }));
});

// 50 concurrent failed logins from one address: the upstream answers each with Zimbra's auth fault
// (500), so every 500 is an attempt that reached "Zimbra"; 429s were refused before it.
const burst = await Promise.all(Array.from({ length: 50 }, () => login('127.0.0.99')));
console.log(`failed-login burst: 50 concurrent from one address, ${burst.filter((s) => s === 500).length} reached the upstream (target: maxretry = 3, overshoot 0); refused: ${burst.filter((s) => s === 429).length} with 429, ${burst.filter((s) => s === 0).length} reset at accept once the address was banned`);

// Failure-to-ban latency: 3 failed logins one after another from each of 30 addresses; after the 3rd
// answer, how long until the ban is in Redis, and is a 4th attempt sent at once refused? (One account
// per address: the account shield would otherwise step in after account.maxretry.)
const { Redis } = await import(join(process.cwd(), 'node_modules', 'ioredis', 'built', 'index.js'));
const redis = new Redis({ port: P.redis, host: '127.0.0.1', lazyConnect: false });
const lat = [];
let fourthRefused = 0;
for (let a = 0; a < 30; a++) {
  const from = `127.1.0.${a + 1}`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const account = `victim${a}@example.com`;
  const answers = [];
  for (let i = 0; i < 3; i++) answers.push(await login(from, agent, account));
  if (answers.some((s) => s !== 500)) throw new Error(`failed logins from ${from} were answered ${answers} (expected Zimbra's 500 fault)`);
  const t0 = performance.now();
  const fourth = login(from, agent, account);
  while (!(await redis.exists(banKey(from)))) { if (performance.now() - t0 > 2000) break; }
  lat.push(performance.now() - t0);
  if ((await fourth) === 429) fourthRefused++;
  agent.destroy();
}
lat.sort((x, y) => x - y);
console.log(`failure-to-ban: ban in Redis after the 3rd failed answer p50 ${lat[Math.floor(lat.length / 2)].toFixed(1)} ms, p99 ${lat[Math.ceil(lat.length * 0.99) - 1].toFixed(1)} ms (30 addresses); a 4th attempt sent at once was refused ${fourthRefused}/30 times`);
// Account-name flood (issue 17): SOAP BatchRequests of 500 AuthRequests, every name distinct, from one
// address over keep-alive connections. Requests/s answered (by status), and the memory beside it:
// the gatekeeper's RSS (from /proc) and Redis's used_memory before and after.
const rssKb = (pid) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const redisMem = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? 0);
let nameSeq = 0;
const batch = () => {
  let xml = '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><BatchRequest xmlns="urn:zimbra" onerror="continue">';
  for (let i = 0; i < 500; i++) xml += `<AuthRequest xmlns="urn:zimbraAccount"><account>f${(nameSeq++).toString(36)}@x.org</account><password>w</password></AuthRequest>`;
  return `${xml}</BatchRequest></soap:Body></soap:Envelope>`;
};
const floodAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const postBatch = () => new Promise((resolve) => {
  const b = batch();
  const req = http.request({ host: '127.0.0.1', port: P.gk, method: 'POST', path: '/service/soap/BatchRequest', localAddress: '127.0.0.98', agent: floodAgent, headers: { 'content-type': 'application/soap+xml', 'content-length': Buffer.byteLength(b) } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
  req.on('error', () => resolve(0));
  req.end(b);
});
const rss0 = rssKb(pids.gatekeeper);
const redis0 = await redisMem();
const floodStatus = new Map();
const floodEnd = Date.now() + Number(DUR.replace('s', '')) * 1000;
const floodStart = performance.now();
await Promise.all(Array.from({ length: 16 }, async () => { while (Date.now() < floodEnd) { const st = await postBatch(); floodStatus.set(st, (floodStatus.get(st) ?? 0) + 1); } }));
const floodSecs = (performance.now() - floodStart) / 1000;
const floodTotal = [...floodStatus.values()].reduce((a, b) => a + b, 0);
const rss1 = rssKb(pids.gatekeeper);
const redis1 = await redisMem();
floodAgent.destroy();
console.log(`account-name flood: BatchRequests of 500 distinct names from one address, 16 keep-alive connections: ${(floodTotal / floodSecs).toFixed(0)} requests/s answered (${(floodTotal * 500 / floodSecs).toFixed(0)} names/s), statuses ${JSON.stringify(Object.fromEntries(floodStatus))}; gatekeeper RSS ${(rss0 / 1024).toFixed(0)} -> ${(rss1 / 1024).toFixed(0)} MB, Redis used_memory ${(redis0 / 1048576).toFixed(1)} -> ${(redis1 / 1048576).toFixed(1)} MB over ${floodTotal * 500} names`);
redis.disconnect();
cleanup();
await sleep(300);
rmSync(dir, { recursive: true, force: true });
process.exit(0);
