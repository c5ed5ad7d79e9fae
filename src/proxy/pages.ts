import type { IncomingMessage, ServerResponse } from 'node:http';

export interface Page {
  readonly status: number;
  readonly title: string;
  readonly message: string;
  readonly retryAfterSeconds?: number | undefined;
  readonly until?: number | undefined;
  readonly reason?: string | undefined;
}

/** The page a banned client gets, from the proxy or straight at accept. */
export function bannedPage(until: number, now: number): Page {
  return {
    status: 429,
    title: 'Too many failed logins',
    message: 'Access from your address is blocked because of repeated failed logins.',
    retryAfterSeconds: (until - now) / 1000,
    until,
    reason: 'banned',
  };
}

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function wantsJson(req: IncomingMessage): boolean {
  const accept = req.headers.accept ?? '';
  const type = req.headers['content-type'] ?? '';
  return /json/i.test(accept) || /json/i.test(type);
}

/**
 * A short page the gatekeeper answers with itself (the request never reaches Zimbra): HTML for
 * browsers, JSON for clients that asked for JSON. Refusals close the connection.
 */
/** Status, headers and body of a page (shared by sendPage and the accept-time refusal). */
export function renderPage(page: Page, json: boolean, close = true): { headers: Record<string, string | number>; body: string } {
  const until = page.until ? new Date(page.until).toISOString() : undefined;
  const headers: Record<string, string | number> = { 'cache-control': 'no-store', 'x-gatekeeper': page.reason ?? 'refused' };
  if (page.retryAfterSeconds !== undefined) headers['retry-after'] = Math.max(1, Math.ceil(page.retryAfterSeconds));
  if (close) headers.connection = 'close';
  let body: string;
  if (json) {
    headers['content-type'] = 'application/json; charset=utf-8';
    body = JSON.stringify({ error: page.title, message: page.message, reason: page.reason, until, retryAfter: headers['retry-after'] });
  } else {
    headers['content-type'] = 'text/html; charset=utf-8';
    const untilLine = until ? `<p>Until: <time datetime="${until}">${until}</time></p>` : '';
    body = `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(page.title)}</title></head><body><h1>${escapeHtml(page.title)}</h1><p>${escapeHtml(page.message)}</p>${untilLine}</body></html>\n`;
  }
  headers['content-length'] = Buffer.byteLength(body);
  return { headers, body };
}

const REASON: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 413: 'Payload Too Large', 429: 'Too Many Requests', 502: 'Bad Gateway', 504: 'Gateway Timeout' };

/** The page as raw HTTP/1.1 response bytes, for answering before any HTTP parsing. */
export function rawPage(page: Page, json: boolean): string {
  const { headers, body } = renderPage(page, json);
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return `HTTP/1.1 ${page.status} ${REASON[page.status] ?? 'Error'}\r\n${lines.join('\r\n')}\r\n\r\n${body}`;
}

export function sendPage(req: IncomingMessage, res: ServerResponse, page: Page, close = true): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const { headers, body } = renderPage(page, wantsJson(req), close);
  res.writeHead(page.status, headers);
  // With `connection: close` Node closes the socket once the page is sent.
  res.end(req.method === 'HEAD' ? undefined : body);
}
