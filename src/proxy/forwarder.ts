import http from 'node:http';
import https from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import httpProxy from 'http-proxy';
import { readBodyUpTo, replayBody } from './request-body.js';
import { ClientSlots } from './client-slots.js';
import { UpstreamPool, type UpstreamHandler, type UpstreamPoolStats } from './upstream-pool.js';

/*
 * The only module that talks to the upstream. Two engines, each where it is best:
 * - HTTP requests go through the gatekeeper's own keep-alive pool (upstream-pool.ts: bounded
 *   connections, strict response framing) with a handler that writes straight into the client's
 *   response: no intermediate streams, no header objects unless detection asks for them. Measured
 *   side by side on this hardware (npm run bench), http-proxy 1.18 reached about a quarter of
 *   nginx-as-proxy's request rate and an undici Pool about 40%; this path is what lets the
 *   gatekeeper stay in front of every webmail request.
 * - Websocket upgrades go through npm `http-proxy` (unmaintained since 2020), kept inside this file
 *   with what it gets wrong fixed once: an `error` listener always attached (it would otherwise kill
 *   the process), hop-by-hop headers stripped.
 * Both strip the client's hop-by-hop headers: a client's `Connection: close` must not turn every
 * request into a new upstream connection, and the upstream's must not close the client's.
 */

export type UpstreamErrorKind = 'refused' | 'timeout' | 'reset' | 'other';

export interface ForwarderOptions {
  readonly target: string;
  readonly tlsVerify: boolean;
  readonly maxSockets: number;
  readonly upstreamTimeoutMs: number;
  /** The upstream answered (headers received) after `elapsedMs`. */
  readonly onResponse?: ((elapsedMs: number) => void) | undefined;
  /** The upstream failed; the page has been sent (or the socket closed). */
  readonly onError?: ((req: http.IncomingMessage, kind: UpstreamErrorKind, err: Error) => void) | undefined;
  /** Answers the client when the upstream failed before a response (502/504 page). */
  readonly sendError: (req: http.IncomingMessage, res: http.ServerResponse, kind: UpstreamErrorKind) => void;
  /**
   * Upstream connections one client (the key `clientKeyOf` gives its address) may have in use at
   * once, waiting ones included, while connections are scarce (half of maxSockets in use or waited
   * for); 0 or absent: no limit. Past it, `refuseClient` answers.
   */
  readonly maxUpstreamPerClient?: number | undefined;
  /** The key a client address is counted under (IPv6: its /jail.ipv6Prefix); null: not limited (a trusted proxy itself). */
  readonly clientKeyOf?: ((ip: string) => string | null) | undefined;
  /** Answers (and counts) a request refused because its client holds its share of upstream connections. */
  readonly refuseClient?: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  /**
   * Request bodies up to this many bytes are read whole before an upstream connection is taken, so
   * a client that sends them slowly holds none; larger ones stream (0 or absent: all stream).
   */
  readonly bufferBodyBytes?: number | undefined;
}

/** The upstream's answer as detection sees it: status and lower-cased headers. */
export interface UpstreamAnswer {
  readonly statusCode: number;
  readonly headers: http.IncomingHttpHeaders;
}

/** Sees the upstream's body as it streams to the client. */
export interface BodyObserver {
  data(chunk: Buffer): void;
  /** `complete` is false when the body was cut short (upstream or client gone). */
  end(complete: boolean): void;
}

export interface ForwardCall {
  /** Request body to send instead of reading `req` (already read for detection). */
  readonly body?: Buffer | Readable | undefined;
  /** Called with the upstream's answer before it is streamed to the client; may observe the body. */
  readonly tap?: ((answer: UpstreamAnswer) => BodyObserver | undefined) | undefined;
  /** Called once if the upstream fails before answering. */
  readonly failed?: ((kind: UpstreamErrorKind) => void) | undefined;
  /** The client address the request is counted under; default: X-Forwarded-For, which the gate has set to it. */
  readonly clientKey?: string | undefined;
}

/** Request headers never forwarded (RFC 9110 §7.6.1), plus `expect`: the 100-continue is ours. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'upgrade', 'te', 'trailer', 'transfer-encoding', 'expect'];
/** Response headers never passed back: they describe our pooled connection, not the client's. */
const RESPONSE_HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

const NO_NAMES: readonly string[] = [];

/**
 * The header names a Connection header value lists, lower-cased: they are hop-by-hop too (RFC 9110
 * §7.6.1). `close` and `keep-alive` are connection options, not header names.
 */
function connectionNames(value: string): readonly string[] {
  // Browsers, nginx and Jetty send just `keep-alive` or `close`, on nearly every message: nothing to split.
  if (value.length <= 10 && /^(?:keep-alive|close)$/i.test(value)) return NO_NAMES;
  const out: string[] = [];
  for (const t of value.split(',')) {
    const name = t.trim().toLowerCase();
    if (name && name !== 'close' && name !== 'keep-alive') out.push(name);
  }
  return out;
}

/** Removes hop-by-hop headers (and the ones named in Connection), keeping Upgrade for websockets. */
export function stripHopByHop(headers: http.IncomingHttpHeaders, keepUpgrade: boolean): void {
  if (headers.connection) {
    for (const name of connectionNames(headers.connection)) if (name !== 'upgrade') delete headers[name];
  }
  for (const h of HOP_BY_HOP) {
    if (keepUpgrade && (h === 'connection' || h === 'upgrade')) continue;
    if (headers[h] !== undefined) delete headers[h];
  }
}

function errorKind(err: NodeJS.ErrnoException): UpstreamErrorKind {
  const code = err.code ?? '';
  if (code === 'UPSTREAM_HEADERS_TIMEOUT' || code === 'UPSTREAM_CONNECT_TIMEOUT' || code === 'ETIMEDOUT') return 'timeout';
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'refused';
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UPSTREAM_CLOSED') return 'reset';
  return 'other';
}

/** Lower-cased header object from the raw [name, value, …] list, the shape Node gives. */
function headerObject(raw: readonly string[]): http.IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    const prev = out[k];
    if (k === 'set-cookie') out[k] = Array.isArray(prev) ? [...prev, v] : [v];
    else out[k] = prev === undefined ? v : `${prev as string}, ${v}`;
  }
  return out;
}

const EXCHANGE = Symbol('gatekeeper.exchange');
type ResponseWithExchange = http.ServerResponse & { [EXCHANGE]?: Exchange };

function onResponseClose(this: ResponseWithExchange): void {
  this[EXCHANGE]?.clientClosed();
}

/**
 * One forwarded request: the pool's handler (raw headers, no header object per response) writing
 * into the client's response with backpressure.
 */
class Exchange implements UpstreamHandler {
  private abort: ((err?: Error) => void) | null = null;
  private resume: (() => void) | null = null;
  private observer: BodyObserver | undefined = undefined;
  private answered = false;
  private finished = false;

  constructor(
    private readonly f: ForwarderOptions,
    private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse,
    private readonly call: ForwardCall | undefined,
    private readonly start: number,
    /** The client's upstream slot, given back when the exchange ends. */
    private readonly slots: ClientSlots | null,
    private readonly slot: string | null,
  ) {
    (res as ResponseWithExchange)[EXCHANGE] = this;
    res.on('close', onResponseClose); // one shared listener: no closure per request
  }

  /** Ends the exchange (once): its client's upstream slot is free again. */
  private end(): boolean {
    if (this.finished) return false;
    this.finished = true;
    if (this.slot !== null) this.slots!.release(this.slot);
    return true;
  }

  /** The client went away first: stop the upstream request (a long poll would hold a pooled connection). */
  clientClosed(): void {
    if (!this.end()) return;
    this.observer?.end(false);
    this.abort?.(new Error('client closed the connection'));
  }

  onConnect(abort: (err?: Error) => void): void {
    // The client may have left while the request waited for a free upstream connection: the
    // request must not reach Zimbra (a login would be counted, a write would be done, for nobody).
    if (this.finished) abort(new Error('client closed the connection'));
    else this.abort = abort;
  }

  onHeaders(statusCode: number, raw: string[], resume: () => void): void {
    const { res, call } = this;
    this.answered = true;
    this.f.onResponse?.(Date.now() - this.start);
    if (call?.tap) this.observer = call.tap({ statusCode, headers: headerObject(raw) });
    if (res.destroyed) return;
    // One pass over the raw headers; the rare Connection header naming others is applied after.
    let named: Set<string> | null = null;
    let out: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      if (RESPONSE_HOP_BY_HOP.has(lower)) {
        if (lower === 'connection') for (const n of connectionNames(raw[i + 1]!)) (named ??= new Set()).add(n);
        continue;
      }
      out.push(name, raw[i + 1]!);
    }
    if (named) {
      const kept: string[] = [];
      for (let i = 0; i < out.length; i += 2) if (!named.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
      out = kept;
    }
    try {
      res.writeHead(statusCode, out);
    } catch (err) {
      // A header Node refuses to send (an upstream bug): the client gets a 502, the upstream
      // request is dropped, and the attempt is settled as "no answer".
      this.answered = false;
      this.onError(err as Error);
      this.abort?.(err as Error);
      return;
    }
    this.resume = resume;
  }

  onData(chunk: Buffer): boolean {
    this.observer?.data(chunk);
    const { res } = this;
    if (res.destroyed || res.write(chunk)) return true;
    // The client reads slower than Zimbra sends: pause the upstream until the client drains.
    res.once('drain', this.resume!);
    return false;
  }

  onComplete(): void {
    if (!this.end()) return;
    this.observer?.end(true);
    this.res.end();
  }

  onError(err: Error): void {
    if (!this.end()) return;
    const { req, res } = this;
    this.observer?.end(false);
    if (res.writableEnded || res.destroyed) return; // answered by the gate already, or client gone: not the upstream's fault
    const kind = errorKind(err);
    if (!this.answered) this.call?.failed?.(kind);
    this.f.onError?.(req, kind, err);
    if (res.headersSent) res.destroy();
    else this.f.sendError(req, res, kind);
  }
}

export class Forwarder {
  private readonly pool: UpstreamPool;
  private readonly prefix: string;
  private readonly wsProxy: httpProxy;
  private readonly wsAgent: http.Agent;
  private readonly slots: ClientSlots | null;
  private readonly bufferBodyBytes: number;

  constructor(private readonly options: ForwarderOptions) {
    const url = new URL(options.target);
    const perClient = options.maxUpstreamPerClient ?? 0;
    this.slots = perClient > 0 && options.clientKeyOf && options.refuseClient ? new ClientSlots(perClient) : null;
    this.bufferBodyBytes = options.bufferBodyBytes ?? 0;
    const secure = url.protocol === 'https:';
    this.prefix = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
    // No pipelining (Zimbra long-polls: one slow answer would hold the ones behind it) and no body
    // timeout (a large attachment or a long poll streams for as long as it needs).
    this.pool = new UpstreamPool(url, {
      maxConnections: options.maxSockets,
      headersTimeoutMs: options.upstreamTimeoutMs, // no answer head in this time: 504
      keepAliveMs: 15_000,
      connectTimeoutMs: 10_000,
      maxHeaderBytes: 64 * 1024, // Jetty (Zimbra's web server) caps a response head at 8 KiB by default
      tlsVerify: options.tlsVerify,
    });
    this.wsAgent = secure ? new https.Agent({ rejectUnauthorized: options.tlsVerify }) : new http.Agent();
    this.wsProxy = httpProxy.createProxyServer({ target: options.target, agent: this.wsAgent, secure: options.tlsVerify, xfwd: false, changeOrigin: false, ws: true });
    this.wsProxy.on('error', (err: Error, req, socket) => {
      options.onError?.(req, errorKind(err), err);
      (socket as Duplex | undefined)?.destroy();
    });
  }

  /** Forwards an HTTP request. The caller has already set the forwarding headers. */
  web(req: http.IncomingMessage, res: http.ServerResponse, call?: ForwardCall): void {
    const headers = req.headers;
    // Requests carry a body only when they say so (RFC 9112 §6.3); stripping removes transfer-encoding.
    const hasBody = headers['content-length'] !== undefined || headers['transfer-encoding'] !== undefined;
    stripHopByHop(headers, false);
    if (call?.body === undefined && hasBody && this.bufferBodyBytes > 0) {
      // A small body is read first: a client sending it slowly holds no upstream connection meanwhile.
      readSmallBody(req, this.bufferBodyBytes, (body) => this.dispatch(req, res, call, body));
    } else this.dispatch(req, res, call, call?.body ?? (hasBody ? req : null));
  }

  private dispatch(req: http.IncomingMessage, res: http.ServerResponse, call: ForwardCall | undefined, body: Buffer | Readable | null): void {
    let slot: string | null = null;
    if (this.slots) {
      // The gate has set X-Forwarded-For to the one client address it resolved.
      const ip = call?.clientKey ?? req.headers['x-forwarded-for'];
      slot = typeof ip === 'string' ? this.options.clientKeyOf!(ip) : null;
      // Past its share, a client is refused only while connections are scarce (half of maxSockets
      // in use or waited for): many webmail tabs behind one NAT address hold a long poll each.
      if (slot !== null && !this.slots.take(slot) && !this.slots.take(slot, !this.scarce())) {
        this.options.refuseClient!(req, res);
        return;
      }
    }
    const headers = req.headers;
    const handler = new Exchange(this.options, req, res, call, Date.now(), this.slots, slot);
    try {
      this.pool.dispatch({ path: this.prefix + (req.url ?? '/'), method: req.method ?? 'GET', headers, body }, handler);
    } catch (err) {
      handler.onError(err as Error);
    }
  }

  /** Half the upstream connections or more are in use or waited for. */
  private scarce(): boolean {
    const s = this.pool.stats();
    return (s.busy + s.queued) * 2 >= this.options.maxSockets;
  }

  /** Upstream connections and waiting requests, for the metrics. */
  stats(): UpstreamPoolStats {
    return this.pool.stats();
  }

  /** Client keys holding upstream connections now (for gatekeeper_tracked_keys). */
  get clientsHolding(): number {
    return this.slots?.size ?? 0;
  }

  /** Forwards a websocket upgrade. */
  ws(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    stripHopByHop(req.headers, true);
    socket.on('error', () => socket.destroy());
    this.wsProxy.ws(req, socket, head);
  }

  close(): void {
    this.wsProxy.close();
    this.wsAgent.destroy();
    this.pool.close();
  }
}

/**
 * Reads a request body of at most `limit` bytes whole, then calls `done` with it; a larger one
 * (announced, or found while reading a chunked one) goes on as a stream of what was read and the
 * rest. A client that leaves before its body ends gets nothing sent upstream (`done` is never called).
 */
export function readSmallBody(req: http.IncomingMessage, limit: number, done: (body: Buffer | Readable) => void): void {
  const announced = req.headers['content-length'];
  if (announced !== undefined && Number(announced) > limit) {
    done(req);
    return;
  }
  // The same reader as the gate's login bodies; it rejects when the client leaves mid-body.
  readBodyUpTo(req, limit).then(
    (read) => done(read.complete ?? replayBody(read.head!, req)),
    () => undefined,
  );
}
