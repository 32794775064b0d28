// Accepting an invocation: look the function up and admit it (one script), put the job on the
// queue (the job id is the activation id, so a job is never queued twice), write the queued
// record, and for sync calls wait for the final record up to the gateway's wait limit.
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { badRequest, notFound } from '../common/errors';
import { ActivationStore } from '../common/store/activations';
import { FunctionStore } from '../common/store/functions';
import { ActivationRecord, FINAL_STATUSES, FunctionRecord, InvocationJob, MAX_TIMEOUT_MS } from '../common/types';
import { Admission } from './limits';
import { ResultWaiter } from './results';

export interface Accepted {
  activationId: string;
  record: ActivationRecord | null; // null: async, or the wait limit passed
}

export class Invocations {
  constructor(
    private readonly queue: Queue,
    private readonly functions: FunctionStore,
    private readonly activations: ActivationStore,
    private readonly waiter: ResultWaiter,
    private readonly syncWaitMs: number,
    private readonly admission: Admission,
    private readonly attempts = 3,
  ) {}

  /**
   * Accepts one invocation. A caller may choose the activation id (`X-Kiln-Activation-Id`, 32
   * hex): sending the same request again with it never runs the function twice, it answers
   * with that activation, which is how a caller whose connection broke finds its result.
   */
  async invoke(namespace: string, name: string, event: unknown, sync: boolean, onlyWeb = false, chosenId?: string): Promise<Accepted> {
    const activationId = chosenId ?? randomBytes(16).toString('hex');
    const existing = chosenId ? await this.activations.get(chosenId) : null;
    let fn: FunctionRecord | null;
    if (existing) {
      // A repeated request: it already holds its admission slot.
      if (existing.namespace !== namespace || existing.function !== name) throw badRequest('this activation id belongs to another invocation');
      if (FINAL_STATUSES.includes(existing.status)) return { activationId, record: existing };
      fn = await this.functions.get(namespace, name);
      if (fn && onlyWeb && !fn.config.web) fn = null;
    } else fn = await this.admission.admit(namespace, name, activationId, MAX_TIMEOUT_MS, onlyWeb); // the slot outlives any call
    if (!fn) throw notFound(`no function '${name}' in namespace '${namespace}'`);
    const queuedAt = existing?.queuedAt ?? Date.now();
    const job: InvocationJob = { activationId, namespace, function: name, version: fn.version, digest: fn.digest, config: fn.config, event, queuedAt };
    const pending = sync ? this.waiter.expect(activationId) : null;
    try {
      // The job first: if the gateway dies between the two writes, the job still runs and the
      // invoker writes the record. The job id is the activation id: adding it again while it
      // exists changes nothing.
      await this.queue.add('invoke', existing ? { ...job, resent: true } : job, {
        jobId: activationId, removeOnComplete: true, removeOnFail: { age: 24 * 3600 },
        attempts: this.attempts, backoff: { type: 'exponential', delay: 200 },
      });
    } catch (e) {
      pending?.cancel();
      if (!existing) await this.admission.release(namespace, activationId).catch(() => undefined);
      throw e;
    }
    // Written while the call runs: the record exists by the time the caller hears back.
    const created = existing ? Promise.resolve(false) : this.activations.create({
      activationId, namespace, function: name, version: fn.version, status: 'queued', queuedAt, memoryMB: fn.config.memoryMB,
    });
    const record = pending ? await pending.wait(this.syncWaitMs) : null;
    await created;
    return { activationId, record };
  }

}
