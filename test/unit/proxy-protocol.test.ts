import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseProxyHeader } from '../../src/net/proxy-protocol.js';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
function v2(cmd: number, fam: number, addr: number[]): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(addr.length);
  return Buffer.concat([SIG, Buffer.from([0x20 | cmd, fam]), len, Buffer.from(addr)]);
}

describe('parseProxyHeader', () => {
  for (const { desc, input, want } of [
    { desc: 'v1 TCP4', input: Buffer.from('PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nGET /'), want: { kind: 'ok', source: '198.51.100.7', length: 44 } },
    { desc: 'v1 TCP6', input: Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n'), want: { kind: 'ok', source: '2001:db8::7', length: 46 } },
    { desc: 'v1 UNKNOWN: use the peer', input: Buffer.from('PROXY UNKNOWN\r\n'), want: { kind: 'ok', source: null, length: 15 } },
    { desc: 'v1 incomplete', input: Buffer.from('PROXY TCP4 198.'), want: { kind: 'incomplete' } },
    { desc: 'v1 family mismatch', input: Buffer.from('PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n'), want: { kind: 'error', message: 'malformed PROXY v1 source address' } },
    { desc: 'v1 bad address', input: Buffer.from('PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n'), want: { kind: 'error', message: 'malformed PROXY v1 source address' } },
    { desc: 'plain HTTP is not a header', input: Buffer.from('GET / HTTP/1.1\r\n'), want: { kind: 'error', message: 'no PROXY protocol header' } },
    { desc: 'v2 TCP4', input: v2(1, 0x11, [198, 51, 100, 9, 10, 0, 0, 1, 0xc8, 0x00, 0x01, 0xbb]), want: { kind: 'ok', source: '198.51.100.9', length: 28 } },
    { desc: 'v2 LOCAL (health check)', input: v2(0, 0x00, []), want: { kind: 'ok', source: null, length: 16 } },
    { desc: 'v2 TCP6', input: v2(1, 0x21, [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 9, ...Array(15).fill(0), 1, 0, 1, 0, 2]), want: { kind: 'ok', source: '2001:db8::9', length: 52 } },
    { desc: 'v2 bad signature', input: Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x01]), want: { kind: 'error', message: 'bad PROXY v2 signature' } },
  ]) {
    it(desc, () => assert.deepEqual(parseProxyHeader(input), want));
  }
});
