// Faults under a steady load of sync and async calls. After each, every accepted invocation must
// have exactly one final record: none lost, none doubled (docs/delivery.md).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { embeddedRedisSocket } from '../../common/redis';
import { keys, QUEUE_NAME } from '../../common/redis-keys';
import { audit, Load, settle } from '../../faults/load';
import { launchInvoker } from '../../platform/launch';
import { childByTitle } from '../../platform/procs';
import { eventually, leftovers, Platform, startPlatform } from './harness';

jest.setTimeout(180_000);

let workDir: string;
beforeAll(async () => {
  workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-faults-'));
  await fsp.writeFile(path.join(workDir, 'kiln.json'), JSON.stringify({ name: 'work', runtime: 'node20', handler: 'index.handler', memoryMB: 64, timeoutMs: 10_000, concurrency: 4 }));
  await fsp.writeFile(path.join(workDir, 'index.js'), `exports.handler = async (e, ctx) => {
  if (e.mark) require('fs').writeFileSync('/tmp/started', ''); // tells the test the event arrived
  const runs = '/tmp/runs-' + ctx.activationId; // how many times this container ran this activation
  if (e.count) require('fs').appendFileSync(runs, 'x');
  await new Promise((r) => setTimeout(r, e.ms ?? 200));
  return { id: ctx.activationId, attempt: ctx.attempt, host: require('os').hostname(), runs: e.count ? require('fs').readFileSync(runs, 'utf8').length : undefined };
};`);
});
afterAll(() => fsp.rm(workDir, { recursive: true, force: true }));

const pidOf = (p: Platform, title: 'kiln-invoker' | 'kiln-gateway' | 'redis-server') => eventually(async () => childByTitle(p.child.pid!, title)?.pid);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const BULL = `bull:${QUEUE_NAME}`; // BullMQ's keys of kiln's queue

/** BullMQ's event log of the queue since `from` (a stream id or '-'), as objects. */
async function queueEvents(redis: Redis, from: string): Promise<Record<string, string>[]> {
  return (await redis.xrange(`${BULL}:events`, from, '+')).map(([, f]) => Object.fromEntries(f.flatMap((v, i) => (i % 2 ? [] : [[v, f[i + 1]]]))));
}

async function withPlatform(env: NodeJS.ProcessEnv, body: (p: Platform, redis: Redis) => Promise<void>, more: NodeJS.ProcessEnv = {}) {
  const p = await startPlatform({ KILN_JOB_LOCK_MS: '2000', KILN_REDIS_APPENDFSYNC: 'always', ...env, ...more });
  const redis = new Redis({ path: embeddedRedisSocket(p.stateDir), maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  try {
    expect((await p.cli(['deploy', workDir])).code).toBe(0);
    await body(p, redis);
  } finally {
    redis.disconnect();
    await p.stop();
    const left = await leftovers(p, []);
    left.mounts = left.mounts.filter((m) => m !== path.join(p.stateDir, 'containers')); // the disk-full test's own small disk
    expect(left).toEqual({ containers: [], mounts: [], cgroups: [], processes: [] });
    if (!env.KILN_STATE_DIR) await fsp.rm(p.stateDir, { recursive: true, force: true });
  }
}

/** Runs the load around `fault`, then checks that nothing was lost or doubled. */
async function underLoad(p: Platform, redis: Redis, fault: () => Promise<unknown>, opts: { seconds?: number; event?: unknown; syncShare?: number } = {}) {
  const load = new Load({ url: p.url, key: p.key, fn: 'work', perSecond: 20, event: opts.event, syncShare: opts.syncShare });
  load.start();
  await sleep(1500);
  await fault();
  await sleep((opts.seconds ?? 5) * 1000);
  await load.stop();
  await settle(redis, load.sent, 60_000);
  const a = await audit(redis, 'default', load.sent);
  expect(a.accepted).toBeGreaterThan(40);
  expect({ lost: a.unfinished, lostAfterAnswer: a.answeredButUnknown, doubled: a.doubled }).toEqual({ lost: [], lostAfterAnswer: [], doubled: [] });
  return { audit: a, load };
}

it('kill -9 of the invoker in the middle of calls: restarted, every call ends once', async () => {
  await withPlatform({}, async (p, redis) => {
    const { audit: a } = await underLoad(p, redis, async () => process.kill(await pidOf(p, 'kiln-invoker'), 'SIGKILL'));
    expect(a.completed).toBeGreaterThan(a.accepted * 0.9); // redelivered, not failed
  });
});

it('two invokers, one killed for good: the other carries on with its work', async () => {
  await withPlatform({}, async (p, redis) => {
    const { child: second, url } = await launchInvoker(p.env, `${p.invokerId}-2`);
    await eventually(async () => fetch(`${url}/healthz`).then((r) => r.ok));
    const { audit: a } = await underLoad(p, redis, async () => {
      second.kill('SIGKILL');
    });
    expect(a.completed).toBe(a.accepted);
    // The live invoker removes what the dead one left once its heartbeat is gone.
    await eventually(async () => !fs.existsSync(path.join(p.stateDir, 'containers', `${p.invokerId}-2`)), 40_000);
  }, { KILN_PEER_SWEEP_MS: '2000' });
});

it('kill -9 of the gateway while sync callers wait: their activations complete and can be fetched', async () => {
  await withPlatform({}, async (p, redis) => {
    const { load } = await underLoad(p, redis, async () => process.kill(await pidOf(p, 'kiln-gateway'), 'SIGKILL'), { event: { ms: 1000 }, syncShare: 1 });
    const broken = [];
    for (const s of load.sent.filter((x) => x.status === 'error')) if (await redis.exists(keys.activation(s.id))) broken.push(s);
    expect(broken.length).toBeGreaterThan(0); // callers cut off mid-wait, yet accepted
    for (const s of broken) {
      const rec = await p.api('GET', `/v1/activations/${s.id}`);
      expect(rec.body.status).toBe('success');
      // Asking again with the same id answers with that activation; nothing runs twice.
      const again = await fetch(`${p.url}/v1/functions/work/invoke`, {
        method: 'POST', headers: { authorization: `Bearer ${p.key}`, 'x-kiln-activation-id': s.id }, body: '{}',
      });
      expect(again.status).toBe(200);
      expect((await again.json()).id).toBe(s.id);
    }
    const a = await audit(redis, 'default', load.sent);
    expect(a.doubled).toEqual([]);
  });
});

it('Redis killed and restarted: 503 quickly while it is away, then nothing lost (appendfsync always)', async () => {
  await withPlatform({}, async (p, redis) => {
    const redisPid = childByTitle(p.child.pid!, 'redis-server')!.pid;
    await underLoad(p, redis, async () => {
      process.kill(redisPid, 'SIGKILL');
      const t = Date.now();
      const res = await p.api('POST', '/v1/functions/work/invoke', {}).catch(() => null);
      if (res?.status === 200) return; // Redis was back before the call got through: it ran, however long that took
      if (res) expect(res.status).toBe(503);
      expect(Date.now() - t).toBeLessThan(3000); // a refusal, or a cut connection, comes quickly
    });
  });
});

it('SIGTERM to the invoker: it finishes what it holds and leaves no stalled job', async () => {
  await withPlatform({}, async (p, redis) => {
    const { audit: a } = await underLoad(p, redis, async () => process.kill(await pidOf(p, 'kiln-invoker'), 'SIGTERM'));
    expect(a.failedByCode).toEqual({});
    expect(a.completed).toBe(a.accepted);
    const counts = await redis.hgetall(`${BULL}:meta`); // the queue still exists
    expect(counts).toBeDefined();
    const [sec, usec] = await redis.time();
    const settledAt = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    // BullMQ takes a job out of active in a step of its own, after the final record is written.
    await eventually(async () => (await redis.zcard(`${BULL}:delayed`)) === 0 && (await redis.llen(`${BULL}:active`)) === 0, 10_000);
    // And not by the stalled check or a retry: no job came back after the calls had all ended.
    const events = await queueEvents(redis, String(settledAt));
    expect(events.map((e) => e.event).filter((e) => e === 'stalled' || e === 'delayed')).toEqual([]);
  });
});

it('an invoker event loop blocked longer than the job lock: no activation gets two final records, none runs twice', async () => {
  await withPlatform({}, async (p, redis) => {
    const { load } = await underLoad(p, redis, async () => {
      const pid = await pidOf(p, 'kiln-invoker');
      process.kill(pid, 'SIGSTOP'); // as a blocked event loop: no lock renewal, no progress
      await sleep(5000);
      process.kill(pid, 'SIGCONT');
    });
    // The stalled jobs come back to the invoker that still holds them: it lets the runs in hand
    // end, and their records answer the second deliveries; no function ran a second time.
    const records = (await redis.mget(load.sent.map((s) => keys.activation(s.id)))).filter((r) => r !== null).map((r) => JSON.parse(r!));
    expect(records.filter((r) => (r.attempt ?? 1) > 1).map((r) => `${r.activationId} attempt ${r.attempt}`)).toEqual([]);
  });
});

it('a job stalled while its invoker still runs it (event loop blocked past the lock) is not run a second time', async () => {
  await withPlatform({}, async (p, redis) => {
    const call = p.api('POST', '/v1/functions/work/invoke', { ms: 9000, count: true });
    const [id] = await eventually(async () => {
      const ids = await redis.zrange(keys.activationsByFn('default', 'work'), '0', '-1');
      return ids.length > 0 && ids;
    });
    await eventually(async () => (await redis.llen(`${BULL}:active`)) === 1);
    await sleep(2500); // past a stalled check (every KILN_JOB_LOCK_MS, 2 s) that saw it active
    const pid = await pidOf(p, 'kiln-invoker');
    process.kill(pid, 'SIGSTOP'); // no lock renewal: the job's lock expires
    await sleep(4000);
    process.kill(pid, 'SIGCONT');
    const res = await call;
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id, attempt: 1, runs: 1 });
    // BullMQ did find it stalled and deliver it again: that delivery ran nothing.
    const stalled = (await queueEvents(redis, '-')).filter((e) => e.event === 'stalled' && e.jobId === id);
    expect(stalled.length).toBeGreaterThan(0);
  });
});

it('a container dying mid-run ends its call with a clear error, once, and the next call is fine', async () => {
  await withPlatform({ KILN_PREWARM_COUNT: '0' }, async (p) => {
    const call = p.api('POST', '/v1/functions/work/invoke', { ms: 3000, mark: true });
    const runcRoot = path.join(p.stateDir, 'runc', p.invokerId);
    const state = await eventually(async () => {
      const ids = fs.existsSync(runcRoot) ? fs.readdirSync(runcRoot) : [];
      return ids.length > 0 && JSON.parse(fs.readFileSync(path.join(runcRoot, ids[0], 'state.json'), 'utf8'));
    });
    // Killed only once the function has the event: before that, the call would rightly go elsewhere.
    await eventually(async () => fs.existsSync(`/proc/${state.init_process_pid}/root/tmp/started`));
    process.kill(state.init_process_pid, 'SIGKILL');
    const res = await call;
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('function_error');
    expect(res.body.error.message).toMatch(/exited unexpectedly/);
    const next = await p.api('POST', '/v1/functions/work/invoke', { ms: 1 });
    expect(next.status).toBe(200);
  });
});

it('runc failing on create: the call is retried before the function got the event', async () => {
  const flaky = path.join(workDir, 'flaky-runc');
  const count = path.join(workDir, 'runc-runs');
  await fsp.writeFile(flaky, `#!/bin/sh
# Fails the first container create, then behaves as runc.
for a in "$@"; do if [ "$a" = run ]; then
  n=$(cat ${count} 2>/dev/null || echo 0); echo $((n + 1)) > ${count}
  if [ "$n" = 0 ]; then echo "injected failure" >&2; exit 1; fi
fi; done
exec runc "$@"
`, { mode: 0o755 });
  await withPlatform({ KILN_PREWARM_COUNT: '0', KILN_OCI_RUNTIME: flaky }, async (p) => {
    const res = await p.api('POST', '/v1/functions/work/invoke', { ms: 1 });
    expect(res.status).toBe(200);
    expect(res.body.attempt).toBe(1); // the function saw the event once
    expect(Number(await fsp.readFile(count, 'utf8'))).toBe(2);
  });
});

it("the state dir's disk full: calls end as system_error after their retries, nothing is lost, and calls run again once there is room", async () => {
  const stateDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-it-full-'));
  const invokerId = `full-${path.basename(stateDir).slice(-6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
  // The invoker removes every mount under its own folder at start: the small disk is its parent.
  const containers = path.join(stateDir, 'containers');
  await fsp.mkdir(containers, { recursive: true });
  const { execFileSync } = await import('node:child_process');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'kiln-test-full', containers]);
  try {
    await withPlatform({ KILN_PREWARM_COUNT: '0', KILN_STATE_DIR: stateDir, KILN_INVOKER_ID: invokerId, KILN_JOB_ATTEMPTS: '2' }, async (p, redis) => {
      const filler = path.join(containers, '.filler');
      await fsp.writeFile(filler, Buffer.alloc(1024 * 1024)).catch(() => undefined); // ENOSPC once full
      const res = await p.api('POST', '/v1/functions/work/invoke', { ms: 1 });
      expect(res.status).toBe(500);
      expect(res.body.error.code).toBe('system_error');
      expect(res.body.error.message).toMatch(/ENOSPC|no space/i);
      const rec = await p.api('GET', `/v1/activations/${res.headers.get('x-kiln-activation-id')}`);
      expect(rec.body.status).toBe('system_error');
      expect(await redis.zcard(`${BULL}:delayed`)).toBe(0);
      await fsp.rm(filler);
      const ok = await p.api('POST', '/v1/functions/work/invoke', { ms: 1 });
      expect(ok.status).toBe(200);
    });
  } finally {
    execFileSync('umount', [containers]);
    await fsp.rm(stateDir, { recursive: true, force: true });
  }
});

it('a container killed while frozen: the next call goes to another container, transparently', async () => {
  await withPlatform({ KILN_PREWARM_COUNT: '0', KILN_PAUSE_GRACE_MS: '100' }, async (p) => {
    const first = await p.api('POST', '/v1/functions/work/invoke', { ms: 1 });
    const host = first.body.host;
    const freezer = `/sys/fs/cgroup/freezer/kiln/${p.invokerId}/${host}/freezer.state`;
    await eventually(async () => fs.readFileSync(freezer, 'utf8').trim() === 'FROZEN');
    const state = JSON.parse(fs.readFileSync(path.join(p.stateDir, 'runc', p.invokerId, host, 'state.json'), 'utf8'));
    process.kill(state.init_process_pid, 'SIGKILL'); // pending until it is thawed
    const next = await p.api('POST', '/v1/functions/work/invoke', { ms: 1 });
    expect(next.status).toBe(200);
    expect(next.body.host).not.toBe(host);
    expect(next.body.attempt).toBe(1);
  });
});
