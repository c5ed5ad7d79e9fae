/*
 * Request parameters read the way Jetty 9.4 reads them for a servlet (`request.getParameter`), so a
 * login form cannot be hidden from detection by an encoding only Jetty understands:
 * - the query string first, then an `application/x-www-form-urlencoded` body (Request.extractParameters);
 * - `&` separates pairs, the first `=` separates name and value, `+` is a space;
 * - `%XX` is a UTF-8 byte and `%uXXXX` a UTF-16 unit (UrlEncoded.decodeUtf8To: Jetty 9 still honours
 *   the old `%u` notation, which URLSearchParams does not).
 * getParameter returns a name's FIRST value; callers that decide "is this a login" look at every value
 * (reading more logins than Jetty would is the safe side).
 */

export type Params = Map<string, string[]>;

function decodeComponent(s: string): string {
  if (!/[%+]/.test(s)) return s;
  const bytes: number[] = [];
  let out = '';
  const flush = (): void => {
    if (bytes.length) {
      out += Buffer.from(bytes).toString('utf8');
      bytes.length = 0;
    }
  };
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '+') {
      flush();
      out += ' ';
    } else if (c === '%' && (s[i + 1] === 'u' || s[i + 1] === 'U') && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) {
      flush();
      out += String.fromCharCode(parseInt(s.slice(i + 2, i + 6), 16));
      i += 5;
    } else if (c === '%' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      flush();
      out += c;
    }
  }
  flush();
  return out;
}

/** Adds the pairs of `encoded` (a query string or form body) to `into`. */
export function addParams(into: Params, encoded: string): Params {
  if (encoded === '') return into;
  for (const pair of encoded.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decodeComponent(eq === -1 ? pair : pair.slice(0, eq));
    const value = eq === -1 ? '' : decodeComponent(pair.slice(eq + 1));
    const list = into.get(name);
    if (list) list.push(value);
    else into.set(name, [value]);
  }
  return into;
}

/** The query string of a request target (after `?`, before `#`), or ''. */
export function queryOf(url: string): string {
  const q = url.indexOf('?');
  if (q === -1) return '';
  const hash = url.indexOf('#', q);
  return url.slice(q + 1, hash === -1 ? undefined : hash);
}

/** Whether any value of `name` satisfies `test`. */
export function anyValue(params: Params, name: string, test: (v: string) => boolean): boolean {
  return (params.get(name) ?? []).some(test);
}

/** The first non-empty value of `name`. */
export function firstNonEmpty(params: Params, name: string): string | undefined {
  return (params.get(name) ?? []).find((v) => v !== '');
}
