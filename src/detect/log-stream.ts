import type { LineResult, LogDetector, LogMatch } from './log-detector.js';
import { nginxClientAddress, parseZimbraLine, type NginxLine, type ZimbraLine } from './log-line.js';
import type { LogRule, LogType } from './log-rules.js';

/*
 * Forged lines: log4j writes the message part (%m) raw. A login name with a newline in it ends the physical
 * line early and lets the client write the lines that follow, with any timestamp, thread and context, naming
 * anyone. Zimbra's `[%z]` context and the audit `cmd=` lists ARE escaped (ZimbraLog.encodeArg turns CR/LF into
 * spaces and doubles `;`), so a line is client-written only after a message that carries a raw name:
 *
 *   message (logger)                                         | written by (zm-mailbox unless said)          | ends with
 *   account - authentication failed for U (no such account)  | security/sasl/PlainAuthenticator.authenticate | ` (no such account)`
 *   account - authorization failed for U (...)               | security/sasl/Authenticator.authorize         | ` (account not found)` / ` (authenticated user A has insufficient rights)`
 *   imap - authentication failed for [U] (R)                 | imap/ImapHandler.authenticate                 | `] (R)`
 *   SoapEngine - handler exception: authentication failed for [U], R | soap/SoapEngine (AuthFailedServiceException) | `]` or `], R`
 *   account|security - Error occurred during authentication: authentication failed for [U]. Reason: R.
 *                                                            | listeners/AuthListener, service/account/Auth  | `]. Reason: R.`
 *   security - Error occurred during authentication: account not found for [U]. oip=IP
 *                                                            | zm-nginx-lookup-store NginxLookupExtension    | `]. oip=IP`
 *   saslauthd: auth_zimbra: U auth failed: authentication failed for [U] (zimbra.log, when syslog does not escape)
 *   nginx.log: `..., login: "U"` (ngx_mail_log_error) and the `zm lookup:` line that must be followed by its
 *              `An error occurred in mail zmauth:` partner (same pid, connection, client and login)
 *
 * How a forged line is recognised (AuthFailedServiceException: `"authentication failed for [" + name + "]"`):
 * 1. A line that begins one of these messages but does not end the way Zimbra ends it is TORN: the name held a
 *    newline. Its head (time, thread, escaped context) is Zimbra's, so its address is the writer's: the torn
 *    line is counted against it (rule `log.injection`).
 * 2. The lines after a torn line are client-written until Zimbra's ending appears at the end of one of them,
 *    and, because the client can write that ending itself on an earlier line, for at least
 *    FORGERY_WINDOW_BYTES after the torn line whatever they say (the client's name is not bounded by Zimbra:
 *    IMAP literals are excluded from zimbraImapMaxRequestSize, TcpImapRequest). Those lines are reported as
 *    `forged` and never counted; a genuine line of another client inside the window is lost (the price: each
 *    torn line costs its writer one counted failure).
 * 3. nginx.log: the lookup-failure pair must be two consecutive lines of the same connection; a `zm lookup:`
 *    line followed by anything else is torn (the pid and connection number are not known to the client).
 * A client that ends the FIRST physical line with the exact ending (`x (no such account)\n<forged line>`)
 * leaves a torn line that looks whole: that route is not detected here (README: "Forged lines").
 */

/** How far (bytes) after a torn line every line is taken as client-written. */
export const FORGERY_WINDOW_BYTES = 16 * 1024;
/** A quarantine never lasts longer than this (bytes), even when Zimbra's ending never comes. */
const FORGERY_MAX_BYTES = 1024 * 1024;

/** The torn line itself: counted against its own (Zimbra-written) address. */
export const LOG_INJECTION_RULE: LogRule = { id: 'log.injection', service: 'log', outcome: 'failure', type: 'zimbra-mailbox', message: /$^/, address: 'mail-context' };

interface RawNameMessage {
  readonly logger: string;
  readonly prefix: string;
  readonly ending: RegExp;
}

const REASON_END = /\]\. Reason: [^\n]{0,1024}\.$/;
const RAW_NAME_MESSAGES: readonly RawNameMessage[] = [
  { logger: 'account', prefix: 'authentication failed for ', ending: / \(no such account\)$/ },
  { logger: 'account', prefix: 'authorization failed for ', ending: / \((?:account not found|authenticated user \S{1,256} has insufficient rights)\)$/ },
  { logger: 'account', prefix: 'Error occurred during authentication: authentication failed for [', ending: REASON_END },
  { logger: 'security', prefix: 'Error occurred during authentication: authentication failed for [', ending: REASON_END },
  { logger: 'security', prefix: 'Error occurred during authentication: account not found for [', ending: /\]\. oip=[0-9A-Fa-f:.]{2,45}$/ },
  { logger: 'imap', prefix: 'authentication failed for [', ending: /\] \([^()\n]{0,512}\)$/ },
  // SoapEngine.dispatchRequest: LOG.info("handler exception: %s%s", e.getMessage(), e.getReason(", %s")): the reason may be empty.
  { logger: 'SoapEngine', prefix: 'handler exception: authentication failed for [', ending: /\](?:, [^\n]{0,1024})?$/ },
];
const SASLAUTHD_ENDING = /\]$|auth OK$/;
const NGINX_ENDING = /"$/;
const KNOWN_ENDINGS = new Map<string, RegExp>([...RAW_NAME_MESSAGES.map((m) => m.ending), SASLAUTHD_ENDING, NGINX_ENDING].map((r) => [r.source, r]));
const SASLAUTHD_END = /^auth_zimbra: \S[^\n]{0,512} auth (?:OK|failed: [^\n]{0,1024})$/;

export interface StreamState {
  readonly why: string;
  readonly ending: string;
  readonly endingSeen: boolean;
  readonly bytes: number;
}

interface Quarantine {
  readonly why: string;
  readonly ending: RegExp;
  endingSeen: boolean;
  bytes: number;
}

interface LookupLine {
  readonly n: NginxLine;
  readonly line: string;
}

/**
 * One log source read in order: applies the detector to each line and keeps what a single line cannot
 * tell (a torn line before it, the nginx lookup pair). Not shared between sources.
 */
export class LogStream {
  private quarantine: Quarantine | null = null;
  private lookup: LookupLine | null = null;

  constructor(
    private readonly detector: LogDetector,
    readonly type: LogType,
    private readonly windowBytes = FORGERY_WINDOW_BYTES,
  ) {}

  /** What must survive a restart: an open quarantine (saved with the file position). */
  saveState(): StreamState | null {
    const q = this.quarantine;
    return q ? { why: q.why, ending: q.ending.source, endingSeen: q.endingSeen, bytes: q.bytes } : null;
  }

  restoreState(state: StreamState | null | undefined): void {
    if (!state || typeof state.why !== 'string' || typeof state.ending !== 'string' || typeof state.bytes !== 'number') return;
    // Only endings this module wrote can come back (the state sits in the store; never a foreign pattern).
    const ending = KNOWN_ENDINGS.get(state.ending);
    if (!ending) return;
    this.quarantine = { why: state.why.slice(0, 200), ending, endingSeen: state.endingSeen === true, bytes: state.bytes };
  }

  feed(line: string): LineResult {
    const q = this.quarantine;
    if (q) {
      q.bytes += line.length + 1;
      if (q.ending.test(line)) q.endingSeen = true;
      if ((q.endingSeen && q.bytes >= this.windowBytes) || q.bytes >= FORGERY_MAX_BYTES) this.quarantine = null;
      return { kind: 'forged', why: q.why };
    }
    const r = this.detector.detect(line, this.type);
    const p = this.detector.lastParsed;
    if (this.type === 'zimbra-nginx') return this.nginx(line, r, p?.format === 'nginx' ? p.n : null);
    if (p?.format === 'zimbra') return this.zimbra(p.z) ?? r;
    if (p?.format === 'syslog') {
      if (p.program === 'saslauthd' && p.message.startsWith('auth_zimbra: ') && !SASLAUTHD_END.test(p.message)) {
        // saslauthd has no client address: the torn line is recognised, nobody is counted.
        this.quarantine = { why: 'after a torn saslauthd line', ending: SASLAUTHD_ENDING, endingSeen: false, bytes: 0 };
        return this.injection(null, 'smtp');
      }
      if (p.program === 'mailboxd') {
        // mailboxd lines sent to syslog (zimbraLogToSyslog): `%-5p [%t] [%z] %c{1} - %m` after the program.
        const z = parseZimbraLine(`2000-01-01 00:00:00,000 ${p.message}`);
        if (z) return this.zimbra(z) ?? r;
      }
    }
    return r;
  }

  /** A torn mailboxd line starts a quarantine and is counted against its own address; otherwise null. */
  private zimbra(z: ZimbraLine): LineResult | null {
    for (const m of RAW_NAME_MESSAGES) {
      if (z.logger !== m.logger || !z.message.startsWith(m.prefix)) continue;
      if (m.ending.test(z.message)) return null;
      this.quarantine = { why: `after a torn "${z.logger} - ${m.prefix.trim()}" line`, ending: m.ending, endingSeen: false, bytes: 0 };
      const http = z.thread.startsWith('qtp') || z.context.has('oproto');
      const service = z.context.get('oproto') === 'smtp' ? 'smtp' : /^Imap/.test(z.thread) ? 'imap' : /^Pop3/.test(z.thread) ? 'pop3' : http ? 'soap' : 'mail';
      // The same address the line's own rule would use: mail context (oip only from zimbra-proxy) or HTTP oip
      // list. The nginx-lookup line's context is nginx's request, its client is at the message end: none.
      const ip = m.prefix.includes('account not found for') ? null : this.detector.clientOf(z.context, http).ip;
      return this.injection(ip, service);
    }
    return null;
  }

  private injection(ip: string | null, service: string): LineResult {
    const rule: LogRule = { ...LOG_INJECTION_RULE, service };
    const match: LogMatch = this.detector.build(rule, ip, { reason: 'login name with a newline (forged lines follow)' }, undefined);
    return { kind: 'match', match };
  }

  private nginx(line: string, r: LineResult, n: NginxLine | null): LineResult {
    const before = this.lookup;
    this.lookup = null;
    if (before && !(n && r.kind === 'match' && r.match.rule.id === 'mailproxy.auth-failed' && samePair(before.n, n))) {
      // The lookup-error line was not followed by its partner: this line was written by the client (checked
      // first: a torn-looking line here is the client's too, and must not make its `client:` the writer).
      this.quarantine = { why: 'after a zm lookup line without its partner', ending: NGINX_ENDING, endingSeen: false, bytes: line.length + 1 };
      if (this.quarantine.ending.test(line)) this.quarantine.endingSeen = true;
      if (this.quarantine.endingSeen && this.quarantine.bytes >= this.windowBytes) this.quarantine = null;
      return { kind: 'forged', why: 'after a zm lookup line without its partner' };
    }
    if (n && /, login: "/.test(line) && n.login === null && n.client !== null) {
      // A login field without its closing quote: the login held a newline.
      this.quarantine = { why: 'after a torn nginx login', ending: NGINX_ENDING, endingSeen: false, bytes: 0 };
      return this.injection(n.client !== null ? nginxClientAddress(n.client) : null, 'mailproxy');
    }
    if (r.kind !== 'match') return r;
    if (r.match.rule.id === 'mailproxy.lookup-error' && n) {
      this.lookup = { n, line };
      return r;
    }
    if (r.match.rule.id === 'mailproxy.auth-failed' && !before) {
      // Not a login failure (the lookup handler was not reached, or not the consecutive pair): recognised only.
      return { kind: 'match', match: { ...r.match, counted: false, event: null } };
    }
    return r;
  }
}

function samePair(a: NginxLine, b: NginxLine): boolean {
  return a.pid === b.pid && a.connection === b.connection && a.connection !== '' && a.client === b.client && a.login === b.login;
}
