import type http from 'node:http';
import type net from 'node:net';
import type { Readable } from 'node:stream';

/*
 * The request side of the upstream pool: the head it writes and the body it streams. Header names
 * and values come from Node's parser (llhttp) or from the gate; they are checked once more here,
 * because one CR or LF in a value would let a client write a header of its own into Zimbra's view.
 */

export interface UpstreamRequest {
  readonly method: string;
  readonly path: string;
  /** Node's parsed request headers minus the hop-by-hop ones. */
  readonly headers: http.IncomingHttpHeaders;
  /** A Buffer is sent with its Content-Length; a stream as-is (its Content-Length) or chunked. */
  readonly body: Buffer | Readable | null;
}

export type UpstreamErrorCode = 'UPSTREAM_CONNECT_TIMEOUT' | 'UPSTREAM_HEADERS_TIMEOUT' | 'UPSTREAM_CLOSED' | 'UPSTREAM_ABORTED' | 'UPSTREAM_BAD_REQUEST' | 'UPSTREAM_POOL_CLOSED';

export class UpstreamError extends Error {
  constructor(readonly code: UpstreamErrorCode, message: string) {
    super(message);
    this.name = 'UpstreamError';
  }
}

const HEADER_VALUE_UNSAFE = /[\r\n\0]/;
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The request head. Values come from Node's parser or the gate; still, none may break a line. */
export function requestHead(request: UpstreamRequest, hostHeader: string): string {
  const { headers, body } = request;
  let head = `${request.method} ${request.path} HTTP/1.1\r\n`;
  let host = false;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (name === 'content-length' && Buffer.isBuffer(body)) continue; // its own length, below
    if (name === 'host') host = true;
    if (!HEADER_NAME.test(name)) throw new UpstreamError('UPSTREAM_BAD_REQUEST', `invalid request header name ${JSON.stringify(name.slice(0, 40))}`);
    if (typeof value === 'string') {
      if (HEADER_VALUE_UNSAFE.test(value)) throw new UpstreamError('UPSTREAM_BAD_REQUEST', `invalid characters in request header ${name}`);
      head += `${name}: ${value}\r\n`;
    } else {
      for (const v of value) {
        if (HEADER_VALUE_UNSAFE.test(v)) throw new UpstreamError('UPSTREAM_BAD_REQUEST', `invalid characters in request header ${name}`);
        head += `${name}: ${v}\r\n`;
      }
    }
  }
  if (!host) head += `host: ${hostHeader}\r\n`;
  if (Buffer.isBuffer(body)) head += `content-length: ${body.length}\r\n`;
  else if (body !== null && headers['content-length'] === undefined) head += 'transfer-encoding: chunked\r\n';
  return `${head}\r\n`;
}

/** What the body writer needs from the request it belongs to (built by the pool per streamed body). */
export interface BodyExchange {
  readonly socket: net.Socket;
  /** False once the request was abandoned or moved to another connection. */
  current(): boolean;
  headWritten(): boolean;
  /** The head goes out now, with the first bytes of the body. */
  writingHead(): void;
  /** The whole body is on the wire: the answer is due from now. */
  sent(): void;
  /** The client stopped sending mid-body. */
  abandon(err: Error): void;
}

/**
 * Writes a request body stream to the connection with backpressure, chunk-framed when it has no
 * length. The head goes with the first bytes of the body: a client that announces an upload and
 * sends nothing never reaches Zimbra (undici does the same).
 */
export function streamBody(x: BodyExchange, head: string, body: Readable, chunked: boolean): void {
  const { socket } = x;
  const writeHead = (): void => {
    if (x.headWritten()) return;
    x.writingHead();
    socket.write(head, 'latin1');
  };
  const onDrain = (): void => void body.resume();
  const cleanup = (): void => {
    for (const [emitter, event, listener] of listeners) emitter.off(event, listener);
  };
  const onData = (chunk: Buffer): void => {
    if (!x.current()) return cleanup();
    if (chunk.length === 0) return; // an empty chunk would read as the end of the body
    socket.cork();
    writeHead();
    let ok: boolean;
    if (chunked) {
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      ok = socket.write('\r\n', 'latin1');
    } else ok = socket.write(chunk);
    socket.uncork();
    if (!ok) body.pause();
  };
  const onEnd = (): void => {
    cleanup();
    if (!x.current() || socket.destroyed) return;
    socket.cork();
    writeHead();
    if (chunked) socket.write('0\r\n\r\n', 'latin1');
    socket.uncork();
    x.sent();
  };
  // The client left mid-upload: the upstream must not take a truncated body for a whole one.
  const onError = (): void => {
    cleanup();
    x.abandon(new UpstreamError('UPSTREAM_ABORTED', 'the client stopped sending the request body'));
  };
  // Listeners of different shapes, as EventEmitter takes them; removed together by cleanup().
  const listeners: Array<[Readable | net.Socket, string, (...args: any[]) => void]> = [
    [body, 'data', onData],
    [body, 'end', onEnd],
    [body, 'error', onError],
    [body, 'aborted', onError],
    [socket, 'drain', onDrain],
    [socket, 'close', cleanup],
  ];
  for (const [emitter, event, listener] of listeners) emitter.on(event, listener);
}
