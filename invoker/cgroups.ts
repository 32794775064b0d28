// Reads a container's cgroup (usage, peak memory, OOM kills) on cgroup v1 and v2, and removes
// cgroup trees under kiln's own parent. Nothing here touches a cgroup outside that parent.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

const ROOT = '/sys/fs/cgroup';

export type CgroupVersion = 1 | 2;

export function cgroupVersion(): CgroupVersion {
  return fs.existsSync(path.join(ROOT, 'cgroup.controllers')) ? 2 : 1;
}

async function readText(file: string): Promise<string | null> {
  return fsp.readFile(file, 'utf8').catch(() => null);
}

async function readNumber(file: string): Promise<number | null> {
  const t = await readText(file);
  return t === null ? null : Number(t.trim());
}

function field(text: string | null, key: string): number | null {
  const m = text?.match(new RegExp(`^${key} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : null;
}

/** One container's cgroup, by its path relative to each hierarchy (the spec's cgroupsPath). */
export class ContainerCgroup {
  constructor(readonly rel: string, readonly version: CgroupVersion = cgroupVersion()) {}

  private file(controller: string, name: string): string {
    return this.version === 2 ? path.join(ROOT, this.rel, name) : path.join(ROOT, controller, this.rel, name);
  }

  async memoryLimit(): Promise<number | null> {
    return readNumber(this.file('memory', this.version === 2 ? 'memory.max' : 'memory.limit_in_bytes'));
  }

  async oomKills(): Promise<number> {
    if (this.version === 2) return field(await readText(this.file('memory', 'memory.events')), 'oom_kill') ?? 0;
    return field(await readText(this.file('memory', 'memory.oom_control')), 'oom_kill') ?? 0;
  }

  /** CPU time used by every process of the container, in nanoseconds. */
  async cpuUsageNs(): Promise<number | null> {
    if (this.version === 2) {
      const usec = field(await readText(this.file('cpu', 'cpu.stat')), 'usage_usec');
      return usec === null ? null : usec * 1000;
    }
    return readNumber(this.file('cpuacct', 'cpuacct.usage'));
  }

  /** Starts a new peak-memory window (v1 only: v2's memory.peak is since creation). */
  async resetPeakMemory(): Promise<void> {
    if (this.version === 1) await fsp.writeFile(this.file('memory', 'memory.max_usage_in_bytes'), '0').catch(() => undefined);
  }

  async peakMemoryBytes(): Promise<number | null> {
    return readNumber(this.file('memory', this.version === 2 ? 'memory.peak' : 'memory.max_usage_in_bytes'));
  }
}

/** Every hierarchy folder that may hold `rel` (v1: one per mounted controller). */
async function hierarchies(version: CgroupVersion): Promise<string[]> {
  if (version === 2) return [ROOT];
  const out: string[] = [];
  for (const d of await fsp.readdir(ROOT, { withFileTypes: true })) {
    if (d.isDirectory()) out.push(path.join(ROOT, d.name));
  }
  return out;
}

/**
 * Removes the cgroup tree at `rel` in every hierarchy, deepest first, killing any process
 * still in it (they can only be processes of kiln's own containers). Missing folders are fine.
 */
export async function removeCgroupTree(rel: string, version: CgroupVersion = cgroupVersion()): Promise<void> {
  for (const h of await hierarchies(version)) await removeTree(path.join(h, rel));
}

async function removeTree(dir: string): Promise<void> {
  let entries: fs.Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) await removeTree(path.join(dir, e.name));
  for (let attempt = 0; attempt < 50; attempt++) {
    const procs = ((await readText(path.join(dir, 'cgroup.procs'))) ?? '').split('\n').filter(Boolean);
    for (const pid of procs) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    try {
      await fsp.rmdir(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error(`cannot remove cgroup ${dir}`);
}

/** Removes kiln's parent folders when they are empty (other invokers may still use them). */
export async function removeEmptyParents(rels: string[], version: CgroupVersion = cgroupVersion()): Promise<void> {
  for (const h of await hierarchies(version)) {
    for (const rel of rels) await fsp.rmdir(path.join(h, rel)).catch(() => undefined);
  }
}
