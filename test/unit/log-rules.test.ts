import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
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
