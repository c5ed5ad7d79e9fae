import { readFileSync, existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { GatekeeperError } from '../errors.js';
import { isLoopback, normalizeIp, parseCidr } from '../net/ip.js';
import { configSchema, SECRET_KEYS, type Config } from './schema.js';

export const DEFAULT_CONFIG_FILE = 'gatekeeper.yml';
const ENV_PREFIX = 'GK_';
/** GK_ variables that are not config keys. */
const ENV_NOT_KEYS = new Set(['GK_CONFIG']);

export interface LoadedConfig {
  readonly config: Config;
  /** The file that was read, or null when running on defaults and environment only. */
  readonly file: string | null;
  /** Things that are valid but probably not what the admin wants (printed loudly at startup). */
  readonly warnings: readonly string[];
}

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

type LeafKind = 'string' | 'number' | 'boolean' | 'array' | 'object' | 'any';
interface Leaf {
  path: string[];
  kind: LeafKind;
}

/** Unwraps optional/default/prefault/pipe wrappers to reach the schema that describes the value. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema as unknown as { _zod: { def: { type: string; innerType?: unknown; in?: unknown } } };
  for (;;) {
    const def = s._zod.def;
    if ((def.type === 'optional' || def.type === 'default' || def.type === 'prefault' || def.type === 'nullable') && def.innerType) {
      s = def.innerType as typeof s;
    } else if (def.type === 'pipe' && def.in) {
      s = def.in as typeof s;
    } else {
      return s as unknown as z.ZodType;
    }
  }
}

function kindOf(schema: z.ZodType): LeafKind {
  const type = (schema as unknown as { _zod: { def: { type: string } } })._zod.def.type;
  if (type === 'string' || type === 'enum' || type === 'union') return 'string';
  if (type === 'number') return 'number';
  if (type === 'boolean') return 'boolean';
  if (type === 'array') return 'array';
  if (type === 'object') return 'object';
  return 'any';
}

function collectLeaves(schema: z.ZodType, path: string[], out: Leaf[]): void {
  const inner = unwrap(schema);
  const def = (inner as unknown as { _zod: { def: { type: string; shape?: Record<string, z.ZodType> } } })._zod.def;
  if (def.type === 'object' && def.shape && path.length < 4) {
    // Objects are settable key by key; listeners and tls are leaves too (YAML in the variable).
    if (path.length > 0) out.push({ path, kind: 'object' });
    for (const [key, child] of Object.entries(def.shape)) collectLeaves(child, [...path, key], out);
    return;
  }
  out.push({ path, kind: kindOf(inner) });
}

const LEAVES: Leaf[] = [];
collectLeaves(configSchema, [], LEAVES);

export function envNameOf(path: readonly string[]): string {
  return ENV_PREFIX + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

const ENV_TO_LEAF = new Map(LEAVES.map((l) => [envNameOf(l.path), l]));

/** Every environment variable the config understands, with the key it sets (for the README and errors). */
export function environmentVariables(): Array<{ env: string; key: string }> {
  return LEAVES.filter((l) => l.kind !== 'object').map((l) => ({ env: envNameOf(l.path), key: l.path.join('.') }));
}

function parseEnvValue(raw: string, kind: LeafKind): unknown {
  switch (kind) {
    case 'string':
      return raw;
    case 'number':
      return raw.trim() === '' || Number.isNaN(Number(raw)) ? raw : Number(raw);
    case 'boolean':
      return /^(true|1|yes|on)$/i.test(raw) ? true : /^(false|0|no|off)$/i.test(raw) ? false : raw;
    case 'array': {
      const t = raw.trim();
      if (t === '') return [];
      if (t.startsWith('[')) return YAML.parse(t);
      return t.split(',').map((x) => {
        const v = x.trim();
        return /^\d+$/.test(v) ? Number(v) : v;
      });
    }
    default:
      return YAML.parse(raw);
  }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function getPath(source: unknown, path: readonly PropertyKey[]): unknown {
  let node = source;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

function showValue(value: unknown): string {
  if (value === undefined) return '(missing)';
  const s = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

export function resolveConfigPath(explicit: string | undefined, env: NodeJS.ProcessEnv): { path: string; explicit: boolean } {
  if (explicit) return { path: resolve(explicit), explicit: true };
  if (env.GK_CONFIG) return { path: resolve(env.GK_CONFIG), explicit: true };
  return { path: resolve(DEFAULT_CONFIG_FILE), explicit: false };
}

/**
 * Reads the YAML file (if any), applies GK_* environment overrides, validates against the one schema
 * and returns a frozen config. Every problem is reported at once as `key: value why`.
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const { path, explicit } = resolveConfigPath(options.file, env);
  let input: Record<string, unknown> = {};
  let file: string | null = null;
  if (existsSync(path)) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new GatekeeperError('GK_ERR_CONFIG_FILE', `cannot read config file ${path}: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = YAML.parse(text, { prettyErrors: true });
    } catch (err) {
      throw new GatekeeperError('GK_ERR_CONFIG_FILE', `config file ${path} is not valid YAML: ${(err as Error).message}`);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw new GatekeeperError('GK_ERR_CONFIG_FILE', `config file ${path} must be a YAML mapping of keys`);
      }
      input = parsed as Record<string, unknown>;
    }
    file = path;
  } else if (explicit) {
    throw new GatekeeperError('GK_ERR_CONFIG_FILE', `config file ${path} does not exist`);
  }

  const problems: string[] = [];
  const fromEnv = new Map<string, string>();
  for (const [name, raw] of Object.entries(env)) {
    // An empty variable counts as unset (compose passes `${VAR:-}` through as "").
    if (!name.startsWith(ENV_PREFIX) || ENV_NOT_KEYS.has(name) || raw === undefined || raw === '') continue;
    const leaf = ENV_TO_LEAF.get(name);
    if (!leaf) {
      problems.push(`${name}: unknown environment variable (no config key matches it)`);
      continue;
    }
    if (leaf.path[0] === 'listen' && input.listen === undefined) {
      // Setting one listener from the environment must not silently disable the default others.
      input.listen = {
        web: { host: '0.0.0.0', port: 8080 },
        admin: { host: '0.0.0.0', port: 7071 },
        api: { host: '127.0.0.1', port: 9180 },
      };
    }
    let value: unknown;
    try {
      value = parseEnvValue(raw, leaf.kind);
    } catch (err) {
      problems.push(`${leaf.path.join('.')}: ${showValue(raw)} (from ${name}) is not valid YAML: ${(err as Error).message}`);
      continue;
    }
    setPath(input, leaf.path, value);
    fromEnv.set(leaf.path.join('.'), name);
  }

  const result = configSchema.safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) problems.push(`${[...issue.path, key].join('.')}: unknown key`);
        continue;
      }
      const key = issue.path.join('.') || '(root)';
      const value = getPath(input, issue.path);
      const source = fromEnv.has(key) ? ` (from ${fromEnv.get(key)})` : '';
      const why = issue.code === 'invalid_type' && value === undefined ? 'is required' : issue.message;
      problems.push(`${key}: ${SECRET_KEYS.has(key) ? '***' : showValue(value)}${source} ${why}`);
    }
  }
  if (problems.length > 0 || !result.success) {
    throw new GatekeeperError('GK_ERR_CONFIG_INVALID', `invalid configuration${file ? ` in ${file}` : ''}`, problems);
  }

  const config = result.data;
  const warnings: string[] = [];
  checkSemantics(config, problems, warnings);
  if (problems.length > 0) {
    throw new GatekeeperError('GK_ERR_CONFIG_INVALID', `invalid configuration${file ? ` in ${file}` : ''}`, problems);
  }
  return { config: deepFreeze(config), file, warnings };
}

/** Rules that involve more than one key. */
function checkSemantics(config: Config, problems: string[], warnings: string[]): void {
  const api = config.listen.api;
  if (api && !isLoopback(api.host) && api.host !== 'localhost' && !config.api.token) {
    problems.push(`api.token: (missing) is required because listen.api.host ${JSON.stringify(api.host)} is not a loopback address`);
  }
  for (const name of ['web', 'admin', 'api'] as const) {
    const l = config.listen[name];
    if (!l?.tls) continue;
    for (const f of ['cert', 'key'] as const) {
      if (!existsSync(l.tls[f])) problems.push(`listen.${name}.tls.${f}: ${JSON.stringify(l.tls[f])} does not exist`);
    }
  }
  if (config.firewall.backend !== 'none' && config.firewall.ports.length === 0) {
    problems.push(`firewall.ports: [] must list at least one port when firewall.backend is ${config.firewall.backend}`);
  }
  if (config.listen.admin && config.admin.allow.length === 0) {
    warnings.push('admin.allow is empty: the admin listener refuses EVERY client (fail closed). List your trusted networks in admin.allow.');
  }
  for (const key of ['jail.ignoreip', 'trustedProxies', 'admin.allow'] as const) {
    const list = key === 'jail.ignoreip' ? config.jail.ignoreip : key === 'trustedProxies' ? config.trustedProxies : config.admin.allow;
    for (const entry of list) {
      const c = parseCidr(entry);
      if (c && c.prefix === 0) {
        warnings.push(`${key} contains ${entry}: that is every ${c.family === 4 ? 'IPv4' : 'IPv6'} address`);
      }
    }
  }
  for (const ip of config.zimbraProxies) {
    if (!normalizeIp(ip)) problems.push(`zimbraProxies: ${JSON.stringify(ip)} is not an IP address`);
  }
  if (config.mode === 'shadow') {
    warnings.push('mode is shadow: failures are detected and counted, but nothing is blocked');
  }
}

/**
 * Problems that stop `gatekeeper run` (and `check-config`) but not the commands that only talk to a
 * running gatekeeper: those read the config for the API's address, often from a shell that has only
 * part of the deployment's environment.
 */
export function runProblems(config: Config): string[] {
  const problems: string[] = [];
  const workers = config.proxy.workers === 'auto' ? availableParallelism() : config.proxy.workers;
  if (workers > 1 && !config.redis) {
    problems.push(`proxy.workers: ${JSON.stringify(config.proxy.workers)} needs redis: worker processes share counters, bans and logins in flight through the store, and the embedded in-memory store is one per process (set redis, or proxy.workers: 1)`);
  }
  if (workers > 64) problems.push(`proxy.workers: ${workers} is more than 64 processes`);
  return problems;
}

/** Loads the config for `run` and `check-config`: runProblems are errors too. */
export function loadRunnableConfig(options: LoadOptions = {}): LoadedConfig {
  const loaded = loadConfig(options);
  const problems = runProblems(loaded.config);
  if (problems.length > 0) throw new GatekeeperError('GK_ERR_CONFIG_INVALID', `invalid configuration${loaded.file ? ` in ${loaded.file}` : ''}`, problems);
  return loaded;
}

/** A Redis URL with its password masked (`redis://user:***@host`). */
export function maskRedisUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):([^@/]*)@/, '//$1:***@');
}

/** The effective config for printing: secrets masked. */
export function maskedConfig(config: Config): unknown {
  const copy = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
  for (const key of SECRET_KEYS) {
    const path = key.split('.');
    const value = getPath(copy, path);
    if (typeof value !== 'string') continue;
    if (key === 'redis.url') {
      setPath(copy, path, maskRedisUrl(value));
    } else {
      setPath(copy, path, '***');
    }
  }
  return copy;
}
