import { parseDurationSeconds } from '../config/duration.js';
import { GatekeeperError } from '../errors.js';
import { cidrCovers, parseCidr } from '../net/ip.js';
import type { Enforcer } from '../policy/enforcer.js';
import { AllowlistFullError, type AllowEntry, type AllowlistStore } from '../store/allowlist.js';
import { checkTypedTarget } from './ban-target.js';

export interface AllowDeps {
  readonly allowlist: AllowlistStore;
  readonly enforcer: Enforcer;
  /** Re-reads the list into this instance's enforcer (the others follow through the store's events). */
  readonly allowChanged: () => Promise<void>;
  readonly now: () => number;
}

export function allowView(e: AllowEntry, now: number): Record<string, unknown> {
  return {
    cidr: e.cidr,
    reason: e.reason,
    since: new Date(e.since).toISOString(),
    until: e.until === null ? null : new Date(e.until).toISOString(),
    remainingSeconds: e.until === null ? null : Math.max(0, Math.round((e.until - now) / 1000)),
  };
}

/** `GET /api/allow`: the runtime entries and the static ones from the config. */
export async function listAllow(d: AllowDeps): Promise<Record<string, unknown>> {
  const now = d.now();
  return { entries: (await d.allowlist.list()).map((e) => allowView(e, now)), static: d.enforcer.staticAllow() };
}

/**
 * `POST /api/allow {cidr, duration?, reason?, force?}`: never counted or banned from now on, on every
 * instance; the bans inside the network are lifted (an allowlisted address must not stay locked out).
 */
export async function addAllow(d: AllowDeps, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const raw = typeof body.cidr === 'string' ? body.cidr : '';
  const c = checkTypedTarget(raw, { force: body.force === true, limitWidth: true });
  let seconds: number | null = null;
  if (body.duration !== undefined) {
    seconds = parseDurationSeconds(body.duration);
    if (seconds === null || seconds <= 0) throw new GatekeeperError('GK_ERR_API_REQUEST', `duration ${JSON.stringify(body.duration)} is not a duration (90s, 30m, 24h, 7d)`);
  }
  const now = d.now();
  const reason = typeof body.reason === 'string' && body.reason.trim() !== '' ? body.reason.trim().slice(0, 200) : 'manual';
  const entry: AllowEntry = { cidr: c.text, reason, since: now, until: seconds === null ? null : now + seconds * 1000 };
  try {
    await d.allowlist.add(entry);
  } catch (err) {
    if (err instanceof AllowlistFullError) throw new GatekeeperError('GK_ERR_API_REQUEST', err.message);
    throw new GatekeeperError('GK_ERR_STORE', `could not store the allowlist entry: ${(err as Error).message}`);
  }
  await d.allowChanged();
  const lifted: string[] = [];
  for (const ban of d.enforcer.cache.list(now)) {
    const b = parseCidr(ban.target);
    if (b && cidrCovers(c, b)) {
      await d.enforcer.unban(ban.target, `allowlist (${c.text})`);
      lifted.push(ban.target);
    }
  }
  return { entry: allowView(entry, now), lifted };
}

/** `DELETE /api/allow/:cidr`. */
export async function removeAllow(d: AllowDeps, raw: string): Promise<Record<string, unknown>> {
  const c = checkTypedTarget(raw, { limitWidth: false });
  const removed = await d.allowlist.remove(c.text);
  await d.allowChanged();
  return { cidr: c.text, removed };
}
