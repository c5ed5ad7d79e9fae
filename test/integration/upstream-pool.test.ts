import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { UpstreamPool, type UpstreamHandler, type UpstreamPoolOptions, type UpstreamRequest } from '../../src/proxy/upstream-pool.js';

/*
 * The upstream pool against an upstream written byte by byte (a raw TCP server on loopback), for
 * what a real Zimbra only does now and then: close a kept-alive connection as a request arrives,
 * answer with bytes past the end of the answer, say nothing, or answer malformed.
 */

interface Received {
  /** Index of the upstream connection (0, 1, …) and of the request on it. */
  conn: number;
  nth: number;
  head: string;
}

/** A raw upstream: `answer` decides, per request head received, what to write back (or to close). */
async function rawUpstream(answer: (r: Received, socket: net.Socket) => void, host = '127.0.0.1'): Promise<{ port: number; received: Received[]; bytes: string[]; close: () => Promise<void> }> {
  const received: Received[] = [];
  const bytes: string[] = [];
  const sockets = new Set<net.Socket>();
  let conns = 0;
  const server = net.createServer((socket) => {
    const conn = conns++;
    let nth = 0;
    let buf = '';
    bytes[conn] = '';
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.on('data', (d) => {
      bytes[conn] += d.toString('latin1');
      buf += d.toString('latin1');
      let end: number;
      // A body is skipped by its Content-Length; a chunked one is left for the test to read in `bytes`.
      while ((end = buf.indexOf('\r\n\r\n')) >= 0 && /^[A-Z]+ \//.test(buf)) {
        const head = buf.slice(0, end);
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) break;
        buf = buf.slice(end + 4 + length);
        const r = { conn, nth: nth++, head };
        received.push(r);
        answer(r, socket);
      }
    });
  });
  server.listen(0, host);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    received,
    bytes,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

interface Outcome {
  status: number;
  headers: string[];
  body: string;
  error: NodeJS.ErrnoException | null;
}

/** Sends one request through the pool and collects what the handler saw. */
function send(pool: UpstreamPool, request: Partial<UpstreamRequest> = {}, hooks: { onConnect?: (abort: (err?: Error) => void) => void } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { status: 0, headers: [], body: '', error: null };
    const handler: UpstreamHandler = {
      onConnect: (abort) => hooks.onConnect?.(abort),
      onHeaders: (status, raw) => {
        out.status = status;
        out.headers = raw;
      },
      onData: (chunk) => {
        out.body += chunk.toString('latin1');
        return true;
      },
      onComplete: () => resolve(out),
      onError: (err) => {
        out.error = err as NodeJS.ErrnoException;
        resolve(out);
      },
    };
    pool.dispatch({ method: 'GET', path: '/', headers: { host: 'zimbra.test' }, body: null, ...request }, handler);
  });
}

const OPTIONS: UpstreamPoolOptions = { maxConnections: 8, headersTimeoutMs: 5000, keepAliveMs: 15_000, connectTimeoutMs: 2000, maxHeaderBytes: 65536, tlsVerify: true };
const ok = (body: string, extra = ''): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

describe('upstream pool against a raw upstream', () => {
  const cleanup: Array<() => unknown> = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });
  const setup = async (answer: (r: Received, socket: net.Socket) => void, options: Partial<UpstreamPoolOptions> = {}, host = '127.0.0.1') => {
    const up = await rawUpstream(answer, host);
    const pool = new UpstreamPool(new URL(`http://${net.isIPv6(host) ? `[${host}]` : host}:${up.port}`), { ...OPTIONS, ...options });
    cleanup.push(() => up.close(), () => pool.close());
    return { up, pool };
  };

  it('writes the request head as given, adds Host when missing and the length of a Buffer body, and reuses the connection', async () => {
    const { up, pool } = await setup((r, s) => s.write(ok(`answer ${r.nth}`)));
    const a = await send(pool, { path: '/service/soap/AuthRequest', method: 'POST', headers: { host: 'mail.example', 'content-type': 'application/soap+xml', 'content-length': '999' }, body: Buffer.from('<Envelope/>') });
    const b = await send(pool, { path: '/zimbra/?loginOp=x', headers: { 'x-repeated': ['a=1', 'b=2'] } });
    assert.deepEqual([a.status, a.body, b.status, b.body], [200, 'answer 0', 200, 'answer 1']);
    assert.equal(up.bytes[0]!.split('\r\n\r\n')[0], 'POST /service/soap/AuthRequest HTTP/1.1\r\nhost: mail.example\r\ncontent-type: application/soap+xml\r\ncontent-length: 11');
    assert.ok(up.bytes[0]!.includes('\r\n\r\n<Envelope/>GET /zimbra/?loginOp=x HTTP/1.1\r\nx-repeated: a=1\r\nx-repeated: b=2\r\nhost: 127.0.0.1:'), up.bytes[0]);
    assert.deepEqual(up.received.map((r) => r.conn), [0, 0], 'one upstream connection for both');
  });

  it('reaches an IPv6 upstream ([::1]) and names it in the Host header it adds', async (t) => {
    const probe = net.createServer().listen(0, '::1');
    const [bound] = await Promise.race([once(probe, 'listening').then(() => [true]), once(probe, 'error').then(() => [false])]);
    probe.close();
    if (!bound) {
      t.skip('SKIPPED: this machine has no IPv6 loopback (::1 cannot be bound)');
      return;
    }
    const { up, pool } = await setup((_r, s) => s.write(ok('over v6')), {}, '::1');
    const res = await send(pool, { headers: {} });
    assert.equal(res.body, 'over v6');
    assert.match(up.received[0]!.head, new RegExp(`\\r\\nhost: \\[::1\\]:${up.port}$`));
  });

  it('opens a new connection after Connection: close, and after an answer that runs until close', async () => {
    const { up, pool } = await setup((r, s) => {
      if (r.conn === 0) s.write(ok('closing', 'Connection: close\r\n'));
      else if (r.conn === 1) s.end('HTTP/1.1 200 OK\r\n\r\nuntil the end');
      else s.write(ok('third'));
    });
    assert.equal((await send(pool)).body, 'closing');
    assert.equal((await send(pool)).body, 'until the end');
    assert.equal((await send(pool)).body, 'third');
    assert.deepEqual(up.received.map((r) => r.conn), [0, 1, 2]);
  });

  it('sends a GET again on a new connection when the upstream closes the kept-alive one as it arrives; never a POST', async () => {
    // The upstream drops every connection's second request without a byte of answer.
    const { up, pool } = await setup((r, s) => (r.nth === 1 ? s.destroy() : s.write(ok(`conn ${r.conn}`))));
    assert.equal((await send(pool)).body, 'conn 0');
    const retried = await send(pool, { path: '/again' });
    assert.deepEqual([retried.error, retried.body], [null, 'conn 1'], 'answered on a new connection');
    const post = await send(pool, { method: 'POST', path: '/service/soap/AuthRequest', body: Buffer.from('{}') });
    assert.equal(post.error?.code, 'UPSTREAM_CLOSED');
    assert.equal(up.received.filter((r) => r.head.startsWith('POST')).length, 1, 'the POST reached the upstream once');
    assert.equal(pool.stats().retried, 1, 'one request sent again (the GET), counted for gatekeeper_upstream_retries_total');
  });

  it('never reads bytes past the end of an answer as the next answer (response splitting)', async () => {
    const { up, pool } = await setup((r, s) => {
      if (r.conn === 0) s.write(ok('hello') + ok('evil', 'X-Injected: 1\r\n'));
      else s.write(ok('real'));
    });
    assert.equal((await send(pool)).body, 'hello');
    const next = await send(pool);
    assert.deepEqual([next.body, next.headers.includes('X-Injected')], ['real', false]);
    assert.deepEqual(up.received.map((r) => r.conn), [0, 1], 'the tainted connection was closed');
  });

  it('an idle connection on which the upstream speaks out of turn is closed', async () => {
    const { up, pool } = await setup((r, s) => {
      s.write(ok('first'));
      if (r.conn === 0) setTimeout(() => s.write(ok('unasked')), 30);
    });
    assert.equal((await send(pool)).body, 'first');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await send(pool)).body, 'first');
    assert.deepEqual(up.received.map((r) => r.conn), [0, 1]);
  });

  it('checks a kept-alive connection for bytes sent unasked before writing a request on it', async () => {
    let last: net.Socket | undefined;
    const { up, pool } = await setup((r, s) => {
      last = s;
      s.write(ok(`answer ${r.conn}`));
    });
    assert.equal((await send(pool)).body, 'answer 0');
    // The unasked bytes wait in the idle connection's receive buffer (loopback: written means
    // readable) when a request comes in from a timer: the timers phase runs before the poll phase
    // that would read them, as a client's request handled earlier in a busy turn would.
    last!.write(ok('evil'));
    const answered = new Promise<Outcome>((resolve) => setTimeout(() => resolve(send(pool)), 1));
    const until = Date.now() + 5;
    while (Date.now() < until); // the timer is due before this turn's poll phase
    const next = await answered;
    assert.equal(next.body, 'answer 1', 'answered on a new connection, not with the unasked bytes');
    assert.deepEqual(up.received.map((r) => r.conn), [0, 1]);
  });

  it('closing the pool settles every request: in flight, waiting for the check phase, and queued', async () => {
    const { pool } = await setup((r, s) => (r.head.includes('/hold') ? undefined : s.write(ok('x'))), { maxConnections: 2 });
    assert.equal((await send(pool)).body, 'x'); // one kept-alive connection
    const deferred = send(pool, { path: '/hold' }); // on the kept-alive connection, waiting for the check phase
    const inFlight = send(pool, { path: '/hold' }); // written at once on a new connection, never answered
    const queued = send(pool, { path: '/queued' }); // maxConnections (2) reached
    pool.close(); // in the same turn: the deferred request has not been written yet
    const outcomes = await Promise.race([
      Promise.all([deferred, inFlight, queued]),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('a request was never settled')), 2000)),
    ]);
    for (const o of outcomes) assert.match(String(o.error?.code), /^UPSTREAM_(POOL_)?CLOSED$/);
  });

  it('a malformed answer is an error, and the connection is not reused', async () => {
    const { up, pool } = await setup((r, s) => s.write(r.conn === 0 ? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' : ok('fine')));
    const bad = await send(pool);
    assert.deepEqual([bad.status, bad.error?.code], [0, 'UPSTREAM_BAD_RESPONSE']);
    assert.equal((await send(pool)).body, 'fine');
    assert.deepEqual(up.received.map((r) => r.conn), [0, 1]);
  });

  it('no answer head within headersTimeoutMs: UPSTREAM_HEADERS_TIMEOUT', async () => {
    const { pool } = await setup(() => undefined, { headersTimeoutMs: 150 });
    const t0 = Date.now();
    const silent = await send(pool);
    assert.equal(silent.error?.code, 'UPSTREAM_HEADERS_TIMEOUT');
    assert.ok(Date.now() - t0 >= 150, 'not before the timeout');
  });

  it('refuses a request header that would break a line, writing nothing', async () => {
    const { up, pool } = await setup((_r, s) => s.write(ok('x')));
    const res = await send(pool, { headers: { 'x-forwarded-for': '203.0.113.7\r\nX-Injected: 1' } });
    assert.equal(res.error?.code, 'UPSTREAM_BAD_REQUEST');
    assert.equal((await send(pool)).body, 'x', 'the pool still works');
    assert.equal(up.received.length, 1);
    assert.ok(!up.bytes.join('').includes('X-Injected'));
  });

  it('at maxConnections, requests wait their turn; one whose client left while waiting is never written', async () => {
    const answers: Array<() => void> = [];
    const { up, pool } = await setup((r, s) => answers.push(() => s.write(ok(r.head.split(' ')[1]!))), { maxConnections: 1 });
    const first = send(pool, { path: '/first' });
    const gone = send(pool, { path: '/gone' }, { onConnect: (abort) => abort(new Error('client closed the connection')) });
    const third = send(pool, { path: '/third' });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(up.received.map((r) => r.head.split(' ')[1]), ['/first'], 'only one request at a time');
    answers.shift()!();
    assert.equal((await first).body, '/first');
    assert.match((await gone).error?.message ?? '', /client closed/);
    await new Promise((r) => setTimeout(r, 50));
    answers.shift()!();
    assert.equal((await third).body, '/third');
    assert.deepEqual(up.received.map((r) => `${r.conn}${r.head.split(' ')[1]}`), ['0/first', '0/third'], '/gone never reached the upstream; the connection was reused');
  });

  it('streams a body without a length chunk-framed, and sends the head only with its first bytes', async () => {
    const { up, pool } = await setup(() => undefined);
    const body = new PassThrough();
    const res = send(pool, { method: 'PUT', path: '/dav/file', body });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(up.bytes.join(''), '', 'nothing sent before the body starts');
    body.write('abc');
    body.end('defgh');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(up.bytes[0], 'PUT /dav/file HTTP/1.1\r\nhost: zimbra.test\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n');
    pool.close();
    assert.equal((await res).error?.code, 'UPSTREAM_CLOSED');
  });

  it("closes idle connections after keepAliveMs, sooner when the upstream's Keep-Alive timeout is shorter", async () => {
    const { pool } = await setup((r, s) => s.write(ok('x', r.head.includes('/hint') ? 'Keep-Alive: timeout=1\r\n' : '')), { keepAliveMs: 400, headersTimeoutMs: 1000 });
    await send(pool);
    assert.equal(pool.size, 1);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(pool.size, 0, 'closed after keepAliveMs');
    await send(pool, { path: '/hint' });
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(pool.size, 0, 'Keep-Alive: timeout=1 means at most 0 s idle here (1 s less a second of margin)');
  });
});
