import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { gunzipSync, inflateSync, brotliDecompressSync } from 'node:zlib';
import type { Config } from '../config/schema.js';
import { classifyHead, classifyResponse, classifyWithBody, needsResponseBody, type Classification, type LoginRequest, type RequestFacts } from '../detect/http-login.js';
import { ADMIN_PATH, SOAP_RULES, soapRuleFor, type HttpRule } from '../detect/http-rules.js';
import { addParams, queryOf } from '../detect/form-params.js';
import { normalizeRequestPath } from '../detect/request-path.js';
import { parseSoapAnswer, soapAnswers } from '../detect/soap.js';
import { resolveClientIp } from '../net/client-ip.js';
import { normalizeIp, type CidrSet } from '../net/ip.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { Enforcer, LoginTicket } from '../policy/enforcer.js';
import type { Ban } from '../store/ban.js';
import type { BodyObserver, Forwarder, UpstreamErrorKind } from './forwarder.js';
import { bannedPage, sendPage } from './pages.js';
import { NeedleScanner, readBodyUpTo, replayBody } from './request-body.js';

export type ListenerName = 'web' | 'admin';

/** Set on a socket by the PROXY protocol reader: the source address the trusted proxy announced. */
export const PROXY_SOURCE = Symbol('gatekeeper.proxySource');
/** Set on a socket by the TCP front: the peer address, already normalised. */
export const PEER = Symbol('gatekeeper.peer');

type GateSocket = Socket & { [PROXY_SOURCE]?: string; [PEER]?: string | null };

export interface GateDeps {
  readonly name: ListenerName;
  readonly config: Config;
  readonly enforcer: Enforcer;
  readonly forwarder: Forwarder;
  readonly trusted: CidrSet;
  /** admin listener only: who may reach it at all. */
  readonly allow: CidrSet | null;
  /** admin.allow: who may reach the admin console's paths on any listener. */
  readonly adminAllow: CidrSet;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly tls: boolean;
  readonly port: () => number;
}

const MAX_RESPONSE_INSPECT = 256 * 1024;
/**
 * Element names a large SOAP body may not carry (searched in NeedleScanner's normalised view): as a
 * whole name (Zimbra's names are case-sensitive, so `OAuthRequest` or the words "Auth request" in a
 * draft are not one).
 */
const SOAP_NEEDLES = /(?<![A-Za-z0-9_])(?:AuthRequest|ChangePasswordRequest)(?![A-Za-z0-9_])/;
/** Parameter names a large form body on the webmail context may not carry. */
const FORM_NEEDLES = /(?:^|&)(?:loginOp|totpcode)=/;

/**
 * The per-request path of a listener: client address → allowlist → ban → login classification
 * (a login, provably none, or refused) → reserve failures before forwarding → forward → judge Zimbra's
 * answer → settle the count. Every path that can reach a credential check is either classified with
 * certainty or refused before anything is sent upstream.
 */
export class Gate {
  constructor(private d: GateDeps) {
    const tally = d.metrics.requestTally(d.name);
    this.counted = function (this: ServerResponse): void {
      const i = Math.floor(this.statusCode / 100) - 1;
      if (i >= 0 && i < tally.length) tally[i] += 1;
    };
  }

  /** Takes reloaded settings (allowlist, trusted proxies, limits); connections stay open. */
  reconfigure(changes: Pick<GateDeps, 'config' | 'trusted' | 'allow' | 'adminAllow'>): void {
    this.d = { ...this.d, ...changes };
  }

  /** The TCP peer (or the PROXY protocol source), normalised once per connection. */
  private peerOf(socket: GateSocket): string | null {
    let peer = socket[PEER];
    if (peer === undefined) {
      peer = normalizeIp(socket[PROXY_SOURCE] ?? socket.remoteAddress);
      socket[PEER] = peer;
    }
    return peer;
  }

  private refuse(req: IncomingMessage, res: ServerResponse | null, status: number, reason: string, title: string, message: string): null {
    this.d.metrics.rejections.inc({ listener: this.d.name, reason });
    if (res) sendPage(req, res, { status, title, message, reason });
    else req.socket.destroy();
    return null;
  }

  /** Returns the client address, or answers the request itself and returns null. */
  private admit(req: IncomingMessage, res: ServerResponse | null): string | null {
    const { d } = this;
    const peer = this.peerOf(req.socket as GateSocket);
    if (!peer) {
      req.socket.destroy();
      return null;
    }
    const client = resolveClientIp(peer, req.headers['x-forwarded-for'] as string | undefined, d.trusted);
    if ('error' in client) return this.refuse(req, res, 400, 'bad-request', 'Bad request', 'Malformed forwarding header.');
    const ip = client.ip;
    if (d.allow && !d.allow.has(ip)) {
      d.log.info({ ip, listener: d.name, url: req.url?.slice(0, 200) }, 'admin allowlist: refused');
      return this.refuse(req, res, 403, 'admin-allowlist', 'Forbidden', 'The administration console is not reachable from your network.');
    }
    const ban = d.enforcer.bannedNow(ip);
    if (ban) {
      if (ban.shadow || d.enforcer.shadow) {
        d.metrics.shadowed.inc({ listener: d.name, reason: 'banned' });
      } else {
        if (res) this.refuseBanned(req, res, ban);
        else {
          d.metrics.rejections.inc({ listener: d.name, reason: 'banned' });
          req.socket.destroy();
        }
        return null;
      }
    }
    return ip;
  }

  /** Answers a banned client with the ban page (429, Retry-After, until when). */
  private refuseBanned(req: IncomingMessage, res: ServerResponse, ban: Ban): void {
    this.d.metrics.rejections.inc({ listener: this.d.name, reason: 'banned' });
    sendPage(req, res, bannedPage(ban.until, Date.now()));
  }

  /** Overwrites (never appends) the forwarding headers Zimbra reads, so it logs oip= correctly. */
  private setForwardingHeaders(req: IncomingMessage, ip: string, viaTrusted: boolean): void {
    const h = req.headers;
    h['x-forwarded-for'] = ip;
    h['x-real-ip'] = ip;
    delete h.forwarded;
    const proto = h['x-forwarded-proto'];
    const port = h['x-forwarded-port'];
    if (!viaTrusted || (proto !== 'http' && proto !== 'https')) h['x-forwarded-proto'] = this.d.tls ? 'https' : 'http';
    if (!viaTrusted || typeof port !== 'string' || !/^\d{1,5}$/.test(port)) h['x-forwarded-port'] = String(this.d.port());
  }

  /** The routed path and the facts classification needs; null when the request was answered (400/403). */
  private facts(req: IncomingMessage, res: ServerResponse | null, ip: string): RequestFacts | null {
    const { d } = this;
    const path = normalizeRequestPath(req.url);
    if (path === null) return this.refuse(req, res, 400, 'bad-request', 'Bad request', 'The request target is not valid.');
    // The admin console's paths are held to admin.allow on every listener, so port 7071's restriction
    // cannot be walked around through the webmail port (a zimbra-proxy or edge may forward them).
    if (!d.allow && ADMIN_PATH.test(path) && !d.adminAllow.has(ip)) {
      d.log.info({ ip, listener: d.name, url: req.url?.slice(0, 200) }, 'admin path outside admin.allow: refused');
      return this.refuse(req, res, 403, 'admin-allowlist', 'Forbidden', 'The administration console is not reachable from your network.');
    }
    const peer = this.peerOf(req.socket as GateSocket)!;
    this.setForwardingHeaders(req, ip, peer !== ip || d.trusted.has(peer));
    return { method: req.method ?? 'GET', url: req.url ?? '/', path, headers: req.headers, defaultDomain: d.config.zimbra.defaultDomain };
  }

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    res.on('finish', this.counted); // a response finishes once; `on` spares the once-wrapper
    const ip = this.admit(req, res);
    if (ip === null) return;
    const f = this.facts(req, res, ip);
    if (f === null) return;
    let c: Classification;
    try {
      c = classifyHead(f);
    } catch (err) {
      // Never let a parsing surprise escape a request listener (it would end the process).
      this.failed(req, res, ip, err as Error);
      return;
    }
    if (c.kind === 'body') {
      void this.readLoginBody(req, res, ip, f, c.mode).catch((err: Error) => this.failed(req, res, ip, err));
      return;
    }
    this.decide(req, res, ip, f, c, undefined);
  };

  /** Counts an answered request by listener and status class (`this` is the response). */
  private readonly counted: (this: ServerResponse) => void;

  private failed(req: IncomingMessage, res: ServerResponse, ip: string, err: Error): void {
    this.d.log.error({ err: err.message, ip, listener: this.d.name }, 'login handling failed');
    if (!res.headersSent) sendPage(req, res, { status: 502, title: 'Bad gateway', message: 'The request could not be completed.', reason: 'error' });
    else res.destroy();
  }

  private decide(req: IncomingMessage, res: ServerResponse, ip: string, f: RequestFacts, c: Classification, body: Buffer | undefined): void {
    const { d } = this;
    switch (c.kind) {
      case 'none':
        this.forward(req, res, ip, f, null, null, body);
        return;
      case 'refuse':
        this.refuseLogin(req, res, ip, f, c, body);
        return;
      case 'login': {
        const { login } = c;
        if (login.attempts > d.config.jail.maxretry && !d.enforcer.shadow) {
          // More logins in one request than any client sends (a batch of 500 AuthRequests): refused before
          // any counter is touched, and counted once against the address, so a flooder is banned, not tracked.
          this.countRefused(ip, login.rule, 1, []);
          this.refuse(req, res, 400, 'too-many-logins', 'Bad request', `A request may carry at most ${d.config.jail.maxretry} login attempts.`);
          return;
        }
        void this.admitLogin(req, res, ip, f, login, body).catch((err: Error) => this.failed(req, res, ip, err));
        return;
      }
      case 'body':
        // classifyWithBody never asks for the body again.
        this.failed(req, res, ip, new Error('classification asked for the body twice'));
    }
  }

  /** A login that cannot be read as Zimbra reads it, or that names an account with control characters. */
  private refuseLogin(req: IncomingMessage, res: ServerResponse, ip: string, f: RequestFacts, c: Extract<Classification, { kind: 'refuse' }>, body: Buffer | undefined): void {
    const { d } = this;
    d.log.info({ ip, listener: d.name, reason: c.reason, why: c.why, counted: c.count, url: req.url?.slice(0, 200) }, 'login request refused: not readable the way Zimbra reads it');
    if (c.count > 0) this.countRefused(ip, c.rule, c.count, c.accounts);
    if (d.enforcer.shadow) {
      d.metrics.shadowed.inc({ listener: d.name, reason: c.reason });
      this.forward(req, res, ip, f, null, null, body);
      return;
    }
    this.refuse(req, res, c.status, c.reason, 'Bad request', 'This login request cannot be accepted.');
  }

  private countRefused(ip: string, rule: HttpRule, attempts: number, accounts: readonly string[]): void {
    void this.d.enforcer
      .record({ outcome: 'failure', ruleId: 'http.refused-login', service: rule.service, ip, account: accounts[0], source: 'proxy', attempts })
      .catch((err: Error) => this.d.log.error({ err: err.message, ip }, 'counting a refused login failed'));
  }

  private async readLoginBody(req: IncomingMessage, res: ServerResponse, ip: string, f: RequestFacts, mode: 'soap' | 'form'): Promise<void> {
    const { d } = this;
    let read;
    try {
      read = await readBodyUpTo(req, d.config.proxy.maxLoginBodyBytes);
    } catch {
      res.destroy();
      return;
    }
    if (read.head) {
      this.forwardOversize(req, res, ip, f, mode, read.head);
      return;
    }
    const body = read.complete ?? Buffer.alloc(0);
    this.decide(req, res, ip, f, classifyWithBody(f, body), body);
  }

  private async admitLogin(req: IncomingMessage, res: ServerResponse, ip: string, f: RequestFacts, login: LoginRequest, body: Buffer | undefined): Promise<void> {
    const { d } = this;
    const admission = await d.enforcer.admitLogin(ip, login.accounts, login.attempts);
    if (res.destroyed || req.socket.destroyed) {
      // The client left while its login waited: nothing is sent, the reservation goes back.
      if (admission.allowed) void d.enforcer.settleLogin(admission.ticket, { failures: 0, successes: 0, successAccounts: [], ruleId: login.rule.failure, service: login.rule.service });
      return;
    }
    if (!admission.allowed && admission.reason === 'banned') {
      this.refuseBanned(req, res, admission.ban);
      return;
    }
    if (!admission.allowed) {
      d.metrics.rejections.inc({ listener: d.name, reason: admission.reason });
      const shield = admission.reason === 'account-shield';
      sendPage(req, res, {
        status: 429,
        title: 'Too many failed logins',
        message: shield
          ? 'This account is temporarily protected after many failed logins. Log in from a device that logged in before, or try later.'
          : 'Too many failed logins from your address. Try again later.',
        retryAfterSeconds: admission.retryAfterSeconds,
        reason: admission.reason,
      });
      return;
    }
    this.forward(req, res, ip, f, login, admission.ticket, body);
  }

  /**
   * A body past the detection cap. Refused when its head already shows an encoding we cannot read or a
   * login we would have to read whole; otherwise streamed on, and if a login element shows up in it (in
   * any escape Zimbra decodes) the upstream request is aborted before it completes.
   */
  private forwardOversize(req: IncomingMessage, res: ServerResponse, ip: string, f: RequestFacts, mode: 'soap' | 'form', head: Buffer[]): void {
    const { d } = this;
    const tooLarge = (): void => {
      this.refuse(req, res, 413, 'too-large', 'Request too large', 'Login requests are limited in size.');
      // The rest of the body will not be read: close once the page is out.
      if (res.writableFinished) req.socket.destroy();
      else res.once('finish', () => req.socket.destroy());
    };
    const first = head[0]!;
    const headText = Buffer.concat(head).subarray(0, 512).toString('latin1');
    const unreadable =
      (first.length >= 2 && (first[1] === 0x00 || first[0] === 0x00 || first[0] === 0xfe || first[0] === 0xff)) ||
      (/^<\?xml[^>]*?\bencoding\s*=\s*["'](?!utf-?8["']|us-ascii["'])/i.test(headText));
    const head0 = classifyWithBody(f, null);
    // A login whose loginOp or totpcode sits in the query and the rest in this large body.
    const query = mode === 'form' ? addParams(new Map(), queryOf(f.url)) : null;
    if (unreadable || head0.kind !== 'none' || (query && (query.has('loginOp') || query.has('totpcode')))) {
      tooLarge();
      return;
    }
    const scanner = new NeedleScanner(mode === 'soap' ? SOAP_NEEDLES : FORM_NEEDLES, () => {
      d.log.warn({ ip, listener: d.name }, 'oversized request carrying a login: aborted');
      tooLarge();
      return new Error('oversized login');
    });
    const stream = replayBody(head, req);
    stream.on('error', () => scanner.destroy());
    // The scanner's error must be handled (an unhandled 'error' would end the process); the failed body
    // stream makes the forwarder abort the upstream request.
    scanner.on('error', () => undefined);
    this.forward(req, res, ip, f, null, null, stream.pipe(scanner));
  }

  private forward(req: IncomingMessage, res: ServerResponse, ip: string, f: RequestFacts, login: LoginRequest | null, ticket: LoginTicket | null, body: Buffer | Readable | undefined): void {
    const { d } = this;
    const soap = f.method === 'POST' ? soapRuleFor(f.path) : undefined;
    if (!login) {
      if (!soap) {
        d.forwarder.web(req, res, body ? { body } : undefined);
        return;
      }
      // Defence in depth: a SOAP fault answer (HTTP 500) carrying a login fault for a request read as no
      // login is counted. (200 answers are not parsed: a fault under 200 comes only from a BatchRequest,
      // whose credential children the request side has already counted.)
      d.forwarder.web(req, res, {
        body,
        tap: ({ statusCode, headers }) =>
          statusCode === 500
            ? collectBody((raw) => {
                const text = raw && decode(raw, headers['content-encoding']);
                const doc = text ? parseSoapAnswer(text.toString('utf8')) : null;
                const faults = doc ? soapAnswers(doc).filter((a) => a.fault !== undefined && a.fault in (soap.faults ?? {})).length : 0;
                if (faults > 0) void d.enforcer.record({ outcome: 'failure', ruleId: soap.failure, service: soap.service, ip, source: 'proxy', attempts: faults }).catch(() => undefined);
              })
            : undefined,
      });
      return;
    }
    const rule = login.rule;
    let settled = false;
    const settle = (failures: number, successes: number, successAccounts: readonly string[], ruleId: string, failedAccounts?: readonly string[]): void => {
      if (settled || !ticket) return;
      settled = true;
      void d.enforcer.settleLogin(ticket, { failures, successes, successAccounts, failedAccounts, ruleId, service: rule.service }).catch((err: Error) => {
        d.log.error({ err: err.message, ip }, 'settling a login failed');
      });
    };
    // Fail closed: a login whose answer never reached us whole counts every attempt. Not for an address
    // that logged in to these accounts recently (a phone's ActiveSync Ping or a DAV long poll dropped by
    // its network): it has proven the password, and guesses from it at these accounts are moot.
    const failClosed = (): void => (ticket?.knownGood ? settle(0, 0, [], rule.failure) : settle(login.attempts, 0, [], rule.failure));
    res.once('close', failClosed);
    d.forwarder.web(req, res, {
      body,
      // Nothing was evaluated when Zimbra could not even be connected to; anything else may have been.
      failed: (kind: UpstreamErrorKind) => (kind === 'refused' ? settle(0, 0, [], rule.failure) : failClosed()),
      tap: ({ statusCode: status, headers }) => {
        const judge = (body: Buffer | null): void => {
          const r = classifyResponse(login, status, headers, body);
          settle(r.failures, r.successes, r.successAccounts, r.ruleId, r.failedAccounts);
        };
        if (!needsResponseBody(login)) {
          judge(null);
          return undefined;
        }
        return collectBody((raw) => judge(raw && decode(raw, headers['content-encoding'])));
      },
    });
  }

  /** Websocket upgrades pass the same address checks; one that carries a login is refused (Jetty would serve it as a GET). */
  upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const ip = this.admit(req, null);
    if (ip === null) {
      socket.destroy();
      return;
    }
    const f = this.facts(req, null, ip);
    if (f === null) {
      socket.destroy();
      return;
    }
    const c = classifyHead(f);
    if (c.kind !== 'none') {
      const count = c.kind === 'login' ? c.login.attempts : c.kind === 'refuse' ? c.count : 1;
      const rule = c.kind === 'login' ? c.login.rule : c.kind === 'refuse' ? c.rule : SOAP_RULES[1]!;
      this.countRefused(ip, rule, count, c.kind === 'login' ? c.login.accounts : []);
      this.d.metrics.rejections.inc({ listener: this.d.name, reason: 'unreadable-login' });
      socket.on('error', () => socket.destroy());
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\nx-gatekeeper: unreadable-login\r\n\r\n');
      return;
    }
    this.d.forwarder.ws(req, socket, head);
  };
}

/**
 * Keeps the upstream's body for judging, then reports it: the whole body, or null when it was cut
 * short or is larger than MAX_RESPONSE_INSPECT (the caller fails closed on null).
 */
function collectBody(done: (raw: Buffer | null) => void): BodyObserver {
  const list: Buffer[] = [];
  let size = 0;
  return {
    data(chunk) {
      size += chunk.length;
      if (size <= MAX_RESPONSE_INSPECT) list.push(chunk);
    },
    end(complete) {
      done(complete && size <= MAX_RESPONSE_INSPECT ? Buffer.concat(list) : null);
    },
  };
}

function decode(raw: Buffer, encoding: string | undefined): Buffer | null {
  if (raw.length === 0) return raw;
  try {
    switch ((encoding ?? '').trim().toLowerCase()) {
      case '':
      case 'identity':
        return raw;
      case 'gzip':
      case 'x-gzip':
        return gunzipSync(raw, { maxOutputLength: MAX_RESPONSE_INSPECT * 4 });
      case 'deflate':
        return inflateSync(raw, { maxOutputLength: MAX_RESPONSE_INSPECT * 4 });
      case 'br':
        return brotliDecompressSync(raw, { maxOutputLength: MAX_RESPONSE_INSPECT * 4 });
      default:
        return null;
    }
  } catch {
    return null;
  }
}
