// How many invokers the load needs: enough job slots for every job that is running or waiting,
// and enough memory for the containers in use at 80 % of each invoker's capacity. Pure, so it
// is unit-tested; exported as kiln_invokers_recommended for an HPA or KEDA to follow.
export interface LoadCounts {
  waiting?: number;
  active?: number;
  delayed?: number;
  prioritized?: number;
}

export interface InvokerLoad {
  capacityBytes: number;
  usedBytes: number;
  concurrency: number;
}

export const TARGET_MEMORY_UTILISATION = 0.8;

export function recommendedInvokers(q: LoadCounts, invokers: InvokerLoad[], fallbackConcurrency = 32): number {
  const jobs = (q.waiting ?? 0) + (q.active ?? 0) + (q.delayed ?? 0) + (q.prioritized ?? 0);
  const slots = invokers.length ? invokers.reduce((n, i) => n + i.concurrency, 0) / invokers.length : fallbackConcurrency;
  const byJobs = Math.ceil(jobs / slots);
  const capacity = invokers.length ? invokers.reduce((n, i) => n + i.capacityBytes, 0) / invokers.length : 0;
  const used = invokers.reduce((n, i) => n + i.usedBytes, 0);
  const byMemory = capacity > 0 ? Math.ceil(used / (capacity * TARGET_MEMORY_UTILISATION)) : 0;
  return Math.max(1, byJobs, byMemory);
}
