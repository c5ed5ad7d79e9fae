import { parseCidr, type Cidr } from '../net/ip.js';

function toBig(c: Cidr): bigint {
  return c.words.reduce((acc, w) => (acc << 32n) | BigInt(w), 0n);
}

function fromBig(v: bigint, family: 4 | 6, prefix: number): string {
  const bits = family === 4 ? 32 : 128;
  if (family === 4) {
    const text = [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join('.');
    return prefix === bits ? text : `${text}/${prefix}`;
  }
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((v >> s) & 0xffffn).toString(16));
  return parseCidr(`${groups.join(':')}/${prefix}`)!.text;
}

/**
 * The networks that cover `range` except `hole` (which must lie inside it): one per bit between the
 * two prefixes, the sibling of the hole's network at that length. `198.51.100.0/24` minus
 * `198.51.100.5` is 8 networks: .128/25, .64/26, .32/27, .16/28, .8/29, .0/30, .6/31, .4 (as /32).
 * Empty when the hole is the whole range.
 */
export function carveOut(range: Cidr, hole: Cidr): string[] {
  const bits = range.family === 4 ? 32 : 128;
  const h = toBig(hole);
  const out: string[] = [];
  for (let p = range.prefix + 1; p <= hole.prefix; p++) {
    const flip = 1n << BigInt(bits - p);
    const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - p)) - 1n);
    out.push(fromBig((h & mask) ^ flip, range.family, p));
  }
  return out;
}
