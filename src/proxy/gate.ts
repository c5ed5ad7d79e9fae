import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { gunzipSync, inflateSync, brotliDecompressSync } from 'node:zlib';
import type { Config } from '../config/schema.js';
import { analyseRequest, classifyResponse, needsRequestBody, needsResponseBody, type LoginRequest } from '../detect/http-login.js';
import { findRule, type HttpRule } from '../detect/http-rules.js';
import { normalizeRequestPath } from '../detect/request-path.js';
import { resolveClientIp } from '../net/client-ip.js';
import { normalizeIp, type CidrSet } from '../net/ip.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { Enforcer, LoginTicket } from '../policy/enforcer.js';
import type { Ban } from '../store/ban.js';
import type { BodyObserver, Forwarder } from './forwarder.js';
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
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly tls: boolean;
  readonly port: () => number;
}

const MAX_RESPONSE_INSPECT = 256 * 1024;

/**
 * The per-request path of a listener: client address → allowlist → ban → login detection (reserve a
 * failure before forwarding) → forward → classify Zimbra's answer → settle the count.
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
  reconfigure(changes: Pick<GateDeps, 'config' | 'trusted' | 'allow'>): void {
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

  /** Returns the client address, or answers the request itself and returns null. */
  private admit(req: IncomingMessage, res: ServerResponse | null): string | null {
    const { d } = this;
    const peer = this.peerOf(req.socket as GateSocket);
    if (!peer) {
      req.socket.destroy();
      return null;
    }
    const client = resolveClientIp(peer, req.headers['x-forwarded-for'] as string | undefined, d.trusted);
    if ('error' in client) {
      d.metrics.rejections.inc({ listener: d.name, reason: 'bad-request' });
      if (res) sendPage(req, res, { status: 400, title: 'Bad request', message: 'Malformed forwarding header.', reason: 'bad-request' });
      else req.socket.destroy();
      return null;
    }
    const ip = client.ip;
    if (d.allow && !d.allow.has(ip)) {
      d.metrics.rejections.inc({ listener: d.name, reason: 'admin-allowlist' });
      d.log.info({ ip, listener: d.name, url: req.url?.slice(0, 200) }, 'admin allowlist: refused');
      if (res) sendPage(req, res, { status: 403, title: 'Forbidden', message: 'The administration console is not reachable from your network.', reason: 'admin-allowlist' });
      else req.socket.destroy();
      return null;
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

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    const { d } = this;
    res.on('finish', this.counted); // a response finishes once; `on` spares the once-wrapper
    const ip = this.admit(req, res);
    if (ip === null) return;
    const path = normalizeRequestPath(req.url);
    if (path === null) {
      d.metrics.rejections.inc({ listener: d.name, reason: 'bad-request' });
      sendPage(req, res, { status: 400, title: 'Bad request', message: 'The request target is not valid.', reason: 'bad-request' });
      return;
    }
    const peer = this.peerOf(req.socket as GateSocket)!;
    this.setForwardingHeaders(req, ip, peer !== ip || d.trusted.has(peer));
    const method = req.method ?? 'GET';
    const rule = findRule(method, path);
    if (!rule) {
      d.forwarder.web(req, res);
      return;
    }
    // Most requests on a login path (the login page itself, a SOAP call that is no AuthRequest
    // without a body to read) are settled here, synchronously.
    if (!needsRequestBody(rule, method, req.headers)) {
      let login: LoginRequest | null;
      try {
        login = analyseRequest(rule, req.url ?? '/', req.headers, null);
      } catch (err) {
        // Never let a parsing surprise escape a request listener (it would end the process).
        this.failed(req, res, ip, err as Error);
        return;
      }
      if (!login) {
        this.forward(req, res, ip, rule, null, null, undefined);
        return;
      }
      this.admitAndForward(req, res, ip, rule, login, undefined);
      return;
    }
    void this.readLoginBody(req, res, ip, rule).catch((err: Error) => this.failed(req, res, ip, err));
  };

  /** Counts an answered request by listener and status class (`this` is the response). */
  private readonly counted: (this: ServerResponse) => void;

  private failed(req: IncomingMessage, res: ServerResponse, ip: string, err: Error): void {
    this.d.log.error({ err: err.message, ip, listener: this.d.name }, 'login handling failed');
    if (!res.headersSent) sendPage(req, res, { status: 502, title: 'Bad gateway', message: 'The request could not be completed.', reason: 'error' });
    else res.destroy();
  }

  private async readLoginBody(req: IncomingMessage, res: ServerResponse, ip: string, rule: HttpRule): Promise<void> {
    const { d } = this;
    let read;
    try {
      read = await readBodyUpTo(req, d.config.proxy.maxLoginBodyBytes);
    } catch {
      res.destroy();
      return;
    }
    if (read.head) {
      this.forwardOversize(req, res, ip, rule, read.head);
      return;
    }
    const body = read.complete;
    const login = analyseRequest(rule, req.url ?? '/', req.headers, body);
    if (!login) {
      // Not a login we recognise. A SOAP answer with an auth fault still counts (defence in depth).
      this.forward(req, res, ip, rule, null, null, body ?? undefined);
      return;
    }
    this.admitAndForward(req, res, ip, rule, login, body ?? undefined);
  }

  private admitAndForward(req: IncomingMessage, res: ServerResponse, ip: string, rule: HttpRule, login: LoginRequest, body: Buffer | undefined): void {
    void this.admitLogin(req, res, ip, rule, login, body).catch((err: Error) => this.failed(req, res, ip, err));
  }

  private async admitLogin(req: IncomingMessage, res: ServerResponse, ip: string, rule: HttpRule, login: LoginRequest, body: Buffer | undefined): Promise<void> {
    const { d } = this;
    const admission = await d.enforcer.admitLogin(ip, login.accounts, login.attempts);
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
    this.forward(req, res, ip, rule, login, admission.ticket, body);
  }

  /**
   * A SOAP or form body past the detection cap. SOAP streams on, but if an AuthRequest shows up in
   * it the upstream request is aborted before it completes (a padded login must not dodge counting).
   */
  private forwardOversize(req: IncomingMessage, res: ServerResponse, ip: string, rule: HttpRule, head: Buffer[]): void {
    const { d } = this;
    if (rule.kind !== 'soap') {
      d.metrics.rejections.inc({ listener: d.name, reason: 'too-large' });
      sendPage(req, res, { status: 413, title: 'Request too large', message: 'Login requests are limited in size.', reason: 'too-large' });
      return;
    }
    const scanner = new NeedleScanner('AuthRequest', () => {
      d.metrics.rejections.inc({ listener: d.name, reason: 'too-large' });
      d.log.warn({ ip, listener: d.name }, 'oversized SOAP request carrying an AuthRequest: aborted');
      sendPage(req, res, { status: 413, title: 'Request too large', message: 'Login requests are limited in size.', reason: 'too-large' });
      return new Error('oversized AuthRequest');
    });
    const stream = replayBody(head, req);
    stream.on('error', () => scanner.destroy());
    // The scanner's error must be handled (an unhandled 'error' would end the process). The failed
    // body stream makes the forwarder abort the upstream request; the client's connection is closed
    // once the 413 page is out, since the rest of its request body will not be read.
    scanner.on('error', () => {
      if (res.writableFinished) req.socket.destroy();
      else res.once('finish', () => req.socket.destroy());
    });
    this.forward(req, res, ip, rule, null, null, stream.pipe(scanner));
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    ip: string,
    rule: HttpRule,
    login: LoginRequest | null,
    ticket: LoginTicket | null,
    body: Buffer | import('node:stream').Readable | undefined,
  ): void {
    const { d } = this;
    if (!login && rule.kind !== 'soap') {
      // Nothing to learn from the answer (the login page, a form post that is no login).
      d.forwarder.web(req, res, body ? { body } : undefined);
      return;
    }
    let settled = false;
    const settle = (failures: number, successes: number, ruleId: string): void => {
      if (settled || !ticket) return;
      settled = true;
      void d.enforcer.settleLogin(ticket, { failures, successes, ruleId, service: rule.service }).catch((err: Error) => {
        d.log.error({ err: err.message, ip }, 'settling a login failed');
      });
    };
    d.forwarder.web(req, res, {
      body,
      failed: () => settle(0, 0, rule.failure),
      tap: ({ statusCode: status, headers }) => {
        if (login) {
          return collectBody(needsResponseBody(login), (raw) => {
            const r = classifyResponse(login, status, headers, raw && decode(raw, headers['content-encoding']));
            settle(r.failures, r.successes, r.ruleId);
          });
        }
        if (rule.kind === 'soap' && status === 500) {
          // An AuthRequest we did not recognise in the request (exotic encoding): count its fault anyway.
          return collectBody(true, (raw) => {
            const probe: LoginRequest = { rule, accounts: [], attempts: 1, secondFactor: false };
            const r = classifyResponse(probe, status, headers, raw && decode(raw, headers['content-encoding']));
            if (r.failures > 0) {
              void d.enforcer.record({ outcome: 'failure', ruleId: r.ruleId, service: rule.service, ip, source: 'proxy' }).catch(() => undefined);
            }
          });
        }
        return undefined;
      },
    });
  }

  /** Websocket upgrades pass the same address checks, then go straight through. */
  upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const ip = this.admit(req, null);
    if (ip === null) {
      socket.destroy();
      return;
    }
    const peer = this.peerOf(req.socket as GateSocket)!;
    this.setForwardingHeaders(req, ip, peer !== ip || this.d.trusted.has(peer));
    this.d.forwarder.ws(req, socket, head);
  };
}

/** Keeps up to MAX_RESPONSE_INSPECT bytes of the upstream's body (when `keep`), then reports it. */
function collectBody(keep: boolean, done: (raw: Buffer | null) => void): BodyObserver {
  const list: Buffer[] = [];
  let size = 0;
  return {
    data(chunk) {
      if (!keep || size >= MAX_RESPONSE_INSPECT) return;
      list.push(chunk);
      size += chunk.length;
    },
    end() {
      done(keep ? Buffer.concat(list) : null);
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
