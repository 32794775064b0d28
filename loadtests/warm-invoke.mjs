#!/usr/bin/env node
// Warm-invoke load test for a local kiln gateway, with plain Node.js 20 and no dependencies.
//
//   node loadtests/warm-invoke.mjs [--scenario all|warm_latency|warm_throughput]
//        [--url URL] [--key KEY] [--function NAME] [--connections N] [--requests N]
//        [--duration S] [--timeout S] [--warmup N] [--data JSON]
//        [--max-p99 MS] [--max-error-rate R] [--json]
//
// Scenarios (the same as loadtests/warm-invoke.k6.js):
//   warm_latency     1 connection,  at most 1000 requests or 30 s: latency of one warm caller
//   warm_throughput  64 connections, at most 20000 requests or 30 s: how many warm calls/s
// --connections, --requests and --duration override those defaults for every scenario that
// runs. Each scenario stops by itself at whichever of its request count or duration comes
// first; requests still in flight then get at most --timeout seconds to finish.
//
// Before measuring, one request checks the URL, key and function (any failure stops the tool
// at once, exit 1), then --warmup requests (default: 2 per connection) start enough warm
// containers; they are not measured. Only loopback URLs are accepted (127.0.0.1, localhost, ::1):
// this is a tool for measuring your own machine, not for loading someone else's.
//
// Exit status: 0 done, 1 could not run (bad flags, gateway unreachable, key or function wrong),
// 2 ran but a threshold failed (error rate above --max-error-rate [0.01], or p99 above --max-p99).
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

const SCENARIOS = {
  warm_latency: { connections: 1, requests: 1000, duration: 30 },
  warm_throughput: { connections: 64, requests: 20000, duration: 30 },
};

const USAGE = `usage: node loadtests/warm-invoke.mjs [options]
  --scenario NAME      all (default), warm_latency or warm_throughput
  --url URL            gateway URL [env KILN_URL, else http://127.0.0.1:$KILN_PORT or :8080]; loopback only
  --key KEY            API key [env KILN_API_KEY, else $KILN_STATE_DIR/admin-key, default .kiln/admin-key]
  --function NAME      function to invoke [env FUNCTION, else hello]
  --connections N      concurrent keep-alive connections [scenario: 1 or 64]
  --requests N         stop after N measured requests [scenario: 1000 or 20000]
  --duration S         stop after S seconds [30]
  --timeout S          per-request timeout in seconds [10]
  --warmup N           unmeasured requests before each scenario [2 x connections]
  --data JSON          request body [{"name":"loadtest"}]
  --max-p99 MS         exit 2 if a scenario's p99 latency is above MS
  --max-error-rate R   exit 2 if a scenario's error rate is above R [0.01]
  --json               print the results as JSON
  -h, --help           this text`;

class UsageError extends Error {}
class SetupError extends Error {}

function fail(err) {
  const usage = err instanceof UsageError;
  const known = usage || err instanceof SetupError;
  process.stderr.write(`warm-invoke: ${known ? err.message : err?.stack ?? err}\n`);
  process.exit(1);
}

function positiveInt(name, v) {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, not '${v}'`);
  return n;
}

function nonNegativeInt(name, v) {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a whole number >= 0, not '${v}'`);
  return n;
}

function positiveNumber(name, v) {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a number > 0, not '${v}'`);
  return n;
}

function parseOptions(argv, env) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        scenario: { type: 'string' },
        url: { type: 'string' },
        key: { type: 'string' },
        function: { type: 'string' },
        connections: { type: 'string' },
        requests: { type: 'string' },
        duration: { type: 'string' },
        timeout: { type: 'string' },
        warmup: { type: 'string' },
        data: { type: 'string' },
        'max-p99': { type: 'string' },
        'max-error-rate': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (e) {
    throw new UsageError(`${e.message} (see --help)`);
  }
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }

  const scenario = values.scenario ?? 'all';
  if (scenario !== 'all' && !(scenario in SCENARIOS)) {
    throw new UsageError(`--scenario must be all, ${Object.keys(SCENARIOS).join(' or ')}; not '${scenario}'`);
  }

  const url = parseUrl(values.url || env.KILN_URL || `http://127.0.0.1:${env.KILN_PORT || 8080}`);

  const fn = values.function || env.FUNCTION || 'hello';
  if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(fn)) throw new UsageError(`--function '${fn}' is not a valid function name`);

  let body = '{"name":"loadtest"}';
  if (values.data !== undefined) {
    try {
      JSON.parse(values.data);
    } catch {
      throw new UsageError('--data must be JSON');
    }
    body = values.data;
  }

  const maxErrorRate = values['max-error-rate'] === undefined ? 0.01 : Number(values['max-error-rate']);
  if (!Number.isFinite(maxErrorRate) || maxErrorRate < 0 || maxErrorRate > 1) {
    throw new UsageError(`--max-error-rate must be between 0 and 1, not '${values['max-error-rate']}'`);
  }

  return {
    scenarios: scenario === 'all' ? Object.keys(SCENARIOS) : [scenario],
    url,
    key: values.key, // resolved after the URL check, so a bad URL is reported first
    function: fn,
    body: Buffer.from(body),
    connections: positiveInt('connections', values.connections),
    requests: positiveInt('requests', values.requests),
    duration: positiveNumber('duration', values.duration),
    timeoutMs: (positiveNumber('timeout', values.timeout) ?? 10) * 1000,
    warmup: nonNegativeInt('warmup', values.warmup),
    maxP99: positiveNumber('max-p99', values['max-p99']),
    maxErrorRate,
    json: values.json,
  };
}

function parseUrl(raw) {
  let u;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`'${raw}' is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (u.protocol !== 'http:') throw new UsageError(`only http:// URLs are supported, not '${u.protocol}//' (${raw})`);
  if (!LOOPBACK.has(u.hostname)) {
    throw new UsageError(
      `refusing to load ${u.host}: this tool only targets a kiln on this machine ` +
        `(host 127.0.0.1, localhost or [::1]); use k6 (loadtests/warm-invoke.k6.js) against other hosts you own`,
    );
  }
  return u;
}

/** The API key, or a SetupError saying why there is none (reported after the reachability check). */
function resolveKey(flag, env) {
  if (flag) return flag;
  if (env.KILN_API_KEY) return env.KILN_API_KEY;
  const stateDir = path.resolve(env.KILN_STATE_DIR || path.join(REPO_ROOT, '.kiln'));
  const file = path.join(stateDir, 'admin-key');
  let key = '';
  try {
    key = fs.readFileSync(file, 'utf8').trim();
  } catch {
    return new SetupError(`no API key: pass --key, set KILN_API_KEY, or start the platform (npm start) so it writes ${file}`);
  }
  return key || new SetupError(`no API key: ${file} is empty`);
}

/** One POST; resolves with {status, start, ms} or {error, ms}; never rejects. */
function invokeOnce(target, agent, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e6;
    let settled = false;
    const done = (r) => {
      if (settled) return;
      settled = true;
      resolve({ ...r, ms: elapsed() });
    };
    const req = http.request(
      {
        agent,
        method: 'POST',
        hostname: target.hostname,
        port: target.port,
        path: target.path,
        headers: target.headers,
        timeout: timeoutMs, // socket idle timeout
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          done({ status: res.statusCode, start: res.headers['x-kiln-start'], body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          done({ error: e.code || e.message, message: e.message });
        });
        res.on('close', () => {
          clearTimeout(timer);
          if (!res.complete) done({ error: 'ECONNRESET', message: 'the connection closed mid-response' });
        });
      },
    );
    // An overall deadline too: the socket timeout alone restarts with every byte.
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('request timed out'), { code: 'TIMEOUT' })), timeoutMs);
    req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'TIMEOUT' })));
    req.on('error', (e) => {
      clearTimeout(timer);
      done({ error: e.code || e.message, message: e.message });
    });
    req.end(target.body);
  });
}

function makeTarget(opts, key) {
  const u = opts.url;
  const base = u.pathname.replace(/\/+$/, '');
  return {
    hostname: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port || 80,
    path: `${base}/v1/functions/${encodeURIComponent(opts.function)}/invoke`,
    body: opts.body,
    headers: {
      ...(typeof key === 'string' ? { Authorization: `Bearer ${key}` } : {}),
      'Content-Type': 'application/json',
      'Content-Length': String(opts.body.length),
      Accept: 'application/json',
    },
  };
}

function errorMessage(body) {
  try {
    const e = JSON.parse(body).error;
    if (e && e.code) return `${e.code}: ${e.message}`;
  } catch {
    /* not JSON */
  }
  return body.slice(0, 200);
}

/**
 * The first request: checks that the URL, key and function work, and fails fast if not.
 * `keyProblem` (no key found) is reported only once the gateway is known to answer.
 */
async function preflight(opts, target, agent, keyProblem) {
  const where = `${opts.url.origin}`;
  const r = await invokeOnce(target, agent, opts.timeoutMs);
  if (r.error) {
    const hint =
      r.error === 'ECONNREFUSED'
        ? ' Is the platform running? Start it with `npm start`, or pass --url.'
        : r.error === 'TIMEOUT'
          ? ` No answer within ${opts.timeoutMs / 1000} s.`
          : '';
    throw new SetupError(`cannot reach the kiln gateway at ${where}: ${r.message || r.error}.${hint}`);
  }
  if (keyProblem) throw keyProblem;
  if (r.status === 200) return r;
  const msg = errorMessage(r.body);
  if (r.status === 401 || r.status === 403) throw new SetupError(`the gateway at ${where} rejected the API key (${r.status} ${msg})`);
  if (r.status === 404) {
    throw new SetupError(`function '${opts.function}' was not found at ${where} (${msg}); deploy it first: npx kiln deploy functions/${opts.function}`);
  }
  if (r.status === 202) throw new SetupError(`the first call to '${opts.function}' did not finish within the gateway's wait limit (202)`);
  throw new SetupError(`the first call to '${opts.function}' failed: ${r.status} ${msg}`);
}

/** Runs `total` requests (or until `deadline`) over `connections` concurrent loops. */
async function drive({ target, agent, connections, total, deadlineMs, timeoutMs, onResult }) {
  let issued = 0;
  const loop = async () => {
    while (issued < total && Date.now() < deadlineMs) {
      issued++;
      onResult(await invokeOnce(target, agent, timeoutMs));
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length); // nearest rank
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

const round = (x) => (x === null ? null : Math.round(x * 100) / 100);

async function runScenario(name, opts, target) {
  const defaults = SCENARIOS[name];
  const connections = opts.connections ?? defaults.connections;
  const requests = opts.requests ?? defaults.requests;
  const duration = opts.duration ?? defaults.duration;
  const warmup = opts.warmup ?? 2 * connections;
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });

  try {
    // Warm-up: enough concurrent calls that each connection finds a warm container.
    let warmupErrors = 0;
    if (warmup > 0) {
      await drive({
        target, agent, connections, total: warmup, deadlineMs: Date.now() + Math.max(duration, 30) * 1000, timeoutMs: opts.timeoutMs,
        onResult: (r) => { if (r.error || r.status !== 200) warmupErrors++; },
      });
    }

    const latencies = [];
    const errors = {};
    const starts = {};
    let ok = 0;
    let completed = 0;
    const t0 = process.hrtime.bigint();
    await drive({
      target, agent, connections, total: requests, deadlineMs: Date.now() + duration * 1000, timeoutMs: opts.timeoutMs,
      onResult: (r) => {
        completed++;
        if (r.error) {
          errors[r.error] = (errors[r.error] ?? 0) + 1;
          return;
        }
        latencies.push(r.ms);
        if (r.start) starts[r.start] = (starts[r.start] ?? 0) + 1;
        if (r.status === 200) ok++;
        else errors[String(r.status)] = (errors[String(r.status)] ?? 0) + 1;
      },
    });
    const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;

    latencies.sort((a, b) => a - b);
    const failed = completed - ok;
    const errorRate = completed ? failed / completed : 0;
    const p99 = percentile(latencies, 99);
    const thresholds = {
      errorRate: { max: opts.maxErrorRate, ok: errorRate <= opts.maxErrorRate },
      ...(opts.maxP99 !== undefined ? { p99Ms: { max: opts.maxP99, ok: p99 !== null && p99 <= opts.maxP99 } } : {}),
    };
    return {
      scenario: name,
      connections,
      limits: { requests, durationS: duration },
      warmup: { requests: warmup, errors: warmupErrors },
      requests: completed,
      ok,
      failed,
      errorRate: Math.round(errorRate * 1e6) / 1e6,
      elapsedS: round(elapsedS),
      throughputRps: round(elapsedS > 0 ? completed / elapsedS : 0), // every outcome, errors too
      okRps: round(elapsedS > 0 ? ok / elapsedS : 0),
      latencyMs: {
        min: round(latencies[0] ?? null),
        mean: round(latencies.length ? latencies.reduce((a, b) => a + b, 0) / latencies.length : null),
        p50: round(percentile(latencies, 50)),
        p90: round(percentile(latencies, 90)),
        p99: round(p99),
        max: round(latencies[latencies.length - 1] ?? null),
      },
      errors,
      starts,
      thresholds,
      passed: Object.values(thresholds).every((t) => t.ok),
    };
  } finally {
    agent.destroy();
  }
}

function printText(report) {
  const out = [];
  out.push(`kiln warm invoke: POST ${report.url}/v1/functions/${report.function}/invoke`);
  for (const s of report.scenarios) {
    const l = s.latencyMs;
    const f = (x) => (x === null ? '-' : x.toFixed(2));
    out.push('');
    out.push(`${s.scenario}: ${s.connections} connection${s.connections === 1 ? '' : 's'}, ` +
      `${s.requests} requests in ${s.elapsedS.toFixed(2)} s (limits: ${s.limits.requests} requests, ${s.limits.durationS} s; warm-up ${s.warmup.requests})`);
    out.push(`  latency ms   p50 ${f(l.p50)}   p90 ${f(l.p90)}   p99 ${f(l.p99)}   max ${f(l.max)}   (min ${f(l.min)}, mean ${f(l.mean)})`);
    out.push(`  throughput   ${s.throughputRps.toFixed(1)} req/s` + (s.failed ? ` (${s.okRps.toFixed(1)} req/s with status 200)` : ''));
    const errs = Object.entries(s.errors).sort((a, b) => b[1] - a[1]);
    out.push(`  errors       ${errs.length ? errs.map(([k, v]) => `${k}: ${v}`).join(', ') : 'none'}` +
      (s.failed ? ` (${(s.errorRate * 100).toFixed(2)} %)` : ''));
    const starts = Object.entries(s.starts);
    if (starts.length) out.push(`  starts       ${starts.map(([k, v]) => `${k}: ${v}`).join(', ')}`);
    if (s.warmup.errors) out.push(`  warm-up      ${s.warmup.errors} of ${s.warmup.requests} warm-up requests failed`);
    for (const [k, t] of Object.entries(s.thresholds)) {
      if (!t.ok) out.push(`  THRESHOLD FAILED: ${k} above ${t.max}`);
    }
  }
  process.stdout.write(out.join('\n') + '\n');
}

async function main() {
  const opts = parseOptions(process.argv.slice(2), process.env);
  const key = resolveKey(opts.key, process.env);
  const target = makeTarget(opts, key);

  const probe = new http.Agent({ keepAlive: false });
  try {
    await preflight(opts, target, probe, key instanceof Error ? key : undefined);
  } finally {
    probe.destroy();
  }

  const report = {
    url: opts.url.origin + opts.url.pathname.replace(/\/+$/, ''),
    function: opts.function,
    startedAt: new Date().toISOString(),
    scenarios: [],
  };
  for (const name of opts.scenarios) {
    report.scenarios.push(await runScenario(name, opts, target));
  }
  report.passed = report.scenarios.every((s) => s.passed);

  if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else printText(report);
  process.exitCode = report.passed ? 0 : 2;
}

main().catch(fail);
