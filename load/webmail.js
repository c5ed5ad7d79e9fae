// Benign webmail mix against the compose stack (or any gatekeeper): static pages, SOAP calls and a few
// successful logins. Thresholds: p95/p99 latency and error rate.
//   docker compose --profile load run --rm k6 run /scripts/webmail.js
//   k6 run -e BASE_URL=https://mail.example.com -e USER=u@example.com -e PASSWORD=... load/webmail.js
import http from 'k6/http';
import { check, sleep } from 'k6';
import { plans } from './plans.js';

const BASE = __ENV.BASE_URL || 'https://127.0.0.1:443';
const USER = __ENV.USER || 'user@example.com';
const PASSWORD = __ENV.PASSWORD || 'right-password';

/** Scenarios and thresholds: load/plans.js. */
export const options = plans(__ENV)['webmail.js'].options;

export function browse() {
  const r = Math.random();
  let res;
  if (r < 0.4) res = http.get(`${BASE}/`, { tags: { name: 'login page' } });
  else if (r < 0.7) res = http.get(`${BASE}/zimbra/css/common,login,zhtml,skin.css?v=1`, { tags: { name: 'static' } });
  else res = http.post(`${BASE}/service/soap/NoOpRequest`, JSON.stringify({ Header: { context: { _jsns: 'urn:zimbra' } }, Body: { NoOpRequest: { _jsns: 'urn:zimbraMail' } } }), { headers: { 'Content-Type': 'application/json' }, tags: { name: 'soap' } });
  check(res, { 'not refused': (x) => x.status !== 429 && x.status !== 403 && x.status < 500 });
  sleep(Math.random() * 0.2);
}

export function login() {
  const body = JSON.stringify({ Body: { AuthRequest: { _jsns: 'urn:zimbraAccount', account: { by: 'name', _content: USER }, password: { _content: PASSWORD } } } });
  const res = http.post(`${BASE}/service/soap/AuthRequest`, body, { headers: { 'Content-Type': 'application/json' }, tags: { name: 'login' } });
  check(res, { 'login ok': (x) => x.status === 200 && typeof x.body === 'string' && x.body.includes('authToken') });
}
