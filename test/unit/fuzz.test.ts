import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { classifyHead, classifyResponse, classifyWithBody } from '../../src/detect/http-login.js';
import { LogDetector } from '../../src/detect/log-detector.js';
import { LOG_TYPES } from '../../src/detect/log-rules.js';
import { normalizeRequestPath } from '../../src/detect/request-path.js';
import { CidrSet } from '../../src/net/ip.js';
import { ResponseParser, UpstreamProtocolError } from '../../src/proxy/response-parser.js';

// Property tests: no input crashes the parsers, and time per line stays linear (bounded) for
// adversarial shapes. Timing is asserted only as a generous ceiling against catastrophic backtracking.
const detector = new LogDetector({ zimbraProxies: new CidrSet(['10.0.0.1']), forwarders: new CidrSet(['10.0.0.1']), configuredTypes: new Set(LOG_TYPES) });
const prefixes = [
  '2024-03-01 10:00:00,001 WARN  [ImapSSLServer-7] [',
  'Mar 10 13:33:30 mx postfix/smtpd[1]: warning: unknown[',
  '2024-03-01 10:00:00,001 INFO  [qtp1-1:smtp://h:7073/] [oip=',
];

describe('fuzz: log detector', () => {
  it('never throws on arbitrary lines (with and without realistic prefixes)', () => {
    fc.assert(
      fc.property(fc.constantFrom('', ...prefixes), fc.string({ maxLength: 2000 }), fc.constantFrom(...LOG_TYPES), (p, s, t) => {
        detector.detect(p + s, t);
      }),
      { numRuns: 3000 },
    );
  });
  it('adversarial repetitions stay fast (no catastrophic backtracking)', () => {
    const pieces = ['] [', 'a=;', ';;', 'authentication failed for [', ' - ', 'SASL LOGIN authentication failed:', '[1.1.1.1]', 'cmd=Auth; ', 'x'];
    for (const piece of pieces) {
      for (const type of LOG_TYPES) {
        for (const prefix of prefixes) {
          const line = prefix + piece.repeat(Math.floor(8000 / piece.length));
          const t0 = process.hrtime.bigint();
          detector.detect(line, type);
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          assert.ok(ms < 50, `${JSON.stringify(piece)} x many on ${type}: ${ms.toFixed(1)} ms`);
        }
      }
    }
  });
});

describe('fuzz: login classifier and request paths', () => {
  const classifyAll = (url: string, headers: IncomingHttpHeaders, body: Buffer): ReturnType<typeof classifyWithBody>[] =>
    ['/service/soap', '/', '/dav/x', '/service/preauth'].map((path) => {
      const f = { method: 'POST', url, path, headers };
      const head = classifyHead(f);
      return head.kind === 'body' ? classifyWithBody(f, body) : head;
    });
  it('never throws on arbitrary bodies, headers and responses', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 3000 }), fc.string({ maxLength: 200 }), fc.integer({ min: 100, max: 599 }), fc.string({ maxLength: 3000 }), (body, auth, status, resp) => {
        const headers: IncomingHttpHeaders = { authorization: `Basic ${auth}`, 'content-type': 'application/x-www-form-urlencoded' };
        for (const c of classifyAll(`/?${body.slice(0, 100)}`, headers, Buffer.from(`{"Body":{"AuthRequest":${body}`))) {
          if (c.kind === 'login') classifyResponse(c.login, status, { 'set-cookie': [resp.slice(0, 100)] }, Buffer.from(resp));
        }
      }),
      { numRuns: 2000 },
    );
  });
  it('deeply nested JSON and XML bodies are handled', () => {
    const deep = `{"Body":{"AuthRequest":${'['.repeat(5000)}${']'.repeat(5000)}}}`;
    classifyAll('/', {}, Buffer.from(deep));
    const deepXml = `<Envelope><Body><AuthRequest>${'<a>'.repeat(3000)}${'</a>'.repeat(3000)}<password>x</password></AuthRequest></Body></Envelope>`;
    classifyAll('/', {}, Buffer.from(deepXml));
  });
  it('request path normalisation never throws and always yields an absolute path or null', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 500 }), (s) => {
        const p = normalizeRequestPath(`/${s}`);
        assert.ok(p === null || p.startsWith('/'));
      }),
      { numRuns: 3000 },
    );
  });
});

describe('fuzz: upstream response parser', () => {
  /** Feeds `wire` cut at `cuts` (fractions of its length) and records what the parser reported. */
  const run = (wire: Buffer, cuts: number[], isHead = false) => {
    const seen = { heads: [] as number[], body: [] as Buffer[], completes: [] as boolean[], error: null as Error | null };
    const parser = new ResponseParser(65536);
    parser.start({ head: (status) => void seen.heads.push(status), data: (c) => void seen.body.push(Buffer.from(c)), complete: (r) => void seen.completes.push(r) }, isHead);
    const at = [...new Set(cuts.map((f) => Math.floor(f * wire.length)))].sort((a, b) => a - b);
    let from = 0;
    try {
      for (const to of [...at, wire.length]) {
        if (to > from) parser.feed(wire.subarray(from, to));
        from = Math.max(from, to);
      }
    } catch (err) {
      seen.error = err as Error;
    }
    return seen;
  };
  const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/).filter((n) => !/^(content-length|transfer-encoding|connection|keep-alive)$/i.test(n));
  const value = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,40}[\x21-\x7e])?$/);

  it('reads every well-formed answer the same way, however it is split', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 599 }).filter((s) => s !== 204 && s !== 304),
        fc.array(fc.tuple(token, value), { maxLength: 8 }),
        fc.uint8Array({ maxLength: 3000 }),
        fc.boolean(),
        fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 6 }),
        fc.boolean(),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }),
        (status, headers, bodyBytes, chunked, chunkSizes, interim, cuts) => {
          const body = Buffer.from(bodyBytes);
          let framing = `Content-Length: ${body.length}\r\n`;
          let payload = body;
          if (chunked) {
            framing = 'Transfer-Encoding: chunked\r\n';
            const parts: Buffer[] = [];
            let pos = 0;
            for (const size of chunkSizes) {
              if (pos >= body.length) break;
              const piece = body.subarray(pos, pos + size);
              parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
              pos += piece.length;
            }
            if (pos < body.length) parts.push(Buffer.from(`${(body.length - pos).toString(16)}\r\n`), body.subarray(pos), Buffer.from('\r\n'));
            parts.push(Buffer.from('0\r\n\r\n'));
            payload = Buffer.concat(parts);
          }
          const head = `${interim ? 'HTTP/1.1 100 Continue\r\n\r\n' : ''}HTTP/1.1 ${status} X\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}${framing}\r\n`;
          const seen = run(Buffer.concat([Buffer.from(head, 'latin1'), payload]), cuts);
          assert.equal(seen.error, null);
          assert.deepEqual(seen.heads, [status]);
          assert.ok(Buffer.concat(seen.body).equals(body), 'the body read is the body sent');
          assert.deepEqual(seen.completes, [true]);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('arbitrary bytes: only protocol errors, at most one completion, never more body than was sent', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ maxLength: 2000 }), fc.string({ maxLength: 2000 }).map((t) => `HTTP/1.1 200 OK\r\n${t}`)),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }),
        fc.boolean(),
        (input, cuts, isHead) => {
          const wire = typeof input === 'string' ? Buffer.from(input, 'latin1') : Buffer.from(input);
          const seen = run(wire, cuts, isHead);
          if (seen.error) assert.ok(seen.error instanceof UpstreamProtocolError, String(seen.error));
          assert.ok(seen.completes.length <= 1);
          assert.ok(seen.heads.length <= 1);
          assert.ok(Buffer.concat(seen.body).length <= wire.length);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('adversarial heads stay fast (one regex over the head: no catastrophic backtracking)', () => {
    const shapes = ['a:', 'a: b', '\r\na:', ': ', 'a', ' ', '\t', 'a:\t', '\r\n\ta:'];
    for (const piece of shapes) {
      for (const tail of ['\x01', '\n', ' :', '']) {
        const head = `HTTP/1.1 200 OK\r\nX: ${piece.repeat(Math.floor(60000 / piece.length))}${tail}\r\n\r\n`;
        // Best of three: catastrophic backtracking is slow every time, a busy shared core only now and then.
        let ms = Infinity;
        for (let i = 0; i < 3 && ms >= 50; i++) {
          const t0 = process.hrtime.bigint();
          run(Buffer.from(head, 'latin1'), []);
          ms = Math.min(ms, Number(process.hrtime.bigint() - t0) / 1e6);
        }
        assert.ok(ms < 50, `${JSON.stringify(piece)} x many + ${JSON.stringify(tail)}: ${ms.toFixed(1)} ms`);
      }
    }
  });
});
