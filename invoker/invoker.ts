// The invoker service: takes invocation jobs from the BullMQ queue, runs each in a container
// from the warm pool, and writes the activation's final record (exactly once) to Redis.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DelayedError, Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import * as client from 'prom-client';
import { Config, statePaths } from '../common/config';
import { Logger } from '../common/log';
import { bullConnection } from '../common/redis';
import { DEPLOYED_CHANNEL, QUEUE_NAME } from '../common/redis-keys';
import { ActivationStore } from '../common/store/activations';
import { FunctionStore } from '../common/store/functions';
import { ContainerInfo, InvokerSnapshot, InvokerStore, SNAPSHOT_EVERY_MS } from '../common/store/invokers';
import { ActivationRecord, FINAL_STATUSES, InvocationJob } from '../common/types';
import { CallOutcome, Container, ContainerEnv, ContainerSpec } from './container';
import { readRuntimeLayers, RuntimeLayers } from './images/build';
import { LayerStore } from './images/layers';
import { createInvokerMetrics, InvokerMetrics } from './metrics';
import { RuncRuntime } from './oci/runtime';
import { FunctionSpec, Lease, NoCapacity, Pool } from './pool/pool';
import { removeDeadPeers, removeLeftovers, Owned } from './reconcile';

export class Invoker {
  readonly registry = new client.Registry();
  private pool?: Pool<Container, Spec>;
  private worker?: Worker;
  private layers!: RuntimeLayers;
  private readonly layerStore: LayerStore;
  private readonly activations: ActivationStore;
  private readonly functions: FunctionStore;
  private readonly owned: Owned;
  private readonly metrics: InvokerMetrics;
  private readonly invokers: InvokerStore;
  private heartbeat?: NodeJS.Timeout;
  private peerSweep?: NodeJS.Timeout;
  private deploys?: Redis; // subscribed to DEPLOYED_CHANNEL
  private readonly codeLayers = new Map<string, Promise<string>>(); // by digest: fetched, or being fetched
  private readonly runs = new Map<string, Run>(); // jobs being processed, by activation id

  constructor(private readonly config: Config, private readonly redis: Redis, private readonly log: Logger) {
    const id = config.KILN_INVOKER_ID;
    this.layerStore = new LayerStore(config.KILN_LAYERS_DIR);
    this.activations = new ActivationStore(redis, config.KILN_ACTIVATION_TTL_S);
    this.functions = new FunctionStore(redis);
    this.invokers = new InvokerStore(redis);
    this.owned = this.ownedBy(id);
    this.metrics = createInvokerMetrics(this.registry, id, () => this.pool, config.KILN_INVOKER_MEMORY_MB * 2 ** 20);
  }

  /** What the invoker `id` owns on this host (see reconcile.ts). */
  private ownedBy(id: string): Owned {
    const paths = statePaths(this.config.KILN_STATE_DIR);
    return {
      runtime: new RuncRuntime(this.config.KILN_OCI_RUNTIME, path.join(paths.runcRoot, id)),
      containersDir: path.join(paths.containers, id),
      cgroupParent: `/kiln/${id}`,
    };
  }

  get id(): string {
    return this.config.KILN_INVOKER_ID;
  }

  async start(): Promise<void> {
    this.layers = await readRuntimeLayers(this.layerStore);
    await removeLeftovers(this.owned, this.log);
    await this.sweepDeadPeers();
    await traversable([this.config.KILN_STATE_DIR, path.dirname(this.owned.containersDir), this.owned.containersDir, this.config.KILN_LAYERS_DIR]);
    const env: ContainerEnv = { ...this.owned, maxLogBytes: this.config.KILN_MAX_LOG_BYTES };
    const c = this.config;
    this.pool = new Pool<Container, Spec>(
      {
        cold: (spec) => Container.start(env, spec),
        stem: (runtime, memoryMB) => Container.startStem(env, { runtime, memoryMB, runtimeLayers: this.runtimeLayers(runtime) }),
      },
      {
        capacityMB: c.KILN_INVOKER_MEMORY_MB,
        pauseGraceMs: c.KILN_PAUSE_GRACE_MS,
        idleTimeoutMs: c.KILN_IDLE_TIMEOUT_MS,
        prewarm: Object.fromEntries(Object.keys(this.layers.runtimes).map((r) => [r, { count: c.KILN_PREWARM_COUNT, memoryMB: c.KILN_PREWARM_MEMORY_MB }])),
        waitForRoomMs: c.KILN_WAIT_FOR_ROOM_MS,
        log: this.log,
        onTransition: this.metrics.transition,
        onFreeze: this.metrics.freeze,
        onThaw: this.metrics.thaw,
      },
    );
    this.pool.replenish();
    this.worker = new Worker(QUEUE_NAME, (job, token) => this.process(job, token), {
      connection: bullConnection(this.config),
      concurrency: this.config.KILN_INVOKER_CONCURRENCY,
      name: this.id,
      // A job whose invoker stopped (crash, blocked event loop) is taken again after the lock
      // expires, at most twice; then abandoned() ends it with a system_error.
      lockDuration: this.config.KILN_JOB_LOCK_MS,
      stalledInterval: this.config.KILN_JOB_LOCK_MS,
      maxStalledCount: 2,
    });
    this.worker.on('error', (err) => this.log.error({ err }, 'queue worker error'));
    this.worker.on('failed', (job, err) => void this.abandoned(job, err).catch((e) => this.log.error({ err: e }, 'cannot end an abandoned job')));
    await this.worker.waitUntilReady();
    // Fetch and unpack newly deployed code ahead of its first call, off the call's path.
    this.deploys = this.redis.duplicate();
    this.deploys.on('message', (_c: string, digest: string) => void this.functionLayer(digest).catch((err) => this.log.warn({ err, digest }, 'prefetch failed')));
    await this.deploys.subscribe(DEPLOYED_CHANNEL);
    const beat = () => void Promise.resolve().then(() => this.invokers.publish(this.snapshot())).catch((err) => this.log.warn({ err }, 'heartbeat failed'));
    beat();
    this.heartbeat = setInterval(beat, SNAPSHOT_EVERY_MS);
    this.peerSweep = setInterval(() => void this.sweepDeadPeers().catch((err) => this.log.warn({ err }, 'peer sweep failed')), this.config.KILN_PEER_SWEEP_MS);
    this.peerSweep.unref();
    this.log.info({ invoker: this.id }, 'invoker ready');
  }

  /**
   * Stops taking work and lets the calls in hand finish, up to KILN_SHUTDOWN_GRACE_MS; calls
   * still running then end with a system_error (their jobs complete: none is left stalled).
   * Then it removes every container, mount and cgroup it made.
   */
  async stop(): Promise<void> {
    this.deploys?.disconnect();
    clearInterval(this.heartbeat);
    clearInterval(this.peerSweep);
    await this.invokers.withdraw(this.id).catch(() => undefined);
    const closing = this.worker?.close() ?? Promise.resolve();
    const timer = new Promise<'late'>((r) => setTimeout(() => r('late'), this.config.KILN_SHUTDOWN_GRACE_MS).unref());
    if ((await Promise.race([closing, timer])) === 'late') {
      const calling = [...this.runs.values()].flatMap((r) => (r.calling ? [r.calling] : []));
      this.log.warn({ calls: calling.length }, 'shutdown grace over: ending the calls still running');
      for (const r of calling) {
        await this.finish({ ...r, status: 'system_error', endedAt: Date.now(), error: { code: 'system_error', message: 'the invoker stopped before the call finished' } }, []);
      }
    }
    await this.pool?.shutdown(); // after a late stop, the calls still running return and their jobs complete
    await closing;
    await removeLeftovers(this.owned, this.log);
  }

  private async sweepDeadPeers(): Promise<void> {
    const live = new Set((await this.invokers.live()).map((i) => i.id));
    await removeDeadPeers(this.config.KILN_STATE_DIR, this.id, live, (id) => this.ownedBy(id), this.log, this.config.KILN_PEER_SWEEP_MS);
  }

  /** What `kiln ps` and `kiln stats` show, and what autoscaling reads. */
  snapshot(): InvokerSnapshot {
    const slots = this.pool?.slots() ?? [];
    const containers: ContainerInfo[] = slots.filter((e) => e.container).map((e) => {
      const c = e.container!;
      const s = c.spec; // null for a stem cell
      return {
        id: c.id, namespace: s?.namespace ?? null, function: s?.name ?? null, version: s?.version ?? null,
        state: e.state, memoryMB: e.memoryMB, inFlight: e.inFlight, createdAt: e.createdAt, lastUsed: e.lastUsed,
        memoryBytes: c.cgroup.memoryUsage(), cpuNs: c.cgroup.cpuUsageNs(),
      };
    });
    return {
      id: this.id, at: Date.now(), capacityBytes: this.config.KILN_INVOKER_MEMORY_MB * 2 ** 20,
      usedBytes: (this.pool?.usedMB() ?? 0) * 2 ** 20, inFlight: slots.reduce((n, e) => n + e.inFlight, 0),
      concurrency: this.config.KILN_INVOKER_CONCURRENCY, containers,
    };
  }

  private runtimeLayers(runtime: string): string[] {
    return [this.layerStore.rootPath(this.layers.runtimes[runtime]), this.layerStore.rootPath(this.layers.base)];
  }

  /**
   * The function's code layer on this host: fetched from Redis and unpacked once. Layers are
   * never removed while the invoker runs, so one found is remembered (no disk check per call).
   */
  private functionLayer(digest: string): Promise<string> {
    let p = this.codeLayers.get(digest);
    if (!p) {
      p = (async () => {
        if (!(await this.layerStore.has(digest))) {
          const code = await this.functions.code(digest);
          if (!code) throw new Error(`code package ${digest} is missing from the store`);
          await this.layerStore.addBuffer(digest, code);
          await this.layerStore.unpack(digest, 'function');
        }
        return this.layerStore.rootPath(digest);
      })();
      p.catch(() => this.codeLayers.delete(digest)); // tried again by the next call
      this.codeLayers.set(digest, p);
    }
    return p;
  }

  /**
   * Runs one job. Delivery (docs/delivery.md): a failure before the function got the event is
   * retried by BullMQ; a job delivered again after its invoker stopped mid-call runs again with
   * context.attempt + 1; a final record is never written twice.
   */
  private async process(job: Job<InvocationJob>, token?: string): Promise<string> {
    const id = job.data.activationId;
    // Delivered again while this invoker still has it (its event loop was blocked past the job
    // lock): the first run ends, and its final record makes this one a duplicate, instead of
    // the function running twice at once.
    for (let earlier = this.runs.get(id); earlier; earlier = this.runs.get(id)) await earlier.done;
    const entry: Run = { done: Promise.resolve() };
    this.runs.set(id, entry);
    const run = this.run(job, entry, token);
    entry.done = run.catch(() => undefined);
    try {
      return await run;
    } finally {
      if (this.runs.get(id) === entry) this.runs.delete(id);
    }
  }

  private async run(job: Job<InvocationJob>, entry: Run, token?: string): Promise<string> {
    const j = job.data;
    const base: ActivationRecord = {
      activationId: j.activationId, namespace: j.namespace, function: j.function, version: j.version,
      status: 'running', queuedAt: j.queuedAt, memoryMB: j.config.memoryMB, invoker: this.id,
    };
    let lease: Lease<Container>;
    let spec: Spec;
    try {
      spec = {
        fnKey: `${j.namespace}/${j.function}@${j.version}`, fn: `${j.namespace}/${j.function}`, namespace: j.namespace, name: j.function, version: j.version, config: j.config,
        runtime: j.config.runtime, memoryMB: j.config.memoryMB, concurrency: j.config.concurrency,
        codeLayer: await this.functionLayer(j.digest), runtimeLayers: this.runtimeLayers(j.config.runtime),
      };
      lease = await this.pool!.acquire(spec);
    } catch (e) {
      if (e instanceof NoCapacity && token) {
        // Back to the queue, not over-committed memory: this or another invoker takes it later.
        await job.moveToDelayed(Date.now() + 100, token);
        throw new DelayedError();
      }
      // Nothing reached the function yet: BullMQ retries, with backoff, while attempts remain.
      this.log.warn({ err: e, activationId: j.activationId, attempt: job.attemptsMade + 1 }, 'could not get a container');
      if (job.attemptsMade + 1 < (job.opts.attempts ?? 1)) throw e;
      const prior = await this.activations.get(j.activationId);
      return this.finish({ ...base, attempt: prior?.attempt ?? 1, status: 'system_error', endedAt: Date.now(), error: { code: 'system_error', message: (e as Error).message } }, [], j.config.runtime);
    }
    let final: ActivationRecord;
    let logs: string[] = [];
    let markLater: NodeJS.Timeout | undefined;
    try {
      const startedAt = Date.now();
      // Each stall of this job was a delivery that may have given the function the event.
      const leastAttempt = 1 + (job.stalledCounter ?? 0);
      // A job whose activation is already final was done before, and is never run again. Only a
      // job delivered before (stalled, delayed, retried) or queued again by its caller can be
      // one: it is marked running before the call. A first delivery is marked running only
      // once it has run RUNNING_MARK_MS: shorter calls go from queued to final directly, one
      // Redis write fewer per call.
      const firstDelivery = job.attemptsStarted === 1 && !j.resent;
      let begun: Promise<number> | null = null; // awaited after the call
      if (firstDelivery) {
        markLater = setTimeout(() => (begun = this.activations.begin({ ...base, startedAt }, leastAttempt, true).catch(() => leastAttempt)), RUNNING_MARK_MS);
      }
      const attempt = firstDelivery ? leastAttempt : await this.activations.begin({ ...base, startedAt }, leastAttempt);
      if (attempt === 0) return 'duplicate';
      base.attempt = attempt;
      entry.calling = { ...base, startedAt };
      const context = {
        activationId: j.activationId, functionName: j.function, version: j.version, namespace: j.namespace,
        deadline: startedAt + j.config.timeoutMs, memoryMB: j.config.memoryMB, attempt,
      };
      let outcome: CallOutcome = await lease.container.invoke(j.event, context, j.config.timeoutMs);
      // A container found dead before the call reached it (killed while frozen or idle): the
      // function never got the event, so it goes to another container, at most twice.
      for (let again = 0; outcome.notDelivered && again < 2; again++) {
        await this.pool!.release(lease.container);
        lease = await this.pool!.acquire(spec);
        outcome = await lease.container.invoke(j.event, context, j.config.timeoutMs);
      }
      logs = outcome.logs;
      clearTimeout(markLater);
      if (begun && (await begun) !== attempt) this.log.warn({ activationId: j.activationId }, 'a first delivery found its activation begun before');
      final = {
        ...base, startedAt, status: outcome.status, start: lease.start, endedAt: Date.now(),
        waitMs: startedAt - j.queuedAt, initMs: round(lease.initMs),
        durationMs: round(outcome.durationMs), billedMs: Math.max(1, Math.ceil(round(outcome.durationMs))), // of the duration the record shows
        cpuMs: outcome.cpuMs === undefined ? undefined : round(outcome.cpuMs), peakMemoryBytes: outcome.peakMemoryBytes,
      };
      if (outcome.status === 'success') final.result = outcome.result;
      else final.error = outcome.error;
      const max = this.config.KILN_MAX_BODY_BYTES;
      // The reply's size bounds the result's: serialise again only when it might be too large.
      if (final.status === 'success' && (outcome.replyBytes ?? Infinity) > max && JSON.stringify(final.result ?? null).length > max) {
        final = { ...final, status: 'resource_limit', result: undefined, error: { code: 'resource_limit', message: `the result is larger than ${this.config.KILN_MAX_BODY_BYTES} bytes` } };
      }
    } catch (e) {
      this.log.error({ err: e, activationId: j.activationId }, 'invocation failed in the platform');
      final = { ...base, status: 'system_error', endedAt: Date.now(), error: { code: 'system_error', message: (e as Error).message } };
    } finally {
      clearTimeout(markLater);
      entry.calling = undefined;
      await this.pool!.release(lease.container);
    }
    return this.finish(final, logs, j.config.runtime);
  }

  /** Writes the final record once; `runtime` labels the start-time metric of records with a start. */
  private async finish(final: ActivationRecord, logs: string[], runtime = ''): Promise<string> {
    if (await this.activations.finish(final, logs)) this.metrics.observe(final, runtime);
    return final.status;
  }

  /** A job BullMQ gave up on without a final record (stalled too often): end it clearly. */
  private async abandoned(job: Job<InvocationJob> | undefined, err: Error): Promise<void> {
    if (!job || err.name === 'DelayedError' || !/stalled/i.test(err.message)) return;
    const j = job.data;
    const prior = await this.activations.get(j.activationId);
    if (prior && FINAL_STATUSES.includes(prior.status)) return;
    await this.finish({
      activationId: j.activationId, namespace: j.namespace, function: j.function, version: j.version, queuedAt: j.queuedAt,
      memoryMB: j.config.memoryMB, invoker: this.id, attempt: prior?.attempt, status: 'system_error', endedAt: Date.now(),
      error: { code: 'system_error', message: 'the invokers running this activation stopped too many times; it was not run again' },
    }, [], j.config.runtime);
  }
}

type Spec = ContainerSpec & FunctionSpec;

/** A job being processed: until it ends, and its record while its call runs (for shutdown). */
interface Run {
  done: Promise<unknown>;
  calling?: ActivationRecord;
}

/** How long a call runs before its record says `running` (see process()). */
const RUNNING_MARK_MS = 50;

/**
 * runc sets up a container's root as the container's own (unprivileged) root user, which must
 * be able to pass through the folders above its bundle and layers: o+x, without o+r.
 */
async function traversable(dirs: string[]): Promise<void> {
  for (const d of dirs) {
    await fsp.mkdir(d, { recursive: true });
    const mode = (await fsp.stat(d)).mode & 0o7777;
    if ((mode & 0o001) === 0) await fsp.chmod(d, mode | 0o111);
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000;
