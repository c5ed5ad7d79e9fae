import http from 'node:http';
import https from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import httpProxy from 'http-proxy';

/*
 * The only module that touches npm `http-proxy` (unmaintained since 2020). What it gets wrong for a
 * gatekeeper is fixed here once:
 * - it has no keep-alive agent by default (every request a new TCP+TLS connection): we pass one;
 * - it throws (and kills the process) on an upstream error when no `error` listener exists: we always
 *   attach one and turn errors into 502/504 pages;
 * - it forwards a client's hop-by-hop headers (`Connection: close` turns every request into a new
 *   upstream connection): we strip them before forwarding.
 */

export type UpstreamErrorKind = 'refused' | 'timeout' | 'reset' | 'other';

export interface ForwarderOptions {
  readonly target: string;
  readonly tlsVerify: boolean;
  readonly maxSockets: number;
  readonly upstreamTimeoutMs: number;
  /** The upstream answered (headers received) for this request. */
  readonly onResponse?: ((req: http.IncomingMessage, upstream: http.IncomingMessage, elapsedMs: number) => void) | undefined;
  /** The upstream failed; the page has been sent (or the socket closed). */
  readonly onError?: ((req: http.IncomingMessage, kind: UpstreamErrorKind, err: Error) => void) | undefined;
  /** Answers the client when the upstream failed before a response (502/504 page). */
  readonly sendError: (req: http.IncomingMessage, res: http.ServerResponse, kind: UpstreamErrorKind) => void;
}

export interface ForwardCall {
  /** Request body to send instead of reading `req` (already read for detection). */
  readonly body?: Readable | undefined;
  /** Called with the upstream response before it is streamed to the client. */
  readonly tap?: ((upstream: http.IncomingMessage) => void) | undefined;
  /** Called once if the upstream fails before answering. */
  readonly failed?: (() => void) | undefined;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'upgrade', 'te', 'trailer'];
const STATE = Symbol('gatekeeper.forward');

interface ForwardState {
  start: number;
  timedOut: boolean;
  /** The client asked to close its connection after this response. */
  clientClose: boolean;
  call: ForwardCall | undefined;
}

type WithState = http.IncomingMessage & { [STATE]?: ForwardState };

/** Removes hop-by-hop headers (and the ones named in Connection), keeping Upgrade for websockets. */
export function stripHopByHop(headers: http.IncomingHttpHeaders, keepUpgrade: boolean): void {
  const named = headers.connection;
  if (named) {
    for (const h of named.split(',')) {
      const name = h.trim().toLowerCase();
      if (name && name !== 'upgrade' && name !== 'close' && name !== 'keep-alive') delete headers[name];
    }
  }
  for (const h of HOP_BY_HOP) {
    if (keepUpgrade && (h === 'connection' || h === 'upgrade')) continue;
    delete headers[h];
  }
}

function errorKind(err: NodeJS.ErrnoException, timedOut: boolean): UpstreamErrorKind {
  if (timedOut || err.code === 'ETIMEDOUT') return 'timeout';
  if (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return 'refused';
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return 'reset';
  return 'other';
}

export class Forwarder {
  private readonly proxy: httpProxy;
  private readonly agent: http.Agent;

  constructor(options: ForwarderOptions) {
    const secure = options.target.startsWith('https:');
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets, maxFreeSockets: Math.min(64, options.maxSockets), keepAliveMsecs: 15_000, scheduling: 'lifo' as const };
    this.agent = secure ? new https.Agent({ ...agentOptions, rejectUnauthorized: options.tlsVerify }) : new http.Agent(agentOptions);
    this.proxy = httpProxy.createProxyServer({
      target: options.target,
      agent: this.agent,
      secure: options.tlsVerify,
      xfwd: false, // the gate sets X-Forwarded-* itself, overwriting what the client sent
      changeOrigin: false, // Zimbra picks the virtual host / domain from Host
      ws: true,
    });

    this.proxy.on('proxyReq', (proxyReq, req) => {
      const state = (req as WithState)[STATE];
      if (!state) return;
      proxyReq.setTimeout(options.upstreamTimeoutMs, () => {
        state.timedOut = true;
        proxyReq.destroy(new Error(`no upstream response within ${options.upstreamTimeoutMs} ms`));
      });
    });

    this.proxy.on('proxyRes', (proxyRes, req) => {
      const state = (req as WithState)[STATE];
      if (!state) return;
      options.onResponse?.(req, proxyRes, Date.now() - state.start);
      // The upstream's hop-by-hop headers describe our pooled connection, not the client's: answer
      // the client's own Connection wish (http-proxy would copy the upstream's keep-alive).
      const h = proxyRes.headers;
      delete h['keep-alive'];
      delete h['proxy-connection'];
      h.connection = state.clientClose ? 'close' : 'keep-alive';
      // The response is streaming now: a slow body is not an upstream timeout.
      proxyRes.socket?.setTimeout(0);
      state.call?.tap?.(proxyRes);
    });

    this.proxy.on('error', (err: NodeJS.ErrnoException, req, target) => {
      const state = (req as WithState)[STATE];
      const kind = errorKind(err, state?.timedOut ?? false);
      state?.call?.failed?.();
      if (state) state.call = undefined;
      options.onError?.(req, kind, err);
      if (target instanceof http.ServerResponse) {
        options.sendError(req, target, kind);
      } else {
        (target as Duplex | undefined)?.destroy();
      }
    });
  }

  /** Forwards an HTTP request. The caller has already set the forwarding headers. */
  web(req: http.IncomingMessage, res: http.ServerResponse, call?: ForwardCall): void {
    const conn = req.headers.connection ?? '';
    const clientClose = /\bclose\b/i.test(conn) || (req.httpVersion === '1.0' && !/keep-alive/i.test(conn));
    stripHopByHop(req.headers, false);
    (req as WithState)[STATE] = { start: Date.now(), timedOut: false, clientClose, call };
    this.proxy.web(req, res, call?.body ? { buffer: call.body } : {});
  }

  /** Forwards a websocket upgrade. */
  ws(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    stripHopByHop(req.headers, true);
    (req as WithState)[STATE] = { start: Date.now(), timedOut: false, clientClose: false, call: undefined };
    socket.on('error', () => socket.destroy());
    this.proxy.ws(req, socket, head);
  }

  close(): void {
    this.proxy.close();
    this.agent.destroy();
  }
}
