import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { which } from '../helpers/binaries.js';
import { startFakeZimbra } from '../helpers/fake-zimbra.js';
import { startGatekeeper, testConfig, waitFor } from '../helpers/gatekeeper-process.js';

/*
 * The per-client connection cap counts an IPv6 client per /jail.ipv6Prefix network, as the failure
 * counters and bans do: an address rotating inside its /64 is one client. Needs IPv6 addresses of
 * its own, so this file re-runs itself under `unshare -n` (as root) with documentation addresses on
 * a private loopback.
 */
const SELF = fileURLToPath(import.meta.url);
const IN_NETNS = process.env.TEST_IN_NETNS === '1';
const missing = ['unshare', 'ip'].filter((b) => !which(b));
const notRoot = process.getuid?.() !== 0;
const skipReason = missing.length ? `missing ${missing.join(', ')}: apt-get install -y util-linux iproute2` : notRoot ? 'needs root for a network namespace' : false;

const A1 = '2001:db8:1:2::a';
const A2 = '2001:db8:1:2::b'; // the same /64 as A1
const B = '2001:db8:1:3::a'; // another /64

function open(from: string, port: number): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '::1', port, localAddress: from });
    s.on('error', () => resolve(null));
    s.once('connect', () => {
      // Reset at accept comes right after the connect: give it a request and see whether it is served.
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      s.once('data', () => resolve(s));
      s.once('close', () => resolve(null));
    });
  });
}

if (!IN_NETNS) {
  describe('per-client connection cap for IPv6 (in a private network namespace)', () => {
    it('runs inside `unshare -n`', (t) => {
      if (skipReason) {
        if (process.env.CI === 'true') throw new Error(`CI=true and ${skipReason}`);
        process.stderr.write(`\n*** SKIPPED IPv6 fairness test: ${skipReason} ***\n`);
        t.skip(skipReason);
        return;
      }
      const r = spawnSync('unshare', ['-n', process.execPath, '--test', '--test-reporter=spec', SELF], {
        env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')), TEST_IN_NETNS: '1' },
        encoding: 'utf8',
        timeout: 120_000,
      });
      process.stdout.write(r.stdout.split('\n').map((l) => `    ${l}`).join('\n'));
      if (r.status !== 0) process.stderr.write(r.stderr);
      assert.equal(r.status, 0, 'the IPv6 suite inside the namespace failed (output above)');
    });
  });
} else {
  describe('per-client connection cap for IPv6', () => {
    it('two addresses of one /64 share one cap; another /64 has its own', async () => {
      execFileSync('ip', ['link', 'set', 'lo', 'up']);
      for (const a of [A1, A2, B]) execFileSync('ip', ['-6', 'addr', 'add', `${a}/128`, 'dev', 'lo', 'nodad']);
      const zimbra = await startFakeZimbra();
      const cfg = testConfig(zimbra.url, { proxy: { maxClientConnections: 2 } }) as { listen: { web: Record<string, unknown> } };
      cfg.listen.web.host = '::1';
      const gk = await startGatekeeper(cfg);
      const held: net.Socket[] = [];
      try {
        const port = gk.ports.web!;
        for (const from of [A1, A2]) {
          const s = await open(from, port);
          assert.ok(s, `${from}: one of the first two connections of the /64 is served`);
          held.push(s);
        }
        assert.equal(await open(A2, port), null, 'a third connection from the same /64 (another address in it) is refused');
        assert.equal(await open(A1, port), null);
        const other = await open(B, port);
        assert.ok(other, 'another /64 is served');
        held.push(other);
        const text = await waitFor(async () => {
          const t = await (await fetch(gk.url('api', '/metrics'))).text();
          return /reason="client-connections"\} 2$/m.test(t) && t;
        }, 5000, 'two refusals counted');
        assert.match(text, /^gatekeeper_tracked_keys\{kind="client-connections"\} 2$/m, 'two keys: one per /64');
      } finally {
        for (const s of held) s.destroy();
        await gk.stop();
        await zimbra.close();
      }
    });
  });
}
