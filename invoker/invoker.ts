// The invoker service: takes invocation jobs from the BullMQ queue, runs each in a container
// from the warm pool, and writes the activation's final record (exactly once) to Redis.
import * as path from 'node:path';
import { Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import * as client from 'prom-client';
import { Config, statePaths } from '../common/config';
import { Logger } from '../common/log';
import { bullConnection } from '../common/redis';
import { QUEUE_NAME } from '../common/redis-keys';
import { ActivationStore } from '../common/store/activations';
import { FunctionStore } from '../common/store/functions';
import { ActivationRecord, InvocationJob } from '../common/types';
import { CallOutcome, ContainerEnv } from './container';
import { readRuntimeLayers, RuntimeLayers } from './images/build';
import { LayerStore } from './images/layers';
import { createInvokerMetrics, InvokerMetrics } from './metrics';
import { RuncRuntime } from './oci/runtime';
import { Pool } from './pool';
import { removeLeftovers, Owned } from './reconcile';

export class Invoker {
  readonly registry = new client.Registry();
  private pool?: Pool;
  private worker?: Worker;
  private layers!: RuntimeLayers;
  private readonly layerStore: LayerStore;
  private readonly activations: ActivationStore;
  private readonly functions: FunctionStore;
  private readonly owned: Owned;
  private readonly metrics: InvokerMetrics;

  constructor(private readonly config: Config, private readonly redis: Redis, private readonly log: Logger) {
    const paths = statePaths(config.KILN_STATE_DIR);
    const id = config.KILN_INVOKER_ID;
    this.layerStore = new LayerStore(config.KILN_LAYERS_DIR);
    this.activations = new ActivationStore(redis, config.KILN_ACTIVATION_TTL_S);
    this.functions = new FunctionStore(redis);
    this.owned = {
      runtime: new RuncRuntime(config.KILN_OCI_RUNTIME, path.join(paths.runcRoot, id)),
      containersDir: path.join(paths.containers, id),
      cgroupParent: `/kiln/${id}`,
    };
    this.metrics = createInvokerMetrics(this.registry, id, () => this.pool, config.KILN_INVOKER_MEMORY_MB * 2 ** 20);
  }

  get id(): string {
    return this.config.KILN_INVOKER_ID;
  }

  async start(): Promise<void> {
    this.layers = await readRuntimeLayers(this.layerStore);
    await removeLeftovers(this.owned, this.log);
    const env: ContainerEnv = { ...this.owned, maxLogBytes: this.config.KILN_MAX_LOG_BYTES };
    this.pool = new Pool(env, this.config.KILN_IDLE_TIMEOUT_MS, this.log);
    this.worker = new Worker(QUEUE_NAME, (job) => this.process(job), {
      connection: bullConnection(this.config),
      concurrency: this.config.KILN_INVOKER_CONCURRENCY,
      name: this.id,
    });
    this.worker.on('error', (err) => this.log.error({ err }, 'queue worker error'));
    await this.worker.waitUntilReady();
    this.log.info({ invoker: this.id }, 'invoker ready');
  }

  /** Stops taking work, lets running calls finish, then removes everything it made. */
  async stop(): Promise<void> {
    await this.worker?.close();
    await this.pool?.shutdown();
    await removeLeftovers(this.owned, this.log);
  }

  private async functionLayer(digest: string): Promise<string> {
    if (!(await this.layerStore.has(digest))) {
      const code = await this.functions.code(digest);
      if (!code) throw new Error(`code package ${digest} is missing from the store`);
      await this.layerStore.addBuffer(digest, code);
      await this.layerStore.unpack(digest, 'function');
    }
    return this.layerStore.rootPath(digest);
  }

  private async process(job: Job<InvocationJob>): Promise<string> {
    const j = job.data;
    const startedAt = Date.now();
    const running: ActivationRecord = {
      activationId: j.activationId, namespace: j.namespace, function: j.function, version: j.version,
      status: 'running', queuedAt: j.queuedAt, startedAt, memoryMB: j.config.memoryMB, invoker: this.id,
    };
    // A job whose activation already has a final record was done before: never run it twice.
    if (!(await this.activations.update(running))) return 'duplicate';
    let final: ActivationRecord;
    let logs: string[] = [];
    try {
      const fnLayer = await this.functionLayer(j.digest);
      const runtimeLayer = this.layerStore.rootPath(this.layers.runtimes[j.config.runtime]);
      const acquired = await this.pool!.acquire({
        fnKey: `${j.namespace}/${j.function}@${j.version}`,
        name: j.function,
        config: j.config,
        layers: [fnLayer, runtimeLayer, this.layerStore.rootPath(this.layers.base)],
      });
      const callStart = Date.now();
      const context = {
        activationId: j.activationId, functionName: j.function, version: j.version, namespace: j.namespace,
        deadline: callStart + j.config.timeoutMs, memoryMB: j.config.memoryMB,
      };
      let outcome: CallOutcome;
      try {
        outcome = await acquired.container.invoke(j.event, context, j.config.timeoutMs);
      } finally {
        await this.pool!.release(acquired.container);
      }
      logs = outcome.logs;
      final = {
        ...running, status: outcome.status, start: acquired.start, endedAt: Date.now(),
        waitMs: callStart - j.queuedAt, initMs: Math.round(acquired.initMs),
        durationMs: round(outcome.durationMs), billedMs: Math.max(1, Math.ceil(outcome.durationMs)),
        cpuMs: outcome.cpuMs === undefined ? undefined : round(outcome.cpuMs), peakMemoryBytes: outcome.peakMemoryBytes,
      };
      if (outcome.status === 'success') final.result = outcome.result;
      else final.error = outcome.error;
      if (final.status === 'success' && JSON.stringify(final.result ?? null).length > this.config.KILN_MAX_BODY_BYTES) {
        final = { ...final, status: 'resource_limit', result: undefined, error: { code: 'resource_limit', message: `the result is larger than ${this.config.KILN_MAX_BODY_BYTES} bytes` } };
      }
    } catch (e) {
      this.log.error({ err: e, activationId: j.activationId }, 'invocation failed in the platform');
      final = { ...running, status: 'system_error', endedAt: Date.now(), error: { code: 'system_error', message: (e as Error).message } };
    }
    if (await this.activations.finish(final, logs)) this.metrics.observe(final, j.config.runtime);
    return final.status;
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000;
