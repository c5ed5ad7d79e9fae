import net from 'node:net';
import tls from 'node:tls';
import { ResponseParser, type ResponseSink } from './response-parser.js';
import { requestHead, streamBody, UpstreamError, type BodyExchange, type UpstreamRequest } from './upstream-request.js';

export { UpstreamError, type UpstreamRequest } from './upstream-request.js';

/*
 * Keep-alive HTTP/1.1 connections to one upstream (Zimbra's webmail or admin port), written for
 * the one thing a proxy does with them: write a request head whose headers Node's parser has
 * already checked, then stream the answer straight into the client's response. It replaced an
 * undici Pool; side by side (npm run bench, "bare undici proxy" against "bare engine") the same
 * forwarding code ran 10–15% faster on it, mostly from what a general-purpose client does per
 * request and a proxy does not need (a Request object, header validation by regex, a WASM parser
 * call per header field, a queue per client).
 *
 * What it guarantees:
 * - at most `maxConnections` sockets; requests beyond wait in FIFO order, and a request whose
 *   client left while waiting is never written (the handler's onConnect aborts it);
 * - a connection is reused only after a complete, correctly framed answer to a fully sent request
 *   on HTTP/1.1 without `Connection: close`; anything else closes it;
 * - a request that finds its reused connection closed by the upstream before any byte of the answer
 *   (the upstream's keep-alive timeout racing ours) is sent again once on a new connection, when it
 *   is safe to repeat (GET, HEAD, OPTIONS with no streamed body), as nginx and Go's client do;
 * - no answer head within `headersTimeoutMs`: the request fails with UPSTREAM_HEADERS_TIMEOUT;
 *   idle connections close after `keepAliveMs` (or the upstream's `Keep-Alive: timeout` less 1 s).
 */

/** The interface the forwarder implements (modelled on undici's dispatch handler). */
export interface UpstreamHandler {
  /** The request has a connection and is about to be written; `abort` stops it (and closes the connection). */
  onConnect(abort: (err?: Error) => void): void;
  /** The final answer's head (1xx heads are read and dropped by the parser). */
  onHeaders(statusCode: number, raw: string[], resume: () => void): void;
  /** Return false to pause the upstream until `resume` is called. */
  onData(chunk: Buffer): boolean;
  onComplete(): void;
  onError(err: Error): void;
}

export interface UpstreamPoolStats {
  readonly busy: number;
  readonly idle: number;
  readonly queued: number;
  /** Requests sent again on a new connection after a kept-alive one closed under them (a counter). */
  readonly retried: number;
}

export interface UpstreamPoolOptions {
  readonly maxConnections: number;
  readonly headersTimeoutMs: number;
  readonly keepAliveMs: number;
  readonly connectTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly tlsVerify: boolean;
}

const RETRYABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const poolClosed = (): UpstreamError => new UpstreamError('UPSTREAM_POOL_CLOSED', 'the upstream pool is closed');
/** One request on its way: it may wait in the queue, and is re-sent at most once. */
class Job {
  connection: Connection | null = null;
  settled = false;
  retried = false;
  /** Bytes of the request have gone to the connection: aborting now must close it. */
  written = false;

  constructor(readonly request: UpstreamRequest, readonly handler: UpstreamHandler) {}

  /** Resumes the connection paused by this job's backpressure, if it still serves this job. */
  readonly resume = (): void => {
    const c = this.connection;
    if (c && c.job === this) c.socket.resume();
  };

  readonly abort = (err?: Error): void => {
    if (this.settled) return;
    const c = this.connection;
    const written = this.written;
    this.fail(err ?? new UpstreamError('UPSTREAM_ABORTED', 'request aborted'));
    if (!c) return;
    if (written) c.socket.destroy(); // mid-exchange: the connection cannot be reused
    else if (!c.socket.destroyed) c.pool.release(c); // nothing was written: the connection is clean
  };

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    const c = this.connection;
    if (c && c.job === this) { c.job = null; c.parser.detach(); }
    this.connection = null;
    this.handler.onError(err);
  }

  get retryable(): boolean {
    const { method, body } = this.request;
    return !this.retried && RETRYABLE_METHODS.has(method) && (body === null || Buffer.isBuffer(body));
  }
}

class Connection implements ResponseSink {
  readonly parser: ResponseParser;
  job: Job | null = null;
  reused = false;
  /** The request's body has been written in full (the connection is unusable until it has). */
  bodySent = true;
  /** Holds a job that waits for the check phase of this turn (see UpstreamPool.defer). */
  awaitingFlush = false;
  /** When it went back to the idle list; 0 while it serves a request. */
  idleSince = 0;
  /** Date.now() after which an answer head is overdue; 0 when none is awaited. */
  headersDeadline = 0;
  keepAliveMs: number;
  error: Error | null = null;

  constructor(readonly pool: UpstreamPool, readonly socket: net.Socket, maxHeaderBytes: number, keepAliveMs: number) {
    this.parser = new ResponseParser(maxHeaderBytes);
    this.keepAliveMs = keepAliveMs;
  }

  head(statusCode: number, raw: string[]): void {
    this.headersDeadline = 0;
    const hint = this.parser.keepAliveHintMs;
    if (hint > 0) this.keepAliveMs = Math.min(this.pool.keepAliveMs, Math.max(0, hint - 1000));
    const job = this.job!;
    job.handler.onHeaders(statusCode, raw, job.resume);
  }

  data(chunk: Buffer): void {
    if (!this.job!.handler.onData(chunk)) this.socket.pause();
  }

  complete(reusable: boolean): void {
    const job = this.job!;
    this.job = null;
    job.settled = true;
    job.connection = null;
    job.handler.onComplete();
    if (reusable && this.bodySent && !this.socket.destroyed) this.pool.release(this);
    else this.socket.destroy();
  }
}

function onSocketData(this: net.Socket, chunk: Buffer): void {
  const c = (this as SocketWithConnection)[CONNECTION];
  const job = c.job;
  if (!job || c.parser.idle) {
    this.destroy(); // the upstream spoke out of turn: nothing on this connection can be trusted
    return;
  }
  try {
    c.parser.feed(chunk);
  } catch (err) {
    job.fail(err as Error);
    this.destroy();
  }
}

const CONNECTION = Symbol('gatekeeper.upstream-connection');
type SocketWithConnection = net.Socket & { [CONNECTION]: Connection };

export class UpstreamPool {
  private readonly idle: Connection[] = [];
  private readonly queue: Job[] = [];
  private deferred: Connection[] = [];
  private flushScheduled = false;
  private readonly connections = new Set<Connection>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly host: string;
  private readonly port: number;
  private readonly secure: boolean;
  private readonly hostHeader: string;
  private closed = false;
  private retried = 0;
  readonly keepAliveMs: number;

  constructor(origin: URL, private readonly options: UpstreamPoolOptions) {
    this.secure = origin.protocol === 'https:';
    this.host = origin.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(origin.port || (this.secure ? 443 : 80));
    this.hostHeader = origin.host;
    this.keepAliveMs = options.keepAliveMs;
    // One timer for every connection: idle expiry and overdue heads, checked a few times per timeout.
    const tick = Math.max(20, Math.min(1000, Math.floor(options.headersTimeoutMs / 10)));
    this.sweeper = setInterval(() => this.sweep(Date.now()), tick).unref();
  }

  /** Connections open now (busy and idle). */
  get size(): number {
    return this.connections.size;
  }

  /** For the metrics: connections by state, requests waiting for one, requests sent again so far. */
  stats(): UpstreamPoolStats {
    let idle = 0;
    for (const c of this.idle) if (!c.socket.destroyed) idle++;
    return { busy: this.connections.size - idle, idle, queued: this.queue.length, retried: this.retried };
  }

  dispatch(request: UpstreamRequest, handler: UpstreamHandler): void {
    const job = new Job(request, handler);
    if (this.closed) {
      job.fail(poolClosed());
      return;
    }
    this.assign(job);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const job of this.queue.splice(0)) job.fail(poolClosed());
    for (const c of this.connections) c.socket.destroy();
  }

  /** A connection finished its exchange cleanly: give it to the next waiting request, or keep it. */
  release(c: Connection): void {
    c.reused = true;
    c.socket.resume(); // it may have been paused by the last client's backpressure
    const next = this.queue.shift();
    if (next) this.defer(c, next);
    else {
      c.idleSince = Date.now();
      this.idle.push(c);
    }
  }

  private assign(job: Job): void {
    let c = this.idle.pop();
    while (c && c.socket.destroyed) c = this.idle.pop();
    if (c) this.defer(c, job);
    else if (this.connections.size < this.options.maxConnections) this.run(this.open(), job);
    else this.queue.push(job);
  }

  /**
   * A request for a kept-alive connection is written in the check phase of this turn of the event
   * loop, not at once: by then the poll phase has delivered anything already waiting on that socket
   * (a FIN, a reset, bytes nobody asked for), and a connection that spoke out of turn is closed and
   * the request goes to another one instead of reading those bytes as its answer. undici does the
   * same (GHSA-35p6-xmwp-9g52). One setImmediate per turn serves every such request.
   */
  private defer(c: Connection, job: Job): void {
    c.job = job;
    c.idleSince = 0;
    job.connection = c;
    c.awaitingFlush = true;
    this.deferred.push(c);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const list = this.deferred;
    this.deferred = [];
    for (const c of list) {
      if (!c.awaitingFlush) continue; // listed twice (handed on again before this turn's check phase)
      c.awaitingFlush = false;
      const job = c.job;
      // Gone, or its job was abandoned or moved to another connection meanwhile.
      if (job && job.connection === c && !job.settled && !c.socket.destroyed) this.run(c, job);
    }
  };

  private open(): Connection {
    const { connectTimeoutMs, tlsVerify } = this.options;
    const socket = this.secure
      ? tls.connect({ host: this.host, port: this.port, servername: net.isIP(this.host) ? undefined : this.host, rejectUnauthorized: tlsVerify, ALPNProtocols: ['http/1.1'] })
      : net.connect({ host: this.host, port: this.port });
    socket.setNoDelay(true);
    socket.setTimeout(connectTimeoutMs);
    const c = new Connection(this, socket, this.options.maxHeaderBytes, this.keepAliveMs);
    (socket as SocketWithConnection)[CONNECTION] = c;
    this.connections.add(c);
    socket.once(this.secure ? 'secureConnect' : 'connect', () => socket.setTimeout(0));
    socket.once('timeout', () => socket.destroy(new UpstreamError('UPSTREAM_CONNECT_TIMEOUT', `no connection to ${this.hostHeader} within ${connectTimeoutMs} ms`)));
    socket.on('data', onSocketData);
    socket.on('error', (err) => { c.error ??= err; });
    socket.on('close', () => this.closedConnection(c));
    return c;
  }

  private closedConnection(c: Connection): void {
    this.connections.delete(c);
    // (A closed idle connection stays in `idle` until assign() or the sweep skips it.)
    const job = c.job;
    if (job && !job.written) {
      // Nothing of the request was sent (it waited for the check phase, or for its body): another connection takes it.
      c.job = null;
      job.connection = null;
      if (this.closed) job.fail(poolClosed());
      else this.assign(job);
    } else if (job) {
      const answered = c.parser.bytesRead > 0;
      if (!answered && c.reused && job.retryable && !this.closed) {
        // The upstream closed a kept-alive connection as the request went out: send it again.
        c.job = null;
        c.parser.detach();
        job.connection = null;
        job.written = false;
        job.retried = true;
        this.retried++;
        this.assign(job);
      } else if (c.error) job.fail(c.error);
      else {
        try {
          c.parser.eof(); // completes an answer that runs until the connection closes
        } catch (err) {
          job.fail(answered ? (err as Error) : new UpstreamError('UPSTREAM_CLOSED', 'the upstream closed the connection before answering'));
        }
      }
    }
    // A connection slot is free: start the next waiting request on a new one.
    const next = this.connections.size < this.options.maxConnections ? this.queue.shift() : undefined;
    if (next && !this.closed) this.run(this.open(), next);
  }

  private run(c: Connection, job: Job): void {
    c.job = job;
    c.idleSince = 0;
    job.connection = c;
    job.handler.onConnect(job.abort); // aborted here (its client left while it waited): abort() released c
    if (job.settled) return;
    let head: string;
    try {
      head = requestHead(job.request, this.hostHeader);
    } catch (err) {
      c.job = null;
      job.connection = null;
      job.fail(err as Error);
      if (!c.socket.destroyed) this.release(c);
      return;
    }
    const { body } = job.request;
    c.parser.start(c, job.request.method === 'HEAD');
    const { socket } = c;
    if (body === null || Buffer.isBuffer(body)) {
      job.written = true;
      c.bodySent = true;
      socket.cork();
      socket.write(head, 'latin1');
      if (body !== null && body.length > 0) socket.write(body);
      socket.uncork();
      this.awaitHead(c);
    } else {
      c.bodySent = false;
      const exchange: BodyExchange = {
        socket,
        current: () => c.job === job,
        headWritten: () => job.written,
        writingHead: () => void (job.written = true),
        sent: () => {
          c.bodySent = true;
          this.awaitHead(c);
        },
        abandon: (err) => job.abort(err),
      };
      streamBody(exchange, head, body, job.request.headers['content-length'] === undefined);
    }
  }

  /**
   * The request is sent in full: its answer is due within headersTimeoutMs. (Not before: a large
   * upload over a slow line may take longer than that, and is not Zimbra's fault.)
   */
  private awaitHead(c: Connection): void {
    c.headersDeadline = Date.now() + this.options.headersTimeoutMs;
  }

  private sweep(now: number): void {
    if (this.idle.length > 0 && this.idle.some((c) => c.socket.destroyed)) {
      const open = this.idle.filter((c) => !c.socket.destroyed);
      this.idle.length = 0;
      this.idle.push(...open);
    }
    for (const c of this.connections) {
      if (c.job) {
        if (c.headersDeadline !== 0 && now > c.headersDeadline) {
          c.job.fail(new UpstreamError('UPSTREAM_HEADERS_TIMEOUT', `no answer within ${this.options.headersTimeoutMs} ms`));
          c.socket.destroy();
        }
      } else if (c.idleSince !== 0 && now - c.idleSince > c.keepAliveMs) c.socket.destroy();
    }
  }
}
