// Waits for final activation records. Invokers publish every final record on one channel;
// this gateway keeps one subscriber connection and hands each record to whoever waits for it.
import { Redis } from 'ioredis';
import { DONE_CHANNEL } from '../common/redis-keys';
import { ActivationStore } from '../common/store/activations';
import { ActivationRecord, FINAL_STATUSES } from '../common/types';

export class ResultWaiter {
  private readonly waiting = new Map<string, (r: ActivationRecord) => void>();

  constructor(private readonly subscriber: Redis, private readonly activations: ActivationStore) {
    // Each message is "<activation id> <record>": every gateway sees every result, and only
    // parses the ones it waits for.
    subscriber.on('message', (_channel: string, message: string) => {
      const space = message.indexOf(' ');
      const waiter = this.waiting.get(message.slice(0, space));
      if (waiter) waiter(JSON.parse(message.slice(space + 1)) as ActivationRecord);
    });
  }

  async start(): Promise<void> {
    this.subscriber.on('error', () => undefined); // it reconnects on its own
    await this.subscriber.subscribe(DONE_CHANNEL);
    // Results published while the subscriber was reconnecting were missed: read them instead.
    this.subscriber.on('ready', () => void this.recheck().catch(() => undefined));
  }

  private async recheck(): Promise<void> {
    // The other connection may come back a moment later than this one: try for a few seconds.
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        for (const id of [...this.waiting.keys()]) {
          const r = await this.activations.get(id);
          if (r && FINAL_STATUSES.includes(r.status)) this.waiting.get(id)?.(r);
        }
        return;
      } catch {
        await new Promise((res) => setTimeout(res, 250));
      }
    }
  }

  /** Registers interest before the job is queued, so a fast result is never missed. */
  expect(activationId: string): { wait: (ms: number) => Promise<ActivationRecord | null>; cancel: () => void } {
    let resolve!: (r: ActivationRecord | null) => void;
    const done = new Promise<ActivationRecord | null>((r) => (resolve = r));
    this.waiting.set(activationId, resolve);
    const cancel = () => this.waiting.delete(activationId);
    return {
      cancel,
      wait: async (ms) => {
        const timer = setTimeout(() => resolve(null), ms);
        const r = await done;
        clearTimeout(timer);
        cancel();
        if (r) return r;
        // A message lost in a reconnect: the record itself is the truth.
        const stored = await this.activations.get(activationId);
        return stored && FINAL_STATUSES.includes(stored.status) ? stored : null;
      },
    };
  }
}
