import type { CidrSet } from './ip.js';
import { normalizeIp } from './ip.js';

export type ClientIpResult = { readonly ip: string; readonly viaProxy: boolean } | { readonly error: string };

/**
 * The client address of a request. `peer` is the TCP peer (or the source a trusted PROXY protocol
 * header gave). Only when the peer is a trusted proxy is X-Forwarded-For read, right to left,
 * skipping trusted hops: the first untrusted address is the client (an attacker controls everything
 * to its left). A malformed entry where the client should be is an error (the request gets 400).
 */
export function resolveClientIp(peer: string, xff: string | undefined, trusted: CidrSet): ClientIpResult {
  if (trusted.size === 0 || !trusted.has(peer) || !xff) return { ip: peer, viaProxy: false };
  const parts = xff.split(',');
  let leftmost: string | null = null;
  for (let i = parts.length - 1; i >= 0; i--) {
    const raw = parts[i]!.trim();
    if (raw === '' && i === parts.length - 1 && parts.length === 1) break;
    const ip = normalizeIp(stripPort(raw));
    if (!ip) return { error: `X-Forwarded-For entry ${JSON.stringify(raw.slice(0, 64))} from trusted proxy ${peer} is not an IP address` };
    if (!trusted.has(ip)) return { ip, viaProxy: true };
    leftmost = ip;
  }
  // Every hop is trusted (e.g. a monitor inside the trusted network): the left-most one is the client.
  return { ip: leftmost ?? peer, viaProxy: leftmost !== null };
}

/** `203.0.113.7:4711` and `[2001:db8::1]:4711` appear in some proxies' X-Forwarded-For. */
function stripPort(s: string): string {
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    return end === -1 ? s : s.slice(1, end);
  }
  const colon = s.indexOf(':');
  if (colon !== -1 && colon === s.lastIndexOf(':') && s.includes('.')) return s.slice(0, colon);
  return s;
}
