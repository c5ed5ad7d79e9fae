import { XMLParser } from 'fast-xml-parser';

/*
 * Just enough SOAP to recognise logins: Zimbra's JSON form ({"Body":{"AuthRequest":{...}}}) and XML
 * (SOAP 1.1 and 1.2, any namespace prefix). The SOAP engine dispatches on the Body's children, and
 * runs the children of a BatchRequest, so those are the only places an AuthRequest takes effect.
 */

type Node = Record<string, unknown>;

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

/** Parses a JSON or XML SOAP document; null when it is neither (the caller decides what that means). */
export function parseSoap(text: string): Node | null {
  const t = text.trimStart();
  try {
    if (t.startsWith('{')) {
      const v = JSON.parse(t) as unknown;
      return v && typeof v === 'object' && !Array.isArray(v) ? (v as Node) : null;
    }
    if (t.startsWith('<')) {
      // A DTD could expand entities without bound; Zimbra refuses DTDs in SOAP too.
      if (/<!DOCTYPE|<!ENTITY/i.test(t)) return null;
      const v = xml.parse(t) as unknown;
      return v && typeof v === 'object' ? (v as Node) : null;
    }
  } catch {
    return null;
  }
  return null;
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

function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const n = asNode(v);
  if (!n) return undefined;
  const t = n['#text'] ?? n._content;
  return t === undefined || t === null ? undefined : String(t);
}

function field(node: Node, name: string): string | undefined {
  for (const v of [...children(node, name), ...children(node, `@_${name}`)]) {
    const t = text(v);
    if (t !== undefined) return t;
  }
  return undefined;
}

function body(doc: Node): Node | undefined {
  return asNode(doc.Body) ?? asNode(asNode(doc.Envelope)?.Body);
}

/** The elements the SOAP engine will execute: Body children and BatchRequest children. */
function executed(doc: Node, name: string): Node[] {
  const b = body(doc);
  const out: Node[] = [];
  for (const v of children(b, name)) {
    const n = asNode(v);
    if (n) out.push(n);
    else if (v === '') out.push({});
  }
  for (const batch of [...children(b, 'BatchRequest'), ...children(b, 'BatchResponse')]) {
    for (const v of children(asNode(batch), name)) {
      const n = asNode(v);
      if (n) out.push(n);
      else if (v === '') out.push({});
    }
  }
  return out;
}

export interface SoapAuthRequest {
  /** Login name as sent (not yet normalised). */
  readonly account: string | undefined;
  /** Carries something Zimbra checks: a password, a two-factor or recovery code, a preauth. */
  readonly credential: boolean;
}

export function authRequests(doc: Node): SoapAuthRequest[] {
  return executed(doc, 'AuthRequest').map((req) => {
    const account = field(req, 'account') ?? field(req, 'name');
    const credential = ['password', 'twoFactorCode', 'preauth', 'recoveryCode'].some((k) => {
      const v = field(req, k);
      return v !== undefined && v !== '';
    });
    return { account, credential };
  });
}

export interface SoapOutcome {
  /** Fault codes of the faults found (Body or BatchResponse). */
  readonly faultCodes: string[];
  /** AuthResponses with an authToken and no pending second factor. */
  readonly successes: number;
  /** AuthResponses saying twoFactorAuthRequired: the password was right, the code is still due. */
  readonly twoFactorPending: number;
}

function faultCode(fault: Node): string | undefined {
  for (const d of [...children(fault, 'Detail'), ...children(fault, 'detail')]) {
    for (const e of children(asNode(d), 'Error')) {
      const code = text(children(asNode(e), 'Code')[0]);
      if (code) return code.trim();
    }
  }
  return undefined;
}

export function soapOutcome(doc: Node): SoapOutcome {
  const faultCodes: string[] = [];
  for (const f of executed(doc, 'Fault')) {
    const code = faultCode(f);
    if (code) faultCodes.push(code);
  }
  let successes = 0;
  let twoFactorPending = 0;
  for (const r of executed(doc, 'AuthResponse')) {
    if (text(children(r, 'twoFactorAuthRequired')[0])?.trim() === 'true') twoFactorPending++;
    else if (children(r, 'authToken').length > 0) successes++;
  }
  return { faultCodes, successes, twoFactorPending };
}
