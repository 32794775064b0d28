// Invokers announce themselves: each writes a snapshot of its containers and memory every few
// seconds with a short TTL. An invoker whose snapshot expired is gone. The gateway reads these
// for `kiln ps`, `kiln stats` and the autoscaling signals; no cluster manager is involved.
import { Redis } from 'ioredis';
import { keys } from '../redis-keys';

export interface ContainerInfo {
  id: string;
  namespace: string | null;
  function: string | null;
  version: number | null;
  state: string;
  memoryMB: number;
  inFlight: number;
  createdAt: number;
  lastUsed: number;
  memoryBytes: number | null; // current usage from its cgroup
  cpuNs: number | null; // total CPU time so far
}

export interface InvokerSnapshot {
  id: string;
  at: number;
  capacityBytes: number;
  usedBytes: number;
  inFlight: number;
  concurrency: number;
  containers: ContainerInfo[];
}

export const SNAPSHOT_EVERY_MS = 2_000;
const TTL_S = 10;

export class InvokerStore {
  constructor(private readonly redis: Redis) {}

  async publish(s: InvokerSnapshot): Promise<void> {
    await this.redis.multi().sadd(keys.invokers, s.id).set(keys.invoker(s.id), JSON.stringify(s), 'EX', TTL_S).exec();
  }

  async withdraw(id: string): Promise<void> {
    await this.redis.multi().srem(keys.invokers, id).del(keys.invoker(id)).exec();
  }

  /** Snapshots of the live invokers; forgets the ones whose snapshot expired. */
  async live(): Promise<InvokerSnapshot[]> {
    const ids = await this.redis.smembers(keys.invokers);
    if (ids.length === 0) return [];
    const values = await this.redis.mget(ids.map((id) => keys.invoker(id)));
    const gone = ids.filter((_, i) => values[i] === null);
    if (gone.length) await this.redis.srem(keys.invokers, ...gone);
    return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as InvokerSnapshot);
  }
}
