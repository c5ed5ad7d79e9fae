import { closeSync, createReadStream, openSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import type { Config } from '../config/schema.js';
import { LogDetector } from '../detect/log-detector.js';
import { parseNginxLine, parseSyslogLine, parseZimbraLine } from '../detect/log-line.js';
import { LOG_TYPES, type LogType } from '../detect/log-rules.js';
import { LogStream } from '../detect/log-stream.js';
import { GatekeeperError } from '../errors.js';
import { CidrSet } from '../net/ip.js';

export interface TestLogReport {
  /** Every physical line read: lines = empty + skipped + unmatched + forged + matched. */
  lines: number;
  empty: number;
  skipped: number;
  unmatched: number;
  /** Lines written by a client after a torn line (never counted). */
  forged: number;
  matched: number;
  /** matched = counted + notCounted.proxy + notCounted.duplicate + notCounted.noAddress + notCounted.info */
  counted: number;
  notCounted: { proxy: number; duplicate: number; noAddress: number; info: number };
  /** matched = failures + successes + info (counted or not). */
  failures: number;
  successes: number;
  byRule: Record<string, number>;
  /** Failures per address, counted or not (e.g. counted by the proxy in-line). */
  byIp: Record<string, number>;
  /** Counted failures per address (what the running gatekeeper's counters would see). */
  countedByIp: Record<string, number>;
  /** Unconfigured zimbra-proxy addresses and how many lines came through each. */
  unknownProxies: Record<string, number>;
  files: Array<{ file: string; type: LogType; lines: number }>;
  seconds: number;
  linesPerSecond: number;
}

export interface TestLogOptions {
  /** Print every line that matched no rule (unmatched, skipped, forged), prefixed by why. */
  readonly printMissed?: boolean;
  /** Print every matched line with its rule and whether it is counted. */
  readonly printMatched?: boolean;
  /** Where printed lines go (stdout by default). */
  readonly out?: (text: string) => void;
}

/** Guesses a file's log type from its name, else from its first lines. */
export async function detectType(file: string): Promise<LogType> {
  const name = basename(file);
  if (/nginx/.test(name)) return 'zimbra-nginx';
  if (/audit/.test(name)) return 'zimbra-audit';
  if (/^(mailbox|imapd)\.log/.test(name)) return 'zimbra-mailbox';
  if (/^(zimbra\.log|syslog|maillog|mail\.log|messages)/.test(name)) return 'syslog';
  const rl = createInterface({ input: createReadStream(file, { end: 256 * 1024 }), crlfDelay: Infinity });
  let zimbra = 0;
  let security = 0;
  let syslog = 0;
  let nginx = 0;
  let seen = 0;
  for await (const line of rl) {
    if (!line) continue;
    if (parseNginxLine(line)) nginx++;
    const z = parseZimbraLine(line);
    if (z) {
      zimbra++;
      if (z.logger === 'security') security++;
    } else if (parseSyslogLine(line)) syslog++;
    if (++seen >= 200) break;
  }
  rl.close();
  if (nginx > zimbra && nginx > syslog) return 'zimbra-nginx';
  if (zimbra === 0 && syslog === 0) throw new GatekeeperError('GK_ERR_USAGE', `cannot tell the log type of ${file}: give --type ${LOG_TYPES.join('|')}`);
  if (syslog > zimbra) return 'syslog';
  return security * 2 >= zimbra ? 'zimbra-audit' : 'zimbra-mailbox';
}

/** The OS's reason a file cannot be read (ENOENT: no such file or directory, EACCES: permission denied...). */
function unreadable(file: string, err: unknown): GatekeeperError {
  const e = err as NodeJS.ErrnoException;
  const reason = e.code ? `${e.code}: ${e.message.replace(/^\w+: /, '').replace(/, \w+ '.*'$/, '')}` : String(e.message ?? err);
  return new GatekeeperError('GK_ERR_USAGE', `cannot read ${file}: ${reason}`);
}

/**
 * Runs log files through the log rules offline, like fail2ban-regex, with the config's
 * zimbraProxies/trustedProxies. Duplicate-suppression acts as if exactly these files' types were configured.
 * `-` reads standard input; its type must then be given.
 */
export async function testLog(files: readonly string[], type: LogType | 'auto', config: Config, opts: TestLogOptions = {}): Promise<TestLogReport> {
  if (files.length === 0) throw new GatekeeperError('GK_ERR_USAGE', 'test-log needs at least one file (or - for standard input)');
  const out = opts.out ?? ((t: string) => void process.stdout.write(t));
  const typed: Array<{ file: string; type: LogType }> = [];
  for (const file of files) {
    if (file === '-') {
      if (type === 'auto') throw new GatekeeperError('GK_ERR_USAGE', `reading standard input needs --type ${LOG_TYPES.join('|')}`);
      typed.push({ file, type });
      continue;
    }
    try {
      const fd = openSync(file, 'r');
      closeSync(fd);
      if (statSync(file).isDirectory()) throw Object.assign(new Error(`EISDIR: illegal operation on a directory`), { code: 'EISDIR' });
    } catch (err) {
      throw unreadable(file, err);
    }
    typed.push({ file, type: type === 'auto' ? await detectType(file) : type });
  }
  const detector = new LogDetector({
    zimbraProxies: new CidrSet(config.zimbraProxies),
    forwarders: new CidrSet([...config.zimbraProxies, ...config.trustedProxies]),
    configuredTypes: new Set(typed.map((t) => t.type)),
  });
  const report: TestLogReport = {
    lines: 0, empty: 0, skipped: 0, unmatched: 0, forged: 0, matched: 0, counted: 0,
    notCounted: { proxy: 0, duplicate: 0, noAddress: 0, info: 0 },
    failures: 0, successes: 0, byRule: {}, byIp: {}, countedByIp: {}, unknownProxies: {}, files: [], seconds: 0, linesPerSecond: 0,
  };
  const t0 = process.hrtime.bigint();
  for (const { file, type: t } of typed) {
    const stream = new LogStream(detector, t);
    let n = 0;
    await forEachLine(file, (line) => {
      n++;
      if (line === '') {
        report.empty++;
        return;
      }
      const r = stream.feed(line);
      if (r.kind === 'skipped') {
        report.skipped++;
        if (opts.printMissed) out(`skipped (${r.why}): ${line}\n`);
        return;
      }
      if (r.kind === 'nomatch') {
        report.unmatched++;
        if (opts.printMissed) out(`unmatched: ${line}\n`);
        return;
      }
      if (r.kind === 'forged') {
        report.forged++;
        if (opts.printMissed) out(`forged (${r.why}): ${line}\n`);
        return;
      }
      const { rule, ip, counted, unknownProxy } = r.match;
      report.matched++;
      report.byRule[rule.id] = (report.byRule[rule.id] ?? 0) + 1;
      if (unknownProxy) report.unknownProxies[unknownProxy] = (report.unknownProxies[unknownProxy] ?? 0) + 1;
      if (rule.outcome === 'success') report.successes++;
      else if (rule.outcome === 'failure') {
        report.failures++;
        if (ip) report.byIp[ip] = (report.byIp[ip] ?? 0) + 1;
      }
      let why: string;
      if (counted) {
        report.counted++;
        why = 'counted';
        if (rule.outcome === 'failure' && ip) report.countedByIp[ip] = (report.countedByIp[ip] ?? 0) + 1;
      } else if (rule.outcome === 'info') {
        report.notCounted.info++;
        why = 'not counted: informational';
      } else if (rule.proxySeen) {
        report.notCounted.proxy++;
        why = 'not counted: the proxy counts it in-line';
      } else if (ip !== null && rule.duplicateOf?.some((d) => typed.some((x) => x.type === d))) {
        report.notCounted.duplicate++;
        why = `not counted: duplicate of ${rule.duplicateOf.join('/')}`;
      } else {
        report.notCounted.noAddress++;
        why = unknownProxy ? `not counted: through unconfigured zimbra-proxy ${unknownProxy}` : 'not counted: no trustworthy address';
      }
      if (opts.printMatched) out(`${rule.id} ${ip ?? '-'} ${why}: ${line}\n`);
    });
    report.lines += n;
    report.files.push({ file, type: t, lines: n });
  }
  report.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  report.linesPerSecond = report.seconds > 0 ? Math.round(report.lines / report.seconds) : report.lines;
  return report;
}

/** Calls `fn` for every line of a file, split by hand in large chunks (much faster than readline). */
async function forEachLine(file: string, fn: (line: string) => void): Promise<void> {
  let rest = '';
  const input = file === '-' ? process.stdin.setEncoding('utf8') : createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 });
  for await (const chunk of input) {
    const text = rest + (chunk as string);
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      fn(text.slice(start, nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl));
      start = nl + 1;
    }
    rest = text.slice(start);
  }
  if (rest !== '') fn(rest);
}

export function printReport(r: TestLogReport): void {
  const out: string[] = [];
  for (const f of r.files) out.push(`file ${f.file === '-' ? '(standard input)' : f.file} (${f.type}): ${f.lines} lines`);
  const nc = r.notCounted;
  out.push(
    '',
    `lines:       ${r.lines} = ${r.matched} matched + ${r.unmatched} unmatched + ${r.skipped} skipped + ${r.forged} forged + ${r.empty} empty`,
    `matched:     ${r.matched} = ${r.counted} counted + ${nc.proxy} counted by the proxy + ${nc.duplicate} duplicates + ${nc.noAddress} without a trustworthy address + ${nc.info} informational`,
    `             (${r.failures} failures, ${r.successes} successes, ${r.matched - r.failures - r.successes} informational)`,
    `counted:     ${r.counted} (lines the running gatekeeper would feed to its counters, failures and successes)`,
    `unmatched:   ${r.unmatched} (log lines of that type that no rule is about)`,
    `skipped:     ${r.skipped} (not a log line of that type, or too long)`,
    `forged:      ${r.forged} (written by a client after a torn line: never counted; see log.injection)`,
    '',
    'matches per rule:',
  );
  const rules = Object.entries(r.byRule).sort((a, b) => b[1] - a[1]);
  if (rules.length === 0) out.push('  (none)');
  for (const [id, n] of rules) out.push(`  ${id.padEnd(28)} ${n}`);
  out.push('', `failures per address (top 20)${' '.repeat(13)}failures  counted`);
  const ips = Object.entries(r.byIp).sort((a, b) => (r.countedByIp[b[0]] ?? 0) - (r.countedByIp[a[0]] ?? 0) || b[1] - a[1]).slice(0, 20);
  if (ips.length === 0) out.push('  (none)');
  for (const [ip, n] of ips) out.push(`  ${ip.padEnd(40)} ${String(n).padStart(8)} ${String(r.countedByIp[ip] ?? 0).padStart(8)}`);
  out.push('', `${r.linesPerSecond} lines/s (${r.seconds.toFixed(3)} s)`);
  process.stdout.write(`${out.join('\n')}\n`);
  printUnknownProxies(r);
}

/** The unconfigured-proxy warning, on stderr (also with --json). */
export function printUnknownProxies(r: TestLogReport): void {
  for (const [ip, n] of Object.entries(r.unknownProxies)) {
    process.stderr.write(`warning: GK_ERR_LOG_UNKNOWN_PROXY: ${n} lines came through zimbra-proxy ${ip}, which is not in zimbraProxies: neither it nor the oip= it reports is counted; add it to zimbraProxies\n`);
  }
}
