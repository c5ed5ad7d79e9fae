import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { parseStrictJson } from './strict-json.js';

/*
 * SOAP as Zimbra's SoapEngine reads it, or a refusal (zm-mailbox store/src/java/com/zimbra/soap/SoapEngine.java):
 * - the FIRST byte decides: `<` is XML (Element.parseXML, Xerces, which honours a declared encoding and
 *   detects UTF-16 from the bytes), anything else is JSON read by Zimbra's own lenient reader
 *   (common/.../soap/Element.java: `\xHH`, backslash before any character, single quotes, unquoted
 *   keys, trailing garbage, its own rules for duplicate keys).
 * - dispatch() runs the Body's first child; a BatchRequest runs each of its children in order, and its
 *   answer (HTTP 200) holds one Fault per failed child, tagged with the child's `requestId`.
 * A request body is accepted only in the subset where this reading and Zimbra's cannot differ:
 * UTF-8 XML that is well formed, with no DTD and one Body; standard JSON with no duplicate key. Every
 * Zimbra client sends that. Anything else is refused by the caller (400), never guessed at.
 */

export type Node = Record<string, unknown>;

const xml = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  removeNSPrefix: true,
  processEntities: true,
  htmlEntities: true,
  textNodeName: '#text',
  parseTagValue: false,
  parseAttributeValue: false,
});

const utf8 = new TextDecoder('utf-8', { fatal: true });

export type StrictSoap = { readonly ok: true; readonly doc: Node } | { readonly ok: false; readonly reason: string };

const XML_ENCODINGS = /^(?:utf-?8|us-ascii|ascii)$/i;
/** Single-byte encodings a declaration may name: element names are ASCII in them, read as Latin-1. */
const LATIN1_ENCODINGS = /^(?:iso-8859-1|iso8859-1|latin-?1|l1)$/i;

/** Reads a SOAP request body the way Zimbra would, or says why it cannot be read with certainty. */
export function parseSoapRequest(raw: Buffer): StrictSoap {
  if (raw.length >= 2 && ((raw[0] === 0x3c && raw[1] === 0x00) || (raw[0] === 0x00 && raw[1] === 0x3c) || (raw[0] === 0xfe && raw[1] === 0xff) || (raw[0] === 0xff && raw[1] === 0xfe))) {
    return { ok: false, reason: 'UTF-16 body' };
  }
  let text: string;
  const declared = raw[0] === 0x3c ? /^<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']/.exec(raw.subarray(0, 200).toString('latin1'))?.[1] : undefined;
  try {
    text = declared && LATIN1_ENCODINGS.test(declared) ? raw.toString('latin1') : utf8.decode(raw);
  } catch {
    return { ok: false, reason: 'body is not UTF-8' };
  }
  if (text.includes('\0')) return { ok: false, reason: 'NUL byte in body' };
  if (raw[0] === 0x3c /* < */) {
    if (declared !== undefined && !XML_ENCODINGS.test(declared) && !LATIN1_ENCODINGS.test(declared)) return { ok: false, reason: `XML declared in ${declared.slice(0, 32)}` };
    // A DTD could define entities Xerces expands and this parser does not (and would let them grow without bound).
    if (/<!DOCTYPE|<!ENTITY/i.test(text)) return { ok: false, reason: 'DTD in XML' };
    const valid = XMLValidator.validate(text);
    if (valid !== true) return { ok: false, reason: `malformed XML (${valid.err.msg.slice(0, 80)})` };
    let doc: unknown;
    try {
      doc = xml.parse(text);
    } catch {
      return { ok: false, reason: 'malformed XML' };
    }
    const node = asNode(doc);
    if (!node) return { ok: false, reason: 'empty XML document' };
    const envelope = asNode(node.Envelope);
    if (Array.isArray(node.Envelope) || (envelope && Array.isArray(envelope.Body))) return { ok: false, reason: 'more than one Envelope or Body' };
    return { ok: true, doc: node };
  }
  const parsed = parseStrictJson(text);
  if (!parsed.ok) return parsed;
  const node = asNode(parsed.value);
  if (!node) return { ok: false, reason: 'JSON body is not an object' };
  if (node.Body !== undefined && !asNode(node.Body)) return { ok: false, reason: 'JSON Body is not one object' };
  return { ok: true, doc: node };
}

/** A SOAP answer from Zimbra (trusted to be well formed: no strictness needed); null when unreadable. */
export function parseSoapAnswer(text: string): Node | null {
  const t = text.trimStart();
  let doc: Node | undefined;
  try {
    if (t.startsWith('{')) doc = asNode(JSON.parse(t));
    else if (t.startsWith('<') && !/<!DOCTYPE|<!ENTITY/i.test(t)) doc = asNode(xml.parse(t));
  } catch {
    return null;
  }
  // A SOAP answer has an Envelope (XML) or a Body (JSON); an HTML error page is not one.
  return doc && (asNode(doc.Envelope) || asNode(doc.Body)) ? doc : null;
}

function asNode(v: unknown): Node | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Node) : undefined;
}

/** The values of child `name`: none, one, or several (repeated elements become arrays). */
function children(node: Node | undefined, name: string): unknown[] {
  if (!node) return [];
  const v = node[name];
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

function nodes(node: Node | undefined, name: string): Node[] {
  return children(node, name).map((v) => asNode(v) ?? {});
}

function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const n = asNode(v);
  if (!n) return undefined;
  const t = n['#text'] ?? n._content;
  return t === undefined || t === null ? undefined : String(t);
}

/** Requests that check a password, a second factor, a recovery code or a preauth key. */
export interface CredentialRequest {
  readonly kind: 'AuthRequest' | 'ChangePasswordRequest';
  /** Login name as sent (not yet canonical). */
  readonly account: string | undefined;
  /** Carries a credential Zimbra checks (AuthRequest with only an auth token carries none). */
  readonly credential: boolean;
  /** A success may be credited to `account`: false when Zimbra could answer for another account. */
  readonly creditable: boolean;
  /** The request names two different accounts (attribute and element, or two elements): refused. */
  readonly ambiguous: boolean;
  /** The batch correlator Zimbra copies onto the answer. */
  readonly requestId: string | undefined;
}

/**
 * Every value Zimbra's `getAttribute(key)` could return for `key` (common/.../soap/Element.java):
 * XMLElement looks at the attribute, then the first child element's text; JSONElement at the key
 * (a value, or an element's `_content`), then the `_attrs` map. Callers decide on ALL of them, so an
 * empty child cannot hide a password given as an attribute.
 */
function candidates(node: Node, key: string): string[] {
  const out: string[] = [];
  for (const v of [...children(node, `@_${key}`), ...children(node, key), ...children(asNode(node._attrs), key)]) {
    const t = text(v);
    if (t !== undefined) out.push(t);
  }
  return out;
}

const CREDENTIALS = ['password', 'twoFactorCode', 'recoveryCode', 'preauth'] as const;

/** A request's login name(s): `account` (element or attribute; `by` other than name kept apart), admin `name`. */
function accountsOf(req: Node): { names: string[]; byName: boolean } {
  const names = new Set<string>();
  let byName = true;
  for (const el of [...children(req, 'account'), ...children(req, '@_account'), ...children(asNode(req._attrs), 'account')]) {
    const value = text(el);
    if (value === undefined || value === '') continue;
    const n = asNode(el);
    const by = n ? text(n.by ?? n['@_by']) : undefined;
    const other = by !== undefined && by !== 'name' && by !== '';
    if (other) byName = false;
    names.add(other ? `${by}:${value}` : value);
  }
  for (const v of candidates(req, 'name')) if (v !== '') names.add(v);
  return { names: [...names], byName };
}

function credentialRequest(kind: CredentialRequest['kind'], req: Node): CredentialRequest {
  const { names, byName } = accountsOf(req);
  const credential = kind === 'ChangePasswordRequest' || CREDENTIALS.some((k) => candidates(req, k).some((v) => v !== ''));
  // Zimbra answers an AuthRequest carrying an auth token for the token's account (Auth.handle), and
  // resolves a bare name through `virtualHost`: a success then proves nothing about `account`.
  const indirect = ['authToken', 'jwtToken', 'virtualHost'].some((k) => candidates(req, k).length > 0 || children(req, k).length > 0);
  return {
    kind,
    account: names[0],
    credential,
    creditable: !indirect && names.length === 1 && byName,
    ambiguous: names.length > 1,
    requestId: candidates(req, 'requestId')[0],
  };
}

/** Where SoapEngine executes requests: the Body (its first child), and every child of a BatchRequest. */
const CONTAINERS = ['Envelope', 'Body', 'BatchRequest'] as const;
/** Where answers sit: the Body and a BatchResponse. */
const ANSWER_CONTAINERS = ['Envelope', 'Body', 'BatchResponse'] as const;

/**
 * Every AuthRequest and ChangePasswordRequest SoapEngine could execute in `doc`: the Body's children
 * (all of them, though only the first runs: counting more is the safe side) and the children of any
 * BatchRequest (nested ones too). An unenveloped document is searched the same way.
 */
export function credentialRequests(doc: Node): CredentialRequest[] {
  const out: CredentialRequest[] = [];
  const walk = (node: Node, depth: number): void => {
    if (depth > 8) return;
    for (const req of nodes(node, 'AuthRequest')) out.push(credentialRequest('AuthRequest', req));
    // needsAuth=false: account + oldPassword are checked with no login, no audit line and no 2FA.
    for (const req of nodes(node, 'ChangePasswordRequest')) out.push(credentialRequest('ChangePasswordRequest', req));
    for (const name of CONTAINERS) for (const child of nodes(node, name)) walk(child, depth + 1);
  };
  walk(doc, 0);
  return out;
}

/** One answer to a credential request: a fault code, or a success. */
export interface SoapAnswerItem {
  readonly fault: string | undefined;
  readonly success: boolean;
  /** AuthResponse with twoFactorAuthRequired: the password was right, the second factor is still due. */
  readonly twoFactorPending: boolean;
  readonly requestId: string | undefined;
}

function faultCode(fault: Node): string | undefined {
  for (const d of [...nodes(fault, 'Detail'), ...nodes(fault, 'detail')]) {
    for (const e of nodes(d, 'Error')) {
      const code = text(children(e, 'Code')[0]);
      if (code) return code.trim();
    }
  }
  return undefined;
}

/** The faults and login answers in a SOAP answer (Body, BatchResponse), in document order per kind. */
export function soapAnswers(doc: Node): SoapAnswerItem[] {
  const out: SoapAnswerItem[] = [];
  const walk = (node: Node, depth: number): void => {
    if (depth > 8) return;
    for (const f of nodes(node, 'Fault')) out.push({ fault: faultCode(f) ?? '', success: false, twoFactorPending: false, requestId: candidates(f, 'requestId')[0] });
    for (const r of nodes(node, 'AuthResponse')) {
      const pending = text(children(r, 'twoFactorAuthRequired')[0])?.trim() === 'true';
      out.push({ fault: undefined, success: !pending && children(r, 'authToken').length > 0, twoFactorPending: pending, requestId: candidates(r, 'requestId')[0] });
    }
    for (const r of nodes(node, 'ChangePasswordResponse')) out.push({ fault: undefined, success: true, twoFactorPending: false, requestId: candidates(r, 'requestId')[0] });
    for (const name of ANSWER_CONTAINERS) for (const child of nodes(node, name)) walk(child, depth + 1);
  };
  walk(doc, 0);
  return out;
}
