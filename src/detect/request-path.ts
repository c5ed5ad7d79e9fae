/**
 * The path Zimbra's Jetty (9.4) will route on, so detection cannot be dodged with `//service/soap`,
 * `/service/./soap`, `/service/%73oap`, `/service/soap;x=y` or `/service/soap#x`:
 * - the path ends at `?` or `#` (HttpURI);
 * - percent-decoding (URIUtil.decodePath; its `%uXXXX` form is refused here: no client sends it);
 * - `;params` stripped per segment, empty and `.` segments dropped, `..` resolved;
 * - then the rewrite rules of zm-jetty-conf's jetty.xml.production, so `/dav/x` is `/service/dav/home/x`,
 *   `/home/x` is `/service/home/x`, `/Microsoft-Server-ActiveSync` is `/service/extension/zimbrasync`.
 * Returns null for a target that is not a valid origin-form path (the request gets 400).
 */
export function normalizeRequestPath(url: string | undefined): string | null {
  if (!url || url[0] !== '/' || url.length > 16384) return null;
  let end = url.length;
  const q = url.indexOf('?');
  if (q !== -1) end = q;
  const h = url.indexOf('#');
  if (h !== -1 && h < end) end = h;
  let path = url.slice(0, end);
  // Fast path: nothing to decode or resolve.
  if (!/[%;\\]|\/\/|\/\.|\0/.test(path)) return path;
  if (path.includes('%')) {
    const decoded = decodePath(path);
    if (decoded === null) return null;
    path = decoded;
  }
  if (path.includes('\0')) return null;
  const out: string[] = [];
  for (const rawSeg of path.split('/')) {
    const semi = rawSeg.indexOf(';');
    const seg = semi === -1 ? rawSeg : rawSeg.slice(0, semi);
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      out.pop();
      continue;
    }
    out.push(seg);
  }
  const trailing = path.length > 1 && path.endsWith('/') ? '/' : '';
  return out.length === 0 ? '/' : `/${out.join('/')}${trailing}`;
}

/**
 * Percent-decoding as Jetty 9.4's URIUtil.decodePath: UTF-8, falling back to ISO-8859-1 when the bytes
 * are not valid UTF-8 (`/R%E9sum%E9.pdf`). Jetty's `%uXXXX` form is refused (null): no client sends it.
 */
function decodePath(path: string): string | null {
  try {
    return decodeURIComponent(path);
  } catch {
    if (/%(?![0-9a-fA-F]{2})/.test(path)) return null;
    return path.replace(/%([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  }
}

/** jetty.xml.production's convenience rewrites (RewritePatternRule / RewriteRegexRule), in its order. */
const REWRITES: ReadonlyArray<readonly [RegExp, string]> = [
  [/^\/Microsoft-Server-ActiveSync(?:\/.*)?$/i, '/service/extension/zimbrasync'],
  [/^\/ews\/Exchange\.asmx(?:\/.*)?$/i, '/service/extension/zimbraews'],
  [/^\/principals(\/.*)?$/, '/service/dav/principals$1'],
  [/^\/dav(\/.*)?$/, '/service/dav/home$1'],
  [/^\/\.well-known(\/.*)?$/, '/service/.well-known$1'],
  [/^\/(?:zimbra\/)?home(\/.*)?$/, '/service/home$1'],
  [/^\/(?:zimbra\/)?user(\/.*)?$/, '/service/user$1'],
  [/^\/autodiscover(\/.*)?$/i, '/service/autodiscover$1'],
];

/** The servlet path a normalised path reaches after Jetty's rewrite rules. */
export function routedPath(path: string): string {
  for (const [re, to] of REWRITES) if (re.test(path)) return path.replace(re, to);
  return path;
}
