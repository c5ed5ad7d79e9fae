import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Forwarder } from '../../src/proxy/forwarder.js';

/*
 * Differential test of upstream framing: the same answer bytes, written by a raw upstream, are read
 * (a) by Node's own HTTP client (llhttp, the parser Node's users trust) and (b) through the
 * gatekeeper's forwarder (its own response parser and pool) by a client in front of it. Both must
 * give the same status, headers, body and decision to reuse the connection, or the gatekeeper
 * refuses the answer (502, or a cut connection once the head has gone out). Stricter than llhttp is
 * allowed; looser never is.
 *
 * The answers are generated from a fixed seed (GK_FUZZ_SEED, GK_FUZZ_CASES change it) out of
 * pieces where framing disagreements live: Content-Length lists and repeats, Transfer-Encoding
 * values and repeats, chunk-size lines and extensions, trailers, header case and whitespace,
 * Connection and Proxy-Connection, 1xx heads, HEAD/204/304, close-delimited bodies. Every
 * disagreement found on the way is kept below as a named case.
 */

interface Case {
  readonly name: string;
  readonly wire: string;
  readonly method: 'GET' | 'HEAD';
  /** The upstream closes the connection after the answer (a body framed by the close). */
  readonly close: boolean;
  /** Built only from well-formed pieces: the gatekeeper must serve it, not refuse it. */
  readonly canonical: boolean;
}

type Outcome =
  | { readonly kind: 'error'; readonly detail: string }
  | { readonly kind: 'ok'; readonly status: number; readonly headers: string[]; readonly contentLength: string[]; readonly body: string; readonly reuse: boolean };

/** Headers that describe a connection or a message's framing, compared apart (or not at all). */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'date', 'content-length']);

/** The end-to-end headers of an answer, as the gatekeeper must pass them on. */
function endToEnd(raw: string[]): { headers: string[]; contentLength: string[] } {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const t of raw[i + 1]!.split(',')) named.add(t.trim().toLowerCase());
  }
  const headers: string[] = [];
  const contentLength: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === 'content-length') contentLength.push(raw[i + 1]!);
    if (HOP.has(lower) || named.has(lower)) continue;
    headers.push(`${raw[i]}: ${raw[i + 1]}`);
  }
  return { headers, contentLength };
}

// ---------------------------------------------------------------- the generator

/** mulberry32: a small seeded PRNG, so a failing case can be found again by its seed and index. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  canonical = true;
  constructor(private readonly r: () => number) {}
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  /** Picks one of `good` (well-formed) most of the time, else one of `odd` (and marks the case). */
  pick<T>(good: readonly T[], odd: readonly T[], pOdd = 0.25): T {
    if (odd.length > 0 && this.chance(pOdd)) {
      this.canonical = false;
      return odd[this.int(odd.length)]!;
    }
    return good[this.int(good.length)]!;
  }
  name(n: string): string {
    return this.pick([n, n.toLowerCase(), n.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase())], [n.toUpperCase(), [...n].map((c, i) => (i % 2 ? c.toUpperCase() : c.toLowerCase())).join('')], 0.3);
  }
  body(): string {
    const n = this.int(3) === 0 ? 0 : 1 + this.int(40);
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(0x21 + this.int(94));
    return s;
  }
}

function generate(g: Gen, index: number): Case {
  const method = g.chance(0.15) ? 'HEAD' : 'GET';
  const version = g.pick(['HTTP/1.1'], ['HTTP/1.0'], 0.1);
  const status = g.pick([200, 200, 200, 201, 204, 301, 304, 404, 500], []);
  const reason = g.pick([' OK', ' Something'], ['', ' ', ' Odd\treason'], 0.15);
  let wire = '';
  if (g.chance(0.12)) wire += g.pick(['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n'], ['HTTP/1.1 102 Processing\r\n\r\n']);
  wire += `${version} ${status}${reason}\r\n`;
  const lines: string[] = [];
  const ows = (): string => g.pick(['', ' '], ['  ', '\t', ' \t'], 0.2);
  const trail = (): string => g.pick([''], [' ', '\t', ' \t '], 0.15);
  // Ordinary headers, with case and whitespace varied.
  for (let i = g.int(4); i > 0; i--) lines.push(`${g.name(g.pick(['X-Custom', 'Content-Type', 'Set-Cookie', 'Cache-Control'], []))}:${ows()}${g.pick(['text/html', 'a=1; Path=/', 'no-cache', 'v'], ['a  b', 'ü'], 0.1)}${trail()}`);
  if (g.chance(0.05)) { g.canonical = false; lines.push(g.pick([], ['X-Space : v', ' X-Fold: v', 'X-Nocolon', 'X-Bad\x01: v', 'X-Ctl: a\x01b', 'X-Lf: v\nX-Next: w'], 1)); }
  // Connection management.
  const conn = g.pick([null, 'keep-alive', 'close'], ['Close', 'close ', 'keep-alive, close', 'close, X-Custom', 'closed', 'x-close', 'upgrade', 'keep-alive,close', ' close'], 0.2);
  if (conn !== null) lines.push(`${g.name('Connection')}:${ows()}${conn}`);
  if (g.chance(0.08)) { g.canonical = false; lines.push(`${g.name('Proxy-Connection')}: ${g.pick([], ['close', 'keep-alive', 'Close'], 1)}`); }
  if (g.chance(0.1)) lines.push(`${g.name('Keep-Alive')}: timeout=${g.pick(['5', '60'], ['x', '0'])}`);
  // Framing.
  const noBody = method === 'HEAD' || status === 204 || status === 304;
  const body = noBody ? '' : g.body();
  const framing = g.pick(['length', 'chunked', 'close'], [], 0);
  let payload = '';
  let close = false;
  if (framing === 'length') {
    const n = String(body.length);
    const cl = g.pick([[n]], [[`${n}, ${n}`], [`${n},${n}`], [n, n], [` ${n}`], [`${n} `], [`${n}\t`], [`${n}\t `], [`${n} \t`], [`0${n}`], [`+${n}`], [`${n} ${n}`], [`${n}, ${Number(n) + 1}`], [n, String(Number(n) + 1)], ['-1'], [`${n}x`], [''], [`0x${n}`]], 0.25);
    for (const v of cl) lines.push(`${g.name('Content-Length')}:${v.startsWith(' ') ? '' : ' '}${v}`);
    if (g.chance(0.04)) { g.canonical = false; lines.push(`${g.name('Transfer-Encoding')}: chunked`); }
    payload = body;
  } else if (framing === 'chunked') {
    const te = g.pick([['chunked'], ['gzip, chunked']], [['Chunked'], ['CHUNKED'], ['chunked '], ['chunked\t'], [' chunked'], ['\tchunked'], ['gzip,chunked'], ['gzip ,chunked'], ['chunked, gzip'], ['chunked,'], [', chunked'], ['gzip', 'chunked'], ['chunked', ''], ['', 'chunked'], ['chunked', 'chunked'], ['chunked', 'gzip'], ['identity, chunked'], ['chunked;q=1'], ['xchunked'], ['chunkedx'], ['']], 0.3);
    for (const v of te) lines.push(`${g.name('Transfer-Encoding')}:${v.startsWith(' ') || v.startsWith('\t') ? '' : ' '}${v}`);
    if (g.chance(0.04)) { g.canonical = false; lines.push(`${g.name('Content-Length')}: ${body.length}`); }
    if (!noBody) {
      const ext = (): string => g.pick([''], [';a', ';a=b', ';a="b c"', ';a="b\\"c"', ';a="unbalanced', ' ', '\t', ' ;a', '\t;a', ';', '; a', ';a =b', ';a= b', ';a=b;c', ';a=', ';a="b"c', ';a=b c', ';a="\\'], 0.12);
      const hex = (k: number): string => g.pick([k.toString(16)], [k.toString(16).toUpperCase(), `0${k.toString(16)}`, `000000000000000${k.toString(16)}`, `0x${k.toString(16)}`, `-${k.toString(16)}`, ` ${k.toString(16)}`], 0.08);
      let rest = body;
      while (rest.length > 0) {
        const k = Math.min(rest.length, 1 + g.int(20));
        payload += `${hex(k)}${ext()}\r\n${rest.slice(0, k)}${g.pick(['\r\n'], ['\n', '\r', 'x\r\n'], 0.03)}`;
        rest = rest.slice(k);
      }
      payload += `${g.pick(['0'], ['00', '0000000000000000', '0 '], 0.06)}${ext()}\r\n`;
      payload += g.pick([''], ['X-Trailer: t\r\n', 'X-Trailer:t\r\nX-Two: 2\r\n', 'nocolon\r\n', 'X-T : v\r\n', ' X-T: v\r\n', 'X-T: v\n', ': v\r\n', 'X-T:\r\n', 'X-T: a\x01b\r\n'], 0.2);
      payload += '\r\n';
    }
    close = te.length === 1 && /gzip$/.test(te[0]!) && !noBody;
  } else {
    payload = body;
    close = !noBody;
  }
  wire += `${lines.join('\r\n')}${lines.length ? '\r\n' : ''}\r\n${payload}`;
  return { name: `generated #${index}`, wire, method, close, canonical: g.canonical };
}

// ---------------------------------------------------------------- the named cases

const OK = 'HTTP/1.1 200 OK\r\n';
const NAMED: Case[] = [
  // The disagreements found against main (issue 17); each must read as llhttp reads it, or be refused.
  { name: 'Transfer-Encoding: chunked<TAB> is not chunked to llhttp (read to close, never reused)', wire: `${OK}Transfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, method: 'GET', close: false, canonical: false },
  { name: 'two Transfer-Encoding headers, the second empty', wire: `${OK}Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n5\r\nhello\r\n0\r\n\r\n`, method: 'GET', close: false, canonical: false },
  { name: 'two Transfer-Encoding headers, the first empty', wire: `${OK}Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, method: 'GET', close: false, canonical: false },
  { name: 'Content-Length: 1, 1 is collapsed to one value', wire: `${OK}Content-Length: 1, 1\r\n\r\nx`, method: 'GET', close: false, canonical: false },
  { name: 'two equal Content-Length lines are collapsed to one', wire: `${OK}Content-Length: 1\r\nContent-Length: 1\r\n\r\nx`, method: 'GET', close: false, canonical: false },
  { name: 'a chunk-size line with a space and no extension', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n`, method: 'GET', close: false, canonical: false },
  { name: 'a chunk extension with an unbalanced quote', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5;a="b\r\nhello\r\n0\r\n\r\n`, method: 'GET', close: false, canonical: false },
  { name: 'a trailer line without a colon', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nnocolon\r\n\r\n`, method: 'GET', close: false, canonical: false },
  { name: 'Proxy-Connection: close stops reuse', wire: `${OK}Proxy-Connection: close\r\nContent-Length: 1\r\n\r\nx`, method: 'GET', close: false, canonical: false },
  // Well-formed answers the gatekeeper must keep serving (and reusing).
  { name: 'plain Content-Length', wire: `${OK}Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello`, method: 'GET', close: false, canonical: true },
  { name: 'plain chunked with a trailer', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: v\r\n\r\n`, method: 'GET', close: false, canonical: true },
  { name: 'chunk extension token=quoted', wire: `${OK}Transfer-Encoding: chunked\r\n\r\n5;a="b c"\r\nhello\r\n0\r\n\r\n`, method: 'GET', close: false, canonical: true },
  { name: 'close-delimited', wire: `${OK}Content-Type: text/plain\r\n\r\nuntil close`, method: 'GET', close: true, canonical: true },
  { name: '304 with a Content-Length', wire: 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n', method: 'GET', close: false, canonical: true },
  { name: 'HEAD with a Content-Length', wire: `${OK}Content-Length: 2048\r\n\r\n`, method: 'HEAD', close: false, canonical: true },
  { name: '100 then 200', wire: `HTTP/1.1 100 Continue\r\n\r\n${OK}Content-Length: 2\r\n\r\nok`, method: 'GET', close: false, canonical: true },
];

// ---------------------------------------------------------------- the two readers

/** The raw upstream: answers `/case/N` with case N's bytes, then closes if the case says so. */
class RawUpstream {
  readonly cases = new Map<number, Case>();
  readonly sockets = new Map<number, Set<net.Socket>>();
  /** Cases already hung up: a connection whose request arrives after that gets its answer and the close at once. */
  private readonly hungUp = new Set<number>();
  private readonly server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      const id = Number(/^[A-Z]+ \/case\/(\d+) /.exec(buf)?.[1] ?? -1);
      const c = this.cases.get(id);
      if (!c) return void socket.destroy();
      let set = this.sockets.get(id);
      if (!set) this.sockets.set(id, (set = new Set()));
      set.add(socket);
      socket.on('close', () => set.delete(socket));
      // A request that arrives after the hang-up (a slow, loaded machine) must not wait for one.
      if (c.close || this.hungUp.has(id)) socket.end(c.wire, 'latin1');
      else socket.write(c.wire, 'latin1');
    };
    socket.on('data', onData);
  });
  port = 0;

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** Closes case `id`'s connections (an answer that waits for more gets its end). */
  hangUp(id: number): void {
    this.hungUp.add(id);
    for (const s of this.sockets.get(id) ?? []) s.end();
  }

  /** Forgets a finished case. */
  done(id: number): void {
    this.hangUp(id);
    this.hungUp.delete(id);
    this.sockets.delete(id);
    this.cases.delete(id);
  }

  async stop(): Promise<void> {
    for (const set of this.sockets.values()) for (const s of set) s.destroy();
    this.server.close();
    await once(this.server, 'close');
  }
}

/** Reads a response to the end; `reuse` decides, once it ended, whether its connection is kept. */
function read(req: http.ClientRequest, reuse: (res: http.IncomingMessage) => Promise<boolean>): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const settle = (o: Outcome): void => {
      if (!done) { done = true; resolve(o); }
    };
    req.on('error', (err) => settle({ kind: 'error', detail: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('aborted', () => settle({ kind: 'error', detail: 'aborted mid-body' }));
      res.on('error', (err) => settle({ kind: 'error', detail: err.message }));
      res.on('end', () => {
        if (!res.complete) return settle({ kind: 'error', detail: 'incomplete body' });
        const { headers, contentLength } = endToEnd(res.rawHeaders);
        const body = Buffer.concat(chunks).toString('latin1');
        void reuse(res).then((r) => settle({ kind: 'ok', status: res.statusCode!, headers, contentLength, body, reuse: r }));
      });
    });
    req.end();
  });
}

/** Node's own client straight to the upstream: reuse is whether its agent kept the socket. */
function direct(up: RawUpstream, id: number, c: Case): Promise<Outcome> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const req = http.request({ host: '127.0.0.1', port: up.port, path: `/case/${id}`, method: c.method, agent });
  // Watched from the start: the agent may take the socket back before the response's 'end' is seen.
  const decided = new Promise<boolean>((resolve) => {
    agent.once('free', () => resolve(true));
    req.once('socket', (socket) => socket.once('close', () => resolve(false)));
  });
  return read(req, () => decided).finally(() => agent.destroy());
}

/** The gatekeeper's forwarder in front of the same upstream; reuse is whether its pool kept the connection. */
async function proxied(up: RawUpstream, id: number, c: Case): Promise<Outcome> {
  const forwarder = new Forwarder({
    target: `http://127.0.0.1:${up.port}`,
    tlsVerify: false,
    maxSockets: 4,
    upstreamTimeoutMs: 10_000,
    sendError: (_req, res) => {
      res.writeHead(502, { 'x-gatekeeper-refused': '1' });
      res.end();
    },
  });
  const front = http.createServer((req, res) => forwarder.web(req, res));
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  try {
    const req = http.request({ host: '127.0.0.1', port: (front.address() as net.AddressInfo).port, path: `/case/${id}`, method: c.method, agent: false });
    const o = await read(req, async () => forwarder.stats().idle === 1);
    if (o.kind === 'ok' && o.status === 502 && o.headers.includes('x-gatekeeper-refused: 1')) return { kind: 'error', detail: '502' };
    return o;
  } finally {
    forwarder.close();
    front.close();
    front.closeAllConnections();
  }
}

/** Runs both readers; an answer one of them still waits for after `quietMs` gets the upstream's close. */
async function both(up: RawUpstream, id: number, c: Case, quietMs: number): Promise<{ node: Outcome; ours: Outcome }> {
  up.cases.set(id, c);
  let timer: NodeJS.Timeout | undefined;
  const hangUp = new Promise<void>((resolve) => {
    timer = setTimeout(() => { up.hangUp(id); resolve(); }, quietMs);
  });
  void hangUp;
  try {
    const [node, ours] = await Promise.all([direct(up, id, c), proxied(up, id, c)]);
    return { node, ours };
  } finally {
    clearTimeout(timer);
    up.done(id);
  }
}

/** Why the two outcomes disagree in a way the gatekeeper must not, or null when they agree. */
function disagreement(c: Case, node: Outcome, ours: Outcome): string | null {
  if (ours.kind === 'error') return c.canonical ? `a well-formed answer was refused (${ours.detail}; Node: ${node.kind})` : null;
  if (node.kind === 'error') {
    // Node refuses a repeated equal Content-Length; the gatekeeper takes it as the one value it
    // repeats (RFC 9110 §8.6) and passes exactly one on.
    const equalLengths = /\r\ncontent-length:[^\r]*(,|\r\ncontent-length:)/i.test(c.wire);
    if (equalLengths && ours.contentLength.length === 1 && /^\d+$/.test(ours.contentLength[0]!)) return null;
    return `Node refuses it (${node.detail}) but the gatekeeper served ${ours.status} ${JSON.stringify(ours.body)}`;
  }
  if (node.status !== ours.status) return `status ${node.status} vs ${ours.status}`;
  if (node.body !== ours.body) return `body ${JSON.stringify(node.body)} vs ${JSON.stringify(ours.body)}`;
  if (JSON.stringify(node.headers) !== JSON.stringify(ours.headers)) return `headers ${JSON.stringify(node.headers)} vs ${JSON.stringify(ours.headers)}`;
  if (ours.contentLength.length > 1) return `the gatekeeper passed on ${ours.contentLength.length} Content-Length headers`;
  if (ours.contentLength.length === 1 && node.contentLength.some((v) => !v.split(',').every((p) => p.trim() === ours.contentLength[0]))) return `Content-Length ${JSON.stringify(node.contentLength)} vs ${JSON.stringify(ours.contentLength)}`;
  // Reuse: never where Node would not; not reusing an HTTP/1.0 connection Node would keep is fine.
  if (ours.reuse && !node.reuse) return 'the gatekeeper reuses a connection Node closes';
  if (!ours.reuse && node.reuse && !/^HTTP\/1\.0 /m.test(c.wire.replace(/^HTTP\/1\.1 1\d\d[^]*?\r\n\r\n/, ''))) return 'the gatekeeper closes a connection Node reuses';
  return null;
}

describe('upstream framing: the gatekeeper against Node\'s llhttp, answer by answer', () => {
  const up = new RawUpstream();
  before(() => up.start());
  after(() => up.stop());

  for (const [i, c] of NAMED.entries()) {
    it(c.name, { timeout: 30_000 }, async () => {
      const { node, ours } = await both(up, i, c, 1500);
      assert.equal(disagreement(c, node, ours), null, `${JSON.stringify(c.wire)}\nNode: ${JSON.stringify(node)}\nours: ${JSON.stringify(ours)}`);
      if (c.canonical) assert.equal(ours.kind, 'ok');
    });
  }

  const seed = Number(process.env.GK_FUZZ_SEED ?? 17);
  const count = Number(process.env.GK_FUZZ_CASES ?? 2000);
  it(`${count} generated answers (seed ${seed}) read the same or are refused`, { timeout: 300_000 }, async () => {
    const g = new Gen(rng(seed));
    const cases: Case[] = [];
    for (let i = 0; i < count; i++) {
      g.canonical = true;
      cases.push(generate(g, i));
    }
    const failures: string[] = [];
    let refused = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < cases.length) {
        const i = next++;
        const c = cases[i]!;
        const { node, ours } = await both(up, 1000 + i, c, 1500);
        if (ours.kind === 'error') refused++;
        const why = disagreement(c, node, ours);
        if (why) failures.push(`#${i} ${why}\n  wire ${JSON.stringify(c.wire)} (${c.method})\n  Node ${JSON.stringify(node)}\n  ours ${JSON.stringify(ours)}`);
      }
    };
    await Promise.all(Array.from({ length: Number(process.env.GK_FUZZ_WORKERS ?? 12) }, worker));
    console.log(`framing fuzz: ${count} answers, ${refused} refused by the gatekeeper, ${failures.length} disagreements`);
    assert.equal(failures.length, 0, failures.slice(0, Number(process.env.GK_FUZZ_SHOW ?? 8)).join('\n'));
  });
});
