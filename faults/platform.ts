// A real kiln for the chaos run: `node dist/platform/main.js` (embedded redis-server, gateway,
// invoker) in a temporary state dir on free ports, started by platform/launch.ts as the tests
// and the bench start theirs; plus what the chaos run needs around it: the host's process table
// (to find the platform's processes by title and to see that none outlives it), the containers
// on disk, and the check that nothing of this platform is left on the machine once it stopped.
import { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { tryRun as run } from '../common/process';
import { embeddedRedisSocket } from '../common/redis';
import { launch, platformEnv } from '../platform/launch';
import { alive, childByTitle, commandOf, descendants, Proc, processTable, stopChild } from '../platform/procs';


const CG_ROOT = '/sys/fs/cgroup';
const OUTPUT_CAP = 4 * 2 ** 20;

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Resolves to `p`'s value, or to `fallback` after `ms`. */
export function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((r) => (t = setTimeout(() => r(fallback), ms)))]).finally(() => clearTimeout(t));
}

/**
 * Whether the process is in a frozen cgroup (kiln freezes idle containers with the cgroup
 * freezer: v1 freezer.state, v2 cgroup.freeze). null when it cannot tell.
 */
export function frozen(pid: number): boolean | null {
  let cg = '';
  try {
    cg = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return null;
  }
  const v1 = cg.split('\n').find((l) => /^\d+:([^:]*,)?freezer(,[^:]*)?:/.test(l));
  try {
    if (v1) return fs.readFileSync(path.join(CG_ROOT, 'freezer', v1.slice(v1.indexOf(':', v1.indexOf(':') + 1) + 1), 'freezer.state'), 'utf8').trim() !== 'THAWED';
    const v2 = cg.split('\n').find((l) => l.startsWith('0::'));
    if (v2) return fs.readFileSync(path.join(CG_ROOT, v2.slice(3), 'cgroup.freeze'), 'utf8').trim() === '1';
  } catch {
    /* gone, or no freezer */
  }
  return null;
}

// ---- the platform ---------------------------------------------------------------------------

export interface PlatformOptions {
  env?: Record<string, string>;
  startTimeoutMs?: number;
}

export class Platform {
  readonly stateDir: string;
  readonly invokerId: string;
  readonly env: NodeJS.ProcessEnv;
  url = '';
  key = '';
  child?: ChildProcess;
  private out = '';
  /** Every process seen belonging to this platform (pid + start time), for the final check. */
  readonly seen = new Map<string, Proc>();

  private constructor(stateDir: string, invokerId: string, env: NodeJS.ProcessEnv) {
    this.stateDir = stateDir;
    this.invokerId = invokerId;
    this.env = env;
  }

  /** Makes the state dir and picks ports; start() runs it. */
  static async create(o: PlatformOptions = {}): Promise<Platform> {
    const stateDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-chaos-'));
    const invokerId = `ch-${randomBytes(4).toString('hex')}`;
    const env = await platformEnv(stateDir, invokerId, o.env); // always the embedded redis-server
    return new Platform(stateDir, invokerId, env);
  }

  get redisSocket(): string {
    return embeddedRedisSocket(this.stateDir);
  }

  /** What the platform printed (warnings and errors: KILN_LOG_LEVEL=warn), the last 4 MiB. */
  get output(): string {
    return this.out;
  }

  append(s: string): void {
    this.out += s;
    if (this.out.length > OUTPUT_CAP) this.out = this.out.slice(-OUTPUT_CAP / 2);
  }

  async start(signal?: AbortSignal, timeoutMs = 60_000): Promise<void> {
    // Its own process group: a Ctrl-C in the terminal reaches the chaos run only, which then
    // stops the platform in order (SIGTERM) instead of every process getting SIGINT at once.
    const up = await launch(this.env, { detached: true, signal, timeoutMs, onOutput: (d) => this.append(d) });
    this.child = up.child;
    this.url = up.url;
    this.key = up.key;
    this.track();
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Notes the platform's current processes (and `extra` roots' descendants). */
  track(extraRoots: number[] = []): void {
    const table = processTable();
    const roots = [...(this.child?.pid ? [this.child.pid] : []), ...extraRoots];
    for (const r of roots) {
      const self = table.find((p) => p.pid === r);
      if (self) this.seen.set(`${self.pid}:${self.start}`, self);
      for (const p of descendants(r, table)) this.seen.set(`${p.pid}:${p.start}`, p);
    }
    for (const c of this.containers()) {
      const p = table.find((x) => x.pid === c.pid);
      if (p) this.seen.set(`${p.pid}:${p.start}`, p);
    }
  }

  /** The platform's child titled `title` (platform/procs.ts childByTitle), remembered as seen. */
  childByTitle(title: 'kiln-invoker' | 'kiln-gateway' | 'redis-server'): Proc | undefined {
    if (!this.child?.pid) return undefined;
    const hit = childByTitle(this.child.pid, title);
    if (hit) this.seen.set(`${hit.pid}:${hit.start}`, hit);
    return hit;
  }

  /** Waits (bounded) until such a child exists, e.g. while the supervisor restarts it. */
  async waitForChild(title: 'kiln-invoker' | 'kiln-gateway' | 'redis-server', ms: number, signal?: AbortSignal): Promise<Proc | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const p = this.childByTitle(title);
      if (p || Date.now() > deadline || signal?.aborted) return p;
      await sleep(100, signal);
    }
  }

  /** Every invoker id with a runc root or bundle folder in the state dir. */
  invokerIds(): string[] {
    const ids = new Set<string>([this.invokerId]);
    for (const sub of ['runc', 'containers']) {
      try {
        for (const d of fs.readdirSync(path.join(this.stateDir, sub))) ids.add(d);
      } catch {
        /* not made yet */
      }
    }
    return [...ids];
  }

  /** Containers as runc's state files describe them, under every runc root of the state dir. */
  containers(): { invoker: string; id: string; pid: number; stateFile: string }[] {
    const out: { invoker: string; id: string; pid: number; stateFile: string }[] = [];
    const runcDir = path.join(this.stateDir, 'runc');
    let roots: string[] = [];
    try {
      roots = fs.readdirSync(runcDir);
    } catch {
      return out;
    }
    for (const inv of roots) {
      let ids: string[] = [];
      try {
        ids = fs.readdirSync(path.join(runcDir, inv));
      } catch {
        continue;
      }
      for (const id of ids) {
        const stateFile = path.join(runcDir, inv, id, 'state.json');
        try {
          const st = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { init_process_pid?: number };
          if (st.init_process_pid) out.push({ invoker: inv, id, pid: st.init_process_pid, stateFile });
        } catch {
          /* being created or removed */
        }
      }
    }
    return out;
  }

  /** SIGTERM and wait, up to `ms`; then SIGKILL. Resolves to whether it stopped by itself. */
  async stop(ms = 90_000, force?: AbortSignal): Promise<boolean> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return true;
    this.track();
    return stopChild(c, ms, force);
  }
}

// ---- what is left --------------------------------------------------------------------------

export interface Leftovers {
  containers: string[]; // runc root/id
  mounts: string[];
  cgroups: string[];
  processes: string[]; // "pid cmdline"
}

export function isClean(l: Leftovers): boolean {
  return l.containers.length + l.mounts.length + l.cgroups.length + l.processes.length === 0;
}

function cgroupDirs(ids: string[]): string[] {
  const out: string[] = [];
  let hierarchies: string[] = [];
  try {
    hierarchies = fs.readdirSync(CG_ROOT);
  } catch {
    return out;
  }
  for (const id of ids) {
    // v1 (and hybrid): /sys/fs/cgroup/<hierarchy>/kiln/<id>; v2: /sys/fs/cgroup/kiln/<id>.
    for (const h of hierarchies) {
      const d = path.join(CG_ROOT, h, 'kiln', id);
      if (fs.existsSync(d)) out.push(d);
    }
    const v2 = path.join(CG_ROOT, 'kiln', id);
    if (fs.existsSync(v2) && !out.includes(v2)) out.push(v2);
  }
  return out;
}

function mountsUnder(dir: string): string[] {
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  return text.split('\n').filter(Boolean).map((l) => unescape(l.split(' ')[1] ?? '')).filter((m) => m === dir || m.startsWith(dir + '/'));
}

/** Processes of this platform still on the machine: ones it was seen with, and any whose
 * command line names the state dir, whose environment has it as KILN_STATE_DIR, or whose
 * cgroup is under one of its invokers' cgroup parents. */
function ownProcesses(p: Platform, ids: string[]): Proc[] {
  const found = new Map<string, Proc>();
  for (const s of p.seen.values()) if (s.pid !== process.pid && alive(s)) found.set(`${s.pid}:${s.start}`, s);
  const envMark = `KILN_STATE_DIR=${p.stateDir}\0`;
  for (const proc of processTable()) {
    if (proc.pid === process.pid || proc.state === 'Z') continue;
    let ours = proc.cmdline.includes(p.stateDir);
    if (!ours) {
      try {
        ours = (fs.readFileSync(`/proc/${proc.pid}/environ`, 'utf8') + '\0').includes(envMark);
      } catch {
        /* gone, or a kernel thread */
      }
    }
    if (!ours) {
      try {
        const cg = fs.readFileSync(`/proc/${proc.pid}/cgroup`, 'utf8');
        ours = ids.some((id) => cg.includes(`/kiln/${id}/`) || cg.includes(`/kiln/${id}\n`));
      } catch {
        /* gone */
      }
    }
    if (ours) found.set(`${proc.pid}:${proc.start}`, proc);
  }
  return [...found.values()];
}

const describe = (p: Proc) => `${p.pid} ${commandOf(p).slice(0, 160)}`;

export async function leftovers(p: Platform, runtime = 'runc'): Promise<Leftovers> {
  const ids = p.invokerIds();
  const containers: string[] = [];
  for (const id of ids) {
    const root = path.join(p.stateDir, 'runc', id);
    if (!fs.existsSync(root)) continue;
    const r = await run(runtime, ['--root', root, 'list', '-q']);
    if (r.code !== 0) containers.push(`${root}: runc list failed: ${r.stderr.trim().slice(0, 200)}`);
    for (const c of r.stdout.split('\n').filter(Boolean)) containers.push(`${id}/${c}`);
  }
  return {
    containers,
    mounts: mountsUnder(p.stateDir),
    cgroups: cgroupDirs(ids),
    processes: ownProcesses(p, ids).map(describe),
  };
}

/**
 * Last resort, after the check: removes what the platform left (its processes, containers,
 * mounts, cgroups) so that the state dir can go and the machine stays clean. Touches only what
 * leftovers() attributes to this platform. Resolves to what is still there afterwards.
 */
export async function purge(p: Platform, runtime = 'runc'): Promise<Leftovers> {
  const ids = p.invokerIds();
  for (const proc of ownProcesses(p, ids)) {
    try {
      process.kill(proc.pid, 'SIGCONT'); // a stopped process would hold its signals
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const id of ids) {
    const root = path.join(p.stateDir, 'runc', id);
    if (!fs.existsSync(root)) continue;
    const r = await run(runtime, ['--root', root, 'list', '-q']);
    for (const c of r.stdout.split('\n').filter(Boolean)) await run(runtime, ['--root', root, 'delete', '--force', c]);
  }
  for (const m of mountsUnder(p.stateDir).sort((a, b) => b.length - a.length)) await run('umount', ['--lazy', m]);
  for (const dir of cgroupDirs(ids)) await removeCgroupDir(dir, 0);
  for (const base of new Set(cgroupDirs(ids).map((d) => path.dirname(d)))) {
    await fsp.rmdir(base).catch(() => undefined); // the shared /kiln parent, only if empty
  }
  await sleep(200);
  return leftovers(p, runtime);
}

async function removeCgroupDir(dir: string, depth: number): Promise<void> {
  if (depth > 32) return;
  const subdirs = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const d of subdirs) if (d.isDirectory()) await removeCgroupDir(path.join(dir, d.name), depth + 1);
  const frozen = path.join(dir, 'freezer.state');
  if (fs.existsSync(frozen)) await fsp.writeFile(frozen, 'THAWED').catch(() => undefined);
  const procs = (await fsp.readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  for (const pid of procs) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (let i = 0; i < 20; i++) {
    if (await fsp.rmdir(dir).then(() => true, () => !fs.existsSync(dir))) return;
    await sleep(100);
  }
}

/** Removes the state dir, but never while anything is mounted under it (a bind mount of the
 * shared layer store would be emptied through it). */
export async function removeStateDir(p: Platform): Promise<boolean> {
  if (mountsUnder(p.stateDir).length > 0) return false;
  await fsp.rm(p.stateDir, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  return !fs.existsSync(p.stateDir);
}
