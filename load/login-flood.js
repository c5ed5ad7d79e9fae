// A distributed brute force, as bots run it: thousands of source addresses, each making a few wrong
// logins, every one on a new connection (new TLS handshake). Thresholds: no address gets more than
// MAXRETRY logins judged by Zimbra, and benign users browsing meanwhile (from BENIGN_URL, another
// source address) keep a p99 under a second. The same flood is measured here by `npm run bench:logins`.
//   k6 run --local-ips 127.0.8.1-127.0.15.250 -e BASE_URL=https://127.0.0.1:443 -e BENIGN_URL=https://127.0.0.1:443/ -e ADDRESSES=2000 load/login-flood.js
// Against a real Zimbra, use accounts that do not exist (the gatekeeper answers failures it judges the same way).
import http from 'k6/http';
import { check } from 'k6';
import { Trend } from 'k6/metrics';
import { plans } from './plans.js';

const BASE = __ENV.BASE_URL || 'https://127.0.0.1:443';
const reachedBeforeBan = new Trend('answers_from_zimbra_before_ban');

/** Scenarios and thresholds: load/plans.js. */
export const options = plans(__ENV)['login-flood.js'].options;

// A wrong SOAP login is answered 500 (account.AUTH_FAILED); a refusal is 429: neither is an HTTP failure here.
http.setResponseCallback(http.expectedStatuses(200, 302, 429, 500));

// Per-VU state: each VU is one source address.
let answered = 0;
let refused = false;

export function guess() {
  const body = JSON.stringify({ Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: `flood${__VU}@example.com` }, password: { _content: `guess${__ITER}` } } } });
  const res = http.post(`${BASE}/service/soap/AuthRequest`, body, { headers: { 'Content-Type': 'application/json' }, tags: { name: 'guess' } });
  if (res.status === 429 || res.status === 0) refused = true;
  else if (!refused) answered++;
  // The last iteration reports how many answers came from Zimbra before the address was refused.
  if (__ITER === 3) reachedBeforeBan.add(answered);
}

export function benign() {
  const res = http.get(__ENV.BENIGN_URL || `${BASE}/`, { tags: { name: 'benign' } });
  check(res, { 'benign served': (r) => r.status === 200 || r.status === 302 });
}
