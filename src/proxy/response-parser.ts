/*
 * Reads Zimbra's HTTP/1.1 answers off a pooled upstream connection: the head, then the body framed
 * as RFC 9112 §6 says. Strict where framing is at stake, because a proxy that guesses a message
 * boundary differently from its peer is open to response splitting: no obs-fold, CRLF line ends
 * only, one Content-Length (or a list of equal ones), never Content-Length together with
 * Transfer-Encoding, chunk sizes of at most 15 hex digits. Anything else is a protocol error: the
 * client gets a 502 and the connection is closed, never reused.
 *
 * Never looser than llhttp, the parser of Node's own client: where llhttp would frame an answer
 * differently (a tab after `chunked`, a second Transfer-Encoding, whitespace in a chunk-size line,
 * a malformed chunk extension or trailer) the answer is refused, and a connection llhttp would not
 * keep (`Proxy-Connection: close`, an answer framed by neither length nor chunked, HEAD included)
 * is not reused. test/integration/framing-differential.test.ts checks this answer by answer.
 *
 * The request side stays with Node's own parser (llhttp); this one only ever reads the upstream.
 */

/** What the parser reports, synchronously, while it is fed. */
export interface ResponseSink {
  /** The final (non-1xx) head. `raw` is [name, value, name, value, …] as sent. */
  head(statusCode: number, raw: string[]): void;
  data(chunk: Buffer): void;
  /** The body is complete. `reusable`: the connection may carry another request. */
  complete(reusable: boolean): void;
}

export class UpstreamProtocolError extends Error {
  readonly code = 'UPSTREAM_BAD_RESPONSE';
  constructor(message: string) {
    super(`upstream sent an invalid response: ${message}`);
    this.name = 'UpstreamProtocolError';
  }
}

const enum State { Idle, Head, Length, ChunkSize, ChunkData, ChunkEnd, Trailers, UntilClose }

/**
 * A whole head in one pass: the status line, then lines of token ":" field-value (HTAB, SP, visible
 * ASCII, obs-text). Nothing else: no bare CR or LF, no control characters, no obs-fold (a line
 * starting with whitespace), no whitespace before the colon. One regex over the head costs less
 * than a test per header (measured: ~0.1 µs against ~0.6 µs for a typical Zimbra head).
 */
const HEAD = /^HTTP\/1\.[01] [1-9]\d\d(?: [\t\x20-\x7e\x80-\xff]*)?(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*)*$/;
const CONTENT_LENGTH = /^\d{1,15}$/;
/**
 * A Content-Length as sent, after the leading OWS: digits, or a list of them (collapsed to one when
 * they are equal), trailing spaces allowed; a tab after the digits is refused, as llhttp refuses it.
 */
const CONTENT_LENGTH_RAW = /^\d{1,15}(?: *, *\d{1,15})* *$/;
/** A Transfer-Encoding as sent, after the leading OWS: a list of codings, trailing spaces only (llhttp reads `chunked<TAB>` as not chunked). */
const TRANSFER_ENCODING_RAW = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:, ?[!#$%&'*+\-.^_`|~0-9A-Za-z]+)* *$/;
/**
 * A chunk-size line: hex digits and extensions `;name` or `;name=value` (token or quoted-string),
 * nothing else: no whitespace anywhere (llhttp refuses `5 ` and `5 ;a`), no unbalanced quote.
 */
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,15})(?:;[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:=(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*$/;
/** A trailer line: the shape of a header line (llhttp parses trailers as headers). */
const TRAILER = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/;
const KEEP_ALIVE_TIMEOUT = /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})/i;
const CLOSE_OPTION = /(?:^|,)\s*close\s*(?:,|$)/i;
const CHUNKED_LAST = /(?:^|,)\s*chunked\s*$/i;
const CRLF_CRLF = Buffer.from('\r\n\r\n');
/** The longest chunk-size line or trailer section read: anything longer is not Zimbra. */
const MAX_LINE = 4096;

export class ResponseParser {
  private state = State.Idle;
  private sink: ResponseSink | null = null;
  private isHead = false;
  private pending: Buffer | null = null;
  private remaining = 0;
  private line = '';
  private keepAlive = false;
  /** Bytes of trailer lines read for the current answer (bounded like a head). */
  private trailerBytes = 0;
  /** Bytes of the response read so far (0: the connection may have closed before answering). */
  bytesRead = 0;
  /** The upstream's `Keep-Alive: timeout=N`, in ms, from the last head (0 when it gave none). */
  keepAliveHintMs = 0;

  constructor(private readonly maxHeaderBytes: number) {}

  /** Expects the answer to a new request; `isHead`: the request was HEAD (no body follows). */
  start(sink: ResponseSink, isHead: boolean): void {
    this.sink = sink;
    this.isHead = isHead;
    this.state = State.Head;
    this.pending = null;
    this.bytesRead = 0;
  }

  /** Stops reporting (the exchange was abandoned); the connection is not reused after this. */
  detach(): void {
    this.sink = null;
    this.state = State.Idle;
  }

  /** True while no answer is expected: bytes arriving now mean the connection is unusable. */
  get idle(): boolean {
    return this.state === State.Idle;
  }

  feed(chunk: Buffer): void {
    if (this.state === State.Idle) throw new UpstreamProtocolError('data after the end of the response');
    this.bytesRead += chunk.length;
    let pos = 0;
    while (pos < chunk.length && this.sink) {
      switch (this.state) {
        case State.Head:
          pos = this.readHead(chunk, pos);
          break;
        case State.Length:
          pos = this.emitCounted(chunk, pos);
          if (this.remaining === 0) this.finish(chunk.length - pos);
          break;
        case State.ChunkSize:
        case State.Trailers:
          pos = this.readLine(chunk, pos);
          break;
        case State.ChunkData:
          pos = this.emitCounted(chunk, pos);
          if (this.remaining === 0) { this.state = State.ChunkEnd; this.remaining = 2; }
          break;
        case State.ChunkEnd:
          if (chunk[pos] !== (this.remaining === 2 ? 0x0d : 0x0a)) throw new UpstreamProtocolError('chunk not followed by CRLF');
          pos++;
          if (--this.remaining === 0) this.state = State.ChunkSize;
          break;
        case State.UntilClose:
          this.emit(chunk, pos, chunk.length);
          pos = chunk.length;
          break;
        default: // Idle: completed (or abandoned) in this read; finish() has told the sink whether bytes remain
          return;
      }
    }
  }

  /** The connection closed. Completes a body that runs until close; anything else was cut short. */
  eof(): void {
    if (!this.sink) return;
    if (this.state === State.UntilClose) {
      this.finish(0); // not reusable: keepAlive was cleared when the framing was chosen
      return;
    }
    throw new UpstreamProtocolError(this.state === State.Head ? 'connection closed before the response head' : 'connection closed before the end of the body');
  }

  private emit(chunk: Buffer, from: number, to: number): void {
    if (to > from) this.sink!.data(from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to));
  }

  /** Passes on up to `remaining` body bytes from `pos`; returns the position after them. */
  private emitCounted(chunk: Buffer, pos: number): number {
    const n = Math.min(this.remaining, chunk.length - pos);
    this.remaining -= n;
    this.emit(chunk, pos, pos + n);
    return pos + n;
  }

  /** The response is complete; bytes after it (`extraBytes`) mean the connection is not reused. */
  private finish(extraBytes: number): void {
    const sink = this.sink;
    if (!sink) return;
    this.state = State.Idle;
    this.sink = null;
    sink.complete(this.keepAlive && extraBytes === 0);
  }

  private readHead(chunk: Buffer, pos: number): number {
    let buf = chunk;
    let from = pos;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk.subarray(pos)]);
      from = 0;
    }
    // Search from a few bytes back so a CRLFCRLF split across reads is found.
    const end = buf.indexOf(CRLF_CRLF, this.pending ? Math.max(0, this.pending.length - 3) : from);
    if (end < 0) {
      if (buf.length - from > this.maxHeaderBytes) throw new UpstreamProtocolError(`head larger than ${this.maxHeaderBytes} bytes`);
      this.pending = from === 0 ? buf : buf.subarray(from);
      return chunk.length;
    }
    if (end - from > this.maxHeaderBytes) throw new UpstreamProtocolError(`head larger than ${this.maxHeaderBytes} bytes`);
    const consumed = end + 4 - from; // bytes of buf taken by this head
    const pendingBefore = this.pending ? this.pending.length : 0;
    this.pending = null;
    this.parseHead(buf.toString('latin1', from, end), buf.length - end - 4);
    // Position in `chunk` after the head (the pending bytes came from earlier reads).
    return pos + consumed - pendingBefore;
  }

  private parseHead(head: string, bytesAfter: number): void {
    if (!HEAD.test(head)) throw new UpstreamProtocolError(`malformed head ${JSON.stringify(head.slice(0, 120))}`);
    // "HTTP/1.x NNN": the shape is proven above.
    const statusCode = Number(head.slice(9, 12));
    const raw: string[] = [];
    let length = -1;
    let chunked = false;
    let transferEncoding = false;
    /** Content-Length said more than once (a list, or repeated lines): passed on as one value. */
    let collapse = false;
    let close = head.charCodeAt(7) === 0x30; // HTTP/1.0
    this.keepAliveHintMs = 0;
    let eol = head.indexOf('\r\n');
    while (eol >= 0) {
      const start = eol + 2;
      eol = head.indexOf('\r\n', start);
      const end = eol < 0 ? head.length : eol;
      const colon = head.indexOf(':', start);
      const name = head.slice(start, colon);
      const value = trimOws(head, colon + 1, end);
      raw.push(name, value);
      switch (name.length) {
        case 10: {
          const lower = name.toLowerCase();
          // Nearly every answer says just `keep-alive`: no need to look for `close` in it.
          if (lower === 'connection') close ||= value !== 'keep-alive' && CLOSE_OPTION.test(value);
          else if (lower === 'keep-alive') this.keepAliveHintMs = Number(KEEP_ALIVE_TIMEOUT.exec(value)?.[1] ?? 0) * 1000;
          break;
        }
        case 14:
          if (name.toLowerCase() === 'content-length') {
            const last = head.charCodeAt(end - 1); // a digit: nothing after the number (a tab there is refused below)
            if (length < 0 && last >= 0x30 && last <= 0x39 && CONTENT_LENGTH.test(value)) {
              length = Number(value); // the usual case: one plain number
              break;
            }
            if (!CONTENT_LENGTH_RAW.test(head.slice(end - rawTailLength(head, colon + 1, end), end))) throw new UpstreamProtocolError(`bad Content-Length ${JSON.stringify(value.slice(0, 40))}`);
            collapse = true;
            for (const part of value.split(',')) {
              const v = part.trim();
              if (!CONTENT_LENGTH.test(v) || (length >= 0 && Number(v) !== length)) throw new UpstreamProtocolError(`bad Content-Length ${JSON.stringify(value.slice(0, 40))}`);
              length = Number(v);
            }
          }
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') {
            // One header, a plain list: llhttp reads a second (even empty) one, or a tab after
            // `chunked`, differently from what the words say. Zimbra (Jetty) sends `chunked`.
            if (transferEncoding) throw new UpstreamProtocolError('Transfer-Encoding sent more than once');
            if (!TRANSFER_ENCODING_RAW.test(head.slice(end - rawTailLength(head, colon + 1, end), end))) throw new UpstreamProtocolError(`bad Transfer-Encoding ${JSON.stringify(value.slice(0, 40))}`);
            transferEncoding = true;
            chunked = CHUNKED_LAST.test(value); // chunked must be the final coding
          }
          break;
        case 16:
          // llhttp takes Proxy-Connection for Connection: its `close` ends the connection too.
          if (name.toLowerCase() === 'proxy-connection') close ||= CLOSE_OPTION.test(value);
          break;
      }
    }
    if (statusCode < 200) {
      // 100 Continue, 102, 103 Early Hints: not passed on; the real head follows. 101 was never asked for.
      if (statusCode === 101) throw new UpstreamProtocolError('101 Switching Protocols on a plain request');
      this.state = State.Head;
      return;
    }
    if (transferEncoding && length >= 0) throw new UpstreamProtocolError('both Content-Length and Transfer-Encoding');
    const noBody = statusCode === 204 || statusCode === 304;
    // An answer framed by neither a length nor chunked is never reused, HEAD included: llhttp
    // decides keep-alive before it knows the request was HEAD, and closes such a connection.
    this.keepAlive = !close && (noBody || chunked || length >= 0);
    const sink = this.sink!;
    sink.head(statusCode, collapse ? collapseContentLength(raw, length) : raw);
    if (this.sink !== sink) return; // abandoned while the head was handled
    if (this.isHead || noBody) this.finish(bytesAfter);
    else if (chunked) this.state = State.ChunkSize;
    else if (transferEncoding || length < 0) {
      this.state = State.UntilClose; // framed by the end of the connection: never reused
      this.keepAlive = false;
    } else if (length === 0) this.finish(bytesAfter);
    else {
      this.remaining = length;
      this.state = State.Length;
    }
  }

  /** A chunk-size line or a trailer line; the CRLF may arrive split across reads. */
  private readLine(chunk: Buffer, pos: number): number {
    const lf = chunk.indexOf(0x0a, pos);
    const end = lf < 0 ? chunk.length : lf;
    this.line += chunk.toString('latin1', pos, end);
    if (this.line.length > MAX_LINE) throw new UpstreamProtocolError('chunk-size or trailer line too long');
    if (lf < 0) return chunk.length;
    const line = this.line;
    this.line = '';
    if (!line.endsWith('\r') || line.indexOf('\r') !== line.length - 1) throw new UpstreamProtocolError('bare CR or LF in chunked framing');
    const text = line.slice(0, -1);
    if (this.state === State.Trailers) {
      // Trailers are read, checked like header lines, and dropped (they describe the upstream
      // message, and Node would need them declared).
      if (text === '') this.finish(chunk.length - lf - 1);
      else if (!TRAILER.test(text)) throw new UpstreamProtocolError(`malformed trailer ${JSON.stringify(text.slice(0, 40))}`);
      else if ((this.trailerBytes += line.length + 1) > this.maxHeaderBytes) throw new UpstreamProtocolError(`trailers larger than ${this.maxHeaderBytes} bytes`);
      return lf + 1;
    }
    const size = CHUNK_SIZE.exec(text);
    if (!size) throw new UpstreamProtocolError(`bad chunk size ${JSON.stringify(text.slice(0, 40))}`);
    this.remaining = parseInt(size[1]!, 16);
    this.state = this.remaining === 0 ? State.Trailers : State.ChunkData;
    this.trailerBytes = 0;
    return lf + 1;
  }
}

/** line[from, to) without leading and trailing spaces and tabs (OWS), by hand: a regex is slower here. */
function trimOws(line: string, from: number, to: number): string {
  let start = from;
  let end = to;
  while (start < end && (line.charCodeAt(start) === 0x20 || line.charCodeAt(start) === 0x09)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 0x20 || line.charCodeAt(end - 1) === 0x09)) end--;
  return line.slice(start, end);
}

/** How many characters of line[from, to) follow its leading spaces and tabs. */
function rawTailLength(line: string, from: number, to: number): number {
  let start = from;
  while (start < to && (line.charCodeAt(start) === 0x20 || line.charCodeAt(start) === 0x09)) start++;
  return to - start;
}

/** The head with its Content-Length said once, as the one number its list or lines repeat (RFC 9110 §8.6). */
function collapseContentLength(raw: string[], length: number): string[] {
  const out: string[] = [];
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 14 && raw[i]!.toLowerCase() === 'content-length') {
      if (seen) continue;
      seen = true;
      out.push(raw[i]!, String(length));
    } else out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}
