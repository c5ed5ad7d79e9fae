import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { canonicalAccount } from '../detect/account-name.js';
import type { AuthEvent } from '../detect/auth-event.js';
import { GatekeeperError } from '../errors.js';
import { CidrSet, parseCidr, type Cidr } from '../net/ip.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { Activity } from '../obs/activity.js';
import type { Notifier } from '../obs/notifier.js';
import type { Ban } from '../store/ban.js';
import type { FailureCounter, Store } from '../store/store.js';
import type { FailureEvidence, HistoryEvent, HistoryStore } from '../store/history.js';
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
  /** Successes seen (metrics). */
  readonly successes: number;
  /** Accounts whose login succeeded with certainty: only these are cleared and remembered as known. */
  readonly successAccounts: readonly string[];
  /** The account of each failure where known (else the ticket's accounts are counted in order). */
  readonly failedAccounts?: readonly string[];
  readonly ruleId: string;
  readonly service: string;
}

export interface BanRequest {
  readonly reason: string;
  readonly service: string;
  readonly source: 'proxy' | 'log' | 'manual';
  readonly seconds?: number | undefined;
  readonly note?: string | undefined;
  /** Who asked, for the history (`manual (cli from 127.0.0.1)`); default: the source. */
  readonly by?: string | undefined;
}

export interface AddressSets {
  /** Never counted, never banned: jail.ignoreip, trustedProxies, the upstreams. */
  readonly ignored: CidrSet;
  /** Never banned: the ignored ones plus admin.allow and the gatekeeper's own addresses. */
  readonly protected: CidrSet;
}

/** Logins waiting for a slot, over every address (each holds a client connection). */
const MAX_WAITING = 10_000;
/** How often a waiting login looks again for reservations settled by another instance. */
const WAIT_POLL_MS = 100;
/** When only logins in flight keep an address at its limit from a ban, the ban is decided again after this. */
const BAN_RECHECK_MS = 250;

/** One try at admission: the answer, and the address counter it saw (for a refusal: before this login). */
interface Attempt {
  readonly admission: Admission;
  readonly consumed: number;
}

/** A login waiting for an in-flight reservation of its address to settle. */
interface Waiter {
  readonly at: number;
  readonly wake: () => void;
}

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
  /**
   * Failures reserved and not yet settled, per client key, counted in the store so that every instance
   * and worker sees the others' logins in flight: the address counter holds failures AND these
   * reservations, and only the difference is failures (what bans), while a login that finds the budget
   * held by reservations can wait for them.
   */
  private inflightCounter!: FailureCounter;
  /** Logins waiting (FIFO by arrival) for one of those reservations to settle, per client key. */
  private readonly waiters = new Map<string, Waiter[]>();
  private waiting = 0;
  private waitSeq = 0;
  /**
   * One chain of counter operations per client key in this instance. rate-limiter-flexible's consume
   * adds before it refuses (and the refusal is taken back after): without this, a burst of refused
   * logins shows a passing typo an inflated count, and it bans an address for failures it never made.
   */
  private readonly keyLocks = new Map<string, Promise<unknown>>();
  /** Keys whose ban decision waits for logins in flight to settle (bounded by the keys in flight). */
  private readonly recheck = new Set<string>();
  private runtimeAllow = new CidrSet([]);
  private history?: HistoryStore;
  private evidenceOf?: (key: string) => FailureEvidence[];

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
    // Outlives any login in flight (proxy.upstreamTimeout) so that reservations are not forgotten early.
    this.inflightCounter = this.store.counter({ name: 'inflight', points: 1_000_000_000, durationSeconds: this.config.proxy.upstreamTimeout + 60 });
  }

  setNotifier(n: Notifier | undefined): void {
    this.notifier = n;
  }

  /** Where bans and unbans are recorded (`gatekeeper history`), and the evidence a ban keeps. */
  setHistory(history: HistoryStore, evidenceOf: (key: string) => FailureEvidence[]): void {
    this.history = history;
    this.evidenceOf = evidenceOf;
  }

  /** Best effort, off the request path: a history write never delays or fails a ban. */
  private remember(event: HistoryEvent): void {
    this.history?.append(event).catch((err: Error) => this.log.warn({ err: err.message, code: 'GK_ERR_STORE' }, 'could not record the ban history'));
  }

  /** Entries of the in-process known-good cache and logins waiting (gatekeeper_tracked_keys). */
  get trackedSizes(): { knownGood: number; waiting: number } {
    return { knownGood: this.knownGoodLocal.size, waiting: this.waiting };
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
    return this.sets.ignored.has(ip) || (this.runtimeAllow.size > 0 && this.runtimeAllow.has(ip));
  }

  /** The static allowlist: jail.ignoreip, trustedProxies and the upstreams. */
  staticAllow(): string[] {
    return [...new Set(this.sets.ignored.toJSON())];
  }

  /** The runtime allowlist (`gatekeeper allow`), replaced whenever any instance changes it. */
  setRuntimeAllow(cidrs: readonly string[]): void {
    this.runtimeAllow = new CidrSet(cidrs);
  }

  /** The ban that applies to this (normalised) address, if any; none for an allowlisted one. */
  bannedNow(ip: string): Ban | undefined {
    const ban = this.cache.lookup(ip, this.clock.now());
    return ban && this.runtimeAllow.size > 0 && this.runtimeAllow.has(ip) ? undefined : ban;
  }

  /** A login name as Zimbra resolves it (detect/account-name.ts), with the configured default domain. */
  normalizeAccount(raw: string | undefined | null): string | undefined {
    return canonicalAccount(raw, this.config.zimbra.defaultDomain);
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
   *
   * When the address's budget is taken only by logins still in flight here (an office behind one NAT
   * address logging in at once, a DAV client's parallel first sync), the login waits for one of them to
   * settle (FIFO, at most proxy.loginQueueTimeout, at most proxy.loginQueueLength per address) instead
   * of being refused: a success frees its slot at once; a failure that bans the address refuses
   * everything still waiting. Exactness is kept: nothing passes without its reservation.
   */
  async admitLogin(ip: string, accounts: readonly string[], attempts: number): Promise<Admission> {
    const key = this.cache.clientKey(ip);
    const deadline = this.clock.now() + this.config.proxy.loginQueueTimeout * 1000;
    const at = ++this.waitSeq;
    let retries = 0;
    for (;;) {
      const a = await this.tryAdmit(ip, key, accounts, attempts);
      if (a.admission.allowed || a.admission.reason !== 'limited') return a.admission;
      // Under the key's lock: no settle of this instance lands between the two counter reads.
      const next = await this.withKeyLock(key, () => this.mayWait(key, a.consumed, attempts));
      if (next === 'no') return a.admission;
      // The logins in flight settled between the two reads (here or on another worker): try again now.
      if (next === 'retry') {
        if (++retries > 3) return a.admission;
        continue;
      }
      const woken = await this.waitTurn(key, at, deadline);
      if (!woken) {
        this.metrics.loginQueue.inc({ result: 'timeout' });
        return a.admission;
      }
    }
  }

  /** Logins of `key` in flight on every instance (never negative: a refund may outlive its window). */
  private async inFlight(key: string): Promise<number> {
    return Math.max(0, await this.safe('inflight', () => this.inflightCounter.get(key), 0));
  }

  /**
   * Waiting helps only when settling the reservations in flight could free enough of the budget; when
   * none is in flight any more although the budget looked held, they settled meanwhile: try again.
   */
  private async mayWait(key: string, consumed: number, attempts: number): Promise<'wait' | 'retry' | 'no'> {
    if (this.shadow || attempts > this.config.jail.maxretry) return 'no';
    if ((this.waiters.get(key)?.length ?? 0) >= this.config.proxy.loginQueueLength || this.waiting >= MAX_WAITING) return 'no';
    // Read afresh (the consume's figure may predate settles made meanwhile): failures are the counter
    // less the reservations still in flight.
    const total = Math.max(0, await this.safe('count', () => this.ipCounter.get(key), consumed));
    const held = await this.inFlight(key);
    if (Math.max(0, total - held) + attempts > this.config.jail.maxretry) return 'no';
    return held > 0 ? 'wait' : 'retry';
  }

  private waitTurn(key: string, at: number, deadline: number): Promise<boolean> {
    return new Promise((resolve) => {
      let list = this.waiters.get(key);
      if (!list) this.waiters.set(key, (list = []));
      // Woken by a settle here; a login in flight on another instance or worker is settled there, so
      // look again every WAIT_POLL_MS as well (false only once the deadline has passed).
      const left = deadline - this.clock.now();
      const timer = setTimeout(() => {
        const l = this.waiters.get(key);
        const i = l ? l.indexOf(waiter) : -1;
        if (i !== -1) {
          l!.splice(i, 1);
          if (l!.length === 0) this.waiters.delete(key);
          this.waiting--;
        }
        resolve(left > WAIT_POLL_MS);
      }, Math.max(0, Math.min(left, WAIT_POLL_MS)));
      const waiter: Waiter = {
        at,
        wake: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      // FIFO by first arrival: a login woken and refused again keeps its place.
      let i = list.length;
      while (i > 0 && list[i - 1]!.at > at) i--;
      list.splice(i, 0, waiter);
      this.waiting++;
      this.metrics.loginQueue.inc({ result: 'queued' });
    });
  }

  /** A reservation of `key` settled (or a ban landed): every waiting login tries again, in order. */
  private wakeWaiters(key: string): void {
    const list = this.waiters.get(key);
    if (!list) return;
    this.waiters.delete(key);
    this.waiting -= list.length;
    for (const w of list) w.wake();
  }

  /** Runs `fn` after every earlier counter operation on `key` here has finished. */
  private withKeyLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.keyLocks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.keyLocks.set(key, tail);
    void tail.then(() => {
      if (this.keyLocks.get(key) === tail) this.keyLocks.delete(key);
    });
    return run;
  }

  private tryAdmit(ip: string, key: string, accounts: readonly string[], attempts: number): Promise<Attempt> {
    return this.withKeyLock(key, () => this.tryAdmitLocked(ip, key, accounts, attempts));
  }

  private async tryAdmitLocked(ip: string, key: string, accounts: readonly string[], attempts: number): Promise<Attempt> {
    const done = (admission: Admission, consumed = 0): Attempt => ({ admission, consumed });
    const pass = (reserved: number, reservedAccounts: readonly string[], knownGood: boolean): Admission => ({
      allowed: true,
      ticket: { ip, key, accounts, reserved, reservedAccounts, knownGood, ignored: false },
    });
    if (this.isIgnored(ip)) {
      return done({ allowed: true, ticket: { ip, key, accounts, reserved: 0, reservedAccounts: [], knownGood: false, ignored: true } });
    }
    const banned = this.bannedNow(ip);
    if (banned && !banned.shadow && !this.shadow) {
      return done({ allowed: false, reason: 'banned', retryAfterSeconds: Math.max(1, Math.ceil((banned.until - this.clock.now()) / 1000)), ban: banned });
    }
    const knownGood = accounts.length > 0 && (await this.allKnownGood(accounts, key));
    if (knownGood) return done(pass(0, [], true));

    // The address first: a refused login touches no account counter, so an address flooding distinct
    // names is refused (and banned) instead of leaving a shield counter per name behind.
    // The reservation is announced as in flight before it is taken, and withdrawn if it is not: whoever
    // reads the two counters meanwhile may see fewer failures than there are, never more (see mayWait).
    await this.safe('inflight', () => this.inflightCounter.add(key, attempts), null);
    const res = await this.safe('reserve', () => this.ipCounter.consume(key, attempts), null);
    if (!res || !res.allowed) await this.safe('inflight', () => this.inflightCounter.reward(key, attempts), undefined);
    if (res && !res.allowed) {
      if (!this.shadow) {
        return done({ allowed: false, reason: 'limited', retryAfterSeconds: Math.max(1, Math.ceil(res.msBeforeReset / 1000)) }, res.consumed);
      }
      this.metrics.shadowed.inc({ listener: 'any', reason: 'limited' });
      this.log.info({ ip, reason: 'limited' }, 'shadow: would refuse login');
    }
    const reserved = res && res.allowed ? attempts : 0;
    const refundIp = async (): Promise<void> => {
      if (reserved === 0) return;
      await this.safe('refund', () => this.ipCounter.reward(key, reserved), undefined);
      await this.safe('inflight', () => this.inflightCounter.reward(key, reserved), undefined);
    };

    // Account shield: reserve one failure per targeted account, so bots spread over many addresses
    // cannot overshoot account.maxretry either.
    const reservedAccounts: string[] = [];
    if (this.config.account.enabled) {
      for (const account of accounts) {
        const r = await this.safe('reserve', () => this.accountCounter.consume(account, 1), null);
        if (!r) continue;
        if (r.allowed) {
          reservedAccounts.push(account);
          continue;
        }
        if (this.shadow) {
          this.metrics.shadowed.inc({ listener: 'any', reason: 'account-shield' });
          this.log.info({ ip, account, reason: 'account-shield' }, 'shadow: would refuse login');
          continue;
        }
        await this.refundAccounts(reservedAccounts);
        await refundIp();
        this.log.info({ ip, account, failures: r.consumed }, 'account shield: login refused from an address without a recent success');
        return done({ allowed: false, reason: 'account-shield', retryAfterSeconds: Math.max(1, Math.ceil(r.msBeforeReset / 1000)) });
      }
    }

    // A ban resets the address's counter. A request that passed the gate's ban check just before
    // another request's ban landed would find a fresh counter here: look for that ban before letting
    // it through (locally, then in the store for a ban made by another instance).
    if (res && res.allowed && !this.shadow) {
      const ban = this.bannedNow(ip) ?? (res.consumed <= attempts ? await this.safe('ban-check', () => this.store.getBan(key), null) : null);
      if (ban && !ban.shadow) {
        await refundIp();
        await this.refundAccounts(reservedAccounts);
        this.cache.set(ban);
        return done({ allowed: false, reason: 'banned', retryAfterSeconds: Math.max(1, Math.ceil((ban.until - this.clock.now()) / 1000)), ban });
      }
    }
    return done(pass(reserved, reservedAccounts, false));
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
    const max = this.config.memory.maxKnownGood;
    if (this.knownGoodLocal.size >= max && !this.knownGoodLocal.has(goodKey)) {
      // Full: the oldest entry goes (a Map iterates in insertion order); the store still has it, so a
      // device forgotten here is found there at its next request.
      const oldest = this.knownGoodLocal.keys().next().value;
      if (oldest !== undefined) this.knownGoodLocal.delete(oldest);
    }
    this.knownGoodLocal.delete(goodKey);
    this.knownGoodLocal.set(goodKey, this.clock.now() + seconds * 1000);
  }

  private async refundAccounts(accounts: readonly string[]): Promise<void> {
    for (const a of accounts) await this.safe('refund', () => this.accountCounter.reward(a, 1), undefined);
  }

  /** Called when Zimbra has answered a login admitted by admitLogin (exactly once per ticket). */
  async settleLogin(ticket: LoginTicket, outcome: LoginOutcome): Promise<void> {
    const successAccounts = ticket.ignored ? [] : outcome.successAccounts;
    // Synchronously, before anything is awaited (see knownGoodLocal).
    for (const a of successAccounts) this.rememberGood(this.goodKey(a, ticket.key), this.config.account.rememberSuccess);
    if (outcome.failures > 0) {
      // Every counted failure, as fail2ban logs each "Found": the evidence an admin greps for.
      this.log.info({ event: 'failure', ip: ticket.ip, rule: outcome.ruleId, service: outcome.service, accounts: outcome.failedAccounts ?? ticket.accounts, failures: outcome.failures }, 'failed login counted');
      this.metrics.logins.inc({ service: outcome.service, rule: outcome.ruleId, outcome: 'failure' }, outcome.failures);
      this.activity?.recordFailure(outcome.service, ticket.ip, ticket.accounts[0], outcome.failures);
    }
    if (outcome.successes > 0) {
      this.metrics.logins.inc({ service: outcome.service, rule: outcome.ruleId, outcome: 'success' }, outcome.successes);
    }
    if (ticket.ignored) return;
    const { key } = ticket;
    try {
      await this.withKeyLock(key, () => this.settleCounts(ticket, outcome, successAccounts));
    } finally {
      this.wakeWaiters(key);
    }
  }

  private async settleCounts(ticket: LoginTicket, outcome: LoginOutcome, successAccounts: readonly string[]): Promise<void> {
    const { key } = ticket;
    // No longer in flight, whatever it turned out to be: withdrawn only after the address counter holds
    // the outcome, so that a reader of both never sees more failures than there are.
    const landed = async (): Promise<void> => {
      if (ticket.reserved > 0) await this.safe('inflight', () => this.inflightCounter.reward(key, ticket.reserved), undefined);
    };
    {
      if (outcome.failures > 0) {
        const extra = outcome.failures - ticket.reserved;
        if (extra > 0) await this.safe('count', () => this.ipCounter.add(key, extra), null);
        else if (extra < 0) await this.safe('refund', () => this.ipCounter.reward(key, -extra), undefined);
        await landed();
        // The shield's failures were reserved at admission: only the pairs are counted now.
        // Pairs are booked only on the accounts the answer names with certainty (see classifyResponse).
        await this.countAccounts(outcome.failedAccounts ?? ticket.accounts, key, true, outcome.failures);
        // Reservations of other logins still in flight sit in the same counter: they are not failures (yet).
        await this.banIfOver(ticket.ip, key, outcome.ruleId, outcome.service, 'proxy', await this.inFlight(key));
      } else {
        if (ticket.reserved > 0) await this.safe('refund', () => this.ipCounter.reward(key, ticket.reserved), undefined);
        await landed();
        await this.refundAccounts(ticket.reservedAccounts);
      }
      if (successAccounts.length > 0) await this.clearOnSuccess(successAccounts, key);
    }
  }

  /** A failure or success seen after the fact (log lines, or a response the proxy did not expect). */
  async record(event: AuthEvent): Promise<void> {
    const attempts = event.attempts ?? 1;
    const account = this.normalizeAccount(event.account);
    this.metrics.logins.inc({ service: event.service, rule: event.ruleId, outcome: event.outcome }, attempts);
    if (event.outcome === 'failure') {
      this.log.info({ event: 'failure', ip: event.ip, rule: event.ruleId, service: event.service, accounts: account ? [account] : [], failures: attempts, source: event.source }, 'failed login counted');
      this.activity?.recordFailure(event.service, event.ip, account, attempts);
    }
    if (this.isIgnored(event.ip)) return;
    const key = this.cache.clientKey(event.ip);
    const accounts = account ? [account] : [];
    await this.withKeyLock(key, async () => {
      if (event.outcome === 'success') {
        await this.clearOnSuccess(accounts, key);
        return;
      }
      await this.safe('count', () => this.ipCounter.add(key, attempts), null);
      const knownGood = account ? await this.safe('known-good', () => this.store.hasFlag(this.goodKey(account, key)), false) : false;
      await this.countAccounts(accounts, key, knownGood, attempts);
      await this.banIfOver(event.ip, key, event.ruleId, event.service, event.source, await this.inFlight(key));
    });
    this.wakeWaiters(key);
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

  private async banIfOver(ip: string, key: string, ruleId: string, service: string, source: 'proxy' | 'log', inFlight = 0): Promise<void> {
    const total = await this.safe('count', () => this.ipCounter.get(key), 0);
    const failures = total - Math.max(0, inFlight);
    if (failures < this.config.jail.maxretry) {
      // Only logins in flight stand between the address and a ban (a login announced, or one refused a
      // moment ago and not yet withdrawn: see tryAdmit): look again once they have had time to settle,
      // or the ban would wait for the address's next attempt.
      if (total >= this.config.jail.maxretry && !this.recheck.has(key)) {
        this.recheck.add(key);
        const timer = setTimeout(() => {
          this.recheck.delete(key);
          void this.withKeyLock(key, async () => this.banIfOver(ip, key, ruleId, service, source, await this.inFlight(key))).catch(() => undefined);
        }, BAN_RECHECK_MS);
        timer.unref();
      }
      return;
    }
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
    if (this.runtimeAllow.overlaps(c)) {
      throw new GatekeeperError('GK_ERR_PROTECTED_ADDRESS', `${c.text} overlaps the runtime allowlist (gatekeeper allow list) and is never banned`);
    }
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
    const evidence = this.evidenceOf?.(canonical) ?? [];
    this.remember({
      at: ban.since,
      action: 'ban',
      target: canonical,
      by: req.by ?? req.source,
      rule: ban.reason,
      service: ban.service,
      tier: ban.tier,
      until: ban.until,
      count: ban.count,
      ...(ban.note ? { note: ban.note } : {}),
      ...(ban.shadow ? { shadow: true } : {}),
      ...(evidence.length ? { evidence } : {}),
    });
    this.metrics.bans.inc({ source: ban.source, tier: ban.tier });
    this.log.warn(
      { event: 'ban', ip: ban.target, rule: ban.reason, service: ban.service, count: ban.count, tier: ban.tier, until: new Date(ban.until).toISOString(), shadow: ban.shadow ?? false, note: ban.note },
      this.shadow ? 'shadow: would ban' : 'banned',
    );
    this.notifier?.notifyBan(ban);
    return ban;
  }

  async unban(target: string, by = 'manual'): Promise<boolean> {
    const canonical = this.canonical(target).key;
    const had = this.cache.get(canonical, this.clock.now()) !== undefined;
    this.cache.delete(canonical);
    const removed = await this.store.removeBan(canonical);
    await this.safe('unban', () => this.ipCounter.delete(canonical), undefined);
    this.log.warn({ event: 'unban', ip: canonical }, 'unbanned');
    if (had || removed) this.remember({ at: this.clock.now(), action: 'unban', target: canonical, by });
    return had || removed;
  }

  /**
   * `unban --split`: bans `parts` (the rest of the range) with the range ban's rule, tier and end,
   * then lifts the range ban: no moment where the rest of the range is unbanned.
   */
  async replaceRangeBan(range: Ban, parts: readonly string[], hole: string, by = 'manual'): Promise<void> {
    for (const target of parts) {
      const ban: Ban = { ...range, target, note: `${range.note ? `${range.note}; ` : ''}split from ${range.target}` };
      this.cache.set(ban);
      await this.store.addBan(ban);
    }
    this.log.warn({ event: 'split', ip: range.target, parts: parts.length }, 'range ban split');
    this.remember({ at: this.clock.now(), action: 'split', target: range.target, by, note: `${hole} carved out: ${parts.length} networks banned again` });
    await this.unban(range.target, by);
  }

  async unbanAll(by = 'manual'): Promise<number> {
    const n = this.cache.size;
    this.cache.clear();
    const removed = await this.store.removeAllBans();
    this.log.warn({ event: 'unban-all', count: Math.max(n, removed) }, 'all bans lifted');
    this.remember({ at: this.clock.now(), action: 'unban-all', target: '*', by, note: `${Math.max(n, removed)} ban(s) lifted` });
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
