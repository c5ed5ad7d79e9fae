import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveClientIp } from '../../src/net/client-ip.js';
import { CidrSet, normalizeIp, parseCidr } from '../../src/net/ip.js';

describe('normalizeIp', () => {
  for (const { desc, input, want } of [
    { desc: 'plain IPv4', input: '203.0.113.7', want: '203.0.113.7' },
    { desc: 'IPv4-mapped IPv6 becomes IPv4', input: '::ffff:203.0.113.7', want: '203.0.113.7' },
    { desc: 'IPv6 is compressed (RFC 5952)', input: '2001:0db8:0000:0000:0000:0000:0000:0001', want: '2001:db8::1' },
    { desc: 'Zimbra writes loopback in full', input: '0:0:0:0:0:0:0:1', want: '::1' },
    { desc: 'brackets are removed', input: '[2001:db8::1]', want: '2001:db8::1' },
    { desc: 'zone ids are removed', input: 'fe80::1%eth0', want: 'fe80::1' },
    { desc: 'upper case IPv6', input: '2001:DB8::A', want: '2001:db8::a' },
    { desc: 'octal-looking IPv4 is refused', input: '0127.0.0.1', want: null },
    { desc: 'hex IPv4 is refused', input: '0x7f.0.0.1', want: null },
    { desc: 'short IPv4 is refused', input: '127.1', want: null },
    { desc: 'garbage', input: 'not-an-ip', want: null },
    { desc: 'empty', input: '', want: null },
    { desc: 'out of range', input: '256.1.1.1', want: null },
  ]) {
    it(desc, () => assert.equal(normalizeIp(input), want));
  }
});

describe('parseCidr and CidrSet', () => {
  it('clears host bits and prints canonical networks', () => {
    assert.equal(parseCidr('203.0.113.77/24')?.text, '203.0.113.0/24');
    assert.equal(parseCidr('2001:db8::1/64')?.text, '2001:db8::/64');
    assert.equal(parseCidr('203.0.113.7/32')?.text, '203.0.113.7');
    assert.equal(parseCidr('10.0.0.0/33'), null);
  });
  it('matches v4 and v6 members, and not the other family', () => {
    const set = new CidrSet(['10.0.0.0/8', '2001:db8::/32', '127.0.0.1']);
    assert.ok(set.has('10.200.3.4'));
    assert.ok(set.has('2001:db8:ffff::1'));
    assert.ok(set.has('127.0.0.1'));
    assert.ok(!set.has('127.0.0.2'));
    assert.ok(!set.has('11.0.0.1'));
    assert.ok(!set.has('2001:db9::1'));
  });
  it('detects overlap with a network in either direction', () => {
    const set = new CidrSet(['127.0.0.1']);
    assert.ok(set.overlaps(parseCidr('127.0.0.0/8')!));
    assert.ok(!set.overlaps(parseCidr('203.0.113.0/24')!));
  });
});

describe('resolveClientIp', () => {
  const trusted = new CidrSet(['127.0.0.1', '10.0.0.0/8']);
  for (const { desc, peer, xff, want } of [
    { desc: 'untrusted peer: X-Forwarded-For ignored', peer: '203.0.113.9', xff: '198.51.100.1', want: '203.0.113.9' },
    { desc: 'trusted peer without header: the peer', peer: '127.0.0.1', xff: undefined, want: '127.0.0.1' },
    { desc: 'trusted peer: right-most entry', peer: '127.0.0.1', xff: '198.51.100.1', want: '198.51.100.1' },
    { desc: 'spoofed left entries are skipped', peer: '127.0.0.1', xff: '6.6.6.6, 198.51.100.1', want: '198.51.100.1' },
    { desc: 'trusted hops are skipped right to left', peer: '127.0.0.1', xff: '6.6.6.6, 198.51.100.1, 10.1.1.1', want: '198.51.100.1' },
    { desc: 'all hops trusted: the left-most', peer: '127.0.0.1', xff: '10.2.2.2, 10.1.1.1', want: '10.2.2.2' },
    { desc: 'v4-mapped entry normalised', peer: '127.0.0.1', xff: '::ffff:198.51.100.1', want: '198.51.100.1' },
    { desc: 'entry with a port', peer: '127.0.0.1', xff: '198.51.100.1:4711', want: '198.51.100.1' },
    { desc: 'bracketed IPv6 with a port', peer: '127.0.0.1', xff: '[2001:db8::5]:4711', want: '2001:db8::5' },
  ]) {
    it(desc, () => {
      const r = resolveClientIp(peer, xff, trusted);
      assert.ok('ip' in r, JSON.stringify(r));
      assert.equal(r.ip, want);
    });
  }
  it('a malformed entry where the client should be is an error', () => {
    const r = resolveClientIp('127.0.0.1', '198.51.100.1, garbage', trusted);
    assert.ok('error' in r);
  });
  it('garbage to the left of the client is never reached', () => {
    const r = resolveClientIp('127.0.0.1', 'garbage, 198.51.100.1', trusted);
    assert.deepEqual(r, { ip: '198.51.100.1', viaProxy: true });
  });
});
