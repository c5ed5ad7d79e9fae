/**
 * In-line login detection rules, as data. Each row says which requests are login attempts, how the
 * account is read from them, and which answers from Zimbra are failures or successes. The facts are
 * from ../shared/zimbra/auth-signals.md §3-4 (Zimbra 8.8.15 to 10.x):
 *
 * - form:    POST (or GET) `/` or `/zimbra/` with loginOp=login. Failure = 200 without a non-empty
 *            ZM_AUTH_TOKEN cookie; success = ZM_AUTH_TOKEN set, unless the page is the TOTP form
 *            (password right, second factor pending: neither).
 * - soap:    AuthRequest (JSON or XML, SOAP 1.1/1.2, directly in Body or inside a BatchRequest) with a
 *            password, two-factor code or preauth. Failure = a Fault with one of `faults` (HTTP 500, or
 *            200 inside BatchResponse); success = AuthResponse with an authToken and no
 *            twoFactorAuthRequired.
 * - basic:   a request that carried `Authorization: Basic`. Failure = 401; success = 2xx/3xx.
 *            A 401 to a request without credentials is the normal first leg of DAV: not counted.
 * - preauth: /service/preauth. Failure = 400; success = ZM_AUTH_TOKEN set.
 *
 * Paths are matched on the normalised path (see request-path.ts), case-insensitively.
 */
export type LoginKind = 'form' | 'soap' | 'basic' | 'preauth';

export interface HttpRule {
  /** Metric label and ban `service`. */
  readonly service: string;
  readonly kind: LoginKind;
  readonly methods: readonly string[] | 'any';
  readonly path: RegExp;
  /** Rule id reported for a failure (for soap: the default when the fault code has no own id). */
  readonly failure: string;
  /** Rule id reported for a success. */
  readonly success: string;
  /** soap only: fault codes that are failed logins, each with the rule id it reports. */
  readonly faults?: Readonly<Record<string, string>>;
}

const ACCOUNT_FAULTS = {
  'account.AUTH_FAILED': 'soap.auth-failed',
  'account.TWO_FACTOR_AUTH_FAILED': 'soap.2fa-failed',
} as const;

export const HTTP_RULES: readonly HttpRule[] = [
  { service: 'web-form', kind: 'form', methods: ['POST', 'GET'], path: /^\/(?:zimbra\/?)?(?:public\/login\.jsp)?$/i, failure: 'form.auth-failed', success: 'form.auth-ok' },
  {
    service: 'admin', kind: 'soap', methods: ['POST'], path: /^\/service\/admin\/soap(?:\/|$)/i, failure: 'admin.auth-failed', success: 'admin.auth-ok',
    // Zimbra >= 8.8.15.p30 / 9.0.0.p23 / 10.x answer unknown admin names with PERM_DENIED instead of AUTH_FAILED.
    faults: { 'account.AUTH_FAILED': 'admin.auth-failed', 'account.TWO_FACTOR_AUTH_FAILED': 'admin.2fa-failed', 'service.PERM_DENIED': 'admin.perm-denied' },
  },
  { service: 'soap', kind: 'soap', methods: ['POST'], path: /^\/service\/soap(?:\/|$)/i, failure: 'soap.auth-failed', success: 'soap.auth-ok', faults: ACCOUNT_FAULTS },
  { service: 'dav', kind: 'basic', methods: 'any', path: /^\/(?:service\/)?dav(?:\/|$)/i, failure: 'dav.auth-failed', success: 'dav.auth-ok' },
  { service: 'rest', kind: 'basic', methods: 'any', path: /^\/(?:service\/)?home(?:\/|$)/i, failure: 'rest.auth-failed', success: 'rest.auth-ok' },
  { service: 'activesync', kind: 'basic', methods: 'any', path: /^\/microsoft-server-activesync(?:\/|$)/i, failure: 'activesync.auth-failed', success: 'activesync.auth-ok' },
  { service: 'ews', kind: 'basic', methods: 'any', path: /^\/ews(?:\/|$)/i, failure: 'ews.auth-failed', success: 'ews.auth-ok' },
  { service: 'autodiscover', kind: 'basic', methods: 'any', path: /^\/autodiscover(?:\/|$)/i, failure: 'autodiscover.auth-failed', success: 'autodiscover.auth-ok' },
  { service: 'downloads', kind: 'basic', methods: 'any', path: /^\/zimbra\/downloads(?:\/|$)/i, failure: 'downloads.auth-failed', success: 'downloads.auth-ok' },
  { service: 'preauth', kind: 'preauth', methods: ['GET', 'POST'], path: /^\/service\/preauth(?:\/|$)/i, failure: 'preauth.failed', success: 'preauth.ok' },
];

/** Every rule id the HTTP detector can report (README table, fixtures, metric labels). */
export function httpRuleIds(): string[] {
  const ids = new Set<string>();
  for (const r of HTTP_RULES) {
    ids.add(r.failure);
    ids.add(r.success);
    for (const id of Object.values(r.faults ?? {})) ids.add(id);
  }
  if (HTTP_RULES.some((r) => r.kind === 'form')) ids.add('form.2fa-failed');
  return [...ids].sort();
}

export function findRule(method: string, path: string): HttpRule | undefined {
  for (const rule of HTTP_RULES) {
    if (rule.methods !== 'any' && !rule.methods.includes(method)) continue;
    if (rule.path.test(path)) return rule;
  }
  return undefined;
}
