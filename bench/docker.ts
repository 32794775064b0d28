// The Docker peer, measured only when a Docker engine is already running (`docker info` works):
// the same root filesystem (overlay of hello's code, the node20 and base layers) imported as an
// image, then create + start + ready + first reply through the engine API on its unix socket,
// and unpause + first reply. The bench never installs or starts Docker itself.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { waitForSocket } from '../invoker/protocol';
import { mountRootfs, unmountAll } from '../invoker/rootfs';
import { DirectClient } from './floors';
import { exec, request, sleep } from './util';

export interface DockerSample {
  createMs: number;
  startMs: number;
  readyMs: number;
  replyMs: number;
  totalMs: number;
}

/** null when an engine answers; otherwise why the Docker peer is skipped. */
export async function dockerUnavailable(): Promise<string | null> {
  const which = await exec('sh', ['-c', 'command -v docker']);
  if (which.code !== 0) return 'no Docker engine running (no docker command installed)';
  const info = await exec('docker', ['info', '--format', '{{.ServerVersion}}'], 15_000);
  if (info.code !== 0 || !info.stdout.trim()) return 'no Docker engine running (`docker info` cannot reach a daemon)';
  if (!dockerSocket()) return 'no Docker engine running on a local unix socket (DOCKER_HOST is not unix://)';
  return null;
}

function dockerSocket(): string | null {
  const h = process.env.DOCKER_HOST;
  if (!h) return '/var/run/docker.sock';
  return h.startsWith('unix://') ? h.slice('unix://'.length) : null;
}

export class DockerPeer {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  private readonly socket = dockerSocket()!;
  readonly image: string;
  version = '';

  constructor(readonly scratch: string, runId: string) {
    this.image = `kiln-bench-hello:${runId}`;
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

  /** Imports the overlay of `layers` (top first) as an image, with `docker import`. */
  async importRootfs(layers: string[]): Promise<void> {
    const v = await this.api('GET', '/version');
    this.version = v.json?.Version ?? 'unknown';
    const mnt = path.join(this.scratch, 'docker-rootfs');
    await mountRootfs(mnt, layers);
    try {
      await new Promise<void>((resolve, reject) => {
        const tarProc = spawn('tar', ['-C', mnt, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
        const imp = spawn('docker', ['import', '-', this.image], { stdio: ['pipe', 'ignore', 'inherit'] });
        tarProc.stdout.pipe(imp.stdin);
        imp.on('error', reject);
        imp.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`docker import exited ${c}`))));
      });
    } finally {
      await unmountAll(mnt);
      await fsp.rm(mnt, { recursive: true, force: true });
    }
  }

  private async create(memoryMB: number, handler: string): Promise<{ id: string; socket: string; sockDir: string }> {
    const sockDir = path.join(this.scratch, 'docker-sock', randomBytes(6).toString('hex'));
    await fsp.mkdir(sockDir, { recursive: true });
    const bytes = memoryMB * 2 ** 20;
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
      return { sample: { createMs: t1 - t0, startMs: t2 - t1, readyMs: t3 - t2, replyMs: t4 - t3, totalMs: t4 - t0 }, id: c.id, socket: c.socket };
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
    await this.api('DELETE', `/containers/${id}?force=true&v=true`);
  }

  async cleanup(): Promise<void> {
    const list = await this.api('GET', `/containers/json?all=true&filters=${encodeURIComponent(JSON.stringify({ ancestor: [this.image] }))}`).catch(() => null);
    for (const c of (list?.json as { Id: string }[] | undefined) ?? []) await this.remove(c.Id).catch(() => undefined);
    await this.api('DELETE', `/images/${encodeURIComponent(this.image)}?force=true`).catch(() => undefined);
    await fsp.rm(path.join(this.scratch, 'docker-sock'), { recursive: true, force: true });
    this.agent.destroy();
  }
}
