/** Human output of the CLI (the --json forms print the API documents as they are). */

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export function printBans(bans: Array<Record<string, unknown>>): void {
  if (bans.length === 0) {
    process.stdout.write('no active bans\n');
    return;
  }
  const rows = [['IP', 'RULE', 'SERVICE', 'TIER', 'COUNT', 'SINCE', 'UNTIL']];
  for (const b of bans) {
    rows.push([String(b.ip), String(b.reason), String(b.service), `${String(b.tier)}${b.shadow ? ' (shadow)' : ''}`, String(b.count), String(b.since), String(b.until)]);
  }
  process.stdout.write(`${table(rows)}\n${bans.length} active ban(s)\n`);
}

export function printStatus(s: Record<string, unknown>, ip: string | undefined): void {
  if (ip) {
    const ban = s.ban as Record<string, unknown> | null;
    const lines = [`address:   ${String(s.ip)}${s.ignored ? ' (ignored: never counted or banned)' : ''}`, `failures:  ${String(s.failures)} in the current window`];
    if (ban) {
      lines.push(`banned:    yes, until ${String(ban.until)} (${String(ban.remainingSeconds)}s left)`);
      lines.push(`why:       ${String(ban.reason)} (${String(ban.service)}), ban #${String(ban.count)}, tier ${String(ban.tier)}${ban.note ? `, ${String(ban.note)}` : ''}`);
    } else {
      lines.push('banned:    no');
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return;
  }
  const health = s.health as Record<string, unknown>;
  const store = health?.store as Record<string, unknown> | undefined;
  const out = [
    `status:        ${String(health?.status)} (mode ${String(health?.mode)})`,
    `store:         ${String(store?.backend)}: ${String(store?.detail)}`,
    `active bans:   ${String(s.activeBans)} (proxy ${String((s.bansByTier as Record<string, number>)?.proxy ?? 0)}, firewall ${String((s.bansByTier as Record<string, number>)?.firewall ?? 0)})`,
    'failures by service (since start):',
  ];
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
