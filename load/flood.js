// Connection flood from banned addresses (a new connection per request) while benign users keep
// working on keep-alive connections. Threshold: the benign users' p99.
// Ban the flood range first:  gatekeeper ban 127.0.1.0/24   (or: curl -XPOST .../api/bans -d '{"ip":"127.0.1.0/24"}')
//   k6 run --local-ips 127.0.1.1-127.0.1.250 -e BASE_URL=https://127.0.0.1:443 load/flood.js
import http from 'k6/http';
import { check } from 'k6';
import { plans } from './plans.js';

const BASE = __ENV.BASE_URL || 'https://127.0.0.1:443';

/** Scenarios and thresholds: load/plans.js. */
export const options = plans(__ENV)['flood.js'].options;

// Benign traffic must come from an address outside the banned range: set BENIGN_URL to reach the
// service from another source (e.g. another host), or run this scenario from a second k6 instance.
export function benign() {
  const res = http.get(__ENV.BENIGN_URL || `${BASE}/`, { tags: { name: 'benign' } });
  check(res, { 'benign served': (r) => r.status === 200 || r.status === 302 });
}

export function flood() {
  const res = http.get(`${BASE}/`, { headers: { Connection: 'close' }, tags: { name: 'flood' } });
  check(res, { 'flood refused': (r) => r.status === 429 || r.status === 0 });
}
