#!/usr/bin/env node
// Log parser speed, side by side in one run on the same file:
//   gatekeeper test-log (this build)  vs  the build before forged-line handling (git archive of --old,
//   compiled into a temporary directory)  vs  fail2ban-regex (Debian `fail2ban`, postfix filter, mode auth)  vs  grep -c
// Usage: npm run bench:logs [-- --lines 1000000 --runs 3 --old <git rev>]
// --old defaults to the parent of the commit that added src/detect/log-stream.ts; `--old none` skips it.
// Prints a table of medians and the ratios; absolute times on shared machines are noisy, ratios less so.
import { execFileSync, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { lines: { type: 'string', default: '1000000' }, runs: { type: 'string', default: '3' }, old: { type: 'string' } } });
const LINES = Number(values.lines);
const RUNS = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), 'gk-bench-logs-'));
const file = join(dir, 'zimbra.log');

// A mixed Zimbra /var/log/zimbra.log: ~5% SASL failures (several postfix variants), the rest ordinary traffic,
// and every 100,000 lines an injection: a torn saslauthd line (an SMTP AUTH name with a newline, syslog not
// escaping) followed by a forged postfix failure naming 198.51.100.99, then 200 lines without failures (more
// than the 16 KiB after a torn line that are taken as client-written, so the genuine count stays exact).
async function generate() {
  const out = createWriteStream(file);
  const months = ['Jan', 'Feb', 'Mar'];
  let failures = 0;
  let forged = 0;
  let calm = 0;
  for (let i = 0; i < LINES; i++) {
    if (i % 100000 === 50000) {
      forged++;
      calm = 200;
      const injected = `Mar  1 00:00:00 mx saslauthd[900]: auth_zimbra: x${i}\nMar  1 00:00:00 mx postfix/smtpd[1]: warning: unknown[198.51.100.99]: SASL LOGIN authentication failed: authentication failure auth failed: authentication failed for [x${i}]\n`;
      if (!out.write(injected)) await new Promise((r) => out.once('drain', r));
      i++;
      continue;
    }
    const ts = `${months[i % 3]} ${String(1 + (i % 28)).padStart(2, ' ')} ${String(i % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:${String((i * 7) % 60).padStart(2, '0')}`;
    const ip = `203.0.${(i >> 8) & 255}.${i & 255}`;
    let r = i % 100;
    if (calm > 0) {
      calm--;
      if (r < 5) r = 50;
    }
    let line;
    if (r < 5) {
      failures++;
      const v = i % 4;
      line = v === 0 ? `${ts} mx postfix/submission/smtpd[${i % 30000}]: warning: unknown[${ip}]: SASL LOGIN authentication failed: authentication failure`
        : v === 1 ? `${ts} mx postfix/smtps/smtpd[${i % 30000}]: warning: host-${i}.example.net[${ip}]: SASL PLAIN authentication failed: UGFzc3dvcmQ6`
        : v === 2 ? `${ts} mx postfix/smtpd[${i % 30000}]: warning: unknown[${ip}]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=info@example.com`
        : `${ts} mx postfix/submission/smtpd[${i % 30000}]: warning: unknown[${ip}]:${1024 + (i % 60000)}: SASL LOGIN authentication failed: authentication failure`;
    } else if (r < 30) line = `${ts} mx postfix/smtpd[${i % 30000}]: connect from unknown[${ip}]`;
    else if (r < 55) line = `${ts} mx postfix/smtpd[${i % 30000}]: disconnect from unknown[${ip}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5`;
    else if (r < 75) line = `${ts} mx postfix/qmgr[1234]: ${(i * 2654435761 >>> 0).toString(16).toUpperCase().padStart(10, '0')}: from=<user${i % 5000}@example.org>, size=${1000 + (i % 90000)}, nrcpt=1 (queue active)`;
    else if (r < 90) line = `${ts} mx amavis[${i % 9000}]: (${i}-01) Passed CLEAN {RelayedInbound}, [${ip}]:${1024 + (i % 60000)} <a@b.example> -> <c@example.com>, Queue-ID: ABC${i}, size: ${2000 + (i % 9000)}, 412 ms`;
    else line = `${ts} mx postfix/smtp[${i % 30000}]: ${(i * 40503 >>> 0).toString(16).toUpperCase()}: to=<x${i % 700}@example.net>, relay=mx.example.net[198.51.100.${i & 255}]:25, delay=0.4, status=sent (250 ok)`;
    if (!out.write(`${line}\n`)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r) => out.end(r));
  return { failures, forged };
}

// The build before forged-line handling, from git, compiled into a temporary directory beside this one's
// node_modules (symlinked). Returns the path of its CLI, or null.
function buildOld(rev) {
  if (rev === 'none') return null;
  try {
    const target = rev ?? `${execFileSync('git', ['log', '--diff-filter=A', '--format=%H', '--', 'src/detect/log-stream.ts'], { encoding: 'utf8' }).trim().split('\n').pop()}~1`;
    if (target === '~1') return null;
    const oldDir = join(dir, 'old');
    execFileSync('mkdir', ['-p', oldDir]);
    const tar = execFileSync('git', ['archive', '--format=tar', target, 'src', 'tsconfig.json', 'package.json'], { maxBuffer: 256 * 1024 * 1024 });
    execFileSync('tar', ['-x', '-C', oldDir], { input: tar });
    symlinkSync(join(process.cwd(), 'node_modules'), join(oldDir, 'node_modules'));
    // Only src/ is compiled (the old tsconfig may include test/: absent here, so restrict it).
    execFileSync(process.execPath, [join(process.cwd(), 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--outDir', 'dist/src', '--rootDir', 'src'], { cwd: oldDir, stdio: 'inherit' });
    console.log(`# old build: ${execFileSync('git', ['log', '-1', '--format=%h %s', target], { encoding: 'utf8' }).trim().slice(0, 100)}`);
    return join(oldDir, 'dist/src/cli/main.js');
  } catch (err) {
    console.log(`# old build not available (${err.message.split('\n')[0]}): skipped`);
    return null;
  }
}

function time(cmd, args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0 && !(cmd === 'grep' && r.status === 1)) throw new Error(`${cmd} failed: ${r.stderr?.slice(0, 500)}`);
  return { s, out: r.stdout };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const have = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

const { failures: expected, forged } = await generate();
const size = statSync(file).size;
console.log(`# ${LINES} lines (${(size / 1048576).toFixed(1)} MiB), ${expected} SASL failures (${((expected / LINES) * 100).toFixed(1)}%) + ${forged} forged ones, ${RUNS} runs each`);
const oldCli = buildOld(values.old);

const testLogRun = (cli) => () => {
  const r = time(process.execPath, [cli, 'test-log', file, '--type', 'syslog', '--json']);
  return { s: r.s, matched: JSON.parse(r.out).byRule['smtp.sasl-failed'] ?? 0 };
};
const contenders = [{ name: 'gatekeeper test-log (forged-line handling on)', run: testLogRun('dist/src/cli/main.js') }];
if (oldCli) contenders.push({ name: 'gatekeeper test-log, build before it', run: testLogRun(oldCli) });
if (have('fail2ban-regex')) {
  contenders.push({
    name: 'fail2ban-regex (postfix, mode=auth)',
    run: () => {
      const r = time('fail2ban-regex', ['--print-no-missed', '--print-no-ignored', file, 'postfix[mode=auth]']);
      const m = /Lines: \d+ lines, \d+ ignored, (\d+) matched/.exec(r.out);
      return { s: r.s, matched: m ? Number(m[1]) : NaN };
    },
  });
} else {
  console.log('# fail2ban-regex not installed (apt-get install -y fail2ban): skipped');
}
contenders.push({
  name: 'grep -c (no parsing, the floor)',
  run: () => {
    const r = time('grep', ['-cE', 'SASL [A-Za-z0-9-]+ authentication failed', file]);
    return { s: r.s, matched: Number(r.out.trim()) };
  },
});

// Rounds interleave the contenders, so that a noisy moment on the shared machine hits all of them.
const times = contenders.map(() => []);
const matchedBy = contenders.map(() => 0);
for (let i = 0; i < RUNS; i++) {
  contenders.forEach((c, k) => {
    const r = c.run();
    times[k].push(r.s);
    matchedBy[k] = r.matched;
  });
}
const results = contenders.map((c, k) => ({ name: c.name, median: median(times[k]), min: Math.min(...times[k]), max: Math.max(...times[k]), matched: matchedBy[k] }));
rmSync(dir, { recursive: true, force: true });

const gk = results[0];
console.log('\n| contender | median s | min–max s | lines/s (median) | failures matched |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const r of results) {
  console.log(`| ${r.name} | ${r.median.toFixed(2)} | ${r.min.toFixed(2)}–${r.max.toFixed(2)} | ${Math.round(LINES / r.median).toLocaleString('en')} | ${r.matched} |`);
}
console.log('');
for (const r of results.slice(1)) {
  const ratio = r.median / gk.median;
  console.log(`gatekeeper is ${ratio.toFixed(1)}x the speed of ${r.name}`);
}
const f2b = results.find((r) => r.name.startsWith('fail2ban'));
if (gk.matched !== expected) {
  console.log(`WARNING: gatekeeper matched ${gk.matched}, expected ${expected} (the ${forged} forged lines must not match)`);
  process.exitCode = 1;
}
const old = results.find((r) => r.name.includes('build before'));
if (old) console.log(`the build before forged-line handling matched ${old.matched} (the ${forged} forged lines included when ${expected + forged})`);
if (f2b && f2b.median / gk.median < 20) console.log('target not met: at least 20x fail2ban-regex');
