#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { loadConfig, loadRunnableConfig, maskedConfig, type LoadedConfig } from '../config/load.js';
import { GatekeeperError, isGatekeeperError } from '../errors.js';
import { readFileSync } from 'node:fs';
import { printReport, printUnknownProxies, testLog } from './test-log.js';
import { LOG_TYPES, type LogType } from '../detect/log-rules.js';
import { API_COMMANDS, runApiCommand } from './api-commands.js';
import { completionScript } from './completion.js';
import { COMMANDS, commandUsage, globalUsage } from './usage.js';

/** Exit codes (usage.ts EXIT_CODES): 0 ok, 1 runtime/startup error, 2 invalid config or usage or bad address, 3 gatekeeper unreachable, 4 still banned by a range. */
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
    case 'GK_ERR_RANGE_BANNED':
      return 4;
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
  // proxy.workers > 1: a primary and its worker processes (src/cluster/supervisor.ts).
  const { workerCount, runPrimary, runWorker, serveUntilSignal } = await import('../cluster/supervisor.js');
  const { default: cluster } = await import('node:cluster');
  if (cluster.isWorker) return runWorker(loaded, log);
  if (workerCount(loaded.config) > 1) return runPrimary(loaded, log);
  // Loaded only for `run`: the other commands start faster without the proxy, Redis and HTTP stacks.
  const { startGatekeeper } = await import('../main.js');
  const gk = await startGatekeeper(loaded, log);
  log.info({ config: loaded.file ?? '(defaults and environment)', mode: loaded.config.mode, store: loaded.config.redis ? 'redis' : 'memory' }, 'gatekeeper running');
  return serveUntilSignal(log, () => void gk.reload(), async (signal) => {
    log.info({ signal }, 'shutting down: no new connections, finishing requests in flight');
    await gk.close();
  });
}

/** The version in package.json (next to dist/ in the image and in a checkout). */
function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function usageError(message: string, help: string): number {
  process.stderr.write(`gatekeeper: GK_ERR_USAGE: ${message}\n\n${help}`);
  return 2;
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
        json: { type: 'boolean' },
        for: { type: 'string' },
        reason: { type: 'string' },
        all: { type: 'boolean' },
        force: { type: 'boolean' },
        split: { type: 'boolean' },
        service: { type: 'string' },
        rule: { type: 'string' },
        tier: { type: 'string' },
        since: { type: 'string' },
        limit: { type: 'string' },
        type: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
        'print-missed': { type: 'boolean' },
        'print-matched': { type: 'boolean' },
      },
    });
  } catch (err) {
    return usageError((err as Error).message, globalUsage());
  }
  const { values, positionals } = parsed;
  const [command, ...args] = positionals;
  if (values.version && !command) {
    process.stdout.write(`gatekeeper ${version()}\n`);
    return 0;
  }
  if (!command) {
    if (values.help) {
      process.stdout.write(globalUsage());
      return 0;
    }
    return usageError('no command given', globalUsage());
  }
  const spec = COMMANDS[command];
  if (!spec) return usageError(`unknown command ${JSON.stringify(command)}`, globalUsage());
  if (values.help) {
    process.stdout.write(commandUsage(command));
    return 0;
  }
  // An option the command does not take is a mistake worth saying (`list --for 1h` does nothing).
  const stray = Object.keys(values).filter((k) => values[k as keyof typeof values] !== undefined && !spec.options.includes(`--${k}`));
  if (stray.length > 0) return usageError(`${command} does not take --${stray.join(', --')}`, commandUsage(command));
  try {
    if (API_COMMANDS.has(command)) return await runApiCommand(command, args, values);
    switch (command) {
      case 'help': {
        if (!args[0]) {
          process.stdout.write(globalUsage());
          return 0;
        }
        if (!COMMANDS[args[0]]) return usageError(`unknown command ${JSON.stringify(args[0])}`, globalUsage());
        process.stdout.write(commandUsage(args[0]));
        return 0;
      }
      case 'completion':
        process.stdout.write(completionScript(args[0]));
        return 0;
      case 'run':
        return await run(loadRunnableConfig({ file: values.config }));
      case 'check-config': {
        const loaded = loadRunnableConfig({ file: values.config });
        for (const w of loaded.warnings) process.stderr.write(`warning: ${w}\n`);
        process.stdout.write(`${JSON.stringify({ file: loaded.file, config: maskedConfig(loaded.config) }, null, 2)}\n`);
        return 0;
      }
      default: {
        // test-log
        const type = values.type ?? 'auto';
        if (type !== 'auto' && !LOG_TYPES.includes(type as LogType)) {
          throw new GatekeeperError('GK_ERR_USAGE', `--type ${type} is not one of auto, ${LOG_TYPES.join(', ')}`);
        }
        const { config } = loadConfig({ file: values.config });
        const report = await testLog(args, type as LogType | 'auto', config, { printMissed: values['print-missed'] === true, printMatched: values['print-matched'] === true });
        if (values.json) {
          const { files: _f, seconds: _s, ...summary } = report;
          process.stdout.write(`${JSON.stringify(summary)}\n`);
          printUnknownProxies(report);
        } else {
          printReport(report);
        }
        return 0;
      }
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
