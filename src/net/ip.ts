import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

/** A parsed network: an address with a prefix length. A single address is a /32 or /128. */
export interface Cidr {
  readonly family: Family;
  /** Canonical text: `203.0.113.0/24`, `2001:db8::/64`; a host prefix is printed without `/32`/`/128`. */
  readonly text: string;
  readonly prefix: number;
  /** The network address as 32-bit words (one for IPv4, four for IPv6), host bits cleared. */
  readonly words: readonly number[];
}

const V4_DECIMAL = /^\d{1,3}(\.\d{1,3}){3}$/;
/** An IPv4 address already in canonical form (what a socket reports): returned as it is. */
const V4_CANONICAL = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * Normalises an address as it comes from a socket, a header or a log line: brackets, zone ids and
 * IPv4-mapped IPv6 are removed, IPv4 must be four decimal parts (no octal or hex shorthands, which
 * some tools read differently), IPv6 is printed in RFC 5952 form. Returns null when invalid.
 */
export function normalizeIp(raw: string | undefined | null): string | null {
  if (!raw) return null;
  if (V4_CANONICAL.test(raw)) return raw;
  let s = raw.trim();
  if (s.length === 0 || s.length > 64) return null;
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  if (s.includes(':')) {
    if (!ipaddr.IPv6.isValid(s)) return null;
    const v6 = ipaddr.IPv6.parse(s);
    if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
    return v6.toRFC5952String();
  }
  if (!V4_DECIMAL.test(s) || !ipaddr.IPv4.isValidFourPartDecimal(s)) return null;
  return ipaddr.IPv4.parse(s).toString();
}

export function ipFamily(ip: string): Family {
  return ip.includes(':') ? 6 : 4;
}

function wordsOf(ip: string): number[] {
  const bytes = ipaddr.parse(ip).toByteArray();
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) {
    words.push(((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0);
  }
  return words;
}

function maskWords(words: readonly number[], prefix: number): number[] {
  return words.map((w, i) => {
    const bits = Math.max(0, Math.min(32, prefix - i * 32));
    if (bits === 0) return 0;
    if (bits === 32) return w;
    return (w & ((0xffffffff << (32 - bits)) >>> 0)) >>> 0;
  });
}

function wordsToText(words: readonly number[], family: Family): string {
  const bytes: number[] = [];
  for (const w of words) bytes.push((w >>> 24) & 255, (w >>> 16) & 255, (w >>> 8) & 255, w & 255);
  return family === 4 ? ipaddr.fromByteArray(bytes).toString() : (ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String();
}

/** Parses `IP` or `IP/prefix` into a normalised network; host bits are cleared. Returns null when invalid. */
export function parseCidr(raw: string): Cidr | null {
  const s = raw.trim();
  const slash = s.indexOf('/');
  const ip = normalizeIp(slash === -1 ? s : s.slice(0, slash));
  if (!ip) return null;
  const family = ipFamily(ip);
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return null;
    prefix = Number(p);
    // `::ffff:10.0.0.0/104` style mapped prefixes are not supported: say so by rejecting.
    if (prefix > max || (s.slice(0, slash).includes(':') && family === 4)) return null;
  }
  const words = maskWords(wordsOf(ip), prefix);
  const base = wordsToText(words, family);
  return { family, prefix, words, text: prefix === max ? base : `${base}/${prefix}` };
}

/** The network of `prefix` bits that contains `ip` (already normalised). */
export function networkOf(ip: string, prefix: number): Cidr {
  const c = parseCidr(`${ip}/${prefix}`);
  if (!c) throw new Error(`networkOf: invalid ${ip}/${prefix}`);
  return c;
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  if (ipFamily(ip) !== cidr.family) return false;
  const w = maskWords(wordsOf(ip), cidr.prefix);
  for (let i = 0; i < w.length; i++) if (w[i] !== cidr.words[i]) return false;
  return true;
}

/** True when network `inner` lies entirely inside `outer`. */
export function cidrCovers(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.prefix < outer.prefix) return false;
  const w = maskWords(inner.words, outer.prefix);
  return w.every((x, i) => x === outer.words[i]);
}

export function isLoopback(ip: string): boolean {
  const n = normalizeIp(ip);
  if (!n) return false;
  return n === '::1' || n.startsWith('127.');
}

/**
 * A fixed set of networks (ignoreip, trustedProxies, admin.allow). Lookups are cached, because the
 * same few client addresses are asked about on every request of a keep-alive connection.
 */
export class CidrSet {
  readonly entries: readonly Cidr[];
  private readonly cache = new Map<string, boolean>();

  constructor(cidrs: Iterable<string | Cidr>) {
    const list: Cidr[] = [];
    for (const c of cidrs) {
      const parsed = typeof c === 'string' ? parseCidr(c) : c;
      if (!parsed) throw new Error(`CidrSet: invalid network ${String(c)}`);
      list.push(parsed);
    }
    this.entries = list;
  }

  get size(): number {
    return this.entries.length;
  }

  /** `ip` must already be normalised (see normalizeIp). */
  has(ip: string): boolean {
    if (this.entries.length === 0) return false;
    const hit = this.cache.get(ip);
    if (hit !== undefined) return hit;
    const found = this.entries.some((c) => cidrContains(c, ip));
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(ip, found);
    return found;
  }

  /** True when any entry overlaps network `c` (used to refuse bans that would cover a protected address). */
  overlaps(c: Cidr): boolean {
    return this.entries.some((e) => cidrCovers(e, c) || cidrCovers(c, e));
  }

  toJSON(): string[] {
    return this.entries.map((e) => e.text);
  }
}
