import type { Config } from '../config/schema.js';

export interface BanDecision {
  readonly seconds: number;
  readonly tier: 'proxy' | 'firewall';
}

/**
 * Pure: how long the Nth ban of an address lasts and whether it goes to the kernel firewall.
 * `count` is this ban's number within jail.bantimeIncrement.maxtime (1 for a first offence).
 * - bantime × factor^(count-1), capped at maxtime (fail2ban's bantime.increment), when enabled;
 * - `log` bans (IMAP/POP3/SMTP never pass the proxy) and manual bans go to the firewall at once;
 *   proxy bans from the firewall.escalateAfter-th one on (recidive).
 */
export function decideBan(
  count: number,
  source: 'proxy' | 'log' | 'manual',
  jail: Config['jail'],
  firewall: Config['firewall'],
  requestedSeconds?: number,
): BanDecision {
  let seconds = requestedSeconds ?? jail.bantime;
  if (requestedSeconds === undefined && jail.bantimeIncrement.enabled && count > 1) {
    seconds = Math.min(jail.bantime * jail.bantimeIncrement.factor ** (count - 1), Math.max(jail.bantime, jail.bantimeIncrement.maxtime));
  }
  const escalate = firewall.backend !== 'none' && (source !== 'proxy' || count >= firewall.escalateAfter);
  return { seconds, tier: escalate ? 'firewall' : 'proxy' };
}
