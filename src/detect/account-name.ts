/*
 * Login names as Zimbra resolves them, so every spelling of one account is one counter.
 *
 * Zimbra looks accounts up by name case-insensitively (LDAP), appends a domain to a bare name
 * (AuthUtil.basicAuthRequest and the AuthRequest handler use the request's virtual host; the
 * `zimbra.defaultDomain` key stands in for it here), and a trailing dot of a fully qualified domain
 * names the same domain. `x`, `X@EXAMPLE.COM`, `x@example.com.` and ` x@example.com ` are one account.
 */

const MAX_ACCOUNT_LENGTH = 256;

/**
 * Characters a login name never legitimately holds and that forge log lines: log4j writes the message
 * part raw (`authentication failed for [<name>]`), so a CR, LF or other control character in a name
 * writes an attacker-chosen line into mailbox.log. C0 controls, DEL, C1 controls, U+2028/U+2029.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export function hasUnsafeCharacters(raw: string): boolean {
  return UNSAFE.test(raw);
}

/** The canonical form of a login name, or undefined for an empty one. */
export function canonicalAccount(raw: string | undefined | null, defaultDomain?: string): string | undefined {
  if (!raw) return undefined;
  let a = raw.trim().toLowerCase();
  if (a.length === 0) return undefined;
  while (a.endsWith('.')) a = a.slice(0, -1);
  if (a.length === 0) return undefined;
  if (!a.includes('@') && defaultDomain) a = `${a}@${defaultDomain.toLowerCase().replace(/\.+$/, '')}`;
  return a.length > MAX_ACCOUNT_LENGTH ? a.slice(0, MAX_ACCOUNT_LENGTH) : a;
}
