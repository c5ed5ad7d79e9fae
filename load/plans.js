// The load plan of every k6 script in load/ (scenarios, thresholds and what the thresholds prove), in
// one place: each script takes its `options` from here, and the table in load/README.md is generated
// from here (`npm run docs:load`; test/unit/load-scripts.test.ts fails when the two disagree).
// Type-checked against k6's own API (@types/k6) by the test suite: `tsc -p load/tsconfig.json`.
// Source addresses are not a script option in k6 (`LocalIPs` is `json:"-"` in k6's lib/options.go):
// give them on the command line, `k6 run --local-ips 127.0.0.10-127.0.0.209 …` (or K6_LOCAL_IPS).

/**
 * @typedef {object} Plan
 * @property {string} load      what the script sends
 * @property {string} proves    what its thresholds prove
 * @property {import('k6/options').Options} options  the script's k6 options
 */

/**
 * @param {{ [name: string]: string }} env  k6's __ENV (or {} for the README's defaults)
 * @returns {{ [script: string]: Plan }}
 */
export function plans(env) {
  const maxretry = Number(env.MAXRETRY || 3);
  const duration = env.DURATION || '1m';
  return {
    'webmail.js': {
      load: 'benign mix: login page, static files, SOAP calls (200/s), 2 successful logins/s',
      proves: 'the gatekeeper is not in the way: `http_req_failed < 1%`, browse p95 < 300 ms, p99 < 1 s, no 429/403/5xx',
      options: {
        insecureSkipTLSVerify: true,
        scenarios: {
          browse: { executor: 'constant-arrival-rate', rate: Number(env.RATE || 200), timeUnit: '1s', duration, preAllocatedVUs: 50, maxVUs: 400, exec: 'browse' },
          logins: { executor: 'constant-arrival-rate', rate: 2, timeUnit: '1s', duration, preAllocatedVUs: 5, exec: 'login' },
        },
        thresholds: {
          http_req_failed: ['rate<0.01'],
          'http_req_duration{scenario:browse}': ['p(95)<300', 'p(99)<1000'],
          'http_req_duration{scenario:logins}': ['p(95)<1000'],
          checks: ['rate>0.99'],
        },
      },
    },
    'bruteforce.js': {
      load: '200 source addresses (`--local-ips`), 10 wrong passwords each, against SOAP, form, admin and DAV logins, new connection per request',
      proves: `bans engage: \`answers_from_zimbra_before_ban\` max <= MAXRETRY (${maxretry}): no address gets more answers from Zimbra than the limit, even bursting; \`answered_after_ban\` rate 0: once refused, always refused`,
      options: {
        insecureSkipTLSVerify: true,
        noConnectionReuse: true,
        scenarios: {
          guess: { executor: 'per-vu-iterations', vus: Number(env.VUS || 200), iterations: Number(env.ATTEMPTS || 10), maxDuration: '2m' },
        },
        thresholds: {
          answers_from_zimbra_before_ban: [`max<=${maxretry}`],
          answered_after_ban: ['rate==0'],
          refused_429: ['count>0'],
        },
      },
    },
    'login-flood.js': {
      load: 'a distributed brute force: ADDRESSES source addresses (default 2,000), each making 4 wrong SOAP logins, every one on a new connection, while a benign scenario browses from BENIGN_URL',
      proves: `each address gets at most MAXRETRY (${maxretry}) logins judged by Zimbra (\`answers_from_zimbra_before_ban\`) and benign users keep a p99 < 1 s during the flood`,
      options: {
        insecureSkipTLSVerify: true,
        noConnectionReuse: true,
        scenarios: {
          flood: { executor: 'per-vu-iterations', vus: Number(env.ADDRESSES || 2000), iterations: 4, maxDuration: '5m', exec: 'guess' },
          benign: { executor: 'constant-arrival-rate', rate: Number(env.BENIGN_RATE || 50), timeUnit: '1s', duration: env.DURATION || '2m', preAllocatedVUs: 20, maxVUs: 100, exec: 'benign' },
        },
        thresholds: {
          answers_from_zimbra_before_ban: [`max<=${maxretry}`],
          'http_req_duration{scenario:benign}': ['p(99)<1000'],
          'checks{scenario:benign}': ['rate>0.99'],
        },
      },
    },
    'flood.js': {
      load: '200 VUs opening a new connection per request from banned addresses, plus benign traffic',
      proves: 'benign users keep working: benign p99 < 500 ms while the flood is refused (a 429 page once per address per `proxy.banPageInterval`, connections reset at accept otherwise)',
      options: {
        insecureSkipTLSVerify: true,
        scenarios: {
          benign: { executor: 'constant-arrival-rate', rate: Number(env.BENIGN_RATE || 100), timeUnit: '1s', duration, preAllocatedVUs: 20, maxVUs: 100, exec: 'benign' },
          flood: { executor: 'constant-vus', vus: Number(env.FLOOD_VUS || 200), duration, exec: 'flood' },
        },
        thresholds: {
          'http_req_duration{scenario:benign}': ['p(99)<500'],
          'checks{scenario:benign}': ['rate>0.99'],
          'checks{scenario:flood}': ['rate>0.99'],
        },
      },
    },
  };
}

/** The README table of the plans (README defaults: no environment). */
export function planTable() {
  const rows = Object.entries(plans({})).map(([script, p]) => `| \`${script}\` | ${p.load} | ${p.proves} |`);
  return ['| script | load | what its thresholds prove |', '| --- | --- | --- |', ...rows].join('\n');
}
