import { connect } from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';

const agents = new Map<string, Agent>();

/** An undici agent whose connections come from `localAddress` (127.0.0.x: a distinct client). */
export function agentFrom(localAddress: string): Agent {
  let a = agents.get(localAddress);
  if (!a) {
    // undici 7 takes localAddress at the top level of the Agent options (inside `connect` it is ignored).
    a = new Agent({ localAddress, connect: { rejectUnauthorized: false }, keepAliveTimeout: 1000 });
    agents.set(localAddress, a);
  }
  return a;
}

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

export async function send(
  from: string,
  url: string,
  init: { method?: Dispatcher.HttpMethod; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const r = await request(url, {
    method: init.method ?? 'GET',
    headers: init.headers,
    body: init.body,
    dispatcher: agentFrom(from),
    headersTimeout: 15_000,
    bodyTimeout: 15_000,
  });
  const body = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body };
}

export async function closeAgents(): Promise<void> {
  await Promise.all([...agents.values()].map((a) => a.close().catch(() => undefined)));
  agents.clear();
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export const soapJsonAuth = (account: string, password: string): string =>
  JSON.stringify({
    Header: { context: { _jsns: 'urn:zimbra' } },
    Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: account }, password: { _content: password } } },
  });

export const soapXmlAuth = (account: string, password: string, ns = 'urn:zimbraAccount'): string =>
  `<?xml version="1.0"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header><context xmlns="urn:zimbra"/></soap:Header>` +
  `<soap:Body><AuthRequest xmlns="${ns}"><account by="name">${account}</account><password>${password}</password></AuthRequest></soap:Body></soap:Envelope>`;

export const formLogin = (username: string, password: string): string =>
  new URLSearchParams({ loginOp: 'login', username, password, login_csrf: 'b2c3d4', client: 'preferred' }).toString();

/** Sends raw bytes from `from` and returns everything the server answered until it closed (or timeout). */
export function rawRequest(from: string, port: number, data: string | Buffer, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress: from }, () => socket.write(data));
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(out);
    }, timeoutMs);
    socket.on('data', (c) => (out += c.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    // A reset is an answer too (the server refused the connection): resolve with what arrived.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (out || err.code === 'ECONNRESET' || err.code === 'EPIPE') resolve(out);
      else reject(err);
    });
  });
}
