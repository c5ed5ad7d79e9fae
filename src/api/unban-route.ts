import { GatekeeperError } from '../errors.js';
import { cidrCovers, parseCidr } from '../net/ip.js';
import type { Enforcer } from '../policy/enforcer.js';
import { carveOut } from '../policy/range-split.js';
import { checkTypedTarget } from './ban-target.js';

/** A path segment as sent (`%2F` in a CIDR); a malformed escape is a bad request, not a crash. */
export function decodeSegment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new GatekeeperError('GK_ERR_API_REQUEST', `${JSON.stringify(raw)} is not a valid URL path segment`);
  }
}

/**
 * `DELETE /api/bans/:target[?split=1]`. An address that is not banned under its own key but inside a
 * banned network is not "unbanned" (answering "was not banned" would leave it refused): the network
 * is named (409), or with `split` the network ban is replaced by bans of the rest of it. An address
 * unbanned under its own key but still inside a banned network gets `coveredBy` in the answer.
 */
export async function unbanOne(enforcer: Enforcer, target: string, split: boolean, by: string, now: number): Promise<Record<string, unknown>> {
  const typed = checkTypedTarget(target, { limitWidth: false });
  const single = typed.prefix === (typed.family === 4 ? 32 : 128);
  const hole = single ? parseCidr(enforcer.cache.clientKey(typed.text))! : typed;
  const coverOf = (): ReturnType<Enforcer['cache']['list']>[number] | undefined =>
    enforcer.cache.list(now).find((b) => b.target !== hole.text && cidrCovers(parseCidr(b.target)!, hole));
  const cover = enforcer.cache.get(hole.text, now) ? undefined : coverOf();
  if (cover && split) {
    const parts = carveOut(parseCidr(cover.target)!, hole);
    await enforcer.replaceRangeBan(cover, parts, hole.text, by);
    return { ip: target, removed: true, split: { range: cover.target, rebanned: parts } };
  }
  if (cover) {
    throw new GatekeeperError(
      'GK_ERR_RANGE_BANNED',
      `${typed.text} is inside the banned network ${cover.target} (${cover.reason}, until ${new Date(cover.until).toISOString()}): nothing was lifted. ` +
        `Lift the network (unban ${cover.target}) or carve this address out of it (unban ${typed.text} --split)`,
    );
  }
  const removed = await enforcer.unban(target, by);
  const still = coverOf();
  return { ip: target, removed, ...(still ? { coveredBy: still.target } : {}) };
}
