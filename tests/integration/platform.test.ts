// End to end through the real parts: embedded redis-server, gateway, invoker, runc containers.
// Functions are deployed with the CLI and invoked over HTTP.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tar from 'tar';
import { eventually, fn, Platform, startPlatform, stopClean } from './harness';

jest.setTimeout(120_000);

let p: Platform;
let pids: number[] = [];

beforeAll(async () => {
  // No test here needs a container frozen; the default grace (500 ms) can freeze one between two
  // calls on a loaded machine, and those expecting a 'warm' start would see 'thawed'.
  p = await startPlatform({ KILN_MAX_BODY_BYTES: String(256 * 1024), KILN_PAUSE_GRACE_MS: '60000' });
  pids = await p.children();
  for (const name of ['hello', 'echo', 'slugify', 'inspect', 'crash']) {
    const r = await p.cli(['deploy', fn(name), '--json']);
    expect(r).toMatchObject({ code: 0 });
    expect(JSON.parse(r.stdout)).toMatchObject({ name, namespace: 'default', version: 1, digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });
  }
});

afterAll(async () => {
  if (!p) return;
  await stopClean(p, pids);
});

describe('invoking', () => {
  it('runs a function: a new container first (cold or prewarmed), then warm, with a full activation record', async () => {
    const first = await p.api('POST', '/v1/functions/hello/invoke', { name: 'kiln' });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ message: 'Hello, kiln!' });
    expect(first.headers.get('x-kiln-start')).toMatch(/^(cold|prewarm)$/);
    const second = await p.api('POST', '/v1/functions/hello/invoke', {});
    expect(second.body).toEqual({ message: 'Hello, world!' });
    expect(second.headers.get('x-kiln-start')).toBe('warm');

    const id = second.headers.get('x-kiln-activation-id')!;
    const rec = await p.api('GET', `/v1/activations/${id}`);
    expect(rec.status).toBe(200);
    expect(rec.body).toMatchObject({
      activationId: id, namespace: 'default', function: 'hello', version: 1, status: 'success', start: 'warm',
      memoryMB: 128, invoker: p.invokerId, result: { message: 'Hello, world!' },
    });
    const r = rec.body;
    expect(r.queuedAt).toBeLessThanOrEqual(r.startedAt);
    expect(r.startedAt).toBeLessThanOrEqual(r.endedAt);
    expect(r.billedMs).toBe(Math.max(1, Math.ceil(r.durationMs)));
    for (const f of ['waitMs', 'initMs', 'durationMs', 'cpuMs', 'peakMemoryBytes']) expect(typeof r[f]).toBe('number');
  });

  it('isolates the function: own processes, own hostname, loopback only, memory limit, read-only root', async () => {
    const res = await p.api('POST', '/v1/functions/inspect/invoke', {});
    expect(res.status).toBe(200);
    const seen = res.body;
    expect(seen.pids).toEqual([1]);
    expect(seen.hostname).not.toBe(os.hostname());
    expect(seen.hostname).toMatch(/^(inspect|prewarm-node20)-[0-9a-f]{12}$/);
    expect(seen.interfaces).toEqual(['lo']);
    expect(Number(seen.memoryLimit)).toBe(128 * 2 ** 20);
    expect(seen.rootWritable).toBe(false);
    expect(seen.rootWriteError).toBe('EROFS');
    expect(seen.tmpWritable).toBe(true);
  });

  it('runs a function that bundles an npm dependency', async () => {
    const res = await p.api('POST', '/v1/functions/slugify/invoke', { text: 'Hello Kiln World' });
    expect(res.body).toEqual({ slug: 'hello-kiln-world' });
  });

  it('passes the context the contract promises', async () => {
    const before = Date.now();
    const res = await p.api('POST', '/v1/functions/echo/invoke', { a: 1 });
    expect(res.body.event).toEqual({ a: 1 });
    expect(res.body.context).toMatchObject({
      activationId: res.headers.get('x-kiln-activation-id'), functionName: 'echo', version: 1, namespace: 'default', memoryMB: 128,
    });
    expect(res.body.context.deadline).toBeGreaterThan(before);
  });

  it('answers async calls with 202 and completes them', async () => {
    const res = await p.api('POST', '/v1/functions/hello/invoke?async=true', { name: 'later' });
    expect(res.status).toBe(202);
    const id = res.body.activationId;
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    const rec = await eventually(async () => {
      const r = await p.api('GET', `/v1/activations/${id}`);
      return r.body.status === 'success' && r.body;
    });
    expect(rec.result).toEqual({ message: 'Hello, later!' });
  });

  it('captures stdout and stderr per activation', async () => {
    const res = await p.api('POST', '/v1/functions/crash/invoke', { mode: 'log' });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-kiln-activation-id');
    const logs = await p.api('GET', `/v1/activations/${id}/logs`);
    expect(logs.body.logs).toHaveLength(2);
    expect(logs.body.logs[0]).toMatch(/stdout: .*stdout/);
    expect(logs.body.logs[1]).toMatch(/stderr: .*stderr/);
    const cli = await p.cli(['logs', id!]);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain('stderr');
  });

  it('serves web functions without a key', async () => {
    const res = await fetch(`${p.url}/web/default/echo/some/path?q=1`, { method: 'POST', body: 'plain text', headers: { 'content-type': 'text/plain' } });
    expect(res.status).toBe(200);
    const event = await res.json();
    expect(event).toMatchObject({ method: 'POST', path: '/some/path', query: { q: '1' }, body: 'plain text', isBase64Encoded: false });
    const notWeb = await fetch(`${p.url}/web/default/hello`, { method: 'GET' });
    expect(notWeb.status).toBe(404);
  });
});

describe('failing functions', () => {
  it('reports a thrown error as function_error with message and stack', async () => {
    const res = await p.api('POST', '/v1/functions/crash/invoke', { mode: 'throw' });
    expect(res.status).toBe(502);
    expect(res.body.error).toMatchObject({ code: 'function_error', message: 'boom' });
    const rec = await p.api('GET', `/v1/activations/${res.headers.get('x-kiln-activation-id')}`);
    expect(rec.body.status).toBe('function_error');
    expect(rec.body.error.stack).toContain('boom');
  });

  it('kills a function past its timeout and replaces the container', async () => {
    const res = await p.api('POST', '/v1/functions/crash/invoke', { mode: 'hang' });
    expect(res.status).toBe(504);
    expect(res.body.error.code).toBe('timeout');
    const next = await p.api('POST', '/v1/functions/crash/invoke', { mode: 'log' });
    expect(next.status).toBe(200);
  });

  it('ends a function over its memory limit as out_of_memory and replaces the container', async () => {
    const res = await p.api('POST', '/v1/functions/crash/invoke', { mode: 'oom' });
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('out_of_memory');
    const next = await p.api('POST', '/v1/functions/crash/invoke', { mode: 'log' });
    expect(next.status).toBe(200);
    expect(next.headers.get('x-kiln-start')).toMatch(/^(cold|prewarm)$/);
  });
});

describe('results over the size limit', () => {
  it('end as resource_limit with a clear message; smaller ones pass', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-big-'));
    try {
      await fsp.writeFile(path.join(dir, 'kiln.json'), JSON.stringify({ name: 'big', runtime: 'node20', handler: 'index.handler', memoryMB: 128 }));
      await fsp.writeFile(path.join(dir, 'index.js'), "exports.handler = async (e) => ({ pad: 'x'.repeat(e.kb * 1024) });");
      expect((await p.cli(['deploy', dir])).code).toBe(0);
      const big = await p.api('POST', '/v1/functions/big/invoke', { kb: 300 }); // the limit here is 256 KiB
      expect([big.status, big.body.error.code]).toEqual([502, 'resource_limit']);
      expect(big.body.error.message).toMatch(/result is larger than 262144 bytes/);
      const small = await p.api('POST', '/v1/functions/big/invoke', { kb: 200 });
      expect(small.status).toBe(200);
      expect(small.body.pad).toHaveLength(200 * 1024);
      expect((await p.cli(['rm', 'big'])).code).toBe(0);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('bad input gets a clear error and changes nothing', () => {
  const listing = async () => (await p.api('GET', '/v1/functions')).body.functions.map((f: any) => `${f.name}@${f.version}`);

  it('401 for a missing or wrong key', async () => {
    expect((await p.api('GET', '/v1/functions', undefined, { key: null })).status).toBe(401);
    const bad = await p.api('GET', '/v1/functions', undefined, { key: 'kiln_nope' });
    expect(bad.status).toBe(401);
    expect(bad.body.error.code).toBe('unauthorized');
  });

  it('404 for an unknown function, 400 for malformed JSON and invalid names, 413 over the limit', async () => {
    const before = await listing();
    const unknown = await p.api('POST', '/v1/functions/nope/invoke', {});
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'not_found']);
    const malformed = await p.api('POST', '/v1/functions/hello/invoke', undefined, { raw: '{"a":' });
    expect([malformed.status, malformed.body.error.code]).toEqual([400, 'bad_request']);
    const badName = await p.api('POST', '/v1/functions/Bad..Name/invoke', {});
    expect(badName.status).toBe(400);
    const big = await p.api('POST', '/v1/functions/hello/invoke', { pad: 'x'.repeat(300 * 1024) });
    expect([big.status, big.body.error.code]).toEqual([413, 'payload_too_large']);
    expect(await listing()).toEqual(before);
  });

  it('400 for an invalid manifest or a package escaping its root, and nothing is deployed', async () => {
    const before = await listing();
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-bad-'));
    try {
      await fsp.writeFile(path.join(dir, 'kiln.json'), JSON.stringify({ name: 'bad', runtime: 'cobol', handler: 'index.handler' }));
      await fsp.writeFile(path.join(dir, 'index.js'), 'exports.handler = async () => 1;');
      const manifest = await p.api('PUT', '/v1/functions/bad', undefined, {
        raw: await tarball(dir, ['kiln.json', 'index.js']), contentType: 'application/gzip',
      });
      expect([manifest.status, manifest.body.error.code]).toEqual([400, 'bad_request']);
      expect(manifest.body.error.message).toMatch(/runtime/);

      await fsp.writeFile(path.join(dir, 'kiln.json'), JSON.stringify({ name: 'bad', runtime: 'node20', handler: 'index.handler' }));
      await fsp.symlink('/etc/passwd', path.join(dir, 'passwd'));
      const escaping = await p.api('PUT', '/v1/functions/bad', undefined, {
        raw: await tarball(dir, ['kiln.json', 'index.js', 'passwd']), contentType: 'application/gzip',
      });
      expect([escaping.status, escaping.body.error.code]).toEqual([400, 'bad_request']);
      expect(escaping.body.error.message).toMatch(/passwd/);
      expect(await listing()).toEqual(before);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the CLI', () => {
  it('lists, inspects, invokes, removes, with exit codes', async () => {
    const ls = await p.cli(['ls', '--json']);
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout).functions.map((f: any) => f.name)).toEqual(['crash', 'echo', 'hello', 'inspect', 'slugify']);
    const inv = await p.cli(['invoke', 'hello', '-d', '{"name":"cli"}']);
    expect(inv.code).toBe(0);
    expect(JSON.parse(inv.stdout)).toEqual({ message: 'Hello, cli!' });
    const failed = await p.cli(['invoke', 'crash', '-d', '{"mode":"throw"}']);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr.trim().split('\n')).toHaveLength(1);
    const acts = await p.cli(['activations', 'hello', '--json']);
    expect(JSON.parse(acts.stdout).activations[0].result).toEqual({ message: 'Hello, cli!' });

    const redeploy = await p.cli(['deploy', fn('hello'), '--json']);
    expect(JSON.parse(redeploy.stdout).version).toBe(1); // same bytes: same version
    const inspect = await p.cli(['inspect', 'hello', '--json']);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ name: 'hello', config: { runtime: 'node20', memoryMB: 128 } });

    expect((await p.cli(['rm', 'slugify'])).code).toBe(0);
    const gone = await p.cli(['invoke', 'slugify']);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/not_found|no function/);
    expect((await p.cli(['inspect', 'nope'])).code).not.toBe(0);
  });

  it('gives concurrent deploys of different code one version each, the last deployed serving', async () => {
    const dirs = await Promise.all([1, 2, 3, 4].map(async (i) => {
      const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-racer-'));
      await fsp.writeFile(path.join(dir, 'kiln.json'), JSON.stringify({ name: 'racer', runtime: 'node20', handler: 'index.handler' }));
      await fsp.writeFile(path.join(dir, 'index.js'), `exports.handler = async () => ${i};\n`);
      return dir;
    }));
    try {
      // Packed first, then sent at once, so the deploys overlap in the gateway.
      const packages = await Promise.all(dirs.map((d) => tarball(d, ['kiln.json', 'index.js'])));
      const deployed = await Promise.all(packages.map((raw) => p.api('PUT', '/v1/functions/racer', undefined, { raw, contentType: 'application/gzip' })));
      const versions = deployed.map((r) => r.body.version as number);
      expect([...versions].sort()).toEqual([1, 2, 3, 4]);
      const inspect = JSON.parse((await p.cli(['inspect', 'racer', '--json'])).stdout);
      expect(inspect.version).toBe(4);
      expect(inspect.versions.map((v: { version: number }) => v.version)).toEqual([1, 2, 3, 4]);
      const last = versions.indexOf(4) + 1;
      expect((await p.api('POST', '/v1/functions/racer/invoke', {})).body).toBe(last);
    } finally {
      await Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
      await p.cli(['rm', 'racer']);
    }
  });

  it('keeps namespaces apart', async () => {
    const created = await p.cli(['namespaces', 'create', 'team-a', '--json']);
    expect(created.code).toBe(0);
    const teamKey = JSON.parse(created.stdout).apiKey;
    const theirs = await p.api('GET', '/v1/functions', undefined, { key: teamKey });
    expect(theirs.body.functions).toEqual([]);
    expect((await p.api('POST', '/v1/functions/hello/invoke', {}, { key: teamKey })).status).toBe(404);
    const acts = await p.api('GET', '/v1/activations?limit=5');
    const other = await p.api('GET', `/v1/activations/${acts.body.activations[0].activationId}`, undefined, { key: teamKey });
    expect(other.status).toBe(404);
    expect((await p.api('POST', '/v1/namespaces', { name: 'team-b' }, { key: teamKey })).status).toBe(403);
  });
});

describe('accounting and operations', () => {
  it('reports usage equal to the sum over the activation records of the window', async () => {
    const from = Date.now() - 3600_000;
    for (let i = 0; i < 3; i++) await p.api('POST', '/v1/functions/hello/invoke', {});
    const to = Date.now() + 1;
    const usage = await p.api('GET', `/v1/usage?from=${from}&to=${to}`);
    expect(usage.status).toBe(200);
    const records = (await p.api('GET', '/v1/activations?limit=200')).body.activations.filter(
      (r: any) => r.endedAt >= from && r.endedAt < to && r.status !== 'queued' && r.status !== 'running',
    );
    expect(records.length).toBeGreaterThan(10);
    const sum = records.reduce(
      (t: any, r: any) => ({
        invocations: t.invocations + 1,
        billedMs: t.billedMs + (r.billedMs ?? 0),
        gbSeconds: t.gbSeconds + ((r.billedMs ?? 0) / 1000) * (r.memoryMB / 1024),
        cpuMs: t.cpuMs + (r.cpuMs ?? 0),
      }),
      { invocations: 0, billedMs: 0, gbSeconds: 0, cpuMs: 0 },
    );
    const mine = usage.body.namespaces.find((u: any) => u.namespace === 'default');
    expect(mine.invocations).toBe(sum.invocations);
    expect(mine.billedMs).toBe(sum.billedMs);
    expect(mine.gbSeconds).toBeCloseTo(sum.gbSeconds, 5);
    expect(mine.cpuMs).toBeCloseTo(sum.cpuMs, 2);
    const cli = await p.cli(['usage', '--from', String(from), '--to', String(to), '--json']);
    expect(JSON.parse(cli.stdout).total.invocations).toBe(usage.body.total.invocations);
    expect((await p.api('GET', '/v1/usage?from=abc')).status).toBe(400);
  });

  it('lists containers like docker ps, and exports queue and container metrics', async () => {
    await p.api('POST', '/v1/functions/hello/invoke', {});
    const ps = await eventually(async () => {
      const r = await p.cli(['ps', '--json']);
      const body = JSON.parse(r.stdout);
      return body.containers.some((c: any) => c.function === 'hello') && body;
    });
    const hello = ps.containers.find((c: any) => c.function === 'hello');
    expect(hello).toMatchObject({ namespace: 'default', version: 1, memoryMB: 128, invoker: p.invokerId });
    expect(['ready', 'busy', 'frozen']).toContain(hello.state);
    const gateway = await (await fetch(`${p.url}/metrics`)).text();
    expect(gateway).toMatch(/^kiln_queue_depth\{queue="kiln-invocations",state="waiting"\} \d+/m);
    expect(gateway).toMatch(/^kiln_invokers\{state="up"\} 1$/m);
    expect(gateway).toMatch(/^kiln_invokers_recommended 1$/m);
    const invoker = await (await fetch(`http://127.0.0.1:${p.env.KILN_INVOKER_METRICS_PORT}/metrics`)).text();
    expect(invoker).toMatch(/^kiln_invocations_total\{namespace="default",function="hello",status="success",start="warm"\} \d+/m);
    expect(invoker).toMatch(/^kiln_billed_gb_seconds_total\{namespace="default",function="hello"\} /m);
  });
});

async function tarball(dir: string, files: string[]): Promise<Buffer> {
  const out = path.join(dir, '..', `${path.basename(dir)}.tgz`);
  await tar.c({ gzip: true, file: out, cwd: dir, portable: true }, files);
  const bytes = await fsp.readFile(out);
  await fsp.rm(out);
  return bytes;
}
