/**
 * Help text of every command, the options each accepts, and the exit codes: one table feeds
 * `gatekeeper help [command]`, `gatekeeper <command> --help`, the option check and shell completion.
 */

export interface CommandHelp {
  /** One line: the command and its arguments. */
  readonly synopsis: string;
  readonly summary: string;
  /** Options this command accepts, besides --help (and --config/--api/--json where listed). */
  readonly options: readonly string[];
  /** Extra lines shown by `help COMMAND`. */
  readonly details?: readonly string[];
  /** What the positional arguments complete to (shell completion). */
  readonly completes?: 'file' | 'command' | 'shell' | 'allow';
}

const API = ['--config', '--api', '--json'] as const;

export const COMMANDS: Readonly<Record<string, CommandHelp>> = {
  run: { synopsis: 'run [--config FILE]', summary: 'run every part the config enables (proxy listeners, log detection, firewall, control API)', options: ['--config'] },
  'check-config': { synopsis: 'check-config [--config FILE]', summary: 'validate and print the effective config (secrets masked)', options: ['--config'] },
  status: {
    synopsis: 'status [IP] [--json]',
    summary: 'overview (health, upstreams, bans, failures), or one address: failures, ban, until, why',
    options: [...API],
  },
  list: {
    synopsis: 'list [--service S] [--rule R] [--tier proxy|firewall] [--since D] [--json]',
    summary: 'active bans, optionally filtered',
    options: [...API, '--service', '--rule', '--tier', '--since'],
    details: ['--since D     bans made within the last D (90s, 30m, 24h, 7d) or since an ISO time'],
  },
  why: {
    synopsis: 'why IP [--json]',
    summary: 'why an address is refused: its ban (or the network ban covering it), who made it, the failures it was made from, its history',
    options: [...API],
  },
  history: {
    synopsis: 'history [IP] [--since D] [--limit N] [--json]',
    summary: 'bans and unbans, newest first: when, what, who or which rule made them, until, reason, evidence (kept for history.keep)',
    options: [...API, '--since', '--limit'],
  },
  ban: {
    synopsis: 'ban IP|CIDR [--for 24h] [--reason TEXT] [--force]',
    summary: 'ban by hand (IPv4, IPv6 or a network)',
    options: [...API, '--for', '--reason', '--force'],
    details: [
      'a network must be written as its network address (198.51.100.0/24, not 198.51.100.7/24)',
      '--force       needed for a network wider than /16 (IPv4) or /32 (IPv6)',
    ],
  },
  unban: {
    synopsis: 'unban IP|CIDR [--split] | --all',
    summary: 'lift a ban everywhere (every instance, the store, the firewall)',
    options: [...API, '--all', '--split'],
    details: [
      'an address inside a banned network is not unbanned by default: the command names the network',
      'and exits 4; --split lifts the network ban and bans the rest of it again, leaving the address out',
    ],
  },
  allow: {
    synopsis: 'allow add|remove|list [CIDR] [--for D] [--reason TEXT] [--force]',
    summary: 'the runtime allowlist: never counted or banned, on every instance (jail.ignoreip stays the static part)',
    options: [...API, '--for', '--reason', '--force'],
    details: [
      'allow add CIDR [--for 30d] [--reason "office"]   also lifts the bans inside CIDR',
      'allow remove CIDR',
      'allow list                                        runtime entries, then the static ones from the config',
      '--force       needed for a network wider than /16 (IPv4) or /32 (IPv6)',
    ],
    completes: 'allow',
  },
  reload: { synopsis: 'reload', summary: 're-read the config file in the running gatekeeper (like SIGHUP)', options: [...API] },
  'test-log': {
    synopsis: 'test-log FILE...|- [--type TYPE|auto] [--json] [--print-missed] [--print-matched]',
    summary: 'run log files (or standard input: -) through the log rules offline (like fail2ban-regex)',
    options: ['--config', '--json', '--type', '--print-missed', '--print-matched'],
    completes: 'file',
  },
  help: { synopsis: 'help [COMMAND]', summary: 'this text, or the help of one command', options: [], completes: 'command' },
  completion: {
    synopsis: 'completion bash|zsh',
    summary: 'print a shell completion script',
    options: [],
    details: ['bash: source <(gatekeeper completion bash)   zsh: source <(gatekeeper completion zsh)'],
    completes: 'shell',
  },
};

export const OPTION_HELP: Readonly<Record<string, string>> = {
  '--config': '--config FILE   config file (default: $GK_CONFIG, else ./gatekeeper.yml)',
  '--api': '--api URL       control API of the running gatekeeper (default: api.url or listen.api of the config)',
  '--json': '--json          one JSON document on stdout',
};

export const EXIT_CODES = `exit codes:
  0  done
  1  runtime or startup error
  2  invalid config, command line, duration or address (including a protected one)
  3  the running gatekeeper cannot be reached
  4  nothing changed: the address stays banned by a network ban (unban without --split)
`;

export function globalUsage(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.synopsis.length));
  const lines = Object.values(COMMANDS).map((c) => (c.synopsis.length > 44 ? `  ${c.synopsis}\n  ${''.padEnd(46)}${c.summary}` : `  ${c.synopsis.padEnd(Math.min(width, 44) + 2)}${c.summary}`));
  return `usage: gatekeeper <command> [options]

commands:
${lines.join('\n')}

options:
  ${Object.values(OPTION_HELP).join('\n  ')}
  --version       print the version
  -h, --help      help (of a command: gatekeeper COMMAND --help)

The API token comes from $GK_API_TOKEN, else api.token of the config.
${EXIT_CODES}`;
}

export function commandUsage(name: string): string {
  const c = COMMANDS[name]!;
  const common = c.options.filter((o) => OPTION_HELP[o]).map((o) => `  ${OPTION_HELP[o]}`);
  return [`usage: gatekeeper ${c.synopsis}`, '', c.summary, ...(c.details ?? []).map((d) => `  ${d}`), ...(common.length ? ['', 'options:', ...common] : []), '', EXIT_CODES].join('\n');
}
