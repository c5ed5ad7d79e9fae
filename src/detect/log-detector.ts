import { normalizeIp, type CidrSet } from '../net/ip.js';
import type { AuthEvent } from './auth-event.js';
import { MAX_LINE_LENGTH, nginxClientAddress, parseNginxLine, parseSyslogLine, parseZimbraLine, type NginxLine, type ZimbraLine } from './log-line.js';
import { LOG_RULES, type LogRule, type LogType } from './log-rules.js';

export interface LogMatch {
  readonly rule: LogRule;
  /** The client address, when the line tells it (and it is believable). */
  readonly ip: string | null;
  readonly user: string | undefined;
  readonly reason: string | undefined;
  /** Whether this match feeds the counters (false: the proxy counts it, it duplicates another
   * configured source, it has no address, or it is informational). */
  readonly counted: boolean;
  /** The event to feed the enforcer, when counted. */
  readonly event: AuthEvent | null;
  /** Set when the line came through a zimbra-proxy that is not in `zimbraProxies` (its address, never blamed). */
  readonly unknownProxy?: string;
}

export type LineResult =
  | { readonly kind: 'match'; readonly match: LogMatch }
  | { readonly kind: 'nomatch' }
  | { readonly kind: 'skipped'; readonly why: 'too-long' | 'unparsed' }
  /** Written by a client, not by Zimbra: it follows a line whose raw login name held a newline (log-stream.ts). */
  | { readonly kind: 'forged'; readonly why: string };

/** What the stream guard needs of a parsed line (log-stream.ts). */
export type Parsed = { readonly format: 'zimbra'; readonly z: ZimbraLine } | { readonly format: 'nginx'; readonly n: NginxLine } | { readonly format: 'syslog'; readonly program: string; readonly message: string } | null;

export interface LogDetectorOptions {
  /** `ip=` values that are zimbra-proxy: only then is `oip=` believed on IMAP/POP3 lines. */
  readonly zimbraProxies: CidrSet;
  /** Addresses skipped when reading an HTTP `oip=` list right to left (zimbra-proxy, the gatekeeper, edge proxies). */
  readonly forwarders: CidrSet;
  /** Log types configured at all: decides which duplicate lines are counted. */
  readonly configuredTypes: ReadonlySet<LogType>;
}

/** Every syslog rule's line, and every line log-stream.ts checks for tearing, contains one of these. */
const SYSLOG_WORDS = /SASL|sasl_method=|auth_zimbra|mailboxd/;
/** Likewise for mailboxd lines (audit.log, mailbox.log). */
const ZIMBRA_WORDS = /authenticat|authoriz|cmd=/;
const SYSLOG_START = /^(?:[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:|\d{4}-\d\d-\d\dT\d\d:)/;
const ZIMBRA_START = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} /;

const ZIMBRA_RULES = new Map<string, LogRule[]>();
const SYSLOG_RULES: LogRule[] = [];
const NGINX_RULES: LogRule[] = [];
for (const r of LOG_RULES) {
  if (r.type === 'syslog') SYSLOG_RULES.push(r);
  else if (r.type === 'zimbra-nginx') NGINX_RULES.push(r);
  else {
    const key = `${r.type}\u0000${r.logger}`;
    ZIMBRA_RULES.set(key, [...(ZIMBRA_RULES.get(key) ?? []), r]);
  }
}

/**
 * Applies the log rules to one line: parses it (context block as a key list, never grepped), finds
 * the rule, and resolves the real client per auth-signals.md §2.
 */
export class LogDetector {
  constructor(private readonly o: LogDetectorOptions) {}

  /** Addresses that showed up as zimbra-proxy without being configured as one (bounded: they are few). */
  private readonly seenProxies = new Set<string>();
  static readonly MAX_SEEN_PROXIES = 256;

  /**
   * IMAP/POP3: `ip` is the TCP peer; `oip` is only what the peer claimed, believed from zimbra-proxy only.
   * A peer that is not in zimbraProxies but sends what zimbra-proxy sends (IMAP `ID` with an `X-VIA` naming
   * nginx, logged as `via=...(nginx/...)`: Zimbra/packages nginx_src_mail_ngx_mail_proxy_module.patch) is
   * taken for an unconfigured proxy: neither it (it is a proxy) nor its `oip` (not trusted) is blamed, and
   * the line is reported so that the operator adds it. Its later POP3 lines (no `via`) are treated alike.
   */
  private mailClient(ctx: ReadonlyMap<string, string>): { ip: string | null; unknownProxy?: string } {
    const ip = normalizeIp(ctx.get('ip'));
    if (!ip) return { ip: null };
    if (this.o.zimbraProxies.has(ip)) {
      const oip = normalizeIp(ctx.get('oip')?.split(',').pop());
      return { ip: oip ?? null };
    }
    const via = ctx.get('via');
    if (via !== undefined && /\(nginx\/[\w.]{1,20}\)/.test(via)) {
      if (this.seenProxies.size < LogDetector.MAX_SEEN_PROXIES) this.seenProxies.add(ip);
      return { ip: null, unknownProxy: ip };
    }
    if (ctx.has('oip') && this.seenProxies.has(ip)) return { ip: null, unknownProxy: ip };
    return { ip };
  }

  /** HTTP (and SMTP via saslauthd on :7073): `oip` is the raw X-Forwarded-For list; read it right to left. */
  private httpClient(ctx: ReadonlyMap<string, string>): string | null {
    const oip = ctx.get('oip');
    if (oip !== undefined) {
      const parts = oip.split(',');
      let last: string | null = null;
      for (let i = parts.length - 1; i >= 0; i--) {
        const ip = normalizeIp(parts[i]);
        if (!ip) return last; // garbage where the client should be: keep the last forwarder-trusted hop, never the garbage
        if (!this.o.forwarders.has(ip)) return ip;
        last = ip;
      }
      return last;
    }
    return normalizeIp(ctx.get('ip'));
  }

  /** The client of a mailboxd line: HTTP request context or mail (IMAP/POP3) session context. */
  clientOf(ctx: ReadonlyMap<string, string>, http: boolean): { ip: string | null; unknownProxy?: string } {
    return http ? { ip: this.httpClient(ctx) } : this.mailClient(ctx);
  }

  /** The parse of the last line given to detect() (null when it was not parsed): read by LogStream. */
  lastParsed: Parsed = null;

  detect(line: string, type: LogType): LineResult {
    this.lastParsed = null;
    if (line.length > MAX_LINE_LENGTH) return { kind: 'skipped', why: 'too-long' };
    if (type === 'zimbra-nginx') return this.detectNginx(line);
    // Cheap pre-filter: every rule's line contains one of these words. Most lines of a busy log
    // (deliveries, connects, SOAP traffic) are dismissed here without being parsed.
    // A quick look at the line's start still tells a line of another format (skipped) from one that is
    // simply not about logins (unmatched).
    if (type === 'syslog') {
      // One regex of literal alternatives is faster here than several includes() (measured: 42 ms against 62 ms
      // for three includes on 1M lines). mailboxd lines sent to syslog are looked at for torn lines (log-stream.ts).
      if (!SYSLOG_WORDS.test(line)) {
        return SYSLOG_START.test(line) ? { kind: 'nomatch' } : { kind: 'skipped', why: 'unparsed' };
      }
      return this.detectSyslog(line);
    }
    if (!ZIMBRA_WORDS.test(line)) {
      return ZIMBRA_START.test(line) ? { kind: 'nomatch' } : { kind: 'skipped', why: 'unparsed' };
    }
    const z = parseZimbraLine(line);
    if (!z) return { kind: 'skipped', why: 'unparsed' };
    this.lastParsed = { format: 'zimbra', z };
    const rules = ZIMBRA_RULES.get(`${type}\u0000${z.logger}`);
    if (!rules) return { kind: 'nomatch' };
    const smtp = z.context.get('oproto') === 'smtp';
    for (const rule of rules) {
      if (rule.oproto === 'smtp' && !smtp) continue;
      if (rule.oproto === '!smtp' && smtp) continue;
      if (rule.thread && !rule.thread.test(z.thread)) continue;
      const m = rule.message.exec(z.message);
      if (!m) continue;
      const groups: Record<string, string | undefined> = { ...(m.groups ?? {}) };
      if (rule.auditValues) for (const k of Object.keys(groups)) groups[k] = groups[k]?.replaceAll(';;', ';');
      if (rule.address === 'mail-context') {
        const c = this.mailClient(z.context);
        return { kind: 'match', match: this.build(rule, c.ip, groups, z.context.get('name'), c.unknownProxy) };
      }
      const ip = rule.address === 'http-context' ? this.httpClient(z.context) : rule.address === 'message' ? normalizeIp(groups.ip) : null;
      return { kind: 'match', match: this.build(rule, ip, groups, z.context.get('name')) };
    }
    return { kind: 'nomatch' };
  }

  private detectSyslog(line: string): LineResult {
    const s = parseSyslogLine(line);
    if (!s) return { kind: 'skipped', why: 'unparsed' };
    this.lastParsed = { format: 'syslog', program: s.program, message: s.message };
    for (const rule of SYSLOG_RULES) {
      if (!rule.program!.test(s.program)) continue;
      const m = rule.message.exec(s.message);
      if (!m) continue;
      const groups = { ...(m.groups ?? {}) };
      const reason = groups.reason;
      if (reason !== undefined) {
        const at = reason.lastIndexOf(', sasl_username=');
        if (at !== -1) {
          groups.user = reason.slice(at + 16);
          groups.reason = reason.slice(0, at);
        }
        groups.reason = groups.reason!.trim();
      }
      return { kind: 'match', match: this.build(rule, normalizeIp(groups.ip), groups, undefined) };
    }
    return { kind: 'nomatch' };
  }

  /** nginx.log: the rule is found here; whether the lookup-error line came right before is LogStream's check. */
  private detectNginx(line: string): LineResult {
    if (!line.includes('zm lookup: ') && !line.includes('zmauth: ')) {
      return /^\d{4}\/\d\d\/\d\d \d\d:/.test(line) ? { kind: 'nomatch' } : { kind: 'skipped', why: 'unparsed' };
    }
    const n = parseNginxLine(line);
    if (!n) return { kind: 'skipped', why: 'unparsed' };
    this.lastParsed = { format: 'nginx', n };
    for (const rule of NGINX_RULES) {
      const m = rule.message.exec(n.message);
      if (!m) continue;
      const ip = rule.address === 'message' && n.client !== null ? nginxClientAddress(n.client) : null;
      return { kind: 'match', match: this.build(rule, ip, { ...(m.groups ?? {}), user: n.login ?? undefined }, undefined) };
    }
    return { kind: 'nomatch' };
  }

  build(rule: LogRule, ip: string | null, g: Record<string, string | undefined>, contextName: string | undefined, unknownProxy?: string): LogMatch {
    const user = g.user ?? g.account ?? contextName;
    const duplicate = rule.duplicateOf?.some((t) => this.o.configuredTypes.has(t)) ?? false;
    const counted = rule.outcome !== 'info' && !rule.proxySeen && !duplicate && ip !== null;
    const event: AuthEvent | null = counted
      ? { outcome: rule.outcome as 'failure' | 'success', ruleId: rule.id, service: rule.service, ip: ip!, account: user, source: 'log' }
      : null;
    return unknownProxy ? { rule, ip, user, reason: g.reason, counted, event, unknownProxy } : { rule, ip, user, reason: g.reason, counted, event };
  }
}
