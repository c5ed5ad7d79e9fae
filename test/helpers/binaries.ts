import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

/** Finds a system binary; null when missing. */
export function which(name: string): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v "$0"', name], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/**
 * For tests that need a system binary: returns its path, or skips the test LOUDLY when it is missing.
 * Under CI=true a missing binary is a failure, so CI always runs everything.
 */
export function requireBinary(t: TestContext, name: string, apt: string): string | null {
  const path = which(name);
  if (path) return path;
  const msg = `${name} is not installed: apt-get install -y ${apt}`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${msg}`);
  process.stderr.write(`\n*** SKIPPED: ${msg} ***\n`);
  t.skip(msg);
  return null;
}
