// A real kiln for the benchmark: `node dist/platform/main.js` (embedded redis-server, gateway,
// invoker) in its own state dir on free ports, started by platform/launch.ts.
// Also what the benchmark reads of it: the API, the invoker's metrics, its containers on disk
// and in the cgroup tree, and whether anything is left after it stopped.
import { ChildProcess } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { packDirectory } from '../cli/package';
import { cgroupVersion } from '../invoker/cgroups';
import { REPO_ROOT } from '../common/paths';
import { embeddedRedisSocket } from '../common/redis';
import { launch, leftovers, Leftovers, platformEnv, stopPlatform } from '../platform/launch';
import { childByTitle, childrenOf, commandOf } from '../platform/procs';
import { progress, request, TimedResponse } from './util';

export interface PlatformOptions {
  name: string; // run label, e.g. run1
  stateDir: string;
  invokerId: string;
  env: Record<string, string>;
  signal?: AbortSignal; // aborts a start under way: launch() then stops what it started
}

export interface Deployed {
  name: string;
  version: number;
  digest: string;
}

export interface InvokeResult {
  status: number;
  ms: number;
  start: string | undefined;
  activationId: string | undefined;
  body: string;
}

const CG_ROOT = '/sys/fs/cgroup';

export class Platform {
  child!: ChildProcess;
  url = '';
  port = 0;
  metricsPort = 0;
  key = '';
  readonly deployed: Deployed[] = [];
  private output = '';
  private starting?: Promise<unknown>;
  private readonly seqAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private readonly adminAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  constructor(readonly o: PlatformOptions) {}

  get stateDir(): string {
    return this.o.stateDir;
  }

  get invokerId(): string {
    return this.o.invokerId;
  }

  get redisSocket(): string {
    return embeddedRedisSocket(this.stateDir);
  }

  get containersDir(): string {
    return path.join(this.stateDir, 'containers', this.invokerId);
  }

  async start(): Promise<void> {
    await fsp.mkdir(this.stateDir, { recursive: true });
    const env = await platformEnv(this.stateDir, this.invokerId, this.o.env);
    this.port = Number(env.KILN_PORT);
    this.metricsPort = Number(env.KILN_INVOKER_METRICS_PORT);
    progress(`${this.o.name}: starting kiln (${Object.entries(this.o.env).map(([k, v]) => `${k}=${v}`).join(' ')})`);
    // launch() resolves once the platform says it runs, which it says after the invoker answered.
    const launching = launch(env, { signal: this.o.signal, onOutput: (d) => (this.output = (this.output + d).slice(-20_000)) });
    this.starting = launching.catch(() => undefined);
    const up = await launching;
    this.child = up.child;
    this.url = up.url;
    this.key = up.key;
  }

  /** Log lines the platform printed (warnings and errors only: KILN_LOG_LEVEL=warn). */
  get log(): string {
    return this.output;
  }

  async stop(): Promise<void> {
    await this.starting; // an aborted start stops its own platform
    if (!this.child) return;
    if (!(await stopPlatform(this.child))) progress(`${this.o.name}: kiln did not stop within 90 s; it was sent SIGKILL`);
    this.seqAgent.destroy();
    this.adminAgent.destroy();
  }

  async api(method: string, route: string, body?: Buffer | string, contentType = 'application/json', agent = this.adminAgent): Promise<TimedResponse> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.key}` };
    if (body !== undefined) headers['content-type'] = contentType;
    return request({ method, path: route, host: '127.0.0.1', port: this.port, agent, headers, body, timeoutMs: 70_000 });
  }

  async deploy(dir: string): Promise<Deployed> {
    const tgz = await packDirectory(dir);
    const name = JSON.parse(await fsp.readFile(path.join(dir, 'kiln.json'), 'utf8')).name as string;
    const r = await this.api('PUT', `/v1/functions/${name}`, tgz, 'application/gzip');
    if (r.status !== 200) throw new Error(`deploy ${name}: ${r.status} ${r.body.toString()}`);
    const d = JSON.parse(r.body.toString()) as Deployed;
    this.deployed.push({ name, version: d.version, digest: d.digest });
    return d;
  }

  /** One sync call; `agent` decides the connection (keep-alive, one socket by default). */
  async invoke(name: string, event: unknown = { name: 'bench' }, agent: http.Agent = this.seqAgent): Promise<InvokeResult> {
    const r = await request({
      method: 'POST', path: `/v1/functions/${name}/invoke`, host: '127.0.0.1', port: this.port, agent,
      headers: { authorization: `Bearer ${this.key}`, 'content-type': 'application/json' }, body: JSON.stringify(event), timeoutMs: 70_000,
    });
    return {
      status: r.status, ms: r.ms, start: r.headers['x-kiln-start'] as string | undefined,
      activationId: r.headers['x-kiln-activation-id'] as string | undefined, body: r.body.toString(),
    };
  }

  /** A successful call, or an error saying what came back. */
  async invokeOk(name: string, event?: unknown, agent?: http.Agent): Promise<InvokeResult> {
    const r = await this.invoke(name, event, agent);
    if (r.status !== 200) throw new Error(`invoke ${name}: ${r.status} ${r.body.slice(0, 300)}`);
    return r;
  }

  async activation(id: string): Promise<Record<string, any>> {
    const r = await this.api('GET', `/v1/activations/${id}`);
    if (r.status !== 200) throw new Error(`activation ${id}: ${r.status} ${r.body.toString().slice(0, 200)}`);
    return JSON.parse(r.body.toString());
  }

  async metrics(): Promise<string> {
    const agent = new http.Agent({ keepAlive: false });
    const r = await request({ method: 'GET', path: '/metrics', host: '127.0.0.1', port: this.metricsPort, agent, timeoutMs: 10_000 });
    if (r.status !== 200) throw new Error(`invoker metrics: ${r.status}`);
    return r.body.toString();
  }

  /** kiln_containers by state, from the invoker's metrics. */
  async containerStates(): Promise<Record<string, number>> {
    const text = await this.metrics();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^kiln_containers\{[^}]*state="(\w+)"[^}]*\} (\d+)/gm)) out[m[1]] = Number(m[2]);
    return out;
  }

  /** Container ids (folders of the invoker's bundle dir), optionally those of one function. */
  async containers(fnName?: string): Promise<string[]> {
    const all = await fsp.readdir(this.containersDir).catch(() => [] as string[]);
    if (!fnName) return all;
    return all.filter((d) => this.containerOf(d, fnName));
  }

  /** Whether a container id is one of `fnName`'s (named after it; a specialised stem keeps its prewarm-* name). */
  containerOf(containerId: string, fnName: string): boolean {
    return new RegExp(`^${fnName.replace(/_/g, '-').slice(0, 40)}-[0-9a-f]{12}$`).test(containerId);
  }

  socketOf(containerId: string): string {
    return path.join(this.containersDir, containerId, 'sock', 'kiln.sock');
  }

  cgroupDir(controller: string, containerId: string): string {
    return cgroupVersion() === 2
      ? path.join(CG_ROOT, 'kiln', this.invokerId, containerId)
      : path.join(CG_ROOT, controller, 'kiln', this.invokerId, containerId);
  }

  async memoryUsage(containerId: string): Promise<number | null> {
    const file = cgroupVersion() === 2 ? 'memory.current' : 'memory.usage_in_bytes';
    const t = await fsp.readFile(path.join(this.cgroupDir('memory', containerId), file), 'utf8').catch(() => null);
    return t === null ? null : Number(t.trim());
  }

  async memoryLimit(containerId: string): Promise<number | null> {
    const file = cgroupVersion() === 2 ? 'memory.max' : 'memory.limit_in_bytes';
    const t = await fsp.readFile(path.join(this.cgroupDir('memory', containerId), file), 'utf8').catch(() => null);
    return t === null ? null : Number(t.trim());
  }

  async isFrozen(containerId: string): Promise<boolean> {
    if (cgroupVersion() === 2) {
      const t = await fsp.readFile(path.join(this.cgroupDir('', containerId), 'cgroup.events'), 'utf8').catch(() => '');
      return /^frozen 1$/m.test(t);
    }
    const t = await fsp.readFile(path.join(this.cgroupDir('freezer', containerId), 'freezer.state'), 'utf8').catch(() => '');
    return t.trim() === 'FROZEN';
  }

  async cgroupPids(containerId: string): Promise<number[]> {
    const t = await fsp.readFile(path.join(this.cgroupDir(cgroupVersion() === 2 ? '' : 'memory', containerId), 'cgroup.procs'), 'utf8').catch(() => '');
    return t.split('\n').filter(Boolean).map(Number);
  }

  /** Direct children of the platform process, by title (kiln-gateway, kiln-invoker, redis-server). */
  children(): { pid: number; title: string }[] {
    return childrenOf(this.child.pid!).map((c) => ({ pid: c.pid, title: commandOf(c) }));
  }

  invokerPid(): number | undefined {
    return childByTitle(this.child.pid!, 'kiln-invoker')?.pid;
  }

  /** What is still on the machine of this platform after it stopped. Empty lists mean clean. */
  leftovers(): Promise<Leftovers> {
    return leftovers(this.stateDir, this.invokerId);
  }
}

/** Writes a copy of functions/hello under `dir/name`, with a marker comment (a new version). */
export async function writeHello(dir: string, name: string, opts: { memoryMB?: number; concurrency?: number; marker?: string } = {}): Promise<string> {
  const src = path.join(REPO_ROOT, 'functions', 'hello');
  const manifest = JSON.parse(await fsp.readFile(path.join(src, 'kiln.json'), 'utf8'));
  if (opts.memoryMB !== undefined) manifest.memoryMB = opts.memoryMB;
  if (opts.concurrency !== undefined) manifest.concurrency = opts.concurrency;
  return writeFunction(dir, name, await fsp.readFile(path.join(src, 'index.js'), 'utf8'), manifest, opts.marker);
}

/** Writes a function `name` under `dir`: its kiln.json and index.js, with a marker comment. */
export async function writeFunction(dir: string, name: string, code: string, manifest: Record<string, unknown>, marker?: string): Promise<string> {
  const fnDir = path.join(dir, name);
  await fsp.mkdir(fnDir, { recursive: true });
  await fsp.writeFile(path.join(fnDir, 'kiln.json'), JSON.stringify({ ...manifest, name }, null, 1) + '\n');
  await fsp.writeFile(path.join(fnDir, 'index.js'), marker ? `${code}// ${marker}\n` : code);
  return fnDir;
}
