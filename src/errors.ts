/**
 * Every error the gatekeeper reports to a user carries a stable code from this catalogue.
 * The README documents each code; test/unit/errors.test.ts fails when one is missing there.
 */
export const ERROR_CODES = {
  GK_ERR_CONFIG_INVALID: 'the configuration has invalid values (each problem names key, value and why)',
  GK_ERR_CONFIG_FILE: 'the configuration file cannot be read or is not valid YAML',
  GK_ERR_BAD_ADDRESS: 'an IP address or CIDR given on the command line or API is not valid',
  GK_ERR_PROTECTED_ADDRESS: 'the address is ignored, allowlisted, a trusted proxy or an upstream and is never banned',
  GK_ERR_API_UNREACHABLE: 'the CLI cannot reach the running gatekeeper control API',
  GK_ERR_API_UNAUTHORIZED: 'the control API refused the request: missing or wrong bearer token',
  GK_ERR_API_REQUEST: 'the control API rejected the request (bad JSON, unknown route, bad parameter)',
  GK_ERR_LISTEN: 'a listener could not bind its address or load its TLS certificate',
  GK_ERR_STORE: 'the ban store (Redis) failed an operation; the gatekeeper keeps serving from memory',
  GK_ERR_FIREWALL: 'a firewall command failed; bans still hold in the proxy and are retried',
  GK_ERR_USAGE: 'the command line is not understood',
  GK_ERR_RANGE_BANNED: 'the address is not banned by itself but by a network ban covering it: nothing was lifted (unban --split carves it out)',
  GK_ERR_LOG_UNKNOWN_PROXY: 'IMAP/POP3 log lines arrive through a zimbra-proxy that is not in zimbraProxies: they are not counted (add it)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class GatekeeperError extends Error {
  readonly code: ErrorCode;
  readonly details: readonly string[];

  constructor(code: ErrorCode, message: string, details: readonly string[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GatekeeperError';
    this.code = code;
    this.details = details;
  }
}

export function isGatekeeperError(err: unknown, code?: ErrorCode): err is GatekeeperError {
  return err instanceof GatekeeperError && (code === undefined || err.code === code);
}
