/**
 * In-line login detection rules, as data. Paths are the routed path (request-path.ts: as Zimbra's Jetty
 * routes it, rewrites applied). Facts from ../shared/zimbra/auth-signals.md §3-4 and §9, read in
 * zm-mailbox (web.xml.production servlet mappings, SoapEngine, AuthUtil.basicAuthRequest, UserServlet)
 * and zm-jetty-conf (jetty.xml.production rewrite rules):
 *
 * - soap:    POST to SoapServlet (`/service/soap/*`) or AdminServlet (`/service/admin/soap/*`) whose body
 *            holds an AuthRequest (password, second factor, recovery code, preauth) or a
 *            ChangePasswordRequest (oldPassword: needs no login, a password oracle). Failure = a Fault
 *            with one of `faults`, at any HTTP status, one per failed request of a batch.
 * - basic:   ANY request carrying `Authorization: Basic`, whatever its path, method or Upgrade header
 *            (DAV, UserServlet /home and /user, ActiveSync, EWS, AutoDiscover, /downloads, and whatever an
 *            extension maps). Failure = 401. Success only from a servlet known to check the password,
 *            and only when the request carried no auth-token cookie (UserServletUtil.getAccount takes the
 *            cookie first and never looks at Basic then).
 * - form:    the webmail login (login.jsp / LoginTag): request parameters (query + urlencoded body)
 *            with loginOp=login and a username and password, or a `totpcode` (the 2FA step needs no
 *            POST and no loginOp). Any path outside /service/: the webmail context sits at
 *            zimbraMailURL. Failure = 200 without a non-empty ZM_AUTH_TOKEN; success = the cookie set,
 *            unless the page is the TOTP form.
 * - preauth: PreAuthServlet (`/service/preauth`) with a `preauth` parameter. Failure = 400.
 */
export type LoginKind = 'form' | 'soap' | 'basic' | 'preauth';

export interface HttpRule {
  /** Metric label and ban `service`. */
  readonly service: string;
  readonly kind: LoginKind;
  /** Routed paths this rule covers (basic: used only to name the service and to credit successes). */
  readonly path: RegExp;
  /** Rule id reported for a failure (for soap: the default when the fault code has no own id). */
  readonly failure: string;
  /** Rule id reported for a success. */
  readonly success: string;
  /** soap only: fault codes that are failed logins, each with the rule id it reports. */
  readonly faults?: Readonly<Record<string, string>>;
  /**
   * basic only: a 2xx from this servlet proves the Basic credentials (it refuses anonymous requests).
   * DavServlet.service sends 401 unless basicAuthRequest (or a token) yields an account; UserServlet
   * does not (with a bad password it serves a public share anonymously, AuthUtil.basicAuthRequest
   * with sendChallenge=false), nor do DavWellKnownServlet (a redirect, no auth) or AutoDiscoverServlet.
   */
  readonly credits?: boolean;
}

const ACCOUNT_FAULTS = {
  'account.AUTH_FAILED': 'soap.auth-failed',
  'account.TWO_FACTOR_AUTH_FAILED': 'soap.2fa-failed',
} as const;

export const SOAP_RULES: readonly HttpRule[] = [
  {
    service: 'admin', kind: 'soap', path: /^\/service\/admin\/soap(?:\/|$)/i, failure: 'admin.auth-failed', success: 'admin.auth-ok',
    // Zimbra >= 8.8.15.p30 / 9.0.0.p23 / 10.x answer unknown admin names with PERM_DENIED instead of AUTH_FAILED.
    faults: { 'account.AUTH_FAILED': 'admin.auth-failed', 'account.TWO_FACTOR_AUTH_FAILED': 'admin.2fa-failed', 'service.PERM_DENIED': 'admin.perm-denied' },
  },
  { service: 'soap', kind: 'soap', path: /^\/service\/soap(?:\/|$)/i, failure: 'soap.auth-failed', success: 'soap.auth-ok', faults: ACCOUNT_FAULTS },
];

/** Servlets that check Basic credentials (after Jetty's rewrites); the first match names the service. */
export const BASIC_RULES: readonly HttpRule[] = [
  { service: 'dav', kind: 'basic', path: /^\/service\/dav(?:\/|$)/i, failure: 'dav.auth-failed', success: 'dav.auth-ok', credits: true },
  { service: 'dav', kind: 'basic', path: /^\/service\/\.well-known(?:\/|$)/i, failure: 'dav.auth-failed', success: 'dav.auth-ok' },
  { service: 'rest', kind: 'basic', path: /^\/service\/(?:home|user)(?:\/|$)/i, failure: 'rest.auth-failed', success: 'rest.auth-ok' },
  // Closed-source (Network Edition) servlets: they answer nothing but OPTIONS without authentication.
  { service: 'activesync', kind: 'basic', path: /^\/service\/extension\/zimbrasync(?:\/|$)/i, failure: 'activesync.auth-failed', success: 'activesync.auth-ok', credits: true },
  { service: 'ews', kind: 'basic', path: /^\/service\/extension\/zimbraews(?:\/|$)/i, failure: 'ews.auth-failed', success: 'ews.auth-ok', credits: true },
  { service: 'autodiscover', kind: 'basic', path: /^\/service\/autodiscover(?:\/|$)/i, failure: 'autodiscover.auth-failed', success: 'autodiscover.auth-ok' },
  { service: 'downloads', kind: 'basic', path: /^\/(?:zimbra\/)?downloads(?:\/|$)/i, failure: 'downloads.auth-failed', success: 'downloads.auth-ok' },
];

/** Basic credentials anywhere else: counted as attempts, never credited as a success. */
export const BASIC_OTHER: HttpRule = { service: 'basic', kind: 'basic', path: /^/, failure: 'basic.auth-failed', success: 'basic.auth-ok' };

export const FORM_RULE: HttpRule = { service: 'web-form', kind: 'form', path: /^\/(?!service(?:\/|$))/i, failure: 'form.auth-failed', success: 'form.auth-ok' };

export const PREAUTH_RULE: HttpRule = { service: 'preauth', kind: 'preauth', path: /^\/service\/preauth(?:\/|$)/i, failure: 'preauth.failed', success: 'preauth.ok' };

export const HTTP_RULES: readonly HttpRule[] = [FORM_RULE, ...SOAP_RULES, ...BASIC_RULES, BASIC_OTHER, PREAUTH_RULE];

/** Every rule id the HTTP detector can report (README table, fixtures, metric labels). */
export function httpRuleIds(): string[] {
  const ids = new Set<string>(['form.2fa-failed', 'http.refused-login']);
  for (const r of HTTP_RULES) {
    ids.add(r.failure);
    ids.add(r.success);
    for (const id of Object.values(r.faults ?? {})) ids.add(id);
  }
  return [...ids].sort();
}

export function soapRuleFor(path: string): HttpRule | undefined {
  return SOAP_RULES.find((r) => r.path.test(path));
}

export function basicRuleFor(path: string): HttpRule {
  return BASIC_RULES.find((r) => r.path.test(path)) ?? BASIC_OTHER;
}

/** The admin console's paths, held to admin.allow on every listener. */
export const ADMIN_PATH = /^\/(?:service\/admin(?:\/|$)|zimbraAdmin(?:\/|$))/i;
