import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { startFakeZimbra, type FakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, type GatekeeperProcess } from '../helpers/gatekeeper-process.js';
import { soapJsonAuth } from '../helpers/http-client.js';

/*
 * A flood of failed logins with distinct account names from many addresses (each below the ban
 * threshold, so nothing gets banned and every one is counted) against the real process with the
 * in-memory store: every per-key structure stays under its ceiling, the process lives, and another
 * address is still served at once.
 */

const CEILING = 1000;
const ADDRESSES = 3000;
const PER_ADDRESS = 2;

function rssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

function login(port: number, from: string, account: string): Promise<number> {
  const body = soapJsonAuth(account, 'wrong');
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/service/soap/AuthRequest', method: 'POST', localAddress: from, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function trackedKeys(gk: GatekeeperProcess): Promise<Record<string, number>> {
  const text = await (await fetch(gk.url('api', '/metrics'))).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^gatekeeper_tracked_keys\{kind="([^"]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe('memory bounded under a flood of distinct account names', { timeout: 180_000 }, () => {
  let zimbra: FakeZimbra;
  let gk: GatekeeperProcess;
  before(async () => {
    zimbra = await startFakeZimbra();
    gk = await startGatekeeper(testConfig(zimbra.url, { memory: { maxCounterKeys: CEILING, maxActivityKeys: 200 } }));
  });
  after(async () => {
    await gk.stop();
    await zimbra.close();
  });

  it(`${ADDRESSES * PER_ADDRESS} failed logins with distinct names from ${ADDRESSES} addresses: every structure under its ceiling, another address served`, async () => {
    const port = gk.ports.web!;
    const rss: number[] = [rssKb(gk.proc.pid!)];
    let next = 0;
    const statuses = new Map<number, number>();
    const worker = async (): Promise<void> => {
      while (next < ADDRESSES * PER_ADDRESS) {
        const i = next++;
        // 127.1.x.y: a distinct client address for every PER_ADDRESS logins.
        const a = Math.floor(i / PER_ADDRESS) + 1;
        const status = await login(port, `127.1.${a >> 8}.${a & 255}`, `flood-${i}@example.com`);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (i % 1000 === 999) rss.push(rssKb(gk.proc.pid!));
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const keys = await trackedKeys(gk);
    console.log(`flood: statuses ${JSON.stringify(Object.fromEntries(statuses))}, tracked keys ${JSON.stringify(keys)}, RSS kB every 1,000 logins ${rss.join(' ')}`);
    assert.equal(statuses.get(500), ADDRESSES * PER_ADDRESS, 'every login reached Zimbra and failed (none banned: each address stays below maxretry)');
    for (const kind of ['counter:ip', 'counter:account', 'counter:pair']) {
      assert.ok(keys[kind] !== undefined, `${kind} is reported`);
      assert.ok(keys[kind]! <= CEILING, `${kind}: ${keys[kind]} keys held, ceiling ${CEILING}`);
    }
    assert.ok(keys.activity! <= 24 * 2 * 200, `activity: ${keys.activity}`);
    assert.equal(gk.proc.exitCode, null, 'the process is alive');
    const start = performance.now();
    const r = await fetch(gk.url('web', '/'));
    assert.equal(r.status, 200);
    assert.ok(performance.now() - start < 1000, 'another address served in under a second');
  });
});
