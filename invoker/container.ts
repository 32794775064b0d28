// One function container: its bundle folder, overlay root, cgroup and runtime connection.
// start() makes a container for one function (runc run --detach) and waits until the runtime
// listens; startStem() makes a generic one of a runtime, which specialise() later gives a
// function's code (a read-only overlay mounted on the host, which reaches the container's
// /function through mount propagation) and limits.
// invoke() sends one call and classifies how it ended; freeze()/thaw() use the cgroup freezer;
// destroy() removes the container, its mounts and its folder. A container whose call ended in
// anything but a reply is marked unhealthy and never reused.
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ActivationStatus, Manifest } from '../common/types';
import { ContainerCgroup } from './cgroups';
import { buildSpec, cpuSharesFor, HOST_ROOT_ID } from './oci/spec';
import { OciRuntime } from './oci/runtime';
import { CallError, RunReply, RuntimeClient, waitForSocket } from './protocol';
import { OutputTail } from './output';
import { mountOverlay, mountRootfs, sharedMountPoint, unmountAll } from './rootfs';

export interface ContainerEnv {
  runtime: OciRuntime;
  containersDir: string;
  cgroupParent: string; // e.g. /kiln/invoker0
  maxLogBytes: number;
}

export interface ContainerSpec {
  fnKey: string; // namespace/name@version
  namespace: string;
  name: string;
  version: number;
  config: Manifest;
  codeLayer: string; // the function's unpacked layer root (holds function/)
  runtimeLayers: string[]; // the runtime's then the base's unpacked roots
}

export interface StemSpec {
  runtime: string;
  memoryMB: number;
  runtimeLayers: string[];
}

export interface CallOutcome {
  status: ActivationStatus;
  result?: unknown;
  error?: { code: string; message: string; stack?: string };
  logs: string[];
  durationMs: number;
  notDelivered?: boolean; // nothing was listening: the function never got the event
  replyBytes?: number; // size of the runtime's reply (result and logs): bounds the result's size
  cpuMs?: number;
  peakMemoryBytes?: number;
}

const READY_TIMEOUT_MS = 10_000;
export const PIDS_LIMIT = 64;
export const TMP_SIZE_MB = 64;

export class Container {
  healthy = true;
  private exited = false;
  readonly output = new OutputTail();
  private pidsHits = 0;
  private tasksSeen = -1; // the task count when the runtime was last seen alone
  private calls = 0; // in flight (more than one with concurrency > 1)

  private constructor(
    readonly id: string,
    public spec: ContainerSpec | null, // null until a stem cell is specialised
    readonly dir: string,
    readonly cgroup: ContainerCgroup,
    private readonly env: ContainerEnv,
    private readonly client: RuntimeClient,
  ) {}

  get rootfs(): string {
    return path.join(this.dir, 'rootfs');
  }

  /** A container for one function: its code is the top layer of the overlay root. */
  static start(env: ContainerEnv, spec: ContainerSpec): Promise<Container> {
    return Container.make(env, spec.name, spec.config.memoryMB, [spec.codeLayer, ...spec.runtimeLayers], spec, {
      ...spec.config.env, KILN_HANDLER: spec.config.handler,
    });
  }

  /**
   * A generic container of a runtime, with an empty /function for specialise() to fill. Before
   * it is frozen it runs one call of the runtime's own no-op handler: the first call of a
   * process costs milliseconds of compiling, better spent now than on a function's first call.
   */
  static async startStem(env: ContainerEnv, stem: StemSpec): Promise<Container> {
    const c = await Container.make(env, `prewarm-${stem.runtime}`, stem.memoryMB, stem.runtimeLayers, null, {});
    try {
      const reply = await c.client.post<RunReply>('/warm', { event: {}, context: { activationId: 'warm-up', deadline: Date.now() + READY_TIMEOUT_MS } });
      if (!reply.ok) throw new Error(`the runtime failed its warm-up call: ${reply.error?.message}`);
      return c;
    } catch (e) {
      await c.destroy().catch(() => undefined);
      throw e;
    }
  }

  private static async make(env: ContainerEnv, name: string, memoryMB: number, layers: string[], spec: ContainerSpec | null, vars: Record<string, string>): Promise<Container> {
    const id = `${name.replace(/_/g, '-').slice(0, 40)}-${randomBytes(6).toString('hex')}`;
    const dir = path.join(env.containersDir, id);
    const socketDir = path.join(dir, 'sock');
    const cgroupsPath = `${env.cgroupParent}/${id}`;
    await fsp.mkdir(socketDir, { recursive: true });
    await fsp.chown(socketDir, HOST_ROOT_ID, HOST_ROOT_ID); // the runtime, container root, listens here
    const c = new Container(id, spec, dir, new ContainerCgroup(cgroupsPath), env, new RuntimeClient(path.join(socketDir, 'kiln.sock'), spec?.config.concurrency ?? 100));
    try {
      await mountRootfs(c.rootfs, layers);
      const config = buildSpec({
        hostname: id,
        // The heap may use most of the memory; the cgroup limit stays the hard bound.
        args: ['/usr/bin/node', `--max-old-space-size=${Math.max(32, Math.floor(memoryMB * 0.8))}`, '/opt/kiln/bootstrap.js'],
        env: { ...vars, KILN_MAX_LOG_BYTES: String(env.maxLogBytes) },
        memoryMB,
        pidsLimit: PIDS_LIMIT,
        tmpSizeMB: TMP_SIZE_MB,
        cgroupsPath,
        socketDir,
        codeDir: spec ? undefined : await sharedMountPoint(path.join(dir, 'function')),
      });
      await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
      await env.runtime.run(id, dir, c.output);
      await waitForSocket(path.join(socketDir, 'kiln.sock'), READY_TIMEOUT_MS, () => c.cgroup.processCount() > 0);
      return c;
    } catch (e) {
      await c.destroy().catch(() => undefined);
      throw e;
    }
  }

  /** Gives a stem cell a function: its code, memory limit, CPU weight and handler. */
  async specialise(spec: ContainerSpec): Promise<void> {
    if (this.spec) throw new Error(`container ${this.id} already serves ${this.spec.fnKey}`);
    // An overlay mounted read-only is read-only from birth, so the copy that propagates into the
    // container is too (a bind remounted ro afterwards would propagate writable).
    const lower = [path.join(spec.codeLayer, 'function'), path.join(spec.runtimeLayers[spec.runtimeLayers.length - 1], 'function')];
    mountOverlay(path.join(this.dir, 'function'), lower);
    await this.cgroup.setLimits(spec.config.memoryMB * 2 ** 20, cpuSharesFor(spec.config.memoryMB));
    const reply = await this.client.post<{ ok: boolean; error?: { message: string } }>('/init', { handler: spec.config.handler, env: spec.config.env });
    if (!reply.ok) throw new Error(`cannot specialise: ${reply.error?.message}`);
    this.spec = spec;
  }

  freeze(): Promise<number> {
    return this.cgroup.setFrozen(true);
  }

  thaw(): Promise<number> {
    return this.cgroup.setFrozen(false);
  }

  async invoke(event: unknown, context: Record<string, unknown>, timeoutMs: number): Promise<CallOutcome> {
    const spec = this.spec!;
    const solo = spec.config.concurrency === 1; // per-call peaks are only exact when alone
    const cpuBefore = this.cgroup.cpuUsageNs();
    if (solo) this.cgroup.resetPeakMemory();
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    const started = performance.now();
    let outcome: CallOutcome;
    this.calls++;
    try {
      const reply = await this.client.post<RunReply>('/run', { event, context }, abort.signal);
      const durationMs = performance.now() - started;
      outcome = reply.ok
        ? { status: 'success', result: reply.result, logs: reply.logs, durationMs, replyBytes: reply.replyBytes }
        : { status: 'function_error', error: { code: 'function_error', ...reply.error! }, logs: reply.logs, durationMs };
    } catch (e) {
      const durationMs = performance.now() - started;
      this.healthy = false;
      if (!(e as CallError).delivered && !abort.signal.aborted) {
        outcome = { status: 'system_error', error: { code: 'system_error', message: 'the container was gone before the call reached it' }, logs: [], durationMs, notDelivered: true };
      } else {
        outcome = abort.signal.aborted
          ? { status: 'timeout', error: { code: 'timeout', message: `the function did not finish within ${timeoutMs} ms` }, logs: [], durationMs }
          : await this.classifyCrash(durationMs, e as Error);
      }
    } finally {
      clearTimeout(timer);
      this.calls--;
    }
    const cpuAfter = this.cgroup.cpuUsageNs();
    const peak = solo ? this.cgroup.peakMemoryBytes() : null;
    // Looked for when the last call in flight ends: while others run, a process may be theirs.
    const processes = this.healthy && this.calls === 0 ? this.extraProcesses() : 0;
    if (cpuBefore !== null && cpuAfter !== null) outcome.cpuMs = (cpuAfter - cpuBefore) / 1e6;
    if (peak !== null) outcome.peakMemoryBytes = peak;
    if (outcome.status === 'function_error' || outcome.status === 'timeout') await this.blameLimits(outcome);
    // Anything still running besides the runtime (a daemon left behind) or a flood of output
    // means the next call would not start clean: this container is replaced.
    if (this.output.flooded || (this.healthy && processes > 0)) {
      this.healthy = false;
      outcome.logs.push(`${new Date().toISOString()} stderr: [kiln] ${this.output.flooded ? 'the container wrote too much output' : 'a process was left running after the call'}; the container is replaced`);
    }
    return outcome;
  }

  /**
   * Processes in the container besides the runtime. The task count (threads included) is a
   * cheap first look; only when it changed is the process list read.
   */
  private extraProcesses(): number {
    const tasks = this.cgroup.taskCount();
    if (tasks !== null && tasks === this.tasksSeen) return 0;
    const n = this.cgroup.processCount() - 1;
    if (n <= 0 && tasks !== null) this.tasksSeen = tasks; // only the runtime's own threads changed
    return Math.max(0, n);
  }

  /** A failed call that ran into the pids, files or disk limit is a resource_limit error. */
  private async blameLimits(outcome: CallOutcome): Promise<void> {
    const hits = await this.cgroup.pidsLimitHits();
    const errno = (outcome.error as { errno?: string } | undefined)?.errno;
    let why: string | null = null;
    if (hits > this.pidsHits) why = `the function hit its limit of ${PIDS_LIMIT} processes`;
    else if (errno === 'EMFILE' || errno === 'ENFILE') why = 'the function hit its limit of 1024 open files';
    else if (errno === 'ENOSPC' || errno === 'EDQUOT') why = `the function filled its ${TMP_SIZE_MB} MB /tmp`;
    this.pidsHits = hits;
    if (!why) return;
    this.healthy = false; // a full /tmp or file table would fail the next call too: replace it
    outcome.status = 'resource_limit';
    outcome.error = { code: 'resource_limit', message: `${why}: ${outcome.error?.message ?? ''}`.trim(), stack: outcome.error?.stack };
  }

  /** The connection broke: the runtime process died. Say why, as precisely as we can tell. */
  private async classifyCrash(durationMs: number, cause: Error): Promise<CallOutcome> {
    const log = this.output.text();
    if ((await this.cgroup.oomKills()) > 0 || /heap out of memory/i.test(log)) {
      return { status: 'out_of_memory', error: { code: 'out_of_memory', message: `the function exceeded its memory limit of ${this.spec!.config.memoryMB} MB` }, logs: [], durationMs };
    }
    return {
      status: 'function_error',
      error: { code: 'function_error', message: `the function's process exited unexpectedly (${cause.message})`, stack: log.slice(-2000) || undefined },
      logs: [],
      durationMs,
    };
  }

  /** Removes everything this container made. Safe to call twice. */
  async destroy(): Promise<void> {
    this.healthy = false;
    this.client.close();
    if (!this.exited) {
      this.exited = true;
      await this.cgroup.setFrozen(false).catch(() => undefined); // a frozen process cannot die
      await this.env.runtime.delete(this.id);
    }
    this.cgroup.close();
    await unmountAll(this.dir);
    await fsp.rm(this.dir, { recursive: true, force: true });
  }
}
