/*
 * Log detection rules, as data. Each is proven by annotated real lines in test/fixtures/logs/
 * (a test fails when a rule has none). Facts from ../shared/zimbra/auth-signals.md:
 *
 * - audit.log has one line per attempt on an EXISTING account, every protocol (`security` logger).
 * - Unknown accounts appear only in mailbox.log (IMAP/POP: `account - ... (no such account)`;
 *   SMTP via saslauthd: `SoapEngine - ... account not found` with oproto=smtp).
 * - SMTP AUTH shows up three times (postfix, saslauthd without an IP, mailboxd :7073 with oproto=smtp):
 *   postfix is preferred when a syslog source is configured, mailboxd's lines otherwise; never both.
 * - HTTP protocols (soap, http_dav, http_basic, zsync, admin) are counted in-line by the proxy, so their
 *   log lines are recognised (test-log reports them) but not counted again.
 *
 * Every message regex is anchored and has no nested quantifiers (linear time on any line).
 */

export type LogType = 'zimbra-audit' | 'zimbra-mailbox' | 'syslog';
export const LOG_TYPES: readonly LogType[] = ['zimbra-audit', 'zimbra-mailbox', 'syslog'];

export interface LogRule {
  readonly id: string;
  readonly service: string;
  /** `info`: recognised (lockout notices, lines without an address) but never counted. */
  readonly outcome: 'failure' | 'success' | 'info';
  readonly type: LogType;
  /** mailboxd lines: the logger (%c{1}). */
  readonly logger?: string;
  /** syslog lines: the program. */
  readonly program?: RegExp;
  /** mailboxd lines: the thread name must match (tells IMAP from POP3 where the message does not). */
  readonly thread?: RegExp;
  /** Named groups: `user` (login as typed), `account`, `ip` (syslog), `reason`. */
  readonly message: RegExp;
  /** mailboxd lines: only with (`smtp`) or without (`!smtp`) `oproto=smtp` in the context. */
  readonly oproto?: 'smtp' | '!smtp';
  /** Where the client address is: the context of a mail session (IMAP/POP: oip only behind zimbra-proxy),
   * of an HTTP request (oip list, right to left), the message itself (postfix), or nowhere. */
  readonly address: 'mail-context' | 'http-context' | 'message' | 'none';
  /** The proxy counts these in-line; the log line is only reported. */
  readonly proxySeen?: boolean;
  /** Counted only when no source of these types is configured (the same attempt is logged there). */
  readonly duplicateOf?: readonly LogType[];
}

const FAILED = String.raw`error=authentication failed for \[(?<user>[^\]]{0,256})\], (?<reason>[^;]{0,512});$`;
const auditFailure = (protocol: string): RegExp => new RegExp(String.raw`^cmd=Auth; account=(?<account>[^;]{0,256}); protocol=${protocol}; ${FAILED}`);
const auditSuccess = (protocol: string): RegExp => new RegExp(String.raw`^cmd=Auth; account=(?<account>[^;]{0,256}); protocol=${protocol};$`);
const POSTFIX = /^postfix[\w.-]{0,32}(?:\/[\w.-]{1,32}){0,3}\/smtpd$/;

export const LOG_RULES: readonly LogRule[] = [
  // --- audit.log (zimbra.security) -------------------------------------------------------------
  { id: 'imap.auth-failed', service: 'imap', outcome: 'failure', type: 'zimbra-audit', logger: 'security', message: auditFailure('imap'), address: 'mail-context' },
  { id: 'pop3.auth-failed', service: 'pop3', outcome: 'failure', type: 'zimbra-audit', logger: 'security', message: auditFailure('pop3'), address: 'mail-context' },
  { id: 'smtp.auth-failed', service: 'smtp', outcome: 'failure', type: 'zimbra-audit', logger: 'security', oproto: 'smtp', message: auditFailure('soap'), address: 'http-context', duplicateOf: ['syslog'] },
  { id: 'soap.auth-failed', service: 'soap', outcome: 'failure', type: 'zimbra-audit', logger: 'security', oproto: '!smtp', message: auditFailure('soap'), address: 'http-context', proxySeen: true },
  { id: 'dav.auth-failed', service: 'dav', outcome: 'failure', type: 'zimbra-audit', logger: 'security', message: auditFailure('http_dav'), address: 'http-context', proxySeen: true },
  { id: 'rest.auth-failed', service: 'rest', outcome: 'failure', type: 'zimbra-audit', logger: 'security', message: auditFailure('http_basic'), address: 'http-context', proxySeen: true },
  { id: 'activesync.auth-failed', service: 'activesync', outcome: 'failure', type: 'zimbra-audit', logger: 'security', message: auditFailure('zsync'), address: 'http-context', proxySeen: true },
  // <= 8.8.15.p29 / 9.0.0.p22 only; later versions log admin failures as protocol=soap.
  { id: 'admin.auth-failed', service: 'admin', outcome: 'failure', type: 'zimbra-audit', logger: 'security', message: /^cmd=AdminAuth; account=(?<account>[^;]{0,256}); error=authentication failed for \[(?<user>[^\]]{0,256})\];$/, address: 'http-context', proxySeen: true },
  { id: 'preauth.failed', service: 'preauth', outcome: 'failure', type: 'zimbra-audit', logger: 'security', message: /^cmd=PreAuth; account=(?<account>[^;]{0,256}); admin=\w{1,5}; error=authentication failed for \[(?<user>[^\]]{0,256})\], (?<reason>[^;]{0,512});$/, address: 'http-context', proxySeen: true },
  { id: 'account.lockout', service: 'account', outcome: 'info', type: 'zimbra-audit', logger: 'security', message: /^cmd=Auth; account=(?<account>[^;]{0,256}); error=account lockout due to too many failed logins;$/, address: 'none' },
  { id: 'imap.auth-ok', service: 'imap', outcome: 'success', type: 'zimbra-audit', logger: 'security', message: auditSuccess('imap'), address: 'mail-context' },
  { id: 'pop3.auth-ok', service: 'pop3', outcome: 'success', type: 'zimbra-audit', logger: 'security', message: auditSuccess('pop3'), address: 'mail-context' },
  { id: 'smtp.auth-ok', service: 'smtp', outcome: 'success', type: 'zimbra-audit', logger: 'security', oproto: 'smtp', message: auditSuccess('soap'), address: 'http-context', duplicateOf: ['syslog'] },

  // --- mailbox.log -------------------------------------------------------------------------------
  { id: 'imap.auth-failed', service: 'imap', outcome: 'failure', type: 'zimbra-mailbox', logger: 'imap', message: /^authentication failed for \[(?<user>[^\]]{0,256})\] \((?<reason>[^)]{0,512})\)$/, address: 'mail-context', duplicateOf: ['zimbra-audit'] },
  { id: 'imap.unknown-account', service: 'imap', outcome: 'failure', type: 'zimbra-mailbox', logger: 'account', thread: /^Imap/, message: /^authentication failed for (?<user>\S{1,256}) \(no such account\)$/, address: 'mail-context' },
  { id: 'pop3.unknown-account', service: 'pop3', outcome: 'failure', type: 'zimbra-mailbox', logger: 'account', thread: /^Pop3/, message: /^authentication failed for (?<user>\S{1,256}) \(no such account\)$/, address: 'mail-context' },
  { id: 'smtp.unknown-account', service: 'smtp', outcome: 'failure', type: 'zimbra-mailbox', logger: 'SoapEngine', oproto: 'smtp', message: /^handler exception: authentication failed for \[(?<user>[^\]]{0,256})\], (?<reason>account not found)$/, address: 'http-context', duplicateOf: ['syslog'] },
  { id: 'smtp.auth-failed', service: 'smtp', outcome: 'failure', type: 'zimbra-mailbox', logger: 'SoapEngine', oproto: 'smtp', message: /^handler exception: authentication failed for \[(?<user>[^\]]{0,256})\], (?<reason>(?!account not found$)[^\n]{1,512})$/, address: 'http-context', duplicateOf: ['syslog', 'zimbra-audit'] },
  { id: 'soap.auth-failed', service: 'soap', outcome: 'failure', type: 'zimbra-mailbox', logger: 'SoapEngine', oproto: '!smtp', message: /^handler exception: authentication failed for \[(?<user>[^\]]{0,256})\], (?<reason>[^\n]{1,512})$/, address: 'http-context', proxySeen: true },
  { id: 'imap.auth-ok', service: 'imap', outcome: 'success', type: 'zimbra-mailbox', logger: 'imap', message: /^user (?<account>\S{1,256}) authenticated, mechanism=/, address: 'mail-context', duplicateOf: ['zimbra-audit'] },
  { id: 'pop3.auth-ok', service: 'pop3', outcome: 'success', type: 'zimbra-mailbox', logger: 'pop', message: /^user (?<account>\S{1,256}) authenticated, mechanism=/, address: 'mail-context', duplicateOf: ['zimbra-audit'] },

  // --- /var/log/zimbra.log (syslog) ---------------------------------------------------------------
  {
    id: 'smtp.sasl-failed', service: 'smtp', outcome: 'failure', type: 'syslog', program: POSTFIX, address: 'message',
    // fail2ban's postfix filter, mode auth: not when saslauthd/mailboxd is down, not for an unknown mechanism.
    message: /^warning: [^\s[]{0,255}\[(?<ip>[0-9A-Fa-f:.]{2,45})\](?::\d{1,5})?: SASL [\w-]{1,20} authentication failed:(?! Connection lost to authentication server| Invalid authentication mechanism)(?<reason>[^\n]{0,1024})$/,
    // Newer postfix appends `, sasl_username=U` to the reason: the detector splits it off.
  },
  { id: 'smtp.sasl-ok', service: 'smtp', outcome: 'success', type: 'syslog', program: POSTFIX, address: 'message', message: /^[0-9A-F]{5,20}: client=[^\s[]{0,255}\[(?<ip>[0-9A-Fa-f:.]{2,45})\](?::\d{1,5})?, sasl_method=[\w-]{1,20}, sasl_username=(?<account>\S{1,256})$/ },
  // saslauthd's own line has no client address: recognised, never counted (postfix's line is).
  { id: 'smtp.saslauthd-failed', service: 'smtp', outcome: 'info', type: 'syslog', program: /^saslauthd$/, message: /^auth_zimbra: (?<user>\S{1,256}) auth failed: (?<reason>[^\n]{0,512})$/, address: 'none' },
];

/** Every log rule id (README table, fixtures, metric labels). */
export function logRuleIds(): string[] {
  return [...new Set(LOG_RULES.map((r) => r.id))].sort();
}
