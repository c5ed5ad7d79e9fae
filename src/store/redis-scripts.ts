/*
 * Lua scripts of the Redis store. Each touches only the keys of one ban shard (one hash tag: see
 * redis-keys.ts), so it runs atomically on a single Redis and on Cluster alike.
 */

/**
 * Decide-and-write of a ban, one per offence across instances (compare-and-set on the history).
 * KEYS: ban, hist, index, tomb.
 * ARGV: expected history ('' = none), ban JSON, ttl ms, target, until ms, count, history ttl s, replace ('1'/'0').
 * Returns {'exists', json} when an active ban is stored already (and replace is off): nothing is counted;
 * {'retry', history} when the history is not the expected one (another instance banned meanwhile): the
 * caller rebuilds the ban for that count and tries again; {'ok', ''} when written.
 */
export const CREATE_BAN = `
if ARGV[8] ~= '1' then
  local cur = redis.call('GET', KEYS[1])
  if cur then return {'exists', cur} end
end
local h = redis.call('GET', KEYS[2]) or ''
if h ~= ARGV[1] then return {'retry', h} end
redis.call('SET', KEYS[2], ARGV[6], 'EX', ARGV[7])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('DEL', KEYS[4])
return {'ok', ''}
`;

/**
 * Writes a ban decided earlier (queued while Redis was away, or re-asserted after a failover lost it),
 * with its original expiry, unless an active ban is stored already or the target was unbanned after it.
 * The history becomes at least the ban's count (never incremented twice for one ban).
 * KEYS: ban, hist, index, tomb.
 * ARGV: ban JSON, ttl ms, target, until ms, count (0: leave the history alone), history ttl s, since ms,
 * time of the last unban-all ms.
 * Returns 'ok', 'exists' or 'unbanned'.
 */
export const ASSERT_BAN = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
local tomb = tonumber(redis.call('GET', KEYS[4]) or '0')
local since = tonumber(ARGV[7])
if tomb >= since or tonumber(ARGV[8]) >= since then return 'unbanned' end
local count = tonumber(ARGV[5])
if count > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') < count then
  redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 'ok'
`;

/**
 * Lifts a ban and leaves a tombstone, so no instance re-asserts the ban afterwards.
 * KEYS: ban, index, tomb. ARGV: target, now ms, tombstone ttl ms. Returns 1 when a ban was removed.
 */
export const REMOVE_BAN = `
local had = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return had
`;

/**
 * Increments a target's ban history (contract method recordBan). KEYS: hist. ARGV: ttl s. Returns the count.
 */
export const RECORD_BAN = `
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
`;
