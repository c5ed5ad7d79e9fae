/*
 * Splitting a log line into its parts, without regexes that can backtrack.
 *
 * mailboxd layout (8.8.15 to 10.1): `%d %-5p [%t] [%z] %c{1} - %m`
 *   2018-10-06 12:32:23,142 WARN  [ImapSSLServer-1] [ip=192.168.20.50;oip=177.128.120.174;...;] security - cmd=Auth; ...
 * The thread (%t) can hold a client-supplied URI with `[`/`]`, but never a space, so the context block
 * starts at the first `] [`. The context (%z) is `key=value;` pairs with `;` doubled inside values:
 * it is parsed as such, never searched, so `;oip=6.6.6.6;` inside a User-Agent stays inside `ua`.
 */

export const MAX_LINE_LENGTH = 8192;

export interface ZimbraLine {
  readonly timestamp: string;
  readonly level: string;
  readonly thread: string;
  readonly context: ReadonlyMap<string, string>;
  readonly logger: string;
  readonly message: string;
}

const HEAD = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) {0,4}\[/;

/** Parses `key=value;key=value;]` starting at `start`; returns the map and the index of `]`, or null. */
export function parseContext(line: string, start: number): { context: Map<string, string>; end: number } | null {
  const context = new Map<string, string>();
  let i = start;
  for (let pairs = 0; pairs < 64; pairs++) {
    if (line.charCodeAt(i) === 93 /* ] */) return { context, end: i };
    let k = i;
    while (k < line.length) {
      const c = line.charCodeAt(k);
      if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) k++;
      else break;
    }
    if (k === i || line.charCodeAt(k) !== 61 /* = */) return null;
    const key = line.slice(i, k);
    let v = k + 1;
    let value = '';
    let from = v;
    for (;;) {
      const semi = line.indexOf(';', v);
      if (semi === -1) return null;
      if (line.charCodeAt(semi + 1) === 59) {
        // `;;` is an escaped `;` inside the value.
        value += line.slice(from, semi + 1);
        v = semi + 2;
        from = v;
        continue;
      }
      value += line.slice(from, semi);
      i = semi + 1;
      break;
    }
    if (!context.has(key)) context.set(key, value);
  }
  return null;
}

export function parseZimbraLine(line: string): ZimbraLine | null {
  const head = HEAD.exec(line);
  if (!head) return null;
  const threadStart = head[0].length;
  let search = threadStart;
  for (let tries = 0; tries < 8; tries++) {
    const sep = line.indexOf('] [', search);
    if (sep === -1) return null;
    const ctx = parseContext(line, sep + 3);
    if (ctx && line.charCodeAt(ctx.end + 1) === 32 /* space */) {
      const rest = ctx.end + 2;
      const dash = line.indexOf(' - ', rest);
      if (dash !== -1 && dash > rest && !line.slice(rest, dash).includes(' ')) {
        return {
          timestamp: head[1]!,
          level: head[2]!,
          thread: line.slice(threadStart, sep),
          context: ctx.context,
          logger: line.slice(rest, dash),
          message: line.slice(dash + 3),
        };
      }
    }
    search = sep + 1;
  }
  return null;
}

export interface SyslogLine {
  /** `postfix/submission/smtpd`, `saslauthd`, ... */
  readonly program: string;
  readonly message: string;
}

/**
 * Classic (`Mar 10 13:33:30 host prog[pid]: msg`) and RFC 3339 (`2021-02-28T11:58:36.591Z host prog[pid]: msg`)
 * syslog lines.
 */
const SYSLOG = /^(?:[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?) \S+ ([\w./-]{1,64})(?:\[\d{1,10}\])?: /;

export function parseSyslogLine(line: string): SyslogLine | null {
  const m = SYSLOG.exec(line);
  if (!m) return null;
  return { program: m[1]!, message: line.slice(m[0].length) };
}

export interface NginxLine {
  readonly pid: string;
  /** `*N` connection number, '' when the line has none. */
  readonly connection: string;
  readonly level: string;
  /** Message text before nginx's mail context (` while ...` included). */
  readonly message: string;
  /** `client:` value (address, with `:port` appended by Zimbra's patch), or null when absent or ambiguous. */
  readonly client: string | null;
  /** `login:` value as nginx wrote it (raw client bytes), or null. */
  readonly login: string | null;
}

/*
 * zimbra-proxy's nginx.log: `2024/03/01 10:00:00 [error] 1234#0: *5 MESSAGE, client: IP:port, server: ADDR, login: "U"`
 * (stock ngx_log_error_core head; mail context from ngx_mail_log_error as patched in Zimbra/packages
 * nginx_src_mail_ngx_mail_handler.patch). The message and the login are raw client text, so the context
 * is read only when `, client: ` occurs exactly once: a second one is client-written and the address
 * cannot be told apart, so there is none (never a guess).
 */
const NGINX_HEAD = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[(\w{1,8})\] (\d{1,10})#\d{1,10}: (?:\*(\d{1,20}) )?/;
const NGINX_CTX = /^, client: ([0-9A-Fa-f:.]{2,53}), server: [^\s,]{1,128}(?:, login: "([^\n]*)")?/;

export function parseNginxLine(line: string): NginxLine | null {
  const head = NGINX_HEAD.exec(line);
  if (!head) return null;
  const rest = line.slice(head[0].length);
  const at = rest.indexOf(', client: ');
  let client: string | null = null;
  let login: string | null = null;
  let message = rest;
  if (at !== -1) {
    message = rest.slice(0, at);
    if (rest.indexOf(', client: ', at + 1) === -1) {
      const ctx = NGINX_CTX.exec(rest.slice(at));
      if (ctx) {
        client = ctx[1]!;
        login = ctx[2] ?? null;
      }
    }
  }
  return { level: head[1]!, pid: head[2]!, connection: head[3] ?? '', message, client, login };
}

/**
 * The address in nginx's `client:` value. Zimbra's patch appends `:port`; for IPv4 it is split off. An IPv6
 * address with a port appended cannot be told from one without (`2001:db8::1:1234`): none is returned.
 */
export function nginxClientAddress(client: string): string | null {
  if (client.includes('.')) {
    const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?::\d{1,5})?$/.exec(client);
    return m ? m[1]! : null;
  }
  return null;
}
