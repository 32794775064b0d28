// Per-invocation accounting from the container's own cgroup: CPU time and peak memory.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { eventually, Platform, startPlatform, stopClean } from './harness';

jest.setTimeout(120_000);

let p: Platform;
let dir: string;
beforeAll(async () => {
  p = await startPlatform({ KILN_PREWARM_COUNT: '0', KILN_PAUSE_GRACE_MS: '60000' });
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-acct-'));
  await fsp.writeFile(path.join(dir, 'kiln.json'), JSON.stringify({ name: 'meter', runtime: 'node20', handler: 'index.handler', memoryMB: 256 }));
  await fsp.writeFile(path.join(dir, 'index.js'), `
exports.handler = async (e) => {
  if (e.burnMs) { const end = process.cpuUsage().user / 1000 + e.burnMs; let x = 0; while (process.cpuUsage().user / 1000 < end) x++; return { x }; }
  if (e.touchMB) { const b = Buffer.alloc(e.touchMB * 2 ** 20, 1); return { sum: b[b.length - 1] }; }
  return {};
};`);
  expect((await p.cli(['deploy', dir])).code).toBe(0);
});
afterAll(async () => {
  if (!p) return;
  await stopClean(p);
  await fsp.rm(dir, { recursive: true, force: true });
});

it('reports the CPU a call used within 20 % of what its cgroup counted', async () => {
  await p.api('POST', '/v1/functions/meter/invoke', {}); // a warm container
  const ps = await eventually(async () => {
    const body = JSON.parse((await p.cli(['ps', '--json'])).stdout);
    return body.containers.find((c: any) => c.function === 'meter');
  });
  const usage = `/sys/fs/cgroup/cpuacct/kiln/${p.invokerId}/${ps.id}/cpuacct.usage`;
  const before = Number(fs.readFileSync(usage, 'utf8'));
  const res = await p.api('POST', '/v1/functions/meter/invoke', { burnMs: 200 });
  const counted = (Number(fs.readFileSync(usage, 'utf8')) - before) / 1e6;
  expect(res.status).toBe(200);
  const rec = (await p.api('GET', `/v1/activations/${res.headers.get('x-kiln-activation-id')}`)).body;
  expect(counted).toBeGreaterThan(190);
  expect(Math.abs(rec.cpuMs - counted) / counted).toBeLessThan(0.2);
  expect(rec.billedMs).toBe(Math.ceil(rec.durationMs));
});

it('reports a peak of at least the memory a call touched', async () => {
  const res = await p.api('POST', '/v1/functions/meter/invoke', { touchMB: 100 });
  expect(res.status).toBe(200);
  const rec = (await p.api('GET', `/v1/activations/${res.headers.get('x-kiln-activation-id')}`)).body;
  expect(rec.peakMemoryBytes).toBeGreaterThanOrEqual(100 * 2 ** 20);
  expect(rec.peakMemoryBytes).toBeLessThan(256 * 2 ** 20);
});
