// The invoker's Prometheus metrics. It is the one place that sees every invocation end, so the
// per-invocation counters and histograms live here. Gauges of current state are computed at
// scrape time from the pool.
import * as client from 'prom-client';
import { ActivationRecord } from '../common/types';
import { State } from './pool/states';

interface PoolView {
  slots(): readonly { state: State; inFlight: number }[];
  usedMB(): number;
}

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export function createInvokerMetrics(registry: client.Registry, invokerId: string, pool: () => PoolView | undefined, memoryCapacityBytes: number) {
  client.collectDefaultMetrics({ register: registry });
  const invocations = new client.Counter({
    name: 'kiln_invocations_total', help: 'Invocations that ended, by final status and start kind',
    labelNames: ['namespace', 'function', 'status', 'start'], registers: [registry],
  });
  const duration = new client.Histogram({
    name: 'kiln_invocation_duration_seconds', help: 'Time the handler ran, seen from the invoker',
    labelNames: ['namespace', 'function'], buckets: DURATION_BUCKETS, registers: [registry],
  });
  const wait = new client.Histogram({
    name: 'kiln_invocation_wait_seconds', help: 'Time from acceptance to the start of the call (queue and container start)',
    labelNames: ['namespace', 'function'], buckets: DURATION_BUCKETS, registers: [registry],
  });
  const coldStart = new client.Histogram({
    name: 'kiln_cold_start_seconds', help: 'Time to make a container ready for a call, by kind',
    labelNames: ['runtime', 'kind'], buckets: DURATION_BUCKETS, registers: [registry],
  });
  const gbSeconds = new client.Counter({
    name: 'kiln_billed_gb_seconds_total', help: 'Billed GB-seconds: billedMs x memoryMB',
    labelNames: ['namespace', 'function'], registers: [registry],
  });
  const cpu = new client.Counter({
    name: 'kiln_function_cpu_seconds_total', help: 'CPU time used by function containers during calls',
    labelNames: ['namespace', 'function'], registers: [registry],
  });
  new client.Gauge({
    name: 'kiln_containers', help: 'Function containers on this invoker by state',
    labelNames: ['invoker', 'state'], registers: [registry],
    collect() {
      const slots = pool()?.slots() ?? [];
      for (const state of ['starting', 'prewarm', 'ready', 'busy', 'frozen', 'removing'] as State[]) {
        this.set({ invoker: invokerId, state }, slots.filter((s) => s.state === state).length);
      }
    },
  });
  new client.Gauge({
    name: 'kiln_invoker_memory_bytes', help: 'Container memory on this invoker: capacity and used (sum of limits)',
    labelNames: ['invoker', 'kind'], registers: [registry],
    collect() {
      const used = (pool()?.usedMB() ?? 0) * 2 ** 20;
      this.set({ invoker: invokerId, kind: 'capacity' }, memoryCapacityBytes);
      this.set({ invoker: invokerId, kind: 'used' }, used);
    },
  });

  new client.Gauge({
    name: 'kiln_invoker_inflight', help: 'Invocations running on this invoker now',
    labelNames: ['invoker'], registers: [registry],
    collect() {
      this.set({ invoker: invokerId }, (pool()?.slots() ?? []).reduce((n, s) => n + s.inFlight, 0));
    },
  });
  const freeze = new client.Histogram({
    name: 'kiln_freeze_seconds', help: 'Time to freeze an idle container with the cgroup freezer',
    registers: [registry], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
  });
  const thaw = new client.Histogram({
    name: 'kiln_thaw_seconds', help: 'Time to thaw a frozen container with the cgroup freezer',
    registers: [registry], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
  });
  const transitions = new client.Counter({
    name: 'kiln_container_transitions_total', help: 'Container state changes',
    labelNames: ['from', 'to'], registers: [registry],
  });

  return {
    freeze: (ms: number) => freeze.observe(ms / 1000),
    thaw: (ms: number) => thaw.observe(ms / 1000),
    transition: (from: State, to: State) => transitions.inc({ from, to }),
    observe(r: ActivationRecord, runtime: string) {
      const fn = { namespace: r.namespace, function: r.function };
      invocations.inc({ ...fn, status: r.status, start: r.start ?? 'none' });
      if (r.durationMs !== undefined) duration.observe(fn, r.durationMs / 1000);
      if (r.waitMs !== undefined) wait.observe(fn, r.waitMs / 1000);
      if (r.start && r.start !== 'warm' && r.initMs !== undefined) coldStart.observe({ runtime, kind: r.start }, r.initMs / 1000);
      if (r.billedMs !== undefined) gbSeconds.inc(fn, (r.billedMs / 1000) * (r.memoryMB / 1024));
      if (r.cpuMs !== undefined) cpu.inc(fn, r.cpuMs / 1000);
    },
  };
}

export type InvokerMetrics = ReturnType<typeof createInvokerMetrics>;
