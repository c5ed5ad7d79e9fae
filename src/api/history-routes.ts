import type { IncomingMessage } from 'node:http';
import { parseDurationSeconds } from '../config/duration.js';
import { GatekeeperError } from '../errors.js';
import { cidrCovers, normalizeIp, parseCidr } from '../net/ip.js';
import type { Enforcer } from '../policy/enforcer.js';
import type { FailureEvidence, HistoryEvent, HistoryStore } from '../store/history.js';

export interface HistoryDeps {
  readonly history: HistoryStore;
  /** This instance's recent failures for a ban key (not yet banned, or banned elsewhere). */
  readonly evidence: (key: string) => FailureEvidence[];
  readonly enforcer: Enforcer;
  readonly now: () => number;
}

/** Who asked, for the history: the status page (a browser) or another client (the CLI), and from where. */
export function requester(req: IncomingMessage): string {
  const browser = req.headers.origin !== undefined || req.headers['sec-fetch-site'] !== undefined;
  const ua = String(req.headers['user-agent'] ?? '');
  const what = browser ? 'status page' : ua.startsWith('gatekeeper-cli') ? 'cli' : 'api';
  return `manual (${what} from ${normalizeIp(req.socket.remoteAddress) ?? 'unknown'})`;
}

function evidenceView(e: FailureEvidence): Record<string, unknown> {
  return { at: new Date(e.at).toISOString(), service: e.service, ...(e.account ? { account: e.account } : {}), failures: e.failures };
}

export function eventView(e: HistoryEvent): Record<string, unknown> {
  return {
    ...e,
    at: new Date(e.at).toISOString(),
    ...(e.until !== undefined ? { until: new Date(e.until).toISOString() } : {}),
    ...(e.evidence ? { evidence: e.evidence.map(evidenceView) } : {}),
  };
}

/** The key an address is banned under, or a network as typed (canonical). */
function keyOf(d: HistoryDeps, raw: string): { ip: string | null; key: string } {
  const ip = normalizeIp(raw);
  if (ip) return { ip, key: d.enforcer.cache.clientKey(ip) };
  const c = parseCidr(raw);
  if (!c) throw new GatekeeperError('GK_ERR_BAD_ADDRESS', `${JSON.stringify(raw)} is not an IP address or CIDR`);
  return { ip: null, key: c.text };
}

/** `GET /api/history[?ip=&since=&limit=]`: bans and unbans, newest first. */
export async function listHistory(d: HistoryDeps, q: URLSearchParams): Promise<Record<string, unknown>> {
  const limitRaw = q.get('limit');
  const limit = limitRaw === null ? 100 : Number(limitRaw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new GatekeeperError('GK_ERR_API_REQUEST', `limit ${JSON.stringify(limitRaw)} is not a number from 1 to 10000`);
  let since: number | undefined;
  const sinceRaw = q.get('since');
  if (sinceRaw !== null) {
    const s = parseDurationSeconds(sinceRaw);
    const at = Date.parse(sinceRaw);
    if (s !== null) since = d.now() - s * 1000;
    else if (!Number.isNaN(at)) since = at;
    else throw new GatekeeperError('GK_ERR_API_REQUEST', `since ${JSON.stringify(sinceRaw)} is neither a duration (30m, 24h, 7d) nor a time`);
  }
  const ipRaw = q.get('ip');
  const target = ipRaw === null ? undefined : keyOf(d, ipRaw).key;
  const events = await d.history.list({ target, since, limit });
  return { ...(target ? { target } : {}), events: events.map(eventView) };
}

/**
 * `GET /api/why/:ip`: why an address is (or is not) refused: its ban or the network ban covering it,
 * the evidence that ban kept (the failures counted before it, shared through the history), the
 * failures counted now, the allowlists, and its recent history.
 */
export async function why(d: HistoryDeps, raw: string): Promise<Record<string, unknown>> {
  const { ip, key } = keyOf(d, raw);
  const now = d.now();
  const ban = ip ? d.enforcer.bannedNow(ip) : d.enforcer.cache.get(key, now);
  const events = await d.history.list({ target: key, limit: 20 });
  // The event that made the ban in force (for a range: the range's own history).
  const banEvents = ban && ban.target !== key ? await d.history.list({ target: ban.target, limit: 20 }) : events;
  const made = ban ? banEvents.find((e) => e.action === 'ban' && e.until === ban.until) ?? banEvents.find((e) => e.action === 'ban') : undefined;
  const coveredBy = ban && ban.target !== key && parseCidr(ban.target) && parseCidr(key) && cidrCovers(parseCidr(ban.target)!, parseCidr(key)!) ? ban.target : null;
  return {
    ip: ip ?? key,
    key,
    banned: !!ban,
    ban: ban
      ? { target: ban.target, rule: ban.reason, service: ban.service, tier: ban.tier, count: ban.count, source: ban.source, since: new Date(ban.since).toISOString(), until: new Date(ban.until).toISOString(), remainingSeconds: Math.max(0, Math.round((ban.until - now) / 1000)), ...(ban.note ? { note: ban.note } : {}) }
      : null,
    coveredBy,
    madeBy: made ? made.by : null,
    evidence: (made?.evidence ?? []).map(evidenceView),
    ignored: ip ? d.enforcer.isIgnored(ip) : false,
    failuresNow: ip ? await d.enforcer.failuresOf(ip) : 0,
    recentFailures: d.evidence(key).map(evidenceView),
    history: events.map(eventView),
  };
}
