import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ResponseParser, type ResponseSink } from '../../src/proxy/response-parser.js';

/** What a sink saw: heads, the body bytes, and how (and whether) the answer completed. */
interface Seen {
  heads: Array<[number, string[]]>;
  body: string;
  complete: boolean | null; // null: not completed; else `reusable`
  error: string | null;
  hintMs: number;
}

/** Feeds `wire` in pieces of `step` bytes (every split point is a case a real socket produces). */
function parse(wire: string, opts: { isHead?: boolean; step?: number; eof?: boolean } = {}): Seen {
  const seen: Seen = { heads: [], body: '', complete: null, error: null, hintMs: 0 };
  const parser = new ResponseParser(1024);
  const sink: ResponseSink = {
    head: (status, raw) => void seen.heads.push([status, raw]),
    data: (chunk) => void (seen.body += chunk.toString('latin1')),
    complete: (reusable) => void (seen.complete = reusable),
  };
  parser.start(sink, opts.isHead ?? false);
  const buf = Buffer.from(wire, 'latin1');
  const step = opts.step ?? buf.length;
  try {
    for (let i = 0; i < buf.length; i += step) parser.feed(buf.subarray(i, i + step));
    if (opts.eof) parser.eof();
  } catch (err) {
    seen.error = (err as Error).message;
  }
  seen.hintMs = parser.keepAliveHintMs;
  return seen;
}

const OK = 'HTTP/1.1 200 OK\r\n';

describe('ResponseParser: framing (RFC 9112 §6), at every split point', () => {
  for (const { desc, wire, isHead, eof, status, body, reusable } of [
    { desc: 'Content-Length body', wire: `${OK}Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello`, status: 200, body: 'hello', reusable: true },
    { desc: 'a list of equal Content-Lengths is one length', wire: `${OK}Content-Length: 5, 5\r\n\r\nhello`, status: 200, body: 'hello', reusable: true },
    { desc: 'Content-Length 0', wire: `${OK}Content-Length: 0\r\n\r\n`, status: 200, body: '', reusable: true },
    { desc: 'chunked, with an extension and trailers (dropped)', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n`, status: 200, body: 'hello world', reusable: true },
    { desc: 'chunked as the final coding after gzip', wire: `${OK}Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, status: 200, body: 'abc', reusable: true },
    { desc: 'HEAD: no body whatever the length says', wire: `${OK}Content-Length: 2048\r\n\r\n`, isHead: true, status: 200, body: '', reusable: true },
    { desc: '204: no body', wire: 'HTTP/1.1 204 No Content\r\n\r\n', status: 204, body: '', reusable: true },
    { desc: '304: no body', wire: 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n', status: 304, body: '', reusable: true },
    { desc: '100 Continue and 103 Early Hints are skipped', wire: `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n${OK}Content-Length: 2\r\n\r\nok`, status: 200, body: 'ok', reusable: true },
    { desc: 'no length: the body runs until the connection closes, never reused', wire: `${OK}\r\nuntil close`, eof: true, status: 200, body: 'until close', reusable: false },
    { desc: 'a coding other than chunked last: until close', wire: `${OK}Transfer-Encoding: chunked, gzip\r\n\r\nraw`, eof: true, status: 200, body: 'raw', reusable: false },
    { desc: 'Connection: close is honoured', wire: `${OK}Connection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx`, status: 200, body: 'x', reusable: false },
    { desc: 'HTTP/1.0: not reused', wire: 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx', status: 200, body: 'x', reusable: false },
    { desc: 'no reason phrase', wire: 'HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n', status: 500, body: '', reusable: true },
    { desc: 'Proxy-Connection: close is honoured as llhttp does', wire: `${OK}Proxy-Connection: close\r\nContent-Length: 1\r\n\r\nx`, status: 200, body: 'x', reusable: false },
    { desc: 'HEAD answered with neither a length nor chunked: not reused (llhttp closes it)', wire: `${OK}Connection: keep-alive\r\n\r\n`, isHead: true, status: 200, body: '', reusable: false },
    { desc: 'chunk extensions of token and quoted-string values', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5;a=b;c="d \\" e"\r\nhello\r\n0;z\r\n\r\n`, status: 200, body: 'hello', reusable: true },
  ]) {
    it(desc, () => {
      for (const step of [1, 2, 3, 7, 1000]) {
        const seen = parse(wire, { isHead, eof, step });
        assert.equal(seen.error, null, `step ${step}`);
        assert.deepEqual(seen.heads.map((h) => h[0]), [status], `step ${step}`);
        assert.equal(seen.body, body, `step ${step}`);
        assert.equal(seen.complete, reusable, `step ${step}`);
      }
    });
  }

  it('passes every header on as sent, in order, repeated ones included', () => {
    const seen = parse(`${OK}Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Odd:  spaced value \t\r\nContent-Length: 0\r\n\r\n`);
    assert.deepEqual(seen.heads[0]![1], ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-Odd', 'spaced value', 'Content-Length', '0']);
  });

  it('a repeated equal Content-Length (a list, or lines) is passed on once, as one number', () => {
    for (const wire of [`${OK}Content-Length: 1, 1\r\n\r\nx`, `${OK}Content-Length: 1\r\nX-A: b\r\nContent-Length: 1\r\n\r\nx`, `${OK}Content-Length: 1 ,1 \r\n\r\nx`]) {
      const seen = parse(wire);
      assert.equal(seen.error, null, wire);
      assert.equal(seen.body, 'x');
      assert.deepEqual(seen.heads[0]![1].filter((_v, i, a) => i % 2 === 0 && a[i]!.toLowerCase() === 'content-length').length, 1, wire);
      assert.equal(seen.heads[0]![1][seen.heads[0]![1].findIndex((v) => v.toLowerCase() === 'content-length') + 1], '1');
    }
  });

  it("reads the upstream's Keep-Alive timeout", () => {
    assert.equal(parse(`${OK}Keep-Alive: timeout=5, max=100\r\nContent-Length: 0\r\n\r\n`).hintMs, 5000);
  });

  it('bytes after the end of an answer make the connection unusable (a smuggled second answer is never read)', () => {
    const smuggled = `${OK}Content-Length: 5\r\n\r\nhello${OK}Content-Length: 4\r\n\r\nevil`;
    // In the same read: the answer completes as not reusable.
    let seen = parse(smuggled);
    assert.deepEqual([seen.body, seen.complete, seen.heads.length, seen.error], ['hello', false, 1, null]);
    assert.equal(parse(`HTTP/1.1 204 No Content\r\n\r\n${OK}\r\n`).complete, false);
    // In a later read, once no answer is expected: refused (the pool closes an idle connection that speaks).
    for (const step of [1, 5]) {
      seen = parse(smuggled, { step });
      assert.deepEqual([seen.body, seen.heads.length], ['hello', 1], `step ${step}`);
      assert.match(seen.error ?? '', /data after the end of the response/, `step ${step}`);
    }
  });
});

describe('ResponseParser: what it refuses (502, connection closed)', () => {
  for (const { desc, wire, error } of [
    { desc: 'Content-Length with Transfer-Encoding', wire: `${OK}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, error: /both Content-Length and Transfer-Encoding/ },
    { desc: 'two different Content-Lengths', wire: `${OK}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, error: /bad Content-Length/ },
    { desc: 'a list of different Content-Lengths', wire: `${OK}Content-Length: 3, 4\r\n\r\nabcd`, error: /bad Content-Length/ },
    { desc: 'a negative Content-Length', wire: `${OK}Content-Length: -1\r\n\r\n`, error: /bad Content-Length/ },
    { desc: 'a Content-Length in exponent form', wire: `${OK}Content-Length: 1e3\r\n\r\n`, error: /bad Content-Length/ },
    { desc: 'obs-fold (a continuation line)', wire: `${OK}X-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n`, error: /malformed head/ },
    { desc: 'whitespace before the colon', wire: `${OK}Content-Length : 0\r\n\r\n`, error: /malformed head/ },
    { desc: 'a bare LF inside the head', wire: `${OK}X-A: a\nContent-Length: 9\r\nContent-Length: 0\r\n\r\n`, error: /malformed head/ },
    { desc: 'a bare CR inside a value', wire: `${OK}X-A: a\rContent-Length: 0\r\n\r\n`, error: /malformed head/ },
    { desc: 'a header line without a colon', wire: `${OK}X-A\r\nContent-Length: 0\r\n\r\n`, error: /malformed head/ },
    { desc: 'an empty header name', wire: `${OK}: x\r\nContent-Length: 0\r\n\r\n`, error: /malformed head/ },
    { desc: 'DEL in a header value', wire: `${OK}X-A: a\x7fb\r\nContent-Length: 0\r\n\r\n`, error: /malformed head/ },
    { desc: 'NUL in a header value', wire: `${OK}X-A: a\0b\r\nContent-Length: 0\r\n\r\n`, error: /malformed head/ },
    { desc: 'not HTTP/1.x', wire: 'HTTP/2 200\r\n\r\n', error: /malformed head/ },
    { desc: 'a status of two digits', wire: 'HTTP/1.1 20 OK\r\n\r\n', error: /malformed head/ },
    { desc: '101 on a plain request', wire: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', error: /101/ },
    { desc: 'a chunk size of 16 hex digits', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n`, error: /bad chunk size/ },
    { desc: 'a chunk size that is not hex', wire: `${OK}Transfer-Encoding: chunked\r\n\r\nzz\r\n`, error: /bad chunk size/ },
    { desc: 'a chunk without its CRLF', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n`, error: /chunk not followed by CRLF/ },
    { desc: 'a chunk-size line ending in a bare LF', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n`, error: /bare CR or LF/ },
    { desc: 'a head larger than the limit', wire: `${OK}X-Big: ${'a'.repeat(2000)}\r\n\r\n`, error: /head larger than 1024 bytes/ },
    // Where llhttp (Node's client) frames differently or refuses (issue 17): refused here too.
    { desc: 'Transfer-Encoding: chunked<TAB> (llhttp: not chunked)', wire: `${OK}Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n`, error: /bad Transfer-Encoding/ },
    { desc: 'two Transfer-Encoding headers, one empty', wire: `${OK}Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n0\r\n\r\n`, error: /Transfer-Encoding sent more than once/ },
    { desc: 'an empty Transfer-Encoding', wire: `${OK}Transfer-Encoding: \r\n\r\n0\r\n\r\n`, error: /bad Transfer-Encoding/ },
    { desc: 'a Content-Length followed by a tab', wire: `${OK}Content-Length: 1\t\r\n\r\nx`, error: /bad Content-Length/ },
    { desc: 'a Content-Length followed by a tab and a space', wire: `${OK}Content-Length: 1\t \r\n\r\nx`, error: /bad Content-Length/ },
    { desc: 'a chunk-size line with a space and no extension', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n`, error: /bad chunk size/ },
    { desc: 'a space between the chunk size and its extension', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5 ;a\r\nhello\r\n0\r\n\r\n`, error: /bad chunk size/ },
    { desc: 'a chunk extension with an unbalanced quote', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5;a="b\r\nhello\r\n0\r\n\r\n`, error: /bad chunk size/ },
    { desc: 'a chunk extension value with a space', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5;a=b c\r\nhello\r\n0\r\n\r\n`, error: /bad chunk size/ },
    { desc: 'a trailer line without a colon', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n0\r\nnocolon\r\n\r\n`, error: /malformed trailer/ },
    { desc: 'a trailer with whitespace before the colon', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n0\r\nX-T : v\r\n\r\n`, error: /malformed trailer/ },
    { desc: 'trailers larger than the head limit', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n0\r\n${'X-T: aaaaaaaaaa\r\n'.repeat(100)}\r\n`, error: /trailers larger than 1024 bytes/ },
  ]) {
    it(desc, () => {
      for (const step of [1, 4, 1000]) {
        const seen = parse(wire, { step });
        assert.match(seen.error ?? '(no error)', error, `step ${step}`);
        assert.notEqual(seen.complete, true, `never completed as reusable (step ${step})`);
      }
    });
  }

  it('a connection that closes mid-answer is an error, never a complete answer', () => {
    assert.match(parse(`${OK}Content-Length: 10\r\n\r\nhal`, { eof: true }).error ?? '', /before the end of the body/);
    assert.match(parse(`${OK}Transfer-Encoding: chunked\r\n\r\n5\r\nhe`, { eof: true }).error ?? '', /before the end of the body/);
    assert.match(parse('HTTP/1.1 200', { eof: true }).error ?? '', /before the response head/);
    assert.equal(parse(`${OK}Content-Length: 10\r\n\r\nhal`, { eof: true }).complete, null);
  });
});
