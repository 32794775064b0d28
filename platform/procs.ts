// The host's process table, read from /proc. The chaos run, the bench and the tests use it to
// find a platform's processes by title and to see that none outlives it (or hides as a shim).
// Also the one way a child process is stopped: SIGTERM, a grace, then SIGKILL.
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Proc {
  pid: number;
  ppid: number;
  start: number; // start time in clock ticks since boot: with pid, names one process for good
  state: string; // R, S, T (stopped), Z ...
  cmdline: string; // NUL-separated, as in /proc
}

export function readProc(pid: number): Proc | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, state: rest[0], ppid: Number(rest[1]), start: Number(rest[19]), cmdline: cmdline || `[${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}]` };
  } catch {
    return null; // gone meanwhile
  }
}

export function processTable(): Proc[] {
  const out: Proc[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProc(Number(name));
    if (p) out.push(p);
  }
  return out;
}

/** The command line with spaces, as ps shows it. */
export const commandOf = (p: Proc) => p.cmdline.split('\0').filter(Boolean).join(' ');

export const childrenOf = (pid: number, table = processTable()): Proc[] => table.filter((p) => p.ppid === pid);

/**
 * The platform process's direct child whose title (process.title, or the program for
 * redis-server) starts with `title`. A child restarted a moment ago may still carry node's
 * command line, so the script name counts too.
 */
export function childByTitle(platformPid: number, title: 'kiln-invoker' | 'kiln-gateway' | 'redis-server', table = processTable()): Proc | undefined {
  const script = { 'kiln-invoker': 'dist/invoker/main.js', 'kiln-gateway': 'dist/gateway/main.js', 'redis-server': null }[title];
  const kids = childrenOf(platformPid, table);
  return kids.find((p) => p.cmdline.startsWith(title) || path.basename(p.cmdline.split('\0')[0]) === title) ?? kids.find((p) => script !== null && p.cmdline.includes(script));
}

/** Every descendant of `root` (not `root` itself). */
export function descendants(root: number, table = processTable()): Proc[] {
  const byParent = new Map<number, Proc[]>();
  for (const p of table) byParent.set(p.ppid, [...(byParent.get(p.ppid) ?? []), p]);
  const out: Proc[] = [];
  const queue = [root];
  for (let i = 0; i < queue.length && i < 100_000; i++) {
    for (const c of byParent.get(queue[i]) ?? []) {
      out.push(c);
      queue.push(c.pid);
    }
  }
  return out;
}

/** Whether the process named by pid and start time is still there (and not a zombie). */
export function alive(p: { pid: number; start: number }): boolean {
  const now = readProc(p.pid);
  return !!now && now.start === p.start && now.state !== 'Z';
}

/** The memory controller's cgroup path of a process (v1), or its v2 path; '' if gone. */
export function memoryCgroupOf(pid: number): string {
  try {
    const cg = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    const line = cg.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l)) ?? cg.find((l) => l.startsWith('0::')) ?? '';
    return line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
  } catch {
    return '';
  }
}

/**
 * Stops a child: SIGTERM, then SIGKILL once `graceMs` passed or `force` aborted. Resolves true
 * when it stopped on its own, false when it had to be killed (or did not die 5 s after SIGKILL).
 */
export async function stopChild(child: ChildProcess, graceMs: number, force?: AbortSignal): Promise<boolean> {
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  if (gone()) return true;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  let late!: () => void;
  const lateness = new Promise<void>((r) => (late = r));
  const timer = setTimeout(late, graceMs);
  if (force?.aborted) late();
  force?.addEventListener('abort', late, { once: true });
  await Promise.race([exited, lateness]);
  clearTimeout(timer);
  force?.removeEventListener('abort', late);
  if (gone()) return true;
  child.kill('SIGKILL');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000).unref())]);
  return false;
}
