// Password guessing from many source addresses against SOAP, form, admin and DAV logins. The
// thresholds prove bans engage: no address gets more than MAXRETRY answers from Zimbra, and once an
// address has been refused (429) it stays refused (429, or its connections reset at accept).
// Each VU gets its own source address from k6's --local-ips (a command-line option only: k6 ignores
// it in a script's options; on Linux add the addresses first, e.g. `ip addr add 10.77.0.0/24 dev lo`,
// or use a loopback range against a local stack).
//   k6 run --local-ips 127.0.0.10-127.0.0.209 -e BASE_URL=https://127.0.0.1:443 -e ADMIN_URL=https://127.0.0.1:7071 load/bruteforce.js
import encoding from 'k6/encoding';
import http from 'k6/http';
import { Counter, Rate, Trend } from 'k6/metrics';
import { plans } from './plans.js';

const BASE = __ENV.BASE_URL || 'https://127.0.0.1:443';
const ADMIN = __ENV.ADMIN_URL || 'https://127.0.0.1:7071';
const MAXRETRY = Number(__ENV.MAXRETRY || 3);
const reachedBeforeBan = new Trend('answers_from_zimbra_before_ban');
const reachedAfterBan = new Rate('answered_after_ban');
const refused = new Counter('refused_429');

/** Scenarios and thresholds: load/plans.js. */
export const options = plans(__ENV)['bruteforce.js'].options;

const targets = [
  () => http.post(`${BASE}/service/soap/AuthRequest`, JSON.stringify({ Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: `info${__VU}@example.com` }, password: { _content: `guess${__ITER}` } } } }), { headers: { 'Content-Type': 'application/json' }, tags: { name: 'soap' } }),
  () => http.post(`${BASE}/`, { loginOp: 'login', username: `contatti${__VU}@example.com`, password: `guess${__ITER}`, client: 'preferred' }, { tags: { name: 'form' } }),
  () => http.post(`${ADMIN}/service/admin/soap/AuthRequest`, `<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><AuthRequest xmlns="urn:zimbraAdmin" name="admin${__VU}" password="guess${__ITER}"/></soap:Body></soap:Envelope>`, { headers: { 'Content-Type': 'application/soap+xml' }, tags: { name: 'admin' } }),
  () => http.request('PROPFIND', `${BASE}/dav/info${__VU}@example.com/`, null, { headers: { Authorization: `Basic ${encoding.b64encode(`info${__VU}@example.com:guess${__ITER}`)}` }, tags: { name: 'dav' } }),
];

// Per-VU state: each VU is one source address.
let answered = 0;
let banned = false;

export default function () {
  // One login endpoint per VU, so each address guesses against one service.
  const res = targets[__VU % targets.length]();
  // Refused: 429/403, or, once banned, a connection reset at accept (the gatekeeper sends a banned
  // address its ban page once per proxy.banPageInterval and resets its other connections).
  if (res.status === 429 || res.status === 403 || (banned && res.status === 0)) {
    refused.add(1);
    if (!banned) reachedBeforeBan.add(answered);
    banned = true;
    return;
  }
  if (banned) reachedAfterBan.add(1);
  else answered++;
}
