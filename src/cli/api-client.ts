import { request } from 'undici';
import { loadConfig } from '../config/load.js';
import { GatekeeperError, type ErrorCode } from '../errors.js';

/** Talks to the running gatekeeper's control API for the status/list/ban/unban commands. */
export class ApiClient {
  constructor(private readonly base: string, private readonly token: string | undefined) {}

  static fromConfig(configFile: string | undefined, apiUrl: string | undefined): ApiClient {
    const token = process.env.GK_API_TOKEN;
    if (apiUrl) return new ApiClient(apiUrl, token);
    const { config } = loadConfig({ file: configFile });
    if (config.api.url) return new ApiClient(config.api.url, token ?? config.api.token);
    const l = config.listen.api;
    if (!l) throw new GatekeeperError('GK_ERR_API_UNREACHABLE', 'listen.api is not configured: the running gatekeeper has no control API (give --api URL)');
    const host = l.host === '0.0.0.0' ? '127.0.0.1' : l.host === '::' ? '::1' : l.host;
    const h = host.includes(':') ? `[${host}]` : host;
    return new ApiClient(`${l.tls ? 'https' : 'http'}://${h}:${l.port}`, token ?? config.api.token);
  }

  async call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
    let res;
    try {
      res = await request(new URL(path, this.base), {
        method,
        headers: {
          'content-type': 'application/json',
          // The history names who made a manual ban: the CLI, the status page or another client.
          'user-agent': 'gatekeeper-cli',
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
    } catch (err) {
      throw new GatekeeperError('GK_ERR_API_UNREACHABLE', `cannot reach the gatekeeper at ${this.base}: ${(err as Error).message}. Is it running?`);
    }
    const text = await res.body.text();
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new GatekeeperError('GK_ERR_API_REQUEST', `unexpected answer from ${this.base} (HTTP ${res.statusCode})`);
    }
    if (res.statusCode >= 400) {
      if (json.ok === false && typeof json.error === 'string') throw new GatekeeperError('GK_ERR_CONFIG_INVALID', `reload refused, the running config is kept: ${json.error}`);
      const code = (typeof json.error === 'string' && json.error.startsWith('GK_ERR_') ? json.error : 'GK_ERR_API_REQUEST') as ErrorCode;
      throw new GatekeeperError(code, String(json.message ?? `HTTP ${res.statusCode}`));
    }
    return json;
  }
}
