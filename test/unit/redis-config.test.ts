import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, maskedConfig } from '../../src/config/load.js';
import { isGatekeeperError } from '../../src/errors.js';
import { BAN_SHARDS, banShard, RedisKeys } from '../../src/store/redis-keys.js';
import { redisKind } from '../../src/store/redis-connect.js';

/* The `redis` block: layouts that cannot work on a Cluster are refused, secrets are masked; the key layout. */
const dir = mkdtempSync(join(tmpdir(), 'gk-redis-config-'));
let n = 0;
function load(yaml: string, env: NodeJS.ProcessEnv = {}): ReturnType<typeof loadConfig> {
  const p = join(dir, `c${n++}.yml`);
  writeFileSync(p, yaml);
  return loadConfig({ file: p, env });
}
function problems(yaml: string): string[] {
  try {
    load(yaml);
  } catch (err) {
    assert.ok(isGatekeeperError(err, 'GK_ERR_CONFIG_INVALID'), String(err));
    return [...err.details];
  }
  assert.fail('expected the config to be rejected');
}

describe('redis config', () => {
  for (const { desc, yaml, want } of [
    { desc: 'a hash tag in the prefix on a Cluster (every key in one slot)', yaml: 'redis:\n  url: "redis+cluster://127.0.0.1:7000"\n  keyPrefix: "{gk}:"\n', want: /redis\.keyPrefix.*must not contain \{ or \}/ },
    { desc: 'a half hash tag on a Cluster', yaml: 'redis:\n  url: "rediss+cluster://127.0.0.1:7000"\n  keyPrefix: "gk{"\n', want: /redis\.keyPrefix/ },
    { desc: 'not a Redis URL', yaml: 'redis:\n  url: "http://127.0.0.1:6379"\n', want: /redis\.url.*is not a redis:\/\// },
    { desc: 'a command deadline of 0', yaml: 'redis:\n  commandTimeout: 0\n', want: /redis\.commandTimeout.*between 50ms and 60s/ },
    { desc: 'an unknown key', yaml: 'redis:\n  whenDown: serve\n', want: /whenDown/ },
  ]) {
    it(`refuses ${desc}`, () => {
      assert.ok(problems(yaml).some((p) => want.test(p)), problems(yaml).join('\n'));
    });
  }

  it('keeps a hash tag in the prefix of a single Redis (harmless there; what the README once advised)', () => {
    assert.equal(load('redis:\n  keyPrefix: "{gk}:"\n').config.redis?.keyPrefix, '{gk}:');
  });

  it('takes the defaults, durations in ms, and masks the password', () => {
    const { config } = load('redis:\n  url: "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"\n  commandTimeout: 250ms\n  username: gk\n', { GK_REDIS_PASSWORD: 'secret-pass' });
    assert.equal(config.redis?.keyPrefix, 'gk:');
    assert.equal(config.redis?.commandTimeout, 0.25);
    assert.equal(config.redis?.replicaAckTimeout, 0.5);
    assert.equal(config.redis?.password, 'secret-pass');
    assert.ok(!JSON.stringify(maskedConfig(config)).includes('secret-pass'));
  });

  it('names the topology of each URL form', () => {
    for (const [url, kind] of [
      ['redis://127.0.0.1:6379/0', 'single'],
      ['rediss://127.0.0.1:6379/0', 'single'],
      ['redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster', 'sentinel'],
      ['rediss+cluster://127.0.0.1:7000', 'cluster'],
    ] as const) {
      assert.equal(redisKind(url), kind, url);
    }
  });
});

describe('redis key layout', () => {
  it('keeps what one script writes in one hash tag, and spreads bans over every shard', () => {
    const k = new RedisKeys('gk:').ban('203.0.113.7');
    const tag = (key: string): string => /\{([^}]*)\}/.exec(key)![1]!;
    assert.deepEqual(new Set([k.ban, k.hist, k.tomb, k.index].map(tag)).size, 1);
    const shards = new Set(Array.from({ length: 2000 }, (_, i) => banShard(`10.0.${i >> 8}.${i & 255}`)));
    assert.equal(shards.size, BAN_SHARDS);
    assert.equal(banShard('203.0.113.7'), banShard('203.0.113.7'));
  });

  it('puts counters, flags and values outside the ban shards (no hash tag)', () => {
    const keys = new RedisKeys('gk:');
    for (const key of [keys.flag('good:a|1.2.3.4'), keys.value('pos:/x'), keys.counter('ip')]) assert.ok(!key.includes('{'), key);
  });
});
