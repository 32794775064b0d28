// The host's process table, read from /proc: parent, cgroup (memory controller, or the v2
// path) and command line of every process. Used to check that a container costs the host no
// process besides its own (no shim, no runc left running).
import * as fsp from 'node:fs/promises';

export interface Proc {
  pid: number;
  ppid: number;
  cgroup: string;
  cmd: string;
}

export async function processTable(): Promise<Map<number, Proc>> {
  const out = new Map<number, Proc>();
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    try {
      const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cg = await fsp.readFile(`/proc/${pid}/cgroup`, 'utf8');
      const line = cg.split('\n').find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l)) ?? cg.split('\n').find((l) => l.startsWith('0::')) ?? '';
      const cmd = (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean).join(' ');
      out.set(pid, { pid, ppid, cgroup: line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1), cmd: cmd || stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

export function isDescendant(table: Map<number, Proc>, pid: number, ancestor: number): boolean {
  for (let p = table.get(pid), hops = 0; p && hops < 64; p = table.get(p.ppid), hops++) {
    if (p.ppid === ancestor) return true;
    if (p.ppid <= 1) return false;
  }
  return false;
}
