import { localTime, timeLeft } from './format.js';

/** Human output of `gatekeeper why` and `gatekeeper history` (the --json forms print the API documents). */

type Doc = Record<string, unknown>;

function evidenceLine(e: Doc): string {
  return `  ${localTime(e.at)}  ${String(e.service).padEnd(10)} ${String(e.account ?? '(no account)').padEnd(32)} ${String(e.failures)} failure(s)`;
}

function eventLine(e: Doc): string {
  const what = e.action === 'ban' ? `ban ${String(e.rule)} (${String(e.service)}), tier ${String(e.tier)}, ban #${String(e.count)}, until ${localTime(e.until)}` : String(e.action);
  const ev = Array.isArray(e.evidence) && e.evidence.length ? `, ${e.evidence.length} failure(s) kept as evidence` : '';
  return `  ${localTime(e.at)}  ${String(e.target).padEnd(20)} ${what}${e.note ? `, ${String(e.note)}` : ''}${ev}; by ${String(e.by)}`;
}

export function printWhy(r: Doc): void {
  const lines = [`address:   ${String(r.ip)}${r.key !== r.ip ? ` (counted and banned as ${String(r.key)})` : ''}`];
  const ban = r.ban as Doc | null;
  if (ban) {
    lines.push(`banned:    yes${r.coveredBy ? ` by the network ban of ${String(r.coveredBy)}` : ''}, until ${localTime(ban.until)} (${timeLeft(Number(ban.remainingSeconds))} left), tier ${String(ban.tier)}`);
    lines.push(`rule:      ${String(ban.rule)} (${String(ban.service)}), ban #${String(ban.count)} of this address${ban.note ? `: ${String(ban.note)}` : ''}`);
    lines.push(`made by:   ${r.madeBy ? String(r.madeBy) : String(ban.source)} at ${localTime(ban.since)}`);
    const evidence = r.evidence as Doc[];
    lines.push(evidence.length ? 'evidence (the failed logins counted before the ban):' : 'evidence:  none kept (a manual ban, or made before history was kept)');
    for (const e of evidence) lines.push(evidenceLine(e));
  } else {
    lines.push(`banned:    no${r.ignored ? ' (allowlisted: never counted or banned)' : ''}`);
  }
  lines.push(`counting:  ${String(r.failuresNow)} failure(s) in the current window`);
  const recent = r.recentFailures as Doc[];
  if (recent.length) {
    lines.push('recent failed logins seen by this instance:');
    for (const e of recent) lines.push(evidenceLine(e));
  }
  const history = r.history as Doc[];
  lines.push(history.length ? 'history (newest first):' : 'history:   none');
  for (const e of history) lines.push(eventLine(e));
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function printHistory(events: Doc[]): void {
  if (events.length === 0) {
    process.stdout.write('no bans or unbans recorded\n');
    return;
  }
  process.stdout.write(`${events.map(eventLine).join('\n')}\n`);
}
