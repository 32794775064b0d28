// The floors kiln is compared with, measured in the same run:
//  - BullFloor: a bare BullMQ round trip on the same redis-server (Queue.add → a Worker in this
//    process → the reply published over Redis pub/sub → a subscriber hands it to the caller),
//    the way kiln's gateway and invoker pass a call, without anything else kiln does.
//  - DirectClient: one HTTP request straight to a warm container's unix socket (POST /run), as
//    the invoker sends it.
//  - EchoFloor: one byte to another process and back over a unix socket: what a single hop
//    between two processes costs this machine, back to back and after an idle spell.
//  - RuncFloor: a bare container of the same root filesystem: `runc create` and `runc start` as
//    two commands, wait for the runtime's socket, first reply. Bundles are made with kiln's own
//    mountRootfs and buildSpec under a runc root, bundle folder and cgroup parent of the bench's
//    own, and everything is removed after (removeLeftovers).
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import * as tar from 'tar';
import { packDirectory } from '../cli/package';
import pino from 'pino';
import { ContainerCgroup } from '../invoker/cgroups';
import { readRuntimeLayers } from '../invoker/images/build';
import { LayerStore } from '../invoker/images/layers';
import { buildSpec } from '../invoker/oci/spec';
import { RuncRuntime } from '../invoker/oci/runtime';
import { waitForSocket } from '../invoker/protocol';
import { removeLeftovers } from '../invoker/reconcile';
import { mountRootfs, mountedUnder, unmountAll } from '../invoker/rootfs';
import { writeHello } from './platform';
import { request, sleep } from './util';

// ---------------------------------------------------------------- BullMQ round trip

export class BullFloor {
  private readonly queue: Queue;
  private readonly worker: Worker;
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly waiting = new Map<string, (msg: string) => void>();
  private readonly channel: string;
  private seq = 0;

  constructor(redisSocket: string, readonly name: string, concurrency: number) {
    const connection = { path: redisSocket, maxRetriesPerRequest: null };
    this.channel = `${name}:done`;
    this.pub = new Redis(connection);
    this.sub = new Redis(connection);
    this.sub.on('message', (_c: string, msg: string) => {
      const id = msg.slice(0, msg.indexOf(' '));
      this.waiting.get(id)?.(msg);
    });
    this.queue = new Queue(name, { connection });
    this.worker = new Worker(
      name,
      async (job: Job<{ name: string }>) => {
        // The worker's reply, published as kiln's invoker publishes the final record.
        const result = { message: `Hello, ${job.data.name}!` };
        await this.pub.publish(this.channel, `${job.id} ${JSON.stringify(result)}`);
        return 'ok';
      },
      { connection, concurrency },
    );
  }

  async ready(): Promise<void> {
    await this.sub.subscribe(this.channel);
    await this.queue.waitUntilReady();
    await this.worker.waitUntilReady();
  }

  /** One round trip; returns its time in ms. */
  async roundTrip(): Promise<number> {
    const id = `f${++this.seq}-${randomBytes(4).toString('hex')}`;
    const t = performance.now();
    const done = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('BullMQ floor: no reply within 30 s')), 30_000);
      this.waiting.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
    try {
      await this.queue.add('call', { name: 'bench' }, { jobId: id, removeOnComplete: true, removeOnFail: true });
      await done;
    } finally {
      this.waiting.delete(id);
    }
    return performance.now() - t;
  }

  async close(): Promise<void> {
    await this.worker.close().catch(() => undefined);
    await this.queue.obliterate({ force: true }).catch(() => undefined);
    await this.queue.close().catch(() => undefined);
    this.pub.disconnect();
    this.sub.disconnect();
  }
}

// ---------------------------------------------------------------- direct request to a container

export class DirectClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private seq = 0;

  constructor(readonly socketPath: string) {}

  /** POST /run with {event, context} as the invoker sends it; returns its time in ms. */
  async run(): Promise<number> {
    const body = JSON.stringify({
      event: { name: 'bench' },
      context: { activationId: `direct${++this.seq}`, functionName: 'hello', version: 1, namespace: 'default', deadline: Date.now() + 10_000, memoryMB: 128 },
    });
    const r = await request({ method: 'POST', path: '/run', socketPath: this.socketPath, agent: this.agent, headers: { 'content-type': 'application/json' }, body, timeoutMs: 10_000 });
    if (r.status !== 200 || !r.body.toString().startsWith('{"ok":true')) throw new Error(`direct /run: ${r.status} ${r.body.toString().slice(0, 200)}`);
    return r.ms;
  }

  close(): void {
    this.agent.destroy();
  }
}

// ---------------------------------------------------------------- one hop

// The echo server: a child Node.js process, so that both ends are processes of their own.
const ECHO_SERVER = `const net = require('node:net'); const s = process.argv[1];
try { require('node:fs').unlinkSync(s); } catch {}
net.createServer((c) => c.on('data', (d) => c.write(d))).listen(s, () => process.stdout.write('ready\\n'));`;

export class EchoFloor {
  private constructor(private readonly child: ChildProcess, private readonly socket: net.Socket) {}

  static async start(socketPath: string): Promise<EchoFloor> {
    const child = spawn(process.execPath, ['-e', ECHO_SERVER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`the echo server exited (${code})`)));
      });
      const socket = net.connect(socketPath);
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      socket.setNoDelay(true);
      return new EchoFloor(child, socket);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
  }

  /** One byte there and back; returns its time in ms. */
  roundTrip(timeoutMs = 5000): Promise<number> {
    return new Promise((resolve, reject) => {
      const t = performance.now();
      const timer = setTimeout(() => reject(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs);
      this.socket.once('data', () => {
        clearTimeout(timer);
        resolve(performance.now() - t);
      });
      this.socket.write('x');
    });
  }

  close(): void {
    this.socket.destroy();
    this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------- bare runc

export interface RuncSample {
  createMs: number;
  startMs: number;
  readyMs: number; // runc start returned → the socket accepts
  replyMs: number; // first POST /run
  toReadyMs: number; // create + start + ready
  totalMs: number; // create + start + ready + first reply
  prepMs: number; // bundle folder, overlay mount, config.json (not part of the floor)
}

export class RuncFloor {
  readonly runcRoot: string;
  readonly containersDir: string;
  readonly cgroupParent: string;
  private readonly runtime: RuncRuntime;
  private layers: string[] = [];
  // Warnings of removeLeftovers go to stderr: stdout is kept for the table.
  private readonly log = pino({ name: 'kiln-bench', level: 'warn' }, pino.destination(2));
  readonly hello = { memoryMB: 128, handler: 'index.handler' };

  constructor(readonly scratch: string, readonly floorId: string) {
    this.runcRoot = path.join(scratch, 'runc');
    this.containersDir = path.join(scratch, 'containers');
    this.cgroupParent = `/kiln/${floorId}`;
    this.runtime = new RuncRuntime('runc', this.runcRoot);
  }

  /** Unpacks the hello package (as kiln would) and finds the runtime and base layers. */
  async prepare(layersDir: string, marker: string): Promise<void> {
    await fsp.mkdir(this.containersDir, { recursive: true });
    const fnDir = await writeHello(path.join(this.scratch, 'src'), 'hello', { marker });
    const tgz = await packDirectory(fnDir);
    const layerRoot = path.join(this.scratch, 'fnlayer', 'root');
    await fsp.mkdir(path.join(layerRoot, 'function'), { recursive: true });
    await fsp.writeFile(path.join(this.scratch, 'fn.tgz'), tgz);
    await tar.x({ file: path.join(this.scratch, 'fn.tgz'), cwd: path.join(layerRoot, 'function') });
    const store = new LayerStore(layersDir);
    const rt = await readRuntimeLayers(store);
    this.layers = [layerRoot, store.rootPath(rt.runtimes.node20), store.rootPath(rt.base)];
    const manifest = JSON.parse(await fsp.readFile(path.join(fnDir, 'kiln.json'), 'utf8'));
    this.hello.memoryMB = manifest.memoryMB;
    this.hello.handler = manifest.handler;
  }

  get rootfsLayers(): string[] {
    return this.layers;
  }

  private async makeBundle(id: string): Promise<{ dir: string; socket: string }> {
    const dir = path.join(this.containersDir, id);
    const socketDir = path.join(dir, 'sock');
    await fsp.mkdir(socketDir, { recursive: true });
    await mountRootfs(path.join(dir, 'rootfs'), this.layers);
    const m = this.hello.memoryMB;
    const config = buildSpec({
      hostname: id,
      args: ['/usr/bin/node', `--max-old-space-size=${Math.max(32, Math.floor(m * 0.8))}`, '/opt/kiln/bootstrap.js'],
      env: { KILN_HANDLER: this.hello.handler, KILN_MAX_LOG_BYTES: String(64 * 1024) },
      memoryMB: m,
      pidsLimit: 64,
      tmpSizeMB: 64,
      cgroupsPath: `${this.cgroupParent}/${id}`,
      socketDir,
    });
    // With a user namespace the runtime (container root = an unprivileged host uid) must own
    // the socket folder, as kiln's Container does.
    const mapped = (config.linux as { uidMappings?: { hostID: number }[]; gidMappings?: { hostID: number }[] }).uidMappings?.[0]?.hostID;
    const mappedGid = (config.linux as { gidMappings?: { hostID: number }[] }).gidMappings?.[0]?.hostID;
    if (mapped !== undefined) await fsp.chown(socketDir, mapped, mappedGid ?? mapped);
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
    return { dir, socket: path.join(socketDir, 'kiln.sock') };
  }

  private runc(args: string[], logPath: string): Promise<void> {
    return fsp.open(logPath, 'a').then(async (log) => {
      try {
        const code = await new Promise<number | null>((resolve, reject) => {
          const child = spawn('runc', ['--root', this.runcRoot, ...args], { stdio: ['ignore', log.fd, log.fd] });
          const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
          child.on('error', reject);
          child.on('exit', (c) => {
            clearTimeout(timer);
            resolve(c);
          });
        });
        if (code !== 0) throw new Error(`runc ${args[0]} exited ${code}: ${(await fsp.readFile(logPath, 'utf8').catch(() => '')).slice(-500)}`);
      } finally {
        await log.close();
      }
    });
  }

  /** One cold start of the floor. With `keep`, the container is left running for thaw(). */
  async coldStart(keep = false): Promise<{ sample: RuncSample; id: string }> {
    const id = `floor-${randomBytes(6).toString('hex')}`;
    const t0 = performance.now();
    const { dir, socket } = await this.makeBundle(id);
    const logPath = path.join(dir, 'container.log');
    const t1 = performance.now();
    try {
      await this.runc(['create', '--bundle', dir, id], logPath);
      const t2 = performance.now();
      await this.runc(['start', id], logPath);
      const t3 = performance.now();
      await waitForSocket(socket, 10_000);
      const t4 = performance.now();
      const client = new DirectClient(socket);
      try {
        await client.run();
      } finally {
        client.close();
      }
      const t5 = performance.now();
      const sample = { prepMs: t1 - t0, createMs: t2 - t1, startMs: t3 - t2, readyMs: t4 - t3, replyMs: t5 - t4, toReadyMs: t4 - t1, totalMs: t5 - t1 };
      if (!keep) await this.destroy(id);
      return { sample, id };
    } catch (e) {
      await this.destroy(id).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Thaw-to-response floor on a running floor container: freeze it with the cgroup freezer
   * (kiln's own ContainerCgroup), wait, then time thaw + one request on the kept-alive connection.
   */
  async thawCycles(id: string, n: number, idleMs: number): Promise<number[]> {
    const cg = new ContainerCgroup(`${this.cgroupParent}/${id}`);
    const client = new DirectClient(path.join(this.containersDir, id, 'sock', 'kiln.sock'));
    const out: number[] = [];
    try {
      await client.run();
      for (let i = 0; i < n; i++) {
        await cg.setFrozen(true);
        await sleep(idleMs);
        const t = performance.now();
        await cg.setFrozen(false);
        await client.run();
        out.push(performance.now() - t);
      }
    } finally {
      client.close();
    }
    return out;
  }

  async destroy(id: string): Promise<void> {
    const dir = path.join(this.containersDir, id);
    await new ContainerCgroup(`${this.cgroupParent}/${id}`).setFrozen(false).catch(() => undefined);
    await this.runtime.delete(id);
    await unmountAll(dir);
    await fsp.rm(dir, { recursive: true, force: true });
  }

  /** Removes every container, mount, folder and cgroup the floor made; returns what was still there. */
  async cleanup(): Promise<{ removed: number; mountsLeft: number }> {
    const removed = await removeLeftovers({ runtime: this.runtime, containersDir: this.containersDir, cgroupParent: this.cgroupParent }, this.log);
    const mountsLeft = (await mountedUnder(this.scratch)).length;
    return { removed, mountsLeft };
  }
}

export { DEFAULT_LAYERS_DIR as LAYERS_DIR } from '../common/config';
