import { z } from 'zod';
import { parseCidr, normalizeIp } from '../net/ip.js';
import { parseDurationSeconds } from './duration.js';

/*
 * The one configuration schema. Every key: type, default (on the same line), unit, one-line doc.
 * Durations are written `90s`, `30m`, `24h`, `7d` (or seconds) and parsed to SECONDS.
 * Objects are strict: an unknown key is an error naming the key.
 */

const duration = (what = 'a duration') =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const s = parseDurationSeconds(v);
    if (s === null) {
      ctx.addIssue({ code: 'custom', message: `is not ${what} (use 90s, 30m, 24h, 7d or seconds)` });
      return z.NEVER;
    }
    return s;
  });

const positiveInt = () => z.number({ error: 'is not a positive integer' }).int({ error: 'is not a positive integer' }).min(1, { error: 'is not a positive integer' });
const port = () => z.number({ error: 'is not a port number (0-65535)' }).int({ error: 'is not a port number (0-65535)' }).min(0, { error: 'is not a port number (0-65535)' }).max(65535, { error: 'is not a port number (0-65535)' });

const cidr = z.string({ error: 'is not an IP address or CIDR' }).refine((s) => parseCidr(s) !== null, { error: 'is not an IP address or CIDR' });
const cidrList = z.array(cidr, { error: 'is not a list of IP addresses or CIDRs' });
const ipAddress = z.string({ error: 'is not an IP address' }).refine((s) => normalizeIp(s) !== null, { error: 'is not an IP address' });

const upstreamUrl = z.string({ error: 'is not an http(s) URL' }).refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}, { error: 'is not an http(s) URL' });

const listener = z.strictObject({
  host: z.string().default('0.0.0.0'), //                      address to bind; `::` for all IPv6+IPv4
  port: port(), //                                             TCP port; 0 picks a free one (logged at start)
  tls: z.strictObject({ cert: z.string(), key: z.string() }).optional(), // PEM files: serve HTTPS
  proxyProtocol: z.boolean().default(false), //                expect a PROXY v1/v2 header (only from trustedProxies)
});

const logSource = z.strictObject({
  path: z.string().min(1), //                                                 file to follow (tail -F semantics)
  type: z.enum(['zimbra-audit', 'zimbra-mailbox', 'syslog', 'zimbra-nginx'], { error: 'is not one of zimbra-audit, zimbra-mailbox, syslog, zimbra-nginx' }),
});

export const configSchema = z.strictObject({
  zimbra: z.strictObject({
    web: upstreamUrl.default('https://127.0.0.1:8443'), //     webmail upstream (zimbra-proxy or mailboxd)
    admin: upstreamUrl.default('https://127.0.0.1:9071'), //   admin console upstream
    tlsVerify: z.boolean().default(false), //                   verify the upstream certificate (Zimbra is often self-signed)
    defaultDomain: z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.?$/, { error: 'is not a domain name' }).optional(), // domain Zimbra appends to a bare login name (zimbraDefaultDomainName): `info` and `info@<it>` are one account
  }).prefault({}),
  listen: z.strictObject({
    web: listener.optional(), //   webmail listener; omit to disable
    admin: listener.optional(), // admin console listener (admin.allow applies); omit to disable
    api: listener.optional(), //   control API, /metrics, /healthz, status page; omit to disable
  }).prefault({
    web: { host: '0.0.0.0', port: 8080 },
    admin: { host: '0.0.0.0', port: 7071 },
    api: { host: '127.0.0.1', port: 9180 },
  }),
  trustedProxies: cidrList.default([]), //                       peers whose X-Forwarded-For / PROXY header is believed
  redis: z.strictObject({
    url: z.string().refine((s) => /^rediss?(\+sentinel|\+cluster)?:\/\/./.test(s), { error: 'is not a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL' }).default('redis://127.0.0.1:6379/0'), // the store (see "Scaling out")
    keyPrefix: z.string().default('gk:'), //                     prefix of every key (share one Redis between sites); no { } on a Cluster
    connectTimeout: duration().default(5), //                   seconds to wait for a connection
    commandTimeout: duration().refine((s) => s >= 0.05 && s <= 60, { error: 'must be between 50ms and 60s' }).default(1), // deadline of every Redis command; a Redis that misses it is treated as down
    replicaAckTimeout: duration().refine((s) => s >= 0.01 && s <= 10, { error: 'must be between 10ms and 10s' }).default(0.5), // a ban write waits this long for a replica (WAIT), where the master has replicas
    username: z.string().min(1).optional(), //                 ACL user (overrides the URL's)
    password: z.string().min(1).optional(), //                 password (overrides the URL's; GK_REDIS_PASSWORD)
    tlsCa: z.string().min(1).optional(), //                     PEM file of the CA that signed Redis' certificate (rediss://)
  }).superRefine((r, ctx) => {
    // The gatekeeper places hash tags itself (src/store/redis-keys.ts); one in the prefix would pin every
    // key to one slot, one master: a Cluster with failover but no capacity. Harmless elsewhere.
    if (/^rediss?\+cluster:/.test(r.url) && /[{}]/.test(r.keyPrefix)) {
      ctx.addIssue({ code: 'custom', path: ['keyPrefix'], input: r.keyPrefix, message: 'must not contain { or } with a Cluster url: the gatekeeper places hash tags itself (a tag in the prefix puts every key in one slot)' });
    }
  }).optional(), //                                              omit: embedded in-memory store (single instance)
  jail: z.strictObject({
    maxretry: positiveInt().default(3), //                      failures per IP ...
    findtime: duration().refine((s) => s >= 1 && s <= 24 * 86400, { error: 'must be between 1s and 24d' }).default(1800), // ... within this window ...
    bantime: duration().refine((s) => s >= 1, { error: 'must be at least 1s' }).default(86400), // ... ban this long
    bantimeIncrement: z.strictObject({
      enabled: z.boolean().default(true), //                    grow the ban time for repeat offenders
      factor: z.number({ error: 'is not a number >= 1' }).min(1, { error: 'is not a number >= 1' }).default(2), // bantime × factor^(earlier bans)
      maxtime: duration().default(30 * 86400), //               cap of a ban, and how long earlier bans are remembered
    }).prefault({}),
    ignoreip: cidrList.default(['127.0.0.0/8', '::1']), //      never counted, never banned
    ipv6Prefix: z.number().int().min(32, { error: 'must be between 32 and 128' }).max(128, { error: 'must be between 32 and 128' }).default(64), // IPv6 clients are counted and banned per /N
  }).prefault({}),
  account: z.strictObject({
    enabled: z.boolean().default(true), //                      shield accounts against distributed guessing
    maxretry: positiveInt().default(8), //                      failures per account from unknown IPs ...
    findtime: duration().refine((s) => s >= 1 && s <= 24 * 86400, { error: 'must be between 1s and 24d' }).default(1800), // ... within this window
    rememberSuccess: duration().default(30 * 86400), //         an IP with a successful login for an account stays "known" this long
  }).prefault({}),
  admin: z.strictObject({
    allow: cidrList.default([]), //                             networks allowed on the admin listener; empty = nobody
  }).prefault({}),
  firewall: z.strictObject({
    backend: z.enum(['none', 'nftables', 'ipset', 'firewalld'], { error: 'is not one of none, nftables, ipset, firewalld' }).default('none'),
    escalateAfter: positiveInt().default(2), //                 the Nth ban of an IP goes to the kernel firewall
    ports: z.array(port()).default([25, 465, 587, 80, 443, 110, 143, 993, 995, 7071, 9071]), // ports closed to banned IPs
    action: z.enum(['reject', 'drop'], { error: 'is not one of reject, drop' }).default('reject'),
    table: z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,30}$/, { error: 'is not a valid table name (letters, digits, _)' }).default('zimbra_gatekeeper'),
    keepOnShutdown: z.boolean().default(true), //               leave kernel bans in place when the gatekeeper stops
  }).prefault({}),
  logs: z.array(logSource).default([]), //                      Zimbra log files to follow
  zimbraProxies: z.array(ipAddress).default([]), //             ip= values that are zimbra-proxy: only then is oip= believed
  mode: z.enum(['enforce', 'shadow'], { error: 'is not one of enforce, shadow' }).default('enforce'),
  api: z.strictObject({
    token: z.string().min(16, { error: 'is shorter than 16 characters' }).optional(), // bearer token for the control API (GK_API_TOKEN)
    url: z.string().optional(), //                              where CLI commands reach the API (default: from listen.api)
  }).prefault({}),
  proxy: z.strictObject({
    maxLoginBodyBytes: positiveInt().default(65536), //         login bodies read for detection up to this size
    upstreamTimeout: duration().default(300), //                no upstream answer in this time: 504 (Zimbra long-polls up to minutes)
    headersTimeout: duration().default(20), //                  a client must send its headers within this (slowloris)
    requestTimeout: duration().default(300), //                 a client must send its whole request within this
    keepAliveTimeout: duration().default(65), //                idle client keep-alive connections are closed after this
    maxSockets: positiveInt().default(4096), //                 upstream connections per listener; every open webmail tab holds one for its long poll
    workers: z.union([z.literal('auto'), positiveInt(), z.string().regex(/^[1-9]\d{0,2}$/).transform(Number)], { error: 'is not auto or a positive integer' }).default(1), // processes serving the listeners (auto: one per core); more than 1 needs redis
    loginQueueTimeout: duration().default(15), //               a login finding its address's budget held by logins in flight waits this long for one to settle
    loginQueueLength: positiveInt().default(64), //             logins waiting per address at most; past it they get 429 at once
    maxClientConnections: positiveInt().default(512), //        open connections per client address (IPv6: per /jail.ipv6Prefix) per listener; trusted proxies exempt
    maxUpstreamPerClient: positiveInt().default(128), //        upstream connections one client address may have in use (or wait for) at once, per listener
    bufferBodyBytes: z.number({ error: 'is not a number of bytes >= 0' }).int({ error: 'is not a number of bytes >= 0' }).min(0, { error: 'is not a number of bytes >= 0' }).default(65536), // request bodies up to this size are read whole before an upstream connection is taken (0 = stream all)
    banPageInterval: duration().default(60), //                 a banned address gets the 429 page at most once per this; its other connections are reset (0 = always the page)
  }).prefault({}),
  memory: z.strictObject({
    maxCounterKeys: positiveInt().default(250_000), //          keys per failure counter (per address, per account, …) and per Redis insurance limiter; full: the stalest key with the fewest failures is forgotten
    maxFlags: positiveInt().default(250_000), //                known-good account/address pairs and ban histories in the in-memory store; full: the entry expiring soonest goes
    maxBans: positiveInt().default(1_000_000), //               single-address bans held in memory (ban cache, in-memory store); full: the ban ending soonest goes
    maxPageThrottleKeys: positiveInt().default(100_000), //     banned addresses remembered for proxy.banPageInterval; full: the least recently paged is forgotten
    maxKnownGood: positiveInt().default(100_000), //            account/address pairs with a recent success each process keeps in memory (the store keeps them all); full: the oldest goes
    maxActivityKeys: positiveInt().default(5_000), //           addresses, and accounts, per hour in the status page's top lists; full: the one with the fewest failures is forgotten
  }).prefault({}),
  notify: z.strictObject({
    webhook: upstreamUrl.optional(), //                         POST a JSON document here on every ban and escalation
    timeout: duration().default(5), //                          per attempt
    retries: z.number().int().min(0).max(20).default(5), //     attempts after the first, with exponential backoff from 1 s
  }).prefault({}),
  history: z.strictObject({
    keep: duration().refine((s) => s >= 60, { error: 'must be at least 1m' }).default(30 * 86400), // bans and unbans are kept this long (gatekeeper history, why)
    maxEvents: positiveInt().default(100_000), //              at most this many events; the oldest go first
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  }).prefault({}),
});

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type ListenerConfig = z.output<typeof listener>;
export type LogSourceConfig = z.output<typeof logSource>;

/** Keys whose values are never printed. */
export const SECRET_KEYS = new Set(['api.token', 'redis.url', 'redis.password']);
