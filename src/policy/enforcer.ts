import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import type { AuthEvent } from '../detect/auth-event.js';
import { GatekeeperError } from '../errors.js';
import { CidrSet, parseCidr, type Cidr } from '../net/ip.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { Activity } from '../obs/activity.js';
import type { Notifier } from '../obs/notifier.js';
import type { Ban } from '../store/ban.js';
import type { FailureCounter, Store } from '../store/store.js';
import { BanCache } from './ban-cache.js';
import { decideBan } from './ban-policy.js';

/** A login let through to Zimbra, with the failures reserved for it before forwarding. */
export interface LoginTicket {
  readonly ip: string;
  readonly key: string;
  readonly accounts: readonly string[];
  readonly reserved: number;
  /** Accounts whose shield counter got one failure reserved. */
  readonly reservedAccounts: readonly string[];
  readonly knownGood: boolean;
  readonly ignored: boolean;
}

export type Admission =
  | { readonly allowed: true; readonly ticket: LoginTicket }
  | { readonly allowed: false; readonly reason: 'limited' | 'account-shield'; readonly retryAfterSeconds: number }
  | { readonly allowed: false; readonly reason: 'banned'; readonly retryAfterSeconds: number; readonly ban: Ban };

export interface LoginOutcome {
  readonly failures: number;
  readonly successes: number;
  readonly ruleId: string;
  readonly service: string;
}

export interface BanRequest {
  readonly reason: string;
  readonly service: string;
  readonly source: 'proxy' | 'log' | 'manual';
  readonly seconds?: number | undefined;
  readonly note?: string | undefined;
}

export interface AddressSets {
  /** Never counted, never banned: jail.ignoreip, trustedProxies, the upstreams. */
  readonly ignored: CidrSet;
  /** Never banned: the ignored ones plus admin.allow and the gatekeeper's own addresses. */
  readonly protected: CidrSet;
}

const MAX_ACCOUNT_LENGTH = 256;

/**
 * Turns login outcomes into counts and bans. The request path calls admitLogin before forwarding a
 * login (reserving a failure, so a concurrent burst cannot outrun the limit) and settleLogin when
 * Zimbra has answered; log detectors call record(). Bans go to the store (shared), to this
 * instance's cache at once, and from there to the firewall through store events.
 */
export class Enforcer {
  readonly cache: BanCache;
  private ipCounter!: FailureCounter;
  private pairCounter!: FailureCounter;
  private accountCounter!: FailureCounter;
  /** Targets being banned right now: concurrent failures crossing the limit make one ban, not several. */
  private readonly banning = new Set<string>();
  /**
   * This instance's copy of known-good account/address pairs (expiry in ms). Set synchronously when a
   * success is seen, so a client's next request (DAV clients fire many at once) finds it before the
   * store write completes, and so repeated checks cost no Redis round trip.
   */
  private readonly knownGoodLocal = new Map<string, number>();

  constructor(
    private config: Config,
    private readonly store: Store,
    private sets: AddressSets,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly activity?: Activity,
    private notifier?: Notifier,
  ) {
    this.cache = new BanCache(config.jail.ipv6Prefix);
    this.makeCounters();
  }

  private makeCounters(): void {
    const { jail, account } = this.config;
    // The counts live in the store under the same keys: new limits apply to the counts so far.
    this.ipCounter = this.store.counter({ name: 'ip', points: jail.maxretry, durationSeconds: jail.findtime });
    // Pairs live as long as the IP window: they only say which of an IP's failures a success clears.
    this.pairCounter = this.store.counter({ name: 'pair', points: 1_000_000, durationSeconds: jail.findtime });
    this.accountCounter = this.store.counter({ name: 'account', points: account.maxretry, durationSeconds: account.findtime });
  }

  setNotifier(n: Notifier | undefined): void {
    this.notifier = n;
  }

  /** Takes a reloaded config (jail, account, mode, address sets); bans and counts are kept. */
  reconfigure(config: Config, sets: AddressSets): void {
    this.config = config;
    this.sets = sets;
    this.makeCounters();
  }

  get shadow(): boolean {
    return this.config.mode === 'shadow';
  }

  isIgnored(ip: string): boolean {
    return this.sets.ignored.has(ip);
  }

  /** The ban that applies to this (normalised) address, if any. */
  bannedNow(ip: string): Ban | undefined {
    return this.cache.lookup(ip, this.clock.now());
  }

  static normalizeAccount(raw: string | undefined | null): string | undefined {
    if (!raw) return undefined;
    const a = raw.trim().toLowerCase();
    if (a.length === 0) return undefined;
    return a.length > MAX_ACCOUNT_LENGTH ? a.slice(0, MAX_ACCOUNT_LENGTH) : a;
  }

  private async safe<T>(op: string, fn: () => Promise<T>, fallback: T): Promise<T> {
    const t0 = process.hrtime.bigint();
    try {
      const v = await fn();
      this.metrics.storeLatency.observe({ op }, Number(process.hrtime.bigint() - t0) / 1e9);
      return v;
    } catch (err) {
      this.metrics.storeErrors.inc({ op });
      this.log.warn({ err: (err as Error).message, op, code: 'GK_ERR_STORE' }, 'store operation failed');
      return fallback;
    }
  }

  private goodKey(account: string, key: string): string {
    return `good:${account}|${key}`;
  }

  /**
   * Called before a login request is forwarded. Reserves `attempts` failures on the client's counter
   * (refunded by settleLogin when they turn out not to be failures), unless the client has logged in
   * to all these accounts recently (a DAV or ActiveSync client sends its credentials on every request).
   */
  async admitLogin(ip: string, accounts: readonly string[], attempts: number): Promise<Admission> {
    const key = this.cache.clientKey(ip);
    const pass = (reserved: number, reservedAccounts: readonly string[], knownGood: boolean): Admission => ({
      allowed: true,
      ticket: { ip, key, accounts, reserved, reservedAccounts, knownGood, ignored: false },
    });
    if (this.isIgnored(ip)) {
      return { allowed: true, ticket: { ip, key, accounts, reserved: 0, reservedAccounts: [], knownGood: false, ignored: true } };
    }
    const knownGood = accounts.length > 0 && (await this.allKnownGood(accounts, key));
    if (knownGood) return pass(0, [], true);

    // Account shield: reserve one failure per targeted account, so bots spread over many addresses
    // cannot overshoot account.maxretry either.
    const reservedAccounts: string[] = [];
    if (this.config.account.enabled) {
      for (const account of accounts) {
        const res = await this.safe('reserve', () => this.accountCounter.consume(account, 1), null);
        if (!res) continue;
        if (res.allowed) {
          reservedAccounts.push(account);
          continue;
        }
        if (this.shadow) {
          this.metrics.shadowed.inc({ listener: 'any', reason: 'account-shield' });
          this.log.info({ ip, account, reason: 'account-shield' }, 'shadow: would refuse login');
          continue;
        }
        await this.refundAccounts(reservedAccounts);
        this.log.info({ ip, account, failures: res.consumed }, 'account shield: login refused from an address without a recent success');
        return { allowed: false, reason: 'account-shield', retryAfterSeconds: Math.max(1, Math.ceil(res.msBeforeReset / 1000)) };
      }
    }

    const res = await this.safe('reserve', () => this.ipCounter.consume(key, attempts), null);
    if (res && !res.allowed) {
      if (!this.shadow) {
        await this.refundAccounts(reservedAccounts);
        return { allowed: false, reason: 'limited', retryAfterSeconds: Math.max(1, Math.ceil(res.msBeforeReset / 1000)) };
      }
      this.metrics.shadowed.inc({ listener: 'any', reason: 'limited' });
      this.log.info({ ip, reason: 'limited' }, 'shadow: would refuse login');
      return pass(0, reservedAccounts, false);
    }
    // A ban resets the address's counter. A request that passed the gate's ban check just before
    // another request's ban landed would find a fresh counter here: look for that ban before letting
    // it through (locally, then in the store for a ban made by another instance).
    if (res && !this.shadow) {
      const ban = this.bannedNow(ip) ?? (res.consumed <= attempts ? await this.safe('ban-check', () => this.store.getBan(key), null) : null);
      if (ban && !ban.shadow) {
        await this.safe('refund', () => this.ipCounter.reward(key, attempts), undefined);
        await this.refundAccounts(reservedAccounts);
        this.cache.set(ban);
        return { allowed: false, reason: 'banned', retryAfterSeconds: Math.max(1, Math.ceil((ban.until - this.clock.now()) / 1000)), ban };
      }
    }
    return pass(res ? attempts : 0, reservedAccounts, false);
  }

  private async allKnownGood(accounts: readonly string[], key: string): Promise<boolean> {
    const now = this.clock.now();
    const missing = accounts.filter((a) => (this.knownGoodLocal.get(this.goodKey(a, key)) ?? 0) <= now);
    if (missing.length === 0) return true;
    return this.safe('known-good', async () => {
      const flags = await Promise.all(missing.map((a) => this.store.hasFlag(this.goodKey(a, key))));
      // Found in the store (another instance saw the success): remember locally for a while.
      flags.forEach((f, i) => f && this.rememberGood(this.goodKey(missing[i]!, key), Math.min(this.config.account.rememberSuccess, 3600)));
      return flags.every(Boolean);
    }, false);
  }

  private rememberGood(goodKey: string, seconds: number): void {
    if (this.knownGoodLocal.size >= 100_000) this.knownGoodLocal.clear();
    this.knownGoodLocal.set(goodKey, this.clock.now() + seconds * 1000);
  }

  private async refundAccounts(accounts: readonly string[]): Promise<void> {
    for (const a of accounts) await this.safe('refund', () => this.accountCounter.reward(a, 1), undefined);
  }

  /** Called when Zimbra has answered a login admitted by admitLogin. */
  async settleLogin(ticket: LoginTicket, outcome: LoginOutcome): Promise<void> {
    if (outcome.successes > 0 && !ticket.ignored) {
      // Synchronously, before anything is awaited (see knownGoodLocal).
      for (const a of ticket.accounts) this.rememberGood(this.goodKey(a, ticket.key), this.config.account.rememberSuccess);
    }
    if (outcome.failures > 0) {
      this.metrics.logins.inc({ service: outcome.service, rule: outcome.ruleId, outcome: 'failure' }, outcome.failures);
      this.activity?.recordFailure(outcome.service, ticket.ip, ticket.accounts[0], outcome.failures);
    }
    if (outcome.successes > 0) {
      this.metrics.logins.inc({ service: outcome.service, rule: outcome.ruleId, outcome: 'success' }, outcome.successes);
    }
    if (ticket.ignored) return;
    const { key } = ticket;
    if (outcome.failures > 0) {
      const extra = outcome.failures - ticket.reserved;
      if (extra > 0) await this.safe('count', () => this.ipCounter.add(key, extra), null);
      else if (extra < 0) await this.safe('refund', () => this.ipCounter.reward(key, -extra), undefined);
      // The shield's failures were reserved at admission: only the pairs are counted now.
      await this.countAccounts(ticket.accounts, key, true, outcome.failures);
      await this.banIfOver(ticket.ip, key, outcome.ruleId, outcome.service, 'proxy');
    } else {
      if (ticket.reserved > 0) await this.safe('refund', () => this.ipCounter.reward(key, ticket.reserved), undefined);
      await this.refundAccounts(ticket.reservedAccounts);
    }
    if (outcome.successes > 0) await this.clearOnSuccess(ticket.accounts, key);
  }

  /** A failure or success seen after the fact (log lines, or a response the proxy did not expect). */
  async record(event: AuthEvent): Promise<void> {
    const attempts = event.attempts ?? 1;
    const account = Enforcer.normalizeAccount(event.account);
    this.metrics.logins.inc({ service: event.service, rule: event.ruleId, outcome: event.outcome }, attempts);
    if (event.outcome === 'failure') this.activity?.recordFailure(event.service, event.ip, account, attempts);
    if (this.isIgnored(event.ip)) return;
    const key = this.cache.clientKey(event.ip);
    const accounts = account ? [account] : [];
    if (event.outcome === 'success') {
      await this.clearOnSuccess(accounts, key);
      return;
    }
    await this.safe('count', () => this.ipCounter.add(key, attempts), null);
    const knownGood = account ? await this.safe('known-good', () => this.store.hasFlag(this.goodKey(account, key)), false) : false;
    await this.countAccounts(accounts, key, knownGood, attempts);
    await this.banIfOver(event.ip, key, event.ruleId, event.service, event.source);
  }

  /** Counts failures per account/address pair and, unless `skipShield`, on the account shield. */
  private async countAccounts(accounts: readonly string[], key: string, skipShield: boolean, failures: number): Promise<void> {
    for (const account of accounts.slice(0, failures)) {
      await this.safe('count', () => this.pairCounter.add(`${account}|${key}`, 1), null);
      // The owner's own typos (from an address with a recent success) do not raise the shield.
      if (!skipShield && this.config.account.enabled) {
        await this.safe('count', () => this.accountCounter.add(account, 1), null);
      }
    }
  }

  /** A success for account A from address K clears A's failures from K (and only those). */
  private async clearOnSuccess(accounts: readonly string[], key: string): Promise<void> {
    for (const account of accounts) {
      const pairKey = `${account}|${key}`;
      const n = await this.safe('success', () => this.pairCounter.get(pairKey), 0);
      if (n > 0) {
        await this.safe('success', () => this.ipCounter.reward(key, n), undefined);
        await this.safe('success', () => this.pairCounter.delete(pairKey), undefined);
      }
      await this.safe('success', () => this.store.setFlag(this.goodKey(account, key), this.config.account.rememberSuccess), undefined);
    }
  }

  private async banIfOver(ip: string, key: string, ruleId: string, service: string, source: 'proxy' | 'log'): Promise<void> {
    const failures = await this.safe('count', () => this.ipCounter.get(key), 0);
    if (failures < this.config.jail.maxretry) return;
    if (this.banning.has(key) || this.cache.get(key, this.clock.now())) return;
    this.banning.add(key);
    try {
      await this.ban(key, { reason: ruleId, service, source, note: `${failures} failures within ${this.config.jail.findtime}s` });
      await this.safe('count', () => this.ipCounter.delete(key), undefined);
    } catch (err) {
      if (!(err instanceof GatekeeperError && err.code === 'GK_ERR_PROTECTED_ADDRESS')) throw err;
      this.metrics.protectedSkips.inc();
      this.log.warn({ ip, rule: ruleId, failures }, 'address reached the limit but is protected (allowlisted, trusted proxy or upstream): not banned');
    } finally {
      this.banning.delete(key);
    }
  }

  /** Parses a ban target; a single address becomes the key it is banned under (its /ipv6Prefix for IPv6). */
  private canonical(target: string): { cidr: Cidr; key: string } {
    const c = parseCidr(target);
    if (!c) throw new GatekeeperError('GK_ERR_BAD_ADDRESS', `${JSON.stringify(target)} is not an IP address or CIDR`);
    return { cidr: c, key: c.prefix === (c.family === 4 ? 32 : 128) ? this.cache.clientKey(c.text) : c.text };
  }

  /** Validates a ban target and refuses protected addresses. Returns the canonical target. */
  checkTarget(target: string): string {
    const { cidr: c, key: canonical } = this.canonical(target);
    if (this.sets.protected.overlaps(c)) {
      throw new GatekeeperError(
        'GK_ERR_PROTECTED_ADDRESS',
        `${c.text} is protected (jail.ignoreip, admin.allow, trustedProxies, an upstream or a listener address) and is never banned`,
      );
    }
    return canonical;
  }

  async ban(target: string, req: BanRequest): Promise<Ban> {
    const canonical = this.checkTarget(target);
    const window = Math.max(this.config.jail.bantimeIncrement.maxtime, this.config.jail.bantime);
    const make = (count: number): Ban => {
      const decision = decideBan(count, req.source, this.config.jail, this.config.firewall, req.seconds);
      const now = this.clock.now();
      return {
        target: canonical,
        reason: req.reason,
        service: req.service,
        since: now,
        until: now + decision.seconds * 1000,
        tier: decision.tier,
        count,
        source: req.source,
        ...(this.shadow ? { shadow: true } : {}),
        ...(req.note ? { note: req.note } : {}),
      };
    };
    // Decided and written in one step in the store: when another instance banned this offence first,
    // its ban is the one (no second count, no longer repeat-offender ban). A manual ban replaces.
    const t0 = process.hrtime.bigint();
    let result: { ban: Ban; created: boolean };
    try {
      result = await this.store.createBan(canonical, window, make, req.source === 'manual');
      this.metrics.storeLatency.observe({ op: 'ban' }, Number(process.hrtime.bigint() - t0) / 1e9);
    } catch (err) {
      // The store queues writes it cannot make; this is a failure of the store itself. Enforce locally.
      this.metrics.storeErrors.inc({ op: 'ban' });
      this.log.warn({ err: (err as Error).message, op: 'ban', code: 'GK_ERR_STORE' }, 'store operation failed');
      result = { ban: make(1), created: true };
    }
    const { ban } = result;
    this.cache.set(ban);
    if (!result.created) {
      this.log.info({ ip: ban.target, rule: req.reason, until: new Date(ban.until).toISOString() }, 'already banned (by another instance): not counted twice');
      return ban;
    }
    this.metrics.bans.inc({ source: ban.source, tier: ban.tier });
    this.log.warn(
      { event: 'ban', ip: ban.target, rule: ban.reason, service: ban.service, count: ban.count, tier: ban.tier, until: new Date(ban.until).toISOString(), shadow: ban.shadow ?? false, note: ban.note },
      this.shadow ? 'shadow: would ban' : 'banned',
    );
    this.notifier?.notify({
      event: ban.tier === 'firewall' && ban.source === 'proxy' ? 'escalation' : 'ban',
      ip: ban.target,
      rule: ban.reason,
      service: ban.service,
      tier: ban.tier,
      count: ban.count,
      until: new Date(ban.until).toISOString(),
      shadow: ban.shadow ?? false,
      at: new Date(ban.since).toISOString(),
    });
    return ban;
  }

  async unban(target: string): Promise<boolean> {
    const canonical = this.canonical(target).key;
    const had = this.cache.get(canonical, this.clock.now()) !== undefined;
    this.cache.delete(canonical);
    const removed = await this.store.removeBan(canonical);
    await this.safe('unban', () => this.ipCounter.delete(canonical), undefined);
    this.log.warn({ event: 'unban', ip: canonical }, 'unbanned');
    return had || removed;
  }

  async unbanAll(): Promise<number> {
    const n = this.cache.size;
    this.cache.clear();
    const removed = await this.store.removeAllBans();
    this.log.warn({ event: 'unban-all', count: Math.max(n, removed) }, 'all bans lifted');
    return Math.max(n, removed);
  }

  /** Reloads the cache from the store (startup, reconnect, periodic safety net). */
  async resync(): Promise<void> {
    const bans = await this.store.listBans();
    this.cache.replaceAll(bans);
  }

  /** Failures counted for an address in the current window (status command). */
  async failuresOf(ip: string): Promise<number> {
    return this.safe('status', () => this.ipCounter.get(this.cache.clientKey(ip)), 0);
  }
}
