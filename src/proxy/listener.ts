import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import type { Config, ListenerConfig } from '../config/schema.js';
import { GatekeeperError } from '../errors.js';
import type { CidrSet } from '../net/ip.js';
import { normalizeIp } from '../net/ip.js';
import { readProxyHeader } from '../net/proxy-protocol.js';
import type { ClientSlots } from './client-slots.js';
import { PEER, PROXY_SOURCE } from './gate.js';

export interface StartedServer {
  readonly server: http.Server | net.Server;
  readonly port: number;
  readonly host: string;
}

/**
 * Creates an HTTP or HTTPS server with the client-facing timeouts that keep slow clients
 * (slowloris) from holding connections: headers within headersTimeout, the whole request within
 * requestTimeout, idle keep-alive connections closed after keepAliveTimeout.
 */
export function createServer(l: ListenerConfig, proxy: Config['proxy'], handler: http.RequestListener): http.Server {
  const options: http.ServerOptions = {
    headersTimeout: proxy.headersTimeout * 1000,
    requestTimeout: proxy.requestTimeout * 1000,
    keepAliveTimeout: proxy.keepAliveTimeout * 1000,
    maxHeaderSize: 32 * 1024,
    // How often Node checks those timeouts (default 30 s would let a slowloris hold on much longer).
    connectionsCheckingInterval: Math.max(250, Math.min(proxy.headersTimeout, proxy.requestTimeout) * 250),
    noDelay: true,
  };
  if (l.tls) {
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = readFileSync(l.tls.cert);
      key = readFileSync(l.tls.key);
    } catch (err) {
      throw new GatekeeperError('GK_ERR_LISTEN', `cannot read TLS certificate or key: ${(err as Error).message}`);
    }
    return https.createServer({ ...options, cert, key, minVersion: 'TLSv1.2' }, handler);
  }
  return http.createServer(options, handler);
}

export function listen(server: http.Server | net.Server, l: ListenerConfig, name: string): Promise<StartedServer> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new GatekeeperError('GK_ERR_LISTEN', `listener ${name} cannot bind ${l.host}:${l.port}: ${err.code ?? err.message}`, [], { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host: l.host, port: l.port }, () => {
      server.off('error', onError);
      const addr = server.address() as AddressInfo;
      resolve({ server, port: addr.port, host: addr.address });
    });
  });
}

/**
 * The per-client cap on open connections a TCP front applies: `keyOf` gives the key an address is
 * counted under, or null for an address that is not capped (a trusted proxy carries many clients).
 */
export interface ConnectionCap {
  readonly slots: ClientSlots;
  keyOf(peer: string): string | null;
  /** A connection was refused (reset) because its client holds its share. */
  onRefused(): void;
}

/** Takes a connection slot for the client; false (and the connection reset) when it holds its share. */
function admitConnection(socket: net.Socket, client: string, cap: ConnectionCap | undefined): boolean {
  if (!cap) return true;
  const key = cap.keyOf(client);
  if (key === null) return true;
  if (!cap.slots.take(key)) {
    cap.onRefused();
    socket.on('error', () => socket.destroy());
    socket.resetAndDestroy();
    return false;
  }
  socket.once('close', () => cap.slots.release(key));
  return true;
}

/** Marks a connection whose PROXY header gave no client address (v1 UNKNOWN, v2 LOCAL). */
const PROXY_NO_SOURCE = Symbol('gatekeeper.proxyNoSource');
type FrontSocket = net.Socket & { [PROXY_NO_SOURCE]?: boolean };

/** Forwarding headers a client could have written: never read on a connection with no PROXY source. */
const CLIENT_FORWARDING_HEADERS = ['x-forwarded-for', 'x-real-ip', 'forwarded', 'x-forwarded-proto', 'x-forwarded-port'] as const;

function dropForwardingHeaders(req: http.IncomingMessage): void {
  const socket = req.socket as FrontSocket & { _parent?: FrontSocket };
  // Behind TLS the marks are on the raw socket the TLS socket wraps.
  if (!socket[PROXY_NO_SOURCE] && !socket._parent?.[PROXY_NO_SOURCE]) return;
  for (const h of CLIENT_FORWARDING_HEADERS) delete req.headers[h];
}

/**
 * A TCP front for a listener with `proxyProtocol: true`: only trusted proxies may connect; each
 * connection must start with a PROXY v1/v2 header, whose source address becomes the peer, and is
 * then handed to the HTTP(S) server.
 *
 * A header without a client address (v1 `UNKNOWN`, v2 `LOCAL`: HAProxy's own health checks, or a
 * source it cannot express) is served as the proxy itself, as the PROXY protocol specification
 * says, and its requests' X-Forwarded-For (and the other forwarding headers) are dropped before
 * the gate sees them: the proxy vouched for no client, so nothing a client wrote is believed.
 */
export function proxyProtocolFront(server: http.Server, trusted: () => CidrSet, headerTimeoutMs: number, onRefused: (peer: string) => void, cap?: ConnectionCap): net.Server {
  // Before the gate's own listeners: they read X-Forwarded-For.
  server.prependListener('request', dropForwardingHeaders);
  server.prependListener('upgrade', dropForwardingHeaders);
  // HTTPS: the gate reads the PROXY source off req.socket, the TLS socket: hand it over from the raw one.
  server.prependListener('secureConnection', (tlsSocket: net.Socket & { _parent?: net.Socket & { [PROXY_SOURCE]?: string } }) => {
    const source = tlsSocket._parent?.[PROXY_SOURCE];
    if (source) (tlsSocket as net.Socket & { [PROXY_SOURCE]?: string })[PROXY_SOURCE] = source;
  });
  const front = net.createServer((socket) => {
    const peer = normalizeIp(socket.remoteAddress);
    if (!peer || !trusted().has(peer)) {
      onRefused(peer ?? 'unknown');
      socket.destroy();
      return;
    }
    readProxyHeader(socket, headerTimeoutMs, (source) => {
      if (source === undefined) {
        onRefused(peer);
        return;
      }
      // Capped per client the header names; a connection without one is the proxy's own.
      if (source && !admitConnection(socket, source, cap)) return;
      if (source) (socket as net.Socket & { [PROXY_SOURCE]?: string })[PROXY_SOURCE] = source;
      else (socket as FrontSocket)[PROXY_NO_SOURCE] = true;
      server.emit('connection', socket);
      // HTTPS: the TLS socket reads what is buffered (the ClientHello, often in the same segment
      // as the PROXY header) itself; resuming here would flow those bytes to nobody and hang the
      // handshake.
      if (!(server instanceof tls.Server)) socket.resume();
    });
  });
  front.on('close', () => server.close(() => undefined));
  return front;
}

/**
 * What the TCP front does with a new connection: `null` lets it through to the HTTP server;
 * `'reset'` resets it at once (RST, no TIME_WAIT kept on our side); a function answers it with a
 * raw page (JSON when the first bytes of its request ask for JSON), then closes it.
 */
export type FrontVerdict = null | 'reset' | ((json: boolean) => string);

/**
 * The TCP front of a listener: connections from banned addresses are refused before any HTTP
 * parsing, so a flood of banned clients costs little more than accepting their connections. The
 * peer address is normalised here once and handed to the gate with the socket.
 */
export function banFront(server: http.Server, tls: boolean, judge: (peer: string) => FrontVerdict, onRefused: () => void, cap?: ConnectionCap): net.Server {
  const front = net.createServer({ noDelay: true }, (socket) => {
    const peer = normalizeIp(socket.remoteAddress);
    const verdict = peer ? judge(peer) : null;
    if (verdict === null) {
      if (peer && !admitConnection(socket, peer, cap)) return;
      (socket as net.Socket & { [PEER]?: string | null })[PEER] = peer;
      server.emit('connection', socket);
      return;
    }
    onRefused();
    socket.on('error', () => socket.destroy());
    // TLS: no page is possible before a handshake, which a banned client is not worth.
    if (verdict === 'reset' || tls) {
      socket.resetAndDestroy();
      return;
    }
    socket.setTimeout(5000, () => socket.destroy());
    socket.once('data', (chunk: Buffer) => {
      const head = chunk.toString('latin1', 0, Math.min(chunk.length, 8192));
      socket.end(verdict(/\r\n(?:accept|content-type):[^\r\n]*json/i.test(head)));
    });
  });
  front.on('close', () => server.close(() => undefined));
  return front;
}

/** Stops accepting, lets in-flight requests finish for up to `graceMs`, then closes the rest. */
export function closeServer(server: http.Server, graceMs: number, front?: net.Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, graceMs);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    if (front) {
      front.close();
      // The HTTP server never listened itself: wait for its connections to drain.
      const poll = setInterval(() => {
        server.getConnections((_err, n) => {
          if (!n) {
            clearInterval(poll);
            done();
          }
        });
      }, 50);
      poll.unref();
    } else {
      server.close(done);
    }
    server.closeIdleConnections();
  });
}
