/** Human output of the CLI (the --json forms print the API documents as they are). */

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** A time as the admin reads it: local time, to the second, no milliseconds. */
export function localTime(iso: unknown): string {
  const d = new Date(String(iso));
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** `2d 3h`, `4h 12m`, `12m 5s`, `40s`. */
export function timeLeft(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function printBans(bans: Array<Record<string, unknown>>, filtered = false): void {
  if (bans.length === 0) {
    process.stdout.write(filtered ? 'no active bans match\n' : 'no active bans\n');
    return;
  }
  const rows = [['IP', 'RULE', 'SERVICE', 'TIER', 'COUNT', 'SINCE', 'UNTIL', 'LEFT', 'REASON']];
  for (const b of bans) {
    rows.push([
      String(b.ip),
      String(b.reason),
      String(b.service),
      `${String(b.tier)}${b.shadow ? ' (shadow)' : ''}`,
      String(b.count),
      localTime(b.since),
      localTime(b.until),
      timeLeft(Number(b.remainingSeconds)),
      b.note ? String(b.note) : '-',
    ]);
  }
  process.stdout.write(`${table(rows)}\n${bans.length} active ban(s)${filtered ? ' matching' : ''}\n`);
}

export function printStatus(s: Record<string, unknown>, ip: string | undefined): void {
  if (ip) {
    const ban = s.ban as Record<string, unknown> | null;
    const lines = [`address:   ${String(s.ip)}${s.ignored ? ' (ignored: never counted or banned)' : ''}`, `failures:  ${String(s.failures)} in the current window`];
    if (ban) {
      const range = ban.ip !== s.ip ? ` by the network ban of ${String(ban.ip)}` : '';
      lines.push(`banned:    yes${range}, since ${localTime(ban.since)}, until ${localTime(ban.until)} (${timeLeft(Number(ban.remainingSeconds))} left)`);
      lines.push(`rule:      ${String(ban.reason)} (${String(ban.service)}), ban #${String(ban.count)}, tier ${String(ban.tier)}`);
      lines.push(`reason:    ${ban.note ? String(ban.note) : '-'}`);
    } else {
      lines.push('banned:    no');
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return;
  }
  const health = s.health as Record<string, unknown>;
  const store = health?.store as Record<string, unknown> | undefined;
  const reasons = (health?.reasons as string[] | undefined) ?? [];
  const out = [`status:        ${String(health?.status)} (mode ${String(health?.mode)})`];
  for (const r of reasons) out.push(`  ! ${r}`);
  out.push(`store:         ${String(store?.backend)}: ${String(store?.detail)}`);
  const upstreams = (health?.upstreams ?? {}) as Record<string, Record<string, unknown>>;
  for (const [name, u] of Object.entries(upstreams)) {
    const state = u.checkedAt === null ? 'not checked yet' : u.ok ? `up, ${String(u.detail)} in ${String(u.latencyMs)} ms` : `DOWN: ${String(u.detail)}`;
    const last = u.ok || u.checkedAt === null ? `checked ${localTime(u.checkedAt)}` : `last good answer ${u.lastOkAt ? localTime(u.lastOkAt) : 'never'}`;
    out.push(`zimbra ${name.padEnd(7)} ${String(u.url)}: ${state} (${last})`);
  }
  const fw = health?.firewall as Record<string, unknown> | undefined;
  out.push(`firewall:      ${String(fw?.backend)}${fw?.ok === false ? `: ${String(fw.lastError)}` : ''}`);
  out.push(
    `active bans:   ${String(s.activeBans)} (proxy ${String((s.bansByTier as Record<string, number>)?.proxy ?? 0)}, firewall ${String((s.bansByTier as Record<string, number>)?.firewall ?? 0)})`,
    'failures by service (since start):',
  );
  const failures = s.failuresByService as Record<string, number>;
  const services = Object.keys(failures ?? {}).sort();
  if (services.length === 0) out.push('  (none)');
  for (const k of services) out.push(`  ${k.padEnd(14)} ${failures[k]}`);
  const activity = s.activity as { topAddresses: Array<{ ip: string; failures: number }>; topAccounts: Array<{ account: string; failures: number }> } | undefined;
  if (activity) {
    out.push('top addresses (24 h):');
    if (activity.topAddresses.length === 0) out.push('  (none)');
    for (const a of activity.topAddresses) out.push(`  ${a.ip.padEnd(40)} ${a.failures}`);
    out.push('most targeted accounts (24 h):');
    if (activity.topAccounts.length === 0) out.push('  (none)');
    for (const a of activity.topAccounts) out.push(`  ${a.account.padEnd(40)} ${a.failures}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}
