// What the figures were measured on: cores, memory, kernel, runc, Node.js, cgroup layout, load.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import { cgroupVersion } from '../invoker/cgroups';
import { exec } from './util';

export interface MachineInfo {
  date: string;
  nproc: number;
  cpuModel: string;
  memTotalMB: number;
  memAvailableMB: number;
  kernel: string;
  runc: string;
  node: string;
  redis: string;
  cgroup: string;
  loadAvgAtStart: number[];
  otherKilnInvokersAtStart: string[];
}

export async function meminfo(): Promise<Record<string, number>> {
  const text = await fsp.readFile('/proc/meminfo', 'utf8');
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^(\w+):\s+(\d+)\s*kB/);
    if (m) out[m[1]] = Number(m[2]) * 1024;
  }
  return out;
}

export async function machineInfo(): Promise<MachineInfo> {
  const mem = await meminfo();
  const runc = await exec('runc', ['--version']);
  const redis = await exec('redis-server', ['--version']);
  const v = cgroupVersion();
  const hybrid = v === 1 && (await fsp.stat('/sys/fs/cgroup/unified').then(() => true, () => false));
  // Other kiln invokers (tests, a running platform) share the CPU: worth knowing when reading figures.
  const kilnCg = v === 2 ? '/sys/fs/cgroup/kiln' : '/sys/fs/cgroup/memory/kiln';
  const others = (await fsp.readdir(kilnCg, { withFileTypes: true }).catch(() => [])).filter((d) => d.isDirectory()).map((d) => d.name);
  return {
    date: new Date().toISOString(),
    nproc: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memTotalMB: Math.round(mem.MemTotal / 2 ** 20),
    memAvailableMB: Math.round(mem.MemAvailable / 2 ** 20),
    kernel: `${os.type()} ${os.release()}`,
    runc: runc.code === 0 ? runc.stdout.split('\n')[0].trim() : 'not found',
    node: process.version,
    redis: redis.code === 0 ? (redis.stdout.match(/v=(\S+)/)?.[1] ?? redis.stdout.trim()) : 'not found',
    cgroup: v === 2 ? 'v2' : hybrid ? 'v1 (hybrid)' : 'v1',
    loadAvgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    otherKilnInvokersAtStart: others,
  };
}
