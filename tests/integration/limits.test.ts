// Per-namespace admission limits at the gateway: rate and in-flight invocations, answered 429.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fn, Platform, startPlatform, stopClean } from './harness';

jest.setTimeout(120_000);

const RATE = 1; // tokens per second
const BURST = 5;

let p: Platform;
let dir: string;
beforeAll(async () => {
  // 1/s, the lowest rate: even calls slowed down by a loaded machine come faster than it refills.
  p = await startPlatform({ KILN_RATE_LIMIT: String(RATE), KILN_RATE_BURST: String(BURST), KILN_INFLIGHT_LIMIT: '2', KILN_PREWARM_COUNT: '0' });
  expect((await p.cli(['deploy', fn('hello')])).code).toBe(0);
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-slow-'));
  await fsp.writeFile(path.join(dir, 'kiln.json'), JSON.stringify({ name: 'slow', runtime: 'node20', handler: 'index.handler', memoryMB: 64, concurrency: 4 }));
  // Long enough that the third of three concurrent calls arrives while the first two still run.
  await fsp.writeFile(path.join(dir, 'index.js'), 'exports.handler = async () => { await new Promise((r) => setTimeout(r, 3000)); return 1; };');
  expect((await p.cli(['deploy', dir])).code).toBe(0);
});
afterAll(async () => {
  if (!p) return;
  await stopClean(p);
  await fsp.rm(dir, { recursive: true, force: true });
});

it('answers 429 rate_limited past the in-flight limit, and admits again when calls end', async () => {
  // The bucket starts full (5 tokens); these three calls take 3, the refused one included.
  const calls = await Promise.all([0, 1, 2].map(() => p.api('POST', '/v1/functions/slow/invoke', {})));
  const statuses = calls.map((c) => c.status).sort();
  expect(statuses).toEqual([200, 200, 429]);
  const refused = calls.find((c) => c.status === 429)!;
  expect(refused.body.error.code).toBe('rate_limited');
  expect(refused.body.error.message).toMatch(/in flight/);
  expect((await p.api('POST', '/v1/functions/slow/invoke', {})).status).toBe(200);
});

it('answers 429 rate_limited past the rate limit, and nothing is queued for refused calls', async () => {
  await new Promise((r) => setTimeout(r, 1200)); // at least a token
  const before = (await p.api('GET', '/v1/activations?function=hello&limit=200')).body.activations.length;
  expect((await p.api('POST', '/v1/functions/hello/invoke', {})).status).toBe(200); // warm, so the calls below are quick
  await new Promise((r) => setTimeout(r, (BURST / RATE) * 1000 + 200)); // a full bucket
  const calls = [];
  const t = Date.now();
  // One at a time: the in-flight limit (2) never applies, only the rate.
  for (let i = 0; i < 12; i++) calls.push(await p.api('POST', '/v1/functions/hello/invoke', {}));
  const elapsed = Date.now() - t;
  const accepted = calls.filter((c) => c.status === 200).length;
  const refused = calls.filter((c) => c.status === 429);
  expect(accepted).toBeGreaterThanOrEqual(BURST);
  // The burst, plus what refilled while the calls ran, however slow they were.
  expect(accepted).toBeLessThanOrEqual(BURST + Math.floor((elapsed * RATE) / 1000));
  expect(refused.length).toBeGreaterThan(0);
  expect(refused.length).toBe(12 - accepted);
  expect(refused[0].body.error).toMatchObject({ code: 'rate_limited' });
  expect(refused[0].body.error.message).toMatch(/rate limit/);
  const after = (await p.api('GET', '/v1/activations?function=hello&limit=200')).body.activations.length;
  expect(after - before).toBe(accepted + 1);
});

it("a namespace's own limits: set by the admin, used at once, back to the defaults on request", async () => {
  const created = JSON.parse((await p.cli(['namespaces', 'create', 'team-l', '--json'])).stdout);
  const key = created.apiKey as string;
  const as = { KILN_API_KEY: key };
  expect((await p.cli(['deploy', fn('hello')], as)).code).toBe(0);
  const limits = (k: string | null = null) => p.api('GET', '/v1/namespaces/team-l/limits', undefined, { key: k ?? undefined });
  expect((await limits(key)).body).toEqual({ namespace: 'team-l', ratePerSecond: RATE, burst: BURST, inFlight: 2, own: [] });

  // Bad input and other namespaces' keys change nothing.
  const put = (body: unknown, k?: string) => p.api('PUT', '/v1/namespaces/team-l/limits', body, { key: k });
  expect((await put({ ratePerSecond: -1 })).status).toBe(400);
  expect((await put({ rate: 5 })).status).toBe(400);
  expect((await put({ burst: 1.5 })).status).toBe(400);
  expect((await put({ burst: 0 })).status).toBe(400); // a bucket holds at least one call
  expect((await put({ burst: 100 }, key)).status).toBe(403); // a namespace cannot raise its own
  expect((await p.api('PUT', '/v1/namespaces/nobody/limits', { burst: 1 })).status).toBe(404);
  expect((await limits(key)).body.own).toEqual([]);

  // No rate limit and no in-flight limit for team-l: twelve quick calls all run, while the
  // default namespace stays bound by the gateway's defaults.
  const set = await p.cli(['namespaces', 'limits', 'team-l', '--rate', '0', '--in-flight', '0', '--json']);
  expect(set.code).toBe(0);
  expect(JSON.parse(set.stdout)).toEqual({ namespace: 'team-l', ratePerSecond: 0, burst: BURST, inFlight: 0, own: ['ratePerSecond', 'inFlight'] });
  const calls = await Promise.all(Array.from({ length: 12 }, () => p.api('POST', '/v1/functions/hello/invoke', {}, { key })));
  expect(calls.map((c) => c.status)).toEqual(Array(12).fill(200));

  // A tight one: burst 1 and 1 per second, so one of two calls sent together is refused.
  expect((await put({ ratePerSecond: 1, burst: 1, inFlight: null })).body).toMatchObject({ ratePerSecond: 1, burst: 1, inFlight: 2, own: ['ratePerSecond', 'burst'] });
  await new Promise((r) => setTimeout(r, 1100)); // a full bucket of one
  const two = await Promise.all([0, 1].map(() => p.api('POST', '/v1/functions/hello/invoke', {}, { key })));
  expect(two.map((c) => c.status).sort()).toEqual([200, 429]);
  expect(two.find((c) => c.status === 429)!.body.error.message).toMatch(/rate limit of 1 invocations per second/);

  // Back to the defaults.
  const reset = await p.cli(['namespaces', 'limits', 'team-l', '--rate', 'default', '--burst', 'default', '--json']);
  expect(JSON.parse(reset.stdout)).toEqual({ namespace: 'team-l', ratePerSecond: RATE, burst: BURST, inFlight: 2, own: [] });
  const shown = await p.cli(['namespaces', 'limits', 'team-l'], as);
  expect(shown.stdout).toMatch(/rate \(invocations\/s\)\s+1\s+default/);
  expect((await p.cli(['namespaces', 'limits', 'team-l', '--burst', 'lots'])).code).toBe(2);
});
