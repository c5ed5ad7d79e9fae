import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, waitFor, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { closeAgents, send, soapJsonAuth } from '../helpers/http-client.js';

/*
 * One address must not be able to take what every client shares: upstream connections (by holding
 * request bodies), client connections (by opening thousands), the login path (by sending login
 * bodies slowly). Each attack runs against the real process; another address must still be served.
 */

/** A raw connection from `from` that sent `data` and stays open; `answer` is what it has got back. */
interface Held {
  readonly socket: net.Socket;
  answer: string;
  /** Resolves when the connection has closed (reset or ended). */
  readonly closed: Promise<void>;
}

function hold(from: string, port: number, data: string): Promise<Held> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
    let closedResolve!: () => void;
    const held: Held = { socket, answer: '', closed: new Promise<void>((r) => (closedResolve = r)) };
    socket.on('data', (d: Buffer) => (held.answer += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => closedResolve());
    socket.once('connect', () => {
      if (data) socket.write(data);
      resolve(held);
    });
    // Reset before the connect was reported: refused at accept, an answer too.
    socket.once('close', () => resolve(held));
  });
}

async function metric(gk: GatekeeperProcess, pattern: RegExp): Promise<number> {
  const text = await (await fetch(gk.url('api', '/metrics'))).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

const upstreamLimited = /^gatekeeper_rejections_total\{listener="web",reason="client-upstream-limit"\} (\d+)$/m;
const connectionsLimited = /^gatekeeper_rejections_total\{listener="web",reason="client-connections"\} (\d+)$/m;
const busy = /^gatekeeper_upstream_connections\{listener="web",state="busy"\} (\d+)$/m;

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

describe('fair use: one address cannot keep another from being served', { timeout: 180_000 }, () => {
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  before(async () => {
    zimbra = await startFakeZimbra();
    gk = await startGatekeeper(testConfig(zimbra.url, { proxy: { maxSockets: 4, maxUpstreamPerClient: 2, maxClientConnections: 100, bufferBodyBytes: 65536 } }));
  });
  after(async () => {
    await closeAgents();
    await gk.stop();
    await zimbra.close();
  });

  it('held upload bodies: small ones take no upstream connection, large ones at most the per-client share', async () => {
    const port = gk.ports.web!;
    // Small uploads (within bufferBodyBytes) announcing 1,000 bytes and sending 1: read by the gatekeeper, never forwarded yet.
    const small = await Promise.all(Array.from({ length: 10 }, (_v, i) => hold('127.0.0.5', port, `POST /service/upload?fmt=raw&small=${i} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nx`)));
    // Large uploads announcing 1 MB and sending 1 byte: streamed, so each holds an upstream connection.
    const large = await Promise.all(Array.from({ length: 10 }, (_v, i) => hold('127.0.0.5', port, `POST /service/upload?fmt=raw&large=${i} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\nx`)));
    await waitFor(async () => (await metric(gk, upstreamLimited)) === 8, 10_000, 'eight large uploads refused');
    assert.equal(await metric(gk, busy), 2, 'the attacker holds its share (2) of the 4 upstream connections, no more');
    const refused = large.filter((h) => /^HTTP\/1\.1 429 /.test(h.answer));
    await waitFor(() => large.filter((h) => /^HTTP\/1\.1 429 /.test(h.answer)).length === 8, 5000, 'the attacker sees 429 on eight');
    assert.ok(refused.every((h) => /\r\nx-gatekeeper: client-upstream-limit\r\n/i.test(h.answer)));

    const victim = await timed(() => send('127.0.0.6', gk.url('web', '/')));
    assert.equal(victim.value.status, 200);
    console.log(`held uploads: another address served in ${victim.ms.toFixed(0)} ms`);
    assert.ok(victim.ms < 3000, `served in ${victim.ms} ms`);

    // The attacker lets go of its large uploads: its upstream connections come back.
    for (const h of large) h.socket.destroy();
    await waitFor(async () => (await metric(gk, busy)) === 0, 10_000, 'upstream connections given back');
    // The small uploads were held, not lost: once their bodies arrive they reach Zimbra (two at a
    // time: that is this client's share).
    for (const h of small.slice(0, 2)) h.socket.write('y'.repeat(999));
    await waitFor(() => small.slice(0, 2).every((h) => /^HTTP\/1\.1 200 /.test(h.answer)), 10_000, 'the small uploads answered once complete');
    assert.equal(zimbra.reached('/service/upload?fmt=raw&small=').length, 2);
    for (const h of small) h.socket.destroy();
  });

  it('request bodies reach Zimbra intact whether read first (small) or streamed (large, or chunked past the limit)', async () => {
    const small = 'a'.repeat(1000);
    const large = 'b'.repeat(200_000);
    const chunked = (body: string): string => {
      let out = '';
      for (let i = 0; i < body.length; i += 7000) out += `${Math.min(7000, body.length - i).toString(16)}\r\n${body.slice(i, i + 7000)}\r\n`;
      return `${out}0\r\n\r\n`;
    };
    const cases = [
      { name: 'small', head: `Content-Length: ${small.length}`, wire: small, body: small },
      { name: 'large', head: `Content-Length: ${large.length}`, wire: large, body: large },
      { name: 'small-chunked', head: 'Transfer-Encoding: chunked', wire: chunked(small), body: small },
      { name: 'large-chunked', head: 'Transfer-Encoding: chunked', wire: chunked(large), body: large },
    ];
    for (const c of cases) {
      const h = await hold('127.0.0.11', gk.ports.web!, `POST /service/upload?body=${c.name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${c.head}\r\n\r\n${c.wire}`);
      await h.closed;
      assert.match(h.answer, /^HTTP\/1\.1 200 /, c.name);
      const got = zimbra.reached(`/service/upload?body=${c.name}`).at(-1)!;
      assert.equal(got.body, c.body, c.name);
    }
  });

  it('2,000 idle connections from one address: past its share they are reset at accept; another address is served', async () => {
    const port = gk.ports.web!;
    const before = await metric(gk, connectionsLimited);
    const idle: Held[] = [];
    for (let i = 0; i < 2000; i += 200) idle.push(...(await Promise.all(Array.from({ length: 200 }, () => hold('127.0.0.7', port, '')))));
    await waitFor(async () => (await metric(gk, connectionsLimited)) - before === 1900, 15_000, '1,900 connections refused');
    const victim = await timed(() => send('127.0.0.8', gk.url('web', '/')));
    assert.equal(victim.value.status, 200);
    console.log(`2,000 idle connections: another address served in ${victim.ms.toFixed(0)} ms`);
    assert.ok(victim.ms < 3000, `served in ${victim.ms} ms`);
    // What the attacker sees: 1,900 of its connections closed by the gatekeeper, 100 still open.
    await Promise.race([Promise.all(idle.map((h) => h.closed)), waitFor(() => idle.filter((h) => h.socket.destroyed).length === 1900, 10_000, 'resets seen')]);
    assert.equal(idle.filter((h) => !h.socket.destroyed).length, 100);
    // Its slots come back as its connections close.
    const open = idle.filter((h) => !h.socket.destroyed);
    for (const h of open.slice(0, 50)) h.socket.destroy();
    await Promise.all(open.slice(0, 50).map((h) => h.closed));
    // The gatekeeper releases a slot when it sees that connection close, a moment after the client
    // does: a connection opened in between is still reset, so open new ones until one is served.
    await waitFor(async () => {
      const again = await hold('127.0.0.7', port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await again.closed;
      return /^HTTP\/1\.1 200 /.test(again.answer);
    }, 5000, 'a new connection served once others closed');
    for (const h of idle) h.socket.destroy();
  });

  it('slow login bodies from 50 connections of one address never delay another address\'s login', async () => {
    const port = gk.ports.web!;
    const body = soapJsonAuth('user@example.com', 'wrong');
    const slow = await Promise.all(Array.from({ length: 50 }, () => hold('127.0.0.9', port, `POST /service/soap/AuthRequest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`)));
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const login = await timed(() => send('127.0.0.10', gk.url('web', '/service/soap/AuthRequest'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: soapJsonAuth('user@example.com', 'right-password') }));
      assert.equal(login.value.status, 200, login.value.body);
      assert.match(login.value.body, /authToken/);
      times.push(login.ms);
    }
    console.log(`50 slow login bodies: another address logged in in ${times.map((t) => t.toFixed(0)).join(', ')} ms`);
    assert.ok(Math.max(...times) < 2000, `logins took ${times.join(', ')} ms`);
    assert.ok(slow.every((h) => !h.socket.destroyed), 'the slow logins are still being read (not refused)');
    for (const h of slow) h.socket.destroy();
  });
});
