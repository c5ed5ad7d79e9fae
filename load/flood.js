// Connection flood from banned addresses (a new connection per request) while benign users keep
// working on keep-alive connections. Threshold: the benign users' p99.
// Ban the flood range first:  gatekeeper ban 127.0.1.0/24   (or: curl -XPOST .../api/bans -d '{"ip":"127.0.1.0/24"}')
//   k6 run -e BASE_URL=https://127.0.0.1:443 -e FLOOD_IPS=127.0.1.1-127.0.1.250 load/flood.js
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE_URL || 'https://127.0.0.1:443';

export const options = {
  insecureSkipTLSVerify: true,
  localIPs: __ENV.FLOOD_IPS || '127.0.1.1-127.0.1.250',
  scenarios: {
    benign: { executor: 'constant-arrival-rate', rate: Number(__ENV.BENIGN_RATE || 100), timeUnit: '1s', duration: __ENV.DURATION || '1m', preAllocatedVUs: 20, maxVUs: 100, exec: 'benign' },
    flood: { executor: 'constant-vus', vus: Number(__ENV.FLOOD_VUS || 200), duration: __ENV.DURATION || '1m', exec: 'flood' },
  },
  thresholds: {
    'http_req_duration{scenario:benign}': ['p(99)<500'],
    'checks{scenario:benign}': ['rate>0.99'],
    'checks{scenario:flood}': ['rate>0.99'],
  },
};

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
