// A steady load of sync and async invocations whose every activation id is chosen by the
// client, so that whatever fails in between (a gateway killed mid-request, Redis restarting),
// the audit afterwards knows exactly which invocations were accepted and can check that each
// ended with exactly one final record. Used by the fault tests and by `npm run chaos`.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { keys } from '../common/redis-keys';
import { FINAL_STATUSES } from '../common/types';

export interface LoadOptions {
  url: string;
  key: string;
  fn: string;
  event?: unknown;
  perSecond: number; // calls started per second
  syncShare?: number; // 0..1, the rest are async
}

export interface Sent {
  id: string;
  mode: 'sync' | 'async';
  status: number | 'error'; // the HTTP status, or a network error (gateway down)
}

export class Load {
  readonly sent: Sent[] = [];
  private timer?: NodeJS.Timeout;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly o: LoadOptions) {}

  start(): void {
    const every = 1000 / this.o.perSecond;
    this.timer = setInterval(() => {
      const p = this.one().finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }, every);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.inFlight]);
  }

  private async one(): Promise<void> {
    const id = randomBytes(16).toString('hex');
    const mode = Math.random() < (this.o.syncShare ?? 0.5) ? 'sync' : 'async';
    const entry: Sent = { id, mode, status: 'error' };
    this.sent.push(entry);
    try {
      const res = await fetch(`${this.o.url}/v1/functions/${this.o.fn}/invoke${mode === 'async' ? '?async=true' : ''}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.o.key}`, 'content-type': 'application/json', 'x-kiln-activation-id': id },
        body: JSON.stringify(this.o.event ?? {}),
        signal: AbortSignal.timeout(120_000),
      });
      await res.arrayBuffer();
      entry.status = res.status;
    } catch {
      entry.status = 'error';
    }
  }
}

export interface Audit {
  sent: number;
  accepted: number; // a record exists: the platform took the invocation
  answered: number; // the client got an answer saying so (200, 202, 4xx/5xx of a run)
  completed: number; // final: success
  failedByCode: Record<string, number>; // final: an error, by status
  unfinished: string[]; // accepted but no final record: lost
  answeredButUnknown: string[]; // the client was told it was accepted, yet no record: lost
  doubled: string[]; // more than one final record
}

/** Reads every record of the load's activations from Redis and counts what became of them. */
export async function audit(redis: Redis, namespace: string, sent: Sent[]): Promise<Audit> {
  const a: Audit = { sent: sent.length, accepted: 0, answered: 0, completed: 0, failedByCode: {}, unfinished: [], answeredButUnknown: [], doubled: [] };
  const finals = new Map<string, number>();
  for (const m of await redis.zrange(keys.usage(namespace), '0', '-1')) {
    const id = m.slice(0, m.indexOf('|'));
    finals.set(id, (finals.get(id) ?? 0) + 1);
  }
  for (let i = 0; i < sent.length; i += 500) {
    const batch = sent.slice(i, i + 500);
    const records = await redis.mget(batch.map((s) => keys.activation(s.id)));
    batch.forEach((s, j) => {
      const told = s.status === 200 || s.status === 202 || (typeof s.status === 'number' && s.status >= 500 && s.status !== 503);
      if (told) a.answered++;
      const raw = records[j];
      if (!raw) {
        if (told) a.answeredButUnknown.push(s.id);
        return;
      }
      a.accepted++;
      const r = JSON.parse(raw) as { status: string };
      if (!FINAL_STATUSES.includes(r.status as never)) a.unfinished.push(s.id);
      else if (r.status === 'success') a.completed++;
      else a.failedByCode[r.status] = (a.failedByCode[r.status] ?? 0) + 1;
      if ((finals.get(s.id) ?? 0) > 1) a.doubled.push(s.id);
    });
  }
  return a;
}

/** Waits until every accepted activation is final (or the time is up). */
export async function settle(redis: Redis, sent: Sent[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const records = await redis.mget(sent.map((s) => keys.activation(s.id)));
    const open = records.filter((r) => r && !FINAL_STATUSES.includes((JSON.parse(r) as { status: never }).status)).length;
    if (open === 0) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}
