// The Docker peer: the same root filesystem as the runc floor (hello's code, the node20 and base
// layers) imported as an image, then create + start + ready + first reply through the engine
// API on its unix socket, and pause / unpause + first reply.
//
// Which engine: one that already answers (DOCKER_HOST=unix://…, or /var/run/docker.sock) is
// used as it is. Otherwise, when `dockerd` is installed, the bench starts one of its own for
// the run (OwnDockerd): its own data root, exec root, pidfile, config file and socket under a
// /tmp dir of its own, cgroupfs driver under a cgroup parent of its own, no bridge, no
// iptables; it is stopped by its pid at the end and everything it made is removed. When
// `dockerd` is absent the peer is skipped: the bench never installs packages.
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { removeCgroupTree } from '../invoker/cgroups';
import { waitForSocket } from '../invoker/protocol';
import { commandOf, processTable } from '../platform/procs';
import { mountedUnder, mountRootfs, unmountAll } from '../invoker/rootfs';
import { DirectClient } from './floors';
import { errMsg, exec, progress, request, sleep } from './util';

export interface DockerSample {
  createMs: number;
  startMs: number;
  readyMs: number; // start returned → the runtime's socket accepts
  replyMs: number; // first POST /run
  toReadyMs: number; // create + start + ready
  totalMs: number; // create + start + ready + first reply
}

const CG_ROOT = '/sys/fs/cgroup';
export const NO_DOCKERD = 'no Docker engine installed; apt-get install docker.io to measure it';

/** GET /_ping on a unix socket: true when an engine answers. */
async function pings(socket: string, timeoutMs = 3000): Promise<boolean> {
  if (!fs.existsSync(socket)) return false;
  const agent = new http.Agent({ keepAlive: false });
  try {
    const r = await request({ method: 'GET', path: '/_ping', socketPath: socket, agent, timeoutMs });
    return r.status === 200;
  } catch {
    return false;
  } finally {
    agent.destroy();
  }
}

async function which(cmd: string): Promise<string | null> {
  // dockerd lives in /usr/sbin: look there too when PATH lacks it.
  const r = await exec('sh', ['-c', `PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v ${cmd}`]);
  return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

/** Processes whose command line contains `needle` (the bench's own dockerd dir): pid → command. */
async function processesMentioning(needle: string): Promise<Map<number, string>> {
  if (!needle.startsWith('/tmp/kiln-bench-docker-')) return new Map(); // never a broad match
  const mention = processTable().filter((p) => p.pid !== process.pid && p.cmdline.includes(needle));
  return new Map(mention.map((p) => [p.pid, commandOf(p)]));
}

const signal = (pid: number, sig: NodeJS.Signals) => {
  try {
    if (pid > 0) process.kill(pid, sig);
  } catch {
    /* gone meanwhile */
  }
};

const alive = (pid: number) => {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Every cgroup dir at or below `rel` in every hierarchy (v1 controllers, v2 / unified), deepest first. */
async function cgroupDirs(rel: string): Promise<string[]> {
  if (!rel || rel.includes('..')) return [];
  const tops: string[] = [];
  const v2 = path.join(CG_ROOT, rel);
  if (fs.existsSync(path.join(CG_ROOT, 'cgroup.controllers')) && fs.existsSync(v2)) tops.push(v2);
  for (const h of await fsp.readdir(CG_ROOT).catch(() => [] as string[])) {
    const d = path.join(CG_ROOT, h, rel);
    if (fs.existsSync(d) && (await fsp.stat(d)).isDirectory()) tops.push(d);
  }
  const out: string[] = [];
  const walk = async (d: string) => {
    out.push(d);
    for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [] as fs.Dirent[])) if (e.isDirectory()) await walk(path.join(d, e.name));
  };
  for (const t of tops) await walk(t);
  return out.sort((a, b) => b.length - a.length);
}

export interface OwnDockerdReport {
  dockerdPid: number;
  containerdPid: number | null;
  stoppedBy: string;
  processesLeft: string[];
  mountsLeft: string[];
  cgroupsLeft: string[];
  cgroupsRemoved: number;
  newDockerCgroups: string[]; // under …/docker/ during the run: not this engine's (own parent); never touched
  dirRemoved: boolean;
}

/** A dockerd of the bench's own, for the duration of the run. */
export class OwnDockerd {
  dir = '';
  child?: ChildProcess;
  pid = 0;
  containerdPid: number | null = null;
  readonly cgroupParent: string;
  private createdRunDocker: string[] = [];
  private dockerCgroupsBefore = new Set<string>();
  private stopped?: Promise<OwnDockerdReport>;

  constructor(readonly binary: string, runId: string) {
    this.cgroupParent = `/kiln-bench-docker-${runId}`;
  }

  get socket(): string {
    return path.join(this.dir, 'docker.sock');
  }

  get logPath(): string {
    return path.join(this.dir, 'dockerd.log');
  }

  get args(): string[] {
    return [
      '--iptables=false', '--ip-forward=false', '--ip-masq=false', '--bridge=none', '--userland-proxy=false',
      '--storage-driver=overlay2', '--exec-opt', 'native.cgroupdriver=cgroupfs', '--cgroup-parent', this.cgroupParent,
      '--data-root', path.join(this.dir, 'data'), '--exec-root', path.join(this.dir, 'exec'),
      '--pidfile', path.join(this.dir, 'docker.pid'), '-H', `unix://${this.socket}`,
      '--config-file', path.join(this.dir, 'daemon.json'), '--log-level', 'warn',
    ];
  }

  async start(): Promise<void> {
    this.dir = await fsp.mkdtemp('/tmp/kiln-bench-docker-');
    // The trust key would otherwise be written to /etc/docker/key.json: keep it in the temp dir.
    await fsp.writeFile(path.join(this.dir, 'daemon.json'), JSON.stringify({ 'deprecated-key-path': path.join(this.dir, 'key.json') }) + '\n');
    // dockerd makes /run/docker/plugins whatever its roots: removed after if it made them.
    for (const d of ['/run/docker', '/run/docker/plugins']) if (!fs.existsSync(d)) this.createdRunDocker.push(d);
    for (const d of await cgroupDirs('docker')) this.dockerCgroupsBefore.add(d);
    if (fs.existsSync('/run/containerd/containerd.sock')) progress('Docker: /run/containerd/containerd.sock exists: dockerd will use that containerd rather than its own');
    const log = await fsp.open(this.logPath, 'a');
    try {
      this.child = spawn(this.binary, this.args, { stdio: ['ignore', log.fd, log.fd] });
    } finally {
      await log.close();
    }
    this.pid = this.child.pid ?? 0;
    let exited: string | null = null;
    this.child.once('exit', (code, sig) => (exited = `dockerd exited (${code ?? sig})`));
    this.child.once('error', (e) => (exited = `dockerd failed to start: ${errMsg(e)}`));
    const deadline = Date.now() + 30_000;
    while (!(await pings(this.socket, 1000))) {
      if (exited || Date.now() > deadline) {
        const tail = (await fsp.readFile(this.logPath, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' / ');
        throw new Error(`${exited ?? 'dockerd did not answer within 30 s'}: ${tail.slice(0, 600)}`);
      }
      await sleep(100);
    }
    // Its containerd (started and stopped by dockerd): known by pid, checked at the end.
    const procs = await processesMentioning(this.dir);
    for (const [pid, cmd] of procs) if (path.basename(cmd.split(' ')[0]) === 'containerd') this.containerdPid = pid;
  }

  /** Stops dockerd by its pid and removes everything it made; what was left is reported. */
  stop(): Promise<OwnDockerdReport> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<OwnDockerdReport> {
    let stoppedBy = 'not running';
    if (this.child && this.pid > 0 && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child!.once('exit', r));
      signal(this.pid, 'SIGTERM');
      stoppedBy = 'SIGTERM';
      const done = await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]);
      if (!done) {
        signal(this.pid, 'SIGKILL');
        stoppedBy = 'SIGKILL after 20 s';
        await Promise.race([exited, sleep(5000)]);
      }
    }
    // Its containerd and shims (their command lines name the bench's dir), by pid.
    const waitGone = async (pids: number[], ms: number) => {
      const end = Date.now() + ms;
      while (pids.some(alive) && Date.now() < end) await sleep(50);
    };
    const left = [...(await processesMentioning(this.dir)).keys()];
    if (left.length) {
      await waitGone(left, 5000);
      for (const pid of left) if (alive(pid)) signal(pid, 'SIGTERM');
      await waitGone(left, 5000);
      for (const pid of left) if (alive(pid)) signal(pid, 'SIGKILL');
      await waitGone(left, 2000);
    }
    // The bench's cgroup parent, with any container process the engine could not remove.
    const rel = this.cgroupParent.slice(1);
    const cgroupsBefore = (await cgroupDirs(rel)).length;
    if (rel && !rel.includes('..')) await removeCgroupTree(rel).catch(() => undefined);
    const cgroupsRemoved = cgroupsBefore - (await cgroupDirs(rel)).length;
    // The engine's containers went under its own cgroup parent, never the default …/docker/:
    // new cgroups there would be another engine's (reported, not touched).
    const newDockerCgroups = (await cgroupDirs('docker')).filter((d) => !this.dockerCgroupsBefore.has(d));
    if (this.dir) await unmountAll(this.dir).catch(() => undefined);
    for (const d of [...this.createdRunDocker].reverse()) await fsp.rmdir(d).catch(() => undefined);
    const processesLeft = [...(await processesMentioning(this.dir)).entries()].map(([p, c]) => `${p} ${c.slice(0, 100)}`);
    if (this.pid > 0 && alive(this.pid) && this.child?.exitCode === null) processesLeft.push(`${this.pid} dockerd`);
    const mountsLeft = this.dir ? await mountedUnder(this.dir) : [];
    const cgroupsLeft = await cgroupDirs(this.cgroupParent.slice(1));
    let dirRemoved = false;
    if (this.dir && mountsLeft.length === 0 && processesLeft.length === 0) {
      await fsp.rm(this.dir, { recursive: true, force: true }).then(() => (dirRemoved = true), () => undefined);
    }
    return { dockerdPid: this.pid, containerdPid: this.containerdPid, stoppedBy, processesLeft, mountsLeft, cgroupsLeft, cgroupsRemoved, newDockerCgroups, dirRemoved };
  }
}

export type DockerEngine = { socket: string; own: OwnDockerd | null; how: string } | { socket: null; reason: string };

/**
 * A Docker engine to measure: one that answers already, or one the bench starts (when dockerd
 * is installed), or the reason for skipping the peer. `adopt` receives the bench's own dockerd
 * before it starts, so that an abort meanwhile still stops it.
 */
export async function findDockerEngine(runId: string, adopt: (own: OwnDockerd) => void = () => undefined): Promise<DockerEngine> {
  const h = process.env.DOCKER_HOST;
  if (h && !h.startsWith('unix://')) return { socket: null, reason: `DOCKER_HOST (${h}) is not a local unix socket` };
  const existing = h ? h.slice('unix://'.length) : '/var/run/docker.sock';
  if (await pings(existing)) return { socket: existing, own: null, how: `the running engine on ${existing}` };
  const dockerd = await which('dockerd');
  if (!dockerd) return { socket: null, reason: NO_DOCKERD };
  const own = new OwnDockerd(dockerd, runId);
  adopt(own); // known to the caller's clean-up before it starts
  progress(`Docker: no engine answers on ${existing}; starting the bench's own dockerd (${dockerd})`);
  try {
    await own.start();
  } catch (e) {
    const report = await own.stop().catch((x) => ({ error: errMsg(x) }));
    return { socket: null, reason: `the bench's own dockerd did not start: ${errMsg(e)} (clean-up: ${JSON.stringify(report)})` };
  }
  return { socket: own.socket, own, how: `the bench's own dockerd (pid ${own.pid}, containerd pid ${own.containerdPid ?? 'unknown'}), data and exec roots under ${own.dir}, cgroupfs driver under ${own.cgroupParent}, no bridge, no iptables; stopped at the end` };
}

export class DockerPeer {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  readonly image: string;
  private readonly repo = 'kiln-bench-hello';
  private readonly tag: string;
  version = '';
  containerd = '';
  importMs = 0;
  imageMB = 0;
  private readonly made = new Set<string>();

  constructor(readonly socket: string, readonly scratch: string, runId: string) {
    this.tag = runId;
    this.image = `${this.repo}:${runId}`;
  }

  private async api(method: string, route: string, body?: unknown, timeoutMs = 60_000): Promise<{ status: number; json: any; text: string }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const r = await request({
      method, path: route, socketPath: this.socket, agent: this.agent, body: payload, timeoutMs,
      headers: payload ? { 'content-type': 'application/json' } : {},
    });
    const text = r.body.toString();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, json, text };
  }

  /** Imports the overlay of `layers` (top first) as an image: `tar -c` piped into POST /images/create?fromSrc=-. */
  async importRootfs(layers: string[]): Promise<void> {
    const v = await this.api('GET', '/version');
    this.version = v.json?.Version ?? 'unknown';
    this.containerd = (v.json?.Components as { Name: string; Version: string }[] | undefined)?.find((c) => c.Name === 'containerd')?.Version ?? '';
    const mnt = path.join(this.scratch, 'docker-rootfs');
    await mountRootfs(mnt, layers);
    const t = performance.now();
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const tarProc = spawn('tar', ['-C', mnt, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let tarErr = '';
        tarProc.stderr!.on('data', (d) => (tarErr += d));
        const req = http.request(
          {
            method: 'POST', socketPath: this.socket, agent: false,
            path: `/images/create?fromSrc=-&repo=${encodeURIComponent(this.repo)}&tag=${encodeURIComponent(this.tag)}`,
            headers: { 'content-type': 'application/x-tar', 'transfer-encoding': 'chunked' },
          },
          (res) => {
            const parts: Buffer[] = [];
            res.on('data', (c: Buffer) => parts.push(c));
            res.on('end', () => {
              const body = Buffer.concat(parts).toString();
              if (res.statusCode !== 200 || /"error"/.test(body)) reject(new Error(`docker import: ${res.statusCode} ${body.slice(-300)}`));
              else resolve(body);
            });
          },
        );
        req.setTimeout(120_000, () => req.destroy(new Error('docker import: no answer within 120 s')));
        req.on('error', reject);
        tarProc.on('error', reject);
        tarProc.on('exit', (c) => {
          if (c !== 0) req.destroy(new Error(`tar exited ${c}: ${tarErr.slice(0, 300)}`));
        });
        tarProc.stdout!.pipe(req);
      });
      void text;
    } finally {
      await unmountAll(mnt);
      await fsp.rm(mnt, { recursive: true, force: true });
    }
    this.importMs = performance.now() - t;
    const img = await this.api('GET', `/images/${encodeURIComponent(this.image)}/json`);
    if (img.status !== 200) throw new Error(`docker import: the image is not there (${img.status} ${img.text.slice(0, 200)})`);
    this.imageMB = Math.round((img.json?.Size ?? 0) / 2 ** 20);
  }

  private async create(memoryMB: number, handler: string): Promise<{ id: string; socket: string; sockDir: string }> {
    const sockDir = path.join(this.scratch, 'docker-sock', randomBytes(6).toString('hex'));
    await fsp.mkdir(sockDir, { recursive: true });
    const bytes = memoryMB * 2 ** 20;
    // As kiln runs it: the runtime bootstrap with the function's handler, its socket in a
    // bind-mounted folder, read-only root, a size-limited /tmp, no network, memory without swap.
    const r = await this.api('POST', `/containers/create?name=kiln-bench-${randomBytes(6).toString('hex')}`, {
      Image: this.image,
      Cmd: ['/usr/bin/node', `--max-old-space-size=${Math.max(32, Math.floor(memoryMB * 0.8))}`, '/opt/kiln/bootstrap.js'],
      Env: ['PATH=/usr/bin:/bin', 'HOME=/tmp', `KILN_HANDLER=${handler}`, `KILN_MAX_LOG_BYTES=${64 * 1024}`],
      WorkingDir: '/function',
      NetworkDisabled: true,
      HostConfig: {
        Binds: [`${sockDir}:/run/kiln`],
        NetworkMode: 'none',
        Memory: bytes,
        MemorySwap: bytes,
        PidsLimit: 64,
        ReadonlyRootfs: true,
        Tmpfs: { '/tmp': 'size=64m' },
      },
    });
    if (r.status !== 201) throw new Error(`docker create: ${r.status} ${r.text.slice(0, 300)}`);
    this.made.add(r.json.Id);
    return { id: r.json.Id, socket: path.join(sockDir, 'kiln.sock'), sockDir };
  }

  async coldStart(memoryMB: number, handler: string, keep = false): Promise<{ sample: DockerSample; id: string; socket: string }> {
    const t0 = performance.now();
    const c = await this.create(memoryMB, handler);
    const t1 = performance.now();
    try {
      const s = await this.api('POST', `/containers/${c.id}/start`);
      if (s.status !== 204) throw new Error(`docker start: ${s.status} ${s.text.slice(0, 300)}`);
      const t2 = performance.now();
      await waitForSocket(c.socket, 15_000);
      const t3 = performance.now();
      const client = new DirectClient(c.socket);
      try {
        await client.run();
      } finally {
        client.close();
      }
      const t4 = performance.now();
      if (!keep) await this.remove(c.id);
      return { sample: { createMs: t1 - t0, startMs: t2 - t1, readyMs: t3 - t2, replyMs: t4 - t3, toReadyMs: t3 - t0, totalMs: t4 - t0 }, id: c.id, socket: c.socket };
    } catch (e) {
      await this.remove(c.id).catch(() => undefined);
      throw e;
    }
  }

  /** Pause, wait, then time unpause + one request on the kept-alive connection. */
  async unpauseCycles(id: string, socket: string, n: number, idleMs: number): Promise<number[]> {
    const client = new DirectClient(socket);
    const out: number[] = [];
    try {
      await client.run();
      for (let i = 0; i < n; i++) {
        const p = await this.api('POST', `/containers/${id}/pause`);
        if (p.status !== 204) throw new Error(`docker pause: ${p.status} ${p.text.slice(0, 200)}`);
        await sleep(idleMs);
        const t = performance.now();
        const u = await this.api('POST', `/containers/${id}/unpause`);
        if (u.status !== 204) throw new Error(`docker unpause: ${u.status} ${u.text.slice(0, 200)}`);
        await client.run();
        out.push(performance.now() - t);
      }
    } finally {
      client.close();
    }
    return out;
  }

  async remove(id: string): Promise<void> {
    await this.api('POST', `/containers/${id}/unpause`).catch(() => undefined);
    const r = await this.api('DELETE', `/containers/${id}?force=true&v=true`);
    if (r.status === 204 || r.status === 404) this.made.delete(id);
    else throw new Error(`docker rm: ${r.status} ${r.text.slice(0, 200)}`);
  }

  /** Removes the bench's containers and image; returns how many containers were still there. */
  async cleanup(): Promise<{ containersRemoved: number; containersLeft: number; imageRemoved: boolean }> {
    let removed = 0;
    const list = await this.api('GET', `/containers/json?all=true&filters=${encodeURIComponent(JSON.stringify({ ancestor: [this.image] }))}`).catch(() => null);
    const ids = new Set([...this.made, ...((list?.json as { Id: string }[] | undefined) ?? []).map((c) => c.Id)]);
    for (const id of ids) await this.remove(id).then(() => removed++, () => undefined);
    const img = await this.api('DELETE', `/images/${encodeURIComponent(this.image)}?force=true`).catch(() => null);
    await fsp.rm(path.join(this.scratch, 'docker-sock'), { recursive: true, force: true });
    this.agent.destroy();
    return { containersRemoved: removed, containersLeft: this.made.size, imageRemoved: img?.status === 200 };
  }
}
