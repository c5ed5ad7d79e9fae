#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { loadConfig, maskedConfig, type LoadedConfig } from '../config/load.js';
import { GatekeeperError, isGatekeeperError } from '../errors.js';
import { printBans, printStatus } from './format.js';
import { printReport, printUnknownProxies, testLog } from './test-log.js';
import { LOG_TYPES, type LogType } from '../detect/log-rules.js';

const USAGE = `usage: gatekeeper <command> [options]

commands:
  run                         run every part the config enables
  check-config                validate and print the effective config (secrets masked)
  status [IP] [--json]        overview, or one address: failures, ban, until when, why
  list [--json]               active bans
  ban IP [--for 24h] [--reason TEXT]   ban by hand (IPv4, IPv6 or CIDR)
  unban IP|--all              lift bans everywhere
  reload                      re-read the config file in the running gatekeeper (like SIGHUP)
  test-log FILE...|- [--type TYPE|auto] [--json] [--print-missed] [--print-matched]
                              run log files through the log rules offline (like fail2ban-regex)

options:
  --config FILE               config file (default: $GK_CONFIG, else ./gatekeeper.yml)
  --api URL                   control API of the running gatekeeper (default: from the config)
  --json                      one JSON document on stdout
`;

/** Exit codes: 0 ok, 1 runtime/startup error, 2 invalid config or usage or bad address, 3 gatekeeper unreachable. */
function exitCodeOf(err: unknown): number {
  if (!isGatekeeperError(err)) return 1;
  switch (err.code) {
    case 'GK_ERR_CONFIG_INVALID':
    case 'GK_ERR_CONFIG_FILE':
    case 'GK_ERR_USAGE':
    case 'GK_ERR_BAD_ADDRESS':
    case 'GK_ERR_PROTECTED_ADDRESS':
      return 2;
    case 'GK_ERR_API_UNREACHABLE':
      return 3;
    default:
      return 1;
  }
}

function reportError(err: unknown): void {
  if (isGatekeeperError(err)) {
    process.stderr.write(`gatekeeper: ${err.code}: ${err.message}\n`);
    for (const d of err.details) process.stderr.write(`  ${d}\n`);
  } else {
    process.stderr.write(`gatekeeper: ${(err as Error)?.stack ?? String(err)}\n`);
  }
}

async function run(loaded: LoadedConfig): Promise<number> {
  const { createLogger } = await import('../obs/logger.js');
  const log = createLogger(loaded.config.log.level);
  // Loaded only for `run`: the other commands start faster without the proxy, Redis and HTTP stacks.
  const { startGatekeeper } = await import('../main.js');
  const gk = await startGatekeeper(loaded, log);
  log.info({ config: loaded.file ?? '(defaults and environment)', mode: loaded.config.mode, store: loaded.config.redis ? 'redis' : 'memory' }, 'gatekeeper running');
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down: no new connections, finishing requests in flight');
      gk.close().then(
        () => resolve(0),
        (err: Error) => {
          log.error({ err: err.message }, 'error during shutdown');
          resolve(1);
        },
      );
    };
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reloading the configuration');
      void gk.reload();
    });
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        api: { type: 'string' },
        json: { type: 'boolean', default: false },
        for: { type: 'string' },
        reason: { type: 'string' },
        all: { type: 'boolean', default: false },
        type: { type: 'string', default: 'auto' },
        'print-missed': { type: 'boolean', default: false },
        'print-matched': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`gatekeeper: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...args] = positionals;
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  try {
    switch (command) {
      case 'run':
        return await run(loadConfig({ file: values.config }));
      case 'check-config': {
        const loaded = loadConfig({ file: values.config });
        for (const w of loaded.warnings) process.stderr.write(`warning: ${w}\n`);
        process.stdout.write(`${JSON.stringify({ file: loaded.file, config: maskedConfig(loaded.config) }, null, 2)}\n`);
        return 0;
      }
      case 'test-log': {
        if (values.type !== 'auto' && !LOG_TYPES.includes(values.type as LogType)) {
          throw new GatekeeperError('GK_ERR_USAGE', `--type ${values.type} is not one of auto, ${LOG_TYPES.join(', ')}`);
        }
        const { config } = loadConfig({ file: values.config });
        const report = await testLog(args, values.type as LogType | 'auto', config, { printMissed: values['print-missed'], printMatched: values['print-matched'] });
        if (values.json) {
          const { files: _f, seconds: _s, ...summary } = report;
          process.stdout.write(`${JSON.stringify(summary)}\n`);
          printUnknownProxies(report);
        } else {
          printReport(report);
        }
        return 0;
      }
      case 'reload':
      case 'status':
      case 'list':
      case 'ban':
      case 'unban': {
        const { ApiClient } = await import('./api-client.js');
        const client = ApiClient.fromConfig(values.config, values.api);
        if (command === 'reload') {
          const r = (await client.call('POST', '/api/reload')) as { ok: boolean; restartNeeded: string[] };
          if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else process.stdout.write(`reloaded${r.restartNeeded.length ? `; these changes need a restart: ${r.restartNeeded.join(', ')}` : ''}\n`);
          return 0;
        }
        if (command === 'list') {
          const r = await client.call('GET', '/api/bans');
          if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else printBans((r as { bans: Array<Record<string, unknown>> }).bans);
          return 0;
        }
        if (command === 'status') {
          const r = await client.call('GET', args[0] ? `/api/status/${encodeURIComponent(args[0])}` : '/api/status');
          if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else printStatus(r as Record<string, unknown>, args[0]);
          return 0;
        }
        if (command === 'ban') {
          if (!args[0]) throw new GatekeeperError('GK_ERR_USAGE', 'ban needs an address: gatekeeper ban IP [--for 24h] [--reason TEXT]');
          const r = await client.call('POST', '/api/bans', { ip: args[0], duration: values.for, reason: values.reason });
          const ban = (r as { ban: Record<string, unknown> }).ban;
          if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else process.stdout.write(`banned ${String(ban.ip)} until ${String(ban.until)} (tier ${String(ban.tier)})\n`);
          return 0;
        }
        if (values.all) {
          const r = await client.call('DELETE', '/api/bans');
          if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
          else process.stdout.write(`lifted ${String((r as { removed: number }).removed)} ban(s)\n`);
          return 0;
        }
        if (!args[0]) throw new GatekeeperError('GK_ERR_USAGE', 'unban needs an address or --all');
        const r = await client.call('DELETE', `/api/bans/${encodeURIComponent(args[0])}`);
        if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
        else process.stdout.write((r as { removed: boolean }).removed ? `unbanned ${args[0]}\n` : `${args[0]} was not banned\n`);
        return 0;
      }
      default:
        process.stderr.write(`gatekeeper: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    reportError(err);
    return exitCodeOf(err);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // `run` resolves only after a clean shutdown; leave no stray handle keeping the process alive.
    if (code !== 0 || process.argv[2] === 'run') setTimeout(() => process.exit(code), 50).unref();
  },
  (err) => {
    reportError(err);
    process.exit(1);
  },
);
