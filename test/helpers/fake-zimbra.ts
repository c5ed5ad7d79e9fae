import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { XMLParser } from 'fast-xml-parser';

/*
 * A stand-in Zimbra for tests. It answers the auth endpoints the way ../shared/zimbra/auth-signals.md
 * documents for 8.8.15-10.x (status codes, SOAP fault bodies in JSON and XML, BatchResponse with a
 * fault under HTTP 200, the form login page re-rendered with HTTP 200, Basic-auth 401 with
 * `WWW-Authenticate: BASIC realm="Zimbra"`) and records every request that reached it.
 */

export interface FakeUser {
  readonly password: string;
  readonly admin?: boolean;
  /** Second factor code; the account has 2FA on when set. */
  readonly totp?: string;
}

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly remoteAddress: string;
  readonly body: string;
}

/** One credential check the stand-in evaluated (what an attacker gets to learn from). */
export interface CredentialCheck {
  /** The client address Zimbra would log (X-Forwarded-For from the gatekeeper). */
  readonly ip: string;
  readonly account: string;
  readonly kind: 'soap' | 'change-password' | 'basic' | 'form' | 'totp' | 'preauth';
  readonly ok: boolean;
}

export interface FakeZimbra {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  /** Every credential check evaluated, in order. */
  readonly checks: CredentialCheck[];
  /** Checks evaluated for requests from `ip`. */
  checksFrom(ip: string): CredentialCheck[];
  /** Requests whose path starts with `prefix`. */
  reached(prefix?: string): RecordedRequest[];
  close(): Promise<void>;
}

export interface FakeZimbraOptions {
  readonly users?: Record<string, FakeUser>;
  /** Serve HTTPS with this certificate (Zimbra usually has a self-signed one). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Hold every auth answer this long (makes concurrent bursts really concurrent). */
  readonly authDelayMs?: number;
  readonly port?: number;
}

export const DEFAULT_USERS: Record<string, FakeUser> = {
  'user@example.com': { password: 'right-password' },
  'admin@example.com': { password: 'admin-password', admin: true },
  'twofa@example.com': { password: 'twofa-password', totp: '123456' },
};

const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', removeNSPrefix: true, textNodeName: '#text', parseTagValue: false });
const TOKEN = '0_4a4f18e6bf626bdeb86ad966b4579a2995479def_69643d33363a';
const LOGIN_PAGE = (error: string) =>
  `<!DOCTYPE html><html><head><title>Zimbra Web Client Sign In</title></head><body><form method="post" name="loginForm" action="/">` +
  `<input type="hidden" name="loginOp" value="login"/><input type="hidden" name="login_csrf" value="a1b2c3"/>` +
  `${error ? `<div id="errorMessageDiv" class="errorMessage">${error}</div>` : ''}` +
  `<input id="username" name="username" type="text"/><input id="password" name="password" type="password"/></form></body></html>`;
const TOTP_PAGE = (error: string) =>
  `<!DOCTYPE html><html><body><form method="post" action="/"><input type="hidden" name="loginOp" value="login"/>` +
  `${error ? `<div id="errorMessageDiv" class="errorMessage">${error}</div>` : ''}` +
  `<input id="totpcode" name="totpcode" type="text" autocomplete="off"/></form></body></html>`;
const AUTH_FAILED_TEXT = 'The username or password is incorrect. Verify that CAPS LOCK is not on, and then retype the current username and password.';

function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const t = o['#text'] ?? o._content;
    if (t !== undefined) return String(t);
  }
  return undefined;
}

function list(v: unknown): unknown[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

type AuthAnswer = { ok: true; twoFactor: boolean } | { ok: false; code: string; reason: string; name: string };

type Recorder = (kind: CredentialCheck['kind'], account: string, ok: boolean) => void;

/** Domains with zimbraVirtualHostname set (a hosted, multi-domain install). */
const VHOSTS: Record<string, string> = { 'mail.other.test': 'other.test' };

/** Auth.handle (`<virtualHost>`) and AuthUtil.basicAuthRequest (HttpUtil.getVirtualHost): a bare name gets the virtual host's domain. */
function withVirtualHost(name: string, host: string | undefined): string {
  if (name.includes('@') || !host) return name;
  const d = VHOSTS[host.toLowerCase().replace(/:\d+$/, '')];
  return d ? `${name}@${d}` : name;
}

/**
 * Element.getAttribute as Zimbra has it (common/.../soap/Element.java): XMLElement takes the attribute,
 * then the first child element's text; JSONElement the key, then the `_attrs` map.
 */
function attr(req: Record<string, unknown>, key: string): string | undefined {
  if (req[`@_${key}`] !== undefined) return String(req[`@_${key}`]);
  const el = text(list(req[key])[0]);
  if (el !== undefined) return el;
  const attrs = req._attrs as Record<string, unknown> | undefined;
  return attrs && typeof attrs === 'object' && attrs[key] !== undefined ? String(attrs[key]) : undefined;
}

function checkAuth(users: Record<string, FakeUser>, req: Record<string, unknown>, admin: boolean, record: Recorder): AuthAnswer {
  // account/Auth.java: an <authToken> is validated and answered for the TOKEN's account; <account> and
  // <password> are never compared (verifyAccount defaults to false).
  const tok = text(list(req.authToken)[0]);
  if (!admin && tok === TOKEN) return { ok: true, twoFactor: false };
  const a = checkAuthInner(users, req, admin);
  const name = withVirtualHost((text(list(req.account)[0]) ?? text(req['@_name']) ?? text(req.name) ?? '').toLowerCase(), text(list(req.virtualHost)[0]));
  if (attr(req, 'password') || attr(req, 'twoFactorCode')) record('soap', name, a.ok);
  return a;
}

/** ChangePasswordRequest (needsAuth=false): getAttribute(account) and getAttribute(oldPassword), AUTH_FAILED when wrong. */
function checkChangePassword(users: Record<string, FakeUser>, req: Record<string, unknown>, record: Recorder): AuthAnswer {
  const name = (attr(req, 'account') ?? '').toLowerCase();
  const ok = users[name]?.password === attr(req, 'oldPassword');
  record('change-password', name, ok);
  return ok ? { ok: true, twoFactor: false } : { ok: false, code: 'account.AUTH_FAILED', reason: `authentication failed for [${name}]`, name };
}

function checkAuthInner(users: Record<string, FakeUser>, req: Record<string, unknown>, admin: boolean): AuthAnswer {
  const name = withVirtualHost((text(list(req.account)[0]) ?? text(req['@_name']) ?? text(req.name) ?? '').toLowerCase(), text(list(req.virtualHost)[0]));
  const password = attr(req, 'password');
  const code = text(req.twoFactorCode);
  const user = users[name];
  if (admin) {
    // >= 8.8.15.p30 / 9.0.0.p23 / 10.x: unknown or non-admin accounts get PERM_DENIED before the password check.
    if (!user) return { ok: false, code: 'service.PERM_DENIED', reason: 'permission denied: Error in Authentication', name };
    if (!user.admin) return { ok: false, code: 'service.PERM_DENIED', reason: 'permission denied: not an admin account', name };
  }
  if (!user || password !== user.password) return { ok: false, code: 'account.AUTH_FAILED', reason: `authentication failed for [${name}]`, name };
  if (user.totp) {
    if (code === undefined) return { ok: true, twoFactor: true };
    if (code !== user.totp) return { ok: false, code: 'account.TWO_FACTOR_AUTH_FAILED', reason: `authentication failed for [${name}]`, name };
  }
  return { ok: true, twoFactor: false };
}

function jsonFault(a: { code: string; reason: string }): Record<string, unknown> {
  return { Code: { Value: 'soap:Sender' }, Reason: { Text: a.reason }, Detail: { Error: { Code: a.code, Trace: 'qtp366590980-155736:1618483353424:124048f45be83bed', _jsns: 'urn:zimbra' } } };
}

function xmlFault(a: { code: string; reason: string }): string {
  return (
    `<soap:Fault><soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code><soap:Reason><soap:Text>${a.reason}</soap:Text></soap:Reason>` +
    `<soap:Detail><Error xmlns="urn:zimbra"><Code>${a.code}</Code><Trace>btpool0-14://mail.example:7071/service/admin/soap:1336654190637:40a62659afaeacf2</Trace></Error></soap:Detail></soap:Fault>`
  );
}

function jsonAuthResponse(a: { twoFactor: boolean }, ns: string): Record<string, unknown> {
  return a.twoFactor
    ? { authToken: [{ _content: `${TOKEN}2fa` }], twoFactorAuthRequired: { _content: true }, lifetime: 300000, _jsns: ns }
    : { authToken: [{ _content: TOKEN }], lifetime: 36000000, csrfToken: { _content: '0_4a4f18e6bf626bdeb86ad966b4579a2995479def' }, _jsns: ns };
}

function xmlAuthResponse(a: { twoFactor: boolean }, ns: string): string {
  return a.twoFactor
    ? `<AuthResponse xmlns="${ns}"><authToken>${TOKEN}2fa</authToken><twoFactorAuthRequired>true</twoFactorAuthRequired><lifetime>300000</lifetime></AuthResponse>`
    : `<AuthResponse xmlns="${ns}"><authToken>${TOKEN}</authToken><lifetime>43200000</lifetime></AuthResponse>`;
}

function xmlEnvelope(body: string): string {
  return `<?xml version="1.0"?>\n<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header><context xmlns="urn:zimbra"><change token="9836"/></context></soap:Header><soap:Body>${body}</soap:Body></soap:Envelope>`;
}

/**
 * Zimbra's lenient JSON reader, approximately (common/src/java/com/zimbra/common/soap/Element.java):
 * `\xHH` escapes, single-quoted strings, and its rule for duplicate keys (addUniqueElement): an empty
 * object or null never overrides an earlier value, anything else replaces it.
 */
function lenientJson(raw: string): Record<string, unknown> {
  const text = raw.replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1');
  let i = 0;
  const ws = (): void => {
    while (i < text.length && /[\s\u000b\u000c\u001c-\u001f]/.test(text[i]!)) i++;
  };
  const str = (): string => {
    const q = text[i++]!;
    let out = '';
    while (i < text.length && text[i] !== q) {
      if (text[i] === '\\') {
        const c = text[i + 1]!;
        if (c === 'u') {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
          continue;
        }
        out += ({ n: '\n', r: '\r', t: '\t', b: '\b', f: '\f' } as Record<string, string>)[c] ?? c;
        i += 2;
        continue;
      }
      out += text[i++];
    }
    i++;
    return out;
  };
  const isEmpty = (v: unknown): boolean => v === null || (typeof v === 'object' && Object.keys(v as object).length === 0);
  const value = (): unknown => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      for (;;) {
        ws();
        if (text[i] === '}') {
          i++;
          return obj;
        }
        const key = text[i] === '"' || text[i] === "'" ? str() : /^[\w$.-]+/.exec(text.slice(i))![0];
        if (!(text[i - 1] === '"' || text[i - 1] === "'")) i += key.length;
        ws();
        if (text[i] === ':' || text[i] === '=') i += text[i + 1] === '>' ? 2 : 1;
        const v = value();
        if (!(key in obj) || !isEmpty(v)) obj[key] = v;
        ws();
        if (text[i] === ',' || text[i] === ';') i++;
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      for (;;) {
        ws();
        if (text[i] === ']') {
          i++;
          return arr;
        }
        arr.push(value());
        ws();
        if (text[i] === ',') i++;
      }
    }
    if (c === '"' || c === "'") return str();
    const m = /^[^,}\]\s]+/.exec(text.slice(i));
    if (!m) throw new Error('bad JSON');
    i += m[0].length;
    return m[0] === 'null' ? null : m[0] === 'true' ? true : m[0] === 'false' ? false : Number.isNaN(Number(m[0])) ? m[0] : Number(m[0]);
  };
  const v = value();
  if (!v || typeof v !== 'object') throw new Error('not an object');
  return v as Record<string, unknown>;
}

/**
 * login.jsp after a failed zm:login: zm:getPreLoginRedirectUrl (zm-taglib ZJspSession.getLastServer)
 * redirects when a ZM_LAST_SERVER cookie names another host and zlastserver != 1.
 */
function lastServerRedirect(req: http.IncomingMessage, params: URLSearchParams, res: http.ServerResponse): boolean {
  const m = /(?:^|;\s*)ZM_LAST_SERVER=([^;]*)/.exec(req.headers.cookie ?? '');
  const host = String(req.headers.host ?? '').replace(/:\d+$/, '');
  if (!m || params.get('zlastserver') === '1' || m[1]!.toLowerCase() === host.toLowerCase()) return false;
  res.writeHead(302, { location: `http://${m[1]}/?zlastserver=1`, 'set-cookie': ['ZM_LOGIN_CSRF=; Max-Age=0'] });
  res.end();
  return true;
}

/** Jetty's UrlEncoded also decodes `%uXXXX`; URLSearchParams does not. */
function jettyParams(encoded: string): URLSearchParams {
  return new URLSearchParams(encoded.replace(/%u([0-9a-fA-F]{4})/g, (_m, h: string) => encodeURIComponent(String.fromCharCode(parseInt(h, 16)))));
}

/** SoapEngine: the first byte decides XML (Xerces: UTF-16 detected from `3C 00`) or JSON. */
function soap(users: Record<string, FakeUser>, rawBody: Buffer, admin: boolean, record: Recorder): { status: number; type: string; body: string; cookie?: string } {
  const isJson = rawBody[0] !== 0x3c;
  const raw = !isJson && rawBody[1] === 0x00 ? rawBody.toString('utf16le') : rawBody.toString('utf8');
  let doc: Record<string, unknown>;
  try {
    doc = isJson ? lenientJson(raw) : (xml.parse(raw) as Record<string, unknown>);
  } catch {
    return { status: 500, type: 'text/plain', body: 'malformed' };
  }
  // getBodyElement: the first Body.
  const body = (list(isJson ? doc.Body : (doc.Envelope as Record<string, unknown> | undefined)?.Body)[0] ?? {}) as Record<string, unknown>;
  const ns = admin ? 'urn:zimbraAdmin' : 'urn:zimbraAccount';
  const cookieName = admin ? 'ZM_ADMIN_AUTH_TOKEN' : 'ZM_AUTH_TOKEN';
  // Only the Body's first child runs (SoapProtocol.getBodyElement); a BatchRequest runs all of its children.
  const firstName = Object.keys(body).find((k) => !k.startsWith('@_') && k !== '_jsns' && k !== '#text');
  const batch = firstName === 'BatchRequest' ? (list(body.BatchRequest)[0] as Record<string, unknown> | undefined) : undefined;
  if (batch) {
    // BatchRequest: HTTP 200 always; one answer per child, in order, each tagged with its requestId.
    const answers: Array<{ a: AuthAnswer; id: unknown }> = [];
    for (const [name, v] of Object.entries(batch)) {
      for (const r of list(v) as Array<Record<string, unknown>>) {
        if (name === 'AuthRequest') answers.push({ a: checkAuth(users, r, admin, record), id: r.requestId ?? r['@_requestId'] });
        else if (name === 'ChangePasswordRequest') answers.push({ a: checkChangePassword(users, r, record), id: r.requestId ?? r['@_requestId'] });
        else if (!name.startsWith('@_') && name !== '_jsns' && name !== '#text') {
          answers.push({ a: { ok: false, code: 'service.UNKNOWN_DOCUMENT', reason: `unknown document: ${name}`, name }, id: r?.requestId ?? r?.['@_requestId'] });
        }
      }
    }
    const ok = answers.filter((x) => x.a.ok);
    const faults = answers.filter((x) => !x.a.ok);
    const cookie = ok.length > 0 ? `${cookieName}=${TOKEN}; Path=/; HttpOnly` : undefined;
    if (isJson) {
      const resp: Record<string, unknown> = { _jsns: 'urn:zimbra' };
      if (ok.length) resp.AuthResponse = ok.map((x) => ({ ...jsonAuthResponse(x.a as Extract<AuthAnswer, { ok: true }>, ns), ...(x.id ? { requestId: x.id } : {}) }));
      if (faults.length) resp.Fault = faults.map((x) => ({ ...jsonFault(x.a as Extract<AuthAnswer, { ok: false }>), ...(x.id ? { requestId: x.id } : {}) }));
      return { status: 200, type: 'application/json', body: JSON.stringify({ Header: { context: { _jsns: 'urn:zimbra' } }, Body: { BatchResponse: resp }, _jsns: 'urn:zimbraSoap' }), cookie };
    }
    const parts = answers.map((x) => (x.a.ok ? xmlAuthResponse(x.a, ns) : xmlFault(x.a))).join('');
    return { status: 200, type: 'application/soap+xml', body: xmlEnvelope(`<BatchResponse xmlns="urn:zimbra">${parts}</BatchResponse>`), cookie };
  }
  const first = firstName ? (list(body[firstName])[0] as Record<string, unknown>) : undefined;
  let a: AuthAnswer | null = null;
  if (firstName === 'AuthRequest' && first) a = checkAuth(users, first, admin, record);
  else if (firstName === 'ChangePasswordRequest' && first) a = checkChangePassword(users, first, record);
  if (!a) {
    const resp = isJson ? JSON.stringify({ Body: { NoOpResponse: { _jsns: 'urn:zimbraMail' } }, _jsns: 'urn:zimbraSoap' }) : xmlEnvelope('<NoOpResponse xmlns="urn:zimbraMail"/>');
    return { status: 200, type: isJson ? 'application/json' : 'application/soap+xml', body: resp };
  }
  if (!a.ok) {
    // SoapServlet.sendResponse: HTTP 500 whenever the Body's first child is a Fault.
    return isJson
      ? { status: 500, type: 'application/json', body: JSON.stringify({ Header: { context: { change: { token: 32934 }, _jsns: 'urn:zimbra' } }, Body: { Fault: jsonFault(a) }, _jsns: 'urn:zimbraSoap' }) }
      : { status: 500, type: 'application/soap+xml', body: xmlEnvelope(xmlFault(a)) };
  }
  if (firstName === 'ChangePasswordRequest') {
    return isJson
      ? { status: 200, type: 'application/json', body: JSON.stringify({ Body: { ChangePasswordResponse: { authToken: [{ _content: TOKEN }], _jsns: ns } } }) }
      : { status: 200, type: 'application/soap+xml', body: xmlEnvelope(`<ChangePasswordResponse xmlns="${ns}"><authToken>${TOKEN}</authToken></ChangePasswordResponse>`) };
  }
  const cookie = `${cookieName}=${a.twoFactor ? `${TOKEN}2fa` : TOKEN}; Path=/; HttpOnly`;
  return isJson
    ? { status: 200, type: 'application/json', body: JSON.stringify({ Header: { context: { change: { token: 32929 }, _jsns: 'urn:zimbra' } }, Body: { AuthResponse: jsonAuthResponse(a, ns) }, _jsns: 'urn:zimbraSoap' }), cookie }
    : { status: 200, type: 'application/soap+xml', body: xmlEnvelope(xmlAuthResponse(a, ns)), cookie };
}

/** The servlet path Jetty routes on: ends at ? or #, decoded, dot segments resolved, jetty.xml rewrites applied. */
function jettyPath(url: string): string {
  let p = url.split(/[?#]/)[0]!;
  try {
    p = decodeURIComponent(p);
  } catch {
    return '/';
  }
  const out: string[] = [];
  for (const seg of p.split('/')) {
    const s = seg.split(';')[0]!;
    if (s === '' || s === '.') continue;
    if (s === '..') out.pop();
    else out.push(s);
  }
  const path = `/${out.join('/')}`;
  const rewrites: Array<[RegExp, string]> = [
    [/^\/Microsoft-Server-ActiveSync(\/.*)?$/, '/service/extension/zimbrasync'],
    [/^\/ews\/Exchange\.asmx(\/.*)?$/i, '/service/extension/zimbraews'],
    [/^\/principals(\/.*)?$/, '/service/dav/principals$1'],
    [/^\/dav(\/.*)?$/, '/service/dav/home$1'],
    [/^\/home(\/.*)?$/, '/service/home$1'],
    [/^\/user(\/.*)?$/, '/service/user$1'],
    [/^\/autodiscover(\/.*)?$/i, '/service/autodiscover$1'],
  ];
  for (const [re, to] of rewrites) if (re.test(path)) return path.replace(re, to);
  return path;
}

/** Servlets that take Basic credentials (routed paths). Zimbra's own match the scheme `Basic ` exactly. */
const BASIC_PATHS = /^\/(service\/dav|service\/home|service\/user|service\/extension\/zimbrasync|service\/extension\/zimbraews|service\/autodiscover|downloads|zimbra\/downloads)(\/|$)/;
const FILLER = 'x'.repeat(2048);

export async function startFakeZimbra(options: FakeZimbraOptions = {}): Promise<FakeZimbra> {
  const create = options.tls
    ? (h: http.RequestListener) => https.createServer({ cert: options.tls!.cert, key: options.tls!.key }, h)
    : (h: http.RequestListener) => http.createServer(h);
  const users = options.users ?? DEFAULT_USERS;
  const requests: RecordedRequest[] = [];
  const checks: CredentialCheck[] = [];
  const delay = (): Promise<void> => new Promise((r) => setTimeout(r, options.authDelayMs ?? 0));

  const handler = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    try {
      for await (const c of req) chunks.push(c as Buffer);
    } catch {
      return; // the body was cut short (its sender went away): Jetty drops such a request too
    }
    const rawBody = Buffer.concat(chunks);
    const body = rawBody.toString('utf8');
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, remoteAddress: req.socket.remoteAddress ?? '', body });
    const ip = String(req.headers['x-forwarded-for'] ?? req.socket.remoteAddress ?? '');
    const record: Recorder = (kind, account, ok) => checks.push({ ip, account, kind, ok });
    const url = new URL((req.url ?? '/').replace(/#.*$/, ''), 'http://zimbra.test');
    const path = jettyPath(req.url ?? '/');

    if (/^\/service\/(admin\/)?soap(\/|$)/.test(path) && req.method === 'POST') {
      if (/AuthRequest|ChangePassword|\\x/.test(rawBody.toString('latin1').replace(/\0/g, ''))) await delay();
      const r = soap(users, rawBody, /^\/service\/admin\//.test(path), record);
      res.writeHead(r.status, { 'content-type': r.type, ...(r.cookie ? { 'set-cookie': r.cookie } : {}) });
      res.end(r.body);
      return;
    }
    // DavWellKnownServlet answers 301 for /caldav and /carddav without looking at any credential.
    if (/^\/service\/\.well-known\/(caldav|carddav)$/i.test(path)) {
      res.writeHead(301, { location: 'http://mail.example.com/dav' });
      res.end();
      return;
    }
    // AutoDiscoverServlet.doGet: without a PocketPC/SmartPhone user agent it answers 200, no auth.
    if (/^\/service\/autodiscover(\/|$)/i.test(path) && (req.method === 'GET' || req.method === 'HEAD') && !/PocketPC|SmartPhone/.test(req.headers['user-agent'] ?? '')) {
      res.writeHead(200, { 'content-length': '0' });
      res.end();
      return;
    }
    if (BASIC_PATHS.test(path)) {
      const auth = req.headers.authorization;
      const challenge = { 'www-authenticate': 'BASIC realm="Zimbra"', 'content-type': 'text/html' };
      // UserServletUtil.getAccount: a valid auth-token cookie is taken first and Basic is never looked at.
      if (/ZM_AUTH_TOKEN=0_/.test(req.headers.cookie ?? '')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok (cookie)');
        return;
      }
      if (!auth || !auth.startsWith('Basic ')) {
        res.writeHead(401, challenge);
        res.end('must authenticate');
        return;
      }
      await delay();
      const [user, pass] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
      const full = withVirtualHost((user ?? '').toLowerCase(), String(req.headers['x-forwarded-host'] ?? req.headers.host ?? ''));
      const u = users[full];
      record('basic', full, !!u && u.password === pass);
      // UserServlet: AuthUtil.basicAuthRequest with sendChallenge=false swallows the 401 of a wrong password
      // and a PUBLICLY shared item is served anonymously (here: any folder named "public").
      if ((!u || u.password !== pass) && /^\/service\/(home|user)\/[^/]+\/public(\/|$)/i.test(path)) {
        res.writeHead(200, { 'content-type': 'text/calendar' });
        res.end('BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n');
        return;
      }
      if (!u || u.password !== pass) {
        res.writeHead(401, challenge);
        res.end('invalid username/password');
        return;
      }
      res.writeHead(req.method === 'PROPFIND' ? 207 : 200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    if (/^\/service\/preauth(\/|$)/.test(path)) {
      await delay();
      const params = jettyParams(url.search.slice(1));
      if (/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) for (const [k, v] of jettyParams(body)) params.append(k, v);
      if (!params.get('preauth')) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end('missing preauth');
        return;
      }
      record('preauth', (params.get('account') ?? '').toLowerCase(), params.get('preauth') === 'valid');
      if (params.get('preauth') === 'valid') {
        res.writeHead(302, { location: '/', 'set-cookie': `ZM_AUTH_TOKEN=${TOKEN}; Path=/; HttpOnly` });
        res.end();
      } else {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end('preauth mismatch');
      }
      return;
    }
    // login.jsp (the webmail context at zimbraMailURL, default /): request parameters come from the
    // query and a urlencoded body, getParameter takes the first value. The TOTP branch needs no POST.
    const params = jettyParams(url.search.slice(1));
    if (/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) for (const [k, v] of jettyParams(body)) params.append(k, v);
    const webmail = !path.startsWith('/service/');
    const totpParam = params.get('totpcode');
    const passwordLogin = req.method === 'POST' && params.get('loginOp') === 'login' && !!params.get('username') && !!params.get('password');
    if (webmail && (passwordLogin || (totpParam && /ZM_AUTH_TOKEN=0_\w+2fa/.test(req.headers.cookie ?? '')))) {
      {
        await delay();
        const name = (params.get('username') ?? '').toLowerCase();
        const u = users[name];
        const totp = passwordLogin ? null : totpParam;
        const csrf = 'ZM_LOGIN_CSRF=b2c3d4; Path=/; HttpOnly';
        if (totp !== null && totp !== '') {
          // 2FA step two: the step-one ZM_AUTH_TOKEN cookie identifies the user.
          const twofa = Object.entries(users).find(([, x]) => x.totp);
          record('totp', twofa?.[0] ?? '', !!twofa && totp === twofa[1].totp);
          if (twofa && totp === twofa[1].totp) {
            res.writeHead(302, { location: '/', 'set-cookie': [`ZM_AUTH_TOKEN=${TOKEN}; Path=/; HttpOnly`] });
            res.end();
          } else {
            if (lastServerRedirect(req, params, res)) return;
            res.writeHead(200, { 'content-type': 'text/html;charset=utf-8', 'set-cookie': [csrf, 'ZM_TEST=true; Path=/'] });
            res.end(TOTP_PAGE('The code is incorrect.'));
          }
          return;
        }
        record('form', name, !!u && u.password === params.get('password'));
        if (u && u.password === params.get('password')) {
          if (u.totp) {
            res.writeHead(200, { 'content-type': 'text/html;charset=utf-8', 'set-cookie': [`ZM_AUTH_TOKEN=${TOKEN}2fa; Path=/; HttpOnly`, csrf] });
            res.end(TOTP_PAGE(''));
          } else {
            res.writeHead(302, { location: '/', 'set-cookie': [`ZM_AUTH_TOKEN=${TOKEN}; Path=/; HttpOnly`] });
            res.end();
          }
          return;
        }
        if (lastServerRedirect(req, params, res)) return;
        res.writeHead(200, { 'content-type': 'text/html;charset=utf-8', 'set-cookie': [csrf, 'ZM_TEST=true; Path=/'] });
        res.end(LOGIN_PAGE(AUTH_FAILED_TEXT));
        return;
      }
    }
    if (path === '/' || path === '/zimbra/') {
      res.writeHead(200, { 'content-type': 'text/html;charset=utf-8', 'set-cookie': ['ZM_LOGIN_CSRF=b2c3d4; Path=/; HttpOnly', 'ZM_TEST=true; Path=/'] });
      res.end(LOGIN_PAGE(''));
      return;
    }
    if (path === '/hang') {
      // Never answers (until the connection is closed): for upstream timeout tests.
      req.socket.setTimeout(0);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': FILLER.length });
    res.end(FILLER);
  };
  const server = create((req, res) => void handler(req, res));
  // Websocket stand-in: answers the upgrade and echoes what it receives.
  const upgraded = new Set<import('node:stream').Duplex>();
  server.on('upgrade', (req, socket) => {
    // Jetty serves an upgrade request to a servlet as the GET it is: Basic credentials on it are checked.
    if (req.headers.authorization?.startsWith('Basic ') && BASIC_PATHS.test(jettyPath(req.url ?? '/'))) {
      const res = new http.ServerResponse(req);
      res.assignSocket(socket as import('node:net').Socket);
      res.shouldKeepAlive = false;
      void handler(req, res);
      return;
    }
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, remoteAddress: req.socket.remoteAddress ?? '', body: '' });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    socket.on('error', () => socket.destroy());
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(options.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    checks,
    checksFrom: (ip) => checks.filter((c) => c.ip === ip),
    reached: (prefix = '/') => requests.filter((r) => r.url.startsWith(prefix)),
    close: () =>
      new Promise<void>((r) => {
        for (const s of upgraded) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
