// The platform's own supervision: a killed invoker or gateway comes back, and an invoker that
// starts removes what a crashed one left (containers, overlay mounts, cgroups).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { eventually, fn, freePort, leftovers, Platform, startPlatform } from './harness';

jest.setTimeout(120_000);

const titleOf = (pid: number) => {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
};

async function pidOf(p: Platform, title: string): Promise<number | undefined> {
  return (await p.children()).find((pid) => titleOf(pid).startsWith(title));
}

const runcList = (p: Platform) =>
  execFileSync('runc', ['--root', path.join(p.stateDir, 'runc', p.invokerId), 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);

describe('supervision and clean-up after a crash', () => {
  let p: Platform;
  afterAll(async () => {
    if (!p) return;
    await p.stop();
    expect(await leftovers(p, [])).toEqual({ containers: [], mounts: [], cgroups: [], processes: [] });
    await fsp.rm(p.stateDir, { recursive: true, force: true });
  });

  it('restarts a killed invoker, which removes the containers, mounts and cgroups it left', async () => {
    p = await startPlatform();
    expect((await p.cli(['deploy', fn('crash')])).code).toBe(0);
    expect((await p.api('POST', '/v1/functions/crash/invoke?async=true', { mode: 'hang' })).status).toBe(202);
    const orphans = await eventually(async () => runcList(p).length > 0 && runcList(p));
    const oldInvoker = (await pidOf(p, 'kiln-invoker'))!;
    process.kill(oldInvoker, 'SIGKILL');

    const killedAt = Date.now();
    const newInvoker = await eventually(async () => {
      const pid = await pidOf(p, 'kiln-invoker');
      return pid !== undefined && pid !== oldInvoker && pid;
    });
    expect(Date.now() - killedAt).toBeLessThan(2_000);
    await eventually(async () => {
      const left = runcList(p).filter((id) => orphans.includes(id));
      const mounts = (await fsp.readFile('/proc/self/mounts', 'utf8')).split('\n').filter((l) => orphans.some((id) => l.includes(id)));
      const cgroups = orphans.filter((id) => fs.existsSync(`/sys/fs/cgroup/memory/kiln/${p.invokerId}/${id}`));
      return left.length + mounts.length + cgroups.length === 0;
    });
    expect(newInvoker).not.toBe(oldInvoker);
    const after = await p.api('POST', '/v1/functions/crash/invoke', { mode: 'log' });
    expect(after.status).toBe(200);
  });

  it('restarts a killed gateway', async () => {
    const old = (await pidOf(p, 'kiln-gateway'))!;
    process.kill(old, 'SIGKILL');
    await eventually(async () => {
      const pid = await pidOf(p, 'kiln-gateway');
      return pid !== undefined && pid !== old && (await fetch(`${p.url}/healthz`).then((r) => r.ok, () => false));
    }, 5_000);
  });
});

describe('an external Redis', () => {
  it('uses REDIS_URL instead of starting its own redis-server', async () => {
    const port = await freePort();
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    try {
      await eventually(async () => {
        try {
          return execFileSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() === 'PONG';
        } catch {
          return false;
        }
      });
      const p = await startPlatform({ REDIS_URL: `redis://127.0.0.1:${port}` });
      try {
        expect(fs.existsSync(path.join(p.stateDir, 'redis'))).toBe(false);
        expect((await p.cli(['deploy', fn('hello')])).code).toBe(0);
        const res = await p.api('POST', '/v1/functions/hello/invoke', { name: 'redis' });
        expect(res.body).toEqual({ message: 'Hello, redis!' });
        const keys = execFileSync('redis-cli', ['-p', String(port), '--scan', '--pattern', 'kiln:fn:*'], { encoding: 'utf8' });
        expect(keys).toContain('kiln:fn:default:hello');
      } finally {
        await p.stop();
        expect(await leftovers(p, [])).toEqual({ containers: [], mounts: [], cgroups: [], processes: [] });
        await fsp.rm(p.stateDir, { recursive: true, force: true });
      }
      expect(redis.exitCode).toBeNull(); // the platform leaves a server it did not start alone
    } finally {
      redis.kill('SIGTERM');
    }
  });
});
