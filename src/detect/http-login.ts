import type { IncomingHttpHeaders } from 'node:http';
import { canonicalAccount, hasUnsafeCharacters } from './account-name.js';
import { addParams, anyValue, firstNonEmpty, queryOf, type Params } from './form-params.js';
import { routedPath } from './request-path.js';
import { basicRuleFor, FORM_RULE, PREAUTH_RULE, soapRuleFor, type HttpRule } from './http-rules.js';
import { credentialRequests, parseSoapAnswer, parseSoapRequest, soapAnswers } from './soap.js';

/*
 * Classifies a request with certainty, as Zimbra will read it: a login with N attempts (for accounts
 * [...]), provably no login, or a refusal (the request cannot be read the way Zimbra reads it, or it
 * carries a login name that forges log lines). Then judges Zimbra's answer to a login, failing closed:
 * an answer that cannot be read whole counts every reserved attempt as a failure.
 */

/** One way a request checks credentials; a request can carry several (Basic on a SOAP login...). */
export interface LoginPart {
  readonly rule: HttpRule;
  readonly attempts: number;
  /** form: a second-factor code (2FA step two). */
  readonly secondFactor: boolean;
  /** The canonical account of each attempt (undefined where the request does not say), in order. */
  readonly accounts: ReadonlyArray<string | undefined>;
  /** soap: each attempt's batch correlator, when every attempt has its own (then faults map to attempts). */
  readonly requestIds?: readonly string[] | undefined;
}

/** A request recognised as a login attempt (or several: a SOAP batch, or Basic on a form post). */
export interface LoginRequest {
  readonly parts: readonly LoginPart[];
  /** Canonical login names named by the attempts (distinct); may be empty when the request does not say. */
  readonly accounts: string[];
  readonly attempts: number;
  /** The rule that names the ban when this login fails. */
  readonly rule: HttpRule;
  /** A success may be credited to the account (one account, and nothing else in the request could authenticate it). */
  readonly creditable: boolean;
}

export type RefusalReason = 'unreadable-login' | 'bad-login-name';

export type Classification =
  | { readonly kind: 'none' }
  | { readonly kind: 'login'; readonly login: LoginRequest }
  /** The body must be read (up to the cap) before deciding; then call classifyWithBody. */
  | { readonly kind: 'body'; readonly mode: 'soap' | 'form' }
  | {
      readonly kind: 'refuse';
      readonly status: 400;
      readonly reason: RefusalReason;
      readonly why: string;
      /** Attempts to count against the address (0: none evident). */
      readonly count: number;
      readonly rule: HttpRule;
      readonly accounts: string[];
    };

export interface RequestFacts {
  readonly method: string;
  readonly url: string;
  /** The path as Jetty decodes it (normalizeRequestPath); Jetty's rewrites are applied where they matter. */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly defaultDomain?: string | undefined;
}

export interface LoginResult {
  readonly failures: number;
  /** The account of each failure, where the answer says which attempt failed (or the request names one account). */
  readonly failedAccounts: readonly string[];
  /** Accounts whose login succeeded with certainty (their failures from this address are cleared). */
  readonly successAccounts: readonly string[];
  /** Successes seen (metrics), credited or not. */
  readonly successes: number;
  readonly ruleId: string;
}

const FORM_TYPE = /^\s*application\/x-www-form-urlencoded\s*(?:;|$)/i;
const FORM_CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)/i;
const SAFE_CHARSETS = /^(?:utf-?8|us-ascii|iso-8859-1|latin1)$/i;
/** Parameters login.jsp and LoginTag act on. */
const LOGIN_PARAMS = /(?:^|&)(?:[^=&]*%|loginOp|totpcode)/i;

interface Basic {
  readonly user: string | undefined;
}

/** `Authorization: Basic …` in any letter case (Zimbra's own servlets match `Basic ` exactly; extensions may not). */
function basicOf(headers: IncomingHttpHeaders): Basic | null {
  const auth = headers.authorization;
  if (!auth || !/^\s*basic(?:\s|$)/i.test(auth)) return null;
  const decoded = Buffer.from(auth.trim().slice(5).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return { user: colon === -1 ? undefined : decoded.slice(0, colon) };
}

/** The request carries a token that Zimbra would authenticate by instead of Basic. */
function competingCredential(headers: IncomingHttpHeaders, url: string): boolean {
  const cookie = headers.cookie ?? '';
  if (/(?:^|;)\s*ZM_(?:ADMIN_)?AUTH_TOKEN\s*=\s*[^;\s]/i.test(cookie) || /(?:^|;)\s*ZM_JWT/i.test(cookie)) return true;
  return /[?&](?:zauthtoken|authToken|zjwt)=/i.test(queryOf(url));
}

function isFormBody(headers: IncomingHttpHeaders): boolean {
  return FORM_TYPE.test(headers['content-type'] ?? '');
}

function refuse(why: string, reason: RefusalReason, count: number, rule: HttpRule, accounts: string[] = []): Classification {
  return { kind: 'refuse', status: 400, reason, why, count, rule, accounts };
}

/** A part as read from the request: its attempts' raw login names. */
interface RawPart {
  readonly rule: HttpRule;
  readonly names: ReadonlyArray<string | undefined>;
  readonly secondFactor?: boolean;
  readonly requestIds?: ReadonlyArray<string | undefined>;
}

/** Builds the login from its parts, or refuses it when a login name would forge log lines. */
function assemble(raw: RawPart[], defaultDomain: string | undefined, creditableKind: boolean): Classification {
  const attempts = raw.reduce((n, p) => n + p.names.length, 0);
  const rule = raw.find((p) => p.rule.kind === 'soap' || p.rule.kind === 'form')?.rule ?? raw[0]!.rule;
  const accounts: string[] = [];
  const parts: LoginPart[] = [];
  let unnamed = false;
  for (const p of raw) {
    const canon: Array<string | undefined> = [];
    for (const name of p.names) {
      if (name !== undefined && hasUnsafeCharacters(name)) {
        return refuse('a login name holds a control or line-break character', 'bad-login-name', attempts, rule, accounts);
      }
      const a = canonicalAccount(name, defaultDomain);
      // A bare name is completed by Zimbra with the request's virtual-host domain, which may not be
      // zimbra.defaultDomain: a success for it proves nothing about `<name>@<defaultDomain>`.
      if (a === undefined || !name!.includes('@')) unnamed = true;
      if (a !== undefined && !accounts.includes(a)) accounts.push(a);
      canon.push(a);
    }
    // Faults map to attempts only through correlators that are all present and all distinct.
    const ids = p.requestIds;
    const mapped = ids && ids.length === p.names.length && ids.every((id) => id) && new Set(ids).size === ids.length ? (ids as string[]) : undefined;
    parts.push({ rule: p.rule, attempts: p.names.length, secondFactor: p.secondFactor ?? false, accounts: canon, requestIds: mapped });
  }
  // A success is credited to an account only when it cannot belong to another one.
  const creditable = creditableKind && accounts.length === 1 && !unnamed;
  return { kind: 'login', login: { parts, accounts, attempts, rule, creditable } };
}

/**
 * First look, from the head alone. `listenerAdmin` is unused here (the admin allowlist is the gate's);
 * bodies are asked for only where they can carry a login.
 */
const NONE: Classification = { kind: 'none' };

export function classifyHead(f: RequestFacts): Classification {
  // Most requests: no credentials, no parameters, no body that could hold a login.
  if (f.headers.authorization === undefined && f.method !== 'POST' && !f.url.includes('?')) return NONE;
  const soap = f.method === 'POST' ? soapRuleFor(f.path) : undefined;
  if (soap) return { kind: 'body', mode: 'soap' };
  const inWebmail = FORM_RULE.path.test(f.path);
  const preauth = PREAUTH_RULE.path.test(f.path);
  if ((inWebmail || preauth) && isFormBody(f.headers) && hasBody(f.headers)) return { kind: 'body', mode: 'form' };
  return classifyWithBody(f, null);
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
}

/** The full decision, with the body when classifyHead asked for it (complete, up to the cap). */
export function classifyWithBody(f: RequestFacts, body: Buffer | null): Classification {
  const parts: RawPart[] = [];
  let creditable = true;

  const basic = basicOf(f.headers);
  if (basic) {
    const rule = basicRuleFor(routedPath(f.path));
    parts.push({ rule, names: [basic.user] });
    if (!rule.credits || f.method === 'OPTIONS' || competingCredential(f.headers, f.url)) creditable = false;
  }

  const soap = f.method === 'POST' ? soapRuleFor(f.path) : undefined;
  if (soap && body && body.length > 0) {
    const parsed = parseSoapRequest(body);
    if (!parsed.ok) {
      return refuse(`SOAP body not readable as Zimbra reads it: ${parsed.reason}`, 'unreadable-login', mentionsCredential(body) ? 1 : 0, soap);
    }
    const reqs = credentialRequests(parsed.doc).filter((r) => r.credential);
    if (reqs.some((r) => r.ambiguous)) {
      return refuse('a login request names two different accounts (attribute and element)', 'unreadable-login', reqs.length, soap);
    }
    if (reqs.length > 0) {
      parts.push({ rule: soap, names: reqs.map((r) => r.account), requestIds: reqs.map((r) => r.requestId) });
      if (!reqs.every((r) => r.creditable)) creditable = false;
    }
  }

  const inWebmail = FORM_RULE.path.test(f.path);
  const preauth = PREAUTH_RULE.path.test(f.path);
  if (inWebmail || preauth) {
    const query = queryOf(f.url);
    let params: Params | null = null;
    // Jetty merges the query and the form body: with a body, every query parameter counts (the name
    // may sit in the query and the password in the body).
    const formBody = body !== null && body.length > 0 && isFormBody(f.headers);
    if (query !== '' && (formBody || preauth || LOGIN_PARAMS.test(query))) params = addParams(new Map(), query);
    if (body && isFormBody(f.headers)) {
      const charset = FORM_CHARSET.exec(f.headers['content-type'] ?? '')?.[1];
      if (charset && !SAFE_CHARSETS.test(charset)) {
        return refuse(`form body in charset ${charset.slice(0, 32)}`, 'unreadable-login', /loginop|totpcode|password/i.test(body.toString('latin1')) ? 1 : 0, inWebmail ? FORM_RULE : PREAUTH_RULE);
      }
      params = addParams(params ?? new Map(), body.toString(charset && !/utf-?8/i.test(charset) && !/ascii/i.test(charset) ? 'latin1' : 'utf8'));
    }
    if (params && inWebmail) {
      const login = anyValue(params, 'loginOp', (v) => v === 'login');
      const username = firstNonEmpty(params, 'username');
      const password = firstNonEmpty(params, 'password');
      const totp = firstNonEmpty(params, 'totpcode');
      if (login && username !== undefined && password !== undefined) {
        parts.push({ rule: FORM_RULE, names: [username] });
      } else if (totp !== undefined) {
        // LoginTag's TOTP branch: any method, no loginOp; the account is the one of the pending token.
        parts.push({ rule: FORM_RULE, names: [username], secondFactor: true });
        creditable = false;
      }
    }
    if (params && preauth && firstNonEmpty(params, 'preauth') !== undefined) {
      parts.push({ rule: PREAUTH_RULE, names: [firstNonEmpty(params, 'account')] });
    }
  }

  if (parts.length === 0) return NONE;
  return assemble(parts, f.defaultDomain, creditable);
}

/** A body we cannot read names a credential element, in any spelling or escape we can think of. */
export function mentionsCredential(body: Buffer): boolean {
  const flat = body.toString('latin1').replace(/\0/g, '').replace(/\\(?:x[0-9a-f]{2}|u[0-9a-f]{4})/gi, (m) => String.fromCharCode(parseInt(m.slice(2), 16))).replace(/\\/g, '');
  // The credential elements, not `authToken` (every authenticated SOAP request carries one in its header).
  return /authrequest|changepasswordrequest|password|twofactorcode|recoverycode|preauth|totpcode/i.test(flat);
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
  return login.parts.some((p) => p.rule.kind === 'soap' || p.rule.kind === 'form');
}

/**
 * What Zimbra's answer says about the attempts. `body` is the whole (decoded) response body, or null
 * when it was needed but could not be read whole (too large, cut short, undecodable): then every
 * SOAP attempt counts as a failure (fail closed).
 */
export function classifyResponse(login: LoginRequest, status: number, headers: IncomingHttpHeaders, body: Buffer | null): LoginResult {
  let failures = 0;
  let successes = 0;
  let ruleId: string | null = null;
  const failedAccounts: string[] = [];
  /** `who`: the failed attempts' accounts where known; else the part's attempts in order. */
  const fail = (n: number, id: string, part: LoginPart, who?: ReadonlyArray<string | undefined>): void => {
    if (n <= 0) return;
    failures += n;
    ruleId ??= id;
    // Booked on an account only when certain: a failure booked on the wrong account is washed by that
    // account's next success (clearOnSuccess clears a pair's failures from the address).
    const named = who ?? (new Set(part.accounts).size === 1 && part.accounts[0] !== undefined ? Array(n).fill(part.accounts[0]) : []);
    for (const a of named) if (a) failedAccounts.push(a);
  };
  for (const part of login.parts) {
    const { rule } = part;
    switch (rule.kind) {
      case 'basic':
        if (status === 401) fail(1, rule.failure, part);
        else if (status >= 200 && status < 300) successes++;
        break;
      case 'preauth':
        if (status === 400) fail(1, rule.failure, part);
        else if (authCookieSet(headers)) successes++;
        break;
      case 'form':
        if (authCookieSet(headers)) {
          // After a right password with 2FA on, Zimbra sets a 2FA-usage token and shows the TOTP form.
          if (body && !/name\s*=\s*["']?totpcode/i.test(body.toString('utf8')) && !part.secondFactor) successes++;
          else if (body && part.secondFactor) successes++;
        } else {
          // No auth cookie: a failure whatever the status (login.jsp may redirect after a failed login,
          // zm-taglib ZJspSession.getLastServer with a ZM_LAST_SERVER cookie).
          fail(1, part.secondFactor ? 'form.2fa-failed' : rule.failure, part);
        }
        break;
      case 'soap': {
        const doc = body ? parseSoapAnswer(body.toString('utf8')) : null;
        if (!doc) {
          // SoapServlet answers 200 or 500 with a SOAP body whenever it ran the request; a gateway error
          // may hide one that ran. Another status with no SOAP body (ZimbraInvalidLoginFilter's 503, a
          // 4xx before the servlet) means nothing was evaluated.
          if (status === 200 || status === 500 || status === 502 || status === 504) fail(part.attempts, rule.failure, part, part.accounts);
          break;
        }
        const faults = rule.faults ?? {};
        let matched = 0;
        let first: string | undefined;
        const who: Array<string | undefined> = [];
        for (const a of soapAnswers(doc)) {
          if (a.fault !== undefined && a.fault in faults) {
            matched++;
            first ??= faults[a.fault];
            // BatchResponse children carry their request's requestId (SoapEngine.dispatch).
            const i = part.requestIds && a.requestId !== undefined ? part.requestIds.indexOf(a.requestId) : -1;
            who.push(i === -1 ? undefined : part.accounts[i]);
          } else if (a.success) successes++;
        }
        fail(matched, first ?? rule.failure, part, who.every((a) => a !== undefined) ? who : undefined);
        break;
      }
    }
  }
  const successAccounts = successes > 0 && login.creditable && failures === 0 ? login.accounts : [];
  return { failures, failedAccounts, successes, successAccounts, ruleId: ruleId ?? (successes > 0 ? login.rule.success : login.rule.failure) };
}
