import { parseDurationSeconds } from '../config/duration.js';
import { GatekeeperError } from '../errors.js';
import { ApiClient } from './api-client.js';
import { localTime, printBans, printStatus, timeLeft } from './format.js';
import { printHistory, printWhy } from './format-history.js';

/** The options the API commands read (parsed by main.ts). */
export interface ApiCommandOptions {
  readonly config?: string | undefined;
  readonly api?: string | undefined;
  readonly json?: boolean | undefined;
  readonly for?: string | undefined;
  readonly reason?: string | undefined;
  readonly all?: boolean | undefined;
  readonly force?: boolean | undefined;
  readonly split?: boolean | undefined;
  readonly service?: string | undefined;
  readonly rule?: string | undefined;
  readonly tier?: string | undefined;
  readonly since?: string | undefined;
  readonly limit?: string | undefined;
}

function out(o: ApiCommandOptions, doc: unknown, text: string): void {
  process.stdout.write(o.json ? `${JSON.stringify(doc)}\n` : text);
}

/** Checked here, before anything is sent: a bad value is a usage error (exit 2), whatever the API says. */
function checkDuration(name: string, value: string | undefined): void {
  if (value === undefined) return;
  const s = parseDurationSeconds(value);
  if (s === null || s <= 0) throw new GatekeeperError('GK_ERR_USAGE', `--${name} ${JSON.stringify(value)} is not a duration (90s, 30m, 24h, 7d)`);
}

export const API_COMMANDS = new Set(['status', 'list', 'ban', 'unban', 'reload', 'allow', 'why', 'history']);

export async function runApiCommand(command: string, args: readonly string[], o: ApiCommandOptions): Promise<number> {
  if (command === 'ban') {
    if (!args[0]) throw new GatekeeperError('GK_ERR_USAGE', 'ban needs an address: gatekeeper ban IP [--for 24h] [--reason TEXT]');
    checkDuration('for', o.for);
  }
  if (command === 'allow') {
    const [sub, cidr] = args;
    if (sub !== 'add' && sub !== 'remove' && sub !== 'list') throw new GatekeeperError('GK_ERR_USAGE', 'allow needs add, remove or list: gatekeeper allow add CIDR [--for 30d] [--reason TEXT]');
    if (sub !== 'list' && !cidr) throw new GatekeeperError('GK_ERR_USAGE', `allow ${sub} needs an address or network`);
    if (sub !== 'add' && (o.for !== undefined || o.reason !== undefined || o.force)) throw new GatekeeperError('GK_ERR_USAGE', `allow ${sub} takes no --for, --reason or --force`);
    checkDuration('for', o.for);
  }
  if (command === 'unban' && !o.all && !args[0]) throw new GatekeeperError('GK_ERR_USAGE', 'unban needs an address or --all');
  if (command === 'why' && !args[0]) throw new GatekeeperError('GK_ERR_USAGE', 'why needs an address: gatekeeper why IP');
  if (command === 'history' && o.limit !== undefined && !/^\d{1,5}$/.test(o.limit)) throw new GatekeeperError('GK_ERR_USAGE', `--limit ${JSON.stringify(o.limit)} is not a number`);
  if (command === 'list' || command === 'history') {
    if (o.tier !== undefined && o.tier !== 'proxy' && o.tier !== 'firewall') throw new GatekeeperError('GK_ERR_USAGE', `--tier ${JSON.stringify(o.tier)} is not proxy or firewall`);
    if (o.since !== undefined && parseDurationSeconds(o.since) === null && Number.isNaN(Date.parse(o.since))) {
      throw new GatekeeperError('GK_ERR_USAGE', `--since ${JSON.stringify(o.since)} is neither a duration (30m, 24h, 7d) nor a time (2026-11-27T08:00:00Z)`);
    }
  }
  const client = ApiClient.fromConfig(o.config, o.api);
  switch (command) {
    case 'allow':
      return allowCommand(client, args, o);
    case 'why': {
      const r = (await client.call('GET', `/api/why/${encodeURIComponent(args[0]!)}`)) as Record<string, unknown>;
      if (o.json) out(o, r, '');
      else printWhy(r);
      return 0;
    }
    case 'history': {
      const q = new URLSearchParams();
      if (args[0]) q.set('ip', args[0]);
      if (o.since !== undefined) q.set('since', o.since);
      if (o.limit !== undefined) q.set('limit', o.limit);
      const r = (await client.call('GET', `/api/history${q.size ? `?${q}` : ''}`)) as { events: Array<Record<string, unknown>> };
      if (o.json) out(o, r, '');
      else printHistory(r.events);
      return 0;
    }
    case 'reload': {
      const r = (await client.call('POST', '/api/reload')) as { ok: boolean; restartNeeded: string[] };
      out(o, r, `reloaded${r.restartNeeded.length ? `; these changes need a restart: ${r.restartNeeded.join(', ')}` : ''}\n`);
      return 0;
    }
    case 'list': {
      const q = new URLSearchParams();
      for (const k of ['service', 'rule', 'tier', 'since'] as const) if (o[k] !== undefined) q.set(k, o[k]);
      const r = (await client.call('GET', `/api/bans${q.size ? `?${q}` : ''}`)) as { bans: Array<Record<string, unknown>> };
      if (o.json) out(o, r, '');
      else printBans(r.bans, q.size > 0);
      return 0;
    }
    case 'status': {
      const r = await client.call('GET', args[0] ? `/api/status/${encodeURIComponent(args[0])}` : '/api/status');
      if (o.json) out(o, r, '');
      else printStatus(r as Record<string, unknown>, args[0]);
      return 0;
    }
    case 'ban': {
      const r = (await client.call('POST', '/api/bans', { ip: args[0], duration: o.for, reason: o.reason, ...(o.force ? { force: true } : {}) })) as { ban: Record<string, unknown> };
      const b = r.ban;
      out(o, r, `banned ${String(b.ip)} until ${new Date(String(b.until)).toLocaleString()} (tier ${String(b.tier)}${b.note ? `, reason: ${String(b.note)}` : ''})\n`);
      return 0;
    }
    default: {
      if (o.all) {
        const r = (await client.call('DELETE', '/api/bans')) as { removed: number };
        out(o, r, `lifted ${r.removed} ban(s)\n`);
        return 0;
      }
      const r = (await client.call('DELETE', `/api/bans/${encodeURIComponent(args[0]!)}${o.split ? '?split=1' : ''}`)) as { removed: boolean; split?: { range: string; rebanned: string[] }; coveredBy?: string };
      if (r.coveredBy) process.stderr.write(`warning: ${args[0]} stays banned by the network ban of ${r.coveredBy} (unban ${r.coveredBy}, or unban ${args[0]} --split)\n`);
      if (r.split) {
        out(o, r, `lifted the ban of ${r.split.range} and banned the rest of it again (${r.split.rebanned.length} networks): ${args[0]} is no longer banned\n`);
      } else {
        out(o, r, r.removed ? `unbanned ${args[0]}\n` : `${args[0]} was not banned\n`);
      }
      return 0;
    }
  }
}

async function allowCommand(client: ApiClient, args: readonly string[], o: ApiCommandOptions): Promise<number> {
  const [sub, cidr] = args;
  if (sub === 'add') {
    const r = (await client.call('POST', '/api/allow', { cidr, duration: o.for, reason: o.reason, ...(o.force ? { force: true } : {}) })) as { entry: Record<string, unknown>; lifted: string[] };
    const until = r.entry.until ? ` until ${localTime(r.entry.until)}` : '';
    out(o, r, `allowed ${String(r.entry.cidr)}${until} (${String(r.entry.reason)})${r.lifted.length ? `; lifted the bans of ${r.lifted.join(', ')}` : ''}\n`);
    return 0;
  }
  if (sub === 'remove') {
    const r = (await client.call('DELETE', `/api/allow/${encodeURIComponent(cidr!)}`)) as { cidr: string; removed: boolean };
    out(o, r, r.removed ? `removed ${r.cidr} from the allowlist\n` : `${r.cidr} was not on the runtime allowlist\n`);
    return 0;
  }
  const r = (await client.call('GET', '/api/allow')) as { entries: Array<Record<string, unknown>>; static: string[] };
  if (o.json) {
    out(o, r, '');
    return 0;
  }
  const lines = r.entries.length === 0 ? ['no runtime entries'] : r.entries.map((e) => `${String(e.cidr).padEnd(24)} ${e.until ? `until ${localTime(e.until)} (${timeLeft(Number(e.remainingSeconds))} left)` : 'until removed'}  since ${localTime(e.since)}  ${String(e.reason)}`);
  lines.push(`static (config: jail.ignoreip, trustedProxies, upstreams): ${r.static.join(', ') || 'none'}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
