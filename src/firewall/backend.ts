import { execFile } from 'node:child_process';
import type { Cidr } from '../net/ip.js';

/** One kernel ban: a validated network (see net/ip.ts parseCidr) and how long it stays. */
export interface FirewallEntry {
  readonly cidr: Cidr;
  /** Seconds the kernel keeps the entry; it expires by itself. */
  readonly timeoutSeconds: number;
}

/** What the kernel holds now (seconds left per entry, by canonical text). */
export type FirewallState = Map<string, number>;

/**
 * A kernel firewall, chosen by `firewall.backend`. Bans are set elements with timeouts, applied in
 * batches; the rule that uses the sets is created once by init().
 */
export interface FirewallBackend {
  readonly name: string;
  /** Creates the table/sets/rules if missing and makes the rules match the config; keeps elements. */
  init(): Promise<void>;
  /** Adds or refreshes entries (an existing entry gets the new timeout). One batch. */
  add(entries: readonly FirewallEntry[]): Promise<void>;
  remove(cidrs: readonly Cidr[]): Promise<void>;
  /** Removes every entry, keeps the rules. */
  flush(): Promise<void>;
  list(): Promise<FirewallState>;
  /** Removes everything the gatekeeper created (table, sets, rules). */
  destroy(): Promise<void>;
}

/** Runs a program with an argument list (never a shell string), optionally feeding stdin. */
export interface CommandRunner {
  run(command: string, args: readonly string[], stdin?: string): Promise<string>;
}

export class ExecFileRunner implements CommandRunner {
  constructor(private readonly timeoutMs = 30_000) {}

  run(command: string, args: readonly string[], stdin?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = execFile(command, [...args], { timeout: this.timeoutMs, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${command} ${args.join(' ')}: ${(stderr || err.message).trim().slice(0, 2000)}`));
          return;
        }
        resolve(stdout);
      });
      if (stdin !== undefined) child.stdin?.end(stdin);
    });
  }
}
