import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { analyseRequest, classifyResponse } from '../../src/detect/http-login.js';
import { findRule } from '../../src/detect/http-rules.js';
import { LogDetector } from '../../src/detect/log-detector.js';
import { LOG_TYPES } from '../../src/detect/log-rules.js';
import { normalizeRequestPath } from '../../src/detect/request-path.js';
import { CidrSet } from '../../src/net/ip.js';

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
  const soap = findRule('POST', '/service/soap')!;
  const form = findRule('POST', '/')!;
  it('never throws on arbitrary bodies, headers and responses', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 3000 }), fc.string({ maxLength: 200 }), fc.integer({ min: 100, max: 599 }), fc.string({ maxLength: 3000 }), (body, auth, status, resp) => {
        const headers: IncomingHttpHeaders = { authorization: `Basic ${auth}`, 'content-type': 'application/x-www-form-urlencoded' };
        for (const rule of [soap, form, findRule('GET', '/dav/x')!, findRule('GET', '/service/preauth')!]) {
          const l = analyseRequest(rule, `/?${body.slice(0, 100)}`, headers, Buffer.from(`{"Body":{"AuthRequest":${body}`));
          if (l) classifyResponse(l, status, { 'set-cookie': [resp.slice(0, 100)] }, Buffer.from(resp));
        }
      }),
      { numRuns: 2000 },
    );
  });
  it('deeply nested JSON and XML bodies are handled', () => {
    const deep = `{"Body":{"AuthRequest":${'['.repeat(5000)}${']'.repeat(5000)}}}`;
    analyseRequest(soap, '/', {}, Buffer.from(deep));
    const deepXml = `<Envelope><Body><AuthRequest>${'<a>'.repeat(3000)}${'</a>'.repeat(3000)}<password>x</password></AuthRequest></Body></Envelope>`;
    analyseRequest(soap, '/', {}, Buffer.from(deepXml));
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
