import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseDurationSeconds } from '../config/duration.js';
import { GatekeeperError, isGatekeeperError } from '../errors.js';
import { normalizeIp, parseCidr } from '../net/ip.js';
import { checkTypedTarget } from './ban-target.js';
import { decodeSegment, unbanOne } from './unban-route.js';
import { addAllow, listAllow, removeAllow, type AllowDeps } from './allow-routes.js';
import { listHistory, requester, why, type HistoryDeps } from './history-routes.js';
import type { Metrics } from '../obs/metrics.js';
import type { Enforcer } from '../policy/enforcer.js';
import type { Ban } from '../store/ban.js';
import type { Activity } from '../obs/activity.js';
import { FAVICON_SVG, STATUS_PAGE } from './status-page.js';

export interface HealthReport {
  readonly status: 'ok' | 'degraded';
  readonly [part: string]: unknown;
}

export interface ControlApiDeps {
  readonly enforcer: Enforcer;
  readonly activity: Activity;
  readonly reload: () => Promise<{ ok: boolean; error?: string; restartNeeded: string[] }>;
  readonly metrics: Metrics;
  readonly token: string | undefined;
  readonly health: () => HealthReport;
  readonly now: () => number;
  /** The runtime allowlist (`/api/allow`); absent: those routes answer 404. */
  readonly allow?: Omit<AllowDeps, 'enforcer' | 'now'>;
  /** Ban history and evidence (`/api/history`, `/api/why`); absent: those routes answer 404. */
  readonly history?: Omit<HistoryDeps, 'enforcer' | 'now'>;
}

/** A bulk ban of ~60,000 IPv4 addresses (an imported block list) fits; the API is loopback or token-only. */
const MAX_BODY = 1024 * 1024;

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function fail(res: ServerResponse, status: number, code: string, message: string): void {
  send(res, status, { error: code, message });
}

/** The optional `duration` of a ban request, in seconds; an invalid one is an error, not ignored. */
function durationOf(body: Record<string, unknown>): number | undefined {
  if (body.duration === undefined) return undefined;
  const s = parseDurationSeconds(body.duration);
  if (s === null || s <= 0) throw new GatekeeperError('GK_ERR_API_REQUEST', `duration ${JSON.stringify(body.duration)} is not a duration (90s, 30m, 24h, 7d)`);
  return s;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new GatekeeperError('GK_ERR_API_REQUEST', 'request body too large');
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new GatekeeperError('GK_ERR_API_REQUEST', 'body must be a JSON object');
  }
}

export function banView(b: Ban, now: number): Record<string, unknown> {
  return {
    ip: b.target,
    reason: b.reason,
    service: b.service,
    source: b.source,
    tier: b.tier,
    count: b.count,
    since: new Date(b.since).toISOString(),
    until: new Date(b.until).toISOString(),
    remainingSeconds: Math.max(0, Math.round((b.until - now) / 1000)),
    ...(b.shadow ? { shadow: true } : {}),
    ...(b.note ? { note: b.note } : {}),
  };
}

/**
 * The control API: /healthz, /metrics, /api/bans, /api/status. A bearer token, when configured,
 * is required on every /api/ route (config validation insists on one when the listener is not on
 * loopback).
 */
export function createControlApi(d: ControlApiDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const expected = d.token ? Buffer.from(d.token) : null;
  const authorized = (req: IncomingMessage): boolean => {
    if (!expected) return true;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const given = Buffer.from(m[1]!.trim());
    return given.length === expected.length && timingSafeEqual(given, expected);
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path === '/healthz' && (method === 'GET' || method === 'HEAD')) {
      const h = d.health();
      // 200 while serving (a container healthcheck must not restart the proxy because Zimbra is
      // down); ?strict=1 answers 503 when degraded, for monitors that only read the status code.
      send(res, h.status !== 'ok' && url.searchParams.get('strict') === '1' ? 503 : 200, h);
      return;
    }
    if (path === '/' && method === 'GET') {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'",
        'x-frame-options': 'DENY',
      });
      res.end(STATUS_PAGE);
      return;
    }
    if ((path === '/favicon.ico' || path === '/favicon.svg') && method === 'GET') {
      res.writeHead(200, { 'content-type': 'image/svg+xml', 'cache-control': 'max-age=86400' });
      res.end(FAVICON_SVG);
      return;
    }
    if (path === '/metrics' && method === 'GET') {
      const text = await d.metrics.text();
      res.writeHead(200, { 'content-type': d.metrics.registry.contentType });
      res.end(text);
      return;
    }
    if (!path.startsWith('/api/')) {
      fail(res, 404, 'GK_ERR_API_REQUEST', `no route ${method} ${path}`);
      return;
    }
    if (!authorized(req)) {
      res.setHeader('www-authenticate', 'Bearer');
      fail(res, 401, 'GK_ERR_API_UNAUTHORIZED', 'missing or wrong bearer token (GK_API_TOKEN)');
      return;
    }
    // Without a token the API trusts whoever reaches the loopback listener (the CLI). A browser is
    // another matter: any web page it shows could send it a "simple" cross-site POST (text/plain, no
    // preflight). Browsers mark their requests with Origin / Sec-Fetch-Site; refuse their writes.
    if (!expected && method !== 'GET' && method !== 'HEAD' && (req.headers.origin !== undefined || req.headers['sec-fetch-site'] !== undefined)) {
      fail(res, 403, 'GK_ERR_API_UNAUTHORIZED', 'read-only from a browser: set api.token to ban and unban from the status page');
      return;
    }
    const now = d.now();
    if (path === '/api/bans' && method === 'GET') {
      const keep = banFilter(url.searchParams, now);
      send(res, 200, { bans: d.enforcer.cache.list(now).filter(keep).map((b) => banView(b, now)) });
      return;
    }
    if (path === '/api/bans' && method === 'POST') {
      const body = await readJson(req);
      if (Array.isArray(body.ips)) {
        const ips = body.ips as unknown[];
        // Bulk: many bans in one call (importing a blocklist); they reach the firewall in few batches.
        if (ips.length > 100_000) throw new GatekeeperError('GK_ERR_API_REQUEST', 'at most 100000 addresses per call');
        const seconds = durationOf(body);
        const note = typeof body.reason === 'string' ? body.reason.slice(0, 200) : 'manual';
        const force = body.force === true;
        const results = await Promise.allSettled(
          ips.map(async (ip) => {
            checkTypedTarget(String(ip), { force, limitWidth: true });
            return d.enforcer.ban(String(ip), { reason: 'manual', service: 'manual', source: 'manual', seconds, note, by: requester(req) });
          }),
        );
        const errors = results.flatMap((r, i) => (r.status === 'rejected' ? [{ ip: String(ips[i]), error: (r.reason as Error).message }] : []));
        send(res, errors.length === results.length && results.length > 0 ? 400 : 201, { banned: results.length - errors.length, errors: errors.slice(0, 100) });
        return;
      }
      const ip = typeof body.ip === 'string' ? body.ip : '';
      checkTypedTarget(ip, { force: body.force === true, limitWidth: true });
      const seconds = durationOf(body);
      const reason = typeof body.reason === 'string' && body.reason.trim() !== '' ? body.reason.trim().slice(0, 200) : 'manual';
      const ban = await d.enforcer.ban(ip, { reason: 'manual', service: 'manual', source: 'manual', seconds, note: reason, by: requester(req) });
      send(res, 201, { ban: banView(ban, d.now()) });
      return;
    }
    if (path === '/api/bans' && method === 'DELETE') {
      const removed = await d.enforcer.unbanAll(requester(req));
      send(res, 200, { removed });
      return;
    }
    const banMatch = /^\/api\/bans\/(.+)$/.exec(path);
    if (banMatch && method === 'DELETE') {
      send(res, 200, await unbanOne(d.enforcer, decodeSegment(banMatch[1]!), url.searchParams.get('split') === '1', requester(req), now));
      return;
    }
    if (d.allow && path.startsWith('/api/allow')) {
      const deps: AllowDeps = { ...d.allow, enforcer: d.enforcer, now: d.now };
      if (path === '/api/allow' && method === 'GET') {
        send(res, 200, await listAllow(deps));
        return;
      }
      if (path === '/api/allow' && method === 'POST') {
        send(res, 201, await addAllow(deps, await readJson(req)));
        return;
      }
      const m = /^\/api\/allow\/(.+)$/.exec(path);
      if (m && method === 'DELETE') {
        send(res, 200, await removeAllow(deps, decodeSegment(m[1]!)));
        return;
      }
    }
    if (d.history && method === 'GET' && (path === '/api/history' || path.startsWith('/api/why/'))) {
      const deps: HistoryDeps = { ...d.history, enforcer: d.enforcer, now: d.now };
      send(res, 200, path === '/api/history' ? await listHistory(deps, url.searchParams) : await why(deps, decodeSegment(path.slice('/api/why/'.length))));
      return;
    }
    if (path === '/api/reload' && method === 'POST') {
      const r = await d.reload();
      send(res, r.ok ? 200 : 400, r);
      return;
    }
    const statusMatch = /^\/api\/status(?:\/(.+))?$/.exec(path);
    if (statusMatch && method === 'GET') {
      if (!statusMatch[1]) {
        send(res, 200, { ...(await overview(d, now)), access: { writable: !!expected } });
        return;
      }
      const raw = decodeSegment(statusMatch[1]);
      const ip = normalizeIp(raw);
      if (!ip && !parseCidr(raw)) throw new GatekeeperError('GK_ERR_BAD_ADDRESS', `${JSON.stringify(raw)} is not an IP address`);
      const target = ip ?? parseCidr(raw)!.text;
      const ban = ip ? d.enforcer.bannedNow(ip) : d.enforcer.cache.get(target, now);
      send(res, 200, {
        ip: target,
        ignored: ip ? d.enforcer.isIgnored(ip) : false,
        failures: ip ? await d.enforcer.failuresOf(ip) : 0,
        banned: !!ban,
        ban: ban ? banView(ban, now) : null,
      });
      return;
    }
    fail(res, 404, 'GK_ERR_API_REQUEST', `no route ${method} ${path}`);
  };

  return (req, res) => {
    route(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (isGatekeeperError(err)) {
        const status =
          err.code === 'GK_ERR_BAD_ADDRESS' || err.code === 'GK_ERR_API_REQUEST' ? 400 : err.code === 'GK_ERR_PROTECTED_ADDRESS' || err.code === 'GK_ERR_RANGE_BANNED' ? 409 : err.code === 'GK_ERR_STORE' ? 503 : 500;
        fail(res, status, err.code, err.message);
        return;
      }
      fail(res, 500, 'GK_ERR_API_REQUEST', (err as Error).message);
    });
  };
}

/** `GET /api/bans?service=&rule=&tier=&since=`: each given filter must match (since: a duration back from now, or a time). */
function banFilter(q: URLSearchParams, now: number): (b: Ban) => boolean {
  const service = q.get('service');
  const rule = q.get('rule');
  const tier = q.get('tier');
  const sinceRaw = q.get('since');
  if (tier !== null && tier !== 'proxy' && tier !== 'firewall') throw new GatekeeperError('GK_ERR_API_REQUEST', `tier ${JSON.stringify(tier)} is not proxy or firewall`);
  let since = -Infinity;
  if (sinceRaw !== null) {
    const seconds = parseDurationSeconds(sinceRaw);
    const at = Date.parse(sinceRaw);
    if (seconds !== null) since = now - seconds * 1000;
    else if (!Number.isNaN(at)) since = at;
    else throw new GatekeeperError('GK_ERR_API_REQUEST', `since ${JSON.stringify(sinceRaw)} is neither a duration (30m, 24h, 7d) nor a time (2026-11-27T08:00:00Z)`);
  }
  return (b) => (service === null || b.service === service) && (rule === null || b.reason === rule) && (tier === null || b.tier === tier) && b.since >= since;
}

async function overview(d: ControlApiDeps, now: number): Promise<Record<string, unknown>> {
  const bans = d.enforcer.cache.list(now);
  const byTier: Record<string, number> = { proxy: 0, firewall: 0 };
  const byService: Record<string, number> = {};
  for (const b of bans) {
    byTier[b.tier] = (byTier[b.tier] ?? 0) + 1;
    byService[b.service] = (byService[b.service] ?? 0) + 1;
  }
  const logins = await d.metrics.logins.get();
  const failures: Record<string, number> = {};
  const successes: Record<string, number> = {};
  for (const v of logins.values) {
    const service = String(v.labels.service);
    const target = v.labels.outcome === 'failure' ? failures : successes;
    target[service] = (target[service] ?? 0) + v.value;
  }
  return { activeBans: bans.length, bansByTier: byTier, bansByService: byService, failuresByService: failures, successesByService: successes, activity: d.activity.report(), health: d.health() };
}
