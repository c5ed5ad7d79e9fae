import { normalizeIp, type CidrSet } from '../net/ip.js';
import type { AuthEvent } from './auth-event.js';
import { MAX_LINE_LENGTH, parseSyslogLine, parseZimbraLine } from './log-line.js';
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
}

export type LineResult = { readonly kind: 'match'; readonly match: LogMatch } | { readonly kind: 'nomatch' } | { readonly kind: 'skipped'; readonly why: 'too-long' | 'unparsed' };

export interface LogDetectorOptions {
  /** `ip=` values that are zimbra-proxy: only then is `oip=` believed on IMAP/POP3 lines. */
  readonly zimbraProxies: CidrSet;
  /** Addresses skipped when reading an HTTP `oip=` list right to left (zimbra-proxy, the gatekeeper, edge proxies). */
  readonly forwarders: CidrSet;
  /** Log types configured at all: decides which duplicate lines are counted. */
  readonly configuredTypes: ReadonlySet<LogType>;
}

const SYSLOG_START = /^(?:[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:|\d{4}-\d\d-\d\dT\d\d:)/;
const ZIMBRA_START = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} /;

const ZIMBRA_RULES = new Map<string, LogRule[]>();
const SYSLOG_RULES: LogRule[] = [];
for (const r of LOG_RULES) {
  if (r.type === 'syslog') SYSLOG_RULES.push(r);
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

  /** IMAP/POP3: `ip` is the TCP peer; `oip` is only what the peer claimed, believed from zimbra-proxy only. */
  private mailClient(ctx: ReadonlyMap<string, string>): string | null {
    const ip = normalizeIp(ctx.get('ip'));
    if (!ip) return null;
    if (this.o.zimbraProxies.has(ip)) {
      const oip = normalizeIp(ctx.get('oip')?.split(',').pop());
      return oip ?? null;
    }
    return ip;
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

  detect(line: string, type: LogType): LineResult {
    if (line.length > MAX_LINE_LENGTH) return { kind: 'skipped', why: 'too-long' };
    // Cheap pre-filter: every rule's line contains one of these words. Most lines of a busy log
    // (deliveries, connects, SOAP traffic) are dismissed here without being parsed.
    // A quick look at the line's start still tells a line of another format (skipped) from one that is
    // simply not about logins (unmatched).
    if (type === 'syslog') {
      if (!line.includes('SASL') && !line.includes('sasl_method=') && !line.includes('auth_zimbra')) {
        return SYSLOG_START.test(line) ? { kind: 'nomatch' } : { kind: 'skipped', why: 'unparsed' };
      }
      return this.detectSyslog(line);
    }
    if (!line.includes('authenticat') && !line.includes('cmd=')) {
      return ZIMBRA_START.test(line) ? { kind: 'nomatch' } : { kind: 'skipped', why: 'unparsed' };
    }
    const z = parseZimbraLine(line);
    if (!z) return { kind: 'skipped', why: 'unparsed' };
    const rules = ZIMBRA_RULES.get(`${type}\u0000${z.logger}`);
    if (!rules) return { kind: 'nomatch' };
    const smtp = z.context.get('oproto') === 'smtp';
    for (const rule of rules) {
      if (rule.oproto === 'smtp' && !smtp) continue;
      if (rule.oproto === '!smtp' && smtp) continue;
      if (rule.thread && !rule.thread.test(z.thread)) continue;
      const m = rule.message.exec(z.message);
      if (!m) continue;
      const ip = rule.address === 'mail-context' ? this.mailClient(z.context) : rule.address === 'http-context' ? this.httpClient(z.context) : null;
      return { kind: 'match', match: this.build(rule, ip, m.groups ?? {}, z.context.get('name')) };
    }
    return { kind: 'nomatch' };
  }

  private detectSyslog(line: string): LineResult {
    const s = parseSyslogLine(line);
    if (!s) return { kind: 'skipped', why: 'unparsed' };
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

  private build(rule: LogRule, ip: string | null, g: Record<string, string | undefined>, contextName: string | undefined): LogMatch {
    const user = g.user ?? g.account ?? contextName;
    const duplicate = rule.duplicateOf?.some((t) => this.o.configuredTypes.has(t)) ?? false;
    const counted = rule.outcome !== 'info' && !rule.proxySeen && !duplicate && ip !== null;
    const event: AuthEvent | null = counted
      ? { outcome: rule.outcome as 'failure' | 'success', ruleId: rule.id, service: rule.service, ip: ip!, account: user, source: 'log' }
      : null;
    return { rule, ip, user, reason: g.reason, counted, event };
  }
}
