import type { IncomingHttpHeaders } from 'node:http';
import { Enforcer } from '../policy/enforcer.js';
import type { HttpRule } from './http-rules.js';
import { authRequests, parseSoap, soapOutcome } from './soap.js';

/** A request recognised as a login attempt (or several: a SOAP batch). */
export interface LoginRequest {
  readonly rule: HttpRule;
  /** Normalised (lower-cased) login names; may be empty when the request does not say. */
  readonly accounts: string[];
  readonly attempts: number;
  /** form: a second-factor code without a password (2FA step two). */
  readonly secondFactor: boolean;
}

export interface LoginResult {
  readonly failures: number;
  readonly successes: number;
  readonly ruleId: string;
}

/** Whether the request body must be read before the request can be classified. */
export function needsRequestBody(rule: HttpRule, method: string, headers: IncomingHttpHeaders): boolean {
  if (method !== 'POST') return false;
  if (rule.kind === 'soap') return true;
  if (rule.kind === 'form') return /application\/x-www-form-urlencoded/i.test(headers['content-type'] ?? '');
  return false;
}

function basicUser(headers: IncomingHttpHeaders): { present: boolean; user: string | undefined } {
  const auth = headers.authorization;
  if (!auth || !/^basic\s/i.test(auth)) return { present: false, user: undefined };
  const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return { present: true, user: colon === -1 ? undefined : decoded.slice(0, colon) };
}

function accountsOf(...names: Array<string | undefined>): string[] {
  const out: string[] = [];
  for (const n of names) {
    const a = Enforcer.normalizeAccount(n);
    if (a && !out.includes(a)) out.push(a);
  }
  return out;
}

/**
 * Decides whether a request that matched `rule` is a login attempt. `body` is the request body when
 * needsRequestBody said so (complete, at most proxy.maxLoginBodyBytes).
 */
export function analyseRequest(rule: HttpRule, url: string, headers: IncomingHttpHeaders, body: Buffer | null): LoginRequest | null {
  switch (rule.kind) {
    case 'basic': {
      const b = basicUser(headers);
      return b.present ? { rule, accounts: accountsOf(b.user), attempts: 1, secondFactor: false } : null;
    }
    case 'preauth': {
      const mark = url.indexOf('?');
      if (mark === -1) return null;
      const q = new URLSearchParams(url.slice(mark + 1));
      if (!q.get('preauth')) return null;
      return { rule, accounts: accountsOf(q.get('account') ?? undefined), attempts: 1, secondFactor: false };
    }
    case 'form': {
      // login.jsp reads request parameters, which come from the query string and the form body alike.
      const mark = url.indexOf('?');
      if (!body && mark === -1) return null; // the login page itself: nothing to read
      const params = new URLSearchParams(mark === -1 ? '' : url.slice(mark + 1));
      if (body) for (const [k, v] of new URLSearchParams(body.toString('utf8'))) params.append(k, v);
      if (params.get('loginOp') !== 'login') return null;
      const username = params.get('username') ?? '';
      const password = params.get('password') ?? '';
      const totp = params.get('totpcode') ?? '';
      if (password !== '' && username !== '') return { rule, accounts: accountsOf(username), attempts: 1, secondFactor: false };
      if (totp !== '') return { rule, accounts: accountsOf(username || undefined), attempts: 1, secondFactor: true };
      return null;
    }
    case 'soap': {
      if (!body) return null;
      const text = body.toString('utf8');
      if (!text.includes('AuthRequest') && !text.includes('\\u')) return null;
      const doc = parseSoap(text);
      if (!doc) {
        // Unreadable to us but mentions AuthRequest: count it as one attempt rather than let it pass uncounted.
        return text.includes('AuthRequest') ? { rule, accounts: [], attempts: 1, secondFactor: false } : null;
      }
      const reqs = authRequests(doc).filter((r) => r.credential);
      if (reqs.length === 0) return null;
      return { rule, accounts: accountsOf(...reqs.map((r) => r.account)), attempts: reqs.length, secondFactor: false };
    }
  }
}

function authCookieSet(headers: IncomingHttpHeaders): boolean {
  const cookies = headers['set-cookie'] ?? [];
  for (const c of cookies) {
    const m = /^\s*(ZM_AUTH_TOKEN|ZM_ADMIN_AUTH_TOKEN)=([^;]*)/.exec(c);
    if (!m) continue;
    const value = m[2]!.trim().replace(/^"|"$/g, '');
    if (value !== '' && !/max-age=0\b/i.test(c)) return true;
  }
  return false;
}

/** Whether classifyResponse needs the response body for this login. */
export function needsResponseBody(login: LoginRequest): boolean {
  return login.rule.kind === 'soap' || login.rule.kind === 'form';
}

/**
 * What Zimbra's answer says about the attempt(s). `body` is the response body up to the cap (or
 * null when not needed); a partial body is judged on what was read.
 */
export function classifyResponse(login: LoginRequest, status: number, headers: IncomingHttpHeaders, body: Buffer | null): LoginResult {
  const { rule } = login;
  const none = { failures: 0, successes: 0, ruleId: rule.failure };
  switch (rule.kind) {
    case 'basic':
      if (status === 401) return { failures: 1, successes: 0, ruleId: rule.failure };
      if (status >= 200 && status < 400) return { failures: 0, successes: 1, ruleId: rule.success };
      return none;
    case 'preauth':
      if (status === 400) return { failures: 1, successes: 0, ruleId: rule.failure };
      if (authCookieSet(headers)) return { failures: 0, successes: 1, ruleId: rule.success };
      return none;
    case 'form': {
      if (authCookieSet(headers)) {
        // After a right password with 2FA on, Zimbra sets a 2FA-usage token and shows the TOTP form.
        if (body && /name\s*=\s*["']?totpcode/i.test(body.toString('utf8'))) return none;
        return { failures: 0, successes: 1, ruleId: rule.success };
      }
      if (status === 200) return { failures: 1, successes: 0, ruleId: login.secondFactor ? 'form.2fa-failed' : rule.failure };
      return none;
    }
    case 'soap': {
      if (!body) return none;
      const doc = parseSoap(body.toString('utf8'));
      if (!doc) return none;
      const out = soapOutcome(doc);
      const faults = rule.faults ?? {};
      const matched = out.faultCodes.filter((c) => c in faults);
      const failures = Math.min(matched.length, login.attempts);
      if (failures > 0) return { failures, successes: Math.min(out.successes, login.attempts - failures), ruleId: faults[matched[0]!] ?? rule.failure };
      if (out.successes > 0) return { failures: 0, successes: Math.min(out.successes, login.attempts), ruleId: rule.success };
      return none;
    }
  }
}
