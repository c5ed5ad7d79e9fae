import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LogDetector } from '../../src/detect/log-detector.js';
import { parseContext } from '../../src/detect/log-line.js';
import { LOG_RULES, type LogType } from '../../src/detect/log-rules.js';
import { LOG_INJECTION_RULE, LogStream } from '../../src/detect/log-stream.js';
import { CidrSet } from '../../src/net/ip.js';

/*
 * Every line of test/fixtures/logs/*.log is proven by the `# expect:` annotation above it, in the
 * spirit of fail2ban's failJSON. A rule without a fixture line fails the suite.
 */
const dir = new URL('../../../test/fixtures/logs/', import.meta.url);
const typeOf = (file: string): LogType | undefined =>
  file.startsWith('audit') ? 'zimbra-audit' : file.startsWith('mailbox') ? 'zimbra-mailbox' : file.startsWith('zimbra') ? 'syslog' : file.startsWith('nginx') ? 'zimbra-nginx' : undefined;

interface Expect {
  rule?: string;
  ip?: string | null;
  user?: string;
  counted?: boolean;
  match?: false;
  skipped?: string;
  /** Written by a client after a torn line: never counted. */
  forged?: true;
  unknownProxy?: string;
}

const covered = new Set<string>();

for (const file of readdirSync(dir).filter((f) => f.endsWith('.log')).sort()) {
  const type = typeOf(file);
  describe(`fixtures ${file}`, () => {
    assert.ok(type, `no log type for fixture ${file}`);
    const lines = readFileSync(new URL(file, dir), 'utf8').split('\n');
    const cfgLine = lines.find((l) => l.startsWith('# config: '));
    assert.ok(cfgLine, `${file} has no # config line`);
    const cfg = JSON.parse(cfgLine.slice(10)) as { zimbraProxies: string[]; forwarders: string[]; types: LogType[]; forgeryWindowBytes?: number };
    const detector = new LogDetector({ zimbraProxies: new CidrSet(cfg.zimbraProxies), forwarders: new CidrSet([...cfg.zimbraProxies, ...cfg.forwarders]), configuredTypes: new Set(cfg.types) });
    // Lines are fed in file order through one stream, as the watcher does: a torn line marks the next ones.
    const stream = new LogStream(detector, type!, cfg.forgeryWindowBytes);
    const results = new Map<number, ReturnType<LogStream['feed']>>();
    lines.forEach((line, i) => {
      if (!line.startsWith('#') && line.trim() !== '') results.set(i, stream.feed(line));
    });
    let expect: Expect | null = null;
    lines.forEach((line, i) => {
      if (line.startsWith('# expect: ')) {
        expect = JSON.parse(line.slice(10)) as Expect;
        return;
      }
      if (line.startsWith('#') || line.trim() === '') return;
      const want = expect;
      expect = null;
      it(`line ${i + 1}: ${want ? JSON.stringify(want) : 'has no annotation'}`, () => {
        assert.ok(want, `line ${i + 1} of ${file} has no # expect annotation`);
        const r = results.get(i)!;
        if (want.forged) {
          assert.equal(r.kind, 'forged', JSON.stringify(r.kind === 'match' ? { rule: r.match.rule.id, ip: r.match.ip, counted: r.match.counted } : r));
          return;
        }
        if (want.skipped) {
          assert.deepEqual(r, { kind: 'skipped', why: want.skipped });
          return;
        }
        if (want.match === false) {
          assert.equal(r.kind, 'nomatch', JSON.stringify(r.kind === 'match' ? { rule: r.match.rule.id, ip: r.match.ip } : r));
          return;
        }
        assert.equal(r.kind, 'match', JSON.stringify(r));
        if (r.kind !== 'match') return;
        covered.add(r.match.rule.id);
        assert.equal(r.match.rule.id, want.rule);
        if ('ip' in want) assert.equal(r.match.ip, want.ip);
        if (want.user !== undefined) assert.equal(r.match.user?.toLowerCase(), want.user);
        if (want.counted !== undefined) assert.equal(r.match.counted, want.counted);
        if (want.unknownProxy !== undefined) assert.equal(r.match.unknownProxy, want.unknownProxy);
      });
    });
  });
}

describe('rule coverage', () => {
  it('every log rule has at least one fixture line', () => {
    const missing = [...new Set([...LOG_RULES.map((r) => r.id), LOG_INJECTION_RULE.id])].filter((id) => !covered.has(id));
    assert.deepEqual(missing, []);
  });
});

describe('context block', () => {
  it('parses pairs with doubled semicolons', () => {
    const line = 'x] [ip=1.2.3.4;ua=a;;b;oip=5.6.7.8;] rest';
    const r = parseContext(line, 4)!;
    assert.deepEqual([...r.context], [['ip', '1.2.3.4'], ['ua', 'a;b'], ['oip', '5.6.7.8']]);
  });
  it('a repeated key keeps the first value', () => {
    const r = parseContext('ip=1.1.1.1;ip=6.6.6.6;]', 0)!;
    assert.equal(r.context.get('ip'), '1.1.1.1');
  });
  it('rejects an unterminated block', () => {
    assert.equal(parseContext('ip=1.1.1.1', 0), null);
  });
});

describe('forged lines (property)', () => {
  const WRITER = '203.0.113.200';
  // A torn line of every kind and log type, from the writer; Zimbra's head and context, the name cut short.
  const torn: Array<{ type: LogType; line: string; ip: string | null }> = [
    { type: 'zimbra-mailbox', ip: WRITER, line: `2024-03-01 12:00:00,000 INFO  [ImapSSLServer-8] [ip=${WRITER};cid=40;] account - authentication failed for x` },
    { type: 'zimbra-mailbox', ip: WRITER, line: `2024-03-01 12:00:00,000 INFO  [Pop3SSLServer-8] [ip=192.168.20.50;oip=${WRITER};] account - authentication failed for x` },
    { type: 'zimbra-mailbox', ip: WRITER, line: `2024-03-01 12:00:00,000 INFO  [ImapSSLServer-8] [name=a@b;ip=${WRITER};cid=40;] account - authorization failed for x` },
    { type: 'zimbra-mailbox', ip: WRITER, line: `2024-03-01 12:00:00,000 INFO  [ImapSSLServer-8] [ip=${WRITER};cid=40;] imap - authentication failed for [x` },
    { type: 'zimbra-mailbox', ip: WRITER, line: `2024-03-01 12:00:00,000 INFO  [qtp1-7:https://m/service/soap/] [oip=${WRITER};soapId=1;] SoapEngine - handler exception: authentication failed for [x` },
    { type: 'zimbra-mailbox', ip: WRITER, line: `2024-03-01 12:00:00,000 INFO  [qtp1-7:https://m/service/soap/] [oip=${WRITER};soapId=1;] account - Error occurred during authentication: authentication failed for [x` },
    { type: 'zimbra-audit', ip: WRITER, line: `2024-03-01 12:00:00,000 INFO  [qtp1-7:https://m/service/soap/] [oip=${WRITER};soapId=1;] security - Error occurred during authentication: authentication failed for [x` },
    { type: 'zimbra-audit', ip: null, line: '2024-03-01 12:00:00,000 INFO  [qtp1-7:http://127.0.0.1:7072/service/extension/nginx-lookup] [] security - Error occurred during authentication: account not found for [x' },
    { type: 'syslog', ip: null, line: 'Mar 10 14:00:01 mx saslauthd[900]: auth_zimbra: x' },
    { type: 'syslog', ip: WRITER, line: `Mar 10 14:00:02 mbx mailboxd: INFO  [ImapSSLServer-4] [ip=${WRITER};cid=90;] account - authentication failed for z` },
    { type: 'zimbra-nginx', ip: WRITER, line: `2024/03/01 10:00:04 [error] 2101#0: *55 zm lookup: an error is returned by zimbra lookup handler: user not found:a, client: ${WRITER}:4000, server: 0.0.0.0:143, login: "a` },
  ];
  // Every genuine line the fixtures prove counted, of any type, with its address swapped for a victim's.
  const genuine: string[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.log'))) {
    const lines = readFileSync(new URL(file, dir), 'utf8').split('\n');
    lines.forEach((l, i) => {
      if (i > 0 && lines[i - 1]!.includes('"counted": true') && !lines[i - 1]!.includes('log.injection')) genuine.push(l);
    });
  }
  const ipv4 = /\b(?:\d{1,3}\.){3}\d{1,3}\b/g;
  const victim = fc.tuple(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 254 })).map(([a, b]) => `198.51.${a}.${b}`);
  const forgedLine = fc.oneof(
    fc.tuple(fc.constantFrom(...genuine), victim).map(([l, v]) => l.replace(ipv4, v)),
    fc.string({ maxLength: 300 }).map((s) => s.replace(/\n/g, ' ')),
  );

  it('whatever a client writes after a torn line (up to 16 KiB) is never counted, in every log type; the writer is', () => {
    assert.ok(genuine.length > 20, `only ${genuine.length} genuine lines found`);
    fc.assert(
      fc.property(fc.constantFrom(...torn), fc.array(forgedLine, { minLength: 1, maxLength: 8 }), (t, forged) => {
        const detector = new LogDetector({ zimbraProxies: new CidrSet(['192.168.20.50']), forwarders: new CidrSet(['192.168.20.50']), configuredTypes: new Set([t.type]) });
        const stream = new LogStream(detector, t.type);
        const head = stream.feed(t.line);
        assert.equal(head.kind, 'match');
        if (head.kind !== 'match') return;
        assert.equal(head.match.rule.id, 'log.injection');
        assert.equal(head.match.ip, t.ip);
        assert.equal(head.match.counted, t.ip !== null);
        for (const f of forged) {
          const r = stream.feed(f);
          assert.equal(r.kind, 'forged', f);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
