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

export interface FakeZimbra {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
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

function checkAuth(users: Record<string, FakeUser>, req: Record<string, unknown>, admin: boolean): AuthAnswer {
  const name = (text(list(req.account)[0]) ?? text(req['@_name']) ?? text(req.name) ?? '').toLowerCase();
  const password = text(req.password) ?? text(req['@_password']);
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

function soap(users: Record<string, FakeUser>, raw: string, admin: boolean): { status: number; type: string; body: string; cookie?: string } {
  const isJson = raw.trimStart().startsWith('{');
  let doc: Record<string, unknown>;
  try {
    doc = isJson ? (JSON.parse(raw) as Record<string, unknown>) : (xml.parse(raw) as Record<string, unknown>);
  } catch {
    return { status: 500, type: 'text/plain', body: 'malformed' };
  }
  const body = ((isJson ? doc.Body : (doc.Envelope as Record<string, unknown> | undefined)?.Body) ?? {}) as Record<string, unknown>;
  const ns = admin ? 'urn:zimbraAdmin' : 'urn:zimbraAccount';
  const cookieName = admin ? 'ZM_ADMIN_AUTH_TOKEN' : 'ZM_AUTH_TOKEN';
  const auths = list(body.AuthRequest) as Array<Record<string, unknown>>;
  const batch = list(body.BatchRequest)[0] as Record<string, unknown> | undefined;
  if (batch) {
    // BatchRequest: HTTP 200 always; faults sit inside the BatchResponse.
    const inner = list(batch.AuthRequest) as Array<Record<string, unknown>>;
    const answers = inner.map((r) => checkAuth(users, r, admin));
    const okAnswers = answers.filter((a): a is Extract<AuthAnswer, { ok: true }> => a.ok);
    const faults = answers.filter((a): a is Extract<AuthAnswer, { ok: false }> => !a.ok);
    const cookie = okAnswers.length > 0 ? `${cookieName}=${TOKEN}; Path=/; HttpOnly` : undefined;
    if (isJson) {
      const resp: Record<string, unknown> = { _jsns: 'urn:zimbra' };
      if (okAnswers.length) resp.AuthResponse = okAnswers.map((a) => jsonAuthResponse(a, ns));
      if (faults.length) resp.Fault = faults.map(jsonFault);
      return { status: 200, type: 'application/json', body: JSON.stringify({ Header: { context: { _jsns: 'urn:zimbra' } }, Body: { BatchResponse: resp }, _jsns: 'urn:zimbraSoap' }), cookie };
    }
    const parts = [...okAnswers.map((a) => xmlAuthResponse(a, ns)), ...faults.map(xmlFault)].join('');
    return { status: 200, type: 'application/soap+xml', body: xmlEnvelope(`<BatchResponse xmlns="urn:zimbra">${parts}</BatchResponse>`), cookie };
  }
  if (auths.length === 0) {
    const resp = isJson ? JSON.stringify({ Body: { NoOpResponse: { _jsns: 'urn:zimbraMail' } }, _jsns: 'urn:zimbraSoap' }) : xmlEnvelope('<NoOpResponse xmlns="urn:zimbraMail"/>');
    return { status: 200, type: isJson ? 'application/json' : 'application/soap+xml', body: resp };
  }
  const a = checkAuth(users, auths[0]!, admin);
  if (!a.ok) {
    // SoapServlet.sendResponse: HTTP 500 whenever the Body's first child is a Fault.
    return isJson
      ? { status: 500, type: 'application/json', body: JSON.stringify({ Header: { context: { change: { token: 32934 }, _jsns: 'urn:zimbra' } }, Body: { Fault: jsonFault(a) }, _jsns: 'urn:zimbraSoap' }) }
      : { status: 500, type: 'application/soap+xml', body: xmlEnvelope(xmlFault(a)) };
  }
  const cookie = `${cookieName}=${a.twoFactor ? `${TOKEN}2fa` : TOKEN}; Path=/; HttpOnly`;
  return isJson
    ? { status: 200, type: 'application/json', body: JSON.stringify({ Header: { context: { change: { token: 32929 }, _jsns: 'urn:zimbra' } }, Body: { AuthResponse: jsonAuthResponse(a, ns) }, _jsns: 'urn:zimbraSoap' }), cookie }
    : { status: 200, type: 'application/soap+xml', body: xmlEnvelope(xmlAuthResponse(a, ns)), cookie };
}

const BASIC_PATHS = /^\/(service\/dav|dav|service\/home|home|microsoft-server-activesync|ews|autodiscover|zimbra\/downloads)(\/|$|\?)/i;
const FILLER = 'x'.repeat(2048);

export async function startFakeZimbra(options: FakeZimbraOptions = {}): Promise<FakeZimbra> {
  const create = options.tls
    ? (h: http.RequestListener) => https.createServer({ cert: options.tls!.cert, key: options.tls!.key }, h)
    : (h: http.RequestListener) => http.createServer(h);
  const users = options.users ?? DEFAULT_USERS;
  const requests: RecordedRequest[] = [];
  const delay = (): Promise<void> => new Promise((r) => setTimeout(r, options.authDelayMs ?? 0));

  const server = create(async (req, res) => {
    const chunks: Buffer[] = [];
    try {
      for await (const c of req) chunks.push(c as Buffer);
    } catch {
      return; // the body was cut short (its sender went away): Jetty drops such a request too
    }
    const body = Buffer.concat(chunks).toString('utf8');
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, remoteAddress: req.socket.remoteAddress ?? '', body });
    const url = new URL(req.url ?? '/', 'http://zimbra.test');
    const path = url.pathname;

    if (/^\/service\/(admin\/)?soap/i.test(path) && req.method === 'POST') {
      if (body.includes('AuthRequest')) await delay();
      const r = soap(users, body, /^\/service\/admin\//i.test(path));
      res.writeHead(r.status, { 'content-type': r.type, ...(r.cookie ? { 'set-cookie': r.cookie } : {}) });
      res.end(r.body);
      return;
    }
    if (BASIC_PATHS.test(path)) {
      const auth = req.headers.authorization;
      const challenge = { 'www-authenticate': 'BASIC realm="Zimbra"', 'content-type': 'text/html' };
      if (!auth || !/^basic /i.test(auth)) {
        res.writeHead(401, challenge);
        res.end('must authenticate');
        return;
      }
      await delay();
      const [user, pass] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
      const u = users[(user ?? '').toLowerCase()];
      if (!u || u.password !== pass) {
        res.writeHead(401, challenge);
        res.end('invalid username/password');
        return;
      }
      res.writeHead(req.method === 'PROPFIND' ? 207 : 200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    if (/^\/service\/preauth/i.test(path)) {
      await delay();
      if (url.searchParams.get('preauth') === 'valid') {
        res.writeHead(302, { location: '/', 'set-cookie': `ZM_AUTH_TOKEN=${TOKEN}; Path=/; HttpOnly` });
        res.end();
      } else {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end('preauth mismatch');
      }
      return;
    }
    if ((path === '/' || path === '/zimbra/' || path === '/zimbra') && (req.method === 'POST' || url.searchParams.get('loginOp') === 'login')) {
      const params = new URLSearchParams(url.search);
      for (const [k, v] of new URLSearchParams(body)) params.set(k, v);
      if (params.get('loginOp') === 'login') {
        await delay();
        const name = (params.get('username') ?? '').toLowerCase();
        const u = users[name];
        const totp = params.get('totpcode');
        const csrf = 'ZM_LOGIN_CSRF=b2c3d4; Path=/; HttpOnly';
        if (totp !== null && totp !== '') {
          // 2FA step two: the step-one ZM_AUTH_TOKEN cookie identifies the user.
          const twofa = Object.values(users).find((x) => x.totp);
          if (twofa && totp === twofa.totp) {
            res.writeHead(302, { location: '/', 'set-cookie': [`ZM_AUTH_TOKEN=${TOKEN}; Path=/; HttpOnly`] });
            res.end();
          } else {
            res.writeHead(200, { 'content-type': 'text/html;charset=utf-8', 'set-cookie': [csrf, 'ZM_TEST=true; Path=/'] });
            res.end(TOTP_PAGE('The code is incorrect.'));
          }
          return;
        }
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
  });
  // Websocket stand-in: answers the upgrade and echoes what it receives.
  const upgraded = new Set<import('node:stream').Duplex>();
  server.on('upgrade', (req, socket) => {
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
    reached: (prefix = '/') => requests.filter((r) => r.url.startsWith(prefix)),
    close: () =>
      new Promise<void>((r) => {
        for (const s of upgraded) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
