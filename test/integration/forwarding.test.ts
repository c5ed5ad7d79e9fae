import assert from 'node:assert/strict';
import http from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGatekeeper, testConfig, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';

/**
 * HTTP semantics of the forwarder (undici pool + raw dispatch handler), against an upstream written
 * for each case: what a user's browser or a DAV client would notice if the proxy got them wrong.
 */

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The upstream saw the client's request end before it answered (client went away). */
  aborted: boolean;
}

/** Decodes a complete chunked body, or null while more is needed. */
function dechunk(raw: string): string | null {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', at);
    if (eol === -1) return null;
    const size = parseInt(raw.slice(at, eol), 16);
    if (size === 0) return raw.indexOf('\r\n', eol + 2) === -1 ? null : out;
    if (raw.length < eol + 2 + size + 2) return null;
    out += raw.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** Reads one HTTP/1.1 response off a kept-alive socket (content-length or chunked body). */
function readResponse(socket: Socket): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.subarray(0, end).toString('latin1');
      let body: string | null;
      if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
        body = dechunk(buf.subarray(end + 4).toString('latin1'));
      } else {
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        body = buf.length < end + 4 + len ? null : buf.subarray(end + 4, end + 4 + len).toString('latin1');
      }
      if (body === null) return;
      socket.off('data', onData);
      resolve({ head, body });
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

/** Sends a GET on a new raw connection and leaves it open (a long poll, a client about to leave). */
function openGet(port: number, path: string): Socket {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  socket.write(`GET ${path} HTTP/1.1\r\nHost: mail.example.com\r\n\r\n`);
  return socket;
}

describe('forwarding: HTTP semantics through the gatekeeper', () => {
  let upstream: http.Server;
  let gk: GatekeeperProcess;
  const seen: Seen[] = [];

  before(async () => {
    upstream = http.createServer((req, res) => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '', aborted: false };
      seen.push(s);
      req.on('data', (c: Buffer) => (s.body += c.toString('latin1')));
      res.on('close', () => {
        if (!res.writableFinished) s.aborted = true;
      });
      req.on('end', () => {
        if (req.url === '/hop') {
          // Hop-by-hop headers about this (pooled) connection must not reach the client.
          res.writeHead(200, [
            ['Connection', 'close, X-Private'],
            ['Keep-Alive', 'timeout=5'],
            ['X-Private', 'internal'],
            ['Set-Cookie', 'ZM_TEST=1; Path=/'],
            ['Set-Cookie', 'ZM_AUTH_TOKEN=abc; Path=/; HttpOnly'],
            ['Content-Type', 'text/plain'],
          ].flat());
          res.end('hop');
        } else if (req.url === '/chunked') {
          res.writeHead(200, { 'content-type': 'text/plain' }); // no length: chunked to us
          res.write('part1,');
          setTimeout(() => res.end('part2'), 20);
        } else if (req.url === '/early-hints') {
          res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
          res.end('after hints');
        } else if (req.url === '/cut') {
          // Zimbra dies halfway through an answer.
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
          res.write('x'.repeat(1000));
          setTimeout(() => res.socket?.destroy(), 20);
        } else if (req.url?.startsWith('/longpoll')) {
          // Like Zimbra's NoOpRequest wait: no answer until something happens (here: never).
        } else {
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(s.body || 'ok')) });
          res.end(req.method === 'HEAD' ? undefined : s.body || 'ok');
        }
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    gk = await startGatekeeper(testConfig(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`));
  });
  after(async () => {
    await gk.stop();
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  });

  const port = (): number => Number(new URL(gk.url('web', '/')).port);

  it('drops the upstream hop-by-hop headers, keeps the client connection open and every Set-Cookie', async () => {
    const socket = connect({ host: '127.0.0.1', port: port() });
    try {
      socket.write('GET /hop HTTP/1.1\r\nHost: mail.example.com\r\n\r\n');
      const first = await readResponse(socket);
      assert.match(first.head, /^HTTP\/1\.1 200/);
      assert.doesNotMatch(first.head, /\r\nkeep-alive: *timeout=5\b/i, "the upstream's Keep-Alive (Node sets the client's own)");
      assert.doesNotMatch(first.head, /\r\nx-private:/i);
      assert.doesNotMatch(first.head, /\r\nconnection: *close/i, "the upstream's Connection: close is not the client's");
      assert.equal(first.head.match(/\r\nset-cookie:/gi)?.length, 2);
      assert.equal(first.body, 'hop');
      // The same client connection serves a second request.
      socket.write('GET /again HTTP/1.1\r\nHost: mail.example.com\r\n\r\n');
      const second = await readResponse(socket);
      assert.match(second.head, /^HTTP\/1\.1 200/);
    } finally {
      socket.destroy();
    }
  });

  it("honours the client's Connection: close without passing it upstream", async () => {
    const socket = connect({ host: '127.0.0.1', port: port() });
    const closed = new Promise((r) => socket.once('close', r));
    socket.write('GET /bye HTTP/1.1\r\nHost: mail.example.com\r\nConnection: close\r\n\r\n');
    const r = await readResponse(socket);
    assert.match(r.head, /\r\nconnection: close/i);
    await closed;
    const upstreamSaw = seen.find((s) => s.url === '/bye')!;
    assert.notEqual(upstreamSaw.headers.connection, 'close', 'the pooled upstream connection is not closed for it');
  });

  it('streams a chunked request body (Expect: 100-continue) and a chunked answer intact', async () => {
    const body = 'x'.repeat(100_000);
    const reply = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: port(), method: 'PUT', path: '/upload', headers: { 'transfer-encoding': 'chunked', expect: '100-continue' } }, (res) => {
        let text = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.on('continue', () => {
        req.write(body.slice(0, 50_000));
        req.end(body.slice(50_000));
      });
    });
    assert.equal(reply.status, 200);
    assert.equal(reply.text.length, body.length);
    const upstreamSaw = seen.find((s) => s.url === '/upload')!;
    assert.equal(upstreamSaw.body.length, body.length);
    assert.equal(upstreamSaw.headers.expect, undefined, 'the 100-continue was handled by the gatekeeper');

    const chunked = await fetch(gk.url('web', '/chunked'));
    assert.equal(await chunked.text(), 'part1,part2');
  });

  it('answers HEAD with the upstream length and no body; 1xx informational answers are not passed on', async () => {
    const head = await fetch(gk.url('web', '/head'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), '2');
    assert.equal(await head.text(), '');
    const hints = await fetch(gk.url('web', '/early-hints'));
    assert.equal(hints.status, 200);
    assert.equal(await hints.text(), 'after hints');
  });

  it('300 open long polls (webmail tabs) do not hold up anyone else', async () => {
    // Each open Zimbra web client tab keeps a NoOpRequest waiting upstream; the upstream pool must
    // have room for all of them and for the requests that come meanwhile (the old default was 256).
    const polls: Socket[] = [];
    try {
      for (let i = 0; i < 300; i++) polls.push(openGet(port(), `/longpoll?tab=${i}`));
      await waitFor(() => seen.filter((s) => s.url.startsWith('/longpoll?tab=')).length === 300, 10_000, '300 long polls upstream');
      const started = Date.now();
      const r = await fetch(gk.url('web', '/meanwhile'), { signal: AbortSignal.timeout(5000) });
      assert.equal(r.status, 200);
      assert.ok(Date.now() - started < 2000, `served in ${Date.now() - started} ms`);
    } finally {
      for (const s of polls) s.destroy();
    }
    await waitFor(() => seen.filter((s) => s.url.startsWith('/longpoll?tab=') && s.aborted).length === 300, 10_000, 'every long poll aborted upstream').catch((e) => { throw new Error(`${e.message}: ${seen.filter((s) => s.url.startsWith('/longpoll?tab=') && s.aborted).length} of 300`); });
  });

  it('an answer cut short upstream is cut short for the client too (never passed off as complete)', async () => {
    const r = await fetch(gk.url('web', '/cut'));
    assert.equal(r.status, 200);
    await assert.rejects(r.text(), 'the body ends in an error, not as a short complete body');
    assert.equal((await fetch(gk.url('web', '/after-cut'))).status, 200, 'still serving');
  });

  it('a client that gives up on a long poll frees the upstream request at once', async () => {
    const socket = connect({ host: '127.0.0.1', port: port() });
    socket.on('error', () => undefined);
    socket.write('GET /longpoll HTTP/1.1\r\nHost: mail.example.com\r\n\r\n');
    await waitFor(() => seen.some((s) => s.url === '/longpoll'), 3000, 'the long poll reached the upstream');
    socket.destroy();
    await waitFor(() => seen.find((s) => s.url === '/longpoll')?.aborted, 3000, 'the upstream request was aborted');
    // And the gatekeeper goes on serving.
    assert.equal((await fetch(gk.url('web', '/after'))).status, 200);
  });
});

describe('forwarding: requests waiting for an upstream connection (proxy.maxSockets reached)', () => {
  let upstream: http.Server;
  let gk: GatekeeperProcess;
  const urls: string[] = [];

  before(async () => {
    upstream = http.createServer((req, res) => {
      urls.push(req.url ?? '');
      if (req.url === '/longpoll') return; // held until the client gives up
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    gk = await startGatekeeper(testConfig(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, { proxy: { maxSockets: 1 } }));
  });
  after(async () => {
    await gk.stop();
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  });

  it('a request whose client left while it waited is never sent upstream', async () => {
    const port = gk.ports.web!;
    const poll = openGet(port, '/longpoll'); // holds the only upstream connection
    await waitFor(() => urls.includes('/longpoll'), 3000, 'the long poll reached the upstream');
    const waiting = openGet(port, '/left-while-waiting');
    await new Promise((r) => setTimeout(r, 200)); // queued in the gatekeeper behind the long poll
    const metrics = await (await fetch(gk.url('api', '/metrics'))).text();
    assert.match(metrics, /^gatekeeper_upstream_queued_requests\{listener="web"\} 1$/m, 'the operator sees the waiting request');
    assert.match(metrics, /^gatekeeper_upstream_connections\{listener="web",state="busy"\} 1$/m);
    waiting.destroy();
    await new Promise((r) => setTimeout(r, 200));
    poll.destroy(); // frees the connection
    const r = await fetch(gk.url('web', '/next'), { signal: AbortSignal.timeout(5000) });
    assert.equal(r.status, 200);
    const forwarded = urls.filter((u) => u !== '/'); // '/' is the gatekeeper's own health probe
    assert.deepEqual(forwarded, ['/longpoll', '/next'], 'the abandoned request never reached Zimbra');
  });
});
