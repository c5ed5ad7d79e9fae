import type { Socket } from 'node:net';
import { normalizeIp } from './ip.js';

/*
 * PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy and nginx (`proxy_protocol on`) send
 * them in front of the first byte of a connection. Only the source address is used.
 */

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

export type ProxyHeaderResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'error'; readonly message: string }
  /** `source` is null for LOCAL (health checks) and UNKNOWN connections: use the peer. */
  | { readonly kind: 'ok'; readonly source: string | null; readonly length: number };

export function parseProxyHeader(buf: Buffer): ProxyHeaderResult {
  if (buf.length === 0) return { kind: 'incomplete' };
  if (buf[0] === 0x0d) {
    const sigLen = Math.min(buf.length, V2_SIGNATURE.length);
    if (!buf.subarray(0, sigLen).equals(V2_SIGNATURE.subarray(0, sigLen))) return { kind: 'error', message: 'bad PROXY v2 signature' };
    if (buf.length < 16) return { kind: 'incomplete' };
    const verCmd = buf[12]!;
    if (verCmd >> 4 !== 2) return { kind: 'error', message: 'unsupported PROXY protocol version' };
    const len = buf.readUInt16BE(14);
    if (buf.length < 16 + len) return { kind: 'incomplete' };
    const total = 16 + len;
    const cmd = verCmd & 0x0f;
    if (cmd === 0x0) return { kind: 'ok', source: null, length: total };
    if (cmd !== 0x1) return { kind: 'error', message: 'unsupported PROXY v2 command' };
    const fam = buf[13]!;
    if (fam === 0x11 && len >= 12) {
      return { kind: 'ok', source: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`, length: total };
    }
    if (fam === 0x21 && len >= 36) {
      const parts: string[] = [];
      for (let i = 0; i < 8; i++) parts.push(buf.readUInt16BE(16 + i * 2).toString(16));
      return { kind: 'ok', source: normalizeIp(parts.join(':')), length: total };
    }
    return { kind: 'ok', source: null, length: total };
  }
  const probe = buf.subarray(0, Math.min(buf.length, 6)).toString('latin1');
  if (!'PROXY '.startsWith(probe)) return { kind: 'error', message: 'no PROXY protocol header' };
  const end = buf.indexOf('\r\n');
  if (end === -1) return buf.length >= V1_MAX ? { kind: 'error', message: 'PROXY v1 header too long' } : { kind: 'incomplete' };
  const fields = buf.subarray(0, end).toString('latin1').split(' ');
  if (fields[1] === 'UNKNOWN') return { kind: 'ok', source: null, length: end + 2 };
  if ((fields[1] !== 'TCP4' && fields[1] !== 'TCP6') || fields.length !== 6) return { kind: 'error', message: 'malformed PROXY v1 header' };
  const source = normalizeIp(fields[2]);
  if (!source || (fields[1] === 'TCP4') !== !source.includes(':')) return { kind: 'error', message: 'malformed PROXY v1 source address' };
  return { kind: 'ok', source, length: end + 2 };
}

/**
 * Reads the PROXY header off a fresh socket, then hands the socket on with the bytes after the
 * header put back. Calls `done(null)` (and destroys the socket) when the header is missing, malformed
 * or does not arrive within `timeoutMs`.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number, done: (source: string | null | undefined) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => finish(undefined), timeoutMs);
  const finish = (source: string | null | undefined, rest?: Buffer): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    if (source === undefined) {
      socket.destroy();
      done(undefined);
      return;
    }
    socket.pause();
    if (rest && rest.length > 0) socket.unshift(rest);
    done(source);
  };
  const onError = (): void => finish(undefined);
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const r = parseProxyHeader(buf);
    if (r.kind === 'incomplete') {
      if (buf.length > 16 + 65535) finish(undefined);
      return;
    }
    if (r.kind === 'error') {
      finish(undefined);
      return;
    }
    finish(r.source, buf.subarray(r.length));
  };
  socket.on('data', onData);
  socket.on('error', onError);
}
