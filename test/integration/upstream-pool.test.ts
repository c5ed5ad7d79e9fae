import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Dispatcher } from 'undici';
import { UpstreamPool, type PooledRequest } from '../../src/proxy/upstream-pool.js';
import { waitFor } from '../helpers/gatekeeper-process.js';

/**
 * The upstream pool against a real HTTP server on loopback: how many requests Zimbra sees at once,
 * in which order, on how many connections, and that nobody waits long behind a long poll.
 */

/** A request as the forwarder makes them, recording what happened to it. */
class Probe implements PooledRequest {
  admittedAt = 0;
  counted = false;
  abandoned = false;
  status = 0;
  body = '';
  error: Error | null = null;
  done = false;
  readonly opts: Dispatcher.DispatchOptions;
  constructor(
    private readonly pool: UpstreamPool,
    path: string,
  ) {
    this.opts = { path, method: 'GET', headers: {}, body: null };
  }
  onConnect(): void {}
  onHeaders(status: number): boolean {
    this.status = status;
    return true;
  }
  onData(chunk: Buffer): boolean {
    this.body += chunk.toString();
    return true;
  }
  onComplete(): void {
    this.done = true;
    this.pool.release(this);
  }
  onError(err: Error): void {
    this.error = err;
    this.done = true;
    this.pool.release(this);
  }
}

describe('upstream pool: admission and connection reuse', () => {
  let upstream: http.Server;
  let origin: string;
  /** Requests the upstream has received, in order, with the client port of their connection. */
  const seen: Array<{ url: string; port: number }> = [];
  /** Held requests (/hold/...) waiting for the test to answer them. */
  const held = new Map<string, http.ServerResponse>();
  const pools: UpstreamPool[] = [];

  before(async () => {
    upstream = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', port: req.socket.remotePort ?? 0 });
      if (req.url?.startsWith('/hold/')) held.set(req.url, res);
      else res.end(`ok ${req.url}`);
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  });
  after(async () => {
    await Promise.all(pools.map((p) => p.close()));
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  });

  const pool = (limit: number, freshMs: number, max = 100, at = origin): UpstreamPool => {
    const p = new UpstreamPool(at, { limit, freshMs, max, client: { keepAliveTimeout: 10_000 } });
    pools.push(p);
    return p;
  };
  const answer = (url: string): void => {
    held.get(url)!.end(`ok ${url}`);
    held.delete(url);
  };

  it('sends at most `limit` requests at once; the others go first come, first served as answers arrive', async () => {
    seen.length = 0;
    const p = pool(2, 60_000);
    const probes = ['/hold/a', '/hold/b', '/hold/c', '/hold/d', '/hold/e'].map((u) => new Probe(p, u));
    for (const r of probes) p.dispatch(r);
    await waitFor(() => seen.length === 2, 3000, 'two requests upstream');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(seen.map((s) => s.url), ['/hold/a', '/hold/b'], 'only two at once');
    assert.equal(p.waiting, 3);
    answer('/hold/b');
    await waitFor(() => seen.length === 3, 3000, 'the next one upstream');
    assert.equal(seen[2]!.url, '/hold/c');
    for (const u of ['/hold/a', '/hold/c']) answer(u);
    await waitFor(() => seen.length === 5, 3000, 'the rest upstream');
    for (const u of ['/hold/d', '/hold/e']) answer(u);
    await waitFor(() => probes.every((r) => r.done), 3000, 'every answer');
    assert.deepEqual(probes.map((r) => r.body), probes.map((r) => `ok ${r.opts.path}`));
    assert.ok(probes.every((r) => r.status === 200 && r.error === null));
    assert.equal(p.connections, 2, 'the freed connections carried the waiting requests');
  });

  it('keeps a burst of 200 requests on `limit` connections', async () => {
    seen.length = 0;
    const p = pool(8, 60_000);
    const probes = Array.from({ length: 200 }, (_, i) => new Probe(p, `/fast/${i}`));
    for (const r of probes) p.dispatch(r);
    await waitFor(() => probes.every((r) => r.done), 10_000, 'every answer');
    assert.ok(probes.every((r) => r.status === 200 && r.body === `ok ${r.opts.path}`));
    // Sent in arrival order (the upstream reads its 8 connections in whatever order they come).
    assert.ok(probes.every((r, i) => i === 0 || r.admittedAt >= probes[i - 1]!.admittedAt), 'sent in arrival order');
    assert.equal(seen.length, 200);
    assert.equal(new Set(seen.map((s) => s.port)).size, 8, 'upstream connections used');
    assert.equal(p.connections, 8);
  });

  it('a request unanswered for `freshMs` (a long poll) stops counting: the next waits about that long, not for it', async () => {
    seen.length = 0;
    const p = pool(1, 300);
    const poll = new Probe(p, '/hold/poll');
    p.dispatch(poll);
    await waitFor(() => seen.length === 1, 3000, 'the long poll upstream');
    const next = new Probe(p, '/after-poll');
    const sent = Date.now();
    p.dispatch(next);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(seen.length, 1, 'still waiting its turn while the poll is fresh');
    await waitFor(() => next.done, 3000, 'the waiting request answered');
    assert.ok(Date.now() - sent >= 250, `waited ${Date.now() - sent} ms`);
    assert.equal(next.body, 'ok /after-poll');
    assert.equal(poll.done, false, 'the long poll is still open');
    assert.equal(p.connections, 2, 'on a connection of its own');
    answer('/hold/poll');
    await waitFor(() => poll.done, 3000, 'the poll answered');
  });

  it('a waiting request whose client left is dropped; waiting requests fail when the pool closes', async () => {
    seen.length = 0;
    const p = pool(1, 60_000);
    const first = new Probe(p, '/hold/first');
    const gone = new Probe(p, '/gone');
    const last = new Probe(p, '/last');
    for (const r of [first, gone, last]) p.dispatch(r);
    await waitFor(() => seen.length === 1, 3000, 'the first upstream');
    gone.abandoned = true;
    answer('/hold/first');
    await waitFor(() => last.done, 3000, 'the last answered');
    assert.deepEqual(seen.map((s) => s.url), ['/hold/first', '/last']);
    assert.equal(gone.done, false);

    const q = pool(1, 60_000);
    const holding = new Probe(q, '/hold/closing');
    const waiting = new Probe(q, '/never');
    q.dispatch(holding);
    q.dispatch(waiting);
    await waitFor(() => held.has('/hold/closing'), 3000, 'the first upstream');
    await q.close();
    assert.match(String(waiting.error?.message), /closed/);
    await waitFor(() => holding.done, 3000, 'the request in flight ended');
    assert.ok(!seen.some((s) => s.url === '/never'));
  });

  it('a refused upstream fails every request and frees its place: none is left waiting', async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const p = pool(1, 60_000, 100, `http://127.0.0.1:${port}`);
    const probes = Array.from({ length: 5 }, (_, i) => new Probe(p, `/refused/${i}`));
    for (const r of probes) p.dispatch(r);
    await waitFor(() => probes.every((r) => r.done), 5000, 'every request failed');
    assert.ok(probes.every((r) => r.error !== null && r.status === 0));
    assert.equal(p.waiting, 0);
  });
});
