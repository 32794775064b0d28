// CPU time used by processes and cgroups over a window, and Redis commands per call: where the
// time of a kiln call goes, next to its floor.
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { cgroupVersion } from '../invoker/cgroups';

let clkTck = 0;
function ticksPerSecond(): number {
  if (!clkTck) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of a process (all its threads), in ms. */
export async function processCpuMs(pid: number): Promise<number> {
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) / ticksPerSecond()) * 1000; // fields 14 and 15
}

/** CPU time of every process in a cgroup, in ms (cpuacct.usage on v1, cpu.stat on v2). */
export async function cgroupCpuMs(rel: string): Promise<number> {
  if (cgroupVersion() === 2) {
    const t = await fsp.readFile(path.join('/sys/fs/cgroup', rel, 'cpu.stat'), 'utf8');
    return Number(t.match(/^usage_usec (\d+)$/m)?.[1] ?? 0) / 1000;
  }
  return Number((await fsp.readFile(path.join('/sys/fs/cgroup/cpuacct', rel, 'cpuacct.usage'), 'utf8')).trim()) / 1e6;
}

export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export type CpuSources = Record<string, () => Promise<number>>;

/** Reads every source now; `since` of the result gives the CPU ms used per source since then. */
export async function cpuSnapshot(sources: CpuSources): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [k, f] of Object.entries(sources)) out[k] = await f().catch(() => NaN);
  return out;
}

export function cpuPerCall(before: Record<string, number>, after: Record<string, number>, calls: number): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const k of Object.keys(before)) {
    const v = (after[k] - before[k]) / Math.max(1, calls);
    out[k] = Math.round(v * 1000) / 1000;
    if (Number.isFinite(v)) total += v;
  }
  out.total = Math.round(total * 1000) / 1000;
  return out;
}

/** Commands Redis has run so far (sum of INFO commandstats). */
export async function redisCommands(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  let n = 0;
  for (const m of info.matchAll(/calls=(\d+)/g)) n += Number(m[1]);
  return n;
}
