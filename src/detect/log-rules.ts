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

export type LogType = 'zimbra-audit' | 'zimbra-mailbox' | 'syslog' | 'zimbra-nginx';
export const LOG_TYPES: readonly LogType[] = ['zimbra-audit', 'zimbra-mailbox', 'syslog', 'zimbra-nginx'];

export interface LogRule {
  readonly id: string;
  readonly service: string;
  /** `info`: recognised (lockout notices, lines without an address) but never counted. */
  readonly outcome: 'failure' | 'success' | 'info';
  readonly type: LogType;
  /** mailboxd lines: the logger (%c{1}). */
  readonly logger?: string;
  /** syslog and nginx lines: the program (syslog) or the message start (nginx). */
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
  /** Captured groups hold audit.log values, whose `;` Zimbra doubles (ZimbraLog.encodeArg): undo it. */
  readonly auditValues?: boolean;
  /** The proxy counts these in-line; the log line is only reported. */
  readonly proxySeen?: boolean;
  /** Counted only when no source of these types is configured (the same attempt is logged there). */
  readonly duplicateOf?: readonly LogType[];
}

/*
 * audit.log messages are `ZimbraLog.encodeAttrs` lists (common/.../ZimbraLog.java encodeArg): `key=value;`
 * joined by a space, `;` inside a value doubled, CR/LF turned into spaces. So a value is `(?:[^;]|;;)*`
 * and a name can hold `;;` (issue 18: such failures were missed). The error of a failed login is
 * `AuthFailedServiceException.getMessage()` = `authentication failed for [U]` (AccountServiceException.java)
 * plus `e.getReason(", %s")` (LdapProvisioning.authAccount), which is empty when no reason was given:
 * `error=authentication failed for [U];`. The user group is greedy up to the last `]` (a name may hold `]`).
 */
const V = String.raw`(?:[^;]|;;)`;
const FAILED = String.raw`error=authentication failed for \[(?<user>${V}{0,256})\](?:, (?<reason>${V}{0,512}))?;$`;
const auditFailure = (protocol: string): RegExp => new RegExp(String.raw`^cmd=Auth; account=(?<account>${V}{0,256}); protocol=${protocol}; ${FAILED}`);
const auditSuccess = (protocol: string): RegExp => new RegExp(String.raw`^cmd=Auth; account=(?<account>${V}{0,256}); protocol=${protocol};$`);
const POSTFIX = /^postfix[\w.-]{0,32}(?:\/[\w.-]{1,32}){0,3}\/smtpd$/;

export const LOG_RULES: readonly LogRule[] = [
  // --- audit.log (zimbra.security) -------------------------------------------------------------
  { id: 'imap.auth-failed', service: 'imap', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, message: auditFailure('imap'), address: 'mail-context' },
  { id: 'pop3.auth-failed', service: 'pop3', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, message: auditFailure('pop3'), address: 'mail-context' },
  { id: 'smtp.auth-failed', service: 'smtp', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, oproto: 'smtp', message: auditFailure('soap'), address: 'http-context', duplicateOf: ['syslog'] },
  { id: 'soap.auth-failed', service: 'soap', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, oproto: '!smtp', message: auditFailure('soap'), address: 'http-context', proxySeen: true },
  { id: 'dav.auth-failed', service: 'dav', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, message: auditFailure('http_dav'), address: 'http-context', proxySeen: true },
  { id: 'rest.auth-failed', service: 'rest', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, message: auditFailure('http_basic'), address: 'http-context', proxySeen: true },
  { id: 'activesync.auth-failed', service: 'activesync', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, message: auditFailure('zsync'), address: 'http-context', proxySeen: true },
  // <= 8.8.15.p29 / 9.0.0.p22 only; later versions log admin failures as protocol=soap.
  { id: 'admin.auth-failed', service: 'admin', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, message: new RegExp(String.raw`^cmd=AdminAuth; account=(?<account>${V}{0,256}); ${FAILED}`), address: 'http-context', proxySeen: true },
  { id: 'preauth.failed', service: 'preauth', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, message: new RegExp(String.raw`^cmd=PreAuth; account=(?<account>${V}{0,256}); admin=\w{1,5}; ${FAILED}`), address: 'http-context', proxySeen: true },
  { id: 'account.lockout', service: 'account', outcome: 'info', type: 'zimbra-audit', logger: 'security', auditValues: true, message: new RegExp(String.raw`^cmd=Auth; account=(?<account>${V}{0,256}); error=account lockout due to too many failed logins;$`), address: 'none' },
  // Recovery-code login (SOAP AuthRequest with <recoveryCode>): LdapProvisioning.reportException writes
  // `cmd=Auth; account=A; error=recovery code not found|expired|mismatch|invalid recovery code map...[ - account lockout];`
  // with no protocol. It is a SOAP request: the proxy counts it in-line.
  { id: 'soap.recovery-code-failed', service: 'soap', outcome: 'failure', type: 'zimbra-audit', logger: 'security', auditValues: true, message: new RegExp(String.raw`^cmd=Auth; account=(?<account>${V}{0,256}); error=(?<reason>(?:recovery code|invalid recovery code)${V}{0,256});$`), address: 'http-context', proxySeen: true },
  // zimbra-proxy's route lookup for an unknown IMAP/POP3 user, with LC zimbra_additional_logging=true
  // (8.8.15.p45+, 9.0.0.p38+, 10.0.6+): zm-nginx-lookup-store NginxLookupExtension.useDomainExternalRoutingWhenNoUserFound
  // logs `"Error occurred during authentication: account not found for [" + user + "]. oip=" + req.clientIp`
  // (Client-IP header set by nginx from its TCP peer). The message is NOT encoded: the user is raw, so the
  // address is the LAST `]. oip=` at the end of the line (a `]. oip=6.6.6.6` inside the name stays in the name).
  // Counted unless zimbra-proxy's nginx.log is configured (the same attempt is logged there).
  { id: 'mailproxy.unknown-account', service: 'mailproxy', outcome: 'failure', type: 'zimbra-audit', logger: 'security', message: /^Error occurred during authentication: account not found for \[(?<user>[^\n]{0,512})\]\. oip=(?<ip>[0-9A-Fa-f:.]{2,45})$/, address: 'message', duplicateOf: ['zimbra-nginx'] },
  { id: 'imap.auth-ok', service: 'imap', outcome: 'success', type: 'zimbra-audit', logger: 'security', auditValues: true, message: auditSuccess('imap'), address: 'mail-context' },
  { id: 'pop3.auth-ok', service: 'pop3', outcome: 'success', type: 'zimbra-audit', logger: 'security', auditValues: true, message: auditSuccess('pop3'), address: 'mail-context' },
  { id: 'smtp.auth-ok', service: 'smtp', outcome: 'success', type: 'zimbra-audit', logger: 'security', auditValues: true, oproto: 'smtp', message: auditSuccess('soap'), address: 'http-context', duplicateOf: ['syslog'] },

  // --- mailbox.log -------------------------------------------------------------------------------
  { id: 'imap.auth-failed', service: 'imap', outcome: 'failure', type: 'zimbra-mailbox', logger: 'imap', message: /^authentication failed for \[(?<user>[^\]]{0,256})\] \((?<reason>[^)]{0,512})\)$/, address: 'mail-context', duplicateOf: ['zimbra-audit'] },
  { id: 'imap.unknown-account', service: 'imap', outcome: 'failure', type: 'zimbra-mailbox', logger: 'account', thread: /^Imap/, message: /^authentication failed for (?<user>\S{1,256}) \(no such account\)$/, address: 'mail-context' },
  { id: 'pop3.unknown-account', service: 'pop3', outcome: 'failure', type: 'zimbra-mailbox', logger: 'account', thread: /^Pop3/, message: /^authentication failed for (?<user>\S{1,256}) \(no such account\)$/, address: 'mail-context' },
  { id: 'smtp.unknown-account', service: 'smtp', outcome: 'failure', type: 'zimbra-mailbox', logger: 'SoapEngine', oproto: 'smtp', message: /^handler exception: authentication failed for \[(?<user>[^\]]{0,256})\], (?<reason>account not found)$/, address: 'http-context', duplicateOf: ['syslog'] },
  { id: 'smtp.auth-failed', service: 'smtp', outcome: 'failure', type: 'zimbra-mailbox', logger: 'SoapEngine', oproto: 'smtp', message: /^handler exception: authentication failed for \[(?<user>[^\]]{0,256})\](?:, (?<reason>(?!account not found$)[^\n]{1,512}))?$/, address: 'http-context', duplicateOf: ['syslog', 'zimbra-audit'] },
  // SoapEngine.dispatchRequest logs `"handler exception: %s%s", e.getMessage(), e.getReason(", %s")`: no `, R` without a reason.
  { id: 'soap.auth-failed', service: 'soap', outcome: 'failure', type: 'zimbra-mailbox', logger: 'SoapEngine', oproto: '!smtp', message: /^handler exception: authentication failed for \[(?<user>[^\]]{0,256})\](?:, (?<reason>[^\n]{1,512}))?$/, address: 'http-context', proxySeen: true },
  // AUTHENTICATE with an authorization id other than the authentication id: Authenticator.authorize runs
  // AFTER the password was checked and found right (PlainAuthenticator.authenticate -> prov.authAccount ->
  // authorize), so this is not a password failure: recognised, never counted.
  { id: 'mail.authorization-failed', service: 'mail', outcome: 'info', type: 'zimbra-mailbox', logger: 'account', message: /^authorization failed for (?<user>[^\n]{1,256}) \((?<reason>account not found|authenticated user \S{1,256} has insufficient rights)\)$/, address: 'none' },
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

  // --- zimbra-proxy nginx.log (error_log at info) -------------------------------------------------------
  // A failed route lookup (unknown IMAP/POP3 user) writes two lines, one after the other in the same worker
  // (Zimbra/packages nginx_src_core.patch ngx_zm_lookup_process_response, then the on_failure handler in
  // zmmodules/mail/zmauth/ngx_mail_zmauth_module.c), each followed by nginx's mail log context
  // (ngx_mail_log_error, patched: `, client: IP:port, server: ADDR, login: "U"`). The second line is counted
  // (the detector checks that the first one came right before it); the first is recognised.
  { id: 'mailproxy.lookup-error', service: 'mailproxy', outcome: 'info', type: 'zimbra-nginx', message: /^zm lookup: an error is returned by zimbra lookup handler: (?<reason>[^\n]{0,1024})$/, address: 'none' },
  { id: 'mailproxy.auth-failed', service: 'mailproxy', outcome: 'failure', type: 'zimbra-nginx', message: /^An error occurred in mail zmauth: (?<reason>[^\n]{0,1024})$/, address: 'message' },
];

/** Every log rule id (README table, fixtures, metric labels). */
export function logRuleIds(): string[] {
  return [...new Set(LOG_RULES.map((r) => r.id))].sort();
}
