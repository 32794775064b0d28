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

function field(text: string | null, key: string): number | null {
  const m = text?.match(new RegExp(`^${key} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : null;
}

/** One container's cgroup, by its path relative to each hierarchy (the spec's cgroupsPath). */
export class ContainerCgroup {
  // Files read around every call, and the freezer's, stay open and are read in place (pread at
  // offset 0, which makes the kernel generate them anew) or written again: cgroup files live in
  // memory, so a synchronous call costs microseconds, where open + stat + read + close through
  // the thread pool cost far more.
  private readonly open = new Map<string, number>();
  private readonly buf = Buffer.alloc(4096);
  private cpuThisTurn: number | null | undefined;

  // root: where the hierarchy is mounted (on v2; tests point it at a hybrid host's unified one).
  constructor(readonly rel: string, readonly version: CgroupVersion = cgroupVersion(), private readonly root = ROOT) {}

  private hotRead(file: string): string | null {
    try {
      let fd = this.open.get(file);
      if (fd === undefined) {
        fd = fs.openSync(file, 'r');
        this.open.set(file, fd);
      }
      const n = fs.readSync(fd, this.buf, 0, this.buf.length, 0);
      return this.buf.toString('utf8', 0, n);
    } catch {
      return null;
    }
  }

  /** Writes a control file through a descriptor kept open, like hotRead. */
  private hotWrite(file: string, value: string): void {
    const key = `${file}#write`;
    let fd = this.open.get(key);
    if (fd === undefined) {
      fd = fs.openSync(file, 'w');
      this.open.set(key, fd);
    }
    fs.writeSync(fd, value);
  }

  private freshRead(file: string): string | null {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      return null;
    }
  }

  /** Closes the files kept open; call when the container is gone. */
  close(): void {
    for (const fd of this.open.values()) fs.closeSync(fd);
    this.open.clear();
  }

  private file(controller: string, name: string): string {
    return this.version === 2 ? path.join(this.root, this.rel, name) : path.join(this.root, controller, this.rel, name);
  }

  /** How many processes (not threads) the container has. */
  processCount(): number {
    // Opened anew each time: a kept cgroup.procs file may keep answering with the list it made
    // first. Still synchronous: the file is in memory.
    const t = this.freshRead(this.file('pids', 'cgroup.procs'));
    return t ? t.split('\n').filter(Boolean).length : 0;
  }

  /** How many tasks (threads of every process) the container has. */
  taskCount(): number | null {
    const t = this.hotRead(this.file('pids', 'pids.current'));
    return t === null ? null : Number(t.trim());
  }

  /** How many times a fork or clone failed on the pids limit. */
  async pidsLimitHits(): Promise<number> {
    return field(await readText(this.file('pids', 'pids.events')), 'max') ?? 0;
  }

  memoryUsage(): number | null {
    const t = this.hotRead(this.file('memory', this.version === 2 ? 'memory.current' : 'memory.usage_in_bytes'));
    return t === null ? null : Number(t.trim());
  }

  async oomKills(): Promise<number> {
    if (this.version === 2) return field(await readText(this.file('memory', 'memory.events')), 'oom_kill') ?? 0;
    return field(await readText(this.file('memory', 'memory.oom_control')), 'oom_kill') ?? 0;
  }

  /**
   * CPU time used by every process of the container, in nanoseconds. Calls of one container
   * that start or end in the same turn of the event loop share one reading: the kernel sums
   * the counter over every CPU on each read, and under load dozens of calls end per turn.
   */
  cpuUsageNs(): number | null {
    if (this.cpuThisTurn !== undefined) return this.cpuThisTurn;
    let ns: number | null;
    if (this.version === 2) {
      const usec = field(this.hotRead(this.file('cpu', 'cpu.stat')), 'usage_usec');
      ns = usec === null ? null : usec * 1000;
    } else {
      const t = this.hotRead(this.file('cpuacct', 'cpuacct.usage'));
      ns = t === null ? null : Number(t.trim());
    }
    this.cpuThisTurn = ns;
    setImmediate(() => (this.cpuThisTurn = undefined));
    return ns;
  }

  /** Starts a new peak-memory window (v1 only: v2's memory.peak is since creation). */
  resetPeakMemory(): void {
    if (this.version !== 1) return;
    try {
      this.hotWrite(this.file('memory', 'memory.max_usage_in_bytes'), '0');
    } catch {
      /* the container is gone */
    }
  }

  /**
   * Freezes (or thaws) every process of the container with the cgroup freezer and waits until
   * the kernel says it is done; returns how long that took in ms. Control files are written and
   * polled synchronously (they live in memory): through the thread pool each step would wait
   * behind whatever else the invoker has there, which made thaws take several ms.
   */
  async setFrozen(frozen: boolean): Promise<number> {
    const t = performance.now();
    if (this.version === 2) {
      this.hotWrite(this.file('', 'cgroup.freeze'), frozen ? '1' : '0');
      await this.until(this.file('', 'cgroup.events'), (s) => s.includes(`frozen ${frozen ? 1 : 0}`));
    } else {
      const want = frozen ? 'FROZEN' : 'THAWED';
      this.hotWrite(this.file('freezer', 'freezer.state'), want);
      await this.until(this.file('freezer', 'freezer.state'), (s) => s.trim() === want);
    }
    return performance.now() - t;
  }

  /** Polls a cgroup file until `ok`: at once at first, then every ms, for up to 5 s. */
  private async until(file: string, ok: (text: string) => boolean): Promise<void> {
    const deadline = performance.now() + 5_000;
    for (let i = 0; ; i++) {
      const text = this.hotRead(file);
      if (text === null) throw new Error(`${file} cannot be read: the container is gone`);
      if (ok(text)) return;
      if (performance.now() > deadline) throw new Error(`${file} did not reach the wanted state in 5 s`);
      await new Promise((r) => (i < 50 ? setImmediate(r) : setTimeout(r, 1)));
    }
  }

  /** Changes the memory limit (no swap) and CPU weight of a running container. */
  async setLimits(memoryBytes: number, cpuShares: number): Promise<void> {
    const write = (file: string, value: string) => fs.writeFileSync(file, value); // in memory: see setFrozen
    if (this.version === 2) {
      write(this.file('', 'memory.max'), String(memoryBytes));
      try {
        write(this.file('', 'memory.swap.max'), '0');
      } catch {
        /* no swap controller */
      }
      const weight = Math.max(1, Math.min(10000, Math.round(1 + ((cpuShares - 2) * 9999) / 262142)));
      write(this.file('', 'cpu.weight'), String(weight));
      return;
    }
    // memory+swap may never be below memory: raise it first when growing, last when shrinking.
    const memsw = this.file('memory', 'memory.memsw.limit_in_bytes');
    const mem = this.file('memory', 'memory.limit_in_bytes');
    const current = Number(this.freshRead(mem)?.trim() ?? 0);
    for (const f of memoryBytes > current ? [memsw, mem] : [mem, memsw]) {
      try {
        write(f, String(memoryBytes));
      } catch (e) {
        if (f === mem) throw e; // no swap accounting on this host: memsw is absent
      }
    }
    write(this.file('cpu', 'cpu.shares'), String(cpuShares));
  }

  peakMemoryBytes(): number | null {
    const t = this.hotRead(this.file('memory', this.version === 2 ? 'memory.peak' : 'memory.max_usage_in_bytes'));
    return t === null ? null : Number(t.trim());
  }
}

/** Every hierarchy folder that may hold `rel` (v1: one per mounted controller). */
export async function hierarchies(version: CgroupVersion, root = ROOT): Promise<string[]> {
  if (version === 2) return [root];
  const out: string[] = [];
  for (const d of await fsp.readdir(root, { withFileTypes: true })) {
    if (d.isDirectory()) out.push(path.join(root, d.name));
  }
  return out;
}

/**
 * Removes the cgroup tree at `rel` in every hierarchy, deepest first, killing any process
 * still in it (they can only be processes of kiln's own containers). Missing folders are fine.
 */
export async function removeCgroupTree(rel: string, version: CgroupVersion = cgroupVersion(), root = ROOT): Promise<void> {
  for (const h of await hierarchies(version, root)) await removeTree(path.join(h, rel));
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
