/**
 * The Redis key layout, designed for Cluster and used the same way on a single Redis and Sentinel.
 *
 * Only what must change atomically shares a hash tag. A ban, its history, its tombstone and the index
 * entry that lists it are written by one script, so they live in one of BAN_SHARDS ban shards
 * (`{b0}`..`{b15}`) chosen by a hash of the target: bans spread over 16 slots (and so over the masters
 * of a cluster), listing costs 16 index reads. Counters, flags and values have no hash tag: each key
 * lands in its own slot. (All keys start with redis.keyPrefix, which must not hold a hash tag itself:
 * `{gk}:` would put every key in one slot; the config refuses it.)
 *
 *   <p>{bN}:ban:<target>    JSON of the Ban, expires with the ban (PX)
 *   <p>{bN}:hist:<target>   number of bans of the target, expires a window after the last one
 *   <p>{bN}:unban:<target>  time (ms) of the last unban: a ban older than it is never re-asserted
 *   <p>{bN}:bans            sorted set target -> until (ms), the shard's index
 *   <p>unbanall             time (ms) of the last `unban --all`
 *   <p>flag:<key>           known-good account/IP pairs and similar facts with a TTL
 *   <p>val:<key>            durable values (log positions)
 *   <p>rl:<name>:<key>      failure counters (rate-limiter-flexible)
 *   <p>events               pub/sub channel for ban/unban between instances
 */
export const BAN_SHARDS = 16;

export interface BanKeys {
  readonly ban: string;
  readonly hist: string;
  readonly tomb: string;
  readonly index: string;
}

/** FNV-1a of the target: stable across instances and versions (the shard of a ban must never move). */
export function banShard(target: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < target.length; i++) {
    h ^= target.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % BAN_SHARDS;
}

export class RedisKeys {
  constructor(readonly prefix: string) {}

  shardIndex(shard: number): string {
    return `${this.prefix}{b${shard}}:bans`;
  }

  ban(target: string): BanKeys {
    const tag = `${this.prefix}{b${banShard(target)}}`;
    return { ban: `${tag}:ban:${target}`, hist: `${tag}:hist:${target}`, tomb: `${tag}:unban:${target}`, index: `${tag}:bans` };
  }

  banKeyInShard(shard: number, target: string): string {
    return `${this.prefix}{b${shard}}:ban:${target}`;
  }

  get unbanAll(): string {
    return `${this.prefix}unbanall`;
  }

  get channel(): string {
    return `${this.prefix}events`;
  }

  flag(key: string): string {
    return `${this.prefix}flag:${key}`;
  }

  value(key: string): string {
    return `${this.prefix}val:${key}`;
  }

  counter(name: string): string {
    return `${this.prefix}rl:${name}`;
  }

  /** Keys of the layout before sharding (one index `bans`, `ban:<t>`, `banhist:<t>`): migrated at start. */
  get legacyIndex(): string {
    return `${this.prefix}bans`;
  }

  legacyBan(target: string): string {
    return `${this.prefix}ban:${target}`;
  }
}

/** A key prefix that carries a hash tag (`{...}`) would pin every key to one slot. */
export function prefixProblem(prefix: string): string | null {
  if (/[{}]/.test(prefix)) return 'must not contain { or }: the gatekeeper places hash tags itself (a tag in the prefix puts every key in one Cluster slot)';
  return null;
}
