// Warm-invoke load test for kiln, for k6 (https://k6.io; install it yourself, it is not a
// dependency of this repository). The same scenarios as loadtests/warm-invoke.mjs:
//
//   warm_latency     1 VU running a fixed number of iterations: latency of one warm caller
//   warm_throughput  64 VUs for a fixed time, started after warm_latency: warm calls per second
//
// Each iteration is POST $KILN_URL/v1/functions/$FUNCTION/invoke with a small JSON body; a check
// wants status 200. setup() makes one call first and aborts the test with a clear message if the
// gateway, key or function is wrong, then warms THROUGHPUT_VUS containers (not measured).
//
// Run (the platform running, e.g. `npm start` in another terminal):
//   k6 run loadtests/warm-invoke.k6.js
//   KILN_API_KEY=$(cat .kiln/admin-key) k6 run -e FUNCTION=echo loadtests/warm-invoke.k6.js
//   k6 run -e SCENARIO=warm_throughput -e THROUGHPUT_VUS=128 -e THROUGHPUT_DURATION=1m loadtests/warm-invoke.k6.js
//   k6 run --summary-export=summary.json loadtests/warm-invoke.k6.js
//
// Environment (k6 reads the shell's environment and -e NAME=VALUE alike; defaults in brackets):
//   KILN_URL [http://127.0.0.1:8080]   gateway
//   KILN_API_KEY [../.kiln/admin-key]  API key; without it the admin key file of this checkout is read
//   FUNCTION [hello]                   function to invoke (deploy it first)
//   SCENARIO [all]                     all, warm_latency or warm_throughput
//   LATENCY_ITERATIONS [1000]          warm_latency's iterations
//   LATENCY_MAX_DURATION [30s]         warm_latency's time limit; warm_throughput starts after it
//   THROUGHPUT_VUS [64]                warm_throughput's virtual users (concurrent connections)
//   THROUGHPUT_DURATION [30s]          warm_throughput's duration
//   P99_LATENCY_MS [100]               threshold: warm_latency's p(99) http_req_duration
//   P99_THROUGHPUT_MS [1000]           threshold: warm_throughput's p(99) http_req_duration
//   MAX_ERROR_RATE [0.01]              threshold: http_req_failed rate (anything but 200 fails)
// A failed threshold makes k6 exit non-zero (99), which is what CI wants. The p(99) defaults
// are generous for `hello` on one machine; tune them to your hardware.
import { check } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import { Counter } from 'k6/metrics';

const env = (name, def) => (__ENV[name] !== undefined && __ENV[name] !== '' ? __ENV[name] : def);

const BASE_URL = env('KILN_URL', 'http://127.0.0.1:8080').replace(/\/+$/, '');
const FUNCTION = env('FUNCTION', 'hello');
const SCENARIO = env('SCENARIO', 'all');
const LATENCY_ITERATIONS = parseInt(env('LATENCY_ITERATIONS', '1000'), 10);
const LATENCY_MAX_DURATION = env('LATENCY_MAX_DURATION', '30s');
const THROUGHPUT_VUS = parseInt(env('THROUGHPUT_VUS', '64'), 10);
const THROUGHPUT_DURATION = env('THROUGHPUT_DURATION', '30s');
const P99_LATENCY_MS = Number(env('P99_LATENCY_MS', '100'));
const P99_THROUGHPUT_MS = Number(env('P99_THROUGHPUT_MS', '1000'));
const MAX_ERROR_RATE = Number(env('MAX_ERROR_RATE', '0.01'));

if (!['all', 'warm_latency', 'warm_throughput'].includes(SCENARIO)) {
  throw new Error(`SCENARIO must be all, warm_latency or warm_throughput, not '${SCENARIO}'`);
}

// open() works only here, in the init context, and resolves paths against this script's folder.
function readAdminKey() {
  try {
    return open('../.kiln/admin-key').trim();
  } catch (e) {
    return '';
  }
}
const API_KEY = env('KILN_API_KEY', '') || readAdminKey();

const INVOKE_URL = `${BASE_URL}/v1/functions/${encodeURIComponent(FUNCTION)}/invoke`;
const PARAMS = {
  headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json', Accept: 'application/json' },
  tags: { name: `POST /v1/functions/${FUNCTION}/invoke` },
  // Only 200 is a success: a 202 means the sync call outlived the gateway's wait limit.
  responseCallback: http.expectedStatuses(200),
  timeout: '60s',
};
const BODY = JSON.stringify({ name: 'k6' });

// How each call started (X-Kiln-Start: cold, prewarm, warm, thawed); cold starts here mean the
// warm-up was too small for the concurrency.
const starts = new Counter('kiln_starts');

const scenarios = {};
const thresholds = {};
const runLatency = SCENARIO === 'all' || SCENARIO === 'warm_latency';
const runThroughput = SCENARIO === 'all' || SCENARIO === 'warm_throughput';
if (runLatency) {
  scenarios.warm_latency = {
    executor: 'per-vu-iterations',
    vus: 1,
    iterations: LATENCY_ITERATIONS,
    maxDuration: LATENCY_MAX_DURATION,
    gracefulStop: '10s',
  };
  thresholds['http_req_duration{scenario:warm_latency}'] = [`p(99)<${P99_LATENCY_MS}`];
  thresholds['http_req_failed{scenario:warm_latency}'] = [`rate<${MAX_ERROR_RATE}`];
  thresholds['checks{scenario:warm_latency}'] = [`rate>${1 - MAX_ERROR_RATE}`];
}
if (runThroughput) {
  scenarios.warm_throughput = {
    executor: 'constant-vus',
    vus: THROUGHPUT_VUS,
    duration: THROUGHPUT_DURATION,
    // Never overlap the latency run: it would measure the throughput run's queueing.
    startTime: runLatency ? LATENCY_MAX_DURATION : '0s',
    gracefulStop: '10s',
  };
  thresholds['http_req_duration{scenario:warm_throughput}'] = [`p(99)<${P99_THROUGHPUT_MS}`];
  thresholds['http_req_failed{scenario:warm_throughput}'] = [`rate<${MAX_ERROR_RATE}`];
  thresholds['checks{scenario:warm_throughput}'] = [`rate>${1 - MAX_ERROR_RATE}`];
}

export const options = {
  scenarios,
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
  setupTimeout: '120s',
  // http.batch runs only 6 requests per host at a time by default; the warm-up needs them all.
  batch: Math.max(20, THROUGHPUT_VUS),
  batchPerHost: Math.max(6, THROUGHPUT_VUS),
};

function errorText(res) {
  try {
    const e = res.json('error');
    if (e && e.code) return `${e.code}: ${e.message}`;
  } catch (e) {
    // not JSON
  }
  return String(res.body || '').slice(0, 200);
}

export function setup() {
  if (!API_KEY) {
    exec.test.abort('no API key: set KILN_API_KEY, or start the platform (npm start) so it writes .kiln/admin-key');
  }
  const first = http.post(INVOKE_URL, BODY, PARAMS);
  if (first.status === 0) {
    exec.test.abort(`cannot reach the kiln gateway at ${BASE_URL}: ${first.error}. Is the platform running (npm start)?`);
  }
  if (first.status === 401 || first.status === 403) {
    exec.test.abort(`the gateway rejected the API key (${first.status} ${errorText(first)})`);
  }
  if (first.status === 404) {
    exec.test.abort(`function '${FUNCTION}' not found (${errorText(first)}); deploy it: npx kiln deploy functions/${FUNCTION}`);
  }
  if (first.status !== 200) {
    exec.test.abort(`the first call to '${FUNCTION}' failed: ${first.status} ${errorText(first)}`);
  }
  // Warm-up: as many concurrent calls as the throughput run has VUs, twice, so that enough
  // containers are warm (a function with concurrency 1 needs one container per caller).
  const n = runThroughput ? THROUGHPUT_VUS : 1;
  for (let round = 0; round < 2; round++) {
    http.batch(Array.from({ length: n }, () => ['POST', INVOKE_URL, BODY, PARAMS]));
  }
  return {};
}

export default function () {
  const res = http.post(INVOKE_URL, BODY, PARAMS);
  const start = res.headers['X-Kiln-Start'];
  if (start) starts.add(1, { start });
  check(res, { 'status is 200': (r) => r.status === 200 });
}
