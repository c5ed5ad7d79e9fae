import { GatekeeperError } from '../errors.js';
import { normalizeIp, parseCidr, type Cidr } from '../net/ip.js';

/** The widest networks banned without `force`: a /16 is 65,536 IPv4 addresses; a /32 is an ISP's IPv6 allocation. */
export const WIDEST_WITHOUT_FORCE = { 4: 16, 6: 32 } as const;

/**
 * Checks a target typed by an admin (CLI, API, status page) before it is banned or unbanned:
 * - a network written with host bits set (`10.0.0.0/4`, `198.51.100.7/24`) is refused with the
 *   network it would mean, rather than silently banning that (`0.0.0.0/4` is a sixteenth of IPv4);
 * - a ban wider than /16 (IPv4) or /32 (IPv6) needs `force`.
 * Returns the parsed network.
 */
export function checkTypedTarget(raw: string, opts: { force?: boolean; limitWidth: boolean }): Cidr {
  const c = parseCidr(raw);
  if (!c) throw new GatekeeperError('GK_ERR_BAD_ADDRESS', `${JSON.stringify(raw)} is not an IP address or CIDR`);
  const slash = raw.indexOf('/');
  if (slash !== -1) {
    const given = normalizeIp(raw.slice(0, slash).trim());
    const network = c.text.split('/')[0];
    if (given !== network) {
      throw new GatekeeperError('GK_ERR_BAD_ADDRESS', `${raw.trim()} has host bits set: the network is ${c.text}; write that, or the single address without /${c.prefix}`);
    }
  }
  if (opts.limitWidth && !opts.force && c.prefix < WIDEST_WITHOUT_FORCE[c.family]) {
    const size = c.family === 4 ? `${2 ** (32 - c.prefix)} addresses` : `2^${128 - c.prefix} addresses`;
    throw new GatekeeperError('GK_ERR_BAD_ADDRESS', `${c.text} covers ${size}, wider than /${WIDEST_WITHOUT_FORCE[c.family]}: add --force (API: "force": true) if that is meant`);
  }
  return c;
}
