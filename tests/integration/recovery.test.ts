// The platform's own supervision: a killed invoker or gateway comes back, and an invoker that
// starts removes what a crashed one left (containers, overlay mounts, cgroups).
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { embeddedRedisSocket } from '../../common/redis';
import { launchInvoker } from '../../platform/launch';
import { childByTitle, readProc } from '../../platform/procs';
import { eventually, fn, freePort, leftovers, Platform, startPlatform, stopClean } from './harness';

jest.setTimeout(120_000);

const pidOf = async (p: Platform, title: 'kiln-invoker' | 'kiln-gateway') => childByTitle(p.child.pid!, title)?.pid;

// When a process was spawned, and the time of a kill, as seconds since boot: a restart is timed
// by the supervisor's spawn, not by the new process's boot (slow on a loaded machine).
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const uptime = () => Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
const spawnedAt = (pid: number) => readProc(pid)!.start / CLK_TCK;

const runcList = (p: Platform) =>
  execFileSync('runc', ['--root', path.join(p.stateDir, 'runc', p.invokerId), 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);

describe('supervision and clean-up after a crash', () => {
  let p: Platform;
  afterAll(async () => {
    if (p) await stopClean(p);
  });

  it('restarts a killed invoker, which removes the containers, mounts and cgroups it left', async () => {
    p = await startPlatform();
    expect((await p.cli(['deploy', fn('crash')])).code).toBe(0);
    expect((await p.api('POST', '/v1/functions/crash/invoke?async=true', { mode: 'hang' })).status).toBe(202);
    const orphans = await eventually(async () => runcList(p).length > 0 && runcList(p));
    const oldInvoker = (await pidOf(p, 'kiln-invoker'))!;
    const killedAt = uptime();
    process.kill(oldInvoker, 'SIGKILL');

    const newInvoker = await eventually(async () => {
      const pid = await pidOf(p, 'kiln-invoker');
      return pid !== undefined && pid !== oldInvoker && pid;
    });
    expect(spawnedAt(newInvoker)).toBeGreaterThan(killedAt);
    expect(spawnedAt(newInvoker) - killedAt).toBeLessThan(2);
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
    const killedAt = uptime();
    process.kill(old, 'SIGKILL');
    const pid = await eventually(async () => {
      const pid = await pidOf(p, 'kiln-gateway');
      return pid !== undefined && pid !== old && (await fetch(`${p.url}/healthz`).then((r) => r.ok, () => false)) && pid;
    });
    expect(spawnedAt(pid)).toBeGreaterThan(killedAt);
    expect(spawnedAt(pid) - killedAt).toBeLessThan(2);
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
        await stopClean(p);
      }
      expect(redis.exitCode).toBeNull(); // the platform leaves a server it did not start alone
    } finally {
      redis.kill('SIGTERM');
    }
  });
});

describe('several invokers sharing a state dir', () => {
  it('removes what a dead invoker left, once its heartbeat is gone, and nothing of live ones', async () => {
    const p = await startPlatform({ KILN_PREWARM_COUNT: '0', KILN_PEER_SWEEP_MS: '1000' });
    const others: number[] = [];
    let peer: ChildProcess | undefined;
    try {
      expect((await p.cli(['deploy', fn('crash')])).code).toBe(0);
      await p.api('POST', '/v1/functions/crash/invoke?async=true', { mode: 'hang' });
      const orphans = await eventually(async () => runcList(p).length > 0 && runcList(p));
      const invoker = (await pidOf(p, 'kiln-invoker'))!;
      others.push(...(await p.children()).filter((pid) => pid !== invoker));
      process.kill(p.child.pid!, 'SIGKILL'); // no supervisor to restart it: the invoker stays dead
      process.kill(invoker, 'SIGKILL');
      const socket = embeddedRedisSocket(p.stateDir);
      await eventually(async () => execFileSync('redis-cli', ['-s', socket, 'exists', `kiln:invoker:${p.invokerId}`], { encoding: 'utf8' }).trim() === '0', 20_000);

      const peerId = `${p.invokerId}-b`;
      const launched = await launchInvoker(p.env, peerId);
      peer = launched.child;
      await eventually(async () => fetch(`${launched.url}/healthz`).then((r) => r.ok, () => false));
      expect(fs.existsSync(path.join(p.stateDir, 'runc', p.invokerId))).toBe(false);
      expect(fs.existsSync(path.join(p.stateDir, 'containers', p.invokerId))).toBe(false);
      expect(fs.existsSync(`/sys/fs/cgroup/memory/kiln/${p.invokerId}`)).toBe(false);
      const mounts = await fsp.readFile('/proc/self/mounts', 'utf8');
      expect(orphans.filter((id) => mounts.includes(id))).toEqual([]);
      expect(fs.existsSync(path.join(p.stateDir, 'containers', peerId))).toBe(true); // its own, alive
    } finally {
      if (peer) {
        const exited = new Promise((r) => peer!.once('exit', r));
        peer.kill('SIGTERM');
        await exited;
      }
      for (const pid of others) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* gone */
        }
      }
      await eventually(async () => (await leftovers(p, others)).processes.length === 0);
      const left = await leftovers(p, others);
      expect(left.mounts).toEqual([]);
      expect(fs.existsSync(`/sys/fs/cgroup/memory/kiln/${p.invokerId}-b`)).toBe(false);
      await fsp.rm(p.stateDir, { recursive: true, force: true });
    }
  });
});
