/**
 * The path Zimbra's Jetty will route on, so detection cannot be dodged with `//service/soap`,
 * `/service/./soap`, `/service/%73oap` or `/service/soap;x=y`. Returns null for a path that is not
 * a valid origin-form target (the request gets 400).
 */
export function normalizeRequestPath(url: string | undefined): string | null {
  if (!url || url[0] !== '/' || url.length > 16384) return null;
  const q = url.indexOf('?');
  let path = q === -1 ? url : url.slice(0, q);
  // Fast path: nothing to decode or resolve.
  if (!/[%;]|\/\/|\/\.|\0/.test(path)) return path;
  if (path.includes('%')) {
    try {
      path = decodeURIComponent(path);
    } catch {
      return null;
    }
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
