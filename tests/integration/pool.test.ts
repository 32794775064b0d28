// The warm pool on real containers: prewarmed stem cells, freezing and thawing with the cgroup
// freezer, version changes, eviction and waiting for memory instead of over-committing it.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { eventually, Platform, startPlatform, stopClean } from './harness';

jest.setTimeout(120_000);

const made: string[] = [];
afterAll(() => Promise.all(made.map((d) => fsp.rm(d, { recursive: true, force: true }))));

/** Writes a function that reports what its container is and sees; returns its folder. */
async function probeFunction(name: string, marker: string, memoryMB = 128): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `kiln-fn-${name}-`));
  made.push(dir);
  await fsp.writeFile(path.join(dir, 'kiln.json'), JSON.stringify({ name, runtime: 'node20', handler: 'index.handler', memoryMB, timeoutMs: 3000 }));
  await fsp.writeFile(path.join(dir, 'index.js'), `
const os = require('os'), fs = require('fs');
exports.handler = async (event) => {
  if (event.sleep) await new Promise((r) => setTimeout(r, event.sleep));
  let codeWrite = 'written';
  try { fs.writeFileSync('/function/x', '1'); } catch (e) { codeWrite = e.code; }
  return { host: os.hostname(), marker: ${JSON.stringify(marker)}, env: process.env.GREETING || null, codeWrite,
    memoryLimit: Number(fs.readFileSync('/sys/fs/cgroup/memory/memory.limit_in_bytes', 'utf8')) };
};`);
  return dir;
}

async function deploy(p: Platform, dir: string) {
  const r = await p.cli(['deploy', dir, '--json']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

const runcIds = (p: Platform) =>
  execFileSync('runc', ['--root', path.join(p.stateDir, 'runc', p.invokerId), 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);

const freezerState = (p: Platform, id: string) =>
  fs.readFileSync(`/sys/fs/cgroup/freezer/kiln/${p.invokerId}/${id}/freezer.state`, 'utf8').trim();

async function metric(p: Platform, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.env.KILN_INVOKER_METRICS_PORT}/metrics`)).text();
  const line = text.split('\n').find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels));
  return line ? Number(line.split(' ').pop()) : NaN;
}

describe('prewarm, freeze, thaw and versions', () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform({ KILN_PREWARM_COUNT: '1', KILN_PAUSE_GRACE_MS: '100' });
  });
  afterAll(async () => p && stopClean(p));

  const prewarmReady = () => eventually(async () => (await metric(p, 'kiln_containers', 'state="prewarm"')) === 1);

  it('keeps a frozen stem cell and specialises it on a first call', async () => {
    await prewarmReady();
    const [stem] = runcIds(p);
    expect(freezerState(p, stem)).toBe('FROZEN');
    await deploy(p, await probeFunction('probe', 'one', 192));
    const res = await p.api('POST', '/v1/functions/probe/invoke', {});
    expect(res.status).toBe(200);
    expect(res.headers.get('x-kiln-start')).toBe('prewarm');
    expect(res.body.host).toBe(stem);
    expect(res.body.memoryLimit).toBe(192 * 2 ** 20); // the function's limit, not the stem's
    expect(res.body.codeWrite).toBe('EROFS'); // the code bind-mounted in is read-only
    const rec = await p.api('GET', `/v1/activations/${res.headers.get('x-kiln-activation-id')}`);
    expect(rec.body).toMatchObject({ start: 'prewarm', status: 'success' });
    expect(rec.body.initMs).toBeGreaterThan(0);
    await prewarmReady(); // replenished in the background
  });

  it('freezes a container idle past the pause grace and thaws it for the next call', async () => {
    const first = await p.api('POST', '/v1/functions/probe/invoke', {});
    const host = first.body.host;
    await eventually(async () => freezerState(p, host) === 'FROZEN');
    const res = await p.api('POST', '/v1/functions/probe/invoke', { sleep: 10 });
    expect(res.headers.get('x-kiln-start')).toBe('thawed');
    expect(res.body.host).toBe(host);
    const rec = await p.api('GET', `/v1/activations/${res.headers.get('x-kiln-activation-id')}`);
    expect(rec.body.start).toBe('thawed');
    expect(await metric(p, 'kiln_thaw_seconds_count', '')).toBeGreaterThan(0);
  });

  it('does not count time frozen against the timeout', async () => {
    const a = await p.api('POST', '/v1/functions/probe/invoke', {});
    await eventually(async () => freezerState(p, a.body.host) === 'FROZEN');
    await new Promise((r) => setTimeout(r, 3500)); // longer than timeoutMs, all of it frozen
    const b = await p.api('POST', '/v1/functions/probe/invoke', {});
    expect(b.status).toBe(200);
    expect(b.body.host).toBe(a.body.host);
  });

  it('concurrency > 1: a process of a call still running is not taken for one left behind by a call that ended', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-fn-spawner-'));
    made.push(dir);
    await fsp.writeFile(path.join(dir, 'kiln.json'), JSON.stringify({ name: 'spawner', runtime: 'node20', handler: 'index.handler', memoryMB: 128, timeoutMs: 5000, concurrency: 4 }));
    await fsp.writeFile(path.join(dir, 'index.js'), `
const cp = require('child_process'), os = require('os');
exports.handler = async (event) => {
  if (event.child) await new Promise((r) => cp.execFile('sleep', ['1'], r)); // a child for the call's length
  if (event.daemon) cp.spawn('sleep', ['1000'], { detached: true, stdio: 'ignore' }).unref(); // left behind
  return { host: os.hostname() };
};`);
    await deploy(p, dir);
    const call = (event: object) => p.api('POST', '/v1/functions/spawner/invoke', event);
    const host = (await call({})).body.host;
    const long = call({ child: true });
    await new Promise((r) => setTimeout(r, 300)); // its sleep runs now
    const quick = await call({}); // ends while the other call's child runs
    const [l, q] = [await long, quick];
    expect([l.status, q.status]).toEqual([200, 200]);
    expect([l.body.host, q.body.host]).toEqual([host, host]);
    const after = await call({});
    expect(after.body.host).toBe(host); // not replaced
    // A process still there when the last call has ended is one left behind: replaced.
    const d = await call({ daemon: true });
    expect(d.body.host).toBe(host);
    expect((await call({})).body.host).not.toBe(host);
  });

  it('sends calls to a new version at once and removes the old containers', async () => {
    const before = await p.api('POST', '/v1/functions/probe/invoke', {});
    const oldHost = before.body.host;
    const v2 = await deploy(p, await probeFunction('probe', 'two', 192));
    expect(v2.version).toBe(2);
    const after = await p.api('POST', '/v1/functions/probe/invoke', {});
    expect(after.body.marker).toBe('two');
    expect(after.body.host).not.toBe(oldHost);
    await eventually(async () => !runcIds(p).includes(oldHost));
  });
});

describe('memory capacity', () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform({ KILN_PREWARM_COUNT: '0', KILN_INVOKER_MEMORY_MB: '256', KILN_WAIT_FOR_ROOM_MS: '500' });
    for (const n of ['fa', 'fb', 'fc']) await deploy(p, await probeFunction(n, n));
    await deploy(p, await probeFunction('big', 'big', 256));
  });
  afterAll(async () => p && stopClean(p));

  it('starts cold without stem cells, and evicts the least recently used idle container for room', async () => {
    const a = await p.api('POST', '/v1/functions/fa/invoke', {});
    expect(a.headers.get('x-kiln-start')).toBe('cold');
    const b = await p.api('POST', '/v1/functions/fb/invoke', {});
    await p.api('POST', '/v1/functions/fb/invoke', {}); // fb is now more recent than fa
    const c = await p.api('POST', '/v1/functions/fc/invoke', {});
    expect(c.status).toBe(200);
    const ids = runcIds(p);
    expect(ids).not.toContain(a.body.host);
    expect(ids).toContain(b.body.host);
    expect(ids).toContain(c.body.host);
  });

  it('makes a call wait for memory instead of over-committing, then runs it', async () => {
    const slow = await p.api('POST', '/v1/functions/big/invoke?async=true', { sleep: 1500 });
    const slowId = slow.body.activationId;
    await eventually(async () => (await p.api('GET', `/v1/activations/${slowId}`)).body.status === 'running');
    const small = await p.api('POST', '/v1/functions/fa/invoke', {});
    expect(small.status).toBe(200);
    // It waited for big to finish: queued while big ran, started only once big had ended (the
    // records' own times, not the test's clock: on a loaded machine big may be nearly done by now).
    const rec = (await p.api('GET', `/v1/activations/${small.headers.get('x-kiln-activation-id')}`)).body;
    const big = (await p.api('GET', `/v1/activations/${slowId}`)).body;
    expect(big.status).toBe('success');
    expect(rec.queuedAt).toBeLessThan(big.endedAt);
    expect(rec.startedAt).toBeGreaterThanOrEqual(big.endedAt);
    expect(rec.waitMs).toBeGreaterThanOrEqual(big.endedAt - rec.queuedAt); // and its waitMs counts that wait
    expect(await metric(p, 'kiln_invoker_memory_bytes', 'kind="used"')).toBeLessThanOrEqual(256 * 2 ** 20);
  });
});
